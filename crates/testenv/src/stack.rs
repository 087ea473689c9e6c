//! The rovn side of a whole stack, shared by the controller's, the agent's and the CLI's
//! end-to-end tests, the benchmarks and the local lab (`rovn-lab`):
//!
//! - the workspace binaries ([`workspace_bin`]) and where tests keep their logs
//!   ([`kept_log_dir`]);
//! - `rovn-controller` and `rovn-agent` as child processes with their log files, signals,
//!   readiness and the controller's metrics ([`ControllerProcess`], [`AgentProcess`],
//!   [`RovnProcess`]);
//! - the API server through an admin client: namespaces, pods in bulk, `Vpc`/`Subnet`/`IP`
//!   resources, Events, and waits on them ([`Cluster`]); pods as a user makes them and the
//!   network the controller records on them, `api::pod_network::PodNetwork` ([`pod`],
//!   [`pod_network`], [`AnnotationLog`]);
//! - the controller's whole world for its tests: OVN, an API server of its own and the
//!   controller ([`ControllerEnv`]);
//! - `rovn-cni` called like kubelet calls a CNI plugin ([`Attachment`]), and pods plugged
//!   through it that serve and ask with real packets ([`PluggedPod`]);
//! - a Neutron tenant with its VM bound on the chassis ([`Tenant`]).
//!
//! Needs the `kube` feature.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use testenv::ovn::OvnEnv;
//! use testenv::stack::{ControllerEnv, Tenant, pod};
//! let env = ControllerEnv::start(OvnEnv::builder().chassis("node-1"), "test").await?;
//! let tenant = Tenant::create(&env.ovn, "a", "10.0.1.0/24", "10.0.1.50")?;
//! env.cluster
//!     .wait_vpc(&tenant.router.lr_name(), "imported", |v| v.status.is_some())
//!     .await?;
//! env.cluster.create_namespace("net2").await?;
//! env.cluster.create_pods("net2", vec![pod("web", "node-1", &[])]).await?;
//! # Ok(()) }
//! ```

#![cfg(feature = "kube")]

mod binaries;
mod cluster;
mod cni;
mod controller_env;
mod plugged;
mod pods;
mod process;
mod tenant;

pub(crate) use binaries::workspace_root;
pub use binaries::{kept_log_dir, workspace_bin};
pub use cluster::{Cluster, subnet_ready, subnet_spec, wait_gone};
pub use cni::{Attachment, CniRun};
pub use controller_env::ControllerEnv;
pub use plugged::{PluggedPod, Serve, Server, ask, wait_answer};
pub use pods::{AnnotationLog, Seen, allocated, pod, pod_network};
pub use process::{AgentProcess, ControllerOptions, ControllerProcess, RovnProcess};
pub use tenant::Tenant;
