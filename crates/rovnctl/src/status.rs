//! `rovnctl status`: is rovn healthy, and what to do when it is not.
//!
//! It reads the Northbound database (each remote's `_Server` row — a RAFT
//! member's role — and the rows: pods with a port, NetworkPolicies, node
//! links) and, when a kubeconfig is available, the API server: the
//! controller's Lease, the agents' DaemonSet and pods, the Vpcs and Subnets
//! and their conditions. [`gather`] does the reading into [`Observed`];
//! [`assess`] (pure) turns it into a [`Status`]: what was seen, and a
//! [`Finding`] with a remedy for everything that is not healthy. A
//! [`Severity::Problem`] makes the status unhealthy; a
//! [`Severity::Warning`] is worth knowing but does not: a Subnet on a
//! Neutron router whose pods cannot open connections to some VMs (their
//! security groups, which rovn never writes), fields rovn ignores, a
//! deletion waiting, no DaemonSet (agents run another way), no kubeconfig.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use anyhow::Result;
use api::condition::{
    ATTACHED, Condition, ConditionStatus, DELETION_BLOCKED, IMPORTED, NEUTRON_SECURITY_GROUPS,
    READY, ROUTER_MISSING, UNSUPPORTED, VALIDATED,
};
use api::node_link::NODE_KEY;
use api::{Subnet, Vpc, VpcType};
use ipnet::IpNet;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::ListParams;
use ovn::nb;
use ovn::owned::owner::{Kind, Owner};
use ovsdb::{
    Client, ClientConfig, Condition as Where, Operation, OperationResult, Remote, TlsFiles,
};
use serde::{Deserialize, Serialize};

use crate::connect::{self, ConnectArgs, NbAddress};
use crate::diagnose::{self, ingress_rule_command, security_group_id};
use crate::flow::NEUTRON_PORT_NAME;
use crate::snapshot::NbSnapshot;

/// The controller's leader-election Lease.
pub const LEASE_NAME: &str = "rovn-controller";
/// The agents' DaemonSet.
pub const AGENT_DAEMON_SET: &str = "rovn-agent";
/// How long one Northbound server gets to answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the read of the Northbound rows may wait for a connection.
const NB_TIMEOUT: Duration = Duration::from_secs(10);

/// What one Northbound remote says about the database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NbServer {
    /// The remote.
    pub remote: String,
    /// `standalone`, `clustered`, `relay`... (none when unreachable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Whether it is the leader (a standalone server always is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<bool>,
    /// Whether it is connected to its cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connected: Option<bool>,
    /// Why it did not answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl NbServer {
    fn clustered(&self) -> bool {
        self.model.as_deref() == Some("clustered")
    }
}

/// The Northbound database as `status` found it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Northbound {
    /// The remotes and where they come from.
    pub address: NbAddress,
    /// The remote that answered the read of the rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered: Option<String>,
    /// Why the rows could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The RAFT leader, for a cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raft_leader: Option<String>,
    /// Each remote.
    pub servers: Vec<NbServer>,
}

/// The controller that leads (holds the Lease).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Controller {
    /// The Lease (`namespace/name`).
    pub lease: String,
    /// Its holder: the leading controller's identity (none: released).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<String>,
    /// When the holder last renewed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_time: Option<String>,
    /// How long ago that was, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewed_seconds_ago: Option<i64>,
    /// How long the Lease lasts without renewal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_duration_seconds: Option<i32>,
}

/// The agents' DaemonSet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DaemonSetSeen {
    /// `namespace/name`.
    pub name: String,
    /// Agents it should run.
    pub desired: i32,
    /// Agents ready.
    pub ready: i32,
}

/// One node: its agent pod and its node-link ports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeAgent {
    /// The node.
    pub node: String,
    /// The agent pod on it (none: no pod of the DaemonSet there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// Whether that pod is Ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<bool>,
    /// Its containers' restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarts: Option<i32>,
    /// The VPCs with a node-link port for this node in the Northbound database.
    pub node_links: Vec<String>,
}

/// The agents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Agents {
    /// The DaemonSet, when found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daemon_set: Option<DaemonSetSeen>,
    /// Every node with an agent pod or a node-link port.
    pub nodes: Vec<NodeAgent>,
}

/// How much there is (none: not read).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    /// Vpcs imported from Neutron routers.
    pub imported_vpcs: Option<usize>,
    /// Vpcs of rovn's own.
    pub own_vpcs: Option<usize>,
    /// Subnets.
    pub subnets: Option<usize>,
    /// Pods with a port in the Northbound database.
    pub pods: Option<usize>,
    /// NetworkPolicies with rows in the Northbound database.
    pub network_policies: Option<usize>,
}

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// rovn is not healthy (exit code 1).
    Problem,
    /// Worth knowing; rovn is healthy.
    Warning,
}

