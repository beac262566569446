//! The CloudTrail side of a continuously published exporter: off, trail files read once, or
//! LookupEvents polling into a shared store (the files, if any, read into it first); and the
//! view of it each publish reads.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing::{info, warn};

use super::pipeline::TrailInput;
use super::publish::{publish, window_seconds};
use super::web::AppState;
use crate::config::{Accounts, Config, DEFAULT_WINDOW};
use crate::evaluate::Evaluation;
use crate::evaluate::cloudtrail::{self, TrailView};
use crate::evaluate::lookup_plan;
use crate::model::trail::LookupPlan;
use crate::model::{ClusterSnapshot, ParseError};
use crate::offline::{self, Input};
use crate::output::metrics::ResourceCache;
use crate::source::lookup_events::{Poller, Timing};
use crate::state::trail::{TrailStore, TrailTally};
use crate::telemetry::label;

/// How long one LookupEvents attempt may take.
const ATTEMPT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

pub(super) enum TrailSide {
    Off,
    /// Trail files read once, and the per-resource window over them.
    Files {
        read: Box<FilesRead>,
        bounds: Option<(i64, i64)>,
    },
    /// LookupEvents polling, into a store the pollers share.
    Live {
        store: Arc<TrailStore>,
        files: usize,
    },
    /// The organisation trail: the bucket's backfill, then its queue, into one store.
    Queue {
        store: Arc<TrailStore>,
        files: usize,
        backfilled: Arc<AtomicBool>,
    },
}

/// Trail files read at start.
pub(super) struct FilesRead {
    tally: TrailTally,
    files: usize,
    errors: Vec<ParseError>,
}

impl TrailSide {
    /// Reads the side's trail files and, for live CloudTrail, builds the poller.
    pub(super) async fn open(
        input: TrailInput,
        state: &Arc<AppState>,
        config: &Config,
        at: Option<i64>,
    ) -> (TrailSide, Option<Poller>) {
        match input {
            TrailInput::Off => {
                info!(
                    "no CloudTrail input (no --cloudtrail-dir, no cloudtrail.accounts): the CloudTrail side is off"
                );
                state
                    .telemetry
                    .source_up
                    .get_or_create(&label("source", "cloudtrail"))
                    .set(0);
                (TrailSide::Off, None)
            }
            TrailInput::Files(dir) => match read_files(state, dir).await {
                Some(read) => {
                    let window = config.cloudtrail.window.unwrap_or(DEFAULT_WINDOW);
                    let bounds = cloudtrail::window_bounds(read.tally.newest, at, Some(window));
                    let read = Box::new(read);
                    (TrailSide::Files { read, bounds }, None)
                }
                None => (TrailSide::Off, None),
            },
            TrailInput::Live { files } => {
                let read = match files {
                    Some(dir) => read_files(state, dir).await,
                    None => None,
                };
                let (side, poller) = live(state, config, read).await;
                (side, Some(poller))
            }
            TrailInput::Queue { files } => {
                let read = match files {
                    Some(dir) => read_files(state, dir).await,
                    None => None,
                };
                (queue(state, config, read), None)
            }
        }
    }

    /// Whether the side has read what it must before `/readyz` says ready: the bucket's
    /// backfill for the organisation trail; nothing for the others.
    pub(super) fn is_ready(&self) -> bool {
        match self {
            TrailSide::Queue { backfilled, .. } => backfilled.load(Ordering::Acquire),
            TrailSide::Off | TrailSide::Files { .. } | TrailSide::Live { .. } => true,
        }
    }

    /// Publishes with this side's view of CloudTrail; returns the polling plan for what the
    /// snapshot names (live CloudTrail only).
    pub(super) fn publish(
        &self,
        state: &AppState,
        snapshot: &ClusterSnapshot,
        evaluation: &Evaluation,
        config: &Config,
        renders: &mut ResourceCache,
    ) -> Option<LookupPlan> {
        match self {
            TrailSide::Off => {
                publish(state, snapshot, evaluation, None, config, renders);
                None
            }
            TrailSide::Files { read, bounds } => {
                let ids = &config.cloudtrail.identifiers;
                let evidence =
                    cloudtrail::evidence(&read.tally, snapshot, evaluation, ids, *bounds);
                let view = TrailView {
                    tally: &read.tally,
                    evidence: &evidence,
                    files: read.files,
                    errors: &read.errors,
                    window_seconds: window_seconds(config),
                };
                publish(state, snapshot, evaluation, Some(&view), config, renders);
                None
            }
            TrailSide::Live { store, files } => {
                publish_live(state, store, *files, snapshot, evaluation, config, renders);
                lookup_plan::plan(snapshot, evaluation, &config.cloudtrail)
            }
            TrailSide::Queue { store, files, .. } => {
                publish_live(state, store, *files, snapshot, evaluation, config, renders);
                None
            }
        }
    }

