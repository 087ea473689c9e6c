//! Validated subnet configuration from Kube-OVN-style fields (`protocol`,
//! `cidrBlock`, `gateway`, `excludeIps`).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

/// The smallest IPv4 subnet accepted (/30: network, gateway, one pod, broadcast).
pub const MAX_V4_PREFIX: u8 = 30;
/// The smallest IPv6 subnet accepted (/126).
pub const MAX_V6_PREFIX: u8 = 126;

/// IP family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Family {
    /// The family of an address.
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        })
    }
}

/// Kube-OVN `spec.protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// `IPv4`: one IPv4 CIDR.
    IPv4,
    /// `IPv6`: one IPv6 CIDR.
    IPv6,
    /// `Dual`: one IPv4 and one IPv6 CIDR.
    Dual,
}

impl FromStr for Protocol {
    type Err = ConfigError;

    fn from_str(text: &str) -> Result<Self, ConfigError> {
        match text {
            "IPv4" => Ok(Protocol::IPv4),
            "IPv6" => Ok(Protocol::IPv6),
            "Dual" => Ok(Protocol::Dual),
            other => Err(ConfigError::InvalidProtocol(other.to_owned())),
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::IPv4 => "IPv4",
            Protocol::IPv6 => "IPv6",
            Protocol::Dual => "Dual",
        })
    }
}

/// Why a subnet configuration was refused. Each message names the offending value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `protocol` is not `IPv4`, `IPv6` or `Dual`.
    #[error("invalid protocol {0:?}: expected IPv4, IPv6 or Dual")]
    InvalidProtocol(String),
    /// `cidrBlock` is empty.
    #[error("cidrBlock is empty")]
    EmptyCidrBlock,
    /// One entry of `cidrBlock` is not a CIDR.
    #[error("invalid CIDR {0:?} in cidrBlock")]
    InvalidCidr(String),
    /// `cidrBlock` has two CIDRs of the same family.
    #[error("cidrBlock {cidr_block:?} has more than one {family} CIDR")]
    DuplicateFamily {
        /// The whole `cidrBlock`.
        cidr_block: String,
        /// The repeated family.
        family: Family,
    },
    /// The CIDR families do not match `protocol`.
    #[error("cidrBlock {cidr_block:?} does not match protocol {protocol}")]
    ProtocolMismatch {
        /// The declared protocol.
        protocol: Protocol,
        /// The whole `cidrBlock`.
        cidr_block: String,
    },
    /// A CIDR too small to hold a gateway and at least one port.
    #[error("CIDR {cidr} is too small: the prefix must be at most /{max_prefix}")]
    CidrTooSmall {
        /// The CIDR.
        cidr: IpNet,
        /// The largest prefix length accepted for its family.
        max_prefix: u8,
    },
    /// One entry of `gateway` is not an IP address.
    #[error("invalid gateway {0:?}: expected an IP address (comma-separated for Dual)")]
    InvalidGateway(String),
    /// A gateway outside the CIDR of its family (or of a family the subnet lacks).
    #[error("gateway {gateway} is outside the subnet's CIDR ({cidr_block})")]
    GatewayOutsideCidr {
        /// The gateway.
        gateway: IpAddr,
        /// The whole `cidrBlock`.
        cidr_block: String,
    },
    /// A gateway equal to the network or broadcast address.
    #[error("gateway {gateway} is the network or broadcast address of {cidr}")]
    GatewayReserved {
        /// The gateway.
        gateway: IpAddr,
        /// Its CIDR.
        cidr: IpNet,
    },
    /// A malformed `excludeIps` entry.
    #[error("invalid excludeIps entry {entry:?}: {reason}")]
    InvalidExclude {
        /// The entry as written.
        entry: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An `excludeIps` entry not inside the subnet's CIDR of its family.
    #[error("excludeIps entry {entry:?} is outside the subnet's CIDR ({cidr_block})")]
    ExcludeOutsideCidr {
        /// The entry as written.
        entry: String,
        /// The whole `cidrBlock`.
        cidr_block: String,
    },
}