/// Something not healthy, and what to do about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// How much it matters.
    pub severity: Severity,
    /// What it is about (`Subnet net2`, `Northbound`, `agent on node n1`...).
    pub subject: String,
    /// What is wrong.
    pub summary: String,
    /// The condition behind it (Vpcs and Subnets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<Condition>,
    /// What to do.
    pub remedy: String,
}

/// What `rovnctl status` reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// No [`Severity::Problem`] finding.
    pub healthy: bool,
    /// Whether the API server was asked (a kubeconfig was available).
    pub api_checked: bool,
    /// The Northbound database.
    pub northbound: Northbound,
    /// The leading controller (none: not read, or no Lease).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<Controller>,
    /// The agents.
    pub agents: Agents,
    /// How much there is.
    pub counts: Counts,
    /// Everything not healthy, problems first.
    pub findings: Vec<Finding>,
}

/// What was read from the API server; each part may have failed.
#[derive(Debug, Clone)]
pub struct KubeObserved {
    /// The namespace of the Lease.
    pub lease_namespace: String,
    /// The Lease (`None`: absent).
    pub lease: Result<Option<Lease>, String>,
    /// The namespace of the DaemonSet.
    pub namespace: String,
    /// The DaemonSet (`None`: absent).
    pub daemon_set: Result<Option<DaemonSet>, String>,
    /// Its pods.
    pub agent_pods: Result<Vec<Pod>, String>,
    /// Every Vpc.
    pub vpcs: Result<Vec<Vpc>, String>,
    /// Every Subnet.
    pub subnets: Result<Vec<Subnet>, String>,
}

/// Everything `status` read.
#[derive(Debug, Clone)]
pub struct Observed {
    /// The Northbound remotes.
    pub address: NbAddress,
    /// Each remote's answer.
    pub servers: Vec<NbServer>,
    /// The remote that answered the read of the rows.
    pub answered: Option<String>,
    /// The rows.
    pub nb: Result<NbSnapshot, String>,
    /// The API server's objects (`None`: no kubeconfig).
    pub kube: Option<KubeObserved>,
    /// When.
    pub now: Timestamp,
}

/// Reads everything `status` looks at; failures are kept in [`Observed`].
pub async fn gather(args: &ConnectArgs, lease_namespace: &str) -> Result<Observed> {
    let kube = args.kube().await?;
    let address = args.nb_address(kube.as_ref()).await;
    let tls = args.tls();
    let remotes = Remote::parse_list(&address.remotes)?;
    let probes: Vec<_> = remotes
        .into_iter()
        .map(|remote| tokio::spawn(probe_server(remote, tls.clone())))
        .collect();
    // The probes run meanwhile.
    let (nb, answered) = match read_nb(&address.remotes, tls).await {
        Ok((snapshot, answered)) => (Ok(snapshot), answered),
        Err(error) => (Err(format!("{error:#}")), None),
    };
    let mut servers = Vec::new();
    for probe in probes {
        servers.push(probe.await?);
    }
    let kube = match kube {
        Some(client) => Some(read_kube(&client, &args.rovn_namespace, lease_namespace).await),
        None => None,
    };
    Ok(Observed {
        address,
        servers,
        answered,
        nb,
        kube,
        now: Timestamp::now(),
    })
}

async fn read_nb(remotes: &str, tls: Option<TlsFiles>) -> Result<(NbSnapshot, Option<String>)> {
    let mut config = connect::client_config(remotes, tls)?;
    config.wait_for_connection = NB_TIMEOUT;
    let client = connect::connect_with(config).await?;
    let snapshot = NbSnapshot::read(&client).await?;
    Ok((snapshot, client.current_remote().map(|r| r.to_string())))
}

/// What `remote` says about the Northbound database in its `_Server` database.
async fn probe_server(remote: Remote, tls: Option<TlsFiles>) -> NbServer {
    let mut server = NbServer {
        remote: remote.to_string(),
        model: None,
        leader: None,
        connected: None,
        error: None,
    };
    let mut config = ClientConfig::new(vec![remote]);
    config.tls = tls;
    config.connect_timeout = PROBE_TIMEOUT;
    config.wait_for_connection = PROBE_TIMEOUT;
    let select = Operation::Select {
        table: "Database".into(),
        conditions: vec![Where::eq("name", nb::DATABASE)],
        columns: Some(vec!["model".into(), "leader".into(), "connected".into()]),
    };
    let answer = match Client::connect(config).await {
        Ok(client) => client.transact("_Server", vec![select]).await,
        Err(error) => Err(error),
    };
    match answer.as_deref() {
        Ok([OperationResult::Rows(rows)]) => match rows.first() {
            Some(row) => {
                server.model = row.get_str("model").map(str::to_string);
                server.leader = row.get_bool("leader");
                server.connected = row.get_bool("connected");
            }
            None => server.error = Some(format!("it serves no {} database", nb::DATABASE)),
        },
        Ok(other) => server.error = Some(format!("unexpected answer {other:?}")),
        Err(error) => server.error = Some(error.to_string()),
    }
    server
}

