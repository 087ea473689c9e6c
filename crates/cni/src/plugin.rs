//! One plugin invocation from environment and stdin to stdout and exit code.

use serde_json::Value;

use crate::config::NetConf;
use crate::env::{CniEnv, Command};
use crate::error::{CniError, ErrorOutput};
use crate::protocol::{AgentRequest, AgentResponse, call};
use crate::version::{LATEST_VERSION, VersionOutput};

/// What the plugin prints and how it exits.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// JSON for stdout (`None`: print nothing, as for a successful DEL).
    pub stdout: Option<Value>,
    /// Process exit code: 0 on success, 1 with an error object on stdout otherwise.
    pub exit_code: i32,
}

impl Outcome {
    fn success(stdout: Option<Value>) -> Self {
        Outcome {
            stdout,
            exit_code: 0,
        }
    }

    fn failure(cni_version: &str, error: CniError) -> Self {
        let output = ErrorOutput {
            cni_version: cni_version.to_owned(),
            error,
        };
        Outcome {
            stdout: Some(serde_json::to_value(output).expect("an error always serializes")),
            exit_code: 1,
        }
    }
}

/// Runs one invocation: `var` reads the environment, `stdin` is the network configuration
/// (or the error met reading it). VERSION is answered here; everything else goes to the agent.
pub fn run(var: impl Fn(&str) -> Option<String>, stdin: std::io::Result<Vec<u8>>) -> Outcome {
    let stdin = match stdin {
        Ok(bytes) => bytes,
        Err(e) => {
            return Outcome::failure(
                LATEST_VERSION,
                CniError::new(
                    CniError::IO_FAILURE,
                    "cannot read the network configuration from stdin",
                    e.to_string(),
                ),
            );
        }
    };
    let version_hint = NetConf::version_hint(&stdin);
    let label = version_hint.as_deref().unwrap_or(LATEST_VERSION);
    let env = match CniEnv::from_lookup(var) {
        Ok(env) => env,
        Err(error) => return Outcome::failure(label, error),
    };
    if env.command == Command::Version {
        let requested = serde_json::from_slice::<Value>(&stdin).ok().and_then(|v| {
            v.get("cniVersion")
                .and_then(Value::as_str)
                .map(str::to_owned)
        });
        let answer = VersionOutput::answer(requested.as_deref());
        return Outcome::success(Some(
            serde_json::to_value(answer).expect("a version answer always serializes"),
        ));
    }
    let conf = match NetConf::parse(&stdin) {
        Ok(conf) => conf,
        Err(error) => return Outcome::failure(label, error),
    };
    let command = env.command;
    if command == Command::Check && conf.prev_result.is_none() {
        return Outcome::failure(
            &conf.cni_version,
            CniError::new(
                CniError::INVALID_NETWORK_CONFIG,
                "invalid network configuration",
                "CHECK needs the ADD result as \"prevResult\"",
            ),
        );
    }
    let request = AgentRequest {
        command,
        cni_version: conf.cni_version.clone(),
        network: conf.name.clone(),
        container_id: env.container_id,
        netns: env.netns,
        ifname: env.ifname,
        pod: env.pod,
        prev_result: conf.prev_result.clone(),
        valid_attachments: conf.valid_attachments.clone(),
        config: conf.raw.clone(),
    };
    match call(&conf.socket, &request, conf.agent_timeout) {
        Err(error) => Outcome::failure(&conf.cni_version, error.into()),
        Ok(AgentResponse::Error(error)) => Outcome::failure(&conf.cni_version, error),
        Ok(AgentResponse::Result(result)) if command == Command::Add => {
            Outcome::success(Some(result.to_json(&conf.cni_version)))
        }
        Ok(AgentResponse::Done) if command != Command::Add => Outcome::success(None),
        Ok(other) => Outcome::failure(
            &conf.cni_version,
            CniError::new(
                CniError::DECODE_FAILURE,
                "unexpected answer from the rovn agent",
                format!("{command} was answered with {other:?}"),
            ),
        ),
    }
}
