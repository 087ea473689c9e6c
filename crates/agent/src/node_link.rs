//! The node's side of the node links ([`api::node_link`]): for every node-link port the
//! controller made for this node, a gateway namespace bound to it ([`gateway`]); and, in
//! the node's namespace, a route to every local pod through the gateway of its VPC, so
//! that kubelet's probes (and any connection the node starts) reach the pod whatever its
//! VPC, even when several VPCs use the same CIDR.
//!
//! The agent replicates only its own node's ports (a conditional monitor on
//! `external_ids:rovn:node`) and works level-triggered: every change of those ports or of
//! the local pod ports, and a periodic pass, compare what should be with what is. Gateways
//! survive agent restarts and are completed, not rebuilt.
//!
//! Two local pods with the same address in different VPCs cannot both be routed from the
//! node (kubelet probes by address alone): the one whose port sorts first keeps the route,
//! and the other is logged.

pub mod gateway;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use api::node_link::{self, NodeLink};
use ipnet::Ipv4Net;
use ovn::Table;
use ovn::nb::{self, LogicalSwitchPort};
use ovsdb::{Client, Condition, MonitorSpec, Replica, Value};
use tracing::{info, warn};

use crate::ovs::LocalSwitch;
use gateway::{GatewaySpec, PodRoute};

/// How often everything is checked even without a change.
const RESYNC: Duration = Duration::from_secs(30);

/// What the node links of this node need to know.
#[derive(Debug, Clone)]
pub struct NodeLinkSettings {
    /// This node's name.
    pub node: String,
    /// Where br-int's ports live; `None`: the agent's namespace.
    pub chassis_netns: Option<PathBuf>,
    /// MTU of the gateways' veths.
    pub mtu: u32,
    /// The link-local network the gateways' uplinks are cut from (a /30 each).
    pub uplinks: Ipv4Net,
}

/// A stable 8-hex-digit hash of a port name (32-bit FNV-1a) naming its gateway's parts.
fn short_hash(text: &str) -> u32 {
    text.bytes().fold(0x811c_9dc5_u32, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    })
}

fn names(port: &str) -> (String, String, String) {
    let h = short_hash(port);
    (
        format!("{}{h:08x}", gateway::NETNS_PREFIX),
        format!("rg{h:08x}o"),
        format!("rg{h:08x}n"),
    )
}

fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let bytes: Vec<u8> = text
        .split(':')
        .map(|b| u8::from_str_radix(b, 16))
        .collect::<Result<_, _>>()
        .ok()?;
    bytes.try_into().ok()
}

/// The uplink /30 number `slot` of `uplinks`: the node's end and the gateway's.
fn uplink_ends(uplinks: Ipv4Net, slot: u32) -> (Ipv4Addr, Ipv4Addr) {
    let base = u32::from(uplinks.network()) + slot * 4;
    (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2))
}

/// Which /30 of `uplinks` holds `ip`.
fn slot_of(uplinks: Ipv4Net, ip: Ipv4Addr) -> Option<u32> {
    uplinks
        .contains(&ip)
        .then(|| (u32::from(ip) - u32::from(uplinks.network())) / 4)
}

/// What this node should have: its links, sorted by port name.
fn desired_links(replica: &Replica, node: &str) -> Vec<NodeLink> {
    let mut links: Vec<NodeLink> = replica
        .table(LogicalSwitchPort::NAME)
        .iter()
        .filter_map(|row| {
            let name = row.get_str("name")?;
            let ids = row.get_str_map("external_ids");
            match NodeLink::from_port(name, &ids) {
                Ok(link) => Some(link),
                Err(error) => {
                    if ids.contains_key(node_link::NODE_KEY) {
                        warn!(%error, "node-link port skipped");
                    }
                    None
                }
            }
        })
        .filter(|link| link.node == node)
        .collect();
    links.sort_by_key(NodeLink::port_name);
    links
}

/// The pod routes of the node: each local pod address through the gateway of its Subnet's
/// VPC; a second pod with the same address is left out and logged.
fn pod_routes(
    switch: &LocalSwitch,
    gateways: &BTreeMap<String, (NodeLink, GatewaySpec)>,
) -> Vec<PodRoute> {
    let mut ports = switch.owned_ports();
    ports.sort_by(|a, b| a.host_if.cmp(&b.host_if));
    let mut routes: BTreeMap<Ipv4Addr, PodRoute> = BTreeMap::new();
    for port in ports {
        let Some(subnet) = &port.logical_switch else {
            continue;
        };
        let Some((link, spec)) = gateways
            .values()
            .find(|(link, _)| link.subnets.contains(subnet))
        else {
            continue;
        };
        for ip in &port.ips {
            let IpAddr::V4(ip) = *ip else { continue };
            let route = PodRoute {
                pod: ip,
                node_if: spec.node_if.clone(),
                via: spec.uplink_gateway,
            };
            match routes.get(&ip) {
                Some(taken) if taken.node_if != route.node_if => warn!(
                    pod_ip = %ip,
                    port = %port.host_if,
                    vpc = %link.vpc,
                    "another local pod has this address in another VPC: the node reaches only that one (kubelet probes by address)"
                ),
                Some(_) => {}
                None => {
                    routes.insert(ip, route);
                }
            }
        }
    }
    routes.into_values().collect()
}

