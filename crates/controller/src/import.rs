//! The importer: every Neutron router in the Northbound database becomes a
//! `Vpc` (labelled external) whose status mirrors the router; nothing is ever
//! written to OVN.
//!
//! Event-driven: a work queue keyed by router name is fed by the Northbound
//! replica's change events, by a watch on Vpcs (a deleted imported Vpc is
//! imported again at once) and Subnets (their VPC's status lists them), and
//! by a periodic full resync that is only a safety net.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use api::annotations::{TRUE, VPC_EXTERNAL_LABEL};
use api::condition::{self, Condition, IMPORTED, READY, ROUTER_MISSING};
use api::unsupported::UnsupportedFields;
use api::{Subnet, Vpc, VpcStatus, VpcType};
use kube::ResourceExt;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use ovn::Table;
use ovn::nb::LogicalRouter;
use serde_json::json;
use tracing::{debug, info, warn};

use crate::context::{Context, FIELD_MANAGER};
use crate::error::ReconcileError;
use crate::nb_view;
use crate::queue::WorkQueue;
use crate::runtime::{self, Tasks};

/// Label naming who made a Vpc: `external` (imported) on imported Vpcs.
pub const VPC_TYPE_LABEL: &str = "rovn.io/vpc-type";
/// Value of [`VPC_TYPE_LABEL`] on imported Vpcs.
pub const VPC_TYPE_EXTERNAL: &str = "external";

/// Imports run concurrently for this many routers.
const WORKERS: usize = 8;

/// Names of the Subnets whose `spec.vpc` is `vpc`, sorted.
pub fn subnets_of(subnets: &Store<Subnet>, vpc: &str) -> Vec<String> {
    let mut names: Vec<String> = subnets
        .state()
        .iter()
        .filter(|s| s.spec.vpc.as_deref() == Some(vpc))
        .map(|s| s.name_any())
        .collect();
    names.sort();
    names
}

struct Importer {
    ctx: Arc<Context>,
    queue: Arc<WorkQueue>,
    vpcs: Store<Vpc>,
    subnets: Store<Subnet>,
    imported: Mutex<BTreeSet<String>>,
}

/// Runs the importer until an unrecoverable error (dropping the future stops
/// every task it started).
pub async fn run(ctx: Arc<Context>) -> anyhow::Result<()> {
    let (vpcs, vpc_events) = runtime::reflect(ctx.vpcs(), |_| {});
    let (subnets, subnet_events) = runtime::reflect(ctx.subnets(), |_| {});
    // Subscribe before the first full pass so that no change is missed.
    let mut nb_events = ctx.nb_view.replica().subscribe();
    let importer = Arc::new(Importer {
        ctx: ctx.clone(),
        queue: WorkQueue::new(),
        vpcs,
        subnets,
        imported: Mutex::new(BTreeSet::new()),
    });
    let mut tasks = Tasks::new();

    let this = importer.clone();
    tasks.spawn(async move { runtime::follow("Vpc", vpc_events, |e| this.on_vpc_event(&e)).await });

    let this = importer.clone();
    tasks.spawn(async move {
        let mut vpc_of: HashMap<String, Option<String>> = HashMap::new();
        runtime::follow("Subnet", subnet_events, |event| match event {
            watcher::Event::Apply(s) | watcher::Event::InitApply(s) => {
                let vpc = s.spec.vpc.clone();
                if let Some(Some(old)) = vpc_of.insert(s.name_any(), vpc.clone())
                    && Some(&old) != vpc.as_ref()
                {
                    this.queue.add(&old);
                }
                if let Some(vpc) = vpc {
                    this.queue.add(&vpc);
                }
            }
            watcher::Event::Delete(s) => {
                if let Some(Some(old)) = vpc_of.remove(&s.name_any()) {
                    this.queue.add(&old);
                }
            }
            watcher::Event::Init | watcher::Event::InitDone => {}
        })
        .await
    });

    let this = importer.clone();
    tasks.spawn(async move {
        this.update_foreign_count();
        while let Some(event) = nb_events.recv().await {
            this.ctx.metrics.nb_events.inc();
            if event.table() == LogicalRouter::NAME {
                this.update_foreign_count();
            }
            for router in nb_view::affected_routers(&this.ctx.nb_view, &event) {
                this.queue.add(&router);
            }
        }
        anyhow::bail!("the Northbound replica stopped sending events")
    });

    importer.vpcs.wait_until_ready().await?;
    importer.subnets.wait_until_ready().await?;
    info!("Vpc and Subnet caches listed: importing Neutron routers");

    let this = importer.clone();
    tasks.spawn(async move {
        let mut ticks = tokio::time::interval(this.ctx.settings.resync);
        loop {
            ticks.tick().await;
            this.enqueue_all();
        }
    });
    let this = importer.clone();
    runtime::spawn_workers(&mut tasks, WORKERS, &importer.queue, move |name| {
        let this = this.clone();
        async move {
            let result = this.import(&name).await.map_err(ReconcileError::from);
            if let Err(error) = &result {
                warn!(router = %name, %error, "import failed, will retry");
            }
            this.ctx.metrics.reconciled("router-import", result.is_ok());
            result
        }
    });
    runtime::first_end(&mut tasks).await
}

