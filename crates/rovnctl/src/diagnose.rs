//! `rovnctl diagnose`: what pods of a subnet can reach on the Neutron networks
//! of its router, read from the OVN Northbound database.
//!
//! The one surprise of sharing a router with Neutron: VM ports with port
//! security sit in `neutron_pg_drop`, so a NEW connection from a pod to a VM
//! is dropped unless one of the VM's security groups has an ingress rule
//! admitting the pod subnet (`remote_ip_prefix`). VM → pod and replies work.

use std::fmt;

use anyhow::{Result, bail};
use ipnet::IpNet;
use ovn::nb::LogicalSwitchPort;
use ovn::owned::owner::{self, NEUTRON_NETWORK_NAME};
use ovn::security_groups::{Reach, SecurityRows, VmPortReach, pod_to_vm_reach};
use ovsdb::Client;

use crate::snapshot::NbSnapshot;

/// The finding for one Neutron network attached to the router.
#[derive(Debug, Clone)]
pub struct NetworkReport {
    /// The network's switch (`neutron-<uuid>`).
    pub switch: String,
    /// Its Neutron display name.
    pub display_name: String,
    /// The router port's networks on it.
    pub cidrs: Vec<String>,
    /// Each VM port on the network.
    pub vm_ports: Vec<VmPortReach>,
}

/// What `diagnose` found for a CIDR on a router.
#[derive(Debug, Clone)]
pub struct Report {
    /// The pods' CIDR.
    pub cidr: IpNet,
    /// The OVN router.
    pub router: String,
    /// Neutron's display name of the router, when it is Neutron's.
    pub neutron_name: Option<String>,
    /// Neutron networks attached to the router.
    pub networks: Vec<NetworkReport>,
}

impl Report {
    /// VM ports to which new connections from the pods are dropped.
    pub fn dropped(&self) -> impl Iterator<Item = &VmPortReach> {
        self.networks
            .iter()
            .flat_map(|n| n.vm_ports.iter())
            .filter(|p| p.reach == Reach::Dropped)
    }
}

/// Reads the Northbound tables involved and reports, for each VM port on the
/// Neutron networks of `router`, what pods in `cidr` can open towards it.
pub async fn diagnose(nb_client: &Client, router: &str, cidr: IpNet) -> Result<Report> {
    report(&NbSnapshot::read(nb_client).await?, router, cidr)
}

/// For each VM port on the Neutron networks of `router` in `nb`, what pods in
/// `cidr` can open towards it.
pub fn report(nb: &NbSnapshot, router: &str, cidr: IpNet) -> Result<Report> {
    let NbSnapshot {
        routers,
        router_ports,
        switches,
        switch_ports,
        port_groups,
        acls,
        address_sets,
    } = nb;
    let Some(lr) = routers.iter().find(|r| r.name == router) else {
        bail!("no Logical_Router named {router:?} in the Northbound database");
    };
    let security = SecurityRows {
        port_groups,
        acls,
        address_sets,
    };
    let mut networks = Vec::new();
    for lrp in lr.ports.iter().filter_map(|uuid| router_ports.get(uuid)) {
        let Some(switch_name) = lrp.external_ids.get(NEUTRON_NETWORK_NAME) else {
            continue;
        };
        let Some(switch) = switches.iter().find(|s| &s.name == switch_name) else {
            continue;
        };
        let vm_ports: Vec<&LogicalSwitchPort> = switch
            .ports
            .iter()
            .filter_map(|uuid| switch_ports.get(uuid))
            .filter(|p| p.type_.is_empty() && owner::is_neutron_owned(&p.external_ids))
            .collect();
        networks.push(NetworkReport {
            switch: switch.name.clone(),
            display_name: switch
                .external_ids
                .get(NEUTRON_NETWORK_NAME)
                .cloned()
                .unwrap_or_default(),
            cidrs: lrp.networks.iter().cloned().collect(),
            vm_ports: pod_to_vm_reach(cidr, &vm_ports, &security),
        });
    }
    Ok(Report {
        cidr,
        router: router.to_string(),
        neutron_name: lr.external_ids.get(owner::NEUTRON_ROUTER_NAME).cloned(),
        networks,
    })
}

/// The security group UUID behind a `pg_<uuid with _>` port group.
pub fn security_group_id(port_group: &str) -> String {
    port_group.trim_start_matches("pg_").replace('_', "-")
}

/// The `openstack` command adding to security group `group` an ingress rule
/// admitting `remote` (only `protocol`, and its destination port, when given).
pub fn ingress_rule_command(
    remote: IpNet,
    protocol: Option<(&str, Option<u16>)>,
    group: &str,
) -> String {
    let ethertype = if remote.addr().is_ipv4() {
        "IPv4"
    } else {
        "IPv6"
    };
    let mut command =
        format!("openstack security group rule create --ingress --ethertype {ethertype}");
    if let Some((protocol, port)) = protocol {
        command.push_str(&format!(" --protocol {protocol}"));
        if let Some(port) = port {
            command.push_str(&format!(" --dst-port {port}"));
        }
    }
    command.push_str(&format!(" --remote-ip {remote} {group}"));
    command
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pods in {} on router {}", self.cidr, self.router)?;
        match &self.neutron_name {
            Some(name) => writeln!(f, " (Neutron router {name:?})")?,
            None => writeln!(f, " (not a Neutron router)")?,
        }
        if self.networks.is_empty() {
            writeln!(f, "  no Neutron network is attached to this router")?;
        }
        for network in &self.networks {
            writeln!(
                f,
                "  Neutron network {:?} ({}) via {}",
                network.display_name,
                network.switch,
                network.cidrs.join(", ")
            )?;
            for port in &network.vm_ports {
                let addresses = port.addresses.join(" ");
                let verdict = match &port.reach {
                    Reach::Unfiltered => "reachable: port security is off".to_string(),
                    Reach::Allowed { rule } => format!("reachable: allowed by {rule:?}"),
                    Reach::Partial { rules } => {
                        format!("partly reachable: only what {rules:?} allows")
                    }
                    Reach::Dropped => format!(
                        "DROPPED: new connections from {} are dropped by neutron_pg_drop \
                         (VM -> pod and replies work)",
                        self.cidr
                    ),
                };
                writeln!(f, "    VM port {} [{addresses}]: {verdict}", port.port)?;
                if port.reach == Reach::Dropped {
                    for group in &port.security_groups {
                        writeln!(
                            f,
                            "      fix: {}",
                            ingress_rule_command(self.cidr, None, &security_group_id(group))
                        )?;
                    }
                }
            }
        }
        Ok(())
    }
}
