//! The pipeline that publishes once: the demo, or a dump with its trail files. Nothing it
//! reads changes, so after publishing it keeps only what it published.

use std::sync::atomic::Ordering;

use tracing::{info, warn};

use super::pipeline::OnceInput;
use super::publish::{publish, release_freed_memory, window_seconds};
use super::web::AppState;
use crate::config::{Config, DEFAULT_WINDOW};
use crate::offline::{self, Input, Offline, Window};
use crate::output::metrics::ResourceCache;
use crate::telemetry::{Telemetry, label};

/// Reads, judges and publishes; marks the exporter ready, or the source down when its input
/// cannot be read at all.
pub(super) fn publish_once(state: &AppState, input: &OnceInput, config: &Config, at: Option<i64>) {
    let window = Window {
        length: Some(config.cloudtrail.window.unwrap_or(DEFAULT_WINDOW)),
        at,
    };
    let loaded = match input {
        OnceInput::Demo => offline::load(
            Input::Embedded(crate::demo::CLUSTER),
            Some(Input::Embedded(crate::demo::CLOUDTRAIL)),
            config,
            window,
        ),
        OnceInput::Dump {
            kube_dir,
            cloudtrail_dir,
        } => offline::load(
            Input::Dir(kube_dir),
            cloudtrail_dir.as_deref().map(Input::Dir),
            config,
            window,
        ),
    };
    let loaded = match loaded {
        Ok(loaded) => loaded,
        Err(e) => {
            warn!("{e}");
            state
                .telemetry
                .source_up
                .get_or_create(&label("source", "kube_dir"))
                .set(0);
            return;
        }
    };
    for e in loaded
        .snapshot
        .parse_errors
        .iter()
        .chain(loaded.trail.iter().flat_map(|t| t.errors.iter()))
    {
        warn!("{e}");
    }
    record_health(&state.telemetry, &loaded);
    let mut cache = ResourceCache::default();
    let view = loaded
        .trail
        .as_ref()
        .map(|t| t.view(window_seconds(config)));
    publish(
        state,
        &loaded.snapshot,
        &loaded.evaluation,
        view.as_ref(),
        config,
        &mut cache,
    );
    let resources = loaded.evaluation.resources.len();
    drop(loaded);
    drop(cache);
    release_freed_memory();
    state.ready.store(true, Ordering::Release);
    info!(resources, "sources read; ready");
}

/// Health gauges for a read done once: counters are simply raised to the totals.
fn record_health(t: &Telemetry, loaded: &Offline) {
    t.record_read("kube_dir", loaded.snapshot.parse_errors.len());
    t.set_kube_objects(&loaded.snapshot.object_kinds);
    if let Some(trail) = &loaded.trail {
        t.record_read("cloudtrail_dir", trail.errors.len());
        t.duplicates.inc_by(trail.tally.duplicates);
    }
}
