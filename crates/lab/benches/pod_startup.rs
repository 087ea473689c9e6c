//! Pod start-up on the real node: N pods created at once (one API create each, concurrently)
//! → each seen Running through a watch started before them; p50/p99 of rovn's pods printed
//! beside the same pods with `hostNetwork: true` (no CNI at all) measured in the same run,
//! alternating rounds, and rovn's own share: the CNI ADD time as containerd saw it
//! (`containerd_cri_sandbox_create_network_seconds`: the CNI ADD of the sandbox, `loopback`
//! and `rovn-cni`) and as the agent measured it (its `ADD done` log line).
//!
//! The node: kubelet, containerd, the control plane and OVN of `testenv::node`, rovn installed
//! from `deploy/` (`RovnInstall`); rovn's pods go to the default Subnet.
//! `cargo bench -p lab --bench pod_startup`: N = 30, 2 rounds each. Without `--bench` (e.g.
//! `cargo test --all-targets`): a smoke run, N = 3, 1 round.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::TryStreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;
use testenv::figures::{ms, percentile};
use testenv::install::RovnInstall;
use testenv::node::NodeEnv;
use testenv::ovn::OvnEnv;
use testenv::poll::{HANG_GUARD, wait_until, wait_until_async};

/// Start-up of everything (images, daemons, rovn's pods) on a loaded two-core machine.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(300);
const HOST_NS: &str = "bench-host";
const ROVN_NS: &str = "bench-rovn";
/// containerd's timer of a sandbox's network set-up (the CNI ADD).
const CNI_TIMER: &str = "containerd_cri_sandbox_create_network_seconds";

fn pod(name: &str, image: &str, host_network: bool) -> Result<Pod> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"bench": "pod-startup"}},
        "spec": {
            "hostNetwork": host_network,
            "terminationGracePeriodSeconds": 0,
            "containers": [{
                "name": "c",
                "image": image,
                "imagePullPolicy": "Never",
                "command": ["sleep", "3600"],
            }],
        },
    }))?)
}

/// Creates `count` pods in `namespace` at once and returns each one's create → Running time;
/// deletes them afterwards (not timed).
async fn start_pods(
    api: &Api<Pod>,
    round: usize,
    count: usize,
    image: &str,
    host_network: bool,
) -> Result<Vec<Duration>> {
    let names: Vec<String> = (0..count).map(|i| format!("p{round}-{i}")).collect();
    let (listed_tx, listed) = tokio::sync::oneshot::channel();
    let wanted = names.clone();
    let watch = api.clone();
    let running = tokio::spawn(async move {
        let mut listed_tx = Some(listed_tx);
        let mut seen: HashMap<String, Instant> = HashMap::new();
        let mut events = std::pin::pin!(watcher(watch, watcher::Config::default()));
        while let Some(event) = events.try_next().await? {
            let pod = match event {
                watcher::Event::InitDone => {
                    if let Some(tx) = listed_tx.take() {
                        let _ = tx.send(());
                    }
                    continue;
                }
                watcher::Event::Apply(pod) | watcher::Event::InitApply(pod) => pod,
                _ => continue,
            };
            let name = pod.metadata.name.clone().unwrap_or_default();
            let phase = pod.status.and_then(|s| s.phase);
            if wanted.contains(&name) && phase.as_deref() == Some("Running") {
                seen.entry(name).or_insert_with(Instant::now);
                if seen.len() == wanted.len() {
                    return Ok::<_, anyhow::Error>(seen);
                }
            }
        }
        bail!("the pod watch ended")
    });
    listed.await.context("the pod watch never listed")?;

    let params = PostParams::default();
    let created = futures::future::try_join_all(names.iter().map(|name| {
        let params = &params;
        async move {
            let object = pod(name, image, host_network)?;
            let at = Instant::now();
            api.create(params, &object).await?;
            Ok::<_, anyhow::Error>((name.clone(), at))
        }
    }))
    .await?;
    let running = tokio::time::timeout(HANG_GUARD, running)
        .await
        .context("timed out waiting for the pods to run")???;
    let latencies = created
        .iter()
        .map(|(name, at)| running[name].saturating_duration_since(*at))
        .collect();

    api.delete_collection(
        &DeleteParams::default().grace_period(0),
        &ListParams::default().labels("bench=pod-startup"),
    )
    .await?;
    wait_until_async(HANG_GUARD, "the round's pods deleted", || async {
        api.list(&ListParams::default())
            .await
            .ok()
            .filter(|l| l.items.is_empty())
            .map(drop)
    })
    .await?;
    Ok(latencies)
}

/// Sum (seconds) and count of containerd's sandbox network timer.
fn cni_set_up(metrics: &str) -> (f64, u64) {
    let value = |suffix: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{CNI_TIMER}_{suffix} ")))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (value("sum"), value("count") as u64)
}

