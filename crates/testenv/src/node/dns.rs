//! Cluster DNS on the test node: CoreDNS (the image of `hack/images.sh`, built by
//! `hack/coredns-bins.sh`) as the `kube-system/coredns` Deployment behind the `kube-dns`
//! Service, [`CLUSTER_DNS_IP`], which kubelet gives every pod as its nameserver
//! (`clusterDNS`, `clusterDomain: cluster.local`).
//!
//! CoreDNS runs with `hostNetwork: true` and `dnsPolicy: Default`, bound (`bind` plugin) to
//! the node's InternalIP only, port 53 UDP and TCP: pods of every VPC reach it through their
//! node, whatever their VPC's isolation, and it reaches the API server on the host without
//! kube-proxy (there is none here). Its `kubernetes` plugin answers for `cluster.local`,
//! `in-addr.arpa` and `ip6.arpa` and nothing else (no upstream: no `forward`); it talks to
//! the API server through a kubeconfig from its ConfigMap naming the server's host URL and
//! the pod's own ServiceAccount token and CA (mounted by the API server's ServiceAccount
//! admission). Its `health` and `ready` endpoints listen on free ports of the node's address,
//! probed by kubelet. The `kube-dns` Service (53/UDP, 53/TCP) selects it, so its EndpointSlice
//! names the node's address: rovn balances the ClusterIP to it.
//!
//! One cluster DNS per machine at a time: port 53 of the node's address must be free, which
//! [`NodeEnv::deploy_cluster_dns`] checks first.

use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// The ClusterIP of the `kube-dns` Service: kubelet's `clusterDNS`, every pod's nameserver
/// (inside the API server's service range 10.96.0.0/16).
pub const CLUSTER_DNS_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);

/// kubelet's `clusterDomain`: pods search `<namespace>.svc.cluster.local`, `svc.cluster.local`
/// and `cluster.local`.
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// The namespace of CoreDNS and the `kube-dns` Service.
pub const DNS_NAMESPACE: &str = "kube-system";

/// The name of the Deployment, ConfigMap, ServiceAccount (and `system:coredns` RBAC).
pub(super) const COREDNS: &str = "coredns";

/// The Service's name.
pub const DNS_SERVICE: &str = "kube-dns";

/// The label selecting CoreDNS's pods.
pub(super) const APP_LABEL: &str = "k8s-app=kube-dns";

/// The DNS port.
pub(super) const DNS_PORT: u16 = 53;

/// How long the CoreDNS pod gets to become Ready (a cold node on two cores).
pub(super) const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// Where kubelet mounts the pod's ServiceAccount token and the cluster CA.
const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The cluster DNS of a node, once [`NodeEnv::deploy_cluster_dns`] saw it Ready.
#[derive(Debug, Clone)]
pub struct ClusterDns {
    pod: String,
    server: SocketAddr,
    health_port: u16,
    ready_port: u16,
}

impl ClusterDns {
    pub(super) fn new(pod: String, server: SocketAddr, health_port: u16, ready_port: u16) -> Self {
        Self {
            pod,
            server,
            health_port,
            ready_port,
        }
    }

    /// The `kube-dns` Service's ClusterIP, [`CLUSTER_DNS_IP`] (pods' nameserver).
    pub fn service_ip(&self) -> Ipv4Addr {
        CLUSTER_DNS_IP
    }

    /// Where CoreDNS itself listens, UDP and TCP: the node's InternalIP, port 53 (the
    /// `kube-dns` Service's endpoint).
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// The CoreDNS pod's name (in [`DNS_NAMESPACE`]), e.g. for `kubectl logs`.
    pub fn pod(&self) -> &str {
        &self.pod
    }

    /// The port of CoreDNS's `/health` on the node's address (kubelet's liveness probe).
    pub fn health_port(&self) -> u16 {
        self.health_port
    }

    /// The port of CoreDNS's `/ready` on the node's address (kubelet's readiness probe: Ready
    /// once the `kubernetes` plugin has listed Services and EndpointSlices).
    pub fn ready_port(&self) -> u16 {
        self.ready_port
    }
}

