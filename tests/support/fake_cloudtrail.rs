//! An in-process fake of CloudTrail `LookupEvents` (awsJson1.1) and STS `AssumeRole` (query
//! protocol, XML answers) for the real AWS SDK, on 127.0.0.1.
//!
//! It enforces what the real services enforce and a poller can get wrong: SigV4 credentials
//! it issued (the account and region of a call come from the `Authorization` credential
//! scope, as in AWS), at most one lookup attribute, `MaxResults` 1–50, `StartTime ≤ EndTime`,
//! newest first, a `NextToken` only valid for the query that produced it, and 2 requests per
//! second per (account, region) answered with `ThrottlingException` beyond that. Events become
//! visible only after their delivery delay. Faults can be injected: random throttles and 500s,
//! slow answers, `AccessDeniedException` per account, refused roles.
//!
//! Include it with `#[path = "support/fake_cloudtrail.rs"] mod fake_cloudtrail;`.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// The exporter's own (base) credentials, as the tests put them in its environment.
pub const BASE_ACCESS_KEY: &str = "AKIAEXPORTERBASE0001";
pub const BASE_SECRET_KEY: &str = "exporter-base-secret";
/// The account the base credentials belong to.
pub const BASE_ACCOUNT: &str = "999999999999";

pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Epoch seconds as `2026-11-27T10:00:00Z`.
pub use ack_drift_exporter::model::time::format_rfc3339 as rfc3339;

/// The inverse of [`rfc3339`].
pub fn rfc3339_secs(s: &str) -> i64 {
    ack_drift_exporter::model::time::parse_rfc3339(s).expect("an RFC 3339 time")
}

/// One event as CloudTrail holds it.
#[derive(Debug, Clone)]
pub struct FakeEvent {
    pub account: String,
    pub region: String,
    pub event_id: String,
    pub event_source: String,
    pub event_name: String,
    /// Epoch seconds.
    pub event_time: i64,
    /// When LookupEvents starts returning it (epoch seconds).
    pub visible_at: f64,
    /// The whole record, served as the `CloudTrailEvent` string.
    pub record: Value,
}

/// Injected faults.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Share of LookupEvents calls answered `ThrottlingException` regardless of rate.
    pub throttle: f64,
    /// Share answered 500.
    pub server_error: f64,
    /// Every LookupEvents answer waits this long.
    pub delay: Duration,
    /// Accounts whose LookupEvents calls are denied.
    pub denied_accounts: HashSet<String>,
    /// Role ARNs AssumeRole refuses.
    pub refused_roles: HashSet<String>,
}

#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// Arrival times of every LookupEvents call per (account, region), answered or not.
    pub arrivals: BTreeMap<(String, String), Vec<f64>>,
    pub lookups: u64,
    pub throttled_rate: u64,
    pub throttled_injected: u64,
    pub server_errors: u64,
    pub invalid: BTreeMap<String, u64>,
    /// AssumeRole calls per role ARN (answered or refused).
    pub assume_role: BTreeMap<String, u64>,
    pub session_names: HashSet<String>,
    /// Events returned (with repeats).
    pub events_returned: u64,
}

struct Bucket {
    tokens: f64,
    at: f64,
}

#[derive(Default)]
struct State {
    /// Per (account, region): events, newest first after `sort`.
    events: HashMap<(String, String), Vec<FakeEvent>>,
    sorted: bool,
    /// Issued access key → (account, expiry, session token).
    keys: HashMap<String, (String, f64, String)>,
    buckets: HashMap<(String, String), Bucket>,
    faults: Faults,
    stats: Stats,
    rng: u64,
    issued: u64,
}

pub struct FakeCloudTrail {
    state: Arc<Mutex<State>>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for FakeCloudTrail {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl FakeCloudTrail {
    pub fn start() -> FakeCloudTrail {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            rng: 0x9e37_79b9_7f4a_7c15,
            ..Default::default()
        }));
        let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
        let shared = state.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    tokio::select! {
                        _ = &mut stop_rx => break,
                        accepted = listener.accept() => {
                            let Ok((stream, _)) = accepted else { continue };
                            let state = shared.clone();
                            tokio::spawn(async move {
                                let service = hyper::service::service_fn(move |req| {
                                    let state = state.clone();
                                    async move { Ok::<_, Infallible>(handle(state, req).await) }
                                });
                                let _ = hyper::server::conn::http1::Builder::new()
                                    .serve_connection(TokioIo::new(stream), service)
                                    .await;
                            });
                        }
                    }
                }
            });
            rt.shutdown_timeout(Duration::from_secs(1));
        });
        FakeCloudTrail {
            state,
            addr,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn add(&self, events: impl IntoIterator<Item = FakeEvent>) {
        let mut s = self.state.lock().unwrap();
        for e in events {
            s.events
                .entry((e.account.clone(), e.region.clone()))
                .or_default()
                .push(e);
        }
        s.sorted = false;
    }

    pub fn set_faults(&self, faults: Faults) {
        self.state.lock().unwrap().faults = faults;
    }

    pub fn stats(&self) -> Stats {
        self.state.lock().unwrap().stats.clone()
    }

    /// The environment that points the exporter's SDK at this fake.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL_CLOUDTRAIL", self.url()),
            ("AWS_ENDPOINT_URL_STS", self.url()),
            ("AWS_ACCESS_KEY_ID", BASE_ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", BASE_SECRET_KEY.into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
            ("NO_PROXY", "127.0.0.1,localhost".into()),
        ]
    }
}

