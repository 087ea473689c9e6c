//! The rows of the node links and the one transaction that makes them so.
//!
//! Per served VPC `<vpc>` whose router exists, all owned by `Owner::node_link(<vpc>)`:
//! - Logical_Switch `rovn-nodes-<vpc>`;
//! - Logical_Router_Port `rovn-nodes-<vpc>-lrp<n>` on the VPC's router (the first address of
//!   the node-link network) and its router-type switch port `rovn-nodes-<vpc>-lsp`. A router
//!   port put back (Neutron's repair sync drops foreign ones) gets the next `<n>` and the
//!   switch port's `router-port` changes in the same transaction: ovn-controller (23.03)
//!   recomputes the switch side's patch flows only when its binding changes, and would keep
//!   sending to the port that is gone (the Subnets' router ports have the same rule);
//! - per node, Logical_Switch_Port `rovn-node/<vpc>/<node>` ([`api::node_link`]): an
//!   address of the network kept for as long as the port exists (new nodes get the lowest
//!   free one);
//! - per node and IPv4 InternalIP, a static route `<ip>/32 via <port address>` on the
//!   router.
//!
//! A VPC whose own networks overlap the node-link network gets none (a route to the
//! nodes would take its own addresses). Rows of VPCs no longer served, and of nodes gone,
//! are removed; router ports and routes leave every router holding them.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use api::node_link::{self, NodeLink};
use ipnet::{IpNet, Ipv4Net};
use ovn::nb::{
    LogicalRouter, LogicalRouterPort, LogicalRouterStaticRoute, LogicalSwitch, LogicalSwitchPort,
};
use ovn::owned::{Mine, OwnedTxn, Owner, Refused, RouterPort};

/// Name of VPC `vpc`'s node-link switch.
pub fn switch_name(vpc: &str) -> String {
    format!("rovn-nodes-{vpc}")
}

/// Name of VPC `vpc`'s router port on the node-link network, `generation` times put back
/// (each time under a new name: see [`plan`]).
pub fn lrp_name(vpc: &str, generation: u32) -> String {
    format!("rovn-nodes-{vpc}-lrp{generation}")
}

fn lrp_generation(vpc: &str, name: &str) -> Option<u32> {
    name.strip_prefix(&format!("rovn-nodes-{vpc}-lrp"))?
        .parse()
        .ok()
}

/// Name of the router-type switch port of VPC `vpc`'s node-link switch.
pub fn lsp_name(vpc: &str) -> String {
    format!("rovn-nodes-{vpc}-lsp")
}

/// A served VPC.
#[derive(Debug, Clone)]
pub struct ServedVpc {
    /// Its router, when it exists.
    pub router: Option<LogicalRouter>,
    /// Its accepted Subnets.
    pub subnets: BTreeSet<String>,
    /// Its networks: the Subnets' CIDRs and the Neutron networks on its router.
    pub networks: Vec<IpNet>,
}

/// What one pass works from.
#[derive(Debug, Clone)]
pub struct Observed {
    /// The node-link network.
    pub cidr: Ipv4Net,
    /// The nodes and their InternalIPs.
    pub nodes: BTreeMap<String, Vec<IpAddr>>,
    /// The served VPCs.
    pub vpcs: BTreeMap<String, ServedVpc>,
    /// Every router (to find which holds our router ports and routes).
    pub routers: Vec<LogicalRouter>,
    /// Our node-link switches.
    pub switches: Vec<Mine<LogicalSwitch>>,
    /// Our node-link switch ports (router-type and nodes').
    pub ports: Vec<Mine<LogicalSwitchPort>>,
    /// Our node-link router ports.
    pub router_ports: Vec<Mine<LogicalRouterPort>>,
    /// Our routes to the nodes.
    pub routes: Vec<Mine<LogicalRouterStaticRoute>>,
    /// Addresses given to nodes by earlier passes whose ports the replica does not show
    /// yet, by `(vpc, node)`.
    pub pending: BTreeMap<(String, String), Ipv4Addr>,
}

