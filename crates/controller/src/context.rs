//! What every reconciler of the controller shares: the Kubernetes client,
//! the OVN Northbound client and its replica, metrics and settings.

use std::sync::Arc;
use std::time::Duration;

use api::{Subnet, Vpc};
use kube::Api;
use ovn::Table;
use ovn::nb;
use ovsdb::{ClientConfig, MonitorSpec, Replica, TlsFiles, TxnBuilder, TxnResult};

use crate::cli::Args;
use crate::metrics::Metrics;

/// Field manager of every server-side apply the controller makes.
pub const FIELD_MANAGER: &str = "rovn-controller";

/// Name of the default VPC, created at start-up.
pub const DEFAULT_VPC: &str = "ovn-cluster";

/// Tunables of the reconcilers.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Period of the full resync (a safety net: changes are event-driven).
    pub resync: Duration,
    /// Name of the default VPC.
    pub default_vpc: String,
    /// Name of the default Subnet.
    pub default_subnet: String,
    /// CIDR of the default Subnet when it is created.
    pub default_cidr: String,
}

impl Settings {
    /// Settings from the command line.
    pub fn from_args(args: &Args) -> Self {
        Self {
            resync: Duration::from_secs(args.resync_seconds.max(1)),
            default_vpc: DEFAULT_VPC.to_string(),
            default_subnet: crate::subnet::DEFAULT_SUBNET.to_string(),
            default_cidr: args.default_cidr.clone(),
        }
    }
}

/// Why the controller could not start.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// `--ovn-nb` could not be parsed.
    #[error("invalid --ovn-nb {remotes:?}")]
    Remotes {
        /// The flag's value.
        remotes: String,
        /// The parse error.
        source: ovsdb::Error,
    },
    /// `ssl:` remotes need all three TLS files.
    #[error("ssl: remotes need --ovn-private-key, --ovn-certificate and --ovn-ca-cert")]
    MissingTlsFiles,
    /// The Northbound database could not be reached or read.
    #[error("cannot reach or read the OVN Northbound database")]
    Nb(#[source] ovsdb::Error),
    /// The server's schema lacks a table or column rovn uses.
    #[error("the OVN Northbound schema lacks a column rovn uses")]
    Schema(#[source] ovsdb::Error),
}

/// The tables (with the typed rows' columns) the NB replica holds.
pub fn nb_monitor_spec() -> MonitorSpec {
    MonitorSpec::new()
        .table_columns(nb::LogicalRouter::NAME, nb::LogicalRouter::COLUMNS)
        .table_columns(nb::LogicalRouterPort::NAME, nb::LogicalRouterPort::COLUMNS)
        .table_columns(nb::LogicalSwitch::NAME, nb::LogicalSwitch::COLUMNS)
        .table_columns(nb::LogicalSwitchPort::NAME, nb::LogicalSwitchPort::COLUMNS)
        .table_columns(
            nb::LogicalRouterStaticRoute::NAME,
            nb::LogicalRouterStaticRoute::COLUMNS,
        )
}

/// Connects to the Northbound database named by the flags, checks its schema
/// and starts the replica; returns once the replica holds the current
/// contents.
pub async fn connect_nb(args: &Args) -> Result<(ovsdb::Client, Replica), ContextError> {
    let mut config =
        ClientConfig::from_remotes(&args.ovn_nb).map_err(|source| ContextError::Remotes {
            remotes: args.ovn_nb.clone(),
            source,
        })?;
    if config.remotes.len() > 1 {
        config = config.with_leader_only(true);
    }
    match (
        &args.ovn_private_key,
        &args.ovn_certificate,
        &args.ovn_ca_cert,
    ) {
        (Some(key), Some(cert), Some(ca)) => {
            config = config.with_tls(TlsFiles {
                private_key: key.clone(),
                certificate: cert.clone(),
                ca_cert: ca.clone(),
            });
        }
        (None, None, None) if !args.ovn_nb.contains("ssl:") => {}
        _ => return Err(ContextError::MissingTlsFiles),
    }
    let client = ovsdb::Client::connect(config)
        .await
        .map_err(ContextError::Nb)?;
    let schema = client
        .get_schema(nb::DATABASE)
        .await
        .map_err(ContextError::Nb)?;
    ovn::check_schema(&schema, nb::REQUIRED).map_err(ContextError::Schema)?;
    let replica = client
        .monitor(nb::DATABASE, nb_monitor_spec())
        .await
        .map_err(ContextError::Nb)?;
    Ok((client, replica))
}

/// Shared state of the reconcilers; cheap to clone behind an `Arc`.
pub struct Context {
    /// Kubernetes API client.
    pub kube: kube::Client,
    /// OVN Northbound client (transactions).
    pub nb: ovsdb::Client,
    /// Replica of the Northbound tables in [`nb_monitor_spec`].
    pub nb_replica: Replica,
    /// Metrics served on `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Tunables.
    pub settings: Settings,
    /// Address management of every Subnet: the Subnet reconciler registers
    /// subnets, the pod reconciler allocates and releases addresses.
    pub ipam: std::sync::Mutex<ipam::Ipam>,
    /// Subnets accepted by the Subnet reconciler (namespace binding, overlap
    /// checks) and its refresh requests.
    pub subnet_state: crate::subnet::SubnetState,
}

impl Context {
    /// Connects to the Northbound database (see [`connect_nb`]).
    pub async fn connect(
        args: &Args,
        kube: kube::Client,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Self>, ContextError> {
        let (nb, nb_replica) = connect_nb(args).await?;
        Ok(Arc::new(Self {
            kube,
            nb,
            nb_replica,
            metrics,
            settings: Settings::from_args(args),
            ipam: std::sync::Mutex::new(ipam::Ipam::default()),
            subnet_state: crate::subnet::SubnetState::default(),
        }))
    }

    /// The cluster-scoped Vpc API.
    pub fn vpcs(&self) -> Api<Vpc> {
        Api::all(self.kube.clone())
    }

    /// The cluster-scoped Subnet API.
    pub fn subnets(&self) -> Api<Subnet> {
        Api::all(self.kube.clone())
    }

    /// A transaction on the Northbound database.
    pub fn nb_txn(&self) -> TxnBuilder {
        TxnBuilder::new(nb::DATABASE)
    }

    /// Commits a Northbound transaction.
    pub async fn nb_commit(&self, txn: &TxnBuilder) -> ovsdb::Result<TxnResult> {
        self.nb.commit(txn).await
    }
}
