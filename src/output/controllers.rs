//! `check-config`: what discovery plus the config's overrides resolve to, per controller.

use std::fmt::Write as _;

use crate::evaluate::ControllerSettings;
use crate::evaluate::controllers::Origin;
use crate::evaluate::release_table::RuntimeSource;
use crate::evaluate::role_selector::SelectorVerdict;
use crate::evaluate::startup::Evidence;

fn origin(o: Origin) -> &'static str {
    match o {
        Origin::Deployment => "from the Deployment",
        Origin::Config => "from the config",
        Origin::Default => "runtime default",
        Origin::Unknown => "unknown",
    }
}

/// The runtime version and where it came from.
fn runtime_row(c: &ControllerSettings) -> String {
    let image = format!("{}-controller", c.service);
    let release = c.runtime_release.as_deref().unwrap_or("?");
    let commit = c
        .runtime_commit
        .map(|p| format!("; pins commit {p}, which contains {}", c.runtime))
        .unwrap_or_default();
    match (c.runtime_source, c.runtime_name) {
        (RuntimeSource::Config, Some(name)) => {
            format!("{} (from the config: {})", c.runtime, name.as_str())
        }
        (RuntimeSource::Config, None) => format!("{} (from the config)", c.runtime),
        (RuntimeSource::Image, _) => {
            format!("{} (from the image: {image} {release}{commit})", c.runtime)
        }
        (RuntimeSource::ImageNearest, _) => format!(
            "{} (from the image: {image} {} is not listed; nearest listed release {release}{commit})",
            c.runtime,
            c.version.as_deref().unwrap_or("?")
        ),
        (RuntimeSource::Default, _) => format!(
            "{} (default: the newest runtime known; set controllers.{}.runtime)",
            c.runtime, c.service
        ),
    }
}

pub fn render(controllers: &[ControllerSettings]) -> String {
    let mut out = String::new();
    if controllers.is_empty() {
        out.push_str("No ACK controllers found in the input or the config.\n");
    }
    for c in controllers {
        render_controller(&mut out, c);
    }
    out
}

/// One controller's block: its settings, whether it runs and why not, its notes.
fn render_controller(out: &mut String, c: &ControllerSettings) {
    let _ = writeln!(
        out,
        "controller {} ({})",
        c.service,
        c.deployment.as_deref().unwrap_or("no Deployment found")
    );
    let row = |out: &mut String, k: &str, v: String| {
        let _ = writeln!(out, "  {k:<18} {v}");
    };
    row(
        out,
        "version",
        c.version.clone().unwrap_or_else(|| "-".into()),
    );
    row(
        out,
        "default account",
        format!(
            "{} ({})",
            c.default_account.as_deref().unwrap_or("-"),
            origin(c.default_account_origin)
        ),
    );
    row(
        out,
        "default region",
        format!(
            "{} ({})",
            c.default_region.as_deref().unwrap_or("-"),
            origin(c.default_region_origin)
        ),
    );
    row(out, "runtime", runtime_row(c));
    row(
        out,
        "CARM",
        format!(
            "{} ({})",
            if c.carm { "on" } else { "off" },
            if c.behaviour.enable_carm_flag {
                format!("--enable-carm={}", c.enable_carm)
            } else {
                format!("runtime {} has no --enable-carm", c.runtime)
            }
        ),
    );
    let gates: Vec<String> = c
        .feature_gates
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    row(
        out,
        "feature gates",
        if gates.is_empty() {
            "-".into()
        } else {
            gates.join(",")
        },
    );
    row(out, "system namespace", c.system_namespace.clone());
    row(
        out,
        "watch namespaces",
        if c.watch_namespaces.is_empty() {
            "all".into()
        } else {
            c.watch_namespaces.join(",")
        },
    );
    render_running(out, c);
    for n in c.runtime_warning.iter().chain(&c.notes) {
        let _ = writeln!(out, "  note: {n}");
    }
}

/// Whether the controller runs, every reason it cannot, and what it reconciles.
fn render_running(out: &mut String, c: &ControllerSettings) {
    let row = |out: &mut String, k: &str, v: String| {
        let _ = writeln!(out, "  {k:<18} {v}");
    };
    row(
        out,
        "runs",
        if c.running() {
            "yes".into()
        } else {
            "NO: it reconciles nothing".into()
        },
    );
    for p in &c.problems {
        let seen = match p.evidence {
            Evidence::Predicted => "cannot start",
            Evidence::Observed => "observed",
        };
        let _ = writeln!(
            out,
            "  problem: {} ({seen}): {}",
            p.problem.as_str(),
            p.detail
        );
    }
    if let Some(k) = &c.scope.kinds {
        let kinds: Vec<&str> = k.iter().map(String::as_str).collect();
        row(out, "reconciles kinds", kinds.join(","));
    }
    if let Some(l) = &c.scope.labels {
        row(out, "watch selectors", l.to_string());
    }
}

/// The IAMRoleSelectors and whether the runtime accepts each (`validateSelector`).
pub fn render_selectors(selectors: &[SelectorVerdict]) -> String {
    let mut out = String::new();
    for s in selectors {
        let _ = match s.invalid {
            None => writeln!(out, "IAMRoleSelector {}: valid", s.name),
            Some(r) => writeln!(
                out,
                "IAMRoleSelector {}: INVALID ({}): the runtime never caches it, so it matches nothing",
                s.name,
                r.as_str()
            ),
        };
    }
    out
}