/// The name of the Running CoreDNS pod whose containers are all ready, from the output of
/// `kubectl get pods -o jsonpath=`[`READY_TEMPLATE`]; `Err` with what the pods show instead.
pub(super) fn ready_pod(out: &str) -> Result<String, String> {
    out.lines()
        .find_map(|line| {
            let mut words = line.split_whitespace();
            let name = words.next()?;
            let ready = words.next() == Some("Running") && {
                let flags: Vec<_> = words.collect();
                !flags.is_empty() && flags.iter().all(|w| *w == "true")
            };
            ready.then(|| name.to_owned())
        })
        .ok_or_else(|| out.trim().to_owned())
}

/// The jsonpath template [`ready_pod`] reads: name, phase and containers' readiness per pod.
pub(super) const READY_TEMPLATE: &str = "{range .items[*]}{.metadata.name} {.status.phase} \
                    {.status.containerStatuses[*].ready}{\"\\n\"}{end}";

/// Fails with what holds it when `ip:port` cannot be bound for UDP or TCP.
pub(super) fn check_port_free(ip: Ipv4Addr, port: u16) -> Result<()> {
    let udp = UdpSocket::bind((ip, port)).map(drop);
    let tcp = TcpListener::bind((ip, port)).map(drop);
    for (proto, result) in [("UDP", udp), ("TCP", tcp)] {
        match result {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AddrInUse => {
                let holders = crate::process::run("ss", &["-Hltunp", &format!("sport = :{port}")])
                    .unwrap_or_else(|e| format!("(ss failed: {e:#})"));
                bail!(
                    "port {port}/{proto} of the node address {ip} is in use, so CoreDNS cannot \
                     serve the cluster DNS there (another DNS server, e.g. dnsmasq bound to all \
                     addresses, or another node's cluster DNS): stop it. Listening on port \
                     {port}:\n{}",
                    holders.trim()
                );
            }
            Err(e) => {
                return Err(e).with_context(|| format!("binding {ip}:{port}/{proto} to check it"));
            }
        }
    }
    Ok(())
}

/// A TCP port free on `ip` when asked (CoreDNS binds it later).
pub(super) fn free_port_on(ip: Ipv4Addr) -> Result<u16> {
    let listener = TcpListener::bind((ip, 0)).with_context(|| format!("finding a port on {ip}"))?;
    Ok(listener.local_addr()?.port())
}

/// What differs from node to node in the manifests.
pub(super) struct Settings<'a> {
    pub(super) image: &'a str,
    pub(super) node_ip: Ipv4Addr,
    pub(super) api_server: &'a str,
    pub(super) health_port: u16,
    pub(super) ready_port: u16,
}

/// The Corefile: one server block for every zone, on the node's address only.
fn corefile(s: &Settings<'_>) -> String {
    format!(
        ".:{DNS_PORT} {{
    bind {ip}
    errors
    log
    health {ip}:{health}
    ready {ip}:{ready}
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig /etc/coredns/kubeconfig
        pods insecure
        ttl 30
    }}
    cache 30
    loadbalance
    reload
}}
",
        ip = s.node_ip,
        health = s.health_port,
        ready = s.ready_port,
    )
}

/// CoreDNS's kubeconfig: the API server's host URL, the pod's ServiceAccount token and CA.
fn kubeconfig(s: &Settings<'_>) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
  - name: node
    cluster:
      server: {server}
      certificate-authority: {SERVICE_ACCOUNT_DIR}/ca.crt
users:
  - name: coredns
    user:
      tokenFile: {SERVICE_ACCOUNT_DIR}/token
contexts:
  - name: node
    context:
      cluster: node
      user: coredns
current-context: node
",
        server = s.api_server,
    )
}

/// Indents every line of `text` by `n` spaces (a YAML block scalar's content).
fn indent(text: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    text.lines()
        .map(|l| format!("{pad}{l}\n"))
        .collect::<String>()
}

