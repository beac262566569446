//! The `/metrics` contract (README "Metrics"): every family the exporter serves, and the rendering
//! of the resource and CloudTrail families into text *before* any scrape.
//!
//! Per-resource lines are rendered when a resource's inputs change (see [`ResourceCache`]);
//! a scrape only copies prepared text. The exporter's own health families live in
//! [`crate::telemetry`] (prometheus-client) and are encoded at scrape time: they are few.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use crate::evaluate::cloudtrail::{ResourceEvidence, TrailView};
use crate::evaluate::role_selector::SelectorVerdict;
use crate::evaluate::{ControllerSettings, Ownership};
use crate::intern::Interner;
use crate::model::AckResource;
use crate::model::time::parse_rfc3339;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    Counter,
    Info,
}

/// One metric family, by its sample name as it appears on `/metrics`.
#[derive(Debug)]
pub struct Family {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
    pub labels: &'static [&'static str],
    /// Served only with a live source (Kubernetes watch or LookupEvents polling).
    pub live_only: bool,
}

macro_rules! family {
    ($id:ident, $name:literal, $kind:ident, $help:literal, [$($l:literal),*]) => {
        family!($id, $name, $kind, $help, [$($l),*], false);
    };
    ($id:ident, $name:literal, $kind:ident, $help:literal, [$($l:literal),*], $live:literal) => {
        pub const $id: Family = Family {
            name: $name,
            kind: Kind::$kind,
            help: $help,
            labels: &[$($l),*],
            live_only: $live,
        };
    };
}

family!(
    RESOURCE_INFO,
    "ack_drift_resource_info",
    Info,
    "ACK resource and what its status records (value always 1).",
    [
        "group",
        "kind",
        "namespace",
        "name",
        "status_account",
        "status_region",
        "arn_account",
        "controller_version"
    ]
);
family!(
    RESOURCE_ACCOUNT_DRIFT,
    "ack_drift_resource_account_drift",
    Gauge,
    "1 when status.ackResourceMetadata.ownerAccountID differs from the account the controller targets; effect says what the controller does about it.",
    [
        "group",
        "kind",
        "namespace",
        "name",
        "status_account",
        "expected_account",
        "account_source",
        "effect"
    ]
);
family!(
    RESOURCE_REGION_DRIFT,
    "ack_drift_resource_region_drift",
    Gauge,
    "1 when status.ackResourceMetadata.region differs from the region the controller targets; effect says what the controller does about it (calls_wrong_region, blocked).",
    [
        "group",
        "kind",
        "namespace",
        "name",
        "status_region",
        "expected_region",
        "region_source",
        "effect"
    ]
);
family!(
    RESOURCE_PROBLEM,
    "ack_drift_resource_problem",
    Gauge,
    "1 for each problem present on the resource (role_unavailable, selector_conflict, role_account_mismatch, arn_account_mismatch, unresolved, not_synced, terminal, terminal_mismatch, controller_not_running, not_reconciled, invalid_account_id).",
    ["group", "kind", "namespace", "name", "problem"]
);
family!(
    RESOURCE_CONDITION,
    "ack_drift_resource_condition",
    Gauge,
    "1 for each status condition of the resource, labelled with its current status.",
    ["group", "kind", "namespace", "name", "condition", "status"]
);
family!(
    RESOURCE_CONDITION_TRANSITION,
    "ack_drift_resource_condition_last_transition_timestamp_seconds",
    Gauge,
    "lastTransitionTime of each status condition, in seconds since the epoch.",
    ["group", "kind", "namespace", "name", "condition"]
);
family!(
    RESOURCE_ERROR_EVENTS,
    "ack_drift_resource_error_events",
    Gauge,
    "CloudTrail error events attributed to the resource within the sliding window (ack_drift_cloudtrail_window_seconds), by called account, region and error code.",
    [
        "group",
        "kind",
        "namespace",
        "name",
        "account",
        "region",
        "error_code"
    ]
);
family!(
    RESOURCE_WRONG_ACCOUNT_CALLS,
    "ack_drift_resource_wrong_account_calls",
    Gauge,
    "CloudTrail calls attributed to the resource that landed in another account than the expected one, within the sliding window.",
    [
        "group",
        "kind",
        "namespace",
        "name",
        "called_account",
        "expected_account"
    ]
);
family!(
    RESOURCES,
    "ack_drift_resources",
    Gauge,
    "ACK resources per group, kind and namespace.",
    ["group", "kind", "namespace"]
);

