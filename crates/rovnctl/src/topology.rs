//! `rovnctl topology`: one picture of the Northbound database Neutron and rovn
//! share — every router (Neutron's with its display name, ours), the networks
//! on it (Neutron networks, our Subnets, our node links) with their CIDRs, and
//! on each network its VMs (Neutron ports), pods and nodes, with the chassis
//! each port is bound on when the Southbound database is read.
//!
//! [`build`] makes the model ([`Topology`]) from the rows: the Northbound
//! snapshot, the port bindings ([`read_bindings`]) and the Subnets of the API
//! (names → CIDRs and namespaces; without them the CIDRs come from the router
//! ports). [`Topology::narrow`] keeps one router. [`render_tree`], JSON (serde)
//! and [`render_dot`] draw it; [`read`] and [`render_svg`] are the I/O around
//! them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use api::node_link::NODE_KEY;
use ipnet::IpNet;
use ovn::nb::{LogicalRouter, LogicalRouterPort, LogicalSwitch, LogicalSwitchPort};
use ovn::owned::owner::{self, Kind, NEUTRON_NETWORK_NAME, NEUTRON_ROUTER_NAME, Owner};
use ovsdb::{Client, Uuid};
use serde::{Deserialize, Serialize};

use crate::flow::NEUTRON_PORT_NAME;
use crate::snapshot::{ChassisName, NbSnapshot, read_bindings};

/// Who owns a router.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RouterOwner {
    /// Neutron (`neutron:router_name`): imported as a Vpc.
    Neutron,
    /// rovn: the router of one of our own Vpcs.
    Rovn,
    /// Neither.
    Other,
}

/// What a network (a Logical_Switch) is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NetworkKind {
    /// A Neutron network.
    NeutronNetwork,
    /// One of our Subnets.
    Subnet,
    /// Our node link of a VPC (its nodes' gateways).
    NodeLink,
    /// Anything else.
    Other,
}

/// What a port is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PortKind {
    /// A Neutron port of a workload (type `""`): a VM.
    Vm,
    /// A pod's port.
    Pod,
    /// A node's port on a node link.
    Node,
}

/// A port of a network: a VM, a pod or a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Port {
    /// What it is.
    pub kind: PortKind,
    /// The Logical_Switch_Port (a Neutron port's UUID, `<pod>.<namespace>`...).
    pub name: String,
    /// Neutron's `neutron:port_name`, the pod's `namespace/name`, the node's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Its addresses (`MAC IP...` entries).
    pub addresses: Vec<String>,
    /// The chassis it is bound on (read from the Southbound database).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chassis: Option<ChassisName>,
}

/// A network: a Logical_Switch and its VMs, pods and nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Network {
    /// What it is.
    pub kind: NetworkKind,
    /// The Logical_Switch.
    pub switch: String,
    /// Neutron's `neutron:network_name`, or the Subnet's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Its CIDRs: the Subnet's `cidrBlock` from the API, else the router port's networks.
    pub cidrs: Vec<String>,
    /// The router's addresses on it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<String>,
    /// A Subnet's namespaces (from the API).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Its VMs, pods and nodes.
    pub ports: Vec<Port>,
}

/// A router and the networks joined to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Router {
    /// The Logical_Router (`neutron-<uuid>`, or our Vpc's name).
    pub name: String,
    /// Who owns it.
    pub owner: RouterOwner,
    /// Neutron's display name (`neutron:router_name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Its networks.
    pub networks: Vec<Network>,
}

/// Routers, their networks and what is on them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Topology {
    /// Every router.
    pub routers: Vec<Router>,
    /// Networks joined to no router.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unrouted: Vec<Network>,
    /// Whether the chassis of the ports were read (ports without one are unbound).
    pub chassis_read: bool,
}

/// What the API says about a Subnet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiSubnet {
    /// Its name (our switch's name and owner object).
    pub name: String,
    /// Its `cidrBlock`, split.
    pub cidrs: Vec<String>,
    /// Its namespaces.
    pub namespaces: Vec<String>,
}

impl From<&api::Subnet> for ApiSubnet {
    fn from(subnet: &api::Subnet) -> Self {
        Self {
            name: subnet.metadata.name.clone().unwrap_or_default(),
            cidrs: subnet
                .spec
                .cidr_block
                .split(',')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .collect(),
            namespaces: subnet.spec.namespaces.clone(),
        }
    }
}

