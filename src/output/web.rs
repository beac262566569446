//! The HTTP side: `/metrics`, `/healthz`, `/readyz` and `/`. Handlers only read the
//! published snapshot; nothing here calls Kubernetes or AWS.

use std::convert::Infallible;
use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ACCEPT, ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_TYPE, HeaderValue, VARY};
use hyper::{Method, Request, Response, StatusCode};

use super::metrics::{Exposition, Format};
use crate::telemetry::Telemetry;

/// What a scrape or a page view reads: replaced whole when sources change.
#[derive(Default)]
pub struct Published {
    pub exposition: Exposition,
    pub page: String,
}

pub struct AppState {
    pub published: ArcSwap<Published>,
    /// Set once every source finished its first full read.
    pub ready: AtomicBool,
    pub telemetry: Arc<Telemetry>,
    pub telemetry_path: String,
}

impl AppState {
    pub fn new(telemetry: Arc<Telemetry>, telemetry_path: &str) -> Self {
        AppState {
            published: ArcSwap::from_pointee(Published::default()),
            ready: AtomicBool::new(false),
            telemetry,
            telemetry_path: telemetry_path.to_string(),
        }
    }
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn wants_gzip(req: &Request<Incoming>) -> bool {
    req.headers()
        .get(ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',').any(|e| {
                let mut parts = e.split(';');
                let name = parts.next().unwrap_or("").trim();
                let q_zero = parts.any(|p| p.trim().replace(' ', "") == "q=0");
                name.eq_ignore_ascii_case("gzip") && !q_zero
            })
        })
}

/// Renders the full exposition for one scrape.
pub fn scrape_body(state: &AppState, format: Format) -> String {
    let started = Instant::now();
    let published = state.published.load();
    let mut body = String::with_capacity(published.exposition.len() + 8 * 1024);
    published.exposition.write(format, &mut body);
    state.telemetry.encode(format, &mut body);
    state
        .telemetry
        .scrape_duration
        .set(started.elapsed().as_secs_f64());
    body
}

fn metrics(state: &AppState, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let format = Format::from_accept(req.headers().get(ACCEPT).and_then(|v| v.to_str().ok()));
    let body = scrape_body(state, format);
    let gzip = wants_gzip(req);
    let bytes = if gzip {
        let mut enc = flate2::write::GzEncoder::new(
            Vec::with_capacity(body.len() / 8),
            flate2::Compression::fast(),
        );
        let _ = enc.write_all(body.as_bytes());
        Bytes::from(enc.finish().unwrap_or_default())
    } else {
        Bytes::from(body)
    };
    let mut r = Response::new(Full::new(bytes));
    let h = r.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    h.insert(VARY, HeaderValue::from_static("Accept, Accept-Encoding"));
    if gzip {
        h.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    r
}

pub async fn handle(
    state: Arc<AppState>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        r.headers_mut()
            .insert(hyper::header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return Ok(r);
    }
    let path = req.uri().path();
    let response = if path == state.telemetry_path {
        metrics(&state, &req)
    } else {
        match path {
            "/healthz" => text(StatusCode::OK, "ok\n"),
            "/readyz" if state.ready.load(Ordering::Acquire) => text(StatusCode::OK, "ready\n"),
            "/readyz" => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: sources have not finished their first read\n",
            ),
            "/" => {
                let page = state.published.load().page.clone();
                let mut r = Response::new(Full::new(Bytes::from(page)));
                r.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                );
                r
            }
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    };
    Ok(response)
}

/// How long open connections get to finish after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
