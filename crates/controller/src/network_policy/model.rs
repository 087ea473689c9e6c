//! The rows one NetworkPolicy needs, computed from the policy, the pods (with
//! their switch ports) and the namespaces' labels: a pure function, tested
//! here without OVN.
//!
//! - A Port_Group `rovn_np_<hash of namespace/name>` holding the switch
//!   ports of the pods the policy selects.
//! - Per rule with pod or namespace selectors, two Address_Sets
//!   (`<group>_in<i>_ip4`/`_ip6`, `_eg<i>_...`) of the peers' addresses.
//! - ACLs on the group, all in our priority band: per isolated direction a
//!   `drop` of all IP at [`DENY`], and at [`ALLOW`] an `allow-related` per
//!   rule, IPv6 neighbour discovery, and (ingress) the node-link network the
//!   kubelet's probes come from. Allows of every policy outrank the drops of
//!   every policy, so policies add up as Kubernetes says. Egress ACLs are
//!   applied after the load balancers: they see a Service's backend, not
//!   its ClusterIP.
//!
//! Peers are the pods of the policy's own VPC only: with overlapping CIDRs
//! an address in another VPC may also be one of this VPC's.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::networking::v1::{NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::core::{Selector, SelectorExt};
use ovn::nb::{Acl, AddressSet, PortGroup};
use ovsdb::Uuid;

/// Priority of the default-deny ACLs of isolated pods.
pub const DENY: i64 = 2000;
/// Priority of the ACLs admitting traffic (above every policy's deny).
pub const ALLOW: i64 = 2001;
/// `external_ids` key of our ACLs and Address_Sets: the rule they implement
/// (`ingress-deny`, `ingress-node`, `ingress-nd`, `ingress-<i>`, `egress-...`).
pub const RULE_KEY: &str = "rovn:rule";
/// Prefix of our port groups' names (never Neutron's `pg_`).
pub const GROUP_PREFIX: &str = "rovn_np_";

/// A pod as policies see it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyPod {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Named container ports: (name, protocol `TCP`/`UDP`/`SCTP`, number).
    pub named_ports: Vec<(String, String, i32)>,
    /// Its switch port of ours, once the pod has one.
    pub port: Option<PodPort>,
}

/// A pod's switch port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodPort {
    /// The Logical_Switch_Port.
    pub uuid: Uuid,
    /// Its name.
    pub name: String,
    /// The pod's addresses.
    pub ips: Vec<IpAddr>,
    /// The VPC of its Subnet (`None` while the Subnet is not accepted).
    pub vpc: Option<String>,
}

/// What a policy is evaluated against.
#[derive(Clone, Debug)]
pub struct Cluster<'a> {
    /// Every pod.
    pub pods: &'a [PolicyPod],
    /// Every namespace's labels.
    pub namespaces: &'a BTreeMap<String, BTreeMap<String, String>>,
    /// The VPC of the policy's namespace (peers are taken from it only).
    pub vpc: Option<&'a str>,
    /// Where node-originated traffic (kubelet probes) comes from.
    pub node_link: IpNet,
}

/// The rows of one policy.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// The port group (name and ports; its ACLs are [`Plan::acls`]).
    pub group: PortGroup,
    /// The peers' address sets.
    pub address_sets: Vec<AddressSet>,
    /// The ACLs, each with [`RULE_KEY`].
    pub acls: Vec<Acl>,
    /// What could not be implemented (e.g. an invalid selector).
    pub problems: Vec<String>,
}

/// The port group name of policy `namespace/name`: FNV-1a of the key, so
/// that it is a valid OVN identifier of bounded length.
pub fn group_name(namespace: &str, name: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in format!("{namespace}/{name}").bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{GROUP_PREFIX}{hash:016x}")
}

