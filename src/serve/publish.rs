//! One publish: a snapshot and its verdicts turned into what scrapes and page views read, and
//! the cluster warnings logged once each.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use tracing::warn;

use super::web::{AppState, Published};
use crate::config::{Config, DEFAULT_WINDOW};
use crate::evaluate::Evaluation;
use crate::evaluate::cloudtrail::TrailView;
use crate::model::ClusterSnapshot;
use crate::output::audit::AuditReport;
use crate::output::metrics::{ClusterMetrics, Options, ResourceCache, ResourceInput};
use crate::output::page;

/// Renders `/metrics` and `/` for a snapshot and swaps them in whole.
pub(super) fn publish(
    state: &AppState,
    snapshot: &ClusterSnapshot,
    evaluation: &Evaluation,
    trail: Option<&TrailView>,
    config: &Config,
    cache: &mut ResourceCache,
) {
    let versions: HashMap<&str, &str> = evaluation
        .controllers
        .iter()
        .filter_map(|c| Some((c.deployment.as_deref()?, c.version.as_deref()?)))
        .collect();
    let inputs = evaluation.resources.iter().map(|v| ResourceInput {
        resource: &snapshot.resources[v.index],
        ownership: &v.ownership,
        evidence: trail.and_then(|t| t.evidence.resources.get(&v.index)),
        controller_version: v
            .ownership
            .controller
            .as_deref()
            .and_then(|d| versions.get(d).copied()),
    });
    let options = Options {
        omit_zero_series: config.metrics.omit_zero_series,
    };
    let cluster = ClusterMetrics {
        controllers: &evaluation.controllers,
        role_selectors: &evaluation.role_selectors,
    };
    let exposition = cache.prepare(inputs, &cluster, trail, options);
    announce(evaluation, &mut cache.announced);

    let report = AuditReport::build_notable(snapshot, evaluation, trail);
    let page = page::render(&report, &state.telemetry_path);
    state
        .published
        .store(Arc::new(Published { exposition, page }));
}

/// Logs each controller that cannot run and each invalid IAMRoleSelector once, when it
/// appears (a changed reason is logged again).
fn announce(evaluation: &Evaluation, announced: &mut BTreeSet<String>) {
    let mut now = BTreeSet::new();
    for c in &evaluation.controllers {
        if let Some(w) = &c.runtime_warning {
            now.insert(format!("controller {} runtime: {w}", c.service));
        }
        for p in &c.problems {
            now.insert(format!(
                "controller {} ({}) cannot run: {}: {}",
                c.service,
                c.deployment.as_deref().unwrap_or("no Deployment"),
                p.problem.as_str(),
                p.detail
            ));
        }
    }
    for s in &evaluation.role_selectors {
        if let Some(r) = s.invalid {
            now.insert(format!(
                "IAMRoleSelector {} is invalid ({}): the ACK runtime never caches it",
                s.name,
                r.as_str()
            ));
        }
    }
    for line in now.difference(announced) {
        warn!("{line}");
    }
    *announced = now;
}

/// The per-resource CloudTrail window `/metrics` reports.
pub(super) fn window_seconds(config: &Config) -> u64 {
    config.cloudtrail.window.unwrap_or(DEFAULT_WINDOW).as_secs()
}

/// Hands memory freed after a (re)publish back to the OS. glibc keeps freed heap pages
/// mapped, so the transient objects of a full list (pages of whole Kubernetes objects) would
/// otherwise stay in RSS for good.
pub(super) fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists; it takes no pointers.
    unsafe {
        libc::malloc_trim(0);
    }
}
