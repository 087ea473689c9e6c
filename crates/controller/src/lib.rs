//! rovn-controller: the Kubernetes side of a shared OVN Northbound database.
//!
//! Modules follow the controller's duties:
//! - `context`: what reconcilers share (kube client, NB client + replica,
//!   metrics, settings) and the NB connection with its schema check;
//! - `nb_view`: typed reads of the NB replica (Neutron routers, ports,
//!   CIDRs, networks, which routers an NB event concerns);
//! - `queue`: the deduplicating work queue of event-driven reconcilers;
//! - `import`: Neutron routers → imported Vpcs (never writes to OVN);
//! - `vpc`: our own Vpcs → our Logical_Routers, and the default VPC;
//! - `subnet`: Subnets → Logical_Switches attached to their VPC's router
//!   (validated, moved, repaired), the default Subnet, and which Subnet a
//!   namespace uses; `namespace`: the namespaces' Subnet annotations;
//! - `pod`: pods → addresses, Logical_Switch_Ports, annotations and `IP`
//!   resources (`ip_resource`), with the IPAM rebuilt at start-up
//!   (`ipam_restore`);
//! - `leader` (one writer among replicas), `http` + `metrics` (probes and
//!   Prometheus), `cli` (flags).

pub mod cli;
pub mod context;
pub mod http;
pub mod import;
pub mod ip_resource;
pub mod ipam_restore;
pub mod leader;
pub mod metrics;
pub mod namespace;
pub mod nb_view;
pub mod pod;
pub mod queue;
pub mod subnet;
pub mod vpc;
