//! ClusterIP Services as OVN load balancers on our switches.
//!
//! Every Service with a ClusterIP (type ClusterIP, and the ClusterIP part of
//! NodePort and LoadBalancer Services; not headless nor ExternalName ones)
//! gets, per protocol and per served VPC (a VPC with an accepted Subnet,
//! Neutron's or ours), one Load_Balancer of ours ([`model`]) built from its
//! EndpointSlices (label `kubernetes.io/service-name`, ready endpoints
//! only), whether the endpointslice controller made them for a selector or
//! a user made them by hand. Each VPC's load balancers are in the VPC's
//! Load_Balancer_Group, referenced by the switches of its Subnets
//! ([`groups`]); never by Neutron's switches or routers.
//!
//! Endpoints in another, isolated VPC: a VPC's load balancers only hold the
//! endpoints that live in that VPC (in one of its Subnets or on a Neutron
//! network of its router) and those outside every VPC (host-network
//! endpoints). A pod whose VPC holds no endpoint of a Service gets a TCP
//! reset or an ICMP port unreachable (`options:reject`), never a packet
//! routed towards another tenant; a Service whose endpoints are in several
//! VPCs gets a Warning Event (`EndpointsInSeveralVpcs`) saying that each
//! VPC reaches only its own, and an endpoint whose address is in several
//! VPCs' networks (overlapping CIDRs) that its pod's namespace does not
//! settle is left out (`AmbiguousEndpoint`).
//!
//! Triggers: the Service and EndpointSlice watches (keys `namespace/name`),
//! Northbound events on our load balancers (another client changed or
//! deleted one: restored at once), on our groups and on our switches' group
//! references, and changes of the accepted Subnets (a VPC starts or stops
//! being served). A Service key whose Service is gone removes its rows.

mod groups;
pub mod model;
mod reconcile;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use futures::Stream;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use ovn::Table;
use ovn::nb::{LoadBalancer, LoadBalancerGroup, LogicalSwitch};
use ovn::owned::Kind;
use ovn::view::owner_of_row;
use ovsdb::RowEvent;
use tracing::{debug, info, warn};

use crate::context::Context;
use crate::error::ReconcileError;
use crate::queue::WorkQueue;
use crate::runtime::{self, Events, Tasks};
use model::{Plan, SERVICE_NAME_LABEL};
use reconcile::served_vpcs;

/// Workers processing Service keys in parallel (each key by one at a time).
const WORKERS: usize = 8;
/// The one key of the group queue.
const GROUPS: &str = "groups";

