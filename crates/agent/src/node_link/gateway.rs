//! One node-link gateway: the network namespace joining this node to one VPC.
//!
//! ```text
//!  node's namespace                gateway namespace rovn-gw-<h>          chassis (br-int)
//!  rg<h>n 169.254.x.1/30  <veth>  node 169.254.x.2/30 | eth0 100.64.0.N  <veth>  rg<h>o
//! ```
//!
//! `eth0` is bound to the node's port on the VPC's node-link switch; the VPC's router
//! reaches it, and through it the node's addresses (a route per node address). Inside,
//! nftables forwards only pod → node-address traffic and node → pod traffic started on the
//! node, and source-NATs both ways: pods see the node as its node-link address, the node
//! sees each VPC as the gateway's own link address, so VPCs with the same CIDRs stay apart
//! and nothing crosses from one VPC to another or to the node's other networks.
//!
//! The namespace is a bind mount under `/run/netns`, so it outlives agent restarts (the
//! agent checks and completes it; nothing is recreated that is in place).

use std::collections::BTreeMap;
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use futures::TryStreamExt;
use ipnet::{IpNet, Ipv4Net};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute};
use rtnetlink::{Handle, RouteMessageBuilder};

use crate::link::{self, LinkError, VethSpec};
use api::pod_network::PodAddress;

/// Where the gateways' namespaces are mounted (`ip netns` shows them).
pub const NETNS_DIR: &str = "/run/netns";
/// Name prefix of the gateways' namespaces.
pub const NETNS_PREFIX: &str = "rovn-gw-";
/// The gateway's interface on the node-link switch.
const JOIN_IF: &str = "eth0";
/// The gateway's interface towards the node.
const UPLINK_IF: &str = "node";
/// `statfs` magic of nsfs (a mounted namespace).
const NSFS_MAGIC: i64 = 0x6e73_6673;

/// Everything one gateway is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewaySpec {
    /// The namespace's name (`rovn-gw-<h>`).
    pub netns: String,
    /// The veth end plugged into br-int (`rg<h>o`).
    pub ovs_if: String,
    /// The veth end in the node's namespace (`rg<h>n`).
    pub node_if: String,
    /// Where br-int's ports live; `None`: the agent's namespace.
    pub chassis_netns: Option<PathBuf>,
    /// MAC of `eth0` (the logical port's).
    pub mac: [u8; 6],
    /// Address of `eth0` on the node-link network.
    pub address: Ipv4Net,
    /// The VPC router's address on that network.
    pub router: Ipv4Addr,
    /// The link between node and gateway: the node's end.
    pub uplink_node: Ipv4Addr,
    /// The link between node and gateway: the gateway's end.
    pub uplink_gateway: Ipv4Addr,
    /// Prefix length of the uplink.
    pub uplink_prefix: u8,
    /// The node's addresses the VPC reaches.
    pub node_ips: Vec<Ipv4Addr>,
    /// MTU of the veths.
    pub mtu: u32,
}

impl GatewaySpec {
    /// The namespace's path.
    pub fn netns_path(&self) -> PathBuf {
        Path::new(NETNS_DIR).join(&self.netns)
    }
}

fn err(action: impl Into<String>, reason: impl ToString) -> LinkError {
    LinkError::new(action, reason)
}

/// Whether `path` is a mounted network namespace.
fn is_mounted_netns(path: &Path) -> bool {
    nix::sys::statfs::statfs(path).is_ok_and(|s| s.filesystem_type().0 == NSFS_MAGIC)
}

/// Makes the namespace at `path` exist (a new one, bind-mounted there). Call it on a
/// thread of its own: the thread moves into the new namespace.
fn create_netns(path: &Path) -> Result<(), LinkError> {
    if is_mounted_netns(path) {
        return Ok(());
    }
    std::fs::create_dir_all(NETNS_DIR).map_err(|e| err(format!("creating {NETNS_DIR}"), e))?;
    // A file left by an interrupted attempt is reused.
    File::create(path).map_err(|e| err(format!("creating {}", path.display()), e))?;
    unshare(CloneFlags::CLONE_NEWNET).map_err(|e| err("unsharing a network namespace", e))?;
    mount(
        Some("/proc/thread-self/ns/net"),
        path,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| err(format!("mounting the namespace on {}", path.display()), e))
}

/// Removes the namespace mounted at `path` (its veths go with it).
pub fn remove_netns(path: &Path) -> Result<(), LinkError> {
    if is_mounted_netns(path) {
        umount2(path, MntFlags::MNT_DETACH)
            .map_err(|e| err(format!("unmounting {}", path.display()), e))?;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(err(format!("removing {}", path.display()), e))
        }
        _ => Ok(()),
    }
}

