//! The protocol between `rovn-cni` and the node agent (`rovn-agent`).
//!
//! One request per connection on a unix stream socket:
//! 1. the plugin connects and writes one [`AgentRequest`] as JSON, then shuts down its
//!    write half (end of request);
//! 2. the agent answers with one [`AgentResponse`] as JSON and closes the connection.
//!
//! Requests are at most [`MAX_MESSAGE_BYTES`]. The plugin waits for the answer at most
//! the configured agent timeout (default a little under kubelet's 4 minutes), so an agent
//! that needs to wait (for the pod's address annotations, for the OVN port to come up)
//! must answer before that, with an error naming what is missing if it gives up.
//!
//! The agent side is [`bind`] + [`serve`] with an async handler:
//!
//! ```no_run
//! use cni::protocol::{AgentRequest, AgentResponse, bind, serve};
//! use cni::{CniError, Command};
//!
//! # async fn agent() -> std::io::Result<()> {
//! let listener = bind("/run/rovn/cni.sock".as_ref())?;
//! serve(listener, |request: AgentRequest| async move {
//!     match request.command {
//!         Command::Status => AgentResponse::Done,
//!         _ => AgentResponse::Error(CniError::new(CniError::TRY_AGAIN_LATER, "not ready", "")),
//!     }
//! })
//! .await
//! # }
//! ```

use std::future::Future;
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

use crate::config::Attachment;
use crate::env::{Command, PodRef};
use crate::error::CniError;
use crate::result::CniResult;

/// The largest request or response accepted, in bytes.
pub const MAX_MESSAGE_BYTES: u64 = 1 << 20;

/// How long the agent waits for a connected plugin to finish sending its request.
pub const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// One CNI invocation forwarded to the agent. The plugin has already validated the
/// environment and configuration, so the agent can rely on the guarantees stated per field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentRequest {
    /// `ADD`, `DEL`, `CHECK`, `STATUS` or `GC` (never `VERSION`, which the plugin answers).
    pub command: Command,
    /// The protocol version of the invocation (`0.4.0`, `1.0.0` or `1.1.0`); the plugin
    /// renders the agent's result in it, so the agent need not care.
    pub cni_version: String,
    /// The network name (`name` of the configuration).
    pub network: String,
    /// `CNI_CONTAINERID`: set for ADD, DEL and CHECK.
    pub container_id: Option<String>,
    /// `CNI_NETNS` (a netns path): set for ADD and CHECK; for DEL only when the runtime gave it.
    pub netns: Option<String>,
    /// `CNI_IFNAME`: set for ADD, DEL and CHECK.
    pub ifname: Option<String>,
    /// The pod from `CNI_ARGS`: set for ADD and CHECK; for DEL when the runtime gave it.
    pub pod: Option<PodRef>,
    /// `prevResult` of the configuration: the ADD result; always set for CHECK, usually for DEL.
    pub prev_result: Option<CniResult>,
    /// GC only: the attachments that are still valid; resources of any other may be removed.
    #[serde(default)]
    pub valid_attachments: Vec<Attachment>,
    /// The network configuration as the runtime passed it (e.g. for `mtu` or `runtimeConfig`).
    pub config: Value,
}

/// The agent's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", content = "body", rename_all = "lowercase")]
pub enum AgentResponse {
    /// ADD succeeded: the interfaces, addresses and routes set up.
    Result(CniResult),
    /// DEL, CHECK, STATUS or GC succeeded (these print nothing).
    Done,
    /// The operation failed; printed as the CNI error object with this code.
    Error(CniError),
}

/// Why a plugin-side call to the agent failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Nothing accepts connections on the socket (agent not running or not ready yet).
    #[error("cannot connect to the rovn agent at {socket}: {source}")]
    Unreachable {
        /// The socket path.
        socket: String,
        /// The connect error.
        source: io::Error,
    },
    /// The agent did not answer in time.
    #[error("the rovn agent at {socket} did not answer within {timeout:?}")]
    Timeout {
        /// The socket path.
        socket: String,
        /// The time waited.
        timeout: Duration,
    },
    /// The agent closed or reset the connection without answering (e.g. it stopped or its
    /// handler failed).
    #[error("the rovn agent at {socket} closed the connection without answering")]
    NoAnswer {
        /// The socket path.
        socket: String,
    },
    /// Reading or writing the connection failed.
    #[error("talking to the rovn agent at {socket} failed: {source}")]
    Io {
        /// The socket path.
        socket: String,
        /// The I/O error.
        source: io::Error,
    },
    /// The answer is not an [`AgentResponse`].
    #[error("the rovn agent at {socket} sent an answer that cannot be decoded: {reason}")]
    BadResponse {
        /// The socket path.
        socket: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl From<CallError> for CniError {
    /// Unreachable agent, time-out and no answer → 11 (try again later); I/O → 5;
    /// undecodable answer → 6.
    fn from(error: CallError) -> Self {
        let (code, msg) = match &error {
            CallError::Unreachable { .. } => (
                CniError::TRY_AGAIN_LATER,
                "rovn agent not reachable (is rovn-agent running on this node?)",
            ),
            CallError::Timeout { .. } => (
                CniError::TRY_AGAIN_LATER,
                "rovn agent did not answer in time",
            ),
            CallError::NoAnswer { .. } => (
                CniError::TRY_AGAIN_LATER,
                "rovn agent closed the connection without answering",
            ),
            CallError::Io { .. } => (CniError::IO_FAILURE, "I/O error talking to the rovn agent"),
            CallError::BadResponse { .. } => (
                CniError::DECODE_FAILURE,
                "cannot decode the rovn agent's answer",
            ),
        };
        CniError::new(code, msg, error.to_string())
    }
}

/// Sends `request` to the agent at `socket` and waits at most `timeout` in all for the answer.
pub fn call(
    socket: &Path,
    request: &AgentRequest,
    timeout: Duration,
) -> Result<AgentResponse, CallError> {
    let name = socket.display().to_string();
    let deadline = Instant::now() + timeout;
    let io_error = |source: io::Error| {
        if matches!(
            source.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ) {
            CallError::Timeout {
                socket: name.clone(),
                timeout,
            }
        } else if matches!(
            source.kind(),
            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
        ) {
            CallError::NoAnswer {
                socket: name.clone(),
            }
        } else {
            CallError::Io {
                socket: name.clone(),
                source,
            }
        }
    };
    let mut stream = connect(socket, timeout).map_err(|e| match e {
        Some(source) => CallError::Unreachable {
            socket: name.clone(),
            source,
        },
        None => CallError::Timeout {
            socket: name.clone(),
            timeout,
        },
    })?;
    let body = serde_json::to_vec(request).expect("a request always serializes");
    stream.set_write_timeout(Some(timeout)).map_err(io_error)?;
    stream.write_all(&body).map_err(io_error)?;
    stream
        .shutdown(std::net::Shutdown::Write)
        .map_err(io_error)?;

    let mut answer = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(CallError::Timeout {
                socket: name,
                timeout,
            });
        }
        stream.set_read_timeout(Some(remaining)).map_err(io_error)?;
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                answer.extend_from_slice(&chunk[..n]);
                if answer.len() as u64 > MAX_MESSAGE_BYTES {
                    return Err(CallError::BadResponse {
                        socket: name,
                        reason: format!("answer larger than {MAX_MESSAGE_BYTES} bytes"),
                    });
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_error(e)),
        }
    }
    if answer.is_empty() {
        return Err(CallError::NoAnswer { socket: name });
    }
    serde_json::from_slice(&answer).map_err(|e| CallError::BadResponse {
        socket: name,
        reason: e.to_string(),
    })
}

