//! Import latency: a burst of Neutron routers committed in OVN (one
//! transaction per router, like neutron-server) → time until each Vpc is
//! visible through the API (watch), printed beside the time ovsdb-server
//! took to commit them.
//!
//! Runs the real `rovn-controller` against a real NB ovsdb-server and
//! kube-apiserver. `ROVN_BENCH_ROUTERS` sets the burst size (default 100
//! under `cargo bench`, 10 in the smoke run of `cargo test --all-targets`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use futures::TryStreamExt;
use kube::ResourceExt;
use kube::runtime::{WatchStreamExt, watcher};
use ovn::Table;
use ovn::nb::LogicalRouter;
use ovsdb::{ClientConfig, TxnBuilder};
use testenv::figures::percentile;
use testenv::neutron::new_uuid;
use testenv::ovn::OvnEnv;
use testenv::poll::{HANG_GUARD, wait_until_async};
use testenv::stack::ControllerEnv;

/// Exactly the row Neutron Zed writes for `openstack router create`.
fn neutron_router(id: &str, display: &str) -> LogicalRouter {
    let map = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    LogicalRouter {
        name: format!("neutron-{id}"),
        enabled: Some(true),
        options: map(&[
            ("always_learn_from_arp_request", "false"),
            ("dynamic_neigh_routers", "true"),
        ]),
        external_ids: map(&[
            ("neutron:router_name", display),
            ("neutron:revision_number", "1"),
            ("neutron:availability_zone_hints", ""),
            ("neutron:gw_port_id", ""),
            ("neutron:gw_network_id", ""),
        ]),
        ..LogicalRouter::default()
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    // `cargo bench` passes `--bench`; under `cargo test --all-targets` this
    // is a quick smoke run that only checks everything works.
    let full = std::env::args().any(|a| a == "--bench");
    let count: usize = std::env::var("ROVN_BENCH_ROUTERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if full { 100 } else { 10 });
    if !full {
        println!(
            "(smoke run; `cargo bench -p controller --bench import_latency` prints real figures)"
        );
    }
    let mut env = ControllerEnv::start_without_controller(OvnEnv::builder(), "bench").await?;
    // Warnings only: the controller's logging stays out of the figures.
    env.options.rust_log = Some("warn".to_owned());

    // Record when each Vpc first shows up in a watch.
    let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let vpcs = env.cluster.vpcs();
    let recorder = seen.clone();
    tokio::spawn(async move {
        let stream = watcher(vpcs, watcher::Config::default()).applied_objects();
        let mut stream = std::pin::pin!(stream);
        while let Ok(Some(vpc)) = stream.try_next().await {
            recorder
                .lock()
                .unwrap()
                .entry(vpc.name_any())
                .or_insert_with(Instant::now);
        }
    });
    env.start_controller().await?;
    wait_until_async(
        HANG_GUARD,
        "the controller leading (default VPC seen)",
        || async { seen.lock().unwrap().contains_key("ovn-cluster") },
    )
    .await?;

    // The burst: one transaction per router, back to back.
    let nb = ovsdb::Client::connect(ClientConfig::from_remotes(&env.ovn.nb_remote())?).await?;
    let mut committed: Vec<(String, Instant)> = Vec::with_capacity(count);
    let burst_start = Instant::now();
    for i in 0..count {
        let router = neutron_router(&new_uuid()?, &format!("bench-router-{i}"));
        let mut txn = TxnBuilder::new(ovn::nb::DATABASE);
        txn.insert(LogicalRouter::NAME, router.to_row());
        nb.commit(&txn).await?;
        committed.push((router.name, Instant::now()));
    }
    let commit_time = burst_start.elapsed();

    // The latencies come from the watch's own timestamps: this poll only waits for the end.
    wait_until_async(HANG_GUARD, "every Vpc of the burst", || async {
        let seen = seen.lock().unwrap();
        let missing = committed
            .iter()
            .filter(|(name, _)| !seen.contains_key(name))
            .count();
        if missing == 0 {
            Ok(())
        } else {
            Err(format!("{missing} not seen yet"))
        }
    })
    .await?;
    let seen = seen.lock().unwrap();
    let mut latencies: Vec<Duration> = committed
        .iter()
        .map(|(name, at)| seen[name].saturating_duration_since(*at))
        .collect();
    latencies.sort();
    let last_visible = committed
        .iter()
        .map(|(name, _)| seen[name])
        .max()
        .expect("routers")
        .duration_since(burst_start);
    println!("import latency, burst of {count} Neutron routers (one transaction each)");
    println!(
        "  ovsdb-server commits: {:>8.1} ms total, {:>6.2} ms per router",
        commit_time.as_secs_f64() * 1e3,
        commit_time.as_secs_f64() * 1e3 / count as f64
    );
    println!(
        "  router committed -> Vpc visible: p50 {:>6.1} ms  p99 {:>6.1} ms  max {:>6.1} ms",
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().expect("latencies").as_secs_f64() * 1e3
    );
    println!(
        "  burst start -> last Vpc visible: {:>8.1} ms",
        last_visible.as_secs_f64() * 1e3
    );
    Ok(())
}