/// Reads what the topology is made of: the Northbound rows, the bindings
/// from `sb` and the Subnets from `kube` when given. A failed read of the
/// Subnets is a warning (returned) and the CIDRs come from the router ports.
pub async fn read(
    nb: &Client,
    sb: Option<&Client>,
    kube: Option<&kube::Client>,
) -> Result<(Topology, Vec<String>)> {
    let snapshot = NbSnapshot::read(nb).await?;
    let bindings = match sb {
        Some(sb) => Some(read_bindings(sb).await?),
        None => None,
    };
    let mut warnings = Vec::new();
    let mut subnets = Vec::new();
    if let Some(kube) = kube {
        match kube::Api::<api::Subnet>::all(kube.clone())
            .list(&Default::default())
            .await
        {
            Ok(list) => subnets = list.items.iter().map(ApiSubnet::from).collect(),
            Err(error) => warnings.push(format!(
                "Subnets not read from the API ({error}): their CIDRs are the router ports'"
            )),
        }
    }
    Ok((build(&snapshot, bindings.as_ref(), &subnets), warnings))
}

/// The topology of `nb`, with the ports' chassis from `bindings` (when the
/// Southbound database was read) and our Subnets' CIDRs and namespaces from
/// `subnets`.
pub fn build(
    nb: &NbSnapshot,
    bindings: Option<&BTreeMap<String, ChassisName>>,
    subnets: &[ApiSubnet],
) -> Topology {
    let router_of_port: BTreeMap<&str, (&LogicalRouter, &LogicalRouterPort)> = nb
        .routers
        .iter()
        .flat_map(|router| {
            router
                .ports
                .iter()
                .filter_map(|uuid| nb.router_ports.get(uuid))
                .map(move |lrp| (lrp.name.as_str(), (router, lrp)))
        })
        .collect();
    // Router name -> its switches (by uuid) -> the router ports joining them.
    let mut joined: BTreeMap<&str, BTreeMap<Uuid, Vec<&LogicalRouterPort>>> = BTreeMap::new();
    let mut routed: BTreeSet<Uuid> = BTreeSet::new();
    for switch in &nb.switches {
        for port in nb.ports_of(switch).filter(|p| p.type_ == "router") {
            let Some(lrp) = port.options.get("router-port") else {
                continue;
            };
            if let Some(&(router, lrp)) = router_of_port.get(lrp.as_str()) {
                joined
                    .entry(router.name.as_str())
                    .or_default()
                    .entry(switch.uuid)
                    .or_default()
                    .push(lrp);
                routed.insert(switch.uuid);
            }
        }
    }
    let switches: BTreeMap<Uuid, &LogicalSwitch> =
        nb.switches.iter().map(|s| (s.uuid, s)).collect();
    let subnets: BTreeMap<&str, &ApiSubnet> =
        subnets.iter().map(|s| (s.name.as_str(), s)).collect();
    let network = |switch: &LogicalSwitch, lrps: &[&LogicalRouterPort]| {
        network_of(nb, switch, lrps, bindings, &subnets)
    };
    let mut routers: Vec<Router> = nb
        .routers
        .iter()
        .map(|router| {
            let mut networks: Vec<Network> = joined
                .get(router.name.as_str())
                .into_iter()
                .flatten()
                .filter_map(|(uuid, lrps)| Some(network(switches.get(uuid)?, lrps)))
                .collect();
            networks.sort_by(|a, b| network_order(a).cmp(&network_order(b)));
            Router {
                name: router.name.clone(),
                owner: router_owner(router),
                display_name: router.external_ids.get(NEUTRON_ROUTER_NAME).cloned(),
                networks,
            }
        })
        .collect();
    routers.sort_by(|a, b| {
        (a.display_name.as_ref().unwrap_or(&a.name), &a.name)
            .cmp(&(b.display_name.as_ref().unwrap_or(&b.name), &b.name))
    });
    let mut unrouted: Vec<Network> = nb
        .switches
        .iter()
        .filter(|s| !routed.contains(&s.uuid))
        .map(|s| network(s, &[]))
        .collect();
    unrouted.sort_by(|a, b| network_order(a).cmp(&network_order(b)));
    Topology {
        routers,
        unrouted,
        chassis_read: bindings.is_some(),
    }
}

fn router_owner(router: &LogicalRouter) -> RouterOwner {
    if owner::is_neutron_router(&router.external_ids) {
        RouterOwner::Neutron
    } else if owner::is_ours(&router.external_ids) {
        RouterOwner::Rovn
    } else {
        RouterOwner::Other
    }
}