/// What one pass changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// VPCs whose switch and router port were created or restored.
    pub linked: Vec<String>,
    /// Node ports created, updated or removed: `<vpc>/<node>`.
    pub ports: Vec<String>,
    /// Routes attached or detached: `<vpc> <prefix>`.
    pub routes: Vec<String>,
    /// VPCs whose rows were removed.
    pub unlinked: Vec<String>,
    /// VPCs left without a link because their networks overlap the node-link network.
    pub overlapping: Vec<String>,
    /// Addresses given to new node ports, by `(vpc, node)`.
    pub allocated: BTreeMap<(String, String), Ipv4Addr>,
    /// Rows put back that another client removed (Neutron's repair sync, an operator): the
    /// router port of a VPC whose switch was there, routes to nodes already linked.
    pub restored: usize,
}

impl Changes {
    /// Whether the pass wrote anything.
    pub fn any(&self) -> bool {
        !(self.linked.is_empty()
            && self.ports.is_empty()
            && self.routes.is_empty()
            && self.unlinked.is_empty())
    }
}

fn vpc_of<T>(row: &Mine<T>) -> &str {
    row.owner().object()
}

fn holders(routers: &[LogicalRouter], uuid: ovsdb::Uuid) -> Vec<&LogicalRouter> {
    routers
        .iter()
        .filter(|r| r.ports.contains(&uuid) || r.static_routes.contains(&uuid))
        .collect()
}

/// The router's address on the network and the prefix.
fn gateway(cidr: Ipv4Net) -> Ipv4Net {
    let first = u32::from(cidr.network()) + 1;
    Ipv4Net::new(Ipv4Addr::from(first), cidr.prefix_len()).unwrap_or(cidr)
}

/// The lowest host address of `cidr` after the gateway that is not in `used`.
fn free_address(cidr: Ipv4Net, used: &BTreeSet<Ipv4Addr>) -> Option<Ipv4Addr> {
    let network = u32::from(cidr.network());
    let broadcast = u32::from(cidr.broadcast());
    (network + 2..broadcast)
        .map(Ipv4Addr::from)
        .find(|ip| !used.contains(ip))
}

/// Adds to `txn` what makes the node links as described in the module documentation;
/// returns what it changes.
pub fn plan(txn: &mut OwnedTxn, observed: &Observed) -> Result<Changes, Refused> {
    let mut changes = Changes::default();
    let mut linked = BTreeSet::new();
    for (vpc, served) in &observed.vpcs {
        let Some(router) = &served.router else {
            continue;
        };
        let cidr = IpNet::V4(observed.cidr);
        if served
            .networks
            .iter()
            .any(|n| n.contains(&cidr.network()) || cidr.contains(&n.network()))
        {
            changes.overlapping.push(vpc.clone());
            continue;
        }
        linked.insert(vpc.clone());
        plan_vpc(txn, observed, vpc, served, router, &mut changes)?;
    }
    // VPCs no longer served: their switch (ports go with it), router ports and routes.
    for switch in &observed.switches {
        if !linked.contains(vpc_of(switch)) {
            txn.delete(switch);
            changes.unlinked.push(vpc_of(switch).to_string());
        }
    }
    for port in &observed.router_ports {
        for router in holders(&observed.routers, port.uuid) {
            if !linked.contains(vpc_of(port)) || Some(router.uuid) != vpc_router(observed, port) {
                txn.detach_router_port(router, port);
                changes.unlinked.push(vpc_of(port).to_string());
            }
        }
    }
    for route in &observed.routes {
        for router in holders(&observed.routers, route.uuid) {
            if !linked.contains(vpc_of(route)) || Some(router.uuid) != vpc_router(observed, route) {
                txn.detach_static_route(router, route);
                changes
                    .routes
                    .push(format!("{} -{}", vpc_of(route), route.ip_prefix));
            }
        }
    }
    changes.unlinked.sort();
    changes.unlinked.dedup();
    Ok(changes)
}

