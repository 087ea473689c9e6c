//! The Load_Balancer_Group of each VPC's Services, and its place on our
//! switches.
//!
//! Per served VPC (one with an accepted Subnet), one group named
//! `rovn/service-group/<vpc>` holds every Service load balancer of that VPC
//! (`external_ids:rovn:vpc`), and every switch of ours of a Subnet of that
//! VPC references it in `load_balancer_group`: one reference per switch
//! whatever the number of Services. Only our switches (proven ours, kind
//! Subnet) ever reference a group of ours; Neutron's switches and routers
//! are never written. A group of a VPC no longer served is deleted once no
//! switch references it.

use std::collections::{BTreeMap, BTreeSet};

use ovn::nb::{LoadBalancer, LoadBalancerGroup, LogicalSwitch};
use ovn::owned::owner::VPC_KEY;
use ovn::owned::{Kind, Mine, OwnedTxn, Owner};
use tracing::info;

use super::reconcile::served_vpcs;
use crate::context::Context;
use crate::error::ReconcileError;

/// What one pass changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Changes {
    /// Groups created.
    pub(super) created: Vec<String>,
    /// Groups whose members were corrected.
    pub(super) members: Vec<String>,
    /// Switches whose group reference was set (new Subnet, moved Subnet,
    /// or a reference another client removed).
    pub(super) switches: Vec<String>,
    /// Groups deleted.
    pub(super) deleted: Vec<String>,
}

impl Changes {
    fn any(&self) -> bool {
        !(self.created.is_empty()
            && self.members.is_empty()
            && self.switches.is_empty()
            && self.deleted.is_empty())
    }
}

/// Makes every served VPC's group exist with exactly its load balancers,
/// referenced by exactly the switches of that VPC's Subnets.
pub(super) async fn sync(ctx: &Context) -> Result<Changes, ReconcileError> {
    let view = &ctx.nb_view;
    let vpcs = served_vpcs(ctx);
    let groups: BTreeMap<String, Mine<LoadBalancerGroup>> = view
        .groups_of_kind(Kind::ServiceGroup)
        .into_iter()
        .map(|g| (g.owner().object().to_string(), g))
        .collect();
    let ours: BTreeSet<ovsdb::Uuid> = groups.values().map(|g| g.uuid).collect();
    let mut members: BTreeMap<String, Vec<Mine<LoadBalancer>>> = BTreeMap::new();
    for lb in view.owned_of_kind::<LoadBalancer>(Kind::Service) {
        if let Some(vpc) = lb.external_ids.get(VPC_KEY) {
            members.entry(vpc.clone()).or_default().push(lb);
        }
    }
    let mut txn = OwnedTxn::new();
    let mut changes = Changes::default();
    let mut inserted = BTreeMap::new();
    for vpc in &vpcs {
        let wanted: Vec<&Mine<LoadBalancer>> = members.get(vpc).into_iter().flatten().collect();
        match groups.get(vpc) {
            None => {
                let named = txn.insert_group(&Owner::service_group(vpc), &wanted)?;
                inserted.insert(vpc.clone(), named);
                changes.created.push(vpc.clone());
            }
            Some(group) => {
                let uuids: BTreeSet<ovsdb::Uuid> = wanted.iter().map(|lb| lb.uuid).collect();
                if group.load_balancer != uuids {
                    txn.set_group_members(group, &wanted);
                    changes.members.push(vpc.clone());
                }
            }
        }
    }
    // Groups still referenced by a switch whose Subnet is not known (yet).
    let mut referenced = BTreeSet::new();
    for switch in view.owned_of_kind::<LogicalSwitch>(Kind::Subnet) {
        let Some(binding) = ctx.subnet_state.binding(switch.owner().object()) else {
            referenced.extend(switch.load_balancer_group.iter().copied());
            continue;
        };
        let mut desired = (*switch).clone();
        desired.load_balancer_group.retain(|g| !ours.contains(g));
        if let Some(group) = groups.get(&binding.vpc) {
            desired.load_balancer_group.insert(group.uuid);
        }
        let changed = desired.load_balancer_group != switch.load_balancer_group;
        if changed {
            txn.update(&switch, &desired, &["load_balancer_group"])?;
        }
        if let Some(named) = inserted.get(&binding.vpc) {
            txn.add_reference(&switch, "load_balancer_group", named);
        }
        if changed || inserted.contains_key(&binding.vpc) {
            changes.switches.push(switch.name.clone());
        }
    }
    for (vpc, group) in &groups {
        if !vpcs.contains(vpc) && !referenced.contains(&group.uuid) {
            txn.delete_group(group);
            changes.deleted.push(vpc.clone());
        }
    }
    if changes.any() {
        txn.comment("rovn: Service load balancer groups");
        ctx.nb.commit(&txn).await?;
        info!(?changes, "Service load balancer groups written");
    }
    Ok(changes)
}
