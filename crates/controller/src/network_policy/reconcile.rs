//! One NetworkPolicy's rows made exactly what [`model::plan`] says: created,
//! corrected or put back after another client's edit or delete (Neutron's
//! repair sync deletes every Port_Group not its own, and the ACLs with it),
//! or removed with the policy.

use std::collections::BTreeMap;

use ovn::nb::{Acl, AddressSet, PortGroup};
use ovn::owned::{Mine, OwnedTxn, Owner};
use tracing::info;

use super::model::{Plan, RULE_KEY};
use crate::context::Context;
use crate::error::ReconcileError;

/// The ACL columns we set.
const ACL_COLUMNS: [&str; 7] = [
    "direction",
    "priority",
    "match",
    "action",
    "name",
    "options",
    "external_ids",
];

/// What one reconcile wrote.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Written {
    /// Rows inserted (a group, sets, ACLs).
    pub(super) inserted: usize,
    /// Rows updated (members, addresses, matches).
    pub(super) updated: usize,
    /// Rows deleted.
    pub(super) deleted: usize,
}

impl Written {
    pub(super) fn any(&self) -> bool {
        self.inserted + self.updated + self.deleted > 0
    }
}

fn rule_of<T: ovn::owned::Owned>(row: &T) -> String {
    row.external_ids()
        .get(RULE_KEY)
        .cloned()
        .unwrap_or_default()
}

fn same_acl(row: &Acl, desired: &Acl, owner: &Owner) -> bool {
    let mut ids = desired.external_ids.clone();
    ids.extend(owner.external_ids());
    row.direction == desired.direction
        && row.priority == desired.priority
        && row.match_ == desired.match_
        && row.action == desired.action
        && row.name == desired.name
        && row.options == desired.options
        && row.external_ids == ids
}

/// Makes OVN hold exactly `plan`'s rows for `owner` (`None`: none at all).
pub(super) async fn apply(
    ctx: &Context,
    owner: &Owner,
    plan: Option<&Plan>,
) -> Result<Written, ReconcileError> {
    let view = &ctx.nb_view;
    let mut txn = OwnedTxn::new();
    let mut written = Written::default();

    // Address sets, by name.
    let mut sets: BTreeMap<String, Vec<Mine<AddressSet>>> = BTreeMap::new();
    for set in view.owned_by::<AddressSet>(owner) {
        sets.entry(set.name.clone()).or_default().push(set);
    }
    for desired in plan.iter().flat_map(|p| &p.address_sets) {
        let mut rows = sets.remove(&desired.name).unwrap_or_default().into_iter();
        match rows.next() {
            None => {
                txn.insert(owner, desired)?;
                written.inserted += 1;
            }
            Some(row) if row.addresses != desired.addresses => {
                txn.update(&row, desired, &["addresses"])?;
                written.updated += 1;
            }
            Some(_) => {}
        }
        for extra in rows {
            txn.delete(&extra);
            written.deleted += 1;
        }
    }
    for row in sets.into_values().flatten() {
        txn.delete(&row);
        written.deleted += 1;
    }

    // The group and its ACLs (ACLs live only while a group holds them).
    let mut groups = view.owned_by::<PortGroup>(owner).into_iter();
    let group = groups.next();
    for extra in groups {
        txn.delete(&extra);
        written.deleted += 1;
    }
    match (plan, group) {
        (None, Some(group)) => {
            txn.delete(&group);
            written.deleted += 1;
        }
        (None, None) => {}
        (Some(plan), None) => {
            let mut inserted = Vec::new();
            for acl in &plan.acls {
                inserted.push(txn.insert(owner, acl)?);
                written.inserted += 1;
            }
            let refs: Vec<_> = inserted.iter().collect();
            txn.insert_referencing(owner, &plan.group, Some(("acls", &refs)))?;
            written.inserted += 1;
        }
        (Some(plan), Some(group)) => {
            if group.ports != plan.group.ports {
                txn.update(&group, &plan.group, &["ports"])?;
                written.updated += 1;
            }
            let mut acls: BTreeMap<String, Vec<Mine<Acl>>> = BTreeMap::new();
            for acl in view.owned_by::<Acl>(owner) {
                if group.acls.contains(&acl.uuid) {
                    acls.entry(rule_of(&*acl)).or_default().push(acl);
                }
            }
            for desired in &plan.acls {
                let mut rows = acls
                    .remove(&rule_of(desired))
                    .unwrap_or_default()
                    .into_iter();
                match rows.next() {
                    None => {
                        let named = txn.insert(owner, desired)?;
                        txn.add_reference(&group, "acls", &named);
                        written.inserted += 1;
                    }
                    Some(row) if !same_acl(&row, desired, owner) => {
                        let mut desired = desired.clone();
                        desired.external_ids.extend(owner.external_ids());
                        txn.update(&row, &desired, &ACL_COLUMNS)?;
                        written.updated += 1;
                    }
                    Some(_) => {}
                }
                for extra in rows {
                    txn.remove_reference_from_ours::<PortGroup>("acls", extra.uuid);
                    written.deleted += 1;
                }
            }
            for row in acls.into_values().flatten() {
                txn.remove_reference_from_ours::<PortGroup>("acls", row.uuid);
                written.deleted += 1;
            }
        }
    }
    if !txn.is_empty() {
        txn.comment(format!("rovn: NetworkPolicy {}", owner.object()));
        ctx.nb.commit(&txn).await?;
        info!(
            policy = owner.object(),
            inserted = written.inserted,
            updated = written.updated,
            deleted = written.deleted,
            "NetworkPolicy rows written"
        );
    }
    Ok(written)
}
