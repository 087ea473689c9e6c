//! rovnctl: command-line tooling for rovn.
//!
//! - [`cli`]: the command line of `rovnctl` and of the `kubectl rovn` plugin.
//! - [`connect`]: the flags every subcommand shares and how they reach OVN
//!   and Kubernetes (the Northbound address from rovn's ConfigMap).
//! - [`crds`]: the CustomResourceDefinitions generated from the Rust types.
//! - [`destination`]: what `trace` sends its packet to (an address, a pod, a
//!   Service).
//! - [`diagnose`]: what pods of a subnet can reach on the Neutron networks of
//!   its router (security groups and `neutron_pg_drop`).
//! - [`flow`]: whether one pod → IP connection passes, and which of the two
//!   filters on its path (our NetworkPolicies, Neutron's security groups)
//!   drops it, from an `ovn-trace` of its first packet.
//! - [`snapshot`]: the database rows the others read.
//! - [`status`]: whether rovn is healthy, and what to do when it is not.
//! - [`topology`]: routers, networks, VMs and pods as a tree, JSON or a graph.

pub mod cli;
pub mod connect;
pub mod crds;
pub mod destination;
pub mod diagnose;
pub mod flow;
pub mod snapshot;
pub mod status;
pub mod topology;
