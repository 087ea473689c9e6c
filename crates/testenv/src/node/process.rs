//! The node's daemons (containerd, kubelet, kube-controller-manager, kube-scheduler) as child
//! processes: stdout and stderr appended to one log file each (kept across restarts, read for
//! failure messages), forked from one long-lived thread with a parent-death signal so they
//! die with the test process even when it never drops the environment.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Lines of a log shown in error messages.
const LOG_TAIL_LINES: usize = 40;

/// How often readiness probes run.
pub(crate) const POLL: Duration = Duration::from_millis(100);

use crate::process::spawn_with_parent_death_signal;

/// A daemon command line: program, arguments, working directory, log file.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub dir: PathBuf,
    pub log: PathBuf,
}

impl Spec {
    /// `program` named `name`, run in `dir`, logging to `dir/<name>.log`.
    pub fn new(name: &str, program: &Path, dir: &Path) -> Self {
        Self {
            name: name.to_owned(),
            program: program.to_owned(),
            args: Vec::new(),
            dir: dir.to_owned(),
            log: dir.join(format!("{name}.log")),
        }
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }
}

/// A daemon of the node; stopped (SIGTERM, then SIGKILL after its grace period) on drop.
#[derive(Debug)]
pub(crate) struct Daemon {
    spec: Spec,
    grace: Duration,
    child: Option<Child>,
}

impl Daemon {
    /// Starts `spec`; `grace` is how long a stop waits after SIGTERM before SIGKILL.
    pub fn spawn(spec: Spec, grace: Duration) -> Result<Self> {
        let mut daemon = Self {
            spec,
            grace,
            child: None,
        };
        daemon.start()?;
        Ok(daemon)
    }

    /// Starts the daemon again (it must be stopped); the log is appended to.
    pub fn start(&mut self) -> Result<()> {
        if self.child.is_some() {
            bail!("{} is already running", self.spec.name);
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.spec.log)
            .with_context(|| format!("opening {}", self.spec.log.display()))?;
        let mut cmd = Command::new(&self.spec.program);
        cmd.args(&self.spec.args)
            .current_dir(&self.spec.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = spawn_with_parent_death_signal(cmd).with_context(|| {
            format!(
                "spawning {} ({})",
                self.spec.name,
                self.spec.program.display()
            )
        })?;
        self.child = Some(child);
        Ok(())
    }

    pub fn log_path(&self) -> &Path {
        &self.spec.log
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Fails, with the log tail, when the daemon has exited.
    pub fn check_running(&mut self) -> Result<()> {
        let Some(child) = self.child.as_mut() else {
            bail!("{} is stopped", self.spec.name);
        };
        if let Some(status) = child.try_wait()? {
            self.child = None;
            bail!(
                "{} exited ({status}); {}",
                self.spec.name,
                log_tail(&self.spec.log)
            );
        }
        Ok(())
    }

    /// Polls `probe` until it returns `Some`, failing (with the log tail) when the daemon
    /// exits or `timeout` passes.
    pub fn wait_ready<T>(
        &mut self,
        timeout: Duration,
        what: &str,
        mut probe: impl FnMut() -> Option<T>,
    ) -> Result<T> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_running()?;
            if let Some(value) = probe() {
                return Ok(value);
            }
            if Instant::now() >= deadline {
                bail!(
                    "timed out after {timeout:?} waiting for {what}; {}",
                    log_tail(&self.spec.log)
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Stops the daemon: SIGTERM, SIGKILL after the grace period, reaped.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + self.grace;
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

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// "--- <path>" and the last lines of a log file.
pub(crate) fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(LOG_TAIL_LINES);
    format!(
        "log tail of {}:\n{}",
        path.display(),
        lines[start..].join("\n")
    )
}

/// Runs `program args…` to completion; stdout on success, an error with stderr otherwise.
pub(crate) fn run(program: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", program.display()))?;
    if !out.status.success() {
        bail!(
            "{} {} failed ({}): {}",
            program.display(),
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
