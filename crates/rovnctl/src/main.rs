//! `rovnctl`: command-line tooling for rovn.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use ipnet::IpNet;
use ovsdb::{Client, ClientConfig, TlsFiles};
use rovnctl::flow::{FlowRequest, Protocol, TraceCommand};

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
    /// and the security group rule that would admit them. With --pod and
    /// --to: trace one connection with ovn-trace and name what drops it (a
    /// NetworkPolicy, or the VM's security groups) or where it is delivered.
    Diagnose(Box<DiagnoseArgs>),
}

/// Output format of `diagnose --pod`.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Args)]
#[command(group(ArgGroup::new("mode").required(true).args(["subnet", "router", "pod"])))]
struct DiagnoseArgs {
    /// OVN Northbound remotes, comma-separated (`unix:PATH`, `tcp:H:P`, `ssl:H:P`).
    #[arg(
        long,
        env = "ROVN_OVN_NB",
        default_value = "unix:/var/run/ovn/ovnnb_db.sock"
    )]
    ovn_nb: String,
    /// Private key (PEM) for `ssl:` remotes (NB, and the SB remotes ovn-trace reads).
    #[arg(long, requires_all = ["ovn_certificate", "ovn_ca_cert"])]
    ovn_private_key: Option<PathBuf>,
    /// Certificate (PEM) for `ssl:` remotes.
    #[arg(long)]
    ovn_certificate: Option<PathBuf>,
    /// CA certificate (PEM) for `ssl:` remotes.
    #[arg(long)]
    ovn_ca_cert: Option<PathBuf>,
    /// The Subnet to diagnose (its CIDRs and VPC are read from the API).
    #[arg(long)]
    subnet: Option<String>,
    /// Kubeconfig for `--subnet` (default: in-cluster, then `$KUBECONFIG`).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// The OVN router (`neutron-<uuid>`), instead of `--subnet`.
    #[arg(long, requires = "cidr")]
    router: Option<String>,
    /// The pods' CIDR, with `--router`.
    #[arg(long, requires = "router")]
    cidr: Option<IpNet>,
    /// The pod (`<namespace>/<pod>`) opening the connection to trace.
    #[arg(long, requires = "to")]
    pod: Option<String>,
    /// The connection's destination, with `--pod`.
    #[arg(long, requires = "pod")]
    to: Option<Ipv4Addr>,
    /// The connection's protocol, with `--pod`.
    #[arg(long, value_enum, default_value_t = Protocol::Tcp, requires = "pod")]
    protocol: Protocol,
    /// The destination port for tcp and udp, with `--pod` (default 80).
    #[arg(long, requires = "pod")]
    port: Option<u16>,
    /// OVN Southbound remotes ovn-trace reads the logical flows from, with `--pod`.
    #[arg(
        long,
        env = "ROVN_OVN_SB",
        default_value = "unix:/var/run/ovn/ovnsb_db.sock"
    )]
    ovn_sb: String,
    /// The ovn-trace program, with `--pod`.
    #[arg(long, default_value = "ovn-trace")]
    ovn_trace: PathBuf,
    /// How long ovn-trace may take, in seconds, with `--pod`.
    #[arg(long, default_value_t = 120)]
    trace_timeout: u64,
    /// Output format of `--pod` (`json`: the verdict as JSON).
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

#[tokio::main]
async fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Crds => print!("{}", rovnctl::crds::crds_yaml()?),
        Command::Diagnose(args) => diagnose(*args).await?,
    }
    Ok(())
}

async fn diagnose(args: DiagnoseArgs) -> Result<()> {
    let tls = TlsFiles::from_flags(
        args.ovn_private_key.as_ref(),
        args.ovn_certificate.as_ref(),
        args.ovn_ca_cert.as_ref(),
    );
    if let (Some(pod), Some(to)) = (&args.pod, args.to) {
        let request = FlowRequest::new(pod, to, args.protocol, args.port)?;
        let client = connect_nb(&args.ovn_nb, tls.clone()).await?;
        let command = TraceCommand {
            program: args.ovn_trace.clone(),
            sb: args.ovn_sb.clone(),
            tls,
            timeout: Duration::from_secs(args.trace_timeout),
        };
        let diagnosis = rovnctl::flow::diagnose_flow(&client, &request, &command).await?;
        match args.output {
            Output::Text => print!("{diagnosis}"),
            Output::Json => println!("{}", serde_json::to_string_pretty(&diagnosis)?),
        }
        return Ok(());
    }
    if args.output == Output::Json {
        bail!("-o json is only available with --pod");
    }
    let targets: Vec<(String, IpNet)> = match (&args.subnet, &args.router, args.cidr) {
        (Some(subnet), _, _) => subnet_targets(subnet, args.kubeconfig.as_deref()).await?,
        (None, Some(router), Some(cidr)) => vec![(router.clone(), cidr)],
        _ => bail!("give --subnet, --router with --cidr, or --pod with --to"),
    };
    let client = connect_nb(&args.ovn_nb, tls).await?;
    for (router, cidr) in targets {
        print!(
            "{}",
            rovnctl::diagnose::diagnose(&client, &router, cidr).await?
        );
    }
    Ok(())
}

/// A client of the Northbound database at `remotes`.
async fn connect_nb(remotes: &str, tls: Option<TlsFiles>) -> Result<Client> {
    let mut config = ClientConfig::from_remotes(remotes)?;
    if let Some(tls) = tls {
        config = config.with_tls(tls);
    }
    if config.remotes.len() > 1 {
        config = config.with_leader_only(true);
    }
    Client::connect(config)
        .await
        .with_context(|| format!("connecting to {remotes}"))
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
