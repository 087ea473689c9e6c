//! `rovnctl status` and `rovnctl topology` against a real stack: NB/SB
//! ovsdb-servers, northd, a chassis `topo-node` (userspace `ovs-vswitchd` +
//! `ovn-controller`), kube-apiserver, the real `rovn-controller` and
//! `rovn-agent`; a Neutron tenant (router `router-a`, network `net-a`
//! 10.0.1.0/24, VM `vm-a` in a security group admitting nothing from the
//! pods) made before rovn starts, a second Neutron router `router-b`, and
//! Subnet `net2` (10.0.2.0/24) on the imported router with two pods plugged
//! through `rovn-cni`. And `status` of a 3-member RAFT Northbound cluster.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use k8s_openapi::api::core::v1::{ConfigMap, Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::PostParams;
use rovnctl::status::Status;
use rovnctl::topology::{NetworkKind, PortKind, Topology};
use testenv::neutron::NeutronRouter;
use testenv::ovn::OvnEnv;
use testenv::stack::{ControllerEnv, PluggedPod, Tenant, pod, subnet_spec};
use testenv::unique_name;

/// `rovnctl <args>` with no Northbound or Southbound address from the environment.
fn rovnctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rovnctl"))
        .args(args)
        .env_remove("ROVN_OVN_NB")
        .env_remove("ROVN_OVN_SB")
        .output()
        .expect("run rovnctl")
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("UTF-8 output")
}

/// `rovnctl <args>`'s stdout; it must succeed.
fn ok(args: &[&str]) -> String {
    let out = rovnctl(args);
    assert!(
        out.status.success(),
        "rovnctl {args:?} failed ({}): {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        stdout(&out)
    );
    stdout(&out)
}

fn contains(text: &str, wanted: &str) {
    assert!(text.contains(wanted), "{wanted:?} not in:\n{text}");
}

/// `dot -Tsvg` of `graph`.
fn graphviz(graph: &str) -> String {
    let mut dot = Command::new("dot")
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dot (Debian package graphviz)");
    dot.stdin
        .take()
        .unwrap()
        .write_all(graph.as_bytes())
        .unwrap();
    let out = dot.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "dot -Tsvg: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn is_svg(text: &str) -> bool {
    text.starts_with("<?xml") || text.starts_with("<svg")
}

