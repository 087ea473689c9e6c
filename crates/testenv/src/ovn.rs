//! Real OVN/OVS daemons for integration tests, each environment in its own
//! temporary directory.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! let env = testenv::ovn::OvnEnv::builder().nb_tcp().start()?;
//! env.nbctl(&["ls-add", "sw0"])?;
//! let remote = env.nb_remote(); // "unix:/tmp/.../nb.sock"
//! # let _ = remote; Ok(()) }
//! ```
//!
//! Everything is blocking (`std::process`), so it works from plain and from
//! tokio tests alike (in async tests call it from the test body or
//! `spawn_blocking`, it only blocks while starting, stopping or polling).
//! Daemons run with `OVS_RUNDIR`/`OVN_RUNDIR`/`OVS_DBDIR`/`OVS_LOGDIR` set to
//! their own directory and explicit `--pidfile`/`--log-file`/`--unixctl`;
//! dropping the environment stops exactly the processes it started.

mod chassis;
mod server;

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;
use tempfile::TempDir;

use crate::netns::{Bridge, Nic, Workload};
use crate::pki::Pki;
use crate::poll::wait_until;
use crate::process::{Daemon, DaemonSpec, run_tool};
use chassis::{Chassis, Placement};
use server::{Listeners, OvsdbCluster, OvsdbServer};

const NB_SCHEMA: &str = "/usr/share/ovn/ovn-nb.ovsschema";
const SB_SCHEMA: &str = "/usr/share/ovn/ovn-sb.ovsschema";
const NB_DB: &str = "OVN_Northbound";
const SB_DB: &str = "OVN_Southbound";

/// Time limit passed to the `--timeout` of every command-line tool call.
const TOOL_TIMEOUT: &str = "--timeout=30";

/// How long daemons get to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A daemon of the environment, for [`OvnEnv::appctl`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Component {
    /// The standalone NB `ovsdb-server`.
    Nb,
    /// NB cluster member by index (0-based).
    NbMember(usize),
    /// The SB `ovsdb-server`.
    Sb,
    /// `ovn-northd`.
    Northd,
    /// The chassis' Open_vSwitch `ovsdb-server`.
    OvsDb,
    /// The chassis' `ovs-vswitchd`.
    Vswitchd,
    /// The chassis' `ovn-controller`.
    Controller,
}

/// Which daemons an [`OvnEnv`] runs; see [`OvnEnv::builder`].
#[derive(Debug, Default)]
#[must_use]
pub struct OvnEnvBuilder {
    nb_tcp: bool,
    nb_ssl: bool,
    nb_cluster: Option<usize>,
    nb_schema: Option<String>,
    sb: bool,
    northd: bool,
    chassis: Option<String>,
    chassis_placement: Option<Placement>,
}

impl OvnEnvBuilder {
    /// The standalone NB server also listens on a free TCP port of 127.0.0.1.
    pub fn nb_tcp(mut self) -> Self {
        self.nb_tcp = true;
        self
    }

    /// The standalone NB server also listens for TLS on a free port of
    /// 127.0.0.1, with certificates from an `ovs-pki` PKI ([`OvnEnv::pki`]).
    pub fn nb_ssl(mut self) -> Self {
        self.nb_ssl = true;
        self
    }

    /// NB is a RAFT cluster of `members` servers on unix sockets instead of
    /// a standalone server.
    pub fn nb_cluster(mut self, members: usize) -> Self {
        self.nb_cluster = Some(members);
        self
    }

    /// NB's database is made from the schema file `path` instead of the installed
    /// `ovn-nb.ovsschema` (e.g. an older schema lacking a column).
    pub fn nb_schema(mut self, path: &Path) -> Self {
        self.nb_schema = Some(path.display().to_string());
        self
    }

    /// Also run the SB `ovsdb-server`.
    pub fn sb(mut self) -> Self {
        self.sb = true;
        self
    }

    /// Also run SB and `ovn-northd` connected to NB and SB.
    pub fn northd(mut self) -> Self {
        self.sb = true;
        self.northd = true;
        self
    }

