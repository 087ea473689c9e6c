//! The public client: a session that keeps one connection up across failures (backoff with
//! jitter, leader-only for clusters), re-runs monitors and locks after each reconnect, and
//! offers `transact`, `monitor`, `get_schema` and locks to any number of clones.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use serde_json::{Value as Json, json};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::monitor::{MonitorMethod, MonitorNotification, MonitorReply, MonitorSpec};
use crate::replica::{Replica, RowEvent};
use crate::rpc::{Connection, ConnectionOptions, NotificationHandler};
use crate::schema::Schema;
use crate::transact::{
    Operation, OperationResult, TxnBuilder, TxnResult, parse_transact_reply, transact_params,
};
use crate::transport::{Remote, TlsConnector, TlsFiles};

/// How to reach the database and how to behave on failures.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Servers, tried in order, round-robin (all members of a cluster, or one server).
    pub remotes: Vec<Remote>,
    /// PEM files for `ssl:` remotes.
    pub tls: Option<TlsFiles>,
    /// For clustered databases, only stay connected to the leader.
    pub leader_only: bool,
    /// Inactivity probe interval (`None` disables).
    pub probe_interval: Option<Duration>,
    /// Largest accepted incoming message.
    pub max_message_size: usize,
    /// First reconnect delay.
    pub backoff_initial: Duration,
    /// Largest reconnect delay.
    pub backoff_max: Duration,
    /// Limit for connecting to one remote and checking its leadership (re-establishing
    /// monitors afterwards is only bounded by the inactivity probe).
    pub connect_timeout: Duration,
    /// How long [`Client::connect`] and requests wait for a connection before failing.
    pub wait_for_connection: Duration,
}

impl ClientConfig {
    /// Defaults for the given remotes.
    pub fn new(remotes: Vec<Remote>) -> Self {
        ClientConfig {
            remotes,
            tls: None,
            leader_only: false,
            probe_interval: Some(Duration::from_secs(5)),
            max_message_size: 256 << 20,
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(4),
            connect_timeout: Duration::from_secs(10),
            wait_for_connection: Duration::from_secs(30),
        }
    }

    /// Defaults for a comma-separated remote list (`unix:/a.sock,tcp:10.0.0.1:6641`).
    pub fn from_remotes(remotes: &str) -> Result<Self> {
        Ok(Self::new(Remote::parse_list(remotes)?))
    }

    /// Sets the TLS files.
    pub fn with_tls(mut self, tls: TlsFiles) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Sets leader-only mode.
    pub fn with_leader_only(mut self, leader_only: bool) -> Self {
        self.leader_only = leader_only;
        self
    }
}

/// Ownership of a named lock, updated by `locked`/`stolen` notifications and reconnects.
#[derive(Debug, Clone)]
pub struct LockWatch {
    name: String,
    rx: watch::Receiver<bool>,
}

impl LockWatch {
    /// Lock name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this client owns the lock now.
    pub fn is_locked(&self) -> bool {
        *self.rx.borrow()
    }

    /// Waits until the lock is owned.
    pub async fn wait_locked(&mut self) -> Result<()> {
        self.rx
            .wait_for(|l| *l)
            .await
            .map(|_| ())
            .map_err(|_| Error::Closed)
    }

    /// Waits until the lock is not owned (stolen, released, or connection lost).
    pub async fn wait_lost(&mut self) -> Result<()> {
        self.rx
            .wait_for(|l| !*l)
            .await
            .map(|_| ())
            .map_err(|_| Error::Closed)
    }

    /// The underlying watch channel, for `select!` loops.
    pub fn receiver(&self) -> watch::Receiver<bool> {
        self.rx.clone()
    }
}

/// Registrations re-established on every new connection.
#[derive(Default)]
struct Registrations {
    monitors: Vec<(String, Replica)>,
    locks: Vec<String>,
}

