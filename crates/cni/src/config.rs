//! The network configuration read on stdin.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::error::CniError;
use crate::result::CniResult;
use crate::version::{SUPPORTED_VERSIONS, is_supported};

/// The node agent's socket when the configuration has no `socket` key.
pub const DEFAULT_SOCKET: &str = "/run/rovn/cni.sock";

/// How long the plugin waits for the agent by default: a little under kubelet's
/// 4-minute sandbox-creation timeout, so the error reaches kubelet before it gives up.
pub const DEFAULT_AGENT_TIMEOUT: Duration = Duration::from_secs(220);

/// The largest `agentTimeoutSeconds` accepted (still under kubelet's 240 s).
pub const MAX_AGENT_TIMEOUT_SECONDS: u64 = 230;

/// A validated network configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    /// `cniVersion`, one of [`SUPPORTED_VERSIONS`].
    pub cni_version: String,
    /// `name`: the network name.
    pub name: String,
    /// `type`: the plugin name.
    pub plugin_type: String,
    /// `socket`: the agent's unix socket (absolute), default [`DEFAULT_SOCKET`].
    pub socket: PathBuf,
    /// `agentTimeoutSeconds`: how long to wait for the agent, default [`DEFAULT_AGENT_TIMEOUT`].
    pub agent_timeout: Duration,
    /// `prevResult` (CHECK, DEL, chained ADD).
    pub prev_result: Option<CniResult>,
    /// `cni.dev/valid-attachments` (GC).
    pub valid_attachments: Vec<Attachment>,
    /// The configuration exactly as received, for the agent (e.g. `mtu` or `runtimeConfig`).
    pub raw: Value,
}

/// A still-valid attachment named by GC.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    /// `CNI_CONTAINERID` of its ADD.
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// `CNI_IFNAME` of its ADD.
    pub ifname: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawConf {
    #[serde(default)]
    cni_version: String,
    #[serde(default)]
    name: String,
    #[serde(default, rename = "type")]
    plugin_type: String,
    socket: Option<String>,
    agent_timeout_seconds: Option<u64>,
    prev_result: Option<Value>,
    #[serde(default, rename = "cni.dev/valid-attachments")]
    valid_attachments: Vec<Attachment>,
}

fn invalid_config(details: impl Into<String>) -> CniError {
    CniError::new(
        CniError::INVALID_NETWORK_CONFIG,
        "invalid network configuration",
        details,
    )
}