/// The most calls seen in any one-second span, per (account, region).
pub fn busiest_second(arrivals: &[f64]) -> usize {
    let mut sorted = arrivals.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mut best = 0;
    let mut lo = 0;
    for hi in 0..sorted.len() {
        while sorted[hi] - sorted[lo] >= 1.0 {
            lo += 1;
        }
        best = best.max(hi - lo + 1);
    }
    best
}

fn json_answer(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amzn-requestid", "00000000-0000-0000-0000-000000000000")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

fn json_error(status: StatusCode, code: &str, message: &str) -> Response<Full<Bytes>> {
    json_answer(status, json!({"__type": code, "message": message}))
}

fn xml_answer(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "text/xml")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

fn sts_error(status: StatusCode, code: &str, message: &str) -> Response<Full<Bytes>> {
    xml_answer(
        status,
        format!(
            "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>fake</RequestId></ErrorResponse>"
        ),
    )
}

/// (access key, region, service) from `AWS4-HMAC-SHA256 Credential=AKID/date/region/service/aws4_request, ...`.
fn credential_scope(req: &Request<Incoming>) -> Option<(String, String, String)> {
    let auth = req.headers().get("authorization")?.to_str().ok()?;
    let rest = auth.strip_prefix("AWS4-HMAC-SHA256 ")?;
    let cred = rest
        .split(", ")
        .find_map(|p| p.trim().strip_prefix("Credential="))?;
    let parts: Vec<&str> = cred.split('/').collect();
    if parts.len() != 5 || parts[4] != "aws4_request" || !rest.contains("Signature=") {
        return None;
    }
    Some((parts[0].into(), parts[2].into(), parts[3].into()))
}

fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn random(s: &mut State) -> f64 {
    // xorshift64*: deterministic per run, independent of the client.
    s.rng ^= s.rng >> 12;
    s.rng ^= s.rng << 25;
    s.rng ^= s.rng >> 27;
    (s.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
}

async fn handle(state: Arc<Mutex<State>>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let scope = credential_scope(&req);
    let target = req
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let token = req
        .headers()
        .get("x-amz-security-token")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return json_error(StatusCode::BAD_REQUEST, "SerializationException", "body"),
    };
    let Some((key, region, service)) = scope else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "MissingAuthenticationTokenException",
            "Request is missing Authentication Token",
        );
    };
    match (target, service.as_str()) {
        (Some(target), "cloudtrail") => {
            lookup_events(state, &target, &key, token, &region, &body).await
        }
        (None, "sts") => assume_role(&state, &key, &body),
        _ => json_error(
            StatusCode::BAD_REQUEST,
            "UnknownOperationException",
            "unknown",
        ),
    }
}

