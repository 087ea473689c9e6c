//! `rovn-controller` binary: flags, logging, probes, leader election and the
//! reconcilers, stopped gracefully on SIGTERM/SIGINT.

use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use controller::cli::Args;
use controller::http::{self, Probes};
use controller::leader::{LeaderElector, LeaseTiming};
use controller::metrics::Metrics;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use prometheus_client::registry::Registry;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tracing::info;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_logging(args.log_json);
    let client = kube_client(&args).await?;

    let metrics = Arc::new(Metrics::default());
    let mut registry = Registry::default();
    metrics.register(&mut registry);

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (ready_tx, ready_rx) = watch::channel(false);
    let probes = Probes::new(Arc::new(registry), ready_rx);
    let http = tokio::spawn(http::serve(args.metrics_addr, probes, shutdown_rx.clone()));

    let identity = args.identity.clone().unwrap_or_else(default_identity);
    let elector = LeaderElector::new(
        Api::<Lease>::namespaced(client.clone(), &args.lease_namespace),
        &args.lease_name,
        &identity,
        LeaseTiming::default(),
    );
    let (leading_tx, mut leading_rx) = watch::channel(false);
    let election = tokio::spawn(elector.run(leading_tx, shutdown_rx.clone()));
    // A standby replica is ready: it can take over at any time.
    ready_tx.send_replace(true);

    let mut sigterm = signal(SignalKind::terminate())?;
    tokio::select! {
        _ = sigterm.recv() => info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => info!("SIGINT: shutting down"),
        _ = leading_rx.wait_for(|leading| *leading) => {
            info!(%identity, "leading");
            tokio::select! {
                _ = sigterm.recv() => info!("SIGTERM: shutting down"),
                _ = tokio::signal::ctrl_c() => info!("SIGINT: shutting down"),
                _ = leading_rx.wait_for(|leading| !*leading) => {
                    anyhow::bail!("lost leadership: exiting so that only the new leader writes");
                }
            }
        }
    }
    shutdown_tx.send_replace(true);
    let _ = election.await;
    http.await??;
    Ok(())
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn kube_client(args: &Args) -> anyhow::Result<kube::Client> {
    let config = match &args.kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?
        }
        None => kube::Config::infer().await?,
    };
    Ok(kube::Client::try_from(config)?)
}

fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "rovn".to_string());
    format!("{host}-{}", std::process::id())
}
