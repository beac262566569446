//! A record's [`RecordFields`] read straight from JSON text, without building a `Value`:
//! the dozen fields classification reads are borrowed from the text (copied only when they
//! hold escapes), every other field is skipped, and `requestParameters` / `resources` stay
//! text until an ACK record needs them. Lenient like [`RecordFields::from_value`]: a field of
//! another type than string is absent, and a record that is not an object is reported, not
//! an error that would end the file.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::trail::{Json, NOT_AN_OBJECT, RecordFields, TrailRecord, record_from_fields};

/// One element of a `Records` array: the fields, or not an object at all.
// Made and used up at once, record by record: boxing would add an allocation per record.
#[allow(clippy::large_enum_variant)]
pub enum RecordElement<'a> {
    Object(RecordFields<'a>),
    NotAnObject,
}

impl RecordElement<'_> {
    pub fn into_record(self) -> Result<TrailRecord, String> {
        match self {
            RecordElement::Object(fields) => record_from_fields(&fields),
            RecordElement::NotAnObject => Err(NOT_AN_OBJECT.into()),
        }
    }
}

/// Parses one record held as JSON text (a lookup-events `CloudTrailEvent`, say).
pub fn parse_record_text(text: &str) -> Result<TrailRecord, String> {
    serde_json::from_str::<RecordElement>(text)
        .map_err(|e| format!("is not JSON ({e})"))?
        .into_record()
}

/// The field names read; every other one is skipped. Shared with `model::trail_scan`.
pub(super) enum Field {
    Text(TextField),
    UserIdentity,
    RequestParameters,
    Resources,
    Other,
}

/// The fields read as plain strings.
#[derive(Clone, Copy)]
pub(super) enum TextField {
    EventId,
    EventTime,
    EventSource,
    EventName,
    AwsRegion,
    RecipientAccountId,
    ErrorCode,
    SharedEventId,
    UserAgent,
}

impl FromName for Field {
    fn named(name: &str) -> Field {
        match name {
            "eventID" => Field::Text(TextField::EventId),
            "eventTime" => Field::Text(TextField::EventTime),
            "eventSource" => Field::Text(TextField::EventSource),
            "eventName" => Field::Text(TextField::EventName),
            "awsRegion" => Field::Text(TextField::AwsRegion),
            "recipientAccountId" => Field::Text(TextField::RecipientAccountId),
            "errorCode" => Field::Text(TextField::ErrorCode),
            "sharedEventID" => Field::Text(TextField::SharedEventId),
            "userAgent" => Field::Text(TextField::UserAgent),
            "userIdentity" => Field::UserIdentity,
            "requestParameters" => Field::RequestParameters,
            "resources" => Field::Resources,
            _ => Field::Other,
        }
    }
}

impl<'a> RecordFields<'a> {
    /// Where a string field's value goes: one place for both ways of reading a record.
    pub(super) fn text_slot(&mut self, field: TextField) -> &mut Option<Cow<'a, str>> {
        match field {
            TextField::EventId => &mut self.event_id,
            TextField::EventTime => &mut self.event_time,
            TextField::EventSource => &mut self.event_source,
            TextField::EventName => &mut self.event_name,
            TextField::AwsRegion => &mut self.aws_region,
            TextField::RecipientAccountId => &mut self.recipient_account_id,
            TextField::ErrorCode => &mut self.error_code,
            TextField::SharedEventId => &mut self.shared_event_id,
            TextField::UserAgent => &mut self.user_agent,
        }
    }
}

/// Names matched to what they mean.
pub(super) trait FromName {
    fn named(name: &str) -> Self;
}

/// A field name, matched without copying it.
struct Key<F>(F);

impl<'de, F: FromName> Deserialize<'de> for Key<F> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct NameVisitor<F>(std::marker::PhantomData<F>);
        impl<F: FromName> Visitor<'_> for NameVisitor<F> {
            type Value = Key<F>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<Key<F>, E> {
                Ok(Key(F::named(name)))
            }
        }
        d.deserialize_identifier(NameVisitor(std::marker::PhantomData))
    }
}

