//! `serve`: read the sources, publish what evaluation says, answer scrapes until SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tracing::{debug, info, warn};

use crate::config::{Config, DEFAULT_WINDOW};
use crate::evaluate::cloudtrail::{self, TrailEvidence, TrailTally};
use crate::evaluate::{Evaluation, EvaluationCache, evaluate_with};
use crate::model::{ClusterSnapshot, ParseError};
use crate::offline::{self, Input, Offline, Window};
use crate::output::audit::{AuditReport, TrailInput};
use crate::output::metrics::{Options, ResourceCache, ResourceInput, TrailMetrics};
use crate::output::page;
use crate::output::web::{self, AppState, Published, SHUTDOWN_GRACE};
use crate::source::kube::{self as kube_source, KubeOptions, LiveCluster};
use crate::telemetry::{self, Telemetry, label};

/// Where `serve` reads from.
pub enum Sources {
    /// The bundled demo, compiled into the binary.
    Demo,
    Offline {
        kube_dir: PathBuf,
        cloudtrail_dir: Option<PathBuf>,
    },
    /// A live cluster (kubeconfig or in-cluster), with trail files for the CloudTrail side.
    Live {
        kube: KubeOptions,
        cloudtrail_dir: Option<PathBuf>,
    },
}

pub struct ServeOptions {
    pub listen_address: String,
    pub telemetry_path: String,
    pub sources: Sources,
    pub config: Config,
    /// End of the per-resource window for offline trail input (default: the newest event).
    pub at: Option<i64>,
}

/// `:9754` (every interface), `0.0.0.0:9754`, `127.0.0.1:9754`, `[::1]:9754`.
pub fn parse_listen_address(s: &str) -> Result<SocketAddr, String> {
    let full = if s.starts_with(':') {
        format!("0.0.0.0{s}")
    } else {
        s.to_string()
    };
    full.parse()
        .map_err(|_| format!("--web.listen-address {s:?}: expected [HOST]:PORT, e.g. :9754"))
}

/// CloudTrail input as the publisher sees it.
pub struct TrailView<'a> {
    pub tally: &'a TrailTally,
    pub evidence: &'a TrailEvidence,
    pub files: usize,
    pub errors: &'a [ParseError],
}

/// Turns a snapshot and its verdicts into what scrapes and page views see.
pub fn publish(
    state: &AppState,
    snapshot: &ClusterSnapshot,
    evaluation: &Evaluation,
    trail: Option<&TrailView>,
    config: &Config,
    cache: &mut ResourceCache,
) {
    let versions: std::collections::HashMap<&str, &str> = evaluation
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
    let window_seconds = config.cloudtrail.window.unwrap_or(DEFAULT_WINDOW).as_secs();
    let trail_metrics = trail.map(|t| TrailMetrics {
        tally: t.tally,
        evidence: t.evidence,
        window_seconds,
    });
    let options = Options {
        omit_zero_series: config.metrics.omit_zero_series,
    };
    let exposition = cache.prepare(inputs, trail_metrics.as_ref(), options);

    let trail_input = trail.map(|t| TrailInput {
        tally: t.tally,
        evidence: t.evidence,
        files: t.files,
        errors: t.errors,
    });
    let report = AuditReport::build_notable(snapshot, evaluation, trail_input.as_ref());
    let page = page::render(&report, &state.telemetry_path);
    state
        .published
        .store(Arc::new(Published { exposition, page }));
}

fn publish_offline(state: &AppState, loaded: &Offline, config: &Config, cache: &mut ResourceCache) {
    let view = loaded.trail.as_ref().map(|t| TrailView {
        tally: &t.tally,
        evidence: &t.evidence,
        files: t.files,
        errors: &t.errors,
    });
    publish(
        state,
        &loaded.snapshot,
        &loaded.evaluation,
        view.as_ref(),
        config,
        cache,
    );
}

/// Hands memory freed after a (re)publish back to the OS. glibc keeps freed heap pages
/// mapped, so the transient objects of a full list (pages of whole Kubernetes objects) would
/// otherwise stay in RSS for good.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists; it takes no pointers.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// How long the publisher waits after a change for more changes to arrive.
const DEBOUNCE: std::time::Duration = std::time::Duration::from_millis(200);

/// The trail files read for a live cluster: (tally, files, problems).
type LiveTrail = Option<(TrailTally, usize, Vec<ParseError>)>;