/// Every peer of every rule of `spec`, ingress and egress.
pub fn peers(spec: &NetworkPolicySpec) -> impl Iterator<Item = &NetworkPolicyPeer> {
    let ingress = spec.ingress.iter().flatten();
    let egress = spec.egress.iter().flatten();
    ingress
        .flat_map(|r| r.from.iter().flatten())
        .chain(egress.flat_map(|r| r.to.iter().flatten()))
}

/// Whether a pod of another namespace (labelled `namespace_labels`), labelled
/// any of `pod_labels` (before and after a change), may be a peer of a
/// policy with `spec` in its rules, or name a port an egress rule resolves.
/// Unreadable selectors count as a yes.
pub fn may_concern_foreign_pod(
    spec: &NetworkPolicySpec,
    namespace_labels: &BTreeMap<String, String>,
    pod_labels: &[&BTreeMap<String, String>],
) -> bool {
    let matches = |selector: &LabelSelector, labels: &BTreeMap<String, String>| {
        Selector::try_from(selector.clone()).map_or(true, |s| s.matches(labels))
    };
    let named_egress = spec
        .egress
        .iter()
        .flatten()
        .flat_map(|r| r.ports.iter().flatten())
        .any(|p| matches!(p.port, Some(IntOrString::String(_))));
    named_egress
        || peers(spec).any(|peer| {
            peer.namespace_selector
                .as_ref()
                .is_some_and(|ns| matches(ns, namespace_labels))
                && peer
                    .pod_selector
                    .as_ref()
                    .is_none_or(|ps| pod_labels.iter().any(|labels| matches(ps, labels)))
        })
}

/// The direction of a rule, with what differs in its matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    fn label(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
    fn short(self) -> &'static str {
        match self {
            Direction::Ingress => "in",
            Direction::Egress => "eg",
        }
    }
    /// `to-lport` matches the selected pod as `outport`; `from-lport` as `inport`.
    fn ovn(self) -> &'static str {
        match self {
            Direction::Ingress => "to-lport",
            Direction::Egress => "from-lport",
        }
    }
    fn port_field(self) -> &'static str {
        match self {
            Direction::Ingress => "outport",
            Direction::Egress => "inport",
        }
    }
    /// The peer's address field: the source of ingress, the destination of egress.
    fn peer_field(self) -> &'static str {
        match self {
            Direction::Ingress => "src",
            Direction::Egress => "dst",
        }
    }
}

fn selector(selector: &LabelSelector, what: &str, problems: &mut Vec<String>) -> Option<Selector> {
    match Selector::try_from(selector.clone()) {
        Ok(selector) => Some(selector),
        Err(error) => {
            problems.push(format!("invalid {what}: {error}"));
            None
        }
    }
}

/// The policy types: as given, or (like the API server's default) Ingress,
/// and Egress when there are egress rules.
fn policy_types(spec: &NetworkPolicySpec) -> (bool, bool) {
    match &spec.policy_types {
        Some(types) if !types.is_empty() => (
            types.iter().any(|t| t == "Ingress"),
            types.iter().any(|t| t == "Egress"),
        ),
        _ => (true, spec.egress.as_ref().is_some_and(|e| !e.is_empty())),
    }
}

