//! `rovn-agent`: sets up the OVN chassis (with `--ovn-sb`) and serves `rovn-cni` on a unix
//! socket until SIGTERM or SIGINT.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use agent::chassis::{self, ChassisSettings};
use agent::node_link::{NodeLinkSettings, NodeLinks};
use agent::ovs::LocalSwitch;
use agent::port_up::PortUpWait;
use agent::{Agent, AgentSettings};
use anyhow::{Context, Result};
use clap::Parser;
use ovsdb::{Client, ClientConfig, TlsFiles};
use tokio::signal::unix::{SignalKind, signal};

/// The rovn node agent.
#[derive(Debug, Parser)]
#[command(name = "rovn-agent", version)]
struct Flags {
    /// kubeconfig file; without it, the in-cluster service account (or $KUBECONFIG).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// This node's name (the chassis `system-id` unless one is set already).
    #[arg(long, env = "NODE_NAME")]
    node_name: String,
    /// The local Open_vSwitch database.
    #[arg(long, default_value = "unix:/var/run/openvswitch/db.sock")]
    ovs_db: String,
    /// The unix socket rovn-cni talks to.
    #[arg(long, default_value = cni::config::DEFAULT_SOCKET)]
    cni_socket: PathBuf,
    /// Northbound remotes (comma-separated): the node links (this node's gateways into the
    /// VPCs) and the wait for `up=true` on the pod's logical port. Without it there are no
    /// node links and ovn-controller's `ovn-installed` on the OVS interface is the signal.
    #[arg(long, env = "ROVN_OVN_NB")]
    ovn_nb: Option<String>,
    /// Private key for `ssl:` Northbound remotes (PEM).
    #[arg(long, requires_all = ["ovn_certificate", "ovn_ca_cert"])]
    ovn_private_key: Option<PathBuf>,
    /// Certificate for `ssl:` Northbound remotes (PEM).
    #[arg(long, requires = "ovn_private_key")]
    ovn_certificate: Option<PathBuf>,
    /// CA certificate for `ssl:` Northbound remotes (PEM).
    #[arg(long, requires = "ovn_private_key")]
    ovn_ca_cert: Option<PathBuf>,
    /// Southbound remote: set this node up as an OVN chassis pointing there.
    #[arg(long, requires = "encap_ip")]
    ovn_sb: Option<String>,
    /// This node's tunnel endpoint address (with --ovn-sb).
    #[arg(long)]
    encap_ip: Option<String>,
    /// Tunnel encapsulation (with --ovn-sb).
    #[arg(long, default_value = "geneve")]
    encap_type: String,
    /// `datapath_type` of the integration bridge (`netdev` for the userspace datapath).
    #[arg(long, default_value = "system")]
    datapath_type: String,
    /// The integration bridge.
    #[arg(long, default_value = "br-int")]
    bridge: String,
    /// MTU of pod interfaces.
    #[arg(long, default_value_t = 1400)]
    mtu: u32,
    /// Network namespace (a path) of the veth host ends, where ovs-vswitchd runs; default:
    /// the agent's own.
    #[arg(long)]
    host_netns: Option<PathBuf>,
    /// The link-local network the node-link gateways' uplinks are cut from (a /30 per VPC;
    /// keep 169.254.169.254, OpenStack's metadata address, out of it).
    #[arg(long, default_value = "169.254.64.0/18")]
    node_link_uplinks: ipnet::Ipv4Net,
    /// Seconds ADD waits for the controller's allocation annotations.
    #[arg(long, default_value_t = 60)]
    allocation_timeout: u64,
    /// Seconds ADD waits for OVN to report the port up.
    #[arg(long, default_value_t = 60)]
    port_up_timeout: u64,
}

async fn kube_client(kubeconfig: Option<&PathBuf>) -> Result<kube::Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?
        }
        None => kube::Config::infer().await?,
    };
    Ok(kube::Client::try_from(config)?)
}

async fn run(flags: Flags) -> Result<()> {
    let ovs = Client::connect(ClientConfig::from_remotes(&flags.ovs_db)?)
        .await
        .with_context(|| format!("connecting to {}", flags.ovs_db))?;
    if let (Some(sb), Some(encap_ip)) = (&flags.ovn_sb, &flags.encap_ip) {
        let outcome = chassis::set_up(
            &ovs,
            &ChassisSettings {
                system_id: flags.node_name.clone(),
                ovn_remote: sb.clone(),
                encap_ip: encap_ip.clone(),
                encap_type: flags.encap_type.clone(),
                bridge: flags.bridge.clone(),
                datapath_type: flags.datapath_type.clone(),
            },
        )
        .await
        .context("setting up the chassis")?;
        tracing::info!(system_id = %outcome.system_id, bridge_created = outcome.bridge_created, "chassis set up");
    }
    let switch = Arc::new(LocalSwitch::open(ovs, &flags.bridge).await?);
    let mut node_links = None;
    let port_up = match &flags.ovn_nb {
        Some(nb) => {
            let mut config = ClientConfig::from_remotes(nb)?.with_leader_only(true);
            if let Some(tls) = TlsFiles::from_flags(
                flags.ovn_private_key.as_ref(),
                flags.ovn_certificate.as_ref(),
                flags.ovn_ca_cert.as_ref(),
            ) {
                config = config.with_tls(tls);
            }
            let client = Client::connect(config)
                .await
                .with_context(|| format!("connecting to {nb}"))?;
            let links = NodeLinks::start(
                NodeLinkSettings {
                    node: flags.node_name.clone(),
                    chassis_netns: flags.host_netns.clone(),
                    mtu: flags.mtu,
                    uplinks: flags.node_link_uplinks.trunc(),
                },
                &client,
                Arc::clone(&switch),
            )
            .await
            .context("replicating this node's node-link ports")?;
            node_links = Some(tokio::spawn(links.run()));
            Some(PortUpWait::new(client).await?)
        }
        None => {
            tracing::warn!(
                "no --ovn-nb: no node links (kubelet probes and host-network endpoints do not reach pods)"
            );
            None
        }
    };
    let pods = kube_client(flags.kubeconfig.as_ref()).await?;
    let agent = Arc::new(Agent::new(
        AgentSettings {
            host_netns: flags.host_netns.clone(),
            mtu: flags.mtu,
            allocation_timeout: Duration::from_secs(flags.allocation_timeout),
            port_up_timeout: Duration::from_secs(flags.port_up_timeout),
        },
        pods,
        switch,
        port_up,
    ));
    let listener = cni::protocol::bind(&flags.cni_socket)
        .with_context(|| format!("binding {}", flags.cni_socket.display()))?;
    tracing::info!(socket = %flags.cni_socket.display(), node = %flags.node_name, "serving CNI requests");
    let serve = cni::protocol::serve(listener, move |request| {
        let agent = Arc::clone(&agent);
        async move { agent.handle(request).await }
    });
    let mut terminate = signal(SignalKind::terminate())?;
    let node_links = async move {
        match node_links {
            Some(task) => task.await?,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        served = serve => served.context("serving the CNI socket")?,
        ended = node_links => ended.context("node links")?,
        _ = terminate.recv() => tracing::info!("SIGTERM: stopping"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: stopping"),
    }
    let _ = std::fs::remove_file(&flags.cni_socket);
    Ok(())
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if let Err(e) = run(Flags::parse()).await {
        tracing::error!("{e:#}");
        eprintln!("rovn-agent: {e:#}");
        std::process::exit(1);
    }
}
