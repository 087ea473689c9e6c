//! The pod tests' and benchmark's environment: a real NB ovsdb-server with
//! northd, a real kube-apiserver of its own (the controller reconciles every
//! pod of the API server), the real `rovn-controller`, and helpers to create
//! pods in bulk, read our pod ports from OVN and record every allocation
//! annotation the API server ever shows.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use api::condition::{READY, is_condition_true};
use api::{IP, Subnet, SubnetSpec};
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::{Container, Namespace, Pod, PodSpec};
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use ovn::Table;
use ovn::nb::{LogicalSwitch, LogicalSwitchPort};
use ovsdb::{ClientConfig, Condition};
use testenv::kube::KubeEnv;
use testenv::ovn::OvnEnv;

use crate::common::{Controller, eventually, install_crds};

/// Node name given to every test pod (no kubelet exists).
pub const NODE: &str = "node-1";
/// Pods created or deleted at once.
const CONCURRENCY: usize = 64;

/// OVN + API server + controller (stopped first when dropped).
pub struct PodEnv {
    /// The controller, when running.
    pub controller: Option<Controller>,
    /// Its identity (kept across restarts, so that it takes the Lease back
    /// at once; names its log).
    pub identity: String,
    nb: ovsdb::Client,
    /// An admin client.
    pub client: kube::Client,
    /// The API server (own to this environment).
    pub kube: KubeEnv,
    /// OVN (NB, SB, northd).
    pub ovn: OvnEnv,
}

impl PodEnv {
    /// Starts OVN and an API server, installs the CRDs; no controller yet.
    /// `identity` names the controller (and its log).
    pub async fn start_without_controller(identity: &str) -> Self {
        let ovn = OvnEnv::builder().northd().start().expect("start OVN");
        let kube = tokio::task::spawn_blocking(KubeEnv::start)
            .await
            .expect("join")
            .expect("start kube-apiserver");
        let client = kube.client().await.expect("kube client");
        install_crds(&client).await;
        let nb = ovsdb::Client::connect(ClientConfig::from_remotes(&ovn.nb_remote()).unwrap())
            .await
            .expect("NB client");
        Self {
            controller: None,
            identity: identity.to_string(),
            nb,
            client,
            kube,
            ovn,
        }
    }

    /// Starts everything and waits for the default Subnet.
    pub async fn start(identity: &str) -> Self {
        let mut env = Self::start_without_controller(identity).await;
        env.start_controller().await;
        env.wait_subnet_ready("ovn-default").await;
        env
    }

    /// Starts (or restarts) the controller and waits until it is ready.
    pub async fn start_controller(&mut self) {
        let controller = Controller::start(&self.ovn, &self.kube, &self.identity);
        controller.wait_ready().await;
        self.controller = Some(controller);
    }

