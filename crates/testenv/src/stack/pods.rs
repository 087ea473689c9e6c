//! Pods as a user and the scheduler would make them (there is no scheduler: a pod names its
//! node), and what the controller writes on them: the pod-network contract
//! ([`PodNetwork`]'s annotations).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use api::pod_network::{InvalidPodNetwork, PodAddress, PodNetwork, is_allocated};
use futures::TryStreamExt;
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use kube::api::ObjectMeta;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Pod `name` bound to `node` with `annotations`: one `pause` container, nothing else.
pub fn pod(name: &str, node: &str, annotations: &[(&str, &str)]) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            annotations: (!annotations.is_empty()).then(|| {
                annotations
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            }),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            node_name: Some(node.to_owned()),
            containers: vec![Container {
                name: "main".to_owned(),
                image: Some("registry.k8s.io/pause:3.10".to_owned()),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        ..Pod::default()
    }
}

/// Whether the controller allocated `pod` (`ovn.kubernetes.io/allocated: "true"`).
pub fn allocated(pod: &Pod) -> bool {
    is_allocated(pod.annotations())
}

/// The network the controller records for a pod on `logical_switch`: MAC `mac`, one
/// address `address` with its Subnet's prefix (`10.0.2.5/24`) and `gateway` — what a test
/// playing the controller writes with [`Cluster::annotate_pod`](super::cluster::Cluster::annotate_pod).
pub fn pod_network(
    logical_switch: &str,
    mac: &str,
    address: &str,
    gateway: &str,
) -> Result<PodNetwork> {
    Ok(PodNetwork {
        logical_switch: logical_switch.to_owned(),
        mac: mac.parse().with_context(|| format!("MAC {mac}"))?,
        addresses: vec![PodAddress {
            address: address
                .parse::<ipnet::IpNet>()
                .with_context(|| format!("address {address}"))?,
            gateway: Some(
                gateway
                    .parse()
                    .with_context(|| format!("gateway {gateway}"))?,
            ),
        }],
    })
}

/// What the annotations of a pod said once (an unreadable set is kept as its error).
pub type Seen = Result<PodNetwork, InvalidPodNetwork>;

/// Every distinct network ([`PodNetwork`]) each allocated pod of a namespace ever showed,
/// seen by a watch started before the pods exist (keyed by pod uid). The watch stops when this is dropped.
#[derive(Debug)]
pub struct AnnotationLog {
    seen: Arc<Mutex<HashMap<String, Vec<Seen>>>>,
    count: watch::Receiver<usize>,
    task: JoinHandle<()>,
}

impl AnnotationLog {
    /// Starts watching `pods` (the pods of one namespace).
    pub fn watch(pods: Api<Pod>) -> Self {
        let seen: Arc<Mutex<HashMap<String, Vec<Seen>>>> = Arc::default();
        let (count_tx, count) = watch::channel(0);
        let recorder = seen.clone();
        let task = tokio::spawn(async move {
            let mut events =
                std::pin::pin!(watcher(pods, watcher::Config::default()).default_backoff());
            while let Ok(Some(event)) = events.try_next().await {
                let (watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) = event else {
                    continue;
                };
                let Some(uid) = pod.uid() else {
                    continue;
                };
                let network = match PodNetwork::from_annotations(pod.annotations()) {
                    Ok(None) => continue,
                    Ok(Some(network)) => Ok(network),
                    Err(invalid) => Err(invalid),
                };
                let mut seen = recorder.lock().unwrap_or_else(|e| e.into_inner());
                let list = seen.entry(uid).or_default();
                if list.last() != Some(&network) {
                    list.push(network);
                }
                count_tx.send_replace(seen.len());
            }
        });
        Self { seen, count, task }
    }

    /// How many pods were seen allocated.
    pub fn allocated(&self) -> usize {
        *self.count.borrow()
    }

    /// Waits until at least `count` pods were seen allocated, for at most `timeout` (woken
    /// by the watch, not polled: fit for timing a burst).
    pub async fn wait_allocated(&mut self, count: usize, timeout: Duration) -> Result<()> {
        let reached = tokio::time::timeout(timeout, self.count.wait_for(|n| *n >= count))
            .await
            .map(|watched| watched.map(drop));
        match reached {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => bail!("the pod watch ended before {count} pods were allocated"),
            Err(_) => bail!(
                "timed out after {timeout:?} waiting for {count} pods allocated ({} seen)",
                self.allocated()
            ),
        }
    }

    /// Pods (by uid) whose network changed after being set, with every network seen.
    pub fn changed(&self) -> BTreeMap<String, Vec<Seen>> {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, list)| list.len() > 1)
            .map(|(uid, list)| (uid.clone(), list.clone()))
            .collect()
    }
}

impl Drop for AnnotationLog {
    fn drop(&mut self) {
        self.task.abort();
    }
}
