//! The landing page (`/`): drifted resources with their evidence and remediation, for a person
//! at 3 a.m. Plain HTML, no JavaScript, rendered when the snapshot changes.

use std::fmt::Write as _;

use super::audit::{AuditReport, ResourceReport};
use crate::evaluate::remediation::Step;

pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn or_dash(v: &Option<String>) -> String {
    v.as_deref().map_or_else(|| "–".to_string(), esc)
}

/// A remediation step: its explanation, then its command in `<code>` on a line of its own
/// (and what the command prints when the step worked, after it).
pub(crate) fn step_html(step: &Step) -> String {
    let Some(c) = &step.command else {
        return esc(&step.explain);
    };
    let prints = c
        .prints()
        .map_or_else(String::new, |p| format!(" prints {}", esc(p)));
    format!(
        "{}: <br><code>{}</code>{prints}",
        esc(&step.explain),
        esc(c.line())
    )
}

fn evidence(r: &ResourceReport) -> (u64, u64) {
    (
        r.error_events.iter().flatten().map(|e| e.count).sum(),
        r.wrong_account_calls
            .iter()
            .flatten()
            .map(|w| w.count)
            .sum(),
    )
}

pub fn render(report: &AuditReport, telemetry_path: &str) -> String {
    let mut h = String::new();
    head(&mut h, report, telemetry_path);
    cluster_sections(&mut h, report);
    drifted_section(&mut h, report);
    problems_section(&mut h, report);
    trail_section(&mut h, report);
    h.push_str("</body></html>\n");
    h
}