family!(
    CONTROLLER_INFO,
    "ack_drift_controller_info",
    Info,
    "Each discovered or configured ACK controller: its release and the runtime it is judged as, with where that came from (config, image, image_nearest, default); value always 1.",
    [
        "service",
        "namespace",
        "deployment",
        "controller_version",
        "runtime_version",
        "runtime_source"
    ]
);
family!(
    CONTROLLER_UP,
    "ack_drift_controller_up",
    Gauge,
    "1 when the ACK controller can run, 0 when it cannot start (predicted from its flags and runtime) or has no available replica (observed).",
    ["service", "namespace", "deployment"]
);
family!(
    CONTROLLER_PROBLEM,
    "ack_drift_controller_problem",
    Gauge,
    "1 for each reason the ACK controller cannot run (undefined_flag, invalid_flag_value, invalid_feature_gate, unknown_feature_gate, role_selector_with_carm, invalid_reconcile_resources, unsupported_reconcile_kind, invalid_watch_selectors, no_available_replica).",
    ["service", "namespace", "deployment", "problem"]
);
family!(
    ROLE_SELECTOR_INVALID,
    "ack_drift_role_selector_invalid",
    Gauge,
    "1 for each IAMRoleSelector the ACK runtime rejects (validateSelector) and so never uses, by reason.",
    ["name", "reason"]
);
family!(
    CLOUDTRAIL_EVENTS,
    "ack_drift_cloudtrail_events_total",
    Counter,
    "Distinct CloudTrail events read (by eventID); ack_kind is the CRDKind of ACK callers, empty for others.",
    ["account", "region", "service", "ack_kind"]
);
family!(
    CLOUDTRAIL_ERRORS,
    "ack_drift_cloudtrail_errors_total",
    Counter,
    "Distinct CloudTrail events with an errorCode (EC2's Client./Server. prefix stripped).",
    [
        "account",
        "region",
        "service",
        "event_name",
        "error_code",
        "ack_kind"
    ]
);
family!(
    CLOUDTRAIL_CROSS_ACCOUNT,
    "ack_drift_cloudtrail_cross_account_calls_total",
    Counter,
    "Calls crossing AWS accounts, one per pivot even when logged in both accounts; expected is true when a controller's CARM maps, team maps or IAMRoleSelectors name the assumed role.",
    [
        "caller_account",
        "recipient_account",
        "service",
        "event_name",
        "signal",
        "expected"
    ]
);
family!(
    CLOUDTRAIL_UNATTRIBUTED,
    "ack_drift_cloudtrail_unattributed_ack_events_total",
    Counter,
    "ACK-originated events not tied to exactly one resource, by reason (no_match, ambiguous, no_kind).",
    ["account", "region", "ack_kind", "reason"]
);
family!(
    CLOUDTRAIL_WINDOW,
    "ack_drift_cloudtrail_window_seconds",
    Gauge,
    "Length of the sliding window the per-resource CloudTrail gauges cover.",
    []
);

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

/// Per-resource families, in exposition order.
pub const RESOURCE_FAMILIES: [&Family; 8] = [
    &RESOURCE_INFO,
    &RESOURCE_ACCOUNT_DRIFT,
    &RESOURCE_REGION_DRIFT,
    &RESOURCE_PROBLEM,
    &RESOURCE_CONDITION,
    &RESOURCE_CONDITION_TRANSITION,
    &RESOURCE_ERROR_EVENTS,
    &RESOURCE_WRONG_ACCOUNT_CALLS,
];

/// Every family the exporter can serve, in exposition order.
pub const ALL: [&Family; 30] = [
    &RESOURCE_INFO,
    &RESOURCE_ACCOUNT_DRIFT,
    &RESOURCE_REGION_DRIFT,
    &RESOURCE_PROBLEM,
    &RESOURCE_CONDITION,
    &RESOURCE_CONDITION_TRANSITION,
    &RESOURCE_ERROR_EVENTS,
    &RESOURCE_WRONG_ACCOUNT_CALLS,
    &RESOURCES,
    &CONTROLLER_INFO,
    &CONTROLLER_UP,
    &CONTROLLER_PROBLEM,
    &ROLE_SELECTOR_INVALID,
    &CLOUDTRAIL_EVENTS,
    &CLOUDTRAIL_ERRORS,
    &CLOUDTRAIL_CROSS_ACCOUNT,
    &CLOUDTRAIL_UNATTRIBUTED,
    &CLOUDTRAIL_WINDOW,
    &EXPORTER_BUILD_INFO,
    &EXPORTER_SOURCE_UP,
    &EXPORTER_KUBE_WATCH_RESTARTS,
    &EXPORTER_KUBE_OBJECTS,
    &EXPORTER_CLOUDTRAIL_REQUESTS,
    &EXPORTER_CLOUDTRAIL_REQUEST_ERRORS,
    &EXPORTER_CLOUDTRAIL_LAST_SUCCESS,
    &EXPORTER_CLOUDTRAIL_LAG,
    &EXPORTER_CLOUDTRAIL_UP,
    &EXPORTER_DUPLICATES,
    &EXPORTER_PARSE_ERRORS,
    &EXPORTER_SCRAPE_DURATION,
];