/// Follows this node's node-link ports and keeps the gateways and pod routes in line.
pub struct NodeLinks {
    settings: NodeLinkSettings,
    ports: Replica,
    switch: Arc<LocalSwitch>,
    /// The gateway applied per port.
    applied: BTreeMap<String, GatewaySpec>,
    /// The pod routes last set.
    routes: Vec<PodRoute>,
}

impl NodeLinks {
    /// Starts replicating this node's node-link ports from `nb` (a Northbound client);
    /// `switch` is the local switch the CNI operations use too (ports plugged and pods found
    /// there).
    pub async fn start(
        settings: NodeLinkSettings,
        nb: &Client,
        switch: Arc<LocalSwitch>,
    ) -> ovsdb::Result<Self> {
        let spec = MonitorSpec::new()
            .table_columns(
                LogicalSwitchPort::NAME,
                &["name", "addresses", "external_ids"],
            )
            .only_where(
                LogicalSwitchPort::NAME,
                vec![Condition::includes(
                    "external_ids",
                    Value::map([(node_link::NODE_KEY, settings.node.as_str())]),
                )],
            );
        let ports = nb.monitor(nb::DATABASE, spec).await?;
        Ok(NodeLinks {
            settings,
            ports,
            switch,
            applied: BTreeMap::new(),
            routes: Vec::new(),
        })
    }

    /// Runs until the replicas stop: a pass after every change and every [`RESYNC`].
    pub async fn run(mut self) -> anyhow::Result<()> {
        let mut nb_events = self.ports.subscribe();
        let mut ovs_events = self.switch.replica().subscribe();
        self.ports.wait_synced().await?;
        let mut full = true;
        loop {
            self.pass(full).await;
            let mut tick = Box::pin(tokio::time::sleep(RESYNC));
            tokio::select! {
                event = nb_events.recv() => {
                    if event.is_none() { anyhow::bail!("the Northbound replica stopped"); }
                    full = false;
                }
                event = ovs_events.recv() => {
                    if event.is_none() { anyhow::bail!("the Open_vSwitch replica stopped"); }
                    full = false;
                }
                () = &mut tick => full = true,
            }
            // Coalesce a burst.
            tokio::time::sleep(Duration::from_millis(20)).await;
            while nb_events.try_recv().is_ok() || ovs_events.try_recv().is_ok() {}
        }
    }

    /// One pass; `full` re-applies gateways that look unchanged too.
    async fn pass(&mut self, full: bool) {
        let links = desired_links(&self.ports, &self.settings.node);
        let existing = match link_uplink_addresses().await {
            Ok(found) => found,
            Err(error) => {
                warn!(%error, "reading the gateways' uplinks failed, will retry");
                return;
            }
        };
        let mut used: BTreeSet<u32> = BTreeSet::new();
        let mut gateways: BTreeMap<String, (NodeLink, GatewaySpec)> = BTreeMap::new();
        let slots = 1u32 << (32 - u32::from(self.settings.uplinks.prefix_len())).min(31) >> 2;
        // Slots in use keep their place; new gateways take the first free one from their hash.
        let mut wanting = Vec::new();
        for link in links {
            let port = link.port_name();
            let (netns, ovs_if, node_if) = names(&port);
            // A gateway in place keeps its uplink (read back from its node end).
            let Some(slot) = existing
                .get(&node_if)
                .and_then(|ip| slot_of(self.settings.uplinks, *ip))
                .filter(|slot| used.insert(*slot))
            else {
                wanting.push((link, netns, ovs_if, node_if));
                continue;
            };
            let spec = self.spec(&link, netns, ovs_if, node_if, slot);
            gateways.insert(port, (link, spec));
        }
        for (link, netns, ovs_if, node_if) in wanting {
            let start = short_hash(&link.port_name()) % slots.max(1);
            let Some(slot) = (0..slots)
                .map(|i| (start + i) % slots)
                .find(|s| !used.contains(s))
            else {
                warn!(port = %link.port_name(), uplinks = %self.settings.uplinks, "no free uplink left");
                continue;
            };
            used.insert(slot);
            let spec = self.spec(&link, netns, ovs_if, node_if, slot);
            gateways.insert(link.port_name(), (link, spec));
        }

        for (port, (link, spec)) in &gateways {
            if !full && self.applied.get(port) == Some(spec) {
                continue;
            }
            match self.ensure(port, link, spec).await {
                Ok(()) => {
                    if self.applied.insert(port.clone(), spec.clone()).as_ref() != Some(spec) {
                        info!(%port, vpc = %link.vpc, netns = %spec.netns, address = %spec.address, "node-link gateway ready");
                    }
                }
                Err(error) => {
                    self.applied.remove(port);
                    warn!(%port, %error, "node-link gateway failed, will retry");
                }
            }
        }
        self.remove_others(&gateways).await;

        let routes = pod_routes(&self.switch, &gateways);
        if full || routes != self.routes {
            let wanted = routes.clone();
            match crate::link::run_on_own_thread("rovn-pod-routes", move || {
                gateway::set_pod_routes(wanted)
            })
            .await
            {
                Ok(()) => self.routes = routes,
                Err(error) => warn!(%error, "pod routes failed, will retry"),
            }
        }
    }

