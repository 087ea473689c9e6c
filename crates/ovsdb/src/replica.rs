//! In-memory replica of monitored tables, keyed by `_uuid`, with the secondary indexes its
//! user declares and a stream of change events.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::monitor::{Index, MonitorSpec, RowUpdate, TableUpdates};
use crate::schema::{AtomicType, ColumnType, Schema};
use crate::value::{Atom, Row, Value};

/// A change to one row, with full rows (including `_uuid`).
#[derive(Debug, Clone, PartialEq)]
pub enum RowEvent {
    /// A row appeared.
    Insert {
        /// Table.
        table: String,
        /// The new row.
        new: Arc<Row>,
    },
    /// A row changed.
    Modify {
        /// Table.
        table: String,
        /// Row before.
        old: Arc<Row>,
        /// Row after.
        new: Arc<Row>,
    },
    /// A row disappeared.
    Delete {
        /// Table.
        table: String,
        /// The last known row.
        old: Arc<Row>,
    },
}

impl RowEvent {
    /// Table of the row.
    pub fn table(&self) -> &str {
        match self {
            RowEvent::Insert { table, .. }
            | RowEvent::Modify { table, .. }
            | RowEvent::Delete { table, .. } => table,
        }
    }

    /// `_uuid` of the row.
    pub fn uuid(&self) -> Uuid {
        match self {
            RowEvent::Insert { new: r, .. }
            | RowEvent::Modify { new: r, .. }
            | RowEvent::Delete { old: r, .. } => r.uuid().unwrap_or_default(),
        }
    }
}

/// How often the replica was (re)synchronized, for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// Complete snapshots received (first sync, or resume impossible), diffed into events.
    pub full: u64,
    /// `monitor_cond_since` resumes where the server still had our last transaction id.
    pub resumed: u64,
}

type Ids = BTreeSet<Uuid>;

#[derive(Debug, Default)]
struct TableData {
    rows: HashMap<Uuid, Arc<Row>>,
    /// The declared indexes of the table: rows by indexed value.
    indexes: Vec<(Index, HashMap<String, Ids>)>,
}

impl TableData {
    fn with_indexes(indexes: impl IntoIterator<Item = Index>) -> Self {
        TableData {
            rows: HashMap::new(),
            indexes: indexes.into_iter().map(|i| (i, HashMap::new())).collect(),
        }
    }

    fn index(&mut self, uuid: Uuid, row: &Row, add: bool) {
        for (index, map) in &mut self.indexes {
            let Some(value) = index.value_of(row) else {
                continue;
            };
            if add {
                map.entry(value.to_owned()).or_default().insert(uuid);
            } else if let Some(ids) = map.get_mut(value) {
                ids.remove(&uuid);
                if ids.is_empty() {
                    map.remove(value);
                }
            }
        }
    }

    /// Rows whose `index` value is `value`: from the index when declared, by
    /// a scan otherwise.
    fn find(&self, index: &Index, value: &str) -> Vec<Arc<Row>> {
        match self.indexes.iter().find(|(i, _)| i == index) {
            Some((_, map)) => self.rows_of(map.get(value)),
            None => self
                .rows
                .values()
                .filter(|row| index.value_of(row) == Some(value))
                .cloned()
                .collect(),
        }
    }

    fn put(&mut self, uuid: Uuid, row: Arc<Row>) -> Option<Arc<Row>> {
        let old = self.rows.insert(uuid, row.clone());
        if let Some(o) = &old {
            self.index(uuid, o, false);
        }
        self.index(uuid, &row, true);
        old
    }

    fn remove(&mut self, uuid: Uuid) -> Option<Arc<Row>> {
        let old = self.rows.remove(&uuid)?;
        self.index(uuid, &old, false);
        Some(old)
    }

    fn rows_of(&self, ids: Option<&Ids>) -> Vec<Arc<Row>> {
        ids.into_iter()
            .flatten()
            .filter_map(|u| self.rows.get(u).cloned())
            .collect()
    }
}

#[derive(Debug, Default)]
struct State {
    tables: HashMap<String, TableData>,
    last_txn_id: Option<String>,
    stats: SyncStats,
}

