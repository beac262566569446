//! An AWS Organizations CloudTrail trail, generated: a cluster dump of ACK SecurityGroups in
//! several accounts, records about them and about everything else, the gzipped S3 deliveries
//! in the real key layout, the messages S3, SNS and EventBridge send about them, poison for
//! the readers, and the ground truth, counted here from the records alone.
//!
//! Deterministic for a seed (a xorshift generator; no rand crate). Include it with
//! `#[path = "support/org_trail.rs"] mod org_trail;`.
//!
//! What each kind of record exercises (README "How CloudTrail events are tied to resources",
//! `src/evaluate/cloudtrail.rs`):
//! - [`RecordKind::OnGroup`]: an ACK call (`CRDKind/SecurityGroup`) naming one group's
//!   `status.id` somewhere in `requestParameters` (top-level `groupId`, or nested): a value
//!   held by exactly one CR decides. With an `errorCode` it is one of the group's
//!   `error_events` (per recipient account, region and code, EC2's `Client.` prefix
//!   stripped); made in an account other than the group's target it is one of its
//!   `wrong_account_calls`.
//! - [`RecordKind::OnDeletedGroup`]: an ACK call naming a group id no CR holds:
//!   unattributed, `no_match`.
//! - [`RecordKind::NoKind`]: an ACK user agent without `CRDKind`: unattributed, `no_kind`.
//! - [`RecordKind::Pivot`]: ACK's own `sts:AssumeRole` from the home account into a role of
//!   another account, logged in both accounts with one `sharedEventID`: two events, one
//!   cross-account call (`assume_role`, expected when the account map names the role),
//!   never a call on a resource.
//! - [`RecordKind::Noise`]: anyone else (CLI, console, SDKs, AWS services) on several
//!   services, some failing, some naming an ACK group's id: counted, never attributed.
//!
//! Every record has a fresh UUID eventID and its caller's account equals its recipient's
//! (pivots aside), so no other cross-account signal arises.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use ack_drift_exporter::model::time::format_rfc3339 as rfc3339;

/// The user agent of the ec2 controller reconciling a SecurityGroup.
pub const ACK_UA: &str = "aws-controllers-k8s/ec2.services.k8s.aws-v1.20.0 (GitCommit/5e1f0a7c; BuildDate/2026-08-14T09:12; CRDKind/SecurityGroup; CRDVersion/v1alpha1) aws-sdk-go-v2/1.36.3 os/linux lang/go#1.24.4 md/GOOS#linux md/GOARCH#amd64";
/// An old controller's user agent: no `CRDKind`.
pub const ACK_UA_NO_KIND: &str = "aws-controllers-k8s/ec2.services.k8s.aws-v0.0.2 (GitCommit/1a2b3c4d; BuildDate/2021-06-01T10:00) aws-sdk-go/1.38.0 (go1.16.4; linux; amd64)";
const NOISE_AGENTS: [&str; 4] = [
    "aws-cli/2.15.30 Python/3.11.8 Linux/6.1.79 exe/x86_64.amzn.2023 prompt/off command/ec2.describe-instances",
    "console.amazonaws.com",
    "Boto3/1.34.69 md/Botocore#1.34.69 ua/2.0 os/linux#6.1.79 md/arch#x86_64 lang/python#3.11.8",
    "terraform-provider-aws/5.42.0 (+https://registry.terraform.io) aws-sdk-go-v2/1.26.0",
];
/// (eventSource, event names, error codes as CloudTrail writes them).
const NOISE_SERVICES: [(&str, &[&str], &[&str]); 6] = [
    (
        "ec2.amazonaws.com",
        &[
            "DescribeInstances",
            "DescribeSecurityGroups",
            "RunInstances",
        ],
        &[
            "Client.UnauthorizedOperation",
            "Client.InvalidInstanceID.NotFound",
        ],
    ),
    (
        "s3.amazonaws.com",
        &["GetBucketAcl", "ListBuckets", "PutBucketPolicy"],
        &["AccessDenied", "NoSuchBucket"],
    ),
    (
        "kms.amazonaws.com",
        &["Decrypt", "GenerateDataKey"],
        &["AccessDeniedException"],
    ),
    (
        "lambda.amazonaws.com",
        &["ListFunctions20150331", "GetFunction20150331v2"],
        &["ResourceNotFoundException"],
    ),
    (
        "logs.amazonaws.com",
        &["CreateLogStream", "DescribeLogGroups"],
        &["ThrottlingException"],
    ),
    (
        "sts.amazonaws.com",
        &["GetCallerIdentity"],
        &["ExpiredTokenException"],
    ),
];
/// The ec2 controller's calls on a group.
const GROUP_CALLS: [&str; 5] = [
    "DescribeSecurityGroups",
    "AuthorizeSecurityGroupIngress",
    "RevokeSecurityGroupEgress",
    "ModifySecurityGroupRules",
    "CreateTags",
];
const GROUP_ERRORS: [&str; 3] = [
    "Client.InvalidGroup.NotFound",
    "Client.InvalidPermission.Duplicate",
    "UnauthorizedOperation",
];
const REGIONS: [&str; 4] = ["eu-west-2", "us-east-1", "eu-central-1", "ap-southeast-2"];
/// CloudTrail delivers a file per account and region about every five minutes.
pub const DELIVERY_SLOT: i64 = 300;
pub const SYSTEM_NAMESPACE: &str = "ack-system";
pub const TRAIL_NAME: &str = "org-trail";
const LOWER_ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// xorshift64*: deterministic, good enough for test data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng((seed ^ 0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (n > 0; the modulo bias is irrelevant here).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn percent(&mut self, p: usize) -> bool {
        self.below(100) < p
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    pub fn text(&mut self, n: usize, alphabet: &[u8]) -> String {
        (0..n).map(|_| *self.pick(alphabet) as char).collect()
    }

    /// A version 4 UUID, as CloudTrail writes eventIDs.
    pub fn uuid(&mut self) -> String {
        let (a, b) = (self.next_u64(), self.next_u64());
        let b = (b & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            b >> 48,
            b & 0xffff_ffff_ffff
        )
    }
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct OrgSpec {
    /// `o-` and 10 lowercase letters or digits.
    pub org_id: String,
    /// The first is the controller's own (home) account.
    pub accounts: Vec<String>,
    /// The first is the controller's default region.
    pub regions: Vec<String>,
    /// Epoch seconds; records' eventTime is spread over `[now - span, now]`.
    pub now: i64,
    pub span: i64,
    /// Records in all, the two copies of a pivot included.
    pub records: usize,
    pub security_groups: usize,
    pub seed: u64,
}

