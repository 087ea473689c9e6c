//! The API server as users, kubelet and the tests use it: one admin client and the reads,
//! writes and waits around rovn's resources (namespaces, pods, `Vpc`, `Subnet`, `IP`,
//! Events). Every wait is a [`crate::poll`] with [`HANG_GUARD`] as its bound.

use std::fmt::Debug;

use anyhow::{Context, Result};
use api::condition::{READY, is_condition_true};
use api::pod_network::PodNetwork;
use api::{IP, Subnet, SubnetSpec, Vpc};
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use serde_json::json;

use super::pods::{allocated, pod};
use crate::kube::KubeEnv;
use crate::poll::{HANG_GUARD, wait_until_async};

/// Pods created or deleted at once by the bulk calls.
const CONCURRENCY: usize = 64;

/// An admin client of one API server with rovn's helpers.
#[derive(Clone)]
pub struct Cluster {
    client: kube::Client,
}

impl Cluster {
    /// Wraps `client`.
    pub fn new(client: kube::Client) -> Self {
        Self { client }
    }

    /// A new admin client of `kube` for the calling tokio runtime.
    pub async fn connect(kube: &KubeEnv) -> Result<Self> {
        Ok(Self::new(kube.client().await?))
    }

    /// The client.
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// Pods of `namespace`.
    pub fn pods(&self, namespace: &str) -> Api<Pod> {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// `Vpc`s.
    pub fn vpcs(&self) -> Api<Vpc> {
        Api::all(self.client.clone())
    }

    /// `Subnet`s.
    pub fn subnets(&self) -> Api<Subnet> {
        Api::all(self.client.clone())
    }

    /// `IP` resources.
    pub fn ips(&self) -> Api<IP> {
        Api::all(self.client.clone())
    }

    /// Applies rovn's CRDs (`kubeovn.io/v1` `Vpc`, `Subnet`, `IP`) and waits until they are
    /// served.
    pub async fn install_crds(&self) -> Result<()> {
        tokio::time::timeout(
            HANG_GUARD,
            api::install::apply_crds(&self.client, "rovn-testenv"),
        )
        .await
        .context("applying the CRDs: no answer")?
        .context("applying the CRDs")?;
        Ok(())
    }

    /// Creates namespace `name`.
    pub async fn create_namespace(&self, name: &str) -> Result<()> {
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        Api::<Namespace>::all(self.client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .with_context(|| format!("creating namespace {name}"))?;
        Ok(())
    }

    /// Creates pod `namespace/name` bound to `node` ([`pod`]) and returns its uid.
    pub async fn create_pod(&self, namespace: &str, name: &str, node: &str) -> Result<String> {
        self.pods(namespace)
            .create(&PostParams::default(), &pod(name, node, &[]))
            .await
            .with_context(|| format!("creating pod {namespace}/{name}"))?
            .metadata
            .uid
            .with_context(|| format!("pod {namespace}/{name} has no uid"))
    }

    /// Creates `pods` in `namespace`, many at a time.
    pub async fn create_pods(&self, namespace: &str, pods: Vec<Pod>) -> Result<()> {
        let api = self.pods(namespace);
        stream::iter(pods)
            .map(|pod| {
                let api = api.clone();
                async move {
                    let name = pod.metadata.name.clone().unwrap_or_default();
                    api.create(&PostParams::default(), &pod)
                        .await
                        .with_context(|| format!("creating pod {namespace}/{name}"))
                }
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect::<Vec<_>>()
            .await?;
        Ok(())
    }

    /// Deletes pods `names` of `namespace` at once (grace period 0, as kubelet confirms a
    /// deletion), many at a time; a pod already gone is fine.
    pub async fn delete_pods(&self, namespace: &str, names: &[String]) -> Result<()> {
        let api = self.pods(namespace);
        stream::iter(names)
            .map(|name| {
                let api = api.clone();
                async move {
                    match api
                        .delete(name, &DeleteParams::default().grace_period(0))
                        .await
                    {
                        Ok(_) => Ok(()),
                        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
                        Err(e) => {
                            Err(e).with_context(|| format!("deleting pod {namespace}/{name}"))
                        }
                    }
                }
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    /// Every pod of `namespace`.
    pub async fn list_pods(&self, namespace: &str) -> Result<Vec<Pod>> {
        Ok(self
            .pods(namespace)
            .list(&ListParams::default())
            .await
            .with_context(|| format!("listing the pods of {namespace}"))?
            .items)
    }

    /// Waits until exactly `count` pods of `namespace` are allocated; returns every pod of
    /// the namespace.
    pub async fn wait_allocated(&self, namespace: &str, count: usize) -> Result<Vec<Pod>> {
        let what = format!("{count} pods of {namespace} allocated");
        wait_until_async(HANG_GUARD, &what, || async {
            let pods = self.list_pods(namespace).await?;
            let done = pods.iter().filter(|p| allocated(p)).count();
            if done == count {
                Ok(pods)
            } else {
                Err(anyhow::anyhow!("{done} allocated"))
            }
        })
        .await
    }

    /// Writes `network`'s annotations on pod `namespace/name` in one patch, as the
    /// controller does.
    pub async fn annotate_pod(
        &self,
        namespace: &str,
        name: &str,
        network: &PodNetwork,
    ) -> Result<()> {
        let patch = json!({"metadata": {"annotations": network.to_annotations()}});
        self.pods(namespace)
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .with_context(|| format!("annotating pod {namespace}/{name}"))?;
        Ok(())
    }

    /// Creates Subnet `name` with `spec` (not waiting for anything).
    pub async fn create_subnet(&self, name: &str, spec: SubnetSpec) -> Result<()> {
        self.subnets()
            .create(&PostParams::default(), &Subnet::new(name, spec))
            .await
            .with_context(|| format!("creating Subnet {name}"))?;
        Ok(())
    }

    /// Creates Subnet `name` with `spec` and waits until it is Ready (pods created before
    /// its namespace binding is in effect would land in another Subnet).
    pub async fn create_ready_subnet(&self, name: &str, spec: SubnetSpec) -> Result<Subnet> {
        self.create_subnet(name, spec).await?;
        self.wait_subnet(name, "Ready", subnet_ready).await
    }

    /// Waits until Subnet `name` exists and `check` holds for it.
    pub async fn wait_subnet(
        &self,
        name: &str,
        what: &str,
        check: impl Fn(&Subnet) -> bool,
    ) -> Result<Subnet> {
        wait_for(&self.subnets(), name, what, check).await
    }

    /// `status.v4usingIPs` of Subnet `name`.
    pub async fn subnet_v4_using(&self, name: &str) -> Result<Option<u128>> {
        let subnet = self
            .subnets()
            .get(name)
            .await
            .with_context(|| format!("reading Subnet {name}"))?;
        Ok(subnet.status.and_then(|s| s.v4_using_ips).map(|c| c.0))
    }

    /// Vpc `name`, when it exists.
    pub async fn vpc(&self, name: &str) -> Result<Option<Vpc>> {
        self.vpcs()
            .get_opt(name)
            .await
            .with_context(|| format!("reading Vpc {name}"))
    }

    /// Waits until Vpc `name` exists and `check` holds for it.
    pub async fn wait_vpc(
        &self,
        name: &str,
        what: &str,
        check: impl Fn(&Vpc) -> bool,
    ) -> Result<Vpc> {
        wait_for(&self.vpcs(), name, what, check).await
    }

    /// Every `IP` resource.
    pub async fn list_ips(&self) -> Result<Vec<IP>> {
        Ok(self
            .ips()
            .list(&ListParams::default())
            .await
            .context("listing IP resources")?
            .items)
    }

    /// The Warning Events of `namespace` about object `name`, as `reason: note`.
    pub async fn warnings(&self, namespace: &str, name: &str) -> Result<Vec<String>> {
        let events: Api<Event> = Api::namespaced(self.client.clone(), namespace);
        Ok(events
            .list(&ListParams::default())
            .await
            .with_context(|| format!("listing the Events of {namespace}"))?
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
            .collect())
    }

    /// Waits until a Warning Event of `namespace` about object `name` has `reason`;
    /// returns every such Warning (`reason: note`).
    pub async fn wait_warning(
        &self,
        namespace: &str,
        name: &str,
        reason: &str,
    ) -> Result<Vec<String>> {
        let what = format!("a Warning Event {reason} about {name} in {namespace}");
        let prefix = format!("{reason}: ");
        wait_until_async(HANG_GUARD, &what, || async {
            let warnings = self.warnings(namespace, name).await?;
            if warnings.iter().any(|w| w.starts_with(&prefix)) {
                Ok(warnings)
            } else {
                Err(anyhow::anyhow!("{warnings:?}"))
            }
        })
        .await
    }
}

/// Whether `subnet` is Ready.
pub fn subnet_ready(subnet: &Subnet) -> bool {
    subnet
        .status
        .as_ref()
        .is_some_and(|s| is_condition_true(&s.conditions, READY))
}

/// `spec` of a Subnet on `vpc` (the default VPC when `None`) with `cidr`, bound to
/// `namespaces`.
pub fn subnet_spec(vpc: Option<&str>, cidr: &str, namespaces: &[&str]) -> SubnetSpec {
    SubnetSpec {
        vpc: vpc.map(str::to_owned),
        cidr_block: cidr.to_owned(),
        namespaces: namespaces.iter().map(|n| n.to_string()).collect(),
        ..SubnetSpec::default()
    }
}

/// Waits until object `name` of `api` exists and `check` holds for it.
async fn wait_for<K>(api: &Api<K>, name: &str, what: &str, check: impl Fn(&K) -> bool) -> Result<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let kind = K::kind(&());
    wait_until_async(HANG_GUARD, &format!("{kind} {name}: {what}"), || async {
        match api.get_opt(name).await {
            Ok(Some(object)) if check(&object) => Ok(object),
            Ok(Some(_)) => Err(anyhow::anyhow!("{kind} {name} exists, not yet {what}")),
            Ok(None) => Err(anyhow::anyhow!("no {kind} {name}")),
            Err(e) => Err(anyhow::Error::new(e).context(format!("reading {kind} {name}"))),
        }
    })
    .await
}

/// Waits until object `name` of `api` (a Vpc, a Subnet, a pod…) no longer exists.
pub async fn wait_gone<K>(api: &Api<K>, name: &str) -> Result<()>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let kind = K::kind(&());
    wait_until_async(HANG_GUARD, &format!("{kind} {name} deleted"), || async {
        match api.get_opt(name).await {
            Ok(None) => Ok(()),
            Ok(Some(_)) => Err(anyhow::anyhow!("{kind} {name} still exists")),
            Err(e) => Err(anyhow::Error::new(e).context(format!("reading {kind} {name}"))),
        }
    })
    .await
}