/// The metric reference table for the README (a test keeps the two identical).
pub fn reference_table() -> String {
    let mut out = String::from("| metric | type | labels | meaning |\n|---|---|---|---|\n");
    for f in ALL {
        let ty = match f.kind {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
            Kind::Info => "info",
        };
        let live = if f.live_only {
            " (live sources only)"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "| `{}` | {ty} | {} | {}{live} |",
            f.name,
            f.labels
                .iter()
                .map(|l| format!("`{l}`"))
                .collect::<Vec<_>>()
                .join(", "),
            f.help
        );
    }
    out
}

/// The two exposition formats, chosen by the scrape's `Accept` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    OpenMetrics,
    Text,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
        }
    }

    /// OpenMetrics when the scraper asks for it (Prometheus does by default), else text.
    pub fn from_accept(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Text,
        }
    }
}

impl Family {
    /// The name in `# HELP`/`# TYPE`: OpenMetrics names counters and infos without their
    /// `_total`/`_info` suffix; the text format names every family by its samples.
    pub fn header_name(&self, format: Format) -> &'static str {
        match (format, self.kind) {
            (Format::OpenMetrics, Kind::Counter) => {
                self.name.strip_suffix("_total").unwrap_or(self.name)
            }
            (Format::OpenMetrics, Kind::Info) => {
                self.name.strip_suffix("_info").unwrap_or(self.name)
            }
            _ => self.name,
        }
    }

    pub fn type_name(&self, format: Format) -> &'static str {
        match (format, self.kind) {
            (_, Kind::Counter) => "counter",
            (Format::OpenMetrics, Kind::Info) => "info",
            _ => "gauge",
        }
    }

    pub fn write_header(&self, format: Format, out: &mut String) {
        let name = self.header_name(format);
        let _ = writeln!(out, "# HELP {name} {}", self.help);
        let _ = writeln!(out, "# TYPE {name} {}", self.type_name(format));
    }
}

