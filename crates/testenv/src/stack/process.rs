//! `rovn-controller` and `rovn-agent` as child processes, each writing its log to a file.

use std::ffi::OsString;
use std::fs::File;
use std::net::TcpListener;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::workspace_bin;

/// How long a process gets to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// How long the agent gets to serve its CNI socket.
const AGENT_READY_TIMEOUT: Duration = Duration::from_secs(120);

/// Lines of a log shown in error messages.
const LOG_TAIL_LINES: usize = 40;

/// A rovn binary running as a child process with stdout and stderr in a log file
/// (`RUST_LOG=info` unless set); stopped (SIGTERM, then SIGKILL) when dropped.
#[derive(Debug)]
pub struct RovnProcess {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl RovnProcess {
    /// Starts `program args…`, logging to `log` (created or truncated).
    pub fn spawn(name: &str, program: &Path, args: &[OsString], log: &Path) -> Result<Self> {
        let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {name} ({})", program.display()))?;
        Ok(Self {
            name: name.to_owned(),
            child: Some(child),
            log: log.to_owned(),
        })
    }

    /// The log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last lines of the log.
    pub fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
    }

    /// Fails, with the log tail, when the process has exited.
    pub fn check_running(&mut self) -> Result<()> {
        let Some(child) = self.child.as_mut() else {
            bail!("{} is stopped", self.name);
        };
        if let Some(status) = child.try_wait()? {
            self.child = None;
            bail!(
                "{} exited ({status}); log tail:\n{}",
                self.name,
                self.log_tail()
            );
        }
        Ok(())
    }

    /// Stops the process with SIGTERM (SIGKILL after a grace period) and reaps it.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(pid) = i32::try_from(child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if !matches!(child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for RovnProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A running `rovn-controller`.
#[derive(Debug)]
pub struct ControllerProcess {
    process: RovnProcess,
}

impl ControllerProcess {
    /// Starts `rovn-controller` against NB `nb_remote` and the API server of `kubeconfig`,
    /// holding its leader lease in namespace `default` as `identity`, with its metrics on a
    /// free loopback port, logging to `log`. It does not wait for the controller to lead.
    pub fn start(nb_remote: &str, kubeconfig: &Path, identity: &str, log: &Path) -> Result<Self> {
        let metrics = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("finding a free port for the metrics")?;
        let args: Vec<OsString> = vec![
            format!("--ovn-nb={nb_remote}").into(),
            format!("--kubeconfig={}", kubeconfig.display()).into(),
            format!("--metrics-addr={metrics}").into(),
            "--lease-namespace=default".into(),
            format!("--identity={identity}").into(),
        ];
        let program = workspace_bin("controller", "rovn-controller")?;
        let process = RovnProcess::spawn("rovn-controller", &program, &args, log)?;
        Ok(Self { process })
    }

    /// The process (log, pid, stop).
    pub fn process(&mut self) -> &mut RovnProcess {
        &mut self.process
    }

    /// The log so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// The log file.
    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }
}

/// A running `rovn-agent` serving its CNI socket.
#[derive(Debug)]
pub struct AgentProcess {
    process: RovnProcess,
    /// Its CNI socket, `<dir>/cni.sock`.
    pub socket: PathBuf,
}

impl AgentProcess {
    /// Starts `rovn-agent` with `args` plus `--cni-socket <dir>/cni.sock`, logging to
    /// `<dir>/agent.log`, and waits until the socket accepts connections (an exit before
    /// that is an error with the log tail).
    pub fn start(dir: &Path, args: &[String]) -> Result<Self> {
        let socket = dir.join("cni.sock");
        let mut argv: Vec<OsString> = args.iter().map(OsString::from).collect();
        argv.push("--cni-socket".into());
        argv.push(socket.clone().into());
        let program = workspace_bin("agent", "rovn-agent")?;
        let mut process =
            RovnProcess::spawn("rovn-agent", &program, &argv, &dir.join("agent.log"))?;
        let deadline = Instant::now() + AGENT_READY_TIMEOUT;
        loop {
            process.check_running()?;
            if UnixStream::connect(&socket).is_ok() {
                return Ok(Self { process, socket });
            }
            if Instant::now() >= deadline {
                bail!(
                    "rovn-agent did not serve {} within {AGENT_READY_TIMEOUT:?}; log tail:\n{}",
                    socket.display(),
                    process.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process (log, pid, stop).
    pub fn process(&mut self) -> &mut RovnProcess {
        &mut self.process
    }

    /// The log so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// The log file.
    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }
}
