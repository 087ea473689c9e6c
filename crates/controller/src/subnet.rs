//! Subnets: a Logical_Switch per Subnet, attached to its VPC's router
//! (Neutron's or ours) by a router port, with validation before any OVN
//! write, live moves between VPCs, deletion held back while addresses are
//! allocated, and event-driven repair of our rows.
//!
//! Triggers: the Subnet watch (kube-runtime `Controller`, finalizer
//! [`FINALIZER`]), Vpc changes, Northbound replica events on our rows and
//! on routers appearing or disappearing, and status refresh requests
//! (the pod reconciler's allocations, [`Context::request_subnet_refresh`]). A periodic requeue is only a safety
//! net.
//!
//! A Subnet that was valid and running and becomes invalid by an edit keeps
//! running with its previous configuration (`Validated=False` says why),
//! also across restarts (annotation [`ACCEPTED_SPEC`]).

mod attach;
mod status;
mod triggers;
mod validate;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use api::condition::{Condition, DELETION_BLOCKED};
use api::{IP, Subnet, SubnetSpec, Vpc};
use futures::StreamExt;
use futures::channel::mpsc;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use ovn::nb::LogicalRouterPort;
use ovn::owned::owner::{self, NEUTRON_NETWORK_NAME};
use ovn::owned::{OwnedTxn, Owner, check_name};
use serde_json::json;
use tracing::{info, warn};

pub use attach::{lrp_name, lsp_name};
pub use status::neutron_security_note;
pub use validate::Invalid;

use crate::bindings::Binding;
use crate::context::{Context, FIELD_MANAGER};
use crate::error::ReconcileError;
use crate::{nb_view, runtime};
use attach::{Attachment, Desired, Observed};
use status::StatusWriter;
use triggers::{affected_subnets, subnets_on};
use validate::RouterNetwork;

/// Finalizer on Subnets: our rows are removed before the object.
pub const FINALIZER: &str = "rovn.io/subnet";
/// Annotation holding the last accepted spec (JSON of the fields rovn
/// implements), so that a Subnet edited into an invalid spec keeps running
/// with its previous configuration across controller restarts.
pub const ACCEPTED_SPEC: &str = "rovn.io/accepted-spec";

/// The spec fields a Subnet's rows and bindings are made of.
fn accepted_fields(spec: &SubnetSpec) -> SubnetSpec {
    SubnetSpec {
        default: spec.default,
        vpc: spec.vpc.clone(),
        protocol: spec.protocol,
        namespaces: spec.namespaces.clone(),
        cidr_block: spec.cidr_block.clone(),
        gateway: spec.gateway.clone(),
        exclude_ips: spec.exclude_ips.clone(),
        ..SubnetSpec::default()
    }
}

/// Creates the default Subnet unless it exists (a user's edits are kept).
pub async fn ensure_default_subnet(ctx: &Context) -> Result<(), kube::Error> {
    let name = &ctx.settings.default_subnet;
    let subnet = Subnet::new(
        name,
        SubnetSpec {
            default: true,
            vpc: Some(ctx.settings.default_vpc.clone()),
            cidr_block: ctx.settings.default_cidr.clone(),
            ..SubnetSpec::default()
        },
    );
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PostParams::default()
    };
    match ctx.subnets().create(&params, &subnet).await {
        Ok(_) => {
            info!(subnet = %name, cidr = %ctx.settings.default_cidr, "default Subnet created");
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(err) => Err(err),
    }
}

struct Reconciler {
    ctx: Arc<Context>,
    status: StatusWriter,
    /// Router each Subnet's port was last attached to, to tell repairs
    /// (something removed our rows) from first attaches and moves.
    attached: Mutex<HashMap<String, String>>,
    /// Held while a Subnet is validated and accepted.
    accepting: Mutex<()>,
}

