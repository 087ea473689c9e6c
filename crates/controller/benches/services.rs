//! Services: S Services × E endpoints (Services without a selector, their EndpointSlices
//! made by hand, every endpoint ready and in a Subnet of the default VPC), all created in
//! the API server before the controller starts → cold start: time from the controller's
//! start until every Service's Load_Balancer is in NB with its E backends, and the
//! controller's peak and current memory (VmHWM, VmRSS); then C endpoint changes, one at a
//! time (one address of one EndpointSlice replaced) → time from the API write until the
//! balancer's vip in NB holds the new backend, p50/p99/max. NB is observed through a
//! monitor of our own: the figures are the monitor's event times, polls only wait for them.
//!
//! The floor, measured in the same run on the same NB ovsdb-server before the controller
//! starts: the same Load_Balancer rows (built by the controller's own model) inserted by
//! the raw writer ([`testenv::raw_writer`]: pre-serialized, `WINDOW` transactions in
//! flight), `BATCH` rows per transaction and one row per transaction; and the round-trip
//! of one transaction updating one balancer the way an endpoint change does, one at a
//! time. Printed with the ratios controller/raw.
//!
//! Real `rovn-controller`, NB ovsdb-server, kube-apiserver + etcd.
//! `cargo bench -p controller --bench services`: S = 1000, E = 10, C = 200. Without
//! `--bench` (e.g. `cargo test --all-targets`): a smoke run, S = 20, E = 3, C = 10.

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use ovn::Table;
use ovn::nb::LoadBalancer;
use ovsdb::{Client, ClientConfig, Condition, MonitorSpec, RowEvent, TxnBuilder};
use serde_json::json;
use testenv::figures::{ms, percentile};
use testenv::ovn::OvnEnv;
use testenv::poll::{HANG_GUARD, wait_until_async};
use testenv::stack::{ControllerEnv, subnet_spec, workspace_bin};
use tokio::sync::mpsc::UnboundedReceiver;

// The controller's own rows (product code).
use controller::context::DEFAULT_VPC;
use controller::service::model::{self, Located, SERVICE_NAME_LABEL};

/// Namespace of the Services, bound to Subnet `bench` of the default VPC.
const NAMESPACE: &str = "bench";
/// The Subnet's CIDR; every endpoint address is in it.
const CIDR: &str = "10.70.0.0/16";
/// The Services' port.
const PORT: i32 = 80;
/// Their endpoints' port.
const TARGET_PORT: i32 = 8080;
/// Rows per transaction of the raw writer's batched inserts.
const BATCH: usize = 100;
/// Transactions in flight at once for the raw writer (as the other benches).
const WINDOW: usize = 256;
/// API objects created at once (as `testenv::stack::Cluster` creates pods).
const CONCURRENCY: usize = 64;
/// Bound of the cold-start wait (hang guard).
const WAIT: Duration = Duration::from_secs(900);

/// How much the run makes.
#[derive(Clone, Copy)]
struct Size {
    services: usize,
    endpoints: usize,
    changes: usize,
}

/// The Services and their endpoints' addresses, changed one endpoint at a time.
#[derive(Clone)]
struct Workload {
    size: Size,
    /// The endpoint addresses of each Service.
    addresses: Vec<Vec<String>>,
}

/// The `n`th endpoint address of the run, in the Subnet (past its gateway).
fn endpoint_ip(n: usize) -> String {
    let first = u32::from(Ipv4Addr::new(10, 70, 0, 10));
    Ipv4Addr::from(first + u32::try_from(n).expect("address index")).to_string()
}

fn service_name(index: usize) -> String {
    format!("svc-{index}")
}

fn slice_name(index: usize) -> String {
    format!("{}-bench", service_name(index))
}

/// The name of Service `index`'s load balancer.
fn balancer_name(index: usize) -> String {
    model::balancer_name(NAMESPACE, &service_name(index), "tcp", DEFAULT_VPC)
}

