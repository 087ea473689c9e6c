//! A real Kubernetes node on this machine for tests and the lab (feature `kube`): the API
//! server and etcd of a [`KubeEnv`], kube-controller-manager, kube-scheduler, a containerd of
//! its own ([`Containerd`]) and kubelet, optionally beside an [`OvnEnv`] (the host chassis for
//! rovn), with the images of `hack/images.sh` ([`Images`]) imported (the CoreDNS one when
//! the cluster DNS is deployed).
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use testenv::node::NodeEnv;
//! let node = NodeEnv::builder().start()?;
//! // The node is registered; it is NotReady until a CNI configuration is installed in
//! // node.cni_conf_dir() (hostNetwork pods run anyway).
//! let pod = format!(
//!     "apiVersion: v1\nkind: Pod\nmetadata: {{name: p, namespace: default}}\nspec:\n  hostNetwork: true\n  containers: [{{name: c, image: {}, imagePullPolicy: Never, command: [sleep, '3600']}}]\n",
//!     node.images().busybox()
//! );
//! node.apply(&pod)?;
//! node.wait_pod_running("default", "p", std::time::Duration::from_secs(120))?;
//! let out = node.kubectl(&["exec", "p", "--", "echo", "hi"])?;
//! # let _ = out; Ok(()) }
//! ```
//!
//! kubelet gives pods the cluster DNS as nameserver ([`CLUSTER_DNS_IP`], domain
//! [`CLUSTER_DOMAIN`]); [`NodeEnv::deploy_cluster_dns`] runs CoreDNS behind it (hostNetwork,
//! on the node's address, port 53).
//!
//! Every daemon runs from the environment's temporary directory: containerd's config, root,
//! state and socket, the CNI directories ([`NodeEnv::cni_bin_dir`],
//! [`NodeEnv::cni_conf_dir`]), kubelet's root and pod log directories, each daemon's log.
//! Starting polls readiness (containerd's socket, kubelet's `/healthz` and the Node object,
//! the controller-manager's and scheduler's leader Leases, the `default` ServiceAccount),
//! never sleeps for it. Dropping stops kubelet, the scheduler and controller-manager, removes
//! every container through containerd and stops it, kills whatever is left in the node's
//! cgroup root, unmounts what they mounted under the directory, deletes the pods' network
//! namespaces and those of rovn's node-link gateways (`rovn-gw-*`), removes the node's cgroups and restores the kernel tunables kubelet changed.
//!
//! What kubelet needs from this machine (cgroup v1 without systemd, no CAP_SYS_RESOURCE):
//! the cgroupfs driver, `failCgroupV1: false`, containerd's `restrict_oom_score_adj`. The
//! Node's InternalIP (`--node-ip`, also hostNetwork pods' address) is this machine's address
//! of its default route (kubelet refuses a loopback one). The API server reaches kubelet (for
//! `exec`, `logs`) by the node's name (its `Hostname` address comes first), which must
//! therefore resolve to a loopback address: the default is this machine's host name when it
//! does, else `localhost`; kubelet listens on that loopback address only (it lets the API
//! server in anonymously).
//!
//! Host state deliberately left: `/var/run/netns` made a shared mount point (what `ip netns
//! add` does; pods mounting it with HostToContainer propagation need it) and the empty
//! `/run/containerd/{s,fifo,runc}` directories containerd 1.6 uses whatever its state
//! directory (other containerd instances may be using them). kubelet's device-plugin socket
//! under `/var/lib/kubelet` (a fixed path) is removed once no kubelet runs.

mod cleanup;
mod containerd;
mod dns;
mod images;
mod kubelet;
mod process;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::mount::{MsFlags, mount};
use tempfile::TempDir;

pub use containerd::{Containerd, ContainerdSettings, K8S_NAMESPACE};
pub use dns::{CLUSTER_DNS_IP, CLUSTER_DOMAIN, ClusterDns, DNS_NAMESPACE, DNS_SERVICE};
pub use images::{Images, coredns_bins};

use crate::http::http_get;
use crate::kube::{KubeEnv, free_port, k8s_bins};
use crate::ovn::{OvnEnv, OvnEnvBuilder};
use kubelet::{KubeletSettings, SavedSysctls};
use process::{Daemon, POLL, Spec, log_tail};

/// How long kubelet, the controller-manager and the scheduler get to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// How long kubelet gets to exit after SIGTERM.
const KUBELET_STOP_GRACE: Duration = Duration::from_secs(10);

