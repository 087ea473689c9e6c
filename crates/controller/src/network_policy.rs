//! Kubernetes NetworkPolicies (networking.k8s.io/v1) as OVN Port_Groups,
//! Address_Sets and ACLs of ours, on every VPC (Neutron's or ours).
//!
//! Each policy gets one port group of the pods it selects, address sets of
//! the peers its rules select and ACLs on the group ([`model`]), all marked
//! as ours and in our ACL priority band (2000-2099: Neutron's security
//! groups are at 1002 and `neutron_pg_drop` at 1001). Our ACLs only ever
//! match our pods' ports; Neutron's only its VM ports: a pod ↔ VM connection
//! must pass both the pod's policies and the VM's security groups.
//!
//! Triggers (event-driven, nothing polled): the NetworkPolicy watch (keys
//! `namespace/name`); pods whose labels or named ports change, pods whose
//! switch port appears or goes (the policies of their namespace and those
//! looking across namespaces); namespaces whose labels change (policies
//! with a namespace selector); Subnets accepted or moved (every policy);
//! Northbound events on our groups, sets and ACLs changed or deleted by
//! another client — Neutron's repair sync deletes every Port_Group not its
//! own — which are put back at once.

pub mod model;
mod reconcile;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use ovn::Table;
use ovn::nb::{Acl, AddressSet, LogicalSwitchPort, PortGroup};
use ovn::owned::owner::{POD_NAME_KEY, POD_NAMESPACE_KEY};
use ovn::owned::{Kind, Owner};
use ovn::view::owner_of_row;
use ovsdb::RowEvent;
use tracing::info;

use crate::context::Context;
use crate::error::ReconcileError;
use crate::pod::port;
use crate::queue::WorkQueue;
use crate::runtime::{self, Events, Tasks};
use model::{Cluster, PodPort, PolicyPod};

/// Workers reconciling policies in parallel (each key by one at a time).
const WORKERS: usize = 4;

/// What of a pod the policies read (a change of anything else is ignored).
type PodFingerprint = (BTreeMap<String, String>, Vec<(String, String, i32)>);

/// Every pod and namespace as the policies see them, built once per change.
struct Snapshot {
    pods: Vec<PolicyPod>,
    namespaces: BTreeMap<String, BTreeMap<String, String>>,
}

struct Reconciler {
    ctx: Arc<Context>,
    policies: Store<NetworkPolicy>,
    pods: Store<Pod>,
    namespaces: Store<Namespace>,
    queue: Arc<WorkQueue>,
    events: Events,
    snapshot: Mutex<Option<Arc<Snapshot>>>,
    pod_seen: Mutex<HashMap<String, PodFingerprint>>,
    namespace_seen: Mutex<HashMap<String, BTreeMap<String, String>>>,
    /// Keys queued because another client changed or deleted our rows.
    repairs: Mutex<HashSet<String>>,
    /// The last problems reported per policy (reported again on change).
    warned: Mutex<HashMap<String, String>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

fn key_of<K: ResourceExt>(object: &K) -> Option<String> {
    Some(format!("{}/{}", object.namespace()?, object.name_any()))
}

/// The named container ports of a pod.
fn named_ports(pod: &Pod) -> Vec<(String, String, i32)> {
    pod.spec
        .iter()
        .flat_map(|spec| spec.containers.iter())
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let protocol = p.protocol.clone().unwrap_or_else(|| "TCP".to_string());
            Some((p.name.clone()?, protocol, p.container_port))
        })
        .collect()
}

/// What a Northbound change concerns.
#[derive(Debug, Default, PartialEq, Eq)]
enum Concern {
    /// Nothing of ours.
    #[default]
    None,
    /// Our row of this policy was changed or deleted (by another client,
    /// or by us: a reconcile then writes nothing).
    Policy(String),
    /// A pod's port came, went or changed addresses: its namespace and name.
    PodPort(String, String),
}

fn concern(event: &RowEvent) -> Concern {
    let table = event.table();
    let (old, new) = match event {
        RowEvent::Insert { new, .. } => (None, Some(new)),
        RowEvent::Modify { old, new, .. } => (Some(old), Some(new)),
        RowEvent::Delete { old, .. } => (Some(old), None),
    };
    if table == PortGroup::NAME || table == Acl::NAME || table == AddressSet::NAME {
        // Our own inserts need no reconcile.
        return match old.and_then(|row| owner_of_row(row)) {
            Some(owner) if owner.kind() == Kind::NetworkPolicy => {
                Concern::Policy(owner.object().to_string())
            }
            _ => Concern::None,
        };
    }
    if table == LogicalSwitchPort::NAME {
        let row = new.or(old).map(|r| r.get_str_map("external_ids"));
        let is_pod = old
            .into_iter()
            .chain(new)
            .filter_map(|row| owner_of_row(row))
            .any(|owner| owner.kind() == Kind::Pod);
        let changed = match (old, new) {
            (Some(old), Some(new)) => old.get("addresses") != new.get("addresses"),
            _ => true,
        };
        if is_pod
            && changed
            && let Some(ids) = row
            && let (Some(namespace), Some(name)) =
                (ids.get(POD_NAMESPACE_KEY), ids.get(POD_NAME_KEY))
        {
            return Concern::PodPort(namespace.clone(), name.clone());
        }
    }
    Concern::None
}

