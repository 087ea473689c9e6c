//! One Service's load balancers: where its endpoints live, the rows it
//! should have ([`model::plan`]) and the transaction that makes OVN hold
//! exactly those (created, corrected after another client's edit, or
//! removed with the Service).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::{ObjectReference, ServiceSpec};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use ovn::nb::LoadBalancer;
use ovn::owned::{Mine, OwnedTxn, Owner};
use tracing::info;

use super::model::{self, Located, Plan};
use crate::context::Context;
use crate::error::ReconcileError;
use crate::nb_view;

/// The columns of a load balancer we set.
const COLUMNS: [&str; 5] = [
    "vips",
    "protocol",
    "selection_fields",
    "options",
    "external_ids",
];

/// The VPCs whose pods get Services: those with an accepted Subnet.
pub(super) fn served_vpcs(ctx: &Context) -> BTreeSet<String> {
    ctx.subnet_state
        .all()
        .into_values()
        .map(|binding| binding.vpc)
        .collect()
}

/// The networks of every served VPC: our Subnets' CIDRs and the Neutron
/// networks on its router.
pub(super) struct Networks {
    cidrs: Vec<(IpNet, String)>,
}

impl Networks {
    /// Reads the accepted Subnets and the routers of `vpcs`.
    pub(super) fn read(ctx: &Context, vpcs: &BTreeSet<String>) -> Self {
        let mut cidrs: Vec<(IpNet, String)> = ctx
            .subnet_state
            .all()
            .into_values()
            .flat_map(|binding| {
                let vpc = binding.vpc.clone();
                binding
                    .cidrs()
                    .into_iter()
                    .map(move |cidr| (cidr, vpc.clone()))
            })
            .collect();
        let view = &ctx.nb_view;
        for vpc in vpcs {
            if let Some(router) = nb_view::neutron_router(view, vpc) {
                cidrs.extend(
                    nb_view::router_cidrs(view, &router)
                        .foreign
                        .iter()
                        .filter_map(|network| network.parse::<IpNet>().ok())
                        .map(|network| (network.trunc(), vpc.clone())),
                );
            }
        }
        Self { cidrs }
    }

    /// Where `ip` lives: the one VPC whose networks hold it; among several
    /// (overlapping CIDRs), the VPC of the Subnet of its pod's namespace.
    pub(super) fn locate(
        &self,
        ctx: &Context,
        ip: IpAddr,
        target: Option<&ObjectReference>,
    ) -> Located {
        let vpcs: BTreeSet<&String> = self
            .cidrs
            .iter()
            .filter(|(cidr, _)| cidr.contains(&ip))
            .map(|(_, vpc)| vpc)
            .collect();
        match vpcs.len() {
            0 => Located::Outside,
            1 => Located::Vpc(vpcs.into_iter().next().cloned().unwrap_or_default()),
            _ => target
                .filter(|t| t.kind.as_deref() == Some("Pod"))
                .and_then(|t| t.namespace.as_deref())
                .and_then(|namespace| ctx.subnet_for_namespace(namespace))
                .and_then(|subnet| ctx.subnet_state.binding(&subnet))
                .map(|binding| binding.vpc)
                .filter(|vpc| vpcs.contains(vpc))
                .map_or(Located::Ambiguous, Located::Vpc),
        }
    }
}

/// What a reconcile of one Service wrote.
#[derive(Debug, Default)]
pub(super) struct Written {
    pub(super) inserted: usize,
    pub(super) updated: usize,
    pub(super) deleted: usize,
}

/// Makes OVN hold exactly the load balancers of Service `namespace/name`
/// (`spec` `None`: deleted, or nothing to balance).
pub(super) async fn apply(
    ctx: &Context,
    namespace: &str,
    name: &str,
    spec: Option<&ServiceSpec>,
    slices: &[&EndpointSlice],
) -> Result<(Plan, Written), ReconcileError> {
    let plan = match spec {
        Some(spec) => {
            let vpcs = served_vpcs(ctx);
            let networks = Networks::read(ctx, &vpcs);
            let locate = |ip, target: Option<&ObjectReference>| networks.locate(ctx, ip, target);
            model::plan(namespace, name, spec, slices, &vpcs, &locate)
        }
        None => Plan::default(),
    };
    let owner = Owner::service(namespace, name);
    let mut observed: BTreeMap<String, Vec<Mine<LoadBalancer>>> = BTreeMap::new();
    for lb in ctx.nb_view.owned_by::<LoadBalancer>(&owner) {
        observed.entry(lb.name.clone()).or_default().push(lb);
    }
    let mut txn = OwnedTxn::new();
    let mut written = Written::default();
    for desired in &plan.balancers {
        let mut rows = observed
            .remove(&desired.name)
            .unwrap_or_default()
            .into_iter();
        match rows.next() {
            None => {
                txn.insert(&owner, desired)?;
                written.inserted += 1;
            }
            Some(row) => {
                if row.vips != desired.vips
                    || row.protocol != desired.protocol
                    || row.selection_fields != desired.selection_fields
                    || row.options != desired.options
                    || row.external_ids != desired.external_ids
                {
                    txn.update(&row, desired, &COLUMNS)?;
                    written.updated += 1;
                }
            }
        }
        // Duplicates (e.g. copied by another client) go.
        for extra in rows {
            txn.delete(&extra);
            written.deleted += 1;
        }
    }
    for row in observed.into_values().flatten() {
        txn.delete(&row);
        written.deleted += 1;
    }
    if !txn.is_empty() {
        txn.comment(format!("rovn: Service {namespace}/{name}"));
        ctx.nb.commit(&txn).await?;
        info!(
            service = %format!("{namespace}/{name}"),
            inserted = written.inserted,
            updated = written.updated,
            deleted = written.deleted,
            "Service load balancers written"
        );
    }
    Ok((plan, written))
}
