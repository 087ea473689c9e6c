//! IP and MAC address management for rovn subnets. Pure logic: no I/O, no clock.
//!
//! - [`SubnetConfig::parse`] validates Kube-OVN `protocol`, `cidrBlock`, `gateway` and
//!   `excludeIps` into typed errors ([`ConfigError`]) suitable for status conditions.
//! - [`Subnet`] allocates per owner (a key such as `namespace/pod`): one address per family
//!   (IPv4, IPv6 or both), lowest never-used address first, released addresses reused last
//!   (oldest release first); static addresses and MACs with conflict detection; generated MACs
//!   (`0a:72:..`, see [`mac`]) unique in the subnet; network, broadcast, gateway and excluded
//!   addresses never handed out. Allocation, release and restore are O(log n).
//! - [`Ipam`] holds all subnets and is rebuilt at start-up with [`Ipam::restore`], which
//!   refuses (and reports) any address or MAC already held by another owner.

mod config;
mod error;
pub mod mac;
mod pool;
mod range_set;
mod registry;
mod subnet;

pub use config::{
    ConfigError, Family, FamilyConfig, MAX_V4_PREFIX, MAX_V6_PREFIX, Protocol, SubnetConfig,
};
pub use error::{AllocError, ReservedReason};
pub use mac::{MacAddr, MacError};
pub use registry::Ipam;
pub use subnet::{AddressRequest, Allocation, Displaced, GATEWAY_MAC_OWNER, Subnet, SubnetCounts};
