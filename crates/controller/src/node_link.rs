//! Node links: the path between every node and every served VPC, Neutron's or ours, so
//! that kubelet's probes reach pods and pods reach host-network endpoints (the
//! `kubernetes` Service, hostNetwork pods) whatever their VPC ([`plan`] has the rows,
//! [`api::node_link`] the contract with the agent, which does the node's side).
//!
//! Triggers, all into one key (one pass computes every VPC's rows): the Node watch (nodes
//! come and go, their InternalIPs change), changes of the accepted Subnets (a VPC starts or
//! stops being served, a Subnet moves), and Northbound events on our node-link rows or on
//! a router (Neutron's repair sync and router updates drop foreign router ports and
//! routes: restored at once, counted in `rovn_ovn_repairs_total{row="node-link"}`).

pub mod plan;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use ipnet::{IpNet, Ipv4Net};
use k8s_openapi::api::core::v1::{Node, NodeStatus};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use ovn::Table;
use ovn::nb::{
    LogicalRouter, LogicalRouterPort, LogicalRouterStaticRoute, LogicalSwitch, LogicalSwitchPort,
};
use ovn::owned::{Kind, OwnedTxn};
use ovn::view::owner_of_row;
use ovsdb::RowEvent;
use tracing::{info, warn};

use crate::context::Context;
use crate::error::ReconcileError;
use crate::nb_view;
use crate::queue::WorkQueue;
use crate::runtime::{self, Tasks};
use plan::{Observed, ServedVpc};

/// The one key of the queue.
const LINKS: &str = "node-links";

/// Drops what the reconciler does not read from a cached Node.
fn slim(node: &mut Node) {
    node.managed_fields_mut().clear();
    node.metadata.annotations = None;
    node.metadata.labels = None;
    node.spec = None;
    node.status = node.status.take().map(|status| NodeStatus {
        addresses: status.addresses,
        ..NodeStatus::default()
    });
}

/// A node's InternalIPs.
fn internal_ips(node: &Node) -> Vec<IpAddr> {
    node.status
        .iter()
        .flat_map(|s| s.addresses.iter().flatten())
        .filter(|a| a.type_ == "InternalIP")
        .filter_map(|a| a.address.parse().ok())
        .collect()
}

/// Whether a Northbound change concerns the node links: one of our rows changed or
/// deleted by another client (our own inserts need nothing), or a router's ports or
/// routes changed.
fn concerns(event: &RowEvent) -> bool {
    let table = event.table();
    let ours = |row: &ovsdb::Row| owner_of_row(row).is_some_and(|o| o.kind() == Kind::NodeLink);
    match event {
        RowEvent::Insert { new, .. } => table == LogicalRouter::NAME && !ours(new),
        RowEvent::Delete { old, .. } => ours(old) || table == LogicalRouter::NAME,
        RowEvent::Modify { old, new, .. } if table == LogicalRouter::NAME => {
            old.get("ports") != new.get("ports")
                || old.get("static_routes") != new.get("static_routes")
        }
        RowEvent::Modify { old, .. } => ours(old),
    }
}