impl OrgSpec {
    /// `accounts` (`111111111111`, `222222222222`, ...) × `regions`, six hours, 300 groups.
    pub fn new(accounts: usize, regions: usize, records: usize, now: i64, seed: u64) -> OrgSpec {
        assert!(
            (1..=9).contains(&accounts) && (1..=REGIONS.len()).contains(&regions),
            "1–9 accounts and 1–{} regions",
            REGIONS.len()
        );
        OrgSpec {
            org_id: format!("o-{}", Rng::new(seed).text(10, LOWER_ALNUM)),
            accounts: (1..=accounts).map(|d| d.to_string().repeat(12)).collect(),
            regions: REGIONS[..regions].iter().map(|r| r.to_string()).collect(),
            now,
            span: 6 * 3600,
            records,
            security_groups: 300,
            seed,
        }
    }

    pub fn home(&self) -> &str {
        &self.accounts[0]
    }
}

/// One ACK SecurityGroup of the cluster dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub namespace: String,
    pub name: String,
    /// `status.id`.
    pub id: String,
    /// The account it belongs in (its namespace's owner account, or the home account).
    pub account: String,
    pub region: String,
}

impl Group {
    pub fn key(&self) -> String {
        format!("{}/SecurityGroup/{}", self.namespace, self.name)
    }

    pub fn arn(&self) -> String {
        format!(
            "arn:aws:ec2:{}:{}:security-group/{}",
            self.region, self.account, self.id
        )
    }
}

/// The kinds of generated record (see the module comment for the rule each exercises).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    OnGroup,
    OnDeletedGroup,
    NoKind,
    Pivot,
    Noise,
}

/// One gzipped S3 delivery object of the trail.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub account: String,
    pub region: String,
    /// The end of its five-minute slot: the time in its key.
    pub delivered_at: i64,
    /// Its key from `AWSLogs/` on (without any prefix).
    pub key: String,
    pub records: usize,
    /// Gzipped `{"Records":[...]}`.
    pub body: Vec<u8>,
}

/// The generated trail, its cluster and its truth.
pub struct OrgTrail {
    pub spec: OrgSpec,
    pub groups: Vec<Group>,
    /// Ids that look like the groups' but belong to no CR (deleted groups).
    pub deleted_ids: Vec<String>,
    /// Role ARNs the `ack-role-account-map` names.
    pub mapped_roles: BTreeSet<String>,
    pub records: Vec<Value>,
    pub deliveries: Vec<Delivery>,
    pub truth: Truth,
}

impl OrgTrail {
    pub fn generate(spec: OrgSpec) -> OrgTrail {
        let mut rng = Rng::new(spec.seed.wrapping_add(1));
        let mut ids = BTreeSet::new();
        let groups = make_groups(&spec, &mut rng, &mut ids);
        let deleted_ids = (0..20)
            .map(|_| fresh_group_id(&mut rng, &mut ids))
            .collect();
        let mapped_roles = spec.accounts.iter().map(|a| ack_role(a)).collect();
        let mut trail = OrgTrail {
            spec,
            groups,
            deleted_ids,
            mapped_roles,
            records: Vec::new(),
            deliveries: Vec::new(),
            truth: Truth::default(),
        };
        trail.records = make_records(&trail, &mut rng);
        trail.deliveries = make_deliveries(&trail.spec, &trail.records, &mut rng);
        trail.truth = Truth::of(&trail);
        trail
    }

    /// The cluster dump: namespaces (the non-home ones annotated with their owner account),
    /// the ec2 controller (ec2-controller 1.20.0, runtime v0.62.0, home account from its
    /// ServiceAccount), the account map naming every account's role, and the groups.
    pub fn cluster_yaml(&self) -> String {
        let mut docs = vec![namespace_yaml(SYSTEM_NAMESPACE, None)];
        for a in &self.spec.accounts {
            let owner = (a != self.spec.home()).then_some(a.as_str());
            docs.push(namespace_yaml(&namespace_of(a), owner));
        }
        docs.push(controller_yaml(self.spec.home(), &self.spec.regions[0]));
        docs.push(account_map_yaml(&self.spec.accounts));
        docs.extend(self.groups.iter().map(group_yaml));
        docs.join("---\n")
    }

