//! Chassis set-up: the OVN settings of the local Open_vSwitch row and the integration
//! bridge, written with our OVSDB client (what `ovs-vsctl set Open_vSwitch . external_ids:…`
//! and `ovs-vsctl add-br br-int` would do).

use std::collections::BTreeMap;

use ovn::Table;
use ovn::vswitch::{self, Bridge, Interface, OpenVSwitch, Port};
use ovsdb::{Client, Condition, Mutation, Row, TxnBuilder, Value};

/// The chassis settings to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChassisSettings {
    /// `system-id`, written only when the row has none (an existing chassis keeps its id).
    pub system_id: String,
    /// `ovn-remote`: the Southbound database.
    pub ovn_remote: String,
    /// `ovn-encap-ip`: this node's tunnel endpoint.
    pub encap_ip: String,
    /// `ovn-encap-type`.
    pub encap_type: String,
    /// The integration bridge's name.
    pub bridge: String,
    /// The bridge's `datapath_type` (`system`, or `netdev` for the userspace datapath);
    /// anything but `system` is also written as `ovn-bridge-datapath-type`.
    pub datapath_type: String,
}

/// What the set-up found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChassisOutcome {
    /// The `system-id` in effect.
    pub system_id: String,
    /// Whether the bridge had to be created.
    pub bridge_created: bool,
}

/// Writes `settings` to the local database through `client`: the Open_vSwitch row (created
/// if the database has none) and the bridge (created with `fail_mode=secure` if missing,
/// else its `fail_mode` and `datapath_type` corrected).
pub async fn set_up(client: &Client, settings: &ChassisSettings) -> ovsdb::Result<ChassisOutcome> {
    let schema = client.get_schema(vswitch::DATABASE).await?;
    ovn::check_schema(&schema, vswitch::REQUIRED)?;
    let mut read = TxnBuilder::new(vswitch::DATABASE);
    read.select(OpenVSwitch::NAME, vec![], None);
    read.select(
        Bridge::NAME,
        vec![Condition::eq("name", settings.bridge.as_str())],
        Some(vec!["_uuid".to_owned()]),
    );
    let found = client.commit(&read).await?;
    let rows = |i: usize| {
        found
            .results
            .get(i)
            .and_then(|r| r.rows())
            .unwrap_or_default()
            .to_vec()
    };
    let root = rows(0).into_iter().next();
    let bridge_exists = !rows(1).is_empty();

    let system_id = root
        .as_ref()
        .and_then(|r| r.get_map_str("external_ids", "system-id"))
        .filter(|id| !id.is_empty())
        .map_or_else(|| settings.system_id.clone(), str::to_owned);
    let mut ids = BTreeMap::from([
        ("system-id".to_owned(), system_id.clone()),
        ("ovn-remote".to_owned(), settings.ovn_remote.clone()),
        ("ovn-encap-type".to_owned(), settings.encap_type.clone()),
        ("ovn-encap-ip".to_owned(), settings.encap_ip.clone()),
    ]);
    if settings.datapath_type != "system" {
        ids.insert(
            "ovn-bridge-datapath-type".to_owned(),
            settings.datapath_type.clone(),
        );
    }

    let mut tx = TxnBuilder::new(vswitch::DATABASE);
    let root_condition = match &root {
        Some(row) => {
            let uuid = row.uuid().ok_or_else(|| {
                ovsdb::Error::Protocol("Open_vSwitch row without _uuid".to_owned())
            })?;
            // Replace our keys, keep everybody else's.
            let keys: Vec<&str> = ids.keys().map(String::as_str).collect();
            tx.mutate(
                OpenVSwitch::NAME,
                vec![Condition::uuid(uuid)],
                vec![
                    Mutation::delete("external_ids", Value::set(keys)),
                    Mutation::insert("external_ids", Value::map(ids.clone())),
                ],
            );
            vec![Condition::uuid(uuid)]
        }
        None => {
            tx.insert(
                OpenVSwitch::NAME,
                OpenVSwitch {
                    external_ids: ids.clone(),
                    ..Default::default()
                }
                .to_row(),
            );
            vec![]
        }
    };
    if bridge_exists {
        tx.update(
            Bridge::NAME,
            vec![Condition::eq("name", settings.bridge.as_str())],
            Row::new()
                .with("fail_mode", "secure")
                .with("datapath_type", settings.datapath_type.as_str()),
        );
    } else {
        let iface = tx.insert(
            Interface::NAME,
            Interface {
                name: settings.bridge.clone(),
                type_: "internal".to_owned(),
                ..Default::default()
            }
            .to_row(),
        );
        let port = tx.insert(
            Port::NAME,
            Port {
                name: settings.bridge.clone(),
                ..Default::default()
            }
            .to_row()
            .with("interfaces", Value::set([iface])),
        );
        let bridge = tx.insert(
            Bridge::NAME,
            Bridge {
                name: settings.bridge.clone(),
                datapath_type: settings.datapath_type.clone(),
                fail_mode: Some("secure".to_owned()),
                other_config: BTreeMap::from([("disable-in-band".to_owned(), "true".to_owned())]),
                ..Default::default()
            }
            .to_row()
            .with("ports", Value::set([port])),
        );
        // `root_condition` is empty when the root row is inserted above: it is the only one.
        tx.mutate(
            OpenVSwitch::NAME,
            root_condition,
            vec![Mutation::insert("bridges", Value::set([bridge]))],
        );
    }
    client.commit(&tx).await?;
    Ok(ChassisOutcome {
        system_id,
        bridge_created: !bridge_exists,
    })
}
