//! Fixtures writing into an [`OvnEnv`]'s Northbound database exactly what
//! Neutron Zed (ML2/OVN) writes: routers, networks with DHCP options, router
//! interfaces, VM ports and security groups (see
//! `shared/reference/neutron-zed-ovn-nb.md`). Every write goes through
//! `ovn-nbctl`, one transaction per Neutron operation, like neutron-server.
//!
//! ```no_run
//! # fn demo() -> anyhow::Result<()> {
//! use testenv::neutron::{NeutronNetwork, NeutronRouter, SecurityGroup};
//! let env = testenv::ovn::OvnEnv::builder().start()?;
//! let mut router = NeutronRouter::create(&env, "router1")?;
//! let net1 = NeutronNetwork::create(&env, "net1", "10.0.1.0/24")?;
//! let _iface = router.add_interface(&env, &net1)?;
//! let sg = SecurityGroup::create(&env)?;
//! let _vm = net1.add_vm_port(&env, "vm1-port", "10.0.1.50", "chassis-1", &sg)?;
//! sg.add_rule_allowing(&env, "10.0.2.0/24")?;
//! # Ok(()) }
//! ```
//!
//! [`NeutronRows`] proves rovn never changes a row Neutron owns.

mod rows;

use std::net::Ipv4Addr;

use anyhow::{Context, Result, anyhow, bail};

use crate::ovn::OvnEnv;
pub use rows::{NeutronRows, neutron_rows};

/// Neutron's default project in the fixtures (`neutron:project_id`).
pub const PROJECT_ID: &str = "9d8a5bd1d2ba4c2e9b1f3a7e5c6d4b21";
/// MTU Neutron gives Geneve networks (`neutron:mtu`).
pub const NETWORK_MTU: &str = "1442";
/// DNS server in the fixtures' DHCP options.
pub const DNS_SERVER: &str = "{8.8.8.8}";
/// Name of Neutron's drop-everything port group.
pub const PG_DROP: &str = "neutron_pg_drop";

/// A fresh random UUID, as Neutron gives every object.
pub fn new_uuid() -> Result<String> {
    let raw = std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .context("reading /proc/sys/kernel/random/uuid")?;
    Ok(raw.trim().to_string())
}

/// A MAC in Neutron's `fa:16:3e` range, derived from a fresh UUID.
pub fn neutron_mac() -> Result<String> {
    let hex: String = new_uuid()?
        .chars()
        .filter(char::is_ascii_hexdigit)
        .collect();
    Ok(format!(
        "fa:16:3e:{}:{}:{}",
        &hex[0..2],
        &hex[2..4],
        &hex[4..6]
    ))
}

fn nbctl(env: &OvnEnv, args: &[String]) -> Result<String> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    env.nbctl(&args)
}

/// `external_ids:"key"=value` for `ovn-nbctl create/set`.
fn ext(key: &str, value: &str) -> String {
    format!("external_ids:\"{key}\"=\"{value}\"")
}

/// `column:"key"=value` for other map columns.
fn map(column: &str, key: &str, value: &str) -> String {
    format!("{column}:\"{key}\"=\"{value}\"")
}