struct Reconciler {
    ctx: Arc<Context>,
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    queue: Arc<WorkQueue>,
    groups: Arc<WorkQueue>,
    events: Events,
    /// Keys queued because another client changed or deleted our rows.
    repairs: Mutex<HashSet<String>>,
    /// The last warning recorded per Service (recorded again on change).
    warned: Mutex<HashMap<String, String>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

fn service_key(service: &Service) -> Option<String> {
    Some(format!("{}/{}", service.namespace()?, service.name_any()))
}

/// The Service key of an EndpointSlice (its namespace and service-name label).
fn slice_key(slice: &EndpointSlice) -> Option<String> {
    let service = slice.labels().get(SERVICE_NAME_LABEL)?;
    Some(format!("{}/{service}", slice.namespace()?))
}

/// Drops what no reconciler reads from a cached Service.
fn slim_service(service: &mut Service) {
    service.managed_fields_mut().clear();
    service.status = None;
}

/// What a Northbound change concerns.
#[derive(Debug, Default, PartialEq, Eq)]
struct Concerns {
    /// A Service whose load balancer another client changed or deleted.
    service: Option<String>,
    /// The groups or a switch's reference to one.
    groups: bool,
}

fn concerns(event: &RowEvent) -> Concerns {
    let table = event.table();
    let (old, new) = match event {
        RowEvent::Insert { new, .. } => (None, Some(new)),
        RowEvent::Modify { old, new, .. } => (Some(old), Some(new)),
        RowEvent::Delete { old, .. } => (Some(old), None),
    };
    let kind = |kind| {
        old.into_iter()
            .chain(new)
            .filter_map(|row| owner_of_row(row))
            .find(|owner| owner.kind() == kind)
    };
    if table == LoadBalancer::NAME {
        let owner = kind(Kind::Service);
        // Group membership changes with inserts, deletes and the VPC key.
        let membership = match (old, new) {
            (Some(old), Some(new)) => old.get("external_ids") != new.get("external_ids"),
            _ => true,
        };
        return Concerns {
            // Our own inserts need no reconcile; changes and deletes may be
            // someone else's.
            service: owner
                .as_ref()
                .filter(|_| old.is_some())
                .map(|o| o.object().to_string()),
            groups: owner.is_some() && membership,
        };
    }
    if table == LoadBalancerGroup::NAME {
        return Concerns {
            service: None,
            groups: true,
        };
    }
    if table == LogicalSwitch::NAME && kind(Kind::Subnet).is_some() {
        let groups = match (old, new) {
            (Some(old), Some(new)) => {
                old.get("load_balancer_group") != new.get("load_balancer_group")
                    || old.get("external_ids") != new.get("external_ids")
            }
            _ => true,
        };
        return Concerns {
            service: None,
            groups,
        };
    }
    Concerns::default()
}

/// Runs the Service reconciler until a watch or the Northbound event stream
/// ends.
pub async fn run(ctx: Arc<Context>) -> anyhow::Result<()> {
    let (services, service_events) =
        runtime::reflect(Api::<Service>::all(ctx.kube.clone()), slim_service);
    let (slices, slice_events) = runtime::reflect(
        Api::<EndpointSlice>::all(ctx.kube.clone()),
        |slice: &mut EndpointSlice| slice.managed_fields_mut().clear(),
    );
    // Subscribed before the start-up sweep so that no change is missed.
    let mut nb_events = ctx.nb_view.replica().subscribe();
    let mut bindings = ctx.subnet_state.watch_changes();
    let this = Arc::new(Reconciler {
        events: Events::new(&ctx, "Reconcile"),
        ctx,
        services,
        slices,
        queue: WorkQueue::new(),
        groups: WorkQueue::new(),
        repairs: Mutex::default(),
        warned: Mutex::default(),
    });
    let mut tasks = Tasks::new();

    tasks.spawn(this.clone().follow("Service", service_events, service_key));
    tasks.spawn(
        this.clone()
            .follow("EndpointSlice", slice_events, slice_key),
    );

    let r = this.clone();
    tasks.spawn(async move {
        while let Some(event) = nb_events.recv().await {
            let concerns = concerns(&event);
            if let Some(key) = concerns.service {
                lock(&r.repairs).insert(key.clone());
                r.queue.add(&key);
            }
            if concerns.groups {
                r.groups.add(GROUPS);
            }
        }
        anyhow::bail!("the Northbound replica stopped sending events")
    });

    let r = this.clone();
    tasks.spawn(async move {
        // A VPC starts or stops being served, a Subnet moves: every Service
        // and the groups again.
        let mut served = served_vpcs(&r.ctx);
        while bindings.changed().await.is_ok() {
            r.groups.add(GROUPS);
            let now = served_vpcs(&r.ctx);
            if now != served {
                served = now;
                r.sweep();
            }
        }
        anyhow::bail!("the Subnet state was dropped")
    });

    this.services.wait_until_ready().await?;
    this.slices.wait_until_ready().await?;
    this.ctx.wait_restored().await?;
    this.sweep();
    info!(
        services = this.services.state().len(),
        "Services and EndpointSlices listed: reconciling load balancers"
    );

    let r = this.clone();
    runtime::spawn_reconcilers(
        &mut tasks,
        WORKERS,
        &this.queue,
        &this.ctx,
        "service",
        move |key| {
            let r = r.clone();
            async move { r.reconcile(&key).await }
        },
    );
    let r = this.clone();
    runtime::spawn_workers(&mut tasks, 1, &this.groups, move |_| {
        let r = r.clone();
        async move {
            let result = groups::sync(&r.ctx).await;
            match &result {
                Ok(changes) if !changes.switches.is_empty() => {
                    debug!(switches = ?changes.switches, "switch group references set");
                }
                Ok(_) => {}
                Err(error) => warn!(%error, "load balancer groups failed, will retry"),
            }
            r.ctx.metrics.reconciled("service-group", result.is_ok());
            result.map(|_| ())
        }
    });
    runtime::first_end(&mut tasks).await
}

impl Reconciler {
    /// Follows one kind's watch: a changed or deleted object queues the Service `key` names;
    /// a finished (re-)list sweeps, as it may have missed deletes.
    async fn follow<K>(
        self: Arc<Self>,
        kind: &'static str,
        events: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
        key: fn(&K) -> Option<String>,
    ) -> anyhow::Result<()> {
        runtime::follow(kind, events, |event| match event {
            watcher::Event::Apply(object) | watcher::Event::Delete(object) => {
                if let Some(key) = key(&object) {
                    self.queue.add(&key);
                }
            }
            watcher::Event::InitDone => self.sweep(),
            watcher::Event::Init | watcher::Event::InitApply(_) => {}
        })
        .await
    }

    /// Queues every Service, every owner of a load balancer of ours, and
    /// the groups.
    fn sweep(&self) {
        let mut keys: BTreeSet<String> = self
            .services
            .state()
            .iter()
            .filter_map(|s| service_key(s))
            .collect();
        keys.extend(
            self.ctx
                .nb_view
                .owned_of_kind::<LoadBalancer>(Kind::Service)
                .iter()
                .map(|lb| lb.owner().object().to_string()),
        );
        for key in &keys {
            self.queue.add(key);
        }
        self.groups.add(GROUPS);
    }

