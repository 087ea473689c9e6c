//! What the pod reconciler does for a pod, decided from the pod alone, and
//! how the IPAM is asked for its addresses: pure functions, no I/O.
//!
//! - an allocated pod keeps exactly what its annotations say
//!   ([`api::pod_network`], the contract with the agent);
//! - a pod that is not allocated yet gets addresses in the Subnet its
//!   `ovn.kubernetes.io/logical_switch` annotation names, else the Subnet of
//!   its namespace, honouring its static `ip_address` / `mac_address`
//!   requests;
//! - a pod that finished or is being deleted before it was allocated gets
//!   nothing.

use std::collections::BTreeMap;
use std::net::IpAddr;

use api::annotations::{IP_ADDRESS, LOGICAL_SWITCH, MAC_ADDRESS};
use api::pod_network::{InvalidPodNetwork, PodNetwork, is_allocated};
use ipam::{AddressRequest, AllocError, Allocation, Ipam, MacAddr};
use k8s_openapi::api::core::v1::Pod;

/// What to do for a pod that exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allocated earlier: keep what the annotations say.
    Keep(PodNetwork),
    /// Not allocated: allocate in `subnet` as `request` asks.
    Allocate {
        /// The Subnet.
        subnet: String,
        /// Static addresses or MAC asked for.
        request: AddressRequest,
    },
    /// Finished or being deleted before it was allocated: nothing to do.
    Nothing,
}

/// Why a pod gets no decision: reported as a Warning Event, or waited on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// An allocated pod's annotations cannot be read.
    #[error("{0}")]
    InvalidAnnotation(#[from] InvalidPodNetwork),
    /// The static address or MAC asked for is malformed.
    #[error("{0}")]
    InvalidAddressRequest(AllocError),
    /// No Subnet is bound to the pod's namespace (yet).
    #[error("no Subnet is bound to namespace {0} and no default Subnet is ready")]
    NoSubnet(String),
}

impl Refusal {
    /// The Event reason of a refusal the user must fix (`None` for a wait).
    pub fn reason(&self) -> Option<&'static str> {
        match self {
            Refusal::InvalidAnnotation(_) => Some("InvalidAnnotation"),
            Refusal::InvalidAddressRequest(_) => Some("InvalidAddressRequest"),
            Refusal::NoSubnet(_) => None,
        }
    }
}

fn annotations(pod: &Pod) -> &BTreeMap<String, String> {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    pod.metadata.annotations.as_ref().unwrap_or(&EMPTY)
}

fn annotation<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    annotations(pod)
        .get(key)
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
}

/// Whether the pod finished (Succeeded, Failed) or is being deleted.
fn finished(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
        || matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        )
}

/// Whether the pod uses the node's network (no port, no address).
pub fn host_network(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false)
}

/// Whether the controller allocated the pod.
pub fn allocated(pod: &Pod) -> bool {
    is_allocated(annotations(pod))
}

/// What to do for `pod`; `namespace_subnet` is the Subnet bound to its
/// namespace, asked only when the pod names none.
pub fn decide(
    pod: &Pod,
    namespace_subnet: impl FnOnce() -> Option<String>,
) -> Result<Decision, Refusal> {
    if let Some(network) = PodNetwork::from_annotations(annotations(pod))? {
        return Ok(Decision::Keep(network));
    }
    if finished(pod) {
        return Ok(Decision::Nothing);
    }
    let subnet = match annotation(pod, LOGICAL_SWITCH) {
        Some(subnet) => subnet.to_string(),
        None => namespace_subnet()
            .ok_or_else(|| Refusal::NoSubnet(pod.metadata.namespace.clone().unwrap_or_default()))?,
    };
    let request =
        AddressRequest::from_annotations(annotation(pod, IP_ADDRESS), annotation(pod, MAC_ADDRESS))
            .map_err(Refusal::InvalidAddressRequest)?;
    Ok(Decision::Allocate { subnet, request })
}

/// Releases what `owner` holds in Subnets other than `keep`; returns them.
pub fn release_elsewhere(ipam: &mut Ipam, owner: &str, keep: &str) -> Vec<String> {
    let held: Vec<String> = ipam
        .subnets()
        .filter(|s| s.name() != keep && s.get(owner).is_some())
        .map(|s| s.name().to_string())
        .collect();
    for subnet in &held {
        ipam.release(subnet, owner);
    }
    held
}

fn holds_other(result: &Result<Allocation, AllocError>) -> bool {
    matches!(
        result,
        Err(AllocError::OwnerHasOtherAddress { .. } | AllocError::OwnerHasOtherMac { .. })
    )
}

/// Allocates `owner`'s addresses in `subnet` as `request` asks. What the
/// owner held elsewhere, or here from an earlier attempt with another
/// request (never annotated), is released first.
pub fn allocate(
    ipam: &mut Ipam,
    subnet: &str,
    owner: &str,
    request: &AddressRequest,
) -> Result<Allocation, AllocError> {
    release_elsewhere(ipam, owner, subnet);
    let result = ipam.allocate(subnet, owner, request);
    if holds_other(&result) {
        ipam.release(subnet, owner);
        return ipam.allocate(subnet, owner, request);
    }
    result
}

