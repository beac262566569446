//! Property tests: the input parsers never panic and keep their invariants on any input.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::Value;

use ack_drift_exporter::evaluate::label_selector::LabelSelector;
use ack_drift_exporter::model::account::{arn_account, is_account_id};
use ack_drift_exporter::model::controller::parse_feature_gates;
use ack_drift_exporter::model::controller::{expand_vars, parse_flags};
use ack_drift_exporter::model::object::classify;
use ack_drift_exporter::model::trail::parse_record;
use ack_drift_exporter::model::trail_json::parse_record_text;
use ack_drift_exporter::model::user_agent;
use ack_drift_exporter::source::kube_dir::{DocumentError, parse_documents, split_yaml_documents};
use ack_drift_exporter::source::trail_file::parse_trail_bytes;

const UA: &str = "aws-controllers-k8s/ec2.services.k8s.aws-1.2.0 (GitCommit/3ac4413514ef474d875bedd42725eebe2015d647; BuildDate/2024-01-04T11:50; CRDKind/SecurityGroup; CRDVersion/v1alpha1) aws-sdk-go/1.49.0 (go1.21.5; linux; amd64)";

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| Value::Number(n.into())),
        "[a-zA-Z0-9./:-]{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("apiVersion"),
            Just("kind"),
            Just("v1"),
            Just("ec2.services.k8s.aws/v1alpha1"),
            Just("SecurityGroup"),
            Just("Namespace"),
            Just("apps/v1"),
            Just("Deployment"),
        ]
        .prop_map(|s| Value::String(s.to_string())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("apiVersion".to_string()),
                    Just("kind".to_string()),
                    Just("metadata".to_string()),
                    Just("name".to_string()),
                    Just("namespace".to_string()),
                    Just("spec".to_string()),
                    Just("status".to_string()),
                    Just("ackResourceMetadata".to_string()),
                    Just("conditions".to_string()),
                    Just("template".to_string()),
                    Just("containers".to_string()),
                    "[a-z]{1,6}",
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn classify_never_panics(v in json_value()) {
        let c = classify(&v);
        // Whatever came in, every error names something.
        for e in &c.errors {
            prop_assert!(!e.is_empty());
        }
    }

    #[test]
    fn yaml_documents_never_panic(text in "(---\n|\\.\\.\\.\n|[a-z]{1,4}: [\\[\\]{}a-z0-9'\"]{0,6}\n|- x\n|  y: 1\n|#c\n|\n){0,12}") {
        let docs = parse_documents(&text, false);
        let lines = text.lines().count().max(1);
        for d in docs {
            match d {
                Ok(doc) => prop_assert!(doc.line >= 1 && doc.line <= lines + 1),
                Err(DocumentError { line, message: msg }) => {
                    prop_assert!(!msg.is_empty());
                    if let Some(l) = line { prop_assert!(l >= 1 && l <= lines + 1, "line {} of {}", l, lines); }
                }
            }
        }
    }

    #[test]
    fn split_keeps_every_content_line(text in "(---\n|[a-z]{1,5}: [a-z0-9]{1,3}\n){0,10}") {
        let docs = split_yaml_documents(&text);
        let content: usize = text.lines().filter(|l| *l != "---").count();
        let kept: usize = docs.iter().map(|(_, d)| d.lines().filter(|l| !l.trim().is_empty()).count()).sum();
        prop_assert_eq!(content, kept);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = parse_documents(&text, false);
        let _ = parse_documents(&text, true);
        let _ = arn_account(&text);
    }

    #[test]
    fn arn_accounts_are_account_ids(s in "arn:[a-z-]{0,4}:[a-z0-9]{0,4}:[a-z0-9-]{0,9}:[0-9a-z]{0,13}:[a-z/]{0,6}") {
        if let Some(a) = arn_account(&s) {
            prop_assert!(is_account_id(&a));
            let field = format!(":{a}:");
            prop_assert!(s.contains(&field));
        }
    }

    #[test]
    fn last_valued_flag_wins(values in prop::collection::vec("[a-z0-9-]{1,8}", 1..6), inline in any::<bool>()) {
        let mut args = Vec::new();
        for v in &values {
            if inline {
                args.push(format!("--aws-region={v}"));
            } else {
                args.push("--aws-region".to_string());
                args.push(v.clone());
            }
        }
        let parsed = parse_flags(&args);
        prop_assert_eq!(parsed.values.get("aws-region"), values.last());
        prop_assert!(parsed.stray.is_empty());
    }

    #[test]
    fn trail_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut n = 0u64;
        let read = parse_trail_bytes("fuzz.json", &bytes, &mut |_| n += 1);
        prop_assert_eq!(read.records, n);
        for e in read.errors {
            prop_assert_eq!(e.file.as_str(), "fuzz.json");
        }
    }

    #[test]
    fn trail_shapes_never_panic(v in json_value(), wrap in 0u8..3) {
        let doc = match wrap {
            0 => serde_json::json!({"Records": [v]}),
            1 => serde_json::json!({"Events": [{"CloudTrailEvent": v.to_string()}, {"CloudTrailEvent": v}]}),
            _ => serde_json::json!([v]),
        };
        let bytes = serde_json::to_vec(&doc).unwrap();
        let mut n = 0u64;
        let read = parse_trail_bytes("fuzz.json", &bytes, &mut |_| n += 1);
        prop_assert_eq!(read.records, n);
    }

    #[test]
    fn records_never_panic(v in json_value()) {
        let _ = parse_record(&v);
    }

    #[test]
    fn a_record_read_from_its_text_is_the_record_read_from_its_value(
        fields in prop::collection::btree_map(
            prop_oneof![
                Just("eventID"), Just("eventTime"), Just("eventSource"), Just("eventName"),
                Just("awsRegion"), Just("recipientAccountId"), Just("userIdentity"),
                Just("errorCode"), Just("sharedEventID"), Just("userAgent"),
                Just("requestParameters"), Just("resources"), Just("other"),
            ],
            prop_oneof![
                json_value(),
                Just(Value::String("2024-01-05T08:00:00Z".into())),
                Just(Value::String(UA.into())),
                Just(serde_json::json!({"accountId": "111122223333", "type": "AWSAccount"})),
                Just(serde_json::json!({"roleArn": "arn:aws:iam::444455556666:role/r"})),
                Just(Value::String("a\"b\\c\u{e9}".into())),
            ],
            0..13,
        ),
    ) {
        // The exporter reads trail files straight from the text; the `Value` reading is the
        // plain one every other source uses. Both must give the same record or reason.
        let v = Value::Object(fields.into_iter().map(|(k, v)| (k.to_string(), v)).collect());
        let text = v.to_string();
        prop_assert_eq!(parse_record_text(&text), parse_record(&v), "{}", text);
    }

    #[test]
    fn user_agents_never_panic(s in "\\PC{0,80}", prefix in prop_oneof![Just(""), Just("aws-controllers-k8s/"), Just("aws-controller-k8s/")]) {
        let _ = user_agent::parse(&format!("{prefix}{s}"));
    }

    #[test]
    fn a_cut_user_agent_never_yields_a_partial_kind(cut in 0usize..UA.len()) {
        // CloudTrail cuts at 1 KB; whatever survives, a kind is the whole kind or nothing.
        if let Some(ua) = user_agent::parse(&UA[..cut]) {
            prop_assert_eq!(ua.group.as_str(), "ec2.services.k8s.aws");
            prop_assert!(ua.kind.is_none() || ua.kind.as_deref() == Some("SecurityGroup"));
        }
    }

    #[test]
    fn text_without_dollar_is_unchanged(s in "[^$]{0,40}") {
        prop_assert_eq!(expand_vars(&s, &BTreeMap::new()), s);
    }

    #[test]
    fn label_selectors_never_panic_and_print_back_to_themselves(
        s in prop_oneof![
            "\\PC{0,40}",
            "[a-z!=(), ]{0,30}",
            "(team|env|x/y)(=|==|!=| in | notin )(\\(a,b\\)|a|)(,[a-z]{1,3})?",
        ]
    ) {
        // labels.Parse either fails with a position inside the input or gives a selector
        // whose printed form parses to the same selector.
        match LabelSelector::parse(&s) {
            Ok(sel) => {
                let again = LabelSelector::parse(&sel.to_string());
                prop_assert_eq!(again.as_ref(), Ok(&sel), "{} -> {}", s, sel);
            }
            Err(e) => prop_assert!(e.position <= s.len(), "{e} for {s:?}"),
        }
    }

    #[test]
    fn feature_gates_never_panic_and_keep_only_booleans(s in "[A-Za-z=, ]{0,30}") {
        if let Ok(gates) = parse_feature_gates(&s) {
            prop_assert!(gates.keys().all(|k| !k.is_empty() && k.trim() == k));
        }
    }
}
