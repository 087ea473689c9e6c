//! The daemons the environments start: readiness while checking they run, exit codes,
//! signals, their output in the error messages.

use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use testenv::process::{Daemon, DaemonSpec};

const BOUND: Duration = Duration::from_secs(30);

#[test]
fn exit_codes_output_and_environment_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::spawn(
        DaemonSpec::new("short", dir.path(), "sh")
            .args(["-c", "echo \"hello $GREETING\"; exit 3"])
            .env("GREETING", "there"),
    )
    .unwrap();
    let status = daemon.wait_exit(BOUND).unwrap();
    assert_eq!(status.code(), Some(3));
    assert_eq!(daemon.exit_status(), Some(status));
    assert!(!daemon.running());
    let stopped = format!("{:#}", daemon.check_running().unwrap_err());
    assert!(
        stopped.contains("short exited") && stopped.contains("hello there"),
        "{stopped}"
    );
}

#[test]
fn sigterm_stops_a_daemon_and_sigkill_kills_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon =
        Daemon::spawn(DaemonSpec::new("sleeper", dir.path(), "sleep").arg("600")).unwrap();
    assert!(daemon.running());
    assert!(daemon.pid().is_some());
    let status = daemon.terminate(BOUND).unwrap();
    assert_eq!(status.signal(), Some(libc_sigterm()));
    assert_eq!(daemon.pid(), None);

    daemon.start().unwrap();
    assert!(daemon.running());
    daemon.kill();
    assert_eq!(daemon.exit_status().and_then(|s| s.signal()), Some(9));
}

#[test]
fn a_daemon_that_dies_before_it_is_ready_fails_the_wait_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::spawn(
        DaemonSpec::new("broken", dir.path(), "sh").args(["-c", "echo cannot start >&2; exit 1"]),
    )
    .unwrap();
    let started = Instant::now();
    let err = daemon
        .wait_ready(Duration::from_secs(120), "never ready", || false)
        .unwrap_err();
    let message = format!("{err:#}");
    assert!(message.contains("cannot start"), "{message}");
    // It did not wait for the deadline.
    assert!(started.elapsed() < Duration::from_secs(60), "{message}");

    // A daemon that runs but never gets ready: a timeout naming what and the last seen.
    let mut daemon =
        Daemon::spawn(DaemonSpec::new("idle", dir.path(), "sleep").arg("600")).unwrap();
    let err = daemon
        .wait_ready(Duration::from_millis(100), "a socket", || {
            Err::<(), _>("no socket file")
        })
        .unwrap_err();
    let message = format!("{err:#}");
    assert!(
        message.contains("waiting for a socket; last seen: no socket file"),
        "{message}"
    );
}

#[test]
fn a_daemon_ignoring_sigterm_is_killed_after_its_grace() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("elsewhere.out");
    let mut daemon = Daemon::spawn(
        DaemonSpec::new("stubborn", dir.path(), "sh")
            .args(["-c", "trap '' TERM; echo ready; while :; do sleep 1; done"])
            .log_to(&log)
            .stop_grace(Duration::from_millis(200)),
    )
    .unwrap();
    daemon
        .wait_ready(BOUND, "the trap set", || {
            std::fs::read_to_string(&log).is_ok_and(|out| out.contains("ready"))
        })
        .unwrap();
    assert!(daemon.terminate(Duration::from_millis(200)).is_err());
    let started = Instant::now();
    daemon.stop();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(daemon.exit_status().and_then(|s| s.signal()), Some(9));
}

/// SIGTERM's number.
fn libc_sigterm() -> i32 {
    nix::sys::signal::Signal::SIGTERM as i32
}