/// Writes a label value with the exposition escapes (`\\`, `\"`, `\n`).
fn escape_into(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Writes one sample line. `labels` must follow the family's label order.
fn sample(out: &mut String, family: &Family, labels: &[&str], value: impl std::fmt::Display) {
    debug_assert_eq!(labels.len(), family.labels.len(), "{}", family.name);
    out.push_str(family.name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in family.labels.iter().zip(labels).enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(k);
            out.push_str("=\"");
            escape_into(out, v);
            out.push('"');
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// Exposition options from the config.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Options {
    /// Leave out per-resource series whose value is 0 (drift gauges of healthy resources).
    pub omit_zero_series: bool,
}

/// Everything a resource's lines depend on.
pub struct ResourceInput<'a> {
    pub resource: &'a AckResource,
    pub ownership: &'a Ownership,
    pub evidence: Option<&'a ResourceEvidence>,
    pub controller_version: Option<&'a str>,
}

impl ResourceInput<'_> {
    fn fingerprint(&self, options: Options) -> u64 {
        let mut h = DefaultHasher::new();
        self.resource.hash(&mut h);
        self.ownership.hash(&mut h);
        self.evidence.hash(&mut h);
        self.controller_version.hash(&mut h);
        options.hash(&mut h);
        h.finish()
    }

    /// The resource's label prefix and one chunk of line tails per family of
    /// [`RESOURCE_FAMILIES`].
    pub fn render(&self, options: Options) -> Rendered {
        let r = self.resource;
        let o = self.ownership;
        let mut prefix = String::new();
        for (i, (k, v)) in RES_LABELS
            .iter()
            .zip([&r.gvk.group, &r.gvk.kind, &r.namespace, &r.name])
            .enumerate()
        {
            if i > 0 {
                prefix.push(',');
            }
            prefix.push_str(k);
            prefix.push_str("=\"");
            escape_into(&mut prefix, v);
            prefix.push('"');
        }
        let s = |v: &Option<String>| v.as_deref().unwrap_or("").to_string();
        let mut out: [String; 8] = Default::default();

        let info = [
            s(&o.status_account),
            s(&o.status_region),
            s(&o.arn_account),
            self.controller_version.unwrap_or("").to_string(),
        ];
        tail(&mut out[0], &RESOURCE_INFO, &info, 1);

        if o.account_drift || !options.omit_zero_series {
            let labels = [
                s(&o.status_account),
                s(&o.expected_account),
                o.account_source.map_or("", |x| x.as_str()).to_string(),
                o.effect.map_or("", |x| x.as_str()).to_string(),
            ];
            tail(
                &mut out[1],
                &RESOURCE_ACCOUNT_DRIFT,
                &labels,
                u8::from(o.account_drift),
            );
        }
        if o.region_drift || !options.omit_zero_series {
            let labels = [
                s(&o.status_region),
                s(&o.expected_region),
                o.region_source.map_or("", |x| x.as_str()).to_string(),
                o.region_effect.map_or("", |x| x.as_str()).to_string(),
            ];
            tail(
                &mut out[2],
                &RESOURCE_REGION_DRIFT,
                &labels,
                u8::from(o.region_drift),
            );
        }
        for p in &o.problems {
            tail(&mut out[3], &RESOURCE_PROBLEM, &[p.as_str().to_string()], 1);
        }
        for c in &r.conditions {
            tail(
                &mut out[4],
                &RESOURCE_CONDITION,
                &[c.type_.clone(), c.status.clone()],
                1,
            );
            if let Some(t) = c.last_transition_time.as_deref().and_then(parse_rfc3339) {
                tail(
                    &mut out[5],
                    &RESOURCE_CONDITION_TRANSITION,
                    std::slice::from_ref(&c.type_),
                    t,
                );
            }
        }
        if let Some(ev) = self.evidence {
            for ((account, region, code), n) in &ev.error_events {
                tail(
                    &mut out[6],
                    &RESOURCE_ERROR_EVENTS,
                    &[account.clone(), region.clone(), code.clone()],
                    n,
                );
            }
            for (account, n) in &ev.wrong_account_calls {
                tail(
                    &mut out[7],
                    &RESOURCE_WRONG_ACCOUNT_CALLS,
                    &[account.clone(), s(&o.expected_account)],
                    n,
                );
            }
        }
        let [
            info,
            account,
            region,
            problem,
            condition,
            transition,
            errors,
            calls,
        ] = out;
        Rendered {
            verdict: Parts::join([info, account, region, problem]),
            own: Parts::join([prefix, condition, transition, errors, calls]),
        }
    }
}

/// Text cut into `N` parts, kept as one allocation: a resource's lines were a dozen small
/// strings before, and at 100 000 resources the allocator's per-string overhead showed.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Parts<const N: usize> {
    text: Box<str>,
    ends: [u32; N],
}

impl<const N: usize> Parts<N> {
    fn join(parts: [String; N]) -> Self {
        let mut text = String::with_capacity(parts.iter().map(String::len).sum());
        let mut ends = [0u32; N];
        for (end, part) in ends.iter_mut().zip(&parts) {
            text.push_str(part);
            // A resource's lines are far below 4 GiB.
            *end = u32::try_from(text.len()).unwrap_or(u32::MAX);
        }
        Parts {
            text: text.into_boxed_str(),
            ends,
        }
    }

    fn part(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.text[start..self.ends[i] as usize]
    }
}

/// A freshly rendered resource, before its verdict part is shared.
pub struct Rendered {
    /// Tails of the families that only the verdict and controller version decide (info,
    /// account and region drift, problems).
    verdict: Parts<4>,
    /// The label prefix, then the tails of the families the resource itself decides.
    own: Parts<5>,
}

/// The labels every per-resource series starts with.
const RES_LABELS: [&str; 4] = ["group", "kind", "namespace", "name"];

/// A resource's prepared lines, stored without the parts they share: each line is written as
/// `<family name>{<prefix><tail>`, so the four identifying labels are kept once per resource
/// instead of once per series, and the tails that only the verdict decides are kept once per
/// distinct verdict (the resources of a namespace mostly share one).
#[derive(Debug)]
pub struct RenderedResource {
    verdict: Arc<Parts<4>>,
    /// `group="..",kind="..",namespace="..",name=".."` (escaped), then the resource's tails.
    own: Parts<5>,
}

