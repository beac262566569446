use serde_json::json;

use super::*;

const KEY: &str = "AWSLogs/o-abcdefghij/111111111111/CloudTrail/eu-west-2/2026/12/02/111111111111_CloudTrail_eu-west-2_20261202T0905Z_AbCdEfGhIjKlMnOp.json.gz";

fn s3_notification(key: &str, event: &str) -> serde_json::Value {
    json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "eu-west-2",
        "eventTime": "2026-12-02T09:05:12.000Z", "eventName": event,
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "trail",
               "bucket": {"name": "org-trail", "arn": "arn:aws:s3:::org-trail"},
               "object": {"key": key, "size": 1234, "eTag": "e", "sequencer": "0A"}}
    }]})
}

fn object(key: &str) -> Result<Message, BadMessage> {
    Ok(Message::Objects(vec![ObjectRef {
        bucket: "org-trail".into(),
        key: key.into(),
    }]))
}

#[test]
fn notification_shapes_name_the_object() {
    let direct = s3_notification(KEY, "ObjectCreated:Put").to_string();
    let sns =
        json!({"Type": "Notification", "MessageId": "m", "TopicArn": "arn:aws:sns:eu-west-2:1:t",
                     "Subject": "Amazon S3 Notification", "Message": direct})
        .to_string();
    let eventbridge = json!({"version": "0", "id": "i", "detail-type": "Object Created",
        "source": "aws.s3", "account": "1", "time": "t", "region": "eu-west-2",
        "resources": ["arn:aws:s3:::org-trail"],
        "detail": {"version": "0", "bucket": {"name": "org-trail"},
                   "object": {"key": "a b+c.json.gz", "size": 1}, "reason": "PutObject"}})
    .to_string();
    let encoded = s3_notification(
        "logs/a+b%2Bc%3A.json.gz",
        "ObjectCreated:CompleteMultipartUpload",
    )
    .to_string();
    let cases: [(&str, &str, Result<Message, BadMessage>); 10] = [
        ("direct", &direct, object(KEY)),
        ("through SNS", &sns, object(KEY)),
        (
            "EventBridge keys are not encoded",
            &eventbridge,
            object("a b+c.json.gz"),
        ),
        ("form-encoded key", &encoded, object("logs/a b+c:.json.gz")),
        (
            "test event",
            r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"org-trail"}"#,
            Ok(Message::Nothing),
        ),
        (
            "removal",
            &s3_notification(KEY, "ObjectRemoved:Delete").to_string(),
            Ok(Message::Nothing),
        ),
        ("not JSON", "hello", Err(BadMessage::NotJson)),
        (
            "SNS with text inside",
            r#"{"Type":"Notification","Message":"hello"}"#,
            Err(BadMessage::NotJson),
        ),
        (
            "another shape",
            r#"{"foo": 1}"#,
            Err(BadMessage::Unrecognised),
        ),
        (
            "a record without its key",
            r#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"}}}]}"#,
            Err(BadMessage::Unrecognised),
        ),
    ];
    for (what, body, want) in cases {
        assert_eq!(decode(QueueFormat::S3Notification, body), want, "{what}");
    }
}

#[test]
fn eventbridge_api_calls_carry_the_record() {
    let record = json!({"eventID": "e", "eventSource": "ec2.amazonaws.com"});
    let call = json!({"version": "0", "detail-type": API_CALL_DETAIL_TYPE, "source": "aws.ec2",
                      "detail": record.clone()})
    .to_string();
    let sign_in =
        json!({"detail-type": "AWS Console Sign In via CloudTrail", "detail": {}}).to_string();
    let no_detail = json!({"detail-type": API_CALL_DETAIL_TYPE}).to_string();
    let cases: [(&str, &str, Result<Message, BadMessage>); 5] = [
        ("API call", &call, Ok(Message::Record(record))),
        (
            "another detail-type",
            &sign_in,
            Err(BadMessage::OtherDetailType),
        ),
        ("no detail", &no_detail, Err(BadMessage::Unrecognised)),
        (
            "an S3 notification on the wrong queue",
            &s3_notification(KEY, "ObjectCreated:Put").to_string(),
            Err(BadMessage::Unrecognised),
        ),
        ("not JSON", "{", Err(BadMessage::NotJson)),
    ];
    for (what, body, want) in cases {
        assert_eq!(decode(QueueFormat::Eventbridge, body), want, "{what}");
    }
}

#[test]
fn only_other_event_types_are_dropped() {
    let dropped: Vec<_> = BadMessage::ALL.iter().filter(|b| b.is_dropped()).collect();
    assert_eq!(dropped, [&BadMessage::OtherDetailType]);
    let reasons: std::collections::BTreeSet<_> =
        BadMessage::ALL.iter().map(|b| b.reason()).collect();
    assert_eq!(reasons.len(), BadMessage::ALL.len());
}

#[test]
fn broken_escapes_are_not_keys() {
    assert_eq!(form_decode("a%2"), None);
    assert_eq!(form_decode("a%zz"), None);
    assert_eq!(form_decode("a%ff"), None, "not UTF-8");
    assert_eq!(form_decode("a%20b"), Some("a b".into()));
}
