//! `rovn-controller` and `rovn-agent` as child processes, each writing its log to a file.

use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use anyhow::{Result, anyhow};

use super::binaries::{kept_log_dir, workspace_bin};
use crate::http::http_get;
use crate::kube::free_port;
use crate::ovn::OvnEnv;
use crate::poll::{HANG_GUARD, wait_until_async};
use crate::process::{Daemon, DaemonSpec, Memory};

/// How long the agent gets to serve its CNI socket.
const AGENT_READY_TIMEOUT: Duration = Duration::from_secs(120);

/// `RUST_LOG` of a `rovn-controller` when the environment sets none.
const CONTROLLER_RUST_LOG: &str = "info,controller=debug";

/// A rovn binary running as a child process of this one, stdout and stderr in
/// `<dir>/<name>.log`; it gets SIGKILL when this process dies and is stopped (SIGTERM,
/// then SIGKILL) when dropped.
#[derive(Debug)]
pub struct RovnProcess(Daemon);

impl RovnProcess {
    /// Starts `program args…` with the environment variables `envs` in `dir`, logging to
    /// `<dir>/<name>.log`.
    pub fn spawn(
        name: &str,
        dir: &Path,
        program: &Path,
        args: &[String],
        envs: &[(&str, &str)],
    ) -> Result<Self> {
        let mut spec = DaemonSpec::new(name, dir, program).args(args);
        for (key, value) in envs {
            spec = spec.env(key, value);
        }
        Ok(Self(Daemon::spawn(spec)?))
    }

    /// The log file.
    pub fn log_path(&self) -> &Path {
        self.0.spec().output_file()
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The last lines of the log.
    pub fn log_tail(&self) -> String {
        self.0.log_tail()
    }

    /// The pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.0.pid()
    }

    /// Its resident memory now and at its peak, while it runs.
    pub fn memory(&self) -> Result<Memory> {
        self.0.memory()
    }

    /// Whether the process still runs.
    pub fn running(&mut self) -> bool {
        self.0.running()
    }

    /// Fails, with the log tail, when the process has exited.
    pub fn check_running(&mut self) -> Result<()> {
        self.0.check_running()
    }

    /// Waits (at most [`HANG_GUARD`]) for the process to exit by itself; its exit status.
    pub fn wait_exit(&mut self) -> Result<ExitStatus> {
        self.0.wait_exit(HANG_GUARD)
    }

    /// Sends SIGTERM and waits (at most [`HANG_GUARD`]) for the exit; an error when the
    /// process does not exit in time.
    pub fn terminate(&mut self) -> Result<ExitStatus> {
        self.0.terminate(HANG_GUARD)
    }

    /// Kills the process with SIGKILL and reaps it.
    pub fn kill(&mut self) {
        self.0.kill();
    }
}

/// How to start a `rovn-controller` beyond its NB remote, kubeconfig and identity.
#[derive(Clone, Debug, Default)]
pub struct ControllerOptions {
    /// More flags, e.g. the `--ovn-private-key`/`--ovn-certificate`/`--ovn-ca-cert` of an
    /// `ssl:` remote.
    pub args: Vec<String>,
    /// Its `RUST_LOG`; default: the environment's, else `info,controller=debug`.
    pub rust_log: Option<String>,
}

/// A running `rovn-controller` with its `/healthz`, `/readyz` and `/metrics` server.
#[derive(Debug)]
pub struct ControllerProcess {
    /// The process (log, liveness, signals).
    pub process: RovnProcess,
    identity: String,
    metrics_addr: SocketAddr,
}

impl ControllerProcess {
    /// Starts `rovn-controller` against NB `nb_remote` and the API server of `kubeconfig`,
    /// holding its leader lease in namespace `default` as `identity`, with its metrics on a
    /// free loopback port, logging to `<kept_log_dir>/rovn-controller-<identity>.log`. It
    /// does not wait for the controller to be ready ([`wait_ready`](Self::wait_ready)).
    pub fn start(nb_remote: &str, kubeconfig: &Path, identity: &str) -> Result<Self> {
        Self::start_with(
            nb_remote,
            kubeconfig,
            identity,
            &ControllerOptions::default(),
        )
    }