/// An IPv4 CIDR (`10.0.1.0/24`) and its first usable address, Neutron's
/// default gateway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cidr {
    /// Network address.
    pub network: Ipv4Addr,
    /// Prefix length.
    pub prefix: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/len`.
    pub fn parse(cidr: &str) -> Result<Self> {
        let (addr, prefix) = cidr
            .split_once('/')
            .ok_or_else(|| anyhow!("{cidr}: not a CIDR"))?;
        let network: Ipv4Addr = addr.parse().with_context(|| format!("{cidr}: address"))?;
        let prefix: u8 = prefix.parse().with_context(|| format!("{cidr}: prefix"))?;
        if prefix > 30 {
            bail!("{cidr}: prefix too long for a Neutron subnet");
        }
        Ok(Self { network, prefix })
    }

    /// The first usable address (Neutron's default `gateway_ip`).
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// A Neutron router: Logical_Router `neutron-<router uuid>`.
#[derive(Clone, Debug)]
pub struct NeutronRouter {
    /// Neutron's router UUID.
    pub id: String,
    /// Neutron display name (`neutron:router_name`).
    pub display_name: String,
    /// Current `neutron:revision_number`.
    pub revision: u64,
}

impl NeutronRouter {
    /// `openstack router create <display_name>`.
    pub fn create(env: &OvnEnv, display_name: &str) -> Result<Self> {
        Self::create_with_id(env, &new_uuid()?, display_name)
    }

    /// A router with a given UUID: what Neutron's DB sync writes when it
    /// restores a router that vanished from the Northbound database.
    pub fn create_with_id(env: &OvnEnv, id: &str, display_name: &str) -> Result<Self> {
        let router = Self {
            id: id.to_string(),
            display_name: display_name.to_string(),
            revision: 1,
        };
        nbctl(
            env,
            &[
                "create".into(),
                "Logical_Router".into(),
                format!("name={}", router.lr_name()),
                "enabled=true".into(),
                map("options", "always_learn_from_arp_request", "false"),
                map("options", "dynamic_neigh_routers", "true"),
                ext("neutron:router_name", display_name),
                ext("neutron:revision_number", &router.revision.to_string()),
                ext("neutron:availability_zone_hints", ""),
                ext("neutron:gw_port_id", ""),
                ext("neutron:gw_network_id", ""),
            ],
        )?;
        Ok(router)
    }

    /// The Logical_Router's name, `neutron-<uuid>`.
    pub fn lr_name(&self) -> String {
        format!("neutron-{}", self.id)
    }

    /// `openstack router set --name <display_name>`: Neutron rewrites the
    /// router's `external_ids` with the new name and revision.
    pub fn rename(&mut self, env: &OvnEnv, display_name: &str) -> Result<()> {
        self.revision += 1;
        self.display_name = display_name.to_string();
        nbctl(
            env,
            &[
                "set".into(),
                "Logical_Router".into(),
                self.lr_name(),
                ext("neutron:router_name", display_name),
                ext("neutron:revision_number", &self.revision.to_string()),
                ext("neutron:availability_zone_hints", ""),
                ext("neutron:gw_port_id", ""),
                ext("neutron:gw_network_id", ""),
            ],
        )?;
        Ok(())
    }

    /// `openstack router add subnet <router> <network's subnet>`: a router
    /// port `lrp-<port>` on the router and a router-type switch port
    /// `<port>` on the network, in one transaction.
    pub fn add_interface(
        &mut self,
        env: &OvnEnv,
        network: &NeutronNetwork,
    ) -> Result<RouterInterface> {
        let iface = RouterInterface {
            port_id: new_uuid()?,
            mac: neutron_mac()?,
            network: format!("{}/{}", network.cidr.gateway(), network.cidr.prefix),
            switch: network.ls_name(),
        };
        let lrp = iface.lrp_name();
        nbctl(
            env,
            &[
                "--".into(),
                "--id=@lsp".into(),
                "create".into(),
                "Logical_Switch_Port".into(),
                format!("name={}", iface.port_id),
                "type=router".into(),
                "addresses=router".into(),
                "enabled=true".into(),
                map("options", "router-port", &lrp),
                ext("neutron:device_owner", "network:router_interface"),
                ext("neutron:device_id", &self.id),
                ext("neutron:cidrs", &iface.network),
                ext("neutron:network_name", &iface.switch),
                ext("neutron:port_name", ""),
                ext("neutron:project_id", PROJECT_ID),
                ext("neutron:revision_number", "3"),
                ext("neutron:security_group_ids", ""),
                "--".into(),
                "add".into(),
                "Logical_Switch".into(),
                iface.switch.clone(),
                "ports".into(),
                "@lsp".into(),
                "--".into(),
                "--id=@lrp".into(),
                "create".into(),
                "Logical_Router_Port".into(),
                format!("name={lrp}"),
                format!("mac=\"{}\"", iface.mac),
                format!("networks=\"{}\"", iface.network),
                ext("neutron:network_name", &iface.switch),
                ext("neutron:revision_number", "3"),
                ext("neutron:router_name", &self.id),
                ext("neutron:subnet_ids", &network.subnet_id),
                "--".into(),
                "add".into(),
                "Logical_Router".into(),
                self.lr_name(),
                "ports".into(),
                "@lrp".into(),
            ],
        )?;
        Ok(iface)
    }

    /// `openstack router remove subnet`: both ports of the interface go.
    pub fn remove_interface(&mut self, env: &OvnEnv, iface: &RouterInterface) -> Result<()> {
        nbctl(
            env,
            &[
                "--".into(),
                "lrp-del".into(),
                iface.lrp_name(),
                "--".into(),
                "lsp-del".into(),
                iface.port_id.clone(),
            ],
        )?;
        Ok(())
    }

    /// `openstack router delete` (after its interfaces are removed, as
    /// Neutron requires): every router port goes with the router, ours
    /// included; Neutron's interface switch ports are deleted too.
    pub fn delete(self, env: &OvnEnv) -> Result<()> {
        let ports = nbctl(
            env,
            &[
                "--bare".into(),
                "--columns=name".into(),
                "find".into(),
                "Logical_Switch_Port".into(),
                format!("external_ids:\"neutron:device_id\"=\"{}\"", self.id),
                "type=router".into(),
            ],
        )?;
        let mut args: Vec<String> = Vec::new();
        for port in ports.split_whitespace() {
            args.extend(["--".into(), "lsp-del".into(), port.to_string()]);
        }
        args.extend(["--".into(), "lr-del".into(), self.lr_name()]);
        nbctl(env, &args)?;
        Ok(())
    }
}