/// How long the controller-manager and scheduler get to exit after SIGTERM.
const CONTROL_PLANE_STOP_GRACE: Duration = Duration::from_secs(5);

/// How long the processes left in the node's cgroups get to die after SIGKILL.
const CGROUP_DRAIN_TIMEOUT: Duration = Duration::from_secs(15);

/// Name prefix of the environments' directories (followed by the pid).
const DIR_PREFIX: &str = "rovn-node-";

/// Where Debian's containernetworking-plugins and the upstream tarball put `loopback`.
const LOOPBACK_PLUGINS: &[&str] = &["/usr/lib/cni/loopback", "/opt/cni/bin/loopback"];

/// Where kubelet's device manager puts its socket (not under `--root-dir`).
const DEVICE_PLUGINS_DIR: &str = "/var/lib/kubelet/device-plugins";

/// The directory where runtimes mount pod network namespaces.
const NETNS_DIR: &str = "/var/run/netns";

/// What a [`NodeEnv`] runs; see [`NodeEnv::builder`].
#[derive(Debug, Default)]
#[must_use]
pub struct NodeEnvBuilder {
    node_name: Option<String>,
    node_ip: Option<Ipv4Addr>,
    ovn: Option<OvnEnvBuilder>,
    images: Option<Images>,
}

impl NodeEnvBuilder {
    /// The Node's name (default: this machine's host name if it resolves to a loopback
    /// address, else `localhost`). It must resolve to a loopback address.
    pub fn node_name(mut self, name: &str) -> Self {
        self.node_name = Some(name.to_owned());
        self
    }

    /// The Node's InternalIP, an address of this machine that is not loopback (default:
    /// the source address of the default route).
    pub fn node_ip(mut self, ip: Ipv4Addr) -> Self {
        self.node_ip = Some(ip);
        self
    }

    /// Also start an [`OvnEnv`] from `builder` (e.g. the node's chassis:
    /// `OvnEnv::builder().chassis(name)`), started before the Kubernetes side and stopped
    /// after it.
    pub fn ovn(mut self, builder: OvnEnvBuilder) -> Self {
        self.ovn = Some(builder);
        self
    }

    /// The images to import (default: [`Images::get`]).
    pub fn images(mut self, images: Images) -> Self {
        self.images = Some(images);
        self
    }

    /// Starts everything and waits until the node is registered.
    pub fn start(self) -> Result<NodeEnv> {
        NodeEnv::start_with(self)
    }
}

/// A Running pod as the API server shows it ([`NodeEnv::running_pods`]).
#[derive(Debug, Clone)]
pub struct RunningPod {
    /// The pod's name.
    pub name: String,
    /// Its `status.podIP`.
    pub ip: String,
    /// Its annotations.
    pub annotations: std::collections::BTreeMap<String, String>,
}

/// A running node: control plane, containerd and kubelet, optionally OVN; see the module
/// documentation. Dropping it stops everything and leaves nothing behind.
#[derive(Debug)]
pub struct NodeEnv {
    kubelet: Daemon,
    scheduler: Daemon,
    controller_manager: Daemon,
    containerd: Containerd,
    kube: KubeEnv,
    ovn: Option<OvnEnv>,
    images: Images,
    node_name: String,
    node_ip: Ipv4Addr,
    kubelet_address: Ipv4Addr,
    kubelet_healthz_port: u16,
    cgroup_root: String,
    sysctls: SavedSysctls,
    startup: Duration,
    stopped: bool,
    // Removed last, after every daemon has stopped and every mount under it is gone.
    dir: TempDir,
}

impl NodeEnv {
    /// A builder with the defaults.
    pub fn builder() -> NodeEnvBuilder {
        NodeEnvBuilder::default()
    }

    /// The node name used when [`NodeEnvBuilder::node_name`] is not given (e.g. to name the
    /// node's OVN chassis like the node).
    pub fn default_node_name() -> String {
        kubelet::default_node_name()
    }

