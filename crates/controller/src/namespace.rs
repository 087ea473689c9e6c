//! Namespace binding: every namespace is annotated (Kube-OVN compatible)
//! with the Subnet its pods use, `ovn.kubernetes.io/logical_switch`, and that
//! Subnet's `ovn.kubernetes.io/cidr`. A namespace listed in an accepted
//! Subnet's `spec.namespaces` uses it; the others use the default Subnet
//! (see [`Context::subnet_for_namespace`]).
//!
//! Triggers: the namespace watch, and every change of the accepted Subnets
//! (all namespaces are re-checked; unchanged ones cost no API write).

use std::sync::Arc;

use api::annotations::{CIDR, LOGICAL_SWITCH};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use serde_json::json;
use tracing::debug;

use crate::context::Context;
use crate::error::ReconcileError;
use crate::runtime;

/// Runs the namespace binding until the namespace watch ends.
pub async fn run(ctx: Arc<Context>) {
    let changes = futures::stream::unfold(ctx.subnet_state.watch_changes(), |mut rx| async {
        rx.changed().await.ok()?;
        Some(((), rx))
    });
    let controller = Controller::new(
        Api::<Namespace>::all(ctx.kube.clone()),
        watcher::Config::default(),
    )
    .reconcile_all_on(changes);
    runtime::run_controller(controller, reconcile, error_policy, ctx).await;
}

fn error_policy(ns: Arc<Namespace>, err: &ReconcileError, ctx: Arc<Context>) -> Action {
    err.retry("namespace", &ns.name_any(), &ctx.metrics)
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    if ns.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let name = ns.name_any();
    // No Subnet accepted yet: the next change of the bindings retriggers.
    let Some(subnet) = ctx.subnet_for_namespace(&name) else {
        return Ok(Action::await_change());
    };
    let Some(binding) = ctx.subnet_state.binding(&subnet) else {
        return Ok(Action::await_change());
    };
    let cidr = binding.config.cidr_block();
    let annotations = ns.annotations();
    if annotations.get(LOGICAL_SWITCH) != Some(&subnet) || annotations.get(CIDR) != Some(&cidr) {
        let patch = json!({ "metadata": { "annotations": {
            LOGICAL_SWITCH: subnet,
            CIDR: cidr,
        }}});
        Api::<Namespace>::all(ctx.kube.clone())
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        debug!(namespace = %name, %subnet, "namespace annotated");
    }
    ctx.metrics.reconciled("namespace", true);
    Ok(Action::await_change())
}
