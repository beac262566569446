//! The CloudTrail store: records folded in as any source reads them, de-duplicated by eventID,
//! into bounded counters, the cross-account pivots and the ACK calls kept for attribution. No
//! I/O and no judgement against the cluster (that is `evaluate::cloudtrail`).

use std::collections::BTreeMap;
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard};

use hashbrown::{Equivalent, HashMap};
use serde::Serialize;
use tokio::sync::Notify;

use crate::model::ParseError;
use crate::model::trail::{TrailRecord, Unattributed};

/// Problems kept for the landing page and audit; older ones are only counted and logged.
const KEPT_ERRORS: usize = 100;

/// How a record shows a call crossing accounts, weakest first: the derived `Ord` ranks them,
/// and a pivot logged twice keeps the greater (`a_pivot_logged_twice_…` pins it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    /// `recipientAccountId` differs from the caller's account.
    RecipientDiffers,
    /// `userIdentity.type` is `AWSAccount`: the request came from another account.
    AwsAccount,
    /// An `sts:AssumeRole` of a role in another account than the caller's.
    AssumeRole,
}

impl Signal {
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::RecipientDiffers => "recipient_differs",
            Signal::AwsAccount => "aws_account",
            Signal::AssumeRole => "assume_role",
        }
    }
}

/// Defines a counter key of owned strings and its borrowed twin, which hashes the same (a
/// `String` hashes as its `str`), so a record is counted without copying a string unless its
/// key is new.
macro_rules! counter_key {
    ($(#[$doc:meta])* $owned:ident, $borrowed:ident { $($field:ident),* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $owned {
            $(pub $field: String,)*
        }

        #[derive(Hash)]
        struct $borrowed<'a> {
            $($field: &'a str,)*
        }

        impl Equivalent<$owned> for $borrowed<'_> {
            fn equivalent(&self, key: &$owned) -> bool {
                $(self.$field == key.$field)&&*
            }
        }

        impl $borrowed<'_> {
            fn to_owned(&self) -> $owned {
                $owned { $($field: self.$field.to_owned(),)* }
            }
        }
    };
}

counter_key!(
    /// What `ack_drift_cloudtrail_events_total` is counted by.
    EventKey, EventKeyRef { account, region, service, ack_kind }
);
counter_key!(
    /// What `ack_drift_cloudtrail_errors_total` is counted by.
    ErrorKey, ErrorKeyRef { account, region, service, event_name, error_code, ack_kind }
);

/// Adds one to `key`'s count, copying the key only the first time it is seen.
fn count_one<K: Hash + Eq, Q: Hash + Equivalent<K>>(
    map: &mut HashMap<K, u64>,
    key: Q,
    owned: impl FnOnce(&Q) -> K,
) {
    match map.get_mut(&key) {
        Some(n) => *n += 1,
        None => {
            map.insert(owned(&key), 1);
        }
    }
}

/// One cross-account call, as counted (after `sharedEventID` de-duplication).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Pivot {
    pub(crate) caller: String,
    pub(crate) recipient: String,
    pub(crate) service: String,
    pub(crate) event_name: String,
    pub(crate) signal: Signal,
    pub(crate) role_arn: Option<String>,
}

/// An ACK controller's call on a resource, kept for attribution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckCall {
    pub time: i64,
    pub account: String,
    pub region: String,
    pub group: String,
    pub kind: Option<String>,
    pub error_code: Option<String>,
    pub values: Vec<String>,
    pub namespace_tag: Option<String>,
}

/// Everything learnt from records so far.
#[derive(Debug, Default)]
pub struct TrailTally {
    /// eventID → event time (so a live source can forget ids older than anything it re-reads).
    seen_uuid: HashMap<u128, i64>,
    seen_other: HashMap<String, i64>,
    /// Distinct events.
    pub events: u64,
    /// Records whose eventID was already counted.
    pub duplicates: u64,
    pub events_by: HashMap<EventKey, u64>,
    pub errors_by: HashMap<ErrorKey, u64>,
    /// Pivots by `sharedEventID` (or eventID), with their time.
    pub(crate) pivots: HashMap<String, (i64, Pivot)>,
    /// Pivots forgotten by [`TrailTally::forget_before`], counted: the cross-account counters
    /// never go down.
    pub(crate) forgotten_pivots: HashMap<Pivot, u64>,
    /// Unattributed ACK calls forgotten, counted, for the same reason (the evaluation judges
    /// them as they are forgotten: `evaluate::cloudtrail::forget_before`).
    pub(crate) forgotten_unattributed: BTreeMap<(String, String, String, Unattributed), u64>,
    pub ack_calls: Vec<AckCall>,
    pub newest: Option<i64>,
}

