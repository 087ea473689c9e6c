//! rovnctl: command-line tooling for rovn.
//!
//! - [`crds`]: the CustomResourceDefinitions generated from the Rust types.
//! - [`diagnose`]: what pods of a subnet can reach on the Neutron networks of
//!   its router (security groups and `neutron_pg_drop`).
//! - [`snapshot`]: the Northbound rows it reads.

pub mod crds;
pub mod diagnose;
pub mod snapshot;
