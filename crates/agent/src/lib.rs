//! `rovn-agent`, the node agent of rovn.
//!
//! - [`chassis`]: on start, the OVN chassis settings of the local Open_vSwitch database and
//!   `br-int`, written with our OVSDB client.
//! - [`agent`]: the CNI operations `rovn-cni` forwards over its unix socket: ADD waits for
//!   the controller's Kube-OVN annotations ([`pod`]), makes the pod's veth ([`link`], on a
//!   thread of its own per operation because `setns` is per thread, with rtnetlink and the
//!   `SIOCETHTOOL` ioctl of [`ethtool`]), plugs the host end into `br-int` ([`ovs`]) and
//!   answers once OVN reports the port up ([`port_up`], or ovn-controller's `ovn-installed`);
//!   DEL, CHECK, STATUS and GC; [`ip_record`] writes the container id into the pod's `IP`
//!   resource.
//! - [`node_link`]: the node's side of the node links — a gateway namespace per VPC bound
//!   to the node's port on the VPC's node-link switch, and a route to every local pod through
//!   its VPC's gateway (kubelet's probes; pods reaching host-network endpoints).

pub mod agent;
pub mod changes;
pub mod chassis;
pub mod ethtool;
pub mod ip_record;
pub mod link;
pub mod node_link;
pub mod ovs;
pub mod pod;
pub mod port_up;

pub use agent::{Agent, AgentSettings, host_if_name};
