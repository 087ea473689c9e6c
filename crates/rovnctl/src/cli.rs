//! The command line of `rovnctl` and of the `kubectl rovn` plugin (one
//! parser; the binaries differ only by the name they show).

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use clap::{CommandFactory, FromArgMatches};
use ipnet::IpNet;

use crate::connect::ConnectArgs;
use crate::destination::{Destination, check_not_self};
use crate::flow::{FlowRequest, Protocol, TraceCommand};

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
    /// Trace one NEW connection from a pod to an address, a pod or a Service with
    /// ovn-trace and say what ends it: delivered (and the path), dropped by a
    /// NetworkPolicy (which one, on which side), by a VM's security groups (and the
    /// rule that would admit it), or anything else.
    Trace(Box<TraceArgs>),
    /// Tell whether rovn is healthy: the Northbound database (the remote that
    /// answered, the RAFT leader), the leading controller, the agents, how many
    /// VPCs, Subnets, pods and NetworkPolicies there are, and every condition
    /// of a Vpc or Subnet that is not healthy with what to do about it. Exit
    /// code 0: healthy (warnings aside); 1: a problem was found (or status
    /// could not run); 2: bad usage.
    Status(Box<StatusArgs>),
    /// Show the routers (Neutron's and rovn's), their networks with their
    /// CIDRs, the VMs and pods on each network and the chassis each port is
    /// bound on (with --ovn-sb), as a tree, JSON, Graphviz DOT or SVG.
    Topology(Box<TopologyArgs>),
}

/// Output format of `diagnose --pod` and `status`.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Text,
    Json,
}

/// Output format of `topology`.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TopologyOutput {
    /// An indented tree.
    Tree,
    /// The model as JSON.
    Json,
    /// A Graphviz graph.
    Dot,
    /// The graph drawn by Graphviz's dot.
    Svg,
}

#[derive(Args)]
#[command(group(ArgGroup::new("mode").required(true).args(["subnet", "router", "pod"])))]
struct DiagnoseArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// The Subnet to diagnose (its CIDRs and VPC are read from the API).
    #[arg(long)]
    subnet: Option<String>,
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
    #[command(flatten)]
    flow: FlowArgs,
}

/// How a connection is traced (`trace`, `diagnose --pod`).
#[derive(Args)]
struct FlowArgs {
    /// The connection's protocol.
    #[arg(long, value_enum, default_value_t = Protocol::Tcp)]
    protocol: Protocol,
    /// The destination port for tcp and udp (default: a Service's first port of the
    /// protocol, else 80).
    #[arg(long)]
    port: Option<u16>,
    /// The ovn-trace program.
    #[arg(long, default_value = "ovn-trace")]
    ovn_trace: PathBuf,
    /// How long ovn-trace may take, in seconds.
    #[arg(long, default_value_t = 120)]
    trace_timeout: u64,
    /// Output format (`json`: the verdict as JSON).
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

#[derive(Args)]
struct TraceArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// The pod opening the connection: `<namespace>/<pod>`.
    pod: String,
    /// Its destination: an IPv4 address, `<namespace>/<pod>` or `svc/<namespace>/<service>`.
    destination: Destination,
    #[command(flatten)]
    flow: FlowArgs,
}

#[derive(Args)]
struct StatusArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Namespace of the controller's Lease rovn-controller (its --lease-namespace;
    /// default: --rovn-namespace).
    #[arg(long)]
    lease_namespace: Option<String>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

#[derive(Args)]
struct TopologyArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Only this router: its OVN name (a Vpc's name) or Neutron's display name.
    #[arg(long)]
    vpc: Option<String>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = TopologyOutput::Tree)]
    output: TopologyOutput,
    /// The Graphviz program drawing `-o svg`.
    #[arg(long, default_value = "dot")]
    dot: PathBuf,
}

/// Runs the command line of `args`, naming the program `bin_name` in help and
/// errors (`rovnctl`, or `kubectl rovn` for the plugin).
pub async fn run(bin_name: &'static str) -> Result<ExitCode> {
    let matches = Cli::command().bin_name(bin_name).get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit());
    match cli.command {
        Command::Crds => print!("{}", crate::crds::crds_yaml()?),
        Command::Diagnose(args) => diagnose(*args).await?,
        Command::Trace(args) => {
            let TraceArgs {
                connect,
                pod,
                destination,
                flow,
            } = *args;
            check_not_self(&pod, &destination)?;
            trace(&connect, &pod, &destination, &flow).await?;
        }
        Command::Status(args) => return status(*args).await,
        Command::Topology(args) => topology(*args).await?,
    }
    Ok(ExitCode::SUCCESS)
}

