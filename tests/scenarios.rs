//! Scenarios with a hand-written `expected.json`: the audit must report every fact in it.

mod common;

use std::path::Path;

use serde_json::Value;

/// True when every field of `want` (an object) has the same value in `got`.
fn contains(got: &Value, want: &Value) -> bool {
    want.as_object().unwrap().iter().all(|(k, v)| &got[k] == v)
}

/// Runs the audit of a scenario folder (its cluster, its trail files when it has them, its
/// config) and checks every fact of its expected.json.
fn check_scenario(dir: &Path) {
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let mut args = vec![
        "audit".to_string(),
        "--kube-dir".into(),
        dir.join("cluster").display().to_string(),
        "--output".into(),
        "json".into(),
    ];
    let with_trail = dir.join("cloudtrail").exists();
    if with_trail {
        args.push("--cloudtrail-dir".into());
        args.push(dir.join("cloudtrail").display().to_string());
    }
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
    assert_eq!(report["schema_version"], 2);

    let resources = report["resources"].as_array().unwrap();
    for (key, want) in expected["resources"].as_object().unwrap() {
        let got = resources
            .iter()
            .find(|r| &common::resource_key(r) == key)
            .unwrap_or_else(|| panic!("{key} missing from the audit"));
        for (field, value) in want.as_object().unwrap() {
            assert_eq!(&got[field], value, "{key}: {field}");
        }
    }
    for field in ["resources", "account_drift", "region_drift"] {
        assert_eq!(
            report["summary"][field], expected["summary"][field],
            "summary.{field}"
        );
    }
    check_controllers_and_selectors(&report, &expected);

    let trail = &report["cloudtrail"];
    if !with_trail {
        assert_eq!(trail, &Value::Null);
        return;
    }
    assert_eq!(trail["parse_errors"], 0, "{}", run.stderr);
    if let Some(n) = expected.get("cloudtrail_events") {
        assert_eq!(&trail["events"], n, "cloudtrail.events");
    }
    for want in expected["cloudtrail_errors"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let found: Vec<&Value> = trail["errors"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| contains(e, want))
            .collect();
        assert_eq!(
            found.len(),
            1,
            "cloudtrail.errors has no single {want}: {:#}",
            trail["errors"]
        );
    }
    for want in expected["cross_account_min"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let count: u64 = trail["cross_account_calls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| contains(c, want))
            .map(|c| c["count"].as_u64().unwrap())
            .sum();
        assert!(count >= 1, "no cross-account call like {want}");
    }
}

#[test]
fn seed_incident() {
    check_scenario(&common::fixture("scenarios/seed-incident"));
}

#[test]
fn account_rules_by_version() {
    check_scenario(&common::fixture("scenarios/account-rules-by-version"));
}

#[test]
fn carm_v2_and_selectors() {
    check_scenario(&common::fixture("scenarios/carm-v2-and-selectors"));
}

#[test]
fn managed_ack_controllers_declared_in_the_config_are_judged_as_discovered_ones() {
    let dir = common::fixture("scenarios/managed-ack");
    check_scenario(&dir);
    // The same facts as the demo's, which has the Deployments.
    let read =
        |p: &Path| -> Value { serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap() };
    let managed = read(&dir.join("expected.json"));
    let demo = read(&common::root().join("examples/demo/expected.json"));
    for (key, facts) in managed["resources"].as_object().unwrap() {
        for (field, value) in facts.as_object().unwrap() {
            assert_eq!(&demo["resources"][key][field], value, "{key}: {field}");
        }
    }
    assert_eq!(
        managed["resources"].as_object().unwrap().len(),
        demo["resources"].as_object().unwrap().len()
    );
}

#[test]
fn what_controllers_cannot_do() {
    let dir = common::fixture("scenarios/what-controllers-cannot-do");
    check_scenario(&dir);
    // check-config names each reason and fails (exit 1) when a controller cannot run.
    let run = common::run([
        "check-config",
        "--config",
        &dir.join("config.yaml").display().to_string(),
        "--kube-dir",
        &dir.join("cluster").display().to_string(),
    ]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    // Column padding aside.
    let words = run.stdout.split_whitespace().collect::<Vec<_>>().join(" ");
    for line in [
        "problem: undefined_flag (cannot start): --enable-carm is not defined by runtime v0.51.0",
        "problem: no_available_replica (observed): 0 of 1 replicas available",
        "IAMRoleSelector bad-arn: INVALID (invalid_arn)",
        "IAMRoleSelector uat-tables: valid",
        "reconciles kinds DBInstance",
        "watch selectors team=payments",
        "feature gate Nonsense is not defined by runtime v0.38.0",
    ] {
        assert!(words.contains(line), "{line}\n{}", run.stdout);
    }
}

/// Per controller: whether it runs and its problem reasons; per selector: why it is invalid.
fn check_controllers_and_selectors(report: &Value, expected: &Value) {
    if let Some(want) = expected.get("controllers").and_then(Value::as_object) {
        let got = report["controllers"].as_array().unwrap();
        for (service, facts) in want {
            let c = got
                .iter()
                .find(|c| c["service"] == service.as_str())
                .unwrap_or_else(|| panic!("controller {service} missing"));
            assert_eq!(c["running"], facts["running"], "{service}: running");
            let reasons: Vec<&Value> = c["problems"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| &p["problem"])
                .collect();
            let wanted: Vec<&Value> = facts["problems"].as_array().unwrap().iter().collect();
            assert_eq!(reasons, wanted, "{service}: problems");
        }
    }
    if let Some(want) = expected.get("role_selectors").and_then(Value::as_object) {
        let got = report["role_selectors"].as_array().unwrap();
        assert_eq!(got.len(), want.len());
        for s in got {
            let name = s["name"].as_str().unwrap();
            assert_eq!(&s["reason"], &want[name], "selector {name}");
            assert_eq!(s["valid"], want[name].is_null(), "selector {name}");
        }
    }
}

#[test]
fn every_scenario_folder_is_checked_and_documented() {
    let root = common::fixture("scenarios");
    let source = std::fs::read_to_string(file!()).unwrap();
    for entry in std::fs::read_dir(&root).unwrap() {
        let dir = entry.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        let name = dir.file_name().unwrap().to_str().unwrap().to_string();
        assert!(
            source.contains(&format!("\"scenarios/{name}\"")),
            "{name} has no test here"
        );
        assert!(dir.join("expected.json").exists(), "{name}: expected.json");
        assert!(
            dir.join("SOURCES.md").exists() || name == "seed-incident",
            "{name}: SOURCES.md traces its facts"
        );
    }
}

#[test]
fn seed_pivots_count_once_per_shared_event_and_are_expected() {
    // Each of the three AssumeRole pivots is logged in dev and in UAT with one sharedEventID.
    let dir = common::fixture("scenarios/seed-incident");
    let run = common::run([
        "audit",
        "--kube-dir",
        dir.join("cluster").to_str().unwrap(),
        "--cloudtrail-dir",
        dir.join("cloudtrail").to_str().unwrap(),
        "--output",
        "json",
    ]);
    let calls = run.json()["cloudtrail"]["cross_account_calls"].clone();
    assert_eq!(
        calls,
        serde_json::json!([{
            "caller_account": "178394743802", "recipient_account": "474417630776",
            "service": "sts", "event_name": "AssumeRole", "signal": "assume_role",
            "expected": true, "count": 3
        }])
    );
}

/// Audits the seed scenario with trail files and extra flags; returns the report and the
/// drifted SecurityGroup's entry.
fn seed_audit(extra: &[&str]) -> (Value, Value) {
    let dir = common::fixture("scenarios/seed-incident");
    let mut args = vec![
        "audit".to_string(),
        "--kube-dir".into(),
        dir.join("cluster").display().to_string(),
        "--cloudtrail-dir".into(),
        dir.join("cloudtrail").display().to_string(),
        "--output".into(),
        "json".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let report = common::run(&args).json();
    let sg = report["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "limit-amq-to-subnet-uat")
        .unwrap()
        .clone();
    (report, sg)
}

#[test]
fn seed_window_counts_only_the_last_stretch() {
    // The storm runs 08:00-08:57:31 at roughly one failure every 2m17s; the last 10 minutes
    // (08:47:31-08:57:31) hold the failures at 08:50:40, 08:52:57, 08:55:14 and 08:57:31.
    let (report, sg) = seed_audit(&["--window", "10m"]);
    assert_eq!(sg["error_events"][0]["count"], 4);
    assert_eq!(
        report["cloudtrail"]["window"]["end"],
        "2024-01-05T08:57:31Z"
    );
    // Counters still cover the whole input.
    assert_eq!(report["cloudtrail"]["events"], 40);

    // --at moves the window: 08:00:08-08:10:08 holds 08:02:17, 08:05:34, 08:07:51, 08:10:08
    // (08:00:00 is eight seconds too early).
    let (report, sg) = seed_audit(&["--window", "10m", "--at", "2024-01-05T08:10:08Z"]);
    assert_eq!(sg["error_events"][0]["count"], 4);
    assert_eq!(
        report["cloudtrail"]["window"]["start"],
        "2024-01-05T08:00:08Z"
    );
}

#[test]
fn seed_incident_is_diagnosed_without_any_config() {
    // ec2-controller:1.2.0 pins runtime v0.28.0: the stale status wins, the calls go to dev.
    let (report, sg) = seed_audit(&[]);
    assert_eq!(sg["effect"], "calls_wrong_account");
    assert_eq!(sg["account_drift"], true);
    assert_eq!(sg["called_account"], "178394743802");
    let ec2 = &report["controllers"][0];
    assert_eq!(
        (
            &ec2["runtime"],
            &ec2["runtime_source"],
            &ec2["controller_version"]
        ),
        (
            &Value::from("v0.28.0"),
            &Value::from("image"),
            &Value::from("1.2.0")
        )
    );
}

/// The runtime each scenario's config names (taken by hand from the controllers' `go.mod`)
/// is the one the release table gives for its image.
#[test]
fn the_release_table_gives_the_runtimes_the_scenario_configs_name() {
    let mut checked = 0;
    for name in [
        "account-rules-by-version",
        "carm-v2-and-selectors",
        "what-controllers-cannot-do",
    ] {
        let dir = common::fixture(&format!("scenarios/{name}"));
        let config: Value =
            serde_saphyr::from_str(&std::fs::read_to_string(dir.join("config.yaml")).unwrap())
                .unwrap();
        let cluster = dir.join("cluster").display().to_string();
        let report = common::run(["audit", "--kube-dir", &cluster, "--output", "json"]).json();
        for c in report["controllers"].as_array().unwrap() {
            let service = c["service"].as_str().unwrap();
            let named = &config["controllers"][service]["runtime"];
            assert_eq!(&c["runtime"], named, "{name}: {service}");
            assert_eq!(c["runtime_source"], "image", "{name}: {service}");
            checked += 1;
        }
    }
    assert_eq!(checked, 22);
}

#[test]
fn demo_example() {
    check_scenario(&common::root().join("examples/demo"));
}
