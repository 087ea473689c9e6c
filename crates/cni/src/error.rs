//! CNI errors: the spec's error object (`code`, `msg`, `details`) and its well-known codes.

use serde::{Deserialize, Serialize};

/// An error as the CNI spec defines it. Codes 0-99 are the spec's (see the associated
/// constants); 100 and above are free for plugin-specific errors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("CNI error {code}: {msg}{}", if details.is_empty() { String::new() } else { format!(": {details}") })]
pub struct CniError {
    /// Numeric error code.
    pub code: u32,
    /// Short message characterizing the error.
    pub msg: String,
    /// Longer description (may be empty).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
}

impl CniError {
    /// 1: incompatible CNI version.
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// 2: unsupported field in the network configuration (message names key and value).
    pub const UNSUPPORTED_FIELD: u32 = 2;
    /// 3: container unknown or does not exist (no cleanup needed by the runtime).
    pub const UNKNOWN_CONTAINER: u32 = 3;
    /// 4: invalid necessary environment variables (message names them).
    pub const INVALID_ENVIRONMENT: u32 = 4;
    /// 5: I/O failure.
    pub const IO_FAILURE: u32 = 5;
    /// 6: failed to decode content.
    pub const DECODE_FAILURE: u32 = 6;
    /// 7: invalid network configuration.
    pub const INVALID_NETWORK_CONFIG: u32 = 7;
    /// 11: try again later (transient condition).
    pub const TRY_AGAIN_LATER: u32 = 11;
    /// 50 (STATUS): the plugin cannot service ADD requests.
    pub const PLUGIN_NOT_AVAILABLE: u32 = 50;
    /// 51 (STATUS): not available, and existing containers may have limited connectivity.
    pub const PLUGIN_NOT_AVAILABLE_LIMITED_CONNECTIVITY: u32 = 51;

    /// An error with `code`, `msg` and `details`.
    pub fn new(code: u32, msg: impl Into<String>, details: impl Into<String>) -> Self {
        CniError {
            code,
            msg: msg.into(),
            details: details.into(),
        }
    }
}

/// The error object printed on stdout: the error plus the protocol version in use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorOutput {
    /// The protocol version in use.
    pub cni_version: String,
    /// The error.
    #[serde(flatten)]
    pub error: CniError,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn spec_json_shape() {
        let output = ErrorOutput {
            cni_version: "1.1.0".into(),
            error: CniError::new(
                CniError::INVALID_NETWORK_CONFIG,
                "Invalid Configuration",
                "too small",
            ),
        };
        assert_eq!(
            serde_json::to_value(&output).unwrap(),
            json!({"cniVersion": "1.1.0", "code": 7, "msg": "Invalid Configuration", "details": "too small"})
        );
        let bare = CniError::new(CniError::TRY_AGAIN_LATER, "later", "");
        assert_eq!(
            serde_json::to_value(&bare).unwrap(),
            json!({"code": 11, "msg": "later"})
        );
        assert_eq!(bare.to_string(), "CNI error 11: later");
    }
}
