//! Prints the cost of the plugin hop alone: the real `rovn-cni` binary spawned for ADD
//! against an agent built with `protocol::serve` that answers at once, 200 times in
//! sequence and 200 as 20 parallel streams (p50/p99/max, per second). Issue 6's ADD
//! latency figures can be read against it.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cni::protocol::{AgentRequest, AgentResponse, bind, serve};
use cni::{CniResult, IpConfig};

const SEQUENTIAL: usize = 200;
const PARALLEL_STREAMS: usize = 20;
const PER_STREAM: usize = 10;

fn add(socket: &str, index: usize) -> Duration {
    let config = serde_json::json!({"cniVersion": "1.1.0", "name": "bench", "type": "rovn-cni", "socket": socket});
    let args = format!("K8S_POD_NAMESPACE=bench;K8S_POD_NAME=pod-{index}");
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_rovn-cni"))
        .env_clear()
        .env("CNI_COMMAND", "ADD")
        .env("CNI_CONTAINERID", format!("c{index}"))
        .env("CNI_NETNS", "/var/run/netns/bench")
        .env("CNI_IFNAME", "eth0")
        .env("CNI_ARGS", args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn rovn-cni");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(config.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let elapsed = started.elapsed();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    elapsed
}

fn report(label: &str, mut samples: Vec<Duration>, wall: Duration) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q).ceil() as usize).saturating_sub(1)];
    println!(
        "{label}: {} ADDs, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {:.0} ADD/s",
        samples.len(),
        at(0.50).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        samples.last().unwrap().as_secs_f64() * 1e3,
        samples.len() as f64 / wall.as_secs_f64()
    );
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("cni.sock");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime.block_on(async { bind(&socket) }).unwrap();
    runtime.spawn(serve(listener, |_request: AgentRequest| async {
        AgentResponse::Result(CniResult {
            ips: vec![IpConfig {
                address: "10.0.2.5/24".parse().unwrap(),
                gateway: None,
                interface: None,
            }],
            ..Default::default()
        })
    }));
    let socket = socket.to_str().unwrap().to_owned();

    let wall = Instant::now();
    let samples: Vec<Duration> = (0..SEQUENTIAL).map(|i| add(&socket, i)).collect();
    report("sequential", samples, wall.elapsed());

    let wall = Instant::now();
    let samples: Vec<Duration> = std::thread::scope(|scope| {
        let streams: Vec<_> = (0..PARALLEL_STREAMS)
            .map(|stream| {
                let socket = &socket;
                scope.spawn(move || {
                    (0..PER_STREAM)
                        .map(|i| add(socket, stream * PER_STREAM + i))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        streams
            .into_iter()
            .flat_map(|s| s.join().unwrap())
            .collect()
    });
    report(
        &format!("{PARALLEL_STREAMS} parallel"),
        samples,
        wall.elapsed(),
    );
    runtime.shutdown_background();
}
