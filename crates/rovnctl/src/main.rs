//! `rovnctl`: command-line tooling for rovn.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use ipnet::IpNet;
use ovsdb::{Client, ClientConfig, TlsFiles};

/// Command-line tooling for rovn.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the CustomResourceDefinitions (multi-document YAML) of the kubeovn.io/v1 resources.
    Crds,
    /// Tell what pods of a subnet can reach on the Neutron networks of its
    /// router: which VM ports drop new pod -> VM connections (neutron_pg_drop)
    /// and the security group rule that would admit them.
    Diagnose(DiagnoseArgs),
}

#[derive(Args)]
struct DiagnoseArgs {
    /// OVN Northbound remotes, comma-separated (`unix:PATH`, `tcp:H:P`, `ssl:H:P`).
    #[arg(
        long,
        env = "ROVN_OVN_NB",
        default_value = "unix:/var/run/ovn/ovnnb_db.sock"
    )]
    ovn_nb: String,
    /// Private key (PEM) for `ssl:` remotes.
    #[arg(long, requires_all = ["ovn_certificate", "ovn_ca_cert"])]
    ovn_private_key: Option<PathBuf>,
    /// Certificate (PEM) for `ssl:` remotes.
    #[arg(long)]
    ovn_certificate: Option<PathBuf>,
    /// CA certificate (PEM) for `ssl:` remotes.
    #[arg(long)]
    ovn_ca_cert: Option<PathBuf>,
    /// The Subnet to diagnose (its CIDRs and VPC are read from the API).
    #[arg(long, conflicts_with_all = ["router", "cidr"], required_unless_present = "router")]
    subnet: Option<String>,
    /// Kubeconfig for `--subnet` (default: in-cluster, then `$KUBECONFIG`).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// The OVN router (`neutron-<uuid>`), instead of `--subnet`.
    #[arg(long, requires = "cidr")]
    router: Option<String>,
    /// The pods' CIDR, with `--router`.
    #[arg(long)]
    cidr: Option<IpNet>,
}

#[tokio::main]
async fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Crds => print!("{}", rovnctl::crds::crds_yaml()?),
        Command::Diagnose(args) => diagnose(args).await?,
    }
    Ok(())
}

async fn diagnose(args: DiagnoseArgs) -> Result<()> {
    let targets: Vec<(String, IpNet)> = match (&args.subnet, &args.router, args.cidr) {
        (Some(subnet), _, _) => subnet_targets(subnet, args.kubeconfig.as_deref()).await?,
        (None, Some(router), Some(cidr)) => vec![(router.clone(), cidr)],
        _ => bail!("give --subnet, or --router with --cidr"),
    };
    let mut config = ClientConfig::from_remotes(&args.ovn_nb)?;
    if let Some(tls) = TlsFiles::from_flags(
        args.ovn_private_key.as_ref(),
        args.ovn_certificate.as_ref(),
        args.ovn_ca_cert.as_ref(),
    ) {
        config = config.with_tls(tls);
    }
    if config.remotes.len() > 1 {
        config = config.with_leader_only(true);
    }
    let client = Client::connect(config)
        .await
        .with_context(|| format!("connecting to {}", args.ovn_nb))?;
    for (router, cidr) in targets {
        print!(
            "{}",
            rovnctl::diagnose::diagnose(&client, &router, cidr).await?
        );
    }
    Ok(())
}

/// The (router, CIDR) pairs of a Subnet: one per CIDR of `cidrBlock`.
async fn subnet_targets(
    name: &str,
    kubeconfig: Option<&std::path::Path>,
) -> Result<Vec<(String, IpNet)>> {
    let config = match kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?
        }
        None => kube::Config::infer().await?,
    };
    let client = kube::Client::try_from(config)?;
    let subnet = kube::Api::<api::Subnet>::all(client)
        .get(name)
        .await
        .with_context(|| format!("reading Subnet {name}"))?;
    let router = subnet
        .spec
        .vpc
        .clone()
        .unwrap_or_else(|| "ovn-cluster".to_string());
    subnet
        .spec
        .cidr_block
        .split(',')
        .map(|cidr| {
            let cidr = cidr.trim();
            let net: IpNet = cidr
                .parse()
                .with_context(|| format!("Subnet {name}: invalid CIDR {cidr:?}"))?;
            Ok((router.clone(), net.trunc()))
        })
        .collect()
}
