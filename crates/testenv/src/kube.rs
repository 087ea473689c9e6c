//! A real etcd + kube-apiserver for integration tests, in a temporary
//! directory, on free loopback ports.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use testenv::kube::KubeEnv;
//! // One API server per test binary, shared by its tests (use your own names):
//! let env = KubeEnv::shared()?;
//! let client = env.client().await?;
//! let out = env.kubectl(&["get", "namespaces"])?;
//! # let _ = (client, out); Ok(()) }
//! ```
//!
//! The binaries come from the directory in `ROVN_K8S_BINS`, else from
//! `hack/k8s-bins.sh` (which builds them once into a cache). There is no
//! controller-manager or scheduler: tests set `spec.nodeName` themselves and
//! delete what they create. The `ServiceAccount` admission plugin is off (no
//! controller creates the `default` service accounts) unless started with
//! [`KubeEnv::start_on`] (the real node, whose controller-manager creates
//! them; the API server then serves on the node's address). The client authenticates with a
//! certificate of group `system:masters`.
//!
//! Starting blocks (`std::process`); [`KubeEnv::client`] is async and makes a
//! new client for the calling tokio runtime.

mod certs;

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use tempfile::TempDir;

use crate::http::http_get;
use crate::process::{Daemon, DaemonSpec, run_command};
use certs::Certs;

/// How long etcd and the API server get to become ready (a cold start on two
/// cores takes a few seconds).
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// Attempts at starting a daemon on fresh ports when another process took a port.
const PORT_ATTEMPTS: usize = 3;

/// Name prefix of the shared environments' directories (followed by the pid).
const SHARED_DIR_PREFIX: &str = "rovn-kube-shared-";

/// The directory holding `kube-apiserver`, `kubectl` and `etcd`: `ROVN_K8S_BINS`,
/// else the last line printed by `hack/k8s-bins.sh` (run once per process;
/// its progress goes to stderr).
pub fn k8s_bins() -> Result<PathBuf> {
    static BINS: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BINS.get_or_init(|| find_k8s_bins().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!(e))
}

fn find_k8s_bins() -> Result<PathBuf> {
    let dir = match std::env::var_os("ROVN_K8S_BINS") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../hack/k8s-bins.sh");
            crate::process::run_dir_script(&script, &[])?
        }
    };
    for bin in ["kube-apiserver", "kubectl", "etcd"] {
        if !dir.join(bin).is_file() {
            bail!(
                "{} has no {bin}; run hack/k8s-bins.sh or point ROVN_K8S_BINS at its output",
                dir.display()
            );
        }
    }
    Ok(dir)
}

/// A running etcd + kube-apiserver pair. Dropping it stops both and removes
/// its directory.
#[derive(Debug)]
pub struct KubeEnv {
    // Field order is drop order: the API server stops before etcd, the
    // directory goes last.
    apiserver: Daemon,
    etcd: Daemon,
    server_url: String,
    kubeconfig: PathBuf,
    kubectl: PathBuf,
    dir: TempDir,
}

impl KubeEnv {
    /// Starts a new environment owned by the caller.
    pub fn start() -> Result<Self> {
        Self::start_new(Admission::WithoutServiceAccounts)
    }

    /// Starts a new environment for a node: with the `ServiceAccount` admission plugin
    /// (pods get their ServiceAccount's token, in-cluster clients work, and a pod whose
    /// ServiceAccount does not exist is refused, so a controller-manager must create them),
    /// serving on `address` (the node's InternalIP) instead of 127.0.0.1 and advertising it:
    /// the `kubernetes` Service's endpoint is an address pods can be routed to.
    pub fn start_on(address: Ipv4Addr) -> Result<Self> {
        Self::start_new_on(Admission::WithServiceAccounts, address)
    }

    fn start_new(admission: Admission) -> Result<Self> {
        Self::start_new_on(admission, Ipv4Addr::LOCALHOST)
    }

