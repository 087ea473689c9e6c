//! Our own VPCs: every Vpc that was not imported from Neutron gets a
//! Logical_Router of the same name carrying our owner marker. Deleting the
//! Vpc deletes only that router, and is held back (condition
//! `DeletionBlocked`, finalizer kept) while Subnets use the VPC. Imported
//! Vpcs are left to the importer: nothing here ever writes to OVN for them.

use std::sync::Arc;
use std::time::Duration;

use api::condition::{self, Condition, READY};
use api::unsupported::{UnsupportedFields, unsupported_condition};
use api::{Subnet, Vpc, VpcStatus, VpcType};
use futures::StreamExt;
use kube::ResourceExt;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{self, Event};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use ovn::Table;
use ovn::nb::LogicalRouter;
use ovn::ownership::{self, KIND_KEY, OBJECT_KEY, OWNER, OWNER_KEY};
use ovsdb::{Condition as Where, Operation, Value, WaitUntil};
use serde_json::json;
use tracing::{info, warn};

use crate::context::{Context, DEFAULT_VPC, FIELD_MANAGER};
use crate::import::{apply_status, is_imported};
use crate::nb_view;
use crate::subnet::vpc_of;

/// Finalizer on our own Vpcs: their router is deleted before the object.
pub const FINALIZER: &str = "rovn.io/vpc";
/// Condition type: deletion waits for the listed Subnets to go.
pub const DELETION_BLOCKED: &str = "DeletionBlocked";
/// `rovn:kind` of our VPC routers.
pub const ROUTER_KIND: &str = "vpc";

/// Errors of the VPC reconciler.
#[derive(Debug, thiserror::Error)]
pub enum VpcError {
    /// A Kubernetes API call failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// A Northbound transaction failed.
    #[error("OVN Northbound: {0}")]
    Nb(#[from] ovsdb::Error),
    /// Subnets still use the Vpc being deleted.
    #[error("Subnets still use the Vpc: {0}")]
    InUse(String),
    /// Adding or removing the finalizer failed.
    #[error("finalizer: {0}")]
    Finalizer(String),
}

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
    Controller::new(ctx.vpcs(), watcher::Config::default())
        .watches(
            ctx.subnets(),
            watcher::Config::default(),
            |subnet: Subnet| Some(ObjectRef::new(&vpc_of(&subnet, DEFAULT_VPC))),
        )
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(err) = result {
                tracing::debug!(error = %err, "vpc reconcile");
            }
        })
        .await;
}

fn error_policy(vpc: Arc<Vpc>, err: &VpcError, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconciled("vpc", false);
    match err {
        VpcError::InUse(_) => Action::requeue(Duration::from_secs(5)),
        _ => {
            warn!(vpc = %vpc.name_any(), error = %err, "vpc reconcile failed");
            Action::requeue(Duration::from_secs(2))
        }
    }
}

async fn reconcile(vpc: Arc<Vpc>, ctx: Arc<Context>) -> Result<Action, VpcError> {
    if is_imported(&vpc) {
        release_imported(&vpc, &ctx).await?;
        return Ok(Action::await_change());
    }
    let action = finalizer::finalizer(&ctx.vpcs(), FINALIZER, vpc, |event| async {
        match event {
            Event::Apply(vpc) => apply(&vpc, &ctx).await,
            Event::Cleanup(vpc) => cleanup(&vpc, &ctx).await,
        }
    })
    .await
    .map_err(|err| match err {
        finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e,
        other => VpcError::Finalizer(other.to_string()),
    })?;
    ctx.metrics.reconciled("vpc", true);
    Ok(action)
}

/// An imported Vpc that still carries our finalizer (it was ours before
/// being labelled external) is released without touching OVN.
async fn release_imported(vpc: &Vpc, ctx: &Context) -> Result<(), VpcError> {
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
        .filter(|s| vpc_of(s, &ctx.settings.default_vpc) == vpc)
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
        apply_status(ctx, &vpc.name_any(), &status).await?;
    }
    Ok(())
}

async fn apply(vpc: &Vpc, ctx: &Context) -> Result<Action, VpcError> {
    let name = vpc.name_any();
    let subnets = subnets_using(ctx, &name).await?;
    if let Err(reserved) = ownership::check_name(&name) {
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
    let replica = &ctx.nb_replica;
    if nb_view::our_router(replica, &name).is_none() {
        if let Some(other) = nb_view::routers_named(replica, &name).first() {
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
/// (the `wait` makes the check and the insert one atomic step).
async fn create_router(ctx: &Context, name: &str) -> Result<(), ovsdb::Error> {
    let router = LogicalRouter {
        name: name.to_string(),
        external_ids: ownership::our_external_ids(ROUTER_KIND, name),
        ..LogicalRouter::default()
    };
    let mut txn = ctx.nb_txn();
    txn.push(Operation::Wait {
        table: LogicalRouter::NAME.to_string(),
        conditions: vec![Where::eq("name", name)],
        columns: vec!["name".to_string()],
        until: WaitUntil::Equal,
        rows: Vec::new(),
        timeout_ms: Some(0),
    });
    txn.insert(LogicalRouter::NAME, router.to_row());
    txn.comment(format!("rovn: router of Vpc {name}"));
    ctx.nb_commit(&txn).await?;
    Ok(())
}

async fn cleanup(vpc: &Vpc, ctx: &Context) -> Result<Action, VpcError> {
    let name = vpc.name_any();
    let subnets = subnets_using(ctx, &name).await?;
    if !subnets.is_empty() {
        let message = format!("Subnets still use this Vpc: {}", subnets.join(", "));
        let router = nb_view::our_router(&ctx.nb_replica, &name).map(|r| r.name);
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
        return Err(VpcError::InUse(message));
    }
    // Only routers with our marker and this Vpc's name as object.
    let mine: Vec<LogicalRouter> = nb_view::routers_named(&ctx.nb_replica, &name)
        .into_iter()
        .filter(|r| {
            ownership::is_ours(&r.external_ids)
                && r.external_ids.get(KIND_KEY).map(String::as_str) == Some(ROUTER_KIND)
                && r.external_ids.get(OBJECT_KEY) == Some(&name)
        })
        .collect();
    if !mine.is_empty() {
        let mut txn = ctx.nb_txn();
        for router in &mine {
            txn.delete(
                LogicalRouter::NAME,
                vec![
                    Where::uuid(router.uuid),
                    Where::includes("external_ids", Value::map([(OWNER_KEY, OWNER)])),
                ],
            );
        }
        txn.comment(format!("rovn: Vpc {name} deleted"));
        ctx.nb_commit(&txn).await?;
        info!(vpc = %name, "logical router deleted");
    }
    Ok(Action::await_change())
}
