//! The cluster DNS of the real node: `NodeEnv::deploy_cluster_dns` runs CoreDNS (the image
//! of `hack/images.sh`) on the host network, bound to the node's address, behind the
//! `kube-dns` Service 10.96.0.10. Checked with real packets from the host: `<node ip>:53`
//! answers `kubernetes.default.svc.cluster.local` with the `kubernetes` Service's ClusterIP
//! and a test Service's name with its ClusterIP (busybox `nslookup` over UDP, our own query
//! over TCP), and NXDOMAIN for a Service that does not exist. A pod that is not hostNetwork
//! (on a reference `ptp` CNI network of this test's own: rovn is not installed here) gets
//! 10.96.0.10 and its namespace's search path in `/etc/resolv.conf`, and resolves Service
//! names from its own network namespace through the node's address. (Through the ClusterIP
//! takes rovn's datapath: the lab's tests check that.)

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use testenv::node::{CLUSTER_DNS_IP, DNS_NAMESPACE, DNS_SERVICE, NodeEnv};
use testenv::poll::wait_until;

const POD_TIMEOUT: Duration = Duration::from_secs(180);
/// How long a Service created after CoreDNS started takes to be answered (its watch).
const SERVICE_VISIBLE: Duration = Duration::from_secs(30);
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);
/// The reference CNI plugins of Debian's containernetworking-plugins.
const CNI_PLUGINS: &str = "/usr/lib/cni";
const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

#[test]
fn coredns_answers_on_the_node_address_and_pods_point_at_it() -> Result<()> {
    let node = NodeEnv::builder().start()?;
    eprintln!(
        "node {} ({}) started in {:?}",
        node.node_name(),
        node.node_ip(),
        node.startup_time()
    );
    let deploying = Instant::now();
    let dns = node.deploy_cluster_dns()?;
    eprintln!(
        "CoreDNS pod {} Ready {:?} after deploy; server {}",
        dns.pod(),
        deploying.elapsed(),
        dns.server()
    );
    assert_eq!(dns.service_ip(), CLUSTER_DNS_IP);
    assert_eq!(node.cluster_dns_ip(), Ipv4Addr::new(10, 96, 0, 10));
    assert_eq!(
        dns.server(),
        SocketAddr::from((node.node_ip(), 53)),
        "CoreDNS serves on the node's address"
    );

    // Host network, on our node, the Service with the agreed ClusterIP and ports, its
    // EndpointSlice naming the node's address.
    let placed = node.kubectl(&[
        "-n",
        DNS_NAMESPACE,
        "get",
        "pod",
        dns.pod(),
        "-o",
        "jsonpath={.spec.hostNetwork} {.spec.dnsPolicy} {.spec.nodeName} {.status.podIP}",
    ])?;
    assert_eq!(
        placed.split_whitespace().collect::<Vec<_>>(),
        [
            "true",
            "Default",
            node.node_name(),
            &node.node_ip().to_string()
        ]
    );
    let service = node.kubectl(&[
        "-n",
        DNS_NAMESPACE,
        "get",
        "service",
        DNS_SERVICE,
        "-o",
        "jsonpath={.spec.clusterIP} {range .spec.ports[*]}{.port}/{.protocol} {end}",
    ])?;
    assert_eq!(
        service.split_whitespace().collect::<Vec<_>>(),
        ["10.96.0.10", "53/UDP", "53/TCP"]
    );
    let endpoints = wait_until(
        SERVICE_VISIBLE,
        "the kube-dns EndpointSlice with the node's address",
        || {
            node.kubectl(&[
                "-n",
                DNS_NAMESPACE,
                "get",
                "endpointslices",
                "-l",
                &format!("kubernetes.io/service-name={DNS_SERVICE}"),
                "-o",
                "jsonpath={.items[*].endpoints[*].addresses[*]}",
            ])
            .ok()
            .filter(|a| a.trim() == node.node_ip().to_string())
        },
    )?;
    eprintln!("kube-dns endpoints: {endpoints}");

    // Deploying twice is refused before anything is applied (port 53 is CoreDNS's now).
    let again = node.deploy_cluster_dns().unwrap_err();
    assert!(
        format!("{again:#}").contains("already deployed"),
        "{again:#}"
    );

    let kubernetes_ip = cluster_ip(&node, "default", "kubernetes")?;
    node.apply(
        "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\n\
         spec:\n  selector: {app: web}\n  ports: [{name: http, port: 80, protocol: TCP}]\n",
    )?;
    let web_ip = cluster_ip(&node, "default", "web")?;
    eprintln!("kubernetes {kubernetes_ip}, web {web_ip}");

    // From the host, real packets to <node ip>:53: busybox's nslookup over UDP.
    let server = node.node_ip().to_string();
    assert_eq!(
        nslookup_host("kubernetes.default.svc.cluster.local", &server)?,
        [kubernetes_ip]
    );
    let resolved = Instant::now();
    let answer = wait_until(SERVICE_VISIBLE, "web.default.svc.cluster.local", || {
        nslookup_host("web.default.svc.cluster.local", &server)
            .and_then(|a| if a == [web_ip] { Ok(a) } else { bail!("{a:?}") })
    })?;
    eprintln!(
        "web resolved {:?} after its creation: {answer:?}",
        resolved.elapsed()
    );
    // Over TCP too (the Service's 53/TCP), and an unknown Service is NXDOMAIN.
    let (rcode, tcp_answer) = query_a(dns.server(), "web.default.svc.cluster.local", true)?;
    assert_eq!((rcode, tcp_answer), (0, vec![web_ip]), "TCP query");
    let (rcode, nothing) = query_a(dns.server(), "nope.default.svc.cluster.local", false)?;
    assert_eq!((rcode, nothing), (3, vec![]), "NXDOMAIN for no Service");
    // Bound to the node's address only: loopback port 53 is not CoreDNS.
    let loopback = query_a(
        SocketAddr::from((Ipv4Addr::LOCALHOST, 53)),
        "web.default.svc.cluster.local",
        true,
    );
    assert!(
        !matches!(&loopback, Ok((_, a)) if a == &[web_ip]),
        "CoreDNS answered on 127.0.0.1: {loopback:?}"
    );

    // A pod on a pod network: resolv.conf names the cluster DNS and its namespace's search
    // path; from its network namespace, the node's address answers.
    let forward = std::fs::read_to_string(IP_FORWARD)?;
    let result = pod_checks(&node, &server, web_ip);
    // ptp turns forwarding on: put back what this machine had.
    let _ = std::fs::write(IP_FORWARD, forward.trim());
    result?;

    // The CoreDNS log shows the queries it answered.
    let log = node.kubectl(&["-n", DNS_NAMESPACE, "logs", dns.pod()])?;
    assert!(
        log.contains("web.default.svc.cluster.local"),
        "CoreDNS logged no query for web: {log}"
    );
    Ok(())
}