    fn start_new_on(admission: Admission, address: Ipv4Addr) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("rovn-kube-")
            .tempdir()
            .context("creating the environment's directory")?;
        Self::start_in(dir, admission, address)
    }

    /// The environment shared by all tests of this process, started on first
    /// use. It is never dropped: its daemons die with the process (parent-death
    /// signal) and its directory is removed by the next process that starts a
    /// shared environment.
    pub fn shared() -> Result<&'static KubeEnv> {
        static SHARED: OnceLock<Result<KubeEnv, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| {
                remove_stale_shared_dirs();
                tempfile::Builder::new()
                    .prefix(&format!("{SHARED_DIR_PREFIX}{}-", std::process::id()))
                    .tempdir()
                    .context("creating the shared environment's directory")
                    .and_then(|dir| {
                        Self::start_in(dir, Admission::WithoutServiceAccounts, Ipv4Addr::LOCALHOST)
                    })
                    .map_err(|e| format!("{e:#}"))
            })
            .as_ref()
            .map_err(|e| anyhow!("starting the shared Kubernetes test environment: {e}"))
    }

    fn start_in(dir: TempDir, admission: Admission, address: Ipv4Addr) -> Result<Self> {
        let bins = k8s_bins()?;
        let certs = Certs::generate(dir.path(), address)?;
        let (etcd, etcd_url) = start_etcd(dir.path(), &bins)?;
        let (apiserver, server_url, kubeconfig) =
            start_apiserver(dir.path(), &bins, &certs, &etcd_url, admission, address)?;
        Ok(Self {
            apiserver,
            etcd,
            server_url,
            kubeconfig,
            kubectl: bins.join("kubectl"),
            dir,
        })
    }

    /// A new client for the calling tokio runtime, authenticated as admin.
    pub async fn client(&self) -> Result<kube::Client> {
        let kubeconfig = kube::config::Kubeconfig::read_from(&self.kubeconfig)?;
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
        Ok(kube::Client::try_from(config)?)
    }

    /// The kubeconfig file (admin credentials) for `kubectl` and other tools.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// `https://<address>:<port>` of the API server (127.0.0.1 unless started with
    /// [`KubeEnv::start_on`]).
    pub fn server_url(&self) -> &str {
        &self.server_url
    }

    /// The environment's directory (certificates, logs, etcd data).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Pids of the API server and etcd.
    pub fn pids(&self) -> Vec<u32> {
        [self.apiserver.pid(), self.etcd.pid()]
            .into_iter()
            .flatten()
            .collect()
    }

    /// A `kubectl --kubeconfig=<env>` command to add arguments to.
    pub fn kubectl_command(&self) -> Command {
        let mut cmd = Command::new(&self.kubectl);
        cmd.arg(format!("--kubeconfig={}", self.kubeconfig.display()));
        cmd
    }

    /// Runs `kubectl args…` and returns its stdout; a non-zero exit is an
    /// error carrying stderr.
    pub fn kubectl<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Result<String> {
        run_command(self.kubectl_command(), "kubectl", args)
    }

    /// The last lines of the API server's log (for failure messages).
    pub fn apiserver_log_tail(&self) -> String {
        self.apiserver.log_tail()
    }
}

/// Whether the API server runs the `ServiceAccount` admission plugin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Admission {
    WithServiceAccounts,
    WithoutServiceAccounts,
}

/// A free TCP port on 127.0.0.1 (free when asked; the daemon binds it later).
pub(crate) fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// Starts `start` up to [`PORT_ATTEMPTS`] times while it loses port races.
fn retry_port_races<T>(
    mut start: impl FnMut() -> Result<(Daemon, T)>,
    what: &str,
) -> Result<(Daemon, T)> {
    let mut attempt = 1;
    loop {
        match start() {
            Ok(started) => return Ok(started),
            Err(e) if attempt < PORT_ATTEMPTS && e.downcast_ref::<PortRace>().is_some() => {
                attempt += 1
            }
            Err(e) => return Err(e.context(format!("starting {what}"))),
        }
    }
}

/// A daemon exited because a port it was given got taken meanwhile.
#[derive(Debug)]
struct PortRace;

impl std::fmt::Display for PortRace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a port was taken by another process")
    }
}

impl std::error::Error for PortRace {}

/// Waits until `daemon` is ready, turning an exit after a lost port race into [`PortRace`].
fn wait_ready_or_port_race<T>(
    daemon: &mut Daemon,
    what: &str,
    probe: impl FnMut() -> Option<T>,
) -> Result<T> {
    daemon.wait_ready(READY_TIMEOUT, what, probe).map_err(|e| {
        if daemon.check_running().is_err() && lost_port_race(daemon) {
            anyhow::Error::new(PortRace).context(e.to_string())
        } else {
            e
        }
    })
}

