//! The local Open_vSwitch database: pod ports on `br-int`, written and read with our OVSDB
//! client. A monitor replicates the bridges, ports and interface names and `external_ids`
//! (where ovn-controller reports `ovn-installed`); other interface columns are read with
//! `select` when needed.

use std::collections::BTreeMap;
use std::time::Duration;

use ovn::view::decode;
use ovn::vswitch::{self, Bridge, Interface, Port};
use ovn::{Table, check_schema};
use ovsdb::{Client, Condition, Index, MonitorSpec, Mutation, Row, TxnBuilder, Uuid, Value};

use crate::changes::ChangeSignal;

/// `external_ids` key binding an interface to its logical switch port.
pub const IFACE_ID: &str = "iface-id";
/// `external_ids` key ovn-controller sets to `true` once the port's flows are installed.
pub const OVN_INSTALLED: &str = "ovn-installed";
/// `external_ids` key marking an interface as a pod port of rovn: the container id.
pub const CONTAINER_ID: &str = "rovn:container_id";
/// `external_ids` key: the pod end's name (`CNI_IFNAME`).
pub const IFNAME: &str = "rovn:ifname";
/// `external_ids` key of a pod port: the pod's Subnet (its logical switch).
pub const LOGICAL_SWITCH: &str = "rovn:logical_switch";
/// `external_ids` key marking an interface as a node-link port of rovn: its logical port.
pub const NODE_LINK: &str = "rovn:node_link";

/// A failure of the local switch.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OvsError {
    /// Talking to the database failed.
    #[error("local Open_vSwitch database: {0}")]
    Db(#[from] ovsdb::Error),
    /// The integration bridge does not exist.
    #[error("bridge {0} does not exist in the local Open_vSwitch database")]
    NoBridge(String),
}

/// The pod port to plug.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodPort {
    /// The host end of the veth (port and interface name).
    pub host_if: String,
    /// The logical switch port (`iface-id`).
    pub iface_id: String,
    /// The pod's MAC (`attached-mac`).
    pub mac: String,
    /// Pod namespace.
    pub pod_namespace: String,
    /// Pod name.
    pub pod_name: String,
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// `CNI_NETNS`.
    pub netns: String,
    /// The pod's addresses, comma-separated (as Kube-OVN writes `ip`; the node links route
    /// them).
    pub ips: String,
    /// The pod's Subnet.
    pub logical_switch: String,
}

/// One of our ports found in the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedPort {
    /// Interface (and port) name.
    pub host_if: String,
    /// Its container.
    pub container_id: String,
    /// Its pod end name.
    pub ifname: String,
    /// The pod's addresses.
    pub ips: Vec<std::net::IpAddr>,
    /// The pod's Subnet (ports plugged by older agents have none).
    pub logical_switch: Option<String>,
}

/// The local switch: a client, a replica of its bridges/ports/interfaces, the bridge to use.
#[derive(Debug)]
pub struct LocalSwitch {
    client: Client,
    changes: ChangeSignal,
    bridge: String,
}

impl LocalSwitch {
    /// Checks the schema and starts replicating the local database (`client` connected to it).
    pub async fn open(client: Client, bridge: &str) -> Result<Self, OvsError> {
        let schema = client.get_schema(vswitch::DATABASE).await?;
        check_schema(&schema, vswitch::REQUIRED)?;
        let spec = MonitorSpec::new()
            .table_columns("Open_vSwitch", &["bridges", "external_ids"])
            .table_columns("Bridge", &["name", "ports"])
            .table_columns("Port", &["name", "interfaces", "external_ids"])
            .table_columns("Interface", &["name", "external_ids"])
            .index("Bridge", Index::column("name"))
            .index("Interface", Index::column("name"));
        let replica = client.monitor(vswitch::DATABASE, spec).await?;
        Ok(LocalSwitch {
            client,
            changes: ChangeSignal::follow(replica),
            bridge: bridge.to_owned(),
        })
    }

    /// The client, shared with other users of the database.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Whether the replica is in sync and the bridge exists (ADD can be served).
    pub fn ready(&self) -> Result<(), String> {
        let replica = self.changes.replica();
        if !replica.is_synced() {
            return Err("not connected to the local Open_vSwitch database".to_owned());
        }
        if replica.by_name(Bridge::NAME, &self.bridge).is_empty() {
            return Err(format!("bridge {} does not exist", self.bridge));
        }
        Ok(())
    }

    /// Plugs `port` into the bridge (replacing a port of the same name left by an earlier
    /// attempt), in one transaction.
    pub async fn plug(&self, port: &PodPort) -> Result<(), OvsError> {
        let ids = BTreeMap::from([
            (IFACE_ID.to_owned(), port.iface_id.clone()),
            ("attached-mac".to_owned(), port.mac.clone()),
            ("iface-status".to_owned(), "active".to_owned()),
            ("pod_namespace".to_owned(), port.pod_namespace.clone()),
            ("pod_name".to_owned(), port.pod_name.clone()),
            ("pod_netns".to_owned(), port.netns.clone()),
            ("ip".to_owned(), port.ips.clone()),
            (CONTAINER_ID.to_owned(), port.container_id.clone()),
            (IFNAME.to_owned(), port.ifname.clone()),
            (LOGICAL_SWITCH.to_owned(), port.logical_switch.clone()),
        ]);
        let owner = BTreeMap::from([
            (CONTAINER_ID.to_owned(), port.container_id.clone()),
            (IFNAME.to_owned(), port.ifname.clone()),
        ]);
        self.plug_interface(&port.host_if, ids, owner).await
    }

