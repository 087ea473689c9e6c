//! End to end, the whole real stack: NB/SB ovsdb-servers, northd, a chassis (userspace
//! `ovs-vswitchd` + `ovn-controller`), kube-apiserver, `rovn-controller`, `rovn-agent`; pods
//! and VMs are network namespaces; the test plays Neutron Zed (rows written exactly as it
//! writes them, `testenv::neutron`) and the container runtime (it calls `rovn-cni` like
//! kubelet). Only packets prove it:
//!
//! - seed scenario: tenant A's Neutron router imported, Subnet net2 attached to it, a pod
//!   in namespace net2 plugged by rovn-cni; the VM pings the pod; a new connection from the
//!   pod to the VM is dropped by `neutron_pg_drop` until a security-group rule allows
//!   10.0.2.0/24, then it passes;
//! - isolation: tenant B (own router, network, VM, subnet net4 with a pod) and A cannot
//!   reach each other in either direction;
//! - live move: Subnet net2 moved to B's router,
//!   connectivity follows without re-plugging;
//! - DEL removes the veth and the OVS port; deleting the pod releases its address;
//! - through all of it, no row Neutron owns is changed by rovn.

use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};
use testenv::netns::Netns;
use testenv::neutron::NeutronRows;
use testenv::ovn::OvnEnv;
use testenv::poll::eventually;
use testenv::stack::{AgentProcess, Attachment, Cluster, ControllerEnv, Tenant, subnet_spec};
use testenv::unique_name;

/// Pings that must fail: this many attempts of one second each.
const NEGATIVE_ATTEMPTS: u32 = 2;

/// A pod plugged through rovn-cni.
struct PluggedPod {
    attachment: Attachment,
    netns: Netns,
    result: Value,
    ip: String,
}

async fn plug_pod(
    cluster: &Cluster,
    socket: &std::path::Path,
    namespace: &str,
    name: &str,
    node: &str,
) -> PluggedPod {
    cluster
        .create_pod(namespace, name, node)
        .await
        .expect("create pod");
    let netns = Netns::new().unwrap();
    let attachment = Attachment {
        socket: socket.to_owned(),
        container_id: unique_name(&format!("e2e-{name}")),
        netns: format!("/var/run/netns/{}", netns.name()),
        namespace: namespace.into(),
        pod: name.into(),
    };
    let add = attachment.clone();
    // The agent waits for the controller's annotations, then for the port to be up.
    let result = tokio::task::spawn_blocking(move || add.add().expect("ADD"))
        .await
        .unwrap();
    let ip = result["ips"][0]["address"]
        .as_str()
        .and_then(|a| a.split('/').next())
        .expect("pod address")
        .to_owned();
    PluggedPod {
        attachment,
        netns,
        result,
        ip,
    }
}

/// Namespace `name` with Subnet `name` on `vpc` bound to it, Ready (pods created before
/// the binding is in effect would land in the default subnet).
async fn create_bound_subnet(cluster: &Cluster, name: &str, vpc: &str, cidr: &str) {
    cluster
        .create_namespace(name)
        .await
        .expect("create namespace");
    cluster
        .create_ready_subnet(name, subnet_spec(Some(vpc), cidr, &[name]))
        .await
        .expect("Subnet Ready");
}

fn reaches(from: &Netns, ip: &str) -> bool {
    from.ping(ip)
}

fn blocked(from: &Netns, ip: &str) -> bool {
    !from.ping_with_attempts(ip, NEGATIVE_ATTEMPTS)
}

/// The whole stack with tenant A (made by "Neutron" before rovn starts), its router imported,
/// Subnet net2 on it bound to namespace net2, and pod `web` plugged there; the Neutron-owned
/// rows as the test (playing Neutron) left them.
struct Stack {
    // Drop order: clients of the daemons first.
    web: PluggedPod,
    a: Tenant,
    agent: AgentProcess,
    neutron: NeutronRows,
    node: String,
    _dir: tempfile::TempDir,
    env: ControllerEnv,
}