struct Inner {
    config: ClientConfig,
    tls: Option<TlsConnector>,
    options: ConnectionOptions,
    current: watch::Sender<Option<Arc<Connection>>>,
    last_error: Mutex<Option<Error>>,
    registrations: tokio::sync::Mutex<Registrations>,
    routes: RwLock<HashMap<String, Replica>>,
    locks: Mutex<HashMap<String, watch::Sender<bool>>>,
    schemas: Mutex<HashMap<String, Arc<Schema>>>,
    next_monitor: AtomicU64,
}

struct TaskGuard(JoinHandle<()>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// An OVSDB client. Clone it freely: clones share the connection, replicas and locks, and
/// requests from all clones are pipelined on the one connection.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
    _task: Arc<TaskGuard>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("remotes", &self.inner.config.remotes)
            .finish()
    }
}

const SERVER_MONITOR_ID: &str = "_server";

fn lock_unpoisoned<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Client {
    /// Starts the session and waits for the first connection (up to
    /// [`ClientConfig::wait_for_connection`]); on failure returns the last connection error.
    pub async fn connect(config: ClientConfig) -> Result<Client> {
        if config.remotes.is_empty() {
            return Err(Error::InvalidRemote {
                remote: String::new(),
                reason: "no remote".into(),
            });
        }
        let tls = config
            .tls
            .as_ref()
            .map(TlsConnector::from_files)
            .transpose()?;
        let inner = Arc::new(Inner {
            options: ConnectionOptions {
                probe_interval: config.probe_interval,
                max_message_size: config.max_message_size,
            },
            config,
            tls,
            current: watch::channel(None).0,
            last_error: Mutex::new(None),
            registrations: Default::default(),
            routes: Default::default(),
            locks: Default::default(),
            schemas: Default::default(),
            next_monitor: AtomicU64::new(1),
        });
        let task = tokio::spawn(run_session(inner.clone()));
        let client = Client {
            inner,
            _task: Arc::new(TaskGuard(task)),
        };
        client.connection().await?;
        Ok(client)
    }

    /// The current connection, waiting for one if the session is reconnecting.
    async fn connection(&self) -> Result<Arc<Connection>> {
        if let Some(c) = self.inner.current.borrow().as_ref()
            && !c.is_closed()
        {
            return Ok(c.clone());
        }
        let mut rx = self.inner.current.subscribe();
        let wait = rx.wait_for(|c| c.as_ref().is_some_and(|c| !c.is_closed()));
        match tokio::time::timeout(self.inner.config.wait_for_connection, wait).await {
            Ok(Ok(c)) => c.clone().ok_or(Error::Disconnected),
            Ok(Err(_)) => Err(Error::Closed),
            Err(_) => Err(lock_unpoisoned(&self.inner.last_error)
                .clone()
                .unwrap_or_else(|| Error::Timeout("no connection to any remote".into()))),
        }
    }

    /// The remote currently connected, if any.
    pub fn current_remote(&self) -> Option<Remote> {
        self.inner
            .current
            .borrow()
            .as_ref()
            .map(|c| c.remote().clone())
    }

    /// Sends any JSON-RPC request and returns its `result`. A request that could not be sent
    /// because the connection had just closed is sent again on the next connection.
    pub async fn request(&self, method: &str, params: Json) -> Result<Json> {
        loop {
            match self.connection().await?.request(method, &params).await {
                Err(Error::NotConnected) => tokio::task::yield_now().await,
                other => return other,
            }
        }
    }

    /// Names of the databases the server holds.
    pub async fn list_dbs(&self) -> Result<Vec<String>> {
        let r = self.request("list_dbs", json!([])).await?;
        serde_json::from_value(r).map_err(|e| Error::protocol(format!("list_dbs reply: {e}")))
    }

    /// The schema of `db` (fetched once, then cached).
    pub async fn get_schema(&self, db: &str) -> Result<Arc<Schema>> {
        if let Some(s) = lock_unpoisoned(&self.inner.schemas).get(db) {
            return Ok(s.clone());
        }
        let s = Arc::new(Schema::from_json(
            &self.request("get_schema", json!([db])).await?,
        )?);
        lock_unpoisoned(&self.inner.schemas).insert(db.to_owned(), s.clone());
        Ok(s)
    }

    /// Runs operations as one transaction. Errors: [`Error::Txn`] naming the failing operation,
    /// [`Error::Disconnected`] if the connection dropped before the reply (outcome unknown).
    pub async fn transact(&self, db: &str, ops: Vec<Operation>) -> Result<Vec<OperationResult>> {
        let reply = self.request("transact", transact_params(db, &ops)).await?;
        parse_transact_reply(ops.len(), &reply)
    }

    /// Runs a transaction built with [`TxnBuilder`]; the result resolves its named-uuids.
    pub async fn commit(&self, tx: &TxnBuilder) -> Result<TxnResult> {
        let reply = self.request("transact", tx.params()).await?;
        tx.parse_reply(&reply)
    }

    /// Starts replicating `spec` from `db` and returns the replica once it holds the current
    /// contents. The monitor is re-established after every reconnect.
    pub async fn monitor(&self, db: &str, spec: MonitorSpec) -> Result<Replica> {
        let schema = self.get_schema(db).await?;
        let replica = Replica::new(db, schema, spec)?;
        let id = format!(
            "m{}",
            self.inner.next_monitor.fetch_add(1, Ordering::Relaxed)
        );
        {
            let mut regs = self.inner.registrations.lock().await;
            regs.monitors.push((id.clone(), replica.clone()));
            self.inner
                .routes
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id.clone(), replica.clone());
            let conn = self.inner.current.borrow().clone();
            if let Some(conn) = conn {
                match start_monitor(&conn, &id, &replica).await {
                    Ok(()) | Err(Error::Disconnected | Error::NotConnected) => {}
                    Err(e) => {
                        regs.monitors.retain(|(i, _)| *i != id);
                        self.inner
                            .routes
                            .write()
                            .unwrap_or_else(|p| p.into_inner())
                            .remove(&id);
                        return Err(e);
                    }
                }
            }
        }
        match tokio::time::timeout(self.inner.config.wait_for_connection, replica.wait_synced())
            .await
        {
            Ok(r) => r.map(|_| replica),
            Err(_) => Err(Error::Timeout(format!("initial contents of {db}"))),
        }
    }

    /// Stops a monitor started with [`Client::monitor`]: the replica keeps its last contents
    /// but gets no more changes, also after reconnects.
    pub async fn cancel_monitor(&self, replica: &Replica) -> Result<()> {
        let id = {
            let mut regs = self.inner.registrations.lock().await;
            let Some(pos) = regs.monitors.iter().position(|(_, r)| r.same(replica)) else {
                return Ok(());
            };
            let (id, _) = regs.monitors.remove(pos);
            self.inner
                .routes
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
            id
        };
        replica.set_synced(false);
        let conn = self.inner.current.borrow().clone();
        match conn {
            Some(conn) => match conn.request("monitor_cancel", &json!([id])).await {
                Ok(_) | Err(Error::Disconnected | Error::NotConnected) => Ok(()),
                Err(e) => Err(e),
            },
            None => Ok(()),
        }
    }

    async fn lock_request(&self, method: &str, name: &str) -> Result<LockWatch> {
        let rx = {
            let mut locks = lock_unpoisoned(&self.inner.locks);
            locks
                .entry(name.to_owned())
                .or_insert_with(|| watch::channel(false).0)
                .subscribe()
        };
        {
            let mut regs = self.inner.registrations.lock().await;
            if !regs.locks.iter().any(|l| l == name) {
                regs.locks.push(name.to_owned());
            }
        }
        let reply = self.request(method, json!([name])).await?;
        let locked = reply
            .get("locked")
            .and_then(Json::as_bool)
            .ok_or_else(|| Error::protocol(format!("{method} reply: {reply}")))?;
        if locked {
            set_lock(&self.inner, name, true);
        }
        Ok(LockWatch {
            name: name.to_owned(),
            rx,
        })
    }

    /// Requests the named lock; the returned watch turns true when it is granted (at once, or
    /// later by a `locked` notification). Re-requested after reconnects.
    pub async fn lock(&self, name: &str) -> Result<LockWatch> {
        self.lock_request("lock", name).await
    }

    /// Takes the named lock from its current owner (who gets `stolen`).
    pub async fn steal(&self, name: &str) -> Result<LockWatch> {
        self.lock_request("steal", name).await
    }

    /// Releases (or stops waiting for) the named lock.
    pub async fn unlock(&self, name: &str) -> Result<()> {
        self.inner
            .registrations
            .lock()
            .await
            .locks
            .retain(|l| l != name);
        set_lock(&self.inner, name, false);
        self.request("unlock", json!([name])).await.map(|_| ())
    }

    /// Closes the current connection now (the session reconnects with backoff). Mostly for
    /// tests and operators; pending requests fail with [`Error::Disconnected`].
    pub fn reconnect(&self) {
        if let Some(c) = self.inner.current.borrow().as_ref() {
            c.close();
        }
    }
}