#[tokio::test(flavor = "multi_thread")]
async fn status_and_topology_of_a_real_stack() {
    let mut env = ControllerEnv::start_without_controller(
        OvnEnv::builder().chassis("topo-node"),
        &unique_name("topo"),
    )
    .await
    .expect("OVN and the API server");
    let node = env.ovn.chassis_name().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let a = Tenant::create(&env.ovn, "a", "10.0.1.0/24", "10.0.1.50").expect("tenant A");
    let b = NeutronRouter::create(&env.ovn, "router-b").expect("router B");
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
    cluster.create_namespace("net2").await.expect("namespace");
    cluster
        .create_ready_subnet("net2", subnet_spec(Some(&vpc), "10.0.2.0/24", &["net2"]))
        .await
        .expect("Subnet Ready");
    let mut pods = Vec::new();
    for name in ["web", "db"] {
        pods.push(
            PluggedPod::plug(cluster, &agent.socket, "net2", pod(name, &node, &[]), None)
                .await
                .expect("plugged pod"),
        );
    }
    for pod in &pods {
        env.ovn
            .wait_lsp_up(&format!("{}.net2", pod.name))
            .expect("pod port bound and up");
    }
    let identity = env.controller().identity().to_owned();
    let kubeconfig = env.kube.kubeconfig().to_str().unwrap().to_owned();
    let nb = env.ovn.nb_remote();
    let sb = env.ovn.sb_remote().unwrap();
    let status_args = |extra: &[&str]| {
        let mut args: Vec<String> = [
            "status",
            "--ovn-nb",
            &nb,
            "--kubeconfig",
            &kubeconfig,
            "--lease-namespace",
            "default",
        ]
        .map(String::from)
        .to_vec();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let run = |args: &[String]| rovnctl(&args.iter().map(String::as_str).collect::<Vec<_>>());

    // 1. status: healthy, with the Subnet's security group warning and its remedy.
    let out = run(&status_args(&[]));
    let text = stdout(&out);
    eprintln!("rovnctl status:\n{text}");
    assert!(out.status.success(), "healthy: exit 0\n{text}");
    contains(
        &text,
        &format!("Northbound: {nb} (--ovn-nb), read from {nb}\n"),
    );
    contains(&text, &format!("  {nb}: standalone\n"));
    contains(
        &text,
        &format!("Controller: leader {identity} (Lease default/rovn-controller, renewed "),
    );
    contains(&text, "Agents: no DaemonSet seen (see below)\n");
    contains(
        &text,
        "Resources: 2 imported VPCs, 1 own VPC, 2 Subnets, 2 pods with a rovn port, \
         0 NetworkPolicies\n",
    );
    contains(
        &text,
        &format!(
            "  [warning] Subnet net2: NeutronSecurityGroups: new connections from its pods \
             (10.0.2.0/24) to 1 of the 1 VM port(s) on the Neutron networks of router {vpc} are \
             dropped by neutron_pg_drop: \"vm-a\" {} [{} 10.0.1.50]\n",
            a.vm_port.port_id, a.vm_port.mac
        ),
    );
    contains(
        &text,
        &format!(
            "    fix: admit the pods in a security group of each of those VMs (rovn never \
             writes security groups): openstack security group rule create --ingress \
             --ethertype IPv4 --remote-ip 10.0.2.0/24 {}; rovnctl diagnose --subnet net2 lists \
             every VM port and what it admits\n",
            a.sg.id
        ),
    );
    contains(&text, "Healthy (2 warnings)\n");

    // 2. The same as JSON.
    let out = run(&status_args(&["-o", "json"]));
    assert!(out.status.success());
    let json = stdout(&out);
    let status: Status = serde_json::from_str(&json).expect("status JSON");
    assert!(status.healthy, "{json}");
    assert_eq!(
        status.controller.as_ref().and_then(|c| c.holder.as_deref()),
        Some(identity.as_str())
    );
    assert_eq!(status.northbound.answered.as_deref(), Some(nb.as_str()));
    assert_eq!(
        (
            status.counts.imported_vpcs,
            status.counts.own_vpcs,
            status.counts.subnets,
            status.counts.pods,
            status.counts.network_policies
        ),
        (Some(2), Some(1), Some(2), Some(2), Some(0)),
        "router-a and router-b imported; the controller's default Vpc ovn-cluster and Subnet \
         ovn-default, and net2"
    );
    let security = status
        .findings
        .iter()
        .find(|f| f.subject == "Subnet net2")
        .expect("the Subnet's finding");
    assert_eq!(
        security.condition.as_ref().map(|c| c.reason.as_str()),
        Some("PodToVmNeedsSecurityGroupRule")
    );
    contains(&security.remedy, "--remote-ip 10.0.2.0/24");

    // 3. A Subnet overlapping the Neutron network: a problem, exit code 1.
    cluster
        .create_subnet("bad", subnet_spec(Some(&vpc), "10.0.1.0/24", &["other"]))
        .await
        .expect("Subnet bad");
    cluster
        .wait_subnet("bad", "Validated=False", |s| {
            s.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Validated" && c.status == api::ConditionStatus::False)
            })
        })
        .await
        .expect("Subnet bad refused");
    let out = run(&status_args(&[]));
    let text = stdout(&out);
    eprintln!("rovnctl status with Subnet bad:\n{text}");
    assert_eq!(out.status.code(), Some(1), "unhealthy: exit 1\n{text}");
    contains(
        &text,
        "  [problem] Subnet bad: Validated=False (CidrOverlapsRouterNetwork): ",
    );
    contains(
        &text,
        &format!(
            "    fix: choose a cidrBlock outside the Neutron networks of router {vpc} (kubectl \
             get vpc {vpc} -o wide lists them under Router CIDRs): kubectl edit subnet bad\n"
        ),
    );
    contains(&text, "Unhealthy: 1 problem, 2 warnings\n");
    cluster
        .subnets()
        .delete("bad", &Default::default())
        .await
        .expect("delete Subnet bad");

    // 4. The Northbound address from rovn's ConfigMap.
    cluster
        .create_namespace("rovn-system")
        .await
        .expect("rovn-system");
    Api::<ConfigMap>::namespaced(cluster.client().clone(), "rovn-system")
        .create(
            &PostParams::default(),
            &ConfigMap {
                metadata: ObjectMeta {
                    name: Some("rovn-config".into()),
                    ..ObjectMeta::default()
                },
                data: Some(
                    [
                        ("ovn-nb".to_string(), nb.clone()),
                        ("ovn-sb".to_string(), sb.clone()),
                    ]
                    .into(),
                ),
                ..ConfigMap::default()
            },
        )
        .await
        .expect("ConfigMap rovn-config");
    let discovered = ok(&[
        "status",
        "--kubeconfig",
        &kubeconfig,
        "--lease-namespace",
        "default",
    ]);
    contains(
        &discovered,
        &format!("Northbound: {nb} (ConfigMap rovn-system/rovn-config), read from {nb}\n"),
    );

    // 4b. `kubectl rovn`: the plugin found by kubectl on the PATH, using kubectl's
    // kubeconfig and the databases named in the ConfigMap.
    let plugin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_kubectl-rovn"))
        .parent()
        .unwrap()
        .to_owned();
    let path = format!(
        "{}:{}",
        plugin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let kubectl = |args: &[&str]| {
        // Plugins take no kubectl flag before their name: the kubeconfig comes from
        // $KUBECONFIG, as a user's would.
        let mut command = Command::new(testenv::kube::k8s_bins().unwrap().join("kubectl"));
        command.env("PATH", &path).env("KUBECONFIG", &kubeconfig);
        command.args(args).output().expect("kubectl")
    };
    let plugins = kubectl(&["plugin", "list"]);
    contains(&stdout(&plugins), "kubectl-rovn");
    let out = kubectl(&["rovn", "status", "--lease-namespace", "default"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    contains(
        &stdout(&out),
        &format!("Northbound: {nb} (ConfigMap rovn-system/rovn-config)"),
    );
    // trace: a pod to the VM its security groups do not admit, to the other pod.
    let out = kubectl(&["rovn", "trace", "net2/web", "10.0.1.50", "--port", "22"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verdict = stdout(&out);
    eprintln!("kubectl rovn trace:\n{verdict}");
    contains(&verdict, "dropped by Neutron's neutron_pg_drop");
    contains(
        &verdict,
        "fix: openstack security group rule create --ingress --ethertype IPv4 --protocol tcp \
         --dst-port 22",
    );
    let out = kubectl(&["rovn", "trace", "net2/web", "net2/db", "-o", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON verdict");
    assert_eq!(json["verdict"], "delivered", "{json}");
    // A Service destination: its ClusterIP and first TCP port, from the API.
    Api::<Service>::namespaced(cluster.client().clone(), "net2")
        .create(
            &PostParams::default(),
            &Service {
                metadata: ObjectMeta {
                    name: Some("db".into()),
                    ..ObjectMeta::default()
                },
                spec: Some(ServiceSpec {
                    cluster_ip: Some("10.96.0.50".into()),
                    ports: Some(vec![ServicePort {
                        port: 5432,
                        protocol: Some("TCP".into()),
                        ..ServicePort::default()
                    }]),
                    ..ServiceSpec::default()
                }),
                ..Service::default()
            },
        )
        .await
        .expect("Service db");
    let out = kubectl(&["rovn", "trace", "net2/web", "svc/net2/db"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    contains(&stdout(&out), "-> 10.96.0.50 tcp port 5432");
    let out = kubectl(&["rovn", "trace", "net2/web", "net2/nope"]);
    assert!(!out.status.success(), "an unknown pod is an error");
    contains(
        &String::from_utf8_lossy(&out.stderr),
        "pod net2/nope has no rovn port",
    );

    // 5. topology: the tree, with the chassis from SB.
    let topology = |extra: &[&str]| {
        let mut args = vec!["topology", "--ovn-nb", &nb, "--kubeconfig", &kubeconfig];
        args.extend_from_slice(extra);
        ok(&args)
    };
    let tree = topology(&["--ovn-sb", &sb]);
    eprintln!("rovnctl topology:\n{tree}");
    let net = a.network.ls_name();
    contains(&tree, &format!("Neutron router \"router-a\" ({vpc})\n"));
    contains(
        &tree,
        &format!("├── Neutron network \"net-a\" ({net}) 10.0.1.0/24, router 10.0.1.1\n"),
    );
    contains(
        &tree,
        &format!(
            "│   └── VM port \"vm-a\" ({}) {} 10.0.1.50 on {node}",
            a.vm_port.port_id, a.vm_port.mac
        ),
    );
    contains(
        &tree,
        "Subnet net2 10.0.2.0/24, router 10.0.2.1, namespaces net2\n",
    );
    for pod in &pods {
        contains(&tree, &format!("pod net2/{0} ({0}.net2) ", pod.name));
        contains(&tree, &format!(" {} on {node}", pod.ip));
    }
    contains(
        &tree,
        &format!("Neutron router \"router-b\" ({})\n", b.lr_name()),
    );
    contains(&tree, "Vpc ovn-cluster (rovn's router)\n");
    contains(
        &tree,
        "── Subnet ovn-default 10.16.0.0/16, router 10.16.0.1",
    );
    let without_sb = topology(&[]);
    assert!(!without_sb.contains(&format!(" on {node}")), "{without_sb}");

    // 6. --vpc narrows to one router, by display or OVN name.
    for name in ["router-a", vpc.as_str()] {
        let narrowed = topology(&["--vpc", name]);
        contains(&narrowed, "Neutron router \"router-a\"");
        assert!(!narrowed.contains("router-b"), "{narrowed}");
        assert!(!narrowed.contains("ovn-cluster"), "{narrowed}");
    }
    let out = rovnctl(&["topology", "--ovn-nb", &nb, "--vpc", "nope"]);
    assert!(!out.status.success());
    contains(
        &String::from_utf8_lossy(&out.stderr),
        "no router named \"nope\" (its OVN name or Neutron display name)",
    );

    // 7. JSON holds the same.
    let json = topology(&["--ovn-sb", &sb, "-o", "json"]);
    let model: Topology = serde_json::from_str(&json).expect("topology JSON");
    let router = model
        .routers
        .iter()
        .find(|r| r.name == vpc)
        .expect("router-a in JSON");
    assert_eq!(router.display_name.as_deref(), Some("router-a"));
    let neutron = router
        .networks
        .iter()
        .find(|n| n.kind == NetworkKind::NeutronNetwork)
        .expect("net-a");
    assert_eq!(
        (neutron.display_name.as_deref(), neutron.cidrs.as_slice()),
        (Some("net-a"), &["10.0.1.0/24".to_string()][..])
    );
    let vm = &neutron.ports[0];
    assert_eq!(
        (
            vm.kind,
            vm.display_name.as_deref(),
            vm.chassis.as_ref().map(|c| c.name.as_str())
        ),
        (PortKind::Vm, Some("vm-a"), Some(node.as_str()))
    );
    let subnet = router
        .networks
        .iter()
        .find(|n| n.kind == NetworkKind::Subnet)
        .expect("net2");
    let mut pod_names: Vec<&str> = subnet
        .ports
        .iter()
        .filter(|p| p.kind == PortKind::Pod && p.chassis.as_ref().is_some_and(|c| c.name == node))
        .filter_map(|p| p.display_name.as_deref())
        .collect();
    pod_names.sort();
    assert_eq!(pod_names, ["net2/db", "net2/web"]);
    assert!(model.routers.iter().any(|r| r.name == b.lr_name()));

    // 8. DOT that Graphviz draws, and SVG.
    let dot = topology(&["--ovn-sb", &sb, "-o", "dot"]);
    assert!(dot.starts_with("graph rovn {"), "{dot}");
    contains(&dot, "router-a");
    contains(&dot, "net2/web");
    assert!(is_svg(&graphviz(&dot)));
    let svg = topology(&["--ovn-sb", &sb, "-o", "svg", "--vpc", "router-a"]);
    assert!(is_svg(&svg), "{}", &svg[..svg.len().min(200)]);
    // Graphviz writes `-` in SVG text as `&#45;`.
    contains(&svg, "router&#45;a");
    assert!(!svg.contains("router&#45;b"), "narrowed to router-a");
}

#[test]
fn status_names_the_raft_leader_and_an_unreachable_member() {
    let env = OvnEnv::builder()
        .nb_cluster(3)
        .start()
        .expect("3-member NB cluster");
    let remotes = env.nb_remotes();
    let all = remotes.join(",");
    let no_kube = tempfile::tempdir().unwrap();
    let kubeconfig = no_kube.path().join("none");
    let status = || {
        Command::new(env!("CARGO_BIN_EXE_rovnctl"))
            .args(["status", "--ovn-nb", &all])
            .env("KUBECONFIG", &kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("ROVN_OVN_NB")
            .output()
            .expect("run rovnctl")
    };
    let leader = &remotes[env.nb_leader().expect("leader")];
    let out = status();
    let text = stdout(&out);
    eprintln!("rovnctl status of a cluster:\n{text}");
    assert!(out.status.success(), "{text}");
    contains(&text, &format!("  RAFT cluster leader: {leader}\n"));
    contains(
        &text,
        &format!("  {leader}: clustered, leader, connected\n"),
    );
    let followers: Vec<usize> = (0..remotes.len())
        .filter(|i| remotes[*i] != *leader)
        .collect();
    for i in &followers {
        contains(
            &text,
            &format!("  {}: clustered, follower, connected\n", remotes[*i]),
        );
    }
    contains(&text, "Controller: not checked (no kubeconfig)\n");
    contains(&text, "  [warning] Kubernetes: no kubeconfig");

    let down = followers[0];
    env.nb_kill_member(down).expect("kill a follower");
    let out = status();
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    contains(
        &text,
        &format!(
            "  [problem] Northbound server {}: unreachable: ",
            remotes[down]
        ),
    );
    contains(&text, &format!("  RAFT cluster leader: {leader}\n"));
}
