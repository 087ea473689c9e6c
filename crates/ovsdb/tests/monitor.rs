//! Monitors against a real NB ovsdb-server: rows written by `ovn-nbctl`, indexes, and a server
//! restart under an active monitor.

mod common;

use std::sync::Arc;

use common::{EventModel, HANG_GUARD, blocking, replica_dump, wait_for};
use ovsdb::{Client, ClientConfig, Index, MonitorSpec, RowEvent};
use testenv::ovn::{Component, OvnEnv};

const NB: &str = "OVN_Northbound";

#[tokio::test(flavor = "multi_thread")]
async fn monitor_sees_rows_written_by_nbctl() {
    let env = Arc::new(OvnEnv::builder().start().unwrap());
    let c = Client::connect(ClientConfig::from_remotes(&env.nb_remote()).unwrap())
        .await
        .unwrap();
    let schema = c.get_schema(NB).await.unwrap();
    let replica = c
        .monitor(
            NB,
            MonitorSpec::all_tables(&schema)
                .index("Logical_Switch", Index::map_value("external_ids", "owner"))
                .index(
                    "Logical_Switch_Port",
                    Index::map_value("options", "router-port"),
                ),
        )
        .await
        .unwrap();
    assert!(replica.is_synced());
    let mut events = replica.subscribe();

    let e = env.clone();
    blocking(move || {
        e.nbctl(&[
            "ls-add",
            "sw0",
            "--",
            "set",
            "Logical_Switch",
            "sw0",
            "external_ids:owner=k8s",
        ])
        .unwrap();
        e.nbctl(&["lsp-add", "sw0", "p1"]).unwrap();
        e.nbctl(&[
            "lr-add",
            "lr0",
            "--",
            "lrp-add",
            "lr0",
            "lrp0",
            "00:00:00:00:01:01",
            "10.0.0.1/24",
        ])
        .unwrap();
        e.nbctl(&[
            "lsp-add",
            "sw0",
            "sw0-lr0",
            "--",
            "lsp-set-type",
            "sw0-lr0",
            "router",
            "--",
            "lsp-set-options",
            "sw0-lr0",
            "router-port=lrp0",
        ])
        .unwrap();
    })
    .await;

    wait_for(&replica, "sw0 with two ports", |r| {
        r.by_name("Logical_Switch", "sw0")
            .first()
            .is_some_and(|ls| ls.get_uuids("ports").len() == 2)
    })
    .await;
    let ls = replica.by_name("Logical_Switch", "sw0")[0].clone();
    assert_eq!(
        replica.find(
            "Logical_Switch",
            &Index::map_value("external_ids", "owner"),
            "k8s"
        ),
        vec![ls.clone()]
    );
    let rp = replica.find(
        "Logical_Switch_Port",
        &Index::map_value("options", "router-port"),
        "lrp0",
    );
    // An index that was not declared answers by a scan.
    assert_eq!(
        replica.find(
            "Logical_Switch_Port",
            &Index::map_value("external_ids", "none"),
            "x"
        ),
        Vec::new()
    );
    assert_eq!(rp.len(), 1);
    assert_eq!(rp[0].get_str("name"), Some("sw0-lr0"));
    assert_eq!(rp[0].get_str("type"), Some("router"));
    assert_eq!(replica.get(ls.uuid().unwrap()), Some(ls.clone()));
    assert_eq!(replica.by_name("Logical_Router_Port", "lrp0").len(), 1);

    let e = env.clone();
    let dump = blocking(move || e.dump_nb().unwrap()).await;
    assert_eq!(replica_dump(&replica), dump);

    // The events seen so far rebuild the same rows.
    let mut inserted = 0;
    while let Ok(ev) = events.try_recv() {
        // ovn-nbctl also creates the NB_Global row on first use.
        if matches!(ev, RowEvent::Insert { .. }) && ev.table() != "NB_Global" {
            inserted += 1;
        }
    }
    // sw0, p1, lr0, lrp0, sw0-lr0
    assert_eq!(inserted, 5);

    let e = env.clone();
    blocking(move || e.nbctl(&["ls-del", "sw0"]).unwrap()).await;
    wait_for(&replica, "sw0 deleted", |r| {
        r.by_name("Logical_Switch", "sw0").is_empty() && r.count("Logical_Switch_Port") == 0
    })
    .await;
    let mut deleted = Vec::new();
    while let Ok(ev) = tokio::time::timeout(HANG_GUARD, events.recv()).await {
        let ev = ev.unwrap();
        if let RowEvent::Delete { old, table } = ev {
            deleted.push((table, old.get_str("name").unwrap_or_default().to_owned()));
        }
        if deleted.len() == 3 {
            break;
        }
    }
    deleted.sort();
    assert_eq!(
        deleted,
        vec![
            ("Logical_Switch".to_owned(), "sw0".to_owned()),
            ("Logical_Switch_Port".to_owned(), "p1".to_owned()),
            ("Logical_Switch_Port".to_owned(), "sw0-lr0".to_owned()),
        ]
    );
}