/// The gateways' namespaces present on the node.
pub fn present_netns() -> Vec<String> {
    std::fs::read_dir(NETNS_DIR)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with(NETNS_PREFIX))
        .collect()
}

/// Whether link `name` exists in the namespace `netns` (`None`: the calling thread's).
async fn has_link(netns: Option<&Path>, name: &str) -> Result<bool, LinkError> {
    if let Some(path) = netns {
        link::enter(&link::open_netns(path)?, path)?;
    }
    Ok(link::link_index(&link::connect()?, name).await?.is_some())
}

/// Adds `net` to link `index` (already there: fine).
async fn add_address(handle: &Handle, index: u32, net: Ipv4Net) -> Result<(), LinkError> {
    match handle
        .address()
        .add(index, IpAddr::V4(net.addr()), net.prefix_len())
        .execute()
        .await
    {
        Err(rtnetlink::Error::NetlinkError(m)) if -m.raw_code() == libc::EEXIST => Ok(()),
        other => other.map_err(|e| err(format!("adding {net}"), e)),
    }
}

/// Destinations of the /32 routes of the main table, by output link.
async fn host_routes(handle: &Handle) -> Result<BTreeMap<u32, Vec<Ipv4Addr>>, LinkError> {
    let routes: Vec<_> = handle
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute()
        .try_collect()
        .await
        .map_err(|e| err("listing routes", e))?;
    let mut by_link: BTreeMap<u32, Vec<Ipv4Addr>> = BTreeMap::new();
    for route in routes
        .iter()
        .filter(|r| r.header.destination_prefix_length == 32)
    {
        let (mut oif, mut dst) = (None, None);
        for attribute in &route.attributes {
            match attribute {
                RouteAttribute::Oif(index) => oif = Some(*index),
                RouteAttribute::Destination(RouteAddress::Inet(ip)) => dst = Some(*ip),
                _ => {}
            }
        }
        if let (Some(oif), Some(dst)) = (oif, dst) {
            by_link.entry(oif).or_default().push(dst);
        }
    }
    Ok(by_link)
}

/// Makes the /32 routes through link `index` exactly `wanted` (destination, gateway):
/// added or replaced, and those of `present` not wanted removed.
async fn set_host_routes(
    handle: &Handle,
    index: u32,
    wanted: &[(Ipv4Addr, Ipv4Addr)],
    present: &[Ipv4Addr],
) -> Result<(), LinkError> {
    for &(dst, via) in wanted {
        handle
            .route()
            .add(host_route(dst, via, index))
            .replace()
            .execute()
            .await
            .map_err(|e| err(format!("routing {dst} via {via}"), e))?;
    }
    for &stale in present
        .iter()
        .filter(|ip| !wanted.iter().any(|(dst, _)| dst == *ip))
    {
        let route = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(stale, 32)
            .output_interface(index)
            .build();
        let _ = handle.route().del(route).execute().await;
    }
    Ok(())
}

fn host_route(
    dst: Ipv4Addr,
    via: Ipv4Addr,
    index: u32,
) -> rtnetlink::packet_route::route::RouteMessage {
    RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(dst, 32)
        .gateway(via)
        .output_interface(index)
        .build()
}