    fn start_with(builder: NodeEnvBuilder) -> Result<Self> {
        let started = Instant::now();
        sweep_stale_environments();
        let node_name = builder.node_name.unwrap_or_else(kubelet::default_node_name);
        if !kubelet::is_dns_subdomain(&node_name) {
            bail!("node name {node_name:?} is not a lowercase DNS subdomain");
        }
        let kubelet_address = kubelet::loopback_address_of(&node_name).with_context(|| {
            format!(
                "node name {node_name:?} does not resolve to a loopback address: the API server \
                 reaches kubelet by the node's name (its Hostname address comes first unless \
                 kube-apiserver has --kubelet-preferred-address-types=InternalIP)"
            )
        })?;
        let node_ip = match builder.node_ip {
            Some(ip) => ip,
            None => kubelet::host_address()?,
        };
        let images = match builder.images {
            Some(images) => images,
            None => Images::get()?.clone(),
        };
        let bins = k8s_bins()?;
        for bin in ["kubelet", "kube-controller-manager", "kube-scheduler"] {
            if !bins.join(bin).is_file() {
                bail!(
                    "{} has no {bin}; run hack/k8s-bins.sh (it builds it) or point ROVN_K8S_BINS \
                     at its output",
                    bins.display()
                );
            }
        }
        let dir = tempfile::Builder::new()
            .prefix(&format!("{DIR_PREFIX}{}-", std::process::id()))
            .tempdir()
            .context("creating the node environment's directory")?;
        let root = dir.path().canonicalize()?;
        let cgroup_root = format!(
            "/{}",
            root.file_name()
                .and_then(|n| n.to_str())
                .context("the environment's directory has no name")?
        );
        std::fs::write(root.join("cgroup-root"), &cgroup_root)?;

        // OVN first: the chassis is there before any pod can need it.
        let ovn = builder.ovn.map(OvnEnvBuilder::start).transpose()?;
        let kube = KubeEnv::start_on(node_ip)?;
        ensure_shared_netns_dir()?;

        let cni_bin_dir = root.join("cni/bin");
        let cni_conf_dir = root.join("cni/net.d");
        std::fs::create_dir_all(&cni_bin_dir)?;
        std::fs::create_dir_all(&cni_conf_dir)?;
        link_loopback_plugin(&cni_bin_dir)?;
        let containerd = Containerd::start(
            &root.join("containerd"),
            &ContainerdSettings {
                sandbox_image: images.pause().to_owned(),
                cni_bin_dir,
                cni_conf_dir,
            },
        )?;
        for (archive, _) in images.node_archives() {
            containerd.import(&archive)?;
        }

        let controller_manager = start_controller_manager(&root, &bins, &kube)?;
        let scheduler = start_scheduler(&root, &bins, &kube)?;

        kubelet::create_cgroup_root(&cgroup_root)?;
        let sysctls = SavedSysctls::save();
        let kubelet_healthz_port = free_port()?;
        let kubelet_spec = kubelet_spec(
            &root,
            &bins,
            &kube,
            &containerd,
            &node_name,
            node_ip,
            kubelet_address,
            kubelet_healthz_port,
            &cgroup_root,
        )
        .inspect_err(|_| {
            cleanup::remove_cgroup(&cgroup_root, Duration::ZERO);
        })?;
        let kubelet = Daemon::spawn(kubelet_spec, KUBELET_STOP_GRACE).inspect_err(|_| {
            cleanup::remove_cgroup(&cgroup_root, Duration::ZERO);
        })?;
        let mut env = Self {
            kubelet,
            scheduler,
            controller_manager,
            containerd,
            kube,
            ovn,
            images,
            node_name,
            node_ip,
            kubelet_address,
            kubelet_healthz_port,
            cgroup_root,
            sysctls,
            startup: Duration::ZERO,
            stopped: false,
            dir,
        };
        env.wait_kubelet_ready()?;
        env.wait_control_plane_ready()?;
        env.startup = started.elapsed();
        Ok(env)
    }

    /// Waits for kubelet's `/healthz` and its Node object.
    fn wait_kubelet_ready(&mut self) -> Result<()> {
        let port = self.kubelet_healthz_port;
        self.kubelet
            .wait_ready(READY_TIMEOUT, "kubelet /healthz", || {
                http_get(SocketAddr::from((Ipv4Addr::LOCALHOST, port)), "/healthz")
                    .filter(|(code, body)| *code == 200 && body.contains("ok"))
                    .map(drop)
            })?;
        let (kube, name) = (&self.kube, self.node_name.clone());
        let internal_ip = r#"jsonpath={.status.addresses[?(@.type=="InternalIP")].address}"#;
        self.kubelet.wait_ready(
            READY_TIMEOUT,
            "kubelet to register its Node with its InternalIP",
            || {
                kube.kubectl(&["get", "node", &name, "-o", internal_ip])
                    .ok()
                    .filter(|ip| !ip.trim().is_empty())
            },
        )?;
        Ok(())
    }

