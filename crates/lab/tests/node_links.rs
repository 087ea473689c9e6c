//! Node ↔ pod on every VPC, on a real node (kubelet, containerd, rovn installed from
//! `deploy/`), with real packets:
//!
//! - two Neutron tenants whose Subnets use the same CIDR (net2 on router A, net3 on router
//!   B, both 10.0.2.0/24), a pod in each serving HTTP with an `httpGet` readiness probe and a
//!   `tcpSocket` liveness probe: both become Ready (kubelet reaches each through its VPC's
//!   node-link gateway); their addresses differ;
//! - a pod whose liveness probe fails is restarted by kubelet;
//! - pods of both tenants reach the API server through the `kubernetes` Service (ClusterIP
//!   → the API server on the node's address) and a hostNetwork pod on the node's address,
//!   which sees them source-NATed to the node (the gateway's link address, not the pod's);
//! - with CoreDNS on the host network as the cluster DNS, pods of both tenants resolve
//!   `kubernetes.default.svc.cluster.local` and their own Service (and reach it, hairpin);
//! - no path through the node between tenants: a pod of A does not reach B's VM (admitted by
//!   B's security group) nor B's gateway, and the reverse;
//! - Neutron's repair sync dropping our router port and routes from router A: restored,
//!   probes and the `kubernetes` Service keep working;
//! - no row Neutron owns is changed by rovn.

use std::time::{Duration, Instant};

use testenv::install::RovnInstall;
use testenv::neutron::NeutronRows;
use testenv::node::NodeEnv;
use testenv::ovn::OvnEnv;
use testenv::poll::{HANG_GUARD, wait_until};
use testenv::stack::Tenant;

const CIDR: &str = "10.0.2.0/24";
/// Start-up of everything (images, daemons, rovn's pods) on a loaded two-core machine.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(300);
/// The `kubernetes` Service's ClusterIP (first address of the test API server's range).
const KUBERNETES_SERVICE: &str = "10.96.0.1";
/// The port the hostNetwork pod serves on.
const HOST_PORT: u16 = 18_080;

fn kubectl(node: &NodeEnv, args: &[&str]) -> String {
    node.kubectl(args)
        .unwrap_or_else(|e| panic!("kubectl {args:?}: {e:#}"))
}

/// (busybox's `wget -T` crashes in this build: `timeout` bounds it instead.)
fn exec(node: &NodeEnv, ns: &str, pod: &str, command: &[&str]) -> Result<String, String> {
    let mut args = vec!["-n", ns, "exec", pod, "--"];
    args.extend_from_slice(command);
    node.kubectl(&args).map_err(|e| format!("{e:#}"))
}

/// Pod `web` in `ns`: busybox httpd on 8080 with an `httpGet` readiness and a `tcpSocket`
/// liveness probe.
fn web_pod(busybox: &str, ns: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: web, namespace: {ns}, labels: {{app: web}}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
    - name: web
      image: {busybox}
      imagePullPolicy: Never
      command: ["sh", "-c", "mkdir -p /www && echo hello-{ns} > /www/index.html && exec httpd -f -p 8080 -h /www"]
      readinessProbe:
        httpGet: {{path: /index.html, port: 8080}}
        periodSeconds: 2
        timeoutSeconds: 2
      livenessProbe:
        tcpSocket: {{port: 8080}}
        periodSeconds: 2
        timeoutSeconds: 2
"#
    )
}

fn pod_ip(node: &NodeEnv, ns: &str, pod: &str) -> String {
    kubectl(
        node,
        &[
            "-n",
            ns,
            "get",
            "pod",
            pod,
            "-o",
            "jsonpath={.status.podIP}",
        ],
    )
}

/// `pod` of `ns` reaches the API server at `ip:port` (retried for a while): an HTTP request
/// to its TLS port gets Go's "400 Bad Request" answer, proof that the server itself
/// answered.
fn reaches_api_server(
    node: &NodeEnv,
    ns: &str,
    pod: &str,
    ip: &str,
    port: u16,
) -> Result<(), String> {
    let what = format!("{ns}/{pod} -> the API server at {ip}:{port}");
    let url = format!("http://{ip}:{port}/");
    wait_until(Duration::from_secs(30), &what, || {
        match exec(
            node,
            ns,
            pod,
            &["timeout", "5", "wget", "-q", "-O", "-", &url],
        ) {
            Err(answer) if answer.contains("400 Bad Request") => Some(()),
            _ => None,
        }
    })
    .map_err(|e| format!("{e:#}"))
}

