//! A pod's Kube-OVN annotations: what the user asks for (subnet, static
//! IP/MAC) before allocation, what the controller wrote after it, and the
//! one patch that writes them.

use std::collections::BTreeMap;
use std::net::IpAddr;

use api::annotations::{ALLOCATED, CIDR, GATEWAY, IP_ADDRESS, LOGICAL_SWITCH, MAC_ADDRESS, TRUE};
use ipam::{AddressRequest, AllocError, Allocation, MacAddr, SubnetConfig};
use k8s_openapi::api::core::v1::Pod;
use serde_json::json;

fn annotations(pod: &Pod) -> Option<&BTreeMap<String, String>> {
    pod.metadata.annotations.as_ref()
}

fn annotation<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    annotations(pod)?
        .get(key)
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
}

/// Whether the controller already allocated the pod (`allocated: "true"`).
pub fn is_allocated(pod: &Pod) -> bool {
    annotation(pod, ALLOCATED) == Some(TRUE)
}

/// The Subnet the user chose with `ovn.kubernetes.io/logical_switch`.
pub fn requested_subnet(pod: &Pod) -> Option<&str> {
    annotation(pod, LOGICAL_SWITCH)
}

/// The static address and MAC the user asked for (`ip_address`,
/// `mac_address`); empty when none.
pub fn address_request(pod: &Pod) -> Result<AddressRequest, AllocError> {
    AddressRequest::from_annotations(annotation(pod, IP_ADDRESS), annotation(pod, MAC_ADDRESS))
}

/// What the controller's annotations of an allocated pod say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assigned {
    /// `logical_switch`.
    pub subnet: String,
    /// `ip_address`, IPv4 first.
    pub ips: Vec<IpAddr>,
    /// `mac_address`.
    pub mac: MacAddr,
}

/// Why the allocation annotations of a pod cannot be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("annotation {annotation} of an allocated pod is missing or invalid: {value:?}")]
pub struct InvalidAssignment {
    /// The annotation key.
    pub annotation: &'static str,
    /// Its value.
    pub value: String,
}

/// The addresses an allocated pod was given, from its annotations; `None`
/// when the pod is not allocated yet.
pub fn assigned(pod: &Pod) -> Result<Option<Assigned>, InvalidAssignment> {
    if !is_allocated(pod) {
        return Ok(None);
    }
    let invalid = |annotation: &'static str| InvalidAssignment {
        annotation,
        value: annotation_value(pod, annotation),
    };
    let subnet = annotation(pod, LOGICAL_SWITCH).ok_or_else(|| invalid(LOGICAL_SWITCH))?;
    let ips = annotation(pod, IP_ADDRESS)
        .ok_or_else(|| invalid(IP_ADDRESS))?
        .split(',')
        .map(|ip| ip.trim().parse::<IpAddr>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| invalid(IP_ADDRESS))?;
    let mac = annotation(pod, MAC_ADDRESS)
        .and_then(|m| MacAddr::parse_unicast(m).ok())
        .ok_or_else(|| invalid(MAC_ADDRESS))?;
    Ok(Some(Assigned {
        subnet: subnet.to_string(),
        ips,
        mac,
    }))
}

fn annotation_value(pod: &Pod, key: &str) -> String {
    annotations(pod)
        .and_then(|a| a.get(key))
        .cloned()
        .unwrap_or_default()
}

/// The merge patch writing every allocation annotation at once. The uid
/// makes it fail (instead of annotating) when the pod was replaced by
/// another of the same name.
pub fn allocation_patch(
    uid: &str,
    subnet: &str,
    config: &SubnetConfig,
    allocation: &Allocation,
) -> serde_json::Value {
    json!({
        "metadata": {
            "uid": uid,
            "annotations": {
                IP_ADDRESS: allocation.ip_address_annotation(),
                MAC_ADDRESS: allocation.mac.to_string(),
                CIDR: config.cidr_block(),
                GATEWAY: config.gateways(),
                LOGICAL_SWITCH: subnet,
                ALLOCATED: TRUE,
            }
        }
    })
}
