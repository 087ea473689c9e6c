//! The Subnets the reconciler accepted (valid and registered in the IPAM):
//! their VPC, namespaces and configuration, for the overlap checks, the
//! namespace binding and the pod reconciler; plus the channels other
//! reconcilers use to ask for a Subnet's status refresh and to learn that
//! the bindings changed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, RwLock};

use futures::channel::mpsc;
use ipam::SubnetConfig;
use ipnet::IpNet;
use tokio::sync::watch;

/// What an accepted Subnet is bound to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    /// The VPC (router) the Subnet is attached to.
    pub vpc: String,
    /// Namespaces whose pods use the Subnet.
    pub namespaces: Vec<String>,
    /// The validated configuration registered in the IPAM.
    pub config: SubnetConfig,
    /// `spec.default`.
    pub default: bool,
    /// Creation time (RFC 3339) then name: older Subnets win ties.
    pub created: String,
}

impl Binding {
    /// The CIDRs, IPv4 first.
    pub fn cidrs(&self) -> Vec<IpNet> {
        self.config.families().map(|f| f.cidr).collect()
    }
}

/// Accepted Subnets and the change channels; one per controller, in the
/// [`crate::context::Context`].
pub struct SubnetState {
    bindings: RwLock<BTreeMap<String, Binding>>,
    /// Whether the Subnets running before a restart are accepted again;
    /// until then no namespace is bound (a partial view would misplace
    /// pods).
    restored: AtomicBool,
    changed: watch::Sender<u64>,
    refresh: mpsc::UnboundedSender<String>,
    refresh_requests: Mutex<Option<mpsc::UnboundedReceiver<String>>>,
}

impl Default for SubnetState {
    fn default() -> Self {
        let (refresh, requests) = mpsc::unbounded();
        Self {
            bindings: RwLock::default(),
            restored: AtomicBool::new(false),
            changed: watch::channel(0).0,
            refresh,
            refresh_requests: Mutex::new(Some(requests)),
        }
    }
}

impl SubnetState {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Binding>> {
        self.bindings.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The binding of Subnet `name`, when it was accepted.
    pub fn binding(&self, name: &str) -> Option<Binding> {
        self.read().get(name).cloned()
    }

    /// Every accepted Subnet.
    pub fn all(&self) -> BTreeMap<String, Binding> {
        self.read().clone()
    }

    /// The Subnet pods of `namespace` use: the oldest accepted Subnet that
    /// lists the namespace, else the oldest accepted default Subnet of
    /// `default_vpc`. `None` until one is accepted and the Subnets running
    /// before a restart are known again (callers retry on
    /// [`SubnetState::watch_changes`]).
    pub fn subnet_for_namespace(&self, namespace: &str, default_vpc: &str) -> Option<String> {
        if !self.restored.load(Ordering::Acquire) {
            return None;
        }
        let bindings = self.read();
        let oldest = |filter: &dyn Fn(&Binding) -> bool| {
            bindings
                .iter()
                .filter(|(_, b)| filter(b))
                .min_by(|(an, a), (bn, b)| (&a.created, an).cmp(&(&b.created, bn)))
                .map(|(name, _)| name.clone())
        };
        oldest(&|b| b.namespaces.iter().any(|n| n == namespace))
            .or_else(|| oldest(&|b| b.default && b.vpc == default_vpc))
    }

    /// Whether the Subnets running before a restart are accepted again (until
    /// then the accepted Subnets are a partial view).
    pub fn is_restored(&self) -> bool {
        self.restored.load(Ordering::Acquire)
    }

    /// Records Subnet `name` as accepted; watchers are told if anything
    /// changed.
    pub(crate) fn accept(&self, name: &str, binding: Binding) {
        let changed = {
            let mut bindings = self.bindings.write().unwrap_or_else(|p| p.into_inner());
            bindings.insert(name.to_string(), binding.clone()) != Some(binding)
        };
        if changed {
            self.changed.send_modify(|v| *v += 1);
        }
    }

    /// Marks the Subnets running before a restart as accepted again.
    pub(crate) fn mark_restored(&self) {
        if !self.restored.swap(true, Ordering::AcqRel) {
            self.changed.send_modify(|v| *v += 1);
        }
    }

    /// Forgets Subnet `name` (deleted).
    pub(crate) fn forget(&self, name: &str) {
        let removed = self
            .bindings
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name)
            .is_some();
        if removed {
            self.changed.send_modify(|v| *v += 1);
        }
    }

    /// A receiver told whenever the accepted Subnets change.
    pub fn watch_changes(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Asks the Subnet reconciler to refresh `subnet`'s status (address
    /// counts) and re-check a pending deletion; cheap, coalesced.
    pub fn request_refresh(&self, subnet: &str) {
        // Only fails once the reconciler is gone (shutting down).
        let _ = self.refresh.unbounded_send(subnet.to_string());
    }

    /// The stream of refresh requests; taken once by the reconciler.
    pub(crate) fn take_refresh_requests(&self) -> Option<mpsc::UnboundedReceiver<String>> {
        self.refresh_requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }
}
