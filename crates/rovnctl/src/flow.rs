//! `rovnctl diagnose --pod NS/POD --to IP`: which of the two filters on a
//! pod → IP path drops a NEW connection — a NetworkPolicy of ours (a
//! `rovn_np_*` Port_Group and its ACLs) or the destination VM's Neutron
//! security groups (`neutron_pg_drop`, `pg_<sg>`) — or where it is
//! delivered.
//!
//! Three steps: [`build_flow`] makes the microflow of the pod's first packet
//! from the Northbound rows ([`NbSnapshot`]); [`run_trace`] has Debian's
//! `ovn-trace` simulate it on the Southbound logical flows (every conntrack
//! lookup answering `new`); [`explain`] reads the trace ([`trace::parse`])
//! and names what ended the packet's journey, in words and as a serde
//! [`Verdict`].

pub mod trace;

use std::fmt;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use ipnet::{IpNet, Ipv4Net};
use ovn::nb::{LogicalSwitch, LogicalSwitchPort};
use ovn::owned::owner::{self, Kind, NEUTRON_NETWORK_NAME, NEUTRON_ROUTER_NAME, Owner};
use ovn::security_groups::DROP_PORT_GROUP;
use ovsdb::{TlsFiles, Uuid};
use serde::{Deserialize, Serialize};

use crate::diagnose::{ingress_rule_command, security_group_id};
use crate::snapshot::NbSnapshot;
use trace::{Item, Pipeline, SectionKind, Stage, Trace};

/// Prefix of the names of rovn's NetworkPolicy port groups.
pub const POLICY_PORT_GROUP_PREFIX: &str = "rovn_np_";
/// `external_ids` key of our NetworkPolicy ACLs naming the rule.
pub const RULE_KEY: &str = "rovn:rule";
/// `external_ids` key of Neutron's VM ports listing their security groups.
pub const NEUTRON_SECURITY_GROUP_IDS: &str = "neutron:security_group_ids";
/// `external_ids` key of Neutron's ports: the port's display name.
pub const NEUTRON_PORT_NAME: &str = "neutron:port_name";
/// `external_ids` key of Neutron's ports: what the port is for.
pub const NEUTRON_DEVICE_OWNER: &str = "neutron:device_owner";
/// `external_ids` key of Neutron's security group ACLs.
pub const NEUTRON_RULE_ID: &str = "neutron:security_group_rule_id";
/// OVN puts ACLs in the logical flow tables at their priority plus this.
const ACL_PRIORITY_OFFSET: i64 = 1000;
/// `--ct` options given to ovn-trace: more than the conntrack lookups of any
/// pod → IP path (one per switch pipeline with stateful ACLs or balancers).
const CT_LOOKUPS: usize = 8;
/// Default destination port of `tcp` and `udp` flows.
pub const DEFAULT_PORT: u16 = 80;
/// The TTL of the traced packet.
const TTL: u8 = 64;

/// The IP protocol of the traced connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP, to `--port`.
    Tcp,
    /// UDP, to `--port`.
    Udp,
    /// ICMP echo request.
    Icmp,
}

impl Protocol {
    /// The name `openstack` and OVN use (`icmp` for ICMPv4).
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Icmp => "icmp",
        }
    }
}

/// What to trace: a NEW connection from a pod to an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowRequest {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub pod: String,
    /// The destination.
    pub to: Ipv4Addr,
    /// The protocol.
    pub protocol: Protocol,
    /// The destination port (`tcp`/`udp`; [`DEFAULT_PORT`] when `None`).
    pub port: Option<u16>,
}

impl FlowRequest {
    /// A request for `pod` given as `namespace/name`.
    pub fn new(pod: &str, to: Ipv4Addr, protocol: Protocol, port: Option<u16>) -> Result<Self> {
        let Some((namespace, name)) = pod.split_once('/') else {
            bail!("--pod {pod:?}: expected <namespace>/<pod>");
        };
        if namespace.is_empty() || name.is_empty() || name.contains('/') {
            bail!("--pod {pod:?}: expected <namespace>/<pod>");
        }
        if protocol == Protocol::Icmp && port.is_some() {
            bail!("--port applies to tcp and udp, not icmp");
        }
        Ok(Self {
            namespace: namespace.to_string(),
            pod: name.to_string(),
            to,
            protocol,
            port,
        })
    }

    fn pod_name(&self) -> String {
        format!("{}/{}", self.namespace, self.pod)
    }
}