/// A router interface: `lrp-<port>` on the router, `<port>` on the network.
#[derive(Clone, Debug)]
pub struct RouterInterface {
    /// Neutron port UUID.
    pub port_id: String,
    /// The router port's MAC (`fa:16:3e:..`).
    pub mac: String,
    /// The router port's network (`10.0.1.1/24`).
    pub network: String,
    /// The network's Logical_Switch.
    pub switch: String,
}

impl RouterInterface {
    /// The Logical_Router_Port's name, `lrp-<port uuid>`.
    pub fn lrp_name(&self) -> String {
        format!("lrp-{}", self.port_id)
    }
}

/// A Neutron network with one IPv4 subnet: Logical_Switch
/// `neutron-<net uuid>` and the subnet's DHCP_Options.
#[derive(Clone, Debug)]
pub struct NeutronNetwork {
    /// Neutron network UUID.
    pub id: String,
    /// Neutron subnet UUID.
    pub subnet_id: String,
    /// Display name (`neutron:network_name` of the switch).
    pub display_name: String,
    /// The subnet's CIDR.
    pub cidr: Cidr,
    /// `_uuid` of the subnet's DHCP_Options row.
    pub dhcp_options: String,
}

impl NeutronNetwork {
    /// `openstack network create <display_name>` and `openstack subnet
    /// create --subnet-range <cidr>` (DHCP enabled, default gateway).
    pub fn create(env: &OvnEnv, display_name: &str, cidr: &str) -> Result<Self> {
        let cidr = Cidr::parse(cidr)?;
        let id = new_uuid()?;
        let ls_name = format!("neutron-{id}");
        nbctl(
            env,
            &[
                "create".into(),
                "Logical_Switch".into(),
                format!("name={ls_name}"),
                map("other_config", "mcast_snoop", "false"),
                map("other_config", "mcast_flood_unregistered", "false"),
                map("other_config", "vlan-passthru", "false"),
                ext("neutron:network_name", display_name),
                ext("neutron:mtu", NETWORK_MTU),
                ext("neutron:revision_number", "1"),
                ext("neutron:availability_zone_hints", ""),
            ],
        )?;
        let subnet_id = new_uuid()?;
        let gateway = cidr.gateway().to_string();
        let dhcp_options = nbctl(
            env,
            &[
                "create".into(),
                "DHCP_Options".into(),
                format!("cidr=\"{cidr}\""),
                map("options", "router", &gateway),
                map("options", "server_id", &gateway),
                map("options", "server_mac", &neutron_mac()?),
                map("options", "lease_time", "43200"),
                map("options", "mtu", NETWORK_MTU),
                map("options", "dns_server", DNS_SERVER),
                ext("subnet_id", &subnet_id),
                ext("neutron:revision_number", "0"),
            ],
        )?
        .trim()
        .to_string();
        Ok(Self {
            id,
            subnet_id,
            display_name: display_name.to_string(),
            cidr,
            dhcp_options,
        })
    }

