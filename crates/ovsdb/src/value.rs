//! OVSDB data model (RFC 7047 section 5.1): atoms, sets, maps and rows, with their JSON encoding.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use std::fmt;

use serde_json::{Value as Json, json};
use uuid::Uuid;

use crate::error::{Error, Result};

/// A named-uuid: a symbolic name for a row inserted earlier in the same transaction.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NamedUuid(pub String);

impl fmt::Display for NamedUuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A single OVSDB scalar.
#[derive(Debug, Clone)]
pub enum Atom {
    /// 64-bit integer.
    Integer(i64),
    /// Floating point number.
    Real(f64),
    /// Boolean.
    Boolean(bool),
    /// UTF-8 string.
    String(String),
    /// Reference to a row by its `_uuid`.
    Uuid(Uuid),
    /// Reference to a row inserted by this transaction (only valid inside a transaction).
    NamedUuid(NamedUuid),
}

impl Atom {
    fn rank(&self) -> u8 {
        match self {
            Atom::Integer(_) => 0,
            Atom::Real(_) => 1,
            Atom::Boolean(_) => 2,
            Atom::String(_) => 3,
            Atom::Uuid(_) => 4,
            Atom::NamedUuid(_) => 5,
        }
    }

    /// JSON encoding of the atom.
    pub fn to_json(&self) -> Json {
        match self {
            Atom::Integer(i) => json!(i),
            Atom::Real(r) => json!(r),
            Atom::Boolean(b) => json!(b),
            Atom::String(s) => json!(s),
            Atom::Uuid(u) => json!(["uuid", u.to_string()]),
            Atom::NamedUuid(n) => json!(["named-uuid", n.0]),
        }
    }

    /// Decodes an atom from its JSON encoding.
    pub fn from_json(j: &Json) -> Result<Atom> {
        match j {
            Json::Bool(b) => Ok(Atom::Boolean(*b)),
            Json::String(s) => Ok(Atom::String(s.clone())),
            Json::Number(n) => match n.as_i64() {
                Some(i) => Ok(Atom::Integer(i)),
                None => n
                    .as_f64()
                    .map(Atom::Real)
                    .ok_or_else(|| Error::protocol(format!("number out of range: {n}"))),
            },
            Json::Array(a) => match (a.first().and_then(Json::as_str), a.get(1), a.len()) {
                (Some("uuid"), Some(Json::String(s)), 2) => Uuid::parse_str(s)
                    .map(Atom::Uuid)
                    .map_err(|e| Error::protocol(format!("bad uuid {s:?}: {e}"))),
                (Some("named-uuid"), Some(Json::String(s)), 2) => {
                    Ok(Atom::NamedUuid(NamedUuid(s.clone())))
                }
                _ => Err(Error::protocol(format!("not an atom: {j}"))),
            },
            _ => Err(Error::protocol(format!("not an atom: {j}"))),
        }
    }

    /// The string, if this is a string atom.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Atom::String(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, if this is an integer atom.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Atom::Integer(i) => Some(*i),
            _ => None,
        }
    }

    /// The boolean, if this is a boolean atom.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Atom::Boolean(b) => Some(*b),
            _ => None,
        }
    }

    /// The real number (integers are widened).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Atom::Real(r) => Some(*r),
            Atom::Integer(i) => Some(*i as f64),
            _ => None,
        }
    }

    /// The uuid, if this is a uuid atom.
    pub fn as_uuid(&self) -> Option<Uuid> {
        match self {
            Atom::Uuid(u) => Some(*u),
            _ => None,
        }
    }
}

