//! How rovnctl reaches OVN and Kubernetes: the flags every subcommand shares
//! ([`ConnectArgs`]), the Kubernetes client they name, and where the
//! Northbound address comes from when no flag gives it: the `ovn-nb` key of
//! rovn's ConfigMap ([`nb_from_config_map`]), the one the controller and the
//! agents read.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::ConfigMap;
use ovsdb::{Client, ClientConfig, TlsFiles};
use serde::{Deserialize, Serialize};

/// The namespace `deploy/` installs rovn in.
pub const ROVN_NAMESPACE: &str = "rovn-system";
/// rovn's settings (`deploy/config.yaml`).
pub const CONFIG_MAP: &str = "rovn-config";
/// The key of [`CONFIG_MAP`] naming the Northbound remotes.
pub const NB_KEY: &str = "ovn-nb";
/// The ConfigMap key of the Southbound remotes (rovn-agent's --ovn-sb).
pub const SB_KEY: &str = "ovn-sb";
/// The Northbound remotes when neither a flag nor the ConfigMap names any.
pub const DEFAULT_NB: &str = "unix:/var/run/ovn/ovnnb_db.sock";
/// The Southbound remotes of `diagnose --pod` when no flag names any.
pub const DEFAULT_SB: &str = "unix:/var/run/ovn/ovnsb_db.sock";
/// How long a Kubernetes request may take.
const KUBE_TIMEOUT: Duration = Duration::from_secs(30);

/// The OVN, TLS and Kubernetes flags of every subcommand that reads a database.
#[derive(clap::Args, Debug, Clone)]
pub struct ConnectArgs {
    /// OVN Northbound remotes, comma-separated (`unix:PATH`, `tcp:H:P`, `ssl:H:P`).
    /// Default: the `ovn-nb` key of ConfigMap rovn-config in --rovn-namespace when a
    /// kubeconfig is available, else unix:/var/run/ovn/ovnnb_db.sock.
    #[arg(long, env = "ROVN_OVN_NB")]
    pub ovn_nb: Option<String>,
    /// OVN Southbound remotes: where ovn-trace reads the logical flows (`diagnose --pod`,
    /// default unix:/var/run/ovn/ovnsb_db.sock) and `topology` the chassis of each port
    /// (none when absent).
    #[arg(long, env = "ROVN_OVN_SB")]
    pub ovn_sb: Option<String>,
    /// Private key (PEM) for `ssl:` remotes (NB, and SB).
    #[arg(long, requires_all = ["ovn_certificate", "ovn_ca_cert"])]
    pub ovn_private_key: Option<PathBuf>,
    /// Certificate (PEM) for `ssl:` remotes.
    #[arg(long)]
    pub ovn_certificate: Option<PathBuf>,
    /// CA certificate (PEM) for `ssl:` remotes.
    #[arg(long)]
    pub ovn_ca_cert: Option<PathBuf>,
    /// Kubeconfig (default: `$KUBECONFIG` or `~/.kube/config`, then the in-cluster
    /// configuration).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: its current context).
    #[arg(long)]
    pub context: Option<String>,
    /// The namespace rovn is installed in (its ConfigMap rovn-config, DaemonSet rovn-agent
    /// and Lease rovn-controller).
    #[arg(long, default_value = ROVN_NAMESPACE)]
    pub rovn_namespace: String,
}

/// Where the Northbound remotes in use come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NbSource {
    /// `--ovn-nb` or `ROVN_OVN_NB`.
    Flag,
    /// The `ovn-nb` key of rovn's ConfigMap.
    ConfigMap,
    /// [`DEFAULT_NB`].
    Default,
}

/// The Northbound remotes in use and where they come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NbAddress {
    /// Comma-separated remotes.
    pub remotes: String,
    /// Where they come from.
    pub source: NbSource,
    /// The ConfigMap (`namespace/name`) they come from, or that was tried and not read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<String>,
    /// Why the ConfigMap was not read, when that was tried and failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_error: Option<String>,
}

impl fmt::Display for NbAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.source {
            NbSource::Flag => write!(f, "{} (--ovn-nb)", self.remotes),
            NbSource::ConfigMap => write!(
                f,
                "{} (ConfigMap {})",
                self.remotes,
                self.config_map.as_deref().unwrap_or(CONFIG_MAP)
            ),
            NbSource::Default => write!(f, "{} (default)", self.remotes),
        }
    }
}

impl ConnectArgs {
    /// The TLS files, when all three flags are given.
    pub fn tls(&self) -> Option<TlsFiles> {
        TlsFiles::from_flags(
            self.ovn_private_key.as_ref(),
            self.ovn_certificate.as_ref(),
            self.ovn_ca_cert.as_ref(),
        )
    }

