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
//! - DEL removes the veth and the OVS port; deleting the pod releases its address.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use api::condition::{READY, is_condition_true};
use api::{IP, Subnet, SubnetSpec, Vpc};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::{HANG_GUARD, host_link_exists, ovs_interface_ids, run, unique};
use testenv::kube::KubeEnv;
use testenv::netns::Netns;
use testenv::ovn::OvnEnv;
use testenv::stack::{
    AgentProcess, Attachment, ControllerProcess, Tenant, create_namespace, create_pod,
};

/// Pings that must fail: this many attempts of one second each.
const NEGATIVE_ATTEMPTS: u32 = 2;

/// Polls `probe` every 100 ms until it returns `Some` (hang guard only).
async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + HANG_GUARD;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A pod plugged through rovn-cni.
struct PluggedPod {
    attachment: Attachment,
    netns: Netns,
    result: Value,
    ip: String,
}

async fn plug_pod(
    client: &kube::Client,
    socket: &std::path::Path,
    namespace: &str,
    name: &str,
    node: &str,
) -> PluggedPod {
    create_pod(client, namespace, name, node)
        .await
        .expect("create pod");
    let netns = Netns::new().unwrap();
    let attachment = Attachment {
        socket: socket.to_owned(),
        container_id: unique(&format!("e2e-{name}")),
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

async fn create_subnet(client: &kube::Client, name: &str, vpc: &str, cidr: &str, namespace: &str) {
    let subnet = Subnet::new(
        name,
        SubnetSpec {
            vpc: Some(vpc.to_owned()),
            cidr_block: cidr.to_owned(),
            namespaces: vec![namespace.to_owned()],
            ..SubnetSpec::default()
        },
    );
    let subnets = Api::<Subnet>::all(client.clone());
    subnets
        .create(&PostParams::default(), &subnet)
        .await
        .expect("create subnet");
    // Pods created before the binding is in effect would land in the default subnet.
    eventually(&format!("Subnet {name} Ready"), || async {
        subnets.get_opt(name).await.ok().flatten().filter(|s| {
            s.status
                .as_ref()
                .is_some_and(|st| is_condition_true(&st.conditions, READY))
        })
    })
    .await;
}

fn reaches(from: &Netns, ip: &str) -> bool {
    from.ping(ip)
}

fn blocked(from: &Netns, ip: &str) -> bool {
    !from.ping_with_attempts(ip, NEGATIVE_ATTEMPTS)
}

/// The whole stack with tenant A (made by "Neutron" before rovn starts), its router imported,
/// Subnet net2 on it bound to namespace net2, and pod `web` plugged there.
struct Stack {
    // Drop order: clients of the daemons first.
    web: PluggedPod,
    a: Tenant,
    agent: AgentProcess,
    controller: ControllerProcess,
    client: kube::Client,
    vpcs: Api<Vpc>,
    node: String,
    chassis_netns: String,
    _dir: tempfile::TempDir,
    _kube: KubeEnv,
    env: OvnEnv,
}

impl Stack {
    async fn start() -> Self {
        let env = tokio::task::spawn_blocking(|| OvnEnv::builder().chassis("e2e-node").start())
            .await
            .unwrap()
            .expect("OVN env");
        let node = env.chassis_name().unwrap().to_owned();
        let chassis_netns = env.chassis_netns().unwrap().expect("own netns").to_owned();
        let kube = tokio::task::spawn_blocking(KubeEnv::start)
            .await
            .unwrap()
            .expect("kube-apiserver");
        let client = kube.client().await.expect("kube client");
        tokio::time::timeout(HANG_GUARD, api::install::apply_crds(&client, "rovn-e2e"))
            .await
            .expect("CRDs in time")
            .expect("CRDs");
        let dir = tempfile::tempdir().unwrap();

        let a = Tenant::create(&env, "a", "10.0.1.0/24", "10.0.1.50").expect("tenant A");
        // Its log is kept after the test, for failure analysis.
        let controller = ControllerProcess::start(
            Path::new(env!("CARGO_TARGET_TMPDIR")),
            &env.nb_remote(),
            kube.kubeconfig(),
            &unique("e2e"),
        )
        .expect("rovn-controller");
        eprintln!(
            "rovn-controller logs to {}",
            controller.process.log_path().display()
        );
        let agent = AgentProcess::start(
            dir.path(),
            &AgentProcess::chassis_args(kube.kubeconfig(), &node, &env).unwrap(),
        )
        .expect("rovn-agent");
        let vpcs: Api<Vpc> = Api::all(client.clone());
        wait_imported(&vpcs, &a.router.lr_name()).await;
        create_namespace(&client, "net2")
            .await
            .expect("create namespace");
        create_subnet(&client, "net2", &a.router.lr_name(), "10.0.2.0/24", "net2").await;
        let web = plug_pod(&client, &agent.socket, "net2", "web", &node).await;
        assert!(web.ip.starts_with("10.0.2."), "{}", web.result);
        Stack {
            web,
            a,
            agent,
            controller,
            client,
            vpcs,
            node,
            chassis_netns,
            _dir: dir,
            _kube: kube,
            env,
        }
    }

    /// Tenant B with Subnet net4 on its router, a pod `db` there, and B's security group
    /// admitting net4.
    async fn tenant_b(&self) -> (Tenant, PluggedPod) {
        let b = Tenant::create(&self.env, "b", "10.0.3.0/24", "10.0.3.50").expect("tenant B");
        b.sg.add_rule_allowing(&self.env, "10.0.4.0/24").unwrap();
        wait_imported(&self.vpcs, &b.router.lr_name()).await;
        create_namespace(&self.client, "net4")
            .await
            .expect("create namespace");
        create_subnet(
            &self.client,
            "net4",
            &b.router.lr_name(),
            "10.0.4.0/24",
            "net4",
        )
        .await;
        let db = plug_pod(&self.client, &self.agent.socket, "net4", "db", &self.node).await;
        assert!(db.ip.starts_with("10.0.4."), "{}", db.result);
        (b, db)
    }

    fn logs(&self) -> String {
        format!(
            "controller:\n{}\nagent:\n{}",
            self.controller.process.log(),
            self.agent.process.log()
        )
    }
}

async fn wait_imported(vpcs: &Api<Vpc>, name: &str) {
    eventually(&format!("router {name} imported as a Vpc"), || async {
        vpcs.get_opt(name)
            .await
            .ok()
            .flatten()
            .filter(|v| v.status.is_some())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pods_and_vms_through_neutron_routers() {
    let stack = Stack::start().await;
    let (env, a, web) = (&stack.env, &stack.a, &stack.web);

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
    a.sg.add_rule_allowing(env, "10.0.2.0/24").unwrap();
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
    let chassis_netns = &stack.chassis_netns;
    assert!(!host_link_exists(chassis_netns, &host_if));
    assert_eq!(ovs_interface_ids(env, &host_if), None);
    Api::<Pod>::namespaced(stack.client.clone(), "net2")
        .delete("web", &DeleteParams::default().grace_period(0))
        .await
        .expect("delete pod");
    let ips: Api<IP> = Api::all(stack.client.clone());
    eventually(
        "the agent records the sandbox container id in the IP resource",
        || async {
            let ip = ips.get_opt("web.net2").await.ok().flatten()?;
            (ip.spec.container_id == web.attachment.container_id).then_some(())
        },
    )
    .await;
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
        env.nbctl(&[
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
    Api::<Subnet>::all(stack.client.clone())
        .patch(
            "net2",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"vpc": b.router.lr_name()}})),
        )
        .await
        .expect("move net2");
    eventually("VM B reaches the moved pod", || async {
        reaches(vm_b, &web.ip).then_some(())
    })
    .await;
    assert!(blocked(vm_a, &web.ip), "VM A still reaches the moved pod");
    // Same veth, same port: nothing was re-plugged.
    assert!(
        run(
            "ip",
            &["-n", &stack.chassis_netns, "link", "show", &host_if]
        )
        .0
    );
    let check = web.attachment.clone();
    let prev = web.result.clone();
    tokio::task::spawn_blocking(move || check.check(&prev).expect("CHECK"))
        .await
        .unwrap();
}
