//! [`build_flow`] and [`explain`] on the Northbound rows behind the captured
//! traces of `testdata/ovn-trace/` (OVN 23.03, `ovn-trace --detailed
//! --no-friendly-names --ct=trk,new`×8): a Neutron router `router1` with
//! network `net1` (10.0.1.0/24) and VM port `4444…` (10.0.1.50) in
//! security group `5555…`, and our Subnet `net2` (10.0.2.0/24) with pods
//! `ns2/client` (10.0.2.5) and `ns2/web` (10.0.2.6).

use std::collections::BTreeMap;

use ovn::nb::{Acl, LogicalRouter, LogicalRouterPort, LogicalSwitch, PortGroup};

use super::*;

const NET2: &str = "bb04c5d9-f11a-4a55-ac92-07b003339807";
const NET1: &str = "69b0c3d3-1a32-46a3-9c26-d35c0c5084b4";
const ROUTER: &str = "ff8200a9-3b2b-42db-aedd-4c930c281eba";
const ROUTER_NAME: &str = "neutron-11111111-1111-1111-1111-111111111111";
const NET1_NAME: &str = "neutron-22222222-2222-2222-2222-222222222222";
const IFACE: &str = "33333333-3333-3333-3333-333333333333";
const VM: &str = "44444444-4444-4444-4444-444444444444";
const SG: &str = "55555555-5555-5555-5555-555555555555";
const SG_PG: &str = "pg_55555555_5555_5555_5555_555555555555";
const EGRESS_PG: &str = "rovn_np_00112233aabbccdd";
const INGRESS_PG: &str = "rovn_np_99887766aabbccdd";