fn set_lock(inner: &Inner, name: &str, locked: bool) {
    if let Some(w) = lock_unpoisoned(&inner.locks).get(name) {
        w.send_replace(locked);
    }
}

/// Sends a monitor request (falling back to older methods) and applies its reply to the
/// replica on the reader task, before any later notification.
async fn start_monitor(conn: &Connection, id: &str, replica: &Replica) -> Result<()> {
    let mut method = MonitorMethod::CondSince;
    loop {
        let params = method.params(
            replica.db(),
            id,
            replica.spec(),
            replica.last_txn_id().as_deref(),
        );
        let (tx, rx) = oneshot::channel();
        let r = replica.clone();
        conn.request_with(
            method.name(),
            &params,
            Box::new(move |res| {
                let out = res.and_then(|j| {
                    let rep = MonitorReply::parse(method, &j)?;
                    if rep.found {
                        r.resume(rep.updates, rep.last_txn_id)?;
                    } else {
                        r.resync(rep.updates, rep.last_txn_id)?;
                    }
                    r.set_synced(true);
                    Ok(())
                });
                let _ = tx.send(out);
            }),
        );
        match rx.await.unwrap_or(Err(Error::Disconnected)) {
            Err(Error::Rpc { error, .. })
                if method.fallback().is_some() && error.to_string().contains("unknown method") =>
            {
                method = method.fallback().unwrap_or(MonitorMethod::Plain);
            }
            other => return other,
        }
    }
}