impl Stack {
    async fn start() -> Self {
        let mut env = ControllerEnv::start_without_controller(
            OvnEnv::builder().chassis("e2e-node"),
            &unique_name("e2e"),
        )
        .await
        .expect("OVN and the API server");
        let node = env.ovn.chassis_name().unwrap().to_owned();
        let dir = tempfile::tempdir().unwrap();

        let a = Tenant::create(&env.ovn, "a", "10.0.1.0/24", "10.0.1.50").expect("tenant A");
        let neutron = NeutronRows::snapshot(&env.ovn).expect("Neutron rows");
        let agent = env
            .start_controller_and_agent(dir.path())
            .await
            .expect("rovn-controller and rovn-agent");
        let cluster = &env.cluster;
        wait_imported(cluster, &a.router.lr_name()).await;
        create_bound_subnet(cluster, "net2", &a.router.lr_name(), "10.0.2.0/24").await;
        let web = plug_pod(cluster, &agent.socket, "net2", "web", &node).await;
        assert!(web.ip.starts_with("10.0.2."), "{}", web.result);
        Stack {
            web,
            a,
            agent,
            neutron,
            node,
            _dir: dir,
            env,
        }
    }

    /// Tenant B (made by "Neutron", its security group admitting net4) with Subnet net4 on
    /// its router and a pod `db` there.
    async fn tenant_b(&self) -> (Tenant, PluggedPod) {
        let ovn = &self.env.ovn;
        let b = self.neutron.neutron_writes(ovn, "tenant B", || {
            let b = Tenant::create(ovn, "b", "10.0.3.0/24", "10.0.3.50").expect("tenant B");
            b.sg.add_rule_allowing(ovn, "10.0.4.0/24").unwrap();
            b
        });
        let cluster = &self.env.cluster;
        wait_imported(cluster, &b.router.lr_name()).await;
        create_bound_subnet(cluster, "net4", &b.router.lr_name(), "10.0.4.0/24").await;
        let db = plug_pod(cluster, &self.agent.socket, "net4", "db", &self.node).await;
        assert!(db.ip.starts_with("10.0.4."), "{}", db.result);
        (b, db)
    }

    fn logs(&self) -> String {
        format!(
            "controller:\n{}\nagent:\n{}",
            self.env.controller().process.log(),
            self.agent.process.log()
        )
    }
}

async fn wait_imported(cluster: &Cluster, name: &str) {
    cluster
        .wait_vpc(name, "imported", |v| v.status.is_some())
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
}

