//! `rovnctl diagnose --pod NS/POD --to IP` against real NB/SB databases and
//! ovn-northd: Neutron Zed's rows for a router, a network and a VM port in a
//! security group; our Subnet switch joined to the router with two pods;
//! NetworkPolicy rows in the shape the controller writes them. ovn-trace
//! reads the logical flows northd makes of them (no chassis needed).

use std::process::{Command, Output};

use rovnctl::flow::{Diagnosis, PolicyDirection, Verdict};
use testenv::neutron::{NeutronNetwork, NeutronRouter, SecurityGroup, VmPort};
use testenv::ovn::OvnEnv;

/// Our router port on the Neutron router, and its MAC (outside fa:16:3e).
const ROUTER_PORT: &str = "rovn-net2-5f3a9c21";
const ROUTER_MAC: &str = "0a:58:0a:00:02:01";
const EGRESS_POLICY: &str = "rovn_np_3c1d0e5f7a2b4c6d";
const INGRESS_POLICY: &str = "rovn_np_9e8f7a6b5c4d3e2f";

/// `external_ids` of a row of ours, as `ovn-nbctl create` arguments.
fn ours(kind: &str, object: &str) -> Vec<String> {
    vec![
        "external_ids:\"rovn:owner\"=rovn".to_string(),
        format!("external_ids:\"rovn:kind\"=\"{kind}\""),
        format!("external_ids:\"rovn:object\"=\"{object}\""),
    ]
}

fn nbctl(env: &OvnEnv, args: Vec<String>) {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    env.nbctl(&args).unwrap();
}

/// Returns once northd has turned every NB change so far into logical flows
/// in SB (`nb_cfg` → `sb_cfg`, ovn-nbctl's own barrier).
fn northd_caught_up(env: &OvnEnv) {
    env.nbctl(&["--wait=sb", "sync"]).unwrap();
}

/// Our Subnet `net2` (10.0.2.0/24) on `router` with the pods `ns2/client`
/// (10.0.2.5) and `ns2/web` (10.0.2.6), as the controller writes them.
fn add_subnet_with_pods(env: &OvnEnv, router: &NeutronRouter) {
    let subnet = ours("subnet", "net2");
    let mut args: Vec<String> = vec!["--".into(), "create".into(), "Logical_Switch".into()];
    args.push("name=net2".into());
    args.extend(subnet.clone());
    args.extend([
        "--".into(),
        "--id=@lrp".into(),
        "create".into(),
        "Logical_Router_Port".into(),
        format!("name={ROUTER_PORT}"),
        format!("mac=\"{ROUTER_MAC}\""),
        "networks=\"10.0.2.1/24\"".into(),
    ]);
    args.extend(subnet.clone());
    args.extend([
        "--".into(),
        "add".into(),
        "Logical_Router".into(),
        router.lr_name(),
        "ports".into(),
        "@lrp".into(),
    ]);
    nbctl(env, args);
    add_port(
        env,
        "rovn-net2-lsp",
        &["type=router", "addresses=router"],
        &[format!("options:router-port={ROUTER_PORT}")],
        subnet,
    );
    for (pod, last) in [("client", 5), ("web", 6)] {
        let entry = format!("\"0a:58:0a:00:02:{last:02x} 10.0.2.{last}\"");
        let mut ids = ours("pod", &format!("ns2/{pod}"));
        ids.extend([
            "external_ids:\"rovn:pod_namespace\"=ns2".to_string(),
            format!("external_ids:\"rovn:pod_name\"={pod}"),
            "external_ids:\"rovn:subnet\"=net2".to_string(),
        ]);
        add_port(
            env,
            &format!("{pod}.ns2"),
            &[],
            &[
                format!("addresses={entry}"),
                format!("port_security={entry}"),
            ],
            ids,
        );
    }
}

fn add_port(env: &OvnEnv, name: &str, columns: &[&str], more: &[String], ids: Vec<String>) {
    let mut args: Vec<String> = vec![
        "--".into(),
        "--id=@lsp".into(),
        "create".into(),
        "Logical_Switch_Port".into(),
        format!("name={name}"),
    ];
    args.extend(columns.iter().map(|c| c.to_string()));
    args.extend(more.iter().cloned());
    args.extend(ids);
    args.extend([
        "--".into(),
        "add".into(),
        "Logical_Switch".into(),
        "net2".into(),
        "ports".into(),
        "@lsp".into(),
    ]);
    nbctl(env, args);
}