/// A UUID eventID as a number (16 bytes instead of a 36-byte string in the index).
fn uuid(s: &str) -> Option<u128> {
    let b = s.as_bytes();
    if b.len() != 36 || b[8] != b'-' || b[13] != b'-' || b[18] != b'-' || b[23] != b'-' {
        return None;
    }
    let mut n: u128 = 0;
    for (i, c) in b.iter().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            continue;
        }
        n = (n << 4) | (*c as char).to_digit(16)? as u128;
    }
    Some(n)
}

/// The cross-account signal of a record, with (caller, recipient). Nothing is copied for
/// the records that stay in one account (nearly all of them).
pub fn cross_account(r: &TrailRecord) -> Option<(Signal, String, String)> {
    if r.caller_type.as_deref() == Some("AWSService") {
        return None;
    }
    let caller = r.caller_account.as_deref()?;
    if let Some(role_account) = r.assumed_role_account()
        && role_account != caller
    {
        return Some((Signal::AssumeRole, caller.to_string(), role_account));
    }
    if r.account.is_empty() || r.account == caller {
        return None;
    }
    let signal = if r.caller_type.as_deref() == Some("AWSAccount") {
        Signal::AwsAccount
    } else {
        Signal::RecipientDiffers
    };
    Some((signal, caller.to_string(), r.account.clone()))
}

impl TrailTally {
    /// Folds one record in; returns false when its eventID was already counted. Only what is
    /// kept is copied: the ACK calls, pivots and new keys (a record is lent, so that a
    /// multi-threaded reader can free it where it was made).
    pub fn ingest(&mut self, r: &TrailRecord) -> bool {
        let new = match uuid(&r.event_id) {
            Some(n) => self.seen_uuid.insert(n, r.event_time).is_none(),
            None => self
                .seen_other
                .insert(r.event_id.clone(), r.event_time)
                .is_none(),
        };
        if !new {
            self.duplicates += 1;
            return false;
        }
        self.events += 1;
        self.newest = Some(self.newest.map_or(r.event_time, |t| t.max(r.event_time)));
        let ack_kind = r.ack.as_ref().and_then(|a| a.kind.as_deref()).unwrap_or("");
        let event = EventKeyRef {
            account: &r.account,
            region: &r.region,
            service: &r.service,
            ack_kind,
        };
        count_one(&mut self.events_by, event, EventKeyRef::to_owned);
        if let Some(code) = &r.error_code {
            let error = ErrorKeyRef {
                account: &r.account,
                region: &r.region,
                service: &r.service,
                event_name: &r.event_name,
                error_code: code,
                ack_kind,
            };
            count_one(&mut self.errors_by, error, ErrorKeyRef::to_owned);
        }
        if let Some((signal, caller, recipient)) = cross_account(r) {
            // One pivot logged in both accounts shares a sharedEventID: count it once,
            // under its strongest signal.
            let key = r
                .shared_event_id
                .clone()
                .unwrap_or_else(|| r.event_id.clone());
            let pivot = Pivot {
                caller,
                recipient,
                service: r.service.clone(),
                event_name: r.event_name.clone(),
                signal,
                role_arn: r.assumed_role_arn.clone(),
            };
            match self.pivots.get(&key) {
                Some((_, p)) if p.signal >= signal => {}
                _ => {
                    self.pivots.insert(key, (r.event_time, pivot));
                }
            }
        }
        if !r.is_ack_pivot()
            && let Some(ack) = &r.ack
        {
            self.ack_calls.push(AckCall {
                time: r.event_time,
                account: r.account.clone(),
                region: r.region.clone(),
                group: ack.group.clone(),
                kind: ack.kind.clone(),
                error_code: r.error_code.clone(),
                values: r.request_values.clone(),
                namespace_tag: r.namespace_tag.clone(),
            });
        }
        true
    }
}

