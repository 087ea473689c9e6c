//! rovn installed on a [`NodeEnv`] the way operators install it: `kubectl apply -k` of an
//! overlay of the repository's `deploy/` that only points it at this machine (the
//! environment's OVN Northbound database and chassis, its CNI directories, the API server's
//! loopback address, one controller replica, the userspace datapath), then waits until the
//! controller and agent pods are Ready and the Node is Ready (the agent's init container
//! installed `rovn-cni` and its configuration).
//!
//! The overlay changes settings only: the manifests, RBAC and images are `deploy/`'s.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::node::NodeEnv;
use crate::poll::wait_until;
use crate::stack::workspace_root;

/// The namespace `deploy/` installs into.
pub const ROVN_NAMESPACE: &str = "rovn-system";
/// The controller Deployment and the agent DaemonSet.
const CONTROLLER: &str = "rovn-controller";
const AGENT: &str = "rovn-agent";
/// The label `deploy/` gives each component's pods.
const NAME_LABEL: &str = "app.kubernetes.io/name";

/// rovn installed on a node from `deploy/`; see the module documentation. Removing the
/// node's environment removes it (nothing of it lives outside the node's directory).
#[derive(Debug)]
pub struct RovnInstall {
    overlay: PathBuf,
    cni_socket: PathBuf,
    install_time: Duration,
}

impl RovnInstall {
    /// Writes the overlay into the node's directory, applies it and waits (up to `timeout`)
    /// until the controller and agent are Ready and the Node is Ready. The node needs an
    /// [`OvnEnv`](crate::ovn::OvnEnv) with a TCP Northbound listener and a chassis of its
    /// own network namespace named like the node
    /// (`OvnEnv::builder().nb_tcp().chassis(node_name)`).
    pub fn apply(node: &NodeEnv, timeout: Duration) -> Result<Self> {
        let started = Instant::now();
        let ovn = node
            .ovn()
            .context("rovn needs the node's OVN (NodeEnvBuilder::ovn)")?;
        let nb = ovn
            .nb_tcp_remote()
            .context("the node's OVN has no TCP Northbound listener (OvnEnvBuilder::nb_tcp)")?;
        if ovn.chassis_name() != Some(node.node_name()) {
            bail!(
                "the node's chassis is {:?}, not {:?}: rovn binds pod ports to the chassis \
                 named like the node",
                ovn.chassis_name(),
                node.node_name()
            );
        }
        let ovs_socket = ovn
            .ovs_remote()?
            .strip_prefix("unix:")
            .map(PathBuf::from)
            .context("the chassis' Open_vSwitch database has no unix socket")?;
        let netns = ovn
            .chassis_netns()?
            .context("the chassis runs in the initial network namespace; rovn's test node expects one of its own")?
            .to_owned();
        let run_dir = node.dir().join("rovn-run");
        std::fs::create_dir_all(&run_dir)?;
        let overlay = node.dir().join("rovn-deploy");
        std::fs::create_dir_all(&overlay)?;
        let (api_host, api_port) = node.api_server_endpoint()?;
        let deploy_dir = workspace_root().join("deploy").canonicalize()?;
        let settings = OverlaySettings {
            // kustomize takes only relative paths to other kustomizations.
            deploy_dir: relative_path(&overlay.canonicalize()?, &deploy_dir),
            nb,
            ovs_dir: ovs_socket
                .parent()
                .context("the OVS socket has no directory")?
                .to_owned(),
            ovs_socket_name: ovs_socket
                .file_name()
                .and_then(|n| n.to_str())
                .context("the OVS socket has no name")?
                .to_owned(),
            host_netns: format!("/run/netns/{netns}"),
            run_dir: run_dir.clone(),
            cni_bin_dir: node.cni_bin_dir(),
            cni_conf_dir: node.cni_conf_dir(),
            api_host,
            api_port,
        };
        std::fs::write(
            overlay.join("kustomization.yaml"),
            overlay_kustomization(&settings),
        )?;
        node.kubectl(&["apply", "-k", &overlay.display().to_string()])
            .context("kubectl apply -k of the deploy/ overlay")?;
        let deadline = started + timeout;
        for what in [
            format!("deployment/{CONTROLLER}"),
            format!("daemonset/{AGENT}"),
        ] {
            let left = deadline.saturating_duration_since(Instant::now());
            wait_until(left, &format!("{what} rolled out"), || {
                rollout_status(node, &what)
            })
            .map_err(|e| anyhow::anyhow!("{e:#}\n{}\n{}", describe(node), node.log_tails()))?;
        }
        node.wait_node_ready(deadline.saturating_duration_since(Instant::now()))?;
        Ok(Self {
            overlay,
            cni_socket: run_dir.join("cni.sock"),
            install_time: started.elapsed(),
        })
    }