/// The fields of the agent's `ADD done` log line: the total, then its phases.
const ADD_FIELDS: [&str; 5] = [
    "total_us",
    "allocation_us",
    "veth_us",
    "plug_us",
    "port_up_us",
];

/// The agent's ADD times from its log: one list per field of [`ADD_FIELDS`], in that order.
fn agent_add_times(log: &str) -> Vec<Vec<Duration>> {
    let mut times = vec![Vec::new(); ADD_FIELDS.len()];
    // The agent colours its log only on a terminal: a container's log is plain text.
    for line in log.lines().filter(|l| l.contains("ADD done")) {
        for (field, list) in ADD_FIELDS.iter().zip(times.iter_mut()) {
            let value = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix(field)?.strip_prefix('='))
                .and_then(|v| v.parse::<u64>().ok());
            if let Some(us) = value {
                list.push(Duration::from_micros(us));
            }
        }
    }
    times
}

fn summary(label: &str, mut times: Vec<Duration>) -> Duration {
    times.sort();
    let p50 = percentile(&times, 0.5);
    println!(
        "  {label:<26} p50 {:>7.1} ms  p99 {:>7.1} ms  max {:>7.1} ms  ({} pods)",
        ms(p50),
        ms(percentile(&times, 0.99)),
        ms(*times.last().unwrap_or(&Duration::ZERO)),
        times.len()
    );
    p50
}

fn main() -> Result<()> {
    let bench = std::env::args().any(|a| a == "--bench");
    let (count, rounds) = if bench { (30, 2) } else { (3, 1) };

    let node_name = NodeEnv::default_node_name();
    let node = NodeEnv::builder()
        .ovn(OvnEnv::builder().nb_tcp().chassis(&node_name))
        .start()?;
    let rovn = RovnInstall::apply(&node, INSTALL_TIMEOUT)?;
    node.kubectl(&[
        "wait",
        "--for=condition=Ready",
        "subnet/ovn-default",
        "--timeout=120s",
    ])?;
    for ns in [HOST_NS, ROVN_NS] {
        node.kubectl(&["create", "namespace", ns])?;
        // The ServiceAccount admission refuses pods until the namespace's account exists.
        wait_until(HANG_GUARD, &format!("ServiceAccount {ns}/default"), || {
            node.kubectl(&["-n", ns, "get", "serviceaccount", "default"])
                .ok()
        })?;
    }
    let image = node.images().busybox().to_owned();
    let runtime = tokio::runtime::Runtime::new()?;
    let client = runtime.block_on(node.kube().client())?;
    let host_api: Api<Pod> = Api::namespaced(client.clone(), HOST_NS);
    let rovn_api: Api<Pod> = Api::namespaced(client, ROVN_NS);

    let cni_before = cni_set_up(&node.containerd().metrics()?);
    let (mut host, mut on_rovn) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        host.extend(runtime.block_on(start_pods(&host_api, round, count, &image, true))?);
        on_rovn.extend(runtime.block_on(start_pods(&rovn_api, round, count, &image, false))?);
    }
    let cni_after = cni_set_up(&node.containerd().metrics()?);
    let agent = rovn.agent_pod(&node)?;
    let agent_log = node.kubectl(&["-n", testenv::install::ROVN_NAMESPACE, "logs", &agent])?;
    let adds = agent_add_times(&agent_log);

    println!(
        "pod create -> Running on a real node (kubelet + containerd), {count} pods created at \
         once, {rounds} round(s) each, alternating:"
    );
    let host_p50 = summary("hostNetwork (no CNI):", host);
    let rovn_p50 = summary("rovn:", on_rovn);
    println!(
        "  rovn / hostNetwork p50: {:.2}x (+{:.1} ms)",
        rovn_p50.as_secs_f64() / host_p50.as_secs_f64().max(1e-9),
        ms(rovn_p50.saturating_sub(host_p50))
    );
    let (sum, n) = (cni_after.0 - cni_before.0, cni_after.1 - cni_before.1);
    if n > 0 {
        println!(
            "  CNI ADD as containerd saw it (sandbox network, loopback + rovn-cni): mean {:.1} ms \
             over {n} (rovn pods only; hostNetwork sandboxes have none)",
            sum * 1000.0 / n as f64
        );
    } else {
        bail!("containerd reported no sandbox network timings ({CNI_TIMER} absent)");
    }
    if adds[0].is_empty() {
        bail!("the agent logged no ADD timings");
    }
    let mut adds = adds.into_iter();
    summary("rovn-agent ADD (its log):", adds.next().unwrap_or_default());
    for (field, times) in ADD_FIELDS[1..].iter().zip(adds) {
        if !times.is_empty() {
            summary(
                &format!("  of which {}:", field.trim_end_matches("_us")),
                times,
            );
        }
    }
    if bench {
        println!(
            "  node start-up {:.1} s, rovn install until Ready {:.1} s",
            node.startup_time().as_secs_f64(),
            rovn.install_time().as_secs_f64()
        );
    }
    Ok(())
}
