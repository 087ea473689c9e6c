//! The Logical_Switch_Port of a pod: its desired row, reading our pod ports
//! back from the Northbound replica, and the transactions that write and
//! delete them.
//!
//! A pod port is named `<pod>.<namespace>` (Kube-OVN compatible), sits on
//! its Subnet's switch, and carries `addresses` = `port_security` =
//! `"MAC IP [IP]"` and `external_ids` = our owner marker
//! (`rovn:owner=rovn`, `rovn:kind=pod`, `rovn:object=<namespace>/<pod>`)
//! plus [`POD_NAMESPACE_KEY`], [`POD_NAME_KEY`], [`POD_UID_KEY`] and
//! [`SUBNET_KEY`]. After a restart these ports are the record of the
//! addresses already handed out.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipam::{Allocation, MacAddr};
use ovn::Table;
use ovn::nb::{LogicalSwitch, LogicalSwitchPort};
use ovn::ownership::{self, KIND_KEY, OBJECT_KEY, OWNER, OWNER_KEY};
use ovsdb::{Atom, Condition as Where, Mutation, Operation, Replica, Uuid, Value, WaitUntil};

use crate::context::Context;

/// `rovn:kind` of pod ports.
pub const KIND: &str = "pod";
/// `external_ids` key: the pod's namespace.
pub const POD_NAMESPACE_KEY: &str = "rovn:pod_namespace";
/// `external_ids` key: the pod's name.
pub const POD_NAME_KEY: &str = "rovn:pod_name";
/// `external_ids` key: the pod's uid (tells a pod from an earlier one of
/// the same name).
pub const POD_UID_KEY: &str = "rovn:pod_uid";
/// `external_ids` key: the Subnet the addresses come from.
pub const SUBNET_KEY: &str = "rovn:subnet";

/// The port name of pod `namespace/name`: `<name>.<namespace>`.
pub fn port_name(namespace: &str, name: &str) -> String {
    format!("{name}.{namespace}")
}

