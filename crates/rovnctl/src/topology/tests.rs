//! [`build`], [`Topology::narrow`] and the three renderings on the rows of
//! [`fixture`].

use super::*;
use crate::snapshot::fixture::{self, ISOLATED, NET_A, ROUTER, VM};

fn bindings() -> BTreeMap<String, ChassisName> {
    let on = |name: &str, host: Option<&str>| ChassisName {
        name: name.into(),
        hostname: host.map(str::to_string),
    };
    BTreeMap::from([
        (VM.to_string(), on("node-1", Some("node-1"))),
        ("web.ns2".to_string(), on("node-1", Some("node-1"))),
        ("db.ns2".to_string(), on("node-2", Some("host-2.example"))),
    ])
}

/// A network's kind, display name, CIDRs and gateways.
type NetworkRow<'a> = (NetworkKind, Option<&'a str>, &'a [String], &'a [String]);

fn topology() -> Topology {
    build(&fixture::nb(), Some(&bindings()), &[])
}

#[test]
fn routers_hold_their_networks_and_the_networks_their_workloads() {
    let topology = topology();
    let names: Vec<(&str, RouterOwner, Option<&str>)> = topology
        .routers
        .iter()
        .map(|r| (r.name.as_str(), r.owner, r.display_name.as_deref()))
        .collect();
    assert_eq!(
        names,
        [
            (ROUTER, RouterOwner::Neutron, Some("router-a")),
            ("vpc-b", RouterOwner::Rovn, None),
        ]
    );
    let router = &topology.routers[0];
    let networks: Vec<NetworkRow> = router
        .networks
        .iter()
        .map(|n| {
            (
                n.kind,
                n.display_name.as_deref(),
                n.cidrs.as_slice(),
                n.gateways.as_slice(),
            )
        })
        .collect();
    assert_eq!(
        networks,
        [
            (
                NetworkKind::NeutronNetwork,
                Some("net-a"),
                &["10.0.1.0/24".to_string()][..],
                &["10.0.1.1".to_string()][..],
            ),
            (
                NetworkKind::Subnet,
                Some("net2"),
                &["10.0.2.0/24".to_string()][..],
                &["10.0.2.1".to_string()][..],
            ),
            (
                NetworkKind::NodeLink,
                None,
                &["100.64.0.0/16".to_string()][..],
                &["100.64.0.1".to_string()][..],
            ),
        ]
    );
    let vm = &router.networks[0].ports[0];
    assert_eq!(
        (vm.kind, vm.name.as_str(), vm.display_name.as_deref()),
        (PortKind::Vm, VM, Some("vm-a"))
    );
    assert_eq!(vm.addresses, ["fa:16:3e:00:00:50 10.0.1.50"]);
    assert_eq!(vm.chassis.as_ref().map(|c| c.name.as_str()), Some("node-1"));
    assert_eq!(
        router.networks[0].ports.len(),
        1,
        "the router port is not a workload"
    );
    let pods: Vec<(&str, Option<&str>)> = router.networks[1]
        .ports
        .iter()
        .map(|p| {
            (
                p.display_name.as_deref().unwrap(),
                p.chassis.as_ref().map(|c| c.name.as_str()),
            )
        })
        .collect();
    assert_eq!(
        pods,
        [("ns2/db", Some("node-2")), ("ns2/web", Some("node-1"))]
    );
    let node = &router.networks[2].ports[0];
    assert_eq!(
        (
            node.kind,
            node.display_name.as_deref(),
            node.chassis.as_ref()
        ),
        (PortKind::Node, Some("node-1"), None)
    );
    assert_eq!(topology.unrouted.len(), 1);
    assert_eq!(topology.unrouted[0].switch, ISOLATED);
    assert_eq!(
        topology.unrouted[0].ports[0].display_name.as_deref(),
        Some("vm-iso")
    );
}

#[test]
fn the_api_gives_subnets_their_cidr_block_and_namespaces() {
    let subnets = [ApiSubnet {
        name: "net2".into(),
        cidrs: vec!["10.0.2.0/24".into(), "fd00:2::/64".into()],
        namespaces: vec!["ns2".into()],
    }];
    let topology = build(&fixture::nb(), None, &subnets);
    let net2 = &topology.routers[0].networks[1];
    assert_eq!(net2.cidrs, ["10.0.2.0/24", "fd00:2::/64"]);
    assert_eq!(net2.namespaces, ["ns2"]);
    assert!(!topology.chassis_read);
    assert!(net2.ports.iter().all(|p| p.chassis.is_none()));
}

#[test]
fn narrowing_keeps_one_router_by_ovn_or_display_name() {
    for name in [ROUTER, "router-a"] {
        let narrowed = topology().narrow(name).unwrap();
        assert_eq!(narrowed.routers.len(), 1, "{name}");
        assert_eq!(narrowed.routers[0].name, ROUTER);
        assert!(narrowed.unrouted.is_empty());
    }
    assert_eq!(topology().narrow("vpc-b").unwrap().routers[0].name, "vpc-b");
    let error = topology().narrow("nope").unwrap_err().to_string();
    assert!(
        error.contains(&format!(
            "no router named \"nope\" (its OVN name or Neutron display name); the routers are: \
             Neutron router \"router-a\" ({ROUTER}), Vpc vpc-b (rovn's router)"
        )),
        "{error}"
    );
}

