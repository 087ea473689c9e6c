//! The CNI operations: one [`Agent`] answers every request `rovn-cni` forwards.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use api::pod_network::{self, PodNetwork};
use cni::protocol::{AgentRequest, AgentResponse};
use cni::{CniError, CniResult, Command, Interface, IpConfig, PodRef, Route};
use ipnet::IpNet;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;

use crate::link::{self, Expected, LinkError, VethSpec};
use crate::ovs::{IFACE_ID, LocalSwitch, PodPort};
use crate::pod::{self, PodNetworkError};
use crate::port_up::PortUpWait;

/// Plugin-specific CNI error code: the pod's annotations cannot be used.
pub const INVALID_POD_NETWORK: u32 = 100;
/// Plugin-specific CNI error code: the OVS port could not be plugged or checked.
pub const OVS_FAILURE: u32 = 101;

/// The tracing target of the per-ADD timing line (`allocation_us`, `veth_us`, `plug_us`,
/// `port_up_us`, `total_us`), logged at info level.
pub const ADD_TIMINGS_TARGET: &str = "rovn_agent::add_timings";

/// How long each phase of one ADD took.
struct AddPhases {
    started: Instant,
    last: Instant,
    allocation: Duration,
    veth: Duration,
    plug: Duration,
    port_up: Duration,
}

impl AddPhases {
    fn start() -> Self {
        let now = Instant::now();
        AddPhases {
            started: now,
            last: now,
            allocation: Duration::ZERO,
            veth: Duration::ZERO,
            plug: Duration::ZERO,
            port_up: Duration::ZERO,
        }
    }

    /// The time since the previous lap.
    fn lap(&mut self) -> Duration {
        let now = Instant::now();
        let lap = now - self.last;
        self.last = now;
        lap
    }
}

/// Settings of the CNI operations.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    /// The namespace holding the veth host ends (where `ovs-vswitchd` runs); `None`: the agent's.
    pub host_netns: Option<PathBuf>,
    /// MTU of the pod interfaces.
    pub mtu: u32,
    /// How long ADD waits for the controller's allocation annotations.
    pub allocation_timeout: Duration,
    /// How long ADD waits for OVN to report the port up.
    pub port_up_timeout: Duration,
}

/// Serves the CNI operations of one node.
pub struct Agent {
    settings: AgentSettings,
    pods: kube::Client,
    switch: Arc<LocalSwitch>,
    port_up: Option<PortUpWait>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("settings", &self.settings)
            .field("switch", &self.switch)
            .field("port_up", &self.port_up)
            .finish()
    }
}

/// The OVS port (and veth host end) name of an attachment: a hash of container id and
/// interface name (15 characters at most, stable across ADD, CHECK, DEL and GC).
pub fn host_if_name(container_id: &str, ifname: &str) -> String {
    // FNV-1a, 64 bits: stable across releases, unlike std's hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in container_id.bytes().chain([0]).chain(ifname.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:012x}_h", hash >> 16)
}

fn error(code: u32, msg: &str, details: impl ToString) -> CniError {
    CniError::new(code, msg, details.to_string())
}

fn link_error(problem: LinkError) -> CniError {
    let code = if problem.netns_missing {
        CniError::INVALID_ENVIRONMENT
    } else {
        CniError::IO_FAILURE
    };
    error(code, "network interface set-up failed", problem)
}

fn pod_error(problem: PodNetworkError) -> CniError {
    let code = match problem {
        PodNetworkError::Invalid { .. } | PodNetworkError::UidMismatch { .. } => {
            INVALID_POD_NETWORK
        }
        PodNetworkError::NotFound { .. }
        | PodNetworkError::NotAllocated { .. }
        | PodNetworkError::Api { .. } => CniError::TRY_AGAIN_LATER,
    };
    error(code, "the pod's network is not available", problem)
}

/// Where ADD attaches the pod.
struct Target<'a> {
    pod: &'a PodRef,
    container_id: &'a str,
    ifname: &'a str,
    netns: &'a str,
    host_if: &'a str,
}

/// The request fields every attachment command has (the plugin validated them).
struct Attachment<'a> {
    container_id: &'a str,
    ifname: &'a str,
}