    /// Also run a chassis named `name` (its `system-id`): the local
    /// Open_vSwitch `ovsdb-server`, `ovs-vswitchd` (userspace datapath, in its
    /// own network namespace) with `br-int`, and `ovn-controller`; implies SB
    /// and northd. Starting waits until the chassis is registered in SB.
    pub fn chassis(mut self, name: &str) -> Self {
        self.sb = true;
        self.northd = true;
        self.chassis = Some(name.to_string());
        self
    }

    /// Like [`chassis`](Self::chassis), but `ovs-vswitchd` and `br-int` live
    /// in the initial network namespace, where a node agent under test
    /// creates its veths. Only one such chassis runs on the machine at a
    /// time: starting waits for a lock the previous one holds until dropped.
    pub fn chassis_in_host_netns(mut self, name: &str) -> Self {
        self = self.chassis(name);
        self.chassis_placement = Some(Placement::HostNetns);
        self
    }

    /// Starts the daemons and waits until each is ready.
    pub fn start(self) -> Result<OvnEnv> {
        if self.nb_cluster.is_some() && (self.nb_tcp || self.nb_ssl) {
            bail!("tcp/ssl listeners are only available on a standalone NB server");
        }
        let dir = tempfile::Builder::new().prefix("rovn-ovn").tempdir()?;
        let pki = if self.nb_ssl {
            Some(Pki::create_in(&dir.path().join("pki"))?)
        } else {
            None
        };
        let nb_schema = self.nb_schema.as_deref().unwrap_or(NB_SCHEMA);
        let nb = match self.nb_cluster {
            Some(members) => Nb::Cluster(OvsdbCluster::start(
                "nb",
                &dir.path().join("nb"),
                nb_schema,
                NB_DB,
                members,
            )?),
            None => Nb::Standalone(Box::new(OvsdbServer::start_standalone(
                "nb",
                &dir.path().join("nb"),
                nb_schema,
                NB_DB,
                Listeners {
                    tcp: self.nb_tcp,
                    ssl: pki.as_ref().map(|p| p.server().clone()),
                },
            )?)),
        };
        let sb = if self.sb {
            Some(OvsdbServer::start_standalone(
                "sb",
                &dir.path().join("sb"),
                SB_SCHEMA,
                SB_DB,
                Listeners::default(),
            )?)
        } else {
            None
        };
        let mut env = OvnEnv {
            nb_remote: nb.remote(),
            nb: Mutex::new(nb),
            sb,
            northd: None,
            chassis: None,
            pki,
            dir,
        };
        if self.northd {
            env.northd = Some(Mutex::new(env.start_northd()?));
        }
        if let Some(name) = &self.chassis {
            let sb = env
                .sb_remote()
                .ok_or_else(|| anyhow!("a chassis needs SB"))?;
            let placement = self.chassis_placement.unwrap_or(Placement::OwnNetns);
            let dir = env.dir().join("chassis");
            let chassis = Chassis::start(name, &dir, placement, &sb, |name| {
                env.sbctl(&[
                    "--bare",
                    "--columns=name",
                    "find",
                    "Chassis",
                    &format!("name={name}"),
                ])
                .is_ok_and(|out| out.trim() == name)
            })?;
            env.chassis = Some(chassis);
        }
        Ok(env)
    }
}

/// The NB database: one server or a cluster.
#[derive(Debug)]
enum Nb {
    Standalone(Box<OvsdbServer>),
    Cluster(OvsdbCluster),
}

impl Nb {
    /// The remote clients use: the unix socket, or every member's socket
    /// comma-separated.
    fn remote(&self) -> String {
        match self {
            Nb::Standalone(s) => s.unix_remote(),
            Nb::Cluster(c) => c
                .members()
                .iter()
                .map(OvsdbServer::unix_remote)
                .collect::<Vec<_>>()
                .join(","),
        }
    }

    fn standalone(&mut self) -> Result<&mut OvsdbServer> {
        match self {
            Nb::Standalone(s) => Ok(s),
            Nb::Cluster(_) => bail!("NB is clustered, not standalone"),
        }
    }

    fn cluster(&mut self) -> Result<&mut OvsdbCluster> {
        match self {
            Nb::Cluster(c) => Ok(c),
            Nb::Standalone(_) => bail!("NB is standalone, not clustered"),
        }
    }
}