/// The traced packet: the first packet of the pod's connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flow {
    /// The pod, `namespace/name`.
    pub pod: String,
    /// Its Logical_Switch_Port.
    pub port: String,
    /// The switch of that port (the ovn-trace datapath).
    pub switch: String,
    /// The pod's MAC.
    pub eth_src: String,
    /// The pod's IPv4 address.
    pub ip4_src: Ipv4Addr,
    /// The next hop's MAC: the router port serving the switch, or the
    /// destination port's when it is on the same switch.
    pub eth_dst: String,
    /// The destination.
    pub ip4_dst: Ipv4Addr,
    /// The protocol.
    pub protocol: Protocol,
    /// The destination port (`tcp`, `udp`).
    pub dst_port: Option<u16>,
    /// The router port serving the pod's switch, if any.
    pub router_port: Option<String>,
    /// The pods' CIDR: the network of that router port holding the pod.
    pub pod_cidr: Option<Ipv4Net>,
    /// The microflow given to ovn-trace.
    pub microflow: String,
}

impl Flow {
    /// What a security group rule must admit: the pods' CIDR, else the pod.
    fn remote(&self) -> IpNet {
        IpNet::V4(self.pod_cidr.unwrap_or_else(|| Ipv4Net::from(self.ip4_src)))
    }

    /// `tcp port 22`, `icmp`.
    fn service(&self) -> String {
        match self.dst_port {
            Some(port) => format!("{} port {port}", self.protocol.as_str()),
            None => self.protocol.as_str().to_string(),
        }
    }
}

/// An OVN match string literal (`"name"`).
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The MAC and the IPv4 addresses of an `addresses` entry (`"MAC IP…"`).
fn mac_and_ips(entry: &str) -> Option<(&str, Vec<Ipv4Addr>)> {
    let mut words = entry.split_whitespace();
    let mac = words.next()?;
    if mac.split(':').count() != 6 {
        return None;
    }
    Some((mac, words.filter_map(|w| w.parse().ok()).collect()))
}

/// The MAC of a port whose addresses hold `ip`.
fn mac_of(port: &LogicalSwitchPort, ip: Ipv4Addr) -> Option<String> {
    port.addresses
        .iter()
        .filter_map(|a| mac_and_ips(a))
        .find(|(_, ips)| ips.contains(&ip))
        .map(|(mac, _)| mac.to_string())
}