/// Republishes whenever the live cluster changes (debounced), re-judging and re-rendering
/// only what changed. The CPU work runs on the blocking pool so scrapes never wait for it.
async fn live_publisher(
    state: Arc<AppState>,
    live: Arc<LiveCluster>,
    config: Arc<Config>,
    trail: Arc<LiveTrail>,
    at: Option<i64>,
) {
    let bounds = trail.as_ref().as_ref().and_then(|(tally, _, _)| {
        cloudtrail::window_bounds(
            tally.newest,
            at,
            Some(config.cloudtrail.window.unwrap_or(DEFAULT_WINDOW)),
        )
    });
    let mut caches = (EvaluationCache::default(), ResourceCache::default());
    loop {
        live.changed.notified().await;
        tokio::time::sleep(DEBOUNCE).await;
        let (state, live, config, trail) =
            (state.clone(), live.clone(), config.clone(), trail.clone());
        let (mut evaluations, mut renders) = caches;
        let job = tokio::task::spawn_blocking(move || {
            publish_live(
                &state,
                &live,
                &config,
                trail.as_ref().as_ref(),
                bounds,
                &mut evaluations,
                &mut renders,
            );
            (evaluations, renders)
        });
        caches = match job.await {
            Ok(c) => c,
            Err(e) => {
                warn!("publishing failed: {e}");
                (EvaluationCache::default(), ResourceCache::default())
            }
        };
    }
}

fn publish_live(
    state: &AppState,
    live: &LiveCluster,
    config: &Config,
    trail: Option<&(TrailTally, usize, Vec<ParseError>)>,
    bounds: Option<(i64, i64)>,
    evaluations: &mut EvaluationCache,
    renders: &mut ResourceCache,
) {
    let snapshot = live.snapshot();
    let evaluation = evaluate_with(evaluations, &snapshot, config);
    let evidence = trail.map(|(tally, _, _)| {
        cloudtrail::evidence(
            tally,
            &snapshot,
            &evaluation,
            &config.cloudtrail.identifiers,
            bounds,
        )
    });
    let view = match (trail, &evidence) {
        (Some((tally, files, errors)), Some(evidence)) => Some(TrailView {
            tally,
            evidence,
            files: *files,
            errors,
        }),
        _ => None,
    };
    publish(
        state,
        &snapshot,
        &evaluation,
        view.as_ref(),
        config,
        renders,
    );
    release_freed_memory();
    let t = &state.telemetry;
    t.source_up
        .get_or_create(&label("source", "kube"))
        .set(i64::from(live.is_healthy()));
    t.set_kube_objects(&snapshot.object_kinds);
    if live.is_ready() && !state.ready.swap(true, Ordering::AcqRel) {
        info!(
            resources = snapshot.resources.len(),
            "first full sync published; ready"
        );
    }
    debug!(
        evaluated = evaluations.evaluated_last,
        rendered = renders.rendered_last,
        "published"
    );
}

