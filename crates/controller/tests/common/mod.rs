//! Shared pieces of the controller's integration tests: the real
//! `rovn-controller` binary as a child process, bounded polls, metrics reads
//! and the snapshot of Neutron-owned Northbound rows.

#![allow(dead_code)]

use std::collections::HashSet;
use std::future::Future;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use api::Vpc;
use kube::Api;
use serde_json::Value;
use testenv::kube::KubeEnv;
use testenv::ovn::OvnEnv;

/// Upper bound of every wait (a hang guard, not a performance assertion).
pub const WAIT: Duration = Duration::from_secs(60);

/// Polls `probe` every 50 ms until it returns `Some`, panicking after [`WAIT`].
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A free loopback address for a controller's `--metrics-addr`.
pub fn free_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr")
}

/// A running `rovn-controller`, killed (SIGKILL) on drop.
pub struct Controller {
    child: Child,
    /// Its `/healthz /readyz /metrics` address.
    pub addr: SocketAddr,
    /// Its leader-election identity.
    pub identity: String,
    log_path: std::path::PathBuf,
}

impl Controller {
    /// Starts the binary against `ovn`'s NB (unix socket) and `kube`'s API
    /// server.
    pub fn start(ovn: &OvnEnv, kube: &KubeEnv, identity: &str) -> Self {
        Self::start_with(kube, identity, &[format!("--ovn-nb={}", ovn.nb_remote())])
    }

    /// Starts the binary against `kube`'s API server with the given NB flags.
    pub fn start_with(kube: &KubeEnv, identity: &str, nb_args: &[String]) -> Self {
        let addr = free_addr();
        // Kept after the test, for failure analysis.
        let log_path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "rovn-controller-{}-{identity}.log",
            std::process::id()
        ));
        let log = std::fs::File::create(&log_path).expect("controller log file");
        eprintln!("rovn-controller {identity} logs to {}", log_path.display());
        let child = Command::new(env!("CARGO_BIN_EXE_rovn-controller"))
            .args(nb_args)
            .arg(format!("--kubeconfig={}", kube.kubeconfig().display()))
            .arg(format!("--metrics-addr={addr}"))
            .arg("--lease-namespace=default")
            .arg(format!("--identity={identity}"))
            .env("RUST_LOG", "info,controller=debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start rovn-controller");
        Self {
            child,
            addr,
            identity: identity.to_string(),
            log_path,
        }
    }

    /// The process' log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Waits (bounded) for the process to exit; its exit code.
    pub fn wait_exit(&mut self) -> Option<i32> {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("rovn-controller {} did not exit", self.identity);
    }

    /// Pid of the process.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits (bounded) for a clean exit.
    pub fn terminate(mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("rovn-controller {} ignored SIGTERM", self.identity);
    }

    /// Whether the process still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// GET `path` on the probe server: (status code, body), or `None` when
    /// it does not answer (yet).
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        let mut stream = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        )
        .ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let code = response.split_whitespace().nth(1)?.parse().ok()?;
        let body = response.split_once("\r\n\r\n")?.1.to_string();
        Some((code, body))
    }

    /// The value of metric `name` (exact sample name, no labels), if exported.
    pub fn metric(&self, name: &str) -> Option<f64> {
        let (code, body) = self.get("/metrics")?;
        if code != 200 {
            return None;
        }
        body.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
            let (sample, value) = l.rsplit_once(' ')?;
            (sample == name).then(|| value.parse().ok()).flatten()
        })
    }

    /// Sum of every sample of metric family `prefix` (all label sets).
    pub fn metric_sum(&self, prefix: &str) -> f64 {
        let Some((_, body)) = self.get("/metrics") else {
            return 0.0;
        };
        body.lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&self) {
        eventually(&format!("{} ready", self.identity), || async {
            matches!(self.get("/readyz"), Some((200, _))).then_some(())
        })
        .await;
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Installs the CRDs (bounded).
pub async fn install_crds(client: &kube::Client) {
    tokio::time::timeout(WAIT, api::install::apply_crds(client, "rovn-tests"))
        .await
        .expect("CRDs installed in time")
        .expect("CRDs installed");
}

/// The Vpc named `name`, when it exists.
pub async fn vpc(vpcs: &Api<Vpc>, name: &str) -> Option<Vpc> {
    vpcs.get_opt(name).await.expect("GET vpc")
}

/// Waits until Vpc `name` exists and `check` holds for it.
pub async fn wait_vpc(
    vpcs: &Api<Vpc>,
    name: &str,
    what: &str,
    check: impl Fn(&Vpc) -> bool,
) -> Vpc {
    eventually(&format!("Vpc {name}: {what}"), || async {
        vpc(vpcs, name).await.filter(|v| check(v))
    })
    .await
}

/// Waits until object `name` of `api` (a Vpc, a Subnet...) no longer exists.
pub async fn wait_gone<K>(api: &Api<K>, name: &str)
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let kind = K::kind(&()).into_owned();
    eventually(&format!("{kind} {name} deleted"), || async {
        api.get_opt(name)
            .await
            .expect("GET")
            .is_none()
            .then_some(())
    })
    .await;
}

