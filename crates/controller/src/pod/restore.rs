//! Rebuilding a Subnet's IPAM from what OVN and the API hold, so that a
//! restart (or `kill -9` in the middle of a burst) never hands out an address
//! twice.
//!
//! Three records of an allocation exist, written in this order by the pod
//! reconciler: the pod's Logical_Switch_Port (written first: the source of
//! truth for addresses handed out but not yet annotated), the pod's
//! annotations, and its `IP` resource. A Subnet is restored from all three,
//! annotations first (the pod was told those addresses), then ports, then
//! IP resources; a record naming an address another owner already holds is
//! a conflict, reported and not restored.

use std::net::IpAddr;
use std::sync::Arc;

use api::IP;
use api::pod_network::PodNetwork;
use ipam::{AllocError, Ipam, MacAddr};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use ovn::nb::LogicalSwitchPort;
use ovn::owned::Mine;

use super::port::{self, owner_key};

/// Where a holding was read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    /// The pod's allocation annotations.
    Annotations,
    /// The pod's Logical_Switch_Port.
    Port,
    /// The pod's IP resource.
    IpResource,
}

/// Addresses an owner held in a Subnet, as one record says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holding {
    /// IPAM owner (`namespace/pod`).
    pub owner: String,
    /// Subnet.
    pub subnet: String,
    /// Addresses.
    pub ips: Vec<IpAddr>,
    /// MAC, when the record has a valid one.
    pub mac: Option<MacAddr>,
    /// The record.
    pub source: Source,
}

/// Holdings from the annotations of allocated pods (unreadable annotations
/// are skipped: the pod reconciler reports them).
pub fn from_pods<'a>(pods: impl IntoIterator<Item = &'a Arc<Pod>>) -> Vec<Holding> {
    pods.into_iter()
        .filter_map(|pod| {
            let network =
                PodNetwork::from_annotations(pod.metadata.annotations.as_ref()?).ok()??;
            Some(Holding {
                owner: owner_key(&pod.namespace()?, &pod.name_any()),
                ips: network.ips().collect(),
                subnet: network.logical_switch,
                mac: Some(network.mac),
                source: Source::Annotations,
            })
        })
        .collect()
}

/// Holdings from our pod ports.
pub fn from_ports<'a>(
    ports: impl IntoIterator<Item = &'a Mine<LogicalSwitchPort>>,
) -> Vec<Holding> {
    ports
        .into_iter()
        .filter_map(port::recorded)
        .map(|r| Holding {
            owner: r.owner,
            subnet: r.subnet,
            ips: r.ips,
            mac: Some(r.mac),
            source: Source::Port,
        })
        .collect()
}

/// Holdings from IP resources.
pub fn from_ip_resources<'a>(ips: impl IntoIterator<Item = &'a Arc<IP>>) -> Vec<Holding> {
    ips.into_iter()
        .filter(|ip| !ip.spec.pod_name.is_empty() && !ip.spec.namespace.is_empty())
        .filter_map(|ip| {
            let addresses = [&ip.spec.v4_ip_address, &ip.spec.v6_ip_address]
                .into_iter()
                .filter(|a| !a.is_empty())
                .map(|a| a.parse::<IpAddr>().ok())
                .collect::<Option<Vec<_>>>()?;
            (!addresses.is_empty()).then(|| Holding {
                owner: owner_key(&ip.spec.namespace, &ip.spec.pod_name),
                subnet: ip.spec.subnet.clone(),
                ips: addresses,
                mac: MacAddr::parse_unicast(&ip.spec.mac_address).ok(),
                source: Source::IpResource,
            })
        })
        .collect()
}

/// A record that could not be restored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    /// The record.
    pub holding: Holding,
    /// Why.
    pub error: AllocError,
}

impl Refused {
    /// Whether another owner holds the address or MAC (a real conflict), as
    /// opposed to an older record of the same owner that disagrees with a
    /// more authoritative one (the reconciler rewrites it).
    pub fn is_conflict(&self) -> bool {
        !matches!(
            self.error,
            AllocError::OwnerHasOtherAddress { .. } | AllocError::OwnerHasOtherMac { .. }
        )
    }
}

/// What a restore did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Restored {
    /// Records restored (including those already held).
    pub restored: usize,
    /// Records refused.
    pub refused: Vec<Refused>,
}