impl TrailTally {
    /// Forgets eventIDs and pivots older than `before` (what the counters saw of them stays
    /// counted) and hands back the ACK calls older than it, for the evaluation to judge once
    /// more before they go.
    pub fn forget_before(&mut self, before: i64) -> Vec<AckCall> {
        self.seen_uuid.retain(|_, t| *t >= before);
        self.seen_other.retain(|_, t| *t >= before);
        let old: Vec<String> = self
            .pivots
            .iter()
            .filter(|(_, (t, _))| *t < before)
            .map(|(k, _)| k.clone())
            .collect();
        for key in old {
            if let Some((_, p)) = self.pivots.remove(&key) {
                *self.forgotten_pivots.entry(p).or_default() += 1;
            }
        }
        if !self.ack_calls.iter().any(|c| c.time < before) {
            return Vec::new();
        }
        let (old, kept) = std::mem::take(&mut self.ack_calls)
            .into_iter()
            .partition(|c| c.time < before);
        self.ack_calls = kept;
        old
    }
}

/// What live polling feeds: the tally every stream ingests into, the problems met, and a
/// signal to republish.
#[derive(Default)]
pub struct TrailStore {
    tally: Mutex<TrailTally>,
    errors: Mutex<Vec<ParseError>>,
    pub changed: Notify,
}

impl TrailStore {
    /// Folds records in under one lock; returns how many were already counted.
    pub fn ingest_all(&self, records: impl IntoIterator<Item = TrailRecord>) -> u64 {
        let mut tally = self.lock();
        records
            .into_iter()
            .fold(0, |repeats, r| repeats + u64::from(!tally.ingest(&r)))
    }

