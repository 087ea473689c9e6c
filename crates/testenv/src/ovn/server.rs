//! `ovsdb-server` instances: standalone databases with unix/tcp/ssl
//! listeners, and members of a RAFT cluster.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};

use crate::pki::TlsFiles;
use crate::poll::wait_until;
use crate::process::{Daemon, DaemonSpec, run_tool};

/// How long a server gets to answer after it is started.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// What an `ovsdb-server` listens on besides its unix socket.
#[derive(Clone, Debug, Default)]
pub(crate) struct Listeners {
    /// Listen on a free TCP port of 127.0.0.1.
    pub tcp: bool,
    /// Listen for TLS on a free port of 127.0.0.1 with these server files.
    pub ssl: Option<TlsFiles>,
}

/// One `ovsdb-server` process serving one database file.
#[derive(Debug)]
pub(crate) struct OvsdbServer {
    daemon: Daemon,
    name: String,
    dir: PathBuf,
    db_file: PathBuf,
    db_name: String,
    listeners: Listeners,
    tcp_port: Option<u16>,
    ssl_port: Option<u16>,
}

impl OvsdbServer {
    /// Creates `dir/<name>.db` from `schema` and serves it.
    pub fn start_standalone(
        name: &str,
        dir: &Path,
        schema: &str,
        db_name: &str,
        listeners: Listeners,
    ) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let db_file = dir.join(format!("{name}.db"));
        run_tool(
            dir,
            "ovsdb-tool",
            &["create".as_ref(), db_file.as_os_str(), schema.as_ref()],
        )?;
        Self::serve(name, dir, db_file, db_name, listeners)
    }

    /// Serves an existing database file (standalone or clustered) and waits
    /// until it answers on its unix socket.
    pub fn serve(
        name: &str,
        dir: &Path,
        db_file: PathBuf,
        db_name: &str,
        listeners: Listeners,
    ) -> Result<Self> {
        let mut server = Self {
            daemon: Daemon::spawn(Self::spec_for(name, dir, &db_file, &listeners, None, None))?,
            name: name.to_string(),
            dir: dir.to_path_buf(),
            db_file,
            db_name: db_name.to_string(),
            listeners,
            tcp_port: None,
            ssl_port: None,
        };
        server.wait_ready()?;
        if server.listeners.tcp {
            server.tcp_port = Some(server.add_listener("ptcp:0:127.0.0.1")?);
        }
        if server.listeners.ssl.is_some() {
            server.ssl_port = Some(server.add_listener("pssl:0:127.0.0.1")?);
        }
        Ok(server)
    }

    fn spec_for(
        name: &str,
        dir: &Path,
        db_file: &Path,
        listeners: &Listeners,
        tcp_port: Option<u16>,
        ssl_port: Option<u16>,
    ) -> DaemonSpec {
        let sock = dir.join(format!("{name}.sock"));
        let mut spec = DaemonSpec::new(name, dir, "ovsdb-server")
            .arg(db_file)
            .arg(format!("--remote=punix:{}", sock.display()))
            .standard_files(true);
        if let Some(port) = tcp_port {
            spec = spec.arg(format!("--remote=ptcp:{port}:127.0.0.1"));
        }
        if let Some(tls) = &listeners.ssl {
            for arg in tls.cli_args() {
                spec = spec.arg(arg);
            }
            if let Some(port) = ssl_port {
                spec = spec.arg(format!("--remote=pssl:{port}:127.0.0.1"));
            }
        }
        spec
    }

    /// Adds a listener on port 0 and returns the port the server bound,
    /// read from its log ("listening on port N").
    fn add_listener(&mut self, remote: &str) -> Result<u16> {
        let before = self.listening_ports().len();
        self.appctl(&["ovsdb-server/add-remote", remote])?;
        let log = self.log_file();
        wait_until(
            READY_TIMEOUT,
            &format!("{} listening on {remote}", self.name),
            || Self::ports_in_log(&log).get(before).copied(),
        )
        .map_err(|e| anyhow!("{e}\n{}", self.daemon.log_tail()))
    }

    fn listening_ports(&self) -> Vec<u16> {
        Self::ports_in_log(&self.log_file())
    }

    /// The server's `--log-file`.
    fn log_file(&self) -> PathBuf {
        self.dir.join(format!("{}.log", self.name))
    }

    fn ports_in_log(log: &Path) -> Vec<u16> {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        text.lines()
            .filter_map(|line| line.split("listening on port ").nth(1))
            .filter_map(|port| port.trim().parse().ok())
            .collect()
    }

    /// Waits until the server lists its database on the unix socket.
    fn wait_ready(&mut self) -> Result<()> {
        let remote = self.unix_remote();
        let what = format!("{} serving {} on {remote}", self.name, self.db_name);
        let (dir, db_name) = (&self.dir, &self.db_name);
        self.daemon.wait_ready(READY_TIMEOUT, &what, || {
            let dbs = run_tool(dir, "ovsdb-client", &["--timeout=2", "list-dbs", &remote]).ok()?;
            dbs.lines().any(|l| l == db_name).then_some(())
        })
    }

    /// The name of this server ("nb", "nb2", "sb", ...).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `unix:<dir>/<name>.sock`.
    pub fn unix_remote(&self) -> String {
        format!(
            "unix:{}",
            self.dir.join(format!("{}.sock", self.name)).display()
        )
    }

    /// `tcp:127.0.0.1:<port>` when the server has a TCP listener.
    pub fn tcp_remote(&self) -> Option<String> {
        self.tcp_port.map(|p| format!("tcp:127.0.0.1:{p}"))
    }

    /// `ssl:127.0.0.1:<port>` when the server has a TLS listener.
    pub fn ssl_remote(&self) -> Option<String> {
        self.ssl_port.map(|p| format!("ssl:127.0.0.1:{p}"))
    }

    /// The `--unixctl` socket of the server.
    pub fn ctl_path(&self) -> PathBuf {
        self.daemon.spec().ctl_path()
    }

    /// The pid of the running server.
    pub fn pid(&self) -> Option<u32> {
        self.daemon.pid()
    }

    /// Runs `ovs-appctl -t <ctl> ARGS`.
    pub fn appctl(&self, args: &[&str]) -> Result<String> {
        let target = self.ctl_path();
        let mut argv = vec![
            "--timeout=10".to_string(),
            "-t".to_string(),
            target.display().to_string(),
        ];
        argv.extend(args.iter().map(|a| a.to_string()));
        run_tool(&self.dir, "ovs-appctl", &argv)
    }

    /// Kills the server with SIGKILL (the database file stays).
    pub fn kill(&mut self) {
        self.daemon.kill();
    }

    /// Stops the server with SIGTERM (the database file stays).
    pub fn stop(&mut self) {
        self.daemon.stop();
    }

    /// Starts the stopped server again on the same database, sockets and
    /// ports, and waits until it answers.
    pub fn restart(&mut self) -> Result<()> {
        self.daemon.stop();
        let spec = Self::spec_for(
            &self.name,
            &self.dir,
            &self.db_file,
            &self.listeners,
            self.tcp_port,
            self.ssl_port,
        );
        self.daemon = Daemon::spawn(spec)?;
        self.wait_ready()
            .with_context(|| format!("restarting {}", self.name))
    }

    /// This member's view of the RAFT cluster (`cluster/status DB`).
    pub fn cluster_status(&self) -> Result<String> {
        self.appctl(&["cluster/status", &self.db_name])
    }
}

