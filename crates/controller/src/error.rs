//! The one error type of every reconciler, and how a failed reconcile is
//! retried.

use std::time::Duration;

use kube::runtime::controller::Action;
use tracing::{debug, warn};

use crate::metrics::Metrics;

/// Why a reconcile did not complete; it is retried.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// A Kubernetes API call failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// A Northbound transaction failed.
    #[error("OVN Northbound: {0}")]
    Nb(#[from] ovsdb::Error),
    /// The write gateway refused a row (a name or key of Neutron's).
    #[error("refused by the Northbound write gateway: {0}")]
    Refused(#[from] ovn::owned::Refused),
    /// Adding or removing a finalizer failed.
    #[error("finalizer: {0}")]
    Finalizer(String),
    /// Waiting for something else to happen first (dependents to go,
    /// addresses to be released, a Subnet to be ready): retried without a
    /// warning, the status says why.
    #[error("{0}")]
    Waiting(String),
    /// Anything else the message explains (a conflict, a race).
    #[error("{0}")]
    Failed(String),
}

/// Delay before retrying a reconcile that waits for something else.
pub const WAITING_RETRY: Duration = Duration::from_secs(5);
/// Delay before retrying a reconcile that failed.
pub const FAILED_RETRY: Duration = Duration::from_secs(1);

impl ReconcileError {
    /// Whether the reconcile only waits for something else.
    pub fn is_waiting(&self) -> bool {
        matches!(self, ReconcileError::Waiting(_))
    }

    /// Logs the failure of reconciling `object` of `kind`, counts it, and
    /// says when to retry.
    pub fn retry(&self, kind: &str, object: &str, metrics: &Metrics) -> Action {
        metrics.reconciled(kind, false);
        if self.is_waiting() {
            debug!(kind, object, error = %self, "reconcile waits");
            Action::requeue(WAITING_RETRY)
        } else {
            warn!(kind, object, error = %self, "reconcile failed, will retry");
            Action::requeue(FAILED_RETRY)
        }
    }
}
