//! One OVN chassis: the local Open_vSwitch `ovsdb-server`, `ovs-vswitchd`
//! with the userspace datapath, and `ovn-controller` connected to SB.
//!
//! `ovs-vswitchd` makes kernel taps named `br-int` and `ovs-netdev`, so two of
//! them clash in one network namespace. By default each chassis' vswitchd
//! runs in a namespace of its own; a chassis in the initial namespace (for
//! node agents that plug veths created there) holds a machine-wide lock for
//! its lifetime, so such chassis run one after the other.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use nix::fcntl::{Flock, FlockArg};

use super::server::{Listeners, OvsdbServer};
use crate::netns::{Bridge, Netns};
use crate::process::{Daemon, DaemonSpec, run, run_tool};

const VSWITCH_SCHEMA: &str = "/usr/share/openvswitch/vswitch.ovsschema";
const INTEGRATION_BRIDGE: &str = "br-int";
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Held by the chassis whose vswitchd runs in the initial network namespace.
const HOST_NETNS_LOCK: &str = "rovn-testenv-host-vswitchd.lock";

/// Where a chassis' `ovs-vswitchd` (and so `br-int`) lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Placement {
    /// A network namespace of its own.
    OwnNetns,
    /// The initial network namespace, one such chassis at a time.
    HostNetns,
}

/// A running chassis; its daemons stop (controller first) on drop.
#[derive(Debug)]
pub(crate) struct Chassis {
    // Fields drop in order: clients before servers, the namespace last.
    controller: Daemon,
    vswitchd: Daemon,
    ovs: OvsdbServer,
    netns: Option<Netns>,
    _host_lock: Option<Flock<File>>,
    name: String,
    dir: PathBuf,
}

impl Chassis {
    /// Starts a chassis named `name` (its `system-id`) in `dir`, pointed at
    /// `sb_remote`, and waits until it is registered in SB (checked with
    /// `sb_has_chassis`).
    pub fn start(
        name: &str,
        dir: &Path,
        placement: Placement,
        sb_remote: &str,
        sb_has_chassis: impl Fn(&str) -> bool,
    ) -> Result<Self> {
        let host_lock = match placement {
            Placement::HostNetns => Some(lock_host_netns()?),
            Placement::OwnNetns => None,
        };
        let ovs = OvsdbServer::start_standalone(
            "ovs",
            dir,
            VSWITCH_SCHEMA,
            "Open_vSwitch",
            Listeners::default(),
        )?;
        let vsctl = |args: &[&str]| -> Result<String> {
            let mut argv = vec![format!("--db={}", ovs.unix_remote()), "--timeout=30".into()];
            argv.extend(args.iter().map(|a| a.to_string()));
            run_tool(dir, "ovs-vsctl", &argv)
        };
        vsctl(&["--no-wait", "init"])?;
        vsctl(&[
            "--no-wait",
            "set",
            "Open_vSwitch",
            ".",
            &format!("external_ids:system-id={name}"),
            &format!("external_ids:ovn-remote={sb_remote}"),
            "external_ids:ovn-encap-type=geneve",
            "external_ids:ovn-encap-ip=127.0.0.1",
            "external_ids:ovn-bridge-datapath-type=netdev",
        ])?;
        vsctl(&[
            "--no-wait",
            "add-br",
            INTEGRATION_BRIDGE,
            "--",
            "set",
            "Bridge",
            INTEGRATION_BRIDGE,
            "datapath_type=netdev",
            "fail_mode=secure",
            "other_config:disable-in-band=true",
        ])?;

        let netns = match placement {
            Placement::OwnNetns => Some(Netns::new()?),
            Placement::HostNetns => None,
        };
        let spec = match &netns {
            Some(ns) => DaemonSpec::new("vswitchd", dir, "ip")
                .arg("netns")
                .arg("exec")
                .arg(ns.name())
                .arg("ovs-vswitchd"),
            None => DaemonSpec::new("vswitchd", dir, "ovs-vswitchd"),
        };
        let mut vswitchd = Daemon::spawn(spec.arg(ovs.unix_remote()).standard_files(true))?;
        let mgmt = dir.join(format!("{INTEGRATION_BRIDGE}.mgmt"));
        let ctl = vswitchd.spec().ctl_path().display().to_string();
        vswitchd.wait_ready(READY_TIMEOUT, "ovs-vswitchd to open br-int", || {
            let answers = || run_tool(dir, "ovs-appctl", &["-t", &ctl, "version"]).is_ok();
            (mgmt.exists() && answers()).then_some(())
        })?;

        let mut controller = Daemon::spawn(
            DaemonSpec::new("ovn-controller", dir, "ovn-controller")
                .arg(ovs.unix_remote())
                .standard_files(false),
        )?;
        controller.wait_ready(READY_TIMEOUT, "the chassis to appear in SB", || {
            sb_has_chassis(name).then_some(())
        })?;
        Ok(Self {
            controller,
            vswitchd,
            ovs,
            netns,
            _host_lock: host_lock,
            name: name.to_string(),
            dir: dir.to_path_buf(),
        })
    }

