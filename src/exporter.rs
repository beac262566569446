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
use crate::evaluate::cloudtrail::{self, TrailTally, TrailView};
use crate::evaluate::lookup_plan::{self, LookupPlan};
use crate::evaluate::{Evaluation, EvaluationCache, evaluate_with};
use crate::model::{ClusterSnapshot, ParseError};
use crate::offline::{self, Input, Offline, Window};
use crate::output::audit::AuditReport;
use crate::output::metrics::{ClusterMetrics, Options, ResourceCache, ResourceInput};
use crate::output::page;
use crate::output::web::{self, AppState, Published, SHUTDOWN_GRACE};
use crate::source::kube::{self as kube_source, KubeOptions, LiveCluster};
use crate::source::lookup_events::{self, Poller, Timing, TrailStore};
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
    /// `--web.config.file`: TLS and basic auth.
    pub web_config: Option<PathBuf>,
    /// Scrapes served at once (0: no limit).
    pub max_requests: usize,
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
fn announce(evaluation: &Evaluation, announced: &mut std::collections::BTreeSet<String>) {
    let mut now = std::collections::BTreeSet::new();
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
fn window_seconds(config: &Config) -> u64 {
    config.cloudtrail.window.unwrap_or(DEFAULT_WINDOW).as_secs()
}

fn publish_offline(state: &AppState, loaded: &Offline, config: &Config, cache: &mut ResourceCache) {
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
/// Live CloudTrail pages arrive continuously: republish for them at most this often.
const TRAIL_REPUBLISH: std::time::Duration = std::time::Duration::from_secs(1);

/// The cluster side of a continuously published exporter.
enum ClusterSide {
    Live(Arc<LiveCluster>),
    /// A dump read once (with live CloudTrail polling beside it).
    Static(Arc<ClusterSnapshot>),
}

impl ClusterSide {
    fn snapshot(&self) -> Arc<ClusterSnapshot> {
        match self {
            ClusterSide::Live(live) => Arc::new(live.snapshot()),
            ClusterSide::Static(s) => s.clone(),
        }
    }

    fn is_ready(&self) -> bool {
        match self {
            ClusterSide::Live(live) => live.is_ready(),
            ClusterSide::Static(_) => true,
        }
    }
}

/// The CloudTrail side of a continuously published exporter.
enum TrailSide {
    Off,
    /// Trail files read once, and the per-resource window over them.
    Files {
        tally: Box<TrailTally>,
        files: usize,
        errors: Vec<ParseError>,
        bounds: Option<(i64, i64)>,
    },
    /// LookupEvents polling, into a store the pollers share (files, if any, read into it first).
    Live {
        store: Arc<TrailStore>,
        files: usize,
    },
}

fn epoch_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Republishes whenever the cluster or CloudTrail changes (debounced), re-judging and
/// re-rendering only what changed. The CPU work runs on the blocking pool so scrapes never
/// wait for it. With live CloudTrail it also republishes every poll interval (the window
/// slides) and keeps the pollers in line with what the cluster names.
async fn continuous_publisher(
    state: Arc<AppState>,
    cluster: Arc<ClusterSide>,
    trail: Arc<TrailSide>,
    config: Arc<Config>,
    mut poller: Option<Poller>,
) {
    let mut caches = (EvaluationCache::default(), ResourceCache::default());
    let kube_changed = match cluster.as_ref() {
        ClusterSide::Live(live) => Some(live.clone()),
        ClusterSide::Static(_) => None,
    };
    let store = match trail.as_ref() {
        TrailSide::Live { store, .. } => Some(store.clone()),
        _ => None,
    };
    let mut tick = tokio::time::interval(config.cloudtrail.poll_interval);
    let mut first = true;
    loop {
        if !first {
            tokio::select! {
                _ = async { kube_changed.as_ref().unwrap().changed.notified().await }, if kube_changed.is_some() => {
                    tokio::time::sleep(DEBOUNCE).await;
                }
                _ = async { store.as_ref().unwrap().changed.notified().await }, if store.is_some() => {
                    tokio::time::sleep(TRAIL_REPUBLISH).await;
                }
                _ = tick.tick(), if store.is_some() => {}
            }
        }
        first = false;
        let (state2, cluster2, config2, trail2) = (
            state.clone(),
            cluster.clone(),
            config.clone(),
            trail.clone(),
        );
        let (mut evaluations, mut renders) = caches;
        let job = tokio::task::spawn_blocking(move || {
            let plan = publish_continuous(
                &state2,
                &cluster2,
                &config2,
                &trail2,
                &mut evaluations,
                &mut renders,
            );
            (evaluations, renders, plan)
        });
        let plan = match job.await {
            Ok((e, r, plan)) => {
                caches = (e, r);
                plan
            }
            Err(e) => {
                warn!("publishing failed: {e}");
                caches = (EvaluationCache::default(), ResourceCache::default());
                None
            }
        };
        if let (Some(p), Some(plan)) = (poller.as_mut(), plan) {
            if plan.accounts.is_empty() || plan.accounts.iter().all(|a| a.regions.is_empty()) {
                debug!("no account or region to poll CloudTrail in yet");
            }
            p.apply(&plan).await;
            let up = p.all_up();
            state
                .telemetry
                .source_up
                .get_or_create(&label("source", "cloudtrail"))
                .set(i64::from(up));
        }
    }
}

/// One publish; returns the CloudTrail polling plan for what it saw (live CloudTrail only).
fn publish_continuous(
    state: &AppState,
    cluster: &ClusterSide,
    config: &Config,
    trail: &TrailSide,
    evaluations: &mut EvaluationCache,
    renders: &mut ResourceCache,
) -> Option<LookupPlan> {
    let snapshot = cluster.snapshot();
    let evaluation = evaluate_with(evaluations, &snapshot, config);
    let ids = &config.cloudtrail.identifiers;
    let window = config.cloudtrail.window.unwrap_or(DEFAULT_WINDOW);
    let mut plan = None;
    match trail {
        TrailSide::Off => publish(state, &snapshot, &evaluation, None, config, renders),
        TrailSide::Files {
            tally,
            files,
            errors,
            bounds,
        } => {
            let evidence = cloudtrail::evidence(tally, &snapshot, &evaluation, ids, *bounds);
            let view = TrailView {
                tally,
                evidence: &evidence,
                files: *files,
                errors,
                window_seconds: window_seconds(config),
            };
            publish(state, &snapshot, &evaluation, Some(&view), config, renders);
        }
        TrailSide::Live { store, files } => {
            let now = epoch_now();
            let start = now - window.as_secs() as i64;
            let errors = store
                .errors
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            let mut tally = store.lock();
            // Older than the window and the allowance re-read: nothing will ask for it again.
            cloudtrail::forget_before(
                &mut tally,
                start - config.cloudtrail.overlap.as_secs() as i64,
                &snapshot,
                ids,
            );
            let evidence =
                cloudtrail::evidence(&tally, &snapshot, &evaluation, ids, Some((start, now)));
            let view = TrailView {
                tally: &tally,
                evidence: &evidence,
                files: *files,
                errors: &errors,
                window_seconds: window_seconds(config),
            };
            publish(state, &snapshot, &evaluation, Some(&view), config, renders);
            drop(tally);
            plan = lookup_plan::plan(&snapshot, &evaluation, &config.cloudtrail);
        }
    }
    release_freed_memory();
    let t = &state.telemetry;
    if let ClusterSide::Live(live) = cluster {
        t.source_up
            .get_or_create(&label("source", "kube"))
            .set(i64::from(live.is_healthy()));
        t.set_kube_objects(&snapshot.object_kinds);
    }
    if cluster.is_ready() && !state.ready.swap(true, Ordering::AcqRel) {
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
    plan
}

/// Reads the trail files that accompany a continuously published cluster (once, at start).
fn read_trail_files(
    state: &AppState,
    dir: Option<PathBuf>,
    live_cloudtrail: bool,
) -> Option<(TrailTally, usize, Vec<ParseError>)> {
    let t = &state.telemetry;
    let Some(dir) = dir else {
        if !live_cloudtrail {
            info!(
                "no CloudTrail input (no --cloudtrail-dir, no cloudtrail.accounts): the CloudTrail side is off"
            );
            t.source_up
                .get_or_create(&label("source", "cloudtrail"))
                .set(0);
        }
        return None;
    };
    let mut tally = TrailTally::default();
    match offline::read_trail(Input::Dir(&dir), &mut tally) {
        Ok((files, errors)) => {
            for e in &errors {
                warn!("{e}");
            }
            t.record_read("cloudtrail_dir", errors.len());
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
    t.record_read("kube_dir", loaded.snapshot.parse_errors.len());
    t.set_kube_objects(&loaded.snapshot.object_kinds);
    if let Some(trail) = &loaded.trail {
        t.record_read("cloudtrail_dir", trail.errors.len());
        t.duplicates.inc_by(trail.tally.duplicates);
    }
}

/// How long a client gets to send its request headers (and, with TLS, to finish the
/// handshake): a slow client cannot hold a connection open for nothing.
const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

async fn serve_connection<IO>(
    io: IO,
    state: Arc<AppState>,
    watcher: hyper_util::server::graceful::Watcher,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let conn = http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(
            TokioIo::new(io),
            service_fn(move |req| web::handle(state.clone(), req)),
        );
    let _ = watcher.watch(conn).await;
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
    let web = match &opts.web_config {
        Some(path) => crate::output::web_config::load(path)?,
        None => crate::output::web_config::WebConfig {
            tls: None,
            auth: None,
        },
    };
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
    if opts.config.cloudtrail.accounts.is_some() && !matches!(opts.sources, Sources::Demo) {
        telemetry.enable_live_cloudtrail();
    }
    let mut app = AppState::new(Arc::new(telemetry), &opts.telemetry_path);
    app.auth = web.auth;
    app.scrape_slots =
        (opts.max_requests > 0).then(|| Arc::new(tokio::sync::Semaphore::new(opts.max_requests)));
    let state = Arc::new(app);
    let tls = web.tls;
    info!(address = %listener.local_addr().map_or(addr, |a| a), "listening");

    // Read the sources in the background: /healthz answers at once, /readyz after the read.
    let loader_state = state.clone();
    let ServeOptions {
        sources,
        config,
        at,
        ..
    } = opts;
    let live_cloudtrail = config.cloudtrail.accounts.is_some();
    let continuous = matches!(sources, Sources::Live { .. })
        || (live_cloudtrail && matches!(sources, Sources::Offline { .. }));
    let loader = match sources {
        sources if continuous => {
            let (cluster, kube_dir, cloudtrail_dir) = match sources {
                Sources::Live {
                    kube,
                    cloudtrail_dir,
                } => {
                    let client = kube_client.expect("built above for a live source");
                    let keep_identifiers = cloudtrail_dir.is_some() || live_cloudtrail;
                    let live = LiveCluster::new(loader_state.telemetry.clone(), keep_identifiers);
                    kube_source::start(client, kube, live.clone());
                    (Some(live), None, cloudtrail_dir)
                }
                Sources::Offline {
                    kube_dir,
                    cloudtrail_dir,
                } => (None, Some(kube_dir), cloudtrail_dir),
                Sources::Demo => unreachable!("the demo has no live side"),
            };
            tokio::spawn(async move {
                let cluster = match (cluster, kube_dir) {
                    (Some(live), _) => ClusterSide::Live(live),
                    (None, Some(dir)) => {
                        let read = tokio::task::spawn_blocking(move || {
                            offline::read_cluster(Input::Dir(&dir))
                        })
                        .await
                        .unwrap_or_else(|e| Err(e.to_string()));
                        let t = &loader_state.telemetry;
                        match read {
                            Ok(snapshot) => {
                                for e in &snapshot.parse_errors {
                                    warn!("{e}");
                                }
                                t.record_read("kube_dir", snapshot.parse_errors.len());
                                t.set_kube_objects(&snapshot.object_kinds);
                                ClusterSide::Static(Arc::new(snapshot))
                            }
                            Err(e) => {
                                warn!("{e}");
                                t.source_up
                                    .get_or_create(&label("source", "kube_dir"))
                                    .set(0);
                                return;
                            }
                        }
                    }
                    (None, None) => unreachable!("one cluster side is always given"),
                };
                let reader_state = loader_state.clone();
                let files = tokio::task::spawn_blocking(move || {
                    read_trail_files(&reader_state, cloudtrail_dir, live_cloudtrail)
                })
                .await
                .unwrap_or(None);
                let window = config.cloudtrail.window.unwrap_or(DEFAULT_WINDOW);
                let mut poller = None;
                let trail = if live_cloudtrail {
                    let store = Arc::new(TrailStore::default());
                    let mut files_read = 0;
                    if let Some((tally, files, errors)) = files {
                        *store.lock() = tally;
                        *store.errors.lock().unwrap_or_else(|p| p.into_inner()) = errors;
                        files_read = files;
                    }
                    let timing = Timing {
                        poll_interval: config.cloudtrail.poll_interval,
                        window,
                        overlap: config.cloudtrail.overlap,
                        attempt_timeout: std::time::Duration::from_secs(20),
                    };
                    if matches!(
                        config.cloudtrail.accounts,
                        Some(crate::config::Accounts::Keyword(_))
                    ) && config.cloudtrail.role_arn_template.is_none()
                    {
                        warn!(
                            "cloudtrail.accounts is auto but cloudtrail.role_arn_template is not set: every account is read with the exporter's own credentials, which only reach its own account"
                        );
                    }
                    poller = Some(Poller::new(
                        lookup_events::base_config().await,
                        store.clone(),
                        loader_state.telemetry.clone(),
                        timing,
                    ));
                    TrailSide::Live {
                        store,
                        files: files_read,
                    }
                } else {
                    match files {
                        Some((tally, files, errors)) => {
                            let bounds = cloudtrail::window_bounds(tally.newest, at, Some(window));
                            TrailSide::Files {
                                tally: Box::new(tally),
                                files,
                                errors,
                                bounds,
                            }
                        }
                        None => TrailSide::Off,
                    }
                };
                if let ClusterSide::Live(live) = &cluster {
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
                }
                continuous_publisher(
                    loader_state,
                    Arc::new(cluster),
                    Arc::new(trail),
                    Arc::new(config),
                    poller,
                )
                .await;
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
                Sources::Live { .. } => unreachable!("published continuously"),
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
                let watcher = graceful.watcher();
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        None => serve_connection(stream, state, watcher).await,
                        Some(acceptor) => {
                            // A client that does not finish the handshake in time is dropped.
                            match tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(stream)).await {
                                Ok(Ok(tls_stream)) => serve_connection(tls_stream, state, watcher).await,
                                Ok(Err(e)) => debug!("TLS handshake failed: {e}"),
                                Err(_) => debug!("TLS handshake timed out"),
                            }
                        }
                    }
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
