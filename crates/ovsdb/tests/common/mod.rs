//! Helpers shared by the integration tests.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use ovsdb::{Atom, Replica, Row, RowEvent, Uuid, Value};
use serde_json::{Value as Json, json};

/// Upper bound for anything that should happen "soon": a hang guard, not a speed assertion.
pub const HANG_GUARD: Duration = Duration::from_secs(60);

/// Runs a blocking testenv call off the async runtime threads.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

/// Waits (with [`HANG_GUARD`]) until `cond` holds on the replica.
pub async fn wait_for(replica: &Replica, what: &str, mut cond: impl FnMut(&Replica) -> bool) {
    let held = testenv::poll::wait_until_async(HANG_GUARD, what, || {
        let holds = cond(replica);
        async move { holds }
    })
    .await;
    if let Err(e) = held {
        panic!("{e:#}");
    }
}

/// OVS's JSON for a cell: one-element sets as a bare atom.
fn cell(v: &Value) -> Json {
    match v {
        Value::Set(s) if s.len() == 1 => s.iter().next().map(Atom::to_json).unwrap_or_default(),
        Value::Set(s) if s.is_empty() => json!(["set", []]),
        other => other.to_json(),
    }
}

/// The same text form as `OvnEnv::dump_nb` for rows given per table.
pub fn canonical(tables: &BTreeMap<String, Vec<Arc<Row>>>) -> String {
    let mut out = String::new();
    for (name, rows) in tables {
        out.push_str(name);
        out.push('\n');
        let mut lines: Vec<String> = rows
            .iter()
            .map(|r| {
                let obj: serde_json::Map<String, Json> =
                    r.iter().map(|(k, v)| (k.clone(), cell(v))).collect();
                Json::Object(obj).to_string()
            })
            .collect();
        lines.sort();
        for l in lines {
            out.push_str("  ");
            out.push_str(&l);
            out.push('\n');
        }
    }
    out
}

/// The replica's contents in [`canonical`] form (every monitored table).
pub fn replica_dump(replica: &Replica) -> String {
    let tables = replica
        .spec()
        .tables
        .iter()
        .map(|(t, _)| (t.clone(), replica.table(t)))
        .collect();
    canonical(&tables)
}

/// A consumer that rebuilds the database from events alone, checking that each event is
/// consistent with what it has seen (no duplicate insert, no stale modify/delete).
#[derive(Default)]
pub struct EventModel {
    pub rows: HashMap<String, HashMap<Uuid, Arc<Row>>>,
    pub events: usize,
}

impl EventModel {
    pub fn apply(&mut self, ev: RowEvent) {
        self.events += 1;
        let table = self.rows.entry(ev.table().to_owned()).or_default();
        let uuid = ev.uuid();
        match ev {
            RowEvent::Insert { new, .. } => {
                assert!(table.insert(uuid, new).is_none(), "duplicate insert {uuid}");
            }
            RowEvent::Modify { old, new, .. } => {
                let cur = table.insert(uuid, new.clone());
                assert_eq!(cur.as_ref(), Some(&old), "modify of {uuid} with stale old");
                assert_ne!(old, new, "modify without change");
            }
            RowEvent::Delete { old, .. } => {
                assert_eq!(
                    table.remove(&uuid).as_ref(),
                    Some(&old),
                    "bad delete {uuid}"
                );
            }
        }
    }

    /// The model in [`canonical`] form over the given tables.
    pub fn dump(&self, tables: &[String]) -> String {
        let t = tables
            .iter()
            .map(|t| {
                (
                    t.clone(),
                    self.rows
                        .get(t)
                        .map(|r| r.values().cloned().collect())
                        .unwrap_or_default(),
                )
            })
            .collect();
        canonical(&t)
    }
}
