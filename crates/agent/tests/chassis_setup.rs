//! Chassis set-up by `rovn-agent --ovn-sb`: on a fresh local Open_vSwitch database (no root
//! row, no bridge) the agent writes the OVN settings and `br-int` with our OVSDB client;
//! a real `ovs-vswitchd` and `ovn-controller` started on that database then register the
//! chassis in SB. A restart keeps the existing `system-id` and bridge.

mod support;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::run;
use testenv::netns::Netns;
use testenv::ovn::{OvnEnv, wait_until};
use testenv::stack::AgentProcess;

/// A daemon started by this test, killed on drop.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `program args` with its run and log directories in `dir`.
fn daemon(dir: &Path, name: &str, program: &str, args: &[String]) -> Daemon {
    let child = Command::new(program)
        .args(args)
        .env("OVS_RUNDIR", dir)
        .env("OVS_LOGDIR", dir)
        .env("OVS_DBDIR", dir)
        .env("OVN_RUNDIR", dir)
        .env("OVN_LOGDIR", dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(dir.join(format!("{name}.stderr"))).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
    Daemon(child)
}

fn standard_args(dir: &Path, name: &str) -> Vec<String> {
    vec![
        format!("--pidfile={}", dir.join(format!("{name}.pid")).display()),
        format!("--log-file={}", dir.join(format!("{name}.log")).display()),
    ]
}

fn vsctl(remote: &str, args: &[&str]) -> String {
    let db = format!("--db={remote}");
    let mut argv = vec![db.as_str(), "--timeout=30"];
    argv.extend_from_slice(args);
    let (ok, out) = run("ovs-vsctl", &argv);
    assert!(ok, "ovs-vsctl {args:?} failed");
    out.trim().to_owned()
}

/// A kubeconfig for an API server the agent never needs to reach in this test (set-up
/// happens before any pod is read).
fn kubeconfig(dir: &Path) -> PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:9\n\
         contexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\n\
         users:\n- name: u\n  user:\n    token: unused\n",
    )
    .unwrap();
    path
}

fn agent_args(dir: &Path, remote: &str, sb: &str, node: &str, encap_ip: &str) -> Vec<String> {
    [
        "--kubeconfig",
        &kubeconfig(dir).display().to_string(),
        "--node-name",
        node,
        "--ovs-db",
        remote,
        "--ovn-sb",
        sb,
        "--encap-ip",
        encap_ip,
        "--datapath-type",
        "netdev",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

#[test]
fn sets_up_a_working_chassis_and_keeps_it_on_restart() {
    let env = OvnEnv::builder().northd().start().expect("NB, SB, northd");
    let sb = env.sb_remote().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let db = dir.join("conf.db");
    let (ok, _) = run(
        "ovsdb-tool",
        &[
            "create",
            db.to_str().unwrap(),
            "/usr/share/openvswitch/vswitch.ovsschema",
        ],
    );
    assert!(ok, "ovsdb-tool create failed");
    let socket = dir.join("ovs.sock");
    let remote = format!("unix:{}", socket.display());
    let mut args = vec![
        db.display().to_string(),
        format!("--remote=punix:{}", socket.display()),
        format!("--unixctl={}", dir.join("ovs.ctl").display()),
    ];
    args.extend(standard_args(dir, "ovsdb-server"));
    let _ovsdb = daemon(dir, "ovsdb-server", "ovsdb-server", &args);
    wait_until(Duration::from_secs(60), "ovsdb-server", || {
        socket.exists().then_some(())
    })
    .unwrap();
    // A fresh database: not even the root row (ovs-vsctl would refuse to work on it).
    let (ok, rows) = run(
        "ovsdb-client",
        &[
            "transact",
            &remote,
            r#"["Open_vSwitch",{"op":"select","table":"Open_vSwitch","where":[]}]"#,
        ],
    );
    assert!(ok);
    assert_eq!(rows.trim(), r#"[{"rows":[]}]"#);

    let agent_dir = dir.join("agent");
    std::fs::create_dir(&agent_dir).unwrap();
    let agent = AgentProcess::start(
        &agent_dir,
        &agent_args(dir, &remote, &sb, "node-x", "127.0.0.1"),
    )
    .expect("rovn-agent");
    let ids = vsctl(&remote, &["get", "Open_vSwitch", ".", "external_ids"]);
    for expected in [
        "system-id=node-x".to_owned(),
        format!("ovn-remote=\"{sb}\""),
        "ovn-encap-type=geneve".to_owned(),
        "ovn-encap-ip=\"127.0.0.1\"".to_owned(),
        "ovn-bridge-datapath-type=netdev".to_owned(),
    ] {
        assert!(ids.contains(&expected), "{expected} missing in {ids}");
    }
    assert_eq!(
        vsctl(
            &remote,
            &["get", "Bridge", "br-int", "fail_mode", "datapath_type"]
        ),
        "secure\nnetdev"
    );
    assert_eq!(vsctl(&remote, &["list-ports", "br-int"]), "");
    assert_eq!(
        vsctl(&remote, &["get", "Interface", "br-int", "type"]),
        "internal"
    );
    drop(agent);

    // The set-up is a working chassis: vswitchd (in a namespace of its own, for its taps)
    // and ovn-controller on it register in SB with the encap IP.
    let netns = Netns::new().unwrap();
    let mut args = vec![
        "netns".to_owned(),
        "exec".to_owned(),
        netns.name().to_owned(),
        "ovs-vswitchd".to_owned(),
        remote.clone(),
        format!("--unixctl={}", dir.join("vswitchd.ctl").display()),
    ];
    args.extend(standard_args(dir, "ovs-vswitchd"));
    let _vswitchd = daemon(dir, "ovs-vswitchd", "ip", &args);
    let mut args = vec![remote.clone()];
    args.extend(standard_args(dir, "ovn-controller"));
    let _controller = daemon(dir, "ovn-controller", "ovn-controller", &args);
    let encap = wait_until(Duration::from_secs(60), "chassis node-x in SB", || {
        let out = env
            .sbctl(&[
                "--bare",
                "--columns=ip",
                "find",
                "Encap",
                "chassis_name=node-x",
            ])
            .ok()?;
        let ip = out.trim().to_owned();
        (!ip.is_empty()).then_some(ip)
    })
    .unwrap();
    assert_eq!(encap, "127.0.0.1");

    // A restart with another node name keeps the chassis id and the bridge, and updates
    // the settings it owns.
    let agent = AgentProcess::start(
        &agent_dir,
        &agent_args(dir, &remote, &sb, "renamed", "127.0.0.2"),
    )
    .expect("rovn-agent");
    let ids = vsctl(&remote, &["get", "Open_vSwitch", ".", "external_ids"]);
    assert!(ids.contains("system-id=node-x"), "{ids}");
    assert!(ids.contains("ovn-encap-ip=\"127.0.0.2\""), "{ids}");
    assert_eq!(vsctl(&remote, &["list-br"]), "br-int");
    drop(agent);
}
