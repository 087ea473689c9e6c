//! Conversion between OVSDB column values and the Rust types of typed rows.

use std::collections::{BTreeMap, BTreeSet};

use ovsdb::{Atom, Value};
use uuid::Uuid;

/// Why a column could not be read as the expected type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected {expected}, found {found}")]
pub struct ColumnTypeError {
    /// The type the typed row declares.
    pub expected: &'static str,
    /// The value found, as OVSDB JSON.
    pub found: String,
}

/// A Rust type that a column of a typed row can hold.
pub trait ColumnValue: Sized {
    /// Reads the column; `None` when the row does not carry it (not monitored
    /// or not yet known), which reads as the column's empty value.
    fn decode(value: Option<&Value>) -> Result<Self, ColumnTypeError>;
    /// The OVSDB value to write.
    fn encode(&self) -> Value;
}

fn mismatch(expected: &'static str, value: &Value) -> ColumnTypeError {
    ColumnTypeError {
        expected,
        found: value.to_json().to_string(),
    }
}

/// Reads an optional scalar (a set of zero or one atom) with `pick`.
fn optional<T>(
    value: Option<&Value>,
    expected: &'static str,
    pick: impl Fn(&Atom) -> Option<T>,
) -> Result<Option<T>, ColumnTypeError> {
    let Some(value) = value else {
        return Ok(None);
    };
    match value {
        Value::Set(set) if set.is_empty() => Ok(None),
        Value::Map(map) if map.is_empty() => Ok(None),
        _ => value
            .as_atom()
            .and_then(&pick)
            .map(Some)
            .ok_or_else(|| mismatch(expected, value)),
    }
}

fn optional_value(atom: Option<Atom>) -> Value {
    match atom {
        Some(atom) => Value::Atom(atom),
        None => Value::empty_set(),
    }
}

impl ColumnValue for String {
    fn decode(value: Option<&Value>) -> Result<Self, ColumnTypeError> {
        Ok(optional(value, "string", |a| a.as_str().map(str::to_owned))?.unwrap_or_default())
    }
    fn encode(&self) -> Value {
        Value::from(self.as_str())
    }
}

impl ColumnValue for Option<String> {
    fn decode(value: Option<&Value>) -> Result<Self, ColumnTypeError> {
        optional(value, "optional string", |a| a.as_str().map(str::to_owned))
    }
    fn encode(&self) -> Value {
        optional_value(self.as_deref().map(Atom::from))
    }
}

impl ColumnValue for i64 {
    fn decode(value: Option<&Value>) -> Result<Self, ColumnTypeError> {
        Ok(optional(value, "integer", Atom::as_i64)?.unwrap_or_default())
    }
    fn encode(&self) -> Value {
        Value::from(*self)
    }
}

impl ColumnValue for Option<i64> {
    fn decode(value: Option<&Value>) -> Result<Self, ColumnTypeError> {
        optional(value, "optional integer", Atom::as_i64)
    }
    fn encode(&self) -> Value {
        optional_value(self.map(Atom::from))
    }
}

impl ColumnValue for bool {
    fn decode(value: Option<&Value>) -> Result<Self, ColumnTypeError> {
        Ok(optional(value, "boolean", Atom::as_bool)?.unwrap_or_default())
    }
    fn encode(&self) -> Value {
        Value::from(*self)
    }
}

impl ColumnValue for Option<bool> {
    fn decode(value: Option<&Value>) -> Result<Self, ColumnTypeError> {
        optional(value, "optional boolean", Atom::as_bool)
    }
    fn encode(&self) -> Value {
        optional_value(self.map(Atom::from))
    }
}

impl ColumnValue for Option<Uuid> {
    fn decode(value: Option<&Value>) -> Result<Self, ColumnTypeError> {
        optional(value, "optional uuid", Atom::as_uuid)
    }
    fn encode(&self) -> Value {
        optional_value(self.map(Atom::from))
    }
}

impl ColumnValue for BTreeSet<String> {
    fn decode(value: Option<&Value>) -> Result<Self, ColumnTypeError> {
        let Some(value) = value else {
            return Ok(BTreeSet::new());
        };
        if matches!(value, Value::Map(m) if m.is_empty()) {
            return Ok(BTreeSet::new());
        }
        value
            .atoms()
            .into_iter()
            .map(|a| a.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .filter(|_| !matches!(value, Value::Map(_)))
            .ok_or_else(|| mismatch("set of strings", value))
    }
    fn encode(&self) -> Value {
        Value::set(self.iter().map(String::as_str))
    }
}

impl ColumnValue for BTreeSet<Uuid> {
    fn decode(value: Option<&Value>) -> Result<Self, ColumnTypeError> {
        let Some(value) = value else {
            return Ok(BTreeSet::new());
        };
        if matches!(value, Value::Map(m) if m.is_empty()) {
            return Ok(BTreeSet::new());
        }
        value
            .atoms()
            .into_iter()
            .map(Atom::as_uuid)
            .collect::<Option<_>>()
            .filter(|_| !matches!(value, Value::Map(_)))
            .ok_or_else(|| mismatch("set of uuids", value))
    }
    fn encode(&self) -> Value {
        Value::set(self.iter().copied())
    }
}

impl ColumnValue for BTreeMap<String, String> {
    fn decode(value: Option<&Value>) -> Result<Self, ColumnTypeError> {
        let Some(value) = value else {
            return Ok(BTreeMap::new());
        };
        match value {
            Value::Set(set) if set.is_empty() => Ok(BTreeMap::new()),
            Value::Map(map) => map
                .iter()
                .map(|(k, v)| Some((k.as_str()?.to_owned(), v.as_str()?.to_owned())))
                .collect::<Option<_>>()
                .ok_or_else(|| mismatch("map of strings", value)),
            _ => Err(mismatch("map of strings", value)),
        }
    }
    fn encode(&self) -> Value {
        Value::map(self.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decode<T: ColumnValue>(j: serde_json::Value) -> Result<T, ColumnTypeError> {
        T::decode(Some(&Value::from_json(&j).unwrap()))
    }

    #[test]
    fn optional_scalars_read_empty_sets_as_none() {
        assert_eq!(decode::<Option<String>>(json!(["set", []])).unwrap(), None);
        assert_eq!(
            decode::<Option<String>>(json!("x")).unwrap(),
            Some("x".into())
        );
        assert_eq!(
            decode::<Option<bool>>(json!(["set", [true]])).unwrap(),
            Some(true)
        );
        assert_eq!(String::decode(None).unwrap(), "");
    }

    #[test]
    fn maps_and_sets_round_trip() {
        let map: BTreeMap<String, String> =
            decode(json!(["map", [["neutron:router_name", "router1"]]])).unwrap();
        assert_eq!(map["neutron:router_name"], "router1");
        assert_eq!(
            BTreeMap::<String, String>::decode(Some(&map.encode())).unwrap(),
            map
        );
        let set: BTreeSet<String> = decode(json!(["set", ["10.0.1.1/24", "fd00::1/64"]])).unwrap();
        assert_eq!(set.len(), 2);
        let one: BTreeSet<String> = decode(json!("10.0.1.1/24")).unwrap();
        assert_eq!(one.len(), 1);
    }

    #[test]
    fn wrong_types_are_errors_not_panics() {
        assert!(decode::<String>(json!(5)).is_err());
        assert!(decode::<BTreeMap<String, String>>(json!(["set", ["a"]])).is_err());
        assert!(decode::<BTreeSet<Uuid>>(json!(["set", ["not-a-uuid"]])).is_err());
        assert!(decode::<BTreeSet<String>>(json!(["map", [["a", "b"]]])).is_err());
    }
}
