//! The cluster side of a continuously published exporter: live watches, or a dump read once
//! (with live CloudTrail polling beside it).

use std::sync::Arc;

use tracing::warn;

use super::pipeline::ClusterInput;
use super::web::AppState;
use crate::model::ClusterSnapshot;
use crate::offline::{self, Input};
use crate::source::kube as kube_source;
use crate::state::cluster::LiveCluster;
use crate::telemetry::label;

/// How often the kube source's health is re-read: a watch can recover without any object
/// changing.
const HEALTH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

pub(super) enum ClusterSide {
    Live(Arc<LiveCluster>),
    Static(Arc<ClusterSnapshot>),
}

impl ClusterSide {
    /// Starts the watches, or reads the dump; `None` when the dump cannot be read at all (the
    /// source is then reported down).
    pub(super) async fn open(
        input: ClusterInput,
        state: &Arc<AppState>,
        keep_identifiers: bool,
    ) -> Option<ClusterSide> {
        match input {
            ClusterInput::Watch { client, options } => {
                let live = LiveCluster::new(state.telemetry.clone(), keep_identifiers);
                kube_source::start(client, options, live.clone());
                spawn_health_ticker(state.clone(), live.clone());
                Some(ClusterSide::Live(live))
            }
            ClusterInput::Dump(dir) => read_dump(state, dir).await.map(ClusterSide::Static),
        }
    }

    pub(super) fn snapshot(&self) -> Arc<ClusterSnapshot> {
        match self {
            ClusterSide::Live(live) => Arc::new(live.snapshot()),
            ClusterSide::Static(s) => s.clone(),
        }
    }

    pub(super) fn is_ready(&self) -> bool {
        match self {
            ClusterSide::Live(live) => live.is_ready(),
            ClusterSide::Static(_) => true,
        }
    }

    /// The live store, whose `changed` wakes the publisher; a dump never changes.
    pub(super) fn live(&self) -> Option<Arc<LiveCluster>> {
        match self {
            ClusterSide::Live(live) => Some(live.clone()),
            ClusterSide::Static(_) => None,
        }
    }

    /// The kube health gauges after a publish of `snapshot`.
    pub(super) fn record_health(&self, state: &AppState, snapshot: &ClusterSnapshot) {
        if let ClusterSide::Live(live) = self {
            let t = &state.telemetry;
            t.source_up
                .get_or_create(&label("source", "kube"))
                .set(i64::from(live.is_healthy()));
            t.set_kube_objects(&snapshot.object_kinds);
        }
    }
}

async fn read_dump(state: &AppState, dir: std::path::PathBuf) -> Option<Arc<ClusterSnapshot>> {
    let read = tokio::task::spawn_blocking(move || offline::read_cluster(Input::Dir(&dir)))
        .await
        .map_err(|e| e.to_string())
        .and_then(|read| read.map_err(|e| e.to_string()));
    let t = &state.telemetry;
    match read {
        Ok(snapshot) => {
            for e in &snapshot.parse_errors {
                warn!("{e}");
            }
            t.record_read("kube_dir", snapshot.parse_errors.len());
            t.set_kube_objects(&snapshot.object_kinds);
            Some(Arc::new(snapshot))
        }
        Err(e) => {
            warn!("{e}");
            t.source_up
                .get_or_create(&label("source", "kube_dir"))
                .set(0);
            None
        }
    }
}

fn spawn_health_ticker(state: Arc<AppState>, live: Arc<LiveCluster>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(HEALTH_INTERVAL);
        loop {
            tick.tick().await;
            state
                .telemetry
                .source_up
                .get_or_create(&label("source", "kube"))
                .set(i64::from(live.is_healthy()));
        }
    });
}