impl Importer {
    fn on_vpc_event(&self, event: &watcher::Event<Vpc>) {
        let vpc = match event {
            watcher::Event::Apply(v) | watcher::Event::InitApply(v) | watcher::Event::Delete(v) => {
                v
            }
            watcher::Event::Init | watcher::Event::InitDone => return,
        };
        let name = vpc.name_any();
        if vpc.is_imported() || nb_view::neutron_router(&self.ctx.nb_view, &name).is_some() {
            self.queue.add(&name);
        }
    }

    /// Queues every Neutron router and every imported Vpc.
    fn enqueue_all(&self) {
        for router in nb_view::neutron_routers(&self.ctx.nb_view) {
            self.queue.add(&router.name);
        }
        for vpc in self.vpcs.state() {
            if vpc.is_imported() {
                self.queue.add(&vpc.name_any());
            }
        }
    }

    fn update_foreign_count(&self) {
        let count = nb_view::foreign_router_count(&self.ctx.nb_view);
        self.ctx.metrics.routers_not_neutron.set(count as i64);
    }

    fn set_imported(&self, name: &str, imported: bool) {
        let mut set = self.imported.lock().unwrap_or_else(|p| p.into_inner());
        if imported {
            set.insert(name.to_string());
        } else {
            set.remove(name);
        }
        self.ctx.metrics.routers_imported.set(set.len() as i64);
    }

    async fn import(&self, name: &str) -> Result<(), kube::Error> {
        let existing = self.vpcs.get(&ObjectRef::new(name));
        match nb_view::neutron_router(&self.ctx.nb_view, name) {
            Some(router) => {
                self.apply_imported(&router, existing).await?;
                self.set_imported(name, true);
            }
            None => {
                self.set_imported(name, false);
                if let Some(vpc) = existing.filter(|v| v.is_imported()) {
                    self.router_missing(&vpc).await?;
                }
            }
        }
        Ok(())
    }

    async fn apply_imported(
        &self,
        router: &LogicalRouter,
        existing: Option<Arc<Vpc>>,
    ) -> Result<(), kube::Error> {
        let name = router.name.as_str();
        let vpc = match existing {
            Some(vpc) if vpc.is_imported() && has_type_label(&vpc) => vpc,
            _ => {
                debug!(router = %name, "applying imported Vpc");
                Arc::new(apply_imported_object(&self.ctx, name).await?)
            }
        };
        let desired = self.imported_status(router, &vpc);
        if vpc.status.as_ref() != Some(&desired) {
            self.ctx.apply_vpc_status(name, &desired).await?;
            info!(router = %name, neutron_name = ?desired.neutron_router_name, "Vpc status updated from Neutron router");
            debug!(router = %name, status = ?desired, "imported Vpc status");
        }
        Ok(())
    }

