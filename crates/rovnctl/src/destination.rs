//! Where `rovnctl trace` sends its packet: an IPv4 address, a pod
//! (`<namespace>/<pod>`, its address read from its switch port) or a Service
//! (`svc/<namespace>/<name>`, its ClusterIP and, unless given, its first port
//! of the protocol, read from the API).

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Service;
use ovn::owned::{Kind, Owner};

use crate::flow::Protocol;
use crate::snapshot::NbSnapshot;

/// A destination as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// An address.
    Address(Ipv4Addr),
    /// A pod with a rovn port.
    Pod {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// A Service with a ClusterIP.
    Service {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
}

impl FromStr for Destination {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<Self> {
        if let Ok(address) = text.parse::<Ipv4Addr>() {
            return Ok(Destination::Address(address));
        }
        let usage = || {
            anyhow::anyhow!(
                "destination {text:?}: expected an IPv4 address, <namespace>/<pod> or \
                 svc/<namespace>/<service>"
            )
        };
        let parts: Vec<&str> = text.split('/').collect();
        if parts.iter().any(|part| part.is_empty()) {
            return Err(usage());
        }
        match parts.as_slice() {
            [namespace, name] => Ok(Destination::Pod {
                namespace: namespace.to_string(),
                name: name.to_string(),
            }),
            ["svc" | "service", namespace, name] => Ok(Destination::Service {
                namespace: namespace.to_string(),
                name: name.to_string(),
            }),
            _ => Err(usage()),
        }
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Destination::Address(address) => write!(f, "{address}"),
            Destination::Pod { namespace, name } => write!(f, "pod {namespace}/{name}"),
            Destination::Service { namespace, name } => write!(f, "Service {namespace}/{name}"),
        }
    }
}

/// The IPv4 address of the first `addresses` entry (`"MAC IP [IP...]"`) holding one.
fn first_ipv4<'a>(addresses: impl IntoIterator<Item = &'a String>) -> Option<Ipv4Addr> {
    addresses
        .into_iter()
        .flat_map(|entry| entry.split_whitespace().skip(1))
        .find_map(|word| word.parse().ok())
}

impl Destination {
    /// The address (and port, when the destination names one) to trace towards.
    pub async fn resolve(
        &self,
        nb: &NbSnapshot,
        kube: Option<&kube::Client>,
        protocol: Protocol,
        port: Option<u16>,
    ) -> Result<(Ipv4Addr, Option<u16>)> {
        match self {
            Destination::Address(address) => Ok((*address, port)),
            Destination::Pod { namespace, name } => {
                let owner = Owner::pod(namespace, name);
                let lsp = nb
                    .owned_switch_ports(Kind::Pod)
                    .find(|lsp| owner.owns(&lsp.external_ids))
                    .with_context(|| {
                        format!("{self} has no rovn port in the Northbound database")
                    })?;
                let address = first_ipv4(&lsp.addresses).with_context(|| {
                    format!("{self}: its port {} has no IPv4 address", lsp.name)
                })?;
                Ok((address, port))
            }
            Destination::Service { namespace, name } => {
                let kube = kube.context(
                    "a Service destination is read from the API: give --kubeconfig or set $KUBECONFIG",
                )?;
                let service = kube::Api::<Service>::namespaced(kube.clone(), namespace)
                    .get(name)
                    .await
                    .with_context(|| format!("reading {self}"))?;
                let spec = service.spec.unwrap_or_default();
                let address: Ipv4Addr = spec
                    .cluster_ip
                    .as_deref()
                    .and_then(|ip| ip.parse().ok())
                    .with_context(|| format!("{self} has no IPv4 ClusterIP"))?;
                if port.is_some() || protocol == Protocol::Icmp {
                    return Ok((address, port));
                }
                let wanted = protocol.as_str().to_uppercase();
                let first = spec
                    .ports
                    .iter()
                    .flatten()
                    .find(|p| p.protocol.as_deref().unwrap_or("TCP") == wanted)
                    .with_context(|| format!("{self} has no {wanted} port"))?;
                let number = u16::try_from(first.port)
                    .with_context(|| format!("{self}: port {} out of range", first.port))?;
                Ok((address, Some(number)))
            }
        }
    }
}

/// Refuses a destination that cannot be traced from `pod` (the pod itself).
pub fn check_not_self(pod: &str, destination: &Destination) -> Result<()> {
    if let Destination::Pod { namespace, name } = destination
        && format!("{namespace}/{name}") == pod
    {
        bail!("the destination is the pod itself");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_parse_as_addresses_pods_and_services() {
        assert_eq!(
            "10.0.1.50".parse::<Destination>().unwrap(),
            Destination::Address(Ipv4Addr::new(10, 0, 1, 50))
        );
        assert_eq!(
            "web/server".parse::<Destination>().unwrap(),
            Destination::Pod {
                namespace: "web".into(),
                name: "server".into()
            }
        );
        assert_eq!(
            "svc/default/kubernetes".parse::<Destination>().unwrap(),
            Destination::Service {
                namespace: "default".into(),
                name: "kubernetes".into()
            }
        );
        for bad in [
            "",
            "web",
            "web/",
            "a/b/c",
            "svc//x",
            "fd00::1",
            "10.0.1.300",
        ] {
            assert!(bad.parse::<Destination>().is_err(), "{bad:?}");
        }
        assert!(check_not_self("web/server", &"web/server".parse().unwrap()).is_err());
        assert_eq!(
            first_ipv4(&["0a:58:0a:00:02:05 fd00::5 10.0.2.5".to_string()]),
            Some(Ipv4Addr::new(10, 0, 2, 5))
        );
    }
}
