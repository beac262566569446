//! `check-config`: what discovery plus the config's overrides resolve to, per controller.

use std::fmt::Write as _;

use crate::evaluate::ControllerSettings;
use crate::evaluate::controllers::Origin;

fn origin(o: Origin) -> &'static str {
    match o {
        Origin::Deployment => "from the Deployment",
        Origin::Config => "from the config",
        Origin::Default => "runtime default",
        Origin::Unknown => "unknown",
    }
}

pub fn render(controllers: &[ControllerSettings]) -> String {
    let mut out = String::new();
    if controllers.is_empty() {
        out.push_str("No ACK controllers found in the input or the config.\n");
    }
    for c in controllers {
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
            &mut out,
            "version",
            c.version.clone().unwrap_or_else(|| "-".into()),
        );
        row(
            &mut out,
            "default account",
            format!(
                "{} ({})",
                c.default_account.as_deref().unwrap_or("-"),
                origin(c.default_account_origin)
            ),
        );
        row(
            &mut out,
            "default region",
            format!(
                "{} ({})",
                c.default_region.as_deref().unwrap_or("-"),
                origin(c.default_region_origin)
            ),
        );
        row(
            &mut out,
            "runtime",
            match c.runtime_name {
                Some(name) => format!(
                    "{} ({}: {})",
                    c.runtime,
                    origin(c.runtime_origin),
                    name.as_str()
                ),
                None if c.runtime_origin == Origin::Default => format!(
                    "{} (default: the newest runtime known; set controllers.{}.runtime)",
                    c.runtime, c.service
                ),
                None => format!("{} ({})", c.runtime, origin(c.runtime_origin)),
            },
        );
        row(
            &mut out,
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
            &mut out,
            "feature gates",
            if gates.is_empty() {
                "-".into()
            } else {
                gates.join(",")
            },
        );
        row(&mut out, "system namespace", c.system_namespace.clone());
        row(
            &mut out,
            "watch namespaces",
            if c.watch_namespaces.is_empty() {
                "all".into()
            } else {
                c.watch_namespaces.join(",")
            },
        );
        for n in &c.notes {
            let _ = writeln!(out, "  note: {n}");
        }
    }
    out
}