    fn spec(
        &self,
        link: &NodeLink,
        netns: String,
        ovs_if: String,
        node_if: String,
        slot: u32,
    ) -> GatewaySpec {
        let (uplink_node, uplink_gateway) = uplink_ends(self.settings.uplinks, slot);
        GatewaySpec {
            netns,
            ovs_if,
            node_if,
            chassis_netns: self.settings.chassis_netns.clone(),
            mac: parse_mac(&link.mac()).unwrap_or_default(),
            address: link.address,
            router: link.gateway,
            uplink_node,
            uplink_gateway,
            uplink_prefix: 30,
            node_ips: link
                .node_ips
                .iter()
                .filter_map(|ip| match ip {
                    IpAddr::V4(ip) => Some(*ip),
                    IpAddr::V6(_) => None,
                })
                .collect(),
            mtu: self.settings.mtu,
        }
    }

    async fn ensure(&self, port: &str, link: &NodeLink, spec: &GatewaySpec) -> anyhow::Result<()> {
        gateway::ensure(spec).await?;
        let plugged = self
            .switch
            .node_link_ports()
            .iter()
            .any(|(name, iface)| name == &spec.ovs_if && iface == port);
        if !plugged {
            self.switch
                .plug_node_link(&spec.ovs_if, port, &link.mac())
                .await?;
        }
        Ok(())
    }

    /// Removes the gateways and OVS ports of links that are gone.
    async fn remove_others(&mut self, gateways: &BTreeMap<String, (NodeLink, GatewaySpec)>) {
        let netns: BTreeSet<&str> = gateways.values().map(|(_, s)| s.netns.as_str()).collect();
        for name in gateway::present_netns() {
            if netns.contains(name.as_str()) {
                continue;
            }
            let path = PathBuf::from(gateway::NETNS_DIR).join(&name);
            match gateway::remove_netns(&path) {
                Ok(()) => info!(netns = %name, "node-link gateway removed"),
                Err(error) => warn!(netns = %name, %error, "removing a node-link gateway failed"),
            }
        }
        for (ovs_if, port) in self.switch.node_link_ports() {
            if !gateways.contains_key(&port)
                && let Err(error) = self.switch.unplug(&ovs_if).await
            {
                warn!(%ovs_if, %error, "unplugging a node-link port failed");
            }
        }
        self.applied.retain(|port, _| gateways.contains_key(port));
    }
}

/// The IPv4 address of every gateway uplink's node end, by link name.
async fn link_uplink_addresses() -> Result<BTreeMap<String, Ipv4Addr>, crate::link::LinkError> {
    crate::link::run_on_own_thread("rovn-uplinks", gateway::uplink_addresses).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uplinks_are_cut_in_slots_and_found_back() {
        let uplinks: Ipv4Net = "169.254.64.0/18".parse().unwrap();
        let (node, gw) = uplink_ends(uplinks, 3);
        assert_eq!(
            (node, gw),
            (
                "169.254.64.13".parse().unwrap(),
                "169.254.64.14".parse().unwrap()
            )
        );
        assert_eq!(slot_of(uplinks, node), Some(3));
        assert_eq!(slot_of(uplinks, "10.0.0.1".parse().unwrap()), None);
        let (netns, ovs_if, node_if) = names("rovn-node/neutron-r1/node-1");
        assert!(netns.starts_with("rovn-gw-") && netns.len() == 16);
        assert!(ovs_if.len() <= 15 && gateway::is_uplink_name(&node_if));
        assert_eq!(
            parse_mac("0a:52:64:40:00:02"),
            Some([10, 82, 100, 64, 0, 2])
        );
    }
}
