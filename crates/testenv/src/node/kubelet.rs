//! kubelet's configuration and the host state it changes: its cgroup root (created here, per
//! environment, so that two nodes never share `/kubepods`) and the kernel tunables it sets
//! at start (saved before, restored after).

use std::net::{IpAddr, Ipv4Addr, ToSocketAddrs, UdpSocket};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::json;

use super::cleanup;
use super::dns::{CLUSTER_DNS_IP, CLUSTER_DOMAIN};

/// The kernel tunables kubelet sets when they differ from what it wants
/// (`protectKernelDefaults: false`, the default): vm.overcommit_memory=1, vm.panic_on_oom=0,
/// kernel.panic=10, kernel.panic_on_oops=1, kernel.keys.root_maxkeys/root_maxbytes.
const KUBELET_SYSCTLS: &[&str] = &[
    "/proc/sys/vm/overcommit_memory",
    "/proc/sys/vm/panic_on_oom",
    "/proc/sys/kernel/panic",
    "/proc/sys/kernel/panic_on_oops",
    "/proc/sys/kernel/keys/root_maxkeys",
    "/proc/sys/kernel/keys/root_maxbytes",
];

/// The values of the tunables kubelet may change, to put back once it has stopped.
#[derive(Debug, Default)]
pub(crate) struct SavedSysctls(Vec<(PathBuf, String)>);

impl SavedSysctls {
    pub fn save() -> Self {
        Self(
            KUBELET_SYSCTLS
                .iter()
                .filter_map(|p| {
                    let value = std::fs::read_to_string(p).ok()?;
                    Some((PathBuf::from(p), value.trim().to_owned()))
                })
                .collect(),
        )
    }

    /// Writes back every saved value that changed.
    pub fn restore(&self) {
        for (path, value) in &self.0 {
            let now = std::fs::read_to_string(path).unwrap_or_default();
            if now.trim() != value {
                let _ = std::fs::write(path, value);
            }
        }
    }
}

/// Creates cgroup `relative` in every cgroup v1 hierarchy (kubelet refuses a `cgroupRoot`
/// that does not exist), with the parent's CPUs and memory nodes in `cpuset`.
pub(crate) fn create_cgroup_root(relative: &str) -> Result<()> {
    let hierarchies = cleanup::cgroup_hierarchies();
    if hierarchies.is_empty() {
        bail!(
            "no cgroup hierarchy under {}: kubelet needs cgroups",
            cleanup::CGROUP_ROOT
        );
    }
    for hierarchy in hierarchies {
        let dir = hierarchy.join(relative.trim_start_matches('/'));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        for file in ["cpuset.cpus", "cpuset.mems"] {
            let parent = hierarchy.join(file);
            if parent.is_file() {
                let value = std::fs::read_to_string(&parent)
                    .with_context(|| format!("reading {}", parent.display()))?;
                let target = dir.join(file);
                std::fs::write(&target, value.trim())
                    .with_context(|| format!("writing {}", target.display()))?;
            }
        }
    }
    Ok(())
}

/// The loopback IPv4 address `name` resolves to, if any (the API server reaches kubelet by
/// the node's `Hostname` address, i.e. its name, first).
pub(crate) fn loopback_address_of(name: &str) -> Option<Ipv4Addr> {
    (name, 0)
        .to_socket_addrs()
        .ok()?
        .filter_map(|a| match a.ip() {
            IpAddr::V4(ip) if ip.is_loopback() => Some(ip),
            _ => None,
        })
        .next()
}

/// The address this machine sends from by its default route (kubelet refuses a loopback
/// `--node-ip`: "nodeIP can't be loopback address"). Connecting a UDP socket sends nothing.
pub(crate) fn host_address() -> Result<Ipv4Addr> {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).context("binding a UDP socket")?;
    socket
        .connect((Ipv4Addr::new(203, 0, 113, 1), 9))
        .context("no IPv4 default route: pass the node address with NodeEnvBuilder::node_ip")?;
    match socket.local_addr()?.ip() {
        IpAddr::V4(ip) if !ip.is_loopback() && !ip.is_unspecified() => Ok(ip),
        other => bail!("the default route's source address {other} cannot be a node address"),
    }
}

/// This machine's host name when it resolves to a loopback address (a realistic node name
/// that keeps kubelet's traffic on loopback), else `localhost`.
pub(crate) fn default_node_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_ascii_lowercase())
        .unwrap_or_default();
    if is_dns_subdomain(&host) && loopback_address_of(&host).is_some() {
        host
    } else {
        "localhost".to_owned()
    }
}

/// Whether `name` is a valid node name (an RFC 1123 DNS subdomain).
pub(crate) fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Where kubelet listens and what it runs on.
pub(crate) struct KubeletSettings<'a> {
    pub address: Ipv4Addr,
    pub port: u16,
    pub healthz_port: u16,
    pub runtime_endpoint: &'a str,
    pub cgroup_root: &'a str,
    pub pod_logs_dir: &'a Path,
}

/// The KubeletConfiguration (JSON, which kubelet reads as YAML).
///
/// - cgroup v1 without systemd: `cgroupfs` driver, `failCgroupV1: false`; no swap check.
/// - Only on loopback: the API server (without a kubelet client certificate) connects
///   anonymously for `exec`/`logs`, so anonymous requests are allowed; the read-only port
///   is off.
/// - Nothing outside the environment: no iptables chains, pod logs in our directory, our
///   own cgroup root.
/// - A small test machine must not evict or garbage-collect the locally imported images
///   (there is no registry to pull them again from).
/// - Pods (not hostNetwork ones) get the cluster DNS as nameserver: the `kube-dns` Service's
///   ClusterIP and the search path of `cluster.local` (served once
///   `NodeEnv::deploy_cluster_dns` ran).
pub(crate) fn kubelet_config(s: &KubeletSettings<'_>) -> String {
    let config = json!({
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": s.address.to_string(),
        "port": s.port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": s.healthz_port,
        "authentication": {
            "anonymous": {"enabled": true},
            "webhook": {"enabled": false},
        },
        "authorization": {"mode": "AlwaysAllow"},
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": s.cgroup_root,
        "failCgroupV1": false,
        "failSwapOn": false,
        "containerRuntimeEndpoint": s.runtime_endpoint,
        "makeIPTablesUtilChains": false,
        "podLogsDir": s.pod_logs_dir.display().to_string(),
        "evictionHard": {
            "memory.available": "1%",
            "nodefs.available": "1%",
            "nodefs.inodesFree": "1%",
            "imagefs.available": "1%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": false,
        "registerNode": true,
        "shutdownGracePeriod": "0s",
        "clusterDNS": [CLUSTER_DNS_IP.to_string()],
        "clusterDomain": CLUSTER_DOMAIN,
    });
    serde_json::to_string_pretty(&config).expect("the kubelet configuration serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names() {
        assert!(is_dns_subdomain("vm"));
        assert!(is_dns_subdomain("node-1.example"));
        assert!(!is_dns_subdomain("Node"));
        assert!(!is_dns_subdomain("-a"));
        assert!(!is_dns_subdomain(""));
        assert_eq!(
            loopback_address_of("localhost"),
            Some(Ipv4Addr::LOCALHOST),
            "localhost resolves to 127.0.0.1"
        );
    }
}