/// Builds the rows of policy `namespace/name`.
pub fn plan(namespace: &str, name: &str, spec: &NetworkPolicySpec, cluster: &Cluster<'_>) -> Plan {
    let group = group_name(namespace, name);
    let mut problems = Vec::new();
    let pod_selector = match &spec.pod_selector {
        Some(s) => selector(s, "podSelector", &mut problems),
        None => Some(Selector::default()),
    };
    let selected: Vec<&PolicyPod> = cluster
        .pods
        .iter()
        .filter(|pod| pod.namespace == namespace && pod.port.is_some())
        .filter(|pod| {
            pod_selector
                .as_ref()
                .is_some_and(|s| s.matches(&pod.labels))
        })
        .collect();
    let mut plan = Plan {
        group: PortGroup {
            name: group.clone(),
            ports: selected
                .iter()
                .filter_map(|pod| pod.port.as_ref().map(|p| p.uuid))
                .collect(),
            ..PortGroup::default()
        },
        ..Plan::default()
    };
    let acl_name: String = format!("{namespace}/{name}").chars().take(63).collect();
    let mut builder = Builder {
        group: &group,
        namespace,
        cluster,
        selected: &selected,
        plan: &mut plan,
        acl_name,
        problems: &mut problems,
    };
    let (ingress, egress) = policy_types(spec);
    if ingress {
        builder.isolate(Direction::Ingress);
        builder.acl(
            Direction::Ingress,
            "ingress-node".to_string(),
            ALLOW,
            format!(
                "outport == @{group} && {}.src == {}",
                family(&cluster.node_link.addr()),
                cluster.node_link
            ),
        );
        for (i, rule) in spec.ingress.iter().flatten().enumerate() {
            builder.rule(
                Direction::Ingress,
                i,
                rule.from.as_deref(),
                rule.ports.as_deref(),
            );
        }
    }
    if egress {
        builder.isolate(Direction::Egress);
        for (i, rule) in spec.egress.iter().flatten().enumerate() {
            builder.rule(
                Direction::Egress,
                i,
                rule.to.as_deref(),
                rule.ports.as_deref(),
            );
        }
    }
    plan.problems = problems;
    plan
}

fn family(ip: &IpAddr) -> &'static str {
    if ip.is_ipv4() { "ip4" } else { "ip6" }
}

struct Builder<'a> {
    group: &'a str,
    namespace: &'a str,
    cluster: &'a Cluster<'a>,
    selected: &'a [&'a PolicyPod],
    plan: &'a mut Plan,
    acl_name: String,
    problems: &'a mut Vec<String>,
}