fn attachment(request: &AgentRequest) -> Result<Attachment<'_>, CniError> {
    match (request.container_id.as_deref(), request.ifname.as_deref()) {
        (Some(container_id), Some(ifname)) => Ok(Attachment {
            container_id,
            ifname,
        }),
        _ => Err(error(
            CniError::INVALID_ENVIRONMENT,
            "invalid environment variables: CNI_CONTAINERID, CNI_IFNAME",
            "both are required",
        )),
    }
}

fn required<'a, T>(value: Option<&'a T>, what: &str) -> Result<&'a T, CniError>
where
    T: ?Sized,
{
    value.ok_or_else(|| {
        error(
            CniError::INVALID_ENVIRONMENT,
            &format!("invalid environment variables: {what}"),
            format!("{what} is required"),
        )
    })
}

impl Agent {
    /// An agent using `pods` to read pods, `switch` for OVS ports and, when given, `port_up`
    /// to learn that OVN set a port up.
    pub fn new(
        settings: AgentSettings,
        pods: kube::Client,
        switch: Arc<LocalSwitch>,
        port_up: Option<PortUpWait>,
    ) -> Self {
        Agent {
            settings,
            pods,
            switch,
            port_up,
        }
    }

    /// The local switch.
    pub fn switch(&self) -> &LocalSwitch {
        &self.switch
    }

    /// Answers one request.
    pub async fn handle(&self, request: AgentRequest) -> AgentResponse {
        let outcome = match request.command {
            Command::Add => self.add(&request).await,
            Command::Del => self.del(&request).await,
            Command::Check => self.check(&request).await,
            Command::Status => self.status(),
            Command::Gc => self.gc(&request).await,
            Command::Version => Err(error(
                CniError::INVALID_ENVIRONMENT,
                "VERSION is answered by the plugin",
                "",
            )),
        };
        outcome.unwrap_or_else(AgentResponse::Error)
    }

    async fn add(&self, request: &AgentRequest) -> Result<AgentResponse, CniError> {
        let at = attachment(request)?;
        let netns = required(request.netns.as_deref(), "CNI_NETNS")?;
        let pod: &PodRef = required(request.pod.as_ref(), "K8S_POD_NAMESPACE/K8S_POD_NAME")?;
        let mut phases = AddPhases::start();
        let network = pod::wait_for_network(
            Api::<Pod>::namespaced(self.pods.clone(), &pod.namespace),
            &pod.namespace,
            &pod.name,
            pod.uid.as_deref(),
            self.settings.allocation_timeout,
        )
        .await
        .map_err(pod_error)?;
        phases.allocation = phases.lap();
        let host_if = host_if_name(at.container_id, at.ifname);
        let target = Target {
            pod,
            container_id: at.container_id,
            ifname: at.ifname,
            netns,
            host_if: &host_if,
        };
        let result = self.attach(&network, &target, &mut phases).await;
        if result.is_err() {
            // Leave nothing half-made behind (the runtime's DEL would do the same).
            let _ = self.detach(&host_if).await;
        } else {
            crate::ip_record::record_container_id(
                self.pods.clone(),
                &pod.namespace,
                &pod.name,
                at.container_id,
            );
            tracing::info!(
                target: ADD_TIMINGS_TARGET,
                port = %pod_network::port_name(&pod.namespace, &pod.name),
                allocation_us = phases.allocation.as_micros() as u64,
                veth_us = phases.veth.as_micros() as u64,
                plug_us = phases.plug.as_micros() as u64,
                port_up_us = phases.port_up.as_micros() as u64,
                total_us = phases.started.elapsed().as_micros() as u64,
                "ADD done"
            );
        }
        result.map(AgentResponse::Result)
    }

