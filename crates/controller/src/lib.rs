//! rovn-controller: the Kubernetes side of a shared OVN Northbound database.
//!
//! Modules follow the controller's duties: `leader` (one writer among
//! replicas), `http` + `metrics` (probes and Prometheus), `cli` (flags).

pub mod cli;
pub mod http;
pub mod leader;
pub mod metrics;