async fn read_kube(client: &kube::Client, namespace: &str, lease_namespace: &str) -> KubeObserved {
    let text = |e: kube::Error| e.to_string();
    let lease = kube::Api::<Lease>::namespaced(client.clone(), lease_namespace)
        .get_opt(LEASE_NAME)
        .await
        .map_err(text);
    let daemon_set = kube::Api::<DaemonSet>::namespaced(client.clone(), namespace)
        .get_opt(AGENT_DAEMON_SET)
        .await
        .map_err(text);
    let agent_pods = match &daemon_set {
        Ok(Some(ds)) => {
            let selector: Vec<String> = ds
                .spec
                .as_ref()
                .and_then(|s| s.selector.match_labels.as_ref())
                .into_iter()
                .flatten()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            kube::Api::<Pod>::namespaced(client.clone(), namespace)
                .list(&ListParams::default().labels(&selector.join(",")))
                .await
                .map(|list| list.items)
                .map_err(text)
        }
        _ => Ok(Vec::new()),
    };
    let vpcs = kube::Api::<Vpc>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .map_err(text);
    let subnets = kube::Api::<Subnet>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .map_err(text);
    KubeObserved {
        lease_namespace: lease_namespace.to_string(),
        lease,
        namespace: namespace.to_string(),
        daemon_set,
        agent_pods,
        vpcs,
        subnets,
    }
}

/// The status of what was observed.
pub fn assess(observed: &Observed) -> Status {
    let mut findings = Vec::new();
    let northbound = assess_northbound(observed, &mut findings);
    let nb = observed.nb.as_ref().ok();
    let mut counts = Counts {
        pods: nb.map(|nb| nb.owned_switch_ports(Kind::Pod).count()),
        network_policies: nb.map(|nb| {
            nb.owned_port_groups(Kind::NetworkPolicy)
                .filter_map(|g| Owner::of(&g.external_ids))
                .collect::<BTreeSet<_>>()
                .len()
        }),
        ..Counts::default()
    };
    let mut nodes: BTreeMap<String, NodeAgent> = BTreeMap::new();
    for port in nb
        .into_iter()
        .flat_map(|nb| nb.owned_switch_ports(Kind::NodeLink))
    {
        let (Some(node), Some(owner)) = (
            port.external_ids.get(NODE_KEY),
            Owner::of(&port.external_ids),
        ) else {
            continue;
        };
        node_entry(&mut nodes, node)
            .node_links
            .push(owner.object().to_string());
    }
    let mut controller = None;
    let mut daemon_set = None;
    match &observed.kube {
        None => findings.push(Finding {
            severity: Severity::Warning,
            subject: "Kubernetes".into(),
            summary: "no kubeconfig: the controller, the agents' pods and the conditions of \
                      Vpcs and Subnets were not checked"
                .into(),
            condition: None,
            remedy: "give --kubeconfig, or set $KUBECONFIG".into(),
        }),
        Some(kube) => {
            api_errors(kube, &mut findings);
            controller = assess_lease(kube, observed.now, &mut findings);
            daemon_set = assess_agents(kube, &mut nodes, &mut findings);
            if let Ok(vpcs) = &kube.vpcs {
                let imported = vpcs.iter().filter(|v| is_imported(v)).count();
                counts.imported_vpcs = Some(imported);
                counts.own_vpcs = Some(vpcs.len() - imported);
                for vpc in vpcs {
                    vpc_findings(vpc, &mut findings);
                }
            }
            if let Ok(subnets) = &kube.subnets {
                counts.subnets = Some(subnets.len());
                let vpcs = kube.vpcs.as_deref().unwrap_or_default();
                for subnet in subnets {
                    subnet_findings(subnet, vpcs, nb, &mut findings);
                }
            }
        }
    }
    for node in nodes.values_mut() {
        node.node_links.sort();
    }
    findings.sort_by_key(|f| f.severity);
    Status {
        healthy: findings.iter().all(|f| f.severity != Severity::Problem),
        api_checked: observed.kube.is_some(),
        northbound,
        controller,
        agents: Agents {
            daemon_set,
            nodes: nodes.into_values().collect(),
        },
        counts,
        findings,
    }
}

fn node_entry<'a>(nodes: &'a mut BTreeMap<String, NodeAgent>, node: &str) -> &'a mut NodeAgent {
    nodes.entry(node.to_string()).or_insert_with(|| NodeAgent {
        node: node.to_string(),
        pod: None,
        ready: None,
        restarts: None,
        node_links: Vec::new(),
    })
}

fn is_imported(vpc: &Vpc) -> bool {
    vpc.is_imported()
        || vpc
            .status
            .as_ref()
            .is_some_and(|s| s.type_ == Some(VpcType::External))
}

