//! The config file (`--config`, YAML). Unknown keys are errors naming the key and line.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::model::account::is_account_id;
use crate::model::runtime_version::RuntimeSetting;

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Per service alias (`ec2`, `s3`): overrides of what the controller's Deployment says.
    #[serde(default)]
    pub controllers: BTreeMap<String, ControllerOverride>,
    #[serde(default)]
    pub kube: KubeConfig,
    #[serde(default)]
    pub cloudtrail: CloudTrailConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Leave out per-resource series whose value is 0 (for very large estates).
    #[serde(default)]
    pub omit_zero_series: bool,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ControllerOverride {
    #[serde(default, deserialize_with = "account_opt")]
    pub default_account: Option<String>,
    pub default_region: Option<String>,
    /// The ACK runtime the controller was built with: `v0.35.0`, or legacy | namespace-first
    /// | strict (v0.35.0, v0.52.0, the newest known).
    #[serde(default, deserialize_with = "runtime_opt")]
    pub runtime: Option<RuntimeSetting>,
    pub enable_carm: Option<bool>,
    pub feature_gates: Option<BTreeMap<String, bool>>,
    pub system_namespace: Option<String>,
    /// `--watch-namespace`, as a list; an empty list means every namespace.
    pub watch_namespaces: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KubeConfig {
    /// Namespaces holding ACK controllers (their Deployments, ServiceAccounts, CARM maps).
    #[serde(default = "default_controller_namespaces")]
    pub controller_namespaces: Vec<String>,
}

impl Default for KubeConfig {
    fn default() -> Self {
        KubeConfig {
            controller_namespaces: default_controller_namespaces(),
        }
    }
}

fn default_controller_namespaces() -> Vec<String> {
    vec!["ack-system".to_string()]
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CloudTrailConfig {
    pub accounts: Option<Accounts>,
    pub role_arn_template: Option<String>,
    pub regions: Option<Vec<String>>,
    pub event_sources: Option<EventSources>,
    #[serde(default = "d60s", deserialize_with = "duration")]
    pub poll_interval: Duration,
    /// Per-resource window; `None` when not written (the exporter then uses 1h, the audit
    /// the whole input).
    #[serde(default, deserialize_with = "duration_opt")]
    pub window: Option<Duration>,
    /// How long CloudTrail may take to deliver an event late (the key is `overlap`): each
    /// range is read again once it has passed.
    #[serde(rename = "overlap", default = "d15m", deserialize_with = "duration")]
    pub delivery_allowance: Duration,
    /// LookupEvents requests per second per (account, region), all event sources together:
    /// CloudTrail allows 2, and other readers of the same account share that ceiling.
    #[serde(default = "two")]
    pub requests_per_second: f64,
    /// Attribution identifier rules per kind (`SecurityGroup` or
    /// `SecurityGroup.ec2.services.k8s.aws`), replacing the default rules for that kind.
    #[serde(default)]
    pub identifiers: BTreeMap<String, IdentifierRule>,
    /// The organisation trail's notifications (README "Reading an organisation trail").
    pub sqs: Option<QueueConfig>,
    /// The organisation trail's bucket, read back over the window at start.
    pub s3: Option<BucketConfig>,
}

/// `cloudtrail.sqs`: the queue the trail's notifications arrive on.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    pub queue_url: String,
    #[serde(default)]
    pub format: QueueFormat,
    pub role_arn: Option<String>,
    /// Default: the region in the queue URL, else the SDK's.
    pub region: Option<String>,
    /// Also read `CloudTrail-Insight/` deliveries the queue announces.
    #[serde(default)]
    pub insight_events: bool,
}

/// What a queue message holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueFormat {
    /// S3 event notifications of new trail objects (direct, through SNS, or EventBridge
    /// "Object Created").
    #[default]
    S3Notification,
    /// EventBridge "AWS API Call via CloudTrail" events, the record in `detail`.
    Eventbridge,
}

/// `cloudtrail.s3`: where the trail writes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BucketConfig {
    pub bucket: String,
    /// The trail's key prefix, before `AWSLogs/`.
    #[serde(default)]
    pub prefix: String,
    #[serde(default)]
    pub accounts: Folders,
    #[serde(default)]
    pub regions: Folders,
    pub role_arn: Option<String>,
    /// Default: the SDK's region.
    pub region: Option<String>,
    /// Path-style addressing, for S3-compatible endpoints.
    #[serde(default)]
    pub path_style: bool,
    /// Also read `CloudTrail-Insight/` folders.
    #[serde(default)]
    pub insight_events: bool,
}

