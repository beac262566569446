//! `upgrade-preview` on the bundled demo: what moving a controller to another runtime changes,
//! worked out from the demo's facts (examples/demo/README.md) and the runtime rules.

mod common;

use serde_json::Value;

fn preview(args: &[&str]) -> common::Run {
    let mut all = vec!["upgrade-preview", "--demo"];
    all.extend(args);
    common::run(all)
}

#[test]
fn moving_the_legacy_ec2_controller_to_v0_62_blocks_the_incident_resource() {
    let json = preview(&["ec2=v0.62.0", "--output", "json"]);
    assert_eq!(json.code, 1, "{}", json.stderr);
    let p: Value = json.json();
    assert_eq!(p["schema_version"], 1);
    // Only amq-uat changes: its stale dev status becomes a terminal mismatch on v0.53+.
    let changed = p["resources"].as_array().unwrap();
    assert_eq!(changed.len(), 1, "{p:#}");
    let sg = &changed[0];
    assert_eq!(common::resource_key(sg), "uat/SecurityGroup/amq-uat");
    assert_eq!(sg["before"]["effect"], "calls_wrong_account");
    assert_eq!(sg["before"]["called_account"], "178394743802");
    assert_eq!(sg["after"]["effect"], "blocked");
    assert_eq!(sg["after"]["called_account"], Value::Null);
    assert!(
        sg["after"]["problems"]
            .as_array()
            .unwrap()
            .contains(&Value::from("terminal_mismatch"))
    );
    assert_eq!(sg["worse"], true);
    let first = sg["remediation"][0].as_str().unwrap();
    assert!(
        first.ends_with("kubectl get -n uat securitygroup.ec2.services.k8s.aws amq-uat -o yaml > uat.amq-uat.yaml"),
        "{first}"
    );
    let c = &p["controllers"][0];
    assert_eq!(
        (&c["runtime_before"], &c["runtime_after"]),
        (&Value::from("v0.28.0"), &Value::from("v0.62.0"))
    );
    assert_eq!(c["running_after"], true);

    let table = preview(&["ec2=v0.62.0"]);
    assert_eq!(table.code, 1);
    assert!(
        table.stdout.contains("uat/SecurityGroup/amq-uat (WORSE)"),
        "{}",
        table.stdout
    );
    assert!(
        table.stdout.contains("after:  blocked; calls nothing;"),
        "{}",
        table.stdout
    );
    let md = preview(&["ec2=v0.62.0", "--output", "markdown"]);
    assert_eq!(md.code, 1);
    assert!(md.stdout.contains("| `uat/SecurityGroup/amq-uat` | calls_wrong_account; calls 178394743802; not_synced | blocked; calls nothing; not_synced,terminal_mismatch | **yes** |"), "{}", md.stdout);
}

#[test]
fn its_own_release_or_runtime_changes_nothing() {
    for target in ["ec2=1.2.0", "ec2=v1.2.0", "ec2=v0.28.0"] {
        let run = preview(&[target, "--output", "json"]);
        assert_eq!(run.code, 0, "{target}: {}", run.stdout);
        assert_eq!(run.json()["resources"], Value::Array(vec![]), "{target}");
    }
}

#[test]
fn flags_the_target_runtime_does_not_accept_stop_the_controller() {
    // The demo's rds Deployment passes --enable-carm and --feature-gates: v0.34.0 has neither.
    let run = preview(&["rds=v0.34.0", "--output", "json"]);
    assert_eq!(run.code, 1);
    let p = run.json();
    let c = &p["controllers"][0];
    assert_eq!(
        (&c["running_before"], &c["running_after"]),
        (&Value::from(true), &Value::from(false))
    );
    let reasons: Vec<&str> = c["problems_after"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["problem"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, ["undefined_flag", "undefined_flag"], "{c}");
    // Both rds resources would then not be reconciled at all.
    for r in p["resources"].as_array().unwrap() {
        assert_eq!(r["group"], "rds.services.k8s.aws");
        assert!(
            r["after"]["problems"]
                .as_array()
                .unwrap()
                .contains(&Value::from("controller_not_running"))
        );
    }
    assert_eq!(p["resources"].as_array().unwrap().len(), 2);
}

#[test]
fn an_unknown_target_is_a_usage_error_naming_it() {
    for bad in ["ec2", "ec2=v0.99.0", "ec2=7.7.7"] {
        let run = preview(&[bad]);
        assert_eq!(run.code, 2, "{bad}");
        assert!(run.stderr.contains(bad), "{bad}: {}", run.stderr);
    }
}
