//! One CloudTrail record, reduced to what classification and attribution need.

use std::borrow::Cow;

use serde::Serialize;
use serde_json::Value;

use super::account::arn_account;
use super::user_agent::{self, AckUserAgent};

/// A CloudTrail record, parsed once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrailRecord {
    pub event_id: String,
    /// Seconds since the epoch (`eventTime`).
    pub event_time: i64,
    /// `eventSource` without `.amazonaws.com` (`ec2`, `sts`).
    pub service: String,
    pub event_name: String,
    pub region: String,
    /// `recipientAccountId`: the account every CloudTrail figure is labelled with.
    pub account: String,
    /// `userIdentity.accountId`.
    pub caller_account: Option<String>,
    /// `userIdentity.type` (`AssumedRole`, `AWSAccount`, `AWSService`, ...).
    pub caller_type: Option<String>,
    /// `errorCode` without EC2's `Client.`/`Server.` prefix.
    pub error_code: Option<String>,
    pub shared_event_id: Option<String>,
    pub ack: Option<AckUserAgent>,
    /// `requestParameters.roleArn` of an `sts:AssumeRole`.
    pub assumed_role_arn: Option<String>,
    /// For ACK callers only: string leaves of `requestParameters` and `resources[].ARN`.
    pub request_values: Vec<String>,
    /// For ACK callers only: the `services.k8s.aws/namespace` tag in the request.
    pub namespace_tag: Option<String>,
}

/// The tag ACK puts on what it creates.
pub const NAMESPACE_TAG: &str = "services.k8s.aws/namespace";

/// Request values longer than this are documents, not identifiers.
const MAX_VALUE_LEN: usize = 512;

/// Strips the `Client.` / `Server.` prefix EC2 error codes carry in CloudTrail.
pub fn normalize_error_code(code: &str) -> &str {
    code.strip_prefix("Client.")
        .or_else(|| code.strip_prefix("Server."))
        .unwrap_or(code)
}

/// A record's fields as classification reads them, borrowed from wherever the record was
/// parsed: a `Value` ([`RecordFields::from_value`]) or JSON text read without building one
/// (`model::trail_json`). Only string values count; a field of another type is absent.
#[derive(Debug, Default)]
pub struct RecordFields<'a> {
    pub event_id: Option<Cow<'a, str>>,
    pub event_time: Option<Cow<'a, str>>,
    pub event_source: Option<Cow<'a, str>>,
    pub event_name: Option<Cow<'a, str>>,
    pub aws_region: Option<Cow<'a, str>>,
    pub recipient_account_id: Option<Cow<'a, str>>,
    /// `userIdentity.accountId`, `userIdentity.type`.
    pub caller_account: Option<Cow<'a, str>>,
    pub caller_type: Option<Cow<'a, str>>,
    pub error_code: Option<Cow<'a, str>>,
    pub shared_event_id: Option<Cow<'a, str>>,
    pub user_agent: Option<Cow<'a, str>>,
    /// Read only for ACK callers, so kept unparsed until then.
    pub request_parameters: Option<Json<'a>>,
    pub resources: Option<Json<'a>>,
}

/// A JSON value either already parsed or still text (checked JSON, as a `RawValue` holds).
#[derive(Debug, Clone, Copy)]
pub enum Json<'a> {
    Value(&'a Value),
    Text(&'a str),
}

impl<'a> Json<'a> {
    /// The value, parsed when it was still text (`None` if that text is not JSON).
    fn parsed(self) -> Option<Cow<'a, Value>> {
        match self {
            Json::Value(v) => Some(Cow::Borrowed(v)),
            Json::Text(text) => serde_json::from_str(text).ok().map(Cow::Owned),
        }
    }
}

fn str_at<'v>(v: &'v Value, pointer: &str) -> Option<Cow<'v, str>> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .map(Cow::Borrowed)
}

impl<'a> RecordFields<'a> {
    pub fn from_value(v: &'a Value) -> Self {
        RecordFields {
            event_id: str_at(v, "/eventID"),
            event_time: str_at(v, "/eventTime"),
            event_source: str_at(v, "/eventSource"),
            event_name: str_at(v, "/eventName"),
            aws_region: str_at(v, "/awsRegion"),
            recipient_account_id: str_at(v, "/recipientAccountId"),
            caller_account: str_at(v, "/userIdentity/accountId"),
            caller_type: str_at(v, "/userIdentity/type"),
            error_code: str_at(v, "/errorCode"),
            shared_event_id: str_at(v, "/sharedEventID"),
            user_agent: str_at(v, "/userAgent"),
            request_parameters: v.get("requestParameters").map(Json::Value),
            resources: v.get("resources").map(Json::Value),
        }
    }
}