/// A set of real OVN daemons in a temporary directory, stopped on drop.
#[derive(Debug)]
pub struct OvnEnv {
    // Fields drop in order: clients of a database stop before it.
    chassis: Option<Chassis>,
    northd: Option<Mutex<Daemon>>,
    sb: Option<OvsdbServer>,
    nb: Mutex<Nb>,
    nb_remote: String,
    pki: Option<Pki>,
    // Declared last: removed after every daemon above has been stopped.
    dir: TempDir,
}

impl OvnEnv {
    /// A builder; with no options it runs a standalone NB on a unix socket.
    pub fn builder() -> OvnEnvBuilder {
        OvnEnvBuilder::default()
    }

    /// The temporary directory holding every daemon's files and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn nb(&self) -> MutexGuard<'_, Nb> {
        self.nb.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The NB remote over unix sockets: `unix:/…/nb.sock`, or for a cluster
    /// every member's socket separated by commas.
    pub fn nb_remote(&self) -> String {
        self.nb_remote.clone()
    }

    /// Each NB server's unix remote (one for a standalone server).
    pub fn nb_remotes(&self) -> Vec<String> {
        self.nb_remote.split(',').map(str::to_string).collect()
    }

    /// `tcp:127.0.0.1:PORT` of the standalone NB server, if built with
    /// [`OvnEnvBuilder::nb_tcp`].
    pub fn nb_tcp_remote(&self) -> Option<String> {
        self.nb().standalone().ok()?.tcp_remote()
    }

    /// `ssl:127.0.0.1:PORT` of the standalone NB server, if built with
    /// [`OvnEnvBuilder::nb_ssl`].
    pub fn nb_ssl_remote(&self) -> Option<String> {
        self.nb().standalone().ok()?.ssl_remote()
    }

    /// The PKI whose server certificate the NB TLS listener uses; its
    /// [`Pki::client`] files are accepted by the server.
    pub fn pki(&self) -> Option<&Pki> {
        self.pki.as_ref()
    }

    /// The SB remote (`unix:/…/sb.sock`), if SB runs.
    pub fn sb_remote(&self) -> Option<String> {
        self.sb.as_ref().map(OvsdbServer::unix_remote)
    }

    /// Pids of every daemon currently running.
    pub fn pids(&self) -> Vec<u32> {
        let mut pids = Vec::new();
        match &*self.nb() {
            Nb::Standalone(s) => pids.extend(s.pid()),
            Nb::Cluster(c) => pids.extend(c.members().iter().filter_map(OvsdbServer::pid)),
        }
        pids.extend(self.sb.as_ref().and_then(OvsdbServer::pid));
        if let Some(northd) = &self.northd {
            pids.extend(northd.lock().unwrap_or_else(|e| e.into_inner()).pid());
        }
        pids.extend(self.chassis.iter().flat_map(Chassis::pids));
        pids
    }

    /// Stops the standalone NB server (SIGTERM); its database stays.
    pub fn nb_stop(&self) -> Result<()> {
        self.nb().standalone()?.stop();
        Ok(())
    }

    /// Kills the standalone NB server (SIGKILL); its database stays.
    pub fn nb_kill(&self) -> Result<()> {
        self.nb().standalone()?.kill();
        Ok(())
    }

    /// (Re)starts the standalone NB server on the same database, socket and
    /// ports, waiting until it answers.
    pub fn nb_restart(&self) -> Result<()> {
        self.nb().standalone()?.restart()
    }

    /// Index of the NB cluster member that is leader now (waits for one).
    pub fn nb_leader(&self) -> Result<usize> {
        self.nb().cluster()?.wait_leader()
    }

    /// Kills NB cluster member `index` with SIGKILL.
    pub fn nb_kill_member(&self, index: usize) -> Result<()> {
        self.nb().cluster()?.member_mut(index)?.kill();
        Ok(())
    }

    /// Restarts NB cluster member `index` and waits until it rejoined.
    pub fn nb_restart_member(&self, index: usize) -> Result<()> {
        self.nb().cluster()?.restart_member(index)
    }

    /// Pid of NB cluster member `index`, if it runs.
    pub fn nb_member_pid(&self, index: usize) -> Result<Option<u32>> {
        Ok(self.nb().cluster()?.member_mut(index)?.pid())
    }