    /// Kills the controller with SIGKILL; its log is kept as
    /// `...-<identity>.killed.log` (a restart writes a new one).
    pub fn kill_controller(&mut self) {
        let mut controller = self.controller.take().expect("controller running");
        let pid = nix::unistd::Pid::from_raw(controller.pid() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).expect("SIGKILL");
        let _ = controller.running();
        drop(controller);
        let log = |suffix: &str| {
            std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
                "rovn-controller-{}-{}{suffix}",
                std::process::id(),
                self.identity
            ))
        };
        let _ = std::fs::rename(log(".log"), log(".killed.log"));
    }

    /// The controller.
    pub fn controller(&self) -> &Controller {
        self.controller.as_ref().expect("controller running")
    }

    /// Pods of `namespace`.
    pub fn pods(&self, namespace: &str) -> Api<Pod> {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// IP resources.
    pub fn ips(&self) -> Api<IP> {
        Api::all(self.client.clone())
    }

    /// Subnets.
    pub fn subnets(&self) -> Api<Subnet> {
        Api::all(self.client.clone())
    }

    /// Creates namespace `name`.
    pub async fn create_namespace(&self, name: &str) {
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        Api::<Namespace>::all(self.client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("create namespace");
    }

    /// Creates Subnet `name` on `vpc` (default VPC when `None`) bound to
    /// `namespaces`, and waits until it is Ready.
    pub async fn create_subnet(
        &self,
        name: &str,
        vpc: Option<&str>,
        cidr: &str,
        namespaces: &[&str],
    ) {
        let subnet = Subnet::new(
            name,
            SubnetSpec {
                vpc: vpc.map(str::to_string),
                cidr_block: cidr.to_string(),
                namespaces: namespaces.iter().map(|n| n.to_string()).collect(),
                ..SubnetSpec::default()
            },
        );
        self.subnets()
            .create(&PostParams::default(), &subnet)
            .await
            .expect("create subnet");
        self.wait_subnet_ready(name).await;
    }

    /// Waits until Subnet `name` is Ready.
    pub async fn wait_subnet_ready(&self, name: &str) {
        let subnets = self.subnets();
        eventually(&format!("Subnet {name} Ready"), || async {
            subnets
                .get_opt(name)
                .await
                .expect("get subnet")
                .filter(|s| {
                    s.status
                        .as_ref()
                        .is_some_and(|st| is_condition_true(&st.conditions, READY))
                })
        })
        .await;
    }

    /// `status.v4usingIPs` of Subnet `name`.
    pub async fn subnet_v4_using(&self, name: &str) -> Option<u128> {
        let subnet = self.subnets().get(name).await.expect("get subnet");
        subnet.status?.v4_using_ips.map(|c| c.0)
    }

    /// Creates `pods` in `namespace`, `CONCURRENCY` at a time.
    pub async fn create_pods(&self, namespace: &str, pods: Vec<Pod>) {
        let api = self.pods(namespace);
        stream::iter(pods)
            .map(|pod| {
                let api = api.clone();
                async move {
                    api.create(&PostParams::default(), &pod)
                        .await
                        .expect("create pod");
                }
            })
            .buffer_unordered(CONCURRENCY)
            .collect::<Vec<()>>()
            .await;
    }

    /// Deletes pods `names` of `namespace` at once (grace period 0, as the
    /// kubelet confirms a deletion), `CONCURRENCY` at a time.
    pub async fn delete_pods(&self, namespace: &str, names: &[String]) {
        let api = self.pods(namespace);
        stream::iter(names.iter().cloned())
            .map(|name| {
                let api = api.clone();
                async move {
                    match api
                        .delete(&name, &DeleteParams::default().grace_period(0))
                        .await
                    {
                        Ok(_) => {}
                        Err(kube::Error::Api(e)) if e.code == 404 => {}
                        Err(err) => panic!("delete pod {name}: {err}"),
                    }
                }
            })
            .buffer_unordered(CONCURRENCY)
            .collect::<Vec<()>>()
            .await;
    }

    /// Every pod of `namespace`.
    pub async fn list_pods(&self, namespace: &str) -> Vec<Pod> {
        self.pods(namespace)
            .list(&ListParams::default())
            .await
            .expect("list pods")
            .items
    }

    /// Waits until every pod of `namespace` listed in `names` is allocated;
    /// returns them.
    pub async fn wait_allocated(&self, namespace: &str, count: usize) -> Vec<Pod> {
        eventually(
            &format!("{count} pods of {namespace} allocated"),
            || async {
                let pods = self.list_pods(namespace).await;
                (pods.iter().filter(|p| allocated(p)).count() == count).then_some(pods)
            },
        )
        .await
    }

    /// Every Logical_Switch_Port with `external_ids:rovn:kind=pod`.
    pub async fn pod_ports(&self) -> Vec<LogicalSwitchPort> {
        let mut txn = ovsdb::TxnBuilder::new(ovn::nb::DATABASE);
        txn.select(
            LogicalSwitchPort::NAME,
            vec![Condition::includes(
                "external_ids",
                ovsdb::Value::map([("rovn:kind", "pod")]),
            )],
            None,
        );
        let result = self.nb.commit(&txn).await.expect("select ports");
        result.results[0]
            .rows()
            .unwrap_or_default()
            .iter()
            .map(|row| {
                LogicalSwitchPort::from_row(row.uuid().expect("uuid"), row).expect("typed port")
            })
            .collect()
    }

    /// The switch named `name`.
    pub async fn switch(&self, name: &str) -> Option<LogicalSwitch> {
        let mut txn = ovsdb::TxnBuilder::new(ovn::nb::DATABASE);
        txn.select(LogicalSwitch::NAME, vec![Condition::eq("name", name)], None);
        let result = self.nb.commit(&txn).await.expect("select switch");
        result.results[0]
            .rows()
            .unwrap_or_default()
            .first()
            .map(|row| LogicalSwitch::from_row(row.uuid().expect("uuid"), row).expect("typed"))
    }

    /// Every IP resource.
    pub async fn list_ips(&self) -> Vec<IP> {
        self.ips()
            .list(&ListParams::default())
            .await
            .expect("list IPs")
            .items
    }

    /// Warning Events about pod `namespace/name`, as `reason: note`.
    pub async fn pod_warnings(&self, namespace: &str, name: &str) -> Vec<String> {
        let events: Api<k8s_openapi::api::events::v1::Event> =
            Api::namespaced(self.client.clone(), namespace);
        events
            .list(&ListParams::default())
            .await
            .expect("list events")
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .filter(|e| e.type_.as_deref() == Some("Warning"))
            .map(|e| {
                format!(
                    "{}: {}",
                    e.reason.unwrap_or_default(),
                    e.note.unwrap_or_default()
                )
            })
            .collect()
    }
}

/// A pod named `name` on [`NODE`] with `annotations`.
pub fn pod(name: &str, annotations: &[(&str, &str)]) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            annotations: (!annotations.is_empty()).then(|| {
                annotations
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            }),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            node_name: Some(NODE.to_string()),
            containers: vec![Container {
                name: "app".to_string(),
                image: Some("registry.k8s.io/pause:3.10".to_string()),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        ..Pod::default()
    }
}

/// Whether the controller annotated `pod` (`allocated: "true"`).
pub fn allocated(pod: &Pod) -> bool {
    pod.annotations()
        .get(api::annotations::ALLOCATED)
        .map(String::as_str)
        == Some("true")
}

/// The allocation annotations of `pod` (ip, mac, cidr, gateway, switch).
pub fn allocation(pod: &Pod) -> Option<Allocation> {
    if !allocated(pod) {
        return None;
    }
    let get = |key: &str| pod.annotations().get(key).cloned().unwrap_or_default();
    use api::annotations::*;
    Some(Allocation {
        ip: get(IP_ADDRESS),
        mac: get(MAC_ADDRESS),
        cidr: get(CIDR),
        gateway: get(GATEWAY),
        logical_switch: get(LOGICAL_SWITCH),
    })
}

/// What the allocation annotations of a pod say.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Allocation {
    /// `ip_address`.
    pub ip: String,
    /// `mac_address`.
    pub mac: String,
    /// `cidr`.
    pub cidr: String,
    /// `gateway`.
    pub gateway: String,
    /// `logical_switch`.
    pub logical_switch: String,
}