    /// The store the pollers fill, whose `changed` wakes the publisher.
    pub(super) fn store(&self) -> Option<Arc<TrailStore>> {
        match self {
            TrailSide::Live { store, .. } | TrailSide::Queue { store, .. } => Some(store.clone()),
            TrailSide::Off | TrailSide::Files { .. } => None,
        }
    }
}

fn epoch_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Publishes the window ending now, after forgetting what no read will ask for again.
fn publish_live(
    state: &AppState,
    store: &TrailStore,
    files: usize,
    snapshot: &ClusterSnapshot,
    evaluation: &Evaluation,
    config: &Config,
    renders: &mut ResourceCache,
) {
    let ids = &config.cloudtrail.identifiers;
    let window = config.cloudtrail.window.unwrap_or(DEFAULT_WINDOW);
    let now = epoch_now();
    let start = now - window.as_secs() as i64;
    let errors = store.errors();
    let mut tally = store.lock();
    // Older than the window and the allowance re-read: nothing will ask for it again.
    let allowance = config.cloudtrail.delivery_allowance.as_secs() as i64;
    cloudtrail::forget_before(&mut tally, start - allowance, snapshot, ids);
    let evidence = cloudtrail::evidence(&tally, snapshot, evaluation, ids, Some((start, now)));
    let view = TrailView {
        tally: &tally,
        evidence: &evidence,
        files,
        errors: &errors,
        window_seconds: window_seconds(config),
    };
    publish(state, snapshot, evaluation, Some(&view), config, renders);
}

/// Reads trail files on the blocking pool; `None` (and the source down) when the folder
/// cannot be read at all.
async fn read_files(state: &Arc<AppState>, dir: PathBuf) -> Option<FilesRead> {
    let read = tokio::task::spawn_blocking(move || {
        let mut tally = TrailTally::default();
        offline::read_trail(Input::Dir(&dir), &mut tally).map(|(files, errors)| FilesRead {
            tally,
            files,
            errors,
        })
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|read| read.map_err(|e| e.to_string()));
    let t = &state.telemetry;
    match read {
        Ok(read) => {
            for e in &read.errors {
                warn!("{e}");
            }
            t.record_read("cloudtrail_dir", read.errors.len());
            t.duplicates.inc_by(read.tally.duplicates);
            Some(read)
        }
        Err(e) => {
            warn!("{e}");
            t.source_up
                .get_or_create(&label("source", "cloudtrail_dir"))
                .set(0);
            None
        }
    }
}

/// The live side: a store seeded with the files read, and its poller.
async fn live(
    state: &Arc<AppState>,
    config: &Config,
    read: Option<FilesRead>,
) -> (TrailSide, Poller) {
    let (store, files) = seeded(read);
    let c = &config.cloudtrail;
    let timing = Timing {
        poll_interval: c.poll_interval,
        window: c.window.unwrap_or(DEFAULT_WINDOW),
        delivery_allowance: c.delivery_allowance,
        attempt_timeout: ATTEMPT_TIMEOUT,
    };
    if matches!(c.accounts, Some(Accounts::Keyword(_))) && c.role_arn_template.is_none() {
        warn!(
            "cloudtrail.accounts is auto but cloudtrail.role_arn_template is not set: every account is read with the exporter's own credentials, which only reach its own account"
        );
    }
    let poller = Poller::new(
        crate::source::aws::base_config().await,
        store.clone(),
        state.telemetry.clone(),
        timing,
    );
    (TrailSide::Live { store, files }, poller)
}

/// A store holding the trail files read at start, and how many files that was.
fn seeded(read: Option<FilesRead>) -> (Arc<TrailStore>, usize) {
    let store = Arc::new(TrailStore::default());
    let Some(read) = read else {
        return (store, 0);
    };
    *store.lock() = read.tally;
    store.set_errors(read.errors);
    (store, read.files)
}

/// The organisation trail's side: its reader runs in the background from here on.
fn queue(state: &Arc<AppState>, config: &Config, read: Option<FilesRead>) -> TrailSide {
    let (store, files) = seeded(read);
    let backfilled = Arc::new(AtomicBool::new(false));
    tokio::spawn(super::org_trail::run(
        state.telemetry.clone(),
        config.cloudtrail.clone(),
        store.clone(),
        backfilled.clone(),
    ));
    TrailSide::Queue {
        store,
        files,
        backfilled,
    }
}
