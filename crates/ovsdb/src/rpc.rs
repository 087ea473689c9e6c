//! One JSON-RPC 1.0 connection to an OVSDB server: request ids and the pending-reply map,
//! answering the server's `echo`, our own inactivity probe, and in-order dispatch of
//! notifications.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value as Json, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::framing::JsonSplitter;
use crate::transport::{self, BoxStream, Remote, TlsConnector};

/// Callback receiving a reply, run on the connection's reader task (so it is ordered with the
/// notifications that follow the reply).
pub type ReplyHandler = Box<dyn FnOnce(Result<Json>) + Send>;

/// Callback receiving every notification (`method`, `params`), run on the reader task in order.
/// An error closes the connection with that error.
pub type NotificationHandler = Arc<dyn Fn(&str, Json) -> Result<()> + Send + Sync>;

/// Connection tuning.
#[derive(Debug, Clone)]
pub struct ConnectionOptions {
    /// After this long without receiving anything, send an `echo`; if nothing arrives during a
    /// second interval, the connection fails with [`Error::Timeout`]. `None` disables the probe.
    pub probe_interval: Option<Duration>,
    /// Largest accepted incoming message, in bytes.
    pub max_message_size: usize,
}

impl Default for ConnectionOptions {
    fn default() -> Self {
        ConnectionOptions {
            probe_interval: Some(Duration::from_secs(5)),
            max_message_size: 256 << 20,
        }
    }
}

struct PendingRequest {
    method: String,
    handler: ReplyHandler,
}

struct Shared {
    next_id: AtomicU64,
    /// `None` once the connection is closed: no new request may be registered.
    pending: Mutex<Option<HashMap<u64, PendingRequest>>>,
    closed: watch::Sender<Option<Error>>,
}

impl Shared {
    fn lock_pending(&self) -> std::sync::MutexGuard<'_, Option<HashMap<u64, PendingRequest>>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks the connection closed and fails every pending request with `reason`.
    fn close(&self, reason: Error) {
        let drained = self.lock_pending().take();
        self.closed.send_if_modified(|c| {
            if c.is_none() {
                *c = Some(reason.clone());
                true
            } else {
                false
            }
        });
        let reason = self.closed.borrow().clone().unwrap_or(Error::Disconnected);
        for (_, p) in drained.into_iter().flatten() {
            (p.handler)(Err(reason.clone()));
        }
    }
}

/// A live JSON-RPC connection. Cheap to share behind an `Arc`; dropping the last reference
/// closes it.
pub struct Connection {
    remote: Remote,
    shared: Arc<Shared>,
    out: mpsc::UnboundedSender<Vec<u8>>,
    tasks: [JoinHandle<()>; 2],
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("remote", &self.remote)
            .finish()
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        self.shared.close(Error::Disconnected);
    }
}

impl Connection {
    /// Connects to `remote` and starts the reader and writer tasks.
    pub async fn open(
        remote: &Remote,
        tls: Option<&TlsConnector>,
        options: &ConnectionOptions,
        notifications: NotificationHandler,
    ) -> Result<Connection> {
        let stream = transport::connect(remote, tls).await?;
        Ok(Connection::start(
            remote.clone(),
            stream,
            options,
            notifications,
        ))
    }

    fn start(
        remote: Remote,
        stream: BoxStream,
        options: &ConnectionOptions,
        notifications: NotificationHandler,
    ) -> Connection {
        let (rd, wr) = tokio::io::split(stream);
        let (out, out_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            next_id: AtomicU64::new(1),
            pending: Mutex::new(Some(HashMap::new())),
            closed: watch::channel(None).0,
        });
        let writer = tokio::spawn(write_loop(wr, out_rx, shared.clone()));
        let reader = tokio::spawn(read_loop(
            rd,
            out.clone(),
            shared.clone(),
            options.clone(),
            notifications,
        ));
        Connection {
            remote,
            shared,
            out,
            tasks: [reader, writer],
        }
    }

    /// The remote this connection goes to.
    pub fn remote(&self) -> &Remote {
        &self.remote
    }

    /// True once the connection failed or was closed.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.borrow().is_some()
    }

    /// Waits until the connection is closed and returns why.
    pub async fn closed(&self) -> Error {
        let mut rx = self.shared.closed.subscribe();
        match rx.wait_for(Option::is_some).await {
            Ok(r) => r.clone().unwrap_or(Error::Disconnected),
            Err(_) => Error::Disconnected,
        }
    }

    /// Closes the connection; pending requests fail with [`Error::Disconnected`].
    pub fn close(&self) {
        self.shared.close(Error::Disconnected);
    }

    /// Sends a request; `handler` gets the reply on the reader task. If the connection is
    /// already closed nothing is sent and `handler` gets [`Error::NotConnected`].
    pub fn request_with(&self, method: &str, params: &Json, handler: ReplyHandler) {
        #[derive(serde::Serialize)]
        struct Request<'a> {
            method: &'a str,
            params: &'a Json,
            id: u64,
        }
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let bytes = match serde_json::to_vec(&Request { method, params, id }) {
            Ok(b) => b,
            Err(e) => return handler(Err(e.into())),
        };
        {
            let mut pending = self.shared.lock_pending();
            let Some(map) = pending.as_mut() else {
                drop(pending);
                return handler(Err(Error::NotConnected));
            };
            map.insert(
                id,
                PendingRequest {
                    method: method.to_owned(),
                    handler,
                },
            );
        }
        if self.out.send(bytes).is_err() {
            self.shared.close(Error::Disconnected);
        }
    }

    /// Sends a request and waits for its result (the `result` member of the reply).
    pub async fn request(&self, method: &str, params: &Json) -> Result<Json> {
        let (tx, rx) = oneshot::channel();
        self.request_with(
            method,
            params,
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        rx.await.unwrap_or(Err(Error::Disconnected))
    }
}

