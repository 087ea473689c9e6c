//! Typed rows of the local Open_vSwitch database (chassis set-up, pod ports).

use std::collections::{BTreeMap, BTreeSet};

use ovsdb::Uuid;

use crate::nb::table_columns;
use crate::table::ovn_table;

/// Name of the local switch database.
pub const DATABASE: &str = "Open_vSwitch";

type Map = BTreeMap<String, String>;
type Refs = BTreeSet<Uuid>;

ovn_table! {
    /// The root row: the chassis' OVN settings live in its `external_ids`.
    OpenVSwitch = "Open_vSwitch" {
        /// Bridges of this switch.
        bridges: Refs = "bridges",
        /// `system-id`, `ovn-remote`, `ovn-encap-type`, `ovn-encap-ip`...
        external_ids: Map = "external_ids",
        /// Switch-wide configuration.
        other_config: Map = "other_config",
        /// Configuration sequence number requested by clients.
        next_cfg: i64 = "next_cfg",
    }
    read_only {
        /// Configuration sequence number ovs-vswitchd reached.
        cur_cfg: i64 = "cur_cfg",
        /// Version of Open vSwitch.
        ovs_version: Option<String> = "ovs_version",
    }
}

ovn_table! {
    /// A bridge (`br-int`).
    Bridge = "Bridge" {
        /// Bridge name.
        name: String = "name",
        /// Its ports.
        ports: Refs = "ports",
        /// `system` or `netdev` (userspace datapath).
        datapath_type: String = "datapath_type",
        /// `standalone` or `secure`.
        fail_mode: Option<String> = "fail_mode",
        /// Bridge options.
        other_config: Map = "other_config",
        /// Owner keys.
        external_ids: Map = "external_ids",
    }
}

ovn_table! {
    /// A port of a bridge.
    Port = "Port" {
        /// Port name.
        name: String = "name",
        /// Its interfaces.
        interfaces: Refs = "interfaces",
        /// Owner keys.
        external_ids: Map = "external_ids",
    }
}

ovn_table! {
    /// A network interface of a port (a pod's veth host end).
    Interface = "Interface" {
        /// Interface name.
        name: String = "name",
        /// Interface type (`""` for a system device, `internal`...).
        type_: String = "type",
        /// `iface-id` binds it to a logical switch port.
        external_ids: Map = "external_ids",
        /// Interface options.
        options: Map = "options",
        /// MTU requested.
        mtu_request: Option<i64> = "mtu_request",
    }
    read_only {
        /// OpenFlow port number (-1 on failure).
        ofport: Option<i64> = "ofport",
        /// Why the interface could not be set up.
        error: Option<String> = "error",
        /// MAC address in use.
        mac_in_use: Option<String> = "mac_in_use",
    }
}

/// Every Open_vSwitch table and the columns rovn needs, for the schema check.
pub const REQUIRED: &[(&str, &[&str])] = &[
    table_columns::<OpenVSwitch>(),
    table_columns::<Bridge>(),
    table_columns::<Port>(),
    table_columns::<Interface>(),
];