    async fn reconcile(&self, key: &str) -> Result<(), ReconcileError> {
        let Some((namespace, name)) = key.split_once('/') else {
            return Ok(());
        };
        let repair = lock(&self.repairs).remove(key);
        let service = self.services.get(&ObjectRef::new(name).within(namespace));
        let slices: Vec<Arc<EndpointSlice>> = match service {
            Some(_) => self
                .slices
                .state()
                .into_iter()
                .filter(|s| slice_key(s).as_deref() == Some(key))
                .collect(),
            None => Vec::new(),
        };
        let slices: Vec<&EndpointSlice> = slices.iter().map(Arc::as_ref).collect();
        let spec = service.as_ref().and_then(|s| s.spec.as_ref());
        let (plan, written) = reconcile::apply(&self.ctx, namespace, name, spec, &slices).await?;
        if repair && written.inserted + written.updated > 0 {
            self.ctx.metrics.repaired("load-balancer");
        }
        match service {
            Some(service) => self.warn(key, &service, &plan).await,
            None => {
                lock(&self.warned).remove(key);
            }
        }
        Ok(())
    }

    /// Records a Warning Event when the Service's endpoints are split
    /// between VPCs or left out, once per change of the situation.
    async fn warn(&self, key: &str, service: &Service, plan: &Plan) {
        let (reason, note) = if !plan.ambiguous.is_empty() {
            let addresses: Vec<String> = plan.ambiguous.iter().map(|a| a.to_string()).collect();
            (
                "AmbiguousEndpoint",
                format!(
                    "endpoint address(es) {} are in the networks of several VPCs and their pods' namespaces do not tell which: left out of the load balancers",
                    addresses.join(", ")
                ),
            )
        } else if plan.endpoint_vpcs.len() > 1 {
            let vpcs: Vec<&str> = plan.endpoint_vpcs.iter().map(String::as_str).collect();
            (
                "EndpointsInSeveralVpcs",
                format!(
                    "ready endpoints are in VPCs {}: pods of each VPC reach only the endpoints in their own VPC (and host-network ones)",
                    vpcs.join(", ")
                ),
            )
        } else {
            lock(&self.warned).remove(key);
            return;
        };
        let text = format!("{reason}: {note}");
        if lock(&self.warned).get(key) == Some(&text) {
            return;
        }
        self.events.warn(service, reason, &note).await;
        lock(&self.warned).insert(key.to_string(), text);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ovn::owned::Owner;
    use ovsdb::{Row, Uuid};

    use super::*;

    fn row(name: &str, owner: &Owner) -> Arc<Row> {
        let mut row = Row::new();
        row.set("name", name);
        row.set("external_ids", ovsdb::Value::map(owner.external_ids()));
        Arc::new(row)
    }

    #[test]
    fn northbound_changes_trigger_their_service_and_the_groups() {
        let service = Owner::service("default", "web");
        let lb = row("rovn/service/default/web/tcp/a", &service);
        let insert = RowEvent::Insert {
            table: LoadBalancer::NAME.into(),
            new: lb.clone(),
        };
        assert_eq!(
            concerns(&insert),
            Concerns {
                service: None,
                groups: true
            },
            "our own insert only joins its group"
        );
        let delete = RowEvent::Delete {
            table: LoadBalancer::NAME.into(),
            old: lb.clone(),
        };
        assert_eq!(
            concerns(&delete),
            Concerns {
                service: Some("default/web".to_string()),
                groups: true
            }
        );
        let mut edited = (*lb).clone();
        edited.set("vips", ovsdb::Value::map([("10.96.0.1:80", "")]));
        let edit = RowEvent::Modify {
            table: LoadBalancer::NAME.into(),
            old: lb.clone(),
            new: Arc::new(edited),
        };
        assert_eq!(
            concerns(&edit),
            Concerns {
                service: Some("default/web".to_string()),
                groups: false
            },
            "an edited balancer is restored; its group is unchanged"
        );
        let switch = row("net2", &Owner::subnet("net2"));
        let mut unreferenced = (*switch).clone();
        unreferenced.set(
            "load_balancer_group",
            ovsdb::Value::set([Uuid::from_u128(2)]),
        );
        let modify = |old: &Arc<Row>, new: Row| RowEvent::Modify {
            table: LogicalSwitch::NAME.into(),
            old: old.clone(),
            new: Arc::new(new),
        };
        assert!(concerns(&modify(&switch, unreferenced)).groups);
        let mut ports = (*switch).clone();
        ports.set("ports", ovsdb::Value::set([Uuid::from_u128(3)]));
        assert!(
            !concerns(&modify(&switch, ports)).groups,
            "pods come and go"
        );
        let neutron = RowEvent::Delete {
            table: LogicalSwitch::NAME.into(),
            old: Arc::new(Row::new()),
        };
        assert_eq!(concerns(&neutron), Concerns::default());
    }
}