/// The rows of a canonical NB dump that Neutron owns: any row with a
/// `neutron:` key, Neutron DHCP options (`subnet_id`) and the
/// `neutron_pg_drop` group with its ACLs. References to rows of ours are
/// left out of their columns: adding our router port to a Neutron router's
/// `ports` is the one change rovn may make to a Neutron row.
pub fn neutron_rows(dump: &str) -> String {
    let rows = || dump.lines().filter(|l| l.starts_with(' '));
    let ours: HashSet<String> = rows()
        .filter(|l| l.contains("\"rovn:owner\""))
        .filter_map(|l| {
            let row: Value = serde_json::from_str(l.trim()).ok()?;
            Some(row["_uuid"][1].as_str()?.to_string())
        })
        .collect();
    let mut out = String::new();
    let mut table = "";
    for line in dump.lines() {
        if !line.starts_with(' ') {
            table = line;
            continue;
        }
        if line.contains("neutron:")
            || line.contains("subnet_id")
            || line.contains("neutron_pg_drop")
        {
            let mut row: Value = serde_json::from_str(line.trim()).expect("dump row");
            if let Some(columns) = row.as_object_mut() {
                for (column, value) in columns.iter_mut() {
                    if column != "_uuid" {
                        drop_refs(value, &ours);
                    }
                }
            }
            out.push_str(table);
            out.push(' ');
            out.push_str(&row.to_string());
            out.push('\n');
        }
    }
    out
}

/// Removes references to `ours` from a dumped column value, normalising a
/// one-element set to its atom as `ovsdb-client dump` prints it.
fn drop_refs(value: &mut Value, ours: &HashSet<String>) {
    let is_ours =
        |atom: &Value| atom[0] == "uuid" && atom[1].as_str().is_some_and(|u| ours.contains(u));
    if is_ours(value) {
        *value = serde_json::json!(["set", []]);
        return;
    }
    if value[0] == "set"
        && let Some(atoms) = value[1].as_array_mut()
    {
        atoms.retain(|a| !is_ours(a));
        if atoms.len() == 1 {
            *value = atoms[0].clone();
        }
    }
}

/// Tracks the Neutron-owned rows as the test (acting as Neutron) left them,
/// to prove the controller never changes them.
pub struct NeutronRows {
    expected: String,
}

impl NeutronRows {
    /// Snapshot of the current Neutron rows.
    pub fn snapshot(ovn: &OvnEnv) -> Self {
        Self {
            expected: neutron_rows(&ovn.dump_nb().expect("dump NB")),
        }
    }

    /// Asserts the Neutron rows are byte for byte as in the last snapshot.
    pub fn assert_unchanged(&self, ovn: &OvnEnv, when: &str) {
        let now = neutron_rows(&ovn.dump_nb().expect("dump NB"));
        assert!(
            now == self.expected,
            "Neutron-owned rows changed ({when}):\n--- expected\n{}\n--- found\n{}",
            self.expected,
            now
        );
    }

    /// Asserts nothing changed since the last snapshot, then lets the test
    /// act as Neutron (`change`) and takes a new snapshot.
    pub fn neutron_writes<T>(&mut self, ovn: &OvnEnv, what: &str, change: impl FnOnce() -> T) -> T {
        self.assert_unchanged(ovn, &format!("before: {what}"));
        let result = change();
        *self = Self::snapshot(ovn);
        result
    }
}
