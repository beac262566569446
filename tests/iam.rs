//! The shipped IAM documents grant exactly what the poller uses, and agree with each other
//! and with the code (role name, session name). The organisation-trail documents grant exactly
//! the S3 and SQS requests found in `src/`, confined to the queue and the trail's `AWSLogs/`.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use ack_drift_exporter::source::s3_trail::{dates, parse_key};
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

/// SDK request (crate service, fluent method) → the IAM action that authorises it. SQS's batch
/// requests have no action of their own: the single-message action authorises them.
const ORG_TRAIL_ACTIONS: &[(&str, &str, &str)] = &[
    ("sqs", "receive_message", "sqs:ReceiveMessage"),
    ("sqs", "get_queue_attributes", "sqs:GetQueueAttributes"),
    ("sqs", "delete_message_batch", "sqs:DeleteMessage"),
    (
        "sqs",
        "change_message_visibility_batch",
        "sqs:ChangeMessageVisibility",
    ),
    ("s3", "list_objects_v2", "s3:ListBucket"),
    ("s3", "get_object", "s3:GetObject"),
];

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

/// The file's S3/SQS client fields, with their service: `sqs: Client` (with `use
/// aws_sdk_sqs::Client`) or `client: aws_sdk_s3::Client`.
fn client_fields(text: &str) -> Vec<(String, &'static str)> {
    let imported = ["s3", "sqs"]
        .into_iter()
        .find(|s| text.contains(&format!("use aws_sdk_{s}::Client;")));
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim().trim_start_matches("pub ");
        let Some((field, ty)) = line.trim_end_matches(',').split_once(": ") else {
            continue;
        };
        let service = match ty {
            "Client" => imported,
            "aws_sdk_s3::Client" => Some("s3"),
            "aws_sdk_sqs::Client" => Some("sqs"),
            _ => None,
        };
        let is_field = field.chars().all(|c| c.is_alphanumeric() || c == '_');
        if let (Some(s), true) = (service, is_field) {
            out.push((field.to_string(), s));
        }
    }
    out
}

/// The file without comment lines and whitespace: a request reads `self.sqs.receive_message()
/// .queue_url(…)….send()`, whatever its line breaks.
fn compact(text: &str) -> String {
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .flat_map(|l| l.chars().filter(|c| !c.is_whitespace()))
        .collect()
}

/// The request a `.send()` ends: the method right after the last client field of its statement.
fn request_at(
    code: &str,
    send: usize,
    fields: &[(String, &'static str)],
) -> Option<(String, String)> {
    let statement = &code[code[..send].rfind(';').map_or(0, |i| i + 1)..send];
    let (at, field, service) = fields
        .iter()
        .filter_map(|(f, s)| Some((statement.rfind(&format!(".{f}."))?, f, *s)))
        .max()?;
    let method = &statement[at + field.len() + 2..];
    let method = &method[..method.find('(')?];
    Some((service.to_string(), method.to_string()))
}

/// The S3 and SQS requests in one source file, as (service, fluent method); `Err` names a
/// `.send()` that traces back to no client field, so that a request made some other way fails
/// the test rather than escaping it.
fn file_requests(text: &str) -> Result<Vec<(String, String)>, String> {
    let fields = client_fields(text);
    let code = compact(text);
    code.match_indices(".send()")
        .map(|(send, _)| {
            request_at(&code, send, &fields).ok_or_else(|| {
                let from = code[..send]
                    .char_indices()
                    .rev()
                    .nth(120)
                    .map_or(0, |(i, _)| i);
                format!("…{}", &code[from..send + 7])
            })
        })
        .collect()
}

/// Every S3 and SQS request the code makes, in every file that uses either SDK.
fn sdk_requests() -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for path in rust_files(&common::root().join("src")) {
        let text = std::fs::read_to_string(&path).unwrap();
        if !text.contains("aws_sdk_s3") && !text.contains("aws_sdk_sqs") {
            continue;
        }
        let requests = file_requests(&text).unwrap_or_else(|e| {
            panic!(
                "{}: a request this test cannot trace to an S3 or SQS client field: {e}",
                path.display()
            )
        });
        out.extend(requests);
    }
    out
}

/// The IAM actions the code's S3 and SQS requests need.
fn needed_actions() -> BTreeSet<&'static str> {
    let requests = sdk_requests();
    for (service, method, _) in ORG_TRAIL_ACTIONS {
        assert!(
            requests.contains(&(service.to_string(), method.to_string())),
            "{service} {method} is no longer called: drop it from ORG_TRAIL_ACTIONS and the policy"
        );
    }
    requests
        .iter()
        .map(|(service, method)| {
            let row = ORG_TRAIL_ACTIONS
                .iter()
                .find(|(s, m, _)| s == service && m == method);
            row.unwrap_or_else(|| {
                panic!(
                    "the code calls {service} {method}: add its IAM action to ORG_TRAIL_ACTIONS \
                     and to deploy/iam/org-trail-policy.json (and its README section)"
                )
            })
            .2
        })
        .collect()
}