/// Holds in `subnet` exactly what an allocated pod's annotations say
/// (`ips`, `mac`): an older record of the same owner that disagrees gives
/// way; another owner holding the address is an error.
pub fn keep(
    ipam: &mut Ipam,
    subnet: &str,
    owner: &str,
    ips: &[IpAddr],
    mac: MacAddr,
) -> Result<Allocation, AllocError> {
    release_elsewhere(ipam, owner, subnet);
    let result = ipam.restore(subnet, owner, ips, Some(mac));
    if holds_other(&result) {
        ipam.release(subnet, owner);
        return ipam.restore(subnet, owner, ips, Some(mac));
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::annotations::ALLOCATED;
    use ipam::SubnetConfig;
    use k8s_openapi::api::core::v1::PodStatus;
    use kube::api::ObjectMeta;

    fn pod(annotations: &[(&str, &str)]) -> Pod {
        Pod {
            metadata: ObjectMeta {
                namespace: Some("ns".to_string()),
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

    fn network() -> PodNetwork {
        let config = SubnetConfig::parse(None, "10.0.2.0/24", None, &[]).unwrap();
        let allocation = Allocation {
            v4: Some("10.0.2.7".parse().unwrap()),
            v6: None,
            mac: "0a:72:00:00:00:07".parse().unwrap(),
        };
        PodNetwork::from_allocation("net2", &config, &allocation)
    }

    fn ipam() -> Ipam {
        let mut ipam = Ipam::new();
        for (name, cidr) in [("net2", "10.0.2.0/24"), ("net3", "10.0.3.0/24")] {
            let config = SubnetConfig::parse(None, cidr, None, &[]).unwrap();
            ipam.upsert_subnet(name, config).unwrap();
        }
        ipam
    }

    #[test]
    fn an_allocated_pod_keeps_its_annotations() {
        let annotations = network().to_annotations();
        let pairs: Vec<(&str, &str)> = annotations
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let decision = decide(&pod(&pairs), || panic!("not asked"));
        assert_eq!(decision, Ok(Decision::Keep(network())));
        assert!(allocated(&pod(&pairs)));
        let broken = pod(&[(ALLOCATED, "true"), (LOGICAL_SWITCH, "net2")]);
        let refusal = decide(&broken, || None).unwrap_err();
        assert_eq!(refusal.reason(), Some("InvalidAnnotation"));
    }

    #[test]
    fn a_new_pod_goes_to_its_requested_subnet_else_its_namespace() {
        let requested = pod(&[(LOGICAL_SWITCH, "net3"), (IP_ADDRESS, "10.0.3.9")]);
        let Ok(Decision::Allocate { subnet, request }) = decide(&requested, || panic!("not asked"))
        else {
            panic!("allocate");
        };
        assert_eq!(subnet, "net3");
        assert_eq!(request.ips, ["10.0.3.9".parse::<IpAddr>().unwrap()]);
        assert_eq!(
            decide(&pod(&[]), || Some("net2".to_string())),
            Ok(Decision::Allocate {
                subnet: "net2".to_string(),
                request: AddressRequest::default(),
            })
        );
        let waiting = decide(&pod(&[]), || None).unwrap_err();
        assert_eq!(waiting, Refusal::NoSubnet("ns".to_string()));
        assert_eq!(waiting.reason(), None);
        let bad = decide(&pod(&[(MAC_ADDRESS, "01:00:00:00:00:01")]), || {
            Some("net2".to_string())
        });
        assert_eq!(bad.unwrap_err().reason(), Some("InvalidAddressRequest"));
    }

    #[test]
    fn a_finished_pod_that_was_never_allocated_gets_nothing() {
        let mut done = pod(&[]);
        done.status = Some(PodStatus {
            phase: Some("Succeeded".to_string()),
            ..PodStatus::default()
        });
        assert_eq!(decide(&done, || panic!("not asked")), Ok(Decision::Nothing));
    }

    #[test]
    fn allocation_releases_what_the_owner_held_elsewhere() {
        let mut ipam = ipam();
        let first = allocate(&mut ipam, "net3", "ns/a", &AddressRequest::default()).unwrap();
        assert!(ipam.subnet("net3").unwrap().get("ns/a").is_some());
        let moved = allocate(&mut ipam, "net2", "ns/a", &AddressRequest::default()).unwrap();
        assert!(ipam.subnet("net3").unwrap().get("ns/a").is_none());
        assert_ne!(first.v4, moved.v4);
        // An earlier attempt with another request is dropped.
        let fixed = AddressRequest::from_annotations(Some("10.0.2.50"), None).unwrap();
        let again = allocate(&mut ipam, "net2", "ns/a", &fixed).unwrap();
        assert_eq!(again.v4, Some("10.0.2.50".parse().unwrap()));
    }

    #[test]
    fn keeping_annotations_wins_over_an_older_record_not_over_another_owner() {
        let mut ipam = ipam();
        allocate(&mut ipam, "net2", "ns/a", &AddressRequest::default()).unwrap();
        let mac: MacAddr = "0a:72:00:00:00:09".parse().unwrap();
        let ip: IpAddr = "10.0.2.9".parse().unwrap();
        let kept = keep(&mut ipam, "net2", "ns/a", &[ip], mac).unwrap();
        assert_eq!((kept.v4.map(IpAddr::V4), kept.mac), (Some(ip), mac));
        let other: MacAddr = "0a:72:00:00:00:0a".parse().unwrap();
        assert!(keep(&mut ipam, "net2", "ns/b", &[ip], other).is_err());
        assert_eq!(ipam.subnet("net2").unwrap().owner_of(ip), Some("ns/a"));
    }
}