/// The ptcp listener of the standalone server, as `ovsdb-server/list-remotes` names it.
fn tcp_listener(env: &OvnEnv) -> String {
    env.appctl(Component::Nb, &["ovsdb-server/list-remotes"])
        .unwrap()
        .lines()
        .find(|l| l.starts_with("ptcp:"))
        .expect("ptcp remote")
        .trim()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn server_restart_under_active_monitor_resyncs_exactly_the_difference() {
    let env = Arc::new(OvnEnv::builder().nb_tcp().start().unwrap());
    let mut config = ClientConfig::from_remotes(&env.nb_tcp_remote().unwrap()).unwrap();
    config.backoff_max = std::time::Duration::from_millis(500);
    let c = Client::connect(config).await.unwrap();
    let schema = c.get_schema(NB).await.unwrap();
    let spec = MonitorSpec::all_tables(&schema);
    let tables: Vec<String> = spec.tables.iter().map(|(t, _)| t.clone()).collect();

    // Rows before the monitor starts: seen as inserts by the consumer.
    let e = env.clone();
    blocking(move || {
        e.nbctl(&["ls-add", "keep", "--", "lsp-add", "keep", "keep-p"])
            .unwrap();
        e.nbctl(&["ls-add", "change"]).unwrap();
        e.nbctl(&["ls-add", "gone", "--", "lsp-add", "gone", "gone-p"])
            .unwrap();
    })
    .await;
    let replica = c.monitor(NB, spec).await.unwrap();
    let mut model = EventModel::default();
    let (snapshot, mut events) = replica.snapshot_and_subscribe();
    for (table, rows) in snapshot {
        for new in rows {
            model.apply(RowEvent::Insert {
                table: table.clone(),
                new,
            });
        }
    }
    let initial = model.events;

    // Cut our client off (remove its listener), change the database through the unix socket,
    // then restart the server: the client must resync and report exactly the difference.
    let e = env.clone();
    blocking(move || {
        let ptcp = tcp_listener(&e);
        e.appctl(Component::Nb, &["ovsdb-server/remove-remote", &ptcp])
            .unwrap();
        e.nbctl(&["ls-add", "new", "--", "lsp-add", "new", "new-p"])
            .unwrap();
        e.nbctl(&["set", "Logical_Switch", "change", "external_ids:x=y"])
            .unwrap();
        e.nbctl(&["ls-del", "gone"]).unwrap();
        e.nb_restart().unwrap();
    })
    .await;
    // More changes after the restart, picked up by the resumed monitor.
    let e = env.clone();
    blocking(move || e.nbctl(&["lsp-add", "keep", "keep-p2"]).unwrap()).await;

    let e = env.clone();
    tokio::time::timeout(HANG_GUARD, async {
        loop {
            tokio::select! {
                ev = events.recv() => model.apply(ev.unwrap()),
                _ = tokio::time::sleep(std::time::Duration::from_millis(20)) => {}
            }
            let done = replica.is_synced()
                && !replica.by_name("Logical_Switch_Port", "keep-p2").is_empty()
                && events.is_empty();
            if done {
                break;
            }
        }
    })
    .await
    .expect("hang guard: resync events");
    let dump = blocking(move || e.dump_nb().unwrap()).await;
    assert_eq!(replica_dump(&replica), dump, "replica equals the server");
    assert_eq!(model.dump(&tables), dump, "events rebuild the server");
    // new (LS insert, LSP insert), change (modify), gone (LS delete, LSP delete),
    // keep-p2 (LSP insert, keep modify); nothing else, nothing twice.
    assert_eq!(model.events - initial, 7, "exact number of change events");
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelled_monitor_gets_no_more_changes() {
    let env = Arc::new(OvnEnv::builder().start().unwrap());
    let c = Client::connect(ClientConfig::from_remotes(&env.nb_remote()).unwrap())
        .await
        .unwrap();
    let spec = MonitorSpec::new().table("Logical_Switch");
    let cancelled = c.monitor(NB, spec.clone()).await.unwrap();
    let live = c.monitor(NB, spec).await.unwrap();
    c.cancel_monitor(&cancelled).await.unwrap();
    let e = env.clone();
    blocking(move || e.nbctl(&["ls-add", "after-cancel"]).unwrap()).await;
    wait_for(&live, "after-cancel", |r| r.count("Logical_Switch") == 1).await;
    // The server answered monitor_cancel before the write, so nothing can still arrive.
    assert_eq!(cancelled.count("Logical_Switch"), 0);
    assert!(!cancelled.is_synced());
}

/// Optional columns (`min 0, max 1`) are sent as their new value in update2/update3
/// (`"up": true`, `"up": ["set", []]`), not as elements to toggle.
#[tokio::test(flavor = "multi_thread")]
async fn optional_columns_follow_the_server() {
    let env = Arc::new(OvnEnv::builder().start().unwrap());
    let c = Client::connect(ClientConfig::from_remotes(&env.nb_remote()).unwrap())
        .await
        .unwrap();
    let replica = c
        .monitor(
            NB,
            MonitorSpec::new().table_columns("Logical_Switch_Port", &["name", "up"]),
        )
        .await
        .unwrap();
    let up = |r: &ovsdb::Replica| {
        r.by_name("Logical_Switch_Port", "p")
            .first()
            .and_then(|row| row.get("up").cloned())
    };
    for (value, expected) in [
        ("up=false", Some(false)),
        ("up=true", Some(true)),
        ("up=false", Some(false)),
        ("up=[]", None),
    ] {
        let e = env.clone();
        blocking(move || {
            e.nbctl(&[
                "--may-exist",
                "ls-add",
                "s",
                "--",
                "--may-exist",
                "lsp-add",
                "s",
                "p",
                "--",
                "set",
                "Logical_Switch_Port",
                "p",
                value,
            ])
            .unwrap()
        })
        .await;
        wait_for(&replica, value, |r| {
            up(r).is_some_and(|v| {
                v.atoms().len() <= 1 && v.atoms().first().and_then(|a| a.as_bool()) == expected
            })
        })
        .await;
    }
}
