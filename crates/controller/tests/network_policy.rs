//! NetworkPolicies with real packets on a Neutron-attached Subnet: the whole stack (NB/SB
//! ovsdb-servers, northd, a chassis with userspace `ovs-vswitchd` + `ovn-controller`,
//! kube-apiserver, the real `rovn-controller` and `rovn-agent`); pods are network
//! namespaces plugged through `rovn-cni`, VMs network namespaces bound to Neutron ports,
//! servers and clients small python3 programs.
//!
//! Tenant A (made by "Neutron" before rovn starts) has network 10.0.1.0/24 with VMs vm1
//! (10.0.1.50) and vm2 (10.0.1.60) in one security group, which admits the pods' Subnet
//! (without that rule `neutron_pg_drop` drops every new pod → VM connection whatever the
//! policies say). Subnet net2 (10.0.2.0/24) on the imported router holds namespaces `web`,
//! `client` and `other` with one pod each.
//!
//! Proven with packets: default deny; allow from a namespace on a named port; allow from a
//! VM by `ipBlock` while the other VM stays denied; egress to one VM on one TCP port only;
//! a policy changed under a running pod; a pod's labels and a namespace's labels moving it
//! in and out of policies; our port groups and address sets deleted as Neutron's repair sync
//! does (every Port_Group not Neutron's) and put back (the delay is printed), with every
//! verdict unchanged; `rovnctl diagnose` naming the policy and the side (egress of the
//! client, ingress of the server) that drops a flow; Neutron's rows identical before and
//! after.

use std::time::Instant;

use k8s_openapi::api::core::v1::{Container, ContainerPort, Namespace, Pod};
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;
use testenv::netns::{Nic, Workload};
use testenv::neutron::NeutronRows;
use testenv::ovn::OvnEnv;
use testenv::poll::eventually;
use testenv::stack::{
    ControllerEnv, PluggedPod, Serve, Server, Tenant, pod, subnet_spec, wait_answer, workspace_bin,
};
use testenv::unique_name;

const HTTP: i32 = 8080;
const ADMIN: i32 = 9090;
const UDP: i32 = 5353;

fn serve() -> Serve {
    Serve {
        tcp: vec![HTTP, ADMIN],
        udp: UDP,
    }
}

fn selector(pairs: &[(&str, &str)]) -> LabelSelector {
    LabelSelector {
        match_labels: Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        ..LabelSelector::default()
    }
}

fn policy(name: &str, spec: NetworkPolicySpec) -> NetworkPolicy {
    NetworkPolicy {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
    }
}

fn tcp_port(port: IntOrString) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(port),
        protocol: Some("TCP".into()),
        end_port: None,
    }
}

fn ip_block(cidr: &str, except: &[&str]) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        ip_block: Some(IPBlock {
            cidr: cidr.into(),
            except: (!except.is_empty()).then(|| except.iter().map(|e| e.to_string()).collect()),
        }),
        ..NetworkPolicyPeer::default()
    }
}

/// A pod labelled `app=<name>` whose container names port 8080 `http`.
fn labelled_pod(name: &str, node: &str) -> Pod {
    let mut pod = pod(name, node, &[]);
    pod.metadata.labels = Some([("app".to_string(), name.to_string())].into());
    if let Some(spec) = pod.spec.as_mut() {
        spec.containers = vec![Container {
            name: "main".into(),
            image: Some("registry.k8s.io/pause:3.10".into()),
            ports: Some(vec![ContainerPort {
                name: Some("http".into()),
                container_port: HTTP,
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            }]),
            ..Container::default()
        }];
    }
    pod
}