    /// The Logical_Switch's name, `neutron-<uuid>`.
    pub fn ls_name(&self) -> String {
        format!("neutron-{}", self.id)
    }

    /// `openstack port create --network <net> --fixed-ip ip_address=<ip>
    /// --security-group <sg> <port_name>` bound by `openstack server create`
    /// on `host`: the VM's switch port `<port uuid>`, member of
    /// `neutron_pg_drop` and of the security group's port group.
    pub fn add_vm_port(
        &self,
        env: &OvnEnv,
        port_name: &str,
        ip: &str,
        host: &str,
        sg: &SecurityGroup,
    ) -> Result<VmPort> {
        ensure_pg_drop(env)?;
        let port = VmPort {
            port_id: new_uuid()?,
            mac: neutron_mac()?,
            ip: ip.to_string(),
        };
        let address = format!("{} {}", port.mac, port.ip);
        nbctl(
            env,
            &[
                "--".into(),
                "--id=@lsp".into(),
                "create".into(),
                "Logical_Switch_Port".into(),
                format!("name={}", port.port_id),
                format!("addresses=\"{address}\""),
                format!("port_security=\"{address}\""),
                format!("dhcpv4_options={}", self.dhcp_options),
                "enabled=true".into(),
                map("options", "mcast_flood_reports", "true"),
                map("options", "requested-chassis", host),
                ext("neutron:port_name", port_name),
                ext("neutron:device_owner", "compute:nova"),
                ext("neutron:device_id", &new_uuid()?),
                ext(
                    "neutron:cidrs",
                    &format!("{}/{}", port.ip, self.cidr.prefix),
                ),
                ext("neutron:network_name", &self.ls_name()),
                ext("neutron:project_id", PROJECT_ID),
                ext("neutron:revision_number", "4"),
                ext("neutron:security_group_ids", &sg.id),
                "--".into(),
                "add".into(),
                "Logical_Switch".into(),
                self.ls_name(),
                "ports".into(),
                "@lsp".into(),
                "--".into(),
                "add".into(),
                "Port_Group".into(),
                PG_DROP.into(),
                "ports".into(),
                "@lsp".into(),
                "--".into(),
                "add".into(),
                "Port_Group".into(),
                sg.pg_name(),
                "ports".into(),
                "@lsp".into(),
            ],
        )?;
        Ok(port)
    }
}

/// A VM's port on a Neutron network.
#[derive(Clone, Debug)]
pub struct VmPort {
    /// Neutron port UUID = Logical_Switch_Port name = OVS `iface-id`.
    pub port_id: String,
    /// Its MAC (`fa:16:3e:..`).
    pub mac: String,
    /// Its IPv4 address.
    pub ip: String,
}