    /// The chassis name (`system-id`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `unix:` remote of the local Open_vSwitch database.
    pub fn ovs_remote(&self) -> String {
        self.ovs.unix_remote()
    }

    /// `br-int`, for plugging workloads.
    pub fn br_int(&self) -> Bridge {
        Bridge {
            name: INTEGRATION_BRIDGE.to_string(),
            ovs_remote: self.ovs.unix_remote(),
            netns: self.netns.as_ref().map(|ns| ns.name().to_string()),
        }
    }

    /// The network namespace `ovs-vswitchd` runs in (`None`: the initial one).
    pub fn netns(&self) -> Option<&Netns> {
        self.netns.as_ref()
    }

    /// The directory of the chassis daemons (`OVS_RUNDIR`/`OVN_RUNDIR`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Control sockets: Open_vSwitch ovsdb-server, vswitchd, ovn-controller
    /// (23.03 names it `ovn-controller.<pid>.ctl` in `OVN_RUNDIR`).
    pub fn ovs_ctl(&self) -> PathBuf {
        self.ovs.ctl_path()
    }

    /// The `--unixctl` socket of `ovs-vswitchd`.
    pub fn vswitchd_ctl(&self) -> PathBuf {
        self.vswitchd.spec().ctl_path()
    }

    /// The control socket of `ovn-controller`.
    pub fn controller_ctl(&self) -> Result<PathBuf> {
        let pid = self
            .controller
            .pid()
            .ok_or_else(|| anyhow!("ovn-controller is not running"))?;
        Ok(self.dir.join(format!("ovn-controller.{pid}.ctl")))
    }

    /// Pids of the chassis daemons that run.
    pub fn pids(&self) -> Vec<u32> {
        [self.ovs.pid(), self.vswitchd.pid(), self.controller.pid()]
            .into_iter()
            .flatten()
            .collect()
    }
}

impl Drop for Chassis {
    /// In the initial namespace the userspace datapath leaves persistent taps
    /// behind (`ovs-netdev` and one per internal interface such as `br-int`):
    /// they are deleted once vswitchd has stopped (a namespace of its own just
    /// vanishes). The fields then stop what still runs and release the lock.
    fn drop(&mut self) {
        self.controller.stop();
        let taps = if self.netns.is_none() {
            let internal = run_tool(
                &self.dir,
                "ovs-vsctl",
                &[
                    format!("--db={}", self.ovs.unix_remote()),
                    "--timeout=5".to_string(),
                    "--bare".to_string(),
                    "--columns=name".to_string(),
                    "find".to_string(),
                    "Interface".to_string(),
                    "type=internal".to_string(),
                ],
            )
            .unwrap_or_default();
            let mut taps: Vec<String> = internal.split_whitespace().map(str::to_string).collect();
            taps.push("ovs-netdev".to_string());
            taps
        } else {
            Vec::new()
        };
        self.vswitchd.stop();
        for tap in taps {
            if Path::new("/sys/class/net").join(&tap).exists() {
                let _ = run("ip", &["link", "del", &tap]);
            }
        }
    }
}

/// Waits for (and takes) the machine-wide lock of the chassis in the initial
/// network namespace.
fn lock_host_netns() -> Result<Flock<File>> {
    let path = std::env::temp_dir().join(HOST_NETNS_LOCK);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, errno)| anyhow!("locking {}: {errno}", path.display()))
}
