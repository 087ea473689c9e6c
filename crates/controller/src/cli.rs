//! Command-line flags of `rovn-controller`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

/// rovn-controller: imports Neutron routers as Vpcs and reconciles Vpcs,
/// Subnets and pods into the shared OVN Northbound database.
#[derive(Parser, Debug, Clone)]
#[command(name = "rovn-controller", version)]
pub struct Args {
    /// OVN Northbound remotes, comma-separated (`unix:PATH`, `tcp:HOST:PORT`,
    /// `ssl:HOST:PORT`); several for a clustered database.
    #[arg(
        long,
        env = "ROVN_OVN_NB",
        default_value = "unix:/var/run/ovn/ovnnb_db.sock"
    )]
    pub ovn_nb: String,
    /// Private key (PEM) for `ssl:` remotes.
    #[arg(long)]
    pub ovn_private_key: Option<PathBuf>,
    /// Certificate (PEM) for `ssl:` remotes.
    #[arg(long)]
    pub ovn_certificate: Option<PathBuf>,
    /// CA certificate (PEM) for `ssl:` remotes.
    #[arg(long)]
    pub ovn_ca_cert: Option<PathBuf>,
    /// Kubeconfig; default: in-cluster configuration, then `$KUBECONFIG`.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Address of `/healthz`, `/readyz` and `/metrics`.
    #[arg(long, default_value = "127.0.0.1:10660")]
    pub metrics_addr: SocketAddr,
    /// Namespace of the leader-election Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "kube-system")]
    pub lease_namespace: String,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "rovn-controller")]
    pub lease_name: String,
    /// This replica's identity in the election (default: host name + pid).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    pub log_json: bool,
    /// Seconds between full resyncs (a safety net; changes are event-driven).
    #[arg(long, default_value_t = 300)]
    pub resync_seconds: u64,
    /// CIDR of the default Subnet (`ovn-default` on `ovn-cluster`), used
    /// when it is created at start-up.
    #[arg(long, default_value = "10.16.0.0/16")]
    pub default_cidr: String,
    /// The node-link network: each served VPC's router gets its first address, each node
    /// one of the others (the same network in every VPC); it must overlap no network of a
    /// VPC.
    #[arg(long, default_value = "100.64.0.0/16")]
    pub node_link_cidr: ipnet::Ipv4Net,
}