    /// Waits until the controller-manager and the scheduler lead (their Leases name them)
    /// and the `default` ServiceAccount exists (pods need it).
    fn wait_control_plane_ready(&mut self) -> Result<()> {
        let kube = &self.kube;
        let holder = |lease: &str| {
            kube.kubectl(&[
                "-n",
                "kube-system",
                "get",
                "lease",
                lease,
                "-o",
                "jsonpath={.spec.holderIdentity}",
            ])
            .ok()
            .filter(|h| !h.trim().is_empty())
        };
        self.controller_manager.wait_ready(
            READY_TIMEOUT,
            "kube-controller-manager to lead",
            || holder("kube-controller-manager"),
        )?;
        self.controller_manager
            .wait_ready(READY_TIMEOUT, "the default ServiceAccount", || {
                kube.kubectl(&["-n", "default", "get", "serviceaccount", "default"])
                    .ok()
            })?;
        self.scheduler
            .wait_ready(READY_TIMEOUT, "kube-scheduler to lead", || {
                holder("kube-scheduler")
            })?;
        Ok(())
    }

    /// How long [`NodeEnvBuilder::start`] took (images, OVN, control plane, containerd,
    /// kubelet, until ready).
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    /// The API server and etcd.
    pub fn kube(&self) -> &KubeEnv {
        &self.kube
    }

    /// The OVN daemons started with [`NodeEnvBuilder::ovn`].
    pub fn ovn(&self) -> Option<&OvnEnv> {
        self.ovn.as_ref()
    }

    /// The node's containerd.
    pub fn containerd(&self) -> &Containerd {
        &self.containerd
    }

    /// The imported images.
    pub fn images(&self) -> &Images {
        &self.images
    }

    /// The Node's name.
    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    /// The Node's InternalIP (kubelet's `--node-ip`), hostNetwork pods' address.
    pub fn node_ip(&self) -> Ipv4Addr {
        self.node_ip
    }

    /// The address kubelet listens on (the one the node name resolves to).
    pub fn kubelet_address(&self) -> Ipv4Addr {
        self.kubelet_address
    }

    /// The CNI plugin directory containerd runs plugins from (holding a link to the
    /// reference `loopback` plugin, which containerd 1.6 runs for every sandbox).
    pub fn cni_bin_dir(&self) -> PathBuf {
        self.dir().join("cni/bin")
    }

    /// The CNI configuration directory containerd reads.
    pub fn cni_conf_dir(&self) -> PathBuf {
        self.dir().join("cni/net.d")
    }

    /// kubelet's root directory.
    pub fn kubelet_root_dir(&self) -> PathBuf {
        self.dir().join("kubelet")
    }

    /// The cgroup (in every v1 hierarchy) holding the node's pods, e.g. `/rovn-node-1-x`.
    pub fn cgroup_root(&self) -> &str {
        &self.cgroup_root
    }

    /// The environment's directory (logs, configuration, CNI directories, containerd, kubelet).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Host and port at which processes of this machine (hostNetwork pods included) reach the
    /// API server, e.g. for `KUBERNETES_SERVICE_HOST`/`KUBERNETES_SERVICE_PORT` (there is no
    /// kube-proxy, so the `kubernetes` Service's cluster IP leads nowhere).
    pub fn api_server_endpoint(&self) -> Result<(String, u16)> {
        let url = self.kube.server_url();
        let rest = url
            .strip_prefix("https://")
            .with_context(|| format!("unexpected API server URL {url}"))?;
        let (host, port) = rest
            .rsplit_once(':')
            .with_context(|| format!("no port in {url}"))?;
        Ok((host.to_owned(), port.trim_end_matches('/').parse()?))
    }

    /// Runs `kubectl args…` against the API server; stdout, or an error with stderr.
    pub fn kubectl<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Result<String> {
        self.kube.kubectl(args)
    }

