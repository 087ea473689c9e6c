//! CNI ADD latency through the real stack: `rovn-cni` ADD called → returned with the port up
//! (`up=true` in NB), for pods in sequence and in parallel, beside the time the agent spent
//! plugging the OVS port alone (its per-ADD timing log), in the same run.
//!
//! `cargo bench -p agent --bench cni_add`: 100 pods in sequence, then 20 in parallel.
//! Without `--bench` (as `cargo test --all-targets` runs it): a smoke run of 3 + 2 pods.
//!
//! Real components: kube-apiserver (pods annotated as the controller would), NB + northd +
//! SB, a chassis whose userspace `ovs-vswitchd` runs in the initial network namespace (the
//! agent's default: no `--host-netns`), the `rovn-agent` and `rovn-cni` binaries.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use api::pod_network::port_name;
use testenv::figures::percentile;
use testenv::kube::KubeEnv;
use testenv::netns::Netns;
use testenv::ovn::OvnEnv;
use testenv::stack::{AgentProcess, Attachment, Cluster, pod_network};
use testenv::unique_name as unique;

const NODE: &str = "bench-node";

/// One pod prepared for ADD.
struct BenchPod {
    attachment: Attachment,
    _netns: Netns,
}

fn summary(label: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "{label:<40} n={:<4} p50={:>8.2} ms  p99={:>8.2} ms",
        samples.len(),
        percentile(&samples, 0.5).as_secs_f64() * 1e3,
        percentile(&samples, 0.99).as_secs_f64() * 1e3,
    );
}

/// The agent's per-ADD timing lines: port name → (field → microseconds).
fn agent_timings(log: &str) -> BTreeMap<String, BTreeMap<String, u64>> {
    let mut timings = BTreeMap::new();
    for line in log.lines().filter(|l| l.contains("ADD done")) {
        let mut fields = BTreeMap::new();
        let mut port = None;
        for token in line.split_whitespace() {
            let Some((key, value)) = token.split_once('=') else {
                continue;
            };
            if key == "port" {
                port = Some(value.to_owned());
            } else if let Ok(us) = value.parse::<u64>() {
                fields.insert(key.to_owned(), us);
            }
        }
        if let Some(port) = port {
            timings.insert(port, fields);
        }
    }
    timings
}

fn phase(
    timings: &BTreeMap<String, BTreeMap<String, u64>>,
    pods: &[BenchPod],
    field: &str,
) -> Vec<Duration> {
    pods.iter()
        .filter_map(|p| {
            let port = port_name(&p.attachment.namespace, &p.attachment.pod);
            timings.get(&port)?.get(field).copied()
        })
        .map(Duration::from_micros)
        .collect()
}

fn report(group: &str, pods: &[BenchPod], add: Vec<Duration>, agent: &AgentProcess) {
    let timings = agent_timings(&agent.process.log());
    summary(&format!("{group}: ADD called -> port up"), add);
    summary(
        &format!("{group}:   agent total"),
        phase(&timings, pods, "total_us"),
    );
    summary(
        &format!("{group}:   veth + netns set-up"),
        phase(&timings, pods, "veth_us"),
    );
    summary(
        &format!("{group}:   OVS port plug alone"),
        phase(&timings, pods, "plug_us"),
    );
    summary(
        &format!("{group}:   wait for port up"),
        phase(&timings, pods, "port_up_us"),
    );
}

