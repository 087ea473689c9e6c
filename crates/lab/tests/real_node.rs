//! The seed scenario on a real node, no stand-ins: kubelet and containerd run the pods,
//! `rovn-cni` is called by containerd, rovn is installed with `kubectl apply -k` of
//! `deploy/` (an overlay pointing it at this machine), "Neutron" (`testenv::neutron`)
//! made a tenant with a VM.
//!
//! - the controller and agent pods become Ready, the Node Ready;
//! - Subnet net2 on the imported Neutron router, a Deployment of 3 workload pods in
//!   namespace net2: Running, each `status.podIP` its rovn address in 10.0.2.0/24;
//! - `kubectl exec`: a pod pings another; a new connection to the VM is dropped by
//!   `neutron_pg_drop` until the security-group rule admits the pod CIDR, then passes; the VM
//!   pings every pod;
//! - a pod with a static address annotation gets it;
//! - the agent pod deleted (the DaemonSet recreates it) and kubelet restarted: the running
//!   pods stay connected, untouched;
//! - scaling down: containerd calls CNI DEL, the pods' OVS ports, logical switch ports and
//!   addresses are released;
//! - no row Neutron owns is changed by rovn.

use std::time::{Duration, Instant};

use api::annotations::IP_ADDRESS;
use testenv::install::{ROVN_NAMESPACE, RovnInstall, rollout_status};
use testenv::neutron::NeutronRows;
use testenv::node::{NodeEnv, RunningPod};
use testenv::ovn::OvnEnv;
use testenv::poll::{HANG_GUARD, wait_until};
use testenv::stack::Tenant;

const NS: &str = "net2";
const NET2: &str = "10.0.2.0/24";
const STATIC_IP: &str = "10.0.2.77";
/// Pings that must fail: this many attempts of one second each.
const NEGATIVE_ATTEMPTS: u32 = 2;
/// Start-up of everything (images, daemons, rovn's pods) on a loaded two-core machine.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(300);

fn kubectl(node: &NodeEnv, args: &[&str]) -> String {
    node.kubectl(args)
        .unwrap_or_else(|e| panic!("kubectl {args:?}: {e:#}"))
}

/// The Running pods of the Deployment `web`.
fn web_pods(node: &NodeEnv) -> Vec<RunningPod> {
    node.running_pods(NS, "app=web")
        .unwrap_or_else(|e| panic!("listing the web pods: {e:#}"))
}

/// `pod` reaches `ip` (retried: the first ARP exchange can take a moment).
fn pod_reaches(node: &NodeEnv, pod: &str, ip: &str) -> bool {
    wait_until(Duration::from_secs(30), &format!("{pod} -> {ip}"), || {
        node.pod_pings(NS, pod, ip)
    })
    .is_ok()
}

fn pod_blocked(node: &NodeEnv, pod: &str, ip: &str) -> bool {
    (0..NEGATIVE_ATTEMPTS).all(|_| !node.pod_pings(NS, pod, ip))
}

/// `restartCount` of every container of the net2 pods, by pod.
fn restarts(node: &NodeEnv) -> String {
    let template = r#"jsonpath={range .items[*]}{.metadata.name}={.status.containerStatuses[*].restartCount} {.status.podIP};{end}"#;
    kubectl(node, &["-n", NS, "get", "pods", "-o", template])
}

fn lsp_exists(ovn: &OvnEnv, name: &str) -> bool {
    let out = ovn
        .nbctl(&[
            "--bare",
            "--columns=name",
            "find",
            "Logical_Switch_Port",
            &format!("name={name}"),
        ])
        .expect("ovn-nbctl find");
    !out.trim().is_empty()
}

fn ovs_port_exists(ovn: &OvnEnv, iface_id: &str) -> bool {
    let out = ovn
        .vsctl(&[
            "--bare",
            "--columns=name",
            "find",
            "Interface",
            &format!("external_ids:iface-id={iface_id}"),
        ])
        .expect("ovs-vsctl find");
    !out.trim().is_empty()
}

#[test]
fn seed_scenario_on_a_real_node_installed_from_deploy() {
    let started = Instant::now();
    let node_name = NodeEnv::default_node_name();
    let mut node = NodeEnv::builder()
        .ovn(OvnEnv::builder().nb_tcp().chassis(&node_name))
        .start()
        .expect("the node");
    let node_ready = started.elapsed();
    let ovn = node.ovn().expect("OVN");
    let a = Tenant::create(ovn, "a", "10.0.1.0/24", "10.0.1.50").expect("tenant A");
    let neutron = NeutronRows::snapshot(ovn).expect("Neutron rows");

    let rovn = RovnInstall::apply(&node, INSTALL_TIMEOUT).expect("rovn installed from deploy/");
    eprintln!(
        "node up in {node_ready:?}, rovn installed and Ready in {:?}",
        rovn.install_time()
    );
    let vpc = a.router.lr_name();
    rovn.wait_vpc_imported(&node, &vpc)
        .unwrap_or_else(|e| panic!("{e:#}"));

    // Subnet net2 on the imported router, bound to namespace net2.
    rovn.apply_subnet(&node, NS, &vpc, NET2)
        .unwrap_or_else(|e| panic!("Subnet {NS}: {e:#}"));

    // A Deployment of 3 workload pods.
    let busybox = node.images().busybox().to_owned();
    let deployment = format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {NS}}}
spec:
  replicas: 3
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: web
          image: {busybox}
          imagePullPolicy: Never
          command: ["sleep", "3600"]
