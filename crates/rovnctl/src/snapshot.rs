//! The Northbound rows `rovnctl diagnose` reads, read once.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use ovn::nb::{self, Acl, AddressSet, LogicalRouter, LogicalRouterPort, LogicalSwitch};
use ovn::nb::{LogicalSwitchPort, PortGroup};
use ovn::view::View;
use ovn::{Table, check_schema};
use ovsdb::{Client, MonitorSpec, Uuid};

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
