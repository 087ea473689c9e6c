//! The database rows rovnctl reads, read once: the Northbound tables every
//! subcommand looks at ([`NbSnapshot`]) and, from the Southbound database,
//! the chassis each logical port is bound on ([`read_bindings`]).

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use ovn::nb::{self, Acl, AddressSet, LogicalRouter, LogicalRouterPort, LogicalSwitch};
use ovn::nb::{LogicalSwitchPort, PortGroup};
use ovn::owned::owner::{Kind, Owner};
use ovn::view::View;
use ovn::{Table, check_schema};
use ovsdb::{Client, MonitorSpec, Operation, OperationResult, Row, Uuid};
use serde::{Deserialize, Serialize};

/// Name of the Southbound database.
pub const SB_DATABASE: &str = "OVN_Southbound";

/// Switches, routers, their ports, port groups, ACLs and address sets of
/// the Northbound database at one moment.
#[derive(Debug, Clone, Default)]
pub struct NbSnapshot {
    /// Every Logical_Router.
    pub routers: Vec<LogicalRouter>,
    /// Every Logical_Router_Port, by uuid.
    pub router_ports: BTreeMap<Uuid, LogicalRouterPort>,
    /// Every Logical_Switch.
    pub switches: Vec<LogicalSwitch>,
    /// Every Logical_Switch_Port, by uuid.
    pub switch_ports: BTreeMap<Uuid, LogicalSwitchPort>,
    /// Every Port_Group.
    pub port_groups: Vec<PortGroup>,
    /// Every ACL, by uuid.
    pub acls: BTreeMap<Uuid, Acl>,
    /// Every Address_Set.
    pub address_sets: Vec<AddressSet>,
}

impl NbSnapshot {
    /// Reads the tables (one monitor's initial contents).
    pub async fn read(client: &Client) -> Result<Self> {
        let schema = client.get_schema(nb::DATABASE).await?;
        check_schema(&schema, nb::REQUIRED)?;
        let spec = MonitorSpec::new()
            .table_columns(LogicalRouter::NAME, LogicalRouter::COLUMNS)
            .table_columns(LogicalRouterPort::NAME, LogicalRouterPort::COLUMNS)
            .table_columns(LogicalSwitch::NAME, LogicalSwitch::COLUMNS)
            .table_columns(LogicalSwitchPort::NAME, LogicalSwitchPort::COLUMNS)
            .table_columns(PortGroup::NAME, PortGroup::COLUMNS)
            .table_columns(Acl::NAME, Acl::COLUMNS)
            .table_columns(AddressSet::NAME, AddressSet::COLUMNS);
        let view = View::new(
            client
                .monitor(nb::DATABASE, spec)
                .await
                .context("reading the Northbound tables")?,
        );
        Ok(Self {
            routers: view.rows(),
            router_ports: view
                .rows()
                .into_iter()
                .map(|p: LogicalRouterPort| (p.uuid, p))
                .collect(),
            switches: view.rows(),
            switch_ports: view
                .rows()
                .into_iter()
                .map(|p: LogicalSwitchPort| (p.uuid, p))
                .collect(),
            port_groups: view.rows(),
            acls: view.rows().into_iter().map(|a: Acl| (a.uuid, a)).collect(),
            address_sets: view.rows(),
        })
    }

    /// The switch port named `name`.
    pub fn switch_port(&self, name: &str) -> Option<&LogicalSwitchPort> {
        self.switch_ports.values().find(|p| p.name == name)
    }

    /// The router port named `name`.
    pub fn router_port(&self, name: &str) -> Option<&LogicalRouterPort> {
        self.router_ports.values().find(|p| p.name == name)
    }

    /// The port group named `name`.
    pub fn port_group(&self, name: &str) -> Option<&PortGroup> {
        self.port_groups.iter().find(|g| g.name == name)
    }

    /// The switch holding the switch port `port`.
    pub fn switch_of(&self, port: Uuid) -> Option<&LogicalSwitch> {
        self.switches.iter().find(|s| s.ports.contains(&port))
    }

