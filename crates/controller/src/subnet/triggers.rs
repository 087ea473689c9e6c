//! Which Subnets a change concerns: Northbound replica events on our rows
//! (something deleted or changed our router port, router-type switch port
//! or switch) and on routers appearing or disappearing, and Vpc changes.

use std::collections::BTreeSet;
use std::sync::Arc;

use api::Subnet;
use kube::runtime::reflector::{ObjectRef, Store};
use ovn::Table;
use ovn::nb::{LogicalRouter, LogicalRouterPort, LogicalSwitch, LogicalSwitchPort};
use ovn::owned::Kind;
use ovn::view::owner_of_row;
use ovsdb::{Row, RowEvent};

/// Subnets whose VPC is one of `vpcs`.
pub(super) fn subnets_on(
    store: &Store<Subnet>,
    default_vpc: &str,
    vpcs: &[String],
) -> Vec<ObjectRef<Subnet>> {
    store
        .state()
        .iter()
        .filter(|s| vpcs.contains(&s.vpc_or(default_vpc)))
        .map(|s| ObjectRef::from_obj(s.as_ref()))
        .collect()
}

/// The Subnet owning a row, when the row is one of a Subnet's.
fn owning_subnet(row: &Row) -> Option<String> {
    owner_of_row(row)
        .filter(|owner| owner.kind() == Kind::Subnet)
        .map(|owner| owner.object().to_string())
}

/// Subnets a Northbound change concerns: the owner of a changed or deleted
/// row of ours (router port, switch port, switch), and the Subnets of a
/// router that appeared or disappeared.
pub(super) fn affected_subnets(
    event: &RowEvent,
    store: &Store<Subnet>,
    default_vpc: &str,
) -> Vec<ObjectRef<Subnet>> {
    let table = event.table();
    let owners = |rows: &[&Arc<Row>]| -> Vec<ObjectRef<Subnet>> {
        rows.iter()
            .filter_map(|r| owning_subnet(r))
            .collect::<BTreeSet<_>>()
            .iter()
            .map(|name| ObjectRef::new(name))
            .collect()
    };
    match event {
        RowEvent::Insert { new, .. } if table == LogicalRouter::NAME => {
            let name = new.get_str("name").unwrap_or_default().to_string();
            subnets_on(store, default_vpc, &[name])
        }
        RowEvent::Delete { old, .. } if table == LogicalRouter::NAME => {
            let name = old.get_str("name").unwrap_or_default().to_string();
            subnets_on(store, default_vpc, &[name])
        }
        RowEvent::Modify { old, new, .. } if table == LogicalRouter::NAME => {
            if old.get_str("name") == new.get_str("name") {
                Vec::new()
            } else {
                let names = [old, new]
                    .iter()
                    .filter_map(|r| r.get_str("name").map(str::to_string))
                    .collect::<Vec<_>>();
                subnets_on(store, default_vpc, &names)
            }
        }
        _ if table == LogicalRouterPort::NAME || table == LogicalSwitchPort::NAME => match event {
            RowEvent::Insert { new, .. } => owners(&[new]),
            RowEvent::Modify { old, new, .. } => owners(&[old, new]),
            RowEvent::Delete { old, .. } => owners(&[old]),
        },
        // Pods' ports come and go on our switches: only the switch's own
        // deletion or a change of its marker concerns the Subnet.
        RowEvent::Delete { old, .. } if table == LogicalSwitch::NAME => owners(&[old]),
        RowEvent::Modify { old, new, .. }
            if table == LogicalSwitch::NAME
                && old.get("external_ids") != new.get("external_ids") =>
        {
            owners(&[old, new])
        }
        _ => Vec::new(),
    }
}