    /// A client of the API server: from `--kubeconfig` (an error when it cannot be
    /// read), else inferred (`None` when there is no configuration to infer from).
    pub async fn kube(&self) -> Result<Option<kube::Client>> {
        let options = kube::config::KubeConfigOptions {
            context: self.context.clone(),
            ..Default::default()
        };
        let mut config = match (&self.kubeconfig, &self.context) {
            (Some(path), _) => {
                let kubeconfig = kube::config::Kubeconfig::read_from(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                    .await
                    .with_context(|| format!("loading {}", path.display()))?
            }
            (None, Some(context)) => kube::Config::from_kubeconfig(&options)
                .await
                .with_context(|| format!("loading context {context:?} of the kubeconfig"))?,
            (None, None) => match kube::Config::infer().await {
                Ok(config) => config,
                Err(_) => return Ok(None),
            },
        };
        config.connect_timeout = Some(KUBE_TIMEOUT);
        config.read_timeout = Some(KUBE_TIMEOUT);
        Ok(Some(kube::Client::try_from(config)?))
    }

    /// A client of the API server, or an error saying how to give one.
    pub async fn kube_required(&self) -> Result<kube::Client> {
        self.kube().await?.context(
            "no Kubernetes configuration: give --kubeconfig, set $KUBECONFIG or run in a cluster",
        )
    }

    /// The Northbound remotes: `--ovn-nb`, else the ConfigMap's (when `kube` is given and
    /// the ConfigMap has the key), else [`DEFAULT_NB`].
    pub async fn nb_address(&self, kube: Option<&kube::Client>) -> NbAddress {
        if let Some(remotes) = &self.ovn_nb {
            return NbAddress {
                remotes: remotes.clone(),
                source: NbSource::Flag,
                config_map: None,
                config_map_error: None,
            };
        }
        let mut config_map_error = None;
        let config_map = format!("{}/{CONFIG_MAP}", self.rovn_namespace);
        if let Some(kube) = kube {
            match nb_from_config_map(kube, &self.rovn_namespace).await {
                Ok(Some(remotes)) => {
                    return NbAddress {
                        remotes,
                        source: NbSource::ConfigMap,
                        config_map: Some(config_map),
                        config_map_error: None,
                    };
                }
                Ok(None) => {}
                Err(error) => config_map_error = Some(format!("{error:#}")),
            }
        }
        NbAddress {
            remotes: DEFAULT_NB.to_string(),
            source: NbSource::Default,
            config_map: config_map_error.is_some().then_some(config_map),
            config_map_error,
        }
    }
}

impl ConnectArgs {
    /// The Southbound remotes: `--ovn-sb`, else the `ovn-sb` key of rovn's ConfigMap
    /// (when `kube` is given and it has one), else [`DEFAULT_SB`].
    pub async fn sb_remotes(&self, kube: Option<&kube::Client>) -> String {
        if let Some(remotes) = &self.ovn_sb {
            return remotes.clone();
        }
        if let Some(kube) = kube
            && let Ok(Some(remotes)) = config_map_value(kube, &self.rovn_namespace, SB_KEY).await
        {
            return remotes;
        }
        DEFAULT_SB.to_string()
    }
}

/// The Northbound remotes in the `ovn-nb` key of ConfigMap `rovn-config` in
/// `namespace`; `None` when the ConfigMap or the key does not exist.
pub async fn nb_from_config_map(client: &kube::Client, namespace: &str) -> Result<Option<String>> {
    config_map_value(client, namespace, NB_KEY).await
}

/// The value of `key` in ConfigMap `rovn-config` in `namespace`, trimmed; `None`
/// when the ConfigMap or the key does not exist or the value is empty.
pub async fn config_map_value(
    client: &kube::Client,
    namespace: &str,
    key: &str,
) -> Result<Option<String>> {
    let config_map = kube::Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .get_opt(CONFIG_MAP)
        .await
        .with_context(|| format!("reading ConfigMap {namespace}/{CONFIG_MAP}"))?;
    Ok(config_map
        .and_then(|c| c.data)
        .and_then(|mut data| data.remove(key))
        .map(|remotes| remotes.trim().to_string())
        .filter(|remotes| !remotes.is_empty()))
}

/// The client configuration for `remotes` (of a RAFT cluster: leader only).
pub fn client_config(remotes: &str, tls: Option<TlsFiles>) -> Result<ClientConfig> {
    let mut config = ClientConfig::from_remotes(remotes)
        .with_context(|| format!("OVSDB remotes {remotes:?}"))?;
    if let Some(tls) = tls {
        config = config.with_tls(tls);
    }
    if config.remotes.len() > 1 {
        config = config.with_leader_only(true);
    }
    Ok(config)
}

/// A client of the database at `remotes` (of a RAFT cluster: its leader).
pub async fn connect(remotes: &str, tls: Option<TlsFiles>) -> Result<Client> {
    connect_with(client_config(remotes, tls)?).await
}

/// A client made with `config`.
pub async fn connect_with(config: ClientConfig) -> Result<Client> {
    let remotes: Vec<String> = config.remotes.iter().map(ToString::to_string).collect();
    Client::connect(config)
        .await
        .with_context(|| format!("connecting to {}", remotes.join(",")))
}
