//! The Kubernetes test environment: a real etcd + kube-apiserver.

use std::path::Path;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams, PostParams};
use testenv::kube::KubeEnv;

#[tokio::test(flavor = "multi_thread")]
async fn serves_the_api_and_stops_what_it_started() -> anyhow::Result<()> {
    let env = KubeEnv::start()?;
    let client = env.client().await?;

    // Built-in namespaces exist once /readyz is ok; objects can be created.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let names: Vec<_> = namespaces
        .list(&ListParams::default())
        .await?
        .into_iter()
        .filter_map(|ns| ns.metadata.name)
        .collect();
    assert!(
        names.iter().any(|n| n == "default"),
        "namespaces: {names:?}"
    );
    let mut ns = Namespace::default();
    ns.metadata.name = Some("kube-env-test".into());
    namespaces.create(&PostParams::default(), &ns).await?;

    // kubectl uses the same kubeconfig (admin via system:masters).
    let out = env.kubectl(&["get", "namespace", "kube-env-test", "-o", "name"])?;
    assert_eq!(out.trim(), "namespace/kube-env-test");
    let auth = env.kubectl(&["auth", "can-i", "*", "*"])?;
    assert_eq!(auth.trim(), "yes");

    let pids = env.pids();
    let dir = env.dir().to_path_buf();
    assert_eq!(pids.len(), 2);
    drop(client);
    drop(env);
    for pid in pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "process {pid} still running"
        );
    }
    assert!(!dir.exists(), "{} not removed", dir.display());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn shared_environment_is_started_once() -> anyhow::Result<()> {
    let first = KubeEnv::shared()?;
    let second = KubeEnv::shared()?;
    assert!(std::ptr::eq(first, second));
    let client = second.client().await?;
    let version = client.apiserver_version().await?;
    assert_eq!(
        (version.major.as_str(), version.minor.as_str()),
        ("1", "34")
    );
    Ok(())
}
