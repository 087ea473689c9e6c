//! One OVN chassis: the local Open_vSwitch `ovsdb-server`, `ovs-vswitchd`
//! with the userspace datapath (inside its own network namespace, so several
//! chassis or environments never clash on the `br-int`/`ovs-netdev` taps),
//! and `ovn-controller` connected to SB.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, anyhow};

use super::process::{Daemon, DaemonSpec, run_tool};
use super::server::{Listeners, OvsdbServer};
use crate::netns::{Bridge, Netns};

const VSWITCH_SCHEMA: &str = "/usr/share/openvswitch/vswitch.ovsschema";
const INTEGRATION_BRIDGE: &str = "br-int";
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A running chassis; its daemons stop (controller first) on drop.
#[derive(Debug)]
pub(crate) struct Chassis {
    // Fields drop in order: clients before servers, the namespace last.
    controller: Daemon,
    vswitchd: Daemon,
    ovs: OvsdbServer,
    netns: Netns,
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
        sb_remote: &str,
        sb_has_chassis: impl Fn(&str) -> bool,
    ) -> Result<Self> {
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

        let netns = Netns::new()?;
        let mut vswitchd = Daemon::spawn(
            DaemonSpec::new("vswitchd", dir, "ip")
                .arg("netns")
                .arg("exec")
                .arg(netns.name())
                .arg("ovs-vswitchd")
                .arg(ovs.unix_remote())
                .standard_files(true),
        )?;
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
            netns: Some(self.netns.name().to_string()),
        }
    }

    /// The network namespace `ovs-vswitchd` runs in.
    pub fn netns(&self) -> &Netns {
        &self.netns
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
