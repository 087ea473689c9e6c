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
use ovn::owned::{Kind, Mine, OwnedTxn, Owner, Refused};
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

/// What one pass works from: the served VPCs, our groups, our Service load
/// balancers per VPC, and our Subnets' switches with their Subnet's VPC.
#[derive(Debug, Default)]
pub(super) struct Observed {
    /// VPCs with an accepted Subnet.
    pub(super) vpcs: BTreeSet<String>,
    /// Our groups, by VPC.
    pub(super) groups: BTreeMap<String, Mine<LoadBalancerGroup>>,
    /// Our Service load balancers, by VPC (`rovn:vpc`).
    pub(super) members: BTreeMap<String, Vec<Mine<LoadBalancer>>>,
    /// Our Subnets' switches and their Subnet's VPC (`None`: not accepted).
    pub(super) switches: Vec<(Mine<LogicalSwitch>, Option<String>)>,
}

impl Observed {
    /// Reads the replica and the accepted Subnets.
    pub(super) fn read(ctx: &Context) -> Self {
        let view = &ctx.nb_view;
        let groups = view
            .groups_of_kind(Kind::ServiceGroup)
            .into_iter()
            .map(|g| (g.owner().object().to_string(), g))
            .collect();
        let mut members: BTreeMap<String, Vec<Mine<LoadBalancer>>> = BTreeMap::new();
        for lb in view.owned_of_kind::<LoadBalancer>(Kind::Service) {
            if let Some(vpc) = lb.external_ids.get(VPC_KEY) {
                members.entry(vpc.clone()).or_default().push(lb);
            }
        }
        let switches = view
            .owned_of_kind::<LogicalSwitch>(Kind::Subnet)
            .into_iter()
            .map(|switch| {
                let vpc = ctx
                    .subnet_state
                    .binding(switch.owner().object())
                    .map(|b| b.vpc);
                (switch, vpc)
            })
            .collect();
        Self {
            vpcs: served_vpcs(ctx),
            groups,
            members,
            switches,
        }
    }
}