impl Builder<'_> {
    fn acl(&mut self, direction: Direction, rule: String, priority: i64, match_: String) {
        let action = if priority == DENY {
            "drop"
        } else {
            "allow-related"
        };
        let mut options = BTreeMap::new();
        if direction == Direction::Egress {
            options.insert("apply-after-lb".to_string(), "true".to_string());
        }
        self.plan.acls.push(Acl {
            direction: direction.ovn().to_string(),
            priority,
            match_,
            action: action.to_string(),
            name: Some(self.acl_name.clone()),
            options,
            external_ids: BTreeMap::from([(RULE_KEY.to_string(), rule)]),
            ..Acl::default()
        });
    }

    /// The default deny of a direction, and neighbour discovery let through.
    fn isolate(&mut self, direction: Direction) {
        let (label, port, group) = (direction.label(), direction.port_field(), self.group);
        self.acl(
            direction,
            format!("{label}-deny"),
            DENY,
            format!("{port} == @{group} && ip"),
        );
        self.acl(
            direction,
            format!("{label}-nd"),
            ALLOW,
            format!("{port} == @{group} && (nd || nd_rs || nd_ra)"),
        );
    }

    /// The pods a selector peer stands for: with a port, in the policy's VPC.
    fn peer_pods(&mut self, peer: &NetworkPolicyPeer) -> Vec<&'_ PolicyPod> {
        let pods = match &peer.pod_selector {
            Some(s) => selector(s, "podSelector of a peer", self.problems),
            None => Some(Selector::default()),
        };
        let namespaces: Option<BTreeSet<&str>> = match &peer.namespace_selector {
            Some(s) => selector(s, "namespaceSelector of a peer", self.problems).map(|s| {
                self.cluster
                    .namespaces
                    .iter()
                    .filter(|(_, labels)| s.matches(labels))
                    .map(|(namespace, _)| namespace.as_str())
                    .collect()
            }),
            None => Some(BTreeSet::from([self.namespace])),
        };
        let (Some(pods), Some(namespaces)) = (pods, namespaces) else {
            return Vec::new();
        };
        let vpc = self.cluster.vpc;
        self.cluster
            .pods
            .iter()
            .filter(|pod| namespaces.contains(pod.namespace.as_str()))
            .filter(|pod| {
                pod.port
                    .as_ref()
                    .is_some_and(|port| vpc.is_none() || port.vpc.as_deref() == vpc)
            })
            .filter(|pod| pods.matches(&pod.labels))
            .collect()
    }

    /// One rule: its address sets and its ACL (none when its ports resolve
    /// to nothing).
    fn rule(
        &mut self,
        direction: Direction,
        index: usize,
        peers: Option<&[NetworkPolicyPeer]>,
        ports: Option<&[NetworkPolicyPort]>,
    ) {
        let field = direction.peer_field();
        let mut peer_terms = Vec::new();
        let mut peer_pods: Vec<PolicyPod> = Vec::new();
        let mut has_selector = false;
        for peer in peers.unwrap_or_default() {
            match &peer.ip_block {
                Some(block) => match ip_block_term(field, &block.cidr, block.except.as_deref()) {
                    Ok(term) => peer_terms.push(term),
                    Err(problem) => self.problems.push(problem),
                },
                None => {
                    has_selector = true;
                    let pods: Vec<PolicyPod> = self.peer_pods(peer).into_iter().cloned().collect();
                    peer_pods.extend(pods);
                }
            }
        }
        if has_selector {
            let set = format!("{}_{}{index}", self.group, direction.short());
            let addresses: Vec<IpAddr> = peer_pods
                .iter()
                .filter_map(|pod| pod.port.as_ref())
                .flat_map(|port| port.ips.iter().copied())
                .collect();
            for (suffix, v4) in [("ip4", true), ("ip6", false)] {
                self.plan.address_sets.push(AddressSet {
                    name: format!("{set}_{suffix}"),
                    addresses: addresses
                        .iter()
                        .filter(|ip| ip.is_ipv4() == v4)
                        .map(IpAddr::to_string)
                        .collect(),
                    external_ids: BTreeMap::from([(
                        RULE_KEY.to_string(),
                        format!("{}-{index}", direction.label()),
                    )]),
                    ..AddressSet::default()
                });
            }
            peer_terms.push(format!(
                "ip4.{field} == ${set}_ip4 || ip6.{field} == ${set}_ip6"
            ));
        }
        let peers_given = peers.is_some_and(|p| !p.is_empty());
        if peers_given && peer_terms.is_empty() {
            return; // only invalid peers: admits nothing
        }
        // Named egress ports are the peers' container ports: of the rule's
        // selected peers, or of any pod of the VPC when it has none.
        let named_targets: Vec<PolicyPod> = match direction {
            Direction::Ingress => self.selected.iter().map(|p| (*p).clone()).collect(),
            Direction::Egress if has_selector => peer_pods.clone(),
            Direction::Egress => {
                let vpc = self.cluster.vpc;
                self.cluster
                    .pods
                    .iter()
                    .filter(|pod| {
                        pod.port
                            .as_ref()
                            .is_some_and(|port| vpc.is_none() || port.vpc.as_deref() == vpc)
                    })
                    .cloned()
                    .collect()
            }
        };
        let port_terms = match ports {
            Some(ports) if !ports.is_empty() => {
                let terms: Vec<String> = ports
                    .iter()
                    .filter_map(|port| port_term(direction, port, &named_targets, self.problems))
                    .collect();
                if terms.is_empty() {
                    return; // named ports no pod has: admits nothing
                }
                Some(terms)
            }
            _ => None,
        };
        let mut match_ = format!("{} == @{}", direction.port_field(), self.group);
        if peers_given {
            let _ = write!(match_, " && ({})", peer_terms.join(" || "));
        } else {
            match_.push_str(" && ip");
        }
        if let Some(terms) = port_terms {
            let _ = write!(match_, " && ({})", terms.join(" || "));
        }
        self.acl(
            direction,
            format!("{}-{index}", direction.label()),
            ALLOW,
            match_,
        );
    }
}