fn assume_role(state: &Mutex<State>, key: &str, body: &[u8]) -> Response<Full<Bytes>> {
    let form: HashMap<String, String> = String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (url_decode(k), url_decode(v)))
        .collect();
    let mut s = state.lock().unwrap();
    if key != BASE_ACCESS_KEY {
        return sts_error(
            StatusCode::FORBIDDEN,
            "InvalidClientTokenId",
            "The security token included in the request is invalid.",
        );
    }
    if form.get("Action").map(String::as_str) != Some("AssumeRole") {
        return sts_error(StatusCode::BAD_REQUEST, "InvalidAction", "only AssumeRole");
    }
    let (Some(role), Some(session)) = (form.get("RoleArn"), form.get("RoleSessionName")) else {
        return sts_error(
            StatusCode::BAD_REQUEST,
            "MissingParameter",
            "RoleArn and RoleSessionName are required",
        );
    };
    *s.stats.assume_role.entry(role.clone()).or_default() += 1;
    s.stats.session_names.insert(session.clone());
    let parts: Vec<&str> = role.split(':').collect();
    if parts.len() != 6 || parts[4].len() != 12 || !parts[5].starts_with("role/") {
        return sts_error(
            StatusCode::BAD_REQUEST,
            "ValidationError",
            "RoleArn is not a role ARN",
        );
    }
    if s.faults.refused_roles.contains(role) {
        return sts_error(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            &format!(
                "User: arn:aws:iam::{BASE_ACCOUNT}:user/exporter is not authorized to perform: sts:AssumeRole on resource: {role}"
            ),
        );
    }
    s.issued += 1;
    let account = parts[4].to_string();
    let access_key = format!("ASIAFAKE{:012}", s.issued);
    let session_token = format!("fake-session-token-{}", s.issued);
    let expiry = now() + 3600.0;
    s.keys.insert(
        access_key.clone(),
        (account.clone(), expiry, session_token.clone()),
    );
    let expiration = rfc3339(expiry as i64);
    let name = parts[5].trim_start_matches("role/");
    xml_answer(
        StatusCode::OK,
        format!(
            "<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><AssumeRoleResult><Credentials><AccessKeyId>{access_key}</AccessKeyId><SecretAccessKey>fake-secret</SecretAccessKey><SessionToken>{session_token}</SessionToken><Expiration>{expiration}</Expiration></Credentials><AssumedRoleUser><AssumedRoleId>AROAFAKE:{session}</AssumedRoleId><Arn>arn:aws:sts::{account}:assumed-role/{name}/{session}</Arn></AssumedRoleUser></AssumeRoleResult><ResponseMetadata><RequestId>fake</RequestId></ResponseMetadata></AssumeRoleResponse>"
        ),
    )
}

/// The query a `NextToken` belongs to.
fn query_id(attrs: &Value, start: f64, end: f64) -> String {
    format!("{attrs}|{start}|{end}")
}

async fn lookup_events(
    state: Arc<Mutex<State>>,
    target: &str,
    key: &str,
    token: Option<String>,
    region: &str,
    body: &[u8],
) -> Response<Full<Bytes>> {
    let op = target.rsplit('.').next().unwrap_or("");
    if op != "LookupEvents" {
        return json_error(StatusCode::BAD_REQUEST, "UnknownOperationException", op);
    }
    let delay;
    let answer = {
        let mut s = state.lock().unwrap();
        let account = if key == BASE_ACCESS_KEY {
            BASE_ACCOUNT.to_string()
        } else {
            match s.keys.get(key) {
                Some((account, expiry, issued_token))
                    if *expiry > now() && token.as_deref() == Some(issued_token) =>
                {
                    account.clone()
                }
                Some(_) => {
                    return json_error(
                        StatusCode::BAD_REQUEST,
                        "ExpiredTokenException",
                        "The security token included in the request is expired",
                    );
                }
                None => {
                    return json_error(
                        StatusCode::BAD_REQUEST,
                        "UnrecognizedClientException",
                        "The security token included in the request is invalid.",
                    );
                }
            }
        };
        let pair = (account.clone(), region.to_string());
        let t = now();
        s.stats.arrivals.entry(pair.clone()).or_default().push(t);
        s.stats.lookups += 1;
        delay = s.faults.delay;
        // The service's own limit: 2 per second, refilled continuously, no burst beyond 2.
        let bucket = s
            .buckets
            .entry(pair.clone())
            .or_insert(Bucket { tokens: 2.0, at: t });
        bucket.tokens = (bucket.tokens + (t - bucket.at) * 2.0).min(2.0);
        bucket.at = t;
        if bucket.tokens < 1.0 {
            s.stats.throttled_rate += 1;
            Err(json_error(
                StatusCode::BAD_REQUEST,
                "ThrottlingException",
                "Rate exceeded",
            ))
        } else {
            bucket.tokens -= 1.0;
            if s.faults.denied_accounts.contains(&account) {
                Err(json_error(
                    StatusCode::BAD_REQUEST,
                    "AccessDeniedException",
                    &format!(
                        "User is not authorized to perform: cloudtrail:LookupEvents in {account}"
                    ),
                ))
            } else if random(&mut s) < s.faults.throttle {
                s.stats.throttled_injected += 1;
                Err(json_error(
                    StatusCode::BAD_REQUEST,
                    "ThrottlingException",
                    "Rate exceeded",
                ))
            } else if random(&mut s) < s.faults.server_error {
                s.stats.server_errors += 1;
                Err(json_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalServerErrorException",
                    "internal error",
                ))
            } else {
                Ok(query(&mut s, &pair, body))
            }
        }
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    match answer {
        Ok(r) | Err(r) => r,
    }
}