    /// Runs `ovn-nbctl --db=<NB remote> ARGS` (with `--leader-only` on a
    /// cluster) and returns its stdout.
    pub fn nbctl(&self, args: &[&str]) -> Result<String> {
        let mut argv = vec![format!("--db={}", self.nb_remote), TOOL_TIMEOUT.to_string()];
        if matches!(&*self.nb(), Nb::Cluster(_)) {
            argv.push("--leader-only".to_string());
        }
        argv.extend(args.iter().map(|a| a.to_string()));
        run_tool(self.dir(), "ovn-nbctl", &argv)
    }

    /// Runs `ovn-sbctl --db=<SB remote> ARGS` and returns its stdout.
    pub fn sbctl(&self, args: &[&str]) -> Result<String> {
        let sb = self
            .sb_remote()
            .ok_or_else(|| anyhow!("SB is not running"))?;
        let mut argv = vec![format!("--db={sb}"), TOOL_TIMEOUT.to_string()];
        argv.extend(args.iter().map(|a| a.to_string()));
        run_tool(self.dir(), "ovn-sbctl", &argv)
    }

    /// Runs `ovs-appctl -t <component's control socket> ARGS`.
    pub fn appctl(&self, component: Component, args: &[&str]) -> Result<String> {
        let target = match component {
            Component::Nb => self.nb().standalone()?.ctl_path(),
            Component::NbMember(i) => self.nb().cluster()?.member_mut(i)?.ctl_path(),
            Component::Sb => self
                .sb
                .as_ref()
                .ok_or_else(|| anyhow!("SB is not running"))?
                .ctl_path(),
            Component::Northd => self
                .northd
                .as_ref()
                .ok_or_else(|| anyhow!("northd is not running"))?
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .spec()
                .ctl_path(),
            Component::OvsDb => self.chassis()?.ovs_ctl(),
            Component::Vswitchd => self.chassis()?.vswitchd_ctl(),
            Component::Controller => self.chassis()?.controller_ctl()?,
        };
        let mut argv = vec![
            TOOL_TIMEOUT.to_string(),
            "-t".to_string(),
            target.display().to_string(),
        ];
        argv.extend(args.iter().map(|a| a.to_string()));
        run_tool(self.dir(), "ovs-appctl", &argv)
    }

    fn chassis(&self) -> Result<&Chassis> {
        self.chassis
            .as_ref()
            .ok_or_else(|| anyhow!("the environment has no chassis"))
    }

    /// The chassis name (`system-id`), if a chassis runs.
    pub fn chassis_name(&self) -> Option<&str> {
        self.chassis.as_ref().map(Chassis::name)
    }

    /// `unix:` remote of the chassis' local Open_vSwitch database.
    pub fn ovs_remote(&self) -> Result<String> {
        Ok(self.chassis()?.ovs_remote())
    }

    /// The name of the network namespace the chassis' `ovs-vswitchd` runs in
    /// (the host ends of workload veths must be moved there); `None` when it
    /// runs in the initial namespace.
    pub fn chassis_netns(&self) -> Result<Option<&str>> {
        Ok(self.chassis()?.netns().map(|ns| ns.name()))
    }

    /// The chassis' `br-int`, to plug workloads into.
    pub fn br_int(&self) -> Result<Bridge> {
        Ok(self.chassis()?.br_int())
    }

    /// Runs `ovs-vsctl --db=<local Open_vSwitch db> ARGS`.
    pub fn vsctl(&self, args: &[&str]) -> Result<String> {
        let chassis = self.chassis()?;
        let mut argv = vec![
            format!("--db={}", chassis.ovs_remote()),
            TOOL_TIMEOUT.to_string(),
        ];
        argv.extend(args.iter().map(|a| a.to_string()));
        run_tool(chassis.dir(), "ovs-vsctl", &argv)
    }

    /// The `external_ids` of the chassis' OVS Interface `name` (`ovs-vsctl --bare`
    /// form), when it exists.
    pub fn ovs_interface_external_ids(&self, name: &str) -> Result<Option<String>> {
        let out = self.vsctl(&[
            "--bare",
            "--columns=external_ids",
            "find",
            "Interface",
            &format!("name={name}"),
        ])?;
        let out = out.trim();
        Ok((!out.is_empty()).then(|| out.to_owned()))
    }

