//! NetworkPolicies: P policies over N pods in 20 namespaces, all created in the API server
//! before the controller starts → cold start: time from the controller's start until every
//! pod has its port and every policy's port group and peer address set in NB hold exactly
//! the pods they should, and the controller's peak and current memory (VmHWM, VmRSS); then
//! C label changes, one at a time (a selected pod relabelled out of its policy, then back)
//! → time from the API write until the policy's port group in NB holds the new members,
//! p50/p99/max. NB is observed through a monitor of our own: the figures are the monitor's
//! event times, polls only wait for them.
//!
//! The shape: namespace `np-i` (label `team=t<i%5>`) holds N/20 pods labelled
//! `app=a<j%25>`; its 25 policies `p-k` select `app=a<k>` (N/500 pods) and admit TCP 8080
//! from `app=a<k+1>` pods of the namespaces labelled `team=t<k%5>` (4 namespaces); every
//! other policy also isolates egress, admitting TCP 443 to an ipBlock.
//!
//! The floor, measured in the same run on the same NB ovsdb-server before the controller
//! starts: the controller's own rows for every policy (built by its model, the pods' ports
//! left out) inserted by the raw writer ([`testenv::raw_writer`]: pre-serialized, `WINDOW`
//! transactions in flight), one policy per transaction and `BATCH` per transaction; and
//! the round-trip of one transaction updating one port group's members, one at a time.
//! Printed with the ratios controller/raw.
//!
//! Real `rovn-controller`, NB ovsdb-server, kube-apiserver + etcd.
//! `cargo bench -p controller --bench network_policies`: P = 500, N = 2000, C = 200.
//! Without `--bench` (e.g. `cargo test --all-targets`): a smoke run, P = 100, N = 500,
//! C = 10.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use ovn::Table;
use ovn::nb::{Acl, AddressSet, PortGroup};
use ovsdb::{Atom, Client, ClientConfig, Condition, MonitorSpec, RowEvent, TxnBuilder, Value};
use serde_json::json;
use testenv::figures::{ms, percentile};
use testenv::ovn::OvnEnv;
use testenv::poll::{HANG_GUARD, wait_until_async};
use testenv::stack::{ControllerEnv, pod, subnet_spec, workspace_bin};
use tokio::sync::mpsc::UnboundedReceiver;

// The controller's own rows (product code).
use controller::network_policy::model::{self, Cluster, PolicyPod};

/// Namespaces of the pods and policies.
const NAMESPACES: usize = 20;
/// Pod labels `app=a<0..APPS>` in each namespace, and policies per namespace.
const APPS: usize = 25;
/// Namespace labels `team=t<0..TEAMS>`.
const TEAMS: usize = 5;
/// The Subnet's CIDR (default VPC), bound to every namespace.
const CIDR: &str = "10.80.0.0/16";
/// Node name of the pods (no kubelet runs).
const NODE: &str = "node-1";
/// Policies per transaction of the raw writer's batched inserts.
const BATCH: usize = 25;
/// Transactions in flight at once for the raw writer (as the other benches).
const WINDOW: usize = 256;
/// API objects created at once (as `testenv::stack::Cluster` creates pods).
const CONCURRENCY: usize = 64;
/// Bound of the cold-start wait (hang guard).
const WAIT: Duration = Duration::from_secs(900);

/// How much the run makes.
#[derive(Clone, Copy)]
struct Size {
    policies: usize,
    pods: usize,
    changes: usize,
}

impl Size {
    /// Pods per namespace.
    fn per_namespace(self) -> usize {
        self.pods / NAMESPACES
    }
    /// Policies per namespace (at most [`APPS`]).
    fn policies_per_namespace(self) -> usize {
        (self.policies / NAMESPACES).min(APPS)
    }
    /// Pods a policy selects (and pods per app per namespace).
    fn selected(self) -> usize {
        self.per_namespace() / APPS
    }
    /// Peers of a policy: its peer app in the namespaces of one team.
    fn peers(self) -> usize {
        self.selected() * (NAMESPACES / TEAMS)
    }
}

fn namespace(i: usize) -> String {
    format!("np-{i}")
}

fn labels(key: &str, value: String) -> Option<BTreeMap<String, String>> {
    Some([(key.to_string(), value)].into())
}

fn selector(key: &str, value: String) -> Option<LabelSelector> {
    Some(LabelSelector {
        match_labels: labels(key, value),
        ..LabelSelector::default()
    })
}

