//! Typed rows against a real OVN Northbound ovsdb-server: the schema check,
//! reading Neutron-shaped rows written by `ovn-nbctl`, and writing our own
//! through the gateway, whose owner conditions the server enforces.

use std::collections::BTreeMap;

use ovn::check_schema;
use ovn::nb::{self, LogicalRouter, LogicalRouterPort, LogicalSwitch};
use ovn::owned::owner::{self, Owner};
use ovn::owned::{Gateway, Mine, OwnedTxn};
use ovn::view::{self, View};
use ovsdb::{Client, ClientConfig, MonitorSpec, Schema};
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
    let spec = [
        view::index_table::<LogicalRouter>,
        view::index_table::<LogicalRouterPort>,
        view::index_table::<LogicalSwitch>,
    ]
    .iter()
    .fold(MonitorSpec::new(), |spec, index| index(spec));
    let replica = client.monitor(nb::DATABASE, spec).await.unwrap();
    replica.wait_synced().await.unwrap();
    let view = View::new(replica);

    let router = view.named::<LogicalRouter>(ROUTER).pop().unwrap();
    assert!(owner::is_neutron_router(&router.external_ids));
    assert!(!owner::is_ours(&router.external_ids));
    assert!(Mine::claim(router.clone()).is_none(), "never ours");
    assert_eq!(router.external_ids["neutron:router_name"], "router1");
    assert_eq!(router.options["always_learn_from_arp_request"], "false");
    assert_eq!(router.ports.len(), 1);

    let port_uuid = *router.ports.iter().next().unwrap();
    let port = view.get::<LogicalRouterPort>(port_uuid).unwrap();
    assert_eq!(port.name, LRP);
    assert_eq!(port.mac, "fa:16:3e:11:22:33");
    assert_eq!(port.networks.iter().collect::<Vec<_>>(), ["10.0.1.1/24"]);
    assert!(owner::check_name(&port.name).is_err());

    // Our own switch, written from a typed row through the gateway, reads
    // back equal, with our owner.
    let gateway = Gateway::new(client.clone());
    let net2 = Owner::subnet("net2");
    let ours = LogicalSwitch {
        name: "net2".into(),
        other_config: BTreeMap::from([("subnet".into(), "10.0.2.0/24".into())]),
        ..LogicalSwitch::default()
    };
    let mut txn = OwnedTxn::new();
    let name = txn.insert(&net2, &ours).unwrap();
    let uuid = gateway.commit(&txn).await.unwrap().uuid_of(&name).unwrap();
    // Bounded wait (a hang guard, not a speed assertion) for the monitor update.
    let back = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            if let Some(mine) = view.owned_by::<LogicalSwitch>(&net2).pop() {
                break mine;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("our switch reaches the replica");
    assert_eq!(back.uuid, uuid);
    assert_eq!(back.other_config, ours.other_config);
    assert_eq!(back.owner(), &net2);
    assert_eq!(back.external_ids, net2.external_ids());

    // The owner condition is checked by the server: a row that another
    // writer re-labelled is no longer written, even through a stale `Mine`.
    env.nbctl(&[
        "set",
        "Logical_Switch",
        "net2",
        "external_ids:\"rovn:object\"=other",
    ])
    .unwrap();
    let mut txn = OwnedTxn::new();
    let delete = txn.delete(&back);
    let committed = gateway.commit(&txn).await.unwrap();
    assert_eq!(committed.count(delete), Some(0), "not deleted");
    assert_eq!(view.named::<LogicalSwitch>("net2").len(), 1);
    env.nbctl(&[
        "set",
        "Logical_Switch",
        "net2",
        "external_ids:\"rovn:object\"=net2",
    ])
    .unwrap();
    let mut txn = OwnedTxn::new();
    let delete = txn.delete(&back);
    assert_eq!(gateway.commit(&txn).await.unwrap().count(delete), Some(1));
}
