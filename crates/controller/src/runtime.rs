//! What every reconciler needs to run: watches that survive interruptions,
//! workers draining a [`WorkQueue`], kube-runtime controllers with a
//! finalizer, and Warning Events.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{self, Event as Finalize};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::task::JoinSet;
use tracing::{debug, warn};

use crate::context::{Context, FIELD_MANAGER};
use crate::error::ReconcileError;
use crate::queue::WorkQueue;

/// A background task of a reconciler; its end (error or not) ends the
/// controller.
pub type Tasks = JoinSet<anyhow::Result<()>>;

/// Warning Events on objects, recorded best effort (a failure is logged:
/// the status says the same).
pub struct Events {
    recorder: Recorder,
    action: &'static str,
}

impl Events {
    /// Events of our field manager for action `action` (`Reconcile`,
    /// `Allocate`).
    pub fn new(ctx: &Context, action: &'static str) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.to_string(),
            instance: None,
        };
        Self {
            recorder: Recorder::new(ctx.kube.clone(), reporter),
            action,
        }
    }

    /// Records a Warning Event with `reason` and `note` on `object`.
    pub async fn warn<K: Resource<DynamicType = ()>>(&self, object: &K, reason: &str, note: &str) {
        let event = Event {
            type_: EventType::Warning,
            reason: reason.to_string(),
            note: Some(note.chars().take(1000).collect()),
            action: self.action.to_string(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, &object.object_ref(&())).await {
            warn!(object = %object.name_any(), %error, "could not record an Event");
        }
    }
}

/// A cache of every `K` of `api` and the stream of its watch events
/// (re-listing after a backoff when interrupted); `modify` trims each object
/// before it is cached (fields no reconciler reads).
pub fn reflect<K>(
    api: Api<K>,
    modify: impl FnMut(&mut K) + Send + 'static,
) -> (
    Store<K>,
    impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send,
)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (store, writer) = reflector::store::<K>();
    let events = reflector::reflector(
        writer,
        watcher(api, watcher::Config::default())
            .modify(modify)
            .default_backoff(),
    );
    (store, events)
}

/// Hands every event of a watch to `handle` until the watch ends (an
/// error: reconcilers watch forever). Interruptions are logged; the watcher
/// re-lists by itself.
pub async fn follow<K>(
    what: &str,
    events: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
    mut handle: impl FnMut(watcher::Event<K>),
) -> anyhow::Result<()> {
    let mut events = std::pin::pin!(events);
    while let Some(event) = events.next().await {
        match event {
            Ok(event) => handle(event),
            Err(error) => warn!(%error, "{what} watch interrupted"),
        }
    }
    anyhow::bail!("the {what} watch ended")
}

/// Spawns `count` workers taking keys from `queue`: a key is processed by
/// `work`, then marked done, or failed (retried with backoff) when `work`
/// returns an error. `after` runs once per processed key.
pub fn spawn_workers<W, Fut>(tasks: &mut Tasks, count: usize, queue: &Arc<WorkQueue>, work: W)
where
    W: Fn(String) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<(), ReconcileError>> + Send,
{
    for _ in 0..count {
        let queue = queue.clone();
        let work = work.clone();
        tasks.spawn(async move {
            loop {
                let key = queue.next().await;
                match work(key.clone()).await {
                    Ok(()) => queue.done(&key),
                    Err(_) => queue.failed(&key),
                }
            }
        });
    }
}

/// [`spawn_workers`] for a reconciler of `kind` (the `kind` label of
/// `rovn_reconciles_total`): every outcome is counted, a failure logged
/// with its key before the retry.
pub fn spawn_reconcilers<W, Fut>(
    tasks: &mut Tasks,
    count: usize,
    queue: &Arc<WorkQueue>,
    ctx: &Arc<Context>,
    kind: &'static str,
    work: W,
) where
    W: Fn(String) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<(), ReconcileError>> + Send,
{
    let ctx = ctx.clone();
    spawn_workers(tasks, count, queue, move |key| {
        let (ctx, work) = (ctx.clone(), work.clone());
        async move {
            let result = work(key.clone()).await;
            if let Err(error) = &result {
                warn!(%kind, %key, %error, "reconcile failed, will retry");
            }
            ctx.metrics.reconciled(kind, result.is_ok());
            result
        }
    });
}

/// Waits for the first background task to end and returns its outcome.
pub async fn first_end(tasks: &mut Tasks) -> anyhow::Result<()> {
    match tasks.join_next().await {
        Some(Ok(result)) => result,
        Some(Err(error)) => Err(error.into()),
        None => Ok(()),
    }
}

/// Runs `apply` or `cleanup` of `object` under finalizer `name`: the
/// finalizer is added before the first apply and removed after a
/// successful cleanup.
pub async fn finalized<K, Apply, Cleanup, FutA, FutC>(
    api: &Api<K>,
    name: &str,
    object: Arc<K>,
    apply: Apply,
    cleanup: Cleanup,
) -> Result<Action, ReconcileError>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + Debug + Send + Sync,
    Apply: FnOnce(Arc<K>) -> FutA,
    Cleanup: FnOnce(Arc<K>) -> FutC,
    FutA: Future<Output = Result<Action, ReconcileError>>,
    FutC: Future<Output = Result<Action, ReconcileError>>,
{
    finalizer::finalizer(api, name, object, |event| async move {
        match event {
            Finalize::Apply(object) => apply(object).await,
            Finalize::Cleanup(object) => cleanup(object).await,
        }
    })
    .await
    .map_err(|error| match error {
        finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e,
        other => ReconcileError::Finalizer(other.to_string()),
    })
}

/// Runs a kube-runtime controller until its watch ends; the outcome of each
/// reconcile is already counted and logged by the reconciler.
pub async fn run_controller<K, R, C>(
    controller: Controller<K>,
    reconcile: impl FnMut(Arc<K>, Arc<C>) -> R,
    error_policy: impl Fn(Arc<K>, &ReconcileError, Arc<C>) -> Action,
    context: Arc<C>,
) where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    R: Future<Output = Result<Action, ReconcileError>> + Send + 'static,
    C: Send + Sync + 'static,
{
    controller
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            if let Err(error) = result {
                debug!(%error, "reconcile");
            }
        })
        .await;
}