struct Shared {
    db: String,
    schema: Arc<Schema>,
    spec: MonitorSpec,
    /// Monitored columns per table, with their types (for defaults and diffs).
    columns: HashMap<String, Vec<(String, ColumnType)>>,
    state: RwLock<State>,
    subscribers: Mutex<Vec<mpsc::UnboundedSender<RowEvent>>>,
    synced: watch::Sender<bool>,
}

/// A replica of the tables of one monitor. Cheap to clone; all clones see the same data.
#[derive(Clone)]
pub struct Replica(Arc<Shared>);

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("db", &self.0.db)
            .field("spec", &self.0.spec)
            .finish()
    }
}

fn default_value(t: &ColumnType) -> Value {
    if !t.is_scalar() {
        return if t.is_map() {
            Value::empty_map()
        } else {
            Value::empty_set()
        };
    }
    Value::Atom(match t.key.atomic {
        AtomicType::Integer => Atom::Integer(0),
        AtomicType::Real => Atom::Real(0.0),
        AtomicType::Boolean => Atom::Boolean(false),
        AtomicType::String => Atom::String(String::new()),
        AtomicType::Uuid => Atom::Uuid(Uuid::nil()),
    })
}

/// The events turning `old` into `new` for one row (`None` if identical).
fn diff_event(table: &str, old: Option<Arc<Row>>, new: Option<Arc<Row>>) -> Option<RowEvent> {
    let table = table.to_owned();
    match (old, new) {
        (None, Some(new)) => Some(RowEvent::Insert { table, new }),
        (Some(old), None) => Some(RowEvent::Delete { table, old }),
        (Some(old), Some(new)) if old != new => Some(RowEvent::Modify { table, old, new }),
        _ => None,
    }
}

impl Replica {
    /// An empty replica for `spec` (checked against `schema`).
    pub fn new(db: &str, schema: Arc<Schema>, spec: MonitorSpec) -> Result<Replica> {
        spec.check(&schema)?;
        let mut columns = HashMap::new();
        let mut tables = HashMap::new();
        for (t, _) in &spec.tables {
            let cols = spec
                .columns_of(&schema, t)
                .into_iter()
                .filter_map(|c| {
                    let ty = schema.column(t, &c).ok().flatten()?.kind.clone();
                    Some((c, ty))
                })
                .collect();
            columns.insert(t.clone(), cols);
            let indexes = spec
                .indexes
                .iter()
                .filter(|(table, _)| table == t)
                .map(|(_, index)| index.clone());
            tables.insert(t.clone(), TableData::with_indexes(indexes));
        }
        Ok(Replica(Arc::new(Shared {
            db: db.to_owned(),
            schema,
            spec,
            columns,
            state: RwLock::new(State {
                tables,
                last_txn_id: None,
                stats: SyncStats::default(),
            }),
            subscribers: Mutex::new(Vec::new()),
            synced: watch::channel(false).0,
        })))
    }

    /// True if both handles are the same replica.
    pub fn same(&self, other: &Replica) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// Database name.
    pub fn db(&self) -> &str {
        &self.0.db
    }

    /// The monitored tables and columns.
    pub fn spec(&self) -> &MonitorSpec {
        &self.0.spec
    }