/// Starts etcd (plain HTTP on loopback, no fsync) and returns it with its client URL.
fn start_etcd(dir: &Path, bins: &Path) -> Result<(Daemon, String)> {
    retry_port_races(
        || {
            let client_port = free_port()?;
            let peer_port = free_port()?;
            let client_url = format!("http://127.0.0.1:{client_port}");
            let peer_url = format!("http://127.0.0.1:{peer_port}");
            let data = dir.join("etcd");
            let _ = std::fs::remove_dir_all(&data);
            let args = vec![
                "--name=default".to_string(),
                format!("--data-dir={}", data.display()),
                format!("--listen-client-urls={client_url}"),
                format!("--advertise-client-urls={client_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster=default={peer_url}"),
                "--unsafe-no-fsync".into(),
                "--log-level=warn".into(),
            ];
            let mut etcd =
                Daemon::spawn(DaemonSpec::new("etcd", dir, bins.join("etcd")).args(args))?;
            wait_ready_or_port_race(&mut etcd, "etcd /health", || {
                let (_, body) = http_get(
                    SocketAddr::from((Ipv4Addr::LOCALHOST, client_port)),
                    "/health",
                )?;
                body.contains("\"health\":\"true\"").then_some(())
            })?;
            Ok((etcd, client_url))
        },
        "etcd",
    )
}

/// Whether `daemon`'s output says an address was already in use (a port race).
fn lost_port_race(daemon: &Daemon) -> bool {
    std::fs::read_to_string(daemon.spec().output_file())
        .is_ok_and(|log| log.contains("address already in use"))
}

/// Starts the API server, writes the kubeconfig and waits for `/readyz`.
fn start_apiserver(
    dir: &Path,
    bins: &Path,
    certs: &Certs,
    etcd_url: &str,
    admission: Admission,
    address: Ipv4Addr,
) -> Result<(Daemon, String, PathBuf)> {
    let kubeconfig = dir.join("kubeconfig");
    let (apiserver, server_url) = retry_port_races(
        || {
            let port = free_port()?;
            let server_url = format!("https://{address}:{port}");
            write_kubeconfig(&kubeconfig, &server_url, certs)?;
            let path = |p: &Path| p.display().to_string();
            let mut args = vec![
                format!("--etcd-servers={etcd_url}"),
                format!("--bind-address={address}"),
                format!("--advertise-address={address}"),
                format!("--secure-port={port}"),
                format!("--cert-dir={}", dir.join("apiserver-certs").display()),
                format!("--tls-cert-file={}", path(&certs.server_cert)),
                format!("--tls-private-key-file={}", path(&certs.server_key)),
                format!("--client-ca-file={}", path(&certs.ca_cert)),
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
                format!("--service-account-key-file={}", path(&certs.sa_pub)),
                format!("--service-account-signing-key-file={}", path(&certs.sa_key)),
                "--service-cluster-ip-range=10.96.0.0/16".into(),
                "--authorization-mode=RBAC".into(),
                "--allow-privileged=true".into(),
                "--profiling=false".into(),
                "--v=1".into(),
            ];
            if admission == Admission::WithoutServiceAccounts {
                args.push("--disable-admission-plugins=ServiceAccount".into());
            }
            let mut apiserver = Daemon::spawn(
                DaemonSpec::new("kube-apiserver", dir, bins.join("kube-apiserver")).args(args),
            )?;
            let kubectl = bins.join("kubectl");
            wait_ready_or_port_race(&mut apiserver, "kube-apiserver /readyz", || {
                // Cheap TCP check first; kubectl only once the port is open.
                TcpStream::connect((address, port)).ok()?;
                let out = Command::new(&kubectl)
                    .arg(format!("--kubeconfig={}", kubeconfig.display()))
                    .args(["get", "--raw", "/readyz"])
                    .output()
                    .ok()?;
                (out.status.success() && out.stdout.starts_with(b"ok")).then_some(())
            })?;
            Ok((apiserver, server_url))
        },
        "kube-apiserver",
    )?;
    Ok((apiserver, server_url, kubeconfig))
}

/// Writes a kubeconfig for the admin client certificate.
fn write_kubeconfig(path: &Path, server_url: &str, certs: &Certs) -> Result<()> {
    let text = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: rovn-test
  cluster:
    server: {server_url}
    certificate-authority: {ca}
users:
- name: rovn-admin
  user:
    client-certificate: {cert}
    client-key: {key}
contexts:
- name: rovn-test
  context:
    cluster: rovn-test
    user: rovn-admin
current-context: rovn-test
",
        ca = certs.ca_cert.display(),
        cert = certs.admin_cert.display(),
        key = certs.admin_key.display(),
    );
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Removes shared environments' directories left by processes that have exited.
fn remove_stale_shared_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name
            .to_str()
            .and_then(|n| n.strip_prefix(SHARED_DIR_PREFIX))
        else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