/// Our rows' names in `table` (`rovn:kind=network-policy`).
fn our_rows(ovn: &OvnEnv, table: &str) -> Vec<String> {
    let out = ovn
        .nbctl(&[
            "--bare",
            "--columns",
            "name",
            "find",
            table,
            "external_ids:\"rovn:kind\"=network-policy",
        ])
        .expect("ovn-nbctl find");
    let mut names: Vec<String> = out
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread")]
async fn network_policies_with_real_packets() {
    let mut env = ControllerEnv::start_without_controller(
        OvnEnv::builder().chassis("np-node"),
        &unique_name("np"),
    )
    .await
    .expect("OVN and the API server");
    let node = env.ovn.chassis_name().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let a = Tenant::create(&env.ovn, "a", "10.0.1.0/24", "10.0.1.50").expect("tenant A");
    let vm2_port = a
        .network
        .add_vm_port(&env.ovn, "vm2", "10.0.1.60", &node, &a.sg)
        .expect("vm2 port");
    let vm2: Workload = env
        .ovn
        .plug(
            &vm2_port.port_id,
            &Nic::new(&vm2_port.mac, "10.0.1.60/24", Some("10.0.1.1")),
        )
        .expect("vm2");
    env.ovn.wait_lsp_up(&vm2_port.port_id).expect("vm2 up");
    // Without it neutron_pg_drop drops every new pod -> VM connection.
    a.sg.add_rule_allowing(&env.ovn, "10.0.2.0/24")
        .expect("security group rule");
    let _vm1_server = Server::start(a.vm.netns(), "vm1", &serve()).expect("vm1 server");
    let _vm2_server = Server::start(vm2.netns(), "vm2", &serve()).expect("vm2 server");
    let neutron = NeutronRows::snapshot(&env.ovn).expect("Neutron rows");

    let agent = env
        .start_controller_and_agent(dir.path())
        .await
        .expect("rovn-controller and rovn-agent");
    let cluster = &env.cluster;
    let vpc = a.router.lr_name();
    cluster
        .wait_vpc(&vpc, "imported", |v| v.status.is_some())
        .await
        .expect("router imported");
    let namespaces: Api<Namespace> = Api::all(cluster.client().clone());
    let label_namespace = |name: &'static str, team: &'static str| {
        let namespaces = namespaces.clone();
        async move {
            namespaces
                .patch(
                    name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {"labels": {"team": team}}})),
                )
                .await
                .expect("label namespace");
        }
    };
    for name in ["web", "client", "other"] {
        cluster.create_namespace(name).await.expect("namespace");
        label_namespace(name, name).await;
    }
    cluster
        .create_ready_subnet(
            "net2",
            subnet_spec(Some(&vpc), "10.0.2.0/24", &["web", "client", "other"]),
        )
        .await
        .expect("Subnet Ready");
    let plug = |namespace: &'static str| {
        let node = node.clone();
        let socket = agent.socket.clone();
        async move {
            PluggedPod::plug(
                cluster,
                &socket,
                namespace,
                labelled_pod(namespace, &node),
                Some(serve()),
            )
            .await
            .expect("plugged pod")
        }
    };
    let web = plug("web").await;
    let client = plug("client").await;
    let other = plug("other").await;
    // Before any policy everything reaches everything.
    client.wait_answer("tcp", &web.ip, HTTP, "web").await;
    other.wait_answer("tcp", &web.ip, ADMIN, "web").await;
    client.wait_answer("tcp", "10.0.1.60", HTTP, "vm2").await;
    wait_answer(a.vm.netns(), "vm1", "tcp", &web.ip, HTTP, "web").await;

    let web_policies: Api<NetworkPolicy> = Api::namespaced(cluster.client().clone(), "web");
    let client_policies: Api<NetworkPolicy> = Api::namespaced(cluster.client().clone(), "client");

    // 1. Default deny for web.
    let started = Instant::now();
    web_policies
        .create(
            &PostParams::default(),
            &policy(
                "deny",
                NetworkPolicySpec {
                    pod_selector: Some(selector(&[("app", "web")])),
                    policy_types: Some(vec!["Ingress".into()]),
                    ..NetworkPolicySpec::default()
                },
            ),
        )
        .await
        .expect("deny");
    client.wait_answer("tcp", &web.ip, HTTP, "timeout").await;
    eprintln!("default deny -> effective after {:?}", started.elapsed());
    other.wait_answer("tcp", &web.ip, HTTP, "timeout").await;
    wait_answer(a.vm.netns(), "vm1", "tcp", &web.ip, HTTP, "timeout").await;
    client.wait_answer("udp", &web.ip, UDP, "timeout").await;
    // Unselected pods are untouched, and web's own connections out still work.
    client.wait_answer("tcp", &other.ip, HTTP, "other").await;
    web.wait_answer("tcp", &client.ip, HTTP, "client").await;

    // 2. Allow from namespace `client` (label team=client) on the named port `http`.
    let allow_team = |teams: &[&str]| {
        policy(
            "allow-team",
            NetworkPolicySpec {
                pod_selector: Some(selector(&[("app", "web")])),
                ingress: Some(vec![NetworkPolicyIngressRule {
                    from: Some(
                        teams
                            .iter()
                            .map(|team| NetworkPolicyPeer {
                                namespace_selector: Some(selector(&[("team", team)])),
                                ..NetworkPolicyPeer::default()
                            })
                            .collect(),
                    ),
                    ports: Some(vec![tcp_port(IntOrString::String("http".into()))]),
                }]),
                ..NetworkPolicySpec::default()
            },
        )
    };
    web_policies
        .create(&PostParams::default(), &allow_team(&["client"]))
        .await
        .expect("allow-team");
    client.wait_answer("tcp", &web.ip, HTTP, "web").await;
    client.wait_answer("tcp", &web.ip, ADMIN, "timeout").await;
    other.wait_answer("tcp", &web.ip, HTTP, "timeout").await;

    // 3. Allow vm1 by ipBlock (10.0.1.0/24 except vm2); vm2 stays denied.
    web_policies
        .create(
            &PostParams::default(),
            &policy(
                "allow-vm1",
                NetworkPolicySpec {
                    pod_selector: Some(selector(&[("app", "web")])),
                    ingress: Some(vec![NetworkPolicyIngressRule {
                        from: Some(vec![ip_block("10.0.1.0/24", &["10.0.1.60/32"])]),
                        ports: None,
                    }]),
                    ..NetworkPolicySpec::default()
                },
            ),
        )
        .await
        .expect("allow-vm1");
    wait_answer(a.vm.netns(), "vm1", "tcp", &web.ip, ADMIN, "web").await;
    wait_answer(vm2.netns(), "vm2", "tcp", &web.ip, HTTP, "timeout").await;

    // 4. A policy changed under the running pod: team `other` admitted too.
    let mut changed = allow_team(&["client", "other"]);
    let current = web_policies.get("allow-team").await.expect("get");
    changed.metadata.resource_version = current.metadata.resource_version;
    web_policies
        .replace("allow-team", &PostParams::default(), &changed)
        .await
        .expect("replace allow-team");
    other.wait_answer("tcp", &web.ip, HTTP, "web").await;
    other.wait_answer("tcp", &web.ip, ADMIN, "timeout").await;

    // 5. Labels: web relabelled out of every policy is open again, and back in, closed;
    // namespace `other` relabelled out of the allowed teams is denied.
    let pods: Api<Pod> = Api::namespaced(cluster.client().clone(), "web");
    let relabel = |app: &'static str| {
        let pods = pods.clone();
        async move {
            pods.patch(
                "web",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"app": app}}})),
            )
            .await
            .expect("relabel web");
        }
    };
    relabel("web-off").await;
    let started = Instant::now();
    client.wait_answer("tcp", &web.ip, ADMIN, "web").await;
    eprintln!("pod relabelled out -> open after {:?}", started.elapsed());
    relabel("web").await;
    client.wait_answer("tcp", &web.ip, ADMIN, "timeout").await;
    label_namespace("other", "none").await;
    other.wait_answer("tcp", &web.ip, HTTP, "timeout").await;
    label_namespace("other", "other").await;
    other.wait_answer("tcp", &web.ip, HTTP, "web").await;

    // 6. Egress of client: only vm1, only TCP 8080.
    client_policies
        .create(
            &PostParams::default(),
            &policy(
                "to-vm1",
                NetworkPolicySpec {
                    pod_selector: Some(selector(&[("app", "client")])),
                    policy_types: Some(vec!["Egress".into()]),
                    egress: Some(vec![NetworkPolicyEgressRule {
                        to: Some(vec![ip_block("10.0.1.50/32", &[])]),
                        ports: Some(vec![tcp_port(IntOrString::Int(HTTP))]),
                    }]),
                    ..NetworkPolicySpec::default()
                },
            ),
        )
        .await
        .expect("to-vm1");
    client
        .wait_answer("tcp", "10.0.1.60", HTTP, "timeout")
        .await;
    client.wait_answer("tcp", "10.0.1.50", HTTP, "vm1").await;
    client
        .wait_answer("tcp", "10.0.1.50", ADMIN, "timeout")
        .await;
    client.wait_answer("tcp", &other.ip, HTTP, "timeout").await;
    // Connections into client still work (replies pass its egress policy).
    other.wait_answer("tcp", &client.ip, HTTP, "client").await;

    // `rovnctl diagnose` names the policy that drops a flow, and whose side it is on.
    let diagnose = |pod: &str, to: &str, port: i32| {
        let nb = env.ovn.nb_remote();
        let sb = env.ovn.sb_remote().expect("SB remote");
        let out = std::process::Command::new(workspace_bin("rovnctl", "rovnctl").unwrap())
            .args([
                "diagnose",
                "--pod",
                pod,
                "--to",
                to,
                "--port",
                &port.to_string(),
            ])
            .args(["--ovn-nb", &nb, "--ovn-sb", &sb])
            .output()
            .expect("rovnctl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let verdict = diagnose("client/client", "10.0.1.60", HTTP);
    assert!(
        verdict.contains("dropped by NetworkPolicy client/to-vm1 (egress of client/client)"),
        "{verdict}"
    );
    let verdict = diagnose("other/other", &web.ip, ADMIN);
    assert!(
        verdict.contains("dropped by NetworkPolicy web/")
            && verdict.contains("(ingress of the destination pod web/web)"),
        "{verdict}"
    );
    let verdict = diagnose("other/other", &web.ip, HTTP);
    assert!(verdict.contains("verdict: delivered"), "{verdict}");

    let verdicts = || async {
        client.wait_answer("tcp", &web.ip, HTTP, "timeout").await; // client's egress
        other.wait_answer("tcp", &web.ip, HTTP, "web").await;
        other.wait_answer("tcp", &web.ip, ADMIN, "timeout").await;
        wait_answer(a.vm.netns(), "vm1", "tcp", &web.ip, ADMIN, "web").await;
        wait_answer(vm2.netns(), "vm2", "tcp", &web.ip, HTTP, "timeout").await;
        client.wait_answer("tcp", "10.0.1.50", HTTP, "vm1").await;
        client
            .wait_answer("tcp", "10.0.1.60", HTTP, "timeout")
            .await;
    };
    verdicts().await;

    // 7. Neutron's repair sync: every Port_Group that is not Neutron's goes (with its
    // ACLs); our address sets too. All put back, every verdict unchanged.
    let groups = our_rows(&env.ovn, "Port_Group");
    let sets = our_rows(&env.ovn, "Address_Set");
    assert_eq!(groups.len(), 4, "one port group per policy: {groups:?}");
    assert_eq!(sets.len(), 2, "allow-team's peers, IPv4 and IPv6: {sets:?}");
    let acls = env
        .ovn
        .nbctl(&["--bare", "--columns", "priority", "list", "ACL"])
        .expect("ACLs");
    let mut args: Vec<String> = Vec::new();
    for name in groups.iter().chain(&sets) {
        let table = if groups.contains(name) {
            "Port_Group"
        } else {
            "Address_Set"
        };
        args.extend(["--".into(), "destroy".into(), table.into(), name.clone()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let started = Instant::now();
    env.ovn.nbctl(&args).expect("delete our rows");
    eventually("our port groups and address sets put back", || async {
        let now = (
            our_rows(&env.ovn, "Port_Group"),
            our_rows(&env.ovn, "Address_Set"),
        );
        if now == (groups.clone(), sets.clone()) {
            Ok(())
        } else {
            Err(format!("{now:?}"))
        }
    })
    .await;
    eprintln!(
        "port groups and address sets deleted -> put back after {} ms",
        started.elapsed().as_millis()
    );
    let restored = env
        .ovn
        .nbctl(&["--bare", "--columns", "priority", "list", "ACL"])
        .expect("ACLs");
    let sorted = |text: &str| {
        let mut lines: Vec<String> = text.split_whitespace().map(str::to_owned).collect();
        lines.sort();
        lines
    };
    assert_eq!(sorted(&acls), sorted(&restored), "the same ACLs again");
    verdicts().await;
    assert!(
        env.controller().metric_sum("rovn_ovn_repairs_total") > 0.0,
        "repairs counted"
    );

    // 8. Policies deleted: their rows go, web is open again.
    for name in ["deny", "allow-team", "allow-vm1"] {
        web_policies
            .delete(name, &Default::default())
            .await
            .expect("delete policy");
    }
    client_policies
        .delete("to-vm1", &Default::default())
        .await
        .expect("delete policy");
    eventually("our rows removed", || async {
        let left = our_rows(&env.ovn, "Port_Group").len() + our_rows(&env.ovn, "Address_Set").len();
        if left == 0 { Ok(()) } else { Err(left) }
    })
    .await;
    client.wait_answer("tcp", &web.ip, ADMIN, "web").await;
    neutron.assert_unchanged(&env.ovn, "after the NetworkPolicies");
}
