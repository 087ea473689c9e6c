//! Monitor requests (`monitor_cond_since`, `monitor_cond`, `monitor`) and decoding of the
//! three update formats (`update`, `update2`, `update3`) into one form.

use serde_json::{Map, Value as Json, json};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::schema::Schema;
use crate::value::Row;

/// Tables (and optionally columns) to replicate from one database.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MonitorSpec {
    /// `(table, columns)`; `None` = every column of the table.
    pub tables: Vec<(String, Option<Vec<String>>)>,
    /// Secondary indexes the replica keeps, `(table, index)`: declared by the
    /// user of the replica for the lookups it makes ([`crate::Replica::find`]).
    pub indexes: Vec<(String, Index)>,
    /// `(table, conditions)`: only the rows matching every condition are
    /// replicated (`where` of `monitor_cond`/`monitor_cond_since`; a server
    /// offering only RFC 7047 `monitor` sends every row, so users still
    /// filter what they read).
    pub conditions: Vec<(String, Vec<crate::Condition>)>,
}

/// A secondary index of a replica table: rows by the string value of a
/// column, or by the value of one key of a string map column.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Index {
    /// Rows by the value of a string column (e.g. `name`).
    Column(String),
    /// Rows by the value of `key` in map column `column` (e.g.
    /// `external_ids:owner`).
    MapValue {
        /// The map column.
        column: String,
        /// The key whose value is indexed.
        key: String,
    },
}

impl Index {
    /// Rows by the value of string column `column`.
    pub fn column(column: &str) -> Self {
        Index::Column(column.to_owned())
    }

    /// Rows by the value of `key` in map column `column`.
    pub fn map_value(column: &str, key: &str) -> Self {
        Index::MapValue {
            column: column.to_owned(),
            key: key.to_owned(),
        }
    }

    /// The indexed value of `row`, if it has one.
    pub fn value_of<'r>(&self, row: &'r crate::Row) -> Option<&'r str> {
        match self {
            Index::Column(column) => row.get_str(column),
            Index::MapValue { column, key } => row.get_map_str(column, key),
        }
    }

    /// The column the index reads.
    pub fn column_name(&self) -> &str {
        match self {
            Index::Column(column) | Index::MapValue { column, .. } => column,
        }
    }
}

impl MonitorSpec {
    /// An empty spec.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every table of the schema with all its columns.
    pub fn all_tables(schema: &Schema) -> Self {
        MonitorSpec {
            tables: schema.tables.keys().map(|t| (t.clone(), None)).collect(),
            ..MonitorSpec::default()
        }
    }

    /// Adds a table with all its columns.
    pub fn table(mut self, table: impl Into<String>) -> Self {
        self.tables.push((table.into(), None));
        self
    }

    /// Adds a table with only the given columns.
    pub fn table_columns(mut self, table: impl Into<String>, columns: &[&str]) -> Self {
        self.tables.push((
            table.into(),
            Some(columns.iter().map(|c| (*c).to_owned()).collect()),
        ));
        self
    }

    /// Replicates only the rows of `table` matching every one of `conditions`
    /// (see [`MonitorSpec::conditions`]).
    pub fn only_where(
        mut self,
        table: impl Into<String>,
        conditions: Vec<crate::Condition>,
    ) -> Self {
        self.conditions.push((table.into(), conditions));
        self
    }

    /// Keeps a secondary index of `table` in the replica.
    pub fn index(mut self, table: impl Into<String>, index: Index) -> Self {
        self.indexes.push((table.into(), index));
        self
    }

    /// Checks every table and column against the schema.
    pub fn check(&self, schema: &Schema) -> Result<()> {
        for (t, cols) in &self.tables {
            schema.table(t)?;
            for c in cols.iter().flatten() {
                schema.column(t, c)?;
            }
        }
        for (t, index) in &self.indexes {
            let column = index.column_name();
            schema.column(t, column)?;
            if !self.columns_of(schema, t).iter().any(|c| c == column) {
                return Err(crate::Error::protocol(format!(
                    "index on {t}.{column}: the column is not monitored"
                )));
            }
        }
        Ok(())
    }

    /// The monitored columns of `table` (resolved against the schema when all are monitored).
    pub fn columns_of(&self, schema: &Schema, table: &str) -> Vec<String> {
        match self.tables.iter().find(|(t, _)| t == table) {
            Some((_, Some(cols))) => cols.clone(),
            _ => schema
                .tables
                .get(table)
                .map(|t| t.columns.keys().cloned().collect())
                .unwrap_or_default(),
        }
    }