async fn write_loop(
    mut wr: WriteHalf<BoxStream>,
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
    shared: Arc<Shared>,
) {
    // One write per message: ovsdb-server handles a steady stream of requests better than
    // large coalesced bursts (measured by benches/transact.rs).
    while let Some(msg) = rx.recv().await {
        if let Err(e) = wr.write_all(&msg).await {
            shared.close(e.into());
            return;
        }
    }
    let _ = wr.shutdown().await;
}

async fn read_loop(
    mut rd: ReadHalf<BoxStream>,
    out: mpsc::UnboundedSender<Vec<u8>>,
    shared: Arc<Shared>,
    options: ConnectionOptions,
    notifications: NotificationHandler,
) {
    let reason = read_messages(&mut rd, &out, &shared, &options, &notifications).await;
    shared.close(reason);
}

/// Reads until the stream fails; returns why it stopped.
async fn read_messages(
    rd: &mut ReadHalf<BoxStream>,
    out: &mpsc::UnboundedSender<Vec<u8>>,
    shared: &Shared,
    options: &ConnectionOptions,
    notifications: &NotificationHandler,
) -> Error {
    let mut splitter = JsonSplitter::new(options.max_message_size);
    let mut buf = vec![0u8; 64 << 10];
    // The probe timer is not touched per read: reads only record the time, and when the timer
    // fires it is pushed back if something arrived meanwhile.
    let far = Duration::from_secs(86400 * 365);
    let interval = options.probe_interval;
    let probe = tokio::time::sleep(interval.unwrap_or(far));
    tokio::pin!(probe);
    let mut last_rx = tokio::time::Instant::now();
    let mut probe_sent = false;
    loop {
        let n = tokio::select! {
            biased;
            r = rd.read(&mut buf) => r,
            () = &mut probe, if interval.is_some() => {
                let interval = interval.unwrap_or(far);
                let now = tokio::time::Instant::now();
                if now < last_rx + interval {
                    probe.as_mut().reset(last_rx + interval);
                } else if probe_sent {
                    return Error::Timeout(format!(
                        "no reply to inactivity probe within {interval:?}"
                    ));
                } else {
                    probe_sent = true;
                    let probe_msg = json!({"method": "echo", "params": [], "id": "probe"});
                    let _ = out.send(probe_msg.to_string().into_bytes());
                    probe.as_mut().reset(now + interval);
                }
                continue;
            }
        };
        let n = match n {
            Ok(0) => {
                return match splitter.pending() {
                    0 => Error::Disconnected,
                    p => Error::Truncated(p),
                };
            }
            Ok(n) => n,
            Err(e) => return e.into(),
        };
        probe_sent = false;
        last_rx = tokio::time::Instant::now();
        splitter.push(&buf[..n]);
        loop {
            let msg = match splitter.next_message() {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(e) => return e,
            };
            if let Err(e) = dispatch(&msg, out, shared, notifications) {
                return e;
            }
        }
    }
}

/// Handles one incoming message.
fn dispatch(
    msg: &[u8],
    out: &mpsc::UnboundedSender<Vec<u8>>,
    shared: &Shared,
    notifications: &NotificationHandler,
) -> Result<()> {
    let mut msg: Json = serde_json::from_slice(msg)?;
    let obj = msg
        .as_object_mut()
        .ok_or_else(|| Error::protocol("JSON-RPC message is not an object"))?;
    let id = obj.remove("id").unwrap_or(Json::Null);
    if let Some(method) = obj.get("method") {
        let method = method
            .as_str()
            .ok_or_else(|| Error::protocol("JSON-RPC method is not a string"))?
            .to_owned();
        let params = obj.remove("params").unwrap_or(Json::Null);
        if id.is_null() {
            return notifications(&method, params);
        }
        let reply = if method == "echo" {
            json!({"id": id, "result": params, "error": null})
        } else {
            json!({"id": id, "result": null, "error": format!("unknown method {method}")})
        };
        let _ = out.send(reply.to_string().into_bytes());
        return Ok(());
    }
    let Some(id) = id.as_u64() else {
        // Replies to our inactivity probe (id "probe") and anything we did not send.
        return Ok(());
    };
    let pending = shared.lock_pending().as_mut().and_then(|m| m.remove(&id));
    let Some(p) = pending else {
        return Err(Error::protocol(format!("reply to unknown request id {id}")));
    };
    let error = obj.remove("error").unwrap_or(Json::Null);
    if !error.is_null() {
        (p.handler)(Err(Error::Rpc {
            method: p.method,
            error,
        }));
    } else {
        match obj.remove("result") {
            Some(result) => (p.handler)(Ok(result)),
            None => {
                (p.handler)(Err(Error::protocol(format!(
                    "reply to {} without result",
                    p.method
                ))));
            }
        }
    }
    Ok(())
}