/// Pod `j` of a namespace: `app=a<j % APPS>`.
fn bench_pod(j: usize) -> Pod {
    let mut pod = pod(&format!("pod-{j}"), NODE, &[]);
    pod.metadata.labels = labels("app", format!("a{}", j % APPS));
    pod
}

/// Policy `k` of a namespace (see the module documentation).
fn policy(k: usize) -> NetworkPolicy {
    let tcp = |port| NetworkPolicyPort {
        port: Some(IntOrString::Int(port)),
        protocol: Some("TCP".into()),
        end_port: None,
    };
    let isolate_egress = k % 2 == 1;
    NetworkPolicy {
        metadata: ObjectMeta {
            name: Some(format!("p-{k}")),
            ..ObjectMeta::default()
        },
        spec: Some(NetworkPolicySpec {
            pod_selector: selector("app", format!("a{k}")),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![NetworkPolicyPeer {
                    namespace_selector: selector("team", format!("t{}", k % TEAMS)),
                    pod_selector: selector("app", format!("a{}", (k + 1) % APPS)),
                    ip_block: None,
                }]),
                ports: Some(vec![tcp(8080)]),
            }]),
            egress: isolate_egress.then(|| {
                vec![NetworkPolicyEgressRule {
                    to: Some(vec![NetworkPolicyPeer {
                        ip_block: Some(IPBlock {
                            cidr: "10.200.0.0/16".into(),
                            except: Some(vec!["10.200.1.0/24".into()]),
                        }),
                        ..NetworkPolicyPeer::default()
                    }]),
                    ports: Some(vec![tcp(443)]),
                }]
            }),
            policy_types: Some(if isolate_egress {
                vec!["Ingress".into(), "Egress".into()]
            } else {
                vec!["Ingress".into()]
            }),
        }),
    }
}

/// What the NB monitor last saw of one port group or address set.
struct Seen {
    /// Its members (ports or addresses).
    members: usize,
    /// When that state arrived.
    changed: Instant,
    /// When it first held the wanted number.
    complete: Option<Instant>,
}

/// Our port groups and address sets by name, as a monitor reports them.
#[derive(Clone, Default)]
struct Rows(Arc<Mutex<HashMap<String, Seen>>>);