/// Makes the pod's first packet towards `request.to` from the NB rows.
pub fn build_flow(nb: &NbSnapshot, request: &FlowRequest) -> Result<Flow> {
    let pod = request.pod_name();
    let owner = Owner::pod(&request.namespace, &request.pod);
    let ports: Vec<&LogicalSwitchPort> = nb
        .switch_ports
        .values()
        .filter(|p| owner.owns(&p.external_ids))
        .collect();
    let port = match ports.as_slice() {
        [] => bail!(
            "pod {pod} has no Logical_Switch_Port in the Northbound database (none has \
             external_ids {}={}, {}={}, {}={pod}): is the pod on a rovn network, and running?",
            owner::OWNER_KEY,
            owner::OWNER,
            owner::KIND_KEY,
            Kind::Pod.as_str(),
            owner::OBJECT_KEY,
        ),
        [port] => *port,
        several => bail!(
            "pod {pod} has {} Logical_Switch_Ports: {}",
            several.len(),
            several
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let (eth_src, ip4_src) = port
        .addresses
        .iter()
        .filter_map(|a| mac_and_ips(a))
        .find_map(|(mac, ips)| Some((mac.to_string(), *ips.first()?)))
        .with_context(|| {
            format!(
                "port {} of pod {pod} has no \"MAC IPv4\" address: {:?}",
                port.name, port.addresses
            )
        })?;
    let switch = nb
        .switch_of(port.uuid)
        .with_context(|| format!("port {} of pod {pod} is on no Logical_Switch", port.name))?;

    // The router port serving the switch: the one whose network holds the pod.
    let router_ports: Vec<(&str, &str, Option<Ipv4Net>)> = nb
        .ports_of(switch)
        .filter(|p| p.type_ == "router")
        .filter_map(|p| nb.router_port(p.options.get("router-port")?))
        .map(|lrp| {
            let network = lrp
                .networks
                .iter()
                .filter_map(|n| n.parse::<Ipv4Net>().ok())
                .find(|n| n.contains(&ip4_src));
            (lrp.name.as_str(), lrp.mac.as_str(), network)
        })
        .collect();
    let gateway = router_ports
        .iter()
        .find(|(_, _, network)| network.is_some())
        .or(router_ports.first());
    let neighbour = nb
        .ports_of(switch)
        .find_map(|p| mac_of(p, request.to).map(|mac| (p.name.as_str(), mac)));
    let eth_dst = match (neighbour, gateway) {
        (Some((_, mac)), _) => mac,
        (None, Some((_, mac, _))) => mac.to_string(),
        (None, None) => bail!(
            "switch {} of pod {pod} has no router port, and no port with address {}",
            switch.name,
            request.to
        ),
    };
    let dst_port = match request.protocol {
        Protocol::Icmp => None,
        Protocol::Tcp | Protocol::Udp => Some(request.port.unwrap_or(DEFAULT_PORT)),
    };
    let l4 = match (request.protocol, dst_port) {
        (Protocol::Icmp, _) => "icmp4 && icmp4.type == 8 && icmp4.code == 0".to_string(),
        (protocol, Some(port)) => format!("{0} && {0}.dst == {port}", protocol.as_str()),
        (protocol, None) => protocol.as_str().to_string(),
    };
    let microflow = format!(
        "inport == {} && eth.src == {eth_src} && eth.dst == {eth_dst} && ip4.src == {ip4_src} \
         && ip4.dst == {} && ip.ttl == {TTL} && {l4}",
        quoted(&port.name),
        request.to,
    );
    Ok(Flow {
        pod,
        port: port.name.clone(),
        switch: switch.name.clone(),
        eth_src,
        ip4_src,
        eth_dst,
        ip4_dst: request.to,
        protocol: request.protocol,
        dst_port,
        router_port: gateway.map(|(name, _, _)| name.to_string()),
        pod_cidr: gateway.and_then(|(_, _, network)| network.map(|n| n.trunc())),
        microflow,
    })
}

/// The arguments of `ovn-trace` for `flow` against Southbound `sb`.
pub fn trace_args(flow: &Flow, sb: &str, tls: Option<&TlsFiles>) -> Vec<String> {
    let mut args = vec![
        format!("--db={sb}"),
        "--detailed".to_string(),
        "--no-friendly-names".to_string(),
    ];
    // ovn-trace answers `est` to conntrack lookups unless told otherwise:
    // the first packet of a connection is `new` in every zone it crosses.
    args.extend(std::iter::repeat_n("--ct=trk,new".to_string(), CT_LOOKUPS));
    if let Some(tls) = tls {
        args.push(format!("--private-key={}", tls.private_key.display()));
        args.push(format!("--certificate={}", tls.certificate.display()));
        args.push(format!("--ca-cert={}", tls.ca_cert.display()));
    }
    args.push(flow.switch.clone());
    args.push(flow.microflow.clone());
    args
}

/// Runs `ovn_trace` on `flow` against Southbound `sb` and returns its
/// output; fails if it fails or takes longer than `timeout`.
pub async fn run_trace(
    ovn_trace: &Path,
    sb: &str,
    tls: Option<&TlsFiles>,
    flow: &Flow,
    timeout: Duration,
) -> Result<String> {
    let args = trace_args(flow, sb, tls);
    let child = tokio::process::Command::new(ovn_trace)
        .args(&args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(timeout, child)
        .await
        .with_context(|| {
            format!(
                "{} did not answer within {timeout:?} (is the Southbound database {sb} reachable?)",
                ovn_trace.display()
            )
        })?
        .with_context(|| format!("running {}", ovn_trace.display()))?;
    if !output.status.success() {
        bail!(
            "{} {} failed ({}): {}",
            ovn_trace.display(),
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Where and how `diagnose_flow` runs ovn-trace.
#[derive(Debug, Clone)]
pub struct TraceCommand {
    /// The `ovn-trace` binary.
    pub program: std::path::PathBuf,
    /// Southbound remotes (`unix:PATH`, `tcp:H:P`, `ssl:H:P`, comma-separated).
    pub sb: String,
    /// TLS files for `ssl:` remotes.
    pub tls: Option<TlsFiles>,
    /// How long ovn-trace may take.
    pub timeout: Duration,
}

/// Builds the flow of `request` from the NB rows `nb`, traces it and explains
/// the trace.
pub async fn diagnose_flow(
    nb: &NbSnapshot,
    request: &FlowRequest,
    command: &TraceCommand,
) -> Result<Diagnosis> {
    let flow = build_flow(nb, request)?;
    let output = run_trace(
        &command.program,
        &command.sb,
        command.tls.as_ref(),
        &flow,
        command.timeout,
    )
    .await?;
    let trace = trace::parse(&output);
    if trace.items.is_empty() {
        bail!(
            "ovn-trace printed no trace for {}: {}",
            flow.microflow,
            output.trim()
        );
    }
    Ok(explain(nb, &flow, &trace))
}

/// A datapath the packet crossed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hop {
    /// `switch`, `router`, or `unknown` (not in NB).
    pub kind: String,
    /// The NB name (the trace's datapath when unknown).
    pub name: String,
    /// Neutron's display name of the network or router.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub neutron_name: Option<String>,
}

impl fmt::Display for Hop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, self.name)?;
        match (&self.neutron_name, self.kind.as_str()) {
            (Some(name), "switch") => write!(f, " (Neutron network {name:?})"),
            (Some(name), _) => write!(f, " (Neutron router {name:?})"),
            (None, _) => Ok(()),
        }
    }
}

/// Who a logical switch port belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "owner", rename_all = "kebab-case")]
pub enum PortOwner {
    /// A pod of ours.
    Pod {
        /// `namespace/name`.
        pod: String,
    },
    /// A Neutron port (a VM's, a router interface...).
    Neutron {
        /// Its display name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        port_name: Option<String>,
        /// What it is for (`compute:nova`...).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        device_owner: Option<String>,
        /// Its security groups.
        security_groups: Vec<String>,
    },
    /// Anything else (or a port not in NB).
    Other,
}

/// A logical switch port the verdict names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortInfo {
    /// The port's name (a Neutron port's id).
    pub name: String,
    /// Its type (`""` for workloads).
    #[serde(rename = "type")]
    pub type_: String,
    /// Its switch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switch: Option<String>,
    /// Its addresses.
    pub addresses: Vec<String>,
    /// Who it belongs to.
    #[serde(flatten)]
    pub owner: PortOwner,
}

impl fmt::Display for PortInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (what, mut details): (String, Vec<String>) = match &self.owner {
            PortOwner::Pod { pod } => (format!("pod {pod}"), vec![format!("port {}", self.name)]),
            PortOwner::Neutron {
                port_name,
                device_owner,
                ..
            } => (
                format!("Neutron port {}", self.name),
                port_name
                    .iter()
                    .filter(|n| !n.is_empty())
                    .map(|n| format!("{n:?}"))
                    .chain(device_owner.iter().cloned())
                    .collect(),
            ),
            PortOwner::Other => (
                format!("port {}", self.name),
                (!self.type_.is_empty())
                    .then(|| format!("type {}", self.type_))
                    .into_iter()
                    .collect(),
            ),
        };
        if !self.addresses.is_empty() {
            details.push(self.addresses.join(" "));
        }
        write!(f, "{what}")?;
        if !details.is_empty() {
            write!(f, " ({})", details.join(", "))?;
        }
        if let Some(switch) = &self.switch {
            write!(f, " on switch {switch}")?;
        }
        Ok(())
    }
}

