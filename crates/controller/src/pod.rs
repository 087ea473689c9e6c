//! The pod reconciler: every pod (except hostNetwork ones) gets addresses
//! from its Subnet, a Logical_Switch_Port, its Kube-OVN annotations and an
//! `IP` resource; a deleted pod gives them all back.
//!
//! The Subnet is the pod's `ovn.kubernetes.io/logical_switch` annotation,
//! else the namespace's binding, else the default Subnet (see
//! [`crate::subnet::subnet_for_namespace`]).
//!
//! Order of writes, for crash safety: allocate in memory → write the port
//! (the durable record) → annotate the pod (one patch) → IP resource. A pod
//! is annotated once: an allocated pod's annotations are the truth and are
//! never rewritten. Before a Subnet's first allocation after start-up, its
//! IPAM is rebuilt from our ports, the annotations and the IP resources
//! ([`crate::ipam_restore`]), so a restart never hands out an address twice.
//!
//! No finalizer: pods are deleted by the kubelet, and one stuck on a
//! finalizer of ours while the controller is down would block node drains.
//! Instead, one deduplicating [`WorkQueue`] keyed by `namespace/name` is fed
//! by the pod watch (applies and deletes alike), IP resource deletes, NB
//! changes of our ports, and a sweep of every key the pods, our ports, the
//! IP resources and the IPAM know about at start-up (and after every
//! re-list). A key is never processed by two workers at once, and a key
//! whose pod is absent is cleaned up: port (only rows with our marker), IP
//! resource, then address.

pub mod annotations;
pub mod port;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use api::{IP, IpSpec};
use futures::StreamExt;
use ipam::{AllocError, Allocation};
use k8s_openapi::api::core::v1::{Pod, PodSpec, PodStatus};
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};
use ovn::Table;
use ovn::nb::LogicalSwitchPort;
use ovn::ownership::{KIND_KEY, OBJECT_KEY};
use ovsdb::{RowEvent, Uuid};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::context::{Context, FIELD_MANAGER};
use crate::ip_resource;
use crate::ipam_restore;
use crate::queue::WorkQueue;
use crate::subnet;

use self::annotations::Assigned;
use self::port::{PodPort, PortError};

/// Pods reconciled concurrently.
const WORKERS: usize = 32;

