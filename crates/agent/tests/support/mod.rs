//! Shared by the agent's integration tests: the real `rovn-agent` and `rovn-cni` binaries,
//! and pods in the real API server.

#![allow(dead_code)] // Each test binary uses its own part of the support code.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Namespace, Pod, PodSpec};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::{Value, json};

/// Hang guard for waits in tests (never an assertion on speed).
pub const HANG_GUARD: Duration = Duration::from_secs(120);

/// A running `rovn-agent`, killed on drop.
pub struct AgentProcess {
    child: Child,
    /// Its CNI socket.
    pub socket: PathBuf,
    log: PathBuf,
}

impl AgentProcess {
    /// Starts `rovn-agent` with `args` plus `--cni-socket <dir>/cni.sock`, logging to
    /// `<dir>/agent.log`, and waits until the socket accepts connections.
    pub fn start(dir: &Path, args: &[String]) -> Self {
        let socket = dir.join("cni.sock");
        let log = dir.join("agent.log");
        let child = Command::new(env!("CARGO_BIN_EXE_rovn-agent"))
            .args(args)
            .arg("--cni-socket")
            .arg(&socket)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).expect("agent log"))
            .spawn()
            .expect("spawn rovn-agent");
        let mut agent = AgentProcess { child, socket, log };
        let deadline = Instant::now() + HANG_GUARD;
        loop {
            if let Some(status) = agent.child.try_wait().expect("agent status") {
                panic!("rovn-agent exited ({status}):\n{}", agent.log());
            }
            if std::os::unix::net::UnixStream::connect(&agent.socket).is_ok() {
                return agent;
            }
            assert!(
                Instant::now() < deadline,
                "rovn-agent did not serve its socket:\n{}",
                agent.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The agent's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the agent to exit by itself (hang-guarded) and returns its exit code.
    pub fn wait_exit(&mut self) -> Option<i32> {
        let deadline = Instant::now() + HANG_GUARD;
        loop {
            if let Some(status) = self.child.try_wait().expect("agent status") {
                return status.code();
            }
            assert!(Instant::now() < deadline, "rovn-agent did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A binary of another workspace package: next to `rovn-agent` in the target directory
/// (built by `cargo test --workspace`), else built with `cargo build -p <package>`.
pub fn workspace_bin(package: &str, bin: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_BIN_EXE_rovn-agent"))
        .parent()
        .expect("target dir")
        .to_path_buf();
    let path = dir.join(bin);
    if path.is_file() {
        return path;
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build.args(["build", "-p", package, "--bin", bin]);
    if dir.ends_with("release") {
        build.arg("--release");
    }
    let status = build
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("run cargo build");
    assert!(
        status.success(),
        "cargo build -p {package} --bin {bin} failed"
    );
    assert!(path.is_file(), "{} missing after the build", path.display());
    path
}

/// The `rovn-cni` binary.
pub fn rovn_cni() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| workspace_bin("cni", "rovn-cni"))
        .clone()
}

/// What one run of `rovn-cni` printed and how it exited.
#[derive(Debug)]
pub struct CniRun {
    /// Parsed stdout (`Null` when empty).
    pub stdout: Value,
    /// Exit code.
    pub exit_code: i32,
}

impl CniRun {
    /// Asserts success and returns stdout.
    pub fn ok(self) -> Value {
        assert_eq!(self.exit_code, 0, "rovn-cni failed: {}", self.stdout);
        self.stdout
    }

    /// Asserts failure and returns the error object.
    pub fn err(self) -> Value {
        assert_ne!(self.exit_code, 0, "rovn-cni succeeded: {}", self.stdout);
        self.stdout
    }
}

/// One attachment as kubelet would drive it through `rovn-cni`.
#[derive(Debug, Clone)]
pub struct Attachment {
    /// The agent's socket.
    pub socket: PathBuf,
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_NETNS`.
    pub netns: String,
    /// Pod namespace.
    pub namespace: String,
    /// Pod name.
    pub pod: String,
}

impl Attachment {
    /// The network configuration kubelet would pass.
    fn conf(&self) -> Value {
        json!({
            "cniVersion": "1.1.0",
            "name": "rovn",
            "type": "rovn-cni",
            "socket": self.socket,
        })
    }

    /// Runs `rovn-cni` for `command` with `prev_result` (for CHECK and DEL).
    pub fn run(&self, command: &str, prev_result: Option<&Value>) -> CniRun {
        let mut conf = self.conf();
        if let Some(prev) = prev_result {
            conf["prevResult"] = prev.clone();
        }
        self.run_conf(command, &conf)
    }

    /// Runs `rovn-cni` GC with `valid` (`[{"containerID":…, "ifname":…}]`) as
    /// `cni.dev/valid-attachments`.
    pub fn gc(&self, valid: Value) -> CniRun {
        let mut conf = self.conf();
        conf["cni.dev/valid-attachments"] = valid;
        self.run_conf("GC", &conf)
    }

    fn run_conf(&self, command: &str, conf: &Value) -> CniRun {
        let args = format!(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={}",
            self.namespace, self.pod, self.container_id
        );
        let mut child = Command::new(rovn_cni())
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
            .expect("spawn rovn-cni");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(conf.to_string().as_bytes())
            .expect("write the network configuration");
        let output = child.wait_with_output().expect("rovn-cni output");
        let stdout = String::from_utf8_lossy(&output.stdout);
        CniRun {
            stdout: if stdout.trim().is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&stdout)
                    .unwrap_or_else(|e| panic!("rovn-cni printed non-JSON ({e}): {stdout}"))
            },
            exit_code: output.status.code().expect("rovn-cni exited normally"),
        }
    }
}

static NEXT: AtomicU32 = AtomicU32::new(1);

/// A name unique to this test process: `<prefix>-<pid>-<n>`.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Creates namespace `name`.
pub async fn create_namespace(client: &kube::Client, name: &str) {
    let mut ns = Namespace::default();
    ns.metadata.name = Some(name.to_owned());
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
}

/// Creates pod `namespace/name` on `node` (no annotations) and returns its uid.
pub async fn create_pod(client: &kube::Client, namespace: &str, name: &str, node: &str) -> String {
    let mut pod = Pod::default();
    pod.metadata.name = Some(name.to_owned());
    pod.spec = Some(PodSpec {
        node_name: Some(node.to_owned()),
        containers: vec![Container {
            name: "main".into(),
            image: Some("registry.invalid/pause:3".into()),
            ..Default::default()
        }],
        ..Default::default()
    });
    Api::<Pod>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &pod)
        .await
        .expect("create pod")
        .metadata
        .uid
        .expect("uid")
}

/// The controller's allocation of one pod.
#[derive(Debug, Clone)]
pub struct Allocation {
    /// IP address.
    pub ip: String,
    /// MAC address.
    pub mac: String,
    /// Subnet CIDR.
    pub cidr: String,
    /// Gateway.
    pub gateway: String,
    /// Logical switch.
    pub logical_switch: String,
}

/// Writes the Kube-OVN allocation annotations on the pod, as the controller does.
pub async fn annotate_pod(client: &kube::Client, namespace: &str, name: &str, a: &Allocation) {
    let annotations: BTreeMap<&str, &str> = BTreeMap::from([
        (api::annotations::IP_ADDRESS, a.ip.as_str()),
        (api::annotations::MAC_ADDRESS, a.mac.as_str()),
        (api::annotations::CIDR, a.cidr.as_str()),
        (api::annotations::GATEWAY, a.gateway.as_str()),
        (api::annotations::LOGICAL_SWITCH, a.logical_switch.as_str()),
        (api::annotations::ALLOCATED, api::annotations::TRUE),
    ]);
    Api::<Pod>::namespaced(client.clone(), namespace)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": annotations}})),
        )
        .await
        .expect("annotate pod");
}

/// Runs a command and returns whether it succeeded and its stdout.
pub fn run(program: &str, args: &[&str]) -> (bool, String) {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}