/// Service `index`: no selector, an explicit ClusterIP from 10.96.1.0 on.
fn service(index: usize) -> Service {
    let first = u32::from(Ipv4Addr::new(10, 96, 1, 0));
    let ip = Ipv4Addr::from(first + u32::try_from(index).expect("Service index")).to_string();
    Service {
        metadata: ObjectMeta {
            name: Some(service_name(index)),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some(ip.clone()),
            cluster_ips: Some(vec![ip]),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                protocol: Some("TCP".into()),
                port: PORT,
                target_port: Some(IntOrString::Int(TARGET_PORT)),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// The ready endpoints at `addresses`, as a user writes them (no pod behind them).
fn endpoints(addresses: &[String]) -> Vec<Endpoint> {
    addresses
        .iter()
        .map(|address| Endpoint {
            addresses: vec![address.clone()],
            conditions: Some(EndpointConditions {
                ready: Some(true),
                serving: Some(true),
                terminating: Some(false),
            }),
            ..Endpoint::default()
        })
        .collect()
}

impl Workload {
    fn new(size: Size) -> Self {
        let addresses = (0..size.services)
            .map(|s| {
                (0..size.endpoints)
                    .map(|e| endpoint_ip(s * size.endpoints + e))
                    .collect()
            })
            .collect();
        Self { size, addresses }
    }

    /// The EndpointSlice of Service `index`, made by hand.
    fn slice(&self, index: usize) -> EndpointSlice {
        EndpointSlice {
            metadata: ObjectMeta {
                name: Some(slice_name(index)),
                labels: Some(
                    [
                        (SERVICE_NAME_LABEL.to_string(), service_name(index)),
                        (
                            "endpointslice.kubernetes.io/managed-by".to_string(),
                            "bench".to_string(),
                        ),
                    ]
                    .into(),
                ),
                ..ObjectMeta::default()
            },
            address_type: "IPv4".into(),
            endpoints: endpoints(&self.addresses[index]),
            ports: Some(vec![EndpointPort {
                name: Some("http".into()),
                protocol: Some("TCP".into()),
                port: Some(TARGET_PORT),
                ..EndpointPort::default()
            }]),
        }
    }

    /// The load balancer the controller writes for Service `index` (its own model).
    fn balancer(&self, index: usize) -> LoadBalancer {
        let service = service(index);
        let spec = service.spec.as_ref().expect("Service spec");
        let vpcs = BTreeSet::from([DEFAULT_VPC.to_owned()]);
        let locate = |_, _: Option<&_>| Located::Vpc(DEFAULT_VPC.to_owned());
        let plan = model::plan(
            NAMESPACE,
            &service_name(index),
            spec,
            &[&self.slice(index)],
            &vpcs,
            &locate,
        );
        plan.balancers
            .into_iter()
            .next()
            .expect("one balancer per Service")
    }

    /// Applies change `n` (Services in turn, the first endpoint replaced by a new address):
    /// the Service changed and the new backend (`ip:port`).
    fn change(&mut self, n: usize) -> (usize, String) {
        let index = n % self.size.services;
        let address = endpoint_ip(self.size.services * self.size.endpoints + n);
        self.addresses[index][0] = address.clone();
        (index, format!("{address}:{TARGET_PORT}"))
    }
}

/// What the NB monitor last saw of one load balancer.
struct Seen {
    /// Its backends (`ip:port`, every vip's).
    backends: BTreeSet<String>,
    /// When that state arrived.
    changed: Instant,
    /// When it first held the wanted number of backends.
    complete: Option<Instant>,
}

/// The load balancers of NB by name, as a monitor reports them, with the time of each
/// change.
#[derive(Clone, Default)]
struct Balancers(Arc<Mutex<HashMap<String, Seen>>>);

impl Balancers {
    /// Records the Load_Balancer `events` from now on; a balancer is complete once it holds
    /// `wanted` backends.
    fn record(&self, mut events: UnboundedReceiver<RowEvent>, wanted: usize) {
        let seen = self.0.clone();
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                let now = Instant::now();
                let (RowEvent::Insert { new, .. } | RowEvent::Modify { new, .. }) = event else {
                    continue;
                };
                let name = new.get_str("name").unwrap_or_default().to_owned();
                let backends: BTreeSet<String> = new
                    .get_str_map("vips")
                    .values()
                    .flat_map(|list| list.split(','))
                    .filter(|backend| !backend.is_empty())
                    .map(str::to_owned)
                    .collect();
                let mut seen = seen.lock().unwrap();
                let entry = seen.entry(name).or_insert_with(|| Seen {
                    backends: BTreeSet::new(),
                    changed: now,
                    complete: None,
                });
                if backends.len() == wanted {
                    entry.complete.get_or_insert(now);
                }
                entry.backends = backends;
                entry.changed = now;
            }
        });
    }

    /// When each of `names` was first complete, once all are.
    fn completed(&self, names: &[String]) -> Result<Vec<Instant>, String> {
        let seen = self.0.lock().unwrap();
        let times: Vec<Instant> = names
            .iter()
            .filter_map(|name| seen.get(name)?.complete)
            .collect();
        if times.len() == names.len() {
            Ok(times)
        } else {
            Err(format!("{} of {} complete", times.len(), names.len()))
        }
    }

    /// When balancer `name` last changed, once it holds `backend`.
    fn holding(&self, name: &str, backend: &str) -> Result<Instant, String> {
        match self.0.lock().unwrap().get(name) {
            Some(seen) if seen.backends.contains(backend) => Ok(seen.changed),
            Some(seen) => Err(format!("{name}: {:?}", seen.backends)),
            None => Err(format!("no {name}")),
        }
    }
}