/// Errors of one pod reconciliation; all are retried with a backoff.
#[derive(Debug, thiserror::Error)]
pub enum PodError {
    /// A Kubernetes API call failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// Writing or deleting the port failed.
    #[error("{0}")]
    Port(#[from] PortError),
    /// A Northbound transaction failed.
    #[error("OVN Northbound: {0}")]
    Nb(#[from] ovsdb::Error),
    /// No Subnet is accepted for the pod's namespace yet.
    #[error("no Subnet is bound to namespace {0} and no default Subnet is ready")]
    NoSubnet(String),
    /// The Subnet is not (yet) accepted by the Subnet reconciler.
    #[error("Subnet {0} is not ready")]
    SubnetNotReady(String),
    /// The requested addresses cannot be given (conflict, exhausted...).
    #[error("no allocation in Subnet {subnet}: {error}")]
    Allocation {
        /// The Subnet.
        subnet: String,
        /// Why.
        error: AllocError,
    },
}

struct Reconciler {
    ctx: Arc<Context>,
    queue: Arc<WorkQueue>,
    pods: Store<Pod>,
    ips: Store<IP>,
    recorder: Recorder,
    /// Subnets whose IPAM was rebuilt since start-up.
    restored: Mutex<HashSet<String>>,
    /// One Subnet restore at a time.
    restoring: tokio::sync::Mutex<()>,
    /// IP resources applied whose watch event has not arrived yet, by name.
    applied_ips: Mutex<HashMap<String, IpSpec>>,
    /// Ports inserted that the replica may not show yet, by owner (a
    /// cleanup right after the insert must still find them).
    inserted_ports: Mutex<HashMap<String, Uuid>>,
    /// Keys of the start-up sweep not processed yet (`None` once synced).
    startup: Mutex<Option<(HashSet<String>, Instant)>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Keeps only what the reconciler reads of a pod (the store holds every
/// pod of the cluster).
fn slim(pod: &mut Pod) {
    pod.managed_fields_mut().clear();
    if let Some(spec) = pod.spec.as_mut() {
        *spec = PodSpec {
            host_network: spec.host_network,
            node_name: spec.node_name.take(),
            ..PodSpec::default()
        };
    }
    if let Some(status) = pod.status.as_mut() {
        *status = PodStatus {
            phase: status.phase.take(),
            ..PodStatus::default()
        };
    }
}

fn pod_key(pod: &Pod) -> Option<String> {
    Some(port::owner(&pod.namespace()?, &pod.name_any()))
}

fn host_network(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false)
}

/// A pod that will not run (again): it gets no new address.
fn finished(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
        || matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        )
}

/// Runs the pod reconciler until a watch fails for good (dropping the
/// future stops every task it started).
pub async fn run(ctx: Arc<Context>) -> anyhow::Result<()> {
    let (pods, pod_writer) = reflector::store::<Pod>();
    let (ips, ip_writer) = reflector::store::<IP>();
    let pod_events = reflector::reflector(
        pod_writer,
        watcher(
            Api::<Pod>::all(ctx.kube.clone()),
            watcher::Config::default(),
        )
        .modify(slim)
        .default_backoff(),
    );
    let ip_events = reflector::reflector(
        ip_writer,
        watcher(ip_resource::api(&ctx), watcher::Config::default())
            .modify(|ip| ip.managed_fields_mut().clear())
            .default_backoff(),
    );
    // Subscribed before the start-up sweep so that no change is missed.
    let mut nb_events = ctx.nb_replica.subscribe();
    let mut bindings = ctx.subnet_state.watch_changes();
    let this = Arc::new(Reconciler {
        ctx: ctx.clone(),
        queue: WorkQueue::new(),
        pods,
        ips,
        recorder: Recorder::new(
            ctx.kube.clone(),
            Reporter {
                controller: FIELD_MANAGER.to_string(),
                instance: None,
            },
        ),
        restored: Mutex::new(HashSet::new()),
        restoring: tokio::sync::Mutex::new(()),
        applied_ips: Mutex::new(HashMap::new()),
        inserted_ports: Mutex::new(HashMap::new()),
        startup: Mutex::new(None),
    });
    let mut tasks = JoinSet::new();

    let r = this.clone();
    tasks.spawn(async move {
        let mut events = std::pin::pin!(pod_events);
        let mut listed = false;
        while let Some(event) = events.next().await {
            let event = match event {
                Ok(event) => event,
                // The watcher re-lists after a backoff; the re-list sweeps.
                Err(err) => {
                    warn!(error = %err, "pod watch interrupted");
                    continue;
                }
            };
            match event {
                watcher::Event::Apply(pod) | watcher::Event::Delete(pod) => {
                    if let Some(key) = pod_key(&pod) {
                        r.queue.add(&key);
                    }
                }
                // A re-list may have missed deletes: sweep again.
                watcher::Event::InitDone if listed => {
                    r.sweep();
                }
                watcher::Event::InitDone => listed = true,
                watcher::Event::Init | watcher::Event::InitApply(_) => {}
            }
        }
        anyhow::bail!("the pod watch ended")
    });

    let r = this.clone();
    tasks.spawn(async move {
        let mut events = std::pin::pin!(ip_events);
        while let Some(event) = events.next().await {
            let event = match event {
                Ok(event) => event,
                Err(err) => {
                    warn!(error = %err, "IP resource watch interrupted");
                    continue;
                }
            };
            match event {
                watcher::Event::Apply(ip) => {
                    lock(&r.applied_ips).remove(&ip.name_any());
                }
                // Deleted by someone else: restored if its pod still exists.
                watcher::Event::Delete(ip) => {
                    // Its event may have come before the create returned.
                    lock(&r.applied_ips).remove(&ip.name_any());
                    r.queue
                        .add(&port::owner(&ip.spec.namespace, &ip.spec.pod_name));
                }
                _ => {}
            }
        }
        anyhow::bail!("the IP resource watch ended")
    });

    let r = this.clone();
    tasks.spawn(async move {
        while let Some(event) = nb_events.recv().await {
            if let RowEvent::Insert { new, .. } = &event
                && event.table() == LogicalSwitchPort::NAME
                && let Some(owner) = new.get_map_str("external_ids", OBJECT_KEY)
            {
                let mut inserted = lock(&r.inserted_ports);
                if inserted.get(owner) == Some(&event.uuid()) {
                    inserted.remove(owner);
                }
            }
            if let Some(key) = changed_port_owner(&event) {
                r.queue.add(&key);
            }
        }
        anyhow::bail!("the Northbound replica stopped sending events")
    });

    let r = this.clone();
    tasks.spawn(async move {
        // A Subnet accepted or rebound: pods waiting for one try again.
        while bindings.changed().await.is_ok() {
            for pod in r.pods.state() {
                if !annotations::is_allocated(&pod)
                    && let Some(key) = pod_key(&pod)
                {
                    r.queue.add(&key);
                }
            }
        }
        anyhow::bail!("the Subnet state was dropped")
    });

    this.pods.wait_until_ready().await?;
    this.ips.wait_until_ready().await?;
    this.ctx.nb_replica.wait_synced().await?;
    let keys = this.sweep();
    info!(
        keys = keys.len(),
        "pods, IP resources and ports listed: reconciling pods"
    );
    *lock(&this.startup) = Some((keys, Instant::now()));
    if lock(&this.startup)
        .as_ref()
        .is_some_and(|(k, _)| k.is_empty())
    {
        this.startup_done();
    }

    for _ in 0..WORKERS {
        let r = this.clone();
        tasks.spawn(async move {
            loop {
                let key = r.queue.next().await;
                let result = r.reconcile(&key).await;
                let ok = result.is_ok();
                match result {
                    Ok(()) => r.queue.done(&key),
                    Err(err) => {
                        match &err {
                            PodError::NoSubnet(_) | PodError::SubnetNotReady(_) => {
                                debug!(pod = %key, error = %err, "pod waits")
                            }
                            _ => {
                                warn!(pod = %key, error = %err, "pod reconcile failed, will retry")
                            }
                        }
                        r.queue.failed(&key);
                    }
                }
                r.ctx.metrics.reconciled("pod", ok);
                r.processed(&key);
            }
        });
    }
    match tasks.join_next().await {
        Some(Ok(result)) => result,
        Some(Err(err)) => Err(err.into()),
        None => Ok(()),
    }
}

/// The owner of one of our pod ports that was changed or deleted by a
/// Northbound transaction (inserts are our own writes).
fn changed_port_owner(event: &RowEvent) -> Option<String> {
    if event.table() != LogicalSwitchPort::NAME {
        return None;
    }
    let row = match event {
        RowEvent::Insert { .. } => return None,
        RowEvent::Modify { old, .. } | RowEvent::Delete { old, .. } => old,
    };
    (row.get_map_str("external_ids", KIND_KEY) == Some(port::KIND))
        .then(|| {
            row.get_map_str("external_ids", OBJECT_KEY)
                .map(str::to_string)
        })
        .flatten()
}

impl Reconciler {
    /// Queues every key the pods, our ports, the IP resources and the IPAM
    /// know about; returns them.
    fn sweep(&self) -> HashSet<String> {
        let mut keys: HashSet<String> = self
            .pods
            .state()
            .iter()
            .filter_map(|p| pod_key(p))
            .collect();
        keys.extend(
            port::all(&self.ctx.nb_replica)
                .iter()
                .filter_map(port::recorded)
                .map(|r| r.owner),
        );
        keys.extend(
            self.ips
                .state()
                .iter()
                .filter(|ip| !ip.spec.pod_name.is_empty())
                .map(|ip| port::owner(&ip.spec.namespace, &ip.spec.pod_name)),
        );
        {
            let ipam = lock(&self.ctx.ipam);
            for subnet in ipam.subnets() {
                keys.extend(
                    subnet
                        .allocations()
                        .filter(|(owner, _)| owner.contains('/'))
                        .map(|(owner, _)| owner.to_string()),
                );
            }
        }
        for key in &keys {
            self.queue.add(key);
        }
        keys
    }

    /// Marks `key` processed for the start-up sync.
    fn processed(&self, key: &str) {
        let done = {
            let mut startup = lock(&self.startup);
            match startup.as_mut() {
                Some((keys, _)) => keys.remove(key) && keys.is_empty(),
                None => false,
            }
        };
        if done {
            self.startup_done();
        }
    }

    fn startup_done(&self) {
        if let Some((_, started)) = lock(&self.startup).take() {
            self.ctx.metrics.pods_synced.set(1);
            info!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                "pod reconciler synced: every pod, port and IP resource seen at start-up processed"
            );
        }
    }

    async fn reconcile(&self, key: &str) -> Result<(), PodError> {
        let Some((namespace, name)) = key.split_once('/') else {
            return Ok(());
        };
        match self.pods.get(&ObjectRef::new(name).within(namespace)) {
            Some(pod) if !host_network(&pod) => self.ensure(&pod, namespace, name, key).await,
            _ => self.cleanup(namespace, name, key).await,
        }
    }

    async fn ensure(
        &self,
        pod: &Pod,
        namespace: &str,
        name: &str,
        key: &str,
    ) -> Result<(), PodError> {
        match annotations::assigned(pod) {
            Ok(Some(assigned)) => self.keep(pod, namespace, name, key, assigned).await,
            Ok(None) if finished(pod) => Ok(()),
            Ok(None) => self.allocate(pod, namespace, name, key).await,
            Err(invalid) => {
                self.warn(pod, "InvalidAnnotation", invalid.to_string())
                    .await;
                Ok(())
            }
        }
    }

    /// An allocated pod: its annotations are the truth. Makes the IPAM, the
    /// port and the IP resource agree with them (repairs after a crash or
    /// someone else's change); never rewrites the annotations.
    async fn keep(
        &self,
        pod: &Pod,
        namespace: &str,
        name: &str,
        key: &str,
        assigned: Assigned,
    ) -> Result<(), PodError> {
        let subnet = assigned.subnet.as_str();
        self.ensure_restored(subnet).await?;
        let restored = {
            let mut ipam = lock(&self.ctx.ipam);
            release_elsewhere(&mut ipam, key, subnet);
            match ipam.restore(subnet, key, &assigned.ips, Some(assigned.mac)) {
                // An older record of this pod disagreed: the annotations win.
                Err(
                    AllocError::OwnerHasOtherAddress { .. } | AllocError::OwnerHasOtherMac { .. },
                ) => {
                    ipam.release(subnet, key);
                    ipam.restore(subnet, key, &assigned.ips, Some(assigned.mac))
                }
                other => other,
            }
        };
        let allocation = match restored {
            Ok(allocation) => allocation,
            Err(AllocError::UnknownSubnet(s)) => return Err(PodError::SubnetNotReady(s)),
            Err(error) => {
                // Another pod holds the address: nothing is written for this one.
                let message = format!(
                    "the addresses this pod was annotated with cannot be kept in Subnet {subnet}: {error}"
                );
                self.warn(pod, "AddressConflict", message).await;
                return Ok(());
            }
        };
        self.write_port(pod, namespace, name, subnet, allocation)
            .await?;
        self.ensure_ip_resource(pod, namespace, name, subnet, &allocation)
            .await
    }

    /// A pod without addresses: allocate, write the port, annotate, record.
    async fn allocate(
        &self,
        pod: &Pod,
        namespace: &str,
        name: &str,
        key: &str,
    ) -> Result<(), PodError> {
        let subnet = match annotations::requested_subnet(pod) {
            Some(subnet) => subnet.to_string(),
            None => subnet::subnet_for_namespace(&self.ctx, namespace)
                .ok_or_else(|| PodError::NoSubnet(namespace.to_string()))?,
        };
        self.ensure_restored(&subnet).await?;
        let request = match annotations::address_request(pod) {
            Ok(request) => request,
            Err(error) => {
                self.warn(pod, "InvalidAddressRequest", error.to_string())
                    .await;
                return Ok(());
            }
        };
        // A port left by an earlier pod of the same name goes first.
        let uid = pod.uid().unwrap_or_default();
        let stale: Vec<LogicalSwitchPort> = port::of_owner(&self.ctx.nb_replica, key)
            .into_iter()
            .filter(|p| port::recorded(p).is_none_or(|r| r.uid != uid))
            .collect();
        if !stale.is_empty() {
            port::delete(&self.ctx, &stale).await?;
            let mut ipam = lock(&self.ctx.ipam);
            release_elsewhere(&mut ipam, key, "");
        }
        let allocated = {
            let mut ipam = lock(&self.ctx.ipam);
            release_elsewhere(&mut ipam, key, &subnet);
            match ipam.allocate(&subnet, key, &request) {
                // Held from an earlier attempt with another request: the
                // pod was never annotated with it, so it is dropped.
                Err(
                    AllocError::OwnerHasOtherAddress { .. } | AllocError::OwnerHasOtherMac { .. },
                ) => {
                    ipam.release(&subnet, key);
                    ipam.allocate(&subnet, key, &request)
                }
                other => other,
            }
        };
        let allocation = match allocated {
            Ok(allocation) => allocation,
            Err(AllocError::UnknownSubnet(s)) => return Err(PodError::SubnetNotReady(s)),
            Err(error) => {
                self.warn(pod, "AllocationFailed", format!("Subnet {subnet}: {error}"))
                    .await;
                return Err(PodError::Allocation { subnet, error });
            }
        };
        self.write_port(pod, namespace, name, &subnet, allocation)
            .await?;
        let config = lock(&self.ctx.ipam)
            .subnet(&subnet)
            .map(|s| s.config().clone())
            .ok_or_else(|| PodError::SubnetNotReady(subnet.clone()))?;
        let patch = annotations::allocation_patch(&uid, &subnet, &config, &allocation);
        let pods: Api<Pod> = Api::namespaced(self.ctx.kube.clone(), namespace);
        match pods
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {}
            // Deleted or replaced meanwhile: its own events follow.
            Err(kube::Error::Api(e)) if matches!(e.code, 404 | 409 | 422) => {
                debug!(pod = %key, reason = %e.message, "pod changed before it was annotated");
                return Ok(());
            }
            Err(err) => return Err(err.into()),
        }
        debug!(pod = %key, %subnet, ips = %allocation.ip_address_annotation(), "pod annotated");
        self.ensure_ip_resource(pod, namespace, name, &subnet, &allocation)
            .await?;
        subnet::request_status_refresh(&self.ctx, &subnet);
        Ok(())
    }