/// Drops what no policy reads from a cached pod.
fn slim_pod(pod: &mut Pod) {
    pod.managed_fields_mut().clear();
    pod.annotations_mut().clear();
    pod.status = None;
}

/// Runs the NetworkPolicy reconciler until a watch or the Northbound event
/// stream ends.
pub async fn run(ctx: Arc<Context>) -> anyhow::Result<()> {
    let (policies, policy_events) = runtime::reflect(
        Api::<NetworkPolicy>::all(ctx.kube.clone()),
        |p: &mut NetworkPolicy| p.managed_fields_mut().clear(),
    );
    let (pods, pod_events) = runtime::reflect(Api::<Pod>::all(ctx.kube.clone()), slim_pod);
    let (namespaces, namespace_events) = runtime::reflect(
        Api::<Namespace>::all(ctx.kube.clone()),
        |n: &mut Namespace| n.managed_fields_mut().clear(),
    );
    // Subscribed before the start-up sweep so that no change is missed.
    let mut nb_events = ctx.nb_view.replica().subscribe();
    let mut bindings = ctx.subnet_state.watch_changes();
    let this = Arc::new(Reconciler {
        events: Events::new(&ctx, "Reconcile"),
        ctx,
        policies,
        pods,
        namespaces,
        queue: WorkQueue::new(),
        snapshot: Mutex::default(),
        pod_seen: Mutex::default(),
        namespace_seen: Mutex::default(),
        repairs: Mutex::default(),
        warned: Mutex::default(),
    });
    let mut tasks = Tasks::new();

    let r = this.clone();
    tasks.spawn(async move {
        runtime::follow("NetworkPolicy", policy_events, |event| match event {
            watcher::Event::Apply(policy) | watcher::Event::Delete(policy) => {
                if let Some(key) = key_of(&policy) {
                    r.queue.add(&key);
                }
            }
            watcher::Event::InitDone => r.sweep(),
            watcher::Event::Init | watcher::Event::InitApply(_) => {}
        })
        .await
    });
    tasks.spawn(
        this.clone()
            .follow("Pod", pod_events, Reconciler::pod_changed),
    );
    tasks.spawn(
        this.clone()
            .follow("Namespace", namespace_events, Reconciler::namespace_changed),
    );
    let r = this.clone();
    tasks.spawn(async move {
        while let Some(event) = nb_events.recv().await {
            match concern(&event) {
                Concern::Policy(key) => {
                    lock(&r.repairs).insert(key.clone());
                    r.queue.add(&key);
                }
                Concern::PodPort(namespace, name) => {
                    r.invalidate();
                    let labels = lock(&r.pod_seen)
                        .get(&format!("{namespace}/{name}"))
                        .map(|(labels, _)| labels.clone())
                        .unwrap_or_default();
                    r.queue_concerned(&namespace, &[&labels]);
                }
                Concern::None => {}
            }
        }
        anyhow::bail!("the Northbound replica stopped sending events")
    });
    let r = this.clone();
    tasks.spawn(async move {
        // A Subnet accepted or moved changes pods' VPCs: every policy again.
        while bindings.changed().await.is_ok() {
            r.invalidate();
            r.sweep();
        }
        anyhow::bail!("the Subnet state was dropped")
    });

    this.policies.wait_until_ready().await?;
    this.pods.wait_until_ready().await?;
    this.namespaces.wait_until_ready().await?;
    this.ctx.wait_restored().await?;
    this.invalidate();
    this.sweep();
    info!(
        policies = this.policies.state().len(),
        "NetworkPolicies listed: reconciling port groups and ACLs"
    );
    let r = this.clone();
    runtime::spawn_reconcilers(
        &mut tasks,
        WORKERS,
        &this.queue,
        &this.ctx,
        "network-policy",
        move |key| {
            let r = r.clone();
            async move { r.reconcile(&key).await }
        },
    );
    runtime::first_end(&mut tasks).await
}