/// The raw writer: `rows` inserted `per_txn` to a transaction, `WINDOW` transactions in
/// flight; the time until the last reply.
async fn raw_insert(remote: &str, rows: &[LoadBalancer], per_txn: usize) -> Result<Duration> {
    let txns = rows
        .chunks(per_txn)
        .enumerate()
        .map(|(id, chunk)| {
            let mut tx = TxnBuilder::new(ovn::nb::DATABASE);
            for row in chunk {
                tx.insert(LoadBalancer::NAME, row.to_row());
            }
            serde_json::to_vec(&json!({"method": "transact", "params": tx.params(), "id": id}))
        })
        .collect::<Result<Vec<_>, _>>()?;
    testenv::raw_writer::send_pipelined(remote, txns, WINDOW).await
}

/// Deletes every Load_Balancer, checking that there were `count`.
async fn delete_balancers(nb: &Client, count: usize) -> Result<()> {
    let mut tx = TxnBuilder::new(ovn::nb::DATABASE);
    tx.delete(LoadBalancer::NAME, Vec::new());
    let deleted = nb.commit(&tx).await?.results[0].count();
    ensure!(
        deleted == Some(count as u64),
        "the raw writer left {deleted:?} balancers, not {count}"
    );
    Ok(())
}

/// The floor's figures.
struct Floor {
    batched: Duration,
    single: Duration,
    /// Round-trips of single-balancer updates, sorted.
    round_trips: Vec<Duration>,
}