/// Validated configuration of one address family of a subnet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FamilyConfig {
    /// The CIDR, host bits cleared.
    pub cidr: IpNet,
    /// The gateway (router port) address.
    pub gateway: IpAddr,
    /// Excluded inclusive ranges, sorted by start (may overlap).
    pub excluded: Vec<(IpAddr, IpAddr)>,
}

/// A validated subnet configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetConfig {
    protocol: Protocol,
    v4: Option<FamilyConfig>,
    v6: Option<FamilyConfig>,
}

impl SubnetConfig {
    /// Validates Kube-OVN subnet fields.
    ///
    /// - `protocol`: `IPv4`, `IPv6` or `Dual`; when `None`, inferred from `cidr_block`.
    /// - `cidr_block`: one CIDR, or `v4,v6` for dual stack; host bits are cleared.
    /// - `gateway`: `None` or empty → the first usable address of each CIDR; else one
    ///   address per family, comma-separated; families without a listed gateway get the default.
    /// - `exclude_ips`: entries `a.b.c.d` or `a..b` (inclusive), each inside the CIDR of its family.
    pub fn parse(
        protocol: Option<&str>,
        cidr_block: &str,
        gateway: Option<&str>,
        exclude_ips: &[String],
    ) -> Result<Self, ConfigError> {
        let (mut v4, mut v6): (Option<IpNet>, Option<IpNet>) = (None, None);
        let cidrs: Vec<&str> = cidr_block
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        if cidrs.is_empty() {
            return Err(ConfigError::EmptyCidrBlock);
        }
        for text in cidrs {
            let cidr: IpNet = text
                .parse()
                .map_err(|_| ConfigError::InvalidCidr(text.to_owned()))?;
            let cidr = cidr.trunc();
            let (slot, family, max_prefix) = match cidr {
                IpNet::V4(_) => (&mut v4, Family::V4, MAX_V4_PREFIX),
                IpNet::V6(_) => (&mut v6, Family::V6, MAX_V6_PREFIX),
            };
            if slot.is_some() {
                return Err(ConfigError::DuplicateFamily {
                    cidr_block: cidr_block.to_owned(),
                    family,
                });
            }
            if cidr.prefix_len() > max_prefix {
                return Err(ConfigError::CidrTooSmall { cidr, max_prefix });
            }
            *slot = Some(cidr);
        }
        let inferred = match (v4.is_some(), v6.is_some()) {
            (true, true) => Protocol::Dual,
            (true, false) => Protocol::IPv4,
            _ => Protocol::IPv6,
        };
        let protocol = match protocol.map(str::trim).filter(|p| !p.is_empty()) {
            None => inferred,
            Some(text) => {
                let declared: Protocol = text.parse()?;
                if declared != inferred {
                    return Err(ConfigError::ProtocolMismatch {
                        protocol: declared,
                        cidr_block: cidr_block.to_owned(),
                    });
                }
                declared
            }
        };

        let (mut gw4, mut gw6) = (None, None);
        for text in gateway
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|g| !g.is_empty())
        {
            let ip: IpAddr = text
                .parse()
                .map_err(|_| ConfigError::InvalidGateway(text.to_owned()))?;
            let (cidr, slot) = match ip {
                IpAddr::V4(_) => (v4, &mut gw4),
                IpAddr::V6(_) => (v6, &mut gw6),
            };
            let outside = || ConfigError::GatewayOutsideCidr {
                gateway: ip,
                cidr_block: cidr_block.to_owned(),
            };
            let cidr = cidr.ok_or_else(outside)?;
            if !cidr.contains(&ip) {
                return Err(outside());
            }
            if slot.is_some() {
                return Err(ConfigError::InvalidGateway(text.to_owned()));
            }
            if ip == cidr.network() || (matches!(cidr, IpNet::V4(_)) && ip == cidr.broadcast()) {
                return Err(ConfigError::GatewayReserved { gateway: ip, cidr });
            }
            *slot = Some(ip);
        }

