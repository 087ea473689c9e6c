//! Status conditions shared by all resources, with helpers to set and query them.
//!
//! Conditions follow the Kubernetes convention (`type`, `status`, `reason`,
//! `message`, `lastTransitionTime`, `observedGeneration`) and are a list-map
//! keyed by `type`, so server-side apply merges them per type.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Condition type: the resource is fully realized.
pub const READY: &str = "Ready";
/// Condition type: the spec passed validation.
pub const VALIDATED: &str = "Validated";
/// Condition type: a Subnet is attached to its VPC's router.
pub const ATTACHED: &str = "Attached";
/// Condition type: an imported Vpc's Neutron router no longer exists.
pub const ROUTER_MISSING: &str = "RouterMissing";
/// Condition type: the spec sets fields rovn does not implement (message lists them).
pub const UNSUPPORTED: &str = "Unsupported";
/// Condition type: an imported Vpc's Neutron router is in OVN.
pub const IMPORTED: &str = "Imported";
/// Condition type: deletion waits for something (Subnets of a Vpc, addresses
/// of a Subnet) to go; the message lists it.
pub const DELETION_BLOCKED: &str = "DeletionBlocked";
/// Condition type (Subnets on a Neutron router): pod→VM connections need a
/// Neutron security group rule admitting the Subnet's CIDR.
pub const NEUTRON_SECURITY_GROUPS: &str = "NeutronSecurityGroups";

/// Status of a condition.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// Not known (yet).
    #[default]
    Unknown,
}

impl From<bool> for ConditionStatus {
    fn from(holds: bool) -> Self {
        if holds { Self::True } else { Self::False }
    }
}

/// One observation about a resource's state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Kind of condition, e.g. `Ready`; unique within the list.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: ConditionStatus,
    /// Machine-readable CamelCase reason of the last transition.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Human-readable details.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// When `status` last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    /// `metadata.generation` the condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl Condition {
    /// A condition that transitions now.
    pub fn new(
        type_: impl Into<String>,
        status: impl Into<ConditionStatus>,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: message.into(),
            last_transition_time: Some(Time(Timestamp::now())),
            observed_generation: None,
        }
    }

    /// Sets the generation the condition was computed from.
    pub fn observed(mut self, generation: Option<i64>) -> Self {
        self.observed_generation = generation;
        self
    }

    /// Whether `status` is `True`.
    pub fn is_true(&self) -> bool {
        self.status == ConditionStatus::True
    }

    /// Same observation, ignoring the transition time.
    fn same_observation(&self, other: &Condition) -> bool {
        self.status == other.status
            && self.reason == other.reason
            && self.message == other.message
            && self.observed_generation == other.observed_generation
    }
}

/// Sets `new` in `conditions`, replacing the condition of the same type.
///
/// The previous `lastTransitionTime` is kept when the status did not change.
/// Returns whether anything other than the transition time changed (i.e.
/// whether the status needs writing).
pub fn set_condition(conditions: &mut Vec<Condition>, mut new: Condition) -> bool {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(old) if old.same_observation(&new) => false,
        Some(old) => {
            if old.status == new.status {
                new.last_transition_time = old.last_transition_time.take();
            }
            *old = new;
            true
        }
        None => {
            conditions.push(new);
            true
        }
    }
}

/// Merges every condition of `updates` into `conditions` (see [`set_condition`]).
/// Returns whether anything changed.
pub fn merge_conditions(
    conditions: &mut Vec<Condition>,
    updates: impl IntoIterator<Item = Condition>,
) -> bool {
    let mut changed = false;
    for condition in updates {
        changed |= set_condition(conditions, condition);
    }
    changed
}

/// The condition of the given type, if present.
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether the condition of the given type is present and `True`.
pub fn is_condition_true(conditions: &[Condition], type_: &str) -> bool {
    find_condition(conditions, type_).is_some_and(Condition::is_true)
}

/// Removes the condition of the given type. Returns whether it was present.
pub fn remove_condition(conditions: &mut Vec<Condition>, type_: &str) -> bool {
    let before = conditions.len();
    conditions.retain(|c| c.type_ != type_);
    conditions.len() != before
}

/// Schema extension making a `conditions` list a list-map keyed by `type`.
pub(crate) fn conditions_list_map(schema: &mut schemars::Schema) {
    schema.insert("x-kubernetes-list-type".into(), "map".into());
    schema.insert(
        "x-kubernetes-list-map-keys".into(),
        serde_json::json!(["type"]),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_kept_while_status_unchanged() {
        let first = Some(Time(Timestamp::UNIX_EPOCH));
        let mut conditions = vec![Condition {
            last_transition_time: first.clone(),
            ..Condition::new(READY, false, "Pending", "waiting")
        }];
        assert!(!set_condition(
            &mut conditions,
            Condition::new(READY, false, "Pending", "waiting")
        ));
        assert!(set_condition(
            &mut conditions,
            Condition::new(READY, false, "Pending", "still waiting")
        ));
        assert_eq!(conditions[0].last_transition_time, first);
        assert_eq!(conditions[0].message, "still waiting");
        assert!(set_condition(
            &mut conditions,
            Condition::new(READY, true, "Done", "")
        ));
        assert_ne!(conditions[0].last_transition_time, first);
        assert!(is_condition_true(&conditions, READY));
        assert_eq!(conditions.len(), 1);
    }

    #[test]
    fn merge_find_remove() {
        let mut conditions = vec![Condition::new(READY, true, "Done", "")];
        let changed = merge_conditions(
            &mut conditions,
            [
                Condition::new(READY, true, "Done", ""),
                Condition::new(VALIDATED, true, "Valid", ""),
            ],
        );
        assert!(changed);
        assert_eq!(conditions.len(), 2);
        assert_eq!(
            find_condition(&conditions, VALIDATED).unwrap().reason,
            "Valid"
        );
        assert!(remove_condition(&mut conditions, READY));
        assert!(!remove_condition(&mut conditions, READY));
        assert!(!is_condition_true(&conditions, READY));
    }
}
