//! Pod burst: N pods created at once in one namespace bound to one Subnet →
//! time until the last one is annotated (seen through a watch), pods per
//! second and the controller's peak memory (VmHWM), printed beside the raw
//! ovsdb-server port-insert rate measured in the same run (pre-serialized
//! single-port transactions on the unix socket, replies only counted) and
//! the ratio, and beside the API server's own rate for pod patches (the
//! controller's real bound: it makes two API writes per pod). Then start-up: the controller restarted with M existing pods
//! → time until ready, and until every pod, port and IP resource was
//! reconciled (`rovn_pods_synced`, IPAM rebuilt).
//!
//! Real `rovn-controller`, NB ovsdb-server + northd, kube-apiserver.
//! `cargo bench --bench pod_burst`: N = 1000, M = 10000. Without `--bench`
//! (e.g. `cargo test --all-targets`): a smoke run, N = 20, M = 50.

use std::time::{Duration, Instant};

use ovn::Table;
use ovn::nb::{LogicalSwitch, LogicalSwitchPort};
use ovsdb::{Condition, Mutation, Row, TxnBuilder, Value};
use serde_json::json;
use testenv::ovn::OvnEnv;
use testenv::poll::wait_until_async;
use testenv::stack::{AnnotationLog, ControllerEnv, pod, subnet_spec};

// The controller's pod port row (product code, grouped here).
use controller::pod::port::PodPort;

/// Node name of the pods (no kubelet runs).
const NODE: &str = "node-1";

/// Transactions in flight at once for the raw writer (as the ovsdb bench).
const WINDOW: usize = 256;
/// Bound of the burst and start-up waits (hang guard).
const WAIT: Duration = Duration::from_secs(900);

/// How long a burst took.
struct Burst {
    /// Until the watch saw the last pod annotated.
    annotated: Duration,
    /// Until the API server accepted the last create (the test's own writes).
    created: Duration,
}

/// Creates `count` pods in the empty `namespace`.
async fn burst(env: &ControllerEnv, namespace: &str, prefix: &str, count: usize) -> Burst {
    // The namespace is empty: the watch counts only this burst.
    let mut allocated = AnnotationLog::watch(env.cluster.pods(namespace));
    let pods = (0..count)
        .map(|i| pod(&format!("{prefix}{i}"), NODE, &[]))
        .collect();
    let start = Instant::now();
    env.cluster
        .create_pods(namespace, pods)
        .await
        .expect("create pods");
    let created = start.elapsed();
    allocated
        .wait_allocated(count, WAIT)
        .await
        .expect("every pod annotated in time");
    Burst {
        annotated: start.elapsed(),
        created,
    }
}

/// The raw writer: `count` single-port transactions shaped like the
/// controller's (a pod port row, inserted on a fresh switch), WINDOW in
/// flight; returns ports per second.
async fn raw_port_rate(env: &ControllerEnv, count: usize) -> f64 {
    let ls = "raw-writer";
    let nb = env.ovn.nb_remote();
    let client = ovsdb::Client::connect(ovsdb::ClientConfig::from_remotes(&nb).unwrap())
        .await
        .expect("NB client");
    let mut create = TxnBuilder::new(ovn::nb::DATABASE);
    create.insert(LogicalSwitch::NAME, Row::new().with("name", ls));
    client.commit(&create).await.expect("switch");
    let txns: Vec<Vec<u8>> = (0..count)
        .map(|i| {
            let row = PodPort {
                namespace: "raw".into(),
                name: format!("r{i}"),
                uid: format!("uid-{i}"),
                subnet: ls.into(),
                allocation: ipam::Allocation {
                    v4: Some(std::net::Ipv4Addr::from(0x0a63_0000 + i as u32 + 2)),
                    v6: None,
                    mac: ipam::MacAddr([0x0a, 0x63, 0, 0, (i >> 8) as u8, i as u8]),
                },
            }
            .row();
            let mut tx = TxnBuilder::new(ovn::nb::DATABASE);
            let lsp = tx.insert(LogicalSwitchPort::NAME, row.to_row());
            tx.mutate(
                LogicalSwitch::NAME,
                vec![Condition::eq("name", ls)],
                vec![Mutation::insert("ports", Value::set([lsp]))],
            );
            serde_json::to_vec(&json!({"method": "transact", "params": tx.params(), "id": i}))
                .unwrap()
        })
        .collect();
    let elapsed = testenv::raw_writer::send_pipelined(&nb, txns, WINDOW)
        .await
        .expect("raw writer");
    let mut delete = TxnBuilder::new(ovn::nb::DATABASE);
    delete.delete(LogicalSwitch::NAME, vec![Condition::eq("name", ls)]);
    client.commit(&delete).await.expect("delete switch");
    count as f64 / elapsed.as_secs_f64()
}