/// Every object of the cluster DNS, one YAML stream.
pub(super) fn manifest(s: &Settings<'_>) -> String {
    format!(
        r#"apiVersion: v1
kind: ServiceAccount
metadata:
  name: {COREDNS}
  namespace: {DNS_NAMESPACE}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: system:{COREDNS}
rules:
  - apiGroups: [""]
    resources: [services, pods, namespaces]
    verbs: [list, watch]
  - apiGroups: [discovery.k8s.io]
    resources: [endpointslices]
    verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: system:{COREDNS}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: system:{COREDNS}
subjects:
  - kind: ServiceAccount
    name: {COREDNS}
    namespace: {DNS_NAMESPACE}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: {COREDNS}
  namespace: {DNS_NAMESPACE}
data:
  Corefile: |
{corefile}  kubeconfig: |
{kubeconfig}---
apiVersion: v1
kind: Service
metadata:
  name: {DNS_SERVICE}
  namespace: {DNS_NAMESPACE}
  labels:
    k8s-app: kube-dns
    kubernetes.io/name: CoreDNS
spec:
  selector:
    k8s-app: kube-dns
  clusterIP: {CLUSTER_DNS_IP}
  ports:
    - name: dns
      port: {DNS_PORT}
      protocol: UDP
      targetPort: {DNS_PORT}
    - name: dns-tcp
      port: {DNS_PORT}
      protocol: TCP
      targetPort: {DNS_PORT}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {COREDNS}
  namespace: {DNS_NAMESPACE}
  labels:
    k8s-app: kube-dns
spec:
  replicas: 1
  # Port 53 of the node: a new pod can only start once the old one is gone.
  strategy:
    type: Recreate
  selector:
    matchLabels:
      k8s-app: kube-dns
  template:
    metadata:
      labels:
        k8s-app: kube-dns
    spec:
      serviceAccountName: {COREDNS}
      priorityClassName: system-cluster-critical
      hostNetwork: true
      dnsPolicy: Default
      terminationGracePeriodSeconds: 2
      nodeSelector:
        kubernetes.io/os: linux
      tolerations:
        - key: node.kubernetes.io/not-ready
          operator: Exists
        - key: CriticalAddonsOnly
          operator: Exists
      containers:
        - name: coredns
          image: {image}
          imagePullPolicy: Never
          args: ["-conf", "/etc/coredns/Corefile"]
          ports:
            - name: dns
              containerPort: {DNS_PORT}
              protocol: UDP
            - name: dns-tcp
              containerPort: {DNS_PORT}
              protocol: TCP
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities:
              drop: [ALL]
              add: [NET_BIND_SERVICE]
          livenessProbe:
            httpGet:
              path: /health
              port: {health}
            periodSeconds: 10
            failureThreshold: 5
          readinessProbe:
            httpGet:
              path: /ready
              port: {ready}
            periodSeconds: 1
          volumeMounts:
            - name: config
              mountPath: /etc/coredns
              readOnly: true
      volumes:
        - name: config
          configMap:
            name: {COREDNS}
"#,
        corefile = indent(&corefile(s), 4),
        kubeconfig = indent(&kubeconfig(s), 4),
        image = s.image,
        health = s.health_port,
        ready = s.ready_port,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_parses_and_names_the_node() {
        let s = Settings {
            image: "rovn.local/coredns:1.14.1",
            node_ip: Ipv4Addr::new(192, 0, 2, 2),
            api_server: "https://127.0.0.1:6443",
            health_port: 8080,
            ready_port: 8181,
        };
        let text = manifest(&s);
        let docs: Vec<&str> = text.split("\n---\n").collect();
        assert_eq!(docs.len(), 6, "{text}");
        let configmap = docs[3];
        assert!(configmap.contains("    bind 192.0.2.2\n"), "{configmap}");
        assert!(
            configmap.contains("    kubernetes cluster.local in-addr.arpa ip6.arpa {\n"),
            "{configmap}"
        );
        assert!(
            configmap.contains("      server: https://127.0.0.1:6443\n"),
            "{configmap}"
        );
        assert!(docs[4].contains("clusterIP: 10.96.0.10"), "{}", docs[4]);
        assert!(docs[5].contains("port: 8181"), "{}", docs[5]);
    }

    #[test]
    fn a_port_in_use_is_reported() {
        let held = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = held.local_addr().unwrap().port();
        let err = check_port_free(Ipv4Addr::LOCALHOST, port).unwrap_err();
        assert!(
            format!("{err:#}").contains(&format!(
                "port {port}/UDP of the node address 127.0.0.1 is in use"
            )),
            "{err:#}"
        );
        drop(held);
        let free = free_port_on(Ipv4Addr::LOCALHOST).unwrap();
        check_port_free(Ipv4Addr::LOCALHOST, free).unwrap();
    }
}