    async fn write_port(
        &self,
        pod: &Pod,
        namespace: &str,
        name: &str,
        subnet: &str,
        allocation: Allocation,
    ) -> Result<(), PodError> {
        let desired = PodPort {
            namespace: namespace.to_string(),
            name: name.to_string(),
            uid: pod.uid().unwrap_or_default(),
            subnet: subnet.to_string(),
            allocation,
        };
        match port::ensure(&self.ctx, &desired).await {
            Ok(inserted) => {
                if let Some(uuid) = inserted {
                    lock(&self.inserted_ports).insert(port::owner(namespace, name), uuid);
                }
                Ok(())
            }
            Err(err @ PortError::NameTaken(_)) => {
                self.warn(pod, "PortNameTaken", err.to_string()).await;
                Err(err.into())
            }
            Err(err) => Err(err.into()),
        }
    }

    async fn ensure_ip_resource(
        &self,
        pod: &Pod,
        namespace: &str,
        name: &str,
        subnet: &str,
        allocation: &Allocation,
    ) -> Result<(), PodError> {
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .unwrap_or_default();
        let spec = ip_resource::desired_spec(namespace, name, node, subnet, allocation);
        let ip_name = ip_resource::name(namespace, name);
        let stored = self.ips.get(&ObjectRef::new(&ip_name));
        let applied = lock(&self.applied_ips).get(&ip_name).cloned();
        match (stored, applied) {
            (_, Some(applied)) if applied == spec => return Ok(()),
            (Some(ip), _) if ip_resource::is_current(&ip, &spec) => return Ok(()),
            (None, None) => ip_resource::create(&self.ctx, &spec).await?,
            _ => ip_resource::apply(&self.ctx, &spec).await?,
        }
        lock(&self.applied_ips).insert(ip_name, spec);
        Ok(())
    }