/// A NetworkPolicy's rows: its Port_Group `group` selecting `pods`, its
/// ACLs (direction, priority, match, action, rule), its address sets.
fn add_policy(
    env: &OvnEnv,
    policy: &str,
    group: &str,
    pods: &[&str],
    acls: &[(&str, i64, String, &str, &str)],
    address_sets: &[(String, &str)],
) {
    let owner = ours("network-policy", policy);
    let mut args: Vec<String> = Vec::new();
    for (name, addresses) in address_sets {
        args.extend([
            "--".into(),
            "create".into(),
            "Address_Set".into(),
            format!("name={name}"),
            format!("addresses=\"{addresses}\""),
        ]);
        args.extend(owner.clone());
    }
    let mut ids = Vec::new();
    for (i, (direction, priority, match_, action, rule)) in acls.iter().enumerate() {
        args.extend([
            "--".into(),
            format!("--id=@acl{i}"),
            "create".into(),
            "ACL".into(),
            format!("direction={direction}"),
            format!("priority={priority}"),
            format!("match=\"{}\"", match_.replace('"', "\\\"")),
            format!("action={action}"),
            format!("external_ids:\"rovn:rule\"={rule}"),
        ]);
        if *direction == "from-lport" {
            args.push("options:apply-after-lb=true".into());
        }
        args.extend(owner.clone());
        ids.push(format!("@acl{i}"));
    }
    let mut ports = Vec::new();
    for (i, pod) in pods.iter().enumerate() {
        args.extend([
            "--".into(),
            format!("--id=@port{i}"),
            "get".into(),
            "Logical_Switch_Port".into(),
            pod.to_string(),
        ]);
        ports.push(format!("@port{i}"));
    }
    args.extend([
        "--".into(),
        "create".into(),
        "Port_Group".into(),
        format!("name={group}"),
        format!("ports=[{}]", ports.join(",")),
        format!("acls=[{}]", ids.join(",")),
    ]);
    args.extend(owner);
    nbctl(env, args);
}

fn rovnctl(env: &OvnEnv, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rovnctl"))
        .arg("diagnose")
        .args(["--ovn-nb", &env.nb_remote()])
        .args(["--ovn-sb", &env.sb_remote().unwrap()])
        .args(args)
        .output()
        .expect("run rovnctl")
}

