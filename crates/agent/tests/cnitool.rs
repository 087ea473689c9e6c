//! The reference CNI client `cnitool` (libcni) driving `rovn-cni` → `rovn-agent` for ADD,
//! CHECK and DEL of a real pod on a real chassis. Needs `ROVN_CNI_BINS` = the directory
//! printed by `hack/cni-bins.sh` (skipped loudly without it).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use testenv::kube::KubeEnv;
use testenv::netns::Netns;
use testenv::ovn::OvnEnv;
use testenv::stack::{AgentProcess, Cluster, pod_network, workspace_bin};
use testenv::unique_name;

const NODE: &str = "node-cnitool";

fn cnitool(
    bins: &Path,
    netconf_dir: &Path,
    namespace: &str,
    args: &[&str],
) -> (bool, String, String) {
    let plugin_dir = workspace_bin("cni", "rovn-cni")
        .expect("rovn-cni")
        .parent()
        .expect("plugin dir")
        .to_path_buf();
    let output = Command::new(bins.join("cnitool"))
        .args(args)
        .env("CNI_PATH", plugin_dir)
        .env("NETCONFPATH", netconf_dir)
        .env(
            "CNI_ARGS",
            format!("K8S_POD_NAMESPACE={namespace};K8S_POD_NAME=tool-pod"),
        )
        .env("CNI_IFNAME", "eth0")
        .output()
        .expect("run cnitool");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn cnitool_add_check_del_against_the_agent() {
    let Some(bins) = std::env::var_os("ROVN_CNI_BINS").map(PathBuf::from) else {
        let _ = std::io::stderr().write_all(
            b"\n!!!!!!!! SKIPPED cnitool_add_check_del_against_the_agent: ROVN_CNI_BINS is not set.\n\
              !!!!!!!! Run `export ROVN_CNI_BINS=\"$(bash hack/cni-bins.sh | tail -n1)\"` first.\n\n",
        );
        return;
    };
    let kube = KubeEnv::shared().expect("kube env");
    let cluster = Cluster::connect(kube).await.expect("kube client");
    let env = tokio::task::spawn_blocking(|| OvnEnv::builder().chassis(NODE).start())
        .await
        .unwrap()
        .expect("OVN env");
    env.nbctl(&["ls-add", "net2"]).unwrap();
    let namespace = unique_name("cnitool");
    cluster
        .create_namespace(&namespace)
        .await
        .expect("create namespace");
    cluster
        .create_pod(&namespace, "tool-pod", NODE)
        .await
        .expect("create pod");
    cluster
        .annotate_pod(
            &namespace,
            "tool-pod",
            &pod_network("net2", "0a:72:00:00:02:07", "10.0.2.7/24", "10.0.2.1").unwrap(),
        )
        .await
        .expect("annotate pod");
    let lsp = format!("tool-pod.{namespace}");
    env.nbctl(&["lsp-add", "net2", &lsp]).unwrap();
    env.nbctl(&["lsp-set-addresses", &lsp, "0a:72:00:00:02:07 10.0.2.7"])
        .unwrap();
    // A second workload on the switch to talk to.
    env.nbctl(&["lsp-add", "net2", "peer"]).unwrap();
    env.nbctl(&["lsp-set-addresses", "peer", "0a:72:00:00:02:08 10.0.2.8"])
        .unwrap();
    let peer = env
        .plug(
            "peer",
            &testenv::netns::Nic::new("0a:72:00:00:02:08", "10.0.2.8/24", Some("10.0.2.1")),
        )
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let agent = AgentProcess::start(
        dir.path(),
        &AgentProcess::chassis_args(kube.kubeconfig(), NODE, &env).unwrap(),
    )
    .expect("rovn-agent");
    let netconf_dir = dir.path().join("net.d");
    std::fs::create_dir(&netconf_dir).unwrap();
    let conflist = json!({
        "cniVersion": "1.1.0",
        "name": "rovn-tool",
        "plugins": [{"type": "rovn-cni", "socket": agent.socket}]
    });
    std::fs::write(netconf_dir.join("10-rovn.conflist"), conflist.to_string()).unwrap();
    let sandbox = Netns::new().unwrap();
    let sandbox_path = format!("/var/run/netns/{}", sandbox.name());
    let tool = |args: &[&str]| cnitool(&bins, &netconf_dir, &namespace, args);

    let (ok, stdout, stderr) = tool(&["add", "rovn-tool", &sandbox_path]);
    assert!(
        ok,
        "cnitool add failed: {stdout} {stderr}\n{}",
        agent.process.log()
    );
    let result: Value = serde_json::from_str(&stdout).expect("cnitool prints the result");
    assert_eq!(result["ips"][0]["address"], "10.0.2.7/24");
    assert_eq!(result["interfaces"][1]["sandbox"], sandbox_path.as_str());
    let host_if = result["interfaces"][0]["name"].as_str().unwrap().to_owned();
    assert_eq!(
        env.nbctl(&["get", "Logical_Switch_Port", &lsp, "up"])
            .unwrap()
            .trim(),
        "true"
    );
    assert!(sandbox.ping("10.0.2.8"), "{}", agent.process.log());
    assert!(peer.ping("10.0.2.7"));

    let (ok, stdout, stderr) = tool(&["check", "rovn-tool", &sandbox_path]);
    assert!(ok, "cnitool check failed: {stdout} {stderr}");
    let (ok, stdout, stderr) = tool(&["del", "rovn-tool", &sandbox_path]);
    assert!(ok, "cnitool del failed: {stdout} {stderr}");
    assert!(!env.chassis_link_exists(&host_if).unwrap());
    assert_eq!(env.ovs_interface_external_ids(&host_if).unwrap(), None);
    // CHECK after DEL fails: the attachment is gone.
    let (ok, _, _) = tool(&["check", "rovn-tool", &sandbox_path]);
    assert!(!ok, "CHECK succeeded after DEL");
}
