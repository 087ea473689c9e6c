//! Our own VPCs: every Vpc that was not imported from Neutron gets a
//! Logical_Router of the same name carrying our owner marker. Deleting the
//! Vpc deletes only that router, and is held back (condition
//! `DeletionBlocked`, finalizer kept) while Subnets use the VPC. Imported
//! Vpcs are left to the importer: nothing here ever writes to OVN for them.

use std::sync::Arc;

use api::condition::{self, Condition, DELETION_BLOCKED, READY};
use api::unsupported::{UnsupportedFields, unsupported_condition};
use api::{Subnet, Vpc, VpcStatus, VpcType};
use kube::ResourceExt;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use ovn::nb::LogicalRouter;
use ovn::owned::{OwnedTxn, Owner, check_name};
use serde_json::json;
use tracing::info;

use crate::context::{Context, DEFAULT_VPC, FIELD_MANAGER};
use crate::error::ReconcileError;
use crate::{nb_view, runtime};

/// Finalizer on our own Vpcs: their router is deleted before the object.
pub const FINALIZER: &str = "rovn.io/vpc";

/// Creates the default VPC object (server-side apply; its router follows
/// from the reconciler).
pub async fn ensure_default_vpc(ctx: &Context) -> Result<(), kube::Error> {
    let name = &ctx.settings.default_vpc;
    let object = json!({
        "apiVersion": api::API_VERSION,
        "kind": "Vpc",
        "metadata": { "name": name },
        "spec": {},
    });
    ctx.vpcs()
        .patch(
            name,
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Apply(&object),
        )
        .await?;
    info!(vpc = %name, "default VPC applied");
    Ok(())
}

/// Runs the reconciler of our own Vpcs until the API watch ends.
pub async fn run(ctx: Arc<Context>) {
    let controller = Controller::new(ctx.vpcs(), watcher::Config::default()).watches(
        ctx.subnets(),
        watcher::Config::default(),
        |subnet: Subnet| Some(ObjectRef::new(&subnet.vpc_or(DEFAULT_VPC))),
    );
    runtime::run_controller(controller, reconcile, error_policy, ctx).await;
}

fn error_policy(vpc: Arc<Vpc>, err: &ReconcileError, ctx: Arc<Context>) -> Action {
    err.retry("vpc", &vpc.name_any(), &ctx.metrics)
}

async fn reconcile(vpc: Arc<Vpc>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    if vpc.is_imported() {
        release_imported(&vpc, &ctx).await?;
        return Ok(Action::await_change());
    }
    let context: &Context = &ctx;
    let action = runtime::finalized(
        &ctx.vpcs(),
        FINALIZER,
        vpc,
        |vpc| async move { apply(&vpc, context).await },
        |vpc| async move { cleanup(&vpc, context).await },
    )
    .await?;
    ctx.metrics.reconciled("vpc", true);
    Ok(action)
}

/// An imported Vpc that still carries our finalizer (it was ours before
/// being labelled external) is released without touching OVN.
async fn release_imported(vpc: &Vpc, ctx: &Context) -> Result<(), ReconcileError> {
    if !vpc.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(());
    }
    let finalizers: Vec<&String> = vpc
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .collect();
    let patch = json!({ "metadata": {
        "finalizers": finalizers,
        "resourceVersion": vpc.resource_version(),
    }});
    ctx.vpcs()
        .patch(
            &vpc.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    Ok(())
}

async fn subnets_using(ctx: &Context, vpc: &str) -> Result<Vec<String>, kube::Error> {
    let mut names: Vec<String> = ctx
        .subnets()
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|s| s.vpc_or(&ctx.settings.default_vpc) == vpc)
        .map(|s| s.name_any())
        .collect();
    names.sort();
    Ok(names)
}

