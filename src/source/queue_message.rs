//! What one message on the organisation trail's queue says: which trail objects to read, the
//! CloudTrail record itself (EventBridge), nothing (S3's test event), or why it is unusable.
//! Pure: the consumer (`source::sqs_trail`) acts on the answer.

use serde_json::Value;

use crate::config::QueueFormat;

/// A usable message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// New objects in a bucket (S3 event notification, through SNS or not, or EventBridge
    /// "Object Created").
    Objects(Vec<ObjectRef>),
    /// An EventBridge "AWS API Call via CloudTrail" event's `detail`: one CloudTrail record.
    Record(Value),
    /// Nothing to read and nothing wrong (`s3:TestEvent`, an `ObjectRemoved` notification).
    Nothing,
}

/// One object a notification announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    pub bucket: String,
    /// The key as S3 names it (URL-decoded where the notification encodes it).
    pub key: String,
}

/// Why a message cannot be used (`reason` label of
/// `ack_drift_exporter_cloudtrail_bad_messages_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum BadMessage {
    NotJson,
    /// JSON, but no shape this format knows.
    Unrecognised,
    /// An EventBridge event of another `detail-type`: counted and dropped.
    OtherDetailType,
    /// The object it names is not in the bucket.
    MissingObject,
    /// The object is not a readable trail delivery (broken gzip, not JSON).
    BrokenObject,
}

impl BadMessage {
    pub const ALL: [BadMessage; 5] = [
        BadMessage::NotJson,
        BadMessage::Unrecognised,
        BadMessage::OtherDetailType,
        BadMessage::MissingObject,
        BadMessage::BrokenObject,
    ];

    pub fn reason(self) -> &'static str {
        match self {
            BadMessage::NotJson => "not_json",
            BadMessage::Unrecognised => "unrecognised",
            BadMessage::OtherDetailType => "other_detail_type",
            BadMessage::MissingObject => "missing_object",
            BadMessage::BrokenObject => "broken_object",
        }
    }

    /// Whether the message is deleted: another event type is expected on a shared bus and
    /// will never be useful; everything else is left to the queue's redrive policy, where
    /// someone can look at it.
    pub fn is_dropped(self) -> bool {
        self == BadMessage::OtherDetailType
    }
}

/// The EventBridge detail-type of CloudTrail's API calls.
pub const API_CALL_DETAIL_TYPE: &str = "AWS API Call via CloudTrail";

/// Reads one message body in the queue's format.
pub fn decode(format: QueueFormat, body: &str) -> Result<Message, BadMessage> {
    let v: Value = serde_json::from_str(body).map_err(|_| BadMessage::NotJson)?;
    match format {
        QueueFormat::S3Notification => decode_notification(&unwrap_sns(v)?),
        QueueFormat::Eventbridge => decode_api_call(v),
    }
}

/// An SNS envelope's `Message` (itself JSON text), or the value as it is.
fn unwrap_sns(v: Value) -> Result<Value, BadMessage> {
    if v.get("Type").and_then(Value::as_str) != Some("Notification") {
        return Ok(v);
    }
    let inner = v
        .get("Message")
        .and_then(Value::as_str)
        .ok_or(BadMessage::Unrecognised)?;
    serde_json::from_str(inner).map_err(|_| BadMessage::NotJson)
}

fn decode_notification(v: &Value) -> Result<Message, BadMessage> {
    if let Some(records) = v.get("Records").and_then(Value::as_array) {
        let objects: Option<Vec<ObjectRef>> = records
            .iter()
            .filter(|r| {
                r.get("eventName")
                    .and_then(Value::as_str)
                    .is_some_and(|n| n.starts_with("ObjectCreated:"))
            })
            .map(|r| {
                Some(ObjectRef {
                    bucket: r.pointer("/s3/bucket/name")?.as_str()?.to_string(),
                    key: form_decode(r.pointer("/s3/object/key")?.as_str()?)?,
                })
            })
            .collect();
        return match objects {
            None => Err(BadMessage::Unrecognised),
            Some(o) if o.is_empty() => Ok(Message::Nothing),
            Some(o) => Ok(Message::Objects(o)),
        };
    }
    if v.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Ok(Message::Nothing);
    }
    if v.get("source").and_then(Value::as_str) == Some("aws.s3")
        && v.get("detail-type").and_then(Value::as_str) == Some("Object Created")
    {
        // EventBridge does not encode the key.
        let object = || {
            Some(ObjectRef {
                bucket: v.pointer("/detail/bucket/name")?.as_str()?.to_string(),
                key: v.pointer("/detail/object/key")?.as_str()?.to_string(),
            })
        };
        return object()
            .map(|o| Message::Objects(vec![o]))
            .ok_or(BadMessage::Unrecognised);
    }
    Err(BadMessage::Unrecognised)
}

fn decode_api_call(mut v: Value) -> Result<Message, BadMessage> {
    match v.get("detail-type").and_then(Value::as_str) {
        Some(API_CALL_DETAIL_TYPE) => match v.get_mut("detail").map(Value::take) {
            Some(detail @ Value::Object(_)) => Ok(Message::Record(detail)),
            _ => Err(BadMessage::Unrecognised),
        },
        Some(_) => Err(BadMessage::OtherDetailType),
        None => Err(BadMessage::Unrecognised),
    }
}

/// S3 notifications encode keys as HTML forms do (`+` for a space, `%XX` for other bytes).
fn form_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
#[path = "queue_message_test.rs"]
mod tests;
