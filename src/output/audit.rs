//! The `audit` report: one structure, rendered as JSON (the fields of README "Outputs"), a table
//! for people, or Markdown for an incident ticket.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::evaluate::cloudtrail::{ResourceEvidence, TrailView};
use crate::evaluate::ownership::{
    AccountSource, Effect, Ownership, Problem, RegionEffect, RegionSource, RoleError,
};
use crate::evaluate::release_table::RuntimeSource;
use crate::evaluate::remediation::Step;
use crate::evaluate::role_selector::SelectorInvalid;
use crate::evaluate::startup::StartupProblem;
use crate::evaluate::{ControllerSettings, Evaluation, ResourceVerdict};
use crate::model::time::format_rfc3339;
use crate::model::{AckResource, ClusterSnapshot, ParseError};
use crate::state::trail::Signal;

/// The audit JSON's version: bumped with each release that adds a field, changes one's
/// meaning or removes one (README "Outputs", CHANGELOG).
pub const SCHEMA_VERSION: u32 = 2;

#[derive(Debug, Clone, Serialize)]
pub struct AuditReport {
    pub schema_version: u32,
    pub resources: Vec<ResourceReport>,
    /// Every controller judged, and why one cannot run.
    pub controllers: Vec<ControllerReport>,
    /// Every IAMRoleSelector and whether the runtime accepts it.
    pub role_selectors: Vec<SelectorReport>,
    /// `null` without trail input.
    pub cloudtrail: Option<CloudTrailReport>,
    pub cluster: ClusterReport,
    pub summary: Summary,
}

#[derive(Debug, Clone, Serialize)]
pub struct ResourceReport {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub status_account: Option<String>,
    pub expected_account: Option<String>,
    pub account_source: Option<AccountSource>,
    pub account_drift: bool,
    pub status_region: Option<String>,
    pub expected_region: Option<String>,
    pub region_source: Option<RegionSource>,
    pub region_drift: bool,
    pub arn_account: Option<String>,
    pub problems: Vec<Problem>,
    pub effect: Option<Effect>,
    pub region_effect: Option<RegionEffect>,
    /// `null` without trail input; a list (maybe empty) with it.
    pub error_events: Option<Vec<ErrorEvents>>,
    pub wrong_account_calls: Option<Vec<WrongAccountCalls>>,
    pub remediation: Vec<Step>,
    // Beyond the normative fields: what the verdict rests on.
    pub controller: Option<String>,
    /// The controller's ACK runtime version (`v0.35.0`), and the config's name for it.
    pub runtime: String,
    pub runtime_name: Option<&'static str>,
    pub called_account: Option<String>,
    pub role_arn: Option<String>,
    /// The failed role lookup behind `role_unavailable`: map, key, reason.
    pub role_error: Option<RoleError>,
}