    /// The schema the replica was built with.
    pub fn schema(&self) -> &Arc<Schema> {
        &self.0.schema
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.0.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn with_table<T: Default>(&self, table: &str, f: impl FnOnce(&TableData) -> T) -> T {
        self.read().tables.get(table).map(f).unwrap_or_default()
    }

    /// All rows of a table (empty if the table is not monitored).
    pub fn table(&self, table: &str) -> Vec<Arc<Row>> {
        self.with_table(table, |t| t.rows.values().cloned().collect())
    }

    /// Number of rows in a table.
    pub fn count(&self, table: &str) -> usize {
        self.with_table(table, |t| t.rows.len())
    }

    /// A row by uuid, in any monitored table.
    pub fn get(&self, uuid: Uuid) -> Option<Arc<Row>> {
        self.read()
            .tables
            .values()
            .find_map(|t| t.rows.get(&uuid).cloned())
    }

    /// A row by uuid in a given table.
    pub fn get_in(&self, table: &str, uuid: Uuid) -> Option<Arc<Row>> {
        self.with_table(table, |t| t.rows.get(&uuid).cloned())
    }

    /// Rows of `table` whose `index` value is `value`. Indexes declared in
    /// the [`MonitorSpec`] answer in time proportional to the result; any
    /// other index answers by scanning the table.
    pub fn find(&self, table: &str, index: &Index, value: &str) -> Vec<Arc<Row>> {
        self.with_table(table, |t| t.find(index, value))
    }

    /// Rows of `table` whose `name` column equals `name` (see [`Replica::find`]).
    pub fn by_name(&self, table: &str, name: &str) -> Vec<Arc<Row>> {
        self.find(table, &Index::column("name"), name)
    }

    /// The last transaction id seen (monitor_cond_since servers only).
    pub fn last_txn_id(&self) -> Option<String> {
        self.read().last_txn_id.clone()
    }

    /// Counts of full and resumed synchronizations so far.
    pub fn sync_stats(&self) -> SyncStats {
        self.read().stats
    }

    /// A stream of every change applied from now on. Events are never dropped; a subscriber that
    /// does not read accumulates them.
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<RowEvent> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.0
            .subscribers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(tx);
        rx
    }

    /// The current rows of every monitored table and a stream of the changes after exactly
    /// that state (nothing missed, nothing counted twice): the list-then-watch start of a
    /// controller.
    pub fn snapshot_and_subscribe(
        &self,
    ) -> (
        BTreeMap<String, Vec<Arc<Row>>>,
        mpsc::UnboundedReceiver<RowEvent>,
    ) {
        // Events are queued under the state write lock, so holding the read lock while
        // subscribing and copying makes the pair consistent.
        let st = self.read();
        let rx = self.subscribe();
        let snapshot = st
            .tables
            .iter()
            .map(|(t, td)| (t.clone(), td.rows.values().cloned().collect()))
            .collect();
        drop(st);
        (snapshot, rx)
    }

    /// True when the replica reflects the server (initial contents received, connection up).
    pub fn is_synced(&self) -> bool {
        *self.0.synced.borrow()
    }

    /// Waits until the replica is synced with the server.
    pub async fn wait_synced(&self) -> Result<()> {
        let mut rx = self.0.synced.subscribe();
        rx.wait_for(|s| *s)
            .await
            .map(|_| ())
            .map_err(|_| Error::Closed)
    }

    pub(crate) fn set_synced(&self, synced: bool) {
        self.0.synced.send_replace(synced);
    }

    /// Builds the full row from a (possibly sparse) inserted row: missing monitored columns get
    /// their default, values are normalized to the column's shape.
    fn full_row(&self, table: &str, uuid: Uuid, mut row: Row) -> Row {
        let mut out = Row::new();
        for (c, ty) in self.0.columns.get(table).into_iter().flatten() {
            let v = row
                .remove(c)
                .map_or_else(|| default_value(ty), |v| ty.normalize(v));
            out.set(c.clone(), v);
        }
        out.set("_uuid", uuid);
        out
    }

    fn emit(&self, events: Vec<RowEvent>) {
        if events.is_empty() {
            return;
        }
        let mut subs = self.0.subscribers.lock().unwrap_or_else(|p| p.into_inner());
        subs.retain(|s| events.iter().all(|e| s.send(e.clone()).is_ok()));
    }

    /// Applies the changes a resumed `monitor_cond_since` returned.
    pub(crate) fn resume(&self, updates: TableUpdates, last_txn_id: Option<String>) -> Result<()> {
        self.apply(updates, last_txn_id)?;
        self.0
            .state
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .stats
            .resumed += 1;
        Ok(())
    }

