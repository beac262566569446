//! CloudTrail evidence: de-duplicated counts of events, errors and cross-account pivots, and
//! per-resource error storms and wrong-account calls.
//!
//! [`TrailTally`] folds records in as they are read (no I/O, bounded memory: counters keyed by
//! bounded labels, the eventID index, and the ACK calls kept for attribution). [`evidence`]
//! then judges the tally against a cluster snapshot.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use super::Evaluation;
use super::attribution::{AttributionIndex, Unattributed};
use crate::config::IdentifierRule;
use crate::model::trail::TrailRecord;
use crate::model::{CARM_MAPS, ClusterSnapshot};

/// The CloudTrail summary every output reads: the tally, the evidence drawn from it, and what
/// was read to get them.
#[derive(Clone, Copy)]
pub struct TrailView<'a> {
    pub tally: &'a TrailTally,
    pub evidence: &'a TrailEvidence,
    /// Trail files read.
    pub files: usize,
    pub errors: &'a [crate::model::ParseError],
    /// The per-resource window the evidence covers, in seconds.
    pub window_seconds: u64,
}

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

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventKey {
    pub account: String,
    pub region: String,
    pub service: String,
    pub ack_kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ErrorKey {
    pub account: String,
    pub region: String,
    pub service: String,
    pub event_name: String,
    pub error_code: String,
    pub ack_kind: String,
}

/// One cross-account call, as counted (after `sharedEventID` de-duplication).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Pivot {
    caller: String,
    recipient: String,
    service: String,
    event_name: String,
    signal: Signal,
    role_arn: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CrossKey {
    pub caller_account: String,
    pub recipient_account: String,
    pub service: String,
    pub event_name: String,
    pub signal: Signal,
    pub expected: bool,
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
    pivots: HashMap<String, (i64, Pivot)>,
    /// Pivots forgotten by [`forget_before`], counted: the cross-account counters never go down.
    forgotten_pivots: HashMap<Pivot, u64>,
    /// Unattributed ACK calls forgotten by [`forget_before`], counted, for the same reason.
    forgotten_unattributed: BTreeMap<(String, String, String, Unattributed), u64>,
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

/// The cross-account signal of a record, with (caller, recipient).
pub fn cross_account(r: &TrailRecord) -> Option<(Signal, String, String)> {
    if r.caller_type.as_deref() == Some("AWSService") {
        return None;
    }
    let caller = r.caller_account.clone()?;
    if let Some(role_account) = r.assumed_role_account()
        && role_account != caller
    {
        return Some((Signal::AssumeRole, caller, role_account));
    }
    if r.account.is_empty() || r.account == caller {
        return None;
    }
    let signal = if r.caller_type.as_deref() == Some("AWSAccount") {
        Signal::AwsAccount
    } else {
        Signal::RecipientDiffers
    };
    Some((signal, caller, r.account.clone()))
}

impl TrailTally {
    /// Folds one record in; returns false when its eventID was already counted.
    pub fn ingest(&mut self, r: TrailRecord) -> bool {
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
        let ack_kind = r
            .ack
            .as_ref()
            .and_then(|a| a.kind.clone())
            .unwrap_or_default();
        *self
            .events_by
            .entry(EventKey {
                account: r.account.clone(),
                region: r.region.clone(),
                service: r.service.clone(),
                ack_kind: ack_kind.clone(),
            })
            .or_default() += 1;
        if let Some(code) = &r.error_code {
            *self
                .errors_by
                .entry(ErrorKey {
                    account: r.account.clone(),
                    region: r.region.clone(),
                    service: r.service.clone(),
                    event_name: r.event_name.clone(),
                    error_code: code.clone(),
                    ack_kind,
                })
                .or_default() += 1;
        }
        if let Some((signal, caller, recipient)) = cross_account(&r) {
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
            && let Some(ack) = r.ack
        {
            self.ack_calls.push(AckCall {
                time: r.event_time,
                account: r.account,
                region: r.region,
                group: ack.group,
                kind: ack.kind,
                error_code: r.error_code,
                values: r.request_values,
                namespace_tag: r.namespace_tag,
            });
        }
        true
    }
}

/// Forgets what a live source no longer needs: eventIDs, pivots and ACK calls older than
/// `before` (the start of the window less the overlap it re-reads). What the counters saw of
/// them stays counted; the unattributed calls are judged once more against the snapshot, so
/// the unattributed counter keeps them too.
pub fn forget_before(
    tally: &mut TrailTally,
    before: i64,
    snapshot: &ClusterSnapshot,
    identifiers: &BTreeMap<String, IdentifierRule>,
) {
    tally.seen_uuid.retain(|_, t| *t >= before);
    tally.seen_other.retain(|_, t| *t >= before);
    let old: Vec<String> = tally
        .pivots
        .iter()
        .filter(|(_, (t, _))| *t < before)
        .map(|(k, _)| k.clone())
        .collect();
    for key in old {
        if let Some((_, p)) = tally.pivots.remove(&key) {
            *tally.forgotten_pivots.entry(p).or_default() += 1;
        }
    }
    if !tally.ack_calls.iter().any(|c| c.time < before) {
        return;
    }
    let index = AttributionIndex::build(snapshot, identifiers);
    let calls = std::mem::take(&mut tally.ack_calls);
    for call in calls {
        if call.time >= before {
            tally.ack_calls.push(call);
            continue;
        }
        if let Err(reason) = index.attribute(
            snapshot,
            &call.group,
            call.kind.as_deref(),
            &call.values,
            call.namespace_tag.as_deref(),
        ) {
            *tally
                .forgotten_unattributed
                .entry((
                    call.account,
                    call.region,
                    call.kind.unwrap_or_default(),
                    reason,
                ))
                .or_default() += 1;
        }
    }
}

/// Per-resource evidence.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ResourceEvidence {
    /// (account, region, error code) → events.
    pub error_events: BTreeMap<(String, String, String), u64>,
    /// Called account → events, for calls outside the resource's expected account.
    pub wrong_account_calls: BTreeMap<String, u64>,
}

/// The tally judged against a cluster.
#[derive(Debug, Clone, Default)]
pub struct TrailEvidence {
    /// Keyed by index into the snapshot's resources.
    pub resources: HashMap<usize, ResourceEvidence>,
    /// (account, region, ack kind, reason) → events.
    pub unattributed: BTreeMap<(String, String, String, Unattributed), u64>,
    pub cross_account: BTreeMap<CrossKey, u64>,
    /// `[start, end]` of the per-resource window, epoch seconds; `None` = all input.
    pub window: Option<(i64, i64)>,
}

/// Roles a controller's home account is meant to assume: its CARM maps' and team maps'
/// roles and the IAMRoleSelectors' roles.
fn expected_pivots(
    snapshot: &ClusterSnapshot,
    evaluation: &Evaluation,
) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for c in &evaluation.controllers {
        let Some(home) = &c.default_account else {
            continue;
        };
        for map in CARM_MAPS {
            if let Some(m) = snapshot.carm_map(&c.system_namespace, map) {
                for arn in m.data.values() {
                    out.insert((home.clone(), arn.clone()));
                }
            }
        }
        for s in &snapshot.role_selectors {
            out.insert((home.clone(), s.arn.clone()));
        }
    }
    out
}

/// The per-resource window `[start, end]`: it ends at `at` or else at the newest event, and
/// reaches back `window` (or to the beginning of time without one). `None` = all input.
pub fn window_bounds(
    newest: Option<i64>,
    at: Option<i64>,
    window: Option<std::time::Duration>,
) -> Option<(i64, i64)> {
    let end = at.or(newest)?;
    match (window, at) {
        (Some(w), _) => Some((
            end - i64::try_from(w.as_secs()).unwrap_or(i64::MAX / 2),
            end,
        )),
        (None, Some(_)) => Some((i64::MIN, end)),
        (None, None) => None,
    }
}

pub fn evidence(
    tally: &TrailTally,
    snapshot: &ClusterSnapshot,
    evaluation: &Evaluation,
    identifiers: &BTreeMap<String, IdentifierRule>,
    window: Option<(i64, i64)>,
) -> TrailEvidence {
    let index = AttributionIndex::build(snapshot, identifiers);
    let expected_account: HashMap<usize, Option<&String>> = evaluation
        .resources
        .iter()
        .map(|v| (v.index, v.ownership.expected_account.as_ref()))
        .collect();
    let mut out = TrailEvidence {
        window,
        unattributed: tally.forgotten_unattributed.clone(),
        ..Default::default()
    };
    for call in &tally.ack_calls {
        match index.attribute(
            snapshot,
            &call.group,
            call.kind.as_deref(),
            &call.values,
            call.namespace_tag.as_deref(),
        ) {
            Ok(i) => {
                if window.is_some_and(|(start, end)| call.time < start || call.time > end) {
                    continue;
                }
                let ev = out.resources.entry(i).or_default();
                if let Some(code) = &call.error_code {
                    *ev.error_events
                        .entry((call.account.clone(), call.region.clone(), code.clone()))
                        .or_default() += 1;
                }
                if let Some(Some(expected)) = expected_account.get(&i)
                    && **expected != call.account
                {
                    *ev.wrong_account_calls
                        .entry(call.account.clone())
                        .or_default() += 1;
                }
            }
            Err(reason) => {
                *out.unattributed
                    .entry((
                        call.account.clone(),
                        call.region.clone(),
                        call.kind.clone().unwrap_or_default(),
                        reason,
                    ))
                    .or_default() += 1;
            }
        }
    }
    let expected = expected_pivots(snapshot, evaluation);
    let pivots = tally.pivots.values().map(|(_, p)| (p, 1));
    for (p, n) in pivots.chain(tally.forgotten_pivots.iter().map(|(p, n)| (p, *n))) {
        let is_expected = p
            .role_arn
            .as_ref()
            .is_some_and(|arn| expected.contains(&(p.caller.clone(), arn.clone())));
        *out.cross_account
            .entry(CrossKey {
                caller_account: p.caller.clone(),
                recipient_account: p.recipient.clone(),
                service: p.service.clone(),
                event_name: p.event_name.clone(),
                signal: p.signal,
                expected: is_expected,
            })
            .or_default() += n;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::user_agent::AckUserAgent;

    fn record(id: &str) -> TrailRecord {
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
    fn windows() {
        use std::time::Duration;
        let h = Some(Duration::from_secs(3600));
        assert_eq!(window_bounds(Some(10_000), None, None), None);
        assert_eq!(window_bounds(Some(10_000), None, h), Some((6_400, 10_000)));
        assert_eq!(
            window_bounds(Some(10_000), Some(5_000), h),
            Some((1_400, 5_000))
        );
        assert_eq!(
            window_bounds(Some(10_000), Some(5_000), None),
            Some((i64::MIN, 5_000))
        );
        assert_eq!(window_bounds(None, None, h), None);
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
        assert!(t.ingest(r.clone()));
        assert!(!t.ingest(r.clone()));
        let mut other = record("plain-id");
        other.error_code = Some("AccessDenied".into());
        assert!(t.ingest(other.clone()));
        assert!(!t.ingest(other));
        assert_eq!(t.events, 2);
        assert_eq!(t.duplicates, 2);
        assert_eq!(t.errors_by.values().sum::<u64>(), 2);
    }

    #[test]
    fn settling_forgets_old_records_but_keeps_their_counts() {
        use crate::model::user_agent::AckUserAgent;
        let mut t = TrailTally::default();
        let mut pivot = record("p-old");
        pivot.account = "222222222222".into();
        t.ingest(pivot);
        for (id, time) in [("old", 100), ("new", 500)] {
            let mut r = record(id);
            r.event_time = time;
            r.ack = Some(AckUserAgent {
                group: "ec2.services.k8s.aws".into(),
                ..Default::default()
            });
            t.ingest(r);
        }
        let snapshot = ClusterSnapshot::default();
        let evaluation = crate::evaluate::evaluate(&snapshot, &Default::default());
        let judge = |t: &TrailTally| {
            let e = evidence(t, &snapshot, &evaluation, &BTreeMap::new(), None);
            (e.unattributed, e.cross_account)
        };
        let before = judge(&t);
        assert_eq!(before.0.values().sum::<u64>(), 2);
        assert_eq!(before.1.values().sum::<u64>(), 1);
        forget_before(&mut t, 200, &snapshot, &BTreeMap::new());
        assert_eq!(judge(&t), before);
        assert_eq!(t.ack_calls.len(), 1);
        assert_eq!(t.seen_other.len(), 1);
        // Only what is newer than the horizon is still recognised as a duplicate.
        let mut again = record("new");
        again.event_time = 500;
        assert!(!t.ingest(again));
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
    fn a_pivot_logged_twice_counts_once_under_its_strongest_signal() {
        let mut t = TrailTally::default();
        // The recipient's copy first, with the weaker signal.
        let mut a = record("a");
        a.account = "222222222222".into();
        a.shared_event_id = Some("shared".into());
        a.service = "kms".into();
        a.event_name = "Decrypt".into();
        t.ingest(a.clone());
        let mut b = a.clone();
        b.event_id = "b".into();
        b.caller_type = Some("AWSAccount".into());
        t.ingest(b);
        let e = evidence(
            &t,
            &ClusterSnapshot::default(),
            &Evaluation {
                controllers: vec![],
                resources: vec![],
                role_selectors: vec![],
            },
            &BTreeMap::new(),
            None,
        );
        assert_eq!(e.cross_account.len(), 1);
        let (k, n) = e.cross_account.iter().next().unwrap();
        assert_eq!((k.signal, *n), (Signal::AwsAccount, 1));
        assert_eq!(t.events, 2);
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
        t.ingest(r);
        assert!(t.ack_calls.is_empty());
    }
}
