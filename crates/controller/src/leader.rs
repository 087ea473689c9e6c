//! Leader election on a `coordination.k8s.io/v1` Lease, so that of several
//! controller replicas exactly one writes to OVN and to the API.
//!
//! The holder renews the Lease every `renew_interval`; a candidate takes the
//! Lease over only when its `renewTime + leaseDurationSeconds` has passed.
//! Every write uses the Lease's `resourceVersion`, so two candidates racing
//! for an expired Lease cannot both win. A leader that fails to renew for
//! `renew_deadline` (shorter than the lease duration) reports the loss, and
//! the process stops writing before any other replica may take over.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use tokio::sync::watch;
use tracing::{info, warn};

/// Timing of the election.
#[derive(Clone, Debug)]
pub struct LeaseTiming {
    /// How long a Lease stays valid without renewal.
    pub lease_duration: Duration,
    /// A leader that could not renew for this long gives up leadership.
    pub renew_deadline: Duration,
    /// How often the holder renews and a candidate retries.
    pub retry_period: Duration,
}

impl Default for LeaseTiming {
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// One candidate in the election for a named Lease.
pub struct LeaderElector {
    api: Api<Lease>,
    lease_name: String,
    identity: String,
    timing: LeaseTiming,
}

/// What one attempt to acquire or renew found.
#[derive(Debug, PartialEq, Eq)]
enum Attempt {
    Leading,
    Following { holder: String },
}

impl LeaderElector {
    /// A candidate `identity` for the Lease `lease_name` in `api`'s namespace.
    pub fn new(api: Api<Lease>, lease_name: &str, identity: &str, timing: LeaseTiming) -> Self {
        Self {
            api,
            lease_name: lease_name.to_string(),
            identity: identity.to_string(),
            timing,
        }
    }

    /// Runs the election until `shutdown` fires. `leading` is set to true
    /// when this candidate holds the Lease and to false when it lost it (it
    /// never becomes true again after a loss: the caller is expected to stop
    /// writing and exit). On shutdown a held Lease is released so a standby
    /// replica takes over without waiting for expiry.
    pub async fn run(self, leading: watch::Sender<bool>, mut shutdown: watch::Receiver<bool>) {
        let mut last_renew: Option<Instant> = None;
        loop {
            match self.try_acquire_or_renew().await {
                Ok(Attempt::Leading) => {
                    if last_renew.is_none() {
                        info!(lease = %self.lease_name, identity = %self.identity, "became leader");
                    }
                    last_renew = Some(Instant::now());
                    leading.send_replace(true);
                }
                Ok(Attempt::Following { holder }) => {
                    if last_renew.is_some() {
                        warn!(lease = %self.lease_name, %holder, "leadership taken over by another replica");
                        leading.send_replace(false);
                        return;
                    }
                }
                Err(err) => {
                    warn!(lease = %self.lease_name, error = %err, "lease update failed");
                    if let Some(at) = last_renew
                        && at.elapsed() >= self.timing.renew_deadline
                    {
                        warn!(lease = %self.lease_name, "could not renew lease before the deadline");
                        leading.send_replace(false);
                        return;
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.timing.retry_period) => {}
                _ = shutdown.changed() => {
                    if last_renew.is_some() {
                        self.release().await;
                    }
                    return;
                }
            }
        }
    }

    async fn try_acquire_or_renew(&self) -> Result<Attempt, kube::Error> {
        let now = MicroTime(jiff::Timestamp::now());
        let duration_secs = self.timing.lease_duration.as_secs() as i32;
        let Some(mut lease) = self.api.get_opt(&self.lease_name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.lease_name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(duration_secs),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            self.api.create(&PostParams::default(), &lease).await?;
            return Ok(Attempt::Leading);
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let holder = spec.holder_identity.clone().unwrap_or_default();
        if holder != self.identity && !holder.is_empty() && !lease_expired(spec, &now) {
            return Ok(Attempt::Following { holder });
        }
        if holder != self.identity {
            spec.acquire_time = Some(now.clone());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            spec.holder_identity = Some(self.identity.clone());
        }
        spec.renew_time = Some(now);
        spec.lease_duration_seconds = Some(duration_secs);
        // `replace` carries the resourceVersion we read: a concurrent writer
        // makes it fail with a conflict instead of both believing they lead.
        self.api
            .replace(&self.lease_name, &PostParams::default(), &lease)
            .await?;
        Ok(Attempt::Leading)
    }

    async fn release(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.lease_name).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        match self
            .api
            .replace(&self.lease_name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => info!(lease = %self.lease_name, "released leadership"),
            Err(err) => warn!(lease = %self.lease_name, error = %err, "could not release lease"),
        }
    }
}

fn lease_expired(spec: &LeaseSpec, now: &MicroTime) -> bool {
    let Some(renewed) = spec.renew_time.as_ref() else {
        return true;
    };
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(0).max(0));
    let expiry = renewed.0 + jiff::SignedDuration::from_secs(duration);
    expiry < now.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(renewed_secs_ago: i64, duration: i32) -> LeaseSpec {
        let renewed = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(renewed_secs_ago);
        LeaseSpec {
            holder_identity: Some("other".into()),
            renew_time: Some(MicroTime(renewed)),
            lease_duration_seconds: Some(duration),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn lease_expiry_follows_renew_time_and_duration() {
        let now = MicroTime(jiff::Timestamp::now());
        assert!(!lease_expired(&spec(5, 15), &now));
        assert!(lease_expired(&spec(20, 15), &now));
        assert!(lease_expired(&LeaseSpec::default(), &now));
    }
}