    /// `kubectl apply -f -` of `manifest` (YAML or JSON).
    pub fn apply(&self, manifest: &str) -> Result<String> {
        use std::io::Write;
        let mut child = self
            .kube
            .kubectl_command()
            .args(["apply", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .context("running kubectl apply")?;
        child
            .stdin
            .take()
            .context("kubectl has no stdin")?
            .write_all(manifest.as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "kubectl apply failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Waits until pod `namespace/name` is Running with all containers ready; the error
    /// carries the pod's status and kubelet's log tail.
    pub fn wait_pod_running(&self, namespace: &str, name: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let template = "{.status.phase} {.status.containerStatuses[*].ready}";
        loop {
            let status = self.kubectl(&[
                "-n",
                namespace,
                "get",
                "pod",
                name,
                "-o",
                &format!("jsonpath={template}"),
            ]);
            if let Ok(status) = &status {
                let mut words = status.split_whitespace();
                if words.next() == Some("Running") && words.all(|w| w == "true") {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                let described = self
                    .kubectl(&["-n", namespace, "describe", "pod", name])
                    .unwrap_or_else(|e| format!("{e:#}"));
                bail!(
                    "pod {namespace}/{name} not Running after {timeout:?} (last: {status:?})\n\
                     {described}\n{}",
                    self.log_tails()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// The Running pods of `namespace` matching label `selector` (e.g. `app=web`): name,
    /// `status.podIP` and annotations.
    pub fn running_pods(&self, namespace: &str, selector: &str) -> Result<Vec<RunningPod>> {
        let out = self.kubectl(&[
            "-n",
            namespace,
            "get",
            "pods",
            "-l",
            selector,
            "--field-selector=status.phase=Running",
            "-o",
            "json",
        ])?;
        let list: serde_json::Value =
            serde_json::from_str(&out).context("kubectl get pods -o json")?;
        let items = list["items"].as_array().cloned().unwrap_or_default();
        Ok(items
            .iter()
            .map(|pod| RunningPod {
                name: pod["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                ip: pod["status"]["podIP"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                annotations: pod["metadata"]["annotations"]
                    .as_object()
                    .map(|a| {
                        a.iter()
                            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                            .collect()
                    })
                    .unwrap_or_default(),
            })
            .collect())
    }

    /// Whether one ping from `pod` (in `namespace`, through `kubectl exec`, busybox's `ping`)
    /// to `ip` is answered within a second.
    pub fn pod_pings(&self, namespace: &str, pod: &str, ip: &str) -> bool {
        self.kubectl(&[
            "-n", namespace, "exec", pod, "--", "ping", "-c", "1", "-W", "1", ip,
        ])
        .is_ok()
    }

    /// Waits until the Node reports Ready (after a CNI configuration was installed).
    pub fn wait_node_ready(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let template = r#"jsonpath={.status.conditions[?(@.type=="Ready")].status}"#;
        loop {
            let status = self.kubectl(&["get", "node", &self.node_name, "-o", template]);
            if status.as_deref().is_ok_and(|s| s.trim() == "True") {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "node {} not Ready after {timeout:?} (last: {status:?}); {}",
                    self.node_name,
                    self.log_tails()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Stops kubelet (its pods keep running in containerd).
    pub fn stop_kubelet(&mut self) {
        self.kubelet.stop();
    }

    /// Starts kubelet again after [`stop_kubelet`](Self::stop_kubelet) and waits for its
    /// `/healthz`.
    pub fn start_kubelet(&mut self) -> Result<()> {
        self.kubelet.start()?;
        self.wait_kubelet_ready()
    }

    /// Stops and starts kubelet.
    pub fn restart_kubelet(&mut self) -> Result<()> {
        self.stop_kubelet();
        self.start_kubelet()
    }

    /// Pids of the node's daemons (kubelet, scheduler, controller-manager, containerd), the
    /// API server and etcd, and the OVN daemons.
    pub fn pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = [
            self.kubelet.pid(),
            self.scheduler.pid(),
            self.controller_manager.pid(),
            self.containerd.pid(),
        ]
        .into_iter()
        .flatten()
        .collect();
        pids.extend(self.kube.pids());
        if let Some(ovn) = &self.ovn {
            pids.extend(ovn.pids());
        }
        pids
    }

    /// The log files of kubelet, containerd, the controller-manager and the scheduler.
    pub fn logs(&self) -> Vec<PathBuf> {
        vec![
            self.kubelet.log_path().to_owned(),
            self.containerd.log_path().to_owned(),
            self.controller_manager.log_path().to_owned(),
            self.scheduler.log_path().to_owned(),
        ]
    }

    /// The last lines of every log (for failure messages).
    pub fn log_tails(&self) -> String {
        let mut text: Vec<String> = self.logs().iter().map(|p| log_tail(p)).collect();
        text.push(self.kube.apiserver_log_tail());
        text.join("\n")
    }

    /// Stops everything in order and cleans up; idempotent (drop calls it).
    fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        // kubelet first, or it would restart what is being removed.
        self.kubelet.stop();
        self.scheduler.stop();
        self.controller_manager.stop();
        self.containerd.stop();
        // Whatever still runs in the node's cgroups (a container of a dead shim) goes too.
        let deadline = Instant::now() + CGROUP_DRAIN_TIMEOUT;
        loop {
            let pids = cleanup::pids_in_cgroup(&self.cgroup_root);
            if pids.iter().all(|&p| cleanup::process_gone(p)) || Instant::now() >= deadline {
                break;
            }
            cleanup::kill_all(&pids);
            std::thread::sleep(Duration::from_millis(50));
        }
        cleanup::remove_cgroup(&self.cgroup_root, CGROUP_DRAIN_TIMEOUT);
        // rovn's node-link gateways (their veths and the pod routes through them go too).
        cleanup::remove_netns(&cleanup::gateway_netns());
        cleanup::unmount_under(self.dir.path());
        remove_device_plugin_socket();
        self.sysctls.restore();
    }
}

impl NodeEnv {
    /// The `kube-dns` Service's ClusterIP kubelet gives pods as their nameserver
    /// ([`CLUSTER_DNS_IP`]), whether or not [`deploy_cluster_dns`](Self::deploy_cluster_dns)
    /// ran.
    pub fn cluster_dns_ip(&self) -> Ipv4Addr {
        CLUSTER_DNS_IP
    }

    /// kubelet's cluster domain, [`CLUSTER_DOMAIN`].
    pub fn cluster_domain(&self) -> &'static str {
        CLUSTER_DOMAIN
    }

    /// Deploys the cluster DNS (module documentation): imports the CoreDNS image into the
    /// node's containerd, applies the ServiceAccount, ClusterRole and binding, ConfigMap
    /// (Corefile, kubeconfig), the one-replica Deployment and the `kube-dns` Service with
    /// ClusterIP [`CLUSTER_DNS_IP`], then waits until the CoreDNS pod is Ready (it then
    /// answers on `<node ip>:53`). Fails at once, before applying anything, when port 53 of
    /// the node's address is in use or the cluster DNS is already deployed; when the pod
    /// does not become Ready, the error carries its description and log. Works before a
    /// CNI is installed (the pod tolerates the not-ready taints) and after rovn's install
    /// alike. Once per node.
    pub fn deploy_cluster_dns(&self) -> Result<ClusterDns> {
        let exists = self.kubectl(&[
            "-n",
            DNS_NAMESPACE,
            "get",
            "deployment",
            dns::COREDNS,
            "--ignore-not-found",
            "-o",
            "name",
        ])?;
        if !exists.trim().is_empty() {
            bail!(
                "the cluster DNS is already deployed on node {}",
                self.node_name
            );
        }
        dns::check_port_free(self.node_ip, dns::DNS_PORT)?;
        let (archive, image) = self.images.coredns_archive();
        if !self.containerd.images()?.iter().any(|i| i == image) {
            self.containerd.import(&archive)?;
        }
        let health_port = dns::free_port_on(self.node_ip)?;
        let ready_port = dns::free_port_on(self.node_ip)?;
        let manifest = dns::manifest(&dns::Settings {
            image: self.images.coredns(),
            node_ip: self.node_ip,
            api_server: self.kube.server_url(),
            health_port,
            ready_port,
        });
        self.apply(&manifest)
            .context("applying the cluster DNS manifests")?;
        let pod = crate::poll::wait_until(dns::READY_TIMEOUT, "the CoreDNS pod Ready", || {
            let out = self
                .kubectl(&[
                    "-n",
                    DNS_NAMESPACE,
                    "get",
                    "pods",
                    "-l",
                    dns::APP_LABEL,
                    "-o",
                    &format!("jsonpath={}", dns::READY_TEMPLATE),
                ])
                .map_err(|e| format!("{e:#}"))?;
            dns::ready_pod(&out)
        })
        .with_context(|| self.describe_cluster_dns())?;
        Ok(ClusterDns::new(
            pod,
            SocketAddr::from((self.node_ip, dns::DNS_PORT)),
            health_port,
            ready_port,
        ))
    }

    /// CoreDNS's pods, their description and log (for failure messages).
    fn describe_cluster_dns(&self) -> String {
        let run = |args: &[&str]| {
            self.kubectl(args)
                .unwrap_or_else(|e| format!("{e:#}"))
                .trim()
                .to_owned()
        };
        let ns = DNS_NAMESPACE;
        format!(
            "--- CoreDNS pods:\n{}\n--- described:\n{}\n--- log:\n{}\n{}",
            run(&["-n", ns, "get", "pods", "-l", dns::APP_LABEL, "-o", "wide"]),
            run(&["-n", ns, "describe", "pods", "-l", dns::APP_LABEL]),
            run(&["-n", ns, "logs", "-l", dns::APP_LABEL, "--tail=30"]),
            self.log_tails()
        )
    }
}

impl Drop for NodeEnv {
    fn drop(&mut self) {
        self.stop();
    }
}

/// kube-controller-manager with the API server's service-account key (it creates the
/// `default` ServiceAccounts, the `kube-root-ca.crt` ConfigMaps, runs the Deployment,
/// ReplicaSet, DaemonSet and node lifecycle controllers).
fn start_controller_manager(root: &Path, bins: &Path, kube: &KubeEnv) -> Result<Daemon> {
    let sa_key = kube_file(kube, "sa.key")?;
    let ca = kube_file(kube, "ca.crt")?;
    let spec = control_plane_spec("kube-controller-manager", root, bins, kube)?
        .arg(format!(
            "--service-account-private-key-file={}",
            sa_key.display()
        ))
        .arg(format!("--root-ca-file={}", ca.display()))
        .arg("--use-service-account-credentials=false");
    Daemon::spawn(spec, CONTROL_PLANE_STOP_GRACE)
}

/// kube-scheduler (default profile).
fn start_scheduler(root: &Path, bins: &Path, kube: &KubeEnv) -> Result<Daemon> {
    let spec = control_plane_spec("kube-scheduler", root, bins, kube)?;
    Daemon::spawn(spec, CONTROL_PLANE_STOP_GRACE)
}

/// What the controller-manager and the scheduler (`name`, the binary) share: the admin
/// kubeconfig for the API and for delegated authentication/authorization, leader election,
/// their secure port on loopback with self-made certificates in `<root>/<name>-certs`.
fn control_plane_spec(name: &str, root: &Path, bins: &Path, kube: &KubeEnv) -> Result<Spec> {
    let kubeconfig = kube.kubeconfig().display().to_string();
    Ok(Spec::new(name, &bins.join(name), root)
        .arg(format!("--kubeconfig={kubeconfig}"))
        .arg(format!("--authentication-kubeconfig={kubeconfig}"))
        .arg(format!("--authorization-kubeconfig={kubeconfig}"))
        .arg("--leader-elect=true")
        .arg("--bind-address=127.0.0.1")
        .arg(format!("--secure-port={}", free_port()?))
        .arg(format!(
            "--cert-dir={}",
            root.join(format!("{name}-certs")).display()
        ))
        .arg("--profiling=false")
        .arg("--v=1"))
}

/// kubelet's command line and configuration file.
#[allow(clippy::too_many_arguments)]
fn kubelet_spec(
    root: &Path,
    bins: &Path,
    kube: &KubeEnv,
    containerd: &Containerd,
    node_name: &str,
    node_ip: Ipv4Addr,
    address: Ipv4Addr,
    healthz_port: u16,
    cgroup_root: &str,
) -> Result<Spec> {
    let root_dir = root.join("kubelet");
    let pod_logs_dir = root.join("pod-logs");
    std::fs::create_dir_all(&root_dir)?;
    std::fs::create_dir_all(&pod_logs_dir)?;
    let config = root.join("kubelet-config.yaml");
    let endpoint = containerd.endpoint();
    std::fs::write(
        &config,
        kubelet::kubelet_config(&KubeletSettings {
            address,
            port: free_port()?,
            healthz_port,
            runtime_endpoint: &endpoint,
            cgroup_root,
            pod_logs_dir: &pod_logs_dir,
        }),
    )
    .with_context(|| format!("writing {}", config.display()))?;
    Ok(Spec::new("kubelet", &bins.join("kubelet"), root)
        .arg(format!("--config={}", config.display()))
        .arg(format!("--kubeconfig={}", kube.kubeconfig().display()))
        .arg(format!("--root-dir={}", root_dir.display()))
        // Its default is /var/lib/kubelet/pki whatever the root directory.
        .arg(format!("--cert-dir={}", root_dir.join("pki").display()))
        .arg(format!("--hostname-override={node_name}"))
        .arg(format!("--node-ip={node_ip}"))
        .arg("--v=2"))
}

/// Links the reference `loopback` CNI plugin into `cni_bin_dir`: containerd 1.6 runs it for
/// every pod sandbox (before the configured network; without it no sandbox starts).
fn link_loopback_plugin(cni_bin_dir: &Path) -> Result<()> {
    let plugin = LOOPBACK_PLUGINS
        .iter()
        .map(Path::new)
        .find(|p| p.is_file())
        .with_context(|| {
            format!(
                "no CNI loopback plugin at {LOOPBACK_PLUGINS:?}: containerd 1.6 needs it for every \
                 pod sandbox (Debian: apt-get install containernetworking-plugins)"
            )
        })?;
    std::os::unix::fs::symlink(plugin, cni_bin_dir.join("loopback")).with_context(|| {
        format!(
            "linking {} into {}",
            plugin.display(),
            cni_bin_dir.display()
        )
    })
}

/// A file of the KubeEnv's directory (its certificates), which must exist.
fn kube_file(kube: &KubeEnv, name: &str) -> Result<PathBuf> {
    let path = kube.dir().join(name);
    if !path.is_file() {
        bail!(
            "{} is missing: the node environment expects KubeEnv's {name} there",
            path.display()
        );
    }
    Ok(path)
}

/// Makes `/var/run/netns` a shared mount point, as `ip netns add` does, so that network
/// namespaces mounted there later propagate into containers that mount the directory with
/// HostToContainer propagation (containerd refuses such a mount of a private one).
fn ensure_shared_netns_dir() -> Result<()> {
    let dir = Path::new(NETNS_DIR);
    std::fs::create_dir_all(dir).with_context(|| format!("creating {NETNS_DIR}"))?;
    let canonical = dir.canonicalize()?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
    let is_mount_point = mountinfo.lines().any(|l| {
        l.split(' ')
            .nth(4)
            .is_some_and(|p| Path::new(p) == canonical)
    });
    if !is_mount_point {
        mount(
            Some(&canonical),
            &canonical,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .with_context(|| format!("bind-mounting {NETNS_DIR} onto itself"))?;
    }
    mount(
        None::<&str>,
        &canonical,
        None::<&str>,
        MsFlags::MS_SHARED | MsFlags::MS_REC,
        None::<&str>,
    )
    .with_context(|| format!("making {NETNS_DIR} a shared mount"))?;
    Ok(())
}

/// kubelet's device manager serves `/var/lib/kubelet/device-plugins/kubelet.sock` whatever its
/// root directory: once no kubelet runs on this machine, remove it and the directories
/// (only if empty).
fn remove_device_plugin_socket() {
    if !cleanup::pids_named("kubelet").is_empty() {
        return;
    }
    let dir = Path::new(DEVICE_PLUGINS_DIR);
    let _ = std::fs::remove_file(dir.join("kubelet.sock"));
    let _ = std::fs::remove_dir(dir);
    if let Some(parent) = dir.parent() {
        let _ = std::fs::remove_dir(parent);
    }
}

/// Cleans up after environments of processes that died without dropping theirs (their
/// daemons died with them, their containers may not have): kills what runs in their cgroup
/// root and their containerd's shims, unmounts, removes their cgroups and directory.
fn sweep_stale_environments() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(DIR_PREFIX)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let dir = entry.path();
        let socket = dir.join("containerd/containerd.sock").display().to_string();
        cleanup::kill_all(&cleanup::pids_with_arg(&socket));
        if let Ok(cgroup_root) = std::fs::read_to_string(dir.join("cgroup-root")) {
            let cgroup_root = cgroup_root.trim();
            if !cgroup_root.is_empty() && cgroup_root != "/" {
                cleanup::kill_all(&cleanup::pids_in_cgroup(cgroup_root));
                cleanup::remove_cgroup(cgroup_root, Duration::from_secs(5));
            }
        }
        cleanup::unmount_under(&dir);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
