//! One CloudTrail record, reduced to what classification and attribution need.

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

fn str_at<'v>(v: &'v Value, pointer: &str) -> Option<&'v str> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// Reads one record. Errors say what is missing; the caller adds file and position.
pub fn parse_record(v: &Value) -> Result<TrailRecord, String> {
    if !v.is_object() {
        return Err("record is not a JSON object".into());
    }
    let event_id = str_at(v, "/eventID").ok_or("record without eventID; skipped")?;
    let time_text = str_at(v, "/eventTime").ok_or("record without eventTime; skipped")?;
    let event_time = super::time::parse_rfc3339(time_text)
        .ok_or_else(|| format!("eventTime {time_text:?} is not an RFC 3339 time; skipped"))?;
    let source = str_at(v, "/eventSource").unwrap_or("");
    let service = source.strip_suffix(".amazonaws.com").unwrap_or(source);
    let caller_account = str_at(v, "/userIdentity/accountId").map(String::from);
    let account = str_at(v, "/recipientAccountId")
        .map(String::from)
        .or_else(|| caller_account.clone())
        .unwrap_or_default();
    let event_name = str_at(v, "/eventName").unwrap_or("").to_string();
    let ack = str_at(v, "/userAgent").and_then(user_agent::parse);
    let assumed_role_arn = if event_name == "AssumeRole" {
        str_at(v, "/requestParameters/roleArn").map(String::from)
    } else {
        None
    };
    let mut record = TrailRecord {
        event_id: event_id.to_string(),
        event_time,
        service: service.to_string(),
        event_name,
        region: str_at(v, "/awsRegion").unwrap_or("").to_string(),
        account,
        caller_account,
        caller_type: str_at(v, "/userIdentity/type").map(String::from),
        error_code: str_at(v, "/errorCode").map(|c| normalize_error_code(c).to_string()),
        shared_event_id: str_at(v, "/sharedEventID").map(String::from),
        ack,
        assumed_role_arn,
        request_values: Vec::new(),
        namespace_tag: None,
    };
    if record.ack.is_some() {
        if let Some(params) = v.get("requestParameters") {
            collect_strings(
                params,
                &mut record.request_values,
                &mut record.namespace_tag,
                0,
            );
        }
        if let Some(resources) = v.get("resources").and_then(Value::as_array) {
            for r in resources {
                if let Some(arn) = r.get("ARN").and_then(Value::as_str) {
                    record.request_values.push(arn.to_string());
                }
            }
        }
        record.request_values.sort();
        record.request_values.dedup();
    }
    Ok(record)
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
