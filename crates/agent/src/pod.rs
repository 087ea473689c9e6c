//! The pod's network as the controller wrote it in its Kube-OVN annotations, and waiting
//! (bounded) for the controller to write it.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use api::annotations;
use ipnet::IpNet;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::runtime::wait::await_condition;

/// One address of the pod with its subnet prefix and gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodAddress {
    /// The address with the subnet's prefix length, e.g. `10.0.2.5/24`.
    pub address: IpNet,
    /// The subnet's gateway of the same family, if the annotations name one.
    pub gateway: Option<IpAddr>,
}

/// The network of one pod from its annotations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodNetwork {
    /// The logical switch port name, `<pod>.<namespace>`.
    pub port_name: String,
    /// The logical switch (subnet) the port is on.
    pub logical_switch: String,
    /// The MAC address, lower case `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    /// The MAC as bytes.
    pub mac_bytes: [u8; 6],
    /// One address per family (dual stack: IPv4 first as annotated).
    pub addresses: Vec<PodAddress>,
}

/// Why the pod's network is not (yet) known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PodNetworkError {
    /// The pod does not exist in the API.
    #[error("pod {namespace}/{name} not found")]
    NotFound {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// The pod exists under this name but is another incarnation (different uid).
    #[error("pod {namespace}/{name} has uid {actual}, the runtime asked for uid {expected}")]
    UidMismatch {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// The uid the runtime gave.
        expected: String,
        /// The uid in the API.
        actual: String,
    },
    /// The controller has not finished annotating the pod.
    #[error("pod {namespace}/{name} is not allocated after {waited:?}: missing {missing}")]
    NotAllocated {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// What is missing (annotation names, comma-separated).
        missing: String,
        /// How long the agent waited.
        waited: Duration,
    },
    /// The annotations are present but cannot be used.
    #[error("pod {namespace}/{name} has an invalid annotation {annotation}: {reason}")]
    Invalid {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// The annotation.
        annotation: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Talking to the API server failed.
    #[error("reading pod {namespace}/{name} from the API failed: {reason}")]
    Api {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// The client error.
        reason: String,
    },
}

/// The annotations every allocated pod carries.
const REQUIRED: [&str; 5] = [
    annotations::IP_ADDRESS,
    annotations::MAC_ADDRESS,
    annotations::CIDR,
    annotations::GATEWAY,
    annotations::LOGICAL_SWITCH,
];

/// The required annotations (and `allocated=true`) that `annotations` lacks.
pub fn missing_annotations(map: &BTreeMap<String, String>) -> Vec<String> {
    let mut missing = Vec::new();
    if map.get(annotations::ALLOCATED).map(String::as_str) != Some(annotations::TRUE) {
        missing.push(format!("{}=true", annotations::ALLOCATED));
    }
    for key in REQUIRED {
        if map.get(key).is_none_or(|v| v.trim().is_empty()) {
            missing.push(key.to_owned());
        }
    }
    missing
}

/// The logical switch port name of a pod (Kube-OVN's `<pod>.<namespace>`).
pub fn port_name(namespace: &str, name: &str) -> String {
    format!("{name}.{namespace}")
}

fn split_list(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

impl PodNetwork {
    /// Reads the network of pod `namespace/name` from its annotations (which must be complete,
    /// see [`missing_annotations`]).
    pub fn from_annotations(
        namespace: &str,
        name: &str,
        map: &BTreeMap<String, String>,
    ) -> Result<Self, PodNetworkError> {
        let invalid = |annotation: &'static str, reason: String| PodNetworkError::Invalid {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            annotation,
            reason,
        };
        let get = |key: &str| map.get(key).map(String::as_str).unwrap_or_default();
        let mac = get(annotations::MAC_ADDRESS).trim().to_ascii_lowercase();
        let mac_bytes = parse_mac(&mac).ok_or_else(|| {
            invalid(
                annotations::MAC_ADDRESS,
                format!("{mac:?} is not a MAC address"),
            )
        })?;
        let cidrs = split_list(get(annotations::CIDR))
            .map(|c| {
                c.parse::<IpNet>()
                    .map_err(|e| invalid(annotations::CIDR, format!("{c:?}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let gateways = split_list(get(annotations::GATEWAY))
            .map(|g| {
                g.parse::<IpAddr>()
                    .map_err(|e| invalid(annotations::GATEWAY, format!("{g:?}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut addresses = Vec::new();
        for ip in split_list(get(annotations::IP_ADDRESS)) {
            // Kube-OVN writes bare addresses; accept a prefix length too.
            let addr: IpAddr = ip
                .split('/')
                .next()
                .unwrap_or_default()
                .parse()
                .map_err(|e| invalid(annotations::IP_ADDRESS, format!("{ip:?}: {e}")))?;
            let cidr = cidrs.iter().find(|c| c.contains(&addr)).ok_or_else(|| {
                invalid(
                    annotations::CIDR,
                    format!("no CIDR of {:?} contains {addr}", get(annotations::CIDR)),
                )
            })?;
            let address = IpNet::new(addr, cidr.prefix_len())
                .map_err(|e| invalid(annotations::CIDR, format!("prefix of {cidr}: {e}")))?;
            let gateway = gateways
                .iter()
                .copied()
                .find(|g| g.is_ipv4() == addr.is_ipv4());
            addresses.push(PodAddress { address, gateway });
        }
        if addresses.is_empty() {
            return Err(invalid(annotations::IP_ADDRESS, "no address".to_owned()));
        }
        let logical_switch = get(annotations::LOGICAL_SWITCH).trim().to_owned();
        Ok(PodNetwork {
            port_name: port_name(namespace, name),
            logical_switch,
            mac,
            mac_bytes,
            addresses,
        })
    }
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut bytes = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut bytes {
        let part = parts.next()?;
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(bytes)
}

/// Waits at most `timeout` until pod `namespace/name` is allocated (a watch on the pod, not
/// polling) and returns its network. `uid`, when the runtime gave one, must match the pod's.
pub async fn wait_for_network(
    pods: Api<Pod>,
    namespace: &str,
    name: &str,
    uid: Option<&str>,
    timeout: Duration,
) -> Result<PodNetwork, PodNetworkError> {
    let api_error = |reason: String| PodNetworkError::Api {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        reason,
    };
    let not_found = || PodNetworkError::NotFound {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    };
    let pod = pods
        .get_opt(name)
        .await
        .map_err(|e| api_error(e.to_string()))?
        .ok_or_else(not_found)?;
    let allocated = |pod: &Pod| {
        missing_annotations(
            pod.metadata
                .annotations
                .as_ref()
                .unwrap_or(&BTreeMap::new()),
        )
        .is_empty()
    };
    let pod = if allocated(&pod) {
        pod
    } else {
        let condition = move |pod: Option<&Pod>| pod.is_none_or(allocated);
        match tokio::time::timeout(timeout, await_condition(pods.clone(), name, condition)).await {
            Ok(Ok(Some(pod))) => pod,
            Ok(Ok(None)) => return Err(not_found()),
            Ok(Err(e)) => return Err(api_error(e.to_string())),
            Err(_) => {
                let latest = pods
                    .get_opt(name)
                    .await
                    .map_err(|e| api_error(e.to_string()))?
                    .ok_or_else(not_found)?;
                let missing = missing_annotations(
                    latest
                        .metadata
                        .annotations
                        .as_ref()
                        .unwrap_or(&BTreeMap::new()),
                );
                if missing.is_empty() {
                    latest
                } else {
                    return Err(PodNetworkError::NotAllocated {
                        namespace: namespace.to_owned(),
                        name: name.to_owned(),
                        missing: missing.join(", "),
                        waited: timeout,
                    });
                }
            }
        }
    };
    if let (Some(expected), Some(actual)) = (uid, pod.metadata.uid.as_deref())
        && expected != actual
    {
        return Err(PodNetworkError::UidMismatch {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            expected: expected.to_owned(),
            actual: actual.to_owned(),
        });
    }
    PodNetwork::from_annotations(
        namespace,
        name,
        pod.metadata
            .annotations
            .as_ref()
            .unwrap_or(&BTreeMap::new()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotated(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn reads_dual_stack_annotations() {
        let map = annotated(&[
            (annotations::ALLOCATED, "true"),
            (annotations::IP_ADDRESS, "10.0.2.5,fd00:2::5"),
            (annotations::MAC_ADDRESS, "0A:72:00:00:00:05"),
            (annotations::CIDR, "10.0.2.0/24,fd00:2::/64"),
            (annotations::GATEWAY, "10.0.2.1,fd00:2::1"),
            (annotations::LOGICAL_SWITCH, "net2"),
        ]);
        assert!(missing_annotations(&map).is_empty());
        let net = PodNetwork::from_annotations("ns", "web", &map).unwrap();
        assert_eq!(net.port_name, "web.ns");
        assert_eq!(net.mac, "0a:72:00:00:00:05");
        assert_eq!(net.mac_bytes, [0x0a, 0x72, 0, 0, 0, 5]);
        assert_eq!(
            net.addresses,
            [
                PodAddress {
                    address: "10.0.2.5/24".parse().unwrap(),
                    gateway: Some("10.0.2.1".parse().unwrap())
                },
                PodAddress {
                    address: "fd00:2::5/64".parse().unwrap(),
                    gateway: Some("fd00:2::1".parse().unwrap())
                },
            ]
        );
    }

    #[test]
    fn names_what_is_missing_or_invalid() {
        let map = annotated(&[(annotations::IP_ADDRESS, "10.0.2.5")]);
        assert_eq!(
            missing_annotations(&map),
            [
                "ovn.kubernetes.io/allocated=true",
                annotations::MAC_ADDRESS,
                annotations::CIDR,
                annotations::GATEWAY,
                annotations::LOGICAL_SWITCH
            ]
        );
        let bad = annotated(&[
            (annotations::IP_ADDRESS, "10.0.3.5"),
            (annotations::MAC_ADDRESS, "0a:72:00:00:00:05"),
            (annotations::CIDR, "10.0.2.0/24"),
            (annotations::GATEWAY, "10.0.2.1"),
        ]);
        let err = PodNetwork::from_annotations("ns", "web", &bad).unwrap_err();
        assert!(
            matches!(err, PodNetworkError::Invalid { annotation, .. } if annotation == annotations::CIDR),
            "{err}"
        );
        assert_eq!(parse_mac("0a:72:00:00:00"), None);
        assert_eq!(parse_mac("0a:72:00:00:00:05:06"), None);
    }
}
