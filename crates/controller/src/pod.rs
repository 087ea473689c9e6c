//! The pod reconciler: every pod (except hostNetwork ones) gets addresses
//! from its Subnet, a Logical_Switch_Port, its Kube-OVN annotations and an
//! `IP` resource; a deleted pod gives them all back.
//!
//! The Subnet is the pod's `ovn.kubernetes.io/logical_switch` annotation,
//! else the namespace's binding, else the default Subnet (see
//! [`Context::subnet_for_namespace`] and [`allocation::decide`]).
//!
//! Order of writes, for crash safety: allocate in memory → write the port
//! (the durable record) → annotate the pod (one patch) → IP resource. A pod
//! is annotated once: an allocated pod's annotations are the truth and are
//! never rewritten. Before a Subnet's first allocation after start-up, its
//! IPAM is rebuilt from our ports, the annotations and the IP resources
//! ([`restore`]), so a restart never hands out an address twice.
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

pub mod allocation;
pub mod ip_resource;
pub mod port;
pub mod restore;
pub mod startup;
pub mod write_lag;

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use api::IP;
use api::pod_network::PodNetwork;
use ipam::{AllocError, Allocation};
use k8s_openapi::api::core::v1::{Pod, PodSpec, PodStatus};
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use ovn::Table;
use ovn::nb::LogicalSwitchPort;
use ovn::owned::{Kind, Owner};
use ovn::view::owner_of_row;
use ovsdb::RowEvent;
use serde_json::json;
use tracing::{debug, info, warn};

use crate::context::Context;
use crate::error::ReconcileError;
use crate::queue::WorkQueue;
use crate::runtime::{self, Events, Tasks};

use self::allocation::Decision;
use self::port::{PodPort, PortError, Stale, owner_key};
use self::startup::Startup;
use self::write_lag::WriteLag;

/// Workers processing pod keys in parallel (each key by one at a time).
const WORKERS: usize = 32;

struct Reconciler {
    ctx: Arc<Context>,
    queue: Arc<WorkQueue>,
    pods: Store<Pod>,
    ips: Store<IP>,
    events: Events,
    /// Subnets whose IPAM was rebuilt since start-up.
    restored: Mutex<HashSet<String>>,
    /// Held while a Subnet's IPAM is rebuilt.
    restoring: tokio::sync::Mutex<()>,
    /// Writes the caches do not show yet.
    lag: WriteLag,
    startup: Startup,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Drops what no reconciler reads from a cached pod (memory at 10k pods).
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
    Some(owner_key(&pod.namespace()?, &pod.name_any()))
}

