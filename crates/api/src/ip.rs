//! The `IP` resource: the address record of one pod (Kube-OVN `IP`).

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::condition::{Condition, conditions_list_map};
use crate::unsupported::{FieldList, UnsupportedFields};

/// An allocated address: which pod, subnet and node it belongs to (Kube-OVN
/// `IPSpec`), named `<pod>.<namespace>`. Other fields are accepted and reported
/// in the `Unsupported` condition.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "kubeovn.io",
    version = "v1",
    kind = "IP",
    plural = "ips",
    singular = "ip",
    shortname = "ip",
    status = "IpStatus",
    derive = "Default",
    derive = "PartialEq",
    doc = "The address record of one pod: its IPs, MAC, subnet and node.",
    printcolumn = r#"{"name": "V4IP", "type": "string", "jsonPath": ".spec.v4IpAddress"}"#,
    printcolumn = r#"{"name": "V6IP", "type": "string", "jsonPath": ".spec.v6IpAddress"}"#,
    printcolumn = r#"{"name": "Mac", "type": "string", "jsonPath": ".spec.macAddress"}"#,
    printcolumn = r#"{"name": "Node", "type": "string", "jsonPath": ".spec.nodeName"}"#,
    printcolumn = r#"{"name": "Subnet", "type": "string", "jsonPath": ".spec.subnet"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct IpSpec {
    /// Name of the pod.
    #[serde(default)]
    pub pod_name: String,
    /// Namespace of the pod.
    #[serde(default)]
    pub namespace: String,
    /// Subnet the addresses come from.
    #[serde(default)]
    pub subnet: String,
    /// Node the pod runs on.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node_name: String,
    /// All addresses, comma-separated (`v4,v6` for dual stack).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ip_address: String,
    /// IPv4 address.
    #[serde(
        default,
        rename = "v4IpAddress",
        skip_serializing_if = "String::is_empty"
    )]
    pub v4_ip_address: String,
    /// IPv6 address.
    #[serde(
        default,
        rename = "v6IpAddress",
        skip_serializing_if = "String::is_empty"
    )]
    pub v6_ip_address: String,
    /// MAC address.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac_address: String,
    /// Container (sandbox) id of the pod.
    #[serde(
        default,
        rename = "containerID",
        skip_serializing_if = "String::is_empty"
    )]
    pub container_id: String,
    /// Owner kind of the pod, e.g. `StatefulSet` (Kube-OVN).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pod_type: String,
    /// Subnets of secondary interfaces (Kube-OVN).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attach_subnets: Vec<String>,
    /// Addresses of secondary interfaces (Kube-OVN).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attach_ips: Vec<String>,
    /// MACs of secondary interfaces (Kube-OVN).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attach_macs: Vec<String>,
    /// Other fields: accepted, not implemented.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: BTreeMap<String, Value>,
}

/// Observed state of an IP record (rovn addition; Kube-OVN's IP has none).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IpStatus {
    /// Conditions (`Unsupported`, ...), keyed by type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(transform = conditions_list_map)]
    pub conditions: Vec<Condition>,
}

impl UnsupportedFields for IpSpec {
    fn unsupported_fields(&self) -> Vec<String> {
        FieldList::default()
            .flag("attachSubnets", !self.attach_subnets.is_empty())
            .flag("attachIps", !self.attach_ips.is_empty())
            .flag("attachMacs", !self.attach_macs.is_empty())
            .extra(&self.extra)
            .take_sorted()
    }
}
