//! The pod-network contract between `rovn-controller` and `rovn-agent`: what
//! the controller records on a pod (Kube-OVN-compatible annotations) and the
//! agent reads back to plug the pod, in one type.
//!
//! The controller writes [`PodNetwork::to_annotations`] in one patch, once;
//! the agent reads [`PodNetwork::from_annotations`]. The pod's
//! Logical_Switch_Port is named [`port_name`] on both sides.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipam::{Allocation, MacAddr, SubnetConfig};
use ipnet::IpNet;

use crate::annotations::{ALLOCATED, CIDR, GATEWAY, IP_ADDRESS, LOGICAL_SWITCH, MAC_ADDRESS, TRUE};

/// Name of the Logical_Switch_Port of pod `namespace/name` (Kube-OVN's
/// `<pod>.<namespace>`), the `iface-id` the agent sets on its OVS interface.
pub fn port_name(namespace: &str, name: &str) -> String {
    format!("{name}.{namespace}")
}

/// One address of a pod: the address with its Subnet's prefix length, and
/// the gateway of that address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodAddress {
    /// The pod's address and the Subnet's prefix (`10.0.2.5/24`).
    pub address: IpNet,
    /// The Subnet's gateway of the same family.
    pub gateway: Option<IpAddr>,
}

/// What the controller allocated to a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodNetwork {
    /// The Subnet (its Logical_Switch has the same name).
    pub logical_switch: String,
    /// The pod's MAC address.
    pub mac: MacAddr,
    /// One address per family, IPv4 first.
    pub addresses: Vec<PodAddress>,
}

/// An annotation of an allocated pod that is missing or cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("annotation {annotation} of an allocated pod is missing or invalid ({value:?}): {reason}")]
pub struct InvalidPodNetwork {
    /// The annotation key.
    pub annotation: &'static str,
    /// Its value (empty when missing).
    pub value: String,
    /// What is wrong with it.
    pub reason: String,
}

/// The annotations an allocated pod carries besides `allocated=true`.
const REQUIRED: [&str; 5] = [IP_ADDRESS, MAC_ADDRESS, CIDR, GATEWAY, LOGICAL_SWITCH];

/// Whether the controller marked the pod allocated.
pub fn is_allocated(annotations: &BTreeMap<String, String>) -> bool {
    annotations.get(ALLOCATED).map(|v| v.trim()) == Some(TRUE)
}

/// What an allocated pod's annotations still lack (`allocated=true` first),
/// empty when [`PodNetwork::from_annotations`] has everything it reads.
pub fn missing_annotations(annotations: &BTreeMap<String, String>) -> Vec<String> {
    let mut missing = Vec::new();
    if !is_allocated(annotations) {
        missing.push(format!("{ALLOCATED}={TRUE}"));
    }
    for key in REQUIRED {
        if annotations.get(key).is_none_or(|v| v.trim().is_empty()) {
            missing.push(key.to_owned());
        }
    }
    missing
}