/// The floor on `env`'s NB, before the controller starts (nothing else writes).
async fn measure_floor(env: &ControllerEnv, workload: &Workload) -> Result<Floor> {
    let remote = env.ovn.nb_remote();
    let nb = Client::connect(ClientConfig::from_remotes(&remote)?).await?;
    let services = workload.size.services;
    let rows: Vec<LoadBalancer> = (0..services).map(|i| workload.balancer(i)).collect();
    let batched = raw_insert(&remote, &rows, BATCH).await?;
    delete_balancers(&nb, services).await?;
    let single = raw_insert(&remote, &rows, 1).await?;
    // An endpoint change's transaction: one balancer's columns rewritten.
    let mut changed = workload.clone();
    let mut round_trips = Vec::with_capacity(workload.size.changes);
    for n in 0..workload.size.changes {
        let (index, _) = changed.change(n);
        let row = changed.balancer(index);
        let mut tx = TxnBuilder::new(ovn::nb::DATABASE);
        tx.update(
            LoadBalancer::NAME,
            vec![Condition::eq("name", row.name.as_str())],
            row.to_row(),
        );
        let start = Instant::now();
        nb.commit(&tx).await?;
        round_trips.push(start.elapsed());
    }
    round_trips.sort();
    delete_balancers(&nb, services).await?;
    Ok(Floor {
        batched,
        single,
        round_trips,
    })
}

