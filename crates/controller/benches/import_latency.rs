//! Import latency: a burst of Neutron routers committed in OVN (one
//! transaction per router, like neutron-server) → time until each Vpc is
//! visible through the API (watch), printed beside the time ovsdb-server
//! took to commit them.
//!
//! Runs the real `rovn-controller` against a real NB ovsdb-server and
//! kube-apiserver. `ROVN_BENCH_ROUTERS` sets the burst size (default 100
//! under `cargo bench`, 10 in the smoke run of `cargo test --all-targets`).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use api::Vpc;
use futures::TryStreamExt;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use ovn::Table;
use ovn::nb::LogicalRouter;
use ovsdb::{ClientConfig, TxnBuilder};
use testenv::kube::KubeEnv;
use testenv::neutron::new_uuid;
use testenv::ovn::OvnEnv;

/// Bound of every wait (hang guard).
const WAIT: Duration = Duration::from_secs(120);

struct ControllerProcess(Child);

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ready(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return false;
    };
    let request = format!("GET /readyz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let mut response = String::new();
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_to_string(&mut response).is_ok()
        && response.starts_with("HTTP/1.1 200")
}

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

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
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
    let ovn = OvnEnv::builder().start()?;
    let kube = KubeEnv::start()?;
    let client = kube.client().await?;
    tokio::time::timeout(WAIT, api::install::apply_crds(&client, "rovn-bench"))
        .await
        .context("CRDs in time")??;

    let addr = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let _controller = ControllerProcess(
        Command::new(env!("CARGO_BIN_EXE_rovn-controller"))
            .arg(format!("--ovn-nb={}", ovn.nb_remote()))
            .arg(format!("--kubeconfig={}", kube.kubeconfig().display()))
            .arg(format!("--metrics-addr={addr}"))
            .arg("--lease-namespace=default")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .spawn()
            .context("starting rovn-controller")?,
    );

    // Record when each Vpc first shows up in a watch.
    let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let vpcs: Api<Vpc> = Api::all(client.clone());
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
    let deadline = Instant::now() + WAIT;
    while !(ready(addr) && seen.lock().unwrap().contains_key("ovn-cluster")) {
        if Instant::now() > deadline {
            bail!("the controller did not become ready and leading");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The burst: one transaction per router, back to back.
    let nb = ovsdb::Client::connect(ClientConfig::from_remotes(&ovn.nb_remote())?).await?;
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

    loop {
        let done = {
            let seen = seen.lock().unwrap();
            committed.iter().all(|(name, _)| seen.contains_key(name))
        };
        if done {
            break;
        }
        if Instant::now() > deadline + WAIT {
            bail!("not every Vpc appeared within {WAIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
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
