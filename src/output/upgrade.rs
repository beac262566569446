//! The `upgrade-preview` report: JSON, a table for people, Markdown for a change ticket.

use std::fmt::Write as _;

use crate::evaluate::upgrade::{Preview, ResourceChange, Verdict};

fn verdict(v: &Verdict) -> String {
    let mut parts: Vec<String> = Vec::new();
    parts.extend(v.effect.map(|e| e.as_str().to_string()));
    parts.extend(v.region_effect.map(|e| e.as_str().to_string()));
    parts.push(format!(
        "calls {}",
        v.called_account.as_deref().unwrap_or("nothing")
    ));
    let problems: Vec<&str> = v.problems.iter().map(|p| p.as_str()).collect();
    if !problems.is_empty() {
        parts.push(problems.join(","));
    }
    parts.join("; ")
}

fn key(r: &ResourceChange) -> String {
    format!("{}/{}/{}", r.namespace, r.kind, r.name)
}

/// One line per moved controller, then one per changed resource.
fn lines(p: &Preview) -> Vec<String> {
    let mut out = Vec::new();
    for c in &p.controllers {
        let release = c
            .release_after
            .as_deref()
            .map(|r| format!(" ({}-controller {r})", c.service))
            .unwrap_or_default();
        let start = if c.running_after {
            "starts".to_string()
        } else {
            let why: Vec<String> = c
                .problems_after
                .iter()
                .map(|x| format!("{}: {}", x.problem.as_str(), x.detail))
                .collect();
            format!("WOULD NOT START: {}", why.join("; "))
        };
        out.push(format!(
            "controller {} ({}): {} -> {}{release}: {start}",
            c.service,
            c.deployment.as_deref().unwrap_or("no Deployment"),
            c.runtime_before,
            c.runtime_after
        ));
    }
    out
}

impl Preview {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("preview serializes")
    }

    fn headline(&self) -> String {
        format!(
            "{} ACK resources judged: {} change, {} get worse.",
            self.resources_judged, self.changed, self.worse
        )
    }

    pub fn to_table(&self) -> String {
        let mut out = format!("{}\n", self.headline());
        for l in lines(self) {
            let _ = writeln!(out, "{l}");
        }
        for r in &self.resources {
            let mark = if r.worse { "WORSE" } else { "changes" };
            let _ = writeln!(
                out,
                "\n{} ({mark})\n  before: {}\n  after:  {}",
                key(r),
                verdict(&r.before),
                verdict(&r.after)
            );
            for (i, step) in r.remediation.iter().enumerate() {
                let _ = writeln!(out, "  {}. {step}", i + 1);
            }
        }
        out
    }

    pub fn to_markdown(&self) -> String {
        let mut out = format!("## ACK upgrade preview\n\n{}\n\n", self.headline());
        for l in lines(self) {
            let _ = writeln!(out, "- {l}");
        }
        out.push_str("\n| resource | before | after | worse |\n|---|---|---|---|\n");
        for r in &self.resources {
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} |",
                key(r),
                verdict(&r.before),
                verdict(&r.after),
                if r.worse { "**yes**" } else { "no" }
            );
        }
        for r in self.resources.iter().filter(|r| !r.remediation.is_empty()) {
            let _ = writeln!(out, "\n### `{}`\n", key(r));
            for (i, step) in r.remediation.iter().enumerate() {
                let _ = writeln!(out, "{}. {}", i + 1, super::audit::md_step(step));
            }
        }
        out
    }
}
