//! The lab: a real Kubernetes node on this machine (kubelet, containerd, the control plane,
//! OVN), rovn installed on it from `deploy/`, the seed scenario walked through as a user
//! (`kubectl`) and Neutron would do it, and the teardown.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};
use api::annotations::IP_ADDRESS;
use tempfile::TempDir;
use testenv::install::{ROVN_NAMESPACE, RovnInstall};
use testenv::kube::k8s_bins;
use testenv::neutron::NeutronRows;
use testenv::node::{NodeEnv, RunningPod};
use testenv::ovn::OvnEnv;
use testenv::poll::HANG_GUARD;
use testenv::stack::{Tenant, workspace_bin};

use crate::checks::Report;

/// Tenant A's network and VM address.
const NET1: &str = "10.0.1.0/24";
const VM_IP: &str = "10.0.1.50";
/// The Kubernetes subnet attached to tenant A's router, its name and namespace.
const NET2: &str = "10.0.2.0/24";
const SUBNET: &str = "net2";
/// The workload Deployment in net2 and its replicas.
const DEPLOYMENT: &str = "web";
const REPLICAS: usize = 2;
/// Pings that must fail: this many attempts of one second each.
const NEGATIVE_ATTEMPTS: u32 = 2;
/// How long the node and rovn get to come up (a cold start on two loaded cores).
const INSTALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// The lab's own files: a temporary directory (removed at the end unless kept), or the
/// directory given with `--dir`.
struct LabDir {
    path: PathBuf,
    temp: Option<TempDir>,
}

impl LabDir {
    fn new(dir: Option<PathBuf>) -> Result<Self> {
        match dir {
            Some(path) => {
                std::fs::create_dir_all(&path)
                    .with_context(|| format!("creating {}", path.display()))?;
                Ok(Self { path, temp: None })
            }
            None => {
                let temp = tempfile::Builder::new()
                    .prefix("rovn-lab-")
                    .tempdir()
                    .context("creating the lab's directory")?;
                Ok(Self {
                    path: temp.path().to_owned(),
                    temp: Some(temp),
                })
            }
        }
    }
}

/// The running lab. Fields drop in order: the VM before the node (whose OVN it is
/// plugged into).
pub struct Lab {
    /// The Deployment's pods, as listed once they all ran.
    pods: Vec<RunningPod>,
    rovn: RovnInstall,
    /// Neutron's rows as the lab (playing Neutron) last left them.
    neutron: NeutronRows,
    tenant: Tenant,
    node: NodeEnv,
    dir: LabDir,
}

/// Prints a step of the lab.
fn step(what: &str) {
    println!("\n==> {what}");
}

/// Runs blocking set-up or teardown work off the async scheduler's hands.
fn blocking<T>(work: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(work)
}

impl Lab {
    /// Starts everything: the node (OVN with the node's chassis, etcd, kube-apiserver,
    /// kube-controller-manager, kube-scheduler, containerd, kubelet), tenant A written as
    /// Neutron writes it, rovn installed with `kubectl apply -k` of `deploy/`; then waits
    /// for the router's Vpc, applies Subnet net2 and a Deployment in namespace net2, and
    /// waits until its pods run.
    pub async fn start(dir: Option<PathBuf>) -> Result<Self> {
        let dir = LabDir::new(dir)?;
        println!("rovn lab: files in {}", dir.path.display());
        blocking(|| Self::start_blocking(dir))
    }

