//! Typed rows of the OVN Northbound tables rovn reads and writes.

use std::collections::{BTreeMap, BTreeSet};

use ovsdb::Uuid;

use crate::table::ovn_table;

/// Name of the Northbound database.
pub const DATABASE: &str = "OVN_Northbound";

type Map = BTreeMap<String, String>;
type Strings = BTreeSet<String>;
type Refs = BTreeSet<Uuid>;

ovn_table! {
    /// A logical router (Neutron's `neutron-<uuid>` or one of our VPCs).
    LogicalRouter = "Logical_Router" {
        /// Router name.
        name: String = "name",
        /// Its Logical_Router_Ports.
        ports: Refs = "ports",
        /// Its Logical_Router_Static_Routes.
        static_routes: Refs = "static_routes",
        /// Its NAT rules.
        nat: Refs = "nat",
        /// Router options.
        options: Map = "options",
        /// Owner keys (`neutron:router_name`, `rovn:owner`, ...).
        external_ids: Map = "external_ids",
        /// Administrative state (empty: enabled).
        enabled: Option<bool> = "enabled",
    }
}

ovn_table! {
    /// A port of a logical router.
    LogicalRouterPort = "Logical_Router_Port" {
        /// Port name (`lrp-<uuid>` for Neutron's).
        name: String = "name",
        /// Ethernet address.
        mac: String = "mac",
        /// IP addresses with prefix length (`10.0.1.1/24`).
        networks: Strings = "networks",
        /// Port options.
        options: Map = "options",
        /// Owner keys.
        external_ids: Map = "external_ids",
        /// Peer router port, for router-to-router links.
        peer: Option<String> = "peer",
        /// Administrative state (empty: enabled).
        enabled: Option<bool> = "enabled",
    }
}

ovn_table! {
    /// A logical switch (a Neutron network or one of our subnets).
    LogicalSwitch = "Logical_Switch" {
        /// Switch name.
        name: String = "name",
        /// Its Logical_Switch_Ports.
        ports: Refs = "ports",
        /// ACLs applied to the switch.
        acls: Refs = "acls",
        /// Load_Balancer_Groups whose load balancers apply to the switch.
        load_balancer_group: Refs = "load_balancer_group",
        /// Switch configuration (`subnet`, `exclude_ips`, `mcast_snoop`...).
        other_config: Map = "other_config",
        /// Owner keys.
        external_ids: Map = "external_ids",
    }
}

ovn_table! {
    /// A port of a logical switch (a pod, a VM, or a router attachment).
    LogicalSwitchPort = "Logical_Switch_Port" {
        /// Port name (`<pod>.<namespace>` for pods, the Neutron port uuid for VMs).
        name: String = "name",
        /// Port type (`""` for workloads, `router`, `localnet`...).
        type_: String = "type",
        /// Addresses (`"MAC IP..."`, or `router`).
        addresses: Strings = "addresses",
        /// Port security entries (`"MAC IP..."`).
        port_security: Strings = "port_security",
        /// Options (`router-port`, `requested-chassis`...).
        options: Map = "options",
        /// Owner keys.
        external_ids: Map = "external_ids",
        /// Administrative state (empty: enabled).
        enabled: Option<bool> = "enabled",
        /// DHCPv4 options row.
        dhcpv4_options: Option<Uuid> = "dhcpv4_options",
    }
    read_only {
        /// Set by northd once the port is bound on a chassis.
        up: Option<bool> = "up",
    }
}

ovn_table! {
    /// DHCP options for a CIDR.
    DhcpOptions = "DHCP_Options" {
        /// The CIDR served.
        cidr: String = "cidr",
        /// DHCP options (`router`, `server_id`, `lease_time`...).
        options: Map = "options",
        /// Owner keys (`subnet_id` for Neutron's).
        external_ids: Map = "external_ids",
    }
}

ovn_table! {
    /// A static route of a logical router.
    LogicalRouterStaticRoute = "Logical_Router_Static_Route" {
        /// Destination prefix.
        ip_prefix: String = "ip_prefix",
        /// Next hop address.
        nexthop: String = "nexthop",
        /// Output port, if fixed.
        output_port: Option<String> = "output_port",
        /// `dst-ip` or `src-ip` (empty: dst-ip).
        policy: Option<String> = "policy",
        /// Route table name (empty: main).
        route_table: String = "route_table",
        /// Owner keys.
        external_ids: Map = "external_ids",
    }
}