    /// How long [`apply`](Self::apply) took until everything was Ready.
    pub fn install_time(&self) -> Duration {
        self.install_time
    }

    /// The overlay directory (`kubectl apply -k` it again, or `delete -k`).
    pub fn overlay_dir(&self) -> &Path {
        &self.overlay
    }

    /// The agent's CNI socket on the host (what the installed `10-rovn.conflist` names).
    pub fn cni_socket(&self) -> &Path {
        &self.cni_socket
    }

    /// The name of the running controller pod.
    pub fn controller_pod(&self, node: &NodeEnv) -> Result<String> {
        component_pod(node, CONTROLLER)
    }

    /// The name of the running agent pod of the node.
    pub fn agent_pod(&self, node: &NodeEnv) -> Result<String> {
        component_pod(node, AGENT)
    }

    /// rovn's pods, their conditions and recent logs (for failure messages).
    pub fn describe(&self, node: &NodeEnv) -> String {
        describe(node)
    }

    /// Waits until Neutron router `vpc` shows up as a Vpc with a status (imported); the
    /// error carries [`RovnInstall::describe`].
    pub fn wait_vpc_imported(&self, node: &NodeEnv, vpc: &str) -> Result<()> {
        wait_until(
            crate::poll::HANG_GUARD,
            &format!("router {vpc} imported as a Vpc"),
            || {
                node.kubectl(&["get", "vpc", vpc, "-o", "jsonpath={.status}"])
                    .ok()
                    .filter(|s| !s.trim().is_empty())
            },
        )
        .map(drop)
        .with_context(|| self.describe(node))
    }

    /// Namespace `name` and Subnet `name` (`cidr`, on Vpc `vpc`) bound to it, applied with
    /// kubectl; waits until the Subnet is Ready.
    pub fn apply_subnet(&self, node: &NodeEnv, name: &str, vpc: &str, cidr: &str) -> Result<()> {
        node.apply(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}}}\n---\n\
             apiVersion: kubeovn.io/v1\nkind: Subnet\nmetadata: {{name: {name}}}\n\
             spec: {{vpc: {vpc}, cidrBlock: {cidr}, namespaces: [{name}]}}\n"
        ))
        .context("namespace and Subnet")?;
        node.kubectl(&[
            "wait",
            "--for=condition=Ready",
            &format!("subnet/{name}"),
            "--timeout=120s",
        ])
        .map(drop)
        .with_context(|| self.describe(node))
    }
}

/// Whether `kubectl rollout status` says `what` of rovn (e.g. `daemonset/rovn-agent`) rolled
/// out, all its replicas Ready; `Err` with what it says instead.
pub fn rollout_status(node: &NodeEnv, what: &str) -> Result<(), String> {
    let status = node.kubectl(&[
        "-n",
        ROVN_NAMESPACE,
        "rollout",
        "status",
        what,
        "--watch=false",
    ]);
    match status {
        Ok(out) if out.contains("successfully rolled out") => Ok(()),
        Ok(out) => Err(out.trim().to_owned()),
        Err(e) => Err(format!("{e:#}")),
    }
}

/// rovn's pods, their conditions and recent logs.
fn describe(node: &NodeEnv) -> String {
    let mut text = node
        .kubectl(&["-n", ROVN_NAMESPACE, "get", "pods", "-o", "wide"])
        .unwrap_or_else(|e| format!("{e:#}"));
    for component in [CONTROLLER, AGENT] {
        let selector = format!("{NAME_LABEL}={component}");
        let logs = node
            .kubectl(&[
                "-n",
                ROVN_NAMESPACE,
                "logs",
                "-l",
                &selector,
                "--all-containers",
                "--tail=20",
            ])
            .unwrap_or_else(|e| format!("{e:#}"));
        text.push_str(&format!("\n--- {component} logs:\n{logs}"));
    }
    text
}

