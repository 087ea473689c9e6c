//! `rovn-controller` binary: flags, logging, probes, leader election and the
//! reconcilers, stopped gracefully on SIGTERM/SIGINT.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;

use controller::cli::Args;
use controller::context::Context;
use controller::http::{self, Probes};
use controller::leader::{LeaderElector, LeaseTiming};
use controller::metrics::Metrics;
use controller::{import, namespace, network_policy, node_link, pod, service, subnet, vpc};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use prometheus_client::registry::Registry;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{info, warn};

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

    // Every replica connects to OVN and checks the schema: a standby is
    // ready to take over at once.
    let ctx = Context::connect(&args, client.clone(), metrics.clone())
        .await
        .context("connecting to the OVN Northbound database")?;
    ready_tx.send_replace(true);

    let identity = args.identity.clone().unwrap_or_else(default_identity);
    let elector = LeaderElector::new(
        Api::<Lease>::namespaced(client.clone(), &args.lease_namespace),
        &args.lease_name,
        &identity,
        LeaseTiming::default(),
    );
    let (leading_tx, leading_rx) = watch::channel(false);
    let election = tokio::spawn(elector.run(leading_tx, shutdown_rx.clone()));

    let mut sigterm = signal(SignalKind::terminate())?;
    let outcome = tokio::select! {
        _ = sigterm.recv() => { info!("SIGTERM: shutting down"); Ok(()) }
        _ = tokio::signal::ctrl_c() => { info!("SIGINT: shutting down"); Ok(()) }
        // Dropping `lead` stops every writer before the Lease is released.
        result = lead(ctx, leading_rx, &identity) => result,
    };
    shutdown_tx.send_replace(true);
    let _ = election.await;
    http.await??;
    outcome
}

/// Waits for leadership, then runs the writers (importer, VPC reconciler)
/// until leadership is lost or one of them fails.
async fn lead(
    ctx: Arc<Context>,
    mut leading: watch::Receiver<bool>,
    identity: &str,
) -> anyhow::Result<()> {
    leading.wait_for(|leading| *leading).await?;
    info!(%identity, "leading: starting the importer and reconcilers");
    let mut writers = JoinSet::new();
    let importer = ctx.clone();
    writers.spawn(async move { import::run(importer).await.context("importer") });
    let reconciler = ctx.clone();
    writers.spawn(async move {
        vpc::run(reconciler).await;
        anyhow::bail!("the Vpc reconciler stopped")
    });
    let subnets = ctx.clone();
    writers.spawn(async move { subnet::run(subnets).await.context("Subnet reconciler") });
    let pods = ctx.clone();
    writers.spawn(async move { pod::run(pods).await.context("pod reconciler") });
    let services = ctx.clone();
    writers.spawn(async move { service::run(services).await.context("Service reconciler") });
    let links = ctx.clone();
    writers.spawn(async move { node_link::run(links).await.context("node-link reconciler") });
    let policies = ctx.clone();
    writers.spawn(async move {
        network_policy::run(policies)
            .await
            .context("NetworkPolicy reconciler")
    });
    let namespaces = ctx.clone();
    writers.spawn(async move {
        namespace::run(namespaces).await;
        anyhow::bail!("the namespace binding stopped")
    });
    let default_subnet = ctx.clone();
    writers.spawn(async move {
        // Retried until it succeeds: the API may not serve the CRD yet.
        while let Err(err) = subnet::ensure_default_subnet(&default_subnet).await {
            warn!(error = %err, "could not create the default Subnet; retrying");
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        std::future::pending::<anyhow::Result<()>>().await
    });
    let default_vpc = ctx.clone();
    writers.spawn(async move {
        // Retried until it succeeds: the API may not serve the CRD yet.
        while let Err(err) = vpc::ensure_default_vpc(&default_vpc).await {
            warn!(error = %err, "could not apply the default VPC; retrying");
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        // Done; only the other writers' end is a reason to stop.
        std::future::pending::<anyhow::Result<()>>().await
    });
    tokio::select! {
        _ = leading.wait_for(|leading| !*leading) => {
            anyhow::bail!("lost leadership: exiting so that only the new leader writes")
        }
        Some(result) = writers.join_next() => {
            match result {
                Ok(Ok(())) => anyhow::bail!("a writer stopped"),
                Ok(Err(err)) => Err(err),
                Err(err) => Err(err.into()),
            }
        }
    }
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a terminal (not in `kubectl logs` or a test's log file).
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
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