/// `auto` (every folder found under the prefix) or a list.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Folders {
    Keyword(Auto),
    List(Vec<String>),
}

impl Default for Folders {
    fn default() -> Self {
        Folders::Keyword(Auto::Auto)
    }
}

impl Folders {
    /// Whether a folder found under the prefix is read.
    pub fn admits(&self, name: &str) -> bool {
        match self {
            Folders::Keyword(Auto::Auto) => true,
            Folders::List(l) => l.iter().any(|n| n == name),
        }
    }
}

/// Which top-level fields of a CR identify it in CloudTrail requests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentifierRule {
    /// Top-level `spec` fields whose string values identify the CR.
    #[serde(default)]
    pub spec: Vec<String>,
    /// Top-level `status` fields whose string values identify the CR.
    #[serde(default)]
    pub status: Vec<String>,
    /// Whether `status.ackResourceMetadata.arn` identifies it (default true).
    #[serde(default = "yes")]
    pub arn: bool,
}

fn yes() -> bool {
    true
}

impl Default for CloudTrailConfig {
    fn default() -> Self {
        CloudTrailConfig {
            accounts: None,
            role_arn_template: None,
            regions: None,
            event_sources: None,
            poll_interval: d60s(),
            window: None,
            delivery_allowance: d15m(),
            requests_per_second: two(),
            identifiers: BTreeMap::new(),
            sqs: None,
            s3: None,
        }
    }
}

fn two() -> f64 {
    2.0
}

fn d60s() -> Duration {
    Duration::from_secs(60)
}
/// The exporter's per-resource window when the config sets none.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(3600);
fn d15m() -> Duration {
    Duration::from_secs(900)
}

/// `accounts: auto` or a list of accounts.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Accounts {
    Keyword(Auto),
    List(Vec<AccountEntry>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Auto {
    Auto,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountEntry {
    #[serde(deserialize_with = "account")]
    pub account: String,
    pub role_arn: Option<String>,
    pub regions: Option<Vec<String>>,
    /// This account's budget, when lower than `cloudtrail.requests_per_second`.
    pub requests_per_second: Option<f64>,
}

/// `event_sources: auto` or a list such as `[ec2.amazonaws.com]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum EventSources {
    Keyword(Auto),
    List(Vec<String>),
}

/// Accepts `"012345678901"` and unquoted `12345678901` (leading zeros restored).
fn account<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        S(String),
        N(u64),
    }
    let s = match Raw::deserialize(d)? {
        Raw::S(s) => s,
        Raw::N(n) => format!("{n:012}"),
    };
    if is_account_id(&s) {
        Ok(s)
    } else {
        Err(serde::de::Error::custom(format!(
            "{s:?} is not a 12-digit AWS account id"
        )))
    }
}

fn account_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    account(d).map(Some)
}

fn runtime_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<RuntimeSetting>, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map(Some).map_err(serde::de::Error::custom)
}

fn duration_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

/// Durations written like Prometheus's: `90s`, `15m`, `1h`, `1h30m`, `2d`, `500ms`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration (write e.g. 90s, 15m, 1h)");
    if s.is_empty() {
        return Err(bad());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(|b| b.is_ascii_alphabetic()).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let part = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.checked_mul(60).ok_or_else(bad)?),
            "h" => Duration::from_secs(n.checked_mul(3600).ok_or_else(bad)?),
            "d" => Duration::from_secs(n.checked_mul(86_400).ok_or_else(bad)?),
            _ => return Err(bad()),
        };
        total = total.checked_add(part).ok_or_else(bad)?;
    }
    Ok(total)
}

/// A config file that could not be used: the file, the line and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{}{message}", line.map_or(" ".to_string(), |l| format!("{l}: ")))]
pub struct ConfigError {
    pub file: String,
    pub line: Option<usize>,
    pub message: String,
}

