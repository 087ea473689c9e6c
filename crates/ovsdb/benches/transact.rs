//! Throughput of our client against the simplest raw writer, on a real NB ovsdb-server.
//!
//! Workloads (each run on a fresh switch, deleted afterwards so every run starts from the same
//! database):
//! - single: pipelined transactions each inserting one Logical_Switch_Port and adding it to the
//!   switch's `ports` (named-uuid cross reference);
//! - batch: transactions of 100 such ports.
//!
//! The raw writer writes pre-serialized JSON on a unix socket and counts replies; our client
//! runs the same transactions through `Client::transact` from clones (with and without a
//! replica monitoring the written tables). Prints rates and the ratio client/raw.

use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use ovsdb::{Client, ClientConfig, Condition, MonitorSpec, Mutation, Row, TxnBuilder, Value};
use serde_json::json;
use testenv::ovn::OvnEnv;

const NB: &str = "OVN_Northbound";
/// Transactions in flight at once, for both writers.
const WINDOW: usize = 256;
const BATCH_PORTS: usize = 100;

/// Workload sizes: full under `cargo bench`, a quick smoke run when `cargo test` runs the
/// bench target (it then only checks that everything works).
struct Scale {
    single_txns: usize,
    batch_txns: usize,
    rounds: usize,
}

const FULL: Scale = Scale {
    single_txns: 4000,
    batch_txns: 40,
    rounds: 5,
};
const SMOKE: Scale = Scale {
    single_txns: 20,
    batch_txns: 2,
    rounds: 1,
};

/// The transaction adding `ports` ports named `{prefix}-{i}` to switch `ls`.
fn port_txn(ls: &str, prefix: &str, ports: usize) -> TxnBuilder {
    let mut tx = TxnBuilder::new(NB);
    let names: Vec<_> = (0..ports)
        .map(|i| {
            tx.insert(
                "Logical_Switch_Port",
                Row::new().with("name", format!("{prefix}-{i}")).with(
                    "addresses",
                    Value::set([format!(
                        "00:00:00:00:{:02x}:{:02x} dynamic",
                        i / 256,
                        i % 256
                    )]),
                ),
            )
        })
        .collect();
    tx.mutate(
        "Logical_Switch",
        vec![Condition::eq("name", ls)],
        vec![Mutation::insert("ports", Value::set(names))],
    );
    tx
}

fn workload(ls: &str, txns: usize, ports: usize) -> Vec<TxnBuilder> {
    (0..txns)
        .map(|t| port_txn(ls, &format!("{ls}-t{t}"), ports))
        .collect()
}

/// The raw writer: each transaction serialized and written on the unix socket as soon as the
/// window allows, replies only counted.
async fn raw_run(socket: &str, txns: Vec<TxnBuilder>) -> Duration {
    let messages = txns
        .iter()
        .enumerate()
        .map(|(i, tx)| {
            serde_json::to_vec(&json!({"method": "transact", "params": tx.params(), "id": i}))
                .unwrap()
        })
        .collect();
    testenv::raw_writer::send_pipelined(socket, messages, WINDOW)
        .await
        .unwrap()
}

/// Our client: every transaction through its own clone of the client, WINDOW in flight.
async fn client_run(client: &Client, txns: Vec<TxnBuilder>) -> Duration {
    let start = Instant::now();
    let mut inflight = FuturesUnordered::new();
    for tx in txns {
        if inflight.len() >= WINDOW {
            inflight.next().await.unwrap();
        }
        let c = client.clone();
        inflight.push(async move { c.commit(&tx).await.map(|_| ()).unwrap() });
    }
    while inflight.next().await.is_some() {}
    start.elapsed()
}

async fn fresh_switch(client: &Client, ls: &str) {
    let mut tx = TxnBuilder::new(NB);
    tx.insert("Logical_Switch", Row::new().with("name", ls));
    client.commit(&tx).await.unwrap();
}

async fn delete_switch(client: &Client, ls: &str) {
    let mut tx = TxnBuilder::new(NB);
    tx.delete("Logical_Switch", vec![Condition::eq("name", ls)]);
    client.commit(&tx).await.unwrap();
}