impl NetConf {
    /// Parses and validates the stdin bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, CniError> {
        let raw: Value = serde_json::from_slice(bytes).map_err(|e| {
            CniError::new(
                CniError::DECODE_FAILURE,
                "cannot decode the network configuration",
                e.to_string(),
            )
        })?;
        if !raw.is_object() {
            return Err(CniError::new(
                CniError::DECODE_FAILURE,
                "cannot decode the network configuration",
                "expected a JSON object",
            ));
        }
        let conf: RawConf =
            serde_json::from_value(raw.clone()).map_err(|e| invalid_config(e.to_string()))?;
        if !is_supported(&conf.cni_version) {
            return Err(CniError::new(
                CniError::INCOMPATIBLE_VERSION,
                "incompatible CNI version",
                format!(
                    "cniVersion {:?} is not one of {SUPPORTED_VERSIONS:?}",
                    conf.cni_version
                ),
            ));
        }
        if conf.name.is_empty() {
            return Err(invalid_config("the network configuration has no \"name\""));
        }
        if conf.plugin_type.is_empty() {
            return Err(invalid_config("the network configuration has no \"type\""));
        }
        let socket = PathBuf::from(conf.socket.unwrap_or_else(|| DEFAULT_SOCKET.to_owned()));
        if !socket.is_absolute() {
            return Err(invalid_config(format!(
                "\"socket\" must be an absolute path, not {socket:?}"
            )));
        }
        let agent_timeout = match conf.agent_timeout_seconds {
            None => DEFAULT_AGENT_TIMEOUT,
            Some(secs @ 1..=MAX_AGENT_TIMEOUT_SECONDS) => Duration::from_secs(secs),
            Some(secs) => {
                return Err(invalid_config(format!(
                    "\"agentTimeoutSeconds\" must be between 1 and {MAX_AGENT_TIMEOUT_SECONDS}, not {secs}"
                )));
            }
        };
        let prev_result = conf
            .prev_result
            .map(|value| {
                serde_json::from_value::<CniResult>(value).map_err(|e| {
                    CniError::new(
                        CniError::DECODE_FAILURE,
                        "cannot decode prevResult",
                        e.to_string(),
                    )
                })
            })
            .transpose()?;
        Ok(NetConf {
            cni_version: conf.cni_version,
            name: conf.name,
            plugin_type: conf.plugin_type,
            socket,
            agent_timeout,
            prev_result,
            valid_attachments: conf.valid_attachments,
            raw,
        })
    }

    /// The `cniVersion` of possibly invalid input, to label an error with (or `None`).
    pub fn version_hint(bytes: &[u8]) -> Option<String> {
        let value: Value = serde_json::from_slice(bytes).ok()?;
        let version = value.get("cniVersion")?.as_str()?;
        is_supported(version).then(|| version.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_and_full_configs() {
        let c =
            NetConf::parse(br#"{"cniVersion":"1.0.0","name":"rovn","type":"rovn-cni"}"#).unwrap();
        assert_eq!(c.socket, PathBuf::from(DEFAULT_SOCKET));
        assert_eq!(c.agent_timeout, DEFAULT_AGENT_TIMEOUT);
        assert!(c.prev_result.is_none());
        let c = NetConf::parse(
            br#"{"cniVersion":"1.1.0","name":"rovn","type":"rovn-cni","socket":"/tmp/a.sock","agentTimeoutSeconds":5,"mtu":1400,
                "prevResult":{"cniVersion":"1.1.0","interfaces":[{"name":"eth0","sandbox":"/x"}],"ips":[{"address":"10.0.2.5/24","gateway":"10.0.2.1","interface":0}]},
                "cni.dev/valid-attachments":[{"containerID":"c1","ifname":"eth0"}]}"#,
        )
        .unwrap();
        assert_eq!(c.socket, PathBuf::from("/tmp/a.sock"));
        assert_eq!(c.agent_timeout, Duration::from_secs(5));
        assert_eq!(c.raw["mtu"], 1400);
        assert_eq!(
            c.prev_result.unwrap().ips[0].address.to_string(),
            "10.0.2.5/24"
        );
        assert_eq!(
            c.valid_attachments,
            vec![Attachment {
                container_id: "c1".into(),
                ifname: "eth0".into()
            }]
        );
    }

    #[test]
    fn refusals_carry_spec_codes() {
        let code = |text: &str| NetConf::parse(text.as_bytes()).unwrap_err().code;
        assert_eq!(code("not json"), CniError::DECODE_FAILURE);
        assert_eq!(code("[1]"), CniError::DECODE_FAILURE);
        assert_eq!(
            code(r#"{"name":"n","type":"t"}"#),
            CniError::INCOMPATIBLE_VERSION
        );
        assert_eq!(
            code(r#"{"cniVersion":"0.3.1","name":"n","type":"t"}"#),
            CniError::INCOMPATIBLE_VERSION
        );
        assert_eq!(
            code(r#"{"cniVersion":"1.0.0","type":"t"}"#),
            CniError::INVALID_NETWORK_CONFIG
        );
        assert_eq!(
            code(r#"{"cniVersion":"1.0.0","name":"n"}"#),
            CniError::INVALID_NETWORK_CONFIG
        );
        assert_eq!(
            code(r#"{"cniVersion":"1.0.0","name":"n","type":"t","socket":"rel.sock"}"#),
            CniError::INVALID_NETWORK_CONFIG
        );
        assert_eq!(
            code(r#"{"cniVersion":"1.0.0","name":"n","type":"t","socket":7}"#),
            CniError::INVALID_NETWORK_CONFIG
        );
        assert_eq!(
            code(r#"{"cniVersion":"1.0.0","name":"n","type":"t","agentTimeoutSeconds":0}"#),
            CniError::INVALID_NETWORK_CONFIG
        );
        assert_eq!(
            code(r#"{"cniVersion":"1.0.0","name":"n","type":"t","agentTimeoutSeconds":999}"#),
            CniError::INVALID_NETWORK_CONFIG
        );
        assert_eq!(
            code(
                r#"{"cniVersion":"1.0.0","name":"n","type":"t","prevResult":{"ips":[{"address":"bad"}]}}"#
            ),
            CniError::DECODE_FAILURE
        );
    }

    #[test]
    fn version_hint() {
        assert_eq!(
            NetConf::version_hint(br#"{"cniVersion":"0.4.0"}"#).as_deref(),
            Some("0.4.0")
        );
        assert_eq!(NetConf::version_hint(br#"{"cniVersion":"9.9.9"}"#), None);
        assert_eq!(NetConf::version_hint(b"junk"), None);
    }
}
