//! The processes the environments start — OVN/OVS daemons, etcd and kube-apiserver,
//! `rovn-controller` and `rovn-agent` — and the command-line tools they and the tests run
//! ([`run`]).
//!
//! A [`Daemon`] runs in a directory of its own with its output in a file there, gets
//! SIGKILL when the test process dies (parent-death signal, set from one long-lived
//! spawner thread), is polled for readiness while it is checked to still run, and is
//! stopped (SIGTERM, then SIGKILL) and reaped when dropped.
//!
//! ```no_run
//! # fn demo(dir: &std::path::Path) -> anyhow::Result<()> {
//! use std::time::Duration;
//! use testenv::process::{Daemon, DaemonSpec};
//! let sock = dir.join("db.sock");
//! let mut server = Daemon::spawn(
//!     DaemonSpec::new("ovsdb-server", dir, "ovsdb-server")
//!         .arg(dir.join("conf.db"))
//!         .arg(format!("--remote=punix:{}", sock.display()))
//!         .standard_files(true),
//! )?;
//! server.wait_ready(Duration::from_secs(30), "the socket", || sock.exists())?;
//! # Ok(()) }
//! ```

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::poll::{Outcome, wait_until};

/// How long a daemon gets to exit after SIGTERM when stopped (or dropped), before it is
/// killed, unless its spec says otherwise.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Lines of each of a daemon's files shown in error messages.
const LOG_TAIL_LINES: usize = 40;

/// A daemon's command line, environment and files.
#[derive(Clone, Debug)]
pub struct DaemonSpec {
    name: String,
    argv: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    dir: PathBuf,
    output: PathBuf,
    log: Option<PathBuf>,
    ovs_dirs: bool,
    stop_grace: Duration,
}

impl DaemonSpec {
    /// `program` named `name` (in file names and messages) running in `dir`, its stdout
    /// and stderr in `<dir>/<name>.log`.
    pub fn new(name: &str, dir: &Path, program: impl Into<OsString>) -> Self {
        Self {
            name: name.to_owned(),
            argv: vec![program.into()],
            envs: Vec::new(),
            dir: dir.to_path_buf(),
            output: dir.join(format!("{name}.log")),
            log: None,
            ovs_dirs: false,
            stop_grace: STOP_GRACE,
        }
    }

    /// Appends an argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.argv.push(arg.into());
        self
    }

    /// Appends arguments.
    pub fn args<S: Into<OsString>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.argv.extend(args.into_iter().map(Into::into));
        self
    }

    /// Its stdout and stderr go to `path` instead of `<dir>/<name>.log`.
    pub fn log_to(mut self, path: &Path) -> Self {
        self.output = path.to_path_buf();
        self
    }

    /// How long [`Daemon::stop`] (and so a drop) waits after SIGTERM before SIGKILL;
    /// 5 s unless set.
    pub fn stop_grace(mut self, grace: Duration) -> Self {
        self.stop_grace = grace;
        self
    }

    /// Sets an environment variable.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// An OVS/OVN daemon: `OVS_RUNDIR`/`OVN_RUNDIR`/`OVS_DBDIR`/`OVS_LOGDIR` set to the
    /// directory, `--pidfile`, `--log-file` (`<dir>/<name>.log`) and, when `unixctl`,
    /// `--unixctl` ([`ctl_path`](Self::ctl_path)) pointing there; stdout and stderr go to
    /// `<dir>/<name>.stderr`.
    pub fn standard_files(mut self, unixctl: bool) -> Self {
        let pidfile = self.dir.join(format!("{}.pid", self.name));
        let log = self.dir.join(format!("{}.log", self.name));
        self.output = self.dir.join(format!("{}.stderr", self.name));
        self.ovs_dirs = true;
        self.log = Some(log.clone());
        let mut spec = self
            .arg(format!("--pidfile={}", pidfile.display()))
            .arg(format!("--log-file={}", log.display()));
        if unixctl {
            let ctl = spec.ctl_path();
            spec = spec.arg(format!("--unixctl={}", ctl.display()));
        }
        spec
    }

    /// The name given to [`new`](Self::new).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The `--unixctl` socket of [`standard_files`](Self::standard_files).
    pub fn ctl_path(&self) -> PathBuf {
        self.dir.join(format!("{}.ctl", self.name))
    }

    /// The daemon's own log file (`--log-file`), when it writes one.
    pub fn log_file(&self) -> Option<&Path> {
        self.log.as_deref()
    }

    /// The file holding the daemon's stdout and stderr.
    pub fn output_file(&self) -> &Path {
        &self.output
    }
}

/// A daemon started from a [`DaemonSpec`]; stopped (SIGTERM, then SIGKILL) when dropped.
#[derive(Debug)]
pub struct Daemon {
    spec: DaemonSpec,
    child: Option<Child>,
    exit: Option<ExitStatus>,
}