"#
    );
    let applied = Instant::now();
    node.apply(&deployment).expect("Deployment web");
    node.kubectl(&[
        "-n",
        NS,
        "rollout",
        "status",
        "deployment/web",
        "--timeout=180s",
    ])
    .unwrap_or_else(|e| panic!("{e:#}\n{}\n{}", rovn.describe(&node), node.log_tails()));
    eprintln!("3 pods Running {:?} after apply", applied.elapsed());
    let pods = web_pods(&node);
    assert_eq!(pods.len(), 3, "{pods:?}");
    for p in &pods {
        assert!(p.ip.starts_with("10.0.2."), "{}: podIP {}", p.name, p.ip);
        assert_eq!(
            p.annotations.get(IP_ADDRESS),
            Some(&p.ip),
            "{}: podIP is rovn's address",
            p.name
        );
    }
    eprintln!(
        "{}",
        kubectl(&node, &["-n", NS, "get", "pods", "-o", "wide"])
    );
    let (p0, p1, p2) = (&pods[0], &pods[1], &pods[2]);

    // Pod to pod; pod to VM only once the security group admits the pod CIDR; VM to pods.
    assert!(
        pod_reaches(&node, &p0.name, &p1.ip),
        "{} cannot reach {}\n{}",
        p0.name,
        p1.name,
        rovn.describe(&node)
    );
    assert!(
        pod_blocked(&node, &p0.name, &a.vm_port.ip),
        "a pod reached the VM without a security-group rule"
    );
    neutron
        .neutron_writes(ovn, "A's security group admits 10.0.2.0/24", || {
            a.sg.add_rule_allowing(ovn, NET2)
        })
        .unwrap();
    assert!(
        pod_reaches(&node, &p0.name, &a.vm_port.ip),
        "pod cannot reach the VM with the rule"
    );
    for RunningPod { name, ip, .. } in &pods {
        assert!(a.vm.ping(ip), "the VM cannot reach {name} at {ip}");
    }

    // A static address.
    node.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: fixed
  namespace: {NS}
  annotations: {{ovn.kubernetes.io/ip_address: "{STATIC_IP}"}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
    - name: fixed
      image: {busybox}
      imagePullPolicy: Never
      command: ["sleep", "3600"]
"#
    ))
    .expect("pod fixed");
    node.wait_pod_running(NS, "fixed", HANG_GUARD)
        .expect("pod fixed Running");
    let fixed_ip = kubectl(
        &node,
        &[
            "-n",
            NS,
            "get",
            "pod",
            "fixed",
            "-o",
            "jsonpath={.status.podIP}",
        ],
    );
    assert_eq!(fixed_ip, STATIC_IP);
    assert!(a.vm.ping(STATIC_IP), "the VM cannot reach the static pod");
    assert!(pod_reaches(&node, &p2.name, STATIC_IP));

    // The agent pod deleted and recreated: running pods stay connected and untouched.
    let before = restarts(&node);
    let agent = rovn.agent_pod(&node).expect("agent pod");
    kubectl(
        &node,
        &["-n", ROVN_NAMESPACE, "delete", "pod", &agent, "--wait=true"],
    );
    wait_until(HANG_GUARD, "a new agent pod Ready", || {
        rovn.agent_pod(&node)
            .ok()
            .filter(|p| *p != agent)
            .filter(|_| rollout_status(&node, "daemonset/rovn-agent").is_ok())
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", rovn.describe(&node)));
    for RunningPod { name, ip, .. } in &pods {
        assert!(
            a.vm.ping(ip),
            "after the agent's restart the VM cannot reach {name}"
        );
    }
    assert!(pod_reaches(&node, &p1.name, &p2.ip));

    // kubelet restarted: the same.
    node.restart_kubelet().expect("kubelet restarted");
    for RunningPod { name, ip, .. } in &pods {
        assert!(
            a.vm.ping(ip),
            "after kubelet's restart the VM cannot reach {name}"
        );
    }
    assert!(pod_reaches(&node, &p2.name, &p0.ip));
    assert_eq!(restarts(&node), before, "pods restarted or changed address");

    let ovn = node.ovn().expect("OVN");

    // Scaling down: CNI DEL through containerd releases ports and addresses.
    kubectl(
        &node,
        &["-n", NS, "scale", "deployment/web", "--replicas=1"],
    );
    let gone: Vec<String> = wait_until(HANG_GUARD, "two web pods deleted", || {
        let left = kubectl(
            &node,
            &[
                "-n",
                NS,
                "get",
                "pods",
                "-l",
                "app=web",
                "-o",
                "jsonpath={.items[*].metadata.name}",
            ],
        );
        let left: Vec<&str> = left.split_whitespace().collect();
        let gone: Vec<String> = pods
            .iter()
            .map(|p| p.name.clone())
            .filter(|p| !left.contains(&p.as_str()))
            .collect();
        (gone.len() == 2).then_some(gone)
    })
    .unwrap_or_else(|e| panic!("{e:#}"));
    for pod in &gone {
        let port = api::pod_network::port_name(NS, pod);
        wait_until(HANG_GUARD, &format!("{port} released"), || {
            let ip_gone = node
                .kubectl(&["get", "ips", &port, "--ignore-not-found", "-o", "name"])
                .is_ok_and(|s| s.trim().is_empty());
            (!ovs_port_exists(ovn, &port) && !lsp_exists(ovn, &port) && ip_gone).then_some(())
        })
        .unwrap_or_else(|e| panic!("{e:#}\n{}", rovn.describe(&node)));
    }
    let kept = &web_pods(&node)[0];
    assert!(
        a.vm.ping(&kept.ip),
        "the VM cannot reach {} after the scale-down",
        kept.name
    );

    neutron.assert_unchanged(ovn, "end of the real-node scenario");
    eprintln!("scenario passed in {:?}", started.elapsed());
}