/// The ACL that dropped or rejected the packet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclInfo {
    /// `from-lport` or `to-lport`.
    pub direction: String,
    /// The ACL's priority (the logical flow's minus 1000 when the ACL row
    /// was not found).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    /// `drop`, `reject`...
    pub action: String,
    /// The ACL's match (the logical flow's when the row was not found).
    #[serde(rename = "match")]
    pub match_: String,
    /// The port group the ACL is on (the first `@group` of the match).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_group: Option<String>,
    /// The NB ACL row, when found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<Uuid>,
    /// Our rule name (`rovn:rule`: `egress-deny`, `ingress-0`...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Neutron's rule (`neutron:security_group_rule_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub neutron_rule: Option<String>,
    /// The logical flow table that applied it.
    pub stage: String,
}

impl fmt::Display for AclInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(rule) = self.rule.as_ref().or(self.neutron_rule.as_ref()) {
            write!(f, "rule {rule}: ")?;
        }
        write!(f, "{}", self.direction)?;
        if let Some(priority) = self.priority {
            write!(f, " priority {priority}")?;
        }
        write!(f, " {} `{}`", self.action, self.match_)
    }
}

/// Which side of a pod a NetworkPolicy rule guards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyDirection {
    /// What the selected pod sends (`from-lport`).
    Egress,
    /// What the selected pod receives (`to-lport`).
    Ingress,
}

/// What happened to the first packet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "kebab-case")]
pub enum Verdict {
    /// It reached a port (a VM's, a pod's...).
    Delivered {
        /// The port reached.
        port: PortInfo,
    },
    /// An ACL of a NetworkPolicy of ours dropped it.
    DroppedByNetworkPolicy {
        /// The policy, `namespace/name` (`None` if its port group is gone).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        policy: Option<String>,
        /// Egress of the source pod, or ingress of the destination pod.
        direction: PolicyDirection,
        /// The pod whose side it is (`namespace/name`; the port's name for
        /// a port that is not a pod's).
        pod: String,
        /// The ACL.
        acl: AclInfo,
        /// What would admit the flow.
        fix: String,
    },
    /// Neutron's `neutron_pg_drop` dropped it: no security group of the
    /// port admits it.
    DroppedByNeutronPgDrop {
        /// The Neutron port.
        port: PortInfo,
        /// The port's security groups.
        security_groups: Vec<String>,
        /// The ACL.
        acl: AclInfo,
        /// One `openstack security group rule create` per security group.
        fixes: Vec<String>,
    },
    /// A drop or reject rule of a Neutron security group (`pg_<sg>`).
    DroppedBySecurityGroup {
        /// The security group's id.
        security_group: String,
        /// The port it guards, when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        port: Option<PortInfo>,
        /// The ACL.
        acl: AclInfo,
    },
    /// Another ACL (on a switch, or a port group of a third party).
    DroppedByAcl {
        /// The ACL.
        acl: AclInfo,
    },
    /// Anything else: no route, unknown neighbour, port security...
    NotDelivered {
        /// In plain words.
        reason: String,
    },
}

/// The flow, its path and verdict, and the trace lines that matter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnosis {
    /// The traced packet.
    pub flow: Flow,
    /// The datapaths it crossed, in order.
    pub path: Vec<Hop>,
    /// What happened to it.
    #[serde(flatten)]
    pub verdict: Verdict,
    /// The ovn-trace lines where the journey ended.
    pub trace: Vec<String>,
}

