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

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::ObjectMeta;

    fn pod(annotations: &[(&str, &str)]) -> Pod {
        Pod {
            metadata: ObjectMeta {
                annotations: Some(
                    annotations
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..ObjectMeta::default()
            },
            ..Pod::default()
        }
    }

    #[test]
    fn the_patch_reads_back_as_the_same_assignment() {
        let config = SubnetConfig::parse(None, "10.0.2.0/24,fd00:2::/64", None, &[]).unwrap();
        let allocation = Allocation {
            v4: Some("10.0.2.7".parse().unwrap()),
            v6: Some("fd00:2::7".parse().unwrap()),
            mac: "0a:72:00:00:00:07".parse().unwrap(),
        };
        let patch = allocation_patch("uid-1", "net2", &config, &allocation);
        assert_eq!(patch["metadata"]["uid"], "uid-1");
        let written = patch["metadata"]["annotations"].as_object().unwrap();
        assert_eq!(written.len(), 6, "six annotations in one patch");
        assert_eq!(written[CIDR], "10.0.2.0/24,fd00:2::/64");
        assert_eq!(written[GATEWAY], "10.0.2.1,fd00:2::1");
        let pairs: Vec<(&str, &str)> = written
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str().unwrap()))
            .collect();
        let assigned = assigned(&pod(&pairs)).unwrap().unwrap();
        assert_eq!(assigned.subnet, "net2");
        assert_eq!(assigned.ips, allocation.ips().collect::<Vec<_>>());
        assert_eq!(assigned.mac, allocation.mac);
    }

    #[test]
    fn user_input_before_allocation() {
        let p = pod(&[
            (LOGICAL_SWITCH, "net2"),
            (IP_ADDRESS, "10.0.2.9"),
            (MAC_ADDRESS, "0a:00:00:00:00:09"),
        ]);
        assert!(!is_allocated(&p));
        assert_eq!(assigned(&p), Ok(None));
        assert_eq!(requested_subnet(&p), Some("net2"));
        let request = address_request(&p).unwrap();
        assert_eq!(request.ips, vec!["10.0.2.9".parse::<IpAddr>().unwrap()]);
        assert!(address_request(&pod(&[(IP_ADDRESS, "nope")])).is_err());
        assert!(address_request(&pod(&[(MAC_ADDRESS, "01:00:00:00:00:01")])).is_err());
    }

    #[test]
    fn broken_assignments_are_typed_errors() {
        let broken = pod(&[
            (ALLOCATED, TRUE),
            (LOGICAL_SWITCH, "net2"),
            (IP_ADDRESS, "x"),
        ]);
        assert_eq!(assigned(&broken).unwrap_err().annotation, IP_ADDRESS);
        let no_switch = pod(&[(ALLOCATED, TRUE), (IP_ADDRESS, "10.0.2.3")]);
        assert_eq!(assigned(&no_switch).unwrap_err().annotation, LOGICAL_SWITCH);
    }
}