/// `rovnctl diagnose --pod ns2/client --to IP --port PORT [extra]`'s stdout.
fn trace(env: &OvnEnv, to: &str, port: u16, extra: &[&str]) -> String {
    let port = port.to_string();
    let mut args = vec!["--pod", "ns2/client", "--to", to, "--port", &port];
    args.extend(extra);
    let out = rovnctl(env, &args);
    assert!(
        out.status.success(),
        "rovnctl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

struct Lab {
    env: OvnEnv,
    sg: SecurityGroup,
    vm: VmPort,
    router: NeutronRouter,
    net1: NeutronNetwork,
}

fn lab() -> Lab {
    let env = OvnEnv::builder().northd().start().unwrap();
    let mut router = NeutronRouter::create(&env, "router1").unwrap();
    let net1 = NeutronNetwork::create(&env, "net1", "10.0.1.0/24").unwrap();
    router.add_interface(&env, &net1).unwrap();
    let sg = SecurityGroup::create(&env).unwrap();
    let vm = net1
        .add_vm_port(&env, "vm1-port", "10.0.1.50", "chassis-1", &sg)
        .unwrap();
    add_subnet_with_pods(&env, &router);
    northd_caught_up(&env);
    Lab {
        env,
        sg,
        vm,
        router,
        net1,
    }
}

#[test]
fn names_which_filter_drops_a_pod_connection_and_where_it_goes_otherwise() {
    let Lab {
        env,
        sg,
        vm,
        router,
        net1,
    } = lab();
    let path = format!(
        "path: switch net2 -> router {} (Neutron router \"router1\") -> switch {} \
         (Neutron network \"net1\")",
        router.lr_name(),
        net1.ls_name()
    );

    // 1. The VM's security group admits nothing from the pods.
    let out = trace(&env, "10.0.1.50", 22, &[]);
    assert!(
        out.contains("-> 10.0.1.50 tcp port 22, a NEW connection"),
        "{out}"
    );
    assert!(out.contains(&path), "{out}");
    assert!(
        out.contains(&format!(
            "verdict: dropped by Neutron's neutron_pg_drop: no security group of Neutron port {} \
             (\"vm1-port\", compute:nova, {} 10.0.1.50)",
            vm.port_id, vm.mac
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("security groups: {}", sg.id)),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "fix: openstack security group rule create --ingress --ethertype IPv4 --protocol tcp \
             --dst-port 22 --remote-ip 10.0.2.0/24 {}",
            sg.id
        )),
        "{out}"
    );

    // 2. The rule the fix gives admits it.
    sg.add_rule_allowing(&env, "10.0.2.0/24").unwrap();
    northd_caught_up(&env);
    let out = trace(&env, "10.0.1.50", 22, &[]);
    assert!(
        out.contains(&format!(
            "verdict: delivered to Neutron port {} (\"vm1-port\"",
            vm.port_id
        )),
        "{out}"
    );
    assert!(out.contains(&path), "{out}");

    // 3. An egress policy on the client admitting only tcp 8080 to the VM.
    let x = EGRESS_POLICY;
    add_policy(
        &env,
        "ns2/only-8080",
        x,
        &["client.ns2"],
        &[
            (
                "from-lport",
                2000,
                format!("inport == @{x} && ip"),
                "drop",
                "egress-deny",
            ),
            (
                "from-lport",
                2001,
                format!(
                    "inport == @{x} && ip4 && ip4.dst == ${x}_eg0_ip4 && tcp && tcp.dst == 8080"
                ),
                "allow-related",
                "egress-0",
            ),
        ],
        &[(format!("{x}_eg0_ip4"), "10.0.1.50")],
    );
    northd_caught_up(&env);
    let out = trace(&env, "10.0.1.50", 22, &[]);
    assert!(
        out.contains("verdict: dropped by NetworkPolicy ns2/only-8080 (egress of ns2/client)"),
        "{out}"
    );
    assert!(
        out.contains("rule egress-deny: from-lport priority 2000 drop"),
        "{out}"
    );
    assert!(
        out.contains(
            "fix: add an egress rule admitting 10.0.1.50 on tcp port 22 to NetworkPolicy \
             ns2/only-8080, or allow it in another NetworkPolicy selecting ns2/client"
        ),
        "{out}"
    );
    assert!(
        out.contains("path: switch net2\n"),
        "dropped on the pod's switch: {out}"
    );
    let out = trace(&env, "10.0.1.50", 8080, &[]);
    assert!(
        out.contains(&format!(
            "verdict: delivered to Neutron port {}",
            vm.port_id
        )),
        "{out}"
    );

    // 4. The egress policy goes; an ingress default-deny policy on web.
    env.nbctl(&["pg-del", x]).unwrap();
    env.nbctl(&["destroy", "Address_Set", &format!("{x}_eg0_ip4")])
        .unwrap();
    let y = INGRESS_POLICY;
    add_policy(
        &env,
        "ns2/deny-all",
        y,
        &["web.ns2"],
        &[(
            "to-lport",
            2000,
            format!("outport == @{y} && ip"),
            "drop",
            "ingress-deny",
        )],
        &[],
    );
    northd_caught_up(&env);
    let out = trace(&env, "10.0.2.6", 80, &[]);
    assert!(
        out.contains(
            "verdict: dropped by NetworkPolicy ns2/deny-all (ingress of the destination pod ns2/web)"
        ),
        "{out}"
    );
    assert!(
        out.contains("ingress rule admitting ns2/client (10.0.2.5) on tcp port 80"),
        "{out}"
    );

    // 5. The same verdict as JSON.
    let json = trace(&env, "10.0.2.6", 80, &["-o", "json"]);
    let value: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(value["verdict"], "dropped-by-network-policy", "{json}");
    assert_eq!(value["acl"]["rule"], "ingress-deny", "{json}");
    let diagnosis: Diagnosis = serde_json::from_str(&json).unwrap();
    assert_eq!(diagnosis.flow.port, "client.ns2");
    assert_eq!(
        diagnosis.flow.eth_dst, "0a:58:0a:00:02:06",
        "web's MAC: same switch"
    );
    let Verdict::DroppedByNetworkPolicy {
        policy,
        direction,
        pod,
        ..
    } = diagnosis.verdict
    else {
        panic!("{json}");
    };
    assert_eq!(policy.as_deref(), Some("ns2/deny-all"));
    assert_eq!(
        (direction, pod.as_str()),
        (PolicyDirection::Ingress, "ns2/web")
    );
    let json = trace(&env, "10.0.1.50", 22, &["-o", "json"]);
    let delivered: Diagnosis = serde_json::from_str(&json).unwrap();
    assert!(
        matches!(&delivered.verdict, Verdict::Delivered { port } if port.name == vm.port_id),
        "{json}"
    );
}

#[test]
fn a_pod_without_port_is_a_clear_error() {
    let Lab { env, .. } = lab();
    let out = rovnctl(&env, &["--pod", "ns2/ghost", "--to", "10.0.1.50"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("pod ns2/ghost has no Logical_Switch_Port in the Northbound database"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}
