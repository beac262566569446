//! The alerting pack: promtool (Debian `prometheus`) checks and unit-tests the rules; every
//! alert has a runbook, a firing and a silent test case, and annotations that name what to
//! look at; the PrometheusRule manifest holds the same groups as the plain rules file.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::Value;

fn rules() -> Value {
    let text = std::fs::read_to_string(common::root().join("alerts/ack-drift.rules.yml")).unwrap();
    serde_saphyr::from_str(&text).unwrap()
}

fn alerts(rules: &Value) -> Vec<&Value> {
    rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .filter(|r| r.get("alert").is_some())
        .collect()
}

fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(common::root())
        .output()
        .expect("promtool is installed (Debian package prometheus; scripts/test installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

#[test]
fn promtool_checks_the_rules_and_runs_their_unit_tests() {
    let check = promtool(&["check", "rules", "alerts/ack-drift.rules.yml"]);
    assert!(check.contains("SUCCESS"), "{check}");
    let test = promtool(&["test", "rules", "alerts/ack-drift.rules.test.yml"]);
    assert!(test.contains("SUCCESS"), "{test}");
}

#[test]
fn every_alert_has_a_runbook_both_test_cases_and_actionable_annotations() {
    let rules = rules();
    let tests =
        std::fs::read_to_string(common::root().join("alerts/ack-drift.rules.test.yml")).unwrap();
    let alerts = alerts(&rules);
    assert!(alerts.len() >= 16, "{} alerts", alerts.len());
    let mut names = BTreeSet::new();
    for a in alerts {
        let name = a["alert"].as_str().unwrap();
        assert!(names.insert(name), "{name} twice");
        assert!(
            name.starts_with("AckDrift") || name.starts_with("AckExporter"),
            "{name}"
        );
        let severity = a["labels"]["severity"].as_str().unwrap();
        assert!(["critical", "warning"].contains(&severity), "{name}");
        let ann = &a["annotations"];
        for key in ["summary", "description", "runbook_url"] {
            assert!(
                ann[key].as_str().is_some_and(|s| !s.is_empty()),
                "{name}: {key}"
            );
        }
        let runbook = ann["runbook_url"].as_str().unwrap();
        let file = runbook.rsplit_once("/blob/main/").unwrap().1;
        assert_eq!(file, format!("docs/runbooks/{name}.md"));
        let book = std::fs::read_to_string(common::root().join(file)).unwrap();
        for section in [
            "## What it means",
            "## How to confirm",
            "## How to fix",
            "## When to escalate",
        ] {
            assert!(book.contains(section), "{file}: {section}");
        }
        // Per-resource alerts name the resource; CloudTrail ones also the account and region.
        let expr = a["expr"].as_str().unwrap();
        let description = ann["description"].as_str().unwrap();
        if expr.contains("ack_drift_resource_") {
            for label in ["$labels.namespace", "$labels.name", "$labels.kind"] {
                assert!(description.contains(label), "{name}: {label}");
            }
        }
        if expr.contains("ack_drift_resource_error_events") {
            for label in ["$labels.account", "$labels.region"] {
                assert!(description.contains(label), "{name}: {label}");
            }
        }
        for case in ["fires", "silent"] {
            assert!(
                tests.contains(&format!("  # {name} {case}\n")),
                "{name} has no {case} case"
            );
        }
    }
}

#[test]
fn the_readme_lists_every_alert_with_its_severity_and_runbook() {
    let readme = std::fs::read_to_string(common::root().join("README.md")).unwrap();
    for a in alerts(&rules()) {
        let name = a["alert"].as_str().unwrap();
        let severity = a["labels"]["severity"].as_str().unwrap();
        let row = format!("| [`{name}`](docs/runbooks/{name}.md) | {severity} |");
        assert!(readme.contains(&row), "README has no row {row}");
    }
}

#[test]
fn the_prometheusrule_holds_the_same_groups() {
    let path = common::root().join("deploy/kustomize/base/prometheusrule.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let manifest: Value = serde_saphyr::from_str(&text).unwrap();
    assert_eq!(manifest["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(manifest["kind"], "PrometheusRule");
    assert_eq!(
        manifest["spec"]["groups"],
        rules()["groups"],
        "regenerate with scripts/gen-pack"
    );
}
