//! `rovn-controller` and `rovn-agent` as child processes, each writing its log to a file.

use std::net::TcpListener;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use super::workspace_bin;
use crate::kube::daemon::KubeDaemon;
use crate::ovn::OvnEnv;

/// How long the agent gets to serve its CNI socket.
const AGENT_READY_TIMEOUT: Duration = Duration::from_secs(120);

/// A rovn binary running as a child process of this one, stdout and stderr in
/// `<dir>/<name>.log`; it gets SIGKILL when this process dies and is stopped (SIGTERM,
/// then SIGKILL) when dropped.
#[derive(Debug)]
pub struct RovnProcess(KubeDaemon);

impl RovnProcess {
    /// Starts `program args…` in `dir`, logging to `<dir>/<name>.log`.
    pub fn spawn(name: &str, dir: &Path, program: &Path, args: &[String]) -> Result<Self> {
        Ok(Self(KubeDaemon::spawn(name, dir, program, args)?))
    }

    /// The log file.
    pub fn log_path(&self) -> &Path {
        self.0.log_path()
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The last lines of the log.
    pub fn log_tail(&self) -> String {
        self.0.log_tail()
    }

    /// Fails, with the log tail, when the process has exited.
    pub fn check_running(&mut self) -> Result<()> {
        self.0.check_running()
    }
}

/// A running `rovn-controller`.
#[derive(Debug)]
pub struct ControllerProcess {
    /// The process (log, liveness).
    pub process: RovnProcess,
}

impl ControllerProcess {
    /// Starts `rovn-controller` against NB `nb_remote` and the API server of `kubeconfig`,
    /// holding its leader lease in namespace `default` as `identity`, with its metrics on a
    /// free loopback port, logging to `<log_dir>/rovn-controller-<identity>.log`. It does
    /// not wait for the controller to lead.
    pub fn start(
        log_dir: &Path,
        nb_remote: &str,
        kubeconfig: &Path,
        identity: &str,
    ) -> Result<Self> {
        let metrics = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("finding a free port for the metrics")?;
        let args = [
            format!("--ovn-nb={nb_remote}"),
            format!("--kubeconfig={}", kubeconfig.display()),
            format!("--metrics-addr={metrics}"),
            "--lease-namespace=default".to_owned(),
            format!("--identity={identity}"),
        ];
        let program = workspace_bin("controller", "rovn-controller")?;
        let name = format!("rovn-controller-{identity}");
        let process = RovnProcess::spawn(&name, log_dir, &program, &args)?;
        Ok(Self { process })
    }
}

/// A running `rovn-agent` serving its CNI socket.
#[derive(Debug)]
pub struct AgentProcess {
    /// The process (log, liveness).
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
        let mut process = RovnProcess::spawn("rovn-agent", dir, &program, &argv)?;
        process.0.wait_ready(
            AGENT_READY_TIMEOUT,
            &format!("rovn-agent serving {}", socket.display()),
            || UnixStream::connect(&socket).ok(),
        )?;
        Ok(Self { process, socket })
    }
}