/// Runs one workload with one writer on a fresh switch; returns the elapsed time.
async fn run_once(
    env: &OvnEnv,
    admin: &Client,
    writer: Option<&Client>,
    ls: &str,
    txns: usize,
    ports: usize,
) -> Duration {
    fresh_switch(admin, ls).await;
    let work = workload(ls, txns, ports);
    let elapsed = match writer {
        None => raw_run(env.nb_remote().trim_start_matches("unix:"), work).await,
        Some(c) => client_run(c, work).await,
    };
    let written = env
        .nbctl(&["--bare", "--columns=ports", "list", "Logical_Switch", ls])
        .unwrap()
        .split_whitespace()
        .count();
    assert_eq!(written, txns * ports, "every port written");
    delete_switch(admin, ls).await;
    elapsed
}

/// Best rate (ports/s) over `rounds` for the raw writer and for `client`, rounds interleaved.
async fn compare(
    env: &OvnEnv,
    admin: &Client,
    client: &Client,
    name: &str,
    (txns, ports, rounds): (usize, usize, usize),
) -> (f64, f64) {
    let (mut raw, mut ours) = (Duration::MAX, Duration::MAX);
    for round in 0..rounds {
        let ls = format!("{name}-raw-{round}");
        raw = raw.min(run_once(env, admin, None, &ls, txns, ports).await);
        let ls = format!("{name}-client-{round}");
        ours = ours.min(run_once(env, admin, Some(client), &ls, txns, ports).await);
    }
    let rate = |d: Duration| (txns * ports) as f64 / d.as_secs_f64();
    (rate(raw), rate(ours))
}

#[tokio::main]
async fn main() {
    let scale = if std::env::args().any(|a| a == "--bench") {
        FULL
    } else {
        println!("(smoke run; `cargo bench -p ovsdb --bench transact` prints real figures)");
        SMOKE
    };
    let workloads = [
        (
            "single-port transactions",
            "single",
            scale.single_txns,
            1,
            "txn/s",
        ),
        (
            "ports in 100-port transactions",
            "batch",
            scale.batch_txns,
            BATCH_PORTS,
            "ports/s",
        ),
    ];
    let rounds = scale.rounds;
    let env = OvnEnv::builder().start().expect("start NB ovsdb-server");
    let config = ClientConfig::from_remotes(&env.nb_remote()).unwrap();
    let admin = Client::connect(config.clone()).await.unwrap();
    let client = Client::connect(config.clone()).await.unwrap();

    println!(
        "ovsdb transact benchmark: best of {rounds} rounds, {WINDOW} transactions in flight, \
         standalone NB ovsdb-server on a unix socket"
    );
    println!("[without replica]");
    for (label, name, txns, ports, unit) in workloads {
        let (raw, ours) = compare(&env, &admin, &client, name, (txns, ports, rounds)).await;
        println!(
            "  {label:<32} raw writer {raw:>8.0} {unit:<7} ovsdb::Client {ours:>8.0} {unit:<7} ratio {:.2}",
            ours / raw
        );
    }

    // Same, while the writing client also keeps a replica of the written tables up to date.
    let replica = client
        .monitor(
            NB,
            MonitorSpec::new()
                .table("Logical_Switch")
                .table("Logical_Switch_Port"),
        )
        .await
        .unwrap();
    println!("[writer keeps a replica of Logical_Switch and Logical_Switch_Port]");
    for (label, name, txns, ports, unit) in workloads {
        let (raw, ours) = compare(
            &env,
            &admin,
            &client,
            &format!("r{name}"),
            (txns, ports, rounds),
        )
        .await;
        println!(
            "  {label:<32} raw writer {raw:>8.0} {unit:<7} ovsdb::Client {ours:>8.0} {unit:<7} ratio {:.2}",
            ours / raw
        );
    }
    // The replica follows the deletions: no port left once it caught up.
    let mut events = replica.subscribe();
    while replica.count("Logical_Switch_Port") != 0 {
        events.recv().await.expect("replica events");
    }
}