async fn run(sequential: usize, parallel: usize) {
    let kube = KubeEnv::shared().expect("kube env");
    let cluster = Cluster::connect(kube).await.expect("kube client");
    let env = tokio::task::spawn_blocking(|| OvnEnv::builder().chassis_in_host_netns(NODE).start())
        .await
        .unwrap()
        .expect("OVN env");
    let namespace = unique("bench");
    cluster
        .create_namespace(&namespace)
        .await
        .expect("create namespace");
    env.nbctl(&["ls-add", "net2"]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let agent = AgentProcess::start(
        dir.path(),
        &AgentProcess::chassis_args(kube.kubeconfig(), NODE, &env).unwrap(),
    )
    .expect("rovn-agent");

    // The controller's part: pods annotated, their logical switch ports (one nbctl call).
    let total = sequential + parallel;
    let mut pods = Vec::with_capacity(total);
    let mut nbctl: Vec<String> = Vec::new();
    for i in 0..total {
        let name = format!("pod-{i}");
        let ip = format!("10.0.{}.{}", 2 + i / 200, 10 + i % 200);
        let mac = format!("0a:72:00:00:{:02x}:{:02x}", i / 256, i % 256);
        cluster
            .create_pod(&namespace, &name, NODE)
            .await
            .expect("create pod");
        cluster
            .annotate_pod(
                &namespace,
                &name,
                &pod_network("net2", &mac, &format!("{ip}/16"), "10.0.0.1").unwrap(),
            )
            .await
            .expect("annotate pod");
        let lsp = port_name(&namespace, &name);
        nbctl.extend(
            [
                "--",
                "lsp-add",
                "net2",
                &lsp,
                "--",
                "lsp-set-addresses",
                &lsp,
                &format!("{mac} {ip}"),
            ]
            .map(str::to_owned),
        );
        let netns = Netns::new().unwrap();
        pods.push(BenchPod {
            attachment: Attachment {
                socket: agent.socket.clone(),
                container_id: unique("bench-ctr"),
                netns: format!("/var/run/netns/{}", netns.name()),
                namespace: namespace.clone(),
                pod: name,
            },
            _netns: netns,
        });
    }
    let args: Vec<&str> = nbctl.iter().map(String::as_str).collect();
    env.nbctl(&args).unwrap();
    let parallel_pods = pods.split_off(sequential);

    let sequential_results = tokio::task::spawn_blocking(move || {
        let mut latencies = Vec::new();
        let mut results = Vec::new();
        for pod in &pods {
            let started = Instant::now();
            let result = pod.attachment.add().expect("ADD");
            latencies.push(started.elapsed());
            results.push(result);
        }
        (pods, latencies, results)
    })
    .await
    .unwrap();
    let (pods, sequential_latencies, sequential_adds) = sequential_results;

    let parallel_results = tokio::task::spawn_blocking(move || {
        let barrier = std::sync::Barrier::new(parallel_pods.len());
        let outcomes: Vec<(Duration, serde_json::Value)> = std::thread::scope(|scope| {
            let handles: Vec<_> = parallel_pods
                .iter()
                .map(|pod| {
                    let barrier = &barrier;
                    scope.spawn(move || {
                        barrier.wait();
                        let started = Instant::now();
                        let result = pod.attachment.add().expect("ADD");
                        (started.elapsed(), result)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        (parallel_pods, outcomes)
    })
    .await
    .unwrap();
    let (parallel_pods, parallel_outcomes) = parallel_results;
    let (parallel_latencies, parallel_adds): (Vec<_>, Vec<_>) =
        parallel_outcomes.into_iter().unzip();

    // Every ADD returned with its port up in NB.
    for pod in pods.iter().chain(&parallel_pods) {
        let port = port_name(&pod.attachment.namespace, &pod.attachment.pod);
        let up = env
            .nbctl(&["get", "Logical_Switch_Port", &port, "up"])
            .unwrap();
        assert_eq!(up.trim(), "true", "{port}");
    }
    println!("CNI ADD through rovn-cni -> rovn-agent -> OVS/OVN (userspace datapath):");
    report("sequential", &pods, sequential_latencies, &agent);
    report(
        &format!("{} in parallel", parallel_pods.len()),
        &parallel_pods,
        parallel_latencies,
        &agent,
    );

    let dels = tokio::task::spawn_blocking(move || {
        let mut latencies = Vec::new();
        for (pod, result) in pods
            .iter()
            .zip(&sequential_adds)
            .chain(parallel_pods.iter().zip(&parallel_adds))
        {
            let started = Instant::now();
            pod.attachment.del(Some(result)).expect("DEL");
            latencies.push(started.elapsed());
        }
        latencies
    })
    .await
    .unwrap();
    summary("DEL (sequential)", dels);
    drop(agent);
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (sequential, parallel) = if full { (100, 20) } else { (3, 2) };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(run(sequential, parallel));
}