fn notification_handler(inner: &Arc<Inner>, server: Arc<OnceLock<Replica>>) -> NotificationHandler {
    let weak = Arc::downgrade(inner);
    Arc::new(move |method: &str, params: Json| {
        let Some(inner) = weak.upgrade() else {
            return Ok(());
        };
        if let Some(n) = MonitorNotification::parse(method, &params)? {
            let replica = if n.monitor_id == SERVER_MONITOR_ID {
                server.get().cloned()
            } else {
                inner
                    .routes
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&n.monitor_id)
                    .cloned()
            };
            return match replica {
                Some(r) => r.apply(n.updates, n.last_txn_id),
                None => Ok(()),
            };
        }
        if method == "locked" || method == "stolen" {
            let name = params
                .get(0)
                .and_then(Json::as_str)
                .ok_or_else(|| Error::protocol(format!("{method} params: {params}")))?;
            set_lock(&inner, name, method == "locked");
        }
        Ok(())
    })
}

/// True if every clustered database on the server says this server is a connected leader.
fn is_leader(server: &Replica) -> bool {
    server.table("Database").iter().all(|db| {
        db.get_str("model") != Some("clustered")
            || (db.get_bool("leader") == Some(true) && db.get_bool("connected") == Some(true))
    })
}

/// What [`establish`] hands to the session: the connection and, in leader-only mode, the
/// `_Server` replica with its change events.
type Established = (
    Arc<Connection>,
    Option<(Replica, mpsc::UnboundedReceiver<RowEvent>)>,
);