/// How the packet's journey ended, read from the trace alone.
#[derive(Debug, Clone, PartialEq, Eq)]
enum End {
    /// Dropped at this table (explicitly, or no flow matched).
    Dropped(usize),
    /// A `reject` action at this table answered it.
    Rejected(usize),
    /// Output to this port, which is no patch to another datapath.
    Output(String),
    /// Replaced by a generated packet (`arp`, `icmp4`, ...).
    Generated(String),
    /// An error ovn-trace reported.
    Error(String),
    /// Not output because the output port is the input port.
    Omitted,
    /// The trace ends without any of the above.
    Unfinished,
}

/// Where the journey ended: the end, the pipeline it ended in, the
/// datapaths crossed (trace names), the index of the last item read.
struct Journey<'a> {
    end: End,
    pipeline: Option<&'a Pipeline>,
    pipeline_item: Option<usize>,
    datapaths: Vec<&'a str>,
    last: usize,
}

fn follow(trace: &Trace) -> Journey<'_> {
    let mut journey = Journey {
        end: End::Unfinished,
        pipeline: None,
        pipeline_item: None,
        datapaths: Vec::new(),
        last: trace.items.len().saturating_sub(1),
    };
    for (index, item) in trace.items.iter().enumerate() {
        match item {
            Item::Section(section) => match &section.kind {
                SectionKind::Pipeline(pipeline) => {
                    journey.pipeline = Some(pipeline);
                    journey.pipeline_item = Some(index);
                    if journey.datapaths.last() != Some(&pipeline.datapath.as_str()) {
                        journey.datapaths.push(&pipeline.datapath);
                    }
                }
                SectionKind::Generated(what) => {
                    journey.end = End::Generated(what.clone());
                    journey.last = index;
                    return journey;
                }
                SectionKind::Multicast { .. } | SectionKind::Other => {}
            },
            Item::Stage(stage) => {
                let end = if let Some(error) = stage.error() {
                    Some(End::Error(error.to_string()))
                } else if stage.rejects() {
                    Some(End::Rejected(index))
                } else if stage.drops() {
                    Some(End::Dropped(index))
                } else if stage.omits_output() {
                    Some(End::Omitted)
                } else {
                    stage
                        .output()
                        .filter(|(_, type_)| type_ != "patch")
                        .map(|(port, _)| End::Output(port))
                };
                if let Some(end) = end {
                    journey.end = end;
                    journey.last = index;
                    return journey;
                }
            }
        }
    }
    journey
}

fn stage_at(trace: &Trace, index: usize) -> Option<&Stage> {
    match trace.items.get(index) {
        Some(Item::Stage(stage)) => Some(stage),
        _ => None,
    }
}

/// The ACL table that decided a drop at `index`: that table if it is an
/// ACL table, else (OVN ≥ 23.06 drops in `*_acl_action`) the last ACL
/// table of the same pipeline before it.
fn deciding_acl(trace: &Trace, index: usize, since: usize) -> Option<&Stage> {
    let stage = stage_at(trace, index)?;
    if stage.is_acl() {
        return Some(stage);
    }
    if !stage.name().contains("acl") {
        return None;
    }
    (since..index)
        .rev()
        .filter_map(|i| stage_at(trace, i))
        .find(|s| s.is_acl() && s.match_.as_deref().is_some_and(|m| m.contains('@')))
}

/// The `@port_group` names of a match.
fn port_groups_of(match_: &str) -> Vec<&str> {
    match_
        .split('@')
        .skip(1)
        .filter_map(|rest| {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
                .unwrap_or(rest.len());
            (end > 0).then(|| &rest[..end])
        })
        .collect()
}

/// The NB ACL behind a logical flow of table `stage` (ACL matches are
/// copied into the flow's match, alone or wrapped: `reg0[9] == 1 && (…)`).
fn acl_info(nb: &NbSnapshot, stage: &Stage, action: &str) -> AclInfo {
    let flow_match = stage.match_.clone().unwrap_or_default();
    let ingress = stage.name().starts_with("ls_in") || stage.name().starts_with("lr_in");
    let groups = port_groups_of(&flow_match);
    let group = groups.first().map(|g| g.to_string());
    let candidates = groups
        .iter()
        .filter_map(|g| nb.port_group(g))
        .flat_map(|g| g.acls.iter())
        .filter_map(|uuid| nb.acls.get(uuid));
    let row = candidates
        .filter(|acl| !acl.match_.is_empty() && flow_match.contains(&acl.match_))
        .max_by_key(|acl| {
            (
                stage.priority == Some(acl.priority + ACL_PRIORITY_OFFSET),
                acl.match_.len(),
            )
        });
    match row {
        Some(acl) => AclInfo {
            direction: acl.direction.clone(),
            priority: Some(acl.priority),
            action: acl.action.clone(),
            match_: acl.match_.clone(),
            port_group: group,
            uuid: Some(acl.uuid),
            rule: acl.external_ids.get(RULE_KEY).cloned(),
            neutron_rule: acl.external_ids.get(NEUTRON_RULE_ID).cloned(),
            stage: stage.name().to_string(),
        },
        None => AclInfo {
            direction: if ingress { "from-lport" } else { "to-lport" }.to_string(),
            priority: stage.priority.map(|p| p - ACL_PRIORITY_OFFSET),
            action: action.to_string(),
            match_: flow_match,
            port_group: group,
            uuid: None,
            rule: None,
            neutron_rule: None,
            stage: stage.name().to_string(),
        },
    }
}