    /// Whether network interface `name` exists where the chassis' `ovs-vswitchd` runs
    /// (where the host ends of workload veths are).
    pub fn chassis_link_exists(&self, name: &str) -> Result<bool> {
        let mut argv = Vec::new();
        if let Some(netns) = self.chassis_netns()? {
            argv.extend(["-n", netns]);
        }
        argv.extend(["link", "show", name]);
        Ok(crate::process::run("ip", &argv).is_ok())
    }

    /// Creates a workload namespace configured from `nic` and plugs it into
    /// `br-int` as logical switch port `lsp` (see [`Workload::plug`]).
    pub fn plug(&self, lsp: &str, nic: &Nic) -> Result<Workload> {
        Workload::plug(&self.br_int()?, lsp, nic)
    }

    /// Waits until logical switch port `lsp` reports `up=true` in NB.
    pub fn wait_lsp_up(&self, lsp: &str) -> Result<()> {
        wait_until(READY_TIMEOUT, &format!("{lsp} up"), || {
            let up = self
                .nbctl(&["--if-exists", "get", "Logical_Switch_Port", lsp, "up"])
                .ok()?;
            (up.trim() == "true").then_some(())
        })
    }

    /// Every NB row in a deterministic text form: tables in name order, each
    /// row one JSON object with sorted keys, rows sorted. Two dumps are equal
    /// byte for byte exactly when the database content is equal.
    pub fn dump_nb(&self) -> Result<String> {
        let remote = match &mut *self.nb() {
            Nb::Standalone(s) => s.unix_remote(),
            Nb::Cluster(c) => {
                let leader = c.wait_leader()?;
                c.members()[leader].unix_remote()
            }
        };
        let raw = run_tool(
            self.dir(),
            "ovsdb-client",
            &[TOOL_TIMEOUT, "dump", "--format=json", &remote, NB_DB],
        )?;
        canonical_dump(&raw)
    }

    fn start_northd(&self) -> Result<Daemon> {
        let sb = self.sb_remote().ok_or_else(|| anyhow!("northd needs SB"))?;
        let dir = self.dir().join("northd");
        std::fs::create_dir_all(&dir)?;
        let spec = DaemonSpec::new("northd", &dir, "ovn-northd")
            .arg(format!("--ovnnb-db={}", self.nb_remote))
            .arg(format!("--ovnsb-db={sb}"))
            .standard_files(true);
        let mut northd = Daemon::spawn(spec)?;
        let ctl = northd.spec().ctl_path().display().to_string();
        northd.wait_ready(READY_TIMEOUT, "ovn-northd to become active", || {
            let status = run_tool(&dir, "ovs-appctl", &["-t", &ctl, "status"]).ok()?;
            status.contains("Status: active").then_some(())
        })?;
        Ok(northd)
    }
}

/// Turns `ovsdb-client dump --format=json` output (one JSON table per line)
/// into the sorted text form of [`OvnEnv::dump_nb`].
fn canonical_dump(raw: &str) -> Result<String> {
    let mut tables = Vec::new();
    for line in raw.lines().filter(|l| !l.trim().is_empty()) {
        let table: Value = serde_json::from_str(line).context("parsing ovsdb-client dump")?;
        let name = table["caption"]
            .as_str()
            .and_then(|c| c.strip_suffix(" table"))
            .ok_or_else(|| anyhow!("dump table without caption: {line}"))?
            .to_string();
        let headings: Vec<&str> = table["headings"]
            .as_array()
            .map(|h| h.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut rows: Vec<String> = table["data"]
            .as_array()
            .map(|rows| {
                rows.iter()
                    .filter_map(Value::as_array)
                    .map(|cells| {
                        let row: serde_json::Map<String, Value> = headings
                            .iter()
                            .map(|h| h.to_string())
                            .zip(cells.iter().cloned())
                            .collect();
                        Value::Object(row).to_string()
                    })
                    .collect()
            })
            .unwrap_or_default();
        rows.sort();
        tables.push((name, rows));
    }
    tables.sort();
    let mut out = String::new();
    for (name, rows) in tables {
        out.push_str(&name);
        out.push('\n');
        for row in rows {
            out.push_str("  ");
            out.push_str(&row);
            out.push('\n');
        }
    }
    Ok(out)
}