/// Every distinct allocation annotation set each pod ever showed, seen by a
/// watch started before the pods exist (keyed by pod uid).
#[derive(Clone, Default)]
pub struct AnnotationLog {
    seen: Arc<Mutex<HashMap<String, Vec<Allocation>>>>,
}

impl AnnotationLog {
    /// Starts watching the pods of `namespace`.
    pub fn watch(env: &PodEnv, namespace: &str) -> (Self, tokio::task::JoinHandle<()>) {
        let log = Self::default();
        let seen = log.seen.clone();
        let api = env.pods(namespace);
        let task = tokio::spawn(async move {
            let mut events =
                std::pin::pin!(watcher(api, watcher::Config::default()).default_backoff());
            while let Ok(Some(event)) = events.try_next().await {
                let pods = match event {
                    watcher::Event::Apply(pod) | watcher::Event::InitApply(pod) => vec![pod],
                    _ => Vec::new(),
                };
                for pod in pods {
                    let (Some(uid), Some(allocation)) = (pod.uid(), allocation(&pod)) else {
                        continue;
                    };
                    let mut seen = seen.lock().unwrap();
                    let list = seen.entry(uid).or_default();
                    if list.last() != Some(&allocation) {
                        list.push(allocation);
                    }
                }
            }
        });
        (log, task)
    }

    /// Pods (by uid) whose allocation annotations changed after being set.
    pub fn changed(&self) -> BTreeMap<String, Vec<Allocation>> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, list)| list.len() > 1)
            .map(|(uid, list)| (uid.clone(), list.clone()))
            .collect()
    }

    /// Number of pods seen allocated.
    pub fn allocated(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}
