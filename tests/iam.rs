//! The shipped IAM documents grant exactly what the poller uses, and agree with each other
//! and with the code (role name, session name).

mod common;

use serde_json::Value;

fn doc(name: &str) -> Value {
    let path = common::root().join("deploy/iam").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn statements(v: &Value) -> &Vec<Value> {
    assert_eq!(v["Version"], "2012-10-17");
    v["Statement"].as_array().unwrap()
}

fn actions(s: &Value) -> Vec<&str> {
    match &s["Action"] {
        Value::String(a) => vec![a.as_str()],
        Value::Array(a) => a.iter().map(|x| x.as_str().unwrap()).collect(),
        other => panic!("Action {other}"),
    }
}

#[test]
fn the_reader_may_only_look_up_events() {
    let p = doc("reader-policy.json");
    for s in statements(&p) {
        assert_eq!(s["Effect"], "Allow");
        assert_eq!(actions(s), ["cloudtrail:LookupEvents"]);
    }
}

#[test]
fn the_exporter_may_only_assume_the_reader_role_and_the_reader_only_trusts_it() {
    let p = doc("exporter-policy.json");
    let readme = std::fs::read_to_string(common::root().join("deploy/iam/README.md")).unwrap();
    for s in statements(&p) {
        assert_eq!(actions(s), ["sts:AssumeRole"]);
        let resource = s["Resource"].as_str().unwrap();
        let role = resource.rsplit('/').next().unwrap();
        assert!(
            !role.contains('*'),
            "a named role, not a pattern: {resource}"
        );
        // The template the README tells operators to use names the same role.
        assert!(readme.contains(&format!("arn:aws:iam::{{account}}:role/{role}")));
    }
    let t = doc("reader-trust-policy.json");
    for s in statements(&t) {
        assert_eq!(actions(s), ["sts:AssumeRole"]);
        assert!(
            s["Principal"]["AWS"]
                .as_str()
                .unwrap()
                .ends_with(":role/ack-drift-exporter")
        );
        assert_eq!(
            s["Condition"]["StringEquals"]["sts:RoleSessionName"],
            ack_drift_exporter::source::aws::SESSION_NAME
        );
    }
}
