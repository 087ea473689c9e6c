//! The one way tests, benchmarks, the lab and the environments themselves wait for
//! something: poll a probe until it says it is there, with one policy for every wait.
//!
//! - The probe is called at once, then again after 10 ms, 20 ms, 40 ms and every 50 ms from
//!   then on: quick things are seen quickly, slow ones are not hammered.
//! - The deadline is a hang guard, never a performance assertion; [`HANG_GUARD`] unless the
//!   caller knows better (a daemon's start-up, a thousand-pod burst).
//! - The timeout error names what was awaited and, when the probe reported one, the last
//!   thing it saw.
//!
//! A probe returns an [`Outcome`]: `Option<T>` (`None`: not yet), `bool` (`false`: not
//! yet), or `Result<T, E>` (`Err(e)`: not yet, and `e` is what was seen; it is shown when
//! the wait times out). To end a wait early with an error, return `Some(Err(e))` and
//! flatten the result (`wait_until(..)?.map_err(..)`).
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use std::time::Duration;
//! use testenv::poll::{eventually, wait_until, wait_until_async};
//! // Blocking, with its own deadline:
//! let port = wait_until(Duration::from_secs(30), "the port file", || {
//!     std::fs::read_to_string("/tmp/port").ok()
//! })?;
//! // Async, an error on timeout (for the lab and other non-tests):
//! wait_until_async(Duration::from_secs(30), "the answer", || async { Some(42) }).await?;
//! // Async in a test, a panic on timeout, the last count shown:
//! let n = eventually("three pods", || async {
//!     let n = 3; // e.g. pods listed through the API
//!     if n == 3 { Ok(n) } else { Err(format!("{n} pods")) }
//! })
//! .await;
//! # let _ = (port, n); Ok(()) }
//! ```

use std::fmt::Display;
use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};

/// Upper bound of a wait for something that normally takes seconds: a hang guard.
pub const HANG_GUARD: Duration = Duration::from_secs(120);

/// The first pause between two calls of a probe; it doubles up to [`MAX_INTERVAL`].
const FIRST_INTERVAL: Duration = Duration::from_millis(10);
/// The longest pause between two calls of a probe.
const MAX_INTERVAL: Duration = Duration::from_millis(50);

/// What a probe returns: there (with a value), or not yet (maybe with what it saw; an
/// empty observation counts as none).
pub trait Outcome {
    /// What the wait returns once the probe says it is there.
    type Value;
    /// `Ok(value)` when there; `Err(observation)` when not yet.
    fn into_outcome(self) -> Result<Self::Value, Option<String>>;
}

impl<T> Outcome for Option<T> {
    type Value = T;
    fn into_outcome(self) -> Result<T, Option<String>> {
        self.ok_or(None)
    }
}

impl Outcome for bool {
    type Value = ();
    fn into_outcome(self) -> Result<(), Option<String>> {
        if self { Ok(()) } else { Err(None) }
    }
}

impl<T, E: Display> Outcome for Result<T, E> {
    type Value = T;
    fn into_outcome(self) -> Result<T, Option<String>> {
        self.map_err(|e| Some(format!("{e:#}")))
    }
}

/// The pauses between the calls of a probe and the deadline of one wait.
struct Schedule {
    deadline: Instant,
    timeout: Duration,
    interval: Duration,
    what: String,
    last: Option<String>,
}

impl Schedule {
    fn new(timeout: Duration, what: &str) -> Self {
        Self {
            deadline: Instant::now() + timeout,
            timeout,
            interval: FIRST_INTERVAL,
            what: what.to_owned(),
            last: None,
        }
    }

    /// Records one call's outcome: `Ok(Some(value))` when there, `Ok(None)` with the
    /// pause before the next call, `Err` once the deadline has passed.
    fn record<P: Outcome>(&mut self, outcome: P) -> Result<Option<P::Value>> {
        match outcome.into_outcome() {
            Ok(value) => Ok(Some(value)),
            Err(observation) => {
                if let Some(seen) = observation.filter(|o| !o.is_empty()) {
                    self.last = Some(seen);
                }
                if Instant::now() >= self.deadline {
                    return Err(self.timed_out());
                }
                Ok(None)
            }
        }
    }

    /// The pause before the next call (never past the deadline).
    fn next_pause(&mut self) -> Duration {
        let pause = self
            .interval
            .min(self.deadline.saturating_duration_since(Instant::now()));
        self.interval = (self.interval * 2).min(MAX_INTERVAL);
        pause
    }

    fn timed_out(&self) -> anyhow::Error {
        match &self.last {
            Some(last) => anyhow!(
                "timed out after {:?} waiting for {}; last seen: {last}",
                self.timeout,
                self.what
            ),
            None => anyhow!(
                "timed out after {:?} waiting for {}",
                self.timeout,
                self.what
            ),
        }
    }
}

/// Calls `probe` (blocking) until it says `what` is there, for at most `timeout`.
pub fn wait_until<P: Outcome>(
    timeout: Duration,
    what: &str,
    mut probe: impl FnMut() -> P,
) -> Result<P::Value> {
    let mut schedule = Schedule::new(timeout, what);
    loop {
        if let Some(value) = schedule.record(probe())? {
            return Ok(value);
        }
        std::thread::sleep(schedule.next_pause());
    }
}

/// Calls the async `probe` until it says `what` is there, for at most `timeout` (a probe
/// call still running at the deadline is abandoned).
pub async fn wait_until_async<P, F, Fut>(
    timeout: Duration,
    what: &str,
    mut probe: F,
) -> Result<P::Value>
where
    P: Outcome,
    F: FnMut() -> Fut,
    Fut: Future<Output = P>,
{
    let mut schedule = Schedule::new(timeout, what);
    let deadline = tokio::time::Instant::from_std(schedule.deadline);
    loop {
        let Ok(outcome) = tokio::time::timeout_at(deadline, probe()).await else {
            return Err(schedule.timed_out());
        };
        if let Some(value) = schedule.record(outcome)? {
            return Ok(value);
        }
        tokio::time::sleep(schedule.next_pause()).await;
    }
}

/// [`wait_until_async`] for tests: at most [`HANG_GUARD`], and a timeout panics with the
/// error (what was awaited, the last observation).
pub async fn eventually<P, F, Fut>(what: &str, probe: F) -> P::Value
where
    P: Outcome,
    F: FnMut() -> Fut,
    Fut: Future<Output = P>,
{
    match wait_until_async(HANG_GUARD, what, probe).await {
        Ok(value) => value,
        Err(e) => panic!("{e:#}"),
    }
}