    async fn attach(
        &self,
        network: &PodNetwork,
        target: &Target<'_>,
        phases: &mut AddPhases,
    ) -> Result<CniResult, CniError> {
        let Target {
            pod,
            container_id,
            ifname,
            netns,
            host_if,
        } = *target;
        let spec = VethSpec {
            host_netns: self.settings.host_netns.clone(),
            host_if: host_if.to_owned(),
            pod_netns: PathBuf::from(netns),
            pod_if: ifname.to_owned(),
            mac: network.mac.0,
            mtu: self.settings.mtu,
            addresses: network.addresses.clone(),
        };
        let veth = link::run_on_own_thread("rovn-add", move || link::create(spec))
            .await
            .map_err(link_error)?;
        phases.veth = phases.lap();
        let port_name = pod_network::port_name(&pod.namespace, &pod.name);
        let ips: Vec<String> = network.ips().map(|ip| ip.to_string()).collect();
        self.switch
            .plug(&PodPort {
                host_if: host_if.to_owned(),
                iface_id: port_name.clone(),
                mac: network.mac.to_string(),
                pod_namespace: pod.namespace.clone(),
                pod_name: pod.name.clone(),
                container_id: container_id.to_owned(),
                ifname: ifname.to_owned(),
                netns: netns.to_owned(),
                ips: ips.join(","),
                logical_switch: network.logical_switch.clone(),
            })
            .await
            .map_err(|e| error(OVS_FAILURE, "plugging the pod's port into OVS failed", e))?;
        phases.plug = phases.lap();
        self.wait_port_up(&port_name, host_if).await?;
        phases.port_up = phases.lap();

        let mut result = CniResult {
            interfaces: vec![
                Interface {
                    name: host_if.to_owned(),
                    mac: Some(veth.host_mac),
                    ..Default::default()
                },
                Interface {
                    name: ifname.to_owned(),
                    mac: Some(network.mac.to_string()),
                    mtu: Some(self.settings.mtu),
                    sandbox: Some(netns.to_owned()),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        for address in &network.addresses {
            result.ips.push(IpConfig {
                address: address.address,
                gateway: address.gateway,
                interface: Some(1),
            });
            if let Some(gateway) = address.gateway {
                let dst = match gateway {
                    IpAddr::V4(_) => "0.0.0.0/0",
                    IpAddr::V6(_) => "::/0",
                };
                result.routes.push(Route {
                    dst: dst.parse().expect("a valid default prefix"),
                    gw: Some(gateway),
                    mtu: None,
                    advmss: None,
                    priority: None,
                    table: None,
                    scope: None,
                });
            }
        }
        Ok(result)
    }

    /// Waits until ovn-controller installed the port on this chassis and, with an NB
    /// monitor, until the Logical_Switch_Port is `up=true`.
    async fn wait_port_up(&self, port_name: &str, host_if: &str) -> Result<(), CniError> {
        let timeout = self.settings.port_up_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        if !self.switch.wait_installed(host_if, timeout).await {
            return Err(error(
                CniError::TRY_AGAIN_LATER,
                "the pod's port did not come up",
                format!(
                    "ovn-controller did not mark OVS interface {host_if} (iface-id {port_name}) \
                     ovn-installed within {timeout:?}: is logical switch port {port_name} in the \
                     Northbound database and ovn-controller running?"
                ),
            ));
        }
        if let Some(nb) = &self.port_up {
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            let up = nb.wait_up(port_name, remaining).await.map_err(|e| {
                error(
                    CniError::TRY_AGAIN_LATER,
                    "cannot learn whether the pod's port is up",
                    format!("Northbound database: {e}"),
                )
            })?;
            if !up {
                return Err(error(
                    CniError::TRY_AGAIN_LATER,
                    "the pod's port did not come up",
                    format!("logical switch port {port_name} was not up=true within {timeout:?}"),
                ));
            }
        }
        Ok(())
    }

    /// Removes the OVS port and the veth of `host_if`; nothing there is fine.
    async fn detach(&self, host_if: &str) -> Result<(), CniError> {
        self.switch
            .unplug(host_if)
            .await
            .map_err(|e| error(OVS_FAILURE, "removing the pod's OVS port failed", e))?;
        let host_netns = self.settings.host_netns.clone();
        let name = host_if.to_owned();
        link::run_on_own_thread("rovn-del", move || link::delete(host_netns, name))
            .await
            .map_err(link_error)?;
        Ok(())
    }

    async fn del(&self, request: &AgentRequest) -> Result<AgentResponse, CniError> {
        let at = attachment(request)?;
        self.detach(&host_if_name(at.container_id, at.ifname))
            .await?;
        Ok(AgentResponse::Done)
    }

    async fn check(&self, request: &AgentRequest) -> Result<AgentResponse, CniError> {
        let at = attachment(request)?;
        let netns = required(request.netns.as_deref(), "CNI_NETNS")?;
        let pod = required(request.pod.as_ref(), "K8S_POD_NAMESPACE/K8S_POD_NAME")?;
        let prev = required(request.prev_result.as_ref(), "prevResult")?;
        let host_if = host_if_name(at.container_id, at.ifname);
        let pod_index = prev
            .interfaces
            .iter()
            .position(|i| i.name == at.ifname && i.sandbox.is_some());
        let mac = pod_index.and_then(|i| prev.interfaces[i].mac.clone());
        let addresses: Vec<IpNet> = prev
            .ips
            .iter()
            .filter(|ip| ip.interface.is_none() || ip.interface.map(|i| i as usize) == pod_index)
            .map(|ip| ip.address)
            .collect();
        let gateways: Vec<IpAddr> = prev
            .routes
            .iter()
            .filter(|r| r.dst.prefix_len() == 0)
            .filter_map(|r| r.gw)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let expected = Expected {
            host_netns: self.settings.host_netns.clone(),
            host_if: host_if.clone(),
            pod_netns: PathBuf::from(netns),
            pod_if: at.ifname.to_owned(),
            mac,
            addresses,
            gateways,
        };
        link::run_on_own_thread("rovn-check", move || link::check(expected))
            .await
            .map_err(link_error)?;
        let port_name = pod_network::port_name(&pod.namespace, &pod.name);
        let iface = self
            .switch
            .interface(&host_if)
            .await
            .map_err(|e| error(OVS_FAILURE, "reading the pod's OVS port failed", e))?
            .ok_or_else(|| {
                error(
                    OVS_FAILURE,
                    "the pod's OVS port is missing",
                    format!("no OVS interface {host_if}"),
                )
            })?;
        if iface.external_ids.get(IFACE_ID) != Some(&port_name) {
            return Err(error(
                OVS_FAILURE,
                "the pod's OVS port is bound to another logical port",
                format!(
                    "interface {host_if} has iface-id {:?}, expected {port_name}",
                    iface.external_ids.get(IFACE_ID)
                ),
            ));
        }
        if let Some(problem) = iface.error.filter(|e| !e.is_empty()) {
            return Err(error(
                OVS_FAILURE,
                "the pod's OVS port has an error",
                problem,
            ));
        }
        if iface.ofport.is_none_or(|port| port <= 0) {
            return Err(error(
                OVS_FAILURE,
                "the pod's OVS port is not attached",
                format!("interface {host_if} has no OpenFlow port"),
            ));
        }
        Ok(AgentResponse::Done)
    }

    fn status(&self) -> Result<AgentResponse, CniError> {
        self.switch.ready().map_err(|reason| {
            error(
                CniError::PLUGIN_NOT_AVAILABLE,
                "rovn agent not ready",
                reason,
            )
        })?;
        if let Some(nb) = &self.port_up
            && !nb.connected()
        {
            return Err(error(
                CniError::PLUGIN_NOT_AVAILABLE,
                "rovn agent not ready",
                "not connected to the Northbound database",
            ));
        }
        Ok(AgentResponse::Done)
    }

    async fn gc(&self, request: &AgentRequest) -> Result<AgentResponse, CniError> {
        let valid: BTreeSet<(&str, &str)> = request
            .valid_attachments
            .iter()
            .map(|a| (a.container_id.as_str(), a.ifname.as_str()))
            .collect();
        for port in self.switch.owned_ports() {
            if !valid.contains(&(port.container_id.as_str(), port.ifname.as_str())) {
                self.detach(&port.host_if).await?;
            }
        }
        Ok(AgentResponse::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_if_names_are_short_stable_and_distinct() {
        let a = host_if_name("0123456789abcdef", "eth0");
        assert_eq!(a, host_if_name("0123456789abcdef", "eth0"));
        assert!(a.len() <= 15, "{a}");
        assert_ne!(a, host_if_name("0123456789abcdef", "eth1"));
        assert_ne!(a, host_if_name("0123456789abcdee", "eth0"));
    }
}