    pub fn lock(&self) -> MutexGuard<'_, TrailTally> {
        self.tally.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The problems kept (the newest [`KEPT_ERRORS`]).
    pub fn errors(&self) -> Vec<ParseError> {
        self.errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn set_errors(&self, errors: Vec<ParseError>) {
        *self.errors.lock().unwrap_or_else(|p| p.into_inner()) = errors;
    }

    /// Adds problems, keeping the newest [`KEPT_ERRORS`].
    pub fn add_errors(&self, errors: impl IntoIterator<Item = ParseError>) {
        self.errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(errors);
        self.keep_newest_errors();
    }

    fn keep_newest_errors(&self) {
        let mut kept = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        let excess = kept.len().saturating_sub(KEPT_ERRORS);
        kept.drain(..excess);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::user_agent::AckUserAgent;

    pub(crate) fn record(id: &str) -> TrailRecord {
        TrailRecord {
            event_id: id.into(),
            event_time: 100,
            service: "ec2".into(),
            event_name: "DescribeVpcs".into(),
            region: "eu-west-2".into(),
            account: "111111111111".into(),
            caller_account: Some("111111111111".into()),
            caller_type: Some("AssumedRole".into()),
            error_code: None,
            shared_event_id: None,
            ack: None,
            assumed_role_arn: None,
            request_values: vec![],
            namespace_tag: None,
        }
    }

    #[test]
    fn uuids_pack_and_others_do_not() {
        assert_eq!(
            uuid("91cfd79c-d013-ac45-f7da-7e85f472694f"),
            Some(0x91cfd79cd013ac45f7da7e85f472694f)
        );
        assert_eq!(uuid("not-a-uuid"), None);
        assert_eq!(uuid("91cfd79c-d013-ac45-f7da-7e85f472694g"), None);
    }

    #[test]
    fn duplicates_only_count_as_duplicates() {
        let mut t = TrailTally::default();
        let mut r = record("91cfd79c-d013-ac45-f7da-7e85f472694f");
        r.error_code = Some("AccessDenied".into());
        assert!(t.ingest(&r.clone()));
        assert!(!t.ingest(&r.clone()));
        let mut other = record("plain-id");
        other.error_code = Some("AccessDenied".into());
        assert!(t.ingest(&other.clone()));
        assert!(!t.ingest(&other));
        assert_eq!(t.events, 2);
        assert_eq!(t.duplicates, 2);
        assert_eq!(t.errors_by.values().sum::<u64>(), 2);
    }

    /// Records are counted through borrowed keys: each key must land on its owned twin, so
    /// the counters equal a plain grouping by owned keys, field by field.
    #[test]
    fn counters_group_by_every_key_field() {
        // account, region, service, event name, error code, CRD kind ("" for none)
        let table = [
            ["1", "eu-west-2", "ec2", "CreateVpc", "AccessDenied", ""],
            ["1", "eu-west-2", "ec2", "CreateVpc", "AccessDenied", ""],
            ["2", "eu-west-2", "ec2", "CreateVpc", "AccessDenied", ""],
            ["1", "us-east-1", "ec2", "CreateVpc", "AccessDenied", ""],
            ["1", "eu-west-2", "s3", "CreateVpc", "AccessDenied", ""],
            ["1", "eu-west-2", "ec2", "DeleteVpc", "AccessDenied", ""],
            ["1", "eu-west-2", "ec2", "CreateVpc", "Throttling", ""],
            ["1", "eu-west-2", "ec2", "CreateVpc", "AccessDenied", "Vpc"],
            ["1", "eu-west-2", "ec2", "CreateVpc", "AccessDenied", "Vpc"],
        ];
        let mut t = TrailTally::default();
        let mut events: BTreeMap<EventKey, u64> = BTreeMap::new();
        let mut errors: BTreeMap<ErrorKey, u64> = BTreeMap::new();
        for (i, [account, region, service, name, code, kind]) in table.into_iter().enumerate() {
            let mut r = record(&format!("id-{i}"));
            (r.account, r.region, r.service) = (account.into(), region.into(), service.into());
            (r.event_name, r.error_code) = (name.into(), Some(code.into()));
            r.ack = (!kind.is_empty()).then(|| AckUserAgent {
                group: "ec2.services.k8s.aws".into(),
                kind: Some(kind.into()),
                ..AckUserAgent::default()
            });
            t.ingest(&r);
            let event = EventKey {
                account: account.into(),
                region: region.into(),
                service: service.into(),
                ack_kind: kind.into(),
            };
            *events.entry(event).or_default() += 1;
            let error = ErrorKey {
                account: account.into(),
                region: region.into(),
                service: service.into(),
                event_name: name.into(),
                error_code: code.into(),
                ack_kind: kind.into(),
            };
            *errors.entry(error).or_default() += 1;
        }
        let counted_events: BTreeMap<_, _> = t.events_by.into_iter().collect();
        let counted_errors: BTreeMap<_, _> = t.errors_by.into_iter().collect();
        assert_eq!(counted_events, events);
        assert_eq!(counted_errors, errors);
        assert_eq!(counted_errors.len(), 7);
    }

    #[test]
    fn signals_rank_weakest_first() {
        assert!(Signal::RecipientDiffers < Signal::AwsAccount);
        assert!(Signal::AwsAccount < Signal::AssumeRole);
    }

    #[test]
    fn signals() {
        let mut r = record("a");
        assert_eq!(cross_account(&r), None);
        r.account = "222222222222".into();
        assert_eq!(cross_account(&r).unwrap().0, Signal::RecipientDiffers);
        r.caller_type = Some("AWSAccount".into());
        assert_eq!(cross_account(&r).unwrap().0, Signal::AwsAccount);
        r.event_name = "AssumeRole".into();
        r.assumed_role_arn = Some("arn:aws:iam::333333333333:role/x".into());
        let (s, caller, recipient) = cross_account(&r).unwrap();
        assert_eq!(
            (s, caller.as_str(), recipient.as_str()),
            (Signal::AssumeRole, "111111111111", "333333333333")
        );
        r.caller_type = Some("AWSService".into());
        assert_eq!(cross_account(&r), None);
    }

    #[test]
    fn ack_assume_role_is_a_pivot_not_a_resource_call() {
        let mut t = TrailTally::default();
        let mut r = record("a");
        r.service = "sts".into();
        r.event_name = "AssumeRole".into();
        r.ack = Some(AckUserAgent {
            group: "ec2.services.k8s.aws".into(),
            controller_version: None,
            kind: Some("VPC".into()),
            crd_version: None,
        });
        t.ingest(&r);
        assert!(t.ack_calls.is_empty());
    }
}