    pub fn write_cluster(&self, dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("cluster.yaml"), self.cluster_yaml()).unwrap();
    }

    /// Every delivery as (key with `prefix` before `AWSLogs/`, gzipped bytes).
    pub fn objects(&self, prefix: &str) -> Vec<(String, Vec<u8>)> {
        self.deliveries
            .iter()
            .map(|d| (format!("{prefix}{}", d.key), d.body.clone()))
            .collect()
    }

    /// Writes every delivery under `dir` at its key (`prefix` included).
    pub fn write_deliveries(&self, dir: &Path, prefix: &str) {
        for (key, body) in self.objects(prefix) {
            write_at(dir, &key, &body);
        }
    }

    /// One `CloudTrail-Digest/` object for the home account and first region: a digest over
    /// its deliveries (SHA-256 of each), no `Records`. Readers must skip it.
    pub fn digest(&self, prefix: &str, bucket: &str) -> (String, Vec<u8>) {
        let (account, region) = (self.spec.home(), &self.spec.regions[0]);
        let end = self.last_slot_end();
        let key = format!(
            "{prefix}AWSLogs/{}/{account}/CloudTrail-Digest/{region}/{}/{account}_CloudTrail-Digest_{region}_{TRAIL_NAME}_{region}_{}.json.gz",
            self.spec.org_id,
            date_folder(end),
            compact_time(end, true)
        );
        let logs: Vec<Value> = self
            .deliveries
            .iter()
            .filter(|d| d.account == account && d.region == *region)
            .map(|d| digest_entry(bucket, prefix, d))
            .collect();
        let body = digest_body(account, bucket, &key, end, logs);
        (key, gzip(body.to_string().as_bytes()))
    }

    /// The end of the newest delivery slot.
    pub fn last_slot_end(&self) -> i64 {
        slot_end(self.spec.now)
    }
}

fn namespace_of(account: &str) -> String {
    format!("apps-{account}")
}

/// The role the account map names for `account`.
pub fn ack_role(account: &str) -> String {
    format!("arn:aws:iam::{account}:role/ack-ec2")
}

fn fresh_group_id(rng: &mut Rng, taken: &mut BTreeSet<String>) -> String {
    loop {
        let id = format!("sg-{:017x}", rng.next_u64() >> 4);
        if taken.insert(id.clone()) {
            return id;
        }
    }
}

