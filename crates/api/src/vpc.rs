//! The `Vpc` resource: a logical router, either ours or imported from Neutron.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::condition::{Condition, conditions_list_map};
use crate::unsupported::{FieldList, UnsupportedFields};

/// Desired state of a VPC (Kube-OVN `VpcSpec`). Other Kube-OVN fields are
/// accepted and reported in the `Unsupported` condition.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "kubeovn.io",
    version = "v1",
    kind = "Vpc",
    plural = "vpcs",
    shortname = "vpc",
    status = "VpcStatus",
    derive = "Default",
    derive = "PartialEq",
    doc = "A VPC: a logical router, created by rovn or imported from a Neutron router.",
    printcolumn = r#"{"name": "Type", "type": "string", "jsonPath": ".status.type"}"#,
    printcolumn = r#"{"name": "Router", "type": "string", "jsonPath": ".status.router"}"#,
    printcolumn = r#"{"name": "Neutron Name", "type": "string", "jsonPath": ".status.neutronRouterName"}"#,
    printcolumn = r#"{"name": "Subnets", "type": "string", "jsonPath": ".status.subnets"}"#,
    printcolumn = r#"{"name": "Router CIDRs", "type": "string", "jsonPath": ".status.routerCidrs", "priority": 1}"#,
    printcolumn = r#"{"name": "Namespaces", "type": "string", "jsonPath": ".spec.namespaces", "priority": 1}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
// Defaulted to `{}` by the API server, so a Vpc manifest without `spec` is valid.
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true, "default" = {}))]
pub struct VpcSpec {
    /// Namespaces whose pods use this VPC.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Static routes of the VPC's router.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub static_routes: Vec<StaticRoute>,
    /// Policy routes of the VPC's router.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policy_routes: Vec<PolicyRoute>,
    /// Name of the VPC's default subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_subnet: Option<String>,
    /// Other Kube-OVN fields (e.g. `enableExternal`, `vpcPeerings`): accepted, not implemented.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: BTreeMap<String, Value>,
}

/// Kind of match of a static route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RoutePolicy {
    /// Match on the source address.
    #[serde(rename = "policySrc")]
    Src,
    /// Match on the destination address (the default).
    #[serde(rename = "policyDst")]
    Dst,
}

/// A static route (Kube-OVN `StaticRoute`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StaticRoute {
    /// Source or destination match; destination when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<RoutePolicy>,
    /// Prefix the route matches.
    pub cidr: String,
    /// Next hop address.
    #[serde(rename = "nextHopIP")]
    pub next_hop_ip: String,
    /// ECMP mode (Kube-OVN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ecmp_mode: Option<String>,
    /// BFD session id (Kube-OVN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bfd_id: Option<String>,
    /// Route table (Kube-OVN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_table: Option<String>,
}

/// Action of a policy route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PolicyRouteAction {
    /// Let matching packets through.
    Allow,
    /// Drop matching packets.
    Drop,
    /// Send matching packets to `nextHopIP`.
    Reroute,
}

/// A policy route (Kube-OVN `PolicyRoute`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRoute {
    /// Priority, 0 to 32767.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 32767))]
    pub priority: Option<i32>,
    /// OVN match expression.
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub match_: Option<String>,
    /// What to do with matching packets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<PolicyRouteAction>,
    /// Next hop, for `reroute`.
    #[serde(default, rename = "nextHopIP", skip_serializing_if = "Option::is_none")]
    pub next_hop_ip: Option<String>,
}

/// Whether a VPC's router is Neutron's or ours.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum VpcType {
    /// Imported from a Neutron router; rovn never changes the router itself.
    External,
    /// Created and owned by rovn.
    Internal,
}

/// Observed state of a VPC (Kube-OVN `VpcStatus` plus rovn's import fields).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VpcStatus {
    /// Conditions (`Ready`, `RouterMissing`, `Unsupported`, ...), keyed by type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(transform = conditions_list_map)]
    pub conditions: Vec<Condition>,
    /// Whether the VPC's router is set up (Kube-OVN).
    #[serde(default)]
    pub standby: bool,
    /// Whether this is the default VPC (`ovn-cluster`).
    #[serde(default)]
    pub default: bool,
    /// Name of the OVN Logical_Router.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router: Option<String>,
    /// Name of the default subnet's logical switch (Kube-OVN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_logical_switch: Option<String>,
    /// Subnets (rovn's) attached to the router.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subnets: Vec<String>,
    /// `External` (imported from Neutron) or `Internal` (ours).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<VpcType>,
    /// Display name of the Neutron router (`neutron:router_name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub neutron_router_name: Option<String>,
    /// CIDRs already on the router's ports (Neutron's networks), e.g. `10.0.1.1/24`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub router_cidrs: Vec<String>,
    /// Neutron networks attached to the router (`neutron:network_name` of its ports).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub neutron_networks: Vec<String>,
}

impl UnsupportedFields for VpcSpec {
    fn unsupported_fields(&self) -> Vec<String> {
        FieldList::default()
            .flag("namespaces", !self.namespaces.is_empty())
            .flag(
                "defaultSubnet",
                self.default_subnet
                    .as_deref()
                    .is_some_and(|s| !s.is_empty()),
            )
            .flag("staticRoutes", !self.static_routes.is_empty())
            .flag("policyRoutes", !self.policy_routes.is_empty())
            .extra(&self.extra)
            .take_sorted()
    }
}

impl Vpc {
    /// Whether the Vpc was imported from a Neutron router (Kube-OVN's
    /// external label): its router is Neutron's, never written by rovn.
    pub fn is_imported(&self) -> bool {
        self.metadata
            .labels
            .as_ref()
            .and_then(|labels| labels.get(crate::annotations::VPC_EXTERNAL_LABEL))
            .map(String::as_str)
            == Some(crate::annotations::TRUE)
    }
}