/// The nftables ruleset of a gateway (replaces the previous one atomically).
fn ruleset(spec: &GatewaySpec) -> String {
    let node_ips = if spec.node_ips.is_empty() {
        // Matches nothing: an empty anonymous set is not allowed.
        "0.0.0.0/32".to_string()
    } else {
        spec.node_ips
            .iter()
            .map(Ipv4Addr::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "table ip rovn\n\
         delete table ip rovn\n\
         table ip rovn {{\n\
         \tchain forward {{\n\
         \t\ttype filter hook forward priority filter; policy drop;\n\
         \t\tct state established,related accept\n\
         \t\tct state invalid drop\n\
         \t\tiifname \"{JOIN_IF}\" oifname \"{UPLINK_IF}\" ip daddr {{ {node_ips} }} accept\n\
         \t\tiifname \"{UPLINK_IF}\" oifname \"{JOIN_IF}\" ip saddr {node_end} accept\n\
         \t}}\n\
         \tchain input {{\n\
         \t\ttype filter hook input priority filter; policy drop;\n\
         \t\tct state established,related accept\n\
         \t\tiifname \"lo\" accept\n\
         \t\ticmp type echo-request accept\n\
         \t}}\n\
         \tchain postrouting {{\n\
         \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         \t\toifname \"{UPLINK_IF}\" masquerade\n\
         \t\toifname \"{JOIN_IF}\" masquerade\n\
         \t}}\n\
         }}\n\
         table ip6 rovn\n\
         delete table ip6 rovn\n\
         table ip6 rovn {{\n\
         \tchain forward {{\n\
         \t\ttype filter hook forward priority filter; policy drop;\n\
         \t}}\n\
         }}\n",
        node_end = spec.uplink_node,
    )
}

/// Loads `rules` with `nft -f -` inside the namespace at `path`.
fn load_rules(path: &Path, rules: &str) -> Result<(), LinkError> {
    use std::io::Write;
    use std::os::unix::process::CommandExt;
    let netns = link::open_netns(path)?;
    let fd = netns.as_raw_fd();
    let mut command = std::process::Command::new("nft");
    command
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    // SAFETY: setns(2) is async-signal-safe and touches nothing of the parent.
    unsafe {
        command.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let mut child = command
        .spawn()
        .map_err(|e| err("running nft (Debian: nftables)", e))?;
    child
        .stdin
        .take()
        .ok_or_else(|| err("running nft", "no stdin"))?
        .write_all(rules.as_bytes())
        .map_err(|e| err("writing to nft", e))?;
    let out = child
        .wait_with_output()
        .map_err(|e| err("running nft", e))?;
    if !out.status.success() {
        return Err(err(
            format!("loading the rules of {}", path.display()),
            String::from_utf8_lossy(&out.stderr).trim(),
        ));
    }
    Ok(())
}

/// Inside the gateway: forwarding on, routes to the node's addresses through the uplink
/// (others removed), the rules. Call it on a thread of its own.
async fn configure_inside(spec: GatewaySpec) -> Result<(), LinkError> {
    let path = spec.netns_path();
    link::enter(&link::open_netns(&path)?, &path)?;
    std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
        .map_err(|e| err("turning IPv4 forwarding on in the gateway", e))?;
    let handle = link::connect()?;
    let uplink = link::link_index(&handle, UPLINK_IF)
        .await?
        .ok_or_else(|| err(format!("finding {UPLINK_IF} in {}", spec.netns), "gone"))?;
    let present = host_routes(&handle)
        .await?
        .remove(&uplink)
        .unwrap_or_default();
    let wanted: Vec<(Ipv4Addr, Ipv4Addr)> = spec
        .node_ips
        .iter()
        .map(|ip| (*ip, spec.uplink_node))
        .collect();
    set_host_routes(&handle, uplink, &wanted, &present).await?;
    load_rules(&path, &ruleset(&spec))
}

/// Makes the gateway of `spec` complete: namespace, both veths (made only when missing),
/// the node end's address, the routes and rules inside. The OVS port is the caller's.
pub async fn ensure(spec: &GatewaySpec) -> Result<(), LinkError> {
    let path = spec.netns_path();
    let p = path.clone();
    link::run_on_own_thread("rovn-gw-netns", move || async move { create_netns(&p) }).await?;

    let (chassis, ovs_if, p) = (
        spec.chassis_netns.clone(),
        spec.ovs_if.clone(),
        path.clone(),
    );
    let join_present = link::run_on_own_thread("rovn-gw-check", move || async move {
        Ok(has_link(chassis.as_deref(), &ovs_if).await? && has_link(Some(&p), JOIN_IF).await?)
    })
    .await?;
    if !join_present {
        let veth = VethSpec {
            host_netns: spec.chassis_netns.clone(),
            host_if: spec.ovs_if.clone(),
            pod_netns: path.clone(),
            pod_if: JOIN_IF.to_owned(),
            mac: spec.mac,
            mtu: spec.mtu,
            addresses: vec![PodAddress {
                address: IpNet::V4(spec.address),
                gateway: Some(IpAddr::V4(spec.router)),
            }],
        };
        link::run_on_own_thread("rovn-gw-join", move || link::create(veth)).await?;
    }

    let (node_if, p) = (spec.node_if.clone(), path.clone());
    let uplink_present = link::run_on_own_thread("rovn-gw-check", move || async move {
        Ok(has_link(None, &node_if).await? && has_link(Some(&p), UPLINK_IF).await?)
    })
    .await?;
    if !uplink_present {
        let mut mac = spec.mac;
        mac[1] = 0x53;
        let veth = VethSpec {
            host_netns: None,
            host_if: spec.node_if.clone(),
            pod_netns: path.clone(),
            pod_if: UPLINK_IF.to_owned(),
            mac,
            mtu: spec.mtu,
            addresses: vec![PodAddress {
                address: IpNet::V4(
                    Ipv4Net::new(spec.uplink_gateway, spec.uplink_prefix)
                        .map_err(|e| err("the uplink's prefix", e))?,
                ),
                gateway: None,
            }],
        };
        link::run_on_own_thread("rovn-gw-uplink", move || link::create(veth)).await?;
    }
    let node_end = Ipv4Net::new(spec.uplink_node, spec.uplink_prefix)
        .map_err(|e| err("the uplink's prefix", e))?;
    let node_if = spec.node_if.clone();
    link::run_on_own_thread("rovn-gw-node", move || async move {
        let handle = link::connect()?;
        let index = link::link_index(&handle, &node_if)
            .await?
            .ok_or_else(|| err(format!("finding {node_if}"), "gone"))?;
        add_address(&handle, index, node_end).await
    })
    .await?;
    let spec = spec.clone();
    link::run_on_own_thread("rovn-gw-inside", move || configure_inside(spec)).await
}

/// A route in the node's namespace: pod address `pod` through the gateway whose node end is
/// link `node_if` and whose uplink address is `via`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PodRoute {
    /// The pod's address.
    pub pod: Ipv4Addr,
    /// The node's end of the gateway's uplink.
    pub node_if: String,
    /// The gateway's end of the uplink.
    pub via: Ipv4Addr,
}

/// Makes the routes of the node's namespace through the gateways' uplinks (links named
/// `rg*n`) exactly `routes`. Call it on a thread of its own.
pub async fn set_pod_routes(routes: Vec<PodRoute>) -> Result<(), LinkError> {
    let handle = link::connect()?;
    let present = host_routes(&handle).await?;
    for (index, name) in uplink_indexes(&handle).await? {
        let wanted: Vec<(Ipv4Addr, Ipv4Addr)> = routes
            .iter()
            .filter(|r| r.node_if == name)
            .map(|r| (r.pod, r.via))
            .collect();
        let present = present.get(&index).map(Vec::as_slice).unwrap_or_default();
        set_host_routes(&handle, index, &wanted, present).await?;
    }
    Ok(())
}

/// The gateways' uplinks in the calling thread's namespace: index and name.
async fn uplink_indexes(handle: &Handle) -> Result<Vec<(u32, String)>, LinkError> {
    use rtnetlink::packet_route::link::LinkAttribute;
    let links: Vec<_> = handle
        .link()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(|e| err("listing links", e))?;
    Ok(links
        .into_iter()
        .filter_map(|l| {
            let name = l.attributes.iter().find_map(|a| match a {
                LinkAttribute::IfName(n) => Some(n.clone()),
                _ => None,
            })?;
            is_uplink_name(&name).then_some((l.header.index, name))
        })
        .collect())
}

/// The IPv4 address of every gateway uplink's node end in the calling thread's namespace,
/// by link name.
pub async fn uplink_addresses() -> Result<BTreeMap<String, Ipv4Addr>, LinkError> {
    use rtnetlink::packet_route::address::AddressAttribute;
    let handle = link::connect()?;
    let uplinks = uplink_indexes(&handle).await?;
    let addresses: Vec<_> = handle
        .address()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(|e| err("listing addresses", e))?;
    let mut found = BTreeMap::new();
    for (index, name) in uplinks {
        let ip = addresses
            .iter()
            .filter(|a| a.header.index == index)
            .find_map(|a| {
                a.attributes.iter().find_map(|attr| match attr {
                    AddressAttribute::Address(IpAddr::V4(ip)) => Some(*ip),
                    _ => None,
                })
            });
        if let Some(ip) = ip {
            found.insert(name, ip);
        }
    }
    Ok(found)
}

/// Whether `name` is a gateway's node end (`rg<8 hex>n`).
pub fn is_uplink_name(name: &str) -> bool {
    name.len() == 11
        && name.starts_with("rg")
        && name.ends_with('n')
        && name[2..10].bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rules_forward_only_to_the_node_and_from_it() {
        let spec = GatewaySpec {
            netns: "rovn-gw-0a0b0c0d".into(),
            ovs_if: "rg0a0b0c0do".into(),
            node_if: "rg0a0b0c0dn".into(),
            chassis_netns: None,
            mac: [0x0a, 0x52, 100, 64, 0, 2],
            address: "100.64.0.2/16".parse().unwrap(),
            router: "100.64.0.1".parse().unwrap(),
            uplink_node: "169.254.64.1".parse().unwrap(),
            uplink_gateway: "169.254.64.2".parse().unwrap(),
            uplink_prefix: 30,
            node_ips: vec!["192.168.1.5".parse().unwrap()],
            mtu: 1400,
        };
        let rules = ruleset(&spec);
        assert!(rules.contains("ip daddr { 192.168.1.5 } accept"), "{rules}");
        assert!(rules.contains("ip saddr 169.254.64.1 accept"), "{rules}");
        assert!(rules.contains("policy drop"));
        assert!(is_uplink_name(&spec.node_if));
        assert!(!is_uplink_name(&spec.ovs_if));
    }
}