/// A 3-member (or n-member) RAFT cluster of one database on unix sockets.
#[derive(Debug)]
pub(crate) struct OvsdbCluster {
    members: Vec<OvsdbServer>,
}

impl OvsdbCluster {
    /// Creates the cluster with `ovsdb-tool create-cluster`/`join-cluster`,
    /// starts every member and waits until all are members and one leads.
    pub fn start(name: &str, dir: &Path, schema: &str, db_name: &str, size: usize) -> Result<Self> {
        if size == 0 {
            bail!("a cluster needs at least one member");
        }
        let mut members = Vec::with_capacity(size);
        let first_raft = format!("unix:{}", dir.join(format!("{name}1.raft")).display());
        for i in 1..=size {
            let member = format!("{name}{i}");
            let mdir = dir.join(&member);
            std::fs::create_dir_all(&mdir)?;
            let db_file = mdir.join(format!("{member}.db"));
            let raft = format!("unix:{}", dir.join(format!("{member}.raft")).display());
            let db = db_file.display().to_string();
            if i == 1 {
                run_tool(&mdir, "ovsdb-tool", &["create-cluster", &db, schema, &raft])?;
            } else {
                run_tool(
                    &mdir,
                    "ovsdb-tool",
                    &["join-cluster", &db, db_name, &raft, &first_raft],
                )?;
            }
            members.push(OvsdbServer::serve(
                &member,
                &mdir,
                db_file,
                db_name,
                Listeners::default(),
            )?);
        }
        let cluster = Self { members };
        for i in 0..size {
            cluster.wait_member(i)?;
        }
        cluster.wait_leader()?;
        Ok(cluster)
    }

    /// The members, in creation order.
    pub fn members(&self) -> &[OvsdbServer] {
        &self.members
    }

    /// A member by index.
    pub fn member_mut(&mut self, index: usize) -> Result<&mut OvsdbServer> {
        let n = self.members.len();
        self.members
            .get_mut(index)
            .ok_or_else(|| anyhow!("no cluster member {index} (cluster has {n})"))
    }

    fn wait_member(&self, index: usize) -> Result<()> {
        let member = &self.members[index];
        wait_until(
            READY_TIMEOUT,
            &format!("{} to join the cluster", member.name()),
            || {
                let status = member.cluster_status().ok()?;
                status
                    .lines()
                    .any(|l| l.trim() == "Status: cluster member")
                    .then_some(())
            },
        )
        .map_err(|e| anyhow!("{e}\n{}", member.daemon.log_tail()))
    }

    /// Index of the member that is currently leader, if any.
    pub fn leader(&self) -> Option<usize> {
        self.members.iter().position(|m| {
            m.pid().is_some()
                && m.cluster_status()
                    .map(|s| s.lines().any(|l| l.trim() == "Role: leader"))
                    .unwrap_or(false)
        })
    }

    /// Waits until some member is leader and returns its index.
    pub fn wait_leader(&self) -> Result<usize> {
        wait_until(READY_TIMEOUT, "a cluster leader", || self.leader())
    }

    /// Restarts member `index` on its database and waits until it is a
    /// cluster member again.
    pub fn restart_member(&mut self, index: usize) -> Result<()> {
        self.member_mut(index)?.restart()?;
        self.wait_member(index)
    }
}