impl Rows {
    /// Records `events` from now on; a port group is complete with `groups` ports, an IPv4
    /// address set with `peers` addresses (IPv6 sets are empty: not waited for).
    fn record(&self, mut events: UnboundedReceiver<RowEvent>, groups: usize, peers: usize) {
        let seen = self.0.clone();
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                let now = Instant::now();
                let (RowEvent::Insert { new, table } | RowEvent::Modify { new, table, .. }) = event
                else {
                    continue;
                };
                let name = new.get_str("name").unwrap_or_default().to_owned();
                let (column, wanted) = if table == PortGroup::NAME {
                    ("ports", groups)
                } else {
                    ("addresses", peers)
                };
                let members = match new.get(column) {
                    Some(Value::Set(set)) => set.len(),
                    Some(_) => 1,
                    None => 0,
                };
                let mut seen = seen.lock().unwrap();
                let entry = seen.entry(name).or_insert_with(|| Seen {
                    members: 0,
                    changed: now,
                    complete: None,
                });
                if members == wanted {
                    entry.complete.get_or_insert(now);
                }
                entry.members = members;
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

    /// When row `name` last changed, once it holds `members`.
    fn holding(&self, name: &str, members: usize) -> Result<Instant, String> {
        match self.0.lock().unwrap().get(name) {
            Some(seen) if seen.members == members => Ok(seen.changed),
            Some(seen) => Err(format!("{name}: {} members", seen.members)),
            None => Err(format!("no {name}")),
        }
    }
}

/// The controller's rows of every policy, from its own model (no pod has a port yet).
fn planned(size: Size) -> Vec<model::Plan> {
    let namespaces: BTreeMap<String, BTreeMap<String, String>> = (0..NAMESPACES)
        .map(|i| {
            let team = labels("team", format!("t{}", i % TEAMS)).unwrap_or_default();
            (namespace(i), team)
        })
        .collect();
    let pods: Vec<PolicyPod> = Vec::new();
    let cluster = Cluster {
        pods: &pods,
        namespaces: &namespaces,
        vpc: None,
        node_link: "100.64.0.0/16".parse().expect("CIDR"),
    };
    (0..NAMESPACES)
        .flat_map(|i| (0..size.policies_per_namespace()).map(move |k| (i, k)))
        .map(|(i, k)| {
            let spec = policy(k).spec.expect("spec");
            model::plan(&namespace(i), &format!("p-{k}"), &spec, &cluster)
        })
        .collect()
}

/// The raw writer: every plan's rows (ACLs in their group), `per_txn` plans to a
/// transaction, `WINDOW` transactions in flight; the time until the last reply.
async fn raw_insert(remote: &str, plans: &[model::Plan], per_txn: usize) -> Result<Duration> {
    let txns = plans
        .chunks(per_txn)
        .enumerate()
        .map(|(id, chunk)| {
            let mut tx = TxnBuilder::new(ovn::nb::DATABASE);
            for plan in chunk {
                let acls: Vec<Atom> = plan
                    .acls
                    .iter()
                    .map(|acl| Atom::from(&tx.insert(Acl::NAME, acl.to_row())))
                    .collect();
                let mut group = plan.group.to_row();
                group.set("acls", Value::set(acls));
                tx.insert(PortGroup::NAME, group);
                for set in &plan.address_sets {
                    tx.insert(AddressSet::NAME, set.to_row());
                }
            }
            serde_json::to_vec(&json!({"method": "transact", "params": tx.params(), "id": id}))
        })
        .collect::<Result<Vec<_>, _>>()?;
    testenv::raw_writer::send_pipelined(remote, txns, WINDOW).await
}

/// Deletes every port group and address set (their ACLs go with the groups).
async fn delete_rows(nb: &Client) -> Result<()> {
    let mut tx = TxnBuilder::new(ovn::nb::DATABASE);
    tx.delete(PortGroup::NAME, Vec::new());
    tx.delete(AddressSet::NAME, Vec::new());
    nb.commit(&tx).await?;
    Ok(())
}

/// The floor's figures.
struct Floor {
    batched: Duration,
    single: Duration,
    /// Round-trips of one port group's members rewritten, sorted.
    round_trips: Vec<Duration>,
}

/// The floor on `env`'s NB, before the controller starts (nothing else writes).
async fn measure_floor(env: &ControllerEnv, size: Size) -> Result<Floor> {
    let remote = env.ovn.nb_remote();
    let nb = Client::connect(ClientConfig::from_remotes(&remote)?).await?;
    let plans = planned(size);
    let batched = raw_insert(&remote, &plans, BATCH).await?;
    delete_rows(&nb).await?;
    let single = raw_insert(&remote, &plans, 1).await?;
    let mut round_trips = Vec::with_capacity(size.changes);
    for n in 0..size.changes {
        let group = &plans[n % plans.len()].group;
        let mut row = ovsdb::Row::new();
        row.set("external_ids", Value::map([("bench", n.to_string())]));
        let mut tx = TxnBuilder::new(ovn::nb::DATABASE);
        tx.update(
            PortGroup::NAME,
            vec![Condition::eq("name", group.name.as_str())],
            row,
        );
        let start = Instant::now();
        nb.commit(&tx).await?;
        round_trips.push(start.elapsed());
    }
    round_trips.sort();
    delete_rows(&nb).await?;
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
            policies: 500,
            pods: 2000,
            changes: 200,
        }
    } else {
        println!(
            "(smoke run; `cargo bench -p controller --bench network_policies` prints real figures)"
        );
        Size {
            policies: 100,
            pods: 500,
            changes: 10,
        }
    };
    // `cargo build` of the controller (once per process) now, not on the cold start's clock.
    workspace_bin("controller", "rovn-controller")?;
    let mut env =
        ControllerEnv::start_without_controller(OvnEnv::builder(), "policies-bench").await?;
    // Warnings only: the controller's logging stays out of the figures.
    env.options.rust_log = Some("warn".to_owned());

    let floor = measure_floor(&env, size).await?;

    // Everything in the API server before the controller starts.
    let start = Instant::now();
    let names: Vec<String> = (0..NAMESPACES).map(namespace).collect();
    let client = env.cluster.client().clone();
    for (i, name) in names.iter().enumerate() {
        env.cluster.create_namespace(name).await?;
        let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
        namespaces
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"team": format!("t{}", i % TEAMS)}}})),
            )
            .await?;
    }
    let bound: Vec<&str> = names.iter().map(String::as_str).collect();
    env.cluster
        .create_subnet("policies", subnet_spec(None, CIDR, &bound))
        .await?;
    for name in &names {
        env.cluster
            .create_pods(name, (0..size.per_namespace()).map(bench_pod).collect())
            .await?;
        let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), name);
        create_all(
            &policies,
            (0..size.policies_per_namespace()).map(policy).collect(),
        )
        .await?;
    }
    let created = start.elapsed();
    let policies = NAMESPACES * size.policies_per_namespace();

    // Our own NB monitor, from before the controller's first write.
    let nb = Client::connect(ClientConfig::from_remotes(&env.ovn.nb_remote())?).await?;
    let replica = nb
        .monitor(
            ovn::nb::DATABASE,
            MonitorSpec::new()
                .table_columns(PortGroup::NAME, &["name", "ports"])
                .table_columns(AddressSet::NAME, &["name", "addresses"]),
        )
        .await?;
    let rows = Rows::default();
    rows.record(replica.subscribe(), size.selected(), size.peers());
    let mut waited: Vec<String> = Vec::new();
    for i in 0..NAMESPACES {
        for k in 0..size.policies_per_namespace() {
            let group = model::group_name(&namespace(i), &format!("p-{k}"));
            waited.push(format!("{group}_in0_ip4"));
            waited.push(group);
        }
    }

    // Cold start.
    let start = Instant::now();
    env.start_controller().await?;
    let ready = start.elapsed();
    let what = format!(
        "{policies} port groups with {} pods and their peer sets with {} addresses",
        size.selected(),
        size.peers()
    );
    let completed = wait_until_async(WAIT, &what, || async { rows.completed(&waited) }).await?;
    let last = completed
        .iter()
        .max()
        .context("rows")?
        .duration_since(start);
    let memory = env.controller().process.memory()?;

    // Label changes, one at a time: pod-0 of a namespace (selected by p-0) out and back.
    let mut latencies = Vec::with_capacity(size.changes);
    let mut writes = Vec::with_capacity(size.changes);
    for n in 0..size.changes {
        let ns = namespace((n / 2) % NAMESPACES);
        let out = n % 2 == 0;
        let (app, members) = if out {
            ("moved".to_string(), size.selected() - 1)
        } else {
            ("a0".to_string(), size.selected())
        };
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let group = model::group_name(&ns, "p-0");
        let start = Instant::now();
        pods.patch(
            "pod-0",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"app": app}}})),
        )
        .await?;
        writes.push(start.elapsed());
        let what = format!("{group} with {members} ports");
        let changed = wait_until_async(HANG_GUARD, &what, || async {
            rows.holding(&group, members)
        })
        .await?;
        latencies.push(changed.duration_since(start));
    }
    latencies.sort();
    writes.sort();

    let Size { pods, changes, .. } = size;
    let rtt = &floor.round_trips;
    println!(
        "network_policies: {policies} NetworkPolicies over {pods} pods in {NAMESPACES} \
         namespaces, {changes} label changes; real kube-apiserver + etcd, NB ovsdb-server, \
         rovn-controller"
    );
    println!(
        "  {:<62} {:>9.2} s",
        format!("namespaces, {pods} pods, {policies} policies created"),
        created.as_secs_f64()
    );
    println!(
        "  floor: raw ovsdb-server, the controller's rows (pods' ports left out), \
         {WINDOW} transactions in flight"
    );
    println!(
        "    {:<60} {:>9.1} ms {:>8.0} policies/s",
        format!("{policies} policies, {BATCH} per transaction"),
        ms(floor.batched),
        policies as f64 / floor.batched.as_secs_f64()
    );
    println!(
        "    {:<60} {:>9.1} ms {:>8.0} policies/s",
        format!("{policies} policies, one per transaction"),
        ms(floor.single),
        policies as f64 / floor.single.as_secs_f64()
    );
    println!(
        "    {:<60} p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        format!("one port group updated, round-trip ({changes}, one at a time)"),
        ms(percentile(rtt, 0.50)),
        ms(percentile(rtt, 0.99)),
        ms(*rtt.last().context("round-trips")?)
    );
    println!("  cold start, from the controller's start (pods' ports made by it too)");
    println!(
        "    {:<60} {:>9.2} s",
        "ready (/readyz)",
        ready.as_secs_f64()
    );
    println!(
        "    {:<60} {:>9.2} s {:>8.0} policies/s",
        format!("all {policies} groups and peer sets complete in NB"),
        last.as_secs_f64(),
        policies as f64 / last.as_secs_f64()
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
    println!("  label change: API write -> port group members in NB ({changes}, one at a time)");
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