    fn start_blocking(dir: LabDir) -> Result<Self> {
        let node_name = NodeEnv::default_node_name();
        step(&format!(
            "Node {node_name}: OVN (NB, SB, ovn-northd, chassis {node_name}: ovs-vswitchd with \
             the userspace datapath, ovn-controller), etcd, kube-apiserver, \
             kube-controller-manager, kube-scheduler, containerd, kubelet"
        ));
        let node = NodeEnv::builder()
            .ovn(OvnEnv::builder().nb_tcp().chassis(&node_name))
            .start()
            .context("starting the node")?;
        println!(
            "  up in {:.1} s; images {}, {}, {} imported into containerd",
            node.startup_time().as_secs_f64(),
            node.images().pause(),
            node.images().busybox(),
            node.images().rovn()
        );
        let ovn = node.ovn().context("the node has no OVN")?;

        step(&format!(
            "Neutron (Zed): router-a, network net-a {NET1}, VM vm-a {VM_IP} in a security group"
        ));
        let tenant =
            Tenant::create(ovn, "a", NET1, VM_IP).context("creating tenant A as Neutron would")?;
        println!(
            "  router {} ({}), VM port {} on {}, VM netns {}",
            tenant.router.lr_name(),
            tenant.router.display_name,
            tenant.vm_port.port_id,
            tenant.network.ls_name(),
            tenant.vm.netns().name()
        );
        let neutron = NeutronRows::snapshot(ovn)?;

        step("Install rovn: kubectl apply -k deploy/ (an overlay pointing it at this node)");
        let rovn = RovnInstall::apply(&node, INSTALL_TIMEOUT)?;
        println!(
            "  $ kubectl apply -k {}   (resources: deploy/)",
            rovn.overlay_dir().display()
        );
        println!(
            "  controller and agent Ready, node Ready in {:.1} s",
            rovn.install_time().as_secs_f64()
        );
        kubectl_shown(&node, &["-n", ROVN_NAMESPACE, "get", "pods", "-o", "wide"])?;

        let vpc = tenant.router.lr_name();
        step(&format!("The router appears as Vpc {vpc}"));
        rovn.wait_vpc_imported(&node, &vpc)?;
        kubectl_shown(&node, &["get", "vpc", &vpc])?;

        step(&format!(
            "User: Subnet {SUBNET} ({NET2}) on Vpc {vpc} for namespace {SUBNET}"
        ));
        let subnet_yaml = dir.path.join("subnet-net2.yaml");
        std::fs::write(&subnet_yaml, subnet_manifest(&vpc))?;
        print_indented(&subnet_manifest(&vpc));
        kubectl_shown(&node, &["create", "namespace", SUBNET])?;
        kubectl_shown(&node, &["apply", "-f", &subnet_yaml.display().to_string()])?;
        let timeout = format!("--timeout={}s", HANG_GUARD.as_secs());
        kubectl_shown(
            &node,
            &["wait", "--for=condition=Ready", "subnet/net2", &timeout],
        )?;

        step(&format!(
            "User: Deployment {SUBNET}/{DEPLOYMENT}, {REPLICAS} pods of {}; kubelet runs them \
             through containerd, which calls rovn-cni",
            node.images().busybox()
        ));
        let deployment_yaml = dir.path.join("deployment-web.yaml");
        let manifest = deployment_manifest(node.images().busybox());
        std::fs::write(&deployment_yaml, &manifest)?;
        print_indented(&manifest);
        kubectl_shown(
            &node,
            &["apply", "-f", &deployment_yaml.display().to_string()],
        )?;
        let rollout = node.kubectl(&[
            "-n",
            SUBNET,
            "rollout",
            "status",
            &format!("deployment/{DEPLOYMENT}"),
            &timeout,
        ]);
        if let Err(e) = rollout {
            bail!("{e:#}\n{}\n{}", rovn.describe(&node), node.log_tails());
        }
        kubectl_shown(&node, &["-n", SUBNET, "get", "pods", "-o", "wide"])?;
        let pods = node.running_pods(SUBNET, &format!("app={DEPLOYMENT}"))?;
        if pods.is_empty() {
            bail!("no Running pod of deployment/{DEPLOYMENT}");
        }
        Ok(Self {
            pods,
            rovn,
            neutron,
            tenant,
            node,
            dir,
        })
    }

    /// Shows what a user would look at and checks the seed scenario with real packets:
    /// the pods run on their rovn addresses, reach each other, the VM reaches them, a new
    /// connection to the VM is dropped by `neutron_pg_drop` until a security-group rule
    /// admits the subnet, then works; rovn changed no row of Neutron's.
    pub async fn walk_through(&self) -> Result<Report> {
        blocking(|| self.walk_through_blocking())
    }