        let mut excluded4 = Vec::new();
        let mut excluded6 = Vec::new();
        for entry in exclude_ips {
            let (start, end) = parse_exclude(entry)?;
            let (cidr, list) = match start {
                IpAddr::V4(_) => (v4, &mut excluded4),
                IpAddr::V6(_) => (v6, &mut excluded6),
            };
            if !cidr.is_some_and(|c| c.contains(&start) && c.contains(&end)) {
                return Err(ConfigError::ExcludeOutsideCidr {
                    entry: entry.clone(),
                    cidr_block: cidr_block.to_owned(),
                });
            }
            list.push((start, end));
        }

        let family =
            |cidr: Option<IpNet>, gateway: Option<IpAddr>, mut excluded: Vec<(IpAddr, IpAddr)>| {
                cidr.map(|cidr| {
                    excluded.sort();
                    FamilyConfig {
                        cidr,
                        gateway: gateway.unwrap_or_else(|| first_usable(cidr)),
                        excluded,
                    }
                })
            };
        Ok(SubnetConfig {
            protocol,
            v4: family(v4, gw4, excluded4),
            v6: family(v6, gw6, excluded6),
        })
    }

    /// The subnet's protocol.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// The IPv4 part, if any.
    pub fn v4(&self) -> Option<&FamilyConfig> {
        self.v4.as_ref()
    }

    /// The IPv6 part, if any.
    pub fn v6(&self) -> Option<&FamilyConfig> {
        self.v6.as_ref()
    }

    /// The part of `family`, if any.
    pub fn family(&self, family: Family) -> Option<&FamilyConfig> {
        match family {
            Family::V4 => self.v4(),
            Family::V6 => self.v6(),
        }
    }

    /// The CIDRs, IPv4 first, as Kube-OVN's comma-separated `cidrBlock` form.
    pub fn cidr_block(&self) -> String {
        self.families()
            .map(|f| f.cidr.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The gateways, IPv4 first, comma-separated (Kube-OVN `gateway` form).
    pub fn gateways(&self) -> String {
        self.families()
            .map(|f| f.gateway.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The configured families, IPv4 first.
    pub fn families(&self) -> impl Iterator<Item = &FamilyConfig> {
        self.v4.iter().chain(self.v6.iter())
    }
}

/// The first address after the network address.
fn first_usable(cidr: IpNet) -> IpAddr {
    match cidr {
        IpNet::V4(net) => IpAddr::V4((u32::from(net.network()) + 1).into()),
        IpNet::V6(net) => IpAddr::V6((u128::from(net.network()) + 1).into()),
    }
}

/// Parses one `excludeIps` entry: `ip` or `start..end`, both ends of one family, `start <= end`.
fn parse_exclude(entry: &str) -> Result<(IpAddr, IpAddr), ConfigError> {
    let invalid = |reason| ConfigError::InvalidExclude {
        entry: entry.to_owned(),
        reason,
    };
    let parse = |text: &str| {
        text.trim()
            .parse::<IpAddr>()
            .map_err(|_| invalid("not an IP address or a..b range"))
    };
    let (start, end) = match entry.split_once("..") {
        Some((a, b)) => (parse(a)?, parse(b)?),
        None => {
            let ip = parse(entry)?;
            (ip, ip)
        }
    };
    if Family::of(start) != Family::of(end) {
        return Err(invalid("range ends are of different IP families"));
    }
    if start > end {
        return Err(invalid("range start is above its end"));
    }
    Ok((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn excl(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn ipv4_defaults() {
        let c = SubnetConfig::parse(Some("IPv4"), "10.0.2.0/24", None, &[]).unwrap();
        assert_eq!(c.protocol(), Protocol::IPv4);
        assert_eq!(c.cidr_block(), "10.0.2.0/24");
        assert_eq!(c.gateways(), "10.0.2.1");
        assert!(c.v6().is_none());
    }

    #[test]
    fn dual_stack_inferred_with_gateways_and_excludes() {
        let c = SubnetConfig::parse(
            None,
            "fd00:10::/64, 10.16.0.5/16",
            Some("10.16.0.254,fd00:10::fe"),
            &excl(&["10.16.0.10..10.16.0.20", "fd00:10::5", "10.16.0.2"]),
        )
        .unwrap();
        assert_eq!(c.protocol(), Protocol::Dual);
        assert_eq!(c.cidr_block(), "10.16.0.0/16,fd00:10::/64");
        assert_eq!(c.gateways(), "10.16.0.254,fd00:10::fe");
        let v4 = c.v4().unwrap();
        assert_eq!(
            v4.excluded[0],
            ("10.16.0.2".parse().unwrap(), "10.16.0.2".parse().unwrap())
        );
        assert_eq!(c.v6().unwrap().excluded.len(), 1);
    }

    #[test]
    fn refusals() {
        let p = |proto: Option<&str>, cidr: &str, gw: Option<&str>, ex: &[&str]| {
            SubnetConfig::parse(proto, cidr, gw, &excl(ex)).unwrap_err()
        };
        assert_eq!(
            p(Some("IPv5"), "10.0.0.0/24", None, &[]),
            ConfigError::InvalidProtocol("IPv5".into())
        );
        assert_eq!(p(None, " , ", None, &[]), ConfigError::EmptyCidrBlock);
        assert_eq!(
            p(None, "10.0.0.0/33", None, &[]),
            ConfigError::InvalidCidr("10.0.0.0/33".into())
        );
        assert_eq!(
            p(None, "10.0.0.0", None, &[]),
            ConfigError::InvalidCidr("10.0.0.0".into())
        );
        assert!(matches!(
            p(None, "10.0.0.0/24,10.1.0.0/24", None, &[]),
            ConfigError::DuplicateFamily { .. }
        ));
        assert!(matches!(
            p(Some("IPv6"), "10.0.0.0/24", None, &[]),
            ConfigError::ProtocolMismatch { .. }
        ));
        assert!(matches!(
            p(Some("Dual"), "10.0.0.0/24", None, &[]),
            ConfigError::ProtocolMismatch { .. }
        ));
        assert!(matches!(
            p(None, "10.0.0.0/31", None, &[]),
            ConfigError::CidrTooSmall { max_prefix: 30, .. }
        ));
        assert!(matches!(
            p(None, "fd00::/127", None, &[]),
            ConfigError::CidrTooSmall {
                max_prefix: 126,
                ..
            }
        ));
        assert_eq!(
            p(None, "10.0.0.0/24", Some("x"), &[]),
            ConfigError::InvalidGateway("x".into())
        );
        assert!(matches!(
            p(None, "10.0.0.0/24", Some("10.0.1.1"), &[]),
            ConfigError::GatewayOutsideCidr { .. }
        ));
        assert!(matches!(
            p(None, "10.0.0.0/24", Some("fd00::1"), &[]),
            ConfigError::GatewayOutsideCidr { .. }
        ));
        assert!(matches!(
            p(None, "10.0.0.0/24", Some("10.0.0.255"), &[]),
            ConfigError::GatewayReserved { .. }
        ));
        assert!(matches!(
            p(None, "10.0.0.0/24", Some("10.0.0.0"), &[]),
            ConfigError::GatewayReserved { .. }
        ));
        assert!(matches!(
            p(None, "10.0.0.0/24", Some("10.0.0.1,10.0.0.2"), &[]),
            ConfigError::InvalidGateway(_)
        ));
        for bad in [
            "10.0.0.x",
            "10.0.0.5..",
            "10.0.0.9..10.0.0.5",
            "10.0.0.1..fd00::1",
            "10.0.0.1...10.0.0.3",
        ] {
            assert!(
                matches!(
                    p(None, "10.0.0.0/24", None, &[bad]),
                    ConfigError::InvalidExclude { .. }
                ),
                "{bad}"
            );
        }
        for outside in ["10.0.1.5", "10.0.0.250..10.0.1.3", "fd00::1"] {
            assert!(
                matches!(
                    p(None, "10.0.0.0/24", None, &[outside]),
                    ConfigError::ExcludeOutsideCidr { .. }
                ),
                "{outside}"
            );
        }
    }
}