/// The document head and style, and the summary line with the links.
fn head(h: &mut String, report: &AuditReport, telemetry_path: &str) {
    let s = &report.summary;
    let _ = write!(
        h,
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>ACK drift exporter</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5rem; color: #1b1b1b; }}
table {{ border-collapse: collapse; margin: .5rem 0 1.5rem; }}
th, td {{ border: 1px solid #ccc; padding: .3rem .6rem; text-align: left; vertical-align: top; }}
th {{ background: #f0f0f0; }}
.bad {{ color: #a40000; font-weight: 600; }}
code {{ background: #f6f6f6; padding: .1rem .25rem; word-break: break-all; }}
section {{ border-left: 4px solid #a40000; padding-left: 1rem; margin-bottom: 1.5rem; }}
</style></head><body>
<h1>ACK drift exporter</h1>
<p id="summary">{} ACK resources: <span class="bad">{} in the wrong account</span>, <span class="bad">{} in the wrong region</span>.
Metrics at <a href="{}">{}</a> · <a href="/healthz">/healthz</a> · <a href="/readyz">/readyz</a></p>
"#,
        s.resources,
        s.account_drift,
        s.region_drift,
        esc(telemetry_path),
        esc(telemetry_path)
    );
}

/// Drifted resources: one table row each, then a section each with evidence and steps.
fn drifted_section(h: &mut String, report: &AuditReport) {
    let drifted: Vec<&ResourceReport> = report
        .resources
        .iter()
        .filter(|r| r.account_drift || r.region_drift)
        .collect();
    let _ = writeln!(h, "<h2>Drifted resources ({})</h2>", drifted.len());
    if drifted.is_empty() {
        h.push_str("<p>No resource records another account or region than its target.</p>\n");
        return;
    }
    h.push_str(
        "<table id=\"drifted\"><tr><th>Resource</th><th>Status account</th><th>Expected account</th>\
         <th>Region (status → expected)</th><th>Effect</th><th>Error events</th><th>Wrong-account calls</th></tr>\n",
    );
    for r in &drifted {
        drifted_row(h, r);
    }
    h.push_str("</table>\n");
    for r in &drifted {
        drift_detail(h, r);
    }
}

/// A drifted resource's row: where it is, where it belongs, what happens, the evidence.
fn drifted_row(h: &mut String, r: &ResourceReport) {
    let (errors, wrong) = evidence(r);
    let _ = writeln!(
        h,
        "<tr><td><a href=\"#{id}\">{ns}/{kind}/{name}</a></td><td>{sa}</td><td>{ea} ({src})</td><td>{region}</td><td class=\"bad\">{eff}</td><td>{errors}</td><td>{wrong}</td></tr>",
        id = esc(&anchor(r)),
        ns = esc(&r.namespace),
        kind = esc(&r.kind),
        name = esc(&r.name),
        sa = or_dash(&r.status_account),
        ea = or_dash(&r.expected_account),
        src = r.account_source.map_or("–", |s| s.as_str()),
        region = match (&r.status_region, &r.expected_region) {
            (Some(a), Some(b)) if a != b => format!("{} → {}", esc(a), esc(b)),
            (a, b) => or_dash(if a.is_some() { a } else { b }),
        },
        eff = r.effects(" + ").unwrap_or_else(|| "–".into()),
    );
}

/// A drifted resource's section: its CloudTrail evidence, then its steps in order.
fn drift_detail(h: &mut String, r: &ResourceReport) {
    let _ = writeln!(
        h,
        "<section id=\"{}\"><h3>{}/{}/{}</h3>",
        esc(&anchor(r)),
        esc(&r.namespace),
        esc(&r.kind),
        esc(&r.name)
    );
    if r.error_events.is_some() {
        trail_evidence(h, r);
    }
    h.push_str("<ol>\n");
    for step in &r.remediation {
        let _ = writeln!(h, "<li>{}</li>", step_html(step));
    }
    h.push_str("</ol></section>\n");
}

/// One paragraph with a resource's error events and wrong-account calls.
fn trail_evidence(h: &mut String, r: &ResourceReport) {
    let (errors, wrong) = evidence(r);
    let codes: Vec<String> = r
        .error_events
        .iter()
        .flatten()
        .map(|e| {
            format!(
                "{} × {} in {}/{}",
                e.count,
                esc(&e.error_code),
                esc(&e.account),
                esc(&e.region)
            )
        })
        .collect();
    let _ = writeln!(
        h,
        "<p>CloudTrail: {errors} error events{}; {wrong} calls in another account than {}.</p>",
        if codes.is_empty() {
            String::new()
        } else {
            format!(" ({})", codes.join(", "))
        },
        or_dash(&r.expected_account)
    );
}

/// Resources with problems but no drift: one row each, with what to do.
fn problems_section(h: &mut String, report: &AuditReport) {
    let troubled: Vec<&ResourceReport> = report
        .resources
        .iter()
        .filter(|r| !r.account_drift && !r.region_drift && !r.problems.is_empty())
        .collect();
    if troubled.is_empty() {
        return;
    }
    let _ = writeln!(h, "<h2>Other problems ({})</h2>", troubled.len());
    h.push_str(
        "<table id=\"problems\"><tr><th>Resource</th><th>Problems</th><th>What to do</th></tr>\n",
    );
    for r in troubled {
        let problems: Vec<&str> = r.problems.iter().map(|p| p.as_str()).collect();
        let todo: Vec<String> = r.remediation.iter().map(step_html).collect();
        let _ = writeln!(
            h,
            "<tr><td>{}/{}/{}</td><td>{}</td><td>{}</td></tr>",
            esc(&r.namespace),
            esc(&r.kind),
            esc(&r.name),
            problems.join(", "),
            if todo.is_empty() {
                "–".to_string()
            } else {
                todo.join("<br>")
            }
        );
    }
    h.push_str("</table>\n");
}

/// With trail input: the unexpected cross-account calls, and what the trail held.
fn trail_section(h: &mut String, report: &AuditReport) {
    let Some(t) = &report.cloudtrail else {
        return;
    };
    let unexpected: Vec<_> = t
        .cross_account_calls
        .iter()
        .filter(|c| !c.expected)
        .collect();
    if !unexpected.is_empty() {
        let _ = writeln!(
            h,
            "<h2>Unexpected cross-account calls</h2><ul id=\"unexpected\">"
        );
        for c in unexpected {
            let _ = writeln!(
                h,
                "<li class=\"bad\">{} → {}: {}:{} ({}) × {}</li>",
                esc(&c.caller_account),
                esc(&c.recipient_account),
                esc(&c.service),
                esc(&c.event_name),
                c.signal.as_str(),
                c.count
            );
        }
        h.push_str("</ul>\n");
    }
    let _ = writeln!(
        h,
        "<p>CloudTrail: {} events from {} files, {} duplicates skipped, newest {}.</p>",
        t.events,
        t.files,
        t.duplicates,
        t.newest_event.as_deref().map_or("–".to_string(), esc)
    );
}

/// Controllers that cannot run and IAMRoleSelectors the runtime rejects: first, because
/// every resource of such a controller waits on it.
fn cluster_sections(h: &mut String, report: &AuditReport) {
    let down: Vec<_> = report.controllers.iter().filter(|c| !c.running).collect();
    if !down.is_empty() {
        let _ = writeln!(h, "<h2>Controllers that cannot run ({})</h2>", down.len());
        h.push_str(
            "<table id=\"controllers\"><tr><th>Controller</th><th>Runtime</th><th>Why</th></tr>\n",
        );
        for c in down {
            let why: Vec<String> = c
                .problems
                .iter()
                .map(|p| format!("{}: {}", p.problem.as_str(), esc(&p.detail)))
                .collect();
            let _ = writeln!(
                h,
                "<tr><td>{} ({})</td><td>{}</td><td class=\"bad\">{}</td></tr>",
                esc(&c.service),
                c.deployment
                    .as_deref()
                    .map_or("no Deployment".to_string(), esc),
                esc(&c.runtime),
                why.join("<br>")
            );
        }
        h.push_str("</table>\n");
    }
    let invalid: Vec<_> = report.role_selectors.iter().filter(|s| !s.valid).collect();
    if !invalid.is_empty() {
        let _ = writeln!(
            h,
            "<h2>IAMRoleSelectors the runtime rejects ({})</h2><ul id=\"selectors\">",
            invalid.len()
        );
        for s in invalid {
            let _ = writeln!(
                h,
                "<li class=\"bad\">{}: {} (it matches nothing)</li>",
                esc(&s.name),
                s.reason.map_or("", |r| r.as_str())
            );
        }
        h.push_str("</ul>\n");
    }
}

fn anchor(r: &ResourceReport) -> String {
    format!("{}-{}-{}", r.namespace, r.kind, r.name).to_ascii_lowercase()
}
