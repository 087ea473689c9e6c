//! A Subnet's status: conditions (`Validated`, `Attached`, `Ready`,
//! `NeutronSecurityGroups`, `Unsupported`, `DeletionBlocked`), address counts
//! from the IPAM, and a Warning Event whenever a condition turns into a
//! problem.

use std::sync::Arc;

use api::condition::{
    self, ATTACHED, Condition, DELETION_BLOCKED, NEUTRON_SECURITY_GROUPS, READY, VALIDATED,
};
use api::unsupported::{UnsupportedFields, unsupported_condition};
use api::{IpCount, Subnet, SubnetStatus};
use kube::ResourceExt;
use kube::api::{Patch, PatchParams};

use super::attach::{Attachment, lrp_name};
use super::validate::Invalid;
use crate::bindings::Binding;
use crate::context::{Context, FIELD_MANAGER};
use crate::runtime::Events;

/// Writes Subnets' status and their Warning Events.
pub struct StatusWriter {
    ctx: Arc<Context>,
    events: Events,
}

impl StatusWriter {
    /// A writer for the Subnets of `ctx`.
    pub fn new(ctx: Arc<Context>) -> Self {
        let events = Events::new(&ctx, "Reconcile");
        Self { ctx, events }
    }

    /// Writes the outcome of an apply: validation, attachment, readiness.
    pub async fn write(
        &self,
        subnet: &Subnet,
        binding: Option<&Binding>,
        invalid: Option<&Invalid>,
        attachment: &Attachment,
    ) -> Result<(), kube::Error> {
        let name = subnet.name_any();
        let cidr = binding.map(|b| b.config.cidr_block()).unwrap_or_default();
        let validated = match invalid {
            None => Condition::new(VALIDATED, true, "Valid", ""),
            Some(invalid) => {
                let mut message = invalid.to_string();
                if binding.is_some() {
                    message.push_str(&format!(
                        "; the previous valid configuration ({cidr}) stays in force"
                    ));
                }
                Condition::new(VALIDATED, false, invalid.reason(), message)
            }
        };
        let attached = match attachment {
            Attachment::Attached { router, .. } => Condition::new(
                ATTACHED,
                true,
                "Attached",
                format!("router port {} on router {router}", lrp_name(&name, router)),
            ),
            Attachment::RouterMissing { router, imported } => {
                let (reason, message) = if *imported {
                    (
                        "RouterMissing",
                        format!(
                            "the Neutron router {router} no longer exists; the Subnet re-attaches when it is back"
                        ),
                    )
                } else {
                    (
                        "RouterNotReady",
                        format!("router {router} does not exist (yet)"),
                    )
                };
                Condition::new(ATTACHED, false, reason, message)
            }
            Attachment::NameTaken(row) => Condition::new(
                ATTACHED,
                false,
                "NameTaken",
                format!("{row} exists and was not created by rovn; it is left alone"),
            ),
            Attachment::NotCreated => Condition::new(
                ATTACHED,
                false,
                "NotValidated",
                "nothing is created until the spec is valid",
            ),
        };
        let is_attached = matches!(attachment, Attachment::Attached { .. });
        let ready = if invalid.is_none() && is_attached {
            Condition::new(READY, true, "Ready", "")
        } else if invalid.is_some() {
            Condition::new(READY, false, "InvalidSpec", validated.message.clone())
        } else {
            Condition::new(
                READY,
                false,
                attached.reason.clone(),
                attached.message.clone(),
            )
        };
        let security = match attachment {
            Attachment::Attached {
                router,
                neutron: true,
            } => Condition::new(
                NEUTRON_SECURITY_GROUPS,
                true,
                "PodToVmNeedsSecurityGroupRule",
                neutron_security_note(router, &cidr),
            ),
            _ => Condition::new(NEUTRON_SECURITY_GROUPS, false, "NotOnNeutronRouter", ""),
        };
        let updates = [
            validated,
            attached,
            ready,
            security,
            unsupported_condition(&subnet.spec.unsupported_fields()),
        ];
        self.publish(subnet, updates.to_vec()).await
    }