    /// The pod is gone (or hostNetwork): its ports (ours only), then its
    /// addresses, then its IP resource.
    async fn cleanup(&self, namespace: &str, name: &str, key: &str) -> Result<(), PodError> {
        let mut ports = port::of_owner(&self.ctx.nb_replica, key);
        let inserted = lock(&self.inserted_ports).get(key).copied();
        if let Some(uuid) = inserted.filter(|u| !ports.iter().any(|p| p.uuid == *u)) {
            ports.push(LogicalSwitchPort {
                uuid,
                ..LogicalSwitchPort::default()
            });
        }
        port::delete(&self.ctx, &ports).await?;
        lock(&self.inserted_ports).remove(key);
        let mut subnets: BTreeSet<String> = ports
            .iter()
            .filter_map(port::recorded)
            .map(|r| r.subnet)
            .collect();
        {
            let mut ipam = lock(&self.ctx.ipam);
            subnets.extend(release_elsewhere(&mut ipam, key, ""));
        }
        let ip_name = ip_resource::name(namespace, name);
        let applied = lock(&self.applied_ips).contains_key(&ip_name);
        match self.ips.get(&ObjectRef::new(&ip_name)) {
            Some(ip) if ip_resource::records_pod(&ip, namespace, name) => {
                ip_resource::delete(&self.ctx, &ip_name, ip.uid()).await?;
            }
            // Applied, but the watch has not shown it yet.
            None if applied => ip_resource::delete(&self.ctx, &ip_name, None).await?,
            _ => {}
        }
        lock(&self.applied_ips).remove(&ip_name);
        if !ports.is_empty() {
            debug!(pod = %key, "pod gone: port, addresses and IP resource released");
        }
        for subnet in subnets {
            subnet::request_status_refresh(&self.ctx, &subnet);
        }
        Ok(())
    }

