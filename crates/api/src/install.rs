//! Installing the CRDs into a cluster (tests, `rovn-controller` start-up).

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::wait::{self, await_condition};
use kube::{Client, ResourceExt};

/// Why the CRDs could not be installed.
#[derive(Debug)]
pub enum InstallError {
    /// The API server refused the server-side apply of a CRD.
    Apply {
        /// CRD name, e.g. `vpcs.kubeovn.io`.
        crd: String,
        /// The API error.
        source: kube::Error,
    },
    /// Watching a CRD for its `Established` condition failed.
    Wait {
        /// CRD name.
        crd: String,
        /// The watch error.
        source: wait::Error,
    },
    /// The API server did not accept the CRD's names (e.g. taken by another CRD).
    NamesNotAccepted {
        /// CRD name.
        crd: String,
        /// The API server's reason.
        message: String,
    },
}

impl std::fmt::Display for InstallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Apply { crd, source } => write!(f, "applying CRD {crd}: {source}"),
            Self::Wait { crd, source } => {
                write!(f, "waiting for CRD {crd} to be Established: {source}")
            }
            Self::NamesNotAccepted { crd, message } => {
                write!(f, "CRD {crd} names not accepted: {message}")
            }
        }
    }
}

impl std::error::Error for InstallError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Apply { source, .. } => Some(source),
            Self::Wait { source, .. } => Some(source),
            Self::NamesNotAccepted { .. } => None,
        }
    }
}

/// Server-side applies all CRDs of this crate (as `field_manager`, forcing
/// conflicts) and waits until each is `Established`, or fails when its names
/// are not accepted. Idempotent. Wrap it in a timeout: a broken API server can
/// keep the wait open.
pub async fn apply_crds(client: &Client, field_manager: &str) -> Result<(), InstallError> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply(field_manager).force();
    for crd in crate::crds() {
        let name = crd.name_any();
        api.patch(&name, &params, &Patch::Apply(&crd))
            .await
            .map_err(|source| InstallError::Apply {
                crd: name.clone(),
                source,
            })?;
    }
    for crd in crate::crds() {
        let name = crd.name_any();
        let settled = |crd: Option<&CustomResourceDefinition>| {
            condition(crd, "Established") == Some("True")
                || condition(crd, "NamesAccepted") == Some("False")
        };
        let crd = await_condition(api.clone(), &name, settled)
            .await
            .map_err(|source| InstallError::Wait {
                crd: name.clone(),
                source,
            })?;
        if condition(crd.as_ref(), "Established") != Some("True") {
            let message = crd
                .as_ref()
                .and_then(|crd| find(crd, "NamesAccepted"))
                .and_then(|c| c.message.clone())
                .unwrap_or_default();
            return Err(InstallError::NamesNotAccepted { crd: name, message });
        }
    }
    Ok(())
}

type CrdCondition = k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinitionCondition;

fn find<'a>(crd: &'a CustomResourceDefinition, type_: &str) -> Option<&'a CrdCondition> {
    crd.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

/// Status of the CRD's condition of the given type.
fn condition<'a>(crd: Option<&'a CustomResourceDefinition>, type_: &str) -> Option<&'a str> {
    find(crd?, type_).map(|c| c.status.as_str())
}