/// Opens a connection and, in leader-only mode, checks that the server is the leader.
async fn open_checked(inner: &Arc<Inner>, remote: &Remote) -> Result<Established> {
    let server_slot = Arc::new(OnceLock::new());
    let conn = Arc::new(
        Connection::open(
            remote,
            inner.tls.as_ref(),
            &inner.options,
            notification_handler(inner, server_slot.clone()),
        )
        .await?,
    );
    let server = if inner.config.leader_only {
        let schema = Schema::from_json(&conn.request("get_schema", &json!(["_Server"])).await?)?;
        let server = Replica::new(
            "_Server",
            Arc::new(schema),
            MonitorSpec::new().table_columns("Database", &["name", "model", "connected", "leader"]),
        )?;
        let server = server_slot.get_or_init(|| server).clone();
        let events = server.subscribe();
        start_monitor(&conn, SERVER_MONITOR_ID, &server).await?;
        if !is_leader(&server) {
            conn.close();
            return Err(Error::NotLeader(remote.to_string()));
        }
        Some((server, events))
    } else {
        None
    };
    Ok((conn, server))
}

/// One connection attempt: connect and check leadership (bounded by `connect_timeout`), then
/// re-establish locks and monitors (bounded by the inactivity probe, since initial contents
/// can be large) and publish the connection.
async fn establish(inner: &Arc<Inner>, remote: &Remote) -> Result<Established> {
    let (conn, server) =
        match tokio::time::timeout(inner.config.connect_timeout, open_checked(inner, remote)).await
        {
            Ok(r) => r?,
            Err(_) => return Err(Error::Timeout(format!("connecting to {remote}"))),
        };
    let regs = inner.registrations.lock().await;
    for name in &regs.locks {
        let weak = Arc::downgrade(inner);
        let name2 = name.clone();
        conn.request_with(
            "lock",
            &json!([name]),
            Box::new(move |r| {
                if let (Ok(r), Some(inner)) = (r, weak.upgrade())
                    && r.get("locked").and_then(Json::as_bool) == Some(true)
                {
                    set_lock(&inner, &name2, true);
                }
            }),
        );
    }
    for (id, replica) in &regs.monitors {
        start_monitor(&conn, id, replica).await?;
    }
    inner.current.send_replace(Some(conn.clone()));
    drop(regs);
    Ok((conn, server))
}

/// Waits until the connection closes or the server stops being the leader.
async fn watch_connection(
    conn: &Connection,
    server: Option<(Replica, mpsc::UnboundedReceiver<RowEvent>)>,
) -> Error {
    let Some((server, mut events)) = server else {
        return conn.closed().await;
    };
    loop {
        tokio::select! {
            e = conn.closed() => return e,
            ev = events.recv() => {
                if ev.is_none() || !is_leader(&server) {
                    conn.close();
                    return Error::NotLeader(conn.remote().to_string());
                }
            }
        }
    }
}

async fn run_session(inner: Arc<Inner>) {
    let remotes = inner.config.remotes.clone();
    let mut backoff = inner.config.backoff_initial;
    let mut next = 0usize;
    loop {
        let remote = &remotes[next % remotes.len()];
        next += 1;
        match establish(&inner, remote).await {
            Ok((conn, server)) => {
                backoff = inner.config.backoff_initial;
                *lock_unpoisoned(&inner.last_error) = None;
                // Stay on this remote for the next attempt unless it stopped being the leader.
                next -= 1;
                let reason = watch_connection(&conn, server).await;
                tracing::info!(remote = %remote, error = %reason, "OVSDB connection lost");
                inner.current.send_replace(None);
                for (_, r) in &inner.registrations.lock().await.monitors {
                    r.set_synced(false);
                }
                for w in lock_unpoisoned(&inner.locks).values() {
                    w.send_replace(false);
                }
                if matches!(reason, Error::NotLeader(_)) {
                    next += 1;
                    continue;
                }
            }
            Err(e) => {
                tracing::debug!(remote = %remote, error = %e, "OVSDB connection attempt failed");
                *lock_unpoisoned(&inner.last_error) = Some(e);
            }
        }
        let jitter = rand::random_range(0.5..1.0);
        tokio::time::sleep(backoff.mul_f64(jitter)).await;
        backoff = (backoff * 2).min(inner.config.backoff_max);
    }
}
