//! The per-resource families: each one's descriptor, who decides its lines, and the generator
//! that writes them, in one table ([`RESOURCE_FAMILIES`]); and a rendered resource's lines,
//! kept as one allocation per resource plus one shared per distinct verdict.

use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use super::Options;
use crate::evaluate::Ownership;
use crate::evaluate::cloudtrail::ResourceEvidence;
use crate::exposition::{Family, Kind, escape_into};
use crate::model::AckResource;
use crate::model::time::parse_rfc3339;

/// Who decides a per-resource family's lines, and so where they are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecidedBy {
    /// Only the verdict and the controller version: kept once per distinct verdict.
    Verdict,
    /// The resource itself (its conditions, its CloudTrail evidence): kept with it.
    Resource,
}

/// Writes one resource's line tails of a family: `,label="value"…} value\n` per series.
type Generator = fn(&ResourceInput, Options, &mut String);

/// A per-resource family: the contract entry and what renders it.
pub struct ResourceFamily {
    pub family: Family,
    pub decided_by: DecidedBy,
    generate: Generator,
}

/// The labels every per-resource series starts with.
const RES_LABELS: [&str; 4] = ["group", "kind", "namespace", "name"];

const fn gauge(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Family {
    Family {
        name,
        kind: Kind::Gauge,
        help,
        labels,
        live_only: false,
    }
}

fn or_empty(v: &Option<String>) -> String {
    v.as_deref().unwrap_or("").to_string()
}

pub const RESOURCE_INFO: ResourceFamily = ResourceFamily {
    family: Family {
        kind: Kind::Info,
        ..gauge(
            "ack_drift_resource_info",
            "ACK resource and what its status records (value always 1).",
            &[
                "group",
                "kind",
                "namespace",
                "name",
                "status_account",
                "status_region",
                "arn_account",
                "controller_version",
            ],
        )
    },
    decided_by: DecidedBy::Verdict,
    generate: |input, _, out| {
        let o = input.ownership;
        let labels = [
            or_empty(&o.status_account),
            or_empty(&o.status_region),
            or_empty(&o.arn_account),
            input.controller_version.unwrap_or("").to_string(),
        ];
        tail(out, &RESOURCE_INFO.family, &labels, 1);
    },
};

pub const RESOURCE_ACCOUNT_DRIFT: ResourceFamily = ResourceFamily {
    family: gauge(
        "ack_drift_resource_account_drift",
        "1 when status.ackResourceMetadata.ownerAccountID differs from the account the controller targets; effect says what the controller does about it.",
        &[
            "group",
            "kind",
            "namespace",
            "name",
            "status_account",
            "expected_account",
            "account_source",
            "effect",
        ],
    ),
    decided_by: DecidedBy::Verdict,
    generate: |input, options, out| {
        let o = input.ownership;
        if o.account_drift || !options.omit_zero_series {
            let labels = [
                or_empty(&o.status_account),
                or_empty(&o.expected_account),
                o.account_source.map_or("", |x| x.as_str()).to_string(),
                o.effect.map_or("", |x| x.as_str()).to_string(),
            ];
            let value = u8::from(o.account_drift);
            tail(out, &RESOURCE_ACCOUNT_DRIFT.family, &labels, value);
        }
    },
};

pub const RESOURCE_REGION_DRIFT: ResourceFamily = ResourceFamily {
    family: gauge(
        "ack_drift_resource_region_drift",
        "1 when status.ackResourceMetadata.region differs from the region the controller targets; effect says what the controller does about it (calls_wrong_region, blocked).",
        &[
            "group",
            "kind",
            "namespace",
            "name",
            "status_region",
            "expected_region",
            "region_source",
            "effect",
        ],
    ),
    decided_by: DecidedBy::Verdict,
    generate: |input, options, out| {
        let o = input.ownership;
        if o.region_drift || !options.omit_zero_series {
            let labels = [
                or_empty(&o.status_region),
                or_empty(&o.expected_region),
                o.region_source.map_or("", |x| x.as_str()).to_string(),
                o.region_effect.map_or("", |x| x.as_str()).to_string(),
            ];
            let value = u8::from(o.region_drift);
            tail(out, &RESOURCE_REGION_DRIFT.family, &labels, value);
        }
    },
};

pub const RESOURCE_PROBLEM: ResourceFamily = ResourceFamily {
    family: gauge(
        "ack_drift_resource_problem",
        "1 for each problem present on the resource (role_unavailable, selector_conflict, role_account_mismatch, arn_account_mismatch, unresolved, not_synced, terminal, terminal_mismatch, controller_not_running, not_reconciled, invalid_account_id).",
        &["group", "kind", "namespace", "name", "problem"],
    ),
    decided_by: DecidedBy::Verdict,
    generate: |input, _, out| {
        for p in &input.ownership.problems {
            tail(out, &RESOURCE_PROBLEM.family, &[p.as_str().to_string()], 1);
        }
    },
};

pub const RESOURCE_CONDITION: ResourceFamily = ResourceFamily {
    family: gauge(
        "ack_drift_resource_condition",
        "1 for each status condition of the resource, labelled with its current status.",
        &["group", "kind", "namespace", "name", "condition", "status"],
    ),
    decided_by: DecidedBy::Resource,
    generate: |input, _, out| {
        for c in &input.resource.conditions {
            let labels = [c.type_.clone(), c.status.clone()];
            tail(out, &RESOURCE_CONDITION.family, &labels, 1);
        }
    },
};

pub const RESOURCE_CONDITION_TRANSITION: ResourceFamily = ResourceFamily {
    family: gauge(
        "ack_drift_resource_condition_last_transition_timestamp_seconds",
        "lastTransitionTime of each status condition, in seconds since the epoch.",
        &["group", "kind", "namespace", "name", "condition"],
    ),
    decided_by: DecidedBy::Resource,
    generate: |input, _, out| {
        for c in &input.resource.conditions {
            if let Some(t) = c.last_transition_time.as_deref().and_then(parse_rfc3339) {
                let labels = std::slice::from_ref(&c.type_);
                tail(out, &RESOURCE_CONDITION_TRANSITION.family, labels, t);
            }
        }
    },
};

pub const RESOURCE_ERROR_EVENTS: ResourceFamily = ResourceFamily {
    family: gauge(
        "ack_drift_resource_error_events",
        "CloudTrail error events attributed to the resource within the sliding window (ack_drift_cloudtrail_window_seconds), by called account, region and error code.",
        &[
            "group",
            "kind",
            "namespace",
            "name",
            "account",
            "region",
            "error_code",
        ],
    ),
    decided_by: DecidedBy::Resource,
    generate: |input, _, out| {
        for ((account, region, code), n) in input.evidence.iter().flat_map(|e| &e.error_events) {
            let labels = [account.clone(), region.clone(), code.clone()];
            tail(out, &RESOURCE_ERROR_EVENTS.family, &labels, n);
        }
    },
};

pub const RESOURCE_WRONG_ACCOUNT_CALLS: ResourceFamily = ResourceFamily {
    family: gauge(
        "ack_drift_resource_wrong_account_calls",
        "CloudTrail calls attributed to the resource that landed in another account than the expected one, within the sliding window.",
        &[
            "group",
            "kind",
            "namespace",
            "name",
            "called_account",
            "expected_account",
        ],
    ),
    decided_by: DecidedBy::Resource,
    generate: |input, _, out| {
        let Some(evidence) = input.evidence else {
            return;
        };
        let expected = or_empty(&input.ownership.expected_account);
        for (account, n) in &evidence.wrong_account_calls {
            let labels = [account.clone(), expected.clone()];
            tail(out, &RESOURCE_WRONG_ACCOUNT_CALLS.family, &labels, n);
        }
    },
};

/// Per-resource families, in exposition order.
pub const RESOURCE_FAMILIES: [&ResourceFamily; 8] = [
    &RESOURCE_INFO,
    &RESOURCE_ACCOUNT_DRIFT,
    &RESOURCE_REGION_DRIFT,
    &RESOURCE_PROBLEM,
    &RESOURCE_CONDITION,
    &RESOURCE_CONDITION_TRANSITION,
    &RESOURCE_ERROR_EVENTS,
    &RESOURCE_WRONG_ACCOUNT_CALLS,
];

const fn count(decided_by: DecidedBy) -> usize {
    let mut n = 0;
    let mut i = 0;
    while i < RESOURCE_FAMILIES.len() {
        if RESOURCE_FAMILIES[i].decided_by as u8 == decided_by as u8 {
            n += 1;
        }
        i += 1;
    }
    n
}

/// Parts of a verdict's lines: one per verdict-decided family.
const VERDICT_PARTS: usize = count(DecidedBy::Verdict);
/// Parts of a resource's own lines: its label prefix, then one per resource-decided family.
const OWN_PARTS: usize = 1 + count(DecidedBy::Resource);

/// Where family `i` of [`RESOURCE_FAMILIES`] is kept: its part in the verdict's lines or in
/// the resource's own (after the prefix).
const SLOTS: [usize; RESOURCE_FAMILIES.len()] = {
    let mut slots = [0; RESOURCE_FAMILIES.len()];
    let (mut verdict, mut own) = (0, 1);
    let mut i = 0;
    while i < RESOURCE_FAMILIES.len() {
        if RESOURCE_FAMILIES[i].decided_by as u8 == DecidedBy::Verdict as u8 {
            slots[i] = verdict;
            verdict += 1;
        } else {
            slots[i] = own;
            own += 1;
        }
        i += 1;
    }
    slots
};

/// Who decides family `i` and its slot, in one static the scrape reads per resource and
/// family (a `const` array indexed at run time may be copied at each use).
static PLACES: [(DecidedBy, usize); RESOURCE_FAMILIES.len()] = {
    let mut places = [(DecidedBy::Verdict, 0); RESOURCE_FAMILIES.len()];
    let mut i = 0;
    while i < RESOURCE_FAMILIES.len() {
        places[i] = (RESOURCE_FAMILIES[i].decided_by, SLOTS[i]);
        i += 1;
    }
    places
};

/// Everything a resource's lines depend on.
pub struct ResourceInput<'a> {
    pub resource: &'a AckResource,
    pub ownership: &'a Ownership,
    pub evidence: Option<&'a ResourceEvidence>,
    pub controller_version: Option<&'a str>,
}