/// Connects to `socket`, giving up after `timeout` (a unix `connect` blocks while the
/// listener's backlog is full, i.e. while the agent is not accepting). `Err(None)` is a time-out.
fn connect(socket: &Path, timeout: Duration) -> Result<StdUnixStream, Option<io::Error>> {
    let (sender, receiver) = std::sync::mpsc::channel();
    let path = socket.to_owned();
    // On time-out the thread is left blocked in connect; the plugin process exits soon after.
    std::thread::spawn(move || sender.send(StdUnixStream::connect(path)));
    match receiver.recv_timeout(timeout) {
        Ok(connected) => connected.map_err(Some),
        Err(_) => Err(None),
    }
}

/// Binds the agent's socket at `path`: creates the parent directory, replaces a stale
/// socket file left by a previous run (any other kind of file is an error), and makes the
/// socket accessible to its owner only. Must be called inside a tokio runtime.
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path)?,
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serves plugin requests on `listener` forever, each connection on its own task:
/// reads one [`AgentRequest`], awaits `handler`, writes its [`AgentResponse`].
/// Undecodable requests are answered with error 6 without calling `handler`.
/// Returns only on a non-transient accept error.
pub async fn serve<H, F>(listener: UnixListener, handler: H) -> io::Result<()>
where
    H: Fn(AgentRequest) -> F + Send + Sync + 'static,
    F: Future<Output = AgentResponse> + Send + 'static,
{
    let handler = Arc::new(handler);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) if is_transient_accept_error(&e) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let handler = Arc::clone(&handler);
        tokio::spawn(async move {
            // A plugin that went away before reading the answer needs no further handling.
            let _ = handle_connection(stream, handler.as_ref()).await;
        });
    }
}

/// Linux errno values of accept errors that clear up by themselves.
const ENOMEM: i32 = 12;
const ENFILE: i32 = 23;
const EMFILE: i32 = 24;
const ENOBUFS: i32 = 105;

/// Aborted connections, signals and resource exhaustion (retried after a short pause).
fn is_transient_accept_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::Interrupted
    ) || error
        .raw_os_error()
        .is_some_and(|code| [ENOMEM, ENFILE, EMFILE, ENOBUFS].contains(&code))
}

async fn handle_connection<H, F>(mut stream: UnixStream, handler: &H) -> io::Result<()>
where
    H: Fn(AgentRequest) -> F,
    F: Future<Output = AgentResponse>,
{
    let mut body = Vec::new();
    let mut limited = (&mut stream).take(MAX_MESSAGE_BYTES + 1);
    let read = tokio::time::timeout(REQUEST_READ_TIMEOUT, limited.read_to_end(&mut body)).await;
    let response = match read {
        Err(_) => AgentResponse::Error(CniError::new(
            CniError::IO_FAILURE,
            "incomplete request",
            format!("the request was not complete within {REQUEST_READ_TIMEOUT:?}"),
        )),
        Ok(Err(e)) => return Err(e),
        Ok(Ok(_)) if body.len() as u64 > MAX_MESSAGE_BYTES => AgentResponse::Error(CniError::new(
            CniError::DECODE_FAILURE,
            "request too large",
            format!("requests are limited to {MAX_MESSAGE_BYTES} bytes"),
        )),
        Ok(Ok(_)) => match serde_json::from_slice::<AgentRequest>(&body) {
            Ok(request) => handler(request).await,
            Err(e) => AgentResponse::Error(CniError::new(
                CniError::DECODE_FAILURE,
                "cannot decode the plugin's request",
                e.to_string(),
            )),
        },
    };
    let answer = serde_json::to_vec(&response).expect("a response always serializes");
    stream.write_all(&answer).await?;
    stream.shutdown().await
}
