//! `rovn-lab --once`, the local lab command: sets the whole real stack up, walks through the
//! seed scenario with all its checks passing, and tears everything down (the pod's and the
//! VM's network namespaces are gone afterwards).

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

#[test]
fn lab_once_passes_its_checks_and_cleans_up() {
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
    assert!(stdout.contains("All 7 checks passed."), "{stdout}");
    assert!(!stdout.contains("[FAIL]"), "{stdout}");

    let pod_netns = netns_after(&stdout, " in netns ");
    let vm_netns = netns_after(&stdout, "VM netns ");
    let list = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    for netns in [pod_netns, vm_netns] {
        assert!(
            !list
                .lines()
                .any(|l| l.split_whitespace().next() == Some(netns)),
            "{netns} left behind:\n{list}"
        );
    }
}
