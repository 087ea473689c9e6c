//! `rovn-cni` called the way kubelet (through the container runtime) calls a CNI plugin:
//! `CNI_*` environment, `K8S_POD_*` in `CNI_ARGS`, the network configuration on stdin.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::binaries::workspace_bin;

/// What one run of `rovn-cni` printed and how it exited.
#[derive(Debug)]
pub struct CniRun {
    /// Parsed stdout (`Null` when empty): the result, or the CNI error object.
    pub stdout: Value,
    /// Exit code.
    pub exit_code: i32,
}

impl CniRun {
    /// The result printed by a successful run; a failed run is an error showing the CNI
    /// error object.
    pub fn into_result(self) -> Result<Value> {
        if self.exit_code != 0 {
            bail!(
                "rovn-cni failed (exit code {}): {}",
                self.exit_code,
                self.stdout
            );
        }
        Ok(self.stdout)
    }

    /// The CNI error object printed by a failed run; a successful run is an error.
    pub fn into_error(self) -> Result<Value> {
        if self.exit_code == 0 {
            bail!("rovn-cni succeeded: {}", self.stdout);
        }
        Ok(self.stdout)
    }
}

/// One attachment of a pod to the rovn network, as kubelet drives it through `rovn-cni`.
#[derive(Debug, Clone)]
pub struct Attachment {
    /// The agent's socket (the network configuration's `socket`).
    pub socket: PathBuf,
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_NETNS`, e.g. `/var/run/netns/<name>`.
    pub netns: String,
    /// Pod namespace (`K8S_POD_NAMESPACE`).
    pub namespace: String,
    /// Pod name (`K8S_POD_NAME`).
    pub pod: String,
}

impl Attachment {
    /// ADD: the result (interfaces, IPs, routes) once the pod's port is up.
    pub fn add(&self) -> Result<Value> {
        self.run("ADD", None)?.into_result()
    }

    /// CHECK against the ADD result `prev_result`.
    pub fn check(&self, prev_result: &Value) -> Result<()> {
        self.run("CHECK", Some(prev_result))?
            .into_result()
            .map(drop)
    }

    /// DEL, with the ADD result when there is one.
    pub fn del(&self, prev_result: Option<&Value>) -> Result<()> {
        self.run("DEL", prev_result)?.into_result().map(drop)
    }

    /// Runs `rovn-cni` for `command` with `prev_result` (for CHECK and DEL).
    pub fn run(&self, command: &str, prev_result: Option<&Value>) -> Result<CniRun> {
        let mut conf = self.conf();
        if let Some(prev) = prev_result {
            conf["prevResult"] = prev.clone();
        }
        self.run_conf(command, &conf)
    }

    /// Runs `rovn-cni` GC with `valid` (`[{"containerID":…, "ifname":…}]`) as
    /// `cni.dev/valid-attachments`.
    pub fn gc(&self, valid: Value) -> Result<CniRun> {
        let mut conf = self.conf();
        conf["cni.dev/valid-attachments"] = valid;
        self.run_conf("GC", &conf)
    }

    /// The network configuration kubelet would pass.
    fn conf(&self) -> Value {
        json!({
            "cniVersion": "1.1.0",
            "name": "rovn",
            "type": "rovn-cni",
            "socket": self.socket,
        })
    }

    fn run_conf(&self, command: &str, conf: &Value) -> Result<CniRun> {
        let args = format!(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={}",
            self.namespace, self.pod, self.container_id
        );
        let mut child = Command::new(workspace_bin("cni", "rovn-cni")?)
            .env_clear()
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", &self.container_id)
            .env("CNI_NETNS", &self.netns)
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", "/opt/cni/bin")
            .env("CNI_ARGS", args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting rovn-cni")?;
        child
            .stdin
            .take()
            .context("rovn-cni's stdin")?
            .write_all(conf.to_string().as_bytes())
            .context("writing the network configuration to rovn-cni")?;
        let output = child.wait_with_output().context("waiting for rovn-cni")?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        Ok(CniRun {
            stdout: if stdout.trim().is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&stdout)
                    .with_context(|| format!("rovn-cni printed non-JSON: {stdout}"))?
            },
            exit_code: output
                .status
                .code()
                .with_context(|| format!("rovn-cni ended by {}", output.status))?,
        })
    }
}
