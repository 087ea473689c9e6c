//! Namespaces and pods in the API server, as a user and the scheduler would make them
//! (there is no scheduler: the pod names its node).

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::{Container, Namespace, Pod, PodSpec};
use kube::Api;
use kube::api::PostParams;

/// Creates namespace `name`.
pub async fn create_namespace(client: &kube::Client, name: &str) -> Result<()> {
    let mut ns = Namespace::default();
    ns.metadata.name = Some(name.to_owned());
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .with_context(|| format!("creating namespace {name}"))?;
    Ok(())
}

/// Creates pod `namespace/name` bound to `node` (one `pause` container, no annotations)
/// and returns its uid.
pub async fn create_pod(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    node: &str,
) -> Result<String> {
    let mut pod = Pod::default();
    pod.metadata.name = Some(name.to_owned());
    pod.spec = Some(PodSpec {
        node_name: Some(node.to_owned()),
        containers: vec![Container {
            name: "main".into(),
            image: Some("registry.invalid/pause:3".into()),
            ..Default::default()
        }],
        ..Default::default()
    });
    Api::<Pod>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &pod)
        .await
        .with_context(|| format!("creating pod {namespace}/{name}"))?
        .metadata
        .uid
        .with_context(|| format!("pod {namespace}/{name} has no uid"))
}
