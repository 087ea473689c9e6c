//! Database schemas as returned by `get_schema` (RFC 7047 section 3.2), and checks that the
//! tables and columns a program needs exist (extra ones are tolerated).

use std::collections::BTreeMap;

use serde_json::Value as Json;

use crate::error::{Error, Result};
use crate::value::{AtomMap, AtomSet, Value};

/// Atomic type of a column's keys or values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtomicType {
    /// `integer`
    Integer,
    /// `real`
    Real,
    /// `boolean`
    Boolean,
    /// `string`
    String,
    /// `uuid`
    Uuid,
}

impl AtomicType {
    fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "integer" => AtomicType::Integer,
            "real" => AtomicType::Real,
            "boolean" => AtomicType::Boolean,
            "string" => AtomicType::String,
            "uuid" => AtomicType::Uuid,
            other => return Err(Error::protocol(format!("unknown atomic type {other:?}"))),
        })
    }
}

/// Base type: an atomic type plus, for uuids, the referenced table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseType {
    /// The atomic type.
    pub atomic: AtomicType,
    /// Table referenced by a uuid column.
    pub ref_table: Option<String>,
}

impl BaseType {
    fn parse(j: &Json) -> Result<Self> {
        match j {
            Json::String(s) => Ok(BaseType {
                atomic: AtomicType::parse(s)?,
                ref_table: None,
            }),
            Json::Object(o) => Ok(BaseType {
                atomic: AtomicType::parse(
                    o.get("type")
                        .and_then(Json::as_str)
                        .ok_or_else(|| Error::protocol("base type without \"type\""))?,
                )?,
                ref_table: o.get("refTable").and_then(Json::as_str).map(str::to_owned),
            }),
            _ => Err(Error::protocol(format!("bad base type {j}"))),
        }
    }
}

/// Type of a column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnType {
    /// Key (or element) type.
    pub key: BaseType,
    /// Value type, for maps.
    pub value: Option<BaseType>,
    /// Minimum number of elements.
    pub min: u64,
    /// Maximum number of elements; `None` = unlimited.
    pub max: Option<u64>,
}

impl ColumnType {
    fn parse(j: &Json) -> Result<Self> {
        match j {
            Json::String(_) => Ok(ColumnType {
                key: BaseType::parse(j)?,
                value: None,
                min: 1,
                max: Some(1),
            }),
            Json::Object(o) => {
                let key = BaseType::parse(
                    o.get("key")
                        .ok_or_else(|| Error::protocol("column type without \"key\""))?,
                )?;
                let value = o.get("value").map(BaseType::parse).transpose()?;
                let min = match o.get("min") {
                    None => 1,
                    Some(m) => m
                        .as_u64()
                        .ok_or_else(|| Error::protocol(format!("bad min {m}")))?,
                };
                let max = match o.get("max") {
                    None => Some(1),
                    Some(Json::String(s)) if s == "unlimited" => None,
                    Some(m) => Some(
                        m.as_u64()
                            .ok_or_else(|| Error::protocol(format!("bad max {m}")))?,
                    ),
                };
                Ok(ColumnType {
                    key,
                    value,
                    min,
                    max,
                })
            }
            _ => Err(Error::protocol(format!("bad column type {j}"))),
        }
    }

    /// Exactly one atom (not a set, not a map): diffs of such columns carry the new value.
    pub fn is_scalar(&self) -> bool {
        self.min == 1 && self.max == Some(1) && self.value.is_none()
    }

    /// A map column.
    pub fn is_map(&self) -> bool {
        self.value.is_some()
    }

    /// Normalizes a decoded value to the column's shape: scalars as atoms, sets as sets.
    pub fn normalize(&self, v: Value) -> Value {
        match v {
            Value::Atom(a) if !self.is_scalar() && !self.is_map() => {
                Value::Set(std::iter::once(a).collect())
            }
            Value::Set(s) if self.is_scalar() && s.len() == 1 => s
                .into_iter()
                .next()
                .map_or_else(Value::empty_set, Value::Atom),
            Value::Set(s) if self.is_map() && s.is_empty() => Value::empty_map(),
            other => other,
        }
    }