    /// Applies incremental changes (notifications).
    ///
    /// Events are queued to subscribers before the write lock is released, so a consumer that
    /// sees a state in the replica already has every event leading to it. On malformed input
    /// the changes before the bad row stay applied (with their events) and the error is
    /// returned: the caller drops the connection and the next sync repairs the rest.
    pub(crate) fn apply(&self, updates: TableUpdates, last_txn_id: Option<String>) -> Result<()> {
        let mut events = Vec::new();
        let mut st = self.0.state.write().unwrap_or_else(|p| p.into_inner());
        let mut result = Ok(());
        for (table, uuid, change) in updates {
            match self.apply_row(&mut st, &table, uuid, change) {
                Ok(ev) => events.extend(ev),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        if result.is_ok() && last_txn_id.is_some() {
            st.last_txn_id = last_txn_id;
        }
        self.emit(events);
        drop(st);
        result
    }

    /// Applies one row change; returns the event it causes, if any.
    fn apply_row(
        &self,
        st: &mut State,
        table: &str,
        uuid: Uuid,
        change: RowUpdate,
    ) -> Result<Option<RowEvent>> {
        let Some(td) = st.tables.get_mut(table) else {
            return Err(Error::protocol(format!(
                "update for unmonitored table {table}"
            )));
        };
        let cols = self.0.columns.get(table);
        let column_type = |c: &str| {
            cols.into_iter()
                .flatten()
                .find(|(n, _)| n == c)
                .map(|(_, ty)| ty)
        };
        let old = td.rows.get(&uuid).cloned();
        let new = match change {
            RowUpdate::Insert(row) => Some(self.full_row(table, uuid, row)),
            RowUpdate::Delete | RowUpdate::OldNew { new: None, .. } => None,
            RowUpdate::Modify(diff) => {
                let Some(old) = &old else {
                    return Err(Error::protocol(format!(
                        "modify of unknown row {table} {uuid}"
                    )));
                };
                let mut row = (**old).clone();
                for (c, d) in diff {
                    if let Some(ty) = column_type(&c) {
                        let v = ty.apply_diff(row.remove(&c), d);
                        row.set(c, ty.normalize(v));
                    }
                }
                Some(row)
            }
            RowUpdate::OldNew { new: Some(new), .. } => {
                let mut row = old
                    .as_deref()
                    .cloned()
                    .unwrap_or_else(|| self.full_row(table, uuid, Row::new()));
                for (c, v) in new {
                    if let Some(ty) = column_type(&c) {
                        row.set(c, ty.normalize(v));
                    }
                }
                Some(row)
            }
        };
        let new = new.map(Arc::new);
        match &new {
            Some(n) => {
                td.put(uuid, n.clone());
            }
            None => {
                td.remove(uuid);
            }
        }
        Ok(diff_event(table, old, new))
    }

    /// Replaces the whole contents with `updates` (a complete snapshot) and emits exactly the
    /// differences from the previous contents.
    pub(crate) fn resync(&self, updates: TableUpdates, last_txn_id: Option<String>) -> Result<()> {
        let mut fresh: HashMap<String, HashMap<Uuid, Arc<Row>>> = HashMap::new();
        for (table, uuid, change) in updates {
            if !self.0.columns.contains_key(&table) {
                return Err(Error::protocol(format!(
                    "update for unmonitored table {table}"
                )));
            }
            let row = match change {
                RowUpdate::Insert(row) | RowUpdate::OldNew { new: Some(row), .. } => row,
                other => {
                    return Err(Error::protocol(format!(
                        "initial contents of {table} {uuid} is not a row: {other:?}"
                    )));
                }
            };
            fresh
                .entry(table.clone())
                .or_default()
                .insert(uuid, Arc::new(self.full_row(&table, uuid, row)));
        }
        let mut events = Vec::new();
        {
            let mut st = self.0.state.write().unwrap_or_else(|p| p.into_inner());
            for (table, td) in st.tables.iter_mut() {
                let mut new_rows = fresh.remove(table).unwrap_or_default();
                let gone: Vec<Uuid> = td
                    .rows
                    .keys()
                    .filter(|u| !new_rows.contains_key(u))
                    .copied()
                    .collect();
                for u in gone {
                    events.extend(diff_event(table, td.remove(u), None));
                }
                for (u, row) in new_rows.drain() {
                    match td.rows.get(&u) {
                        Some(old) if *old == row => {}
                        _ => {
                            let old = td.put(u, row.clone());
                            events.extend(diff_event(table, old, Some(row)));
                        }
                    }
                }
            }
            st.last_txn_id = last_txn_id;
            st.stats.full += 1;
            self.emit(events);
        }
        Ok(())
    }
}