    /// Rebuilds Subnet `subnet`'s IPAM once after start-up, before anything
    /// is allocated or kept in it.
    async fn ensure_restored(&self, subnet: &str) -> Result<(), PodError> {
        if lock(&self.restored).contains(subnet) {
            return Ok(());
        }
        let _one_at_a_time = self.restoring.lock().await;
        if lock(&self.restored).contains(subnet) {
            return Ok(());
        }
        let started = Instant::now();
        let pods = self.pods.state();
        let ports = port::in_subnet(&self.ctx.nb_replica, subnet);
        let ips = self.ips.state();
        let mut holdings = ipam_restore::from_pods(&pods);
        holdings.extend(ipam_restore::from_ports(&ports));
        holdings.extend(ipam_restore::from_ip_resources(&ips));
        let owners: BTreeSet<String> = holdings
            .iter()
            .filter(|h| h.subnet == subnet)
            .map(|h| h.owner.clone())
            .collect();
        let outcome = {
            let mut ipam = lock(&self.ctx.ipam);
            ipam_restore::restore(&mut ipam, subnet, holdings)
        }
        .map_err(|_| PodError::SubnetNotReady(subnet.to_string()))?;
        for refused in outcome.refused.iter().filter(|r| r.is_conflict()) {
            warn!(
                %subnet,
                owner = %refused.holding.owner,
                source = ?refused.holding.source,
                error = %refused.error,
                "address record not restored: conflict"
            );
        }
        lock(&self.restored).insert(subnet.to_string());
        // Restored owners whose pod is gone are cleaned up now.
        for owner in owners {
            self.queue.add(&owner);
        }
        subnet::request_status_refresh(&self.ctx, subnet);
        info!(
            %subnet,
            records = outcome.restored,
            refused = outcome.refused.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "Subnet IPAM restored"
        );
        Ok(())
    }

    async fn warn(&self, pod: &Pod, reason: &str, note: String) {
        warn!(pod = ?pod_key(pod), reason, note, "pod not allocated");
        let event = Event {
            type_: EventType::Warning,
            reason: reason.to_string(),
            note: Some(note),
            action: "Allocate".to_string(),
            secondary: None,
        };
        if let Err(err) = self.recorder.publish(&event, &pod.object_ref(&())).await {
            debug!(error = %err, "could not publish the event");
        }
    }
}

/// Releases what `owner` holds in every Subnet but `keep`; returns those
/// Subnets.
fn release_elsewhere(ipam: &mut ipam::Ipam, owner: &str, keep: &str) -> Vec<String> {
    let held: Vec<String> = ipam
        .subnets()
        .filter(|s| s.name() != keep && s.get(owner).is_some())
        .map(|s| s.name().to_string())
        .collect();
    for subnet in &held {
        ipam.release(subnet, owner);
    }
    held
}
