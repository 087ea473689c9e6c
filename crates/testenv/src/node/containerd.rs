//! A containerd of the test's own: its config, root, state and socket in one directory, the
//! CRI plugin with our sandbox image and CNI directories, runc with the cgroupfs driver.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::Value;

use super::cleanup;
use super::process::{Daemon, Spec, log_tail, run};
use crate::kube::free_port;

/// How long containerd gets to answer on its socket.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How long containerd gets to exit after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// The containerd namespace of the CRI plugin (kubelet's containers and images).
pub const K8S_NAMESPACE: &str = "k8s.io";

/// What the CRI plugin is configured with.
#[derive(Debug, Clone)]
pub struct ContainerdSettings {
    /// The sandbox image (imported under exactly this name before kubelet starts pods).
    pub sandbox_image: String,
    /// The CNI plugin directory (`bin_dir`).
    pub cni_bin_dir: PathBuf,
    /// The CNI configuration directory (`conf_dir`).
    pub cni_conf_dir: PathBuf,
}

/// A running containerd; [`Containerd::stop`] (or drop) removes its containers, stops it and
/// undoes what it mounted.
#[derive(Debug)]
pub struct Containerd {
    daemon: Daemon,
    dir: PathBuf,
    socket: PathBuf,
    ctr: PathBuf,
    cgroup_parent: String,
    metrics: SocketAddr,
    stopped: bool,
}