impl PartialEq for Atom {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Atom {}
impl PartialOrd for Atom {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Atom {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Atom::Integer(a), Atom::Integer(b)) => a.cmp(b),
            (Atom::Real(a), Atom::Real(b)) => a.total_cmp(b),
            (Atom::Boolean(a), Atom::Boolean(b)) => a.cmp(b),
            (Atom::String(a), Atom::String(b)) => a.cmp(b),
            (Atom::Uuid(a), Atom::Uuid(b)) => a.cmp(b),
            (Atom::NamedUuid(a), Atom::NamedUuid(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl fmt::Display for Atom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Atom::Integer(i) => write!(f, "{i}"),
            Atom::Real(r) => write!(f, "{r}"),
            Atom::Boolean(b) => write!(f, "{b}"),
            Atom::String(s) => write!(f, "{s:?}"),
            Atom::Uuid(u) => write!(f, "{u}"),
            Atom::NamedUuid(n) => write!(f, "@{n}"),
        }
    }
}

impl From<i64> for Atom {
    fn from(v: i64) -> Self {
        Atom::Integer(v)
    }
}
impl From<f64> for Atom {
    fn from(v: f64) -> Self {
        Atom::Real(v)
    }
}
impl From<bool> for Atom {
    fn from(v: bool) -> Self {
        Atom::Boolean(v)
    }
}
impl From<&str> for Atom {
    fn from(v: &str) -> Self {
        Atom::String(v.to_owned())
    }
}
impl From<String> for Atom {
    fn from(v: String) -> Self {
        Atom::String(v)
    }
}
impl From<Uuid> for Atom {
    fn from(v: Uuid) -> Self {
        Atom::Uuid(v)
    }
}
impl From<NamedUuid> for Atom {
    fn from(v: NamedUuid) -> Self {
        Atom::NamedUuid(v)
    }
}
impl From<&NamedUuid> for Atom {
    fn from(v: &NamedUuid) -> Self {
        Atom::NamedUuid(v.clone())
    }
}

/// An ordered set of atoms. Persistent (structure-sharing): cloning is O(1) and changing one
/// element of a large set is O(log n), so replicas update big `ports` sets cheaply.
pub type AtomSet = imbl::OrdSet<Atom>;

/// An ordered map between atoms, persistent like [`AtomSet`].
pub type AtomMap = imbl::OrdMap<Atom, Atom>;

/// A column value: a single atom, a set of atoms or a map.
///
/// OVSDB treats a one-element set and a bare atom as the same value; equality follows that rule.
#[derive(Debug, Clone)]
pub enum Value {
    /// A bare atom (also a one-element set).
    Atom(Atom),
    /// A set of atoms (possibly empty).
    Set(AtomSet),
    /// A map between atoms.
    Map(AtomMap),
}

impl Value {
    /// The empty set.
    pub fn empty_set() -> Value {
        Value::Set(AtomSet::new())
    }

    /// The empty map.
    pub fn empty_map() -> Value {
        Value::Map(AtomMap::new())
    }

    /// A set from anything convertible to atoms.
    pub fn set<A: Into<Atom>>(items: impl IntoIterator<Item = A>) -> Value {
        Value::Set(items.into_iter().map(Into::into).collect())
    }

