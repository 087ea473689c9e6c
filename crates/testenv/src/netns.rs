//! Pods and VMs as network namespaces: a named netns removed on drop, and a
//! workload whose `eth0` is a veth plugged into an OVS bridge with
//! `external_ids:iface-id=<logical port>`.

use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result};

use crate::process::run;

/// Distinguishes namespaces and interfaces made by one test process.
static NEXT_ID: AtomicU32 = AtomicU32::new(1);

fn unique_suffix() -> String {
    format!(
        "{:x}x{}",
        std::process::id(),
        NEXT_ID.fetch_add(1, Ordering::Relaxed)
    )
}

/// A network namespace made with `ip netns add`, deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates a namespace named `rovn-<pid>x<n>` with `lo` up.
    pub fn new() -> Result<Self> {
        let name = format!("rovn-{}", unique_suffix());
        run("ip", &["netns", "add", &name])?;
        let ns = Self { name };
        ns.exec(&["ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The name given to `ip netns`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip netns exec <name> ARGS` and returns its stdout; a non-zero
    /// exit is an error with stderr.
    pub fn exec(&self, args: &[&str]) -> Result<String> {
        let mut argv = vec!["netns", "exec", self.name.as_str()];
        argv.extend_from_slice(args);
        run("ip", &argv)
    }

    /// Whether `ip` answers one of up to `attempts` pings (`ping -n -c 1 -W 1`)
    /// sent from this namespace.
    pub fn ping_with_attempts(&self, ip: &str, attempts: u32) -> bool {
        (0..attempts).any(|_| {
            self.exec(&["ping", "-n", "-q", "-c", "1", "-W", "1", ip])
                .is_ok()
        })
    }

    /// Whether `ip` answers a ping from this namespace (up to 5 attempts of 1 s,
    /// enough for flows that are still being installed).
    pub fn ping(&self, ip: &str) -> bool {
        self.ping_with_attempts(ip, 5)
    }

    /// Whether a namespace of this name exists (`ip netns list`).
    pub fn exists(name: &str) -> bool {
        run("ip", &["netns", "list"])
            .map(|list| {
                list.lines()
                    .any(|l| l.split_whitespace().next() == Some(name))
            })
            .unwrap_or(false)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run("ip", &["netns", "del", &self.name]);
    }
}

/// An OVS bridge workloads are plugged into.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bridge {
    /// Bridge name (`br-int`).
    pub name: String,
    /// Remote of the Open_vSwitch database holding the bridge
    /// (`unix:/…/ovs.sock`).
    pub ovs_remote: String,
    /// Network namespace where the bridge's `ovs-vswitchd` runs (host ends of
    /// workload veths must live there); `None` for the initial namespace.
    pub netns: Option<String>,
}

/// The addressing of a workload's interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Nic {
    /// MAC address, e.g. `0a:00:00:00:00:01`.
    pub mac: String,
    /// Addresses with prefix length, e.g. `10.0.0.2/24`.
    pub addresses: Vec<String>,
    /// Default gateways (one per address family), e.g. `10.0.0.1`.
    pub gateways: Vec<String>,
    /// Interface MTU.
    pub mtu: u32,
}

impl Nic {
    /// One IPv4 (or IPv6) address, an optional gateway, MTU 1400.
    pub fn new(mac: &str, address: &str, gateway: Option<&str>) -> Self {
        Self {
            mac: mac.to_string(),
            addresses: vec![address.to_string()],
            gateways: gateway.map(str::to_string).into_iter().collect(),
            mtu: 1400,
        }
    }
}

/// A pod or VM: a namespace whose `eth0` is one end of a veth pair, the other
/// end plugged into an OVS bridge as the logical port `iface_id`. Dropping it
/// removes the OVS port and the namespace (and with it the veth pair).
#[derive(Debug)]
pub struct Workload {
    // Declared first: the OVS port is removed before the namespace.
    port: PluggedPort,
    netns: Netns,
}

/// The bridge port of a workload, deleted on drop.
#[derive(Debug)]
struct PluggedPort {
    bridge: Bridge,
    host_if: String,
}