/// The IPAM owner (and `rovn:object`) of pod `namespace/name`.
pub fn owner(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// The `addresses` / `port_security` entry of an allocation: `"MAC IP [IP]"`.
pub fn address_entry(allocation: &Allocation) -> String {
    std::iter::once(allocation.mac.to_string())
        .chain(allocation.ips().map(|ip| ip.to_string()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Reads `"MAC IP [IP]"` back; `None` for anything else (`dynamic`, `router`...).
pub fn parse_address_entry(entry: &str) -> Option<(MacAddr, Vec<IpAddr>)> {
    let mut words = entry.split_whitespace();
    let mac = MacAddr::parse_unicast(words.next()?).ok()?;
    let ips = words
        .map(|w| w.parse::<IpAddr>().ok())
        .collect::<Option<Vec<_>>>()?;
    (!ips.is_empty()).then_some((mac, ips))
}

/// Who a pod port is for and what it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodPort {
    /// Pod namespace.
    pub namespace: String,
    /// Pod name.
    pub name: String,
    /// Pod uid.
    pub uid: String,
    /// Subnet (and switch) name.
    pub subnet: String,
    /// The addresses and MAC.
    pub allocation: Allocation,
}

impl PodPort {
    /// The row as it must be in OVN.
    pub fn row(&self) -> LogicalSwitchPort {
        let entry = address_entry(&self.allocation);
        let mut external_ids =
            ownership::our_external_ids(KIND, &owner(&self.namespace, &self.name));
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

/// Whether `lsp` is one of our pod ports.
pub fn is_pod_port(lsp: &LogicalSwitchPort) -> bool {
    ownership::is_ours(&lsp.external_ids)
        && lsp.external_ids.get(KIND_KEY).map(String::as_str) == Some(KIND)
}

/// What one of our pod ports records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    /// IPAM owner (`namespace/name`).
    pub owner: String,
    /// Subnet.
    pub subnet: String,
    /// Pod uid at the time of writing.
    pub uid: String,
    /// MAC.
    pub mac: MacAddr,
    /// Addresses.
    pub ips: Vec<IpAddr>,
}

/// Reads what one of our pod ports records (`None` when it is not ours or
/// is unreadable).
pub fn recorded(lsp: &LogicalSwitchPort) -> Option<Recorded> {
    if !is_pod_port(lsp) {
        return None;
    }
    let get = |key: &str| lsp.external_ids.get(key).cloned();
    let (mac, ips) = lsp.addresses.iter().find_map(|a| parse_address_entry(a))?;
    Some(Recorded {
        owner: get(OBJECT_KEY)?,
        subnet: get(SUBNET_KEY)?,
        uid: get(POD_UID_KEY).unwrap_or_default(),
        mac,
        ips,
    })
}

fn decode(rows: Vec<std::sync::Arc<ovsdb::Row>>) -> Vec<LogicalSwitchPort> {
    rows.iter()
        .filter_map(|row| LogicalSwitchPort::from_row(row.uuid()?, row).ok())
        .collect()
}

/// Every pod port of ours in the replica.
pub fn all(replica: &Replica) -> Vec<LogicalSwitchPort> {
    decode(replica.by_external_id(LogicalSwitchPort::NAME, KIND_KEY, KIND))
        .into_iter()
        .filter(is_pod_port)
        .collect()
}

/// Our pod ports recording Subnet `subnet`.
pub fn in_subnet(replica: &Replica, subnet: &str) -> Vec<LogicalSwitchPort> {
    decode(replica.by_external_id(LogicalSwitchPort::NAME, SUBNET_KEY, subnet))
        .into_iter()
        .filter(is_pod_port)
        .collect()
}

/// Our pod ports of IPAM owner `owner` (normally at most one).
pub fn of_owner(replica: &Replica, owner: &str) -> Vec<LogicalSwitchPort> {
    decode(replica.by_external_id(LogicalSwitchPort::NAME, OBJECT_KEY, owner))
        .into_iter()
        .filter(is_pod_port)
        .collect()
}

/// Every port named `name`, ours or not.
pub fn named(replica: &Replica, name: &str) -> Vec<LogicalSwitchPort> {
    decode(replica.by_name(LogicalSwitchPort::NAME, name))
}

/// The switch of Subnet `subnet` (ours, named after the Subnet). Read
/// without decoding the switch's (possibly huge) `ports`.
pub fn subnet_switch(replica: &Replica, subnet: &str) -> Option<Uuid> {
    replica
        .by_name(LogicalSwitch::NAME, subnet)
        .iter()
        .find(|row| row.get_map_str("external_ids", OWNER_KEY) == Some(OWNER))
        .and_then(|row| row.uuid())
}

/// Whether switch `switch` lists port `port` (O(log n) in its `ports`).
fn switch_has_port(replica: &Replica, switch: Uuid, port: Uuid) -> bool {
    let Some(row) = replica.get_in(LogicalSwitch::NAME, switch) else {
        return false;
    };
    match row.get("ports") {
        Some(Value::Set(ports)) => ports.contains(&Atom::Uuid(port)),
        Some(Value::Atom(atom)) => *atom == Atom::Uuid(port),
        _ => false,
    }
}

/// Why a pod port could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// The Subnet's switch is not in the database (yet).
    #[error("the switch of Subnet {0} does not exist")]
    NoSwitch(String),
    /// A port of that name that rovn did not create exists.
    #[error("a Logical_Switch_Port named {0} that rovn did not create exists")]
    NameTaken(String),
    /// The row changed under us (deleted, or inserted by an earlier write
    /// the replica has not shown yet); retried.
    #[error("Logical_Switch_Port {0} changed during the write; retrying")]
    Raced(String),
    /// The transaction failed.
    #[error("OVN Northbound: {0}")]
    Nb(#[from] ovsdb::Error),
}

fn marker() -> Value {
    Value::map([(OWNER_KEY, OWNER)])
}

/// Makes the port of `port` exist exactly as [`PodPort::row`] on its
/// Subnet's switch: nothing is written when it already does. Returns the
/// uuid of the row when it was inserted (the replica may not show it yet).
pub async fn ensure(ctx: &Context, port: &PodPort) -> Result<Option<Uuid>, PortError> {
    let desired = port.row();
    let replica = &ctx.nb_replica;
    let same_name = named(replica, &desired.name);
    if same_name.iter().any(|p| !is_pod_port(p)) {
        return Err(PortError::NameTaken(desired.name));
    }
    let switch = subnet_switch(replica, &port.subnet)
        .ok_or_else(|| PortError::NoSwitch(port.subnet.clone()))?;
    let mut txn = ctx.nb_txn();
    match same_name.first() {
        Some(current) => {
            let on_switch = switch_has_port(replica, switch, current.uuid);
            if on_switch && same_row(current, &desired) {
                return Ok(None);
            }
            txn.update(
                LogicalSwitchPort::NAME,
                vec![
                    Where::uuid(current.uuid),
                    Where::includes("external_ids", marker()),
                ],
                desired.to_row(),
            );
            if !on_switch {
                txn.mutate(
                    LogicalSwitch::NAME,
                    vec![Where::includes("ports", Value::set([current.uuid]))],
                    vec![Mutation::delete("ports", Value::set([current.uuid]))],
                );
                txn.mutate(
                    LogicalSwitch::NAME,
                    vec![Where::uuid(switch)],
                    vec![Mutation::insert("ports", Value::set([current.uuid]))],
                );
            }
            txn.comment(format!(
                "rovn: port of pod {}/{}",
                port.namespace, port.name
            ));
            let result = ctx.nb_commit(&txn).await?;
            if result.results.first().and_then(|r| r.count()) != Some(1) {
                return Err(PortError::Raced(desired.name));
            }
            if !on_switch && result.results.get(2).and_then(|r| r.count()) != Some(1) {
                return Err(PortError::NoSwitch(port.subnet.clone()));
            }
        }
        None => {
            // The wait makes "no port of that name" and the insert one step.
            txn.push(Operation::Wait {
                table: LogicalSwitchPort::NAME.to_string(),
                conditions: vec![Where::eq("name", desired.name.as_str())],
                columns: vec!["name".to_string()],
                until: WaitUntil::Equal,
                rows: Vec::new(),
                timeout_ms: Some(0),
            });
            let lsp = txn.insert(LogicalSwitchPort::NAME, desired.to_row());
            txn.mutate(
                LogicalSwitch::NAME,
                vec![Where::uuid(switch)],
                vec![Mutation::insert("ports", Value::set([&lsp]))],
            );
            txn.comment(format!(
                "rovn: port of pod {}/{}",
                port.namespace, port.name
            ));
            let result = match ctx.nb_commit(&txn).await {
                Ok(result) => result,
                Err(ovsdb::Error::Txn { index: 0, .. }) => {
                    return Err(PortError::Raced(desired.name));
                }
                Err(err) => return Err(err.into()),
            };
            // A port no switch refers to is garbage-collected at commit.
            if result.results.get(2).and_then(|r| r.count()) != Some(1) {
                return Err(PortError::NoSwitch(port.subnet.clone()));
            }
            return Ok(result.uuid_of(&lsp));
        }
    }
    Ok(None)
}

fn same_row(current: &LogicalSwitchPort, desired: &LogicalSwitchPort) -> bool {
    current.addresses == desired.addresses
        && current.port_security == desired.port_security
        && current.external_ids == desired.external_ids
        && current.type_ == desired.type_
}

/// Deletes `ports` (our pod ports, as read from the replica): each is taken
/// off its switch and deleted only while it still carries our marker.
pub async fn delete(ctx: &Context, ports: &[LogicalSwitchPort]) -> Result<(), ovsdb::Error> {
    if ports.is_empty() {
        return Ok(());
    }
    let mut txn = ctx.nb_txn();
    for port in ports {
        // Only while the row still is ours: the wait fails the whole
        // transaction otherwise.
        txn.push(Operation::Wait {
            table: LogicalSwitchPort::NAME.to_string(),
            conditions: vec![
                Where::uuid(port.uuid),
                Where::new("external_ids", ovsdb::Function::Excludes, marker()),
            ],
            columns: vec!["name".to_string()],
            until: WaitUntil::Equal,
            rows: Vec::new(),
            timeout_ms: Some(0),
        });
        txn.mutate(
            LogicalSwitch::NAME,
            vec![Where::includes("ports", Value::set([port.uuid]))],
            vec![Mutation::delete("ports", Value::set([port.uuid]))],
        );
        txn.delete(LogicalSwitchPort::NAME, vec![Where::uuid(port.uuid)]);
    }
    txn.comment("rovn: ports of deleted pods");
    ctx.nb_commit(&txn).await?;
    Ok(())
}
