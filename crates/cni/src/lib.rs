//! `rovn-cni`, a CNI plugin (spec 0.4.0, 1.0.0 and 1.1.0) that does no network work itself:
//! it validates the invocation (`CNI_*` environment, network configuration on stdin),
//! forwards it to the node agent over a unix socket ([`protocol`]) and prints the agent's
//! answer in the spec's JSON format, with the spec's error codes.
//!
//! Network configuration keys of our own:
//! - `socket`: the agent's socket, default [`config::DEFAULT_SOCKET`];
//! - `agentTimeoutSeconds`: how long to wait for the agent (1-230), default 220 s,
//!   under kubelet's 4-minute sandbox timeout.

pub mod config;
pub mod env;
pub mod error;
pub mod plugin;
pub mod protocol;
pub mod result;
pub mod version;

pub use config::{Attachment, NetConf};
pub use env::{CniEnv, Command, PodRef};
pub use error::{CniError, ErrorOutput};
pub use result::{CniResult, Dns, Interface, IpConfig, Route};