    /// [`start`](Self::start) with `options`.
    pub fn start_with(
        nb_remote: &str,
        kubeconfig: &Path,
        identity: &str,
        options: &ControllerOptions,
    ) -> Result<Self> {
        let metrics_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?));
        let mut args = vec![
            format!("--ovn-nb={nb_remote}"),
            format!("--kubeconfig={}", kubeconfig.display()),
            format!("--metrics-addr={metrics_addr}"),
            "--lease-namespace=default".to_owned(),
            format!("--identity={identity}"),
        ];
        args.extend(options.args.iter().cloned());
        let rust_log = options
            .rust_log
            .clone()
            .or_else(|| std::env::var("RUST_LOG").ok())
            .unwrap_or_else(|| CONTROLLER_RUST_LOG.to_owned());
        let log_dir = kept_log_dir()?;
        let program = workspace_bin("controller", "rovn-controller")?;
        let name = format!("rovn-controller-{identity}");
        let process =
            RovnProcess::spawn(&name, &log_dir, &program, &args, &[("RUST_LOG", &rust_log)])?;
        Ok(Self {
            process,
            identity: identity.to_owned(),
            metrics_addr,
        })
    }

    /// Its leader-election identity.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The address of its `/healthz`, `/readyz` and `/metrics`.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_addr
    }

    /// GET `path` (`/healthz`, `/readyz`, `/metrics`): the status code and body, or `None`
    /// when it does not answer (yet).
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(self.metrics_addr, path)
    }

    /// The value of metric sample `name` (exact sample name with its labels, e.g.
    /// `rovn_ovn_repairs_total{row="router-port"}`), when exported.
    pub fn metric(&self, name: &str) -> Option<f64> {
        let (200, body) = self.get("/metrics")? else {
            return None;
        };
        samples(&body).find_map(|(sample, value)| (sample == name).then_some(value))
    }

    /// The sum of every sample of metric family `family` (all label sets); 0 when none is
    /// exported.
    pub fn metric_sum(&self, family: &str) -> f64 {
        let Some((200, body)) = self.get("/metrics") else {
            return 0.0;
        };
        samples(&body)
            .filter(|(sample, _)| sample.split('{').next() == Some(family))
            .map(|(_, value)| value)
            .sum()
    }

    /// Waits (at most [`HANG_GUARD`]) until `/readyz` answers 200; an exit before that is
    /// an error with the log tail.
    pub async fn wait_ready(&mut self) -> Result<()> {
        let what = format!("rovn-controller {} ready", self.identity);
        let (process, addr) = (&mut self.process, self.metrics_addr);
        let waited = wait_until_async(HANG_GUARD, &what, || {
            let outcome = match process.check_running() {
                Err(exited) => Some(Err(exited)),
                Ok(()) => matches!(http_get(addr, "/readyz"), Some((200, _))).then_some(Ok(())),
            };
            async move { outcome }
        })
        .await;
        match waited {
            // Ready, or the exit (with its log tail).
            Ok(ready) => ready,
            Err(timeout) => Err(anyhow!("{timeout:#}\n{}", self.process.log_tail())),
        }
    }
}

/// The samples of a Prometheus text exposition: (name with labels, value).
fn samples(body: &str) -> impl Iterator<Item = (&str, f64)> {
    body.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (sample, value) = line.rsplit_once(' ')?;
            Some((sample, value.parse().ok()?))
        })
}

/// A running `rovn-agent` serving its CNI socket.
#[derive(Debug)]
pub struct AgentProcess {
    /// The process (log, liveness, signals).
    pub process: RovnProcess,
    /// Its CNI socket, `<dir>/cni.sock`.
    pub socket: PathBuf,
}

impl AgentProcess {
    /// The flags of a `rovn-agent` serving node `node` on `env`'s chassis: the kubeconfig,
    /// the node name, the chassis' Open_vSwitch database, NB (for the port-up wait) and,
    /// when the chassis' vswitchd runs in a network namespace of its own, `--host-netns`
    /// pointing there (the veth host ends must be where vswitchd runs).
    pub fn chassis_args(kubeconfig: &Path, node: &str, env: &OvnEnv) -> Result<Vec<String>> {
        let mut args = vec![
            "--kubeconfig".to_owned(),
            kubeconfig.display().to_string(),
            "--node-name".to_owned(),
            node.to_owned(),
            "--ovs-db".to_owned(),
            env.ovs_remote()?,
            "--ovn-nb".to_owned(),
            env.nb_remote(),
        ];
        if let Some(netns) = env.chassis_netns()? {
            args.push("--host-netns".to_owned());
            args.push(format!("/var/run/netns/{netns}"));
        }
        Ok(args)
    }

    /// Starts `rovn-agent` with `args` plus `--cni-socket <dir>/cni.sock`, logging to
    /// `<dir>/rovn-agent.log`, and waits until the socket accepts connections (an exit
    /// before that is an error with the log tail).
    pub fn start(dir: &Path, args: &[String]) -> Result<Self> {
        let socket = dir.join("cni.sock");
        let mut argv = args.to_vec();
        argv.push("--cni-socket".to_owned());
        argv.push(socket.display().to_string());
        let program = workspace_bin("agent", "rovn-agent")?;
        let mut process = RovnProcess::spawn("rovn-agent", dir, &program, &argv, &[])?;
        process.0.wait_ready(
            AGENT_READY_TIMEOUT,
            &format!("rovn-agent serving {}", socket.display()),
            || UnixStream::connect(&socket).ok(),
        )?;
        Ok(Self { process, socket })
    }
}