    /// A map from key/value pairs convertible to atoms.
    pub fn map<K: Into<Atom>, V: Into<Atom>>(items: impl IntoIterator<Item = (K, V)>) -> Value {
        Value::Map(
            items
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }

    /// JSON encoding: atoms bare, sets as `["set",[...]]`, maps as `["map",[[k,v],...]]`.
    pub fn to_json(&self) -> Json {
        match self {
            Value::Atom(a) => a.to_json(),
            Value::Set(s) => json!(["set", s.iter().map(Atom::to_json).collect::<Vec<_>>()]),
            Value::Map(m) => json!([
                "map",
                m.iter()
                    .map(|(k, v)| json!([k.to_json(), v.to_json()]))
                    .collect::<Vec<_>>()
            ]),
        }
    }

    /// Decodes a value from its JSON encoding.
    pub fn from_json(j: &Json) -> Result<Value> {
        if let Json::Array(a) = j {
            match (a.first().and_then(Json::as_str), a.get(1), a.len()) {
                (Some("set"), Some(Json::Array(items)), 2) => {
                    return items
                        .iter()
                        .map(Atom::from_json)
                        .collect::<Result<_>>()
                        .map(Value::Set);
                }
                (Some("map"), Some(Json::Array(pairs)), 2) => {
                    return pairs
                        .iter()
                        .map(|p| match p.as_array().map(Vec::as_slice) {
                            Some([k, v]) => Ok((Atom::from_json(k)?, Atom::from_json(v)?)),
                            _ => Err(Error::protocol(format!("bad map pair: {p}"))),
                        })
                        .collect::<Result<_>>()
                        .map(Value::Map);
                }
                _ => {}
            }
        }
        Atom::from_json(j).map(Value::Atom)
    }

    /// The atoms of the value seen as a set (a bare atom is a one-element set; maps yield nothing).
    pub fn atoms(&self) -> Vec<&Atom> {
        match self {
            Value::Atom(a) => vec![a],
            Value::Set(s) => s.iter().collect(),
            Value::Map(_) => Vec::new(),
        }
    }

    /// The single atom of a scalar or one-element set.
    pub fn as_atom(&self) -> Option<&Atom> {
        match self {
            Value::Atom(a) => Some(a),
            Value::Set(s) if s.len() == 1 => s.iter().next(),
            _ => None,
        }
    }

    /// The map, if this is a map value.
    pub fn as_map(&self) -> Option<&AtomMap> {
        match self {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// Value of a string key in a map value.
    pub fn map_get(&self, key: &str) -> Option<&Atom> {
        self.as_map()?.get(&Atom::String(key.to_owned()))
    }

    /// Set form: a bare atom becomes a one-element set.
    pub fn to_set(&self) -> BTreeSet<Atom> {
        self.atoms().into_iter().cloned().collect()
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Value::Atom(a), Value::Atom(b)) => a == b,
            (Value::Set(a), Value::Set(b)) => a == b,
            (Value::Map(a), Value::Map(b)) => a == b,
            (Value::Atom(a), Value::Set(s)) | (Value::Set(s), Value::Atom(a)) => {
                s.len() == 1 && s.iter().next() == Some(a)
            }
            // An empty map and an empty set are the same empty datum on the wire.
            (Value::Set(s), Value::Map(m)) | (Value::Map(m), Value::Set(s)) => {
                s.is_empty() && m.is_empty()
            }
            _ => false,
        }
    }
}
impl Eq for Value {}

impl<A: Into<Atom>> From<A> for Value {
    fn from(a: A) -> Self {
        Value::Atom(a.into())
    }
}

/// A row: column name → value. Rows read from a replica carry their `_uuid` column.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Row(BTreeMap<String, Value>);

impl Row {
    /// An empty row.
    pub fn new() -> Row {
        Row::default()
    }

    /// Builder-style setter.
    pub fn with(mut self, column: impl Into<String>, value: impl Into<Value>) -> Row {
        self.0.insert(column.into(), value.into());
        self
    }

    /// Sets a column.
    pub fn set(&mut self, column: impl Into<String>, value: impl Into<Value>) {
        self.0.insert(column.into(), value.into());
    }

    /// Removes a column, returning its value.
    pub fn remove(&mut self, column: &str) -> Option<Value> {
        self.0.remove(column)
    }

    /// A column's value.
    pub fn get(&self, column: &str) -> Option<&Value> {
        self.0.get(column)
    }

    /// Iterates over `(column, value)` pairs in column order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.0.iter()
    }

    /// Number of columns present.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True if no column is present.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The row's `_uuid`, if present.
    pub fn uuid(&self) -> Option<Uuid> {
        self.get_uuid("_uuid")
    }

    /// A string column (a scalar or one-element set).
    pub fn get_str(&self, column: &str) -> Option<&str> {
        self.get(column)?.as_atom()?.as_str()
    }

    /// An integer column.
    pub fn get_i64(&self, column: &str) -> Option<i64> {
        self.get(column)?.as_atom()?.as_i64()
    }

    /// A boolean column.
    pub fn get_bool(&self, column: &str) -> Option<bool> {
        self.get(column)?.as_atom()?.as_bool()
    }

    /// A uuid column (a scalar or one-element set).
    pub fn get_uuid(&self, column: &str) -> Option<Uuid> {
        self.get(column)?.as_atom()?.as_uuid()
    }

    /// All uuids in a set column (empty if absent).
    pub fn get_uuids(&self, column: &str) -> Vec<Uuid> {
        self.get(column)
            .map(|v| v.atoms().into_iter().filter_map(Atom::as_uuid).collect())
            .unwrap_or_default()
    }

    /// All strings in a set column (empty if absent).
    pub fn get_strs(&self, column: &str) -> Vec<&str> {
        self.get(column)
            .map(|v| v.atoms().into_iter().filter_map(Atom::as_str).collect())
            .unwrap_or_default()
    }

