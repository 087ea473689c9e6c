//! What every reconciler of the controller shares: the Kubernetes client,
//! the OVN Northbound client and its replica, metrics and settings.

use std::sync::Arc;
use std::time::Duration;

use api::{Subnet, Vpc, VpcStatus};
use kube::Api;
use kube::api::{Patch, PatchParams};
use ovn::owned::Gateway;
use ovn::owned::owner::{NEUTRON_NETWORK_NAME, OWNER, OWNER_KEY, SUBNET_KEY};
use ovn::view::{self, View};
use ovn::{Table, nb};
use ovsdb::{ClientConfig, Condition, Index, MonitorSpec, TlsFiles, Value};

use crate::bindings::SubnetState;
use crate::cli::Args;
use crate::metrics::Metrics;

/// Field manager of every server-side apply the controller makes.
pub const FIELD_MANAGER: &str = "rovn-controller";

/// Name of the default VPC, created at start-up.
pub const DEFAULT_VPC: &str = "ovn-cluster";
/// Name of the default Subnet, created at start-up on the default VPC.
pub const DEFAULT_SUBNET: &str = "ovn-default";

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
    /// The node-link network ([`crate::node_link`]).
    pub node_link_cidr: ipnet::Ipv4Net,
}

impl Settings {
    /// Settings from the command line.
    pub fn from_args(args: &Args) -> Self {
        Self {
            resync: Duration::from_secs(args.resync_seconds.max(1)),
            default_vpc: DEFAULT_VPC.to_string(),
            default_subnet: DEFAULT_SUBNET.to_string(),
            default_cidr: args.default_cidr.clone(),
            node_link_cidr: args.node_link_cidr.trunc(),
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

/// Index of our pod ports by Subnet (`external_ids:rovn:subnet`).
pub fn pod_subnet_index() -> Index {
    Index::map_value("external_ids", SUBNET_KEY)
}

/// Index of Neutron's router ports by network (`neutron:network_name`).
pub fn neutron_network_index() -> Index {
    Index::map_value("external_ids", NEUTRON_NETWORK_NAME)
}

/// The tables (with the typed rows' columns) the NB replica holds, and the
/// indexes of the lookups the reconcilers make.
pub fn nb_monitor_spec() -> MonitorSpec {
    let spec = [
        view::index_table::<nb::LogicalRouter>,
        view::index_table::<nb::LogicalRouterPort>,
        view::index_table::<nb::LogicalSwitch>,
        view::index_table::<nb::LogicalSwitchPort>,
        view::index_table::<nb::LogicalRouterStaticRoute>,
        view::index_table::<nb::LoadBalancer>,
    ]
    .iter()
    .fold(MonitorSpec::new(), |spec, index| index(spec));
    // Of the security tables, only our rows: Neutron's security groups can
    // hold many thousands of ACLs, none of which we read.
    let spec = [
        view::index_table::<nb::PortGroup>,
        view::index_table::<nb::AddressSet>,
        view::index_table::<nb::Acl>,
    ]
    .iter()
    .fold(spec, |spec, index| index(spec));
    let ours = || {
        vec![Condition::includes(
            "external_ids",
            Value::map([(OWNER_KEY, OWNER)]),
        )]
    };
    spec.table_columns(nb::LoadBalancerGroup::NAME, nb::LoadBalancerGroup::COLUMNS)
        .index(nb::LogicalSwitchPort::NAME, pod_subnet_index())
        .index(nb::LogicalRouterPort::NAME, neutron_network_index())
        .only_where(nb::PortGroup::NAME, ours())
        .only_where(nb::AddressSet::NAME, ours())
        .only_where(nb::Acl::NAME, ours())
}

/// Connects to the Northbound database named by the flags, checks its schema
/// and starts the replica; returns the write gateway and the typed view once
/// the replica holds the current contents.
pub async fn connect_nb(args: &Args) -> Result<(Gateway, View), ContextError> {
    let mut config =
        ClientConfig::from_remotes(&args.ovn_nb).map_err(|source| ContextError::Remotes {
            remotes: args.ovn_nb.clone(),
            source,
        })?;
    if config.remotes.len() > 1 {
        config = config.with_leader_only(true);
    }
    let any_file = args.ovn_private_key.is_some()
        || args.ovn_certificate.is_some()
        || args.ovn_ca_cert.is_some();
    match TlsFiles::from_flags(
        args.ovn_private_key.as_ref(),
        args.ovn_certificate.as_ref(),
        args.ovn_ca_cert.as_ref(),
    ) {
        Some(tls) => config = config.with_tls(tls),
        None if !any_file && !args.ovn_nb.contains("ssl:") => {}
        None => return Err(ContextError::MissingTlsFiles),
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
    Ok((Gateway::new(client), View::new(replica)))
}

/// Shared state of the reconcilers; cheap to clone behind an `Arc`.
pub struct Context {
    /// Kubernetes API client.
    pub kube: kube::Client,
    /// The only way to write the Northbound database.
    pub nb: Gateway,
    /// Typed reads of the replica of the Northbound tables in
    /// [`nb_monitor_spec`].
    pub nb_view: View,
    /// Metrics served on `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Tunables.
    pub settings: Settings,
    /// Address management of every Subnet: the Subnet reconciler registers
    /// subnets, the pod reconciler allocates and releases addresses.
    pub ipam: std::sync::Mutex<ipam::Ipam>,
    /// Subnets accepted by the Subnet reconciler (namespace binding, overlap
    /// checks) and its refresh requests.
    pub subnet_state: SubnetState,
}

impl Context {
    /// Connects to the Northbound database (see [`connect_nb`]).
    pub async fn connect(
        args: &Args,
        kube: kube::Client,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Self>, ContextError> {
        let (nb, nb_view) = connect_nb(args).await?;
        Ok(Arc::new(Self {
            kube,
            nb,
            nb_view,
            metrics,
            settings: Settings::from_args(args),
            ipam: std::sync::Mutex::new(ipam::Ipam::default()),
            subnet_state: SubnetState::default(),
        }))
    }

    /// The cluster-scoped Vpc API.
    pub fn vpcs(&self) -> Api<Vpc> {
        Api::all(self.kube.clone())
    }

    /// The Subnet pods of `namespace` use (see
    /// [`SubnetState::subnet_for_namespace`]): `None` until the Subnet
    /// reconciler has accepted a Subnet for it (retry later).
    pub fn subnet_for_namespace(&self, namespace: &str) -> Option<String> {
        self.subnet_state
            .subnet_for_namespace(namespace, &self.settings.default_vpc)
    }

    /// Asks for a refresh of `subnet`'s status (address counts) and a
    /// re-check of its pending deletion: call after allocating or releasing
    /// addresses. Requests are coalesced; the call never blocks.
    pub fn request_subnet_refresh(&self, subnet: &str) {
        self.subnet_state.request_refresh(subnet);
    }

    /// Writes a Vpc's status (server-side apply, our field manager).
    pub async fn apply_vpc_status(
        &self,
        name: &str,
        status: &VpcStatus,
    ) -> Result<Vpc, kube::Error> {
        self.vpcs()
            .patch_status(
                name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&api::status_apply_patch::<Vpc>(status)),
            )
            .await
    }

    /// Waits until the Northbound replica holds the current contents and the
    /// Subnets running before a restart are accepted again: until then the
    /// served VPCs (and the pods' VPCs) are a partial view, and working from
    /// it would remove the rows of the VPCs not seen yet.
    pub async fn wait_restored(&self) -> anyhow::Result<()> {
        self.nb_view.replica().wait_synced().await?;
        self.subnet_state
            .watch_changes()
            .wait_for(|_| self.subnet_state.is_restored())
            .await?;
        Ok(())
    }

    /// The cluster-scoped Subnet API.
    pub fn subnets(&self) -> Api<Subnet> {
        Api::all(self.kube.clone())
    }
}
