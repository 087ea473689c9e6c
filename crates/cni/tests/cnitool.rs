//! `rovn-cni` driven by the reference CNI client `cnitool` (libcni) for ADD, CHECK, DEL and
//! STATUS, in a network namespace made with `ip netns add`, with the agent's socket served
//! by `protocol::serve`. Needs root and `ROVN_CNI_BINS` = the directory printed by
//! `hack/cni-bins.sh`.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};

use cni::protocol::AgentResponse;
use cni::{CniResult, Command, Interface, IpConfig};
use serde_json::json;
use support::TestAgent;

/// A named network namespace, deleted on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn create(name: &str) -> Self {
        // A leftover of an interrupted earlier run would make `add` fail.
        let _ = Process::new("ip")
            .args(["netns", "delete", name])
            .stderr(Stdio::null())
            .status();
        let status = Process::new("ip")
            .args(["netns", "add", name])
            .status()
            .expect("run ip");
        assert!(status.success(), "ip netns add {name} failed (root needed)");
        Netns {
            name: name.to_owned(),
        }
    }

    fn path(&self) -> PathBuf {
        Path::new("/var/run/netns").join(&self.name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Process::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
    }
}

fn cnitool(bins: &Path, netconf_dir: &Path, args: &[&str]) -> (bool, String, String) {
    let plugin_dir = Path::new(env!("CARGO_BIN_EXE_rovn-cni")).parent().unwrap();
    let output = Process::new(bins.join("cnitool"))
        .args(args)
        .env("CNI_PATH", plugin_dir)
        .env("NETCONFPATH", netconf_dir)
        .env("CNI_ARGS", "K8S_POD_NAMESPACE=net2;K8S_POD_NAME=web-0")
        .env("CNI_IFNAME", "eth0")
        .output()
        .expect("run cnitool");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn cnitool_add_check_del_status() {
    let Some(bins) = std::env::var_os("ROVN_CNI_BINS").map(PathBuf::from) else {
        // Written to the process's stderr directly so the test harness does not swallow it.
        let _ = std::io::stderr().write_all(
            b"\n!!!!!!!! SKIPPED cnitool_add_check_del_status: ROVN_CNI_BINS is not set.\n\
              !!!!!!!! Run `export ROVN_CNI_BINS=\"$(bash hack/cni-bins.sh | tail -n1)\"` first.\n\n",
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let netns = Netns::create(&format!("rovn-cnitool-{}", std::process::id()));
    let sandbox = netns.path().to_string_lossy().into_owned();
    let answer_sandbox = sandbox.clone();
    let agent = TestAgent::start(&dir.path().join("cni.sock"), move |request| {
        match request.command {
            Command::Add => AgentResponse::Result(CniResult {
                interfaces: vec![Interface {
                    name: "eth0".into(),
                    mac: Some("0a:72:00:00:00:05".into()),
                    sandbox: Some(answer_sandbox.clone()),
                    ..Default::default()
                }],
                ips: vec![IpConfig {
                    address: "10.0.2.5/24".parse().unwrap(),
                    gateway: Some("10.0.2.1".parse().unwrap()),
                    interface: Some(0),
                }],
                ..Default::default()
            }),
            _ => AgentResponse::Done,
        }
    });
    let netconf_dir = dir.path().join("net.d");
    std::fs::create_dir(&netconf_dir).unwrap();
    let conflist = json!({
        "cniVersion": "1.1.0",
        "name": "rovn-test",
        "plugins": [{"type": "rovn-cni", "socket": agent.socket}]
    });
    std::fs::write(netconf_dir.join("10-rovn.conflist"), conflist.to_string()).unwrap();

    let (ok, stdout, stderr) = cnitool(&bins, &netconf_dir, &["add", "rovn-test", &sandbox]);
    assert!(ok, "cnitool add failed: {stderr}");
    let result: serde_json::Value =
        serde_json::from_str(&stdout).expect("cnitool prints the result");
    assert_eq!(result["cniVersion"], "1.1.0");
    assert_eq!(result["ips"][0]["address"], "10.0.2.5/24");
    assert_eq!(result["interfaces"][0]["sandbox"], sandbox.as_str());

    let (ok, _, stderr) = cnitool(&bins, &netconf_dir, &["check", "rovn-test", &sandbox]);
    assert!(ok, "cnitool check failed: {stderr}");
    let (ok, _, stderr) = cnitool(&bins, &netconf_dir, &["status", "rovn-test", &sandbox]);
    assert!(ok, "cnitool status failed: {stderr}");
    let (ok, _, stderr) = cnitool(&bins, &netconf_dir, &["del", "rovn-test", &sandbox]);
    assert!(ok, "cnitool del failed: {stderr}");

    let requests = agent.requests();
    let commands: Vec<Command> = requests.iter().map(|r| r.command).collect();
    assert_eq!(
        commands,
        [Command::Add, Command::Check, Command::Status, Command::Del]
    );
    let add = &requests[0];
    assert_eq!(add.network, "rovn-test");
    assert_eq!(add.netns.as_deref(), Some(sandbox.as_str()));
    assert_eq!(add.ifname.as_deref(), Some("eth0"));
    let pod = add.pod.as_ref().unwrap();
    assert_eq!(
        (pod.namespace.as_str(), pod.name.as_str()),
        ("net2", "web-0")
    );
    let container_id = add.container_id.clone().unwrap();
    assert!(container_id.starts_with("cnitool-"), "{container_id}");
    // libcni hands CHECK and DEL the cached ADD result as prevResult.
    for later in &requests[1..] {
        if later.command != Command::Status {
            assert_eq!(later.container_id.as_deref(), Some(container_id.as_str()));
            let prev = later
                .prev_result
                .as_ref()
                .expect("prevResult from libcni's cache");
            assert_eq!(prev.ips[0].address.to_string(), "10.0.2.5/24");
        }
    }
}
