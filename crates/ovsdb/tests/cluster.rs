//! Leader-only client on a 3-member RAFT NB cluster: killing the leader in the middle of a
//! stream of transactions.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::{EventModel, HANG_GUARD, blocking, replica_dump, wait_for};
use ovsdb::{
    Client, ClientConfig, Condition, Error, MonitorSpec, Mutation, Operation, Row, RowEvent,
    TxnBuilder, Value,
};
use testenv::ovn::OvnEnv;
use testenv::poll::{wait_until, wait_until_async};

const NB: &str = "OVN_Northbound";

fn insert_address_set(name: &str) -> Vec<Operation> {
    vec![Operation::Insert {
        table: "Address_Set".into(),
        row: Row::new().with("name", name),
        uuid_name: None,
    }]
}

#[tokio::test(flavor = "multi_thread")]
async fn client_follows_new_leader_and_keeps_every_acknowledged_transaction() {
    let env = Arc::new(blocking(|| OvnEnv::builder().nb_cluster(3).start().unwrap()).await);
    let remotes = env.nb_remotes();
    let mut config = ClientConfig::from_remotes(&env.nb_remote())
        .unwrap()
        .with_leader_only(true);
    config.backoff_max = std::time::Duration::from_millis(500);
    let c = Client::connect(config).await.unwrap();

    let e = env.clone();
    let leader = blocking(move || e.nb_leader().unwrap()).await;
    assert_eq!(
        c.current_remote().unwrap().to_string(),
        remotes[leader],
        "leader-only client is on the leader"
    );

    // A stream of transactions from 4 concurrent writers; the leader is killed after 50.
    let acked = Arc::new(std::sync::Mutex::new(BTreeSet::new()));
    let failed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let kill_after = 50;
    let total = 400;
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (killed_tx, killed_rx) = tokio::sync::watch::channel(false);
    let mut writers = Vec::new();
    for _ in 0..4 {
        let (c, acked, failed, next) = (c.clone(), acked.clone(), failed.clone(), next.clone());
        let killed = killed_rx.clone();
        writers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= total {
                    break;
                }
                if i == kill_after + 10 {
                    // Keep writing only once the kill happened, so the stream straddles it.
                    let mut k = killed.clone();
                    k.wait_for(|k| *k).await.unwrap();
                }
                let name = format!("as{i}");
                match c.transact(NB, insert_address_set(&name)).await {
                    Ok(_) => {
                        acked.lock().unwrap().insert(name);
                    }
                    // Outcome unknown (connection lost) or refused while the cluster elects.
                    Err(
                        Error::Disconnected | Error::Rpc { .. } | Error::Txn { .. } | Error::Io(_),
                    ) => {
                        failed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    Err(e) => panic!("unexpected error {e:?}"),
                }
            }
        }));
    }
    wait_until_async(
        HANG_GUARD,
        "the first transactions acknowledged",
        || async { acked.lock().unwrap().len() >= kill_after },
    )
    .await
    .unwrap();
    let e = env.clone();
    blocking(move || e.nb_kill_member(leader).unwrap()).await;
    killed_tx.send_replace(true);
    for w in writers {
        tokio::time::timeout(HANG_GUARD, w)
            .await
            .expect("hang guard: writers")
            .unwrap();
    }

    let e = env.clone();
    let new_leader = blocking(move || e.nb_leader().unwrap()).await;
    assert_ne!(new_leader, leader);
    assert_eq!(
        c.current_remote().unwrap().to_string(),
        remotes[new_leader],
        "client moved to the new leader"
    );
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > kill_after + 100,
        "writes continued after the kill: {} acked, {} failed",
        acked.len(),
        failed.load(std::sync::atomic::Ordering::SeqCst)
    );
    let e = env.clone();
    let names = blocking(move || {
        e.nbctl(&["--bare", "--columns=name", "list", "Address_Set"])
            .unwrap()
    })
    .await;
    let in_db: BTreeSet<String> = names.split_whitespace().map(str::to_owned).collect();
    let lost: Vec<_> = acked.difference(&in_db).collect();
    assert!(lost.is_empty(), "acknowledged but missing: {lost:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn monitor_resumes_on_another_member_with_exactly_the_missed_changes() {
    let env = Arc::new(blocking(|| OvnEnv::builder().nb_cluster(3).start().unwrap()).await);
    let remotes = env.nb_remotes();
    let mut config = ClientConfig::from_remotes(&env.nb_remote()).unwrap();
    config.backoff_max = std::time::Duration::from_millis(500);
    let c = Client::connect(config).await.unwrap();
    let schema = c.get_schema(NB).await.unwrap();
    let spec = MonitorSpec::all_tables(&schema);
    let tables: Vec<String> = spec.tables.iter().map(|(t, _)| t.clone()).collect();

    let e = env.clone();
    blocking(move || {
        e.nbctl(&["ls-add", "keep", "--", "lsp-add", "keep", "keep-p"])
            .unwrap();
        e.nbctl(&["ls-add", "gone"]).unwrap();
    })
    .await;
    let replica = c.monitor(NB, spec).await.unwrap();
    wait_for(&replica, "initial rows", |r| {
        r.by_name("Logical_Switch", "gone").len() == 1
    })
    .await;
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
    assert_eq!(replica.sync_stats().full, 1);

    // Kill the member we are connected to, change the database meanwhile.
    let on = c.current_remote().unwrap().to_string();
    let member = remotes.iter().position(|r| *r == on).unwrap();
    let e = env.clone();
    blocking(move || e.nb_kill_member(member).unwrap()).await;
    // (ovn-nbctl gives up on a remote list whose first member is down: write with a second
    // leader-only client instead.)
    let mut wconfig = ClientConfig::from_remotes(&env.nb_remote())
        .unwrap()
        .with_leader_only(true);
    wconfig.backoff_max = std::time::Duration::from_millis(500);
    let writer = Client::connect(wconfig).await.unwrap();
    let mut tx = TxnBuilder::new(NB);
    tx.insert("Logical_Switch", Row::new().with("name", "new"));
    tx.delete("Logical_Switch", vec![Condition::eq("name", "gone")]);
    tx.mutate(
        "Logical_Switch",
        vec![Condition::eq("name", "keep")],
        vec![Mutation::insert("external_ids", Value::map([("x", "y")]))],
    );
    writer.commit(&tx).await.unwrap();

    tokio::time::timeout(HANG_GUARD, async {
        loop {
            tokio::select! {
                ev = events.recv() => model.apply(ev.unwrap()),
                _ = tokio::time::sleep(std::time::Duration::from_millis(20)) => {}
            }
            let done = replica.is_synced()
                && replica.by_name("Logical_Switch", "keep")[0].get_map_str("external_ids", "x")
                    == Some("y")
                && replica.by_name("Logical_Switch", "gone").is_empty()
                && events.is_empty();
            if done {
                break;
            }
        }
    })
    .await
    .expect("hang guard: resumed events");
    assert_ne!(c.current_remote().unwrap().to_string(), on);
    let stats = replica.sync_stats();
    assert_eq!(stats.resumed, 1, "{stats:?}");
    assert_eq!(stats.full, 1, "{stats:?}");
    let e = env.clone();
    let dump = blocking(move || e.dump_nb().unwrap()).await;
    assert_eq!(replica_dump(&replica), dump);
    assert_eq!(model.dump(&tables), dump);
    // new (insert), gone (delete), keep (modify).
    assert_eq!(model.events - initial, 3);
}

fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap());
    nix::sys::signal::kill(pid, sig).unwrap();
}

/// Resumes a stopped process when dropped, so a failing test cannot leave it frozen.
struct ResumeOnDrop(u32);

impl Drop for ResumeOnDrop {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.0).unwrap_or(0));
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn leader_only_client_leaves_a_server_that_lost_leadership() {
    let env = Arc::new(blocking(|| OvnEnv::builder().nb_cluster(3).start().unwrap()).await);
    let remotes = env.nb_remotes();
    let mut config = ClientConfig::from_remotes(&env.nb_remote())
        .unwrap()
        .with_leader_only(true);
    // Long probe: the move must come from `_Server` saying "not leader", not from a dead socket.
    config.probe_interval = Some(std::time::Duration::from_secs(120));
    config.backoff_max = std::time::Duration::from_millis(500);
    let c = Client::connect(config).await.unwrap();
    let e = env.clone();
    let leader = blocking(move || e.nb_leader().unwrap()).await;
    assert_eq!(c.current_remote().unwrap().to_string(), remotes[leader]);

    // Freeze the leader until the others elect a new one, then let it run again: it steps
    // down, its `_Server` row says so, and the client moves.
    let e = env.clone();
    let pid = blocking(move || e.nb_member_pid(leader).unwrap().unwrap()).await;
    signal(pid, nix::sys::signal::Signal::SIGSTOP);
    let resume = ResumeOnDrop(pid);
    let e = env.clone();
    let new_leader = blocking(move || {
        wait_until(HANG_GUARD, "a new leader", || {
            (0..3).filter(|&i| i != leader).find(|&i| {
                e.appctl(
                    testenv::ovn::Component::NbMember(i),
                    &["cluster/status", "OVN_Northbound"],
                )
                .is_ok_and(|s| s.contains("Role: leader"))
            })
        })
        .unwrap()
    })
    .await;
    drop(resume);

    wait_until_async(HANG_GUARD, "the client on the new leader", || async {
        c.current_remote().map(|r| r.to_string()) == Some(remotes[new_leader].clone())
    })
    .await
    .unwrap();
    c.transact(NB, insert_address_set("after-move"))
        .await
        .unwrap();
}