/// The pod part: a `ptp` CNI network, a busybox pod on it, its resolv.conf and lookups.
fn pod_checks(node: &NodeEnv, server: &str, web_ip: Ipv4Addr) -> Result<()> {
    install_ptp_network(node)?;
    node.wait_node_ready(POD_TIMEOUT)?;
    node.kubectl(&["create", "namespace", "dns-test"])?;
    node.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: client
  namespace: dns-test
spec:
  terminationGracePeriodSeconds: 1
  containers:
    - name: client
      image: {image}
      imagePullPolicy: Never
      command: ["sleep", "3600"]
"#,
        image = node.images().busybox()
    ))?;
    node.wait_pod_running("dns-test", "client", POD_TIMEOUT)?;
    let resolv = node.kubectl(&[
        "-n",
        "dns-test",
        "exec",
        "client",
        "--",
        "cat",
        "/etc/resolv.conf",
    ])?;
    eprintln!("the pod's /etc/resolv.conf:\n{resolv}");
    let lines: Vec<&str> = resolv.lines().map(str::trim).collect();
    ensure!(
        lines.contains(&"nameserver 10.96.0.10"),
        "no cluster nameserver in {resolv}"
    );
    ensure!(
        lines.contains(&"search dns-test.svc.cluster.local svc.cluster.local cluster.local"),
        "no cluster search path in {resolv}"
    );
    ensure!(
        !lines
            .iter()
            .any(|l| l.starts_with("nameserver") && *l != "nameserver 10.96.0.10"),
        "another nameserver in {resolv}"
    );
    let out = node.kubectl(&[
        "-n",
        "dns-test",
        "exec",
        "client",
        "--",
        "nslookup",
        "-type=a",
        "web.default.svc.cluster.local",
        server,
    ])?;
    let answer = nslookup_addresses(&out);
    ensure!(
        answer == [web_ip],
        "the pod resolved web to {answer:?}, not {web_ip}: {out}"
    );
    Ok(())
}

/// `status.clusterIP` of Service `namespace/name`.
fn cluster_ip(node: &NodeEnv, namespace: &str, name: &str) -> Result<Ipv4Addr> {
    let ip = node.kubectl(&[
        "-n",
        namespace,
        "get",
        "service",
        name,
        "-o",
        "jsonpath={.spec.clusterIP}",
    ])?;
    ip.trim()
        .parse()
        .with_context(|| format!("ClusterIP of {namespace}/{name}: {ip:?}"))
}