/// A string value borrowed from the value's text (unescaped into a copy only when it has
/// escapes); `None` for a value of any other type. Shared with `model::trail_scan`.
pub(super) fn string_value(text: &str) -> Option<Cow<'_, str>> {
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    if memchr::memchr(b'\\', inner.as_bytes()).is_none() {
        return Some(Cow::Borrowed(inner));
    }
    serde_json::from_str::<String>(text).ok().map(Cow::Owned)
}

fn next_string<'de, A: MapAccess<'de>>(map: &mut A) -> Result<Option<Cow<'de, str>>, A::Error> {
    Ok(string_value(map.next_value::<&'de RawValue>()?.get()))
}

/// A value kept as its text, parsed only if an ACK record needs it.
fn raw_json<'de, A: MapAccess<'de>>(map: &mut A) -> Result<Json<'de>, A::Error> {
    Ok(Json::Text(map.next_value::<&'de RawValue>()?.get()))
}

/// The `accountId` and `type` of `userIdentity`.
#[derive(Default)]
struct Identity<'a> {
    account_id: Option<Cow<'a, str>>,
    kind: Option<Cow<'a, str>>,
}

impl<'de> Deserialize<'de> for Identity<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(Lenient(IdentityVisitor))
    }
}

pub(super) enum IdentityField {
    AccountId,
    Type,
    Other,
}

impl FromName for IdentityField {
    fn named(name: &str) -> Self {
        match name {
            "accountId" => IdentityField::AccountId,
            "type" => IdentityField::Type,
            _ => IdentityField::Other,
        }
    }
}

struct IdentityVisitor;

impl<'de> ObjectVisitor<'de> for IdentityVisitor {
    type Value = Identity<'de>;

    fn visit_object<A: MapAccess<'de>>(self, mut map: A) -> Result<Identity<'de>, A::Error> {
        let mut identity = Identity::default();
        while let Some(Key(field)) = map.next_key()? {
            match field {
                IdentityField::AccountId => identity.account_id = next_string(&mut map)?,
                IdentityField::Type => identity.kind = next_string(&mut map)?,
                IdentityField::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(identity)
    }

    fn not_an_object(self) -> Identity<'de> {
        Identity::default()
    }
}

impl<'de> Deserialize<'de> for RecordElement<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(Lenient(RecordVisitor))
    }
}

struct RecordVisitor;

impl<'de> ObjectVisitor<'de> for RecordVisitor {
    type Value = RecordElement<'de>;

    fn visit_object<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut f = RecordFields::default();
        while let Some(Key(field)) = map.next_key()? {
            let text = match field {
                Field::Text(text) => text,
                Field::UserIdentity => {
                    let identity: Identity = map.next_value()?;
                    (f.caller_account, f.caller_type) = (identity.account_id, identity.kind);
                    continue;
                }
                Field::RequestParameters => {
                    f.request_parameters = Some(raw_json(&mut map)?);
                    continue;
                }
                Field::Resources => {
                    f.resources = Some(raw_json(&mut map)?);
                    continue;
                }
                Field::Other => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            *f.text_slot(text) = next_string(&mut map)?;
        }
        Ok(RecordElement::Object(f))
    }

    fn not_an_object(self) -> RecordElement<'de> {
        RecordElement::NotAnObject
    }
}

/// What an object is read into, and what stands for any other value.
trait ObjectVisitor<'de> {
    type Value;
    fn visit_object<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error>;
    fn not_an_object(self) -> Self::Value;
}

/// Accepts a value of any type: objects go to the inner visitor, anything else is skipped.
struct Lenient<V>(V);

macro_rules! not_an_object {
    ($($method:ident($($arg:ty)?)),*) => {
        $(fn $method<E: serde::de::Error>(self $(, _: $arg)?) -> Result<Self::Value, E> {
            Ok(self.0.not_an_object())
        })*
    };
}

