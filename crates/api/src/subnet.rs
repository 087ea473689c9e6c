//! The `Subnet` resource: a logical switch attached to a VPC's router.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::condition::{Condition, conditions_list_map};
use crate::ip_count::IpCount;
use crate::unsupported::{FieldList, UnsupportedFields};

/// Desired state of a subnet (Kube-OVN `SubnetSpec`). Other Kube-OVN fields are
/// accepted and reported in the `Unsupported` condition.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "kubeovn.io",
    version = "v1",
    kind = "Subnet",
    plural = "subnets",
    shortname = "subnet",
    status = "SubnetStatus",
    derive = "Default",
    derive = "PartialEq",
    doc = "A subnet: a logical switch on a VPC, with IPAM for the pods of its namespaces.",
    printcolumn = r#"{"name": "Vpc", "type": "string", "jsonPath": ".spec.vpc"}"#,
    printcolumn = r#"{"name": "Protocol", "type": "string", "jsonPath": ".spec.protocol"}"#,
    printcolumn = r#"{"name": "CIDR", "type": "string", "jsonPath": ".spec.cidrBlock"}"#,
    printcolumn = r#"{"name": "V4Used", "type": "number", "jsonPath": ".status.v4usingIPs"}"#,
    printcolumn = r#"{"name": "V4Available", "type": "number", "jsonPath": ".status.v4availableIPs"}"#,
    printcolumn = r#"{"name": "V6Used", "type": "number", "jsonPath": ".status.v6usingIPs", "priority": 1}"#,
    printcolumn = r#"{"name": "V6Available", "type": "number", "jsonPath": ".status.v6availableIPs", "priority": 1}"#,
    printcolumn = r#"{"name": "Namespaces", "type": "string", "jsonPath": ".spec.namespaces", "priority": 1}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct SubnetSpec {
    /// Whether this is the default subnet of its VPC.
    #[serde(default)]
    pub default: bool,
    /// Name of the Vpc the subnet belongs to; the default VPC when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc: Option<String>,
    /// Address family; derived from `cidrBlock` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    /// Namespaces whose pods get addresses in this subnet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// CIDR of the subnet; `v4,v6` for dual stack, e.g. `10.16.0.0/16,fd00:10:16::/64`.
    #[schemars(length(min = 1))]
    pub cidr_block: String,
    /// Gateway address(es), comma-separated; the first usable address when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// Addresses never allocated: single IPs or `first..last` ranges.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_ips: Vec<String>,
    /// Kube-OVN provider name (`ovn` is the default network).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Gateway type for outbound traffic (Kube-OVN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_type: Option<GatewayType>,
    /// Gateway node(s) for the centralized gateway type (Kube-OVN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_node: Option<String>,
    /// Source-NAT traffic leaving the cluster (Kube-OVN).
    #[serde(default)]
    pub nat_outgoing: bool,
    /// Deny traffic from other subnets except `allowSubnets` (Kube-OVN).
    #[serde(default)]
    pub private: bool,
    /// CIDRs allowed to reach a private subnet (Kube-OVN).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_subnets: Vec<String>,
    /// VLAN name for underlay subnets (Kube-OVN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<String>,
    /// Other Kube-OVN fields (e.g. `enableDHCP`, `acls`): accepted, not implemented.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: BTreeMap<String, Value>,
}

/// Address family of a subnet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Protocol {
    /// IPv4 only.
    IPv4,
    /// IPv6 only.
    IPv6,
    /// IPv4 and IPv6.
    Dual,
}

/// Kube-OVN gateway type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum GatewayType {
    /// Each node is the gateway of its own pods.
    Distributed,
    /// Traffic leaves through `gatewayNode`.
    Centralized,
}

/// Observed state of a subnet.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SubnetStatus {
    /// Conditions (`Ready`, `Validated`, `Attached`, `Unsupported`, ...), keyed by type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(transform = conditions_list_map)]
    pub conditions: Vec<Condition>,
    /// IPv4 addresses still free.
    #[serde(
        rename = "v4availableIPs",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub v4_available_ips: Option<IpCount>,
    /// IPv4 addresses in use.
    #[serde(
        rename = "v4usingIPs",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub v4_using_ips: Option<IpCount>,
    /// IPv6 addresses still free.
    #[serde(
        rename = "v6availableIPs",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub v6_available_ips: Option<IpCount>,
    /// IPv6 addresses in use.
    #[serde(
        rename = "v6usingIPs",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub v6_using_ips: Option<IpCount>,
    /// Free IPv4 ranges, e.g. `10.0.0.2-10.0.0.254` (Kube-OVN).
    #[serde(
        rename = "v4availableIPrange",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub v4_available_ip_range: Option<String>,
    /// Used IPv4 ranges (Kube-OVN).
    #[serde(
        rename = "v4usingIPrange",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub v4_using_ip_range: Option<String>,
    /// Free IPv6 ranges (Kube-OVN).
    #[serde(
        rename = "v6availableIPrange",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub v6_available_ip_range: Option<String>,
    /// Used IPv6 ranges (Kube-OVN).
    #[serde(
        rename = "v6usingIPrange",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub v6_using_ip_range: Option<String>,
}

impl UnsupportedFields for SubnetSpec {
    fn unsupported_fields(&self) -> Vec<String> {
        let non_empty = |s: &Option<String>| s.as_deref().is_some_and(|s| !s.is_empty());
        FieldList::default()
            .flag(
                "provider",
                self.provider
                    .as_deref()
                    .is_some_and(|p| !p.is_empty() && p != "ovn"),
            )
            .flag(
                "gatewayType",
                self.gateway_type == Some(GatewayType::Centralized),
            )
            .flag("gatewayNode", non_empty(&self.gateway_node))
            .flag("natOutgoing", self.nat_outgoing)
            .flag("private", self.private)
            .flag("allowSubnets", !self.allow_subnets.is_empty())
            .flag("vlan", non_empty(&self.vlan))
            .extra(&self.extra)
            .take_sorted()
    }
}

impl Subnet {
    /// The Subnet's VPC: `spec.vpc`, or `default_vpc` when absent or empty.
    pub fn vpc_or(&self, default_vpc: &str) -> String {
        self.spec
            .vpc
            .as_deref()
            .filter(|v| !v.is_empty())
            .unwrap_or(default_vpc)
            .to_string()
    }
}