fn make_groups(spec: &OrgSpec, rng: &mut Rng, ids: &mut BTreeSet<String>) -> Vec<Group> {
    (0..spec.security_groups)
        .map(|i| {
            let account = &spec.accounts[i % spec.accounts.len()];
            Group {
                namespace: namespace_of(account),
                name: format!("web-{i:04}"),
                id: fresh_group_id(rng, ids),
                account: account.clone(),
                region: spec.regions[(i / spec.accounts.len()) % spec.regions.len()].clone(),
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// The cluster dump.

fn namespace_yaml(name: &str, owner: Option<&str>) -> String {
    let annotations = match owner {
        Some(a) => format!("\n    services.k8s.aws/owner-account-id: \"{a}\""),
        None => " {}".into(),
    };
    format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n  annotations:{annotations}\n"
    )
}

fn controller_yaml(home: &str, region: &str) -> String {
    format!(
        "apiVersion: v1
kind: ServiceAccount
metadata:
  name: ack-ec2-controller
  namespace: {SYSTEM_NAMESPACE}
  annotations:
    eks.amazonaws.com/role-arn: arn:aws:iam::{home}:role/ack-ec2-controller
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: ack-ec2-controller
  namespace: {SYSTEM_NAMESPACE}
spec:
  replicas: 1
  selector:
    matchLabels: {{app.kubernetes.io/name: ec2-chart}}
  template:
    metadata:
      labels: {{app.kubernetes.io/name: ec2-chart}}
    spec:
      serviceAccountName: ack-ec2-controller
      containers:
      - name: controller
        image: public.ecr.aws/aws-controllers-k8s/ec2-controller:1.20.0
        command: [./bin/controller]
        args: [--aws-region, {region}, --enable-carm=true, --log-level, info]
        env:
        - {{name: ACK_SYSTEM_NAMESPACE, value: {SYSTEM_NAMESPACE}}}
"
    )
}

fn account_map_yaml(accounts: &[String]) -> String {
    let mut yaml = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ack-role-account-map\n  namespace: {SYSTEM_NAMESPACE}\ndata:\n"
    );
    for a in accounts {
        yaml.push_str(&format!("  \"{a}\": {}\n", ack_role(a)));
    }
    yaml
}

fn group_yaml(g: &Group) -> String {
    format!(
        "apiVersion: ec2.services.k8s.aws/v1alpha1
kind: SecurityGroup
metadata:
  name: {name}
  namespace: {ns}
  annotations:
    services.k8s.aws/region: {region}
spec:
  name: {name}
  description: generated
status:
  id: {id}
  ackResourceMetadata:
    ownerAccountID: \"{account}\"
    region: {region}
    arn: {arn}
  conditions:
  - type: ACK.ResourceSynced
    status: \"True\"
",
        name = g.name,
        ns = g.namespace,
        region = g.region,
        id = g.id,
        account = g.account,
        arn = g.arn()
    )
}

// ---------------------------------------------------------------------------------------
// Records.

fn make_records(trail: &OrgTrail, rng: &mut Rng) -> Vec<Value> {
    let spec = &trail.spec;
    let mut out = Vec::with_capacity(spec.records);
    while out.len() < spec.records {
        let time = spec.now - spec.span + rng.below(spec.span as usize + 1) as i64;
        let left = spec.records - out.len();
        match pick_kind(rng, spec.accounts.len() > 1 && left >= 2) {
            RecordKind::OnGroup => out.push(call_on_group(trail, rng, time)),
            RecordKind::OnDeletedGroup => {
                let id = rng.pick(&trail.deleted_ids).clone();
                let account = rng.pick(&spec.accounts).clone();
                let region = rng.pick(&spec.regions).clone();
                out.push(ack_call(rng, time, &account, &region, ACK_UA, &id, None));
            }
            RecordKind::NoKind => {
                let g = rng.pick(&trail.groups).clone();
                out.push(ack_call(
                    rng,
                    time,
                    &g.account,
                    &g.region,
                    ACK_UA_NO_KIND,
                    &g.id,
                    None,
                ));
            }
            RecordKind::Pivot => out.extend(pivot(trail, rng, time)),
            RecordKind::Noise => out.push(noise(trail, rng, time)),
        }
    }
    out
}

/// 55 % calls on a group, 3 % on deleted groups, 2 % without a kind, 3 % pivots (two
/// records each), the rest noise.
fn pick_kind(rng: &mut Rng, pivots: bool) -> RecordKind {
    match rng.below(100) {
        0..55 => RecordKind::OnGroup,
        55..58 => RecordKind::OnDeletedGroup,
        58..60 => RecordKind::NoKind,
        60..63 if pivots => RecordKind::Pivot,
        _ => RecordKind::Noise,
    }
}

/// An ACK call on a group: 1 in 10 in another account than the group's, 1 in 10 in another
/// region, 15 % failing.
fn call_on_group(trail: &OrgTrail, rng: &mut Rng, time: i64) -> Value {
    let spec = &trail.spec;
    let g = rng.pick(&trail.groups).clone();
    let account = if spec.accounts.len() > 1 && rng.percent(10) {
        other_than(rng, &spec.accounts, &g.account)
    } else {
        g.account.clone()
    };
    let region = if spec.regions.len() > 1 && rng.percent(10) {
        other_than(rng, &spec.regions, &g.region)
    } else {
        g.region.clone()
    };
    let error = rng.percent(15).then(|| *rng.pick(&GROUP_ERRORS));
    ack_call(rng, time, &account, &region, ACK_UA, &g.id, error)
}

fn other_than(rng: &mut Rng, items: &[String], not: &str) -> String {
    let others: Vec<&String> = items.iter().filter(|i| *i != not).collect();
    rng.pick(&others).to_string()
}

/// An ACK ec2 call naming group `id`, by the controller's role in `account`.
fn ack_call(
    rng: &mut Rng,
    time: i64,
    account: &str,
    region: &str,
    agent: &str,
    id: &str,
    error: Option<&str>,
) -> Value {
    let event_name = *rng.pick(&GROUP_CALLS);
    let mut r = json!({
        "eventVersion": "1.11",
        "userIdentity": role_identity(rng, account, "ack-ec2", time),
        "eventTime": rfc3339(time),
        "eventSource": "ec2.amazonaws.com",
        "eventName": event_name,
        "awsRegion": region,
        "sourceIPAddress": format!("10.0.{}.{}", rng.below(256), rng.below(256)),
        "userAgent": agent,
        "requestParameters": group_parameters(event_name, id),
        "responseElements": null,
        "requestID": rng.uuid(),
        "eventID": rng.uuid(),
        "readOnly": event_name.starts_with("Describe"),
        "eventType": "AwsApiCall",
        "managementEvent": true,
        "recipientAccountId": account,
        "eventCategory": "Management",
    });
    if let Some(code) = error {
        r["errorCode"] = json!(code);
        r["errorMessage"] = json!(format!("The request failed: {code}"));
    }
    r
}

/// `requestParameters` as EC2 logs them: the id at the top (`groupId`) or nested.
fn group_parameters(event_name: &str, id: &str) -> Value {
    let rule = json!({"items": [{"ipProtocol": "tcp", "fromPort": 443, "toPort": 443,
        "ipRanges": {"items": [{"cidrIp": "10.0.0.0/16"}]}}]});
    match event_name {
        "DescribeSecurityGroups" => json!({"securityGroupIdSet": {"items": [{"groupId": id}]},
            "securityGroupSet": {}, "filterSet": {}}),
        "ModifySecurityGroupRules" => json!({"ModifySecurityGroupRulesRequest": {"GroupId": id,
            "SecurityGroupRule": {"tag": 1, "SecurityGroupRule": {"IpProtocol": "tcp",
            "FromPort": 443, "ToPort": 443, "CidrIpv4": "10.1.0.0/16"}}}}),
        "CreateTags" => json!({"resourcesSet": {"items": [{"resourceId": id}]},
            "tagSet": {"items": [{"key": "team", "value": "platform"}]}}),
        _ => json!({"groupId": id, "ipPermissions": rule}),
    }
}

/// An assumed-role caller in `account`.
fn role_identity(rng: &mut Rng, account: &str, role: &str, time: i64) -> Value {
    let role_id = format!("AROA{}", rng.text(17, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"));
    let session = format!(
        "{}",
        1_700_000_000_000_000_000u64 + rng.next_u64() % 1_000_000_000
    );
    json!({
        "type": "AssumedRole",
        "principalId": format!("{role_id}:{session}"),
        "arn": format!("arn:aws:sts::{account}:assumed-role/{role}/{session}"),
        "accountId": account,
        "accessKeyId": format!("ASIA{}", rng.text(16, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")),
        "sessionContext": {
            "sessionIssuer": {"type": "Role", "principalId": role_id,
                "arn": format!("arn:aws:iam::{account}:role/{role}"),
                "accountId": account, "userName": role},
            "attributes": {"creationDate": rfc3339(time - 600), "mfaAuthenticated": "false"}
        }
    })
}

/// ACK's AssumeRole from the home account into a role of another account (mapped 4 times in
/// 5): the caller's copy and the role owner's, one `sharedEventID`.
fn pivot(trail: &OrgTrail, rng: &mut Rng, time: i64) -> [Value; 2] {
    let spec = &trail.spec;
    let home = spec.home();
    let target = other_than(rng, &spec.accounts, home);
    let role_arn = if rng.percent(80) {
        ack_role(&target)
    } else {
        format!("arn:aws:iam::{target}:role/ack-ec2-admin")
    };
    let region = rng.pick(&spec.regions).clone();
    let caller = role_identity(rng, home, "ack-ec2-controller", time);
    let mut mine = json!({
        "eventVersion": "1.08",
        "userIdentity": caller,
        "eventTime": rfc3339(time),
        "eventSource": "sts.amazonaws.com",
        "eventName": "AssumeRole",
        "awsRegion": region,
        "sourceIPAddress": "10.0.0.10",
        "userAgent": ACK_UA,
        "requestParameters": {"roleArn": role_arn, "roleSessionName": "ack-ec2-controller"},
        "responseElements": {"assumedRoleUser": {"arn": format!("arn:aws:sts::{target}:assumed-role/ack-ec2/ack-ec2-controller")}},
        "requestID": rng.uuid(),
        "eventID": rng.uuid(),
        "readOnly": true,
        "resources": [{"accountId": target, "type": "AWS::IAM::Role", "ARN": role_arn}],
        "eventType": "AwsApiCall",
        "managementEvent": true,
        "recipientAccountId": home,
        "sharedEventID": rng.uuid(),
        "eventCategory": "Management",
    });
    let mut theirs = mine.clone();
    theirs["userIdentity"] = json!({"type": "AWSAccount",
        "principalId": mine["userIdentity"]["principalId"], "accountId": home});
    theirs["eventID"] = json!(rng.uuid());
    theirs["recipientAccountId"] = json!(target);
    mine["tlsDetails"] = json!({"tlsVersion": "TLSv1.3"});
    [mine, theirs]
}

/// Anyone but ACK: a person, a tool or an AWS service; 1 in 10 fails.
fn noise(trail: &OrgTrail, rng: &mut Rng, time: i64) -> Value {
    let spec = &trail.spec;
    let (source, names, codes) = *rng.pick(&NOISE_SERVICES);
    let event_name = *rng.pick(names);
    let account = rng.pick(&spec.accounts).clone();
    let mut r = json!({
        "eventVersion": "1.10",
        "userIdentity": noise_identity(rng, &account, time),
        "eventTime": rfc3339(time),
        "eventSource": source,
        "eventName": event_name,
        "awsRegion": rng.pick(&spec.regions),
        "sourceIPAddress": "198.51.100.7",
        "userAgent": *rng.pick(&NOISE_AGENTS),
        "requestParameters": noise_parameters(trail, rng, event_name),
        "responseElements": null,
        "requestID": rng.uuid(),
        "eventID": rng.uuid(),
        "eventType": "AwsApiCall",
        "recipientAccountId": account,
    });
    if rng.percent(10) {
        r["errorCode"] = json!(rng.pick(codes));
        r["errorMessage"] = json!("denied");
    }
    r
}

fn noise_identity(rng: &mut Rng, account: &str, time: i64) -> Value {
    match rng.below(20) {
        0..12 => role_identity(rng, account, "Admin", time),
        12..17 => json!({"type": "IAMUser", "principalId": "AIDAEXAMPLEUSER00001",
            "arn": format!("arn:aws:iam::{account}:user/alice"), "accountId": account,
            "userName": "alice"}),
        _ => json!({"type": "AWSService", "invokedBy": "cloudformation.amazonaws.com"}),
    }
}

/// A person's DescribeSecurityGroups names an ACK group now and then: not ACK's call.
fn noise_parameters(trail: &OrgTrail, rng: &mut Rng, event_name: &str) -> Value {
    match event_name {
        "DescribeSecurityGroups" => {
            let id = &rng.pick(&trail.groups).id;
            json!({"securityGroupIdSet": {"items": [{"groupId": id}]}})
        }
        "GetBucketAcl" | "PutBucketPolicy" => json!({"bucketName": "org-reports", "acl": ""}),
        _ => Value::Null,
    }
}

// ---------------------------------------------------------------------------------------
// Deliveries and keys.

fn slot_end(t: i64) -> i64 {
    (t.div_euclid(DELIVERY_SLOT) + 1) * DELIVERY_SLOT
}

/// `YYYY/MM/DD` of `t` (UTC).
pub fn date_folder(t: i64) -> String {
    let s = rfc3339(t);
    format!("{}/{}/{}", &s[0..4], &s[5..7], &s[8..10])
}

/// `YYYYMMDDTHHMMZ` (`seconds`: `YYYYMMDDTHHMMSSZ`, as digest names have it).
pub fn compact_time(t: i64, seconds: bool) -> String {
    let s = rfc3339(t);
    let end = if seconds { 19 } else { 16 };
    format!("{}Z", s[..end].replace(['-', ':'], ""))
}

/// `AWSLogs/<org>/<account>/CloudTrail/<region>/YYYY/MM/DD/<account>_CloudTrail_<region>_YYYYMMDDTHHMMZ_<suffix>.json.gz`.
pub fn delivery_key(org: &str, account: &str, region: &str, at: i64, suffix: &str) -> String {
    format!(
        "AWSLogs/{org}/{account}/CloudTrail/{region}/{}/{account}_CloudTrail_{region}_{}_{suffix}.json.gz",
        date_folder(at),
        compact_time(at, false)
    )
}

fn make_deliveries(spec: &OrgSpec, records: &[Value], rng: &mut Rng) -> Vec<Delivery> {
    let mut slots: BTreeMap<(String, String, i64), Vec<&Value>> = BTreeMap::new();
    for r in records {
        let text = |k: &str| r[k].as_str().unwrap().to_string();
        let time = ack_drift_exporter::model::time::parse_rfc3339(&text("eventTime")).unwrap();
        slots
            .entry((
                text("recipientAccountId"),
                text("awsRegion"),
                slot_end(time),
            ))
            .or_default()
            .push(r);
    }
    slots
        .into_iter()
        .map(|((account, region, at), rs)| Delivery {
            key: delivery_key(&spec.org_id, &account, &region, at, &rng.text(16, ALNUM)),
            records: rs.len(),
            body: gzip(json!({ "Records": rs }).to_string().as_bytes()),
            account,
            region,
            delivered_at: at,
        })
        .collect()
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

pub fn write_at(dir: &Path, key: &str, bytes: &[u8]) {
    let path = dir.join(key);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn digest_entry(bucket: &str, prefix: &str, d: &Delivery) -> Value {
    json!({"s3Bucket": bucket, "s3Object": format!("{prefix}{}", d.key),
        "hashValue": sha256_hex(&d.body), "hashAlgorithm": "SHA-256",
        "newestEventTime": rfc3339(d.delivered_at), "oldestEventTime": rfc3339(d.delivered_at - DELIVERY_SLOT)})
}

fn digest_body(account: &str, bucket: &str, key: &str, end: i64, logs: Vec<Value>) -> Value {
    json!({
        "awsAccountId": account,
        "digestStartTime": rfc3339(end - 3600),
        "digestEndTime": rfc3339(end),
        "digestS3Bucket": bucket,
        "digestS3Object": key,
        "digestPublicKeyFingerprint": &sha256_hex(b"public key")[..32],
        "digestSignatureAlgorithm": "SHA256withRSA",
        "newestEventTime": rfc3339(end),
        "oldestEventTime": rfc3339(end - 3600),
        "previousDigestS3Bucket": null,
        "previousDigestS3Object": null,
        "previousDigestHashValue": null,
        "previousDigestHashAlgorithm": null,
        "previousDigestSignature": null,
        "logFiles": logs,
    })
}

// ---------------------------------------------------------------------------------------
// Ground truth, counted from the records and the cluster's groups alone.

/// (account, region, service, ack_kind): `ack_drift_cloudtrail_events_total`.
pub type EventKey = (String, String, String, String);
/// (account, region, service, event_name, error_code, ack_kind):
/// `ack_drift_cloudtrail_errors_total` and the audit's `cloudtrail.errors`.
pub type ErrorKey = (String, String, String, String, String, String);
/// (account, region, ack_kind, reason): `cloudtrail.unattributed_ack_events`.
pub type UnattributedKey = (String, String, String, String);
/// (caller_account, recipient_account, service, event_name, signal, expected).
pub type CrossKey = (String, String, String, String, String, bool);

/// One group's evidence, as the audit reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evidence {
    /// (account, region, error_code) → events.
    pub error_events: BTreeMap<(String, String, String), u64>,
    /// Called account → events outside the group's account.
    pub wrong_account_calls: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Truth {
    /// Distinct events (every eventID is fresh: all records).
    pub events: u64,
    pub events_by: BTreeMap<EventKey, u64>,
    pub errors: BTreeMap<ErrorKey, u64>,
    /// Every group (`namespace/SecurityGroup/name`), with or without evidence.
    pub resources: BTreeMap<String, Evidence>,
    pub unattributed: BTreeMap<UnattributedKey, u64>,
    pub cross_account: BTreeMap<CrossKey, u64>,
}

impl Truth {
    fn of(trail: &OrgTrail) -> Truth {
        let mut t = Truth {
            resources: trail
                .groups
                .iter()
                .map(|g| (g.key(), Evidence::default()))
                .collect(),
            ..Default::default()
        };
        let by_id: BTreeMap<&str, &Group> =
            trail.groups.iter().map(|g| (g.id.as_str(), g)).collect();
        let mut pivots_seen = BTreeSet::new();
        for r in &trail.records {
            let f = Fields::of(r);
            let crosses = f.caller.as_ref().is_some_and(|c| *c != f.account);
            assert!(
                f.is_pivot() || !crosses,
                "the generator made an unplanned cross-account record: {r}"
            );
            t.count(&f);
            if f.is_pivot() {
                if pivots_seen.insert(f.shared_id.clone()) {
                    t.count_pivot(&f, trail);
                }
            } else if f.ack {
                t.attribute(&f, r, &by_id);
            }
        }
        t
    }

    fn count(&mut self, f: &Fields) {
        self.events += 1;
        let key = (
            f.account.clone(),
            f.region.clone(),
            f.service.clone(),
            f.kind.clone(),
        );
        *self.events_by.entry(key).or_default() += 1;
        if let Some(code) = &f.error_code {
            let key = (
                f.account.clone(),
                f.region.clone(),
                f.service.clone(),
                f.event_name.clone(),
                code.clone(),
                f.kind.clone(),
            );
            *self.errors.entry(key).or_default() += 1;
        }
    }

    fn count_pivot(&mut self, f: &Fields, trail: &OrgTrail) {
        let role = f.role_arn.clone().expect("a pivot names its role");
        let role_account = role.split(':').nth(4).unwrap().to_string();
        let caller = f.caller.clone().expect("a pivot has a caller account");
        let expected = caller == trail.spec.home() && trail.mapped_roles.contains(&role);
        let key = (
            caller,
            role_account,
            f.service.clone(),
            f.event_name.clone(),
            "assume_role".into(),
            expected,
        );
        *self.cross_account.entry(key).or_default() += 1;
    }

    fn attribute(&mut self, f: &Fields, r: &Value, by_id: &BTreeMap<&str, &Group>) {
        if f.kind.is_empty() {
            self.unattribute(f, "no_kind");
            return;
        }
        let mut named = Vec::new();
        string_leaves(&r["requestParameters"], &mut named);
        let groups: BTreeSet<&str> = named
            .iter()
            .filter_map(|s| by_id.get(s.as_str()))
            .map(|g| g.id.as_str())
            .collect();
        match Vec::from_iter(groups).as_slice() {
            [] => self.unattribute(f, "no_match"),
            [id] => self.count_on_group(f, by_id[id]),
            more => panic!("the generator made an ambiguous record naming {more:?}"),
        }
    }

    fn unattribute(&mut self, f: &Fields, reason: &str) {
        let key = (
            f.account.clone(),
            f.region.clone(),
            f.kind.clone(),
            reason.to_string(),
        );
        *self.unattributed.entry(key).or_default() += 1;
    }

    fn count_on_group(&mut self, f: &Fields, g: &Group) {
        let ev = self.resources.get_mut(&g.key()).unwrap();
        if let Some(code) = &f.error_code {
            let key = (f.account.clone(), f.region.clone(), code.clone());
            *ev.error_events.entry(key).or_default() += 1;
        }
        if f.account != g.account {
            *ev.wrong_account_calls.entry(f.account.clone()).or_default() += 1;
        }
    }
}

/// What the truth reads of a record, in the README's terms.
struct Fields {
    /// `recipientAccountId`.
    account: String,
    caller: Option<String>,
    region: String,
    /// `eventSource` without `.amazonaws.com`.
    service: String,
    event_name: String,
    /// Without EC2's `Client.`/`Server.` prefix.
    error_code: Option<String>,
    ack: bool,
    /// The user agent's `CRDKind`, empty for anyone else.
    kind: String,
    role_arn: Option<String>,
    shared_id: String,
}

impl Fields {
    fn of(r: &Value) -> Fields {
        let text = |p: &str| r.pointer(p).and_then(Value::as_str).map(String::from);
        let agent = text("/userAgent").unwrap_or_default();
        Fields {
            account: text("/recipientAccountId").unwrap(),
            caller: text("/userIdentity/accountId"),
            region: text("/awsRegion").unwrap(),
            service: text("/eventSource")
                .unwrap()
                .trim_end_matches(".amazonaws.com")
                .to_string(),
            event_name: text("/eventName").unwrap(),
            error_code: text("/errorCode").map(|c| strip_ec2_prefix(&c)),
            kind: crd_kind(&agent),
            ack: agent.starts_with("aws-controllers-k8s/"),
            role_arn: text("/requestParameters/roleArn"),
            shared_id: text("/sharedEventID").unwrap_or_default(),
        }
    }

    fn is_pivot(&self) -> bool {
        self.ack && self.service == "sts" && self.event_name == "AssumeRole"
    }
}

fn strip_ec2_prefix(code: &str) -> String {
    for prefix in ["Client.", "Server."] {
        if let Some(rest) = code.strip_prefix(prefix) {
            return rest.to_string();
        }
    }
    code.to_string()
}

/// `CRDKind/<Kind>;` inside an ACK user agent's comment.
fn crd_kind(agent: &str) -> String {
    if !agent.starts_with("aws-controllers-k8s/") {
        return String::new();
    }
    agent
        .split_once("CRDKind/")
        .and_then(|(_, rest)| rest.split([';', ')']).next())
        .unwrap_or_default()
        .to_string()
}

fn string_leaves(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| string_leaves(x, out)),
        Value::Object(m) => m.values().for_each(|x| string_leaves(x, out)),
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------
// Messages about the objects, in the shapes AWS sends.

/// An object put in the trail bucket, as notifications describe it.
#[derive(Debug, Clone)]
pub struct ObjectCreated {
    pub bucket: String,
    /// The bucket's region.
    pub region: String,
    /// The key, as stored (not encoded).
    pub key: String,
    pub size: usize,
    /// Without quotes.
    pub etag: String,
    pub time: i64,
}

impl ObjectCreated {
    pub fn new(bucket: &str, region: &str, key: &str, size: usize, etag: &str, time: i64) -> Self {
        ObjectCreated {
            bucket: bucket.into(),
            region: region.into(),
            key: key.into(),
            size,
            etag: etag.into(),
            time,
        }
    }

    /// S3's sequencer: hex, growing with time for one key.
    fn sequencer(&self) -> String {
        format!(
            "00{:016X}",
            self.time as u64 * 1000 + (hash(&self.key) % 1000)
        )
    }
}

fn hash(s: &str) -> u64 {
    let d = Sha256::digest(s.as_bytes());
    u64::from_be_bytes(d[..8].try_into().unwrap())
}

/// Hex of a hash of `seed`, `n` digits (upper case): ids that stay the same for one input.
fn stable_hex(seed: &str, n: usize) -> String {
    sha256_hex(seed.as_bytes())[..n].to_ascii_uppercase()
}

fn stable_uuid(seed: &str) -> String {
    let h = sha256_hex(seed.as_bytes());
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// `2026-12-02T10:05:00.000Z`, as S3 and SNS write times.
pub fn millis_time(t: i64) -> String {
    rfc3339(t).replace('Z', ".000Z")
}

/// A key as S3 event notifications carry it: URL-encoded, form style (space as `+`), `/`
/// kept.
pub fn form_encode(key: &str) -> String {
    let mut out = String::new();
    for b in key.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The S3 event notification (`ObjectCreated:Put`) of one object.
pub fn s3_notification(o: &ObjectCreated) -> String {
    json!({"Records": [{
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": o.region,
        "eventTime": millis_time(o.time),
        "eventName": "ObjectCreated:Put",
        "userIdentity": {"principalId": "AWS:AROAEXAMPLECLOUDTRAIL:regionalDeliverySession"},
        "requestParameters": {"sourceIPAddress": "10.20.30.40"},
        "responseElements": {"x-amz-request-id": stable_hex(&o.key, 16),
            "x-amz-id-2": stable_hex(&format!("id2 {}", o.key), 64)},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "cloudtrail-deliveries",
            "bucket": {"name": o.bucket, "ownerIdentity": {"principalId": "A3NL1KOZZKEXAMPLE"},
                "arn": format!("arn:aws:s3:::{}", o.bucket)},
            "object": {"key": form_encode(&o.key), "size": o.size, "eTag": o.etag,
                "sequencer": o.sequencer()}
        }
    }]})
    .to_string()
}

/// The message S3 sends when a notification configuration is saved.
pub fn s3_test_event(bucket: &str, time: i64) -> String {
    json!({"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": millis_time(time),
        "Bucket": bucket, "RequestId": stable_hex(bucket, 16),
        "HostId": stable_hex(&format!("host {bucket}"), 64)})
    .to_string()
}

/// `message` (an S3 notification) as SNS delivers it to an SQS subscription (raw delivery off).
pub fn sns_notification(message: &str, topic_arn: &str, time: i64) -> String {
    let region = topic_arn.split(':').nth(3).unwrap_or("us-east-1");
    let id = stable_uuid(message);
    json!({
        "Type": "Notification",
        "MessageId": id,
        "TopicArn": topic_arn,
        "Subject": "Amazon S3 Notification",
        "Message": message,
        "Timestamp": millis_time(time),
        "SignatureVersion": "1",
        "Signature": base64_of(&Sha256::digest(message.as_bytes())),
        "SigningCertURL": format!("https://sns.{region}.amazonaws.com/SimpleNotificationService-9c6465fa7f48f5cacd23014631ec1136.pem"),
        "UnsubscribeURL": format!("https://sns.{region}.amazonaws.com/?Action=Unsubscribe&SubscriptionArn={topic_arn}:{id}"),
    })
    .to_string()
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// EventBridge's `Object Created` event (S3 → EventBridge → SQS): the key not encoded.
pub fn eventbridge_object_created(o: &ObjectCreated, account: &str) -> String {
    json!({
        "version": "0",
        "id": stable_uuid(&format!("eventbridge {}", o.key)),
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": account,
        "time": rfc3339(o.time),
        "region": o.region,
        "resources": [format!("arn:aws:s3:::{}", o.bucket)],
        "detail": {
            "version": "0",
            "bucket": {"name": o.bucket},
            "object": {"key": o.key, "size": o.size, "etag": o.etag, "sequencer": o.sequencer()},
            "request-id": stable_hex(&o.key, 16),
            "requester": account,
            "source-ip-address": "10.20.30.40",
            "reason": "PutObject"
        }
    })
    .to_string()
}

/// EventBridge's `AWS API Call via CloudTrail` event carrying one record.
pub fn eventbridge_api_call(record: &Value) -> String {
    let text = |k: &str| record[k].as_str().unwrap_or_default().to_string();
    let service = text("eventSource")
        .trim_end_matches(".amazonaws.com")
        .to_string();
    json!({
        "version": "0",
        "id": stable_uuid(&text("eventID")),
        "detail-type": "AWS API Call via CloudTrail",
        "source": format!("aws.{service}"),
        "account": text("recipientAccountId"),
        "time": text("eventTime"),
        "region": text("awsRegion"),
        "resources": [],
        "detail": record,
    })
    .to_string()
}

// ---------------------------------------------------------------------------------------
// Poison for the readers.

/// A message body that is not JSON.
pub fn not_json() -> String {
    "this is not JSON {\"Records\": [".into()
}

/// A real-looking delivery key (home account, first region, newest slot) that is never
/// uploaded: its notification names a missing object.
pub fn missing_key(trail: &OrgTrail, prefix: &str) -> String {
    let spec = &trail.spec;
    let key = delivery_key(
        &spec.org_id,
        spec.home(),
        &spec.regions[0],
        trail.last_slot_end(),
        "MissingObject000",
    );
    format!("{prefix}{key}")
}

/// A delivery whose bytes are a gzip header over a stream no inflater accepts (a reserved
/// block type): (key, bytes). It holds no records.
pub fn broken_gzip(trail: &OrgTrail, prefix: &str) -> (String, Vec<u8>) {
    let spec = &trail.spec;
    let account = spec.accounts.last().unwrap();
    let region = spec.regions.last().unwrap();
    let key = delivery_key(
        &spec.org_id,
        account,
        region,
        trail.last_slot_end(),
        "BrokenGzip000000",
    );
    let mut bytes = vec![0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0xff];
    bytes.extend([0xff; 32]);
    (format!("{prefix}{key}"), bytes)
}