/// Conditions and fields of an own Vpc's status, keeping transition times.
fn own_status(
    vpc: &Vpc,
    ctx: &Context,
    router: Option<String>,
    subnets: Vec<String>,
    updates: Vec<Condition>,
) -> VpcStatus {
    let current = vpc.status.clone().unwrap_or_default();
    let mut conditions = current.conditions.clone();
    let generation = vpc.metadata.generation;
    condition::merge_conditions(
        &mut conditions,
        updates
            .into_iter()
            .chain([unsupported_condition(&vpc.spec.unsupported_fields())])
            .map(|c| c.observed(generation)),
    );
    VpcStatus {
        conditions,
        standby: router.is_some(),
        default: vpc.name_any() == ctx.settings.default_vpc,
        router,
        subnets,
        type_: Some(VpcType::Internal),
        ..current
    }
}

async fn write_status(vpc: &Vpc, ctx: &Context, status: VpcStatus) -> Result<(), kube::Error> {
    if vpc.status.as_ref() != Some(&status) {
        ctx.apply_vpc_status(&vpc.name_any(), &status).await?;
    }
    Ok(())
}

async fn apply(vpc: &Vpc, ctx: &Context) -> Result<Action, ReconcileError> {
    let name = vpc.name_any();
    let subnets = subnets_using(ctx, &name).await?;
    if let Err(reserved) = check_name(&name) {
        let status = own_status(
            vpc,
            ctx,
            None,
            subnets,
            vec![Condition::new(
                READY,
                false,
                "ReservedName",
                reserved.to_string(),
            )],
        );
        write_status(vpc, ctx, status).await?;
        return Ok(Action::await_change());
    }
    let view = &ctx.nb_view;
    if nb_view::our_router(view, &name).is_none() {
        if let Some(other) = view.named::<LogicalRouter>(&name).first() {
            let status = own_status(
                vpc,
                ctx,
                None,
                subnets,
                vec![Condition::new(
                    READY,
                    false,
                    "RouterNameTaken",
                    format!(
                        "a Logical_Router named {name} that rovn did not create exists ({}); it is left alone",
                        other.uuid
                    ),
                )],
            );
            write_status(vpc, ctx, status).await?;
            return Ok(Action::requeue(ctx.settings.resync));
        }
        create_router(ctx, &name).await?;
        info!(vpc = %name, "logical router created");
    }
    let status = own_status(
        vpc,
        ctx,
        Some(name.clone()),
        subnets,
        vec![
            Condition::new(READY, true, "RouterReady", ""),
            Condition::new(DELETION_BLOCKED, false, "NotDeleting", ""),
        ],
    );
    write_status(vpc, ctx, status).await?;
    Ok(Action::requeue(ctx.settings.resync))
}

/// Inserts our router, unless a router of that name appeared meanwhile
/// (the precondition makes the check and the insert one atomic step).
async fn create_router(ctx: &Context, name: &str) -> Result<(), ReconcileError> {
    let router = LogicalRouter {
        name: name.to_string(),
        ..LogicalRouter::default()
    };
    let mut txn = OwnedTxn::new();
    txn.require_no_row_named::<LogicalRouter>(name);
    txn.insert(&Owner::vpc(name), &router)?;
    txn.comment(format!("rovn: router of Vpc {name}"));
    ctx.nb.commit(&txn).await?;
    Ok(())
}

async fn cleanup(vpc: &Vpc, ctx: &Context) -> Result<Action, ReconcileError> {
    let name = vpc.name_any();
    let subnets = subnets_using(ctx, &name).await?;
    if !subnets.is_empty() {
        let message = format!("Subnets still use this Vpc: {}", subnets.join(", "));
        let router = nb_view::our_router(&ctx.nb_view, &name).map(|r| r.name);
        let status = own_status(
            vpc,
            ctx,
            router,
            subnets,
            vec![Condition::new(
                DELETION_BLOCKED,
                true,
                "SubnetsInUse",
                message.clone(),
            )],
        );
        write_status(vpc, ctx, status).await?;
        return Err(ReconcileError::Waiting(message));
    }
    // Only the routers this Vpc owns.
    let mine = ctx.nb_view.owned_by::<LogicalRouter>(&Owner::vpc(&name));
    if !mine.is_empty() {
        let mut txn = OwnedTxn::new();
        for router in &mine {
            txn.delete(router);
        }
        txn.comment(format!("rovn: Vpc {name} deleted"));
        ctx.nb.commit(&txn).await?;
        info!(vpc = %name, "logical router deleted");
    }
    Ok(Action::await_change())
}