/// What is wrong in config text: the line, when the parser knows it, and the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", line.map_or(String::new(), |l| format!("line {l}: ")))]
pub struct ConfigTextError {
    pub line: Option<usize>,
    pub message: String,
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            line: None,
            message: format!("cannot read: {e}"),
        })?;
        Config::parse(&text).map_err(|e| ConfigError {
            file,
            line: e.line,
            message: e.message,
        })
    }

    /// Parses config text; errors give the line and the message.
    pub fn parse(text: &str) -> Result<Config, ConfigTextError> {
        if text
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
        {
            return Ok(Config::default());
        }
        let config: Config = serde_saphyr::from_str(text).map_err(|e| {
            let shown = e.to_string();
            let first = shown.lines().next().unwrap_or("").trim();
            let first = first.strip_prefix("error: ").unwrap_or(first);
            let message = match first.strip_prefix("line ").and_then(|r| r.split_once(": ")) {
                Some((_, msg)) => msg.to_string(),
                None => first.to_string(),
            };
            ConfigTextError {
                line: e.location().map(|l| l.line() as usize),
                message,
            }
        })?;
        config.validate().map_err(|message| ConfigTextError {
            line: None,
            message,
        })?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        for (service, c) in &self.controllers {
            if service.is_empty() || service.contains('.') {
                return Err(format!(
                    "controllers: {service:?} is not a service alias (write e.g. ec2, s3)"
                ));
            }
            if c.default_region.as_deref() == Some("") {
                return Err(format!("controllers.{service}.default_region is empty"));
            }
        }
        if let Some(t) = &self.cloudtrail.role_arn_template
            && !t.contains("{account}")
        {
            return Err("cloudtrail.role_arn_template must contain {account}".to_string());
        }
        let budgets = std::iter::once(self.cloudtrail.requests_per_second).chain(
            match &self.cloudtrail.accounts {
                Some(Accounts::List(l)) => l.iter().filter_map(|a| a.requests_per_second).collect(),
                _ => Vec::new(),
            },
        );
        for rps in budgets {
            if !(rps > 0.0 && rps <= 2.0) {
                return Err(format!(
                    "cloudtrail requests_per_second {rps}: must be above 0 and at most 2 (the LookupEvents ceiling per account and region)"
                ));
            }
        }
        if self.cloudtrail.poll_interval.is_zero() {
            return Err("cloudtrail.poll_interval must be longer than 0s".to_string());
        }
        if self.cloudtrail.window.is_some_and(|w| w.is_zero()) {
            return Err("cloudtrail.window must be longer than 0s".to_string());
        }
        self.validate_org_trail()
    }

    fn validate_org_trail(&self) -> Result<(), String> {
        let c = &self.cloudtrail;
        if c.sqs.is_some() && c.accounts.is_some() {
            return Err("cloudtrail.sqs and cloudtrail.accounts read the same events two ways: keep one (the organisation trail through SQS, or LookupEvents per account)".to_string());
        }
        if let Some(q) = &c.sqs
            && !(q.queue_url.starts_with("https://") || q.queue_url.starts_with("http://"))
        {
            return Err(format!(
                "cloudtrail.sqs.queue_url {:?}: write the queue's URL (https://sqs.<region>.amazonaws.com/<account>/<name>)",
                q.queue_url
            ));
        }
        if let Some(b) = &c.s3 {
            if b.bucket.is_empty() || b.bucket.contains('/') {
                return Err(format!(
                    "cloudtrail.s3.bucket {:?}: write the bucket's name (the key prefix goes in cloudtrail.s3.prefix)",
                    b.bucket
                ));
            }
            if let Folders::List(l) = &b.accounts
                && let Some(bad) = l.iter().find(|a| !is_account_id(a))
            {
                return Err(format!(
                    "cloudtrail.s3.accounts: {bad:?} is not a 12-digit AWS account id (quote it)"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normative_keys_parse() {
        let c = Config::parse(
            r#"
controllers:
  ec2:
    default_account: "178394743802"
    default_region: eu-west-2
    runtime: legacy
    enable_carm: true
    feature_gates: {TeamLevelCARM: true, ServiceLevelCARM: false, IAMRoleSelector: false}
    system_namespace: ack-system
cloudtrail:
  accounts: auto
  role_arn_template: "arn:aws:iam::{account}:role/ack-drift-exporter"
  regions: [eu-west-2]
  event_sources: auto
  poll_interval: 90s
  window: 1h
  overlap: 15m
"#,
        )
        .unwrap();
        let ec2 = &c.controllers["ec2"];
        assert_eq!(ec2.default_account.as_deref(), Some("178394743802"));
        let runtime = ec2.runtime.unwrap();
        assert_eq!(runtime.version.to_string(), "v0.35.0");
        assert_eq!(runtime.name.map(|n| n.as_str()), Some("legacy"));
        let versioned = Config::parse("controllers:\n  s3:\n    runtime: v0.29.2\n").unwrap();
        let runtime = versioned.controllers["s3"].runtime.unwrap();
        assert_eq!(
            (runtime.version.to_string(), runtime.name),
            ("v0.29.2".into(), None)
        );
        assert!(ec2.feature_gates.as_ref().unwrap()["TeamLevelCARM"]);
        assert_eq!(c.cloudtrail.accounts, Some(Accounts::Keyword(Auto::Auto)));
        assert_eq!(c.cloudtrail.poll_interval, Duration::from_secs(90));
        assert_eq!(c.cloudtrail.delivery_allowance, Duration::from_secs(900));
        assert_eq!(c.cloudtrail.window, Some(Duration::from_secs(3600)));
    }

    #[test]
    fn account_list_and_unquoted_ids() {
        let c = Config::parse(
            "cloudtrail:\n  accounts:\n  - account: 12345678901\n    regions: [eu-west-1]\ncontrollers:\n  s3:\n    default_account: 474417630776\n",
        )
        .unwrap();
        let Some(Accounts::List(l)) = &c.cloudtrail.accounts else {
            panic!()
        };
        assert_eq!(l[0].account, "012345678901");
        assert_eq!(
            c.controllers["s3"].default_account.as_deref(),
            Some("474417630776")
        );
    }

    #[test]
    fn unknown_keys_name_key_and_line() {
        let ConfigTextError { line, message: msg } =
            Config::parse("controllers:\n  ec2:\n    runtime: legacy\n    enable_cram: true\n")
                .unwrap_err();
        assert_eq!(line, Some(4));
        assert!(msg.contains("enable_cram"), "{msg}");
        let ConfigTextError { line, message: msg } = Config::parse("controlers: {}\n").unwrap_err();
        assert_eq!(line, Some(1));
        assert!(msg.contains("controlers"), "{msg}");
    }

    #[test]
    fn organisation_trail_keys_parse() {
        let c = Config::parse(
            "cloudtrail:\n  sqs:\n    queue_url: https://sqs.eu-west-2.amazonaws.com/111111111111/org-trail\n    format: eventbridge\n    role_arn: arn:aws:iam::111111111111:role/q\n  s3:\n    bucket: org-trail\n    prefix: logs/\n    accounts: [\"222222222222\"]\n    regions: auto\n    path_style: true\n",
        )
        .unwrap();
        let q = c.cloudtrail.sqs.unwrap();
        assert_eq!(q.format, QueueFormat::Eventbridge);
        assert!(!q.insight_events);
        let b = c.cloudtrail.s3.unwrap();
        assert_eq!(
            (b.bucket.as_str(), b.prefix.as_str()),
            ("org-trail", "logs/")
        );
        assert!(b.accounts.admits("222222222222") && !b.accounts.admits("333333333333"));
        assert!(b.regions.admits("eu-west-2"));
        assert!(b.path_style);
        let q = Config::parse("cloudtrail:\n  sqs:\n    queue_url: https://q/1/x\n").unwrap();
        assert_eq!(
            q.cloudtrail.sqs.unwrap().format,
            QueueFormat::S3Notification
        );
    }

    #[test]
    fn organisation_trail_mistakes_are_named() {
        let cases = [
            (
                "cloudtrail:\n  accounts: auto\n  sqs:\n    queue_url: https://q/1/x\n",
                "two ways",
            ),
            (
                "cloudtrail:\n  sqs:\n    queue_url: org-trail\n",
                "queue's URL",
            ),
            (
                "cloudtrail:\n  sqs:\n    queue_url: https://q/1/x\n    format: cloudwatch\n",
                "cloudwatch",
            ),
            ("cloudtrail:\n  s3:\n    bucket: org-trail/logs\n", "prefix"),
            (
                "cloudtrail:\n  s3:\n    bucket: b\n    accounts: [\"1234\"]\n",
                "12-digit",
            ),
            (
                "cloudtrail:\n  s3:\n    bucket: b\n    bucket_region: x\n",
                "bucket_region",
            ),
        ];
        for (text, says) in cases {
            let e = Config::parse(text).unwrap_err();
            assert!(e.to_string().contains(says), "{text}: {e}");
        }
    }

    #[test]
    fn bad_values_are_errors() {
        let ConfigTextError { line, message: msg } =
            Config::parse("controllers:\n  ec2:\n    runtime: newest\n").unwrap_err();
        assert_eq!(line, Some(3));
        assert!(msg.contains("\"newest\" is not a runtime version"), "{msg}");
        assert!(Config::parse("controllers:\n  ec2:\n    default_account: '1234'\n").is_err());
        assert!(Config::parse("cloudtrail:\n  window: 1y\n").is_err());
        assert!(
            Config::parse("cloudtrail:\n  role_arn_template: arn:aws:iam::1:role/x\n").is_err()
        );
        assert_eq!(Config::parse("# nothing\n").unwrap(), Config::default());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("m5").is_err());
    }
}