    /// The `monitor-requests` object.
    pub(crate) fn requests(&self, method: MonitorMethod) -> Json {
        let mut m = Map::new();
        for (t, cols) in &self.tables {
            let mut req = match cols {
                Some(c) => json!({"columns": c}),
                None => json!({}),
            };
            let conditions = self
                .conditions
                .iter()
                .filter(|(table, _)| table == t)
                .flat_map(|(_, c)| c.iter().map(crate::Condition::to_json));
            let conditions: Vec<Json> = conditions.collect();
            if method != MonitorMethod::Plain && !conditions.is_empty() {
                req["where"] = Json::Array(conditions);
            }
            m.insert(t.clone(), json!([req]));
        }
        Json::Object(m)
    }
}

/// Which monitor method a request uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MonitorMethod {
    /// `monitor_cond_since` (OVSDB 2.12+, resumable with a transaction id).
    CondSince,
    /// `monitor_cond` (update2 format).
    Cond,
    /// RFC 7047 `monitor` (old/new format).
    Plain,
}

impl MonitorMethod {
    /// The JSON-RPC method name.
    pub fn name(self) -> &'static str {
        match self {
            MonitorMethod::CondSince => "monitor_cond_since",
            MonitorMethod::Cond => "monitor_cond",
            MonitorMethod::Plain => "monitor",
        }
    }

    /// The method to try when the server does not know this one.
    pub fn fallback(self) -> Option<MonitorMethod> {
        match self {
            MonitorMethod::CondSince => Some(MonitorMethod::Cond),
            MonitorMethod::Cond => Some(MonitorMethod::Plain),
            MonitorMethod::Plain => None,
        }
    }

    /// Request params.
    pub(crate) fn params(
        self,
        db: &str,
        monitor_id: &str,
        spec: &MonitorSpec,
        last_txn_id: Option<&str>,
    ) -> Json {
        let reqs = spec.requests(self);
        match self {
            MonitorMethod::CondSince => {
                let since = last_txn_id.unwrap_or("00000000-0000-0000-0000-000000000000");
                json!([db, monitor_id, reqs, since])
            }
            MonitorMethod::Cond | MonitorMethod::Plain => json!([db, monitor_id, reqs]),
        }
    }
}

/// One row change in any update format.
#[derive(Debug, Clone, PartialEq)]
pub enum RowUpdate {
    /// Row present when the monitor started (`initial`), or inserted (`insert`); full row,
    /// possibly without default-valued columns.
    Insert(Row),
    /// update2/update3 `modify`: per-column diffs.
    Modify(Row),
    /// Row deleted.
    Delete,
    /// RFC 7047 `update`: `new` holds all monitored columns; `old` the changed ones.
    OldNew {
        /// Previous values of the changed columns (absent for inserts).
        old: Option<Row>,
        /// New values (absent for deletes).
        new: Option<Row>,
    },
}

/// Decoded `table-updates`: `(table, row uuid, change)`.
pub type TableUpdates = Vec<(String, Uuid, RowUpdate)>;

fn parse_uuid(s: &str) -> Result<Uuid> {
    Uuid::parse_str(s).map_err(|e| Error::protocol(format!("row uuid {s:?}: {e}")))
}

fn each_row(j: &Json, mut f: impl FnMut(&str, Uuid, &Json) -> Result<()>) -> Result<()> {
    let tables = j
        .as_object()
        .ok_or_else(|| Error::protocol(format!("table-updates is not an object: {j}")))?;
    for (table, rows) in tables {
        let rows = rows
            .as_object()
            .ok_or_else(|| Error::protocol(format!("table-update of {table} is not an object")))?;
        for (uuid, ru) in rows {
            f(table, parse_uuid(uuid)?, ru)?;
        }
    }
    Ok(())
}

/// Decodes RFC 7047 `table-updates` (`monitor` reply and `update` notification).
pub fn parse_updates(j: &Json) -> Result<TableUpdates> {
    let mut out = Vec::new();
    each_row(j, |table, uuid, ru| {
        let get = |k: &str| ru.get(k).map(Row::from_json).transpose();
        let (old, new) = (get("old")?, get("new")?);
        if old.is_none() && new.is_none() {
            return Err(Error::protocol(format!(
                "row-update of {table} {uuid} is empty"
            )));
        }
        out.push((table.to_owned(), uuid, RowUpdate::OldNew { old, new }));
        Ok(())
    })?;
    Ok(out)
}

/// Decodes `table-updates2` (`monitor_cond`/`monitor_cond_since` replies, `update2`/`update3`).
pub fn parse_updates2(j: &Json) -> Result<TableUpdates> {
    let mut out = Vec::new();
    each_row(j, |table, uuid, ru| {
        let o = ru
            .as_object()
            .filter(|o| o.len() == 1)
            .ok_or_else(|| Error::protocol(format!("bad row-update2 for {table} {uuid}: {ru}")))?;
        let change = match o.iter().next() {
            Some((k, v)) if k == "initial" || k == "insert" => {
                RowUpdate::Insert(Row::from_json(v)?)
            }
            Some((k, v)) if k == "modify" => RowUpdate::Modify(Row::from_json(v)?),
            Some((k, _)) if k == "delete" => RowUpdate::Delete,
            _ => {
                return Err(Error::protocol(format!(
                    "bad row-update2 for {table} {uuid}: {ru}"
                )));
            }
        };
        out.push((table.to_owned(), uuid, change));
        Ok(())
    })?;
    Ok(out)
}

