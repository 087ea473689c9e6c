//! The lab: the whole stack started on this machine, the seed scenario walked through as a
//! user (`kubectl`), kubelet (`rovn-cni`) and Neutron would do it, and the teardown.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;
use tempfile::TempDir;
use testenv::kube::{KubeEnv, k8s_bins};
use testenv::netns::Netns;
use testenv::neutron::NeutronRows;
use testenv::ovn::OvnEnv;
use testenv::poll::{HANG_GUARD, wait_until_async};
use testenv::stack::{
    AgentProcess, Attachment, Cluster, ControllerOptions, ControllerProcess, Tenant, workspace_bin,
};

use crate::checks::Report;

/// The chassis (and Kubernetes node) name.
const NODE: &str = "lab-node";
/// Tenant A's network and VM address.
const NET1: &str = "10.0.1.0/24";
const VM_IP: &str = "10.0.1.50";
/// The Kubernetes subnet attached to tenant A's router, its name and namespace.
const NET2: &str = "10.0.2.0/24";
const SUBNET: &str = "net2";
/// The pod the lab plugs.
const POD: &str = "web";
/// Pings that must fail: this many attempts of one second each.
const NEGATIVE_ATTEMPTS: u32 = 2;

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

/// The pod `net2/web` as the lab (playing kubelet) plugged it with `rovn-cni`.
struct LabPod {
    attachment: Attachment,
    /// The ADD result.
    result: Value,
    /// Its IPv4 address.
    ip: String,
    netns: Netns,
}

/// The running lab. Fields drop in order: the pod and rovn's processes before the
/// daemons they use.
pub struct Lab {
    pod: LabPod,
    agent: AgentProcess,
    controller: ControllerProcess,
    /// Neutron's rows as the lab (playing Neutron) last left them.
    neutron: NeutronRows,
    tenant: Tenant,
    kube: KubeEnv,
    ovn: OvnEnv,
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
    /// Starts everything and plugs the pod: OVN (NB, SB, northd, a chassis), etcd and
    /// kube-apiserver with the CRDs, tenant A written as Neutron writes it,
    /// rovn-controller, rovn-agent; then waits for the router's Vpc, applies Subnet net2
    /// with kubectl, creates pod net2/web and plugs it through rovn-cni.
    pub async fn start(dir: Option<PathBuf>) -> Result<Self> {
        let dir = LabDir::new(dir)?;
        println!("rovn lab: files in {}", dir.path.display());

        step(&format!(
            "OVN: NB, SB, ovn-northd and chassis {NODE} (ovs-vswitchd, userspace datapath; ovn-controller)"
        ));
        let ovn = blocking(|| OvnEnv::builder().chassis(NODE).start()).context("starting OVN")?;
        step("Kubernetes: etcd and kube-apiserver, the kubeovn.io/v1 CRDs");
        let kube = blocking(KubeEnv::start).context("starting the API server")?;
        let cluster = Cluster::connect(&kube).await?;
        cluster.install_crds().await?;

        step(&format!(
            "Neutron (Zed): router-a, network net-a {NET1}, VM vm-a {VM_IP} in a security group"
        ));
        let tenant = blocking(|| Tenant::create(&ovn, "a", NET1, VM_IP))
            .context("creating tenant A as Neutron would")?;
        println!(
            "  router {} ({}), VM port {} on {}, VM netns {}",
            tenant.router.lr_name(),
            tenant.router.display_name,
            tenant.vm_port.port_id,
            tenant.network.ls_name(),
            tenant.vm.netns().name()
        );
        let neutron = blocking(|| NeutronRows::snapshot(&ovn))?;

        step("rovn-controller and rovn-agent");
        let options = ControllerOptions {
            log_dir: Some(dir.path.clone()),
            ..ControllerOptions::default()
        };
        let mut controller =
            ControllerProcess::start_with(&ovn.nb_remote(), kube.kubeconfig(), "lab", &options)?;
        let agent_args = AgentProcess::chassis_args(kube.kubeconfig(), NODE, &ovn)?;
        let agent = blocking(|| AgentProcess::start(&dir.path, &agent_args))?;
        println!(
            "  rovn-controller log: {}\n  rovn-agent log:      {}",
            controller.process.log_path().display(),
            agent.process.log_path().display()
        );

        let vpc = tenant.router.lr_name();
        step(&format!("The router appears as Vpc {vpc}"));
        wait_vpc(&cluster, &vpc, &mut controller).await?;
        println!("  $ kubectl get vpc {vpc}");
        print_indented(&kube.kubectl(&["get", "vpc", &vpc])?);

        step(&format!(
            "User: Subnet {SUBNET} ({NET2}) on Vpc {vpc} for namespace {SUBNET}"
        ));
        let subnet_yaml = dir.path.join("subnet-net2.yaml");
        std::fs::write(&subnet_yaml, subnet_manifest(&vpc))?;
        print_indented(&subnet_manifest(&vpc));
        kubectl_shown(&kube, &["create", "namespace", SUBNET])?;
        kubectl_shown(&kube, &["apply", "-f", &subnet_yaml.display().to_string()])?;
        let timeout = format!("--timeout={}s", HANG_GUARD.as_secs());
        kubectl_shown(
            &kube,
            &["wait", "--for=condition=Ready", "subnet/net2", &timeout],
        )?;

        step(&format!(
            "User: pod {SUBNET}/{POD}; the lab plays kubelet and plugs it with rovn-cni"
        ));
        let pod_yaml = dir.path.join("pod-web.yaml");
        std::fs::write(&pod_yaml, pod_manifest())?;
        kubectl_shown(&kube, &["create", "-f", &pod_yaml.display().to_string()])?;
        let netns = blocking(Netns::new)?;
        let attachment = Attachment {
            socket: agent.socket.clone(),
            container_id: format!("lab-{POD}"),
            netns: format!("/var/run/netns/{}", netns.name()),
            namespace: SUBNET.to_owned(),
            pod: POD.to_owned(),
        };
        let result = blocking(|| attachment.add()).with_context(|| {
            format!(
                "rovn-cni ADD; rovn-agent log tail:\n{}",
                agent.process.log_tail()
            )
        })?;
        let ip = result["ips"][0]["address"]
            .as_str()
            .and_then(|a| a.split('/').next())
            .with_context(|| format!("no address in the ADD result {result}"))?
            .to_owned();
        println!(
            "  rovn-cni ADD: eth0 {} via {} in netns {}, host end {}",
            result["ips"][0]["address"].as_str().unwrap_or_default(),
            result["ips"][0]["gateway"].as_str().unwrap_or_default(),
            netns.name(),
            result["interfaces"][0]["name"].as_str().unwrap_or_default(),
        );
        Ok(Self {
            pod: LabPod {
                attachment,
                result,
                ip,
                netns,
            },
            agent,
            controller,
            neutron,
            tenant,
            kube,
            ovn,
            dir,
        })
    }