fn vpc_router<T>(observed: &Observed, row: &Mine<T>) -> Option<ovsdb::Uuid> {
    let served = observed.vpcs.get(vpc_of(row))?;
    served.router.as_ref().map(|r| r.uuid)
}

fn plan_vpc(
    txn: &mut OwnedTxn,
    observed: &Observed,
    vpc: &str,
    served: &ServedVpc,
    router: &LogicalRouter,
    changes: &mut Changes,
) -> Result<(), Refused> {
    let owner = Owner::node_link(vpc);
    let gateway = gateway(observed.cidr);
    let ours = |name: &str| observed.ports.iter().find(|p| p.name == name);

    // The router port, on this router (a new name when put back).
    let switch = observed.switches.iter().find(|s| vpc_of(s) == vpc);
    let present_lsp =
        ours(&lsp_name(vpc)).filter(|p| switch.is_some_and(|s| s.ports.contains(&p.uuid)));
    let placed = observed
        .router_ports
        .iter()
        .find(|p| vpc_of(p) == vpc && router.ports.contains(&p.uuid));
    let name = match placed {
        Some(port) => port.name.clone(),
        None => {
            let last = present_lsp
                .and_then(|p| p.options.get("router-port"))
                .and_then(|name| lrp_generation(vpc, name));
            lrp_name(vpc, last.map_or(0, |g| g.wrapping_add(1)))
        }
    };
    let lrp = LogicalRouterPort {
        name: name.clone(),
        mac: node_link::mac_of(gateway.addr()),
        networks: [gateway.to_string()].into(),
        ..LogicalRouterPort::default()
    };
    match placed {
        Some(port) if port.mac != lrp.mac || port.networks != lrp.networks => {
            txn.update(port, &lrp, &["mac", "networks"])?;
            changes.linked.push(vpc.to_string());
        }
        Some(_) => {}
        None => {
            let inserted = txn.insert(&owner, &lrp)?;
            txn.attach_router_port(router, RouterPort::Inserted(&inserted));
            changes.linked.push(vpc.to_string());
            changes.restored += usize::from(present_lsp.is_some());
        }
    }

    // The node ports: addresses kept, new ones allocated.
    let mut used: BTreeSet<Ipv4Addr> = observed
        .ports
        .iter()
        .filter(|p| vpc_of(p) == vpc)
        .filter_map(|p| NodeLink::from_port(&p.name, &p.external_ids).ok())
        .map(|link| link.address.addr())
        .collect();
    used.extend(
        observed
            .pending
            .iter()
            .filter(|((v, _), _)| v == vpc)
            .map(|(_, ip)| *ip),
    );
    let mut wanted_ports = Vec::new();
    let mut routes = Vec::new();
    for (node, ips) in &observed.nodes {
        let name = node_link::port_name(vpc, node);
        let existing = ours(&name);
        let known = existing
            .and_then(|p| NodeLink::from_port(&p.name, &p.external_ids).ok())
            .map(|link| link.address.addr())
            .filter(|ip| observed.cidr.contains(ip))
            .or_else(|| {
                observed
                    .pending
                    .get(&(vpc.to_string(), node.clone()))
                    .copied()
            });
        let address = match known {
            Some(ip) => ip,
            None => {
                let Some(ip) = free_address(observed.cidr, &used) else {
                    continue;
                };
                used.insert(ip);
                changes
                    .allocated
                    .insert((vpc.to_string(), node.clone()), ip);
                ip
            }
        };
        let link = NodeLink {
            vpc: vpc.to_string(),
            node: node.clone(),
            address: Ipv4Net::new(address, observed.cidr.prefix_len()).unwrap_or(observed.cidr),
            gateway: gateway.addr(),
            subnets: served.subnets.clone(),
            node_ips: ips.clone(),
        };
        let port = LogicalSwitchPort {
            name,
            addresses: [link.lsp_address()].into(),
            external_ids: link.external_ids(),
            ..LogicalSwitchPort::default()
        };
        for ip in ips.iter().filter(|ip| ip.is_ipv4()) {
            let route = LogicalRouterStaticRoute {
                ip_prefix: format!("{ip}/32"),
                nexthop: address.to_string(),
                external_ids: BTreeMap::from([(node_link::NODE_KEY.to_string(), node.clone())]),
                ..LogicalRouterStaticRoute::default()
            };
            routes.push((route, existing.is_some()));
        }
        wanted_ports.push((existing, port));
    }

    // The switch with its router-type port and the node ports.
    let lsp = LogicalSwitchPort {
        name: lsp_name(vpc),
        type_: "router".to_string(),
        addresses: ["router".to_string()].into(),
        options: [("router-port".to_string(), name)].into(),
        ..LogicalSwitchPort::default()
    };
    let mut new_ports = Vec::new();
    match present_lsp {
        Some(present) if present.options != lsp.options => {
            txn.update(present, &lsp, &["options"])?;
        }
        Some(_) => {}
        None => new_ports.push(txn.insert(&owner, &lsp)?),
    }
    for (existing, port) in &wanted_ports {
        let key = format!("{vpc}/{}", port.external_ids[node_link::NODE_KEY]);
        match existing {
            Some(existing) if switch.is_some_and(|s| s.ports.contains(&existing.uuid)) => {
                let mut desired = port.clone();
                desired.external_ids.extend(owner.external_ids());
                if existing.addresses != desired.addresses
                    || existing.external_ids != desired.external_ids
                {
                    txn.update(existing, &desired, &["addresses", "external_ids"])?;
                    changes.ports.push(key);
                }
            }
            _ => {
                new_ports.push(txn.insert(&owner, port)?);
                changes.ports.push(key);
            }
        }
    }
    match switch {
        None => {
            let refs: Vec<&ovsdb::NamedUuid> = new_ports.iter().collect();
            let switch = LogicalSwitch {
                name: switch_name(vpc),
                ..LogicalSwitch::default()
            };
            txn.insert_referencing(&owner, &switch, Some(("ports", &refs)))?;
            changes.linked.push(vpc.to_string());
        }
        Some(switch) => {
            for named in &new_ports {
                txn.add_reference(switch, "ports", named);
            }
            // Ports of nodes that are gone.
            let wanted: BTreeSet<&str> = wanted_ports
                .iter()
                .map(|(_, p)| p.name.as_str())
                .chain([lsp.name.as_str()])
                .collect();
            for port in observed.ports.iter().filter(|p| {
                vpc_of(p) == vpc
                    && switch.ports.contains(&p.uuid)
                    && !wanted.contains(p.name.as_str())
            }) {
                txn.remove_reference_from_ours::<LogicalSwitch>("ports", port.uuid);
                changes.ports.push(format!("{vpc}/-{}", port.name));
            }
        }
    }

    // Routes to the nodes on this router: missing ones attached, stale ones detached.
    let placed: Vec<&Mine<LogicalRouterStaticRoute>> = observed
        .routes
        .iter()
        .filter(|r| vpc_of(r) == vpc && router.static_routes.contains(&r.uuid))
        .collect();
    let same = |a: &LogicalRouterStaticRoute, b: &LogicalRouterStaticRoute| {
        a.ip_prefix == b.ip_prefix && a.nexthop == b.nexthop
    };
    for (route, node_linked) in &routes {
        if !placed.iter().any(|p| same(p, route)) {
            txn.attach_static_route(router, &owner, route)?;
            changes.routes.push(format!("{vpc} {}", route.ip_prefix));
            changes.restored += usize::from(*node_linked);
        }
    }
    for stale in placed
        .iter()
        .filter(|p| !routes.iter().any(|(r, _)| same(p, r)))
    {
        txn.detach_static_route(router, stale);
        changes.routes.push(format!("{vpc} -{}", stale.ip_prefix));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use ovsdb::{Operation, Uuid};

    use super::*;

    fn router(uuid: u128) -> LogicalRouter {
        LogicalRouter {
            uuid: Uuid::from_u128(uuid),
            name: "neutron-r1".to_string(),
            external_ids: [("neutron:router_name".to_string(), "r1".to_string())].into(),
            ..LogicalRouter::default()
        }
    }

    fn observed() -> Observed {
        Observed {
            cidr: "100.64.0.0/16".parse().unwrap(),
            nodes: [("node-1".to_string(), vec!["192.168.1.5".parse().unwrap()])].into(),
            vpcs: [(
                "neutron-r1".to_string(),
                ServedVpc {
                    router: Some(router(1)),
                    subnets: ["net2".to_string()].into(),
                    networks: vec![
                        "10.0.2.0/24".parse().unwrap(),
                        "10.0.1.0/24".parse().unwrap(),
                    ],
                },
            )]
            .into(),
            routers: vec![router(1)],
            switches: Vec::new(),
            ports: Vec::new(),
            router_ports: Vec::new(),
            routes: Vec::new(),
            pending: BTreeMap::new(),
        }
    }

    /// The rows `txn` inserts, as the replica would show them once committed.
    fn committed(txn: &OwnedTxn, observed: &mut Observed) {
        let mut next = 100u128;
        let mut uuid = || {
            next += 1;
            Uuid::from_u128(next)
        };
        let router = &mut observed.routers[0];
        let mut switch_ports = Vec::new();
        for op in txn.operations() {
            let Operation::Insert { table, row, .. } = op else {
                continue;
            };
            let id = uuid();
            let mut row = row.clone();
            row.set("_uuid", id);
            match table.as_str() {
                "Logical_Switch_Port" => {
                    let port: LogicalSwitchPort = ovn::view::decode(&row).unwrap();
                    switch_ports.push(id);
                    observed.ports.push(Mine::claim(port).unwrap());
                }
                "Logical_Router_Port" => {
                    router.ports.insert(id);
                    let port = ovn::view::decode(&row).unwrap();
                    observed.router_ports.push(Mine::claim(port).unwrap());
                }
                "Logical_Router_Static_Route" => {
                    router.static_routes.insert(id);
                    let route = ovn::view::decode(&row).unwrap();
                    observed.routes.push(Mine::claim(route).unwrap());
                }
                "Logical_Switch" => {
                    // Its ports are named uuids of this transaction.
                    row.set("ports", ovsdb::Value::set(Vec::<Uuid>::new()));
                    let mut switch: LogicalSwitch = ovn::view::decode(&row).unwrap();
                    switch.ports = switch_ports.iter().copied().collect();
                    observed.switches.push(Mine::claim(switch).unwrap());
                }
                other => panic!("unexpected insert into {other}"),
            }
        }
        observed.vpcs.get_mut("neutron-r1").unwrap().router = Some(router.clone());
    }

    #[test]
    fn a_served_vpc_gets_its_switch_router_port_node_ports_and_routes_then_nothing() {
        let mut observed = observed();
        let mut txn = OwnedTxn::new();
        let changes = plan(&mut txn, &observed).unwrap();
        assert_eq!(changes.linked, ["neutron-r1", "neutron-r1"]);
        assert_eq!(changes.ports, ["neutron-r1/node-1"]);
        assert_eq!(changes.routes, ["neutron-r1 192.168.1.5/32"]);
        assert_eq!(changes.restored, 0, "made, not restored");
        assert_eq!(
            changes.allocated,
            [(
                ("neutron-r1".to_string(), "node-1".to_string()),
                "100.64.0.2".parse().unwrap()
            )]
            .into()
        );
        assert_eq!(
            txn.outline(),
            [
                "insert Logical_Router_Port",
                "mutate Logical_Router",
                "insert Logical_Switch_Port",
                "insert Logical_Switch_Port",
                "insert Logical_Switch",
                "insert Logical_Router_Static_Route",
                "mutate Logical_Router",
            ]
        );
        committed(&txn, &mut observed);
        let port = &observed.ports[1];
        assert_eq!(port.name, "rovn-node/neutron-r1/node-1");
        assert!(port.addresses.contains("0a:52:64:40:00:02 100.64.0.2"));
        assert_eq!(observed.routes[0].nexthop, "100.64.0.2");
        let mut txn = OwnedTxn::new();
        assert_eq!(plan(&mut txn, &observed).unwrap(), Changes::default());
        assert!(txn.is_empty());
    }

    #[test]
    fn a_new_node_gets_the_next_address_and_a_gone_node_leaves() {
        let mut observed = observed();
        let mut txn = OwnedTxn::new();
        plan(&mut txn, &observed).unwrap();
        committed(&txn, &mut observed);
        observed
            .nodes
            .insert("node-2".to_string(), vec!["192.168.1.6".parse().unwrap()]);
        let mut txn = OwnedTxn::new();
        let changes = plan(&mut txn, &observed).unwrap();
        assert_eq!(
            changes.allocated.values().collect::<Vec<_>>(),
            [&"100.64.0.3".parse::<Ipv4Addr>().unwrap()]
        );
        assert_eq!(changes.routes, ["neutron-r1 192.168.1.6/32"]);
        assert_eq!(changes.restored, 0, "a new node's route is no repair");
        observed.nodes.remove("node-1");
        observed.nodes.remove("node-2");
        let mut txn = OwnedTxn::new();
        let changes = plan(&mut txn, &observed).unwrap();
        assert_eq!(changes.ports, ["neutron-r1/-rovn-node/neutron-r1/node-1"]);
        assert_eq!(changes.routes, ["neutron-r1 -192.168.1.5/32"]);
    }

    #[test]
    fn a_route_removed_by_neutron_is_restored_and_an_unserved_vpc_is_unlinked() {
        let mut observed = observed();
        let mut txn = OwnedTxn::new();
        plan(&mut txn, &observed).unwrap();
        committed(&txn, &mut observed);
        // Neutron's repair sync drops foreign routes and router ports.
        observed.routers[0].static_routes.clear();
        observed.routers[0].ports.clear();
        observed.routes.clear();
        observed.router_ports.clear();
        observed.vpcs.get_mut("neutron-r1").unwrap().router = Some(observed.routers[0].clone());
        let mut txn = OwnedTxn::new();
        let changes = plan(&mut txn, &observed).unwrap();
        assert_eq!(changes.linked, ["neutron-r1"]);
        assert_eq!(changes.routes, ["neutron-r1 192.168.1.5/32"]);
        assert!(changes.ports.is_empty());
        assert_eq!(
            changes.restored, 2,
            "the router port and the route put back"
        );

        let mut observed = self::observed();
        let mut txn = OwnedTxn::new();
        plan(&mut txn, &observed).unwrap();
        committed(&txn, &mut observed);
        observed.vpcs.clear();
        let mut txn = OwnedTxn::new();
        let changes = plan(&mut txn, &observed).unwrap();
        assert_eq!(changes.unlinked, ["neutron-r1"]);
        assert_eq!(
            txn.outline(),
            [
                "delete Logical_Switch",
                "mutate Logical_Router",
                "mutate Logical_Router"
            ]
        );
    }

    #[test]
    fn a_vpc_overlapping_the_node_link_network_gets_no_link() {
        let mut observed = observed();
        observed
            .vpcs
            .get_mut("neutron-r1")
            .unwrap()
            .networks
            .push("100.64.8.0/24".parse().unwrap());
        let mut txn = OwnedTxn::new();
        let changes = plan(&mut txn, &observed).unwrap();
        assert_eq!(changes.overlapping, ["neutron-r1"]);
        assert!(txn.is_empty());
    }
}