#[test]
fn the_tree_shows_every_router_network_and_workload() {
    let tree = render_tree(&topology());
    let expected = format!(
        "Neutron router \"router-a\" ({ROUTER})
├── Neutron network \"net-a\" ({NET_A}) 10.0.1.0/24, router 10.0.1.1
│   └── VM port \"vm-a\" ({VM}) fa:16:3e:00:00:50 10.0.1.50 on node-1
├── Subnet net2 10.0.2.0/24, router 10.0.2.1
│   ├── pod ns2/db (db.ns2) 0a:58:0a:00:02:06 10.0.2.6 on node-2 (host host-2.example)
│   └── pod ns2/web (web.ns2) 0a:58:0a:00:02:05 10.0.2.5 on node-1
└── node link rovn-nodes-{ROUTER} 100.64.0.0/16, router 100.64.0.1
    └── node node-1 (rovn-node/{ROUTER}/node-1) 0a:52:64:40:00:02 100.64.0.2, not bound

Vpc vpc-b (rovn's router)
└── Subnet net3 10.0.3.0/24, router 10.0.3.1
    └── pod ns3/app (app.ns3) 0a:58:0a:00:03:05 10.0.3.5, not bound

Networks on no router
└── Neutron network \"isolated\" ({ISOLATED})
    └── VM port \"vm-iso\" (77777777-7777-7777-7777-777777777777) fa:16:3e:00:00:77 192.168.7.7, not bound
"
    );
    assert_eq!(tree, expected, "\n{tree}");
    let without_sb = render_tree(&build(&fixture::nb(), None, &[]));
    assert!(!without_sb.contains("not bound"), "{without_sb}");
    assert!(!without_sb.contains(" on node-"), "{without_sb}");
    assert_eq!(
        render_tree(&build(&NbSnapshot::default(), None, &[])),
        "no router and no network in the Northbound database\n"
    );
}

#[test]
fn json_holds_the_same_model() {
    let topology = topology();
    let json = serde_json::to_value(&topology).unwrap();
    assert_eq!(json["routers"][0]["displayName"], "router-a");
    assert_eq!(json["routers"][0]["owner"], "neutron");
    assert_eq!(json["routers"][0]["networks"][0]["kind"], "neutron-network");
    assert_eq!(json["routers"][0]["networks"][1]["ports"][1]["kind"], "pod");
    assert_eq!(
        json["routers"][0]["networks"][1]["ports"][1]["chassis"]["name"],
        "node-1"
    );
    let back: Topology = serde_json::from_value(json).unwrap();
    assert_eq!(back, topology);
}

#[test]
fn dot_declares_each_node_once_and_links_routers_networks_and_ports() {
    let dot = render_dot(&topology());
    assert!(dot.starts_with("graph rovn {\n"), "{dot}");
    assert!(dot.ends_with("}\n"), "{dot}");
    assert!(
        dot.contains(&format!(
            "\"router/{ROUTER}\" [shape=octagon, fillcolor=\"#f4cccc\", label=\"router-a\\n{ROUTER}\"];"
        )),
        "{dot}"
    );
    assert!(
        dot.contains(&format!(
            "\"router/{ROUTER}\" -- \"switch/{NET_A}\" [label=\"10.0.1.1\"];"
        )),
        "{dot}"
    );
    assert!(
        dot.contains(&format!("\"switch/{NET_A}\" -- \"port/{VM}\";")),
        "{dot}"
    );
    assert!(
        dot.contains(
            "\"port/web.ns2\" [shape=ellipse, fillcolor=\"#d9ead3\", \
             label=\"ns2/web\\n0a:58:0a:00:02:05 10.0.2.5\\non node-1\"];"
        ),
        "{dot}"
    );
    for id in [
        format!("\"router/{ROUTER}\" [shape"),
        "\"switch/net2\" [shape".to_string(),
    ] {
        assert_eq!(dot.matches(&id).count(), 1, "{id} declared once: {dot}");
    }
    assert!(dot.contains(&format!("\"switch/{ISOLATED}\" [")), "{dot}");
    assert!(
        dot.contains(&format!(
            "\"switch/rovn-nodes-{ROUTER}\" [shape=box, fillcolor=\"#fff2cc\", \
             label=\"rovn-nodes-{ROUTER}\\n100.64.0.0/16\"];"
        )),
        "{dot}"
    );
}

#[test]
fn dot_labels_are_escaped() {
    assert_eq!(
        dot_label(&["a \"b\"".into(), "c\\d".into()]),
        "\"a \\\"b\\\"\\nc\\\\d\""
    );
}

#[test]
fn a_missing_dot_program_is_a_clear_error() {
    let error = render_svg(Path::new("/nonexistent/dot"), "graph g {}")
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("/nonexistent/dot not found: -o svg runs Graphviz's dot"),
        "{error}"
    );
}
