//! Processes of the Kubernetes test environment (etcd, kube-apiserver).
//!
//! They are forked from one long-lived spawner thread with a parent-death
//! signal, so they die with the test process even when the environment is
//! never dropped (the shared one lives in a static) or the test process is
//! killed; a dropped [`KubeDaemon`] stops its process.

use std::fs::File;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;

use crate::ovn::process::stop_child;

/// How long a daemon gets to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// Lines of a daemon's log shown in error messages.
const LOG_TAIL_LINES: usize = 30;

type SpawnRequest = (Command, Sender<io::Result<Child>>);

/// Spawns `cmd` from the process-lifetime spawner thread. The child gets
/// SIGKILL when that thread, i.e. the test process, ends.
fn spawn_with_parent_death_signal(mut cmd: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<Sender<SpawnRequest>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("testenv-kube-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("spawning the testenv spawner thread");
        Mutex::new(tx)
    });
    // SAFETY: the hook only calls prctl(2), which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(io::Error::from));
    }
    let (reply_tx, reply_rx) = channel();
    spawner
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send((cmd, reply_tx))
        .map_err(|_| io::Error::other("testenv spawner thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| io::Error::other("testenv spawner thread did not answer"))?
}

/// A running daemon started by the environment; stopped when dropped.
#[derive(Debug)]
pub(crate) struct KubeDaemon {
    name: String,
    log: PathBuf,
    child: Option<Child>,
}

impl KubeDaemon {
    /// Starts `program args…` in `dir`, stdout and stderr to `dir/<name>.log`.
    pub(crate) fn spawn(name: &str, dir: &Path, program: &Path, args: &[String]) -> Result<Self> {
        let log = dir.join(format!("{name}.log"));
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        let child = spawn_with_parent_death_signal(cmd)
            .with_context(|| format!("spawning {name} ({})", program.display()))?;
        Ok(Self {
            name: name.to_string(),
            log,
            child: Some(child),
        })
    }

    /// The log file (stdout and stderr).
    pub(crate) fn log_path(&self) -> &Path {
        &self.log
    }

    /// The pid of the running daemon.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Fails, with the log tail, when the daemon has exited.
    pub(crate) fn check_running(&mut self) -> Result<()> {
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

    /// Polls `probe` every 50 ms until it returns `Some`, failing when the
    /// daemon exits or `timeout` passes (errors carry the log tail).
    pub(crate) fn wait_ready<T>(
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
                    "timed out after {timeout:?} waiting for {what}; {} log tail:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the log mentions an address already in use (a port race).
    pub(crate) fn lost_port_race(&self) -> bool {
        std::fs::read_to_string(&self.log).is_ok_and(|log| log.contains("address already in use"))
    }

    /// The last lines of the daemon's log.
    pub(crate) fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let start = lines.len().saturating_sub(LOG_TAIL_LINES);
        format!("--- {}\n{}", self.log.display(), lines[start..].join("\n"))
    }

    /// Stops the daemon with SIGTERM (SIGKILL after a grace period) and reaps it.
    pub(crate) fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            stop_child(child, STOP_GRACE);
        }
    }
}

impl Drop for KubeDaemon {
    fn drop(&mut self) {
        self.stop();
    }
}