    /// Shows what a user would look at and checks the seed scenario with real packets:
    /// VM → pod works, pod → VM is dropped by `neutron_pg_drop` until a security-group
    /// rule admits the subnet, then works.
    pub async fn walk_through(&self) -> Result<Report> {
        let mut report = Report::default();
        step("What a user sees");
        println!("  $ kubectl get vpc,subnet,ip");
        print_indented(&self.kube.kubectl(&["get", "vpc,subnet,ip"])?);
        println!("  $ kubectl -n {SUBNET} get pod {POD} (annotations)");
        print_indented(&self.kube.kubectl(&[
            "-n",
            SUBNET,
            "get",
            "pod",
            POD,
            "-o",
            r#"go-template={{range $k, $v := .metadata.annotations}}{{$k}}: {{$v}}{{"\n"}}{{end}}"#,
        ])?);

        let vm_port = self.tenant.vm_port.port_id.clone();
        let diagnosis = self.diagnose()?;
        report.check(
            &format!("rovnctl diagnose: VM port {vm_port} drops new connections from {NET2}"),
            diagnosis.contains(&format!("VM port {vm_port}")) && diagnosis.contains("DROPPED"),
        );

        step("Packets");
        let (pod, vm) = (&self.pod, self.tenant.vm.netns());
        let vm_to_pod = blocking(|| vm.ping(&pod.ip));
        report.check(
            &format!("VM {VM_IP} -> pod {}: ping answered", pod.ip),
            vm_to_pod,
        );
        let pod_to_vm = blocking(|| pod.netns.ping_with_attempts(VM_IP, NEGATIVE_ATTEMPTS));
        report.check(
            &format!(
                "pod {} -> VM {VM_IP} without a rule: dropped by neutron_pg_drop",
                pod.ip
            ),
            !pod_to_vm,
        );

        report.check_result(
            "no row Neutron owns changed (rovn's set-up, the pod plugged)",
            blocking(|| self.neutron.check(&self.ovn)),
        );

        step(&format!(
            "Neutron: openstack security group rule create --ingress --ethertype IPv4 --remote-ip {NET2} {}",
            self.tenant.sg.id
        ));
        blocking(|| self.tenant.sg.add_rule_allowing(&self.ovn, NET2))?;
        blocking(|| self.neutron.retake(&self.ovn))?;
        let pod_to_vm = blocking(|| pod.netns.ping(VM_IP));
        report.check(
            &format!("pod {} -> VM {VM_IP} with the rule: ping answered", pod.ip),
            pod_to_vm,
        );
        let diagnosis = self.diagnose()?;
        report.check(
            &format!("rovnctl diagnose: VM port {vm_port} reachable, allowed by the rule"),
            diagnosis.contains("reachable: allowed by") && !diagnosis.contains("DROPPED"),
        );
        report.check_result(
            "no row Neutron owns changed (after Neutron's rule)",
            blocking(|| self.neutron.check(&self.ovn)),
        );
        report.print_summary();
        Ok(report)
    }