impl Reconciler {
    /// Hands every pod or namespace change of a watch to `changed` (with
    /// whether it was deleted); a finished (re-)list re-plans everything.
    async fn follow<K>(
        self: Arc<Self>,
        what: &'static str,
        events: impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
        changed: fn(&Self, &K, bool),
    ) -> anyhow::Result<()> {
        runtime::follow(what, events, |event| match event {
            watcher::Event::Apply(object) => changed(&self, &object, false),
            watcher::Event::Delete(object) => changed(&self, &object, true),
            watcher::Event::InitDone => {
                self.invalidate();
                self.sweep();
            }
            watcher::Event::Init | watcher::Event::InitApply(_) => {}
        })
        .await
    }

    fn invalidate(&self) {
        *lock(&self.snapshot) = None;
    }

    /// Every pod (with its port) and namespace, built once per change.
    fn snapshot(&self) -> Arc<Snapshot> {
        let mut current = lock(&self.snapshot);
        if let Some(snapshot) = current.as_ref() {
            return snapshot.clone();
        }
        let mut ports: HashMap<String, PodPort> = HashMap::new();
        for lsp in port::all(&self.ctx.nb_view) {
            let Some(recorded) = port::recorded(&lsp) else {
                continue;
            };
            let vpc = self
                .ctx
                .subnet_state
                .binding(&recorded.subnet)
                .map(|b| b.vpc);
            ports.insert(
                recorded.owner,
                PodPort {
                    uuid: lsp.uuid,
                    name: lsp.name.clone(),
                    ips: recorded.ips,
                    vpc,
                },
            );
        }
        let pods = self
            .pods
            .state()
            .iter()
            .filter_map(|pod| {
                let namespace = pod.namespace()?;
                let name = pod.name_any();
                let port = ports.remove(&port::owner_key(&namespace, &name));
                Some(PolicyPod {
                    labels: pod.labels().clone(),
                    named_ports: named_ports(pod),
                    namespace,
                    name,
                    port,
                })
            })
            .collect();
        let namespaces = self
            .namespaces
            .state()
            .iter()
            .map(|n| (n.name_any(), n.labels().clone()))
            .collect();
        let snapshot = Arc::new(Snapshot { pods, namespaces });
        *current = Some(snapshot.clone());
        snapshot
    }

    /// Queues every policy, and every owner of rows of ours.
    fn sweep(&self) {
        let mut keys: BTreeSet<String> = self
            .policies
            .state()
            .iter()
            .filter_map(|p| key_of(p.as_ref()))
            .collect();
        let view = &self.ctx.nb_view;
        keys.extend(
            view.owned_of_kind::<PortGroup>(Kind::NetworkPolicy)
                .iter()
                .map(|g| g.owner().object().to_string()),
        );
        keys.extend(
            view.owned_of_kind::<AddressSet>(Kind::NetworkPolicy)
                .iter()
                .map(|s| s.owner().object().to_string()),
        );
        for key in &keys {
            self.queue.add(key);
        }
    }

    /// Queues the policies a change of a pod in `namespace`, labelled any of
    /// `labels` (before and after), may concern: those of its namespace, and
    /// those of other namespaces whose peers may select it.
    fn queue_concerned(&self, namespace: &str, labels: &[&BTreeMap<String, String>]) {
        let namespace_labels = self
            .namespaces
            .get(&ObjectRef::new(namespace))
            .map(|n| n.labels().clone())
            .unwrap_or_default();
        for policy in self.policies.state() {
            let mine = policy.namespace().as_deref() == Some(namespace);
            let concerned = mine
                || policy.spec.as_ref().is_some_and(|spec| {
                    model::may_concern_foreign_pod(spec, &namespace_labels, labels)
                });
            if concerned && let Some(key) = key_of(policy.as_ref()) {
                self.queue.add(&key);
            }
        }
    }

    fn pod_changed(&self, pod: &Pod, deleted: bool) {
        let (Some(key), Some(namespace)) = (key_of(pod), pod.namespace()) else {
            return;
        };
        let (before, now) = {
            let mut seen = lock(&self.pod_seen);
            if deleted {
                (seen.remove(&key), None)
            } else {
                let now = (pod.labels().clone(), named_ports(pod));
                (seen.insert(key, now.clone()), Some(now))
            }
        };
        if before != now {
            self.invalidate();
            let labels: Vec<&BTreeMap<String, String>> = before
                .iter()
                .chain(&now)
                .map(|(labels, _)| labels)
                .collect();
            self.queue_concerned(&namespace, &labels);
        }
    }

