//! The real node: kube-controller-manager, kube-scheduler, containerd and kubelet beside the
//! API server. The scheduler places a hostNetwork pod of the busybox image on the node,
//! kubelet runs it through containerd to Running, `kubectl exec` and `kubectl logs` reach it,
//! and dropping the environment leaves no process, mount, network namespace or cgroup behind.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use testenv::node::NodeEnv;

mod support;
use support::{gone, mounts_under, processes_mentioning};

const POD_TIMEOUT: Duration = Duration::from_secs(180);

#[test]
fn kubelet_runs_a_pod_and_nothing_is_left() -> anyhow::Result<()> {
    let netns_before = netns_files();
    let started = Instant::now();
    let node = NodeEnv::builder().start()?;
    eprintln!(
        "node {} started in {:?} ({:?} in NodeEnv::start; dir {})",
        node.node_name(),
        started.elapsed(),
        node.startup_time(),
        node.dir().display()
    );

    // The Node is registered with our address; NotReady until a CNI is installed, which a
    // hostNetwork pod does not need.
    let addresses = node.kubectl(&[
        "get",
        "node",
        node.node_name(),
        "-o",
        "jsonpath={.status.addresses}",
    ])?;
    assert!(
        addresses.contains(&node.node_ip().to_string()),
        "{addresses}"
    );
    assert!(
        node.containerd()
            .images()?
            .iter()
            .any(|i| i == node.images().pause()),
        "the sandbox image is imported"
    );

    // No nodeName: the scheduler places it. It tolerates the not-ready taints (no CNI yet),
    // like the hostNetwork pods that install a CNI do.
    let pod = format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: default
spec:
  hostNetwork: true
  terminationGracePeriodSeconds: 2
  tolerations:
    - key: node.kubernetes.io/not-ready
      operator: Exists
  containers:
    - name: web
      image: {image}
      imagePullPolicy: Never
      command: ["sh", "-c", "echo started; exec sleep 3600"]
"#,
        image = node.images().busybox()
    );
    let applied = Instant::now();
    node.apply(&pod)?;
    node.wait_pod_running("default", "web", POD_TIMEOUT)?;
    eprintln!("pod Running {:?} after apply", applied.elapsed());
    let scheduled_on = node.kubectl(&[
        "get",
        "pod",
        "web",
        "-o",
        "jsonpath={.spec.nodeName} {.status.podIP}",
    ])?;
    assert_eq!(
        scheduled_on.split_whitespace().collect::<Vec<_>>(),
        [node.node_name(), node.node_ip().to_string().as_str()],
        "scheduled onto our node, host network address"
    );

    // API server -> kubelet -> containerd streaming.
    let out = node.kubectl(&["exec", "web", "--", "sh", "-c", "echo exec-ok $((6*7))"])?;
    assert_eq!(out.trim(), "exec-ok 42");
    let logs = node.kubectl(&["logs", "web"])?;
    assert_eq!(logs.trim(), "started");

    // The container runs in the node's cgroup root, under kubelet's QoS hierarchy.
    let cgroup_root = node.cgroup_root().to_owned();
    let memory = Path::new("/sys/fs/cgroup/memory").join(cgroup_root.trim_start_matches('/'));
    assert!(
        memory.join("kubepods").is_dir(),
        "{} has no kubepods",
        memory.display()
    );

    node.kubectl(&["delete", "pod", "web", "--wait=true", "--timeout=60s"])?;

    let pids = node.pids();
    let dir = node.dir().to_owned();
    let socket = node.containerd().socket().to_owned();
    let stopping = Instant::now();
    drop(node);
    eprintln!("node stopped in {:?}", stopping.elapsed());

    for pid in pids {
        assert!(gone(pid), "process {pid} of the node is still running");
    }
    assert!(
        !dir.exists(),
        "the environment's directory {} is left",
        dir.display()
    );
    let mounts = mounts_under(&dir);
    assert!(mounts.is_empty(), "mounts left: {mounts:?}");
    let shims = processes_mentioning(&socket.display().to_string());
    assert!(shims.is_empty(), "containerd shims left: {shims:?}");
    let new_netns: Vec<_> = netns_files().difference(&netns_before).cloned().collect();
    // Another test of this machine may create namespaces meanwhile: only the runtime's
    // (cni-…) ones would be ours.
    assert!(
        !new_netns.iter().any(|p| p
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("cni-"))),
        "pod network namespaces left: {new_netns:?}"
    );
    let kubelet_running = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| {
            std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == "kubelet")
        });
    if !kubelet_running {
        let socket = Path::new("/var/lib/kubelet/device-plugins/kubelet.sock");
        assert!(!socket.exists(), "{} left", socket.display());
    }
    for hierarchy in ["memory", "cpu", "pids", "systemd"] {
        let path = Path::new("/sys/fs/cgroup")
            .join(hierarchy)
            .join(cgroup_root.trim_start_matches('/'));
        assert!(!path.exists(), "cgroup {} left", path.display());
    }
    Ok(())
}

fn netns_files() -> BTreeSet<PathBuf> {
    std::fs::read_dir("/var/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect()
}
