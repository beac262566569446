//! The exporter's own health metrics (`ack_drift_exporter_*`), kept in a prometheus-client
//! registry and encoded at scrape time (they are few and change between scrapes).
//!
//! Each health family is defined here, beside its registration; `output::metrics::ALL` lists
//! them with the rendered families (the README table and the stable list come from it).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::{prometheus_text, text};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Metric, Registry};

use crate::exposition::{self, Format, Kind, family};

family!(
    EXPORTER_BUILD_INFO,
    "ack_drift_exporter_build_info",
    Info,
    "Version and git revision of the running exporter (value always 1).",
    ["version", "revision"]
);
family!(
    EXPORTER_SOURCE_UP,
    "ack_drift_exporter_source_up",
    Gauge,
    "1 when the source's last read or poll succeeded.",
    ["source"]
);
family!(
    EXPORTER_KUBE_WATCH_RESTARTS,
    "ack_drift_exporter_kube_watch_restarts_total",
    Counter,
    "Kubernetes watch restarts (errors, 410 Gone re-lists), by watched resource.",
    ["resource"],
    true
);
family!(
    EXPORTER_KUBE_OBJECTS,
    "ack_drift_exporter_kube_objects",
    Gauge,
    "Kubernetes objects held in the snapshot, by group and kind (cached, not a live count).",
    ["group", "kind"]
);
family!(
    EXPORTER_CLOUDTRAIL_REQUESTS,
    "ack_drift_exporter_cloudtrail_requests_total",
    Counter,
    "Requests sent to CloudTrail, by account, region and API.",
    ["account", "region", "api"],
    true
);
family!(
    EXPORTER_CLOUDTRAIL_REQUEST_ERRORS,
    "ack_drift_exporter_cloudtrail_request_errors_total",
    Counter,
    "Failed CloudTrail requests, by account, region, API and error code.",
    ["account", "region", "api", "code"],
    true
);
family!(
    EXPORTER_CLOUDTRAIL_LAST_SUCCESS,
    "ack_drift_exporter_cloudtrail_last_success_timestamp_seconds",
    Gauge,
    "Time of the last successful CloudTrail poll per account and region.",
    ["account", "region"],
    true
);
family!(
    EXPORTER_CLOUDTRAIL_LAG,
    "ack_drift_exporter_cloudtrail_lag_seconds",
    Gauge,
    "Seconds since the end of the oldest completely read LookupEvents window per account and region: how far its CloudTrail figures may be behind (updated each poll).",
    ["account", "region"],
    true
);
family!(
    EXPORTER_CLOUDTRAIL_UP,
    "ack_drift_exporter_cloudtrail_up",
    Gauge,
    "1 when the last poll of an account and region read every event source to the end, 0 when it failed (the code is in cloudtrail_request_errors_total).",
    ["account", "region"],
    true
);
family!(
    EXPORTER_SQS_RECEIVED,
    "ack_drift_exporter_sqs_messages_received_total",
    Counter,
    "Messages received from the organisation trail's queue (redeliveries included).",
    [],
    true
);
family!(
    EXPORTER_SQS_DELETED,
    "ack_drift_exporter_sqs_messages_deleted_total",
    Counter,
    "Queue messages deleted after everything they announce was in the store.",
    [],
    true
);
family!(
    EXPORTER_SQS_LAG,
    "ack_drift_exporter_sqs_lag_seconds",
    Gauge,
    "Age of the oldest message in the last receive from the organisation trail's queue (from SentTimestamp); 0 when the queue was empty.",
    [],
    true
);
family!(
    EXPORTER_S3_OBJECTS,
    "ack_drift_exporter_s3_objects_read_total",
    Counter,
    "Trail objects read from S3 (backfill and notifications).",
    [],
    true
);
family!(
    EXPORTER_S3_BYTES,
    "ack_drift_exporter_s3_bytes_read_total",
    Counter,
    "Bytes of trail objects read from S3, as stored (compressed).",
    [],
    true
);
family!(
    EXPORTER_BAD_MESSAGES,
    "ack_drift_exporter_cloudtrail_bad_messages_total",
    Counter,
    "Queue messages that could not be used, by reason (not_json, unrecognised, other_detail_type, missing_object, broken_object); only other_detail_type is deleted.",
    ["reason"],
    true
);
family!(
    EXPORTER_AWS_REQUESTS,
    "ack_drift_exporter_aws_requests_total",
    Counter,
    "Requests sent to S3 and SQS for the organisation trail, by service and operation.",
    ["service", "operation"],
    true
);
family!(
    EXPORTER_AWS_REQUEST_ERRORS,
    "ack_drift_exporter_aws_request_errors_total",
    Counter,
    "Failed S3 and SQS requests, by service, operation and error code.",
    ["service", "operation", "code"],
    true
);
family!(
    EXPORTER_DUPLICATES,
    "ack_drift_exporter_cloudtrail_duplicate_events_total",
    Counter,
    "CloudTrail records whose eventID had already been counted.",
    []
);
family!(
    EXPORTER_PARSE_ERRORS,
    "ack_drift_exporter_parse_errors_total",
    Counter,
    "Input problems met, by source (kube_dir, kube, cloudtrail_dir, lookup_events).",
    ["source"]
);
family!(
    EXPORTER_SCRAPE_DURATION,
    "ack_drift_exporter_scrape_duration_seconds",
    Gauge,
    "Time the previous scrape of this endpoint took to render and send.",
    []
);