    fn namespace_changed(&self, namespace: &Namespace, deleted: bool) {
        let name = namespace.name_any();
        let changed = {
            let mut seen = lock(&self.namespace_seen);
            if deleted {
                seen.remove(&name).is_some()
            } else {
                let labels = namespace.labels().clone();
                seen.insert(name, labels.clone()).as_ref() != Some(&labels)
            }
        };
        if !changed {
            return;
        }
        self.invalidate();
        for policy in self.policies.state() {
            let across = policy.spec.as_ref().is_some_and(|spec| {
                model::peers(spec).any(|peer| peer.namespace_selector.is_some())
            });
            if across && let Some(key) = key_of(policy.as_ref()) {
                self.queue.add(&key);
            }
        }
    }

    async fn reconcile(&self, key: &str) -> Result<(), ReconcileError> {
        let Some((namespace, name)) = key.split_once('/') else {
            return Ok(());
        };
        let repair = lock(&self.repairs).remove(key);
        let owner = Owner::network_policy(namespace, name);
        let policy = self.policies.get(&ObjectRef::new(name).within(namespace));
        let Some(spec) = policy.as_ref().and_then(|p| p.spec.as_ref()) else {
            reconcile::apply(&self.ctx, &owner, None).await?;
            lock(&self.warned).remove(key);
            return Ok(());
        };
        let snapshot = self.snapshot();
        let vpc = self
            .ctx
            .subnet_for_namespace(namespace)
            .and_then(|subnet| self.ctx.subnet_state.binding(&subnet))
            .map(|binding| binding.vpc);
        let cluster = Cluster {
            pods: &snapshot.pods,
            namespaces: &snapshot.namespaces,
            vpc: vpc.as_deref(),
            node_link: ipnet::IpNet::V4(self.ctx.settings.node_link_cidr),
        };
        let plan = model::plan(namespace, name, spec, &cluster);
        let written = reconcile::apply(&self.ctx, &owner, Some(&plan)).await?;
        if repair && written.any() {
            self.ctx.metrics.repaired("network-policy");
        }
        if let Some(policy) = policy {
            self.report(key, &policy, &plan.problems).await;
        }
        Ok(())
    }

    /// A Warning Event naming what of the policy could not be implemented,
    /// once per change of it.
    async fn report(&self, key: &str, policy: &NetworkPolicy, problems: &[String]) {
        if problems.is_empty() {
            lock(&self.warned).remove(key);
            return;
        }
        let note = format!(
            "{} (those peers or ports admit nothing)",
            problems.join("; ")
        );
        if lock(&self.warned).get(key) == Some(&note) {
            return;
        }
        self.events
            .warn(policy, "PolicyNotImplemented", &note)
            .await;
        lock(&self.warned).insert(key.to_string(), note);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ovn::owned::Owner;
    use ovsdb::Row;

    use super::*;

    fn row(owner: &Owner, extra: &[(&str, &str)]) -> Arc<Row> {
        let mut ids = owner.external_ids();
        ids.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let mut row = Row::new();
        row.set("external_ids", ovsdb::Value::map(ids));
        Arc::new(row)
    }

    #[test]
    fn northbound_changes_concern_their_policy_or_the_pods_namespace() {
        let policy = Owner::network_policy("a", "deny");
        let group = row(&policy, &[]);
        let insert = RowEvent::Insert {
            table: PortGroup::NAME.into(),
            new: group.clone(),
        };
        assert_eq!(concern(&insert), Concern::None, "our own insert");
        let delete = RowEvent::Delete {
            table: PortGroup::NAME.into(),
            old: group.clone(),
        };
        assert_eq!(concern(&delete), Concern::Policy("a/deny".into()));
        let acl_edit = RowEvent::Modify {
            table: Acl::NAME.into(),
            old: group.clone(),
            new: Arc::new(Row::new()),
        };
        assert_eq!(concern(&acl_edit), Concern::Policy("a/deny".into()));

        let pod = row(
            &Owner::pod("a", "web"),
            &[(POD_NAMESPACE_KEY, "a"), (POD_NAME_KEY, "web")],
        );
        let added = RowEvent::Insert {
            table: LogicalSwitchPort::NAME.into(),
            new: pod.clone(),
        };
        assert_eq!(concern(&added), Concern::PodPort("a".into(), "web".into()));
        let mut up = (*pod).clone();
        up.set("up", true);
        let unchanged = RowEvent::Modify {
            table: LogicalSwitchPort::NAME.into(),
            old: pod.clone(),
            new: Arc::new(up),
        };
        assert_eq!(concern(&unchanged), Concern::None, "addresses unchanged");
        let neutron = RowEvent::Delete {
            table: PortGroup::NAME.into(),
            old: Arc::new(Row::new()),
        };
        assert_eq!(concern(&neutron), Concern::None);
    }
}
