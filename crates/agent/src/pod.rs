//! Waiting (bounded) for the controller to record a pod's network in its annotations
//! ([`api::pod_network`], the contract both binaries share).

use std::collections::BTreeMap;
use std::time::Duration;

use api::pod_network::{InvalidPodNetwork, PodNetwork, missing_annotations};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::runtime::wait::await_condition;

/// Why the pod's network is not (yet) known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PodNetworkError {
    /// The pod does not exist in the API.
    #[error("pod {namespace}/{name} not found")]
    NotFound {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// The pod exists under this name but is another incarnation (different uid).
    #[error("pod {namespace}/{name} has uid {actual}, the runtime asked for uid {expected}")]
    UidMismatch {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// The uid the runtime gave.
        expected: String,
        /// The uid in the API.
        actual: String,
    },
    /// The controller has not finished annotating the pod.
    #[error("pod {namespace}/{name} is not allocated after {waited:?}: missing {missing}")]
    NotAllocated {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// What is missing (annotation names, comma-separated).
        missing: String,
        /// How long the agent waited.
        waited: Duration,
    },
    /// The annotations are present but cannot be used.
    #[error("pod {namespace}/{name}: {invalid}")]
    Invalid {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// The annotation and what is wrong with it.
        invalid: InvalidPodNetwork,
    },
    /// Talking to the API server failed.
    #[error("reading pod {namespace}/{name} from the API failed: {reason}")]
    Api {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// The client error.
        reason: String,
    },
}

/// Waits at most `timeout` until pod `namespace/name` is allocated (a watch on the pod, not
/// polling) and returns its network. `uid`, when the runtime gave one, must match the pod's.
pub async fn wait_for_network(
    pods: Api<Pod>,
    namespace: &str,
    name: &str,
    uid: Option<&str>,
    timeout: Duration,
) -> Result<PodNetwork, PodNetworkError> {
    let api_error = |reason: String| PodNetworkError::Api {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        reason,
    };
    let not_found = || PodNetworkError::NotFound {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    };
    let pod = pods
        .get_opt(name)
        .await
        .map_err(|e| api_error(e.to_string()))?
        .ok_or_else(not_found)?;
    let allocated = |pod: &Pod| {
        missing_annotations(
            pod.metadata
                .annotations
                .as_ref()
                .unwrap_or(&BTreeMap::new()),
        )
        .is_empty()
    };
    let pod = if allocated(&pod) {
        pod
    } else {
        let condition = move |pod: Option<&Pod>| pod.is_none_or(allocated);
        match tokio::time::timeout(timeout, await_condition(pods.clone(), name, condition)).await {
            Ok(Ok(Some(pod))) => pod,
            Ok(Ok(None)) => return Err(not_found()),
            Ok(Err(e)) => return Err(api_error(e.to_string())),
            Err(_) => {
                let latest = pods
                    .get_opt(name)
                    .await
                    .map_err(|e| api_error(e.to_string()))?
                    .ok_or_else(not_found)?;
                let missing = missing_annotations(
                    latest
                        .metadata
                        .annotations
                        .as_ref()
                        .unwrap_or(&BTreeMap::new()),
                );
                if missing.is_empty() {
                    latest
                } else {
                    return Err(PodNetworkError::NotAllocated {
                        namespace: namespace.to_owned(),
                        name: name.to_owned(),
                        missing: missing.join(", "),
                        waited: timeout,
                    });
                }
            }
        }
    };
    if let (Some(expected), Some(actual)) = (uid, pod.metadata.uid.as_deref())
        && expected != actual
    {
        return Err(PodNetworkError::UidMismatch {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            expected: expected.to_owned(),
            actual: actual.to_owned(),
        });
    }
    let annotations = pod.metadata.annotations.unwrap_or_default();
    match PodNetwork::from_annotations(&annotations) {
        Ok(Some(network)) => Ok(network),
        // Allocated was checked above; a pod whose mark went away is not allocated.
        Ok(None) => Err(PodNetworkError::NotAllocated {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            missing: missing_annotations(&annotations).join(", "),
            waited: timeout,
        }),
        Err(invalid) => Err(PodNetworkError::Invalid {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            invalid,
        }),
    }
}
