//! Scenarios with a hand-written `expected.json`: the audit must report every fact in it.

mod common;

use std::path::Path;

use serde_json::Value;

/// Fields of `expected.json` that come from CloudTrail evidence (trail input).
const TRAIL_FIELDS: &[&str] = &["error_events", "wrong_account_calls"];

fn resource_key(r: &Value) -> String {
    format!(
        "{}/{}/{}",
        r["namespace"].as_str().unwrap(),
        r["kind"].as_str().unwrap(),
        r["name"].as_str().unwrap()
    )
}

/// Runs the audit of a scenario folder and checks the ownership facts of its expected.json.
fn check_ownership(dir: &Path) {
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let mut args = vec![
        "audit".to_string(),
        "--kube-dir".into(),
        dir.join("cluster").display().to_string(),
        "--output".into(),
        "json".into(),
    ];
    if dir.join("config.yaml").exists() {
        args.push("--config".into());
        args.push(dir.join("config.yaml").display().to_string());
    }
    let run = common::run(&args);
    let report = run.json();
    let drift = expected["summary"]["account_drift"].as_u64().unwrap()
        + expected["summary"]["region_drift"].as_u64().unwrap();
    assert_eq!(run.code, if drift > 0 { 1 } else { 0 }, "exit code");
    assert_eq!(report["cluster"]["parse_errors"], 0, "{}", run.stderr);

    let resources = report["resources"].as_array().unwrap();
    for (key, want) in expected["resources"].as_object().unwrap() {
        let got = resources
            .iter()
            .find(|r| &resource_key(r) == key)
            .unwrap_or_else(|| panic!("{key} missing from the audit"));
        for (field, value) in want.as_object().unwrap() {
            if TRAIL_FIELDS.contains(&field.as_str()) {
                continue;
            }
            assert_eq!(&got[field], value, "{key}: {field}");
        }
    }
    for field in ["resources", "account_drift", "region_drift"] {
        assert_eq!(
            report["summary"][field], expected["summary"][field],
            "summary.{field}"
        );
    }
}

#[test]
fn seed_incident_ownership() {
    check_ownership(&common::fixture("scenarios/seed-incident"));
}

#[test]
fn seed_incident_without_its_config_is_blocked_not_calling() {
    // Without `runtime: legacy` the default (strict) runtime applies: the same drift blocks.
    let dir = common::fixture("scenarios/seed-incident");
    let run = common::run([
        "audit",
        "--kube-dir",
        dir.join("cluster").to_str().unwrap(),
        "--output",
        "json",
    ]);
    let report = run.json();
    let sg = report["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| resource_key(r) == "uat/SecurityGroup/limit-amq-to-subnet-uat")
        .unwrap();
    assert_eq!(sg["effect"], "blocked");
    assert_eq!(sg["account_drift"], true);
}

#[test]
fn demo_example_ownership() {
    check_ownership(&common::root().join("examples/demo"));
}