/// Creates `neutron_pg_drop` with its two drop ACLs, as neutron-server does
/// at start, unless it exists.
fn ensure_pg_drop(env: &OvnEnv) -> Result<()> {
    let found = nbctl(
        env,
        &[
            "--bare".into(),
            "--columns=_uuid".into(),
            "find".into(),
            "Port_Group".into(),
            format!("name={PG_DROP}"),
        ],
    )?;
    if !found.trim().is_empty() {
        return Ok(());
    }
    nbctl(
        env,
        &[
            "--".into(),
            "--id=@in".into(),
            "create".into(),
            "ACL".into(),
            "direction=from-lport".into(),
            "priority=1001".into(),
            format!("match=\"inport == @{PG_DROP} && ip\""),
            "action=drop".into(),
            "--".into(),
            "--id=@out".into(),
            "create".into(),
            "ACL".into(),
            "direction=to-lport".into(),
            "priority=1001".into(),
            format!("match=\"outport == @{PG_DROP} && ip\""),
            "action=drop".into(),
            "--".into(),
            "create".into(),
            "Port_Group".into(),
            format!("name={PG_DROP}"),
            "acls=[@in,@out]".into(),
        ],
    )?;
    Ok(())
}

/// A Neutron security group: Port_Group `pg_<sg uuid with _>` with the
/// default rules (egress IPv4/IPv6 to anywhere, ingress IPv4/IPv6 from
/// members of the group).
#[derive(Clone, Debug)]
pub struct SecurityGroup {
    /// Neutron security group UUID.
    pub id: String,
}

impl SecurityGroup {
    /// `openstack security group create`: the port group and its 4 default
    /// `allow-related` ACLs (priority 1002).
    pub fn create(env: &OvnEnv) -> Result<Self> {
        let sg = Self { id: new_uuid()? };
        let pg = sg.pg_name();
        let mut args: Vec<String> = Vec::new();
        let rules = [
            ("from-lport", format!("inport == @{pg} && ip4")),
            ("from-lport", format!("inport == @{pg} && ip6")),
            (
                "to-lport",
                format!("outport == @{pg} && ip4 && ip4.src == ${pg}_ip4"),
            ),
            (
                "to-lport",
                format!("outport == @{pg} && ip6 && ip6.src == ${pg}_ip6"),
            ),
        ];
        let mut acls = Vec::new();
        for (i, (direction, matches)) in rules.iter().enumerate() {
            let id = format!("@acl{i}");
            args.extend([
                "--".into(),
                format!("--id={id}"),
                "create".into(),
                "ACL".into(),
                format!("direction={direction}"),
                "priority=1002".into(),
                format!("match=\"{matches}\""),
                "action=allow-related".into(),
                ext("neutron:security_group_rule_id", &new_uuid()?),
            ]);
            acls.push(id);
        }
        args.extend([
            "--".into(),
            "create".into(),
            "Port_Group".into(),
            format!("name={pg}"),
            format!("acls=[{}]", acls.join(",")),
            ext("neutron:security_group_id", &sg.id),
        ]);
        nbctl(env, &args)?;
        Ok(sg)
    }

    /// The Port_Group's name: `pg_` and the UUID with `_` for `-`.
    pub fn pg_name(&self) -> String {
        format!("pg_{}", self.id.replace('-', "_"))
    }

    /// `openstack security group rule create --ingress --remote-ip <cidr>`:
    /// an `allow-related` ACL (priority 1002) letting IPv4 from `cidr` in.
    pub fn add_rule_allowing(&self, env: &OvnEnv, cidr: &str) -> Result<()> {
        let pg = self.pg_name();
        nbctl(
            env,
            &[
                "--".into(),
                "--id=@acl".into(),
                "create".into(),
                "ACL".into(),
                "direction=to-lport".into(),
                "priority=1002".into(),
                format!("match=\"outport == @{pg} && ip4 && ip4.src == {cidr}\""),
                "action=allow-related".into(),
                ext("neutron:security_group_rule_id", &new_uuid()?),
                "--".into(),
                "add".into(),
                "Port_Group".into(),
                pg,
                "acls".into(),
                "@acl".into(),
            ],
        )?;
        Ok(())
    }
}