/// Networks in the order they are shown: Neutron's, Subnets, node links, others;
/// by name within each.
fn network_order(network: &Network) -> (NetworkKind, &str, &str) {
    (
        network.kind,
        network.display_name.as_deref().unwrap_or(&network.switch),
        &network.switch,
    )
}

fn network_of(
    nb: &NbSnapshot,
    switch: &LogicalSwitch,
    lrps: &[&LogicalRouterPort],
    bindings: Option<&BTreeMap<String, ChassisName>>,
    subnets: &BTreeMap<&str, &ApiSubnet>,
) -> Network {
    let owner = Owner::of(&switch.external_ids);
    let kind = match owner.as_ref().map(Owner::kind) {
        Some(Kind::Subnet) => NetworkKind::Subnet,
        Some(Kind::NodeLink) => NetworkKind::NodeLink,
        _ if owner::is_neutron_owned(&switch.external_ids) => NetworkKind::NeutronNetwork,
        _ => NetworkKind::Other,
    };
    let display_name = match kind {
        NetworkKind::NeutronNetwork => switch.external_ids.get(NEUTRON_NETWORK_NAME).cloned(),
        NetworkKind::Subnet => owner.as_ref().map(|o| o.object().to_string()),
        NetworkKind::NodeLink | NetworkKind::Other => None,
    };
    let router_networks: Vec<&String> = lrps.iter().flat_map(|lrp| &lrp.networks).collect();
    let api = display_name
        .as_deref()
        .filter(|_| kind == NetworkKind::Subnet)
        .and_then(|name| subnets.get(name));
    let cidrs = match api {
        Some(subnet) => subnet.cidrs.clone(),
        None => router_networks
            .iter()
            .map(|n| match n.parse::<IpNet>() {
                Ok(net) => net.trunc().to_string(),
                Err(_) => n.to_string(),
            })
            .collect(),
    };
    let gateways = router_networks
        .iter()
        .map(|n| n.split('/').next().unwrap_or(n.as_str()).to_string())
        .collect();
    let mut ports: Vec<Port> = nb
        .ports_of(switch)
        .filter_map(|p| port_of(p, bindings))
        .collect();
    ports.sort_by(|a, b| {
        (a.kind, a.display_name.as_ref().unwrap_or(&a.name), &a.name).cmp(&(
            b.kind,
            b.display_name.as_ref().unwrap_or(&b.name),
            &b.name,
        ))
    });
    Network {
        kind,
        switch: switch.name.clone(),
        display_name,
        cidrs,
        gateways,
        namespaces: api.map(|s| s.namespaces.clone()).unwrap_or_default(),
        ports,
    }
}

/// A VM, pod or node port; `None` for every other port (of a type: router,
/// localport...).
fn port_of(
    port: &LogicalSwitchPort,
    bindings: Option<&BTreeMap<String, ChassisName>>,
) -> Option<Port> {
    if !port.type_.is_empty() {
        return None;
    }
    let owner = Owner::of(&port.external_ids);
    let (kind, display_name) = match owner.as_ref().map(Owner::kind) {
        Some(Kind::Pod) => (PortKind::Pod, owner.as_ref().map(|o| o.object())),
        Some(Kind::NodeLink) => (
            PortKind::Node,
            port.external_ids.get(NODE_KEY).map(String::as_str),
        ),
        _ if owner::is_neutron_owned(&port.external_ids) => (
            PortKind::Vm,
            port.external_ids.get(NEUTRON_PORT_NAME).map(String::as_str),
        ),
        _ => return None,
    };
    Some(Port {
        kind,
        name: port.name.clone(),
        display_name: display_name
            .filter(|name| !name.is_empty())
            .map(str::to_string),
        addresses: port.addresses.iter().cloned().collect(),
        chassis: bindings.and_then(|b| b.get(&port.name).cloned()),
    })
}

impl Topology {
    /// Only the routers named `vpc`: the OVN name (a Vpc's) or Neutron's
    /// display name (which Neutron does not keep unique: all of them).
    pub fn narrow(mut self, vpc: &str) -> Result<Self> {
        let names: Vec<String> = self.routers.iter().map(router_title).collect();
        self.routers
            .retain(|r| r.name == vpc || r.display_name.as_deref() == Some(vpc));
        if self.routers.is_empty() {
            bail!(
                "no router named {vpc:?} (its OVN name or Neutron display name); the routers are: {}",
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            );
        }
        self.unrouted.clear();
        Ok(self)
    }
}