    fn walk_through_blocking(&self) -> Result<Report> {
        let mut report = Report::default();
        let node = &self.node;
        let ovn = node.ovn().context("the node has no OVN")?;
        step("What a user sees");
        kubectl_shown(node, &["get", "vpc,subnet,ip"])?;
        let first = &self.pods[0];
        println!(
            "  $ kubectl -n {SUBNET} get pod {} (annotations)",
            first.name
        );
        print_indented(&node.kubectl(&[
            "-n",
            SUBNET,
            "get",
            "pod",
            &first.name,
            "-o",
            r#"go-template={{range $k, $v := .metadata.annotations}}{{$k}}: {{$v}}{{"\n"}}{{end}}"#,
        ])?);
        let annotated: Vec<String> = self
            .pods
            .iter()
            .map(|p| {
                let rovn = p.annotations.get(IP_ADDRESS).map_or("-", String::as_str);
                format!("{}={rovn}", p.ip)
            })
            .collect();
        report.check(
            &format!(
                "{REPLICAS} pods Running, each podIP its rovn address in {NET2}: {}",
                annotated.join(" ")
            ),
            self.pods.len() == REPLICAS
                && self.pods.iter().all(|p| {
                    p.annotations.get(IP_ADDRESS) == Some(&p.ip) && p.ip.starts_with("10.0.2.")
                }),
        );

        let vm_port = self.tenant.vm_port.port_id.clone();
        let diagnosis = self.diagnose()?;
        report.check(
            &format!("rovnctl diagnose: VM port {vm_port} drops new connections from {NET2}"),
            diagnosis.contains(&format!("VM port {vm_port}")) && diagnosis.contains("DROPPED"),
        );

        step("Packets");
        let vm = self.tenant.vm.netns();
        let vm_to_pods = self.pods.iter().all(|p| vm.ping(&p.ip));
        report.check(
            &format!("VM {VM_IP} -> every pod: ping answered (ip netns exec)"),
            vm_to_pods,
        );
        let second = &self.pods[self.pods.len() - 1];
        report.check(
            &format!(
                "pod {} -> pod {} ({}): ping answered (kubectl exec)",
                first.name, second.name, second.ip
            ),
            pod_reaches(node, &first.name, &second.ip),
        );
        report.check(
            &format!(
                "pod {} -> VM {VM_IP} without a rule: dropped by neutron_pg_drop",
                first.name
            ),
            pod_blocked(node, &first.name, VM_IP),
        );
        report.check_result(
            "no row Neutron owns changed (rovn installed, pods running)",
            self.neutron.check(ovn),
        );

        step(&format!(
            "Neutron: openstack security group rule create --ingress --ethertype IPv4 --remote-ip {NET2} {}",
            self.tenant.sg.id
        ));
        self.tenant.sg.add_rule_allowing(ovn, NET2)?;
        self.neutron.retake(ovn)?;
        report.check(
            &format!(
                "pod {} -> VM {VM_IP} with the rule: ping answered (kubectl exec)",
                first.name
            ),
            pod_reaches(node, &first.name, VM_IP),
        );
        let diagnosis = self.diagnose()?;
        report.check(
            &format!("rovnctl diagnose: VM port {vm_port} reachable, allowed by the rule"),
            diagnosis.contains("reachable: allowed by") && !diagnosis.contains("DROPPED"),
        );
        report.check_result(
            "no row Neutron owns changed (after Neutron's rule)",
            self.neutron.check(ovn),
        );
        report.print_summary();
        Ok(report)
    }

