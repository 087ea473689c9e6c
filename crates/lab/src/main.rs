//! `rovn-lab`: runs rovn's main job on this machine with real components and walks through
//! the seed scenario, then stays up for manual use until SIGINT/SIGTERM (or exits after the
//! checks with `--once`). Needs root (network namespaces, OVS) and the workspace binaries
//! (`hack/lab.sh` builds them and runs this).
//!
//! The stack: a real node (`testenv::node`: OVN NB/SB/northd and the node's chassis, etcd,
//! kube-apiserver, kube-controller-manager, kube-scheduler, containerd, kubelet), a Neutron
//! Zed tenant with a VM (`testenv::stack::Tenant`), rovn installed from `deploy/`
//! (`testenv::node::RovnInstall`); the lab plays the user (`kubectl`) and Neutron.

mod checks;
mod lab;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use lab::Lab;

/// How often the lab looks whether rovn's controller and agent pods still run.
const LIVENESS_PERIOD: Duration = Duration::from_secs(5);

/// The whole rovn stack on this machine, walked through the seed scenario.
#[derive(Parser)]
#[command(version, about)]
struct Flags {
    /// Exit after the checks (non-zero if one failed) instead of staying up.
    #[arg(long)]
    once: bool,
    /// Directory for the lab's files (the manifests it applies); default: a new temporary
    /// directory, removed at the end unless a check failed.
    #[arg(long)]
    dir: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let flags = Flags::parse();
    match run(flags).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rovn-lab: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(flags: Flags) -> Result<ExitCode> {
    let mut stop = stop_signal()?;
    let mut lab = tokio::select! {
        lab = Lab::start(flags.dir.clone()) => lab?,
        _ = stop.changed() => {
            eprintln!("rovn-lab: interrupted during set-up; what was started is stopped");
            return Ok(ExitCode::FAILURE);
        }
    };
    let passed = tokio::select! {
        report = lab.walk_through() => report?.passed(),
        _ = stop.changed() => {
            eprintln!("rovn-lab: interrupted during the checks; tearing down");
            lab.teardown().await;
            return Ok(ExitCode::FAILURE);
        }
    };
    if !passed {
        lab.keep_files();
    }
    if !flags.once {
        lab.print_how_to_poke();
        let mut ticker = tokio::time::interval(LIVENESS_PERIOD);
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                _ = ticker.tick() => if let Err(e) = lab.check_running() {
                    // A Ctrl-C stops the node's daemons too: a stop, not a crash.
                    if stop.has_changed().unwrap_or(true) {
                        break;
                    }
                    eprintln!("rovn-lab: {e:#}");
                    lab.keep_files();
                    lab.teardown().await;
                    return Ok(ExitCode::FAILURE);
                },
            }
        }
        println!("\nStopping: tearing the lab down...");
    }
    lab.teardown().await;
    Ok(if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A channel set once SIGINT or SIGTERM arrives.
fn stop_signal() -> Result<watch::Receiver<bool>> {
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        let _ = tx.send(true);
    });
    Ok(rx)
}
