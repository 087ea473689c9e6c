//! One daemon process started by the test environment: spawned with its own
//! run/log/db directories, stopped (and reaped) when dropped.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::wait_until;

/// How long a daemon gets to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Lines of a daemon's log shown in error messages.
const LOG_TAIL_LINES: usize = 40;

/// A daemon command line and the directory it runs in.
#[derive(Clone, Debug)]
pub(crate) struct DaemonSpec {
    /// Short name used in error messages ("nb", "northd", ...).
    pub name: String,
    /// Program and its arguments.
    pub argv: Vec<OsString>,
    /// Directory used as OVS_RUNDIR/OVN_RUNDIR/OVS_DBDIR/OVS_LOGDIR.
    pub dir: PathBuf,
    /// The file given to `--log-file`.
    pub log: PathBuf,
}

impl DaemonSpec {
    /// A daemon `program` running in `dir`, logging to `dir/<name>.log`.
    pub fn new(name: &str, dir: &Path, program: &str) -> Self {
        Self {
            name: name.to_string(),
            argv: vec![program.into()],
            dir: dir.to_path_buf(),
            log: dir.join(format!("{name}.log")),
        }
    }

    /// Appends an argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.argv.push(arg.into());
        self
    }

    /// Appends `--pidfile`, `--log-file` and (when `unixctl`) `--unixctl`
    /// options pointing into the daemon's directory.
    pub fn standard_files(self, unixctl: bool) -> Self {
        let pidfile = self.dir.join(format!("{}.pid", self.name));
        let log = self.log.clone();
        let mut spec = self
            .arg(format!("--pidfile={}", pidfile.display()))
            .arg(format!("--log-file={}", log.display()));
        if unixctl {
            let ctl = spec.ctl_path();
            spec = spec.arg(format!("--unixctl={}", ctl.display()));
        }
        spec
    }

    /// The path of the `--unixctl` socket this spec uses.
    pub fn ctl_path(&self) -> PathBuf {
        self.dir.join(format!("{}.ctl", self.name))
    }

    fn stderr_path(&self) -> PathBuf {
        self.dir.join(format!("{}.stderr", self.name))
    }
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
    run(cmd, program, args)
}

/// Runs a command-line tool (`ip`, `ovs-vsctl --db=…`) to completion and
/// returns its stdout; a non-zero exit is an error carrying stderr.
pub(crate) fn run_plain<S: AsRef<OsStr>>(program: &str, args: &[S]) -> Result<String> {
    run(Command::new(program), program, args)
}

fn run<S: AsRef<OsStr>>(mut cmd: Command, program: &str, args: &[S]) -> Result<String> {
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

/// Stops `child` with SIGTERM (SIGKILL when it is still there after `grace`) and reaps it.
pub(crate) fn stop_child(mut child: Child, grace: Duration) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A running (or stopped) daemon started by us.
#[derive(Debug)]
pub(crate) struct Daemon {
    spec: DaemonSpec,
    child: Option<Child>,
}

impl Daemon {
    /// Starts the daemon described by `spec` (not waiting for readiness).
    pub fn spawn(spec: DaemonSpec) -> Result<Self> {
        let mut daemon = Self { spec, child: None };
        daemon.start()?;
        Ok(daemon)
    }

    /// The daemon's spec.
    pub fn spec(&self) -> &DaemonSpec {
        &self.spec
    }

    /// Starts the daemon again with the same command line; it must be stopped.
    pub fn start(&mut self) -> Result<()> {
        if self.child.is_some() {
            bail!("{} is already running", self.spec.name);
        }
        let stderr = File::create(self.spec.stderr_path())
            .with_context(|| format!("creating stderr file of {}", self.spec.name))?;
        let mut cmd = Command::new(&self.spec.argv[0]);
        cmd.args(&self.spec.argv[1..])
            .current_dir(&self.spec.dir)
            .stdin(Stdio::null())
            .stdout(stderr.try_clone()?)
            .stderr(stderr);
        set_rundirs(&mut cmd, &self.spec.dir);
        let child = cmd
            .spawn()
            .with_context(|| format!("spawning {} ({:?})", self.spec.name, self.spec.argv))?;
        self.child = Some(child);
        Ok(())
    }

    /// The pid of the running daemon.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Fails (with the log tail) if the daemon is not running any more.
    pub fn check_running(&mut self) -> Result<()> {
        let Some(child) = self.child.as_mut() else {
            bail!("{} is stopped", self.spec.name);
        };
        if let Some(status) = child.try_wait()? {
            self.child = None;
            bail!(
                "{} exited ({status}); log tail:\n{}",
                self.spec.name,
                self.log_tail()
            );
        }
        Ok(())
    }

    /// Polls `ready` (see [`wait_until`]) while checking the daemon keeps
    /// running; errors carry the daemon's log tail.
    pub fn wait_ready<T>(
        &mut self,
        timeout: Duration,
        what: &str,
        mut ready: impl FnMut() -> Option<T>,
    ) -> Result<T> {
        let mut died = None;
        let outcome = wait_until(timeout, what, || {
            if let Err(e) = self.check_running() {
                died = Some(e);
                return Some(None);
            }
            ready().map(Some)
        });
        if let Some(e) = died {
            return Err(e);
        }
        match outcome {
            Ok(Some(value)) => Ok(value),
            Ok(None) => bail!("{what}: daemon {} stopped", self.spec.name),
            Err(e) => Err(anyhow!("{e}\n{}", self.log_tail())),
        }
    }

    /// Kills the daemon with SIGKILL and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the daemon with SIGTERM (SIGKILL after a grace period) and reaps it.
    pub fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            stop_child(child, STOP_GRACE);
        }
    }

    /// The last lines of the daemon's log file and of its captured stderr.
    pub fn log_tail(&self) -> String {
        let mut out = String::new();
        for path in [&self.spec.log, &self.spec.stderr_path()] {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(LOG_TAIL_LINES);
            out.push_str(&format!("--- {}\n", path.display()));
            for line in &lines[start..] {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}
