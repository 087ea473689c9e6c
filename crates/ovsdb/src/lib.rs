//! An OVSDB client (RFC 7047 plus the extensions OVN uses: `monitor_cond_since`, `update3`,
//! clustered databases), built on tokio.
//!
//! - [`Client`]: connection session with reconnect, `transact`, `monitor`, locks.
//! - [`TxnBuilder`], [`Operation`]: transactions with named-uuid cross references.
//! - [`Replica`]: in-memory copy of monitored tables with indexes and [`RowEvent`] streams.
//! - [`Value`], [`Atom`], [`Row`]: the OVSDB data model.

pub mod client;
pub mod error;
pub mod framing;
pub mod monitor;
pub mod replica;
pub mod rpc;
pub mod schema;
pub mod transact;
pub mod transport;
pub mod value;

pub use client::{Client, ClientConfig, LockWatch};
pub use error::{Error, Result};
pub use monitor::MonitorSpec;
pub use replica::{Replica, RowEvent, SyncStats};
pub use schema::Schema;
pub use transact::{
    Condition, Function, Mutation, Mutator, Operation, OperationResult, TxnBuilder, TxnResult,
    WaitUntil,
};
pub use transport::{Remote, TlsFiles};
pub use uuid::Uuid;
pub use value::{Atom, NamedUuid, Row, Value};
