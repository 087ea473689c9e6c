//! Pods as a user and the scheduler would make them (there is no scheduler: a pod names its
//! node), and what the controller writes on them: the allocation annotations.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Result, bail};
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
    pod.annotations()
        .get(api::annotations::ALLOCATED)
        .map(String::as_str)
        == Some(api::annotations::TRUE)
}

/// What the allocation annotations of a pod say (the controller's part of a pod, which the
/// agent reads).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Allocation {
    /// `ip_address` (comma-separated for dual stack).
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

impl Allocation {
    /// The annotations the controller writes for this allocation, `allocated` included.
    pub fn annotations(&self) -> BTreeMap<String, String> {
        use api::annotations::*;
        [
            (IP_ADDRESS, &self.ip),
            (MAC_ADDRESS, &self.mac),
            (CIDR, &self.cidr),
            (GATEWAY, &self.gateway),
            (LOGICAL_SWITCH, &self.logical_switch),
            (ALLOCATED, &TRUE.to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.clone()))
        .collect()
    }
}

/// The allocation of `pod`, when the controller allocated it.
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

/// Every distinct allocation each pod of a namespace ever showed, seen by a watch started
/// before the pods exist (keyed by pod uid). The watch stops when this is dropped.
#[derive(Debug)]
pub struct AnnotationLog {
    seen: Arc<Mutex<HashMap<String, Vec<Allocation>>>>,
    count: watch::Receiver<usize>,
    task: JoinHandle<()>,
}

impl AnnotationLog {
    /// Starts watching `pods` (the pods of one namespace).
    pub fn watch(pods: Api<Pod>) -> Self {
        let seen: Arc<Mutex<HashMap<String, Vec<Allocation>>>> = Arc::default();
        let (count_tx, count) = watch::channel(0);
        let recorder = seen.clone();
        let task = tokio::spawn(async move {
            let mut events =
                std::pin::pin!(watcher(pods, watcher::Config::default()).default_backoff());
            while let Ok(Some(event)) = events.try_next().await {
                let (watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) = event else {
                    continue;
                };
                let (Some(uid), Some(allocation)) = (pod.uid(), allocation(&pod)) else {
                    continue;
                };
                let mut seen = recorder.lock().unwrap_or_else(|e| e.into_inner());
                let list = seen.entry(uid).or_default();
                if list.last() != Some(&allocation) {
                    list.push(allocation);
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

    /// Pods (by uid) whose allocation changed after being set, with every allocation seen.
    pub fn changed(&self) -> BTreeMap<String, Vec<Allocation>> {
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