struct Reconciler {
    ctx: Arc<Context>,
    nodes: kube::runtime::reflector::Store<Node>,
    queue: Arc<WorkQueue>,
    /// Addresses given to node ports the replica does not show yet.
    pending: Mutex<BTreeMap<(String, String), std::net::Ipv4Addr>>,
    /// VPCs reported as overlapping the node-link network (reported once).
    overlapping: Mutex<BTreeSet<String>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs the node-link reconciler until a watch or the Northbound event stream ends.
pub async fn run(ctx: Arc<Context>) -> anyhow::Result<()> {
    let (nodes, node_events) = runtime::reflect(Api::<Node>::all(ctx.kube.clone()), slim);
    let mut nb_events = ctx.nb_view.replica().subscribe();
    let mut bindings = ctx.subnet_state.watch_changes();
    let this = Arc::new(Reconciler {
        ctx,
        nodes,
        queue: WorkQueue::new(),
        pending: Mutex::default(),
        overlapping: Mutex::default(),
    });
    let mut tasks = Tasks::new();

    let r = this.clone();
    tasks.spawn(async move {
        runtime::follow("Node", node_events, |event| {
            if !matches!(event, watcher::Event::Init | watcher::Event::InitApply(_)) {
                r.queue.add(LINKS);
            }
        })
        .await
    });
    let r = this.clone();
    tasks.spawn(async move {
        while let Some(event) = nb_events.recv().await {
            if concerns(&event) {
                r.queue.add(LINKS);
            }
        }
        anyhow::bail!("the Northbound replica stopped sending events")
    });
    let r = this.clone();
    tasks.spawn(async move {
        while bindings.changed().await.is_ok() {
            r.queue.add(LINKS);
        }
        anyhow::bail!("the Subnet state was dropped")
    });

    this.nodes.wait_until_ready().await?;
    this.ctx.wait_restored().await?;
    this.queue.add(LINKS);
    let r = this.clone();
    runtime::spawn_reconcilers(
        &mut tasks,
        1,
        &this.queue,
        &this.ctx,
        "node-link",
        move |_| {
            let r = r.clone();
            async move { r.sync().await }
        },
    );
    runtime::first_end(&mut tasks).await
}

impl Reconciler {
    fn observe(&self) -> Observed {
        let ctx = &self.ctx;
        let view = &ctx.nb_view;
        let mut vpcs: BTreeMap<String, ServedVpc> = BTreeMap::new();
        for (subnet, binding) in ctx.subnet_state.all() {
            let served = vpcs.entry(binding.vpc.clone()).or_insert_with(|| {
                let router = nb_view::vpc_router(view, &binding.vpc);
                // Networks on ports that are not ours (Neutron's interfaces and gateway).
                let networks = router
                    .as_ref()
                    .map(|r| {
                        nb_view::router_cidrs(view, r)
                            .foreign
                            .iter()
                            .filter_map(|n| n.parse::<IpNet>().ok())
                            .map(|n| n.trunc())
                            .collect()
                    })
                    .unwrap_or_default();
                ServedVpc {
                    router,
                    subnets: BTreeSet::new(),
                    networks,
                }
            });
            served.subnets.insert(subnet);
            served.networks.extend(binding.cidrs());
        }
        let nodes = self
            .nodes
            .state()
            .iter()
            .map(|n| (n.name_any(), internal_ips(n)))
            .collect();
        let ports = view.owned_of_kind::<LogicalSwitchPort>(Kind::NodeLink);
        let mut pending = lock(&self.pending);
        pending.retain(|(vpc, node), _| {
            !ports
                .iter()
                .any(|p| p.name == api::node_link::port_name(vpc, node))
        });
        Observed {
            cidr: ctx.settings.node_link_cidr,
            nodes,
            vpcs,
            routers: view.rows::<LogicalRouter>(),
            switches: view.owned_of_kind::<LogicalSwitch>(Kind::NodeLink),
            ports,
            router_ports: view.owned_of_kind::<LogicalRouterPort>(Kind::NodeLink),
            routes: view.owned_of_kind::<LogicalRouterStaticRoute>(Kind::NodeLink),
            pending: pending.clone(),
        }
    }

    async fn sync(&self) -> Result<(), ReconcileError> {
        let observed = self.observe();
        let mut txn = OwnedTxn::new();
        let changes = plan::plan(&mut txn, &observed)?;
        self.report_overlaps(&changes.overlapping, observed.cidr);
        if !changes.any() {
            return Ok(());
        }
        txn.comment("rovn: node links");
        self.ctx.nb.commit(&txn).await?;
        lock(&self.pending).extend(changes.allocated.clone());
        for _ in 0..changes.restored {
            self.ctx.metrics.repaired("node-link");
        }
        info!(
            linked = ?changes.linked,
            ports = ?changes.ports,
            routes = ?changes.routes,
            unlinked = ?changes.unlinked,
            "node links written"
        );
        Ok(())
    }

    fn report_overlaps(&self, overlapping: &[String], cidr: Ipv4Net) {
        let mut reported = lock(&self.overlapping);
        for vpc in overlapping {
            if reported.insert(vpc.clone()) {
                warn!(
                    %vpc,
                    node_link_cidr = %IpNet::V4(cidr),
                    "the VPC's networks overlap the node-link network: its pods get no path to the nodes (no kubelet probes, no host-network endpoints); change --node-link-cidr"
                );
            }
        }
        reported.retain(|vpc| overlapping.contains(vpc));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ovn::owned::Owner;
    use ovsdb::{Row, Uuid, Value};

    use super::*;

    fn row(owner: Option<&Owner>) -> Arc<Row> {
        let mut row = Row::new();
        if let Some(owner) = owner {
            row.set("external_ids", Value::map(owner.external_ids()));
        }
        Arc::new(row)
    }

    #[test]
    fn router_route_and_port_changes_and_our_rows_trigger_a_pass() {
        let ours = row(Some(&Owner::node_link("neutron-r1")));
        let router = row(None);
        let mut routed = (*router).clone();
        routed.set("static_routes", Value::set([Uuid::from_u128(1)]));
        let modify = |table: &str, old: &Arc<Row>, new: Row| RowEvent::Modify {
            table: table.into(),
            old: old.clone(),
            new: Arc::new(new),
        };
        assert!(concerns(&modify(LogicalRouter::NAME, &router, routed)));
        let mut renamed = (*router).clone();
        renamed.set("options", Value::map([("a", "b")]));
        assert!(!concerns(&modify(LogicalRouter::NAME, &router, renamed)));
        assert!(concerns(&RowEvent::Delete {
            table: LogicalSwitchPort::NAME.into(),
            old: ours.clone(),
        }));
        assert!(!concerns(&RowEvent::Insert {
            table: LogicalSwitchPort::NAME.into(),
            new: ours,
        }));
        assert!(!concerns(&RowEvent::Delete {
            table: LogicalSwitchPort::NAME.into(),
            old: row(Some(&Owner::pod("ns", "p"))),
        }));
    }
}
