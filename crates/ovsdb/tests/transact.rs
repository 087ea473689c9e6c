//! Every transact operation against a real standalone NB ovsdb-server.

use std::time::Duration;

use ovsdb::{
    Client, ClientConfig, Condition, Error, Function, Mutation, Mutator, Operation,
    OperationResult, Row, TxnBuilder, Value, WaitUntil,
};
use testenv::ovn::OvnEnv;

const NB: &str = "OVN_Northbound";

async fn client(env: &OvnEnv) -> Client {
    Client::connect(ClientConfig::from_remotes(&env.nb_remote()).unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn insert_with_named_uuid_cross_reference_select_update_mutate_delete() {
    let env = OvnEnv::builder().start().unwrap();
    let c = client(&env).await;

    // insert a switch and a port referencing each other through a named-uuid.
    let mut tx = TxnBuilder::new(NB);
    let lsp = tx.insert(
        "Logical_Switch_Port",
        Row::new()
            .with("name", "p1")
            .with("addresses", Value::set(["00:00:00:00:00:01 10.0.0.2"])),
    );
    let ls = tx.insert(
        "Logical_Switch",
        Row::new()
            .with("name", "sw0")
            .with("ports", Value::set([lsp.clone()]))
            .with("external_ids", Value::map([("owner", "test")])),
    );
    tx.comment("insert sw0 with p1");
    let res = c.commit(&tx).await.unwrap();
    let ls_uuid = res.uuid_of(&ls).unwrap();
    let lsp_uuid = res.uuid_of(&lsp).unwrap();
    assert_eq!(
        env.nbctl(&["get", "Logical_Switch", "sw0", "ports"])
            .unwrap()
            .trim(),
        format!("[{lsp_uuid}]")
    );

    // select
    let rows = c
        .transact(
            NB,
            vec![Operation::Select {
                table: "Logical_Switch".into(),
                conditions: vec![Condition::eq("name", "sw0")],
                columns: Some(vec!["_uuid".into(), "name".into(), "ports".into()]),
            }],
        )
        .await
        .unwrap();
    let sel = rows[0].rows().unwrap();
    assert_eq!(sel.len(), 1);
    assert_eq!(sel[0].uuid(), Some(ls_uuid));
    assert_eq!(sel[0].get_uuids("ports"), vec![lsp_uuid]);

    // update
    let r = c
        .transact(
            NB,
            vec![Operation::Update {
                table: "Logical_Switch".into(),
                conditions: vec![Condition::uuid(ls_uuid)],
                row: Row::new().with("external_ids", Value::map([("owner", "other")])),
            }],
        )
        .await
        .unwrap();
    assert_eq!(r[0], OperationResult::Count(1));
    assert_eq!(
        env.nbctl(&["get", "Logical_Switch", "sw0", "external_ids:owner"])
            .unwrap()
            .trim(),
        "other"
    );

    // mutate: add a second port created in the same transaction, and a map key.
    let mut tx = TxnBuilder::new(NB);
    let p2 = tx.insert("Logical_Switch_Port", Row::new().with("name", "p2"));
    tx.mutate(
        "Logical_Switch",
        vec![Condition::eq("name", "sw0")],
        vec![
            Mutation::insert("ports", Value::set([p2.clone()])),
            Mutation::insert("external_ids", Value::map([("k", "v")])),
        ],
    );
    let res = c.commit(&tx).await.unwrap();
    assert_eq!(res.results[1], OperationResult::Count(1));
    let ports = env
        .nbctl(&["--bare", "--columns=name", "list", "Logical_Switch_Port"])
        .unwrap();
    assert!(ports.contains("p2"));
    assert_eq!(
        env.nbctl(&["get", "Logical_Switch", "sw0", "external_ids:k"])
            .unwrap()
            .trim(),
        "v"
    );

    // integer mutation on a real column: NB_Global.nb_cfg += 5.
    let before: i64 = env
        .nbctl(&["get", "NB_Global", ".", "nb_cfg"])
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let r = c
        .transact(
            NB,
            vec![Operation::Mutate {
                table: "NB_Global".into(),
                conditions: vec![],
                mutations: vec![Mutation::new("nb_cfg", Mutator::Add, 5i64)],
            }],
        )
        .await
        .unwrap();
    assert_eq!(r[0].count(), Some(1));
    assert_eq!(
        env.nbctl(&["get", "NB_Global", ".", "nb_cfg"])
            .unwrap()
            .trim(),
        (before + 5).to_string()
    );

    // delete: remove p2 from the switch and the switch, port rows are garbage-collected.
    let r = c
        .transact(
            NB,
            vec![Operation::Delete {
                table: "Logical_Switch".into(),
                conditions: vec![Condition::new("name", Function::Eq, "sw0")],
            }],
        )
        .await
        .unwrap();
    assert_eq!(r[0].count(), Some(1));
    assert_eq!(env.nbctl(&["ls-list"]).unwrap().trim(), "");
    assert_eq!(
        env.nbctl(&["--bare", "--columns=name", "list", "Logical_Switch_Port"])
            .unwrap()
            .trim(),
        ""
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn wait_comment_abort_and_typed_errors() {
    let env = OvnEnv::builder().start().unwrap();
    let c = client(&env).await;
    env.nbctl(&["ls-add", "sw1"]).unwrap();

    // wait (until == with the current rows) succeeds at once.
    let wait = |until, name: &str| Operation::Wait {
        table: "Logical_Switch".into(),
        conditions: vec![Condition::eq("name", "sw1")],
        columns: vec!["name".into()],
        until,
        rows: vec![Row::new().with("name", name)],
        timeout_ms: Some(0),
    };
    let r = c
        .transact(
            NB,
            vec![
                wait(WaitUntil::Equal, "sw1"),
                Operation::Comment("waited".into()),
            ],
        )
        .await
        .unwrap();
    assert_eq!(r, vec![OperationResult::Empty, OperationResult::Empty]);

    // wait that cannot be satisfied with timeout 0 fails with "timed out" at index 0.
    let e = c
        .transact(NB, vec![wait(WaitUntil::Equal, "other")])
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Txn { index: 0, error, .. } if error == "timed out"),
        "{e:?}"
    );
    let r = c
        .transact(NB, vec![wait(WaitUntil::NotEqual, "other")])
        .await
        .unwrap();
    assert_eq!(r, vec![OperationResult::Empty]);

    // abort → "aborted" at the abort's index, nothing written.
    let e = c
        .transact(
            NB,
            vec![
                Operation::Insert {
                    table: "Logical_Switch".into(),
                    row: Row::new().with("name", "never"),
                    uuid_name: None,
                },
                Operation::Abort,
            ],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Txn { index: 1, error, .. } if error == "aborted"),
        "{e:?}"
    );
    assert!(!env.nbctl(&["ls-list"]).unwrap().contains("never"));

    // referential integrity: a port referencing a missing uuid → commit-time error.
    let e = c
        .transact(
            NB,
            vec![Operation::Mutate {
                table: "Logical_Switch".into(),
                conditions: vec![Condition::eq("name", "sw1")],
                mutations: vec![Mutation::insert(
                    "ports",
                    Value::set([ovsdb::Uuid::new_v4()]),
                )],
            }],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Txn { index: 1, error, .. } if error == "referential integrity violation"),
        "{e:?}"
    );

    // constraint violation: NB indexes Address_Set (a root table) by name.
    let lrp = |n: &str| Operation::Insert {
        table: "Address_Set".into(),
        row: Row::new().with("name", n),
        uuid_name: None,
    };
    let e = c
        .transact(NB, vec![lrp("dup"), lrp("dup")])
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Txn { error, .. } if error == "constraint violation"),
        "{e:?}"
    );

    // unknown table → typed error from the server.
    let e = c
        .transact(
            NB,
            vec![Operation::Delete {
                table: "No_Such_Table".into(),
                conditions: vec![],
            }],
        )
        .await
        .unwrap_err();
    assert!(matches!(&e, Error::Txn { index: 0, .. }), "{e:?}");

    // unknown database → JSON-RPC error reply... or a transaction error, both typed.
    let e = c.transact("Nope", vec![]).await.unwrap_err();
    assert!(matches!(&e, Error::Rpc { .. } | Error::Txn { .. }), "{e:?}");

    // schema checks name the missing column.
    let schema = c.get_schema(NB).await.unwrap();
    schema
        .require(&[("Logical_Switch", &["name", "ports", "external_ids"])])
        .unwrap();
    let e = schema
        .require(&[("Logical_Switch", &["name", "no_such_column"])])
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "database OVN_Northbound has no column Logical_Switch.no_such_column"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn assert_lock_and_lock_steal_unlock_between_two_clients() {
    let env = OvnEnv::builder().start().unwrap();
    let a = client(&env).await;
    let b = client(&env).await;
    let guard = Duration::from_secs(30);

    let mut la = a.lock("leader").await.unwrap();
    tokio::time::timeout(guard, la.wait_locked())
        .await
        .unwrap()
        .unwrap();
    let mut lb = b.lock("leader").await.unwrap();
    assert!(!lb.is_locked(), "lock is held by a");

    let assert_and_comment = |lock: &str| {
        vec![
            Operation::Assert { lock: lock.into() },
            Operation::Comment("under lock".into()),
        ]
    };
    a.transact(NB, assert_and_comment("leader")).await.unwrap();
    let e = b
        .transact(NB, assert_and_comment("leader"))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Txn { index: 0, error, .. } if error == "not owner"),
        "{e:?}"
    );

    // a releases → b (queued) gets a `locked` notification.
    a.unlock("leader").await.unwrap();
    tokio::time::timeout(guard, lb.wait_locked())
        .await
        .unwrap()
        .unwrap();
    b.transact(NB, assert_and_comment("leader")).await.unwrap();

    // a steals → b gets `stolen`.
    let mut la = a.steal("leader").await.unwrap();
    tokio::time::timeout(guard, la.wait_locked())
        .await
        .unwrap()
        .unwrap();
    tokio::time::timeout(guard, lb.wait_lost())
        .await
        .unwrap()
        .unwrap();
    a.transact(NB, assert_and_comment("leader")).await.unwrap();
    assert!(b.transact(NB, assert_and_comment("leader")).await.is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn lock_is_requested_again_after_reconnect() {
    let env = std::sync::Arc::new(OvnEnv::builder().start().unwrap());
    let mut config = ClientConfig::from_remotes(&env.nb_remote()).unwrap();
    config.backoff_max = Duration::from_millis(300);
    let a = Client::connect(config).await.unwrap();
    let guard = Duration::from_secs(60);
    let mut lock = a.lock("owner").await.unwrap();
    tokio::time::timeout(guard, lock.wait_locked())
        .await
        .unwrap()
        .unwrap();
    let e = env.clone();
    tokio::task::spawn_blocking(move || e.nb_restart().unwrap())
        .await
        .unwrap();
    // The new connection asks for the lock before any request of ours is sent on it, so the
    // server grants it before it runs the assert.
    tokio::time::timeout(guard, lock.wait_locked())
        .await
        .unwrap()
        .unwrap();
    a.transact(
        NB,
        vec![
            Operation::Assert {
                lock: "owner".into(),
            },
            Operation::Comment("still the owner".into()),
        ],
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_connection_survives_its_own_inactivity_probes() {
    let env = OvnEnv::builder().start().unwrap();
    let mut config = ClientConfig::from_remotes(&env.nb_remote()).unwrap();
    config.probe_interval = Some(Duration::from_millis(50));
    let c = Client::connect(config).await.unwrap();
    let replica = c
        .monitor(NB, ovsdb::MonitorSpec::new().table("NB_Global"))
        .await
        .unwrap();
    // Idle for many probe intervals: the server answers each echo, the connection stays.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let rows = c
        .transact(NB, vec![Operation::Comment("still here".into())])
        .await
        .unwrap();
    assert_eq!(rows, vec![OperationResult::Empty]);
    // Never reconnected: the monitor was synced once only.
    assert_eq!(replica.sync_stats().full, 1);
    assert!(replica.is_synced());
}
