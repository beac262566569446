//! The HTTP side: `/metrics`, `/healthz`, `/readyz` and `/`. Handlers only read the
//! published snapshot; nothing here calls Kubernetes or AWS.

use std::convert::Infallible;
use std::io::Write as _;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::header::{ACCEPT, ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_TYPE, HeaderValue, VARY};
use hyper::{Method, Request, Response, StatusCode};

use crate::output::metrics::{Cursor, Exposition, Format};
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
    /// Basic auth for everything but the probes.
    pub auth: Option<super::web_config::BasicAuth>,
    /// Scrapes served at once; `None`: no limit.
    pub scrape_slots: Option<Arc<tokio::sync::Semaphore>>,
}

impl AppState {
    pub fn new(telemetry: Arc<Telemetry>, telemetry_path: &str) -> Self {
        AppState {
            published: ArcSwap::from_pointee(Published::default()),
            ready: AtomicBool::new(false),
            telemetry,
            telemetry_path: telemetry_path.to_string(),
            auth: None,
            scrape_slots: None,
        }
    }
}

type ResponseBody = BoxBody<Bytes, Infallible>;

fn full(bytes: impl Into<Bytes>) -> ResponseBody {
    Full::new(bytes.into()).boxed()
}

fn text(status: StatusCode, body: &str) -> Response<ResponseBody> {
    let mut r = Response::new(full(body.to_string()));
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

/// Bytes handed to the socket at a time: a scrape never holds the whole body.
const CHUNK: usize = 256 * 1024;

/// A `/metrics` body produced piece by piece from the published exposition.
struct ScrapeBody {
    published: Arc<Published>,
    format: Format,
    cursor: Cursor,
    /// The health families, encoded when the scrape starts; they end the body.
    tail: Option<String>,
    gzip: Option<flate2::write::GzEncoder<Vec<u8>>>,
    telemetry: Arc<Telemetry>,
    started: Instant,
    done: bool,
    /// Held until the body is dropped: the scrape counts against the limit while it streams.
    _slot: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Body for ScrapeBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        while !this.done {
            let mut chunk = String::with_capacity(CHUNK + 16 * 1024);
            let more =
                this.published
                    .exposition
                    .fill(this.format, &mut this.cursor, &mut chunk, CHUNK);
            if !more {
                chunk.push_str(&this.tail.take().unwrap_or_default());
                this.done = true;
                this.telemetry
                    .scrape_duration
                    .set(this.started.elapsed().as_secs_f64());
            }
            let bytes = match &mut this.gzip {
                None => Bytes::from(chunk),
                Some(enc) => {
                    let _ = enc.write_all(chunk.as_bytes());
                    if this.done {
                        let enc = this.gzip.take().expect("present");
                        Bytes::from(enc.finish().unwrap_or_default())
                    } else {
                        Bytes::from(std::mem::take(enc.get_mut()))
                    }
                }
            };
            if !bytes.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(bytes))));
            }
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

fn metrics(state: &AppState, req: &Request<Incoming>) -> Response<ResponseBody> {
    let slot = match &state.scrape_slots {
        None => None,
        Some(s) => match s.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => {
                return text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too many concurrent scrapes (--web.max-requests)\n",
                );
            }
        },
    };
    let format = Format::from_accept(req.headers().get(ACCEPT).and_then(|v| v.to_str().ok()));
    let gzip = wants_gzip(req);
    let mut tail = String::new();
    state.telemetry.encode(format, &mut tail);
    let body = ScrapeBody {
        published: state.published.load_full(),
        format,
        cursor: Cursor::default(),
        tail: Some(tail),
        gzip: gzip.then(|| {
            flate2::write::GzEncoder::new(
                Vec::with_capacity(CHUNK / 4),
                flate2::Compression::fast(),
            )
        }),
        telemetry: state.telemetry.clone(),
        started: Instant::now(),
        done: false,
        _slot: slot,
    };
    let mut r = Response::new(body.boxed());
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
) -> Result<Response<ResponseBody>, Infallible> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        r.headers_mut()
            .insert(hyper::header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return Ok(r);
    }
    let path = req.uri().path();
    let probe = path == "/healthz" || path == "/readyz";
    if let Some(auth) = &state.auth
        && !probe
    {
        let header = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        // bcrypt is slow on purpose: only a check not yet remembered leaves the async worker.
        let allowed =
            auth.allows_remembered(header) || tokio::task::block_in_place(|| auth.allows(header));
        if !allowed {
            let mut r = text(StatusCode::UNAUTHORIZED, "unauthorized\n");
            r.headers_mut().insert(
                hyper::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"ack-drift-exporter\", charset=\"UTF-8\""),
            );
            return Ok(r);
        }
    }
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
                let mut r = Response::new(full(page));
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