fn resources(s: &Value) -> Vec<&str> {
    match &s["Resource"] {
        Value::String(r) => vec![r.as_str()],
        Value::Array(r) => r.iter().map(|x| x.as_str().unwrap()).collect(),
        other => panic!("Resource {other}"),
    }
}

/// IAM's `StringLike` and ARN matching: `*` is any run of characters, `?` any one.
fn glob(pattern: &str, text: &str) -> bool {
    match pattern.chars().next() {
        None => text.is_empty(),
        Some('*') => (0..=text.len())
            .filter(|&i| text.is_char_boundary(i))
            .any(|i| glob(&pattern[1..], &text[i..])),
        Some(p) => text.chars().next().is_some_and(|c| {
            (p == '?' || p == c) && glob(&pattern[p.len_utf8()..], &text[c.len_utf8()..])
        }),
    }
}

/// Whether a statement's conditions hold for a request with this `s3:prefix` (if any). Only
/// the conditions these documents use are understood: anything else fails the test.
fn conditions_hold(s: &Value, s3_prefix: Option<&str>) -> bool {
    let Some(conditions) = s.get("Condition") else {
        return true;
    };
    conditions.as_object().unwrap().iter().all(|(op, keys)| {
        keys.as_object().unwrap().iter().all(|(key, values)| {
            assert_eq!(key, "s3:prefix", "a condition this test cannot evaluate");
            let values: Vec<&str> = match values {
                Value::String(v) => vec![v.as_str()],
                v => v
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_str().unwrap())
                    .collect(),
            };
            // Without IfExists, a request without the key fails the condition.
            s3_prefix.is_some_and(|p| match op.as_str() {
                "StringLike" => values.iter().any(|v| glob(v, p)),
                "StringEquals" => values.contains(&p),
                other => panic!("a condition operator this test cannot evaluate: {other}"),
            })
        })
    })
}

/// Whether the policy allows `action` on `resource` (it only has Allow statements).
fn allows(policy: &Value, action: &str, resource: &str, s3_prefix: Option<&str>) -> bool {
    statements(policy).iter().any(|s| {
        actions(s).contains(&action)
            && resources(s).iter().any(|r| glob(r, resource))
            && conditions_hold(s, s3_prefix)
    })
}

/// The org-trail policy as an operator fills it in, for a trail with this prefix (`org-trail/`
/// or nothing).
fn filled_org_trail_policy(prefix: &str) -> Value {
    let text = std::fs::read_to_string(common::root().join("deploy/iam/org-trail-policy.json"));
    let text = text
        .unwrap()
        .replace("${QUEUE_REGION}", "eu-west-2")
        .replace("${QUEUE_ACCOUNT_ID}", "111122223333")
        .replace("${QUEUE_NAME}", "org-trail-deliveries")
        .replace("${BUCKET}", "org-trail-logs")
        .replace("${PREFIX}", prefix);
    assert!(
        !text.contains("${"),
        "a placeholder this test does not fill:\n{text}"
    );
    serde_json::from_str(&text).unwrap()
}

/// What the backfill lists under a trail prefix (`s3_trail.rs` `accounts`, `partitions`): the
/// `AWSLogs/` root, an organisation's folder, an organisation's and an account trail's event
/// and Insights folders, and a day's partition.
fn listed_prefixes(prefix: &str) -> Vec<String> {
    let logs = format!("{prefix}AWSLogs/");
    let day = &dates(1_764_666_300, 1_764_666_300)[0];
    let mut out = vec![logs.clone(), format!("{logs}o-a1b2c3d4e5/")];
    for account in [
        format!("{logs}o-a1b2c3d4e5/111122223333/"),
        format!("{logs}444455556666/"),
    ] {
        out.push(format!("{account}CloudTrail/"));
        out.push(format!("{account}CloudTrail-Insight/"));
        out.push(format!("{account}CloudTrail/eu-west-2/{day}/"));
    }
    out
}

#[test]
fn the_request_scan_sees_a_new_request_and_refuses_one_it_cannot_trace() {
    let source = "use aws_sdk_s3::Client;\nstruct B {\n    pub client: Client,\n}\n\
                  fn f(b: &B) {\n    // self.client.delete_bucket().send()\n    \
                  let a = b\n        .client\n        .put_object()\n        .bucket(x)\n        \
                  .send()\n        .await;\n}\n";
    assert_eq!(
        file_requests(source).unwrap(),
        [("s3".to_string(), "put_object".to_string())]
    );
    let untraced = format!("{source}fn g(c: &Client) {{ c.get_object().send(); }}\n");
    assert!(file_requests(&untraced).is_err());
}

