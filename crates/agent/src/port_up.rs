//! Whether OVN reports a logical switch port up: `up=true` on its Logical_Switch_Port in
//! the Northbound database (set by northd once ovn-controller bound the port and installed
//! its flows).
//!
//! The wait is an OVSDB `wait` operation: the server holds the transaction until the port's
//! row reads `up=true` (re-evaluated on every commit) or the time-out passes, so the agent
//! learns it as soon as northd writes it, without replicating the whole port table on every
//! node.

use std::time::Duration;

use ovn::Table;
use ovn::nb::{self, LogicalSwitchPort};
use ovsdb::{Client, Condition, Operation, Row, WaitUntil};

/// Extra time given to the server's answer beyond the wait's own time-out.
const ANSWER_SLACK: Duration = Duration::from_secs(5);

/// Waits for `up=true` of logical switch ports in NB.
#[derive(Debug, Clone)]
pub struct PortUpWait {
    client: Client,
}

impl PortUpWait {
    /// Checks that the NB schema has `Logical_Switch_Port.up` (`client` connected to NB).
    pub async fn new(client: Client) -> ovsdb::Result<Self> {
        let schema = client.get_schema(nb::DATABASE).await?;
        schema.require(&[(LogicalSwitchPort::NAME, &["name", "up"])])?;
        Ok(PortUpWait { client })
    }

    /// Whether the NB connection is up.
    pub fn connected(&self) -> bool {
        self.client.current_remote().is_some()
    }

    /// Waits at most `timeout` until port `name` is up: `Ok(false)` on time-out.
    pub async fn wait_up(&self, name: &str, timeout: Duration) -> ovsdb::Result<bool> {
        let wait = Operation::Wait {
            table: LogicalSwitchPort::NAME.to_owned(),
            conditions: vec![Condition::eq("name", name)],
            columns: vec!["up".to_owned()],
            until: WaitUntil::Equal,
            rows: vec![Row::new().with("up", true)],
            timeout_ms: Some(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX)),
        };
        let answer = tokio::time::timeout(
            timeout + ANSWER_SLACK,
            self.client.transact(nb::DATABASE, vec![wait]),
        )
        .await;
        match answer {
            Err(_) => Ok(false),
            Ok(Ok(_)) => Ok(true),
            Ok(Err(ovsdb::Error::Txn { error, .. })) if error == "timed out" => Ok(false),
            Ok(Err(e)) => Err(e),
        }
    }
}