pub type Labels = Vec<(String, String)>;

/// The organisation trail's health: its queue, its bucket and the requests to both.
#[derive(Default)]
pub struct OrgTrailTelemetry {
    pub received: Counter,
    pub deleted: Counter,
    pub lag: Gauge<f64, AtomicU64>,
    pub objects: Counter,
    pub bytes: Counter,
    pub bad_messages: Family<Labels, Counter>,
    pub requests: Family<Labels, Counter>,
    pub request_errors: Family<Labels, Counter>,
}

impl OrgTrailTelemetry {
    /// One request sent; `code` when it failed.
    pub fn request(&self, service: &str, operation: &str, code: Option<&str>) {
        self.requests
            .get_or_create(&labels(&[("service", service), ("operation", operation)]))
            .inc();
        if let Some(code) = code {
            self.request_errors
                .get_or_create(&labels(&[
                    ("service", service),
                    ("operation", operation),
                    ("code", code),
                ]))
                .inc();
        }
    }
}

/// Health metrics shared by sources (which count) and the web output (which encodes).
pub struct Telemetry {
    registry: Registry,
    pub source_up: Family<Labels, Gauge>,
    pub kube_objects: Family<Labels, Gauge>,
    pub parse_errors: Family<Labels, Counter>,
    pub duplicates: Counter,
    pub scrape_duration: Gauge<f64, AtomicU64>,
    /// Registered only with a live Kubernetes source.
    pub kube_watch_restarts: Family<Labels, Counter>,
    /// Registered only with live CloudTrail polling.
    pub cloudtrail_requests: Family<Labels, Counter>,
    pub cloudtrail_request_errors: Family<Labels, Counter>,
    pub cloudtrail_last_success: Family<Labels, Gauge<f64, AtomicU64>>,
    pub cloudtrail_lag: Family<Labels, Gauge<f64, AtomicU64>>,
    pub cloudtrail_up: Family<Labels, Gauge>,
    pub org_trail: OrgTrailTelemetry,
    /// The (group, kind) series of `kube_objects` currently published.
    kube_kinds: std::sync::Mutex<std::collections::BTreeSet<(String, String)>>,
}

/// Registers `metric` under the contract's family: prometheus-client adds `_total` to
/// counters and `_info` to infos itself, and a full stop to help texts.
fn register(registry: &mut Registry, family: &exposition::Family, metric: impl Metric) {
    let name = match family.kind {
        Kind::Counter => family.name.strip_suffix("_total"),
        Kind::Info => family.name.strip_suffix("_info"),
        Kind::Gauge => Some(family.name),
    }
    .expect("contract names carry their suffix");
    registry.register(name, family.help.trim_end_matches('.'), metric);
}

impl Telemetry {
    pub fn new(version: &str, revision: &str) -> Self {
        let mut registry = Registry::default();
        let build = Info::new(vec![
            ("version".to_string(), version.to_string()),
            ("revision".to_string(), revision.to_string()),
        ]);
        register(&mut registry, &EXPORTER_BUILD_INFO, build);
        let mut t = Telemetry {
            source_up: Family::default(),
            kube_objects: Family::default(),
            parse_errors: Family::default(),
            duplicates: Counter::default(),
            scrape_duration: Gauge::default(),
            kube_watch_restarts: Family::default(),
            cloudtrail_requests: Family::default(),
            cloudtrail_request_errors: Family::default(),
            cloudtrail_last_success: Family::default(),
            cloudtrail_lag: Family::default(),
            cloudtrail_up: Family::default(),
            org_trail: OrgTrailTelemetry::default(),
            kube_kinds: Default::default(),
            registry,
        };
        register(&mut t.registry, &EXPORTER_SOURCE_UP, t.source_up.clone());
        register(
            &mut t.registry,
            &EXPORTER_KUBE_OBJECTS,
            t.kube_objects.clone(),
        );
        register(&mut t.registry, &EXPORTER_DUPLICATES, t.duplicates.clone());
        register(
            &mut t.registry,
            &EXPORTER_PARSE_ERRORS,
            t.parse_errors.clone(),
        );
        register(
            &mut t.registry,
            &EXPORTER_SCRAPE_DURATION,
            t.scrape_duration.clone(),
        );
        t
    }

