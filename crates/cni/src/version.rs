//! CNI specification versions this plugin speaks.

use serde::{Deserialize, Serialize};

/// Versions answered by `VERSION`, oldest first.
pub const SUPPORTED_VERSIONS: [&str; 3] = ["0.4.0", "1.0.0", "1.1.0"];

/// The newest supported version, used when the input does not say which is in use.
pub const LATEST_VERSION: &str = "1.1.0";

/// Whether `version` is one of [`SUPPORTED_VERSIONS`].
pub fn is_supported(version: &str) -> bool {
    SUPPORTED_VERSIONS.contains(&version)
}

/// The `VERSION` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionOutput {
    /// The version given on input (or [`LATEST_VERSION`]).
    pub cni_version: String,
    /// [`SUPPORTED_VERSIONS`].
    pub supported_versions: Vec<String>,
}

impl VersionOutput {
    /// The answer to a `VERSION` request that named `requested` (if any).
    pub fn answer(requested: Option<&str>) -> Self {
        VersionOutput {
            cni_version: requested
                .filter(|v| !v.is_empty())
                .unwrap_or(LATEST_VERSION)
                .to_owned(),
            supported_versions: SUPPORTED_VERSIONS.iter().map(|v| v.to_string()).collect(),
        }
    }
}