/// Runs the pod reconciler until a watch or the Northbound event stream
/// ends.
pub async fn run(ctx: Arc<Context>) -> anyhow::Result<()> {
    let (pods, pod_events) = runtime::reflect(Api::<Pod>::all(ctx.kube.clone()), slim);
    let (ips, ip_events) = runtime::reflect(ip_resource::api(&ctx), |ip: &mut IP| {
        ip.managed_fields_mut().clear()
    });
    // Subscribed before the start-up sweep so that no change is missed.
    let mut nb_events = ctx.nb_view.replica().subscribe();
    let mut bindings = ctx.subnet_state.watch_changes();
    let this = Arc::new(Reconciler {
        events: Events::new(&ctx, "Allocate"),
        ctx,
        queue: WorkQueue::new(),
        pods,
        ips,
        restored: Mutex::new(HashSet::new()),
        restoring: tokio::sync::Mutex::new(()),
        lag: WriteLag::default(),
        startup: Startup::default(),
    });
    let mut tasks = Tasks::new();

    let r = this.clone();
    tasks.spawn(async move {
        let mut listed = false;
        runtime::follow("pod", pod_events, |event| match event {
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
        })
        .await
    });

    let r = this.clone();
    tasks.spawn(async move {
        runtime::follow("IP resource", ip_events, |event| match event {
            watcher::Event::Apply(ip) => r.lag.ip_seen(&ip.name_any()),
            // Deleted by someone else: restored if its pod still exists.
            watcher::Event::Delete(ip) => {
                // Its event may have come before the create returned.
                r.lag.ip_seen(&ip.name_any());
                r.queue
                    .add(&owner_key(&ip.spec.namespace, &ip.spec.pod_name));
            }
            _ => {}
        })
        .await
    });

    let r = this.clone();
    tasks.spawn(async move {
        while let Some(event) = nb_events.recv().await {
            if let Some((owner, inserted)) = changed_port_owner(&event) {
                if inserted {
                    r.lag.port_seen(&owner, event.uuid());
                } else {
                    r.queue.add(&owner);
                }
            }
        }
        anyhow::bail!("the Northbound replica stopped sending events")
    });

    let r = this.clone();
    tasks.spawn(async move {
        // A Subnet accepted or rebound: pods waiting for one try again.
        while bindings.changed().await.is_ok() {
            for pod in r.pods.state() {
                if !allocation::allocated(&pod)
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
    this.ctx.nb_view.replica().wait_synced().await?;
    let keys = this.sweep();
    info!(
        keys = keys.len(),
        "pods, IP resources and ports listed: reconciling pods"
    );
    if let Some(elapsed) = this.startup.begin(keys) {
        this.synced(elapsed);
    }

    let r = this.clone();
    runtime::spawn_workers(&mut tasks, WORKERS, &this.queue, move |key| {
        let r = r.clone();
        async move {
            let result = r.reconcile(&key).await;
            match &result {
                Ok(()) => {}
                Err(error) if error.is_waiting() => debug!(pod = %key, %error, "pod waits"),
                Err(error) => warn!(pod = %key, %error, "pod reconcile failed, will retry"),
            }
            r.ctx.metrics.reconciled("pod", result.is_ok());
            if let Some(elapsed) = r.startup.processed(&key) {
                r.synced(elapsed);
            }
            result
        }
    });
    runtime::first_end(&mut tasks).await
}

/// The pod owning one of our pod ports that a Northbound transaction
/// changed, and whether it was inserted (our own write) rather than changed
/// or deleted.
fn changed_port_owner(event: &RowEvent) -> Option<(String, bool)> {
    if event.table() != LogicalSwitchPort::NAME {
        return None;
    }
    let (row, inserted) = match event {
        RowEvent::Insert { new, .. } => (new, true),
        RowEvent::Modify { old, .. } | RowEvent::Delete { old, .. } => (old, false),
    };
    owner_of_row(row)
        .filter(|owner| owner.kind() == Kind::Pod)
        .map(|owner| (owner.object().to_string(), inserted))
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
            port::all(&self.ctx.nb_view)
                .iter()
                .filter_map(port::recorded)
                .map(|r| r.owner),
        );
        keys.extend(
            self.ips
                .state()
                .iter()
                .filter(|ip| !ip.spec.pod_name.is_empty())
                .map(|ip| owner_key(&ip.spec.namespace, &ip.spec.pod_name)),
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

    fn synced(&self, elapsed: std::time::Duration) {
        self.ctx.metrics.pods_synced.set(1);
        info!(
            elapsed_ms = elapsed.as_millis() as u64,
            "pod reconciler synced: every pod, port and IP resource seen at start-up processed"
        );
    }

    async fn reconcile(&self, key: &str) -> Result<(), ReconcileError> {
        let Some((namespace, name)) = key.split_once('/') else {
            return Ok(());
        };
        let pod = match self.pods.get(&ObjectRef::new(name).within(namespace)) {
            Some(pod) if !allocation::host_network(&pod) => pod,
            _ => return self.cleanup(namespace, name, key).await,
        };
        let decision = allocation::decide(&pod, || self.ctx.subnet_for_namespace(namespace));
        match decision {
            Ok(Decision::Keep(network)) => self.keep(&pod, namespace, name, key, network).await,
            Ok(Decision::Allocate { subnet, request }) => {
                self.allocate(&pod, namespace, name, key, &subnet, &request)
                    .await
            }
            Ok(Decision::Nothing) => Ok(()),
            Err(refusal) => match refusal.reason() {
                Some(reason) => {
                    self.warn(&pod, reason, refusal.to_string()).await;
                    Ok(())
                }
                None => Err(ReconcileError::Waiting(refusal.to_string())),
            },
        }
    }

    /// An allocated pod: its annotations are the truth.
    async fn keep(
        &self,
        pod: &Pod,
        namespace: &str,
        name: &str,
        key: &str,
        network: PodNetwork,
    ) -> Result<(), ReconcileError> {
        let subnet = network.logical_switch.as_str();
        self.ensure_restored(subnet).await?;
        let ips: Vec<_> = network.ips().collect();
        let kept = allocation::keep(&mut lock(&self.ctx.ipam), subnet, key, &ips, network.mac);
        let allocation = match kept {
            Ok(allocation) => allocation,
            Err(AllocError::UnknownSubnet(s)) => return Err(subnet_not_ready(&s)),
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

    /// A pod not allocated yet: addresses, port, annotations, IP resource.
    async fn allocate(
        &self,
        pod: &Pod,
        namespace: &str,
        name: &str,
        key: &str,
        subnet: &str,
        request: &ipam::AddressRequest,
    ) -> Result<(), ReconcileError> {
        self.ensure_restored(subnet).await?;
        // A port left by an earlier pod of the same name goes first.
        let uid = pod.uid().unwrap_or_default();
        let owner = Owner::pod(namespace, name);
        let ports = port::of_owner(&self.ctx.nb_view, &owner);
        let stale: Vec<Stale<'_>> = ports
            .iter()
            .filter(|p| port::recorded(p).is_none_or(|r| r.uid != uid))
            .map(Stale::Read)
            .collect();
        if !stale.is_empty() {
            port::delete(&self.ctx, &stale).await?;
            allocation::release_elsewhere(&mut lock(&self.ctx.ipam), key, "");
        }
        let allocated = allocation::allocate(&mut lock(&self.ctx.ipam), subnet, key, request);
        let allocation = match allocated {
            Ok(allocation) => allocation,
            Err(AllocError::UnknownSubnet(s)) => return Err(subnet_not_ready(&s)),
            Err(error) => {
                let message = format!("Subnet {subnet}: {error}");
                self.warn(pod, "AllocationFailed", message.clone()).await;
                return Err(ReconcileError::Failed(format!(
                    "no allocation in {message}"
                )));
            }
        };
        self.write_port(pod, namespace, name, subnet, allocation)
            .await?;
        let config = lock(&self.ctx.ipam)
            .subnet(subnet)
            .map(|s| s.config().clone())
            .ok_or_else(|| subnet_not_ready(subnet))?;
        let network = PodNetwork::from_allocation(subnet, &config, &allocation);
        // One patch, once; the uid makes it fail for a re-created pod.
        let patch = json!({
            "metadata": { "uid": uid, "annotations": network.to_annotations() }
        });
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
        self.ensure_ip_resource(pod, namespace, name, subnet, &allocation)
            .await?;
        self.ctx.request_subnet_refresh(subnet);
        Ok(())
    }

    async fn write_port(
        &self,
        pod: &Pod,
        namespace: &str,
        name: &str,
        subnet: &str,
        allocation: Allocation,
    ) -> Result<(), ReconcileError> {
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
                    self.lag.port_inserted(&owner_key(namespace, name), uuid);
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
    ) -> Result<(), ReconcileError> {
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .unwrap_or_default();
        let spec = ip_resource::desired_spec(namespace, name, node, subnet, allocation);
        let ip_name = ip_resource::name(namespace, name);
        let stored = self.ips.get(&ObjectRef::new(&ip_name));
        match (stored, self.lag.applied_ip(&ip_name)) {
            (_, Some(applied)) if applied == spec => return Ok(()),
            (Some(ip), _) if ip_resource::is_current(&ip, &spec) => return Ok(()),
            (None, None) => ip_resource::create(&self.ctx, &spec).await?,
            _ => ip_resource::apply(&self.ctx, &spec).await?,
        }
        self.lag.ip_applied(&ip_name, spec);
        Ok(())
    }

    /// A pod that is gone (or hostNetwork): port (only while it is ours),
    /// IP resource (only one naming the pod), then addresses.
    async fn cleanup(&self, namespace: &str, name: &str, key: &str) -> Result<(), ReconcileError> {
        let owner = Owner::pod(namespace, name);
        let ports = port::of_owner(&self.ctx.nb_view, &owner);
        let mut stale: Vec<Stale<'_>> = ports.iter().map(Stale::Read).collect();
        if let Some(uuid) = self
            .lag
            .inserted_port(key)
            .filter(|u| !ports.iter().any(|p| p.uuid == *u))
        {
            stale.push(Stale::Inserted(&owner, uuid));
        }
        port::delete(&self.ctx, &stale).await?;
        let mut subnets: BTreeSet<String> = ports
            .iter()
            .filter_map(port::recorded)
            .map(|r| r.subnet)
            .collect();
        subnets.extend(allocation::release_elsewhere(
            &mut lock(&self.ctx.ipam),
            key,
            "",
        ));
        let ip_name = ip_resource::name(namespace, name);
        let applied = self.lag.applied_ip(&ip_name).is_some();
        match self.ips.get(&ObjectRef::new(&ip_name)) {
            Some(ip) if ip_resource::records_pod(&ip, namespace, name) => {
                ip_resource::delete(&self.ctx, &ip_name, ip.uid()).await?;
            }
            // Applied, but the watch has not shown it yet.
            None if applied => ip_resource::delete(&self.ctx, &ip_name, None).await?,
            _ => {}
        }
        self.lag.forget(key, &ip_name);
        if !stale.is_empty() {
            debug!(pod = %key, "pod gone: port, addresses and IP resource released");
        }
        for subnet in subnets {
            self.ctx.request_subnet_refresh(&subnet);
        }
        Ok(())
    }

    /// Rebuilds `subnet`'s IPAM from our ports, the annotations and the IP
    /// resources, once after start-up, before its first allocation.
    async fn ensure_restored(&self, subnet: &str) -> Result<(), ReconcileError> {
        if lock(&self.restored).contains(subnet) {
            return Ok(());
        }
        let _one_at_a_time = self.restoring.lock().await;
        if lock(&self.restored).contains(subnet) {
            return Ok(());
        }
        let started = Instant::now();
        let pods = self.pods.state();
        let ports = port::in_subnet(&self.ctx.nb_view, subnet);
        let ips = self.ips.state();
        let mut holdings = restore::from_pods(&pods);
        holdings.extend(restore::from_ports(&ports));
        holdings.extend(restore::from_ip_resources(&ips));
        let owners: BTreeSet<String> = holdings
            .iter()
            .filter(|h| h.subnet == subnet)
            .map(|h| h.owner.clone())
            .collect();
        let outcome = restore::restore(&mut lock(&self.ctx.ipam), subnet, holdings)
            .map_err(|_| subnet_not_ready(subnet))?;
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
        self.ctx.request_subnet_refresh(subnet);
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
        self.events.warn(pod, reason, &note).await;
    }
}

fn subnet_not_ready(subnet: &str) -> ReconcileError {
    ReconcileError::Waiting(format!("Subnet {subnet} is not ready"))
}