fn assess_northbound(observed: &Observed, findings: &mut Vec<Finding>) -> Northbound {
    let address = &observed.address;
    if let Some(error) = &address.config_map_error {
        findings.push(Finding {
            severity: Severity::Warning,
            subject: "Northbound address".into(),
            summary: format!(
                "ConfigMap {} not read ({error}); using {}",
                address.config_map.as_deref().unwrap_or_default(),
                address.remotes
            ),
            condition: None,
            remedy: "give --ovn-nb, or let the kubeconfig's user get ConfigMaps in rovn's \
                     namespace"
                .into(),
        });
    }
    let error = observed.nb.as_ref().err().cloned();
    if let Some(error) = &error {
        findings.push(Finding {
            severity: Severity::Problem,
            subject: "Northbound".into(),
            summary: format!("no answer from {address}: {error}"),
            condition: None,
            remedy: "check the remotes (--ovn-nb, or the ovn-nb key of ConfigMap rovn-config), \
                     the TLS files of ssl: remotes (--ovn-private-key, --ovn-certificate, \
                     --ovn-ca-cert), and that ovsdb-server listens there"
                .into(),
        });
    }
    let several = observed.servers.len() > 1;
    for server in &observed.servers {
        let subject = format!("Northbound server {}", server.remote);
        let cluster_remedy = "on that host: ovn-appctl -t /var/run/ovn/ovnnb_db.ctl \
                              cluster/status OVN_Northbound; a cluster serves while a majority \
                              of its members run"
            .to_string();
        if let Some(server_error) = &server.error {
            if several {
                findings.push(Finding {
                    severity: Severity::Problem,
                    subject,
                    summary: format!("unreachable: {server_error}"),
                    condition: None,
                    remedy: cluster_remedy,
                });
            }
        } else if server.clustered() && server.connected == Some(false) {
            findings.push(Finding {
                severity: Severity::Problem,
                subject,
                summary: "not connected to its cluster".into(),
                condition: None,
                remedy: cluster_remedy,
            });
        }
    }
    let clustered: Vec<&NbServer> = observed.servers.iter().filter(|s| s.clustered()).collect();
    let raft_leader = clustered
        .iter()
        .find(|s| s.leader == Some(true))
        .map(|s| s.remote.clone());
    if !clustered.is_empty() && raft_leader.is_none() {
        findings.push(Finding {
            severity: Severity::Problem,
            subject: "Northbound".into(),
            summary: "no member of the RAFT cluster says it is the leader".into(),
            condition: None,
            remedy: "a cluster elects a leader when a majority of its members run and reach \
                     each other: ovn-appctl -t /var/run/ovn/ovnnb_db.ctl cluster/status \
                     OVN_Northbound on each"
                .into(),
        });
    }
    Northbound {
        address: address.clone(),
        answered: observed.answered.clone(),
        error,
        raft_leader,
        servers: observed.servers.clone(),
    }
}

/// One finding for the API reads that failed, grouped by error.
fn api_errors(kube: &KubeObserved, findings: &mut Vec<Finding>) {
    let failures: [(&str, Option<&String>); 5] = [
        ("the Lease", kube.lease.as_ref().err()),
        ("the agents' DaemonSet", kube.daemon_set.as_ref().err()),
        ("the agents' pods", kube.agent_pods.as_ref().err()),
        ("the Vpcs", kube.vpcs.as_ref().err()),
        ("the Subnets", kube.subnets.as_ref().err()),
    ];
    let mut by_error: BTreeMap<&String, Vec<&str>> = BTreeMap::new();
    for (what, error) in failures {
        if let Some(error) = error {
            by_error.entry(error).or_default().push(what);
        }
    }
    for (error, what) in by_error {
        findings.push(Finding {
            severity: Severity::Problem,
            subject: "Kubernetes API".into(),
            summary: format!("could not read {}: {error}", what.join(", ")),
            condition: None,
            remedy: "check the kubeconfig, and that its user may get leases, daemonsets and \
                     pods in rovn's namespace and list vpcs and subnets (kubeovn.io)"
                .into(),
        });
    }
}