fn router_title(router: &Router) -> String {
    match (router.owner, &router.display_name) {
        (RouterOwner::Neutron, Some(display)) => {
            format!("Neutron router {display:?} ({})", router.name)
        }
        (RouterOwner::Neutron, None) => format!("Neutron router {}", router.name),
        (RouterOwner::Rovn, _) => format!("Vpc {} (rovn's router)", router.name),
        (RouterOwner::Other, _) => format!("router {} (neither Neutron's nor rovn's)", router.name),
    }
}

fn network_title(network: &Network) -> String {
    let mut title = match (network.kind, &network.display_name) {
        (NetworkKind::NeutronNetwork, Some(display)) => {
            format!("Neutron network {display:?} ({})", network.switch)
        }
        (NetworkKind::NeutronNetwork, None) => format!("Neutron network {}", network.switch),
        (NetworkKind::Subnet, Some(name)) if *name == network.switch => format!("Subnet {name}"),
        (NetworkKind::Subnet, Some(name)) => format!("Subnet {name} ({})", network.switch),
        (NetworkKind::Subnet, None) => format!("Subnet {}", network.switch),
        (NetworkKind::NodeLink, _) => format!("node link {}", network.switch),
        (NetworkKind::Other, _) => format!("switch {}", network.switch),
    };
    if !network.cidrs.is_empty() {
        write!(title, " {}", network.cidrs.join(", ")).ok();
    }
    if !network.gateways.is_empty() {
        write!(title, ", router {}", network.gateways.join(", ")).ok();
    }
    if !network.namespaces.is_empty() {
        write!(title, ", namespaces {}", network.namespaces.join(", ")).ok();
    }
    title
}

fn port_title(port: &Port, chassis_read: bool) -> String {
    let mut title = match (port.kind, &port.display_name) {
        (PortKind::Vm, Some(name)) => format!("VM port {name:?} ({})", port.name),
        (PortKind::Vm, None) => format!("VM port {}", port.name),
        (PortKind::Pod, Some(pod)) => format!("pod {pod} ({})", port.name),
        (PortKind::Pod, None) => format!("pod port {}", port.name),
        (PortKind::Node, Some(node)) => format!("node {node} ({})", port.name),
        (PortKind::Node, None) => format!("node port {}", port.name),
    };
    if !port.addresses.is_empty() {
        write!(title, " {}", port.addresses.join(" ")).ok();
    }
    match &port.chassis {
        Some(chassis) => write!(title, " on {}", chassis_label(chassis)).ok(),
        None if chassis_read => write!(title, ", not bound").ok(),
        None => None,
    };
    title
}

fn chassis_label(chassis: &ChassisName) -> String {
    match &chassis.hostname {
        Some(host) if *host != chassis.name => format!("{} (host {host})", chassis.name),
        _ => chassis.name.clone(),
    }
}

/// The topology as an indented tree, one router (or the networks on no
/// router) per block.
pub fn render_tree(topology: &Topology) -> String {
    struct Node {
        text: String,
        children: Vec<Node>,
    }
    fn draw(out: &mut String, nodes: &[Node], prefix: &str) {
        for (i, node) in nodes.iter().enumerate() {
            let last = i + 1 == nodes.len();
            let (branch, indent) = if last {
                ("└── ", "    ")
            } else {
                ("├── ", "│   ")
            };
            writeln!(out, "{prefix}{branch}{}", node.text).ok();
            draw(out, &node.children, &format!("{prefix}{indent}"));
        }
    }
    let network_node = |network: &Network| Node {
        text: network_title(network),
        children: network
            .ports
            .iter()
            .map(|port| Node {
                text: port_title(port, topology.chassis_read),
                children: Vec::new(),
            })
            .collect(),
    };
    let mut blocks: Vec<(String, Vec<Node>)> = topology
        .routers
        .iter()
        .map(|router| {
            (
                router_title(router),
                router.networks.iter().map(network_node).collect(),
            )
        })
        .collect();
    if !topology.unrouted.is_empty() {
        blocks.push((
            "Networks on no router".to_string(),
            topology.unrouted.iter().map(network_node).collect(),
        ));
    }
    if blocks.is_empty() {
        return "no router and no network in the Northbound database\n".to_string();
    }
    let mut out = String::new();
    for (i, (title, children)) in blocks.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        writeln!(out, "{title}").ok();
        draw(&mut out, children, "");
    }
    out
}

/// `text` escaped for a DOT quoted string.
fn dot_escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