/// A present, non-empty string field.
fn text<'f>(field: &'f Option<Cow<'_, str>>) -> Option<&'f str> {
    field.as_deref().filter(|s| !s.is_empty())
}

/// Reads one record. Errors say what is missing; the caller adds file and position.
pub fn parse_record(v: &Value) -> Result<TrailRecord, String> {
    if !v.is_object() {
        return Err(NOT_AN_OBJECT.into());
    }
    record_from_fields(&RecordFields::from_value(v))
}

pub const NOT_AN_OBJECT: &str = "record is not a JSON object";

/// The one place a record's fields become a [`TrailRecord`], whichever way they were read.
pub fn record_from_fields(f: &RecordFields) -> Result<TrailRecord, String> {
    let event_id = text(&f.event_id).ok_or("record without eventID; skipped")?;
    let time_text = text(&f.event_time).ok_or("record without eventTime; skipped")?;
    let event_time = super::time::parse_rfc3339(time_text)
        .ok_or_else(|| format!("eventTime {time_text:?} is not an RFC 3339 time; skipped"))?;
    let source = text(&f.event_source).unwrap_or("");
    let service = source.strip_suffix(".amazonaws.com").unwrap_or(source);
    let caller_account = text(&f.caller_account).map(String::from);
    let account = text(&f.recipient_account_id)
        .map(String::from)
        .or_else(|| caller_account.clone())
        .unwrap_or_default();
    let event_name = text(&f.event_name).unwrap_or("").to_string();
    let ack = text(&f.user_agent).and_then(user_agent::parse);
    let mut record = TrailRecord {
        event_id: event_id.to_string(),
        event_time,
        service: service.to_string(),
        event_name,
        region: text(&f.aws_region).unwrap_or("").to_string(),
        account,
        caller_account,
        caller_type: text(&f.caller_type).map(String::from),
        error_code: text(&f.error_code).map(|c| normalize_error_code(c).to_string()),
        shared_event_id: text(&f.shared_event_id).map(String::from),
        ack,
        assumed_role_arn: None,
        request_values: Vec::new(),
        namespace_tag: None,
    };
    if record.event_name == "AssumeRole" {
        record.assumed_role_arn = f.request_parameters.and_then(Json::parsed).and_then(|p| {
            p.get("roleArn")?
                .as_str()
                .filter(|s| !s.is_empty())
                .map(String::from)
        });
    }
    if record.ack.is_some() {
        collect_request_values(f, &mut record);
    }
    Ok(record)
}

/// For ACK callers: the string leaves of `requestParameters` and `resources[].ARN`.
fn collect_request_values(f: &RecordFields, record: &mut TrailRecord) {
    if let Some(params) = f.request_parameters.and_then(Json::parsed) {
        collect_strings(
            &params,
            &mut record.request_values,
            &mut record.namespace_tag,
            0,
        );
    }
    if let Some(resources) = f.resources.and_then(Json::parsed)
        && let Some(resources) = resources.as_array()
    {
        for r in resources {
            if let Some(arn) = r.get("ARN").and_then(Value::as_str) {
                record.request_values.push(arn.to_string());
            }
        }
    }
    record.request_values.sort();
    record.request_values.dedup();
}

/// Every string leaf, at any depth; a `{key|Key: services.k8s.aws/namespace, value|Value: ns}`
/// pair also yields the namespace tag.
fn collect_strings(v: &Value, out: &mut Vec<String>, ns_tag: &mut Option<String>, depth: usize) {
    if depth > 32 {
        return;
    }
    match v {
        Value::String(s) if !s.is_empty() && s.len() <= MAX_VALUE_LEN => out.push(s.clone()),
        Value::Array(a) => a
            .iter()
            .for_each(|x| collect_strings(x, out, ns_tag, depth + 1)),
        Value::Object(m) => {
            let key = m
                .get("key")
                .or_else(|| m.get("Key"))
                .and_then(Value::as_str);
            let value = m
                .get("value")
                .or_else(|| m.get("Value"))
                .and_then(Value::as_str);
            if key == Some(NAMESPACE_TAG)
                && let Some(ns) = value
            {
                *ns_tag = Some(ns.to_string());
            }
            m.values()
                .for_each(|x| collect_strings(x, out, ns_tag, depth + 1));
        }
        _ => {}
    }
}