fn assess_lease(
    kube: &KubeObserved,
    now: Timestamp,
    findings: &mut Vec<Finding>,
) -> Option<Controller> {
    let name = format!("{}/{LEASE_NAME}", kube.lease_namespace);
    let lease = match &kube.lease {
        Ok(Some(lease)) => lease,
        Ok(None) => {
            findings.push(Finding {
                severity: Severity::Problem,
                subject: "controller".into(),
                summary: format!("no Lease {name}: no controller was ever elected there"),
                condition: None,
                remedy: format!(
                    "start rovn-controller (kubectl -n {} get deployment rovn-controller); it \
                     elects its leader with the Lease in its --lease-namespace: give the same \
                     --lease-namespace here",
                    kube.namespace
                ),
            });
            return None;
        }
        Err(_) => return None,
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let renewed = spec.renew_time.as_ref().map(|t| t.0);
    let controller = Controller {
        lease: name.clone(),
        holder: spec.holder_identity.clone().filter(|h| !h.is_empty()),
        renew_time: renewed.map(|t| t.to_string()),
        renewed_seconds_ago: renewed.map(|t| now.as_second() - t.as_second()),
        lease_duration_seconds: spec.lease_duration_seconds,
    };
    let pods = format!(
        "kubectl -n {} get pods -l app.kubernetes.io/name=rovn-controller, and their logs",
        kube.namespace
    );
    match (&controller.holder, controller.renewed_seconds_ago) {
        (None, _) => findings.push(Finding {
            severity: Severity::Problem,
            subject: "controller".into(),
            summary: format!(
                "no controller holds Lease {name} (the last leader released it when it stopped)"
            ),
            condition: None,
            remedy: format!("check that a controller runs: {pods}"),
        }),
        (Some(holder), Some(ago)) if ago > i64::from(spec.lease_duration_seconds.unwrap_or(0)) => {
            findings.push(Finding {
                severity: Severity::Problem,
                subject: "controller".into(),
                summary: format!(
                    "leader {holder} last renewed Lease {name} {} ago and it lasts {}s: it \
                     stopped, or cannot reach the API server; no controller writes now",
                    age(ago),
                    spec.lease_duration_seconds.unwrap_or(0)
                ),
                condition: None,
                remedy: format!("a standby replica takes over an expired Lease: {pods}"),
            })
        }
        _ => {}
    }
    Some(controller)
}

fn assess_agents(
    kube: &KubeObserved,
    nodes: &mut BTreeMap<String, NodeAgent>,
    findings: &mut Vec<Finding>,
) -> Option<DaemonSetSeen> {
    let name = format!("{}/{AGENT_DAEMON_SET}", kube.namespace);
    let daemon_set = match &kube.daemon_set {
        Ok(Some(ds)) => ds,
        Ok(None) => {
            findings.push(Finding {
                severity: Severity::Warning,
                subject: "agents".into(),
                summary: format!("no DaemonSet {name}"),
                condition: None,
                remedy: "install rovn with kubectl apply -k deploy/, or ignore this when the \
                         agents run outside Kubernetes"
                    .into(),
            });
            return None;
        }
        Err(_) => return None,
    };
    let pods = kube.agent_pods.as_deref().unwrap_or_default();
    for pod in pods {
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_else(|| "(not scheduled)".to_string());
        let status = pod.status.as_ref();
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        let restarts = status
            .and_then(|s| s.container_statuses.as_ref())
            .into_iter()
            .flatten()
            .map(|c| c.restart_count)
            .sum();
        let entry = node_entry(nodes, &node);
        entry.pod = Some(pod_name.clone());
        entry.ready = Some(ready);
        entry.restarts = Some(restarts);
        if !ready {
            findings.push(Finding {
                severity: Severity::Problem,
                subject: format!("agent on node {node}"),
                summary: format!("pod {pod_name} is not ready ({restarts} restarts)"),
                condition: None,
                remedy: format!(
                    "kubectl -n {ns} describe pod {pod_name}; kubectl -n {ns} logs {pod_name} \
                     -c agent: pods on this node get no network until it is",
                    ns = kube.namespace
                ),
            });
        }
    }
    let status = daemon_set.status.clone().unwrap_or_default();
    let seen = DaemonSetSeen {
        name,
        desired: status.desired_number_scheduled,
        ready: status.number_ready,
    };
    let running = i32::try_from(pods.len()).unwrap_or(i32::MAX);
    if seen.desired > running {
        findings.push(Finding {
            severity: Severity::Problem,
            subject: "agents".into(),
            summary: format!(
                "DaemonSet {} wants {} agents, {running} pods exist",
                seen.name, seen.desired
            ),
            condition: None,
            remedy: format!(
                "kubectl -n {} describe daemonset {AGENT_DAEMON_SET}",
                kube.namespace
            ),
        });
    }
    Some(seen)
}

/// How much an unhealthy condition matters; `None` when it is healthy.
pub fn severity_of(condition: &Condition) -> Option<Severity> {
    let holds = condition.status == ConditionStatus::True;
    match condition.type_.as_str() {
        READY | VALIDATED | ATTACHED | IMPORTED if !holds => Some(Severity::Problem),
        ROUTER_MISSING if holds => Some(Severity::Problem),
        DELETION_BLOCKED | UNSUPPORTED | NEUTRON_SECURITY_GROUPS if holds => {
            Some(Severity::Warning)
        }
        _ => None,
    }
}

/// The unhealthy conditions of an object worth a finding: `Ready` and
/// `Imported` only when no other problem explains them, `Attached`
/// `NotValidated` only when `Validated` does not say why.
fn unhealthy(conditions: &[Condition]) -> Vec<(&Condition, Severity)> {
    let all: Vec<(&Condition, Severity)> = conditions
        .iter()
        .filter_map(|c| Some((c, severity_of(c)?)))
        .collect();
    let explained = all
        .iter()
        .any(|(c, s)| *s == Severity::Problem && !matches!(c.type_.as_str(), READY | IMPORTED));
    let invalid = all.iter().any(|(c, _)| c.type_ == VALIDATED);
    all.into_iter()
        .filter(|(c, _)| !(explained && matches!(c.type_.as_str(), READY | IMPORTED)))
        .filter(|(c, _)| !(invalid && c.type_ == ATTACHED && c.reason == "NotValidated"))
        .collect()
}

/// `Type=Status (Reason): message`.
fn condition_summary(condition: &Condition) -> String {
    let status = match condition.status {
        ConditionStatus::True => "True",
        ConditionStatus::False => "False",
        ConditionStatus::Unknown => "Unknown",
    };
    let mut summary = format!("{}={status}", condition.type_);
    if !condition.reason.is_empty() {
        summary.push_str(&format!(" ({})", condition.reason));
    }
    if !condition.message.is_empty() {
        summary.push_str(&format!(": {}", condition.message));
    }
    summary
}

/// What to do about an unhealthy condition of Vpc `name`.
pub fn vpc_remedy(name: &str, condition: &Condition) -> String {
    match (condition.type_.as_str(), condition.reason.as_str()) {
        (ROUTER_MISSING, _) | (IMPORTED, _) | (READY, "RouterMissing") => format!(
            "the Neutron router was deleted while Subnets still use Vpc {name}: recreate it in \
             Neutron (the Subnets re-attach), or delete or move those Subnets (the Vpc goes with \
             the last one)"
        ),
        (READY, "ReservedName") => format!("rename Vpc {name}: the name is reserved"),
        (READY, "RouterNameTaken") => format!(
            "a Logical_Router named {name} exists that rovn did not create, and rovn leaves it \
             alone: rename the Vpc, or remove that router"
        ),
        (DELETION_BLOCKED, _) => {
            "delete the Subnets listed, or move them to another Vpc (spec.vpc)".to_string()
        }
        (UNSUPPORTED, "IgnoredOnImportedVpc") => format!(
            "the spec of an imported Vpc is never applied to Neutron's router: remove those \
             fields (kubectl edit vpc {name})"
        ),
        (UNSUPPORTED, _) => {
            format!("rovn ignores those fields: remove them (kubectl edit vpc {name})")
        }
        _ => format!("kubectl describe vpc {name}, and the controller's log"),
    }
}

/// What to do about an unhealthy condition of Subnet `name` on `vpc`.
pub fn subnet_remedy(name: &str, vpc: &str, condition: &Condition) -> String {
    match (condition.type_.as_str(), condition.reason.as_str()) {
        (VALIDATED, "CidrOverlapsRouterNetwork") => format!(
            "choose a cidrBlock outside the Neutron networks of router {vpc} (kubectl get vpc \
             {vpc} -o wide lists them under Router CIDRs): kubectl edit subnet {name}"
        ),
        (VALIDATED, "CidrOverlapsSubnet" | "CidrOverlapsNamespaceSubnet") => format!(
            "choose a cidrBlock no other Subnet of the VPC or of its namespaces uses (kubectl \
             get subnets): kubectl edit subnet {name}"
        ),
        (VALIDATED, "UnknownVpc") => format!(
            "create Vpc {vpc}, or set spec.vpc of Subnet {name} to an existing Vpc (kubectl get \
             vpc; an imported Neutron router is neutron-<router id>)"
        ),
        (VALIDATED, "ReservedName") => format!("rename Subnet {name}: the name is reserved"),
        (VALIDATED, "ConflictsWithAllocations") => format!(
            "addresses in use fall outside the new spec: move those pods first, or restore the \
             previous cidrBlock or excludeIps of Subnet {name}"
        ),
        (VALIDATED, _) => format!("fix the spec as the message says: kubectl edit subnet {name}"),
        (ATTACHED, "RouterMissing") => format!(
            "its Neutron router {vpc} was deleted: recreate it in Neutron (the Subnet \
             re-attaches), or move Subnet {name} to another Vpc, or delete it"
        ),
        (ATTACHED, "RouterNotReady") => format!(
            "the router of Vpc {vpc} does not exist yet: kubectl describe vpc {vpc}, and the \
             controller's log"
        ),
        (ATTACHED, "NameTaken") => format!(
            "a row named like Subnet {name} exists that rovn did not create, and rovn leaves it \
             alone: rename the Subnet, or remove that row"
        ),
        (DELETION_BLOCKED, _) => "the Subnet goes once the pods and IPs holding its \
                                  addresses are gone: delete them"
            .to_string(),
        (UNSUPPORTED, _) => {
            format!("rovn ignores those fields: remove them (kubectl edit subnet {name})")
        }
        (NEUTRON_SECURITY_GROUPS, _) => format!(
            "admit the Subnet's CIDR in a security group of each VM its pods must reach \
             (openstack security group rule create --ingress --remote-ip <cidr> <group>); \
             rovnctl diagnose --subnet {name} lists every VM port and what it admits"
        ),
        _ => format!("kubectl describe subnet {name}, and the controller's log"),
    }
}

fn vpc_findings(vpc: &Vpc, findings: &mut Vec<Finding>) {
    let name = vpc.metadata.name.clone().unwrap_or_default();
    let status = vpc.status.clone().unwrap_or_default();
    let subject = match &status.neutron_router_name {
        Some(display) => format!("Vpc {name} (Neutron router {display:?})"),
        None => format!("Vpc {name}"),
    };
    for (condition, severity) in unhealthy(&status.conditions) {
        findings.push(Finding {
            severity,
            subject: subject.clone(),
            summary: condition_summary(condition),
            condition: Some(condition.clone()),
            remedy: vpc_remedy(&name, condition),
        });
    }
}

fn subnet_findings(
    subnet: &Subnet,
    vpcs: &[Vpc],
    nb: Option<&NbSnapshot>,
    findings: &mut Vec<Finding>,
) {
    let name = subnet.metadata.name.clone().unwrap_or_default();
    let vpc = subnet.vpc_or("ovn-cluster");
    let conditions = subnet
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    for (condition, severity) in unhealthy(&conditions) {
        let mut finding = Finding {
            severity,
            subject: format!("Subnet {name}"),
            summary: condition_summary(condition),
            condition: Some(condition.clone()),
            remedy: subnet_remedy(&name, &vpc, condition),
        };
        if condition.type_ == NEUTRON_SECURITY_GROUPS
            && let Some(nb) = nb
        {
            let router = vpcs
                .iter()
                .find(|v| v.metadata.name.as_deref() == Some(vpc.as_str()))
                .and_then(|v| v.status.as_ref()?.router.clone())
                .unwrap_or_else(|| vpc.clone());
            match security_group_drops(nb, &router, &name, &subnet.spec.cidr_block) {
                // Every VM admits the pods: nothing to do.
                Some(None) => continue,
                Some(Some((summary, remedy))) => {
                    finding.summary = format!("{}: {summary}", condition.type_);
                    finding.remedy = remedy;
                }
                // The router or a CIDR could not be read: the condition as it is.
                None => {}
            }
        }
        findings.push(finding);
    }
}

/// Which VM ports on the Neutron networks of `router` drop new connections
/// from the pods of Subnet `name` (`cidr_block`): `Some(None)` when none
/// does, `Some(Some((summary, remedy)))` when some do, `None` when it could
/// not be told.
fn security_group_drops(
    nb: &NbSnapshot,
    router: &str,
    name: &str,
    cidr_block: &str,
) -> Option<Option<(String, String)>> {
    let mut cidrs = Vec::new();
    for cidr in cidr_block
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
    {
        cidrs.push(cidr.parse::<IpNet>().ok()?.trunc());
    }
    let mut dropped: BTreeMap<String, String> = BTreeMap::new();
    let mut fixes: BTreeSet<String> = BTreeSet::new();
    let mut total = BTreeSet::new();
    for cidr in &cidrs {
        let report = diagnose::report(nb, router, *cidr).ok()?;
        for port in report.networks.iter().flat_map(|n| &n.vm_ports) {
            total.insert(port.port.clone());
        }
        for port in report.dropped() {
            let display = nb
                .switch_port(&port.port)
                .and_then(|p| p.external_ids.get(NEUTRON_PORT_NAME))
                .filter(|n| !n.is_empty())
                .map(|n| format!("{n:?} "))
                .unwrap_or_default();
            dropped.insert(
                port.port.clone(),
                format!("{display}{} [{}]", port.port, port.addresses.join(" ")),
            );
            for group in &port.security_groups {
                fixes.insert(ingress_rule_command(*cidr, None, &security_group_id(group)));
            }
        }
    }
    if dropped.is_empty() {
        return Some(None);
    }
    let cidrs: Vec<String> = cidrs.iter().map(ToString::to_string).collect();
    let summary = format!(
        "new connections from its pods ({}) to {} of the {} VM port(s) on the Neutron networks \
         of router {router} are dropped by neutron_pg_drop: {}",
        cidrs.join(", "),
        dropped.len(),
        total.len(),
        dropped.values().cloned().collect::<Vec<_>>().join(", ")
    );
    let mut remedy = String::from(
        "admit the pods in a security group of each of those VMs (rovn never writes \
         security groups)",
    );
    if !fixes.is_empty() {
        remedy.push_str(": ");
        remedy.push_str(&fixes.into_iter().collect::<Vec<_>>().join("; "));
    }
    remedy.push_str(&format!(
        "; rovnctl diagnose --subnet {name} lists every VM port and what it admits"
    ));
    Some(Some((summary, remedy)))
}

/// `seconds` as `42s`, `3m05s` or `2h07m`.
pub fn age(seconds: i64) -> String {
    let seconds = seconds.max(0);
    if seconds < 120 {
        format!("{seconds}s")
    } else if seconds < 7200 {
        format!("{}m{:02}s", seconds / 60, seconds % 60)
    } else {
        format!("{}h{:02}m", seconds / 3600, seconds % 3600 / 60)
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nb = &self.northbound;
        write!(f, "Northbound: {}", nb.address)?;
        match (&nb.answered, &nb.error) {
            (Some(remote), _) => writeln!(f, ", read from {remote}")?,
            (None, Some(_)) => writeln!(f, ", unreachable")?,
            (None, None) => writeln!(f)?,
        }
        if let Some(leader) = &nb.raft_leader {
            writeln!(f, "  RAFT cluster leader: {leader}")?;
        }
        for server in &nb.servers {
            write!(f, "  {}: ", server.remote)?;
            match (&server.error, server.model.as_deref()) {
                (Some(error), _) => writeln!(f, "unreachable: {error}")?,
                (None, Some("clustered")) => writeln!(
                    f,
                    "clustered, {}, {}",
                    if server.leader == Some(true) {
                        "leader"
                    } else {
                        "follower"
                    },
                    if server.connected == Some(true) {
                        "connected"
                    } else {
                        "not connected"
                    }
                )?,
                (None, model) => writeln!(f, "{}", model.unwrap_or("unknown model"))?,
            }
        }
        match &self.controller {
            Some(controller) => {
                match &controller.holder {
                    Some(holder) => write!(f, "Controller: leader {holder}")?,
                    None => write!(f, "Controller: no leader")?,
                }
                write!(f, " (Lease {}", controller.lease)?;
                if let Some(ago) = controller.renewed_seconds_ago {
                    write!(f, ", renewed {} ago", age(ago))?;
                }
                if let Some(duration) = controller.lease_duration_seconds {
                    write!(f, ", lasts {duration}s")?;
                }
                writeln!(f, ")")?;
            }
            None if self.api_checked => writeln!(f, "Controller: none seen (see below)")?,
            None => writeln!(f, "Controller: not checked (no kubeconfig)")?,
        }
        match &self.agents.daemon_set {
            Some(ds) => writeln!(
                f,
                "Agents: DaemonSet {}, {} of {} ready",
                ds.name, ds.ready, ds.desired
            )?,
            None if self.api_checked => writeln!(f, "Agents: no DaemonSet seen (see below)")?,
            None => writeln!(f, "Agents: not checked (no kubeconfig)")?,
        }
        for node in &self.agents.nodes {
            write!(f, "  node {}: ", node.node)?;
            match (&node.pod, node.ready, node.restarts) {
                (Some(pod), Some(ready), restarts) => write!(
                    f,
                    "agent pod {pod} {}, {}",
                    if ready { "ready" } else { "NOT ready" },
                    plural(restarts.unwrap_or(0) as usize, "restart", "restarts")
                )?,
                _ => write!(f, "no agent pod")?,
            }
            if node.node_links.is_empty() {
                writeln!(f, "; no node-link port")?;
            } else {
                writeln!(f, "; node-link ports into {}", node.node_links.join(", "))?;
            }
        }
        let c = &self.counts;
        let mut counts = Vec::new();
        if let (Some(imported), Some(own)) = (c.imported_vpcs, c.own_vpcs) {
            counts.push(plural(imported, "imported VPC", "imported VPCs"));
            counts.push(plural(own, "own VPC", "own VPCs"));
        }
        if let Some(subnets) = c.subnets {
            counts.push(plural(subnets, "Subnet", "Subnets"));
        }
        if let Some(pods) = c.pods {
            counts.push(plural(
                pods,
                "pod with a rovn port",
                "pods with a rovn port",
            ));
        }
        if let Some(policies) = c.network_policies {
            counts.push(plural(policies, "NetworkPolicy", "NetworkPolicies"));
        }
        if !counts.is_empty() {
            writeln!(f, "Resources: {}", counts.join(", "))?;
        }
        if !self.findings.is_empty() {
            writeln!(f, "Needs attention:")?;
        }
        for finding in &self.findings {
            let severity = match finding.severity {
                Severity::Problem => "problem",
                Severity::Warning => "warning",
            };
            writeln!(f, "  [{severity}] {}: {}", finding.subject, finding.summary)?;
            writeln!(f, "    fix: {}", finding.remedy)?;
        }
        let problems = self
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Problem)
            .count();
        let warnings = self.findings.len() - problems;
        if self.healthy {
            writeln!(f, "Healthy ({})", plural(warnings, "warning", "warnings"))
        } else {
            writeln!(
                f,
                "Unhealthy: {}, {}",
                plural(problems, "problem", "problems"),
                plural(warnings, "warning", "warnings")
            )
        }
    }
}

#[cfg(test)]
mod tests;