impl<'de, V: ObjectVisitor<'de>> Visitor<'de> for Lenient<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.0.visit_object(map)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<V::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(self.0.not_an_object())
    }

    not_an_object!(
        visit_bool(bool),
        visit_i64(i64),
        visit_u64(u64),
        visit_f64(f64),
        visit_str(&str),
        visit_unit()
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::trail::parse_record;
    use serde_json::json;

    /// The same record read both ways gives the same [`TrailRecord`] (or the same reason).
    fn both_ways(v: serde_json::Value) -> Result<TrailRecord, String> {
        let from_text = parse_record_text(&v.to_string());
        assert_eq!(from_text, parse_record(&v), "{v}");
        from_text
    }

    #[test]
    fn reads_what_a_value_reads() {
        let ua = "aws-controllers-k8s/ec2.services.k8s.aws-1.2.0 (GitCommit/x; BuildDate/y; CRDKind/SecurityGroup; CRDVersion/v1alpha1)";
        let cases = [
            json!({"eventID": "e1", "eventTime": "2024-01-05T08:00:00Z"}),
            json!({"eventID": "e\"1\\", "eventTime": "2024-01-05T08:00:00Z", "awsRegion": "eu-west-2\u{e9}"}),
            json!({"eventID": 7, "eventTime": "2024-01-05T08:00:00Z"}),
            json!({"eventID": "e", "eventTime": ["2024-01-05T08:00:00Z"]}),
            json!({"eventID": "e", "eventTime": "2024-01-05T08:00:00Z", "userIdentity": "AssumedRole"}),
            json!({"eventID": "e", "eventTime": "2024-01-05T08:00:00Z", "userIdentity": {"type": "AWSAccount", "accountId": "111122223333", "x": {"accountId": "9"}}, "recipientAccountId": "444455556666"}),
            json!({"eventID": "e", "eventTime": "2024-01-05T08:00:00Z", "eventID2": "x", "eventName": "AssumeRole", "eventSource": "sts.amazonaws.com", "requestParameters": {"roleArn": "arn:aws:iam::111122223333:role/r"}}),
            json!({"eventID": "e", "eventTime": "2024-01-05T08:00:00Z", "eventName": "AssumeRole", "requestParameters": ["roleArn"]}),
            json!({"eventID": "e", "eventTime": "2024-01-05T08:00:00Z", "userAgent": ua, "errorCode": "Client.InvalidVpcID.NotFound",
                "requestParameters": {"vpcId": "vpc-1", "tags": [{"key": "services.k8s.aws/namespace", "value": "uat"}], "n": 5, "e": ""},
                "resources": [{"ARN": "arn:aws:ec2:eu-west-2:1:security-group/sg-1"}, {"ARN": 3}, "x"]}),
            json!({"eventID": "e", "eventTime": "2024-01-05T08:00:00Z", "userAgent": ua, "resources": {"ARN": "a"}, "requestParameters": null}),
            json!({"eventID": "", "eventTime": "2024-01-05T08:00:00Z"}),
            json!({"eventID": "e", "eventTime": "yesterday"}),
            json!({"eventTime": "2024-01-05T08:00:00Z", "eventID": "first", "nested": {"eventID": "no"}}),
        ];
        for case in cases {
            let _ = both_ways(case);
        }
    }

    #[test]
    fn a_repeated_field_keeps_its_last_value_like_a_value_does() {
        let text = r#"{"eventID": "a", "eventID": "b", "eventTime": "2024-01-05T08:00:00Z"}"#;
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(parse_record_text(text), parse_record(&v));
        assert_eq!(parse_record_text(text).unwrap().event_id, "b");
    }

    #[test]
    fn other_values_are_not_records() {
        for text in ["[1, {}]", "\"x\"", "3", "true", "null"] {
            assert_eq!(
                parse_record_text(text),
                Err(NOT_AN_OBJECT.to_string()),
                "{text}"
            );
        }
        assert!(
            parse_record_text("{\"eventID\": ")
                .unwrap_err()
                .contains("is not JSON")
        );
    }
}
