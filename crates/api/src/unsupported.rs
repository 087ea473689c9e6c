//! Reporting of spec fields that are accepted but not implemented by rovn.
//!
//! Kube-OVN manifests carry many fields rovn does not act on. They are
//! accepted (never rejected, never silently dropped) and each resource's
//! `Unsupported` condition names them, e.g. `Unsupported: spec.natOutgoing`.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::condition::{Condition, UNSUPPORTED};

/// A spec that can list the fields it sets but rovn does not implement.
pub trait UnsupportedFields {
    /// Paths (`spec.xyz`) of set fields rovn ignores, sorted; empty when all are supported.
    fn unsupported_fields(&self) -> Vec<String>;
}

/// The `Unsupported` condition for the given field paths: `True` with message
/// `Unsupported: spec.a, spec.b` when any, else `False`.
pub fn unsupported_condition(fields: &[String]) -> Condition {
    if fields.is_empty() {
        Condition::new(UNSUPPORTED, false, "AllFieldsSupported", "")
    } else {
        Condition::new(
            UNSUPPORTED,
            true,
            "UnsupportedFields",
            format!("Unsupported: {}", fields.join(", ")),
        )
    }
}

/// Collects unsupported field paths of a spec.
#[derive(Default)]
pub(crate) struct FieldList(Vec<String>);

impl FieldList {
    /// Records `spec.<name>` when `set` holds.
    pub(crate) fn flag(&mut self, name: &str, set: bool) -> &mut Self {
        if set {
            self.0.push(format!("spec.{name}"));
        }
        self
    }

    /// Records every field of `extra` (fields without a typed counterpart)
    /// whose value is not empty, `false`, zero or null.
    pub(crate) fn extra(&mut self, extra: &BTreeMap<String, Value>) -> &mut Self {
        for (name, value) in extra {
            self.flag(name, is_set(value));
        }
        self
    }

    /// The sorted paths.
    pub(crate) fn take_sorted(&mut self) -> Vec<String> {
        let mut fields = std::mem::take(&mut self.0);
        fields.sort();
        fields
    }
}

/// Whether a JSON value carries information (Kube-OVN writes zero values for unset fields).
fn is_set(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => o.values().any(is_set),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn zero_values_are_not_reported() {
        let extra: BTreeMap<String, Value> = serde_json::from_value(json!({
            "enableLb": false, "mtu": 0, "vips": [], "u2oFeatures": {"overlayOnlyRouting": false},
            "provider2": "", "enableDHCP": true, "acls": [{"action": "drop"}]
        }))
        .unwrap();
        let fields = FieldList::default().extra(&extra).take_sorted();
        assert_eq!(fields, ["spec.acls", "spec.enableDHCP"]);
        let c = unsupported_condition(&fields);
        assert!(c.is_true());
        assert_eq!(c.message, "Unsupported: spec.acls, spec.enableDHCP");
        assert!(!unsupported_condition(&[]).is_true());
    }
}