/// Links the reference `ptp` and `host-local` plugins beside the node's `loopback` and writes
/// a network of this test's own (a /24 chosen by pid; host-local's leases in the node's
/// directory), so that containerd can start pods that are not hostNetwork.
fn install_ptp_network(node: &NodeEnv) -> Result<()> {
    for plugin in ["ptp", "host-local"] {
        let source = Path::new(CNI_PLUGINS).join(plugin);
        ensure!(
            source.is_file(),
            "{} is missing (Debian: containernetworking-plugins)",
            source.display()
        );
        std::os::unix::fs::symlink(&source, node.cni_bin_dir().join(plugin))?;
    }
    let subnet = format!("10.250.{}.0/24", std::process::id() % 256);
    let config = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "dns-test",
        "plugins": [{
            "type": "ptp",
            "ipMasq": false,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": subnet}]],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": node.dir().join("ipam").display().to_string(),
            },
        }],
    });
    std::fs::write(
        node.cni_conf_dir().join("10-dns-test.conflist"),
        serde_json::to_string_pretty(&config)?,
    )?;
    Ok(())
}

/// `busybox nslookup -type=a <name> <server>` on the host: the answer's addresses.
fn nslookup_host(name: &str, server: &str) -> Result<Vec<Ipv4Addr>> {
    let out = testenv::process::run("busybox", &["nslookup", "-type=a", name, server])?;
    Ok(nslookup_addresses(&out))
}

/// The addresses busybox's nslookup prints for the name it looked up (the `Address:` lines
/// after `Name:`; the one before is the server's).
fn nslookup_addresses(out: &str) -> Vec<Ipv4Addr> {
    out.lines()
        .skip_while(|l| !l.starts_with("Name:"))
        .filter_map(|l| l.strip_prefix("Address:"))
        .filter_map(|a| a.trim().parse().ok())
        .collect()
}

/// One `A` query for `name` to `server` over UDP or TCP: the response code and the
/// answer's IPv4 addresses.
fn query_a(server: SocketAddr, name: &str, tcp: bool) -> Result<(u8, Vec<Ipv4Addr>)> {
    let id = (std::process::id() & 0xffff) as u16;
    let mut query = Vec::new();
    query.extend_from_slice(&id.to_be_bytes());
    // Recursion desired; one question.
    query.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        query.push(u8::try_from(label.len())?);
        query.extend_from_slice(label.as_bytes());
    }
    query.extend_from_slice(&[0, 0, 1, 0, 1]); // root, type A, class IN
    let response = if tcp {
        let mut stream = TcpStream::connect_timeout(&server, QUERY_TIMEOUT)?;
        stream.set_read_timeout(Some(QUERY_TIMEOUT))?;
        let mut framed = u16::try_from(query.len())?.to_be_bytes().to_vec();
        framed.extend_from_slice(&query);
        stream.write_all(&framed)?;
        let mut len = [0u8; 2];
        stream.read_exact(&mut len)?;
        let mut response = vec![0u8; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut response)?;
        response
    } else {
        let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
        socket.set_read_timeout(Some(QUERY_TIMEOUT))?;
        socket.send_to(&query, server)?;
        let mut buf = [0u8; 1500];
        let n = socket.recv(&mut buf)?;
        buf[..n].to_vec()
    };
    parse_a_response(&response, id)
}

/// The response code and the `A` records of a DNS response to query `id`.
fn parse_a_response(msg: &[u8], id: u16) -> Result<(u8, Vec<Ipv4Addr>)> {
    let byte = |i: usize| msg.get(i).copied().context("truncated DNS response");
    let word = |i: usize| Ok::<_, anyhow::Error>(u16::from_be_bytes([byte(i)?, byte(i + 1)?]));
    ensure!(word(0)? == id, "response to another query");
    ensure!(byte(2)? & 0x80 != 0, "not a response");
    let rcode = byte(3)? & 0x0f;
    let (questions, answers) = (word(4)?, word(6)?);
    // A name: labels up to the root label or a compression pointer.
    let skip_name = |mut i: usize| -> Result<usize> {
        loop {
            let len = byte(i)?;
            if len & 0xc0 == 0xc0 {
                return Ok(i + 2);
            }
            if len == 0 {
                return Ok(i + 1);
            }
            i += 1 + usize::from(len);
        }
    };
    let mut at = 12;
    for _ in 0..questions {
        at = skip_name(at)? + 4;
    }
    let mut addresses = Vec::new();
    for _ in 0..answers {
        at = skip_name(at)?;
        let (kind, len) = (word(at)?, usize::from(word(at + 8)?));
        let data = at + 10;
        if kind == 1 && len == 4 {
            addresses.push(Ipv4Addr::new(
                byte(data)?,
                byte(data + 1)?,
                byte(data + 2)?,
                byte(data + 3)?,
            ));
        }
        at = data + len;
    }
    Ok((rcode, addresses))
}