impl RenderedResource {
    fn prefix(&self) -> &str {
        self.own.part(0)
    }

    /// Tails of family `i` of [`RESOURCE_FAMILIES`]: `,label="value"...} value\n` per series.
    fn tails(&self, i: usize) -> &str {
        if i < 4 {
            self.verdict.part(i)
        } else {
            self.own.part(i - 3)
        }
    }
}

/// The longest label value (in bytes) taken from a resource's annotations or status: a
/// hostile object cannot inflate `/metrics` (README "Label values").
pub const MAX_LABEL_VALUE_BYTES: usize = 128;

/// The marker that ends a cut value.
const CUT: &str = "…";

/// `v` cut to at most [`MAX_LABEL_VALUE_BYTES`] bytes on a character boundary, ending in `…`
/// when cut.
pub fn bounded(v: &str) -> std::borrow::Cow<'_, str> {
    if v.len() <= MAX_LABEL_VALUE_BYTES {
        return v.into();
    }
    let mut keep = MAX_LABEL_VALUE_BYTES - CUT.len();
    while !v.is_char_boundary(keep) {
        keep -= 1;
    }
    format!("{}{CUT}", &v[..keep]).into()
}

/// Writes the tail of a per-resource sample: the labels after the four identifying ones,
/// each [`bounded`] (they come from the resource's status and annotations).
fn tail(out: &mut String, family: &Family, labels: &[String], value: impl std::fmt::Display) {
    debug_assert_eq!(labels.len() + 4, family.labels.len(), "{}", family.name);
    for (k, v) in family.labels[4..].iter().zip(labels) {
        out.push(',');
        out.push_str(k);
        out.push_str("=\"");
        escape_into(out, &bounded(v));
        out.push('"');
    }
    let _ = writeln!(out, "}} {value}");
}

/// Per-resource rendered lines, kept between snapshots: a resource is rendered again only
/// when something its lines depend on changed.
/// [`AckResource::identity_hash`]; a collision is caught by the content fingerprint.
type ResourceKey = u64;

/// A resource's rendered sample lines, shared by the cache and the published exposition.
type Chunks = Arc<RenderedResource>;

/// A resource's input fingerprint and its rendered chunks.
type Cached = (u64, Chunks);

#[derive(Default)]
pub struct ResourceCache {
    entries: HashMap<ResourceKey, Cached>,
    verdicts: Interner<Parts<4>>,
    /// Resources rendered by the last `prepare` (the rest were reused).
    pub rendered_last: usize,
    /// Cluster warnings already logged, each once while it holds.
    pub announced: std::collections::BTreeSet<String>,
}

/// The prepared text of every non-health family.
#[derive(Debug, Default, Clone)]
pub struct Exposition {
    /// Per-resource chunks, shared with the cache (not copied), in resource order.
    resources: Vec<Chunks>,
    /// The families after the per-resource ones.
    blocks: Vec<(&'static Family, String)>,
}

impl Exposition {
    /// Writes every family: header, then the prepared sample lines.
    pub fn write(&self, format: Format, out: &mut String) {
        let mut cursor = Cursor::default();
        while self.fill(format, &mut cursor, out, usize::MAX) {}
    }

    /// Appends the next part of the exposition to `out` until it holds about `target` bytes;
    /// returns false once everything was written. Lets a scrape stream the body in pieces
    /// instead of holding all of it.
    pub fn fill(
        &self,
        format: Format,
        cursor: &mut Cursor,
        out: &mut String,
        target: usize,
    ) -> bool {
        while out.len() < target {
            if cursor.family < RESOURCE_FAMILIES.len() {
                if cursor.resource == 0 && !cursor.header_done {
                    RESOURCE_FAMILIES[cursor.family].write_header(format, out);
                    cursor.header_done = true;
                }
                match self.resources.get(cursor.resource) {
                    Some(r) => {
                        let name = RESOURCE_FAMILIES[cursor.family].name;
                        let prefix = r.prefix();
                        for line in r.tails(cursor.family).split_inclusive('\n') {
                            out.push_str(name);
                            out.push('{');
                            out.push_str(prefix);
                            out.push_str(line);
                        }
                        cursor.resource += 1;
                    }
                    None => {
                        cursor.family += 1;
                        cursor.resource = 0;
                        cursor.header_done = false;
                    }
                }
            } else {
                let Some((family, body)) = self.blocks.get(cursor.block) else {
                    return false;
                };
                family.write_header(format, out);
                out.push_str(body);
                cursor.block += 1;
            }
        }
        true
    }

