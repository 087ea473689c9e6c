//! What the reconcilers read of the Northbound database beyond their own
//! rows: Neutron's routers, their ports, CIDRs and networks, the router a
//! VPC stands for, and which routers a change event concerns.

use std::collections::BTreeSet;

use ovn::Table;
use ovn::nb::{LogicalRouter, LogicalRouterPort, LogicalSwitch};
use ovn::owned::Owner;
use ovn::owned::owner::{self, NEUTRON_NETWORK_NAME, NEUTRON_ROUTER_NAME};
use ovn::view::View;
use ovsdb::RowEvent;

use crate::context::neutron_network_index;

/// The Neutron router named `name` (`neutron-<uuid>`), if there is one.
pub fn neutron_router(view: &View, name: &str) -> Option<LogicalRouter> {
    view.named::<LogicalRouter>(name)
        .into_iter()
        .find(|r| owner::is_neutron_router(&r.external_ids))
}

/// The router of our Vpc `name`, if there is one.
pub fn our_router(view: &View, name: &str) -> Option<LogicalRouter> {
    view.owned_by::<LogicalRouter>(&Owner::vpc(name))
        .into_iter()
        .map(|mine| mine.into_row())
        .find(|r| r.name == name)
}

/// The router of VPC `vpc`: Neutron's router of that name, else ours.
pub fn vpc_router(view: &View, vpc: &str) -> Option<LogicalRouter> {
    neutron_router(view, vpc).or_else(|| our_router(view, vpc))
}

/// Every Neutron router (with `neutron:router_name`).
pub fn neutron_routers(view: &View) -> Vec<LogicalRouter> {
    view.rows::<LogicalRouter>()
        .into_iter()
        .filter(|r| owner::is_neutron_router(&r.external_ids))
        .collect()
}

/// Number of routers neither Neutron's nor ours (left out of the import).
pub fn foreign_router_count(view: &View) -> usize {
    view.rows::<LogicalRouter>()
        .iter()
        .filter(|r| !owner::is_neutron_router(&r.external_ids) && !owner::is_ours(&r.external_ids))
        .count()
}

/// The Neutron display name of a router (`neutron:router_name`).
pub fn neutron_display_name(router: &LogicalRouter) -> Option<&str> {
    router
        .external_ids
        .get(NEUTRON_ROUTER_NAME)
        .map(String::as_str)
}

/// The ports of `router`, sorted by name.
pub fn router_ports(view: &View, router: &LogicalRouter) -> Vec<LogicalRouterPort> {
    let mut ports: Vec<LogicalRouterPort> = router
        .ports
        .iter()
        .filter_map(|uuid| view.get(*uuid))
        .collect();
    ports.sort_by(|a, b| a.name.cmp(&b.name));
    ports
}

/// The networks (`10.0.1.1/24`) on a router's ports, split by owner.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouterCidrs {
    /// Networks of ports that are not ours (Neutron's interfaces and gateway).
    pub foreign: Vec<String>,
    /// Networks of our own router ports (our Subnets' gateways).
    pub ours: Vec<String>,
}

/// The networks on `router`'s ports, sorted and deduplicated per owner.
pub fn router_cidrs(view: &View, router: &LogicalRouter) -> RouterCidrs {
    let mut foreign = BTreeSet::new();
    let mut ours = BTreeSet::new();
    for port in router_ports(view, router) {
        let set = if owner::is_ours(&port.external_ids) {
            &mut ours
        } else {
            &mut foreign
        };
        set.extend(port.networks.iter().cloned());
    }
    RouterCidrs {
        foreign: foreign.into_iter().collect(),
        ours: ours.into_iter().collect(),
    }
}

/// A Neutron network attached to a router.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct NeutronNetwork {
    /// The network's Logical_Switch (`neutron-<net uuid>`).
    pub switch: String,
    /// Its Neutron display name (`neutron:network_name` of the switch), when
    /// the switch is in the database.
    pub display_name: Option<String>,
}

/// The Neutron networks attached to `router` (from its ports'
/// `neutron:network_name`), sorted by switch name.
pub fn neutron_networks(view: &View, router: &LogicalRouter) -> Vec<NeutronNetwork> {
    let switches: BTreeSet<String> = router_ports(view, router)
        .into_iter()
        .filter_map(|p| p.external_ids.get(NEUTRON_NETWORK_NAME).cloned())
        .collect();
    switches
        .into_iter()
        .map(|switch| {
            let display_name = view
                .named::<LogicalSwitch>(&switch)
                .into_iter()
                .find_map(|ls| ls.external_ids.get(NEUTRON_NETWORK_NAME).cloned());
            NeutronNetwork {
                switch,
                display_name,
            }
        })
        .collect()
}

/// Names of the routers whose `ports` include the router port `port_uuid`.
fn routers_owning_port(view: &View, port_uuid: ovsdb::Uuid) -> BTreeSet<String> {
    view.rows::<LogicalRouter>()
        .into_iter()
        .filter(|r| r.ports.contains(&port_uuid))
        .map(|r| r.name)
        .collect()
}

/// Names of the routers a Northbound change concerns: the router itself for
/// Logical_Router rows (old and new name), the owning router for
/// Logical_Router_Port rows, and the routers attached to a Neutron network
/// whose Logical_Switch changed (its display name is in their status).
pub fn affected_routers(view: &View, event: &RowEvent) -> BTreeSet<String> {
    let (old, new) = match event {
        RowEvent::Insert { new, .. } => (None, Some(new)),
        RowEvent::Modify { old, new, .. } => (Some(old), Some(new)),
        RowEvent::Delete { old, .. } => (Some(old), None),
    };
    let names = || old.into_iter().chain(new).filter_map(|r| r.get_str("name"));
    match event.table() {
        t if t == LogicalRouter::NAME => names().map(str::to_string).collect(),
        t if t == LogicalRouterPort::NAME => routers_owning_port(view, event.uuid()),
        t if t == LogicalSwitch::NAME => names()
            .flat_map(|switch| view.find::<LogicalRouterPort>(&neutron_network_index(), switch))
            .flat_map(|port| routers_owning_port(view, port.uuid))
            .collect(),
        _ => BTreeSet::new(),
    }
}