/// The running pod of one of rovn's components (the first, by name).
fn component_pod(node: &NodeEnv, component: &str) -> Result<String> {
    let names = node.kubectl(&[
        "-n",
        ROVN_NAMESPACE,
        "get",
        "pods",
        "-l",
        &format!("{NAME_LABEL}={component}"),
        "--field-selector=status.phase=Running",
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ])?;
    names
        .split_whitespace()
        .next()
        .map(str::to_owned)
        .with_context(|| format!("no running {component} pod"))
}

/// `to` relative to the directory `from` (both absolute, canonical).
fn relative_path(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<_> = from.components().collect();
    let to: Vec<_> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut path: PathBuf = std::iter::repeat_n("..", from.len() - common).collect();
    path.extend(to[common..].iter());
    path
}

/// What the overlay sets.
struct OverlaySettings {
    deploy_dir: PathBuf,
    nb: String,
    ovs_dir: PathBuf,
    ovs_socket_name: String,
    host_netns: String,
    run_dir: PathBuf,
    cni_bin_dir: PathBuf,
    cni_conf_dir: PathBuf,
    api_host: String,
    api_port: u16,
}

/// The overlay's `kustomization.yaml`: `deploy/` with its settings patched.
fn overlay_kustomization(s: &OverlaySettings) -> String {
    let socket = s.run_dir.join("cni.sock");
    format!(
        r#"# rovn from deploy/, pointed at this test node (written by testenv::install).
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - {deploy}
patches:
  - patch: |-
      apiVersion: v1
      kind: ConfigMap
      metadata:
        name: rovn-config
        namespace: {ROVN_NAMESPACE}
      data:
        ovn-nb: "{nb}"
        ovs-db: "unix:/run/openvswitch/{ovs_socket}"
        datapath-type: "netdev"
        host-netns: "{host_netns}"
        kubernetes-service-host: "{api_host}"
        kubernetes-service-port: "{api_port}"
  - patch: |-
      apiVersion: v1
      kind: ConfigMap
      metadata:
        name: rovn-cni
        namespace: {ROVN_NAMESPACE}
      data:
        10-rovn.conflist: |
          {{
            "cniVersion": "1.0.0",
            "cniVersions": ["1.0.0", "1.1.0"],
            "name": "rovn",
            "plugins": [{{"type": "rovn-cni", "socket": "{socket}"}}]
          }}
  - patch: |-
      apiVersion: apps/v1
      kind: Deployment
      metadata:
        name: {CONTROLLER}
        namespace: {ROVN_NAMESPACE}
      spec:
        replicas: 1
  - patch: |-
      apiVersion: apps/v1
      kind: DaemonSet
      metadata:
        name: {AGENT}
        namespace: {ROVN_NAMESPACE}
      spec:
        template:
          spec:
            volumes:
              - name: cni-bin
                hostPath: {{path: "{cni_bin}", type: Directory}}
              - name: cni-conf
                hostPath: {{path: "{cni_conf}", type: Directory}}
              - name: ovs-run
                hostPath: {{path: "{ovs_dir}", type: Directory}}
              - name: rovn-run
                hostPath: {{path: "{run_dir}", type: Directory}}
"#,
        deploy = s.deploy_dir.display(),
        nb = s.nb,
        ovs_socket = s.ovs_socket_name,
        host_netns = s.host_netns,
        api_host = s.api_host,
        api_port = s.api_port,
        socket = socket.display(),
        cni_bin = s.cni_bin_dir.display(),
        cni_conf = s.cni_conf_dir.display(),
        ovs_dir = s.ovs_dir.display(),
        run_dir = s.run_dir.display(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_climb_to_the_common_ancestor() {
        assert_eq!(
            relative_path(
                Path::new("/tmp/node/rovn-deploy"),
                Path::new("/work/main/deploy")
            ),
            PathBuf::from("../../../work/main/deploy")
        );
        assert_eq!(
            relative_path(Path::new("/work/main/x"), Path::new("/work/main/deploy")),
            PathBuf::from("../deploy")
        );
    }
}