    /// Merges `updates` into the status with fresh address counts, writes
    /// it when it changed, and records an Event for every condition that
    /// turned into a problem.
    pub async fn publish(
        &self,
        subnet: &Subnet,
        updates: Vec<Condition>,
    ) -> Result<(), kube::Error> {
        let name = subnet.name_any();
        let current = subnet.status.clone().unwrap_or_default();
        let generation = subnet.metadata.generation;
        let mut conditions = current.conditions.clone();
        let mut problems = Vec::new();
        for update in updates {
            let update = update.observed(generation);
            let before = condition::find_condition(&current.conditions, &update.type_);
            let changed = before.is_none_or(|b| {
                b.status != update.status
                    || b.reason != update.reason
                    || b.message != update.message
            });
            if changed && is_problem(&update) {
                problems.push(update.clone());
            }
            condition::set_condition(&mut conditions, update);
        }
        let counts = self
            .ctx
            .ipam
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .subnet(&name)
            .map(|s| {
                (
                    s.counts(),
                    s.config().v4().is_some(),
                    s.config().v6().is_some(),
                )
            });
        let mut status = SubnetStatus {
            conditions,
            ..current.clone()
        };
        if let Some((counts, v4, v6)) = counts {
            let pair = |has: bool, available: u128, using: usize| {
                has.then(|| (IpCount::from(available), IpCount::from(using as u128)))
                    .unzip()
            };
            (status.v4_available_ips, status.v4_using_ips) =
                pair(v4, counts.v4_available, counts.v4_using);
            (status.v6_available_ips, status.v6_using_ips) =
                pair(v6, counts.v6_available, counts.v6_using);
        }
        if status != current {
            self.ctx
                .subnets()
                .patch_status(
                    &name,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(&api::status_apply_patch::<Subnet>(&status)),
                )
                .await?;
        }
        for problem in problems {
            self.events
                .warn(subnet, &problem.reason, &problem.message)
                .await;
        }
        Ok(())
    }
}

/// Whether a condition reports a problem worth an Event (not the transient
/// wait for a router of ours, nor a detachment the refusal already explains).
fn is_problem(c: &Condition) -> bool {
    match c.type_.as_str() {
        VALIDATED => !c.is_true(),
        ATTACHED => !c.is_true() && matches!(c.reason.as_str(), "RouterMissing" | "NameTaken"),
        DELETION_BLOCKED => c.is_true(),
        _ => false,
    }
}

/// What users of a Subnet on a Neutron router must know about Neutron's
/// port security: one security group rule per CIDR of `cidr_block` (a
/// dual-stack Subnet needs an IPv4 and an IPv6 rule).
pub fn neutron_security_note(router: &str, cidr_block: &str) -> String {
    let rules: Vec<String> = cidr_block
        .split(',')
        .map(str::trim)
        .filter(|cidr| !cidr.is_empty())
        .map(|cidr| {
            let ethertype = if cidr.contains(':') { "IPv6" } else { "IPv4" };
            format!(
                "openstack security group rule create --ingress --ethertype {ethertype} \
                 --remote-ip {cidr} <group>"
            )
        })
        .collect();
    format!(
        "attached to Neutron router {router}: VM→pod traffic and its replies pass, but new \
         pod→VM connections are dropped by Neutron's neutron_pg_drop port group unless a \
         security group of the VM allows ingress from {cidr_block} ({})",
        rules.join("; ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_security_note_has_one_rule_per_family() {
        let note = neutron_security_note("neutron-r", "10.0.2.0/24,fd00:2::/64");
        assert!(
            note.contains(
                "openstack security group rule create --ingress --ethertype IPv4 \
                 --remote-ip 10.0.2.0/24 <group>; openstack security group rule create \
                 --ingress --ethertype IPv6 --remote-ip fd00:2::/64 <group>"
            ),
            "{note}"
        );
    }
}