    /// The string value for a string key of a map column (`external_ids`, `options`...).
    pub fn get_map_str(&self, column: &str, key: &str) -> Option<&str> {
        self.get(column)?.map_get(key)?.as_str()
    }

    /// A string→string map column as owned pairs (empty if absent; non-string entries skipped).
    pub fn get_str_map(&self, column: &str) -> BTreeMap<String, String> {
        self.get(column)
            .and_then(Value::as_map)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), v.as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// JSON object encoding.
    pub fn to_json(&self) -> Json {
        Json::Object(
            self.0
                .iter()
                .map(|(k, v)| (k.clone(), v.to_json()))
                .collect(),
        )
    }

    /// Decodes a row from a JSON object.
    pub fn from_json(j: &Json) -> Result<Row> {
        let obj = j
            .as_object()
            .ok_or_else(|| Error::protocol(format!("row is not an object: {j}")))?;
        obj.iter()
            .map(|(k, v)| Ok((k.clone(), Value::from_json(v)?)))
            .collect::<Result<_>>()
            .map(Row)
    }
}

impl FromIterator<(String, Value)> for Row {
    fn from_iter<T: IntoIterator<Item = (String, Value)>>(iter: T) -> Self {
        Row(iter.into_iter().collect())
    }
}

impl IntoIterator for Row {
    type Item = (String, Value);
    type IntoIter = std::collections::btree_map::IntoIter<String, Value>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atoms_round_trip() {
        let u = Uuid::new_v4();
        for a in [
            Atom::Integer(-3),
            Atom::Real(1.5),
            Atom::Boolean(true),
            Atom::String("a\"b".into()),
            Atom::Uuid(u),
            Atom::NamedUuid(NamedUuid("row1".into())),
        ] {
            assert_eq!(Atom::from_json(&a.to_json()).unwrap(), a);
        }
        assert_eq!(
            Atom::Uuid(u).to_json(),
            json!(["uuid", u.to_string()]),
            "uuid encoding"
        );
        assert_eq!(
            Atom::NamedUuid(NamedUuid("x".into())).to_json(),
            json!(["named-uuid", "x"])
        );
    }

    #[test]
    fn sets_and_maps_encode_per_rfc() {
        assert_eq!(Value::set(["b", "a"]).to_json(), json!(["set", ["a", "b"]]));
        assert_eq!(Value::empty_set().to_json(), json!(["set", []]));
        assert_eq!(
            Value::map([("k", "v")]).to_json(),
            json!(["map", [["k", "v"]]])
        );
        let v = Value::from_json(&json!(["map", [["a", 1], ["b", 2]]])).unwrap();
        assert_eq!(v.map_get("b"), Some(&Atom::Integer(2)));
    }

    #[test]
    fn single_atom_equals_one_element_set() {
        assert_eq!(Value::from("x"), Value::set(["x"]));
        assert_ne!(Value::from("x"), Value::set(["x", "y"]));
        assert_eq!(Value::empty_set(), Value::empty_map());
    }

    #[test]
    fn malformed_values_are_errors() {
        for bad in [
            json!(null),
            json!({"a": 1}),
            json!(["uuid", "not-a-uuid"]),
            json!(["set", "notalist"]),
            json!(["map", [["onlykey"]]]),
            json!(["uuid"]),
            json!(["set", [["set", []]]]),
        ] {
            assert!(Value::from_json(&bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn row_helpers() {
        let u = Uuid::new_v4();
        let row = Row::from_json(&json!({
            "name": "ls1",
            "ports": ["set", [["uuid", u.to_string()]]],
            "external_ids": ["map", [["owner", "k8s"]]],
            "single": ["uuid", u.to_string()],
        }))
        .unwrap();
        assert_eq!(row.get_str("name"), Some("ls1"));
        assert_eq!(row.get_uuids("ports"), vec![u]);
        assert_eq!(row.get_uuids("single"), vec![u]);
        assert_eq!(row.get_map_str("external_ids", "owner"), Some("k8s"));
        assert_eq!(row.get_str_map("external_ids").len(), 1);
        assert_eq!(Row::from_json(&row.to_json()).unwrap(), row);
    }
}
