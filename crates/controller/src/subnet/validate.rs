//! Validation of a Subnet before any OVN write: its name, CIDR, gateway and
//! `excludeIps` (through [`ipam::SubnetConfig::parse`]), and its CIDRs
//! against the networks already on its VPC's router (Neutron's included),
//! the other Subnets of the VPC and the Subnets sharing a namespace.

use std::collections::BTreeMap;

use api::{Protocol, SubnetSpec};
use ipam::{ConfigError, SubnetConfig};
use ipnet::IpNet;
use ovn::owned::Reserved;

use crate::bindings::Binding;

/// Why a Subnet was refused; [`Invalid::reason`] is the condition reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    /// The name could collide with Neutron's rows.
    #[error("{0}")]
    ReservedName(#[from] Reserved),
    /// `protocol`, `cidrBlock`, `gateway` or `excludeIps` is wrong.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// `spec.vpc` names no Vpc.
    #[error("Vpc {0} does not exist")]
    UnknownVpc(String),
    /// A CIDR overlaps a network on the VPC's router that is not this
    /// Subnet's (a Neutron network, or another Subnet's gateway).
    #[error("CIDR {cidr} overlaps {network} of {owner} on router {router}")]
    OverlapsRouterNetwork {
        /// This Subnet's CIDR.
        cidr: IpNet,
        /// The router port's network (`10.0.1.1/24`).
        network: String,
        /// Who owns that port.
        owner: String,
        /// The router.
        router: String,
    },
    /// A CIDR overlaps another Subnet of the same VPC.
    #[error("CIDR {cidr} overlaps Subnet {other} ({other_cidr}) of the same Vpc {vpc}")]
    OverlapsSubnet {
        /// This Subnet's CIDR.
        cidr: IpNet,
        /// The other Subnet.
        other: String,
        /// Its CIDR.
        other_cidr: IpNet,
        /// The shared VPC.
        vpc: String,
    },
    /// A CIDR overlaps another Subnet bound to one of the same namespaces.
    #[error(
        "CIDR {cidr} overlaps Subnet {other} ({other_cidr}), also bound to namespace {namespace}"
    )]
    OverlapsNamespaceSubnet {
        /// This Subnet's CIDR.
        cidr: IpNet,
        /// The other Subnet.
        other: String,
        /// Its CIDR.
        other_cidr: IpNet,
        /// The shared namespace.
        namespace: String,
    },
    /// The new configuration conflicts with allocated addresses (e.g. the
    /// new gateway is a pod's address).
    #[error("{0}")]
    Allocations(#[from] ipam::AllocError),
}

impl Invalid {
    /// The `Validated=False` condition reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Invalid::ReservedName(_) => "ReservedName",
            Invalid::Config(e) => match e {
                ConfigError::InvalidProtocol(_) | ConfigError::ProtocolMismatch { .. } => {
                    "InvalidProtocol"
                }
                ConfigError::EmptyCidrBlock
                | ConfigError::InvalidCidr(_)
                | ConfigError::DuplicateFamily { .. }
                | ConfigError::CidrTooSmall { .. } => "InvalidCidr",
                ConfigError::InvalidGateway(_)
                | ConfigError::GatewayOutsideCidr { .. }
                | ConfigError::GatewayReserved { .. } => "InvalidGateway",
                ConfigError::InvalidExclude { .. } | ConfigError::ExcludeOutsideCidr { .. } => {
                    "InvalidExcludeIps"
                }
            },
            Invalid::UnknownVpc(_) => "UnknownVpc",
            Invalid::OverlapsRouterNetwork { .. } => "CidrOverlapsRouterNetwork",
            Invalid::OverlapsSubnet { .. } => "CidrOverlapsSubnet",
            Invalid::OverlapsNamespaceSubnet { .. } => "CidrOverlapsNamespaceSubnet",
            Invalid::Allocations(_) => "ConflictsWithAllocations",
        }
    }
}

/// Parses the spec's `protocol`, `cidrBlock`, `gateway` and `excludeIps`.
pub fn parse_config(spec: &SubnetSpec) -> Result<SubnetConfig, ConfigError> {
    let protocol = spec.protocol.map(|p| match p {
        Protocol::IPv4 => "IPv4",
        Protocol::IPv6 => "IPv6",
        Protocol::Dual => "Dual",
    });
    SubnetConfig::parse(
        protocol,
        &spec.cidr_block,
        spec.gateway.as_deref(),
        &spec.exclude_ips,
    )
}

/// Whether two prefixes share an address.
pub fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// A network on the VPC's router that is not this Subnet's own port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouterNetwork {
    /// As written on the port (`10.0.1.1/24`).
    pub network: String,
    /// Who owns the port, for the message (`Neutron network neutron-<id>`).
    pub owner: String,
    /// The Subnet whose gateway this is, when the port is ours.
    pub subnet: Option<String>,
}