#[test]
fn the_org_trail_policy_grants_exactly_the_actions_of_the_codes_s3_and_sqs_requests() {
    let needed = needed_actions();
    let p = doc("org-trail-policy.json");
    let mut granted = BTreeSet::new();
    for s in statements(&p) {
        assert_eq!(s["Effect"], "Allow");
        for key in ["NotAction", "NotResource", "Principal"] {
            assert!(s.get(key).is_none(), "{key} in {s}");
        }
        for a in actions(s) {
            assert!(!a.contains(['*', '?']), "an action, not a pattern: {a}");
            granted.insert(a);
        }
    }
    assert_eq!(
        granted, needed,
        "deploy/iam/org-trail-policy.json against the code"
    );
}

#[test]
fn the_org_trail_policy_reaches_only_the_queue_and_the_trails_awslogs() {
    // The listing root the test assumes is the one the code builds.
    let s3_trail = std::fs::read_to_string(common::root().join("src/source/s3_trail.rs"));
    assert!(
        s3_trail
            .unwrap()
            .contains(r#"format!("{}AWSLogs/", self.prefix)"#)
    );
    let bucket = "arn:aws:s3:::org-trail-logs";
    for prefix in ["", "org-trail/"] {
        let p = filled_org_trail_policy(prefix);
        for listed in listed_prefixes(prefix) {
            assert!(
                allows(&p, "s3:ListBucket", bucket, Some(&listed)),
                "{listed}"
            );
            let key = format!("{listed}111122223333_CloudTrail_eu-west-2_20261202T0905Z_x.json.gz");
            if parse_key(&key).is_some() {
                assert!(
                    allows(&p, "s3:GetObject", &format!("{bucket}/{key}"), None),
                    "{key}"
                );
            }
        }
        let outside = [
            String::new(),
            prefix.to_string(),
            format!("{prefix}AWSLogs"),
            format!("{prefix}AWSLogsOld/"),
            format!("{prefix}other/AWSLogs/"),
            format!("other/{prefix}AWSLogs/"),
        ];
        for listed in &outside {
            assert!(
                !allows(&p, "s3:ListBucket", bucket, Some(listed)),
                "{listed:?}"
            );
            let object = format!("{bucket}/{listed}x.json.gz");
            assert!(!allows(&p, "s3:GetObject", &object, None), "{object}");
        }
        assert!(
            !allows(&p, "s3:ListBucket", bucket, None),
            "a listing without a prefix"
        );
        let elsewhere = "arn:aws:s3:::another-bucket/AWSLogs/111122223333/x.json.gz";
        assert!(!allows(&p, "s3:GetObject", elsewhere, None));
    }
    let p = filled_org_trail_policy("");
    let queue = "arn:aws:sqs:eu-west-2:111122223333:org-trail-deliveries";
    for (_, _, action) in ORG_TRAIL_ACTIONS.iter().filter(|(s, _, _)| *s == "sqs") {
        assert!(allows(&p, action, queue, None), "{action}");
        assert!(
            !allows(&p, action, &format!("{queue}-dlq"), None),
            "{action} elsewhere"
        );
    }
}

#[test]
fn the_kms_variant_only_decrypts_the_trail_key_through_s3() {
    let p = doc("org-trail-kms-policy.json");
    for s in statements(&p) {
        assert_eq!(s["Effect"], "Allow");
        assert_eq!(actions(s), ["kms:Decrypt"]);
        for r in resources(s) {
            assert!(
                r.starts_with("arn:aws:kms:") && !r.contains('*'),
                "one key: {r}"
            );
        }
        let via = s["Condition"]["StringEquals"]["kms:ViaService"]
            .as_str()
            .unwrap();
        assert!(
            via.starts_with("s3.") && via.ends_with(".amazonaws.com"),
            "{via}"
        );
    }
}

#[test]
fn the_readme_explains_the_org_trail_placeholders_and_its_config_parses() {
    let readme = std::fs::read_to_string(common::root().join("deploy/iam/README.md")).unwrap();
    for name in ["org-trail-policy.json", "org-trail-kms-policy.json"] {
        assert!(readme.contains(&format!("`{name}`")), "{name}");
        let text = std::fs::read_to_string(common::root().join("deploy/iam").join(name)).unwrap();
        for (at, _) in text.match_indices("${") {
            let placeholder = &text[at..=at + text[at..].find('}').unwrap()];
            assert!(
                readme.contains(&format!("`{placeholder}`")),
                "{name}: {placeholder}"
            );
        }
    }
    let section = readme.split("## Organisation trail").nth(1).unwrap();
    let yaml = section
        .split("```yaml\n")
        .nth(1)
        .unwrap()
        .split("```")
        .next()
        .unwrap();
    let config = ack_drift_exporter::config::Config::parse(yaml).unwrap();
    assert!(config.cloudtrail.sqs.is_some() && config.cloudtrail.s3.is_some());
}
