//! The Logical_Switch_Port of a pod: its desired row, reading our pod ports
//! back from the Northbound replica, and the transactions that write and
//! delete them (through the write gateway).
//!
//! A pod port is named [`port_name`] `<pod>.<namespace>` (Kube-OVN
//! compatible), sits on its Subnet's switch, is owned by
//! `Owner::pod(namespace, name)`, and carries `addresses` = `port_security`
//! = `"MAC IP [IP]"` plus the keys [`POD_NAMESPACE_KEY`], [`POD_NAME_KEY`],
//! [`POD_UID_KEY`] and [`SUBNET_KEY`]. After a restart these ports are the
//! record of the addresses already handed out.

use std::collections::BTreeSet;
use std::net::IpAddr;

use api::pod_network::port_name;
use ipam::{Allocation, MacAddr};
use ovn::nb::{LogicalSwitch, LogicalSwitchPort};
use ovn::owned::owner::{POD_NAME_KEY, POD_NAMESPACE_KEY, POD_UID_KEY, SUBNET_KEY};
use ovn::owned::{Kind, Mine, OwnedTxn, Owner, Refused};
use ovn::view::View;
use ovsdb::Uuid;

use crate::context::{Context, pod_subnet_index};
use crate::error::ReconcileError;

/// The owner key (`namespace/name`) of a pod, as our ports, the work queue
/// and the IPAM know it.
pub fn owner_key(namespace: &str, name: &str) -> String {
    Owner::pod(namespace, name).object().to_string()
}

