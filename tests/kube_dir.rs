//! `--kube-dir` input: every format kubectl writes, and bad input that must not stop the rest.

mod common;

use serde_json::Value;

fn audit_json(dir: &str) -> (common::Run, Value) {
    let run = common::run([
        "audit",
        "--kube-dir",
        common::fixture(dir).to_str().unwrap(),
        "--output",
        "json",
    ]);
    let v = run.json();
    (run, v)
}

fn find<'a>(report: &'a Value, key: &str) -> &'a Value {
    report["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| {
            format!(
                "{}/{}/{}",
                r["namespace"].as_str().unwrap(),
                r["kind"].as_str().unwrap(),
                r["name"].as_str().unwrap()
            ) == key
        })
        .unwrap_or_else(|| panic!("{key} not in the report"))
}

#[test]
fn every_kubectl_format_is_read_recursively() {
    let (run, report) = audit_json("kube/formats");
    assert_eq!(report["cluster"]["parse_errors"], 0, "{}", run.stderr);
    // list.json 2, single.json 1, nested/list.yaml 1 (+ an empty nested list),
    // nested/deeper/multi.yml 3, controller.yaml 2.
    assert_eq!(report["cluster"]["objects"], 9);
    assert_eq!(report["summary"]["resources"], 2);

    // Namespace from a JSON List, CARM map from a single JSON object, controller from YAML.
    let vpc = find(&report, "uat/VPC/from-list");
    assert_eq!(vpc["expected_account"], "474417630776");
    assert_eq!(vpc["account_source"], "namespace");
    assert_eq!(vpc["account_drift"], false);

    // From a multi-document file behind a comment and an explicit `...` end marker.
    let sg = find(&report, "uat/SecurityGroup/from-multi");
    assert_eq!(sg["status_account"], "178394743802");
    assert_eq!(sg["account_drift"], true);
    // ec2-controller 1.2.0 pins runtime v0.28.0, which has no --enable-carm at all (and
    // `--enable-carm false` would leave CARM on anyway: pflag): it cannot start, so nothing
    // acts on the drift.
    assert_eq!(sg["effect"], Value::Null);
    assert!(
        sg["problems"]
            .as_array()
            .unwrap()
            .contains(&Value::from("controller_not_running")),
        "{sg}"
    );
    assert_eq!(run.code, 1);
}

#[test]
fn bad_input_is_reported_with_file_and_line_and_the_rest_is_read() {
    let (run, report) = audit_json("kube/instance-bad");
    let errors = report["cluster"]["input_errors"].as_array().unwrap();
    assert_eq!(report["cluster"]["parse_errors"], errors.len());
    let has = |file: &str, line: Option<u64>, text: &str| {
        errors.iter().any(|e| {
            e["file"].as_str().unwrap().ends_with(file)
                && e["line"].as_u64() == line
                && e["message"].as_str().unwrap().contains(text)
        })
    };
    assert!(
        has("malformed.yaml", Some(11), "invalid YAML"),
        "{errors:#?}"
    );
    assert!(
        has(
            "wrong-types.yaml",
            Some(1),
            "SecurityGroup dev/typo-status: status.ackResourceMetadata: is a string"
        ),
        "{errors:#?}"
    );
    assert!(
        has(
            "wrong-types.yaml",
            Some(14),
            "Deployment ack-system/ack-empty-controller"
        ),
        "{errors:#?}"
    );
    assert!(
        has("truncated.json", Some(3), "invalid JSON"),
        "{errors:#?}"
    );
    assert!(
        has("scalar.yaml", Some(1), "expected a Kubernetes object"),
        "{errors:#?}"
    );
    assert!(has("binary.yaml", None, "not UTF-8"), "{errors:#?}");
    assert_eq!(errors.len(), 6, "{errors:#?}");

    // Every error is also on stderr, naming the file.
    for e in errors {
        assert!(run.stderr.contains(e["file"].as_str().unwrap()));
    }

    // The rest was read: both SecurityGroups (the mistyped one without its status) and
    // the namespaces before and after the broken document.
    assert_eq!(report["summary"]["resources"], 2);
    // malformed.yaml 2 (the namespaces around the broken document), wrong-types.yaml 3,
    // sa.yaml 1, scalar.yaml 1 (read, then rejected).
    assert_eq!(report["cluster"]["objects"], 7);
    let typo = find(&report, "dev/SecurityGroup/typo-status");
    assert_eq!(typo["status_account"], Value::Null);
    let healthy = find(&report, "dev/SecurityGroup/healthy");
    assert_eq!(healthy["status_account"], "178394743802");
    // No controller Deployment survived, so no account can be expected: unresolved, not drift.
    assert_eq!(healthy["problems"], serde_json::json!(["unresolved"]));
    assert_eq!(run.code, 0);
}