    /// Sets `kube_objects` to the snapshot's counts; kinds no longer held lose their series.
    /// (Updated in place: a scrape never sees the family emptied half-way.)
    pub fn set_kube_objects(&self, counts: &std::collections::BTreeMap<(String, String), usize>) {
        let labels = |(group, kind): &(String, String)| {
            vec![
                ("group".to_string(), group.clone()),
                ("kind".to_string(), kind.clone()),
            ]
        };
        let mut published = self.kube_kinds.lock().unwrap_or_else(|p| p.into_inner());
        for gone in published.iter().filter(|k| !counts.contains_key(*k)) {
            self.kube_objects.remove(&labels(gone));
        }
        for (key, n) in counts {
            self.kube_objects.get_or_create(&labels(key)).set(*n as i64);
        }
        *published = counts.keys().cloned().collect();
    }

    /// A source was read: up, and its problems counted.
    pub fn record_read(&self, source: &str, problems: usize) {
        self.source_up
            .get_or_create(&label("source", source))
            .set(1);
        self.parse_errors
            .get_or_create(&label("source", source))
            .inc_by(problems as u64);
    }

    /// Adds the families only a live Kubernetes source feeds.
    pub fn enable_live_kube(&mut self) {
        register(
            &mut self.registry,
            &EXPORTER_KUBE_WATCH_RESTARTS,
            self.kube_watch_restarts.clone(),
        );
    }

    /// Adds the families only live CloudTrail polling feeds.
    pub fn enable_live_cloudtrail(&mut self) {
        register(
            &mut self.registry,
            &EXPORTER_CLOUDTRAIL_REQUESTS,
            self.cloudtrail_requests.clone(),
        );
        register(
            &mut self.registry,
            &EXPORTER_CLOUDTRAIL_REQUEST_ERRORS,
            self.cloudtrail_request_errors.clone(),
        );
        register(
            &mut self.registry,
            &EXPORTER_CLOUDTRAIL_LAST_SUCCESS,
            self.cloudtrail_last_success.clone(),
        );
        register(
            &mut self.registry,
            &EXPORTER_CLOUDTRAIL_LAG,
            self.cloudtrail_lag.clone(),
        );
        register(
            &mut self.registry,
            &EXPORTER_CLOUDTRAIL_UP,
            self.cloudtrail_up.clone(),
        );
    }

    /// Adds the families only the organisation trail's queue and bucket feed.
    pub fn enable_org_trail(&mut self) {
        let o = &self.org_trail;
        let r = &mut self.registry;
        register(r, &EXPORTER_SQS_RECEIVED, o.received.clone());
        register(r, &EXPORTER_SQS_DELETED, o.deleted.clone());
        register(r, &EXPORTER_SQS_LAG, o.lag.clone());
        register(r, &EXPORTER_S3_OBJECTS, o.objects.clone());
        register(r, &EXPORTER_S3_BYTES, o.bytes.clone());
        register(r, &EXPORTER_BAD_MESSAGES, o.bad_messages.clone());
        register(r, &EXPORTER_AWS_REQUESTS, o.requests.clone());
        register(r, &EXPORTER_AWS_REQUEST_ERRORS, o.request_errors.clone());
    }

    /// Appends the health families; OpenMetrics output ends with `# EOF`.
    pub fn encode(&self, format: Format, out: &mut String) {
        let result = match format {
            Format::OpenMetrics => text::encode(out, &self.registry),
            Format::Text => prometheus_text::encode(out, &self.registry),
        };
        result.expect("writing to a String cannot fail");
    }
}

pub fn label(key: &str, value: &str) -> Labels {
    vec![(key.to_string(), value.to_string())]
}

pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The git revision the binary was built from (set by build.rs), or `unknown`.
pub const REVISION: &str = env!("ACK_DRIFT_GIT_REVISION");
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
