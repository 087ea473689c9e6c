//! Chassis set-up by `rovn-agent --ovn-sb`: on a fresh local Open_vSwitch database (no root
//! row, no bridge) the agent writes the OVN settings and `br-int` with our OVSDB client;
//! a real `ovs-vswitchd` and `ovn-controller` started on that database then register the
//! chassis in SB. A restart keeps the existing `system-id` and bridge.

use std::path::{Path, PathBuf};
use std::time::Duration;

use testenv::netns::Netns;
use testenv::ovn::OvnEnv;
use testenv::poll::wait_until;
use testenv::process::{Daemon, DaemonSpec, run};
use testenv::stack::AgentProcess;

/// How long a daemon of this test gets to be ready (a hang guard).
const READY: Duration = Duration::from_secs(60);

fn vsctl(remote: &str, args: &[&str]) -> String {
    let db = format!("--db={remote}");
    let mut argv = vec![db.as_str(), "--timeout=30"];
    argv.extend_from_slice(args);
    run("ovs-vsctl", &argv)
        .unwrap_or_else(|e| panic!("{e:#}"))
        .trim()
        .to_owned()
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
    run(
        "ovsdb-tool",
        &[
            "create",
            db.to_str().unwrap(),
            "/usr/share/openvswitch/vswitch.ovsschema",
        ],
    )
    .expect("ovsdb-tool create");
    let socket = dir.join("ovs.sock");
    let remote = format!("unix:{}", socket.display());
    let mut ovsdb = Daemon::spawn(
        DaemonSpec::new("ovsdb-server", dir, "ovsdb-server")
            .arg(&db)
            .arg(format!("--remote=punix:{}", socket.display()))
            .standard_files(true),
    )
    .unwrap();
    ovsdb
        .wait_ready(READY, "ovsdb-server's socket", || socket.exists())
        .unwrap();
    // A fresh database: not even the root row (ovs-vsctl would refuse to work on it).
    let rows = run(
        "ovsdb-client",
        &[
            "transact",
            &remote,
            r#"["Open_vSwitch",{"op":"select","table":"Open_vSwitch","where":[]}]"#,
        ],
    )
    .expect("ovsdb-client transact");
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
    let _vswitchd = Daemon::spawn(
        DaemonSpec::new("ovs-vswitchd", dir, "ip")
            .args(["netns", "exec", netns.name(), "ovs-vswitchd", &remote])
            .standard_files(true),
    )
    .unwrap();
    let _controller = Daemon::spawn(
        DaemonSpec::new("ovn-controller", dir, "ovn-controller")
            .arg(&remote)
            .standard_files(false),
    )
    .unwrap();
    let encap = wait_until(READY, "chassis node-x in SB", || {
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
