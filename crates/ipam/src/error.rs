//! Errors of allocation, release, restore and reconfiguration.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::config::Family;
use crate::mac::{MacAddr, MacError};

/// Why an address is never handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReservedReason {
    /// The network address (all host bits zero).
    Network,
    /// The IPv4 broadcast address (all host bits one).
    Broadcast,
    /// The subnet's gateway.
    Gateway,
    /// Listed in `excludeIps`.
    Excluded,
}

impl fmt::Display for ReservedReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReservedReason::Network => "the network address",
            ReservedReason::Broadcast => "the broadcast address",
            ReservedReason::Gateway => "the gateway",
            ReservedReason::Excluded => "in excludeIps",
        })
    }
}

/// Why an allocation, restore or reconfiguration was refused. Nothing is changed when one is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    /// No subnet of that name in the registry.
    #[error("unknown subnet {0:?}")]
    UnknownSubnet(String),
    /// No free address left in one family.
    #[error("subnet {subnet} has no free {family} address left")]
    Exhausted {
        /// Subnet name.
        subnet: String,
        /// The exhausted family.
        family: Family,
    },
    /// A requested address that does not parse (e.g. the `ovn.kubernetes.io/ip_address` annotation).
    #[error("invalid IP address {0:?}: expected IP addresses separated by commas")]
    InvalidAddress(String),
    /// A requested MAC that is malformed or not a unicast address.
    #[error(transparent)]
    InvalidMac(#[from] MacError),
    /// An address of a family the subnet does not have.
    #[error("address {ip} is {family} but subnet {subnet} has no {family} CIDR")]
    FamilyNotInSubnet {
        /// The address.
        ip: IpAddr,
        /// Its family.
        family: Family,
        /// Subnet name.
        subnet: String,
    },
    /// Two addresses of the same family in one request.
    #[error("more than one {0} address requested")]
    DuplicateFamily(Family),
    /// An address outside the subnet's CIDR.
    #[error("address {ip} is outside subnet {subnet} ({cidr})")]
    OutsideSubnet {
        /// The address.
        ip: IpAddr,
        /// Subnet name.
        subnet: String,
        /// The CIDR of the address's family.
        cidr: IpNet,
    },
    /// An address that is never handed out.
    #[error("address {ip} of subnet {subnet} cannot be assigned: it is {reason}")]
    Reserved {
        /// The address.
        ip: IpAddr,
        /// Subnet name.
        subnet: String,
        /// Why it is reserved.
        reason: ReservedReason,
    },
    /// An address already held by another owner.
    #[error("address {ip} is already used by {owner}")]
    AddressInUse {
        /// The address.
        ip: IpAddr,
        /// The current holder.
        owner: String,
    },
    /// A MAC already held by another owner in the subnet.
    #[error("MAC address {mac} is already used by {owner}")]
    MacInUse {
        /// The MAC.
        mac: MacAddr,
        /// The current holder.
        owner: String,
    },
    /// The owner already holds a different address of that family.
    #[error("{owner} already holds {existing}, not the requested {requested}")]
    OwnerHasOtherAddress {
        /// The owner.
        owner: String,
        /// The address it holds.
        existing: IpAddr,
        /// The address asked for.
        requested: IpAddr,
    },
    /// The owner already holds a different MAC.
    #[error("{owner} already holds MAC {existing}, not the requested {requested}")]
    OwnerHasOtherMac {
        /// The owner.
        owner: String,
        /// The MAC it holds.
        existing: MacAddr,
        /// The MAC asked for.
        requested: MacAddr,
    },
    /// A new configuration whose gateway is an address held by an owner.
    #[error("new gateway {gateway} is used by {owner}")]
    GatewayInUse {
        /// The new gateway.
        gateway: IpAddr,
        /// The current holder.
        owner: String,
    },
}