    /// Bytes of prepared sample lines (headers excluded).
    pub fn len(&self) -> usize {
        let resources: usize = self
            .resources
            .iter()
            .map(|r| {
                (0..RESOURCE_FAMILIES.len())
                    .map(|i| {
                        let l = r.tails(i);
                        l.len()
                            + l.matches('\n').count()
                                * (RESOURCE_FAMILIES[i].name.len() + 1 + r.prefix().len())
                    })
                    .sum::<usize>()
            })
            .sum();
        resources + self.blocks.iter().map(|(_, b)| b.len()).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.resources.is_empty() && self.blocks.is_empty()
    }
}

/// Where a streamed write of an [`Exposition`] stands.
#[derive(Debug, Default, Clone)]
pub struct Cursor {
    family: usize,
    resource: usize,
    header_done: bool,
    block: usize,
}

/// Cluster-level input to the exposition: the controllers and the role selectors.
#[derive(Default)]
pub struct ClusterMetrics<'a> {
    pub controllers: &'a [ControllerSettings],
    pub role_selectors: &'a [SelectorVerdict],
}

/// `ack_drift_controller_info` for every discovered or configured controller,
/// `ack_drift_controller_up` for every controller with a Deployment or a reason it cannot
/// run (one without either is unknown, not up), and `ack_drift_controller_problem`.
fn controller_blocks(c: &ClusterMetrics) -> Vec<(&'static Family, String)> {
    let (mut info, mut up, mut problems) = (String::new(), String::new(), String::new());
    for s in c.controllers {
        let (ns, name) = s
            .deployment
            .as_deref()
            .and_then(|d| d.split_once('/'))
            .unwrap_or(("", ""));
        if s.deployment.is_some() || s.configured {
            let runtime = s.runtime.to_string();
            let version = bounded(s.version.as_deref().unwrap_or(""));
            let labels = [
                &s.service,
                ns,
                name,
                &version,
                &runtime,
                s.runtime_source.as_str(),
            ];
            sample(&mut info, &CONTROLLER_INFO, &labels, 1);
        }
        if s.deployment.is_none() && s.running() {
            continue;
        }
        sample(
            &mut up,
            &CONTROLLER_UP,
            &[&s.service, ns, name],
            u8::from(s.running()),
        );
        let reasons: std::collections::BTreeSet<_> = s.problems.iter().map(|p| p.problem).collect();
        for p in reasons {
            sample(
                &mut problems,
                &CONTROLLER_PROBLEM,
                &[&s.service, ns, name, p.as_str()],
                1,
            );
        }
    }
    let mut selectors = String::new();
    for v in c.role_selectors {
        if let Some(reason) = v.invalid {
            sample(
                &mut selectors,
                &ROLE_SELECTOR_INVALID,
                &[&v.name, reason.as_str()],
                1,
            );
        }
    }
    vec![
        (&CONTROLLER_INFO, info),
        (&CONTROLLER_UP, up),
        (&CONTROLLER_PROBLEM, problems),
        (&ROLE_SELECTOR_INVALID, selectors),
    ]
}

impl ResourceCache {
    /// Renders changed resources, reuses the others, drops vanished ones, and assembles the
    /// exposition.
    pub fn prepare<'a>(
        &mut self,
        resources: impl IntoIterator<Item = ResourceInput<'a>>,
        cluster: &ClusterMetrics,
        trail: Option<&TrailView>,
        options: Options,
    ) -> Exposition {
        let mut prepared = Vec::new();
        let mut counts: BTreeMap<(String, String, String), u64> = BTreeMap::new();
        let mut next = HashMap::with_capacity(self.entries.len());
        self.rendered_last = 0;
        for input in resources {
            let r = input.resource;
            let key = r.identity_hash();
            *counts
                .entry((r.gvk.group.clone(), r.gvk.kind.clone(), r.namespace.clone()))
                .or_default() += 1;
            let fp = input.fingerprint(options);
            let chunks = match self.entries.remove(&key) {
                Some((old_fp, chunks)) if old_fp == fp => chunks,
                _ => {
                    self.rendered_last += 1;
                    let Rendered { verdict, own } = input.render(options);
                    Arc::new(RenderedResource {
                        verdict: self.verdicts.intern(verdict),
                        own,
                    })
                }
            };
            prepared.push(chunks.clone());
            next.insert(key, (fp, chunks));
        }
        self.entries = next;
        self.verdicts.prune();

        let mut blocks: Vec<(&'static Family, String)> = Vec::new();
        let mut body = String::new();
        for ((group, kind, ns), n) in &counts {
            sample(&mut body, &RESOURCES, &[group, kind, ns], n);
        }
        blocks.push((&RESOURCES, body));
        blocks.extend(controller_blocks(cluster));
        if let Some(t) = trail {
            blocks.extend(trail_blocks(t));
        }
        Exposition {
            resources: prepared,
            blocks,
        }
    }
}