fn port_info(nb: &NbSnapshot, name: &str) -> PortInfo {
    let Some(port) = nb.switch_port(name) else {
        return PortInfo {
            name: name.to_string(),
            type_: String::new(),
            switch: None,
            addresses: Vec::new(),
            owner: PortOwner::Other,
        };
    };
    let owner = match Owner::of(&port.external_ids) {
        Some(o) if o.kind() == Kind::Pod => PortOwner::Pod {
            pod: o.object().to_string(),
        },
        _ if owner::is_neutron_owned(&port.external_ids) => PortOwner::Neutron {
            port_name: port.external_ids.get(NEUTRON_PORT_NAME).cloned(),
            device_owner: port.external_ids.get(NEUTRON_DEVICE_OWNER).cloned(),
            security_groups: security_groups_of(nb, port),
        },
        _ => PortOwner::Other,
    };
    PortInfo {
        name: port.name.clone(),
        type_: port.type_.clone(),
        switch: nb.switch_of(port.uuid).map(|s| s.name.clone()),
        addresses: port.addresses.iter().cloned().collect(),
        owner,
    }
}

/// A Neutron port's security groups: `neutron:security_group_ids`, else the
/// `pg_<sg>` port groups holding it.
fn security_groups_of(nb: &NbSnapshot, port: &LogicalSwitchPort) -> Vec<String> {
    let listed: Vec<String> = port
        .external_ids
        .get(NEUTRON_SECURITY_GROUP_IDS)
        .map(|ids| {
            ids.split(|c: char| c.is_whitespace() || c == ',')
                .filter(|id| !id.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if !listed.is_empty() {
        return listed;
    }
    nb.port_groups
        .iter()
        .filter(|g| g.name.starts_with("pg_") && g.ports.contains(&port.uuid))
        .map(|g| security_group_id(&g.name))
        .collect()
}

/// The pod behind a port (`namespace/name`), else the port's name.
fn pod_of(nb: &NbSnapshot, port: &str) -> String {
    nb.switch_port(port)
        .and_then(|p| Owner::of(&p.external_ids))
        .filter(|o| o.kind() == Kind::Pod)
        .map(|o| o.object().to_string())
        .unwrap_or_else(|| port.to_string())
}

fn hop(nb: &NbSnapshot, datapath: &str) -> Hop {
    let is = |uuid: Uuid, name: &str| uuid.to_string() == datapath || name == datapath;
    if let Some(switch) = nb.switches.iter().find(|s| is(s.uuid, &s.name)) {
        return switch_hop(switch);
    }
    if let Some(router) = nb.routers.iter().find(|r| is(r.uuid, &r.name)) {
        return Hop {
            kind: "router".to_string(),
            name: router.name.clone(),
            neutron_name: router.external_ids.get(NEUTRON_ROUTER_NAME).cloned(),
        };
    }
    Hop {
        kind: "unknown".to_string(),
        name: datapath.to_string(),
        neutron_name: None,
    }
}

fn switch_hop(switch: &LogicalSwitch) -> Hop {
    Hop {
        kind: "switch".to_string(),
        name: switch.name.clone(),
        neutron_name: switch.external_ids.get(NEUTRON_NETWORK_NAME).cloned(),
    }
}

/// Explains `trace`, the trace of `flow`, with the NB rows `nb`.
pub fn explain(nb: &NbSnapshot, flow: &Flow, trace: &Trace) -> Diagnosis {
    let journey = follow(trace);
    let path: Vec<Hop> = journey.datapaths.iter().map(|dp| hop(nb, dp)).collect();
    let since = journey.pipeline_item.unwrap_or(0);
    let where_ = path.last().map(|h| format!(" on {h}")).unwrap_or_default();
    let verdict = match &journey.end {
        End::Dropped(index) | End::Rejected(index) => {
            let action = if matches!(journey.end, End::Rejected(_)) {
                "reject"
            } else {
                "drop"
            };
            match deciding_acl(trace, *index, since) {
                Some(stage) => acl_verdict(nb, flow, journey.pipeline, acl_info(nb, stage, action)),
                None => dropped_at(flow, stage_at(trace, *index), journey.pipeline, &where_),
            }
        }
        End::Output(port) if *port == flow.port => Verdict::NotDelivered {
            reason: format!(
                "the packet came back to the pod's own port {port}: the destination{where_} \
                 answered it itself (an address of the router, or an error)"
            ),
        },
        End::Output(port) => Verdict::Delivered {
            port: port_info(nb, port),
        },
        End::Generated(what) => replaced_by(flow, what, &where_),
        End::Error(error) => Verdict::NotDelivered {
            reason: format!("ovn-trace reports{where_}: {error}"),
        },
        End::Omitted => Verdict::NotDelivered {
            reason: format!(
                "the packet would leave{where_} through the port it came in from \
                 ({}): it is not sent back",
                journey.pipeline.map_or("?", |p| p.inport.as_str())
            ),
        },
        End::Unfinished => Verdict::NotDelivered {
            reason: "the trace ends without delivering nor dropping the packet".to_string(),
        },
    };
    let mut lines = Vec::new();
    if let Some(Item::Section(section)) = journey.pipeline_item.and_then(|i| trace.items.get(i)) {
        lines.push(section.title.clone());
    }
    let first = (since + 1).max(journey.last.saturating_sub(2));
    for item in trace.items.iter().take(journey.last + 1).skip(first) {
        lines.extend(item.lines());
    }
    Diagnosis {
        flow: flow.clone(),
        path,
        verdict,
        trace: lines,
    }
}

/// The verdict of a drop (or reject) by the ACL `acl`, in `pipeline`.
fn acl_verdict(nb: &NbSnapshot, flow: &Flow, pipeline: Option<&Pipeline>, acl: AclInfo) -> Verdict {
    let from_lport = acl.direction == "from-lport";
    // The port the ACL guards: the input port of a from-lport ACL, the
    // output port of a to-lport one.
    let guarded = pipeline.and_then(|p| {
        if from_lport {
            Some(p.inport.clone())
        } else {
            p.outport.clone()
        }
    });
    let group = acl.port_group.clone().unwrap_or_default();
    if group.starts_with(POLICY_PORT_GROUP_PREFIX) {
        let policy = nb
            .port_group(&group)
            .and_then(|g| Owner::of(&g.external_ids))
            .filter(|o| o.kind() == Kind::NetworkPolicy)
            .map(|o| o.object().to_string());
        let (direction, pod) = if from_lport {
            let source = guarded.as_deref().unwrap_or(&flow.port);
            (PolicyDirection::Egress, pod_of(nb, source))
        } else {
            let destination = guarded.as_deref().unwrap_or("?");
            (PolicyDirection::Ingress, pod_of(nb, destination))
        };
        let named = policy.as_ref().map_or_else(
            || format!("port group {group}"),
            |p| format!("NetworkPolicy {p}"),
        );
        let fix = match direction {
            PolicyDirection::Egress => format!(
                "add an egress rule admitting {} on {} to {named}, or allow it in another \
                 NetworkPolicy selecting {pod}",
                flow.ip4_dst,
                flow.service()
            ),
            PolicyDirection::Ingress => format!(
                "add an ingress rule admitting {} ({}) on {} to {named}, or allow it in another \
                 NetworkPolicy selecting {pod}",
                flow.pod,
                flow.ip4_src,
                flow.service()
            ),
        };
        return Verdict::DroppedByNetworkPolicy {
            policy,
            direction,
            pod,
            acl,
            fix,
        };
    }
    if group == DROP_PORT_GROUP {
        let port = port_info(nb, guarded.as_deref().unwrap_or("?"));
        let security_groups = match &port.owner {
            PortOwner::Neutron {
                security_groups, ..
            } => security_groups.clone(),
            _ => Vec::new(),
        };
        let fixes = if from_lport {
            Vec::new()
        } else {
            let protocol = (flow.protocol.as_str(), flow.dst_port);
            security_groups
                .iter()
                .map(|sg| ingress_rule_command(flow.remote(), Some(protocol), sg))
                .collect()
        };
        return Verdict::DroppedByNeutronPgDrop {
            port,
            security_groups,
            acl,
            fixes,
        };
    }
    if group.starts_with("pg_") {
        let security_group = nb
            .port_group(&group)
            .and_then(|g| g.external_ids.get("neutron:security_group_id").cloned())
            .unwrap_or_else(|| security_group_id(&group));
        return Verdict::DroppedBySecurityGroup {
            security_group,
            port: guarded.map(|p| port_info(nb, &p)),
            acl,
        };
    }
    Verdict::DroppedByAcl { acl }
}

/// A drop by table `stage`, which is no ACL's doing, in plain words.
fn dropped_at(
    flow: &Flow,
    stage: Option<&Stage>,
    pipeline: Option<&Pipeline>,
    where_: &str,
) -> Verdict {
    let name = stage.map_or("", Stage::name);
    let implicit = stage.is_some_and(|s| s.match_.is_none());
    let reason = if name.contains("ip_routing") {
        format!("no route to {}{where_}", flow.ip4_dst)
    } else if name.contains("port_sec") {
        let port = pipeline.map_or("?", |p| {
            if p.ingress {
                p.inport.as_str()
            } else {
                p.outport.as_deref().unwrap_or("?")
            }
        });
        format!(
            "port security of {port}{where_} refuses the packet's addresses \
                 (its port_security does not list them)"
        )
    } else if implicit {
        format!(
            "dropped{where_}: no logical flow of table {} matched",
            if name.is_empty() { "?" } else { name }
        )
    } else {
        format!(
            "dropped{where_} by table {}",
            if name.is_empty() { "?" } else { name }
        )
    };
    Verdict::NotDelivered { reason }
}

/// The packet replaced by a generated one (`arp`, `icmp4`...), in plain words.
fn replaced_by(flow: &Flow, what: &str, where_: &str) -> Verdict {
    let reason = match what {
        "arp" | "nd_ns" => format!(
            "the MAC of {} is unknown{where_}: OVN sends a neighbour request ({what}) \
                 instead, and no port on the way has this address",
            flow.ip4_dst
        ),
        "icmp4" | "icmp6" => format!(
            "answered{where_} with an ICMP error instead of being forwarded \
                 (e.g. a router's own address, or a TTL or MTU problem)"
        ),
        "tcp_reset" | "sctp_abort" => {
            format!("answered{where_} with a reset ({what}) instead of being forwarded")
        }
        other => format!("replaced{where_} by a generated packet ({other})"),
    };
    Verdict::NotDelivered { reason }
}

impl fmt::Display for Diagnosis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let flow = &self.flow;
        writeln!(
            f,
            "Flow: pod {} (port {} on switch {}, {} {}) -> {} {}, a NEW connection",
            flow.pod,
            flow.port,
            flow.switch,
            flow.eth_src,
            flow.ip4_src,
            flow.ip4_dst,
            flow.service()
        )?;
        let path: Vec<String> = self.path.iter().map(Hop::to_string).collect();
        writeln!(f, "  path: {}", path.join(" -> "))?;
        let mut show_trace = false;
        match &self.verdict {
            Verdict::Delivered { port } => writeln!(f, "  verdict: delivered to {port}")?,
            Verdict::DroppedByNetworkPolicy {
                policy,
                direction,
                pod,
                acl,
                fix,
            } => {
                let side = match direction {
                    PolicyDirection::Egress => format!("egress of {pod}"),
                    PolicyDirection::Ingress => format!("ingress of the destination pod {pod}"),
                };
                match policy {
                    Some(policy) => writeln!(
                        f,
                        "  verdict: {} by NetworkPolicy {policy} ({side})",
                        verb(&acl.action)
                    )?,
                    None => writeln!(
                        f,
                        "  verdict: {} by the NetworkPolicy port group {} ({side}), \
                         which is no longer in the Northbound database",
                        verb(&acl.action),
                        acl.port_group.as_deref().unwrap_or("?")
                    )?,
                }
                writeln!(f, "    ACL {acl}")?;
                writeln!(f, "  fix: {fix}")?;
            }
            Verdict::DroppedByNeutronPgDrop {
                port,
                security_groups,
                fixes,
                ..
            } => {
                writeln!(
                    f,
                    "  verdict: dropped by Neutron's {DROP_PORT_GROUP}: no security group of \
                     {port} admits this flow"
                )?;
                writeln!(
                    f,
                    "    security groups: {}",
                    if security_groups.is_empty() {
                        "none".to_string()
                    } else {
                        security_groups.join(", ")
                    }
                )?;
                for fix in fixes {
                    writeln!(f, "  fix: {fix}")?;
                }
            }
            Verdict::DroppedBySecurityGroup {
                security_group,
                port,
                acl,
            } => {
                write!(
                    f,
                    "  verdict: {} by a rule of Neutron security group {security_group}",
                    verb(&acl.action)
                )?;
                match port {
                    Some(port) => writeln!(f, " guarding {port}")?,
                    None => writeln!(f)?,
                }
                writeln!(f, "    ACL {acl}")?;
            }
            Verdict::DroppedByAcl { acl } => {
                writeln!(
                    f,
                    "  verdict: {} by an ACL that is neither a NetworkPolicy's nor a \
                     Neutron security group's",
                    verb(&acl.action)
                )?;
                writeln!(f, "    ACL {acl}")?;
                show_trace = true;
            }
            Verdict::NotDelivered { reason } => {
                writeln!(f, "  verdict: not delivered: {reason}")?;
                show_trace = true;
            }
        }
        if show_trace {
            writeln!(f, "  trace:")?;
            for line in &self.trace {
                writeln!(f, "    {line}")?;
            }
        }
        Ok(())
    }
}

fn verb(action: &str) -> &'static str {
    if action.starts_with("reject") {
        "rejected"
    } else {
        "dropped"
    }
}

#[cfg(test)]
mod tests;