/// `(ip4.src == 10.0.0.0/8 && ip4.src != {10.1.0.0/16})`.
fn ip_block_term(field: &str, cidr: &str, except: Option<&[String]>) -> Result<String, String> {
    let net: IpNet = cidr
        .parse()
        .map_err(|_| format!("invalid ipBlock cidr {cidr:?}"))?;
    let fam = family(&net.addr());
    let mut term = format!("{fam}.{field} == {}", net.trunc());
    let mut excepts = Vec::new();
    for e in except.unwrap_or_default() {
        let except: IpNet = e
            .parse()
            .map_err(|_| format!("invalid ipBlock except {e:?}"))?;
        if family(&except.addr()) != fam {
            return Err(format!("ipBlock except {e} is not in the family of {cidr}"));
        }
        excepts.push(except.trunc().to_string());
    }
    if !excepts.is_empty() {
        let _ = write!(term, " && {fam}.{field} != {{{}}}", excepts.join(", "));
    }
    Ok(format!("({term})"))
}

/// The match of one `ports` entry; `None` when it names a port no target
/// pod has (or is invalid).
fn port_term(
    direction: Direction,
    port: &NetworkPolicyPort,
    targets: &[PolicyPod],
    problems: &mut Vec<String>,
) -> Option<String> {
    let protocol = port.protocol.as_deref().unwrap_or("TCP");
    let proto = match protocol {
        "TCP" => "tcp",
        "UDP" => "udp",
        "SCTP" => "sctp",
        other => {
            problems.push(format!("unknown protocol {other:?}"));
            return None;
        }
    };
    match &port.port {
        None => Some(proto.to_string()),
        Some(IntOrString::Int(number)) => Some(match port.end_port {
            Some(end) if end > *number => {
                format!("({proto}.dst >= {number} && {proto}.dst <= {end})")
            }
            _ => format!("{proto}.dst == {number}"),
        }),
        Some(IntOrString::String(named)) => {
            // Targets by the number the name stands for on each.
            let mut by_number: BTreeMap<i32, Vec<&PolicyPod>> = BTreeMap::new();
            for pod in targets {
                if let Some((_, _, number)) = pod
                    .named_ports
                    .iter()
                    .find(|(name, p, _)| name == named && p == protocol)
                {
                    by_number.entry(*number).or_default().push(pod);
                }
            }
            let terms: Vec<String> = by_number
                .into_iter()
                .filter_map(|(number, pods)| {
                    let who = named_targets(direction, &pods)?;
                    Some(format!("({who} && {proto}.dst == {number})"))
                })
                .collect();
            (!terms.is_empty()).then(|| terms.join(" || "))
        }
    }
}