/// The page `pod` of `ns` gets from `url` (retried for a while).
fn page(node: &NodeEnv, ns: &str, pod: &str, url: &str) -> Result<String, String> {
    wait_until(
        Duration::from_secs(30),
        &format!("{ns}/{pod} GET {url}"),
        || {
            exec(
                node,
                ns,
                pod,
                &["timeout", "5", "wget", "-q", "-O", "-", url],
            )
            .ok()
        },
    )
    .map_err(|e| format!("{e:#}"))
}

fn pings(node: &NodeEnv, ns: &str, pod: &str, ip: &str) -> bool {
    (0..2).any(|_| node.pod_pings(ns, pod, ip))
}

fn wait_ready(node: &NodeEnv, ns: &str, pod: &str, rovn: &RovnInstall) {
    node.wait_pod_running(ns, pod, Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("{e:#}\n{}", rovn.describe(node)));
}

#[test]
fn probes_host_endpoints_and_two_tenants_with_one_cidr_on_a_real_node() {
    let started = Instant::now();
    let node_name = NodeEnv::default_node_name();
    let node = NodeEnv::builder()
        .ovn(OvnEnv::builder().nb_tcp().chassis(&node_name))
        .start()
        .expect("the node");
    let ovn = node.ovn().expect("OVN");
    let a = Tenant::create(ovn, "a", "10.0.1.0/24", "10.0.1.50").expect("tenant A");
    let b = Tenant::create(ovn, "b", "10.0.9.0/24", "10.0.9.50").expect("tenant B");
    let neutron = NeutronRows::snapshot(ovn).expect("Neutron rows");
    // The VMs admit pod traffic: only routing could keep tenants apart below.
    neutron
        .neutron_writes(ovn, "security groups admit the pod CIDR", || {
            a.sg.add_rule_allowing(ovn, CIDR)?;
            b.sg.add_rule_allowing(ovn, CIDR)
        })
        .unwrap();
    let rovn = RovnInstall::apply(&node, INSTALL_TIMEOUT).expect("rovn installed from deploy/");
    let (vpc_a, vpc_b) = (a.router.lr_name(), b.router.lr_name());
    for (subnet, vpc) in [("net2", &vpc_a), ("net3", &vpc_b)] {
        rovn.wait_vpc_imported(&node, vpc)
            .unwrap_or_else(|e| panic!("{e:#}"));
        rovn.apply_subnet(&node, subnet, vpc, CIDR)
            .unwrap_or_else(|e| panic!("Subnet {subnet}: {e:#}"));
    }

    // Probes pass in both tenants, same CIDR.
    let busybox = node.images().busybox().to_owned();
    let probes = Instant::now();
    for ns in ["net2", "net3"] {
        node.apply(&web_pod(&busybox, ns)).expect("pod web");
    }
    for ns in ["net2", "net3"] {
        wait_ready(&node, ns, "web", &rovn);
    }
    eprintln!(
        "both web pods Ready (kubelet's probes passed) {:?} after apply",
        probes.elapsed()
    );
    let (ip2, ip3) = (pod_ip(&node, "net2", "web"), pod_ip(&node, "net3", "web"));
    assert!(ip2.starts_with("10.0.2.") && ip3.starts_with("10.0.2."));
    assert_ne!(
        ip2, ip3,
        "two tenants' pods on one node got the same address"
    );

    // A failing liveness probe restarts the container.
    node.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: sick, namespace: net2}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
    - name: sick
      image: {busybox}
      imagePullPolicy: Never
      command: ["sleep", "3600"]
      livenessProbe:
        httpGet: {{path: /, port: 8081}}
        periodSeconds: 2
        failureThreshold: 1
"#
    ))
    .expect("pod sick");
    wait_until(HANG_GUARD, "sick restarted by its liveness probe", || {
        let count = kubectl(
            &node,
            &[
                "-n",
                "net2",
                "get",
                "pod",
                "sick",
                "-o",
                "jsonpath={.status.containerStatuses[0].restartCount}",
            ],
        );
        (count.trim().parse::<u32>().unwrap_or(0) >= 1).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", rovn.describe(&node)));

    // The API server through the kubernetes Service, and a hostNetwork pod, from both
    // tenants.
    node.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: hostweb, namespace: default}}
spec:
  hostNetwork: true
  terminationGracePeriodSeconds: 1
  containers:
    - name: hostweb
      image: {busybox}
      imagePullPolicy: Never
      command: ["sh", "-c", "mkdir -p /www && echo host > /www/index.html && exec httpd -f -v -p {HOST_PORT} -h /www"]