/// Runs the Subnet reconciler until the API watch or the Northbound event
/// stream ends.
pub async fn run(ctx: Arc<Context>) -> anyhow::Result<()> {
    let refresh = ctx
        .subnet_state
        .take_refresh_requests()
        .ok_or_else(|| anyhow::anyhow!("the Subnet reconciler runs once per process"))?;
    // Subscribe before the controller lists, so no change is missed.
    let mut nb_events = ctx.nb_view.replica().subscribe();
    let (nb_trigger, nb_triggers) = mpsc::unbounded::<ObjectRef<Subnet>>();
    let controller = Controller::new(ctx.subnets(), watcher::Config::default());
    let store = controller.store();
    let vpc_store = store.clone();
    let default_vpc = ctx.settings.default_vpc.clone();
    let vpc_default = default_vpc.clone();
    let triggers = futures::stream::select(
        nb_triggers,
        refresh.map(|name: String| ObjectRef::new(&name)),
    );
    let reconciler = Arc::new(Reconciler {
        ctx: ctx.clone(),
        status: StatusWriter::new(ctx.clone()),
        attached: Mutex::default(),
        accepting: Mutex::default(),
    });
    // What ran before a restart is accepted first, oldest first: a Subnet
    // refused because of a running one stays refused.
    while let Err(err) = reconciler.restore_all_accepted().await {
        warn!(error = %err, "could not list Subnets; retrying");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    ctx.subnet_state.mark_restored();
    let controller = controller
        .watches(ctx.vpcs(), watcher::Config::default(), move |vpc: Vpc| {
            subnets_on(&vpc_store, &vpc_default, &[vpc.name_any()])
        })
        .reconcile_on(triggers);
    let controller = runtime::run_controller(controller, reconcile, error_policy, reconciler);
    let forward = async move {
        while let Some(event) = nb_events.recv().await {
            for subnet in affected_subnets(&event, &store, &default_vpc) {
                let _ = nb_trigger.unbounded_send(subnet);
            }
        }
    };
    tokio::select! {
        _ = controller => anyhow::bail!("the Subnet watch ended"),
        _ = forward => anyhow::bail!("the Northbound replica stopped sending events"),
    }
}

fn error_policy(subnet: Arc<Subnet>, err: &ReconcileError, r: Arc<Reconciler>) -> Action {
    err.retry("subnet", &subnet.name_any(), &r.ctx.metrics)
}

async fn reconcile(subnet: Arc<Subnet>, r: Arc<Reconciler>) -> Result<Action, ReconcileError> {
    let reconciler: &Reconciler = &r;
    let action = runtime::finalized(
        &r.ctx.subnets(),
        FINALIZER,
        subnet,
        |subnet| async move { reconciler.apply(&subnet).await },
        |subnet| async move { reconciler.cleanup(&subnet).await },
    )
    .await?;
    r.ctx.metrics.reconciled("subnet", true);
    Ok(action)
}

impl Reconciler {
    async fn apply(&self, subnet: &Subnet) -> Result<Action, ReconcileError> {
        let name = subnet.name_any();
        let ctx = &self.ctx;
        let vpc = subnet.vpc_or(&ctx.settings.default_vpc);
        let vpc_object = ctx.vpcs().get_opt(&vpc).await?;
        let (binding, invalid) = match self.accept(subnet, &name, &vpc, vpc_object.as_ref()) {
            Ok(binding) => {
                self.record_accepted(subnet).await?;
                (Some(binding), None)
            }
            // Invalid: the previous valid configuration, if any, stays.
            Err(invalid) => match ctx.subnet_state.binding(&name) {
                Some(previous) => (Some(previous), Some(invalid)),
                None => (self.restore_accepted(subnet).await?, Some(invalid)),
            },
        };
        let attachment = match &binding {
            Some(binding) => {
                let imported = if binding.vpc == vpc {
                    vpc_object.as_ref().is_some_and(Vpc::is_imported)
                } else {
                    ctx.vpcs()
                        .get_opt(&binding.vpc)
                        .await?
                        .as_ref()
                        .is_some_and(Vpc::is_imported)
                };
                self.attach(&name, binding, imported).await?
            }
            None => Attachment::NotCreated,
        };
        self.status
            .write(subnet, binding.as_ref(), invalid.as_ref(), &attachment)
            .await?;
        Ok(match attachment {
            Attachment::RouterMissing { .. } | Attachment::NameTaken(_) => {
                Action::requeue(ctx.settings.resync.min(Duration::from_secs(30)))
            }
            _ => Action::requeue(ctx.settings.resync),
        })
    }

    /// Validates the spec, registers it in the IPAM and records it as
    /// accepted, as one step with respect to other Subnets (two Subnets
    /// checked at once cannot both take an overlapping CIDR).
    fn accept(
        &self,
        subnet: &Subnet,
        name: &str,
        vpc: &str,
        vpc_object: Option<&Vpc>,
    ) -> Result<Binding, Invalid> {
        let _one_at_a_time = self.accepting.lock().unwrap_or_else(|p| p.into_inner());
        let binding = self.validate(subnet, name, vpc, vpc_object)?;
        let displaced = self
            .ctx
            .ipam
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .upsert_subnet(name, binding.config.clone())?;
        for lost in displaced {
            warn!(subnet = %name, owner = %lost.owner, ip = %lost.ip, "address no longer in the Subnet's CIDR");
        }
        self.ctx.subnet_state.accept(name, binding.clone());
        Ok(binding)
    }

    /// Records the accepted spec on the object ([`ACCEPTED_SPEC`]).
    async fn record_accepted(&self, subnet: &Subnet) -> Result<(), kube::Error> {
        let spec = accepted_fields(&subnet.spec);
        let text = match serde_json::to_string(&spec) {
            Ok(text) => text,
            Err(err) => {
                warn!(subnet = %subnet.name_any(), error = %err, "could not record the accepted spec");
                return Ok(());
            }
        };
        if subnet.annotations().get(ACCEPTED_SPEC) == Some(&text) {
            return Ok(());
        }
        let patch = json!({ "metadata": { "annotations": { ACCEPTED_SPEC: text } } });
        self.ctx
            .subnets()
            .patch(
                &subnet.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
        Ok(())
    }

    /// Accepts the recorded configuration of every Subnet that has one,
    /// oldest first (nothing is written to OVN here).
    async fn restore_all_accepted(&self) -> Result<(), kube::Error> {
        let mut subnets = self.ctx.subnets().list(&ListParams::default()).await?.items;
        subnets.retain(|s| s.annotations().contains_key(ACCEPTED_SPEC));
        subnets.sort_by_key(|s| {
            (
                s.metadata.creation_timestamp.as_ref().map(|t| t.0),
                s.name_any(),
            )
        });
        for subnet in &subnets {
            self.restore_accepted(subnet).await?;
        }
        Ok(())
    }

    /// After a restart, the configuration a Subnet edited into an invalid
    /// spec was running with, from [`ACCEPTED_SPEC`] (accepted again, so it
    /// is still checked against the Subnets accepted meanwhile).
    async fn restore_accepted(&self, subnet: &Subnet) -> Result<Option<Binding>, kube::Error> {
        let name = subnet.name_any();
        let Some(text) = subnet.annotations().get(ACCEPTED_SPEC) else {
            return Ok(None);
        };
        let spec: SubnetSpec = match serde_json::from_str(text) {
            Ok(spec) => spec,
            Err(err) => {
                warn!(subnet = %name, error = %err, "unreadable accepted spec ignored");
                return Ok(None);
            }
        };
        let mut previous = subnet.clone();
        previous.spec = spec;
        let vpc = previous.vpc_or(&self.ctx.settings.default_vpc);
        let vpc_object = self.ctx.vpcs().get_opt(&vpc).await?;
        match self.accept(&previous, &name, &vpc, vpc_object.as_ref()) {
            Ok(binding) => {
                info!(subnet = %name, cidr = %binding.config.cidr_block(), "previous accepted configuration restored");
                Ok(Some(binding))
            }
            Err(invalid) => {
                warn!(subnet = %name, error = %invalid, "previous accepted configuration no longer valid");
                Ok(None)
            }
        }
    }

    /// Validates the spec against OVN and the other accepted Subnets.
    fn validate(
        &self,
        subnet: &Subnet,
        name: &str,
        vpc: &str,
        vpc_object: Option<&Vpc>,
    ) -> Result<Binding, Invalid> {
        check_name(name)?;
        let config = validate::parse_config(&subnet.spec)?;
        if vpc_object.is_none() {
            return Err(Invalid::UnknownVpc(vpc.to_string()));
        }
        let view = &self.ctx.nb_view;
        let this = Owner::subnet(name);
        let router_networks: Vec<RouterNetwork> = nb_view::vpc_router(view, vpc)
            .map(|router| {
                nb_view::router_ports(view, &router)
                    .into_iter()
                    .filter(|p| !this.owns(&p.external_ids))
                    .flat_map(|port| {
                        let owner = port_owner(&port);
                        let subnet =
                            Owner::of(&port.external_ids).map(|owner| owner.object().to_string());
                        port.networks.into_iter().map(move |network| RouterNetwork {
                            network,
                            owner: owner.clone(),
                            subnet: subnet.clone(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let binding = Binding {
            vpc: vpc.to_string(),
            namespaces: subnet.spec.namespaces.clone(),
            config,
            default: subnet.spec.default,
            created: subnet
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.to_string())
                .unwrap_or_default(),
        };
        validate::check_overlaps(
            name,
            vpc,
            &binding.namespaces,
            &binding.cidrs(),
            vpc,
            &router_networks,
            &self.ctx.subnet_state.all(),
        )?;
        Ok(binding)
    }

    /// Creates or repairs the switch, its router-type port and, when the
    /// router exists, our router port on it (moving it off any other
    /// router), in one transaction.
    async fn attach(
        &self,
        name: &str,
        binding: &Binding,
        imported: bool,
    ) -> Result<Attachment, ReconcileError> {
        let ctx = &self.ctx;
        let view = &ctx.nb_view;
        let router = nb_view::vpc_router(view, &binding.vpc);
        let router_name = router.as_ref().map(|r| r.name.as_str());
        let lrp_name = router_name.map(|router| lrp_name(name, router));
        let observed = Observed::read(view, name, lrp_name.as_deref());
        if let Some(taken) = observed.name_taken {
            return Ok(Attachment::NameTaken(taken));
        }
        let mac = ctx
            .ipam
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .subnet(name)
            .map(|s| s.gateway_mac())
            .unwrap_or_else(|| ipam::Subnet::new(name, binding.config.clone()).gateway_mac());
        let desired = Desired::new(name, &binding.config, &mac.to_string(), router_name);
        let mut txn = OwnedTxn::new();
        let (changes, attach_op) = attach::plan(&mut txn, &desired, &observed, router.as_ref())?;
        if changes.any() {
            txn.comment(format!("rovn: Subnet {name} on {}", binding.vpc));
            let result = ctx.nb.commit(&txn).await?;
            if let Some(op) = attach_op
                && result.count(op) == Some(0)
            {
                return Err(ReconcileError::Failed(format!(
                    "router {} disappeared during the attach",
                    binding.vpc
                )));
            }
            let previous = self
                .attached
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(name)
                .cloned();
            let repair = router.is_some() && previous.as_deref() == Some(binding.vpc.as_str());
            if repair && changes.router_port {
                ctx.metrics.repaired("router-port");
            }
            if repair && changes.switch_port {
                ctx.metrics.repaired("switch-port");
            }
            info!(
                subnet = %name,
                vpc = %binding.vpc,
                ?changes,
                repair,
                "Subnet rows written"
            );
        }
        let mut attached = self.attached.lock().unwrap_or_else(|p| p.into_inner());
        Ok(match router {
            Some(router) => {
                attached.insert(name.to_string(), router.name.clone());
                Attachment::Attached {
                    neutron: owner::is_neutron_router(&router.external_ids),
                    router: router.name,
                }
            }
            None => {
                attached.remove(name);
                Attachment::RouterMissing {
                    router: binding.vpc.clone(),
                    imported,
                }
            }
        })
    }

    /// Who still holds addresses of Subnet `name`: IPAM owners
    /// (`namespace/pod`) and IP resources naming it (`IP <name>`).
    async fn users(&self, name: &str) -> Result<Vec<String>, kube::Error> {
        let mut users: BTreeSet<String> = self
            .ctx
            .ipam
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .subnet(name)
            .map(|s| {
                s.allocations()
                    .map(|(owner, _)| owner.to_string())
                    .collect()
            })
            .unwrap_or_default();
        let ips = Api::<IP>::all(self.ctx.kube.clone())
            .list(&ListParams::default())
            .await?;
        users.extend(
            ips.items
                .iter()
                .filter(|ip| ip.spec.subnet == name)
                .map(|ip| format!("IP {}", ip.name_any())),
        );
        Ok(users.into_iter().collect())
    }

    async fn cleanup(&self, subnet: &Subnet) -> Result<Action, ReconcileError> {
        let name = subnet.name_any();
        let users = self.users(&name).await?;
        if !users.is_empty() {
            let shown: Vec<&str> = users.iter().take(5).map(String::as_str).collect();
            let message = format!(
                "{} address holder(s) still in the Subnet ({}{}); it is deleted once they are gone",
                users.len(),
                shown.join(", "),
                if users.len() > shown.len() {
                    ", ..."
                } else {
                    ""
                }
            );
            self.status
                .publish(
                    subnet,
                    vec![Condition::new(
                        DELETION_BLOCKED,
                        true,
                        "AddressesInUse",
                        message.clone(),
                    )],
                )
                .await?;
            return Err(ReconcileError::Waiting(message));
        }
        let observed = Observed::read(&self.ctx.nb_view, &name, None);
        let mut txn = OwnedTxn::new();
        if attach::plan_removal(&mut txn, &observed) {
            txn.comment(format!("rovn: Subnet {name} deleted"));
            self.ctx.nb.commit(&txn).await?;
            info!(subnet = %name, "Subnet rows removed");
        }
        self.ctx
            .ipam
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove_subnet(&name);
        self.ctx.subnet_state.forget(&name);
        self.attached
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&name);
        Ok(Action::await_change())
    }
}

/// Who owns a router port, for validation messages.
fn port_owner(port: &LogicalRouterPort) -> String {
    if let Some(owner) = Owner::of(&port.external_ids) {
        format!("Subnet {}", owner.object())
    } else if owner::is_ours(&port.external_ids) {
        format!("rovn port {}", port.name)
    } else if let Some(network) = port.external_ids.get(NEUTRON_NETWORK_NAME) {
        format!("Neutron network {network} (port {})", port.name)
    } else {
        format!("router port {}", port.name)
    }
}
