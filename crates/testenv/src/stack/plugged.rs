//! Pods with real packets and no container runtime: the pod object is created in the API
//! server, a network namespace is plugged through `rovn-cni` as kubelet would, and small
//! python3 programs serve (TCP and UDP, answering with the pod's name) and ask.

use std::path::Path;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::Pod;
use kube::api::PostParams;
use serde_json::Value;

use super::cluster::Cluster;
use super::cni::Attachment;
use crate::netns::Netns;
use crate::poll::eventually;
use crate::unique_name;

/// A TCP server answering every connection with its name, and a UDP one answering every
/// datagram with it; more TCP ports may follow the UDP one.
const SERVER: &str = r#"
import socket, sys, threading
name = sys.argv[1].encode()
def udp():
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("0.0.0.0", int(sys.argv[3])))
    while True:
        _, peer = u.recvfrom(100)
        u.sendto(name, peer)
def tcp(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(64)
    while True:
        c, _ = s.accept()
        c.sendall(name)
        c.close()
threading.Thread(target=udp, daemon=True).start()
for port in sys.argv[4:]:
    threading.Thread(target=tcp, args=(int(port),), daemon=True).start()
tcp(int(sys.argv[2]))
"#;

/// `count` requests (`tcp` or `udp`) to `ip:port`, one line each: the server's name,
/// `refused` (a TCP reset or an ICMP port unreachable) or `timeout`.
const CLIENT: &str = r#"
import socket, sys
proto, ip, port, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
for _ in range(count):
    try:
        if proto == "tcp":
            s = socket.create_connection((ip, port), timeout=1)
            print(s.recv(100).decode() or "empty")
            s.close()
        else:
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            u.settimeout(1)
            u.connect((ip, port))
            u.send(b"?")
            print(u.recv(100).decode())
            u.close()
    except ConnectionRefusedError:
        print("refused")
    except OSError:
        print("timeout")
"#;

/// The ports a plugged pod serves on.
#[derive(Clone, Debug)]
pub struct Serve {
    /// TCP ports (the first one always).
    pub tcp: Vec<i32>,
    /// The UDP port.
    pub udp: i32,
}

/// A server process in a network namespace (a pod's or a VM's), killed on drop.
#[derive(Debug)]
pub struct Server(std::process::Child);

impl Server {
    /// Starts the servers answering `name` on `serve`'s ports in `netns`.
    pub fn start(netns: &Netns, name: &str, serve: &Serve) -> Result<Self> {
        let mut command = std::process::Command::new("ip");
        command
            .args(["netns", "exec", netns.name(), "python3", "-c", SERVER, name])
            .arg(serve.tcp.first().context("no TCP port")?.to_string())
            .arg(serve.udp.to_string())
            .args(serve.tcp.iter().skip(1).map(i32::to_string));
        Ok(Self(command.spawn().context("starting the server")?))
    }
}

/// The answers to `count` requests from `netns` to `ip:port` over `proto`.
pub fn ask(netns: &Netns, proto: &str, ip: &str, port: i32, count: usize) -> Vec<String> {
    let out = netns
        .exec(&[
            "python3",
            "-c",
            CLIENT,
            proto,
            ip,
            &port.to_string(),
            &count.to_string(),
        ])
        .expect("client");
    out.lines().map(str::to_owned).collect()
}

/// Waits until `proto` requests from `netns` (named `who` in messages) to `ip:port` are
/// answered `answer` (a server's name, `refused` or `timeout`).
pub async fn wait_answer(netns: &Netns, who: &str, proto: &str, ip: &str, port: i32, answer: &str) {
    let what = format!("{proto} {ip}:{port} from {who} answered {answer}");
    eventually(&what, || async {
        let got = ask(netns, proto, ip, port, 1).pop().unwrap_or_default();
        if got == answer { Ok(()) } else { Err(got) }
    })
    .await;
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A pod plugged through rovn-cni, serving its name when asked to.
#[derive(Debug)]
pub struct PluggedPod {
    /// Pod name.
    pub name: String,
    /// Pod namespace.
    pub namespace: String,
    /// Its address.
    pub ip: String,
    /// Its network namespace.
    pub netns: Netns,
    _attachment: Attachment,
    _server: Option<Server>,
}

impl PluggedPod {
    /// Creates `pod` in `namespace` (the object as given: labels, container ports), plugs
    /// a network namespace for it through the CNI socket `socket` and starts its servers.
    pub async fn plug(
        cluster: &Cluster,
        socket: &Path,
        namespace: &str,
        pod: Pod,
        serve: Option<Serve>,
    ) -> Result<Self> {
        let name = pod.metadata.name.clone().context("the pod has no name")?;
        cluster
            .pods(namespace)
            .create(&PostParams::default(), &pod)
            .await
            .with_context(|| format!("creating pod {namespace}/{name}"))?;
        let netns = Netns::new()?;
        let attachment = Attachment {
            socket: socket.to_owned(),
            container_id: unique_name(&format!("plug-{name}")),
            netns: format!("/var/run/netns/{}", netns.name()),
            namespace: namespace.into(),
            pod: name.clone(),
        };
        let add = attachment.clone();
        let result: Value = tokio::task::spawn_blocking(move || add.add()).await??;
        let ip = result["ips"][0]["address"]
            .as_str()
            .and_then(|a| a.split('/').next())
            .context("no pod address in the CNI result")?
            .to_owned();
        let server = match serve {
            Some(serve) => Some(Server::start(&netns, &name, &serve)?),
            None => None,
        };
        Ok(Self {
            name,
            namespace: namespace.into(),
            ip,
            netns,
            _attachment: attachment,
            _server: server,
        })
    }

    /// The answers to `count` requests to `ip:port` over `proto`.
    pub fn ask(&self, proto: &str, ip: &str, port: i32, count: usize) -> Vec<String> {
        ask(&self.netns, proto, ip, port, count)
    }

    /// The one answer to a request to `ip:port`.
    pub fn ask_once(&self, proto: &str, ip: &str, port: i32) -> String {
        self.ask(proto, ip, port, 1).pop().unwrap_or_default()
    }

    /// Waits until `proto` requests to `ip:port` are answered `answer` (a server's
    /// name, `refused` or `timeout`).
    pub async fn wait_answer(&self, proto: &str, ip: &str, port: i32, answer: &str) {
        wait_answer(&self.netns, &self.name, proto, ip, port, answer).await;
    }
}