fn list(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

fn joined<T: ToString>(items: impl Iterator<Item = T>) -> String {
    items.map(|i| i.to_string()).collect::<Vec<_>>().join(",")
}

impl PodNetwork {
    /// The network of a pod holding `allocation` in Subnet `subnet` of
    /// configuration `config`: an address for every family the allocation
    /// has, with that family's prefix and gateway.
    pub fn from_allocation(subnet: &str, config: &SubnetConfig, allocation: &Allocation) -> Self {
        let addresses = config
            .families()
            .filter_map(|family| {
                let ip = allocation
                    .ips()
                    .find(|ip| ip.is_ipv4() == family.cidr.addr().is_ipv4())?;
                Some(PodAddress {
                    address: IpNet::new(ip, family.cidr.prefix_len()).ok()?,
                    gateway: Some(family.gateway),
                })
            })
            .collect();
        Self {
            logical_switch: subnet.to_string(),
            mac: allocation.mac,
            addresses,
        }
    }

    /// The pod's addresses without prefix, IPv4 first.
    pub fn ips(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.addresses.iter().map(|a| a.address.addr())
    }

    /// The annotations recording this network (all six, `allocated=true`
    /// included), as the controller writes them in one patch.
    pub fn to_annotations(&self) -> BTreeMap<String, String> {
        let cidrs = joined(self.addresses.iter().map(|a| a.address.trunc()));
        let gateways = joined(self.addresses.iter().filter_map(|a| a.gateway));
        BTreeMap::from([
            (IP_ADDRESS.to_string(), joined(self.ips())),
            (MAC_ADDRESS.to_string(), self.mac.to_string()),
            (CIDR.to_string(), cidrs),
            (GATEWAY.to_string(), gateways),
            (LOGICAL_SWITCH.to_string(), self.logical_switch.clone()),
            (ALLOCATED.to_string(), TRUE.to_string()),
        ])
    }

    /// Reads a pod's annotations: `None` until the pod is marked allocated,
    /// an error naming the annotation when one is missing or unreadable.
    /// Addresses may carry a prefix length (`10.0.2.5/24`); the MAC any case.
    pub fn from_annotations(
        annotations: &BTreeMap<String, String>,
    ) -> Result<Option<Self>, InvalidPodNetwork> {
        if !is_allocated(annotations) {
            return Ok(None);
        }
        let get = |key: &'static str| {
            let value = annotations.get(key).map(|v| v.trim()).unwrap_or_default();
            let invalid = move |reason: String| InvalidPodNetwork {
                annotation: key,
                value: value.to_string(),
                reason,
            };
            if value.is_empty() {
                Err(invalid("missing".to_string()))
            } else {
                Ok((value, invalid))
            }
        };
        let (logical_switch, _) = get(LOGICAL_SWITCH)?;
        let (mac, invalid_mac) = get(MAC_ADDRESS)?;
        let mac = MacAddr::parse_unicast(mac).map_err(|e| invalid_mac(e.to_string()))?;
        let (cidrs, invalid_cidr) = get(CIDR)?;
        let cidrs = list(cidrs)
            .map(|c| {
                c.parse::<IpNet>()
                    .map_err(|e| invalid_cidr(format!("{c}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let (gateways, invalid_gateway) = get(GATEWAY)?;
        let gateways = list(gateways)
            .map(|g| {
                g.parse::<IpAddr>()
                    .map_err(|e| invalid_gateway(format!("{g}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let (ips, invalid_ip) = get(IP_ADDRESS)?;
        let addresses = list(ips)
            .map(|text| {
                let ip: IpAddr = text
                    .split('/')
                    .next()
                    .unwrap_or_default()
                    .parse()
                    .map_err(|e| invalid_ip(format!("{text}: {e}")))?;
                let cidr = cidrs
                    .iter()
                    .find(|c| c.contains(&ip))
                    .ok_or_else(|| invalid_cidr(format!("no CIDR contains {ip}")))?;
                Ok(PodAddress {
                    address: IpNet::new(ip, cidr.prefix_len())
                        .map_err(|e| invalid_cidr(format!("{cidr}: {e}")))?,
                    gateway: gateways
                        .iter()
                        .copied()
                        .find(|g| g.is_ipv4() == ip.is_ipv4()),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(Self {
            logical_switch: logical_switch.to_string(),
            mac,
            addresses,
        }))
    }
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

    fn dual() -> PodNetwork {
        let config = SubnetConfig::parse(None, "10.0.2.0/24,fd00:2::/64", None, &[]).unwrap();
        let allocation = Allocation {
            v4: Some("10.0.2.7".parse().unwrap()),
            v6: Some("fd00:2::7".parse().unwrap()),
            mac: "0a:72:00:00:00:07".parse().unwrap(),
        };
        PodNetwork::from_allocation("net2", &config, &allocation)
    }

    #[test]
    fn annotations_round_trip() {
        let network = dual();
        let written = network.to_annotations();
        assert_eq!(written.len(), 6, "six annotations in one patch");
        assert_eq!(written[IP_ADDRESS], "10.0.2.7,fd00:2::7");
        assert_eq!(written[CIDR], "10.0.2.0/24,fd00:2::/64");
        assert_eq!(written[GATEWAY], "10.0.2.1,fd00:2::1");
        assert_eq!(written[MAC_ADDRESS], "0a:72:00:00:00:07");
        assert!(missing_annotations(&written).is_empty());
        assert_eq!(
            PodNetwork::from_annotations(&written),
            Ok(Some(network.clone()))
        );
        assert_eq!(
            network.addresses[1],
            PodAddress {
                address: "fd00:2::7/64".parse().unwrap(),
                gateway: Some("fd00:2::1".parse().unwrap()),
            }
        );
        let single = SubnetConfig::parse(None, "10.0.3.0/24", None, &[]).unwrap();
        let v4 = PodNetwork::from_allocation(
            "net3",
            &single,
            &Allocation {
                v4: Some("10.0.3.2".parse().unwrap()),
                v6: None,
                mac: network.mac,
            },
        );
        assert_eq!(
            PodNetwork::from_annotations(&v4.to_annotations()),
            Ok(Some(v4))
        );
    }

    #[test]
    fn kube_ovn_forms_are_read() {
        let map = annotated(&[
            (ALLOCATED, "true"),
            (IP_ADDRESS, "10.0.2.5/24"),
            (MAC_ADDRESS, "0A:72:00:00:00:05"),
            (CIDR, "10.0.2.0/24"),
            (GATEWAY, "10.0.2.1"),
            (LOGICAL_SWITCH, "net2"),
        ]);
        let network = PodNetwork::from_annotations(&map).unwrap().unwrap();
        assert_eq!(network.mac.to_string(), "0a:72:00:00:00:05");
        assert_eq!(
            network.ips().collect::<Vec<_>>(),
            ["10.0.2.5".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(port_name("ns", "web"), "web.ns");
    }

    #[test]
    fn names_what_is_missing_or_invalid() {
        let requested = annotated(&[(IP_ADDRESS, "10.0.2.5"), (LOGICAL_SWITCH, "net2")]);
        assert_eq!(PodNetwork::from_annotations(&requested), Ok(None));
        assert_eq!(
            missing_annotations(&requested),
            [
                "ovn.kubernetes.io/allocated=true",
                MAC_ADDRESS,
                CIDR,
                GATEWAY
            ]
        );
        let mut broken = dual().to_annotations();
        broken.insert(IP_ADDRESS.to_string(), "10.0.3.5".to_string());
        assert_eq!(
            PodNetwork::from_annotations(&broken)
                .unwrap_err()
                .annotation,
            CIDR
        );
        broken.insert(IP_ADDRESS.to_string(), "x".to_string());
        assert_eq!(
            PodNetwork::from_annotations(&broken)
                .unwrap_err()
                .annotation,
            IP_ADDRESS
        );
        broken.insert(MAC_ADDRESS.to_string(), "01:00:00:00:00:01".to_string());
        assert_eq!(
            PodNetwork::from_annotations(&broken)
                .unwrap_err()
                .annotation,
            MAC_ADDRESS
        );
        broken.remove(LOGICAL_SWITCH);
        let err = PodNetwork::from_annotations(&broken).unwrap_err();
        assert_eq!(err.annotation, LOGICAL_SWITCH);
        assert!(err.to_string().contains("missing"), "{err}");
    }
}