/// The `addresses` / `port_security` entry of an allocation: `"MAC IP [IP]"`.
pub fn address_entry(allocation: &Allocation) -> String {
    std::iter::once(allocation.mac.to_string())
        .chain(allocation.ips().map(|ip| ip.to_string()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Reads an `addresses` entry back: the MAC and at least one address.
pub fn parse_address_entry(entry: &str) -> Option<(MacAddr, Vec<IpAddr>)> {
    let mut words = entry.split_whitespace();
    let mac = MacAddr::parse_unicast(words.next()?).ok()?;
    let ips = words
        .map(|w| w.parse::<IpAddr>().ok())
        .collect::<Option<Vec<_>>>()?;
    (!ips.is_empty()).then_some((mac, ips))
}

/// What a pod's port records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodPort {
    /// Pod namespace.
    pub namespace: String,
    /// Pod name.
    pub name: String,
    /// Pod uid.
    pub uid: String,
    /// The Subnet of the addresses.
    pub subnet: String,
    /// The addresses and MAC.
    pub allocation: Allocation,
}

impl PodPort {
    /// The pod's owner.
    pub fn owner(&self) -> Owner {
        Owner::pod(&self.namespace, &self.name)
    }

    /// The desired row (its owner keys are added by the gateway on insert).
    pub fn row(&self) -> LogicalSwitchPort {
        let entry = address_entry(&self.allocation);
        let mut external_ids = self.owner().external_ids();
        external_ids.extend([
            (POD_NAMESPACE_KEY.to_string(), self.namespace.clone()),
            (POD_NAME_KEY.to_string(), self.name.clone()),
            (POD_UID_KEY.to_string(), self.uid.clone()),
            (SUBNET_KEY.to_string(), self.subnet.clone()),
        ]);
        LogicalSwitchPort {
            name: port_name(&self.namespace, &self.name),
            addresses: BTreeSet::from([entry.clone()]),
            port_security: BTreeSet::from([entry]),
            external_ids,
            ..LogicalSwitchPort::default()
        }
    }
}

/// What one of our pod ports records, read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    /// `namespace/name` of the pod.
    pub owner: String,
    /// The Subnet.
    pub subnet: String,
    /// The pod's uid (empty if not recorded).
    pub uid: String,
    /// The MAC.
    pub mac: MacAddr,
    /// The addresses.
    pub ips: Vec<IpAddr>,
}

/// What a pod port of ours records; `None` for a port of another kind or
/// one missing the keys.
pub fn recorded(lsp: &Mine<LogicalSwitchPort>) -> Option<Recorded> {
    if lsp.owner().kind() != Kind::Pod {
        return None;
    }
    let (mac, ips) = lsp.addresses.iter().find_map(|a| parse_address_entry(a))?;
    Some(Recorded {
        owner: lsp.owner().object().to_string(),
        subnet: lsp.external_ids.get(SUBNET_KEY)?.clone(),
        uid: lsp
            .external_ids
            .get(POD_UID_KEY)
            .cloned()
            .unwrap_or_default(),
        mac,
        ips,
    })
}

/// Every pod port of ours.
pub fn all(view: &View) -> Vec<Mine<LogicalSwitchPort>> {
    view.owned_of_kind(Kind::Pod)
}

/// Our pod ports recording Subnet `subnet`.
pub fn in_subnet(view: &View, subnet: &str) -> Vec<Mine<LogicalSwitchPort>> {
    view.owned_where::<LogicalSwitchPort>(&pod_subnet_index(), subnet)
        .into_iter()
        .filter(|p| p.owner().kind() == Kind::Pod)
        .collect()
}

/// Our ports of pod `owner` (normally one).
pub fn of_owner(view: &View, owner: &Owner) -> Vec<Mine<LogicalSwitchPort>> {
    view.owned_by(owner)
}

/// Why a pod's port could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// The Subnet's switch is not (yet) in OVN.
    #[error("the switch of Subnet {0} does not exist")]
    NoSwitch(String),
    /// A port of that name exists and is not ours.
    #[error("a Logical_Switch_Port named {0} that rovn did not create exists")]
    NameTaken(String),
    /// The port changed between the read and the write.
    #[error("Logical_Switch_Port {0} changed during the write; retrying")]
    Raced(String),
    /// The transaction failed.
    #[error("OVN Northbound: {0}")]
    Nb(#[from] ovsdb::Error),
    /// The gateway refused the row.
    #[error("refused by the Northbound write gateway: {0}")]
    Refused(#[from] Refused),
}

impl From<PortError> for ReconcileError {
    fn from(error: PortError) -> Self {
        match error {
            PortError::NoSwitch(_) => ReconcileError::Waiting(error.to_string()),
            PortError::Nb(e) => ReconcileError::Nb(e),
            PortError::Refused(e) => ReconcileError::Refused(e),
            other => ReconcileError::Failed(other.to_string()),
        }
    }
}

/// Creates or corrects the port of `port` on its Subnet's switch; returns
/// the uuid of a port it inserted (the replica may not show it yet).
pub async fn ensure(ctx: &Context, port: &PodPort) -> Result<Option<Uuid>, PortError> {
    let desired = port.row();
    let owner = port.owner();
    let view = &ctx.nb_view;
    let same_name = view.named::<LogicalSwitchPort>(&desired.name);
    if same_name.iter().any(|p| !owner.owns(&p.external_ids)) {
        return Err(PortError::NameTaken(desired.name));
    }
    let switch = view
        .owned_by::<LogicalSwitch>(&Owner::subnet(&port.subnet))
        .into_iter()
        .find(|s| s.name == port.subnet)
        .ok_or_else(|| PortError::NoSwitch(port.subnet.clone()))?;
    let mut txn = OwnedTxn::new();
    txn.comment(format!(
        "rovn: port of pod {}/{}",
        port.namespace, port.name
    ));
    match same_name.into_iter().find_map(Mine::claim) {
        Some(current) => {
            let on_switch = switch.ports.contains(&current.uuid);
            if on_switch && same_row(&current, &desired) {
                return Ok(None);
            }
            let update = txn.update(
                &current,
                &desired,
                &["addresses", "port_security", "external_ids", "type"],
            )?;
            let moved = (!on_switch).then(|| {
                txn.remove_reference_from_ours::<LogicalSwitch>("ports", current.uuid);
                txn.add_reference(&switch, "ports", current.uuid)
            });
            let committed = ctx.nb.commit(&txn).await?;
            if committed.count(update) != Some(1) {
                return Err(PortError::Raced(desired.name));
            }
            if moved.is_some_and(|op| committed.count(op) != Some(1)) {
                return Err(PortError::NoSwitch(port.subnet.clone()));
            }
            Ok(None)
        }
        None => {
            // The precondition makes "no port of that name" and the insert
            // one step.
            let absent = txn.require_no_row_named::<LogicalSwitchPort>(&desired.name);
            let lsp = txn.insert(&owner, &desired)?;
            let added = txn.add_reference(&switch, "ports", &lsp);
            let committed = match ctx.nb.commit(&txn).await {
                Ok(committed) => committed,
                Err(error) if absent.failed(&error) => {
                    return Err(PortError::Raced(desired.name));
                }
                Err(error) => return Err(error.into()),
            };
            // A port no switch refers to is garbage-collected at commit.
            if committed.count(added) != Some(1) {
                return Err(PortError::NoSwitch(port.subnet.clone()));
            }
            Ok(committed.uuid_of(&lsp))
        }
    }
}

fn same_row(current: &LogicalSwitchPort, desired: &LogicalSwitchPort) -> bool {
    current.addresses == desired.addresses
        && current.port_security == desired.port_security
        && current.external_ids == desired.external_ids
        && current.type_ == desired.type_
}

/// A port of pod `owner` to delete: one read from the replica, or one we
/// inserted that the replica does not show yet.
pub enum Stale<'a> {
    /// Read from the replica.
    Read(&'a Mine<LogicalSwitchPort>),
    /// Inserted by us, not yet in the replica.
    Inserted(&'a Owner, Uuid),
}

/// Deletes `ports` (only while each is still its owner's), taking them off
/// our switches first.
pub async fn delete(ctx: &Context, ports: &[Stale<'_>]) -> Result<(), ovsdb::Error> {
    if ports.is_empty() {
        return Ok(());
    }
    let mut txn = OwnedTxn::new();
    for port in ports {
        let (owner, uuid) = match port {
            Stale::Read(mine) => (mine.owner(), mine.uuid),
            Stale::Inserted(owner, uuid) => (*owner, *uuid),
        };
        // Only while the row still is ours: the whole transaction fails
        // otherwise, and nothing is taken off a switch.
        txn.require_still_ours::<LogicalSwitchPort>(uuid);
        txn.remove_reference_from_ours::<LogicalSwitch>("ports", uuid);
        txn.delete_inserted::<LogicalSwitchPort>(owner, uuid);
    }
    txn.comment("rovn: ports of deleted pods");
    ctx.nb.commit(&txn).await?;
    Ok(())
}
