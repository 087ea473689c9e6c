//! An OVSDB client (RFC 7047 plus the extensions OVN uses: `monitor_cond_since`, `update3`,
//! clustered databases), built on tokio.
//!
//! - [`Client`]: connection session with reconnect, `transact`, `monitor`, locks.
//! - [`TxnBuilder`], [`Operation`]: transactions with named-uuid cross references.
//! - [`Replica`]: in-memory copy of monitored tables with indexes and [`RowEvent`] streams.
//! - [`Value`], [`Atom`], [`Row`]: the OVSDB data model.
//!
//! ```no_run
//! use ovsdb::{Client, ClientConfig, Condition, MonitorSpec, Mutation, Row, TxnBuilder, Value};
//!
//! # async fn demo() -> ovsdb::Result<()> {
//! let config = ClientConfig::from_remotes("unix:/run/ovn/ovnnb_db.sock")?.with_leader_only(true);
//! let client = Client::connect(config).await?;
//! client
//!     .get_schema("OVN_Northbound")
//!     .await?
//!     .require(&[("Logical_Switch", &["name", "ports"])])?;
//!
//! // A replica of two tables, kept equal to the server across reconnects.
//! let replica = client
//!     .monitor(
//!         "OVN_Northbound",
//!         MonitorSpec::new().table("Logical_Switch").table("Logical_Switch_Port"),
//!     )
//!     .await?;
//! let (snapshot, mut events) = replica.snapshot_and_subscribe();
//!
//! // Insert a port and reference it from its switch in one transaction.
//! let mut tx = TxnBuilder::new("OVN_Northbound");
//! let lsp = tx.insert("Logical_Switch_Port", Row::new().with("name", "pod1"));
//! tx.mutate(
//!     "Logical_Switch",
//!     vec![Condition::eq("name", "sw0")],
//!     vec![Mutation::insert("ports", Value::set([lsp.clone()]))],
//! );
//! let result = client.commit(&tx).await?;
//! let _port_uuid = result.uuid_of(&lsp);
//!
//! while let Some(event) = events.recv().await {
//!     println!("{} {} changed", event.table(), event.uuid());
//! }
//! # let _ = snapshot; Ok(()) }
//! ```

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
pub use monitor::{Index, MonitorSpec};
pub use replica::{Replica, RowEvent, SyncStats};
pub use schema::Schema;
pub use transact::{
    Condition, Function, Mutation, Mutator, Operation, OperationResult, TxnBuilder, TxnResult,
    WaitUntil,
};
pub use transport::{Remote, TlsFiles};
pub use uuid::Uuid;
pub use value::{Atom, AtomMap, AtomSet, NamedUuid, Row, Value};