/// Adds to `txn` what makes every served VPC's group exist with exactly its
/// load balancers, referenced by exactly the switches of that VPC's
/// Subnets; returns what it changes.
pub(super) fn plan(txn: &mut OwnedTxn, observed: &Observed) -> Result<Changes, Refused> {
    let groups = &observed.groups;
    let ours: BTreeSet<ovsdb::Uuid> = groups.values().map(|g| g.uuid).collect();
    let mut changes = Changes::default();
    let mut inserted = BTreeMap::new();
    for vpc in &observed.vpcs {
        let wanted: Vec<&Mine<LoadBalancer>> =
            observed.members.get(vpc).into_iter().flatten().collect();
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
    for (switch, vpc) in &observed.switches {
        let Some(vpc) = vpc else {
            referenced.extend(switch.load_balancer_group.iter().copied());
            continue;
        };
        let mut desired = (**switch).clone();
        desired.load_balancer_group.retain(|g| !ours.contains(g));
        if let Some(group) = groups.get(vpc) {
            desired.load_balancer_group.insert(group.uuid);
        }
        let changed = desired.load_balancer_group != switch.load_balancer_group;
        if changed {
            txn.update(switch, &desired, &["load_balancer_group"])?;
        }
        if let Some(named) = inserted.get(vpc) {
            txn.add_reference(switch, "load_balancer_group", named);
        }
        if changed || inserted.contains_key(vpc) {
            changes.switches.push(switch.name.clone());
        }
    }
    for (vpc, group) in groups {
        if !observed.vpcs.contains(vpc) && !referenced.contains(&group.uuid) {
            txn.delete_group(group);
            changes.deleted.push(vpc.clone());
        }
    }
    Ok(changes)
}

/// Makes every served VPC's group exist with exactly its load balancers,
/// referenced by exactly the switches of that VPC's Subnets.
pub(super) async fn sync(ctx: &Context) -> Result<Changes, ReconcileError> {
    let mut txn = OwnedTxn::new();
    let changes = plan(&mut txn, &Observed::read(ctx))?;
    if changes.any() {
        txn.comment("rovn: Service load balancer groups");
        ctx.nb.commit(&txn).await?;
        info!(?changes, "Service load balancer groups written");
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use ovsdb::{Operation, Uuid};

    use super::*;

    fn lb(uuid: u128, vpc: &str) -> Mine<LoadBalancer> {
        let mut external_ids = Owner::service("ns", &format!("s{uuid}")).external_ids();
        external_ids.insert(VPC_KEY.to_string(), vpc.to_string());
        Mine::claim(LoadBalancer {
            uuid: Uuid::from_u128(uuid),
            external_ids,
            ..LoadBalancer::default()
        })
        .unwrap()
    }

    fn group(uuid: u128, vpc: &str, members: &[u128]) -> Mine<LoadBalancerGroup> {
        Mine::claim_group(LoadBalancerGroup {
            uuid: Uuid::from_u128(uuid),
            name: Owner::service_group(vpc).row_name(),
            load_balancer: members.iter().map(|m| Uuid::from_u128(*m)).collect(),
        })
        .unwrap()
    }

    fn switch(name: &str, groups: &[u128]) -> Mine<LogicalSwitch> {
        Mine::claim(LogicalSwitch {
            uuid: Uuid::from_u128(900),
            name: name.to_string(),
            external_ids: Owner::subnet(name).external_ids(),
            load_balancer_group: groups.iter().map(|g| Uuid::from_u128(*g)).collect(),
            ..LogicalSwitch::default()
        })
        .unwrap()
    }

    #[test]
    fn a_new_vpc_gets_its_group_with_its_balancers_on_its_switches() {
        let observed = Observed {
            vpcs: ["a".to_string()].into(),
            members: [("a".to_string(), vec![lb(1, "a")])].into(),
            switches: vec![(switch("net2", &[]), Some("a".to_string()))],
            ..Observed::default()
        };
        let mut txn = OwnedTxn::new();
        let changes = plan(&mut txn, &observed).unwrap();
        assert_eq!(changes.created, ["a"]);
        assert_eq!(changes.switches, ["net2"]);
        assert_eq!(
            txn.outline(),
            ["insert Load_Balancer_Group", "mutate Logical_Switch"]
        );
    }

    #[test]
    fn a_settled_vpc_writes_nothing_and_drift_is_corrected() {
        let settled = || Observed {
            vpcs: ["a".to_string()].into(),
            groups: [("a".to_string(), group(10, "a", &[1]))].into(),
            members: [("a".to_string(), vec![lb(1, "a")])].into(),
            switches: vec![(switch("net2", &[10]), Some("a".to_string()))],
        };
        let mut txn = OwnedTxn::new();
        assert_eq!(plan(&mut txn, &settled()).unwrap(), Changes::default());
        assert!(txn.is_empty());

        // A balancer not in the group, a switch without its reference (cleared by
        // another client), a foreign group on the switch (kept).
        let mut drifted = settled();
        drifted.members.get_mut("a").unwrap().push(lb(2, "a"));
        drifted.switches = vec![(switch("net2", &[77]), Some("a".to_string()))];
        let mut txn = OwnedTxn::new();
        let changes = plan(&mut txn, &drifted).unwrap();
        assert_eq!(
            (changes.members, changes.switches),
            (vec!["a".to_string()], vec!["net2".to_string()])
        );
        let Some(Operation::Update { row, .. }) = txn.operations().last() else {
            panic!("a switch update: {:?}", txn.operations());
        };
        assert_eq!(
            row.get("load_balancer_group"),
            Some(&ovsdb::Value::set([
                Uuid::from_u128(10),
                Uuid::from_u128(77)
            ]))
        );
    }

    #[test]
    fn a_moved_subnet_changes_groups_and_an_unserved_group_goes_when_unreferenced() {
        let observed = Observed {
            vpcs: ["b".to_string()].into(),
            groups: [
                ("a".to_string(), group(10, "a", &[])),
                ("b".to_string(), group(11, "b", &[])),
                ("c".to_string(), group(12, "c", &[])),
            ]
            .into(),
            switches: vec![
                (switch("net2", &[10]), Some("b".to_string())),
                // Not accepted (yet): its group stays.
                (switch("net9", &[12]), None),
            ],
            ..Observed::default()
        };
        let mut txn = OwnedTxn::new();
        let changes = plan(&mut txn, &observed).unwrap();
        assert_eq!(changes.switches, ["net2"]);
        assert_eq!(changes.deleted, ["a"], "c is still referenced by net9");
        assert_eq!(
            txn.outline(),
            ["update Logical_Switch", "delete Load_Balancer_Group"]
        );
    }
}
