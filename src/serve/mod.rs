//! `serve`: owns the exporter process. It checks what the flags name, starts the pipeline that
//! reads the sources and publishes ([`pipeline`]), and answers scrapes until SIGTERM
//! ([`server`], [`web`], [`web_config`]).

mod cluster_side;
mod continuous;
mod once;
mod org_trail;
mod pipeline;
mod publish;
mod server;
mod trail_side;
pub mod web;
pub mod web_config;

use std::path::PathBuf;
use std::sync::Arc;

use crate::config::Config;
use crate::telemetry::{self, Telemetry};
use web::AppState;

pub use pipeline::Sources;
pub use server::parse_listen_address;

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

/// Why `serve` stopped before serving (README "Exit codes").
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A flag, or a file or cluster it names, is wrong: the user's to fix (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The process cannot do its work although its input is right, e.g. the address is in use
    /// (exit 3).
    #[error("{0}")]
    Runtime(String),
}

impl From<web_config::WebConfigError> for ServeError {
    fn from(e: web_config::WebConfigError) -> Self {
        ServeError::Usage(e.to_string())
    }
}

/// Serves until SIGTERM or Ctrl-C: the table of contents of the exporter.
pub async fn run(opts: ServeOptions) -> Result<(), ServeError> {
    let addr = parse_listen_address(&opts.listen_address).map_err(ServeError::Usage)?;
    let web = web_config::load_optional(opts.web_config.as_deref())?;
    let pipeline = pipeline::Pipeline::prepare(opts.sources, &opts.config).await?;
    let listener = server::bind(addr).await?;
    let mut telemetry = Telemetry::new(telemetry::VERSION, telemetry::REVISION);
    pipeline.enable_telemetry(&mut telemetry);
    let mut app = AppState::new(Arc::new(telemetry), &opts.telemetry_path);
    app.auth = web.auth;
    app.scrape_slots =
        (opts.max_requests > 0).then(|| Arc::new(tokio::sync::Semaphore::new(opts.max_requests)));
    let state = Arc::new(app);
    // The sources are read in the background: /healthz answers at once, /readyz after the read.
    let loader = pipeline.start(state.clone(), opts.config, opts.at);
    server::serve(listener, state, web.tls).await;
    // The live publisher runs for the process's lifetime; leave it to the runtime's end.
    drop(loader);
    Ok(())
}