fn ids(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn uuid(s: &str) -> Uuid {
    Uuid::parse_str(s).unwrap()
}

struct Rows {
    nb: NbSnapshot,
    next: u128,
}

impl Rows {
    fn fresh(&mut self) -> Uuid {
        self.next += 1;
        Uuid::from_u128(self.next)
    }

    fn lsp(
        &mut self,
        name: &str,
        type_: &str,
        address: &str,
        external_ids: BTreeMap<String, String>,
    ) -> Uuid {
        let uuid = self.fresh();
        let mut port = LogicalSwitchPort {
            uuid,
            name: name.into(),
            type_: type_.into(),
            addresses: [address.to_string()].into(),
            external_ids,
            ..LogicalSwitchPort::default()
        };
        if type_ == "router" {
            let lrp = if name == IFACE {
                format!("lrp-{IFACE}")
            } else {
                "rovn-net2-abcdef01".to_string()
            };
            port.options.insert("router-port".into(), lrp);
        }
        self.nb.switch_ports.insert(uuid, port);
        uuid
    }

    fn lrp(&mut self, name: &str, mac: &str, network: &str) -> Uuid {
        let uuid = self.fresh();
        self.nb.router_ports.insert(
            uuid,
            LogicalRouterPort {
                uuid,
                name: name.into(),
                mac: mac.into(),
                networks: [network.to_string()].into(),
                ..LogicalRouterPort::default()
            },
        );
        uuid
    }

    fn acl(
        &mut self,
        direction: &str,
        priority: i64,
        match_: &str,
        action: &str,
        external_ids: BTreeMap<String, String>,
    ) -> Uuid {
        let uuid = self.fresh();
        self.nb.acls.insert(
            uuid,
            Acl {
                uuid,
                direction: direction.into(),
                priority,
                match_: match_.into(),
                action: action.into(),
                external_ids,
                ..Acl::default()
            },
        );
        uuid
    }

    fn group(
        &mut self,
        name: &str,
        ports: &[Uuid],
        acls: Vec<Uuid>,
        external_ids: BTreeMap<String, String>,
    ) {
        let uuid = self.fresh();
        self.nb.port_groups.push(PortGroup {
            uuid,
            name: name.into(),
            ports: ports.iter().copied().collect(),
            acls: acls.into_iter().collect(),
            external_ids,
        });
    }
}

fn policy_ids(policy: &str, rule: Option<&str>) -> BTreeMap<String, String> {
    let mut ids = Owner::new(Kind::NetworkPolicy, policy).external_ids();
    if let Some(rule) = rule {
        ids.insert(RULE_KEY.into(), rule.into());
    }
    ids
}

/// The NB rows of the environment the traces were captured in.
fn nb() -> NbSnapshot {
    let mut rows = Rows {
        nb: NbSnapshot::default(),
        next: 0,
    };
    let subnet = Owner::subnet("net2").external_ids();
    let client = rows.lsp(
        "client.ns2",
        "",
        "0a:58:0a:00:02:05 10.0.2.5",
        Owner::pod("ns2", "client").external_ids(),
    );
    let web = rows.lsp(
        "web.ns2",
        "",
        "0a:58:0a:00:02:06 10.0.2.6",
        Owner::pod("ns2", "web").external_ids(),
    );
    let net2_router = rows.lsp("rovn-net2-lsp", "router", "router", subnet.clone());
    let iface = rows.lsp(
        IFACE,
        "router",
        "router",
        ids(&[(NEUTRON_DEVICE_OWNER, "network:router_interface")]),
    );
    let vm = rows.lsp(
        VM,
        "",
        "fa:16:3e:00:00:50 10.0.1.50",
        ids(&[
            (NEUTRON_PORT_NAME, "vm1-port"),
            (NEUTRON_DEVICE_OWNER, "compute:nova"),
            (NEUTRON_SECURITY_GROUP_IDS, SG),
        ]),
    );
    rows.nb.switches = vec![
        LogicalSwitch {
            uuid: uuid(NET2),
            name: "net2".into(),
            ports: [client, web, net2_router].into(),
            external_ids: subnet,
            ..LogicalSwitch::default()
        },
        LogicalSwitch {
            uuid: uuid(NET1),
            name: NET1_NAME.into(),
            ports: [iface, vm].into(),
            external_ids: ids(&[(NEUTRON_NETWORK_NAME, "net1")]),
            ..LogicalSwitch::default()
        },
    ];
    let ours = rows.lrp("rovn-net2-abcdef01", "0a:58:0a:00:02:01", "10.0.2.1/24");
    let theirs = rows.lrp(&format!("lrp-{IFACE}"), "fa:16:3e:00:00:01", "10.0.1.1/24");
    rows.nb.routers = vec![LogicalRouter {
        uuid: uuid(ROUTER),
        name: ROUTER_NAME.into(),
        ports: [ours, theirs].into(),
        external_ids: ids(&[(NEUTRON_ROUTER_NAME, "router1")]),
        ..LogicalRouter::default()
    }];

    let drop_in = rows.acl(
        "from-lport",
        1001,
        "inport == @neutron_pg_drop && ip",
        "drop",
        BTreeMap::new(),
    );
    let drop_out = rows.acl(
        "to-lport",
        1001,
        "outport == @neutron_pg_drop && ip",
        "drop",
        BTreeMap::new(),
    );
    rows.group(
        DROP_PORT_GROUP,
        &[vm],
        vec![drop_in, drop_out],
        BTreeMap::new(),
    );
    let rule = |id: &str| ids(&[(NEUTRON_RULE_ID, id)]);
    let sg_acls = vec![
        rows.acl(
            "from-lport",
            1002,
            &format!("inport == @{SG_PG} && ip4"),
            "allow-related",
            rule("r0"),
        ),
        rows.acl(
            "to-lport",
            1002,
            &format!("outport == @{SG_PG} && ip4 && ip4.src == ${SG_PG}_ip4"),
            "allow-related",
            rule("r2"),
        ),
        rows.acl(
            "to-lport",
            1002,
            &format!("outport == @{SG_PG} && ip4 && tcp && tcp.dst == 23"),
            "drop",
            rule("r-drop-23"),
        ),
        rows.acl(
            "to-lport",
            1002,
            &format!("outport == @{SG_PG} && ip4 && tcp && tcp.dst == 24"),
            "reject",
            rule("r-reject-24"),
        ),
        rows.acl(
            "to-lport",
            1002,
            &format!("outport == @{SG_PG} && ip4 && ip4.src == 10.0.2.0/24"),
            "allow-related",
            rule("r-pods"),
        ),
    ];
    rows.group(
        SG_PG,
        &[vm],
        sg_acls,
        ids(&[("neutron:security_group_id", SG)]),
    );

    let egress = vec![
        rows.acl("from-lport", 2000, &format!("inport == @{EGRESS_PG} && ip"), "drop", policy_ids("ns2/only-8080", Some("egress-deny"))),
        rows.acl(
            "from-lport",
            2001,
            &format!("inport == @{EGRESS_PG} && ip4 && ip4.dst == ${EGRESS_PG}_eg0_ip4 && tcp && tcp.dst == 8080"),
            "allow-related",
            policy_ids("ns2/only-8080", Some("egress-0")),
        ),
    ];
    rows.group(
        EGRESS_PG,
        &[client],
        egress,
        policy_ids("ns2/only-8080", None),
    );
    let ingress = vec![rows.acl(
        "to-lport",
        2000,
        &format!("outport == @{INGRESS_PG} && ip"),
        "drop",
        policy_ids("ns2/deny-all", Some("ingress-deny")),
    )];
    rows.group(
        INGRESS_PG,
        &[web],
        ingress,
        policy_ids("ns2/deny-all", None),
    );
    rows.nb
}

fn flow(to: &str, protocol: Protocol, port: Option<u16>) -> Flow {
    let request = FlowRequest::new("ns2/client", to.parse().unwrap(), protocol, port).unwrap();
    build_flow(&nb(), &request).unwrap()
}

fn diagnose(capture: &str, flow: &Flow) -> Diagnosis {
    explain(&nb(), flow, &trace::parse(capture))
}

fn path(diagnosis: &Diagnosis) -> Vec<&str> {
    diagnosis.path.iter().map(|h| h.name.as_str()).collect()
}

#[test]
fn the_flow_leaves_the_pod_towards_its_router_or_its_neighbour() {
    let to_vm = flow("10.0.1.50", Protocol::Tcp, Some(22));
    assert_eq!(to_vm.port, "client.ns2");
    assert_eq!(to_vm.switch, "net2");
    assert_eq!(to_vm.eth_dst, "0a:58:0a:00:02:01", "the router port's MAC");
    assert_eq!(to_vm.router_port.as_deref(), Some("rovn-net2-abcdef01"));
    assert_eq!(to_vm.pod_cidr, Some("10.0.2.0/24".parse().unwrap()));
    assert_eq!(
        to_vm.microflow,
        "inport == \"client.ns2\" && eth.src == 0a:58:0a:00:02:05 && eth.dst == 0a:58:0a:00:02:01 \
         && ip4.src == 10.0.2.5 && ip4.dst == 10.0.1.50 && ip.ttl == 64 && tcp && tcp.dst == 22"
    );
    let to_web = flow("10.0.2.6", Protocol::Udp, None);
    assert_eq!(
        to_web.eth_dst, "0a:58:0a:00:02:06",
        "a port of the same switch"
    );
    assert!(
        to_web.microflow.ends_with("&& udp && udp.dst == 80"),
        "{}",
        to_web.microflow
    );
    let ping = flow("10.0.1.50", Protocol::Icmp, None);
    assert!(
        ping.microflow
            .ends_with("&& icmp4 && icmp4.type == 8 && icmp4.code == 0")
    );
    assert_eq!(ping.dst_port, None);

    let args = trace_args(&to_vm, "unix:/sb.sock", None);
    assert_eq!(args[0], "--db=unix:/sb.sock");
    assert_eq!(
        args.iter().filter(|a| *a == "--ct=trk,new").count(),
        CT_LOOKUPS
    );
    assert_eq!(
        &args[args.len() - 2..],
        ["net2".to_string(), to_vm.microflow.clone()]
    );
}

#[test]
fn a_pod_without_port_or_a_bad_request_is_a_clear_error() {
    let request = FlowRequest::new(
        "ns2/ghost",
        "10.0.1.50".parse().unwrap(),
        Protocol::Tcp,
        None,
    )
    .unwrap();
    let error = build_flow(&nb(), &request).unwrap_err().to_string();
    assert!(
        error.contains("pod ns2/ghost has no Logical_Switch_Port"),
        "{error}"
    );
    assert!(error.contains("rovn:object=ns2/ghost"), "{error}");
    for pod in ["ghost", "/ghost", "ns2/", "a/b/c"] {
        assert!(
            FlowRequest::new(pod, Ipv4Addr::LOCALHOST, Protocol::Tcp, None).is_err(),
            "{pod}"
        );
    }
    assert!(FlowRequest::new("ns2/client", Ipv4Addr::LOCALHOST, Protocol::Icmp, Some(1)).is_err());
}

#[test]
fn neutron_pg_drop_names_the_vm_port_its_groups_and_the_rule_to_add() {
    let flow = flow("10.0.1.50", Protocol::Tcp, Some(22));
    let diagnosis = diagnose(include_str!("../../testdata/ovn-trace/pg-drop.txt"), &flow);
    assert_eq!(path(&diagnosis), ["net2", ROUTER_NAME, NET1_NAME]);
    let Verdict::DroppedByNeutronPgDrop {
        port,
        security_groups,
        acl,
        fixes,
    } = &diagnosis.verdict
    else {
        panic!("{diagnosis:#?}");
    };
    assert_eq!(port.name, VM);
    assert_eq!(security_groups, &[SG.to_string()]);
    assert_eq!(acl.match_, "outport == @neutron_pg_drop && ip");
    assert_eq!(
        (acl.direction.as_str(), acl.priority),
        ("to-lport", Some(1001))
    );
    assert_eq!(
        fixes,
        &[format!(
            "openstack security group rule create --ingress --ethertype IPv4 --protocol tcp \
             --dst-port 22 --remote-ip 10.0.2.0/24 {SG}"
        )]
    );
    let text = diagnosis.to_string();
    assert!(
        text.contains(&format!(
            "dropped by Neutron's neutron_pg_drop: no security group of Neutron port {VM} \
             (\"vm1-port\", compute:nova, fa:16:3e:00:00:50 10.0.1.50) on switch {NET1_NAME} admits"
        )),
        "{text}"
    );
    assert!(text.contains(&format!("  fix: {}", fixes[0])), "{text}");
    assert!(
        text.contains(&format!(
            "path: switch net2 -> router {ROUTER_NAME} (Neutron router \"router1\") -> switch \
             {NET1_NAME} (Neutron network \"net1\")"
        )),
        "{text}"
    );
}

#[test]
fn delivered_flows_name_the_port_reached() {
    for (capture, port) in [
        (
            include_str!("../../testdata/ovn-trace/delivered-vm.txt"),
            22,
        ),
        (
            include_str!("../../testdata/ovn-trace/np-egress-allowed.txt"),
            8080,
        ),
    ] {
        let diagnosis = diagnose(capture, &flow("10.0.1.50", Protocol::Tcp, Some(port)));
        let Verdict::Delivered { port } = &diagnosis.verdict else {
            panic!("{diagnosis:#?}");
        };
        assert_eq!(port.name, VM);
        assert!(
            matches!(&port.owner, PortOwner::Neutron { port_name: Some(n), .. } if n == "vm1-port")
        );
        assert_eq!(path(&diagnosis), ["net2", ROUTER_NAME, NET1_NAME]);
        assert!(
            diagnosis
                .to_string()
                .contains(&format!("verdict: delivered to Neutron port {VM}"))
        );
    }
}

#[test]
fn network_policy_drops_name_the_policy_and_the_side() {
    let egress = diagnose(
        include_str!("../../testdata/ovn-trace/np-egress-drop.txt"),
        &flow("10.0.1.50", Protocol::Tcp, Some(22)),
    );
    let Verdict::DroppedByNetworkPolicy {
        policy,
        direction,
        pod,
        acl,
        fix,
    } = &egress.verdict
    else {
        panic!("{egress:#?}");
    };
    assert_eq!(policy.as_deref(), Some("ns2/only-8080"));
    assert_eq!(
        (*direction, pod.as_str()),
        (PolicyDirection::Egress, "ns2/client")
    );
    assert_eq!(acl.rule.as_deref(), Some("egress-deny"));
    assert_eq!(acl.stage, "ls_in_acl_after_lb");
    assert!(
        fix.contains(
            "egress rule admitting 10.0.1.50 on tcp port 22 to NetworkPolicy ns2/only-8080"
        ),
        "{fix}"
    );
    assert_eq!(path(&egress), ["net2"]);
    let text = egress.to_string();
    assert!(
        text.contains("verdict: dropped by NetworkPolicy ns2/only-8080 (egress of ns2/client)"),
        "{text}"
    );

    let ingress = diagnose(
        include_str!("../../testdata/ovn-trace/np-ingress-drop.txt"),
        &flow("10.0.2.6", Protocol::Tcp, Some(80)),
    );
    let Verdict::DroppedByNetworkPolicy {
        policy,
        direction,
        pod,
        acl,
        ..
    } = &ingress.verdict
    else {
        panic!("{ingress:#?}");
    };
    assert_eq!(policy.as_deref(), Some("ns2/deny-all"));
    assert_eq!(
        (*direction, pod.as_str()),
        (PolicyDirection::Ingress, "ns2/web")
    );
    assert_eq!(
        (acl.rule.as_deref(), acl.priority),
        (Some("ingress-deny"), Some(2000))
    );
    let text = ingress.to_string();
    assert!(
        text.contains("verdict: dropped by NetworkPolicy ns2/deny-all (ingress of the destination pod ns2/web)"),
        "{text}"
    );
    assert!(
        text.contains("ingress rule admitting ns2/client (10.0.2.5) on tcp port 80"),
        "{text}"
    );
}

#[test]
fn security_group_drop_and_reject_rules_name_the_group() {
    for (capture, port, action) in [
        (
            include_str!("../../testdata/ovn-trace/sg-drop-rule.txt"),
            23,
            "drop",
        ),
        (
            include_str!("../../testdata/ovn-trace/sg-reject-rule.txt"),
            24,
            "reject",
        ),
    ] {
        let diagnosis = diagnose(capture, &flow("10.0.1.50", Protocol::Tcp, Some(port)));
        let Verdict::DroppedBySecurityGroup {
            security_group,
            port: guarded,
            acl,
        } = &diagnosis.verdict
        else {
            panic!("{diagnosis:#?}");
        };
        assert_eq!(security_group, SG);
        assert_eq!(guarded.as_ref().map(|p| p.name.as_str()), Some(VM));
        assert_eq!(acl.action, action);
        assert_eq!(
            acl.neutron_rule.as_deref(),
            Some(format!("r-{action}-{port}").as_str())
        );
        let text = diagnosis.to_string();
        assert!(
            text.contains(&format!("by a rule of Neutron security group {SG}")),
            "{text}"
        );
    }
}

#[test]
fn other_ends_are_told_in_words_with_the_trace_lines() {
    let no_route = diagnose(
        include_str!("../../testdata/ovn-trace/no-route.txt"),
        &flow("192.168.9.9", Protocol::Tcp, None),
    );
    assert_eq!(
        no_route.verdict,
        Verdict::NotDelivered {
            reason: format!(
                "no route to 192.168.9.9 on router {ROUTER_NAME} (Neutron router \"router1\")"
            )
        }
    );
    let text = no_route.to_string();
    assert!(
        text.contains("  trace:\n    ingress(dp=\"ff8200a9"),
        "{text}"
    );
    assert!(
        text.contains("lr_in_ip_routing (northd.c:12045): 1, priority 0"),
        "{text}"
    );
    assert!(text.contains("        drop;"), "{text}");

    let arp = diagnose(
        include_str!("../../testdata/ovn-trace/arp.txt"),
        &flow("10.0.1.77", Protocol::Tcp, None),
    );
    let Verdict::NotDelivered { reason } = &arp.verdict else {
        panic!("{arp:#?}");
    };
    assert!(
        reason.starts_with("the MAC of 10.0.1.77 is unknown on router"),
        "{reason}"
    );
    assert!(
        arp.trace
            .iter()
            .any(|l| l.contains("/* No MAC binding. */")),
        "{:#?}",
        arp.trace
    );

    let router = diagnose(
        include_str!("../../testdata/ovn-trace/router-icmp.txt"),
        &flow("10.0.2.1", Protocol::Icmp, None),
    );
    let Verdict::NotDelivered { reason } = &router.verdict else {
        panic!("{router:#?}");
    };
    assert!(
        reason.starts_with("the packet came back to the pod's own port client.ns2"),
        "{reason}"
    );

    let empty = explain(
        &nb(),
        &flow("10.0.1.50", Protocol::Tcp, None),
        &trace::parse(""),
    );
    assert!(matches!(empty.verdict, Verdict::NotDelivered { .. }));
}

#[test]
fn the_diagnosis_is_json_both_ways() {
    let diagnosis = diagnose(
        include_str!("../../testdata/ovn-trace/np-egress-drop.txt"),
        &flow("10.0.1.50", Protocol::Tcp, Some(22)),
    );
    let json = serde_json::to_value(&diagnosis).unwrap();
    assert_eq!(json["verdict"], "dropped-by-network-policy");
    assert_eq!(json["policy"], "ns2/only-8080");
    assert_eq!(json["direction"], "egress");
    assert_eq!(
        json["acl"]["match"],
        format!("inport == @{EGRESS_PG} && ip")
    );
    assert_eq!(json["flow"]["protocol"], "tcp");
    assert_eq!(json["path"][0]["kind"], "switch");
    let back: Diagnosis = serde_json::from_value(json).unwrap();
    assert_eq!(back, diagnosis);

    let delivered = diagnose(
        include_str!("../../testdata/ovn-trace/delivered-vm.txt"),
        &flow("10.0.1.50", Protocol::Tcp, Some(22)),
    );
    let json = serde_json::to_value(&delivered).unwrap();
    assert_eq!(json["port"]["owner"], "neutron");
    assert_eq!(json["port"]["port_name"], "vm1-port");
    let back: Diagnosis = serde_json::from_value(json).unwrap();
    assert_eq!(back, delivered);
}