fn invalid(s: &mut State, code: &str, message: &str) -> Response<Full<Bytes>> {
    *s.stats.invalid.entry(code.to_string()).or_default() += 1;
    json_error(StatusCode::BAD_REQUEST, code, message)
}

fn query(s: &mut State, pair: &(String, String), body: &[u8]) -> Response<Full<Bytes>> {
    let Ok(q) = serde_json::from_slice::<Value>(body) else {
        return invalid(s, "SerializationException", "body is not JSON");
    };
    let attrs = q.get("LookupAttributes").cloned().unwrap_or(json!([]));
    let list = attrs.as_array().cloned().unwrap_or_default();
    if list.len() > 1 {
        return invalid(
            s,
            "InvalidLookupAttributesException",
            "You cannot specify more than one lookup attribute.",
        );
    }
    let filter = match list.first() {
        None => None,
        Some(a) => {
            let (Some(k), Some(v)) = (a["AttributeKey"].as_str(), a["AttributeValue"].as_str())
            else {
                return invalid(
                    s,
                    "InvalidLookupAttributesException",
                    "AttributeKey and AttributeValue are required",
                );
            };
            if ![
                "EventId",
                "EventName",
                "EventSource",
                "ReadOnly",
                "Username",
                "ResourceType",
                "ResourceName",
                "AccessKeyId",
            ]
            .contains(&k)
            {
                return invalid(
                    s,
                    "InvalidLookupAttributesException",
                    "unknown AttributeKey",
                );
            }
            Some((k.to_string(), v.to_string()))
        }
    };
    let max = q.get("MaxResults").map_or(Some(50), Value::as_i64);
    let Some(max) = max.filter(|m| (1..=50).contains(m)) else {
        return invalid(
            s,
            "InvalidMaxResultsException",
            "MaxResults must be between 1 and 50",
        );
    };
    let start = q.get("StartTime").and_then(Value::as_f64).unwrap_or(0.0);
    let end = q.get("EndTime").and_then(Value::as_f64).unwrap_or_else(now);
    if start > end {
        return invalid(
            s,
            "InvalidTimeRangeException",
            "StartTime must be before EndTime",
        );
    }
    let id = query_id(&attrs, start, end);
    // Tokens carry their query and the position after the last event returned.
    let after: Option<(i64, String)> = match q.get("NextToken").and_then(Value::as_str) {
        None => None,
        Some(t) => match t.split_once('#') {
            Some((qid, pos)) if qid == id => match pos.split_once('/') {
                Some((time, eid)) => time.parse().ok().map(|t| (t, eid.to_string())),
                None => None,
            },
            _ => return invalid(s, "InvalidNextTokenException", "Invalid NextToken"),
        },
    };
    if !s.sorted {
        for v in s.events.values_mut() {
            v.sort_by(|a, b| (b.event_time, &b.event_id).cmp(&(a.event_time, &a.event_id)));
        }
        s.sorted = true;
    }
    let t = now();
    let events = s.events.get(pair).map(Vec::as_slice).unwrap_or(&[]);
    let mut page = Vec::new();
    let mut more = false;
    for e in events {
        if let Some((time, eid)) = &after
            && (e.event_time, &e.event_id) >= (*time, eid)
        {
            continue;
        }
        if e.visible_at > t || (e.event_time as f64) < start || (e.event_time as f64) > end {
            continue;
        }
        if let Some((k, v)) = &filter {
            let hit = match k.as_str() {
                "EventSource" => &e.event_source == v,
                "EventName" => &e.event_name == v,
                "EventId" => &e.event_id == v,
                _ => true,
            };
            if !hit {
                continue;
            }
        }
        if page.len() as i64 == max {
            more = true;
            break;
        }
        page.push(e);
    }
    let next = more.then(|| {
        let last = page.last().unwrap();
        format!("{id}#{}/{}", last.event_time, last.event_id)
    });
    let out: Vec<Value> = page
        .iter()
        .map(|e| {
            json!({
                "EventId": e.event_id,
                "EventName": e.event_name,
                "ReadOnly": "false",
                "EventTime": e.event_time,
                "EventSource": e.event_source,
                "Username": "ack",
                "Resources": [],
                "CloudTrailEvent": e.record.to_string(),
            })
        })
        .collect();
    s.stats.events_returned += out.len() as u64;
    let mut body = json!({"Events": out});
    if let Some(n) = next {
        body["NextToken"] = json!(n);
    }
    json_answer(StatusCode::OK, body)
}