/// Checks `cidrs` of Subnet `name` (on `vpc`, bound to `namespaces`)
/// against the router's other networks and the other accepted Subnets.
pub fn check_overlaps(
    name: &str,
    vpc: &str,
    namespaces: &[String],
    cidrs: &[IpNet],
    router: &str,
    router_networks: &[RouterNetwork],
    accepted: &BTreeMap<String, Binding>,
) -> Result<(), Invalid> {
    for cidr in cidrs {
        for other in router_networks {
            let Ok(net) = other.network.parse::<IpNet>() else {
                continue;
            };
            if !overlaps(cidr, &net.trunc()) {
                continue;
            }
            if let Some(other) = &other.subnet {
                return Err(Invalid::OverlapsSubnet {
                    cidr: *cidr,
                    other: other.clone(),
                    other_cidr: net.trunc(),
                    vpc: vpc.to_string(),
                });
            }
            return Err(Invalid::OverlapsRouterNetwork {
                cidr: *cidr,
                network: other.network.clone(),
                owner: other.owner.clone(),
                router: router.to_string(),
            });
        }
        for (other, binding) in accepted.iter().filter(|(n, _)| n.as_str() != name) {
            for other_cidr in binding.cidrs() {
                if !overlaps(cidr, &other_cidr) {
                    continue;
                }
                if binding.vpc == vpc {
                    return Err(Invalid::OverlapsSubnet {
                        cidr: *cidr,
                        other: other.clone(),
                        other_cidr,
                        vpc: vpc.to_string(),
                    });
                }
                if let Some(namespace) = namespaces.iter().find(|n| binding.namespaces.contains(n))
                {
                    return Err(Invalid::OverlapsNamespaceSubnet {
                        cidr: *cidr,
                        other: other.clone(),
                        other_cidr,
                        namespace: namespace.clone(),
                    });
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(vpc: &str, cidr: &str, namespaces: &[&str]) -> Binding {
        Binding {
            vpc: vpc.to_string(),
            namespaces: namespaces.iter().map(|n| n.to_string()).collect(),
            config: SubnetConfig::parse(None, cidr, None, &[]).unwrap(),
            default: false,
            created: String::new(),
        }
    }

    fn net(cidr: &str) -> Vec<IpNet> {
        vec![cidr.parse().unwrap()]
    }

    #[test]
    fn router_networks_and_subnets_are_checked() {
        let neutron = [RouterNetwork {
            network: "10.0.1.1/24".to_string(),
            owner: "Neutron network neutron-x".to_string(),
            subnet: None,
        }];
        let accepted = BTreeMap::from([
            ("a".to_string(), binding("r", "10.0.3.0/24", &["x"])),
            ("b".to_string(), binding("other", "10.0.4.0/24", &["ns"])),
            ("c".to_string(), binding("other", "10.0.5.0/24", &["y"])),
        ]);
        let check = |name: &str, cidr: &str, ns: &[&str]| {
            let ns: Vec<String> = ns.iter().map(|n| n.to_string()).collect();
            check_overlaps(name, "r", &ns, &net(cidr), "r", &neutron, &accepted)
        };
        let err = check("n", "10.0.1.0/25", &[]).unwrap_err();
        let ours = [RouterNetwork {
            network: "10.0.9.1/24".to_string(),
            owner: "Subnet z".to_string(),
            subnet: Some("z".to_string()),
        }];
        let by_port = check_overlaps("n", "r", &[], &net("10.0.9.0/25"), "r", &ours, &accepted);
        assert_eq!(by_port.unwrap_err().reason(), "CidrOverlapsSubnet");
        assert_eq!(err.reason(), "CidrOverlapsRouterNetwork");
        assert!(err.to_string().contains("10.0.1.1/24"), "{err}");
        assert_eq!(
            check("n", "10.0.0.0/16", &[]).unwrap_err().reason(),
            "CidrOverlapsRouterNetwork"
        );
        assert_eq!(
            check("n", "10.0.3.128/25", &[]).unwrap_err().reason(),
            "CidrOverlapsSubnet"
        );
        // The Subnet does not conflict with itself.
        assert!(check("a", "10.0.3.0/24", &[]).is_ok());
        assert_eq!(
            check("n", "10.0.4.0/24", &["ns"]).unwrap_err().reason(),
            "CidrOverlapsNamespaceSubnet"
        );
        // Overlap with another VPC's Subnet of other namespaces is fine.
        assert!(check("n", "10.0.5.0/24", &["ns"]).is_ok());
        assert!(check("n", "10.0.2.0/24", &["ns"]).is_ok());
    }

    #[test]
    fn config_errors_have_reasons() {
        let spec = |cidr: &str, gw: Option<&str>, ex: &[&str]| SubnetSpec {
            cidr_block: cidr.to_string(),
            gateway: gw.map(str::to_string),
            exclude_ips: ex.iter().map(|e| e.to_string()).collect(),
            ..SubnetSpec::default()
        };
        let reason = |s: SubnetSpec| Invalid::from(parse_config(&s).unwrap_err()).reason();
        assert_eq!(reason(spec("10.0.2.0/33", None, &[])), "InvalidCidr");
        assert_eq!(reason(spec("x", None, &[])), "InvalidCidr");
        assert_eq!(
            reason(spec("10.0.2.0/24", Some("10.0.3.1"), &[])),
            "InvalidGateway"
        );
        assert_eq!(
            reason(spec("10.0.2.0/24", None, &["10.0.3.5"])),
            "InvalidExcludeIps"
        );
        assert_eq!(
            reason(spec("10.0.2.0/24", None, &["10.0.2.x"])),
            "InvalidExcludeIps"
        );
        let ok = parse_config(&spec("10.0.2.0/24", None, &[])).unwrap();
        assert_eq!(ok.gateways(), "10.0.2.1");
    }
}