impl Daemon {
    /// Starts the daemon (not waiting for it to be ready).
    pub fn spawn(spec: DaemonSpec) -> Result<Self> {
        let mut daemon = Self {
            spec,
            child: None,
            exit: None,
        };
        daemon.start()?;
        Ok(daemon)
    }

    /// The daemon's spec.
    pub fn spec(&self) -> &DaemonSpec {
        &self.spec
    }

    /// Starts the daemon again with the same command line; it must have stopped. Its
    /// output file starts afresh.
    pub fn start(&mut self) -> Result<()> {
        if self.child.is_some() {
            bail!("{} is already running", self.spec.name);
        }
        let output = File::create(&self.spec.output)
            .with_context(|| format!("creating {}", self.spec.output.display()))?;
        let mut cmd = Command::new(&self.spec.argv[0]);
        cmd.args(&self.spec.argv[1..])
            .current_dir(&self.spec.dir)
            .stdin(Stdio::null())
            .stdout(output.try_clone()?)
            .stderr(output);
        if self.spec.ovs_dirs {
            set_rundirs(&mut cmd, &self.spec.dir);
        }
        cmd.envs(self.spec.envs.iter().map(|(k, v)| (k, v)));
        let child = spawn_with_parent_death_signal(cmd)
            .with_context(|| format!("spawning {} ({:?})", self.spec.name, self.spec.argv))?;
        self.child = Some(child);
        self.exit = None;
        Ok(())
    }

    /// The pid of the running daemon.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The running daemon's resident memory, from `/proc/<pid>/status`.
    pub fn memory(&self) -> Result<Memory> {
        let pid = self
            .pid()
            .with_context(|| format!("{} is not running", self.spec.name))?;
        let path = format!("/proc/{pid}/status");
        let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        Memory::parse(&status).with_context(|| format!("no VmHWM/VmRSS in {path}"))
    }

    /// The daemon's exit status, once it has exited (and that was noticed).
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.exit
    }

    /// Whether the daemon still runs.
    pub fn running(&mut self) -> bool {
        self.reap();
        self.child.is_some()
    }

    /// Fails, with the log tail, when the daemon is not running any more.
    pub fn check_running(&mut self) -> Result<()> {
        if self.running() {
            return Ok(());
        }
        match self.exit {
            Some(status) => bail!(
                "{} exited ({status}); log tail:\n{}",
                self.spec.name,
                self.log_tail()
            ),
            None => bail!("{} is stopped", self.spec.name),
        }
    }

    /// Polls `probe` (see [`wait_until`]) while checking the daemon keeps running; errors
    /// carry the daemon's log tail.
    pub fn wait_ready<P: Outcome>(
        &mut self,
        timeout: Duration,
        what: &str,
        mut probe: impl FnMut() -> P,
    ) -> Result<P::Value> {
        let outcome = wait_until(timeout, what, || match self.check_running() {
            Err(e) => Ok(Err(e)),
            Ok(()) => probe().into_outcome().map(Ok).map_err(Seen),
        });
        match outcome {
            Ok(ready) => ready.with_context(|| format!("waiting for {what}")),
            Err(e) => Err(anyhow!("{e:#}\n{}", self.log_tail())),
        }
    }

    /// Waits up to `timeout` for the daemon to exit by itself; its exit status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let what = format!("{} to exit", self.spec.name);
        wait_until(timeout, &what, || {
            self.reap();
            self.exit
        })
        .map_err(|e| anyhow!("{e:#}; log tail:\n{}", self.log_tail()))
    }

    /// Sends SIGTERM and waits up to `timeout` for the daemon to exit; its exit status. A
    /// daemon that does not exit in time is an error (and killed when dropped).
    pub fn terminate(&mut self, timeout: Duration) -> Result<ExitStatus> {
        self.signal(Signal::SIGTERM);
        self.wait_exit(timeout)
            .with_context(|| format!("{} ignored SIGTERM", self.spec.name))
    }

    /// Kills the daemon with SIGKILL and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            self.exit = child.wait().ok();
        }
    }

    /// Stops the daemon with SIGTERM (SIGKILL after its [stop grace](DaemonSpec::stop_grace))
    /// and reaps it.
    pub fn stop(&mut self) {
        if self.child.is_some() && self.terminate(self.spec.stop_grace).is_err() {
            self.kill();
        }
    }

    /// Sends `signal` to the running daemon.
    fn signal(&self, signal: Signal) {
        if let Some(pid) = self.pid().and_then(|p| i32::try_from(p).ok()) {
            let _ = kill(Pid::from_raw(pid), signal);
        }
    }

    /// Notices an exit: the child is reaped and its status kept.
    fn reap(&mut self) {
        if let Some(child) = self.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            self.exit = Some(status);
            self.child = None;
        }
    }

    /// The last lines of the daemon's log file (when it writes one) and of its output.
    pub fn log_tail(&self) -> String {
        let mut out = String::new();
        for path in self.spec.log.iter().chain([&self.spec.output]) {
            out.push_str(&format!("--- {}\n", path.display()));
            out.push_str(&file_tail(path, LOG_TAIL_LINES));
        }
        out
    }
}