impl Drop for PluggedPort {
    fn drop(&mut self) {
        let _ = run(
            "ovs-vsctl",
            &[
                &format!("--db={}", self.bridge.ovs_remote),
                "--timeout=5",
                "--if-exists",
                "del-port",
                &self.bridge.name,
                &self.host_if,
            ],
        );
        let _ = self.run_in_bridge_netns(&["ip", "link", "del", &self.host_if]);
    }
}

impl PluggedPort {
    /// Runs `cmd` in the bridge's namespace (where `ovs-vswitchd` runs).
    fn run_in_bridge_netns(&self, cmd: &[&str]) -> Result<String> {
        match &self.bridge.netns {
            Some(ns) => {
                let mut argv = vec!["netns", "exec", ns.as_str()];
                argv.extend_from_slice(cmd);
                run("ip", &argv)
            }
            None => run(cmd[0], &cmd[1..]),
        }
    }
}

impl Workload {
    /// Creates a namespace with `eth0` configured from `nic` (MAC, addresses,
    /// MTU, default routes, TX checksum offload off on both veth ends) and
    /// plugs the host end into `bridge` with `external_ids:iface-id=<iface_id>`.
    pub fn plug(bridge: &Bridge, iface_id: &str, nic: &Nic) -> Result<Self> {
        let netns = Netns::new()?;
        let host_if = format!("rv{}", unique_suffix());
        let mut link_add = vec!["link", "add", host_if.as_str()];
        if let Some(ns) = &bridge.netns {
            link_add.extend(["netns", ns.as_str()]);
        }
        link_add.extend([
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            netns.name(),
        ]);
        run("ip", &link_add).context("creating the veth pair")?;
        let workload = Self {
            port: PluggedPort {
                bridge: bridge.clone(),
                host_if,
            },
            netns,
        };
        workload.configure(iface_id, nic)?;
        Ok(workload)
    }

    fn configure(&self, iface_id: &str, nic: &Nic) -> Result<()> {
        let mtu = nic.mtu.to_string();
        let ns = &self.netns;
        ns.exec(&[
            "ip", "link", "set", "eth0", "address", &nic.mac, "mtu", &mtu,
        ])?;
        ns.exec(&["ethtool", "-K", "eth0", "tx", "off"])
            .context("turning TX checksum offload off on eth0")?;
        for address in &nic.addresses {
            ns.exec(&["ip", "addr", "add", address, "dev", "eth0"])?;
        }
        ns.exec(&["ip", "link", "set", "eth0", "up"])?;
        for gateway in &nic.gateways {
            ns.exec(&[
                "ip", "route", "add", "default", "via", gateway, "dev", "eth0",
            ])?;
        }

        let port = &self.port;
        let host_if = port.host_if.as_str();
        port.run_in_bridge_netns(&["ip", "link", "set", host_if, "mtu", &mtu, "up"])?;
        port.run_in_bridge_netns(&["ethtool", "-K", host_if, "tx", "off"])
            .context("turning TX checksum offload off on the host end")?;
        run(
            "ovs-vsctl",
            &[
                &format!("--db={}", port.bridge.ovs_remote),
                "--timeout=30",
                "add-port",
                &port.bridge.name,
                host_if,
                "--",
                "set",
                "Interface",
                host_if,
                &format!("external_ids:iface-id={iface_id}"),
            ],
        )
        .context("plugging the host end into the bridge")?;
        Ok(())
    }

    /// The workload's namespace.
    pub fn netns(&self) -> &Netns {
        &self.netns
    }

    /// The name of the host end of the veth (the OVS port name).
    pub fn host_if(&self) -> &str {
        &self.port.host_if
    }

    /// Runs a command inside the workload's namespace.
    pub fn exec(&self, args: &[&str]) -> Result<String> {
        self.netns.exec(args)
    }

    /// Whether `ip` answers a ping from this workload (bounded retries).
    pub fn ping(&self, ip: &str) -> bool {
        self.netns.ping(ip)
    }
}