    fn imported_status(&self, router: &LogicalRouter, vpc: &Vpc) -> VpcStatus {
        let view = &self.ctx.nb_view;
        let current = vpc.status.clone().unwrap_or_default();
        let generation = vpc.metadata.generation;
        let display = nb_view::neutron_display_name(router).map(str::to_string);
        let networks = nb_view::neutron_networks(view, router);
        let mut subnets = subnets_of(&self.subnets, &router.name);
        subnets.extend(networks.iter().map(|n| n.switch.clone()));
        let mut network_names: Vec<String> = networks
            .into_iter()
            .map(|n| n.display_name.unwrap_or(n.switch))
            .collect();
        network_names.sort();
        let ignored = vpc.spec.unsupported_fields();
        let mut conditions = current.conditions.clone();
        condition::merge_conditions(
            &mut conditions,
            [
                Condition::new(
                    READY,
                    true,
                    "Imported",
                    format!(
                        "Neutron router {} imported",
                        display.as_deref().unwrap_or_default()
                    ),
                ),
                Condition::new(IMPORTED, true, "RouterFound", ""),
                Condition::new(ROUTER_MISSING, false, "RouterFound", ""),
                ignored_spec_condition(&ignored),
            ]
            .map(|c| c.observed(generation)),
        );
        VpcStatus {
            conditions,
            standby: true,
            default: false,
            router: Some(router.name.clone()),
            default_logical_switch: None,
            subnets,
            type_: Some(VpcType::External),
            neutron_router_name: display,
            router_cidrs: nb_view::router_cidrs(view, router).foreign,
            neutron_networks: network_names,
        }
    }

    /// The router of an imported Vpc is gone: delete the Vpc unless Subnets
    /// use it, in which case it stays with `RouterMissing`.
    async fn router_missing(&self, vpc: &Vpc) -> Result<(), kube::Error> {
        let name = vpc.name_any();
        let users = subnets_of(&self.subnets, &name);
        if users.is_empty() {
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: vpc.uid(),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            return match self.ctx.vpcs().delete(&name, &params).await {
                Ok(_) => {
                    info!(vpc = %name, "Neutron router deleted: imported Vpc deleted");
                    Ok(())
                }
                // Already gone, or replaced by a new object: nothing to do here.
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
                Err(err) => Err(err),
            };
        }
        let current = vpc.status.clone().unwrap_or_default();
        let generation = vpc.metadata.generation;
        let mut conditions = current.conditions.clone();
        let message = format!(
            "the Neutron router no longer exists; Subnets still using this Vpc: {}",
            users.join(", ")
        );
        condition::merge_conditions(
            &mut conditions,
            [
                Condition::new(READY, false, "RouterMissing", message.clone()),
                Condition::new(IMPORTED, false, "RouterMissing", ""),
                Condition::new(ROUTER_MISSING, true, "RouterDeleted", message),
                ignored_spec_condition(&vpc.spec.unsupported_fields()),
            ]
            .map(|c| c.observed(generation)),
        );
        let desired = VpcStatus {
            conditions,
            subnets: users,
            router_cidrs: Vec::new(),
            neutron_networks: Vec::new(),
            type_: Some(VpcType::External),
            standby: false,
            ..current.clone()
        };
        if vpc.status.as_ref() != Some(&desired) {
            self.ctx.apply_vpc_status(&name, &desired).await?;
            warn!(vpc = %name, "Neutron router deleted: Vpc kept (Subnets use it) with RouterMissing");
        }
        Ok(())
    }
}

fn has_type_label(vpc: &Vpc) -> bool {
    vpc.labels().get(VPC_TYPE_LABEL).map(String::as_str) == Some(VPC_TYPE_EXTERNAL)
}

/// `Unsupported` for an imported Vpc: its spec is never applied to the
/// Neutron router.
fn ignored_spec_condition(fields: &[String]) -> Condition {
    if fields.is_empty() {
        Condition::new(condition::UNSUPPORTED, false, "AllFieldsSupported", "")
    } else {
        Condition::new(
            condition::UNSUPPORTED,
            true,
            "IgnoredOnImportedVpc",
            format!(
                "the spec of an imported Vpc is not applied to the Neutron router; ignored: {}",
                fields.join(", ")
            ),
        )
    }
}

/// Server-side applies the imported Vpc object itself (labels, empty spec).
async fn apply_imported_object(ctx: &Context, name: &str) -> Result<Vpc, kube::Error> {
    let labels = BTreeMap::from([
        (VPC_EXTERNAL_LABEL, TRUE),
        (VPC_TYPE_LABEL, VPC_TYPE_EXTERNAL),
    ]);
    let object = json!({
        "apiVersion": api::API_VERSION,
        "kind": "Vpc",
        "metadata": { "name": name, "labels": labels },
        "spec": {},
    });
    ctx.vpcs()
        .patch(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&object),
        )
        .await
}