    /// Applies an `update2`/`update3` "modify" diff for this column to `old` (RFC 7047 draft
    /// semantics used by ovsdb-server): scalars and optional scalars (sets of at most one
    /// element, e.g. `Logical_Switch_Port.up`) take the new value — ovsdb-server sends
    /// `true` or `["set",[]]` for those, not the elements to toggle — sets toggle the listed
    /// elements, maps remove identical pairs and add or replace the others. `old` is updated
    /// in place (no copy of large sets).
    pub fn apply_diff(&self, old: Option<Value>, diff: Value) -> Value {
        if self.is_scalar() {
            return diff;
        }
        if self.max == Some(1) && !self.is_map() {
            return self.normalize(diff);
        }
        if self.is_map() {
            let mut m = match old {
                Some(Value::Map(m)) => m,
                _ => AtomMap::new(),
            };
            if let Value::Map(d) = diff {
                for (k, v) in d {
                    match m.get(&k) {
                        Some(cur) if *cur == v => {
                            m.remove(&k);
                        }
                        _ => {
                            m.insert(k, v);
                        }
                    }
                }
            }
            return Value::Map(m);
        }
        let mut s = match old {
            Some(Value::Set(s)) => s,
            Some(Value::Atom(a)) => AtomSet::unit(a),
            _ => AtomSet::new(),
        };
        let toggle = match diff {
            Value::Set(d) => d,
            Value::Atom(a) => AtomSet::unit(a),
            Value::Map(_) => AtomSet::new(),
        };
        for a in toggle {
            if s.remove(&a).is_none() {
                s.insert(a);
            }
        }
        Value::Set(s)
    }
}

/// A column of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnSchema {
    /// Column type.
    pub kind: ColumnType,
    /// Whether the column is ephemeral (not persisted).
    pub ephemeral: bool,
}

/// A table of a database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSchema {
    /// Columns by name (without the implicit `_uuid` and `_version`).
    pub columns: BTreeMap<String, ColumnSchema>,
    /// Root table (rows not garbage-collected when unreferenced).
    pub is_root: bool,
}

/// A database schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schema {
    /// Database name (`OVN_Northbound`...).
    pub name: String,
    /// Schema version string.
    pub version: String,
    /// Tables by name.
    pub tables: BTreeMap<String, TableSchema>,
}

impl Schema {
    /// Parses a `get_schema` result.
    pub fn from_json(j: &Json) -> Result<Schema> {
        let o = j
            .as_object()
            .ok_or_else(|| Error::protocol("schema is not an object"))?;
        let name = o
            .get("name")
            .and_then(Json::as_str)
            .ok_or_else(|| Error::protocol("schema without name"))?
            .to_owned();
        let version = o
            .get("version")
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_owned();
        let tables = o
            .get("tables")
            .and_then(Json::as_object)
            .ok_or_else(|| Error::protocol("schema without tables"))?
            .iter()
            .map(|(tname, t)| {
                let columns = t
                    .get("columns")
                    .and_then(Json::as_object)
                    .ok_or_else(|| Error::protocol(format!("table {tname} without columns")))?
                    .iter()
                    .map(|(cname, c)| {
                        let kind = ColumnType::parse(c.get("type").ok_or_else(|| {
                            Error::protocol(format!("column {tname}.{cname} without type"))
                        })?)?;
                        let ephemeral = c.get("ephemeral").and_then(Json::as_bool) == Some(true);
                        Ok((cname.clone(), ColumnSchema { kind, ephemeral }))
                    })
                    .collect::<Result<_>>()?;
                let is_root = t.get("isRoot").and_then(Json::as_bool) == Some(true);
                Ok((tname.clone(), TableSchema { columns, is_root }))
            })
            .collect::<Result<_>>()?;
        Ok(Schema {
            name,
            version,
            tables,
        })
    }