/// The API server alone: one merge patch of an annotation on each of
/// `count` pods (`prefix0..`) of `namespace`, 64 in flight; patches per
/// second.
async fn raw_patch_rate(env: &ControllerEnv, namespace: &str, prefix: &str, count: usize) -> f64 {
    let api = env.cluster.pods(namespace);
    let patch = json!({"metadata": {"annotations": {"bench.rovn.io/touched": "true"}}});
    let start = Instant::now();
    futures::StreamExt::collect::<Vec<()>>(futures::StreamExt::buffer_unordered(
        futures::stream::iter((0..count).map(|i| {
            let (api, patch) = (api.clone(), &patch);
            async move {
                api.patch(
                    &format!("{prefix}{i}"),
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(patch),
                )
                .await
                .expect("patch pod");
            }
        })),
        64,
    ))
    .await;
    count as f64 / start.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (pods, existing) = if full { (1000, 10_000) } else { (20, 50) };
    let mut env = ControllerEnv::start(OvnEnv::builder().northd(), "pods-bench")
        .await
        .expect("OVN, API server and controller");
    for (name, cidr) in [("bench", "10.60.0.0/16"), ("existing", "10.64.0.0/16")] {
        env.cluster
            .create_namespace(name)
            .await
            .expect("create namespace");
        env.cluster
            .create_ready_subnet(name, subnet_spec(None, cidr, &[name]))
            .await
            .expect("create subnet");
    }

    let timing = burst(&env, "bench", "b", pods).await;
    let pod_rate = pods as f64 / timing.annotated.as_secs_f64();
    let peak = env
        .controller()
        .process
        .memory()
        .expect("controller memory")
        .peak_mib;
    let raw = raw_port_rate(&env, pods).await;
    println!(
        "pod burst: {pods} pods in one namespace bound to one Subnet (real kube-apiserver, NB ovsdb-server + northd)"
    );
    println!(
        "  last pod annotated after {:.2} s: {pod_rate:.0} pods/s (the {pods} creates alone took {:.2} s); \
         controller peak memory (VmHWM) {peak:.1} MiB",
        timing.annotated.as_secs_f64(),
        timing.created.as_secs_f64(),
    );
    let api_rate = raw_patch_rate(&env, "bench", "b", pods).await;
    println!(
        "  raw kube-apiserver pod patches (64 in flight) {api_rate:.0} patches/s; the controller \
         makes 2 API writes per pod (annotations, IP resource): ratio controller/(raw/2) {:.2}",
        pod_rate / (api_rate / 2.0)
    );
    println!(
        "  raw ovsdb-server port inserts (single-port transactions, {WINDOW} in flight) {raw:.0} ports/s; \
         ratio controller/raw {:.3}",
        pod_rate / raw
    );

    // Start-up with `existing` pods (allocated by the controller itself).
    let setup = burst(&env, "existing", "e", existing).await;
    env.kill_controller().expect("SIGKILL the controller");
    let start = Instant::now();
    env.start_controller().await.expect("controller restarted");
    let ready = start.elapsed();
    let controller = env.controller();
    wait_until_async(WAIT, "the restarted controller synced", || async {
        controller.metric("rovn_pods_synced") == Some(1.0)
    })
    .await
    .expect("controller synced in time");
    let synced = start.elapsed();
    let total = existing + pods;
    println!(
        "start-up with {total} existing pods ({existing} set up in {:.1} s by the controller): \
         ready {:.2} s, every pod/port/IP resource reconciled and IPAM rebuilt {:.2} s; \
         peak memory {:.1} MiB",
        setup.annotated.as_secs_f64(),
        ready.as_secs_f64(),
        synced.as_secs_f64(),
        controller
            .process
            .memory()
            .expect("controller memory")
            .peak_mib,
    );
}
