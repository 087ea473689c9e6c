//! Whether OVN reports a logical switch port up: `up=true` on its Logical_Switch_Port in
//! the Northbound database (set by northd once ovn-controller bound the port), followed by
//! a monitor of the port names and `up` columns.

use std::time::Duration;

use ovn::Table;
use ovn::nb::{self, LogicalSwitchPort};
use ovsdb::{Client, MonitorSpec};

use crate::changes::ChangeSignal;

/// Follows `Logical_Switch_Port.up` in NB.
#[derive(Debug)]
pub struct PortUpWatch {
    changes: ChangeSignal,
    _client: Client,
}

impl PortUpWatch {
    /// Starts monitoring the name and `up` columns of every Logical_Switch_Port.
    pub async fn start(client: Client) -> ovsdb::Result<Self> {
        let schema = client.get_schema(nb::DATABASE).await?;
        schema.require(&[(LogicalSwitchPort::NAME, &["name", "up"])])?;
        let spec = MonitorSpec::new().table_columns(LogicalSwitchPort::NAME, &["name", "up"]);
        let replica = client.monitor(nb::DATABASE, spec).await?;
        Ok(PortUpWatch {
            changes: ChangeSignal::follow(replica),
            _client: client,
        })
    }

    /// Whether the NB monitor is in sync.
    pub fn synced(&self) -> bool {
        self.changes.replica().is_synced()
    }

    /// Whether port `name` is up now.
    pub fn is_up(&self, name: &str) -> bool {
        self.changes
            .replica()
            .by_name(LogicalSwitchPort::NAME, name)
            .iter()
            .any(|row| row.get_bool("up") == Some(true))
    }

    /// Waits at most `timeout` until port `name` is up.
    pub async fn wait_up(&self, name: &str, timeout: Duration) -> bool {
        self.changes
            .wait_for(timeout, |replica| {
                replica
                    .by_name(LogicalSwitchPort::NAME, name)
                    .iter()
                    .any(|row| row.get_bool("up") == Some(true))
                    .then_some(())
            })
            .await
            .is_some()
    }
}