/// Restores into Subnet `subnet` of `ipam` every holding of that Subnet,
/// most authoritative source first. Fails only when the Subnet is not in
/// the registry.
pub fn restore(
    ipam: &mut Ipam,
    subnet: &str,
    holdings: impl IntoIterator<Item = Holding>,
) -> Result<Restored, AllocError> {
    if ipam.subnet(subnet).is_none() {
        return Err(AllocError::UnknownSubnet(subnet.to_string()));
    }
    let mut holdings: Vec<Holding> = holdings
        .into_iter()
        .filter(|h| h.subnet == subnet)
        .collect();
    holdings.sort_by_key(|h| h.source);
    let mut outcome = Restored::default();
    for holding in holdings {
        match ipam.restore(subnet, &holding.owner, &holding.ips, holding.mac) {
            Ok(_) => outcome.restored += 1,
            Err(error) => outcome.refused.push(Refused { holding, error }),
        }
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipam::SubnetConfig;

    fn holding(owner: &str, ip: &str, mac: &str, source: Source) -> Holding {
        Holding {
            owner: owner.to_string(),
            subnet: "net2".to_string(),
            ips: vec![ip.parse().unwrap()],
            mac: Some(mac.parse().unwrap()),
            source,
        }
    }

    fn registry() -> Ipam {
        let mut ipam = Ipam::new();
        let config = SubnetConfig::parse(None, "10.0.2.0/24", None, &[]).unwrap();
        ipam.upsert_subnet("net2", config).unwrap();
        ipam
    }

    #[test]
    fn annotations_win_over_ports_and_conflicts_are_refused() {
        let mut ipam = registry();
        let outcome = restore(
            &mut ipam,
            "net2",
            [
                // Older port record of a: annotation says .5.
                holding("ns/a", "10.0.2.9", "0a:72:00:00:00:01", Source::Port),
                holding("ns/a", "10.0.2.5", "0a:72:00:00:00:01", Source::Annotations),
                // b claims a's address: refused, a keeps it.
                holding("ns/b", "10.0.2.5", "0a:72:00:00:00:02", Source::IpResource),
                holding("ns/c", "10.0.2.6", "0a:72:00:00:00:03", Source::Port),
            ],
        )
        .unwrap();
        assert_eq!(outcome.restored, 2);
        assert_eq!(outcome.refused.len(), 2);
        assert!(
            !outcome.refused[0].is_conflict(),
            "{:?}",
            outcome.refused[0]
        );
        assert!(outcome.refused[1].is_conflict(), "{:?}", outcome.refused[1]);
        let subnet = ipam.subnet("net2").unwrap();
        assert_eq!(subnet.owner_of("10.0.2.5".parse().unwrap()), Some("ns/a"));
        assert_eq!(subnet.owner_of("10.0.2.6".parse().unwrap()), Some("ns/c"));
        assert_eq!(subnet.owner_of("10.0.2.9".parse().unwrap()), None);
        // Restoring again changes nothing.
        let again = restore(
            &mut ipam,
            "net2",
            [holding(
                "ns/c",
                "10.0.2.6",
                "0a:72:00:00:00:03",
                Source::Port,
            )],
        )
        .unwrap();
        assert_eq!(again.restored, 1);
        assert_eq!(ipam.subnet("net2").unwrap().owner_count(), 2);
    }

    #[test]
    fn unknown_subnet_is_an_error() {
        let mut ipam = Ipam::new();
        assert!(matches!(
            restore(&mut ipam, "nope", []),
            Err(AllocError::UnknownSubnet(_))
        ));
    }

    #[test]
    fn port_records_parse() {
        let lsp = port::PodPort {
            namespace: "ns".into(),
            name: "a".into(),
            uid: "u1".into(),
            subnet: "net2".into(),
            allocation: ipam::Allocation {
                v4: Some("10.0.2.5".parse().unwrap()),
                v6: Some("fd00::5".parse().unwrap()),
                mac: "0a:72:00:00:00:01".parse().unwrap(),
            },
        }
        .row();
        let lsp = Mine::claim(lsp).unwrap();
        assert_eq!(
            lsp.addresses.iter().next().unwrap(),
            "0a:72:00:00:00:01 10.0.2.5 fd00::5"
        );
        let holdings = from_ports([&lsp]);
        assert_eq!(holdings.len(), 1);
        assert_eq!(holdings[0].owner, "ns/a");
        assert_eq!(holdings[0].ips.len(), 2);
    }
}