/// Reads the trail files that accompany a live cluster (once, at start).
fn read_live_trail(state: &AppState, dir: Option<PathBuf>) -> LiveTrail {
    let t = &state.telemetry;
    let Some(dir) = dir else {
        info!(
            "no CloudTrail input (no --cloudtrail-dir, no cloudtrail.accounts): the CloudTrail side is off"
        );
        t.source_up
            .get_or_create(&label("source", "cloudtrail"))
            .set(0);
        return None;
    };
    let mut tally = TrailTally::default();
    match offline::read_trail(Input::Dir(&dir), &mut tally) {
        Ok((files, errors)) => {
            for e in &errors {
                warn!("{e}");
            }
            t.source_up
                .get_or_create(&label("source", "cloudtrail_dir"))
                .set(1);
            t.parse_errors
                .get_or_create(&label("source", "cloudtrail_dir"))
                .inc_by(errors.len() as u64);
            t.duplicates.inc_by(tally.duplicates);
            Some((tally, files, errors))
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

/// Health gauges for an offline read (done once, so counters are simply raised to the totals).
fn record_health(t: &Telemetry, loaded: &Offline) {
    t.source_up
        .get_or_create(&label("source", "kube_dir"))
        .set(1);
    t.parse_errors
        .get_or_create(&label("source", "kube_dir"))
        .inc_by(loaded.snapshot.parse_errors.len() as u64);
    t.set_kube_objects(&loaded.snapshot.object_kinds);
    if let Some(trail) = &loaded.trail {
        t.source_up
            .get_or_create(&label("source", "cloudtrail_dir"))
            .set(1);
        t.parse_errors
            .get_or_create(&label("source", "cloudtrail_dir"))
            .inc_by(trail.errors.len() as u64);
        t.duplicates.inc_by(trail.tally.duplicates);
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    warn!("cannot listen for SIGTERM: {e}");
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

pub async fn run(opts: ServeOptions) -> Result<(), String> {
    let addr = parse_listen_address(&opts.listen_address)?;
    if let Sources::Offline {
        kube_dir,
        cloudtrail_dir,
    } = &opts.sources
    {
        for (flag, dir) in [
            ("--kube-dir", Some(kube_dir)),
            ("--cloudtrail-dir", cloudtrail_dir.as_ref()),
        ] {
            if let Some(dir) = dir
                && !dir.is_dir()
            {
                return Err(format!("{flag} {}: not a readable folder", dir.display()));
            }
        }
    }
    // A live cluster must be reachable in principle (config found) before we listen.
    let kube_client = match &opts.sources {
        Sources::Live { kube, .. } => Some(kube_source::client(kube).await?),
        _ => None,
    };
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("--web.listen-address {addr}: {e}"))?;
    let mut telemetry = Telemetry::new(telemetry::VERSION, telemetry::REVISION);
    if kube_client.is_some() {
        telemetry.enable_live_kube();
    }
    let state = Arc::new(AppState::new(Arc::new(telemetry), &opts.telemetry_path));
    info!(address = %listener.local_addr().map_or(addr, |a| a), "listening");

    // Read the sources in the background: /healthz answers at once, /readyz after the read.
    let loader_state = state.clone();
    let ServeOptions {
        sources,
        config,
        at,
        ..
    } = opts;
    let loader = match sources {
        Sources::Live {
            kube,
            cloudtrail_dir,
        } => {
            let client = kube_client.expect("built above for a live source");
            let live = LiveCluster::new(loader_state.telemetry.clone(), cloudtrail_dir.is_some());
            kube_source::start(client, kube, live.clone());
            tokio::spawn(async move {
                let reader_state = loader_state.clone();
                let trail = tokio::task::spawn_blocking(move || {
                    read_live_trail(&reader_state, cloudtrail_dir)
                })
                .await
                .unwrap_or(None);
                // Publish at least once even if the cluster is quiet.
                live.changed.notify_one();
                // Health can change without any object changing (a watch recovers quietly).
                let (health_state, health_live) = (loader_state.clone(), live.clone());
                tokio::spawn(async move {
                    let mut tick = tokio::time::interval(std::time::Duration::from_secs(2));
                    loop {
                        tick.tick().await;
                        health_state
                            .telemetry
                            .source_up
                            .get_or_create(&label("source", "kube"))
                            .set(i64::from(health_live.is_healthy()));
                    }
                });
                live_publisher(loader_state, live, Arc::new(config), Arc::new(trail), at).await;
            })
        }
        sources => tokio::task::spawn_blocking(move || {
            let window = Window {
                length: Some(config.cloudtrail.window.unwrap_or(DEFAULT_WINDOW)),
                at,
            };
            let loaded = match &sources {
                Sources::Demo => offline::load(
                    Input::Embedded(crate::demo::CLUSTER),
                    Some(Input::Embedded(crate::demo::CLOUDTRAIL)),
                    &config,
                    window,
                ),
                Sources::Offline {
                    kube_dir,
                    cloudtrail_dir,
                } => offline::load(
                    Input::Dir(kube_dir),
                    cloudtrail_dir.as_deref().map(Input::Dir),
                    &config,
                    window,
                ),
                Sources::Live { .. } => unreachable!("handled above"),
            };
            match loaded {
                Ok(loaded) => {
                    for e in loaded
                        .snapshot
                        .parse_errors
                        .iter()
                        .chain(loaded.trail.iter().flat_map(|t| t.errors.iter()))
                    {
                        warn!("{e}");
                    }
                    record_health(&loader_state.telemetry, &loaded);
                    let mut cache = ResourceCache::default();
                    publish_offline(&loader_state, &loaded, &config, &mut cache);
                    let resources = loaded.evaluation.resources.len();
                    // Offline input never changes: keep only what was published.
                    drop(loaded);
                    drop(cache);
                    release_freed_memory();
                    loader_state.ready.store(true, Ordering::Release);
                    info!(resources, "sources read; ready");
                }
                Err(e) => {
                    warn!("{e}");
                    loader_state
                        .telemetry
                        .source_up
                        .get_or_create(&label("source", "kube_dir"))
                        .set(0);
                }
            }
        }),
    };

    let graceful = GracefulShutdown::new();
    let mut shutdown = pin!(shutdown_signal());
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(c) => c,
                    Err(e) => {
                        warn!("accept: {e}");
                        continue;
                    }
                };
                let state = state.clone();
                let conn = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service_fn(move |req| web::handle(state.clone(), req)));
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
            _ = &mut shutdown => break,
        }
    }
    info!("shutting down");
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(SHUTDOWN_GRACE) => warn!("connections still open after {SHUTDOWN_GRACE:?}; closing"),
    }
    // The live publisher runs for the process's lifetime; leave it to the runtime's end.
    drop(loader);
    Ok(())
}