    /// Our switch ports of kind `kind` (pods, node links...).
    pub fn owned_switch_ports(&self, kind: Kind) -> impl Iterator<Item = &LogicalSwitchPort> {
        self.switch_ports
            .values()
            .filter(move |p| Owner::of(&p.external_ids).is_some_and(|o| o.kind() == kind))
    }

    /// Our port groups of kind `kind`.
    pub fn owned_port_groups(&self, kind: Kind) -> impl Iterator<Item = &PortGroup> {
        self.port_groups
            .iter()
            .filter(move |g| Owner::of(&g.external_ids).is_some_and(|o| o.kind() == kind))
    }

    /// The ports of switch `switch`.
    pub fn ports_of<'a>(
        &'a self,
        switch: &'a LogicalSwitch,
    ) -> impl Iterator<Item = &'a LogicalSwitchPort> {
        switch
            .ports
            .iter()
            .filter_map(|uuid| self.switch_ports.get(uuid))
    }
}

/// A chassis of the Southbound database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChassisName {
    /// Its name (the hypervisor's `system-id`).
    pub name: String,
    /// The host it runs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
}

/// The chassis each bound logical port is on (Southbound `Port_Binding.chassis`
/// → `Chassis`), by logical port name; unbound ports are absent.
pub async fn read_bindings(sb: &Client) -> Result<BTreeMap<String, ChassisName>> {
    let select = |table: &str, columns: &[&str]| Operation::Select {
        table: table.to_string(),
        conditions: Vec::new(),
        columns: Some(columns.iter().map(|c| c.to_string()).collect()),
    };
    let results = sb
        .transact(
            SB_DATABASE,
            vec![
                select("Chassis", &["_uuid", "name", "hostname"]),
                select("Port_Binding", &["logical_port", "chassis"]),
            ],
        )
        .await
        .context("reading the Southbound Chassis and Port_Binding tables")?;
    let [
        OperationResult::Rows(chassis),
        OperationResult::Rows(bindings),
    ] = results.as_slice()
    else {
        bail!("unexpected reply to the Southbound select: {results:?}");
    };
    Ok(bindings_of(chassis, bindings))
}

/// Joins `Port_Binding` rows (`logical_port`, `chassis`) to `Chassis` rows
/// (`_uuid`, `name`, `hostname`).
fn bindings_of(chassis: &[Row], bindings: &[Row]) -> BTreeMap<String, ChassisName> {
    let chassis: BTreeMap<Uuid, ChassisName> = chassis
        .iter()
        .filter_map(|row| {
            Some((
                row.uuid()?,
                ChassisName {
                    name: row.get_str("name")?.to_string(),
                    hostname: row
                        .get_str("hostname")
                        .filter(|h| !h.is_empty())
                        .map(str::to_string),
                },
            ))
        })
        .collect();
    bindings
        .iter()
        .filter_map(|row| {
            let on = chassis.get(&row.get_uuid("chassis")?)?;
            Some((row.get_str("logical_port")?.to_string(), on.clone()))
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod fixture;

#[cfg(test)]
mod tests {
    use super::*;
    use ovsdb::{Atom, Value};

    #[test]
    fn bindings_join_ports_to_their_chassis() {
        let ch = Uuid::parse_str("6c1f2f4e-0000-4000-8000-000000000001").unwrap();
        let chassis = vec![
            Row::new()
                .with("_uuid", Atom::Uuid(ch))
                .with("name", "node-1")
                .with("hostname", "host-1"),
        ];
        let bindings = vec![
            Row::new()
                .with("logical_port", "web.ns1")
                .with("chassis", Value::set([Atom::Uuid(ch)])),
            Row::new()
                .with("logical_port", "unbound")
                .with("chassis", Value::empty_set()),
        ];
        let bound = bindings_of(&chassis, &bindings);
        assert_eq!(
            bound.get("web.ns1"),
            Some(&ChassisName {
                name: "node-1".into(),
                hostname: Some("host-1".into())
            })
        );
        assert!(!bound.contains_key("unbound"));
    }
}