    /// The table, or [`Error::UnknownTable`].
    pub fn table(&self, table: &str) -> Result<&TableSchema> {
        self.tables.get(table).ok_or_else(|| Error::UnknownTable {
            db: self.name.clone(),
            table: table.to_owned(),
        })
    }

    /// The column, or [`Error::UnknownTable`] / [`Error::UnknownColumn`]. `_uuid` and `_version`
    /// are implicit and have no [`ColumnSchema`]: they yield `Ok(None)`.
    pub fn column(&self, table: &str, column: &str) -> Result<Option<&ColumnSchema>> {
        let t = self.table(table)?;
        if column == "_uuid" || column == "_version" {
            return Ok(None);
        }
        t.columns
            .get(column)
            .map(Some)
            .ok_or_else(|| Error::UnknownColumn {
                db: self.name.clone(),
                table: table.to_owned(),
                column: column.to_owned(),
            })
    }

    /// Checks that every `(table, columns)` requirement exists; the first missing one is the error.
    pub fn require(&self, needs: &[(&str, &[&str])]) -> Result<()> {
        for (table, columns) in needs {
            self.table(table)?;
            for c in *columns {
                self.column(table, c)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use uuid::Uuid;

    fn schema() -> Schema {
        Schema::from_json(&json!({
            "name": "DB", "version": "1.0.0",
            "tables": {"T": {"columns": {
                "name": {"type": "string"},
                "tags": {"type": {"key": "string", "min": 0, "max": "unlimited"}},
                "opt": {"type": {"key": {"type": "uuid", "refTable": "T"}, "min": 0, "max": 1}},
                "ids": {"type": {"key": "string", "value": "string", "min": 0, "max": "unlimited"}}
            }, "isRoot": true}}
        }))
        .unwrap()
    }

    #[test]
    fn require_names_the_missing_column() {
        let s = schema();
        s.require(&[("T", &["name", "tags", "_uuid"])]).unwrap();
        let e = s.require(&[("T", &["name", "nope"])]).unwrap_err();
        assert_eq!(e.to_string(), "database DB has no column T.nope");
        assert!(matches!(
            s.require(&[("U", &[])]),
            Err(Error::UnknownTable { .. })
        ));
    }

    #[test]
    fn diffs_apply_per_column_kind() {
        let s = schema();
        let t = &s.tables["T"].columns;
        let tags = &t["tags"].kind;
        let old = Value::set(["a", "b"]);
        assert_eq!(
            tags.apply_diff(Some(old), Value::set(["b", "c"])),
            Value::set(["a", "c"])
        );
        let ids = &t["ids"].kind;
        let old = Value::map([("k1", "v1"), ("k2", "v2")]);
        assert_eq!(
            ids.apply_diff(
                Some(old),
                Value::map([("k1", "v1"), ("k2", "x"), ("k3", "y")])
            ),
            Value::map([("k2", "x"), ("k3", "y")])
        );
        assert_eq!(
            t["name"].kind.apply_diff(None, "n".into()),
            Value::from("n")
        );
        // Optional scalars carry the new value (as ovsdb-server sends `"up": true`).
        let opt = &t["opt"].kind;
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        assert_eq!(
            opt.apply_diff(Some(Value::set([a])), Value::from(b)),
            Value::set([b])
        );
        assert_eq!(
            opt.apply_diff(Some(Value::set([a])), Value::empty_set()),
            Value::empty_set()
        );
    }

    #[test]
    fn malformed_schema_is_an_error() {
        assert!(Schema::from_json(&json!({"name": "x"})).is_err());
        assert!(
            Schema::from_json(
                &json!({"name": "x", "tables": {"T": {"columns": {"c": {"type": "blob"}}}}})
            )
            .is_err()
        );
    }
}