    /// Plugs the node-link port `host_if` bound to logical port `iface_id` with MAC `mac`.
    pub async fn plug_node_link(
        &self,
        host_if: &str,
        iface_id: &str,
        mac: &str,
    ) -> Result<(), OvsError> {
        let ids = BTreeMap::from([
            (IFACE_ID.to_owned(), iface_id.to_owned()),
            ("attached-mac".to_owned(), mac.to_owned()),
            ("iface-status".to_owned(), "active".to_owned()),
            (NODE_LINK.to_owned(), iface_id.to_owned()),
        ]);
        let owner = BTreeMap::from([(NODE_LINK.to_owned(), iface_id.to_owned())]);
        self.plug_interface(host_if, ids, owner).await
    }

    /// The node-link ports in the database: interface name and logical port.
    pub fn node_link_ports(&self) -> Vec<(String, String)> {
        self.changes
            .replica()
            .table(Interface::NAME)
            .iter()
            .filter_map(|row| {
                Some((
                    row.get_str("name")?.to_owned(),
                    row.get_map_str("external_ids", NODE_LINK)?.to_owned(),
                ))
            })
            .collect()
    }

    /// The replica of the local database (to follow its changes).
    pub fn replica(&self) -> &ovsdb::Replica {
        self.changes.replica()
    }

    async fn plug_interface(
        &self,
        host_if: &str,
        ids: BTreeMap<String, String>,
        owner: BTreeMap<String, String>,
    ) -> Result<(), OvsError> {
        let existing = self.port_uuids(host_if).await?;
        let mut tx = TxnBuilder::new(vswitch::DATABASE);
        let interface = Interface {
            name: host_if.to_owned(),
            external_ids: ids,
            ..Default::default()
        };
        let iface = tx.insert(Interface::NAME, interface.to_row());
        let row = Port {
            name: host_if.to_owned(),
            external_ids: owner,
            ..Default::default()
        }
        .to_row()
        .with("interfaces", Value::set([iface]));
        let new_port = tx.insert(Port::NAME, row);
        let mut mutations = Vec::new();
        if !existing.is_empty() {
            mutations.push(Mutation::delete("ports", Value::set(existing)));
        }
        mutations.push(Mutation::insert("ports", Value::set([new_port])));
        tx.mutate(
            Bridge::NAME,
            vec![Condition::eq("name", self.bridge.as_str())],
            mutations,
        );
        let result = self.client.commit(&tx).await?;
        if result.results.last().and_then(|r| r.count()) != Some(1) {
            return Err(OvsError::NoBridge(self.bridge.clone()));
        }
        Ok(())
    }

    /// Uuids of the ports named `name` (read from the database, not the replica, so a port
    /// plugged a moment ago is found too).
    async fn port_uuids(&self, name: &str) -> Result<Vec<Uuid>, OvsError> {
        let mut tx = TxnBuilder::new(vswitch::DATABASE);
        tx.select(
            Port::NAME,
            vec![Condition::eq("name", name)],
            Some(vec!["_uuid".to_owned()]),
        );
        let result = self.client.commit(&tx).await?;
        Ok(result
            .results
            .first()
            .and_then(|r| r.rows())
            .unwrap_or_default()
            .iter()
            .filter_map(Row::uuid)
            .collect())
    }

    /// Removes the port named `host_if` from every bridge; whether there was one.
    pub async fn unplug(&self, host_if: &str) -> Result<bool, OvsError> {
        let uuids = self.port_uuids(host_if).await?;
        if uuids.is_empty() {
            return Ok(false);
        }
        let mut tx = TxnBuilder::new(vswitch::DATABASE);
        // Unreferenced ports (and their interfaces) are garbage-collected by the server.
        tx.mutate(
            Bridge::NAME,
            vec![],
            vec![Mutation::delete("ports", Value::set(uuids))],
        );
        self.client.commit(&tx).await?;
        Ok(true)
    }

    /// The interface named `host_if`, read from the database.
    pub async fn interface(&self, host_if: &str) -> Result<Option<Interface>, OvsError> {
        let mut tx = TxnBuilder::new(vswitch::DATABASE);
        tx.select(Interface::NAME, vec![Condition::eq("name", host_if)], None);
        let result = self.client.commit(&tx).await?;
        let rows = result
            .results
            .first()
            .and_then(|r| r.rows())
            .unwrap_or_default();
        Ok(rows.first().and_then(decode))
    }

    /// Waits at most `timeout` until ovn-controller marked interface `host_if` installed.
    pub async fn wait_installed(&self, host_if: &str, timeout: Duration) -> bool {
        self.changes
            .wait_for(timeout, |replica| {
                replica
                    .by_name(Interface::NAME, host_if)
                    .iter()
                    .any(|row| row.get_map_str("external_ids", OVN_INSTALLED) == Some("true"))
                    .then_some(())
            })
            .await
            .is_some()
    }

    /// Every pod port of ours in the database.
    pub fn owned_ports(&self) -> Vec<OwnedPort> {
        self.changes
            .replica()
            .table(Interface::NAME)
            .iter()
            .filter_map(|row| {
                Some(OwnedPort {
                    host_if: row.get_str("name")?.to_owned(),
                    container_id: row.get_map_str("external_ids", CONTAINER_ID)?.to_owned(),
                    ifname: row
                        .get_map_str("external_ids", IFNAME)
                        .unwrap_or_default()
                        .to_owned(),
                    ips: row
                        .get_map_str("external_ids", "ip")
                        .unwrap_or_default()
                        .split(',')
                        .filter_map(|ip| ip.trim().parse().ok())
                        .collect(),
                    logical_switch: row
                        .get_map_str("external_ids", LOGICAL_SWITCH)
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned),
                })
            })
            .collect()
    }
}
