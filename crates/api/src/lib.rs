//! The `kubeovn.io/v1` custom resources rovn serves: [`Vpc`], [`Subnet`] and [`IP`].
//!
//! Field names follow Kube-OVN so that existing manifests apply unchanged. Fields
//! rovn does not implement (yet) are accepted and listed by each spec's
//! `unsupported_fields()`, to be reported in an `Unsupported` status condition
//! (see [`unsupported`]).

pub mod annotations;
pub mod condition;
pub mod install;
pub mod ip;
pub mod ip_count;
pub mod node_link;
pub mod pod_network;
pub mod subnet;
pub mod unsupported;
pub mod vpc;

pub use condition::{Condition, ConditionStatus};
pub use ip::{IP, IpSpec, IpStatus};
pub use ip_count::IpCount;
pub use pod_network::PodNetwork;
pub use subnet::{GatewayType, Protocol, Subnet, SubnetSpec, SubnetStatus};
pub use unsupported::UnsupportedFields;
pub use vpc::{
    PolicyRoute, PolicyRouteAction, RoutePolicy, StaticRoute, Vpc, VpcSpec, VpcStatus, VpcType,
};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// API group of the resources.
pub const GROUP: &str = "kubeovn.io";
/// API version of the resources.
pub const VERSION: &str = "v1";
/// `apiVersion` of the resources.
pub const API_VERSION: &str = "kubeovn.io/v1";

/// The body of a server-side apply of `status` to a resource of kind `K`:
/// `{"apiVersion", "kind", "status"}`, for `Api::patch_status` with `Patch::Apply`.
pub fn status_apply_patch<K>(status: &impl serde::Serialize) -> serde_json::Value
where
    K: kube::Resource<DynamicType = ()>,
{
    serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    })
}

/// The CustomResourceDefinitions of all resources of this crate, in a stable
/// order (install them with [`install::apply_crds`]).
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![Vpc::crd(), Subnet::crd(), IP::crd()]
}
