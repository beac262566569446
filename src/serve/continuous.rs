//! The pipeline that publishes on every change: it re-judges and re-renders only what changed
//! (on the blocking pool, so scrapes never wait for it) and keeps the LookupEvents pollers in
//! line with what the cluster names.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tracing::{debug, info, warn};

use super::cluster_side::ClusterSide;
use super::pipeline::{ClusterInput, TrailInput};
use super::publish::release_freed_memory;
use super::trail_side::TrailSide;
use super::web::AppState;
use crate::config::Config;
use crate::evaluate::{EvaluationCache, evaluate_with};
use crate::model::trail::LookupPlan;
use crate::output::metrics::ResourceCache;
use crate::source::lookup_events::Poller;
use crate::telemetry::label;

/// How long the publisher waits after a change for more changes to arrive.
const DEBOUNCE: Duration = Duration::from_millis(200);
/// Live CloudTrail pages arrive continuously: republish for them at most this often.
const TRAIL_REPUBLISH: Duration = Duration::from_secs(1);

/// Opens both sides, then publishes for as long as the process runs.
pub(super) async fn run(
    state: Arc<AppState>,
    cluster: ClusterInput,
    trail: TrailInput,
    config: Config,
    at: Option<i64>,
) {
    // Only CloudTrail attribution reads the resources' identifier strings.
    let keep_identifiers = !matches!(trail, TrailInput::Off);
    let Some(cluster) = ClusterSide::open(cluster, &state, keep_identifiers).await else {
        return;
    };
    let (trail, poller) = TrailSide::open(trail, &state, &config, at).await;
    publisher(
        state,
        Arc::new(cluster),
        Arc::new(trail),
        Arc::new(config),
        poller,
    )
    .await;
}

/// What each publish reuses from the last one.
#[derive(Default)]
struct Caches {
    evaluations: EvaluationCache,
    renders: ResourceCache,
}

/// Republishes whenever the cluster or CloudTrail changes (debounced), and every poll interval
/// with live CloudTrail (the window slides).
async fn publisher(
    state: Arc<AppState>,
    cluster: Arc<ClusterSide>,
    trail: Arc<TrailSide>,
    config: Arc<Config>,
    mut poller: Option<Poller>,
) {
    let mut caches = Caches::default();
    let mut tick = tokio::time::interval(config.cloudtrail.poll_interval);
    let mut first = true;
    loop {
        if !first {
            wait_for_change(&cluster, &trail, &mut tick).await;
        }
        first = false;
        let (state2, cluster2, config2, trail2) = (
            state.clone(),
            cluster.clone(),
            config.clone(),
            trail.clone(),
        );
        let job = tokio::task::spawn_blocking(move || {
            let plan = publish_snapshot(&state2, &cluster2, &config2, &trail2, &mut caches);
            (caches, plan)
        });
        let plan = match job.await {
            Ok((kept, plan)) => {
                caches = kept;
                plan
            }
            Err(e) => {
                warn!("publishing failed: {e}");
                caches = Caches::default();
                None
            }
        };
        if let (Some(p), Some(plan)) = (poller.as_mut(), plan) {
            follow_plan(&state, p, &plan).await;
        }
    }
}

/// Returns after the next change (debounced) or, with live CloudTrail, the next poll tick.
async fn wait_for_change(
    cluster: &ClusterSide,
    trail: &TrailSide,
    tick: &mut tokio::time::Interval,
) {
    let live = cluster.live();
    let store = trail.store();
    // A side that never changes waits forever: the other side, or the tick, wakes us.
    let cluster_changed = async {
        match &live {
            Some(l) => l.changed.notified().await,
            None => std::future::pending().await,
        }
    };
    let trail_changed = async {
        match &store {
            Some(s) => s.changed.notified().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = cluster_changed => tokio::time::sleep(DEBOUNCE).await,
        _ = trail_changed => tokio::time::sleep(TRAIL_REPUBLISH).await,
        _ = tick.tick(), if store.is_some() => {}
    }
}

/// Moves the pollers to the plan's streams and reports whether they all read.
async fn follow_plan(state: &AppState, poller: &mut Poller, plan: &LookupPlan) {
    if plan.accounts.is_empty() || plan.accounts.iter().all(|a| a.regions.is_empty()) {
        debug!("no account or region to poll CloudTrail in yet");
    }
    poller.apply(plan).await;
    state
        .telemetry
        .source_up
        .get_or_create(&label("source", "cloudtrail"))
        .set(i64::from(poller.all_up()));
}

/// One publish; returns the CloudTrail polling plan for what it saw (live CloudTrail only).
fn publish_snapshot(
    state: &AppState,
    cluster: &ClusterSide,
    config: &Config,
    trail: &TrailSide,
    caches: &mut Caches,
) -> Option<LookupPlan> {
    let started = std::time::Instant::now();
    let snapshot = cluster.snapshot();
    let snapshot_ms = started.elapsed().as_millis();
    let evaluation = evaluate_with(&mut caches.evaluations, &snapshot, config);
    let evaluate_ms = started.elapsed().as_millis();
    let plan = trail.publish(state, &snapshot, &evaluation, config, &mut caches.renders);
    let publish_ms = started.elapsed().as_millis();
    release_freed_memory();
    cluster.record_health(state, &snapshot);
    if cluster.is_ready() && trail.is_ready() && !state.ready.swap(true, Ordering::AcqRel) {
        info!(
            resources = snapshot.resources.len(),
            "first full sync published; ready"
        );
    }
    debug!(
        evaluated = caches.evaluations.evaluated_last,
        rendered = caches.renders.rendered_last,
        snapshot_ms,
        evaluate_ms,
        publish_ms,
        total_ms = started.elapsed().as_millis(),
        "published"
    );
    plan
}
