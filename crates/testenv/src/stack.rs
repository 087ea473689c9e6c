//! The rovn side of a whole node stack, shared by the local lab (`rovn-lab`) and the
//! end-to-end tests: the workspace binaries ([`workspace_bin`]), `rovn-controller` and
//! `rovn-agent` as child processes with their log files ([`ControllerProcess`],
//! [`AgentProcess`]), `rovn-cni` called like kubelet calls a CNI plugin ([`Attachment`]),
//! a Neutron tenant with its VM bound on the chassis ([`Tenant`]) and the pods a kubelet
//! would run ([`create_namespace`], [`create_pod`]). Needs the `kube` feature.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use testenv::ovn::OvnEnv;
//! use testenv::stack::Tenant;
//! let env = OvnEnv::builder().chassis("node-1").start()?;
//! let tenant = Tenant::create(&env, "a", "10.0.1.0/24", "10.0.1.50")?;
//! // The VM is a network namespace; the Neutron router answers on the gateway address.
//! let gateway_answers = tenant.vm.ping("10.0.1.1");
//! # let _ = gateway_answers;
//! # Ok(()) }
//! ```

#![cfg(feature = "kube")]

mod binaries;
mod cni;
mod pods;
mod process;
mod tenant;

pub use binaries::workspace_bin;
pub use cni::{Attachment, CniRun};
pub use pods::{create_namespace, create_pod};
pub use process::{AgentProcess, ControllerProcess, RovnProcess};
pub use tenant::Tenant;