/// A DOT node id.
fn dot_id(id: &str) -> String {
    format!("\"{}\"", dot_escape(id))
}

/// A DOT quoted string of `lines` (one label line each).
fn dot_label(lines: &[String]) -> String {
    let escaped: Vec<String> = lines.iter().map(|line| dot_escape(line)).collect();
    format!("\"{}\"", escaped.join("\\n"))
}

/// The topology as a Graphviz graph: routers, networks and ports as nodes,
/// an edge for each router interface (labelled with the router's address)
/// and for each port.
pub fn render_dot(topology: &Topology) -> String {
    let mut out = String::from(
        "graph rovn {\n  rankdir=LR;\n  node [fontname=\"Helvetica\", fontsize=10, style=filled];\n  edge [fontname=\"Helvetica\", fontsize=9];\n",
    );
    let mut declared = BTreeSet::new();
    let mut node = |out: &mut String, id: &str, attributes: String| {
        if declared.insert(id.to_string()) {
            writeln!(out, "  {} [{attributes}];", dot_id(id)).ok();
        }
    };
    let networks = topology
        .routers
        .iter()
        .flat_map(|r| r.networks.iter().map(move |n| (Some(r), n)))
        .chain(topology.unrouted.iter().map(|n| (None, n)));
    for router in &topology.routers {
        let mut label = vec![
            router
                .display_name
                .clone()
                .unwrap_or_else(|| router.name.clone()),
        ];
        if router.display_name.is_some() {
            label.push(router.name.clone());
        }
        let color = match router.owner {
            RouterOwner::Neutron => "#f4cccc",
            RouterOwner::Rovn => "#d9ead3",
            RouterOwner::Other => "#eeeeee",
        };
        node(
            &mut out,
            &format!("router/{}", router.name),
            format!(
                "shape=octagon, fillcolor=\"{color}\", label={}",
                dot_label(&label)
            ),
        );
    }
    for (router, network) in networks {
        let id = format!("switch/{}", network.switch);
        let mut label = match &network.display_name {
            Some(display) if *display != network.switch => {
                vec![display.clone(), network.switch.clone()]
            }
            _ => vec![network.switch.clone()],
        };
        label.extend(network.cidrs.iter().cloned());
        node(
            &mut out,
            &id,
            format!(
                "shape=box, fillcolor=\"#fff2cc\", label={}",
                dot_label(&label)
            ),
        );
        if let Some(router) = router {
            writeln!(
                out,
                "  {} -- {} [label={}];",
                dot_id(&format!("router/{}", router.name)),
                dot_id(&id),
                dot_id(&network.gateways.join(", "))
            )
            .ok();
        }
        for port in &network.ports {
            let port_id = format!("port/{}", port.name);
            let mut label = vec![
                port.display_name
                    .clone()
                    .unwrap_or_else(|| port.name.clone()),
            ];
            label.extend(port.addresses.iter().cloned());
            if let Some(chassis) = &port.chassis {
                label.push(format!("on {}", chassis_label(chassis)));
            }
            let color = match port.kind {
                PortKind::Vm => "#cfe2f3",
                PortKind::Pod => "#d9ead3",
                PortKind::Node => "#eeeeee",
            };
            node(
                &mut out,
                &port_id,
                format!(
                    "shape=ellipse, fillcolor=\"{color}\", label={}",
                    dot_label(&label)
                ),
            );
            writeln!(out, "  {} -- {};", dot_id(&id), dot_id(&port_id)).ok();
        }
    }
    out.push_str("}\n");
    out
}

/// `dot` output as SVG, made by Graphviz's `program` (`dot`).
pub fn render_svg(program: &Path, dot: &str) -> Result<String> {
    let mut child = match Command::new(program)
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => bail!(
            "{} not found: -o svg runs Graphviz's dot (Debian: apt-get install graphviz); \
             -o dot prints the graph for rendering elsewhere",
            program.display()
        ),
        Err(error) => {
            return Err(error).with_context(|| format!("running {}", program.display()));
        }
    };
    let mut stdin = child.stdin.take().context("dot's stdin")?;
    let input = dot.to_string();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let output = child
        .wait_with_output()
        .with_context(|| format!("running {}", program.display()))?;
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("writing to dot panicked"))?
        .with_context(|| format!("writing the graph to {}", program.display()))?;
    if !output.status.success() {
        bail!(
            "{} -Tsvg failed ({}): {}",
            program.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    String::from_utf8(output.stdout).context("dot's SVG is not UTF-8")
}

#[cfg(test)]
mod tests;