impl TrailRecord {
    /// The account of the role an `sts:AssumeRole` asks for.
    pub fn assumed_role_account(&self) -> Option<String> {
        self.assumed_role_arn.as_deref().and_then(arn_account)
    }

    /// ACK's own `sts:AssumeRole` calls: pivots into an account, not calls on a resource.
    pub fn is_ack_pivot(&self) -> bool {
        self.ack.is_some() && self.service == "sts" && self.event_name.starts_with("AssumeRole")
    }
}

/// Why an ACK event was not tied to a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unattributed {
    /// No identifier of any CR of the kind appears in the request.
    NoMatch,
    /// Several CRs remain after every narrowing step.
    Ambiguous,
    /// The user agent names no kind (an older controller, or cut at 1 KB).
    NoKind,
}

impl Unattributed {
    pub fn as_str(self) -> &'static str {
        match self {
            Unattributed::NoMatch => "no_match",
            Unattributed::Ambiguous => "ambiguous",
            Unattributed::NoKind => "no_kind",
        }
    }
}

/// Which CloudTrail streams a LookupEvents poller reads: made by `evaluate::lookup_plan`.
/// One account to read, with the role to assume there (none: the exporter's own credentials).
#[derive(Debug, Clone, PartialEq)]
pub struct AccountPlan {
    pub account: String,
    pub role_arn: Option<String>,
    pub regions: Vec<String>,
    pub requests_per_second: f64,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct LookupPlan {
    pub accounts: Vec<AccountPlan>,
    /// `ec2.amazonaws.com`, ...: the same for every account and region.
    pub event_sources: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn error_codes_lose_their_ec2_prefix() {
        assert_eq!(
            normalize_error_code("Client.InvalidVpcID.NotFound"),
            "InvalidVpcID.NotFound"
        );
        assert_eq!(
            normalize_error_code("Server.InternalError"),
            "InternalError"
        );
        assert_eq!(normalize_error_code("AccessDenied"), "AccessDenied");
    }

    #[test]
    fn ack_record() {
        let r = parse_record(&json!({
            "eventID": "e1", "eventTime": "2024-01-05T08:00:00Z",
            "eventSource": "ec2.amazonaws.com", "eventName": "CreateSecurityGroup",
            "awsRegion": "eu-west-2", "recipientAccountId": "178394743802",
            "userIdentity": {"type": "AssumedRole", "accountId": "178394743802"},
            "userAgent": "aws-controllers-k8s/ec2.services.k8s.aws-1.2.0 (GitCommit/x; BuildDate/y; CRDKind/SecurityGroup; CRDVersion/v1alpha1)",
            "errorCode": "Client.InvalidVpcID.NotFound",
            "requestParameters": {"groupName": "g", "vpcId": "vpc-1",
                "tagSpecificationSet": {"items": [{"resourceType": "security-group", "tags": [{"key": "services.k8s.aws/namespace", "value": "uat"}]}]}},
            "resources": [{"ARN": "arn:aws:ec2:eu-west-2:178394743802:security-group/sg-1"}]
        }))
        .unwrap();
        assert_eq!(r.service, "ec2");
        assert_eq!(r.account, "178394743802");
        assert_eq!(r.error_code.as_deref(), Some("InvalidVpcID.NotFound"));
        assert_eq!(
            r.ack.as_ref().unwrap().kind.as_deref(),
            Some("SecurityGroup")
        );
        assert_eq!(r.namespace_tag.as_deref(), Some("uat"));
        assert!(r.request_values.contains(&"vpc-1".to_string()));
        assert!(
            r.request_values
                .contains(&"arn:aws:ec2:eu-west-2:178394743802:security-group/sg-1".to_string())
        );
        assert_eq!(r.event_time, 1_704_441_600);
    }

    #[test]
    fn non_ack_records_keep_no_request_values() {
        let r = parse_record(&json!({"eventID": "e", "eventTime": "2024-01-05T08:00:00Z", "requestParameters": {"a": "b"}, "userAgent": "aws-cli/2"})).unwrap();
        assert!(r.request_values.is_empty());
        assert_eq!(r.ack, None);
    }

    #[test]
    fn missing_fields_are_reasons() {
        assert!(
            parse_record(&json!({"eventTime": "2024-01-05T08:00:00Z"}))
                .unwrap_err()
                .contains("eventID")
        );
        assert!(
            parse_record(&json!({"eventID": "x"}))
                .unwrap_err()
                .contains("eventTime")
        );
        assert!(parse_record(&json!([1])).is_err());
    }
}
