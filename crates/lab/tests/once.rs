//! `rovn-lab --once`, the local lab command: sets the real node up with rovn installed from
//! `deploy/`, walks through the seed scenario with all its checks passing, and tears
//! everything down (the VM's network namespace and every pod network namespace containerd
//! made are gone afterwards).

use std::process::Command;

/// The network namespace named in the line of `stdout` that contains `marker` (the word
/// after it).
fn netns_after<'a>(stdout: &'a str, marker: &str) -> &'a str {
    stdout
        .lines()
        .find_map(|line| line.split_once(marker))
        .and_then(|(_, rest)| rest.split([',', ' ']).next())
        .unwrap_or_else(|| panic!("no '{marker}' in the lab's output:\n{stdout}"))
}

/// The names `ip netns list` shows.
fn netns_names() -> Vec<String> {
    let list = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&list.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

#[test]
fn lab_once_passes_its_checks_and_cleans_up() {
    let before = netns_names();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rovn-lab"))
        .arg("--once")
        .arg("--dir")
        .arg(dir.path())
        .output()
        .expect("run rovn-lab");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "rovn-lab --once failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stdout.contains("All 9 checks passed."), "{stdout}");
    assert!(!stdout.contains("[FAIL]"), "{stdout}");
    // The pods ran on rovn addresses, shown as a user sees them.
    assert!(
        stdout.contains("get pods -o wide") && stdout.contains("10.0.2."),
        "{stdout}"
    );

    let vm_netns = netns_after(&stdout, "VM netns ");
    let after = netns_names();
    assert!(
        !after.iter().any(|n| n == vm_netns),
        "{vm_netns} left behind: {after:?}"
    );
    let new_pod_netns: Vec<&String> = after
        .iter()
        .filter(|n| n.starts_with("cni-") && !before.contains(n))
        .collect();
    assert!(
        new_pod_netns.is_empty(),
        "pod network namespaces left behind: {new_pod_netns:?}"
    );
}