#[tokio::test(flavor = "multi_thread")]
async fn pods_and_vms_through_neutron_routers() {
    let stack = Stack::start().await;
    let (ovn, cluster) = (&stack.env.ovn, &stack.env.cluster);
    let (a, web) = (&stack.a, &stack.web);

    // Seed scenario: the VM reaches the pod and gets its replies.
    let vm_a = a.vm.netns();
    assert!(
        reaches(vm_a, &web.ip),
        "VM A cannot reach the pod\n{}",
        stack.logs()
    );
    // A new connection from the pod to the VM: dropped by neutron_pg_drop...
    assert!(
        blocked(&web.netns, &a.vm_port.ip),
        "pod reached VM A without a rule"
    );
    // ... until a security-group rule admits the subnet, as Neutron writes it.
    stack
        .neutron
        .neutron_writes(ovn, "A's security group admits 10.0.2.0/24", || {
            a.sg.add_rule_allowing(ovn, "10.0.2.0/24")
        })
        .unwrap();
    assert!(
        reaches(&web.netns, &a.vm_port.ip),
        "pod cannot reach VM A with the rule"
    );

    // Isolation: tenant B and A cannot reach each other in either direction.
    let (b, db) = stack.tenant_b().await;
    let vm_b = b.vm.netns();
    assert!(reaches(vm_b, &db.ip), "VM B cannot reach its pod");
    assert!(reaches(&db.netns, &b.vm_port.ip), "pod B cannot reach VM B");
    assert!(blocked(&web.netns, &b.vm_port.ip), "pod A reached VM B");
    assert!(blocked(&web.netns, &db.ip), "pod A reached pod B");
    assert!(blocked(&db.netns, &a.vm_port.ip), "pod B reached VM A");
    assert!(blocked(&db.netns, &web.ip), "pod B reached pod A");
    assert!(blocked(vm_b, &web.ip), "VM B reached pod A");
    assert!(blocked(vm_a, &db.ip), "VM A reached pod B");

    // The agent records the sandbox's container id in the pod's IP resource (in the
    // background after ADD; checked while the pod, and so its IP resource, exists).
    eventually(
        "the agent records the sandbox container id in the IP resource",
        || async {
            let ip = cluster.ips().get_opt("web.net2").await;
            match ip {
                Ok(Some(ip)) if ip.spec.container_id == web.attachment.container_id => Ok(()),
                Ok(Some(ip)) => Err(format!("containerID {:?}", ip.spec.container_id)),
                Ok(None) => Err("no IP resource web.net2".to_owned()),
                Err(e) => Err(e.to_string()),
            }
        },
    )
    .await;

    // CHECK holds; DEL removes veth and OVS port; deleting the pod releases the address.
    let host_if = web.result["interfaces"][0]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let check = web.attachment.clone();
    let prev = web.result.clone();
    tokio::task::spawn_blocking(move || check.check(&prev).expect("CHECK"))
        .await
        .unwrap();
    let del = web.attachment.clone();
    let prev = web.result.clone();
    tokio::task::spawn_blocking(move || del.del(Some(&prev)).expect("DEL"))
        .await
        .unwrap();
    assert!(!ovn.chassis_link_exists(&host_if).unwrap());
    assert_eq!(ovn.ovs_interface_external_ids(&host_if).unwrap(), None);
    cluster
        .delete_pods("net2", &["web".to_owned()])
        .await
        .expect("delete pod");
    let ips = cluster.ips();
    eventually("the pod's IP resource released", || async {
        ips.get_opt("web.net2")
            .await
            .ok()
            .flatten()
            .is_none()
            .then_some(())
    })
    .await;
    eventually("the pod's logical switch port removed", || async {
        ovn.nbctl(&[
            "--bare",
            "--columns=name",
            "find",
            "Logical_Switch_Port",
            "name=web.net2",
        ])
        .ok()
        .filter(|out| out.trim().is_empty())
        .map(|_| ())
    })
    .await;
    stack.neutron.assert_unchanged(ovn, "end of the scenario");
}

/// Moving Subnet net2 from router A to router B: connectivity follows without re-plugging.
///
/// The controller gives the router port a new name on the new router and points the
/// router-type switch port at it in the same transaction, so every ovn-controller recomputes
/// both directions (re-parenting the same-named port left 23.03's flows on the old router).
#[tokio::test(flavor = "multi_thread")]
async fn live_move_of_a_subnet_between_neutron_routers() {
    let stack = Stack::start().await;
    let (a, web) = (&stack.a, &stack.web);
    let (b, _db) = stack.tenant_b().await;
    let vm_a = a.vm.netns();
    let vm_b = b.vm.netns();
    assert!(
        reaches(vm_a, &web.ip),
        "VM A cannot reach the pod\n{}",
        stack.logs()
    );
    assert!(blocked(vm_b, &web.ip), "VM B reached pod A before the move");

    let host_if = web.result["interfaces"][0]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let ovn = &stack.env.ovn;
    stack
        .env
        .cluster
        .subnets()
        .patch(
            "net2",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"vpc": b.router.lr_name()}})),
        )
        .await
        .expect("move net2");
    eventually("VM B reaches the moved pod", || async {
        reaches(vm_b, &web.ip)
    })
    .await;
    assert!(blocked(vm_a, &web.ip), "VM A still reaches the moved pod");
    // Same veth, same port: nothing was re-plugged.
    assert!(ovn.chassis_link_exists(&host_if).unwrap());
    let check = web.attachment.clone();
    let prev = web.result.clone();
    tokio::task::spawn_blocking(move || check.check(&prev).expect("CHECK"))
        .await
        .unwrap();
    stack.neutron.assert_unchanged(ovn, "end of the move");
}