/// Creates `objects` through `api`, `CONCURRENCY` at a time.
async fn create_all<K>(api: &Api<K>, objects: Vec<K>) -> Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    stream::iter(objects)
        .map(|object| async move { api.create(&PostParams::default(), &object).await })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    // `cargo bench` passes `--bench`; under `cargo test --all-targets` this
    // is a quick smoke run that only checks everything works.
    let full = std::env::args().any(|a| a == "--bench");
    let size = if full {
        Size {
            services: 1000,
            endpoints: 10,
            changes: 200,
        }
    } else {
        println!("(smoke run; `cargo bench -p controller --bench services` prints real figures)");
        Size {
            services: 20,
            endpoints: 3,
            changes: 10,
        }
    };
    // `cargo build` of the controller (once per process) now, not on the cold start's clock.
    workspace_bin("controller", "rovn-controller")?;
    let mut env =
        ControllerEnv::start_without_controller(OvnEnv::builder(), "services-bench").await?;
    // Warnings only: the controller's logging stays out of the figures.
    env.options.rust_log = Some("warn".to_owned());
    let mut workload = Workload::new(size);

    let floor = measure_floor(&env, &workload).await?;

    // Everything in the API server before the controller starts.
    let start = Instant::now();
    env.cluster.create_namespace(NAMESPACE).await?;
    env.cluster
        .create_subnet(NAMESPACE, subnet_spec(None, CIDR, &[NAMESPACE]))
        .await?;
    let client = env.cluster.client().clone();
    let services: Api<Service> = Api::namespaced(client.clone(), NAMESPACE);
    let slices: Api<EndpointSlice> = Api::namespaced(client, NAMESPACE);
    create_all(&services, (0..size.services).map(service).collect()).await?;
    create_all(
        &slices,
        (0..size.services).map(|i| workload.slice(i)).collect(),
    )
    .await?;
    let created = start.elapsed();

    // Our own NB monitor, from before the controller's first write.
    let nb = Client::connect(ClientConfig::from_remotes(&env.ovn.nb_remote())?).await?;
    let replica = nb
        .monitor(
            ovn::nb::DATABASE,
            MonitorSpec::new().table_columns(LoadBalancer::NAME, &["name", "vips"]),
        )
        .await?;
    let balancers = Balancers::default();
    balancers.record(replica.subscribe(), size.endpoints);

    // Cold start.
    let start = Instant::now();
    env.start_controller().await?;
    let ready = start.elapsed();
    let names: Vec<String> = (0..size.services).map(balancer_name).collect();
    let what = format!(
        "{} load balancers with {} backends each",
        size.services, size.endpoints
    );
    let completed = wait_until_async(WAIT, &what, || async { balancers.completed(&names) }).await?;
    let first = completed
        .iter()
        .min()
        .context("balancers")?
        .duration_since(start);
    let last = completed
        .iter()
        .max()
        .context("balancers")?
        .duration_since(start);
    let memory = env.controller().process.memory()?;

    // Endpoint changes, one at a time.
    let mut latencies = Vec::with_capacity(size.changes);
    let mut writes = Vec::with_capacity(size.changes);
    for n in 0..size.changes {
        let (index, backend) = workload.change(n);
        let patch = json!({"endpoints": endpoints(&workload.addresses[index])});
        let name = balancer_name(index);
        let start = Instant::now();
        slices
            .patch(
                &slice_name(index),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
        writes.push(start.elapsed());
        let what = format!("{backend} in {name}");
        let changed = wait_until_async(HANG_GUARD, &what, || async {
            balancers.holding(&name, &backend)
        })
        .await?;
        latencies.push(changed.duration_since(start));
    }
    latencies.sort();
    writes.sort();

    let Size {
        services: count,
        endpoints: per,
        changes,
    } = size;
    let rtt = &floor.round_trips;
    println!(
        "services: {count} Services × {per} endpoints (no selector, hand-made EndpointSlices), \
         {changes} endpoint changes; real kube-apiserver + etcd, NB ovsdb-server, rovn-controller"
    );
    println!(
        "  {:<62} {:>9.2} s",
        format!("{count} Services + {count} EndpointSlices created ({CONCURRENCY} in flight)"),
        created.as_secs_f64()
    );
    println!("  floor: raw ovsdb-server, the controller's rows, {WINDOW} transactions in flight");
    println!(
        "    {:<60} {:>9.1} ms {:>8.0} balancers/s",
        format!("{count} balancers, {} per transaction", BATCH.min(count)),
        ms(floor.batched),
        count as f64 / floor.batched.as_secs_f64()
    );
    println!(
        "    {:<60} {:>9.1} ms {:>8.0} balancers/s",
        format!("{count} balancers, one per transaction"),
        ms(floor.single),
        count as f64 / floor.single.as_secs_f64()
    );
    println!(
        "    {:<60} p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        format!("one balancer updated, round-trip ({changes}, one at a time)"),
        ms(percentile(rtt, 0.50)),
        ms(percentile(rtt, 0.99)),
        ms(*rtt.last().context("round-trips")?)
    );
    println!("  cold start, from the controller's start");
    println!(
        "    {:<60} {:>9.2} s",
        "ready (/readyz)",
        ready.as_secs_f64()
    );
    println!(
        "    {:<60} {:>9.2} s",
        "first balancer with its backends in NB",
        first.as_secs_f64()
    );
    println!(
        "    {:<60} {:>9.2} s {:>8.0} balancers/s",
        format!("all {count} balancers with their {per} backends in NB"),
        last.as_secs_f64(),
        count as f64 / last.as_secs_f64()
    );
    println!(
        "    {:<60} ×{:.1} raw batched, ×{:.1} raw one per transaction",
        "ratio controller/raw",
        last.as_secs_f64() / floor.batched.as_secs_f64(),
        last.as_secs_f64() / floor.single.as_secs_f64()
    );
    println!(
        "    {:<60} VmHWM {:.1} MiB  VmRSS {:.1} MiB",
        "controller memory", memory.peak_mib, memory.resident_mib
    );
    println!(
        "  endpoint change: API write -> new backend in the NB vip ({changes}, one at a time)"
    );
    println!(
        "    {:<60} p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
        "latency",
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.99)),
        ms(*latencies.last().context("latencies")?)
    );
    println!(
        "    {:<60} p50 {:.1} ms  p99 {:.1} ms",
        "of which the API write (patch answered)",
        ms(percentile(&writes, 0.50)),
        ms(percentile(&writes, 0.99))
    );
    println!(
        "    {:<60} p50 ×{:.1}  p99 ×{:.1}",
        "ratio latency/raw round-trip",
        percentile(&latencies, 0.50).as_secs_f64() / percentile(rtt, 0.50).as_secs_f64(),
        percentile(&latencies, 0.99).as_secs_f64() / percentile(rtt, 0.99).as_secs_f64()
    );
    Ok(())
}
