//! The `IP` resource of each pod (Kube-OVN's address record), named
//! `<pod>.<namespace>`: created after the pod is annotated, deleted with the
//! pod. Only IP resources whose spec names the pod are ever deleted.

use std::collections::BTreeMap;

use api::{IP, IpSpec};
use ipam::Allocation;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::context::{Context, FIELD_MANAGER};

/// Label naming the Subnet of an IP resource (Kube-OVN).
pub const SUBNET_LABEL: &str = "ovn.kubernetes.io/subnet";
/// Label naming the node of an IP resource (Kube-OVN).
pub const NODE_LABEL: &str = "ovn.kubernetes.io/node-name";

/// The cluster-scoped IP API.
pub fn api(ctx: &Context) -> Api<IP> {
    Api::all(ctx.kube.clone())
}

/// The name of pod `namespace/name`'s IP resource: Kube-OVN names it like
/// the pod's port, `<name>.<namespace>`.
pub fn name(namespace: &str, pod: &str) -> String {
    api::pod_network::port_name(namespace, pod)
}

/// The spec the IP resource of a pod must have.
pub fn desired_spec(
    namespace: &str,
    pod: &str,
    node: &str,
    subnet: &str,
    allocation: &Allocation,
) -> IpSpec {
    IpSpec {
        pod_name: pod.to_string(),
        namespace: namespace.to_string(),
        subnet: subnet.to_string(),
        node_name: node.to_string(),
        ip_address: allocation.ip_address_annotation(),
        v4_ip_address: allocation.v4.map(|ip| ip.to_string()).unwrap_or_default(),
        v6_ip_address: allocation.v6.map(|ip| ip.to_string()).unwrap_or_default(),
        mac_address: allocation.mac.to_string(),
        ..IpSpec::default()
    }
}

/// Whether `ip` records pod `namespace/pod` (only those are ours to delete).
pub fn records_pod(ip: &IP, namespace: &str, pod: &str) -> bool {
    ip.spec.namespace == namespace && ip.spec.pod_name == pod
}

/// Whether `ip` already is as [`desired_spec`] and its labels say. `containerID` is the
/// node agent's to write (the controller never learns it), so it is not compared.
pub fn is_current(ip: &IP, spec: &IpSpec) -> bool {
    let desired = IpSpec {
        container_id: ip.spec.container_id.clone(),
        ..spec.clone()
    };
    ip.spec == desired && ip.labels().get(SUBNET_LABEL) == Some(&spec.subnet)
}

fn object(spec: &IpSpec) -> serde_json::Value {
    let mut labels = BTreeMap::from([(SUBNET_LABEL, spec.subnet.as_str())]);
    if !spec.node_name.is_empty() {
        labels.insert(NODE_LABEL, spec.node_name.as_str());
    }
    json!({
        "apiVersion": api::API_VERSION,
        "kind": "IP",
        "metadata": { "name": name(&spec.namespace, &spec.pod_name), "labels": labels },
        "spec": spec,
    })
}

/// Creates the IP resource of a pod (a plain create is the cheapest write
/// for the API server); when one of that name exists, server-side applies.
pub async fn create(ctx: &Context, spec: &IpSpec) -> Result<(), kube::Error> {
    let ip: IP = serde_json::from_value(object(spec)).map_err(kube::Error::SerdeError)?;
    match api(ctx).create(&PostParams::default(), &ip).await {
        Err(kube::Error::Api(e)) if e.code == 409 => apply(ctx, spec).await,
        other => other.map(|_| ()),
    }
}

/// Server-side applies the IP resource of a pod.
pub async fn apply(ctx: &Context, spec: &IpSpec) -> Result<(), kube::Error> {
    let name = name(&spec.namespace, &spec.pod_name);
    api(ctx)
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&object(spec)),
        )
        .await?;
    Ok(())
}

/// Deletes IP resource `name`, only the object of uid `uid` when given
/// (gone already is fine).
pub async fn delete(ctx: &Context, name: &str, uid: Option<String>) -> Result<(), kube::Error> {
    let params = DeleteParams {
        preconditions: uid.map(|uid| kube::api::Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api(ctx).delete(name, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
        Err(err) => Err(err),
    }
}