    /// Runs `rovnctl diagnose --subnet net2`, prints and returns its output.
    fn diagnose(&self) -> Result<String> {
        let rovnctl = workspace_bin("rovnctl", "rovnctl")?;
        let kubeconfig = self.node.kube().kubeconfig().display().to_string();
        let nb = self.node.ovn().context("the node has no OVN")?.nb_remote();
        println!("  $ rovnctl diagnose --subnet {SUBNET} --kubeconfig {kubeconfig} --ovn-nb {nb}");
        let out = Command::new(&rovnctl)
            .args(["diagnose", "--subnet", SUBNET, "--kubeconfig", &kubeconfig])
            .args(["--ovn-nb", &nb])
            .output()
            .context("running rovnctl diagnose")?;
        if !out.status.success() {
            bail!(
                "rovnctl diagnose failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        print_indented(&text);
        Ok(text)
    }

    /// Prints how to look at the running lab by hand.
    pub fn print_how_to_poke(&self) {
        let kubectl = k8s_bins()
            .map(|bins| bins.join("kubectl").display().to_string())
            .unwrap_or_else(|_| "kubectl".to_owned());
        let Some(ovn) = self.node.ovn() else {
            return;
        };
        let first = &self.pods[0];
        println!(
            "\nThe lab is up. Poke at it as root from another shell:\n\
             \n  export KUBECONFIG={kubeconfig}\
             \n  {kubectl} get nodes,vpc,subnet,ip\
             \n  {kubectl} -n {SUBNET} get pods -o wide\
             \n  {kubectl} -n {SUBNET} exec {pod} -- ping -c 3 {VM_IP}      # from a pod\
             \n  ip netns exec {vm_ns} ping {pod_ip}        # from the VM\
             \n  {kubectl} -n {SUBNET} scale deployment/{DEPLOYMENT} --replicas=4\
             \n  {kubectl} -n {ROVN_NAMESPACE} logs deployment/rovn-controller\
             \n  {kubectl} -n {ROVN_NAMESPACE} logs daemonset/rovn-agent\
             \n  ovn-nbctl --db={nb} show\
             \n  ovn-sbctl --db={sb} show\
             \n  ovs-vsctl --db={ovs} show\
             \n  {rovnctl} diagnose --subnet {SUBNET} --kubeconfig {kubeconfig} --ovn-nb {nb}\
             \n\nFiles:\
             \n  rovn's install overlay  {overlay}\
             \n  node (kubelet, containerd, control plane logs)  {node_dir}\
             \n  OVN daemons  {ovn_dir}\
             \n  lab manifests  {lab_dir}\
             \n\nPress Ctrl-C to tear everything down.",
            kubeconfig = self.node.kube().kubeconfig().display(),
            pod = first.name,
            pod_ip = first.ip,
            vm_ns = self.tenant.vm.netns().name(),
            nb = ovn.nb_remote(),
            sb = ovn.sb_remote().unwrap_or_default(),
            ovs = ovn.ovs_remote().unwrap_or_default(),
            rovnctl = workspace_bin("rovnctl", "rovnctl")
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| "rovnctl".to_owned()),
            overlay = self.rovn.overlay_dir().display(),
            node_dir = self.node.dir().display(),
            ovn_dir = ovn.dir().display(),
            lab_dir = self.dir.path.display(),
        );
    }

    /// Fails when rovn's controller or agent pod no longer runs.
    pub fn check_running(&self) -> Result<()> {
        blocking(|| {
            self.rovn.controller_pod(&self.node)?;
            self.rovn.agent_pod(&self.node).map(drop)
        })
    }

    /// Keeps the lab's directory (manifests) after the teardown.
    pub fn keep_files(&mut self) {
        if let Some(temp) = self.dir.temp.take() {
            println!("rovn-lab: keeping {}", temp.keep().display());
        }
    }

    /// Stops everything that was started, in order (the node removes its pods through
    /// containerd).
    pub async fn teardown(self) {
        blocking(|| drop(self));
        println!("rovn-lab: stopped.");
    }
}

/// `pod` reaches `ip` (retried a few times: the first ARP exchange can take a moment).
fn pod_reaches(node: &NodeEnv, pod: &str, ip: &str) -> bool {
    (0..5).any(|_| node.pod_pings(SUBNET, pod, ip))
}

/// `pod` does not reach `ip` in [`NEGATIVE_ATTEMPTS`] tries.
fn pod_blocked(node: &NodeEnv, pod: &str, ip: &str) -> bool {
    (0..NEGATIVE_ATTEMPTS).all(|_| !node.pod_pings(SUBNET, pod, ip))
}

/// Subnet net2 on Vpc `vpc`, bound to namespace net2.
fn subnet_manifest(vpc: &str) -> String {
    format!(
        "apiVersion: kubeovn.io/v1\nkind: Subnet\nmetadata:\n  name: {SUBNET}\nspec:\n  \
         vpc: {vpc}\n  cidrBlock: {NET2}\n  namespaces: [{SUBNET}]\n"
    )
}

/// The workload Deployment in net2 (the image is imported into containerd, never pulled).
fn deployment_manifest(image: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {DEPLOYMENT}\n  namespace: \
         {SUBNET}\nspec:\n  replicas: {REPLICAS}\n  selector:\n    matchLabels: {{app: \
         {DEPLOYMENT}}}\n  template:\n    metadata:\n      labels: {{app: {DEPLOYMENT}}}\n    \
         spec:\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: web\n        \
         image: {image}\n        imagePullPolicy: Never\n        command: [httpd, -f, -p, \"8080\"]\n"
    )
}

/// Runs `kubectl args…`, showing the command and its output.
fn kubectl_shown(node: &NodeEnv, args: &[&str]) -> Result<()> {
    println!("  $ kubectl {}", args.join(" "));
    print_indented(&node.kubectl(args)?);
    Ok(())
}

/// Prints `text` indented under the current step.
fn print_indented(text: &str) {
    for line in text.lines() {
        println!("    {line}");
    }
}