impl ResourceReport {
    /// The account drift's effect, then the region drift's when it says something else,
    /// joined by `sep`.
    pub fn effects(&self, sep: &str) -> Option<String> {
        let account = self.effect.map(|e| e.as_str());
        let region = self
            .region_effect
            .map(|e| e.as_str())
            .filter(|e| Some(*e) != account);
        match (account, region) {
            (Some(a), Some(b)) => Some(format!("{a}{sep}{b}")),
            (a, b) => a.or(b).map(String::from),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ControllerReport {
    pub service: String,
    pub deployment: Option<String>,
    /// The image tag.
    pub controller_version: Option<String>,
    pub runtime: String,
    pub runtime_source: RuntimeSource,
    /// The untagged runtime commit the release pins (`runtime` is the newest release in it).
    pub runtime_commit: Option<&'static str>,
    pub running: bool,
    pub problems: Vec<StartupProblem>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SelectorReport {
    pub name: String,
    pub valid: bool,
    pub reason: Option<SelectorInvalid>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorEvents {
    pub account: String,
    pub region: String,
    pub error_code: String,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WrongAccountCalls {
    pub account: String,
    pub count: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClusterReport {
    /// Objects read, of every kind.
    pub objects: usize,
    /// How many input problems were met; `input_errors` lists them.
    pub parse_errors: usize,
    pub input_errors: Vec<ParseError>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CloudTrailReport {
    /// Trail files read.
    pub files: usize,
    /// Distinct events (by eventID).
    pub events: u64,
    pub errors: Vec<ErrorCount>,
    pub cross_account_calls: Vec<CrossAccountCount>,
    pub unattributed_ack_events: Vec<UnattributedCount>,
    /// Records whose eventID had been read already.
    pub duplicates: u64,
    pub parse_errors: usize,
    pub input_errors: Vec<ParseError>,
    /// The per-resource window; `null` when the whole input counts.
    pub window: Option<WindowReport>,
    pub newest_event: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WindowReport {
    pub start: String,
    pub end: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorCount {
    pub account: String,
    pub region: String,
    pub service: String,
    pub event_name: String,
    pub error_code: String,
    pub ack_kind: String,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CrossAccountCount {
    pub caller_account: String,
    pub recipient_account: String,
    pub service: String,
    pub event_name: String,
    pub signal: Signal,
    pub expected: bool,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnattributedCount {
    pub account: String,
    pub region: String,
    pub ack_kind: String,
    pub reason: &'static str,
    pub count: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub resources: usize,
    pub account_drift: usize,
    pub region_drift: usize,
    /// Resources with each problem.
    pub problems: BTreeMap<&'static str, usize>,
}

fn cloudtrail_report(t: &TrailView) -> CloudTrailReport {
    let mut errors: Vec<ErrorCount> = t
        .tally
        .errors_by
        .iter()
        .map(|(k, n)| ErrorCount {
            account: k.account.clone(),
            region: k.region.clone(),
            service: k.service.clone(),
            event_name: k.event_name.clone(),
            error_code: k.error_code.clone(),
            ack_kind: k.ack_kind.clone(),
            count: *n,
        })
        .collect();
    errors.sort_by(|a, b| {
        b.count.cmp(&a.count).then_with(|| {
            (
                &a.account,
                &a.region,
                &a.service,
                &a.event_name,
                &a.error_code,
                &a.ack_kind,
            )
                .cmp(&(
                    &b.account,
                    &b.region,
                    &b.service,
                    &b.event_name,
                    &b.error_code,
                    &b.ack_kind,
                ))
        })
    });
    let mut cross_account_calls: Vec<CrossAccountCount> = t
        .evidence
        .cross_account
        .iter()
        .map(|(k, n)| CrossAccountCount {
            caller_account: k.caller_account.clone(),
            recipient_account: k.recipient_account.clone(),
            service: k.service.clone(),
            event_name: k.event_name.clone(),
            signal: k.signal,
            expected: k.expected,
            count: *n,
        })
        .collect();
    // Unexpected pivots first: they are the ones to read.
    cross_account_calls.sort_by(|a, b| a.expected.cmp(&b.expected).then(b.count.cmp(&a.count)));
    let mut unattributed_ack_events: Vec<UnattributedCount> = t
        .evidence
        .unattributed
        .iter()
        .map(|((account, region, kind, reason), n)| UnattributedCount {
            account: account.clone(),
            region: region.clone(),
            ack_kind: kind.clone(),
            reason: reason.as_str(),
            count: *n,
        })
        .collect();
    unattributed_ack_events.sort_by_key(|u| std::cmp::Reverse(u.count));
    CloudTrailReport {
        files: t.files,
        events: t.tally.events,
        errors,
        cross_account_calls,
        unattributed_ack_events,
        duplicates: t.tally.duplicates,
        parse_errors: t.errors.len(),
        input_errors: t.errors.to_vec(),
        window: t.evidence.window.map(|(start, end)| WindowReport {
            start: format_rfc3339(start),
            end: format_rfc3339(end),
        }),
        newest_event: t.tally.newest.map(format_rfc3339),
    }
}

impl Summary {
    /// The summary before any resource is counted.
    fn of_none(resources: usize) -> Self {
        Summary {
            resources,
            account_drift: 0,
            region_drift: 0,
            problems: BTreeMap::new(),
        }
    }

    /// Counts one resource's drift and problems.
    fn count(&mut self, o: &Ownership) {
        self.account_drift += usize::from(o.account_drift);
        self.region_drift += usize::from(o.region_drift);
        for p in &o.problems {
            *self.problems.entry(p.as_str()).or_default() += 1;
        }
    }
}

impl ResourceReport {
    /// The report on one resource: its verdict, and its CloudTrail evidence with trail input.
    fn of(r: &AckResource, v: &ResourceVerdict, evidence: Option<&ResourceEvidence>) -> Self {
        let o = &v.ownership;
        ResourceReport {
            group: r.gvk.group.clone(),
            version: r.gvk.version.clone(),
            kind: r.gvk.kind.clone(),
            namespace: r.namespace.clone(),
            name: r.name.clone(),
            status_account: o.status_account.clone(),
            expected_account: o.expected_account.clone(),
            account_source: o.account_source,
            account_drift: o.account_drift,
            status_region: o.status_region.clone(),
            expected_region: o.expected_region.clone(),
            region_source: o.region_source,
            region_drift: o.region_drift,
            arn_account: o.arn_account.clone(),
            problems: o.problems.iter().copied().collect(),
            effect: o.effect,
            region_effect: o.region_effect,
            error_events: evidence.map(error_events),
            wrong_account_calls: evidence.map(wrong_account_calls),
            remediation: v.remediation.to_vec(),
            controller: o.controller.clone(),
            runtime: o.runtime.to_string(),
            runtime_name: o.runtime_name.map(|n| n.as_str()),
            called_account: o.called_account.clone(),
            role_arn: o.role_arn.clone(),
            role_error: o.role_error.clone(),
        }
    }
}

/// A resource's error events, most first.
fn error_events(e: &ResourceEvidence) -> Vec<ErrorEvents> {
    let mut list: Vec<ErrorEvents> = e
        .error_events
        .iter()
        .map(|((account, region, code), n)| ErrorEvents {
            account: account.clone(),
            region: region.clone(),
            error_code: code.clone(),
            count: *n,
        })
        .collect();
    list.sort_by_key(|e| std::cmp::Reverse(e.count));
    list
}

/// A resource's calls outside its expected account, most first.
fn wrong_account_calls(e: &ResourceEvidence) -> Vec<WrongAccountCalls> {
    let mut list: Vec<WrongAccountCalls> = e
        .wrong_account_calls
        .iter()
        .map(|(account, n)| WrongAccountCalls {
            account: account.clone(),
            count: *n,
        })
        .collect();
    list.sort_by_key(|e| std::cmp::Reverse(e.count));
    list
}

impl ControllerReport {
    fn of(c: &ControllerSettings) -> Self {
        ControllerReport {
            service: c.service.clone(),
            deployment: c.deployment.clone(),
            controller_version: c.version.clone(),
            runtime: c.runtime.to_string(),
            runtime_source: c.runtime_source,
            runtime_commit: c.runtime_commit,
            running: c.running(),
            problems: c.problems.clone(),
        }
    }
}

impl AuditReport {
    pub fn build(
        snapshot: &ClusterSnapshot,
        evaluation: &Evaluation,
        trail: Option<&TrailView>,
    ) -> AuditReport {
        Self::build_scoped(snapshot, evaluation, trail, false)
    }

    /// Like [`AuditReport::build`], listing only resources that drift or have a problem (the
    /// summary still counts all): what the landing page shows, without a copy per resource.
    pub fn build_notable(
        snapshot: &ClusterSnapshot,
        evaluation: &Evaluation,
        trail: Option<&TrailView>,
    ) -> AuditReport {
        Self::build_scoped(snapshot, evaluation, trail, true)
    }

    fn build_scoped(
        snapshot: &ClusterSnapshot,
        evaluation: &Evaluation,
        trail: Option<&TrailView>,
        notable_only: bool,
    ) -> AuditReport {
        let mut resources = Vec::new();
        let mut summary = Summary::of_none(evaluation.resources.len());
        let no_evidence = ResourceEvidence::default();
        for v in &evaluation.resources {
            let o = &v.ownership;
            summary.count(o);
            if notable_only && !o.account_drift && !o.region_drift && o.problems.is_empty() {
                continue;
            }
            let evidence =
                trail.map(|t| t.evidence.resources.get(&v.index).unwrap_or(&no_evidence));
            let r = &snapshot.resources[v.index];
            resources.push(ResourceReport::of(r, v, evidence));
        }
        AuditReport {
            schema_version: SCHEMA_VERSION,
            resources,
            controllers: evaluation
                .controllers
                .iter()
                .map(ControllerReport::of)
                .collect(),
            role_selectors: evaluation
                .role_selectors
                .iter()
                .map(|v| SelectorReport {
                    name: v.name.clone(),
                    valid: v.invalid.is_none(),
                    reason: v.invalid,
                })
                .collect(),
            cloudtrail: trail.map(cloudtrail_report),
            cluster: ClusterReport {
                objects: snapshot.objects,
                parse_errors: snapshot.parse_errors.len(),
                input_errors: snapshot.parse_errors.clone(),
            },
            summary,
        }
    }

    /// True when any resource drifts in account or region (the audit's exit code 1).
    pub fn has_drift(&self) -> bool {
        self.summary.account_drift > 0 || self.summary.region_drift > 0
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("report serializes")
    }

    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{}", self.headline());
        for line in self.cluster_lines() {
            let _ = writeln!(out, "{line}");
        }
        out.push('\n');
        let with_trail = self.cloudtrail.is_some();
        let rows: Vec<Vec<String>> = self.resources.iter().map(|r| row(r, with_trail)).collect();
        out.push_str(&aligned(&header(with_trail), &rows));
        for r in self.resources.iter().filter(|r| !r.remediation.is_empty()) {
            let _ = writeln!(out, "\n{}/{}/{}:", r.namespace, r.kind, r.name);
            if let Some(line) = evidence_line(r) {
                let _ = writeln!(out, "  {line}");
            }
            for (i, step) in r.remediation.iter().enumerate() {
                let _ = writeln!(out, "  {}. {step}", i + 1);
            }
        }
        if let Some(t) = &self.cloudtrail {
            let _ = writeln!(out, "\nCloudTrail:");
            for line in trail_lines(t) {
                let _ = writeln!(out, "  {line}");
            }
        }
        let problems = self.input_errors();
        if !problems.is_empty() {
            let _ = writeln!(out, "\nInput problems ({}):", problems.len());
            for e in problems {
                let _ = writeln!(out, "  {e}");
            }
        }
        out
    }

    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "## ACK drift audit\n\n{}\n", self.headline());
        for line in self.cluster_lines() {
            let _ = writeln!(out, "- {}", md_escape(&line));
        }
        let with_trail = self.cloudtrail.is_some();
        let head = header(with_trail);
        let _ = writeln!(out, "| {} |", head.join(" | "));
        let _ = writeln!(out, "|{}", "---|".repeat(head.len()));
        for r in &self.resources {
            let cells: Vec<String> = row(r, with_trail).iter().map(|c| md_escape(c)).collect();
            let _ = writeln!(out, "| {} |", cells.join(" | "));
        }
        for r in self.resources.iter().filter(|r| !r.remediation.is_empty()) {
            let _ = writeln!(out, "\n### `{}/{}/{}`\n", r.namespace, r.kind, r.name);
            if let Some(line) = evidence_line(r) {
                let _ = writeln!(out, "**{line}**\n");
            }
            for (i, step) in r.remediation.iter().enumerate() {
                let _ = writeln!(out, "{}. {}", i + 1, md_step(step));
            }
        }
        if let Some(t) = &self.cloudtrail {
            let _ = writeln!(out, "\n### CloudTrail\n");
            for line in trail_lines(t) {
                let _ = writeln!(out, "- {}", md_escape(&line));
            }
        }
        let problems = self.input_errors();
        if !problems.is_empty() {
            let _ = writeln!(out, "\n### Input problems\n");
            for e in problems {
                let _ = writeln!(out, "- `{e}`");
            }
        }
        out
    }

    /// Controllers that cannot run and selectors the runtime rejects, one line each.
    fn cluster_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for c in self.controllers.iter().filter(|c| !c.running) {
            let why: Vec<String> = c
                .problems
                .iter()
                .map(|p| format!("{} ({})", p.problem.as_str(), p.detail))
                .collect();
            lines.push(format!(
                "Controller {} ({}) cannot run, so it reconciles nothing: {}",
                c.service,
                c.deployment.as_deref().unwrap_or("no Deployment"),
                why.join("; ")
            ));
        }
        for s in &self.role_selectors {
            if let Some(r) = s.reason {
                lines.push(format!(
                    "IAMRoleSelector {} is invalid ({}): the runtime never uses it.",
                    s.name,
                    r.as_str()
                ));
            }
        }
        lines
    }

    fn input_errors(&self) -> Vec<&ParseError> {
        let trail = self.cloudtrail.iter().flat_map(|t| t.input_errors.iter());
        self.cluster.input_errors.iter().chain(trail).collect()
    }

    fn headline(&self) -> String {
        let s = &self.summary;
        let with_problems = self
            .resources
            .iter()
            .filter(|r| !r.problems.is_empty())
            .count();
        format!(
            "{} ACK resources: {} in the wrong account, {} in the wrong region, {} with problems; {} input problems.",
            s.resources,
            s.account_drift,
            s.region_drift,
            with_problems,
            self.input_errors().len()
        )
    }
}

fn header(with_trail: bool) -> Vec<&'static str> {
    let mut h = vec![
        "NAMESPACE",
        "KIND",
        "NAME",
        "STATUS ACCOUNT",
        "EXPECTED ACCOUNT",
        "REGION",
        "DRIFT",
        "EFFECT",
        "PROBLEMS",
    ];
    if with_trail {
        h.extend(["ERROR EVENTS", "WRONG-ACCOUNT CALLS"]);
    }
    h
}

fn row(r: &ResourceReport, with_trail: bool) -> Vec<String> {
    let dash = || "-".to_string();
    let expected = match (&r.expected_account, r.account_source) {
        (Some(a), Some(s)) => format!("{a} ({})", s.as_str()),
        (Some(a), None) => a.clone(),
        (None, Some(s)) => format!("? ({})", s.as_str()),
        (None, None) => dash(),
    };
    let region = match (&r.status_region, &r.expected_region) {
        (Some(s), Some(e)) if s != e => format!("{s} -> {e}"),
        (Some(s), _) => s.clone(),
        (None, Some(e)) => e.clone(),
        (None, None) => dash(),
    };
    let drift = match (r.account_drift, r.region_drift) {
        (true, true) => "ACCOUNT+REGION",
        (true, false) => "ACCOUNT",
        (false, true) => "REGION",
        _ => "-",
    };
    let problems: Vec<&str> = r.problems.iter().map(|p| p.as_str()).collect();
    let mut cells = vec![
        r.namespace.clone(),
        r.kind.clone(),
        r.name.clone(),
        r.status_account.clone().unwrap_or_else(dash),
        expected,
        region,
        drift.to_string(),
        r.effects("+").unwrap_or_else(dash),
        if problems.is_empty() {
            dash()
        } else {
            problems.join(",")
        },
    ];
    if with_trail {
        let errors: u64 = r.error_events.iter().flatten().map(|e| e.count).sum();
        let wrong: u64 = r
            .wrong_account_calls
            .iter()
            .flatten()
            .map(|w| w.count)
            .sum();
        cells.push(errors.to_string());
        cells.push(wrong.to_string());
    }
    cells
}

/// One sentence with a resource's CloudTrail evidence, for the remediation section.
fn evidence_line(r: &ResourceReport) -> Option<String> {
    let errors = r.error_events.as_ref()?;
    let wrong = r.wrong_account_calls.as_ref()?;
    if errors.is_empty() && wrong.is_empty() {
        return Some("CloudTrail: no attributed calls in the window.".into());
    }
    let mut parts = Vec::new();
    for e in errors {
        parts.push(format!(
            "{} x {} in {}/{}",
            e.count, e.error_code, e.account, e.region
        ));
    }
    for w in wrong {
        parts.push(format!(
            "{} calls to account {} (expected {})",
            w.count,
            w.account,
            r.expected_account.as_deref().unwrap_or("?")
        ));
    }
    Some(format!("CloudTrail: {}.", parts.join("; ")))
}

/// The CloudTrail summary, one line per fact, most alarming first.
fn trail_lines(t: &CloudTrailReport) -> Vec<String> {
    let mut out = vec![format!(
        "{} events from {} files ({} duplicates skipped), newest {}; per-resource counts over {}.",
        t.events,
        t.files,
        t.duplicates,
        t.newest_event.as_deref().unwrap_or("-"),
        match &t.window {
            Some(w) => format!("{} .. {}", w.start, w.end),
            None => "the whole input".to_string(),
        }
    )];
    for c in t.cross_account_calls.iter().filter(|c| !c.expected) {
        out.push(format!(
            "UNEXPECTED cross-account: {} -> {} {}:{} ({}) x {}",
            c.caller_account,
            c.recipient_account,
            c.service,
            c.event_name,
            c.signal.as_str(),
            c.count
        ));
    }
    for e in t.errors.iter().take(10) {
        let who = if e.ack_kind.is_empty() {
            "not ACK".to_string()
        } else {
            format!("ACK {}", e.ack_kind)
        };
        out.push(format!(
            "error {} x {} on {}:{} in {}/{} ({who})",
            e.error_code, e.count, e.service, e.event_name, e.account, e.region
        ));
    }
    if t.errors.len() > 10 {
        out.push(format!(
            "... and {} more error kinds (see --output json)",
            t.errors.len() - 10
        ));
    }
    for c in t.cross_account_calls.iter().filter(|c| c.expected) {
        out.push(format!(
            "expected cross-account: {} -> {} {}:{} x {}",
            c.caller_account, c.recipient_account, c.service, c.event_name, c.count
        ));
    }
    for u in &t.unattributed_ack_events {
        out.push(format!(
            "unattributed ACK {} events in {}/{}: {} x {}",
            if u.ack_kind.is_empty() {
                "?"
            } else {
                &u.ack_kind
            },
            u.account,
            u.region,
            u.reason,
            u.count
        ));
    }
    out
}

fn aligned(header: &[&'static str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                let _ = write!(l, "{c:<w$}  ");
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
    out
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|")
}

/// A step for a ticket: its command in backticks, so it pastes cleanly (what it prints after).
pub(crate) fn md_step(step: &Step) -> String {
    let Some(c) = &step.command else {
        return step.explain.clone();
    };
    let mut out = format!("{}: `{}`", step.explain, c.line());
    if let Some(p) = c.prints() {
        out.push_str(&format!(" prints {p}"));
    }
    out
}