impl ResourceInput<'_> {
    pub(super) fn fingerprint(&self, options: Options) -> u64 {
        let mut h = crate::intern::fingerprint_hasher();
        self.resource.hash(&mut h);
        self.ownership.hash(&mut h);
        self.evidence.hash(&mut h);
        self.controller_version.hash(&mut h);
        options.hash(&mut h);
        h.finish()
    }

    /// `group="..",kind="..",namespace="..",name=".."`, escaped.
    fn label_prefix(&self) -> String {
        let r = self.resource;
        let mut prefix = String::new();
        let values = [&r.gvk.group, &r.gvk.kind, &r.namespace, &r.name];
        for (i, (k, v)) in RES_LABELS.iter().zip(values).enumerate() {
            if i > 0 {
                prefix.push(',');
            }
            prefix.push_str(k);
            prefix.push_str("=\"");
            escape_into(&mut prefix, v);
            prefix.push('"');
        }
        prefix
    }

    /// The resource's label prefix and its line tails, family by family.
    pub fn render(&self, options: Options) -> Rendered {
        let mut verdict: [String; VERDICT_PARTS] = Default::default();
        let mut own: [String; OWN_PARTS] = Default::default();
        own[0] = self.label_prefix();
        for (f, slot) in RESOURCE_FAMILIES.iter().zip(SLOTS) {
            let part = match f.decided_by {
                DecidedBy::Verdict => &mut verdict[slot],
                DecidedBy::Resource => &mut own[slot],
            };
            (f.generate)(self, options, part);
        }
        Rendered {
            verdict: Parts::join(verdict),
            own: Parts::join(own),
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

/// The lines of a verdict, shared by every resource with that verdict.
pub type VerdictLines = Parts<VERDICT_PARTS>;

/// A freshly rendered resource, before its verdict part is shared.
pub struct Rendered {
    pub(super) verdict: VerdictLines,
    /// The label prefix, then the tails of the families the resource itself decides.
    pub(super) own: Parts<OWN_PARTS>,
}

/// A resource's prepared lines, stored without the parts they share: each line is written as
/// `<family name>{<prefix><tail>`, so the four identifying labels are kept once per resource
/// instead of once per series, and the tails that only the verdict decides are kept once per
/// distinct verdict (the resources of a namespace mostly share one).
#[derive(Debug)]
pub struct RenderedResource {
    pub(super) verdict: Arc<VerdictLines>,
    /// `group="..",kind="..",namespace="..",name=".."` (escaped), then the resource's tails.
    pub(super) own: Parts<OWN_PARTS>,
}

impl RenderedResource {
    pub(super) fn prefix(&self) -> &str {
        self.own.part(0)
    }

    /// Tails of family `i` of [`RESOURCE_FAMILIES`]: `,label="value"...} value\n` per series.
    pub(super) fn tails(&self, i: usize) -> &str {
        match PLACES[i] {
            (DecidedBy::Verdict, slot) => self.verdict.part(slot),
            (DecidedBy::Resource, slot) => self.own.part(slot),
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