impl Containerd {
    /// Starts containerd with everything in `dir` (created): `config.toml`, `root/`, `state/`,
    /// `containerd.sock`, `containerd.log`; returns once it answers on its socket.
    pub fn start(dir: &Path, settings: &ContainerdSettings) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let dir = dir
            .canonicalize()
            .with_context(|| format!("resolving {}", dir.display()))?;
        let socket = dir.join("containerd.sock");
        let config = dir.join("config.toml");
        let metrics = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?));
        std::fs::write(&config, config_toml(&dir, &socket, metrics, settings))
            .with_context(|| format!("writing {}", config.display()))?;
        let containerd = which("containerd")?;
        let ctr = which("ctr")?;
        let spec = Spec::new("containerd", &containerd, &dir)
            .arg("--config")
            .arg(&config);
        let mut daemon = Daemon::spawn(spec, STOP_GRACE)?;
        let socket_arg = socket.display().to_string();
        daemon.wait_ready(READY_TIMEOUT, "containerd to answer on its socket", || {
            if !socket.exists() {
                return None;
            }
            run(&ctr, &["--address", &socket_arg, "version"]).ok()
        })?;
        // `ctr run` containers go under a cgroup of ours (not the shared `/<namespace>`).
        let cgroup_parent = format!(
            "/{}-ctr",
            dir.parent()
                .and_then(Path::file_name)
                .and_then(|n| n.to_str())
                .unwrap_or("rovn")
        );
        Ok(Self {
            daemon,
            dir,
            socket,
            ctr,
            cgroup_parent,
            metrics,
            stopped: false,
        })
    }

    /// The gRPC socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The CRI endpoint for kubelet: `unix://<socket>`.
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// containerd's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// containerd's Prometheus metrics (`/v1/metrics`), e.g.
    /// `containerd_cri_network_plugin_operations_duration_seconds_seconds`: how long the CNI
    /// plugins took as containerd saw them, by `operation_type` (`SetUpPod`, `TearDownPod`).
    pub fn metrics(&self) -> Result<String> {
        match crate::http::http_get(self.metrics, "/v1/metrics") {
            Some((200, body)) => Ok(body),
            Some((code, body)) => anyhow::bail!("containerd /v1/metrics answered {code}: {body}"),
            None => anyhow::bail!("containerd /v1/metrics on {} did not answer", self.metrics),
        }
    }

    /// containerd's log file.
    pub fn log_path(&self) -> &Path {
        self.daemon.log_path()
    }

    /// The last lines of containerd's log.
    pub fn log_tail(&self) -> String {
        log_tail(self.daemon.log_path())
    }

    /// containerd's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.daemon.pid()
    }

    /// Runs `ctr --address <socket> --namespace <namespace> args…` and returns its stdout.
    pub fn ctr_in(&self, namespace: &str, args: &[&str]) -> Result<String> {
        let socket = self.socket.display().to_string();
        let mut all = vec!["--address", &socket, "--namespace", namespace];
        all.extend_from_slice(args);
        run(&self.ctr, &all)
    }

    /// `ctr` in the CRI namespace `k8s.io`.
    pub fn ctr(&self, args: &[&str]) -> Result<String> {
        self.ctr_in(K8S_NAMESPACE, args)
    }

    /// Imports an OCI image archive into the CRI namespace (visible to kubelet).
    pub fn import(&self, archive: &Path) -> Result<()> {
        let path = archive.display().to_string();
        self.ctr(&["images", "import", &path])
            .with_context(|| format!("importing {path}"))?;
        Ok(())
    }

    /// `ctr run --rm image id args…` in the CRI namespace (waits for the command to end;
    /// its cgroup is under one of this containerd's, removed by [`stop`](Self::stop)):
    /// the command's output.
    pub fn run(&self, image: &str, id: &str, args: &[&str]) -> Result<String> {
        let cgroup = format!("{}/{id}", self.cgroup_parent);
        let mut all = vec!["run", "--rm", "--cgroup", &cgroup, image, id];
        all.extend_from_slice(args);
        self.ctr(&all)
    }

    /// Like [`run`](Self::run) with `--detach`: returns once the task started.
    pub fn run_detached(&self, image: &str, id: &str, args: &[&str]) -> Result<()> {
        let cgroup = format!("{}/{id}", self.cgroup_parent);
        let mut all = vec!["run", "--detach", "--cgroup", &cgroup, image, id];
        all.extend_from_slice(args);
        self.ctr(&all).map(drop)
    }

    /// Names of the images in the CRI namespace.
    pub fn images(&self) -> Result<Vec<String>> {
        Ok(self
            .ctr(&["images", "ls", "-q"])?
            .lines()
            .map(str::to_owned)
            .collect())
    }

    /// Removes every container (killing its task) in every namespace, stops containerd, kills
    /// any shim of it still running, unmounts what it mounted under its directory, deletes
    /// the network namespaces of its sandboxes and the cgroups of [`run`](Self::run).
    /// Idempotent.
    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let mut netns = BTreeSet::new();
        if self.daemon.check_running().is_ok() {
            let namespaces = self
                .ctr_in(K8S_NAMESPACE, &["namespaces", "ls", "-q"])
                .unwrap_or_default();
            for namespace in namespaces.lines().map(str::trim).filter(|n| !n.is_empty()) {
                self.remove_containers(namespace, &mut netns);
            }
        }
        self.daemon.stop();
        // Shims outlive a killed containerd; each was started with our socket's path.
        let socket = self.socket.display().to_string();
        let shims = cleanup::pids_with_arg(&socket);
        cleanup::kill_all(&shims);
        cleanup::unmount_under(&self.dir);
        cleanup::remove_netns(&netns);
        cleanup::kill_all(&cleanup::pids_in_cgroup(&self.cgroup_parent));
        cleanup::remove_cgroup(&self.cgroup_parent, Duration::from_secs(10));
    }

    /// Kills and deletes every task and container of `namespace`, collecting the network
    /// namespace paths their specs name.
    fn remove_containers(&self, namespace: &str, netns: &mut BTreeSet<PathBuf>) {
        let ids = self
            .ctr_in(namespace, &["containers", "ls", "-q"])
            .unwrap_or_default();
        for id in ids.lines().map(str::trim).filter(|i| !i.is_empty()) {
            if let Ok(info) = self.ctr_in(namespace, &["containers", "info", id])
                && let Ok(info) = serde_json::from_str::<Value>(&info)
            {
                netns.extend(network_namespace_path(&info));
            }
            let _ = self.ctr_in(namespace, &["tasks", "kill", "--signal", "SIGKILL", id]);
            let _ = self.ctr_in(namespace, &["tasks", "rm", "--force", id]);
            let _ = self.ctr_in(namespace, &["containers", "rm", id]);
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The path of the network namespace a container joins (its spec's `network` namespace
/// with a path), if any: `ctr containers info` prints the OCI spec under `Spec`.
fn network_namespace_path(info: &Value) -> Option<PathBuf> {
    info.get("Spec")?
        .get("linux")?
        .get("namespaces")?
        .as_array()?
        .iter()
        .find(|ns| ns.get("type").and_then(Value::as_str) == Some("network"))?
        .get("path")
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
}

/// containerd's configuration (version 2, containerd 1.6): everything in `dir`, the CRI plugin
/// with our sandbox image, runc through the v2 shim with the cgroupfs driver and its state in
/// `dir`, and `restrict_oom_score_adj` (no CAP_SYS_RESOURCE here: kubelet's -998 for
/// sandboxes could not be applied).
fn config_toml(
    dir: &Path,
    socket: &Path,
    metrics: SocketAddr,
    settings: &ContainerdSettings,
) -> String {
    let q = |p: &Path| toml_string(&p.display().to_string());
    format!(
        r#"version = 2
root = {root}
state = {state}
oom_score = 0

[grpc]
  address = {socket}

[ttrpc]
  address = {ttrpc}

[metrics]
  address = "{metrics}"

[plugins."io.containerd.internal.v1.opt"]
  path = {opt}

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = {sandbox}
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = {runc_root}

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = {cni_bin}
    conf_dir = {cni_conf}
    max_conf_num = 1
"#,
        root = q(&dir.join("root")),
        state = q(&dir.join("state")),
        socket = q(socket),
        ttrpc = q(&dir.join("containerd.sock.ttrpc")),
        opt = q(&dir.join("opt")),
        sandbox = toml_string(&settings.sandbox_image),
        runc_root = q(&dir.join("runc")),
        cni_bin = q(&settings.cni_bin_dir),
        cni_conf = q(&settings.cni_conf_dir),
    )
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

/// The absolute path of `program` on `PATH` (an error naming the Debian package otherwise).
pub(crate) fn which(program: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .with_context(|| {
            format!("{program} is not on PATH (Debian: apt-get install containerd runc)")
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sandbox_network_namespace_from_container_info() {
        let info = json!({"Spec": {"linux": {"namespaces": [
            {"type": "pid"},
            {"type": "network", "path": "/var/run/netns/cni-1234"},
        ]}}});
        assert_eq!(
            network_namespace_path(&info),
            Some(PathBuf::from("/var/run/netns/cni-1234"))
        );
        let host = json!({"Spec": {"linux": {"namespaces": [{"type": "pid"}]}}});
        assert_eq!(network_namespace_path(&host), None);
    }

    #[test]
    fn config_quotes_paths() {
        let text = config_toml(
            Path::new("/tmp/x"),
            Path::new("/tmp/x/c.sock"),
            SocketAddr::from((Ipv4Addr::LOCALHOST, 1338)),
            &ContainerdSettings {
                sandbox_image: "rovn.local/pause:1".into(),
                cni_bin_dir: "/tmp/x/cni/bin".into(),
                cni_conf_dir: "/tmp/x/cni/net.d".into(),
            },
        );
        assert!(text.contains(r#"sandbox_image = "rovn.local/pause:1""#));
        assert!(text.contains(r#"bin_dir = "/tmp/x/cni/bin""#));
        assert!(text.contains(r#"runtime_type = "io.containerd.runc.v2""#));
        assert!(text.contains(r#"address = "127.0.0.1:1338""#));
    }
}
