//! Typed rows against a real OVN Northbound ovsdb-server: the schema check,
//! reading Neutron-shaped rows written by `ovn-nbctl`, and writing our own.

use std::collections::BTreeMap;

use ovn::nb::{self, LogicalRouter, LogicalRouterPort, LogicalSwitch};
use ovn::ownership::{self, our_external_ids};
use ovn::{Table, check_schema};
use ovsdb::{Client, ClientConfig, MonitorSpec, Schema, TxnBuilder};
use testenv::ovn::OvnEnv;

const ROUTER: &str = "neutron-22040ed5-0598-4f77-bffd-e7fd4db47e93";
const LRP: &str = "lrp-5f1d3b1e-7c7a-4d55-9d7b-0c1c2d3e4f50";

async fn connect(env: &OvnEnv) -> Client {
    Client::connect(ClientConfig::from_remotes(&env.nb_remote()).unwrap())
        .await
        .expect("connect to NB")
}

#[tokio::test]
async fn schema_check_accepts_real_nb_and_names_a_missing_column() {
    let env = OvnEnv::builder().start().expect("start NB");
    let client = connect(&env).await;
    let schema = client.get_schema(nb::DATABASE).await.unwrap();
    check_schema(&schema, nb::REQUIRED).expect("OVN 23.03 has every column we use");

    // The same schema without Logical_Switch_Port.port_security.
    let mut raw = client
        .request("get_schema", serde_json::json!([nb::DATABASE]))
        .await
        .unwrap();
    raw["tables"]["Logical_Switch_Port"]["columns"]
        .as_object_mut()
        .unwrap()
        .remove("port_security");
    let older = Schema::from_json(&raw).unwrap();
    let err = check_schema(&older, nb::REQUIRED).unwrap_err().to_string();
    assert!(
        err.contains("Logical_Switch_Port") && err.contains("port_security"),
        "error must name the missing column: {err}"
    );
}

#[test]
fn vswitch_schema_has_every_column_we_use() {
    let text = std::fs::read_to_string("/usr/share/openvswitch/vswitch.ovsschema")
        .expect("openvswitch-common installs the schema");
    let schema = Schema::from_json(&serde_json::from_str(&text).unwrap()).unwrap();
    check_schema(&schema, ovn::vswitch::REQUIRED).unwrap();
}

#[tokio::test]
async fn neutron_rows_read_as_typed_rows_and_ours_write_back() {
    let env = OvnEnv::builder().start().expect("start NB");
    env.nbctl(&[
        "--",
        "lr-add",
        ROUTER,
        "--",
        "set",
        "Logical_Router",
        ROUTER,
        r#"external_ids:"neutron:router_name"=router1"#,
        r#"external_ids:"neutron:revision_number"=3"#,
        "options:always_learn_from_arp_request=false",
        "--",
        "lrp-add",
        ROUTER,
        LRP,
        "fa:16:3e:11:22:33",
        "10.0.1.1/24",
        "--",
        "set",
        "Logical_Router_Port",
        LRP,
        r#"external_ids:"neutron:network_name"=neutron-0d8f6a4e-6a37-4b9c-a1c0-3f5c1b2a9e01"#,
    ])
    .unwrap();

    let client = connect(&env).await;
    let replica = client
        .monitor(
            nb::DATABASE,
            MonitorSpec::new()
                .table_columns(LogicalRouter::NAME, LogicalRouter::COLUMNS)
                .table_columns(LogicalRouterPort::NAME, LogicalRouterPort::COLUMNS)
                .table_columns(LogicalSwitch::NAME, LogicalSwitch::COLUMNS),
        )
        .await
        .unwrap();
    replica.wait_synced().await.unwrap();

    let row = replica.by_name(LogicalRouter::NAME, ROUTER).pop().unwrap();
    let router = LogicalRouter::from_row(row.uuid().unwrap(), &row).unwrap();
    assert!(ownership::is_neutron_router(&router.external_ids));
    assert!(!ownership::is_ours(&router.external_ids));
    assert_eq!(router.external_ids["neutron:router_name"], "router1");
    assert_eq!(router.options["always_learn_from_arp_request"], "false");
    assert_eq!(router.ports.len(), 1);

    let port_uuid = *router.ports.iter().next().unwrap();
    let port = LogicalRouterPort::from_row(port_uuid, &replica.get(port_uuid).unwrap()).unwrap();
    assert_eq!(port.name, LRP);
    assert_eq!(port.mac, "fa:16:3e:11:22:33");
    assert_eq!(port.networks.iter().collect::<Vec<_>>(), ["10.0.1.1/24"]);
    assert!(ovn::ownership::check_name(&port.name).is_err());

    // Our own switch, written from a typed row, reads back equal.
    let ours = LogicalSwitch {
        name: "net2".into(),
        other_config: BTreeMap::from([("subnet".into(), "10.0.2.0/24".into())]),
        external_ids: our_external_ids("subnet", "net2"),
        ..LogicalSwitch::default()
    };
    let mut tx = TxnBuilder::new(nb::DATABASE);
    let name = tx.insert(LogicalSwitch::NAME, ours.to_row());
    let result = client.commit(&tx).await.unwrap();
    let uuid = result.uuid_of(&name).unwrap();
    // Bounded wait (a hang guard, not a speed assertion) for the monitor update.
    let back = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            if let Some(row) = replica.get(uuid) {
                break LogicalSwitch::from_row(uuid, &row).unwrap();
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("our switch reaches the replica");
    assert_eq!(back, LogicalSwitch { uuid, ..ours });
    assert!(ownership::is_ours(&back.external_ids));
}