/// The Northbound remotes of `connect`, saying on stderr why the ConfigMap was
/// not read when that failed.
async fn nb_remotes(connect: &ConnectArgs, kube: Option<&kube::Client>) -> String {
    let address = connect.nb_address(kube).await;
    if let Some(error) = &address.config_map_error {
        eprintln!("warning: {error}; using {}", address.remotes);
    }
    address.remotes
}

async fn diagnose(args: DiagnoseArgs) -> Result<()> {
    let connect = &args.connect;
    let tls = connect.tls();
    if let (Some(pod), Some(to)) = (&args.pod, args.to) {
        return trace(connect, pod, &Destination::Address(to), &args.flow).await;
    }
    if args.flow.output == Output::Json {
        bail!("-o json is only available with --pod");
    }
    let (targets, kube): (Vec<(String, IpNet)>, _) = match (&args.subnet, &args.router, args.cidr) {
        (Some(subnet), _, _) => {
            let kube = connect.kube_required().await?;
            (subnet_targets(subnet, &kube).await?, Some(kube))
        }
        (None, Some(router), Some(cidr)) => (vec![(router.clone(), cidr)], connect.kube().await?),
        _ => bail!("give --subnet, --router with --cidr, or --pod with --to"),
    };
    let client = crate::connect::connect(&nb_remotes(connect, kube.as_ref()).await, tls).await?;
    for (router, cidr) in targets {
        print!(
            "{}",
            crate::diagnose::diagnose(&client, &router, cidr).await?
        );
    }
    Ok(())
}

/// Traces a connection from `pod` to `destination` and prints the verdict.
async fn trace(
    connect: &ConnectArgs,
    pod: &str,
    destination: &Destination,
    args: &FlowArgs,
) -> Result<()> {
    let tls = connect.tls();
    let kube = connect.kube().await?;
    let client =
        crate::connect::connect(&nb_remotes(connect, kube.as_ref()).await, tls.clone()).await?;
    let nb = crate::snapshot::NbSnapshot::read(&client).await?;
    let (to, port) = destination
        .resolve(&nb, kube.as_ref(), args.protocol, args.port)
        .await?;
    let request = FlowRequest::new(pod, to, args.protocol, port)?;
    let command = TraceCommand {
        program: args.ovn_trace.clone(),
        sb: connect.sb_remotes(kube.as_ref()).await,
        tls,
        timeout: Duration::from_secs(args.trace_timeout),
    };
    let diagnosis = crate::flow::diagnose_flow(&nb, &request, &command).await?;
    match args.output {
        Output::Text => print!("{diagnosis}"),
        Output::Json => println!("{}", serde_json::to_string_pretty(&diagnosis)?),
    }
    Ok(())
}

async fn status(args: StatusArgs) -> Result<ExitCode> {
    let lease_namespace = args
        .lease_namespace
        .as_deref()
        .unwrap_or(&args.connect.rovn_namespace);
    let observed = crate::status::gather(&args.connect, lease_namespace).await?;
    let status = crate::status::assess(&observed);
    match args.output {
        Output::Text => print!("{status}"),
        Output::Json => println!("{}", serde_json::to_string_pretty(&status)?),
    }
    Ok(if status.healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn topology(args: TopologyArgs) -> Result<()> {
    let connect = &args.connect;
    let tls = connect.tls();
    let kube = connect.kube().await?;
    let nb =
        crate::connect::connect(&nb_remotes(connect, kube.as_ref()).await, tls.clone()).await?;
    let sb = match &connect.ovn_sb {
        Some(remotes) => Some(crate::connect::connect(remotes, tls).await?),
        None => None,
    };
    let (mut topology, warnings) = crate::topology::read(&nb, sb.as_ref(), kube.as_ref()).await?;
    for warning in warnings {
        eprintln!("warning: {warning}");
    }
    if let Some(vpc) = &args.vpc {
        topology = topology.narrow(vpc)?;
    }
    match args.output {
        TopologyOutput::Tree => print!("{}", crate::topology::render_tree(&topology)),
        TopologyOutput::Json => println!("{}", serde_json::to_string_pretty(&topology)?),
        TopologyOutput::Dot => print!("{}", crate::topology::render_dot(&topology)),
        TopologyOutput::Svg => print!(
            "{}",
            crate::topology::render_svg(&args.dot, &crate::topology::render_dot(&topology))?
        ),
    }
    Ok(())
}

/// The (router, CIDR) pairs of a Subnet: one per CIDR of `cidrBlock`.
async fn subnet_targets(name: &str, client: &kube::Client) -> Result<Vec<(String, IpNet)>> {
    let subnet = kube::Api::<api::Subnet>::all(client.clone())
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
