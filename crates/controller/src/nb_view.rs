//! Typed read helpers over the Northbound replica: Neutron's routers, their
//! ports, CIDRs and networks, and which routers a change event concerns.

use std::collections::BTreeSet;
use std::sync::Arc;

use ovn::Table;
use ovn::nb::{LogicalRouter, LogicalRouterPort, LogicalSwitch};
use ovn::ownership::{self, NEUTRON_NETWORK_NAME, NEUTRON_ROUTER_NAME};
use ovsdb::{Replica, Row, RowEvent};

fn decode<T: Table>(row: &Arc<Row>) -> Option<T> {
    let uuid = row.uuid()?;
    match T::from_row(uuid, row) {
        Ok(typed) => Some(typed),
        Err(err) => {
            tracing::warn!(table = T::NAME, %uuid, error = %err, "unreadable row skipped");
            None
        }
    }
}

fn rows<T: Table>(rows: Vec<Arc<Row>>) -> Vec<T> {
    rows.iter().filter_map(decode).collect()
}

/// Every Logical_Router in the replica.
pub fn routers(replica: &Replica) -> Vec<LogicalRouter> {
    rows(replica.table(LogicalRouter::NAME))
}

/// Every Logical_Router named `name` (OVN does not make names unique).
pub fn routers_named(replica: &Replica, name: &str) -> Vec<LogicalRouter> {
    rows(replica.by_name(LogicalRouter::NAME, name))
}

/// The Neutron router named `name` (`neutron-<uuid>`), if there is one.
pub fn neutron_router(replica: &Replica, name: &str) -> Option<LogicalRouter> {
    routers_named(replica, name)
        .into_iter()
        .find(|r| ownership::is_neutron_router(&r.external_ids))
}

/// Our router named `name` (carrying our owner marker), if there is one.
pub fn our_router(replica: &Replica, name: &str) -> Option<LogicalRouter> {
    routers_named(replica, name)
        .into_iter()
        .find(|r| ownership::is_ours(&r.external_ids))
}

/// Every Neutron router (with `neutron:router_name`).
pub fn neutron_routers(replica: &Replica) -> Vec<LogicalRouter> {
    routers(replica)
        .into_iter()
        .filter(|r| ownership::is_neutron_router(&r.external_ids))
        .collect()
}

/// Number of routers neither Neutron's nor ours (left out of the import).
pub fn foreign_router_count(replica: &Replica) -> usize {
    routers(replica)
        .iter()
        .filter(|r| {
            !ownership::is_neutron_router(&r.external_ids) && !ownership::is_ours(&r.external_ids)
        })
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
pub fn router_ports(replica: &Replica, router: &LogicalRouter) -> Vec<LogicalRouterPort> {
    let mut ports: Vec<LogicalRouterPort> = router
        .ports
        .iter()
        .filter_map(|uuid| replica.get_in(LogicalRouterPort::NAME, *uuid))
        .filter_map(|row| decode(&row))
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
pub fn router_cidrs(replica: &Replica, router: &LogicalRouter) -> RouterCidrs {
    let mut foreign = BTreeSet::new();
    let mut ours = BTreeSet::new();
    for port in router_ports(replica, router) {
        let set = if ownership::is_ours(&port.external_ids) {
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
pub fn neutron_networks(replica: &Replica, router: &LogicalRouter) -> Vec<NeutronNetwork> {
    let switches: BTreeSet<String> = router_ports(replica, router)
        .into_iter()
        .filter_map(|p| p.external_ids.get(NEUTRON_NETWORK_NAME).cloned())
        .collect();
    switches
        .into_iter()
        .map(|switch| {
            let display_name = rows::<LogicalSwitch>(replica.by_name(LogicalSwitch::NAME, &switch))
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
fn routers_owning_port(replica: &Replica, port_uuid: ovsdb::Uuid) -> BTreeSet<String> {
    routers(replica)
        .into_iter()
        .filter(|r| r.ports.contains(&port_uuid))
        .map(|r| r.name)
        .collect()
}

/// Names of the routers a Northbound change concerns: the router itself for
/// Logical_Router rows (old and new name), the owning router for
/// Logical_Router_Port rows, and the routers attached to a Neutron network
/// whose Logical_Switch changed (its display name is in their status).
pub fn affected_routers(replica: &Replica, event: &RowEvent) -> BTreeSet<String> {
    let (old, new) = match event {
        RowEvent::Insert { new, .. } => (None, Some(new)),
        RowEvent::Modify { old, new, .. } => (Some(old), Some(new)),
        RowEvent::Delete { old, .. } => (Some(old), None),
    };
    let names = || old.into_iter().chain(new).filter_map(|r| r.get_str("name"));
    match event.table() {
        t if t == LogicalRouter::NAME => names().map(str::to_string).collect(),
        t if t == LogicalRouterPort::NAME => routers_owning_port(replica, event.uuid()),
        t if t == LogicalSwitch::NAME => names()
            .flat_map(|switch| {
                replica.by_external_id(LogicalRouterPort::NAME, NEUTRON_NETWORK_NAME, switch)
            })
            .filter_map(|row| row.uuid())
            .flat_map(|port| routers_owning_port(replica, port))
            .collect(),
        _ => BTreeSet::new(),
    }
}