"#
    ))
    .expect("pod hostweb");
    wait_ready(&node, "default", "hostweb", &rovn);
    let node_ip = node.node_ip().to_string();
    for ns in ["net2", "net3"] {
        reaches_api_server(&node, ns, "web", KUBERNETES_SERVICE, 443)
            .unwrap_or_else(|e| panic!("{e}\n{}", rovn.describe(&node)));
        let host_page = page(&node, ns, "web", &format!("http://{node_ip}:{HOST_PORT}/"))
            .unwrap_or_else(|e| panic!("{e}\n{}", rovn.describe(&node)));
        assert_eq!(host_page.trim(), "host");
    }
    let seen = kubectl(&node, &["-n", "default", "logs", "hostweb"]);
    assert!(
        !seen.contains(&ip2) && !seen.contains(&ip3) && seen.contains("169.254."),
        "the host-network pod saw the pods' own addresses, not the node's: {seen}"
    );

    // Cluster DNS (CoreDNS on the host network behind the kube-dns Service): pods of both
    // tenants resolve the kubernetes Service and a Service of theirs, and reach it.
    let dns = node.deploy_cluster_dns().expect("cluster DNS");
    for ns in ["net2", "net3"] {
        node.apply(&format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: {ns}}}\n\
             spec: {{selector: {{app: web}}, ports: [{{port: 80, targetPort: 8080}}]}}\n"
        ))
        .expect("Service web");
        let cluster_ip = kubectl(
            &node,
            &[
                "-n",
                ns,
                "get",
                "service",
                "web",
                "-o",
                "jsonpath={.spec.clusterIP}",
            ],
        );
        let resolves = |name: &str, ip: &str| {
            wait_until(
                Duration::from_secs(30),
                &format!("{ns}/web resolves {name}"),
                || {
                    exec(&node, ns, "web", &["nslookup", name])
                        .ok()
                        .filter(|answer| answer.contains(ip))
                },
            )
            .unwrap_or_else(|e| panic!("{e:#}\nCoreDNS: {:?}\n{}", dns.pod(), rovn.describe(&node)))
        };
        resolves("kubernetes.default.svc.cluster.local", KUBERNETES_SERVICE);
        resolves(&format!("web.{ns}.svc.cluster.local"), &cluster_ip);
        // (busybox's wget resolves through glibc's NSS, absent from the image: by address.)
        let own = page(&node, ns, "web", &format!("http://{cluster_ip}/index.html"))
            .unwrap_or_else(|e| panic!("{e}\n{}", rovn.describe(&node)));
        assert_eq!(own.trim(), format!("hello-{ns}"), "the Service of {ns}");
    }

    // No path through the node between tenants.
    assert!(
        !pings(&node, "net2", "web", &b.vm_port.ip),
        "a pod of A reached B's VM"
    );
    assert!(
        !pings(&node, "net3", "web", &a.vm_port.ip),
        "a pod of B reached A's VM"
    );
    assert!(
        pings(&node, "net2", "web", &a.vm_port.ip),
        "a pod of A cannot reach its own VM"
    );

    // Neutron's repair sync drops foreign router ports and routes: restored.
    let ours = |table: &str| {
        ovn.nbctl(&[
            "--bare",
            "--columns=_uuid",
            "find",
            table,
            "external_ids:\"rovn:kind\"=node-link",
        ])
        .expect("ovn-nbctl find")
    };
    let restarts = || {
        kubectl(
            &node,
            &[
                "-n",
                "net2",
                "get",
                "pod",
                "web",
                "-o",
                "jsonpath={.status.containerStatuses[0].restartCount}",
            ],
        )
    };
    let restarts_before = restarts();
    let router_a = a.router.lr_name();
    for route in ours("Logical_Router_Static_Route").split_whitespace() {
        let _ = ovn.nbctl(&[
            "remove",
            "Logical_Router",
            &router_a,
            "static_routes",
            route,
        ]);
    }
    for port in ours("Logical_Router_Port").split_whitespace() {
        let _ = ovn.nbctl(&["remove", "Logical_Router", &router_a, "ports", port]);
    }
    wait_until(HANG_GUARD, "router A's node link restored", || {
        let routes = ovn.nbctl(&["lr-route-list", &router_a]).unwrap_or_default();
        routes.contains(&node_ip).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", rovn.describe(&node)));
    reaches_api_server(&node, "net2", "web", KUBERNETES_SERVICE, 443)
        .unwrap_or_else(|e| panic!("after the repair: {e}\n{}", rovn.describe(&node)));
    page(
        &node,
        "net2",
        "web",
        &format!("http://{node_ip}:{HOST_PORT}/"),
    )
    .unwrap_or_else(|e| panic!("after the repair: {e}"));
    assert_eq!(
        restarts(),
        restarts_before,
        "kubelet's liveness probe failed during the repair"
    );

    neutron.assert_unchanged(ovn, "end of the node-link scenario");
    eprintln!("scenario passed in {:?}", started.elapsed());
}
