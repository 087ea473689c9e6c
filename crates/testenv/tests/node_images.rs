//! The images of `hack/images.sh`, imported into a containerd of the test's own: the workload
//! image runs a command, the pause image stops promptly on SIGTERM (it is the pod sandbox:
//! kubelet stops pods with SIGTERM), the rovn image's binaries run, the CoreDNS image runs
//! its pinned release with the kubernetes plugin, and nothing is left behind once
//! containerd is stopped.

use std::path::Path;
use std::time::{Duration, Instant};

use testenv::node::{Containerd, ContainerdSettings, Images};
use testenv::poll::wait_until;

mod support;
use support::{mounts_under, processes_mentioning};

/// How long the pause container gets to exit after SIGTERM (it should take milliseconds;
/// ignoring the signal would mean waiting for a SIGKILL, i.e. kubelet's grace period).
const PROMPT_EXIT: Duration = Duration::from_secs(2);

#[test]
fn images_import_and_run_in_containerd() -> anyhow::Result<()> {
    let started = Instant::now();
    let images = Images::get()?;
    eprintln!(
        "images ready in {:?}: {}",
        started.elapsed(),
        images.dir().display()
    );
    for (archive, name) in images.archives() {
        assert!(archive.is_file(), "{} is missing", archive.display());
        assert!(name.starts_with("rovn.local/"), "{name}");
        // An OCI layout with the image name annotations containerd and others read.
        let listing = std::process::Command::new("tar")
            .arg("-tf")
            .arg(&archive)
            .output()?;
        let listing = String::from_utf8(listing.stdout)?;
        for member in ["oci-layout", "index.json", "blobs/sha256/"] {
            assert!(
                listing.lines().any(|l| l == member),
                "{}: no {member} in {listing}",
                archive.display()
            );
        }
    }

    let dir = tempfile::Builder::new().prefix("rovn-images-").tempdir()?;
    let mut containerd = Containerd::start(
        &dir.path().join("containerd"),
        &ContainerdSettings {
            sandbox_image: images.pause().to_owned(),
            cni_bin_dir: dir.path().join("cni/bin"),
            cni_conf_dir: dir.path().join("cni/net.d"),
        },
    )?;
    for (archive, _) in images.archives() {
        containerd.import(&archive)?;
    }
    let listed = containerd.images()?;
    for name in [
        images.pause(),
        images.busybox(),
        images.rovn(),
        images.coredns(),
    ] {
        assert!(listed.iter().any(|l| l == name), "{name} not in {listed:?}");
    }

    // The workload image: busybox's sh and applets.
    let out = containerd.run(
        images.busybox(),
        "busybox-echo",
        &[
            "sh",
            "-c",
            "echo hello from $(basename $(readlink /bin/ping)) && nc --help 2>&1 | head -n1",
        ],
    )?;
    assert!(out.contains("hello from busybox"), "{out}");
    assert!(out.contains("BusyBox"), "{out}");

    // The rovn image: /var/run is /run (the hosts' layout deploy/ relies on).
    let out = containerd.run(
        images.rovn(),
        "rovn-layout",
        &["sh", "-c", "readlink /var/run; id -un"],
    )?;
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["../run", "root"]
    );

    // The rovn image: the three binaries run with the libraries the image carries.
    for bin in ["rovn-controller", "rovn-agent", "rovn-cni"] {
        let id = format!("rovn-{bin}");
        let out = if bin == "rovn-cni" {
            // A CNI plugin answers VERSION without an agent.
            containerd.run(
                images.rovn(),
                &id,
                &[
                    "sh",
                    "-c",
                    "echo '{\"cniVersion\":\"1.1.0\"}' | CNI_COMMAND=VERSION rovn-cni",
                ],
            )?
        } else {
            containerd.run(images.rovn(), &id, &[bin, "--version"])?
        };
        assert!(
            out.contains("1.1.0") || out.contains(bin),
            "{bin} in the rovn image printed {out:?}"
        );
    }

    // The CoreDNS image: /coredns is the pinned release with the kubernetes plugin (-plugins
    // lists what it was built with).
    let out = containerd.run(
        images.coredns(),
        "coredns-version",
        &["/coredns", "-version"],
    )?;
    let version = images.coredns().rsplit(':').next().unwrap_or_default();
    assert!(out.contains(&format!("CoreDNS-{version}")), "{out}");
    let out = containerd.run(
        images.coredns(),
        "coredns-plugins",
        &["/coredns", "-plugins"],
    )?;
    for plugin in ["kubernetes", "bind", "health", "ready"] {
        assert!(
            out.lines().any(|l| l.trim() == plugin),
            "no {plugin}: {out}"
        );
    }

    // The pause image: running until SIGTERM, then gone at once with status 0.
    containerd.run_detached(images.pause(), "pause-sigterm", &[])?;
    let running = wait_until(
        Duration::from_secs(30),
        "the pause container running",
        || task_status(&containerd, "pause-sigterm").is_some_and(|s| s == "RUNNING"),
    )
    .is_ok();
    assert!(running, "the pause container did not start");
    let signalled = Instant::now();
    containerd.ctr(&["tasks", "kill", "--signal", "SIGTERM", "pause-sigterm"])?;
    let stopped = wait_until(PROMPT_EXIT, "the pause container stopped", || {
        task_status(&containerd, "pause-sigterm").is_some_and(|s| s == "STOPPED")
    })
    .is_ok();
    assert!(
        stopped,
        "the pause container ignored SIGTERM for {PROMPT_EXIT:?}"
    );
    eprintln!("pause exited {:?} after SIGTERM", signalled.elapsed());
    let exit = containerd.ctr(&["tasks", "delete", "pause-sigterm"])?;
    assert!(
        !exit.contains("exit status") || exit.contains("exit status 0"),
        "{exit}"
    );
    // A container left behind on purpose: stop() must remove it.
    containerd.run_detached(images.pause(), "pause-left", &[])?;

    let socket = containerd.socket().to_owned();
    let state = containerd.dir().to_owned();
    containerd.stop();
    assert!(
        mounts_under(&state).is_empty(),
        "mounts left under {}",
        state.display()
    );
    assert!(
        processes_mentioning(&socket.display().to_string()).is_empty(),
        "processes of {} left",
        socket.display()
    );
    drop(containerd);
    // `run` put the containers under a cgroup named after the test's directory: gone.
    let name = dir
        .path()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    for hierarchy in ["memory", "cpu", "pids"] {
        let cgroup = Path::new("/sys/fs/cgroup")
            .join(hierarchy)
            .join(format!("{name}-ctr"));
        assert!(!cgroup.exists(), "{} left", cgroup.display());
    }
    Ok(())
}

/// The STATUS column of `ctr tasks ls` for task `id`.
fn task_status(containerd: &Containerd, id: &str) -> Option<String> {
    let out = containerd.ctr(&["tasks", "ls"]).ok()?;
    out.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|cols| cols.first() == Some(&id))
        .and_then(|cols| cols.last().map(|s| s.to_string()))
}