ovn_table! {
    /// A NAT rule of a logical router.
    Nat = "NAT" {
        /// `snat`, `dnat` or `dnat_and_snat`.
        type_: String = "type",
        /// External address.
        external_ip: String = "external_ip",
        /// Logical (internal) address or CIDR.
        logical_ip: String = "logical_ip",
        /// Logical port, for distributed NAT.
        logical_port: Option<String> = "logical_port",
        /// Owner keys.
        external_ids: Map = "external_ids",
    }
}

ovn_table! {
    /// An access control rule, on a switch or a port group.
    Acl = "ACL" {
        /// `from-lport` or `to-lport`.
        direction: String = "direction",
        /// Priority (0 to 32767).
        priority: i64 = "priority",
        /// Match expression.
        match_: String = "match",
        /// `allow`, `allow-related`, `drop`, `reject`...
        action: String = "action",
        /// Whether matches are logged.
        log: bool = "log",
        /// Optional name (at most 63 characters).
        name: Option<String> = "name",
        /// Options (`apply-after-lb`: a `from-lport` ACL evaluated after
        /// the load balancers, on the backend's address).
        options: Map = "options",
        /// Owner keys (`neutron:security_group_rule_id` for Neutron's).
        external_ids: Map = "external_ids",
    }
}

ovn_table! {
    /// A group of switch ports, target of ACLs (Neutron security groups).
    PortGroup = "Port_Group" {
        /// Group name (`pg_<sg>`, `neutron_pg_drop`).
        name: String = "name",
        /// Member Logical_Switch_Ports.
        ports: Refs = "ports",
        /// ACLs of the group.
        acls: Refs = "acls",
        /// Owner keys.
        external_ids: Map = "external_ids",
    }
}

ovn_table! {
    /// A named set of addresses usable in ACL matches.
    AddressSet = "Address_Set" {
        /// Set name.
        name: String = "name",
        /// Addresses.
        addresses: Strings = "addresses",
        /// Owner keys.
        external_ids: Map = "external_ids",
    }
}

ovn_table! {
    /// A load balancer: virtual `ip:port`s statefully DNAT-ed to backends.
    LoadBalancer = "Load_Balancer" {
        /// Name (only for humans).
        name: String = "name",
        /// `"vip:port"` (`"[v6]:port"`) -> `"backend:port,backend:port"`
        /// (empty: no backend).
        vips: Map = "vips",
        /// `tcp`, `udp` or `sctp` (empty: tcp).
        protocol: Option<String> = "protocol",
        /// Fields hashed to pick a backend (`ip_src`...; empty: dp_hash).
        selection_fields: Strings = "selection_fields",
        /// Options (`reject`, `affinity_timeout`...).
        options: Map = "options",
        /// Owner keys.
        external_ids: Map = "external_ids",
    }
}

ovn_table! {
    /// A group of load balancers, applied together to switches and routers
    /// (it has no `external_ids`: ours are known by name).
    LoadBalancerGroup = "Load_Balancer_Group" {
        /// Group name (unique).
        name: String = "name",
        /// Member load balancers (weak: a deleted balancer leaves the group).
        load_balancer: Refs = "load_balancer",
    }
}

ovn_table! {
    /// The Northbound global configuration row.
    NbGlobal = "NB_Global" {
        /// Global options.
        options: Map = "options",
        /// External ids.
        external_ids: Map = "external_ids",
        /// Configuration sequence number requested by clients.
        nb_cfg: i64 = "nb_cfg",
    }
    read_only {
        /// Sequence number reached by the Southbound database.
        sb_cfg: i64 = "sb_cfg",
        /// Sequence number reached by every chassis.
        hv_cfg: i64 = "hv_cfg",
    }
}

/// Every Northbound table and the columns rovn needs, for the schema check.
pub const REQUIRED: &[(&str, &[&str])] = &[
    table_columns::<LogicalRouter>(),
    table_columns::<LogicalRouterPort>(),
    table_columns::<LogicalSwitch>(),
    table_columns::<LogicalSwitchPort>(),
    table_columns::<DhcpOptions>(),
    table_columns::<LogicalRouterStaticRoute>(),
    table_columns::<Nat>(),
    table_columns::<Acl>(),
    table_columns::<PortGroup>(),
    table_columns::<AddressSet>(),
    table_columns::<LoadBalancer>(),
    table_columns::<LoadBalancerGroup>(),
    table_columns::<NbGlobal>(),
];

pub(crate) const fn table_columns<T: crate::table::Table>()
-> (&'static str, &'static [&'static str]) {
    (T::NAME, T::COLUMNS)
}