fn trail_blocks(t: &TrailView) -> Vec<(&'static Family, String)> {
    let mut events = String::new();
    let mut sorted: Vec<_> = t.tally.events_by.iter().collect();
    sorted.sort();
    for (k, n) in sorted {
        sample(
            &mut events,
            &CLOUDTRAIL_EVENTS,
            &[&k.account, &k.region, &k.service, &k.ack_kind],
            n,
        );
    }
    let mut errors = String::new();
    let mut sorted: Vec<_> = t.tally.errors_by.iter().collect();
    sorted.sort();
    for (k, n) in sorted {
        sample(
            &mut errors,
            &CLOUDTRAIL_ERRORS,
            &[
                &k.account,
                &k.region,
                &k.service,
                &k.event_name,
                &k.error_code,
                &k.ack_kind,
            ],
            n,
        );
    }
    let mut cross = String::new();
    for (k, n) in &t.evidence.cross_account {
        sample(
            &mut cross,
            &CLOUDTRAIL_CROSS_ACCOUNT,
            &[
                &k.caller_account,
                &k.recipient_account,
                &k.service,
                &k.event_name,
                k.signal.as_str(),
                if k.expected { "true" } else { "false" },
            ],
            n,
        );
    }
    let mut unattributed = String::new();
    for ((account, region, kind, reason), n) in &t.evidence.unattributed {
        sample(
            &mut unattributed,
            &CLOUDTRAIL_UNATTRIBUTED,
            &[account, region, kind, reason.as_str()],
            n,
        );
    }
    let mut window = String::new();
    sample(&mut window, &CLOUDTRAIL_WINDOW, &[], t.window_seconds);
    vec![
        (&CLOUDTRAIL_EVENTS, events),
        (&CLOUDTRAIL_ERRORS, errors),
        (&CLOUDTRAIL_CROSS_ACCOUNT, cross),
        (&CLOUDTRAIL_UNATTRIBUTED, unattributed),
        (&CLOUDTRAIL_WINDOW, window),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_conventions() {
        let mut seen = std::collections::BTreeSet::new();
        for f in ALL {
            assert!(seen.insert(f.name), "{} twice", f.name);
            assert!(f.name.starts_with("ack_drift_"));
            assert_eq!(
                f.kind == Kind::Counter,
                f.name.ends_with("_total"),
                "{}",
                f.name
            );
            if f.kind == Kind::Info {
                assert!(f.name.ends_with("_info"));
            }
            assert!(!f.help.is_empty() && !f.help.contains('\n'));
        }
    }

    #[test]
    fn headers_per_format() {
        let mut om = String::new();
        CLOUDTRAIL_ERRORS.write_header(Format::OpenMetrics, &mut om);
        assert!(om.contains("# TYPE ack_drift_cloudtrail_errors counter\n"));
        let mut text = String::new();
        CLOUDTRAIL_ERRORS.write_header(Format::Text, &mut text);
        assert!(text.contains("# TYPE ack_drift_cloudtrail_errors_total counter\n"));
        let mut om = String::new();
        RESOURCE_INFO.write_header(Format::OpenMetrics, &mut om);
        assert!(om.contains("# TYPE ack_drift_resource info\n"));
        let mut text = String::new();
        RESOURCE_INFO.write_header(Format::Text, &mut text);
        assert!(text.contains("# TYPE ack_drift_resource_info gauge\n"));
    }

    #[test]
    fn long_label_values_are_cut_on_a_character_boundary() {
        let short = "x".repeat(MAX_LABEL_VALUE_BYTES);
        assert_eq!(bounded(&short), short.as_str());
        let long = "r".repeat(1000);
        let cut = bounded(&long);
        assert_eq!(cut.len(), MAX_LABEL_VALUE_BYTES);
        assert!(cut.ends_with('…') && cut.starts_with("rrr"));
        // Two-byte characters: the cut never splits one.
        let wide = "é".repeat(100);
        let cut = bounded(&wide);
        assert!(cut.len() <= MAX_LABEL_VALUE_BYTES && cut.ends_with('…'));
        assert_eq!(cut.chars().filter(|c| *c == 'é').count(), 62);
    }

    #[test]
    fn label_values_are_escaped() {
        let mut out = String::new();
        sample(&mut out, &EXPORTER_SOURCE_UP, &["a\"b\\c\nd"], 1);
        assert_eq!(
            out,
            "ack_drift_exporter_source_up{source=\"a\\\"b\\\\c\\nd\"} 1\n"
        );
    }

    fn world() -> (Vec<crate::model::AckResource>, Vec<Ownership>) {
        use crate::model::{AckResource, Gvk};
        let resources: Vec<AckResource> = (0..3)
            .map(|i| AckResource {
                gvk: Gvk {
                    group: "ec2.services.k8s.aws".into(),
                    version: "v1alpha1".into(),
                    kind: "VPC".into(),
                }
                .into(),
                namespace: "dev".into(),
                name: format!("v{i}"),
                ..Default::default()
            })
            .collect();
        let ownership = Ownership {
            status_account: None,
            status_region: None,
            arn_account: None,
            expected_account: Some("111111111111".into()),
            account_source: None,
            account_drift: false,
            expected_region: None,
            region_source: None,
            region_drift: false,
            problems: Default::default(),
            effect: None,
            region_effect: None,
            role_arn: None,
            role_error: None,
            matched_selectors: vec![],
            called_account: None,
            controller: None,
            runtime: Default::default(),
            runtime_name: None,
        };
        (resources, vec![ownership; 3])
    }

    fn inputs<'a>(
        r: &'a [crate::model::AckResource],
        o: &'a [Ownership],
    ) -> impl Iterator<Item = ResourceInput<'a>> {
        r.iter().zip(o).map(|(resource, ownership)| ResourceInput {
            resource,
            ownership,
            evidence: None,
            controller_version: None,
        })
    }

    #[test]
    fn only_changed_resources_are_rendered_again() {
        let (mut r, mut o) = world();
        let mut cache = ResourceCache::default();
        let first = cache.prepare(
            inputs(&r, &o),
            &ClusterMetrics::default(),
            None,
            Options::default(),
        );
        assert_eq!(cache.rendered_last, 3);
        let mut a = String::new();
        first.write(Format::Text, &mut a);

        let _ = cache.prepare(
            inputs(&r, &o),
            &ClusterMetrics::default(),
            None,
            Options::default(),
        );
        assert_eq!(cache.rendered_last, 0, "nothing changed, nothing rendered");

        o[1].status_account = Some("222222222222".into());
        o[1].account_drift = true;
        let changed = cache.prepare(
            inputs(&r, &o),
            &ClusterMetrics::default(),
            None,
            Options::default(),
        );
        assert_eq!(cache.rendered_last, 1);
        let mut b = String::new();
        changed.write(Format::Text, &mut b);
        assert!(
            b.contains("name=\"v1\",status_account=\"222222222222\""),
            "{b}"
        );

        r.pop();
        o.pop();
        let shrunk = cache.prepare(
            inputs(&r, &o),
            &ClusterMetrics::default(),
            None,
            Options::default(),
        );
        assert_eq!(cache.rendered_last, 0);
        let mut c = String::new();
        shrunk.write(Format::Text, &mut c);
        assert!(!c.contains("name=\"v2\""));
        assert!(c.contains(
            "ack_drift_resources{group=\"ec2.services.k8s.aws\",kind=\"VPC\",namespace=\"dev\"} 2"
        ));

        // Changing options renders everything again, and zeros go.
        let lean = cache.prepare(
            inputs(&r, &o),
            &ClusterMetrics::default(),
            None,
            Options {
                omit_zero_series: true,
            },
        );
        assert_eq!(cache.rendered_last, 2);
        let mut d = String::new();
        lean.write(Format::Text, &mut d);
        assert_eq!(d.matches("ack_drift_resource_account_drift{").count(), 1);
        assert_eq!(d.matches("ack_drift_resource_region_drift{").count(), 0);
    }
}