/// A decoded monitor reply.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorReply {
    /// `monitor_cond_since` found the requested transaction id: `updates` are only the changes
    /// since then. Otherwise `updates` are the complete current contents.
    pub found: bool,
    /// Last transaction id (monitor_cond_since only).
    pub last_txn_id: Option<String>,
    /// The rows.
    pub updates: TableUpdates,
}

impl MonitorReply {
    /// Decodes the reply of `method`.
    pub fn parse(method: MonitorMethod, j: &Json) -> Result<MonitorReply> {
        match method {
            MonitorMethod::CondSince => {
                let a = j
                    .as_array()
                    .filter(|a| a.len() == 3)
                    .ok_or_else(|| Error::protocol(format!("bad monitor_cond_since reply: {j}")))?;
                let found = a[0]
                    .as_bool()
                    .ok_or_else(|| Error::protocol("monitor_cond_since found is not a boolean"))?;
                let last = a[1]
                    .as_str()
                    .ok_or_else(|| Error::protocol("monitor_cond_since txn id is not a string"))?;
                Ok(MonitorReply {
                    found,
                    last_txn_id: Some(last.to_owned()),
                    updates: parse_updates2(&a[2])?,
                })
            }
            MonitorMethod::Cond => Ok(MonitorReply {
                found: false,
                last_txn_id: None,
                updates: parse_updates2(j)?,
            }),
            MonitorMethod::Plain => Ok(MonitorReply {
                found: false,
                last_txn_id: None,
                updates: parse_updates(j)?,
            }),
        }
    }
}

/// A decoded `update`/`update2`/`update3` notification.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorNotification {
    /// The monitor id given in the request.
    pub monitor_id: String,
    /// update3's transaction id.
    pub last_txn_id: Option<String>,
    /// The changes.
    pub updates: TableUpdates,
}

impl MonitorNotification {
    /// Decodes a notification; `Ok(None)` for methods that are not monitor updates.
    pub fn parse(method: &str, params: &Json) -> Result<Option<MonitorNotification>> {
        let a = match method {
            "update" | "update2" | "update3" => params
                .as_array()
                .ok_or_else(|| Error::protocol(format!("{method} params not an array")))?,
            _ => return Ok(None),
        };
        let id = |v: &Json| match v {
            Json::String(s) => s.clone(),
            other => other.to_string(),
        };
        let n = match (method, a.as_slice()) {
            ("update", [mid, u]) => MonitorNotification {
                monitor_id: id(mid),
                last_txn_id: None,
                updates: parse_updates(u)?,
            },
            ("update2", [mid, u]) => MonitorNotification {
                monitor_id: id(mid),
                last_txn_id: None,
                updates: parse_updates2(u)?,
            },
            ("update3", [mid, Json::String(txn), u]) => MonitorNotification {
                monitor_id: id(mid),
                last_txn_id: Some(txn.clone()),
                updates: parse_updates2(u)?,
            },
            _ => return Err(Error::protocol(format!("bad {method} params: {params}"))),
        };
        Ok(Some(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_update3() {
        let u = Uuid::new_v4();
        let n = MonitorNotification::parse(
            "update3",
            &json!(["m1", "txn-9", {"T": {u.to_string(): {"modify": {"name": "x"}}}}]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(n.monitor_id, "m1");
        assert_eq!(n.last_txn_id.as_deref(), Some("txn-9"));
        assert_eq!(n.updates[0].1, u);
        assert!(matches!(n.updates[0].2, RowUpdate::Modify(_)));
    }

    #[test]
    fn rejects_malformed_updates() {
        for (m, p) in [
            ("update2", json!(["m1"])),
            (
                "update2",
                json!(["m1", {"T": {"not-a-uuid": {"insert": {}}}}]),
            ),
            (
                "update2",
                json!(["m1", {"T": {"00000000-0000-0000-0000-000000000001": {"bogus": {}}}}]),
            ),
            (
                "update",
                json!(["m1", {"T": {"00000000-0000-0000-0000-000000000001": {}}}]),
            ),
            ("update3", json!(["m1", 5, {}])),
        ] {
            assert!(MonitorNotification::parse(m, &p).is_err(), "{m} {p}");
        }
        assert!(
            MonitorNotification::parse("locked", &json!(["x"]))
                .unwrap()
                .is_none()
        );
    }
}
