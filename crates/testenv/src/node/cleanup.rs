//! Removing what kubelet, containerd and their containers leave behind on the host: mounts
//! under the environment's directory, pod network namespaces, the node's cgroups, stray
//! processes (shims and container processes of a containerd that is gone).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::mount::{MntFlags, umount2};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Where the cgroup v1 hierarchies are mounted.
pub(crate) const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Undoes the octal escapes of /proc/self/mountinfo (`\040` is a space).
fn unescape_mount_path(field: &str) -> PathBuf {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && let Ok(v) = u8::from_str_radix(&field[i + 1..i + 4], 8)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    PathBuf::from(std::ffi::OsString::from(
        String::from_utf8_lossy(&out).into_owned(),
    ))
}

/// Mount points of this mount namespace at or under `dir`.
pub(crate) fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape_mount_path)
        .filter(|p| p.starts_with(dir))
        .collect()
}

/// Unmounts everything at or under `dir`, deepest first (lazily: a busy mount goes when its
/// last user does). Returns what it could not unmount.
pub(crate) fn unmount_under(dir: &Path) -> Vec<PathBuf> {
    // Mounts can stack: repeat until nothing is left or nothing changes.
    for _ in 0..8 {
        let mut mounts = mounts_under(dir);
        if mounts.is_empty() {
            return Vec::new();
        }
        mounts.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        let mut progress = false;
        for mount in &mounts {
            if umount2(mount, MntFlags::MNT_DETACH).is_ok() {
                progress = true;
            }
        }
        if !progress {
            break;
        }
    }
    mounts_under(dir)
}

/// Unmounts and deletes the network namespace files `paths` (pod sandboxes' namespaces
/// under /var/run/netns that the runtime did not remove).
pub(crate) fn remove_netns(paths: &BTreeSet<PathBuf>) {
    for path in paths {
        let _ = umount2(path, MntFlags::MNT_DETACH);
        let _ = std::fs::remove_file(path);
    }
}

/// The namespaces of rovn's node-link gateways (`/run/netns/rovn-gw-*`): the node's agent
/// made them and they outlive it, as on a real node; a test node removes them when it stops.
pub(crate) fn gateway_netns() -> BTreeSet<PathBuf> {
    std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("rovn-gw-"))
        .map(|e| e.path())
        .collect()
}

/// The cgroup v1 hierarchies mounted under [`CGROUP_ROOT`] (`cpu`, `memory`, `systemd`, ...).
pub(crate) fn cgroup_hierarchies() -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(CGROUP_ROOT) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("cgroup.procs").is_file() && !p.is_symlink())
        .collect();
    dirs.sort();
    dirs
}

/// Pids of the processes in cgroup `relative` (e.g. `/rovn-node-1/kubepods`) or below it, in
/// any hierarchy.
pub(crate) fn pids_in_cgroup(relative: &str) -> BTreeSet<i32> {
    let mut pids = BTreeSet::new();
    for hierarchy in cgroup_hierarchies() {
        let top = hierarchy.join(relative.trim_start_matches('/'));
        collect_pids(&top, &mut pids);
    }
    pids
}

fn collect_pids(dir: &Path, pids: &mut BTreeSet<i32>) {
    if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        pids.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                collect_pids(&entry.path(), pids);
            }
        }
    }
}

/// Removes cgroup `relative` and everything below it in every hierarchy (deepest first),
/// retrying for up to `timeout` while processes in it are still exiting. Returns the
/// directories that remain.
pub(crate) fn remove_cgroup(relative: &str, timeout: Duration) -> Vec<PathBuf> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut left = Vec::new();
        for hierarchy in cgroup_hierarchies() {
            let top = hierarchy.join(relative.trim_start_matches('/'));
            if top.exists() {
                remove_cgroup_dir(&top);
                if top.exists() {
                    left.push(top);
                }
            }
        }
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn remove_cgroup_dir(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_dir(&entry.path());
            }
        }
    }
    // A cgroup directory is removed with rmdir(2) even though it lists control files.
    let _ = std::fs::remove_dir(dir);
}

/// Pids of the processes whose `/proc/<pid>` directory satisfies `keep`.
fn pids_where(keep: impl Fn(i32, &Path) -> bool) -> BTreeSet<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return BTreeSet::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse::<i32>().ok()?;
            keep(pid, &entry.path()).then_some(pid)
        })
        .collect()
}

/// Pids of processes whose command line contains `needle` (e.g. a containerd socket path
/// that every shim of that containerd is started with).
pub(crate) fn pids_with_arg(needle: &str) -> BTreeSet<i32> {
    pids_where(|_, dir| {
        std::fs::read(dir.join("cmdline")).is_ok_and(|cmdline| {
            cmdline
                .split(|b| *b == 0)
                .any(|arg| String::from_utf8_lossy(arg).contains(needle))
        })
    })
}

/// Pids of the live processes whose command name (`/proc/<pid>/comm`) is `name`.
pub(crate) fn pids_named(name: &str) -> BTreeSet<i32> {
    pids_where(|pid, dir| {
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        comm.trim() == name && !process_gone(pid)
    })
}

/// SIGKILLs `pids` (never this process).
pub(crate) fn kill_all(pids: &BTreeSet<i32>) {
    let me = std::process::id() as i32;
    for &pid in pids {
        if pid != me && pid > 1 {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// Whether process `pid` is gone (a zombie counts as gone: pid 1 reaps slowly here).
pub(crate) fn process_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(
            unescape_mount_path("/tmp/a\\040b/c"),
            PathBuf::from("/tmp/a b/c")
        );
        assert_eq!(unescape_mount_path("/plain"), PathBuf::from("/plain"));
    }
}