/// A process's resident memory, in MiB.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Memory {
    /// The peak resident set size (`VmHWM`).
    pub peak_mib: f64,
    /// The resident set size now (`VmRSS`).
    pub resident_mib: f64,
}

impl Memory {
    /// Reads the `VmHWM` and `VmRSS` lines (in kB) of a `/proc/<pid>/status`.
    fn parse(status: &str) -> Option<Self> {
        let mib = |field: &str| {
            let kib = status.lines().find_map(|line| line.strip_prefix(field))?;
            Some(kib.split_whitespace().next()?.parse::<f64>().ok()? / 1024.0)
        };
        Some(Self {
            peak_mib: mib("VmHWM:")?,
            resident_mib: mib("VmRSS:")?,
        })
    }
}

/// What a readiness probe saw, for the timeout message.
struct Seen(Option<String>);

impl std::fmt::Display for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.as_deref().unwrap_or_default())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The last `lines` lines of file `path` (empty when it cannot be read), each ending
/// with a newline.
pub(crate) fn file_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    let mut out = String::new();
    for line in &all[all.len().saturating_sub(lines)..] {
        out.push_str(line);
        out.push('\n');
    }
    out
}

type SpawnRequest = (Command, Sender<io::Result<Child>>);

/// Spawns `cmd` from the process-lifetime spawner thread. The child gets SIGKILL when
/// that thread, i.e. the test process, ends (even when its owner is never dropped, like
/// the shared Kubernetes environment, or the test process is killed).
pub(crate) fn spawn_with_parent_death_signal(mut cmd: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<Sender<SpawnRequest>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("testenv-spawner".into())
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

/// Runs `bash script` with `env` (its stderr shown), for the `hack/` scripts that print the
/// directory of what they made as their last line of stdout; returns that directory.
pub fn run_dir_script(script: &Path, env: &[(&str, &OsStr)]) -> Result<PathBuf> {
    let mut command = Command::new("bash");
    command.arg(script).stderr(Stdio::inherit());
    for (key, value) in env {
        command.env(key, value);
    }
    let out = command
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!(
            "{} failed ({}); see its output above",
            script.display(),
            out.status
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    Ok(PathBuf::from(
        stdout.lines().last().unwrap_or_default().trim(),
    ))
}

/// Sets the OVS/OVN directory variables of `cmd` to `dir`.
pub(crate) fn set_rundirs(cmd: &mut Command, dir: &Path) {
    for var in ["OVS_RUNDIR", "OVN_RUNDIR", "OVS_DBDIR", "OVS_LOGDIR"] {
        cmd.env(var, dir);
    }
}

/// Runs a command-line tool to completion in `dir` (as its OVS/OVN run dir)
/// and returns its stdout; a non-zero exit is an error carrying stderr.
pub(crate) fn run_tool<S: AsRef<OsStr>>(dir: &Path, program: &str, args: &[S]) -> Result<String> {
    let mut cmd = Command::new(program);
    cmd.current_dir(dir);
    set_rundirs(&mut cmd, dir);
    run_command(cmd, program, args)
}

/// Runs a command-line tool (`ip`, `ovs-vsctl --db=…`, `ethtool`) to completion and
/// returns its stdout; a non-zero exit is an error carrying stderr.
pub fn run<S: AsRef<OsStr>>(program: &str, args: &[S]) -> Result<String> {
    run_command(Command::new(program), program, args)
}

/// Runs `cmd` (`program`, for messages) with `args` to completion and returns its stdout; a
/// non-zero exit is an error carrying stderr.
pub(crate) fn run_command<S: AsRef<OsStr>>(
    mut cmd: Command,
    program: &str,
    args: &[S],
) -> Result<String> {
    cmd.args(args)
        .stdin(Stdio::null())
        .env_remove("OVN_NB_DAEMON")
        .env_remove("OVN_SB_DAEMON");
    let out = cmd.output().with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        let shown: Vec<_> = args.iter().map(|a| a.as_ref().to_string_lossy()).collect();
        bail!(
            "{program} {} failed ({}): {}",
            shown.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::Memory;

    #[test]
    fn memory_from_proc_status() {
        let status = "Name:\trovn-controller\nVmPeak:\t  900000 kB\nVmHWM:\t   51200 kB\nVmRSS:\t   40960 kB\n";
        assert_eq!(
            Memory::parse(status),
            Some(Memory {
                peak_mib: 50.0,
                resident_mib: 40.0
            })
        );
        assert_eq!(Memory::parse("Name:\tzombie\n"), None);
    }
}
