//! The pod's sandbox container id in its `IP` resource (`spec.containerID`): only the node
//! learns it (from `CNI_CONTAINERID`); the controller creates the resource and never writes
//! that field, so the two writers never fight over it.

use std::time::Duration;

use api::IP;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

/// How often, and how long apart, the agent looks for an `IP` resource the controller has
/// not created yet (it writes the pod's annotations first, the resource right after).
const ATTEMPTS: u32 = 60;
const RETRY: Duration = Duration::from_millis(500);

/// Records `container_id` in the `IP` resource `<pod>.<namespace>`, in the background:
/// ADD does not wait for it, and a failure is logged, never an ADD error.
pub fn record_container_id(client: kube::Client, namespace: &str, pod: &str, container_id: &str) {
    let name = format!("{pod}.{namespace}");
    let patch = json!({ "spec": { "containerID": container_id } });
    tokio::spawn(async move {
        let ips: Api<IP> = Api::all(client);
        for _ in 0..ATTEMPTS {
            match ips
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => return,
                Err(kube::Error::Api(e)) if e.code == 404 => tokio::time::sleep(RETRY).await,
                Err(err) => {
                    tracing::warn!(ip = %name, error = %err, "could not record the container id");
                    return;
                }
            }
        }
        tracing::warn!(ip = %name, "no IP resource to record the container id in");
    });
}