    /// Runs `rovnctl diagnose --subnet net2`, prints and returns its output.
    fn diagnose(&self) -> Result<String> {
        let rovnctl = workspace_bin("rovnctl", "rovnctl")?;
        let kubeconfig = self.kube.kubeconfig().display().to_string();
        let nb = self.ovn.nb_remote();
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
        let chassis = self.ovn.dir().join("chassis");
        println!(
            "\nThe lab is up. Poke at it as root from another shell:\n\
             \n  export KUBECONFIG={kubeconfig}\
             \n  {kubectl} get vpc,subnet,ip\
             \n  {kubectl} -n {SUBNET} get pod {POD} -o yaml\
             \n  ovn-nbctl --db={nb} show\
             \n  ovn-sbctl --db={sb} show\
             \n  ovs-vsctl --db={ovs} show\
             \n  ip netns exec {pod_ns} ping {VM_IP}        # from the pod\
             \n  ip netns exec {vm_ns} ping {pod_ip}        # from the VM\
             \n  {rovnctl} diagnose --subnet {SUBNET} --kubeconfig {kubeconfig} --ovn-nb {nb}\
             \n\nLogs:\
             \n  rovn-controller  {controller_log}\
             \n  rovn-agent       {agent_log}\
             \n  OVN daemons      {ovn_dir} (chassis: {chassis})\
             \n  etcd, apiserver  {kube_dir}\
             \n\nPress Ctrl-C to tear everything down.",
            kubeconfig = self.kube.kubeconfig().display(),
            nb = self.ovn.nb_remote(),
            sb = self.ovn.sb_remote().unwrap_or_default(),
            ovs = self.ovn.ovs_remote().unwrap_or_default(),
            pod_ns = self.pod.netns.name(),
            vm_ns = self.tenant.vm.netns().name(),
            pod_ip = self.pod.ip,
            rovnctl = workspace_bin("rovnctl", "rovnctl")
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| "rovnctl".to_owned()),
            controller_log = self.controller.process.log_path().display(),
            agent_log = self.agent.process.log_path().display(),
            ovn_dir = self.ovn.dir().display(),
            chassis = chassis.display(),
            kube_dir = self.kube.dir().display(),
        );
    }

    /// Fails when rovn-controller or rovn-agent has exited.
    pub fn check_running(&mut self) -> Result<()> {
        self.controller.process.check_running()?;
        self.agent.process.check_running()
    }

    /// Keeps the lab's directory (logs, manifests) after the teardown.
    pub fn keep_files(&mut self) {
        if let Some(temp) = self.dir.temp.take() {
            println!("rovn-lab: keeping {}", temp.keep().display());
        }
    }

    /// Unplugs the pod (CNI DEL) when `unplug`, then stops everything that was started, in
    /// order.
    pub async fn teardown(self, unplug: bool) {
        if unplug {
            let pod = &self.pod;
            if let Err(e) = blocking(|| pod.attachment.del(Some(&pod.result))) {
                eprintln!("rovn-lab: CNI DEL of the pod: {e:#}");
            }
        }
        blocking(|| drop(self));
        println!("rovn-lab: stopped.");
    }
}

/// Waits until the controller is ready and has imported router `name` as a Vpc (with a
/// status); the controller exiting meanwhile ends the wait at once.
async fn wait_vpc(cluster: &Cluster, name: &str, controller: &mut ControllerProcess) -> Result<()> {
    controller.wait_ready().await?;
    let process = &mut controller.process;
    let what = format!("router {name} imported as a Vpc");
    let imported = wait_until_async(HANG_GUARD, &what, || {
        let exited = process.check_running().err();
        async move {
            match exited {
                Some(e) => Some(Err(e)),
                None => {
                    let vpc = cluster.vpc(name).await.ok().flatten();
                    vpc.filter(|v| v.status.is_some()).map(|_| Ok(()))
                }
            }
        }
    })
    .await;
    match imported {
        // Imported, or the controller's exit (with its log tail).
        Ok(done) => done,
        Err(timeout) => Err(anyhow!(
            "{timeout:#}; rovn-controller log tail:\n{}",
            controller.process.log_tail()
        )),
    }
}

/// Subnet net2 on Vpc `vpc`, bound to namespace net2.
fn subnet_manifest(vpc: &str) -> String {
    format!(
        "apiVersion: kubeovn.io/v1\nkind: Subnet\nmetadata:\n  name: {SUBNET}\nspec:\n  \
         vpc: {vpc}\n  cidrBlock: {NET2}\n  namespaces: [{SUBNET}]\n"
    )
}

/// Pod net2/web on the lab's node (there is no scheduler; no runtime pulls the image).
fn pod_manifest() -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {POD}\n  namespace: {SUBNET}\nspec:\n  \
         nodeName: {NODE}\n  containers:\n  - name: main\n    image: registry.k8s.io/pause:3.10\n"
    )
}

/// Runs `kubectl args…`, showing the command and its output.
fn kubectl_shown(kube: &KubeEnv, args: &[&str]) -> Result<()> {
    println!("  $ kubectl {}", args.join(" "));
    print_indented(&kube.kubectl(args)?);
    Ok(())
}

/// Prints `text` indented under the current step.
fn print_indented(text: &str) {
    for line in text.lines() {
        println!("    {line}");
    }
}
