//! rovn-controller: the Kubernetes side of a shared OVN Northbound database.
//!
//! Modules form a tree, lower layers first (a module never imports one that
//! imports it):
//! - `cli` (flags), `metrics`, `queue` (the deduplicating work queue),
//!   `bindings` (the Subnets accepted and which namespace uses which);
//! - `context`: what reconcilers share (kube client, the Northbound write
//!   gateway and typed view, IPAM, bindings, metrics, settings);
//! - `error` (the one reconcile error and its retry policy) and `runtime`
//!   (watches, workers, finalizers, Events: how every reconciler runs);
//! - `nb_view`: what reconcilers read of Neutron's rows (routers, ports,
//!   CIDRs, networks, which routers an NB event concerns);
//! - the reconcilers: `import` (Neutron routers → imported Vpcs, never
//!   writes to OVN), `vpc` (our own Vpcs → our Logical_Routers, and the
//!   default VPC), `subnet` (Subnets → Logical_Switches attached to their
//!   VPC's router: validated, moved, repaired), `namespace` (the namespaces'
//!   Subnet annotations), `pod` (pods → addresses, Logical_Switch_Ports,
//!   annotations and `IP` resources), `service` (Services and their
//!   EndpointSlices → load balancers in a group per VPC on our switches),
//!   `node_link` (Nodes × served VPCs → the switch, router port, node ports and
//!   routes joining every node to every VPC), `network_policy`
//!   (NetworkPolicies → port groups, address sets and ACLs of ours);
//! - `leader` (one writer among replicas), `http` (probes and Prometheus).
//!
//! Every Northbound write goes through `ovn::owned` (the gateway): nothing
//! here builds a raw OVSDB operation.

pub mod bindings;
pub mod cli;
pub mod context;
pub mod error;
pub mod http;
pub mod import;
pub mod leader;
pub mod metrics;
pub mod namespace;
pub mod nb_view;
pub mod network_policy;
pub mod node_link;
pub mod pod;
pub mod queue;
pub mod runtime;
pub mod service;
pub mod subnet;
pub mod vpc;