/// The pods having a named port, as a match: their switch ports (ingress:
/// the selected pod receiving) or their addresses (egress: the peer).
fn named_targets(direction: Direction, pods: &[&PolicyPod]) -> Option<String> {
    let ports = pods.iter().filter_map(|pod| pod.port.as_ref());
    match direction {
        Direction::Ingress => {
            let names: Vec<String> = ports.map(|p| format!("{:?}", p.name)).collect();
            (!names.is_empty()).then(|| format!("outport == {{{}}}", names.join(", ")))
        }
        Direction::Egress => {
            let ips: BTreeSet<IpAddr> = ports.flat_map(|p| p.ips.iter().copied()).collect();
            let terms: Vec<String> = [("ip4", true), ("ip6", false)]
                .into_iter()
                .filter_map(|(fam, v4)| {
                    let set: Vec<String> = ips
                        .iter()
                        .filter(|ip| ip.is_ipv4() == v4)
                        .map(IpAddr::to_string)
                        .collect();
                    (!set.is_empty()).then(|| format!("{fam}.dst == {{{}}}", set.join(", ")))
                })
                .collect();
            match terms.len() {
                0 => None,
                1 => terms.into_iter().next(),
                _ => Some(format!("({})", terms.join(" || "))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::networking::v1::{
        IPBlock, NetworkPolicyEgressRule, NetworkPolicyIngressRule,
    };

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn pod(namespace: &str, name: &str, app: &str, ip: &str, vpc: &str) -> PolicyPod {
        PolicyPod {
            namespace: namespace.into(),
            name: name.into(),
            labels: labels(&[("app", app)]),
            named_ports: vec![("http".into(), "TCP".into(), 8080)],
            port: Some(PodPort {
                uuid: Uuid::from_u128(ip.bytes().map(u128::from).sum()),
                name: format!("{name}.{namespace}"),
                ips: vec![ip.parse().unwrap()],
                vpc: Some(vpc.into()),
            }),
        }
    }

    fn select(pairs: &[(&str, &str)]) -> LabelSelector {
        LabelSelector {
            match_labels: Some(labels(pairs)),
            ..LabelSelector::default()
        }
    }

    fn pods() -> Vec<PolicyPod> {
        vec![
            pod("a", "web", "web", "10.0.2.5", "r1"),
            pod("a", "db", "db", "10.0.2.6", "r1"),
            pod("b", "client", "client", "10.0.3.5", "r1"),
            pod("c", "other", "client", "10.0.3.5", "r2"),
            PolicyPod {
                port: None,
                ..pod("a", "pending", "web", "10.0.2.9", "r1")
            },
        ]
    }

    fn namespaces() -> BTreeMap<String, BTreeMap<String, String>> {
        [("a", "front"), ("b", "back"), ("c", "back")]
            .into_iter()
            .map(|(ns, tier)| (ns.to_string(), labels(&[("tier", tier)])))
            .collect()
    }

    fn cluster<'a>(
        pods: &'a [PolicyPod],
        namespaces: &'a BTreeMap<String, BTreeMap<String, String>>,
    ) -> Cluster<'a> {
        Cluster {
            pods,
            namespaces,
            vpc: Some("r1"),
            node_link: "100.64.0.0/16".parse().unwrap(),
        }
    }

    fn rule<'p>(plan: &'p Plan, rule: &str) -> Option<&'p Acl> {
        plan.acls
            .iter()
            .find(|acl| acl.external_ids.get(RULE_KEY).map(String::as_str) == Some(rule))
    }

    #[test]
    fn default_deny_selects_pods_with_ports_and_admits_the_nodes() {
        let (pods, namespaces) = (pods(), namespaces());
        let spec = NetworkPolicySpec {
            pod_selector: Some(select(&[("app", "web")])),
            ..NetworkPolicySpec::default()
        };
        let plan = plan("a", "deny", &spec, &cluster(&pods, &namespaces));
        let group = group_name("a", "deny");
        assert!(
            group.starts_with("rovn_np_") && group.len() == 24,
            "{group}"
        );
        assert_eq!(plan.group.name, group);
        assert_eq!(
            plan.group.ports,
            BTreeSet::from([pods[0].port.as_ref().unwrap().uuid]),
            "only web, and not the pod without a port"
        );
        let rules: Vec<&str> = plan
            .acls
            .iter()
            .map(|a| a.external_ids[RULE_KEY].as_str())
            .collect();
        assert_eq!(rules, ["ingress-deny", "ingress-nd", "ingress-node"]);
        let deny = rule(&plan, "ingress-deny").unwrap();
        assert_eq!(
            (deny.direction.as_str(), deny.priority, deny.action.as_str()),
            ("to-lport", DENY, "drop")
        );
        assert_eq!(deny.match_, format!("outport == @{group} && ip"));
        assert_eq!(
            rule(&plan, "ingress-node").unwrap().match_,
            format!("outport == @{group} && ip4.src == 100.64.0.0/16")
        );
        assert!(
            plan.acls
                .iter()
                .all(|a| ovn::owned::owner::ACL_PRIORITIES.contains(&a.priority))
        );
        assert_eq!(plan.acls[0].name.as_deref(), Some("a/deny"));
        assert!(plan.problems.is_empty());
    }

    #[test]
    fn peers_from_selectors_become_address_sets_of_the_policys_vpc() {
        let (pods, namespaces) = (pods(), namespaces());
        let spec = NetworkPolicySpec {
            pod_selector: None,
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![
                    NetworkPolicyPeer {
                        namespace_selector: Some(select(&[("tier", "back")])),
                        ..NetworkPolicyPeer::default()
                    },
                    NetworkPolicyPeer {
                        pod_selector: Some(select(&[("app", "db")])),
                        ..NetworkPolicyPeer::default()
                    },
                ]),
                ports: Some(vec![NetworkPolicyPort {
                    port: Some(IntOrString::Int(80)),
                    end_port: Some(90),
                    ..NetworkPolicyPort::default()
                }]),
            }]),
            ..NetworkPolicySpec::default()
        };
        let plan = plan("a", "p", &spec, &cluster(&pods, &namespaces));
        let group = &plan.group.name;
        assert_eq!(plan.group.ports.len(), 2, "empty podSelector: web and db");
        let sets: Vec<(&str, Vec<&str>)> = plan
            .address_sets
            .iter()
            .map(|s| {
                (
                    s.name.as_str(),
                    s.addresses.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        let in0 = format!("{group}_in0");
        assert_eq!(
            sets,
            [
                (format!("{in0}_ip4").as_str(), vec!["10.0.2.6", "10.0.3.5"]),
                (format!("{in0}_ip6").as_str(), vec![]),
            ],
            "b/client (r1) and a/db; c/other is in another VPC"
        );
        assert_eq!(
            rule(&plan, "ingress-0").unwrap().match_,
            format!(
                "outport == @{group} && (ip4.src == ${in0}_ip4 || ip6.src == ${in0}_ip6) \
                 && ((tcp.dst >= 80 && tcp.dst <= 90))"
            )
        );
    }

    #[test]
    fn ip_blocks_named_ports_and_egress() {
        let (pods, namespaces) = (pods(), namespaces());
        let spec = NetworkPolicySpec {
            pod_selector: Some(select(&[("app", "client")])),
            policy_types: Some(vec!["Egress".into()]),
            egress: Some(vec![
                NetworkPolicyEgressRule {
                    to: Some(vec![NetworkPolicyPeer {
                        ip_block: Some(IPBlock {
                            cidr: "10.0.1.0/24".into(),
                            except: Some(vec!["10.0.1.60/32".into()]),
                        }),
                        ..NetworkPolicyPeer::default()
                    }]),
                    ports: Some(vec![NetworkPolicyPort {
                        port: Some(IntOrString::Int(8080)),
                        protocol: Some("SCTP".into()),
                        ..NetworkPolicyPort::default()
                    }]),
                },
                NetworkPolicyEgressRule {
                    to: None,
                    ports: Some(vec![NetworkPolicyPort {
                        port: Some(IntOrString::String("http".into())),
                        ..NetworkPolicyPort::default()
                    }]),
                },
                NetworkPolicyEgressRule {
                    to: None,
                    ports: Some(vec![NetworkPolicyPort {
                        port: Some(IntOrString::String("nowhere".into())),
                        ..NetworkPolicyPort::default()
                    }]),
                },
            ]),
            ..NetworkPolicySpec::default()
        };
        let plan = plan("b", "out", &spec, &cluster(&pods, &namespaces));
        let group = &plan.group.name;
        assert!(rule(&plan, "ingress-deny").is_none(), "egress only");
        let deny = rule(&plan, "egress-deny").unwrap();
        assert_eq!(deny.direction, "from-lport");
        assert_eq!(deny.match_, format!("inport == @{group} && ip"));
        assert_eq!(
            deny.options.get("apply-after-lb").map(String::as_str),
            Some("true")
        );
        assert_eq!(
            rule(&plan, "egress-0").unwrap().match_,
            format!(
                "inport == @{group} && ((ip4.dst == 10.0.1.0/24 && ip4.dst != {{10.0.1.60/32}})) \
                 && (sctp.dst == 8080)"
            )
        );
        assert_eq!(
            rule(&plan, "egress-1").unwrap().match_,
            format!(
                "inport == @{group} && ip && ((ip4.dst == {{10.0.2.5, 10.0.2.6, 10.0.3.5}} \
                 && tcp.dst == 8080))"
            ),
            "every pod of the VPC naming its port http"
        );
        assert!(
            rule(&plan, "egress-2").is_none(),
            "a port no pod names admits nothing"
        );
        assert!(plan.address_sets.is_empty());
    }

    #[test]
    fn named_ingress_ports_are_the_selected_pods_own() {
        let (mut pods, namespaces) = (pods(), namespaces());
        pods[1].named_ports = vec![("http".into(), "TCP".into(), 9090)];
        let spec = NetworkPolicySpec {
            pod_selector: None,
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: None,
                ports: Some(vec![NetworkPolicyPort {
                    port: Some(IntOrString::String("http".into())),
                    ..NetworkPolicyPort::default()
                }]),
            }]),
            ..NetworkPolicySpec::default()
        };
        let plan = plan("a", "named", &spec, &cluster(&pods, &namespaces));
        assert_eq!(
            rule(&plan, "ingress-0").unwrap().match_,
            format!(
                "outport == @{} && ip && ((outport == {{\"web.a\"}} && tcp.dst == 8080) || \
                 (outport == {{\"db.a\"}} && tcp.dst == 9090))",
                plan.group.name
            )
        );
    }

    #[test]
    fn foreign_pods_concern_policies_whose_peers_may_select_them() {
        let spec = NetworkPolicySpec {
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![NetworkPolicyPeer {
                    namespace_selector: Some(select(&[("tier", "back")])),
                    pod_selector: Some(select(&[("app", "client")])),
                    ..NetworkPolicyPeer::default()
                }]),
                ports: None,
            }]),
            ..NetworkPolicySpec::default()
        };
        let back = labels(&[("tier", "back")]);
        let client = labels(&[("app", "client")]);
        let web = labels(&[("app", "web")]);
        assert!(may_concern_foreign_pod(&spec, &back, &[&client]));
        assert!(
            may_concern_foreign_pod(&spec, &back, &[&web, &client]),
            "relabelled out"
        );
        assert!(!may_concern_foreign_pod(&spec, &back, &[&web]));
        assert!(!may_concern_foreign_pod(
            &spec,
            &labels(&[("tier", "front")]),
            &[&client]
        ));
        let local = NetworkPolicySpec::default();
        assert!(!may_concern_foreign_pod(&local, &back, &[&client]));
    }

    #[test]
    fn an_empty_rule_list_denies_and_bad_input_is_reported() {
        let (pods, namespaces) = (pods(), namespaces());
        let spec = NetworkPolicySpec {
            pod_selector: None,
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![NetworkPolicyPeer {
                    ip_block: Some(IPBlock {
                        cidr: "10.0.0.0/8".into(),
                        except: Some(vec!["fd00::/64".into()]),
                    }),
                    ..NetworkPolicyPeer::default()
                }]),
                ports: None,
            }]),
            egress: Some(vec![]),
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
        };
        let plan = plan("a", "bad", &spec, &cluster(&pods, &namespaces));
        assert!(rule(&plan, "ingress-0").is_none(), "only an invalid peer");
        assert!(rule(&plan, "egress-deny").is_some());
        assert_eq!(plan.problems.len(), 1, "{:?}", plan.problems);
        assert!(
            plan.problems[0].contains("fd00::/64"),
            "{:?}",
            plan.problems
        );
    }
}
