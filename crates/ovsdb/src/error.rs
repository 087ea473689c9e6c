//! The one error type of the crate: every failure is a typed variant, never a panic.

use std::io;
use std::sync::Arc;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong talking to an OVSDB server.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// Socket-level failure (connect, read, write).
    #[error("I/O error: {0}")]
    Io(Arc<io::Error>),
    /// TLS configuration or handshake failure (bad PEM files, certificate rejected...).
    #[error("TLS error: {0}")]
    Tls(String),
    /// The bytes received are not valid JSON.
    #[error("invalid JSON: {0}")]
    Json(Arc<serde_json::Error>),
    /// Valid JSON that does not follow the OVSDB / JSON-RPC protocol (wrong types, missing members...).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The server closed the stream in the middle of a JSON value.
    #[error("connection closed in the middle of a message ({0} bytes pending)")]
    Truncated(usize),
    /// A single incoming message exceeded the configured limit.
    #[error("incoming message larger than {limit} bytes")]
    MessageTooLarge {
        /// The configured maximum size in bytes.
        limit: usize,
    },
    /// The server answered a request with a JSON-RPC error.
    #[error("server replied to {method} with error: {error}")]
    Rpc {
        /// Method of the failed request.
        method: String,
        /// The `error` member of the reply, as sent by the server.
        error: serde_json::Value,
    },
    /// One operation of a transaction failed (or the commit itself, when `index == ops`).
    #[error("transaction failed at operation {index}: {error}{}", details.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Txn {
        /// Index of the failing operation; equal to the number of operations for commit-time errors
        /// (constraint or referential-integrity violations).
        index: usize,
        /// The OVSDB error string (`constraint violation`, `referential integrity violation`...).
        error: String,
        /// The server's human-readable details, if any.
        details: Option<String>,
    },
    /// A table named by the caller is not in the server's schema.
    #[error("database {db} has no table {table}")]
    UnknownTable {
        /// Database name.
        db: String,
        /// Missing table.
        table: String,
    },
    /// A column named by the caller is not in the server's schema.
    #[error("database {db} has no column {table}.{column}")]
    UnknownColumn {
        /// Database name.
        db: String,
        /// Table holding the missing column.
        table: String,
        /// Missing column.
        column: String,
    },
    /// A remote string could not be parsed.
    #[error("invalid remote {remote:?}: {reason}")]
    InvalidRemote {
        /// The remote as given.
        remote: String,
        /// Why it was rejected.
        reason: String,
    },
    /// Waiting for the server exceeded a configured deadline (inactivity probe, connect...).
    #[error("timed out: {0}")]
    Timeout(String),
    /// A clustered server is not the leader (leader-only connections).
    #[error("server {0} is not the cluster leader")]
    NotLeader(String),
    /// The request was not sent because the connection was already closed; safe to retry
    /// ([`crate::Client`] retries it on the next connection itself).
    #[error("request not sent: connection closed")]
    NotConnected,
    /// The connection was lost before the answer arrived; the outcome of the request is unknown.
    #[error("disconnected from the server")]
    Disconnected,
    /// The client was shut down.
    #[error("client closed")]
    Closed,
}

impl Error {
    /// Shorthand for a [`Error::Protocol`] error.
    pub(crate) fn protocol(msg: impl Into<String>) -> Self {
        Error::Protocol(msg.into())
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(Arc::new(e))
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::Json(Arc::new(e))
    }
}
