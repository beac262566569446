//! CloudTrail evidence: the store's tally ([`crate::state::trail`]) judged against a cluster
//! snapshot — per-resource error storms and wrong-account calls, unattributed ACK calls,
//! expected and unexpected cross-account pivots — and the one view of it every output reads.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::Evaluation;
use super::attribution::AttributionIndex;
use crate::config::IdentifierRule;
use crate::model::trail::Unattributed;
use crate::model::{CARM_MAPS, ClusterSnapshot};
use crate::state::trail::{Signal, TrailTally};

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

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CrossKey {
    pub caller_account: String,
    pub recipient_account: String,
    pub service: String,
    pub event_name: String,
    pub signal: Signal,
    pub expected: bool,
}

/// Forgets what a live source no longer needs: eventIDs, pivots and ACK calls older than
/// `before` (the start of the window less the allowance it re-reads). What the counters saw
/// of them stays counted; the unattributed calls are judged once more against the snapshot,
/// so the unattributed counter keeps them too.
pub fn forget_before(
    tally: &mut TrailTally,
    before: i64,
    snapshot: &ClusterSnapshot,
    identifiers: &BTreeMap<String, IdentifierRule>,
) {
    let old = tally.forget_before(before);
    if old.is_empty() {
        return;
    }
    let index = AttributionIndex::build(snapshot, identifiers);
    for call in old {
        if let Err(reason) = index.attribute(
            snapshot,
            &call.group,
            call.kind.as_deref(),
            &call.values,
            call.namespace_tag.as_deref(),
        ) {
            let key = (
                call.account,
                call.region,
                call.kind.unwrap_or_default(),
                reason,
            );
            *tally.forgotten_unattributed.entry(key).or_default() += 1;
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
    use crate::state::trail::tests::record;

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
    fn settling_forgets_old_records_but_keeps_their_counts() {
        use crate::model::user_agent::AckUserAgent;
        let mut t = TrailTally::default();
        let mut pivot = record("p-old");
        pivot.account = "222222222222".into();
        t.ingest(&pivot);
        for (id, time) in [("old", 100), ("new", 500)] {
            let mut r = record(id);
            r.event_time = time;
            r.ack = Some(AckUserAgent {
                group: "ec2.services.k8s.aws".into(),
                ..Default::default()
            });
            t.ingest(&r);
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
        // Only what is newer than the horizon is still recognised as a duplicate.
        let mut again = record("new");
        again.event_time = 500;
        assert!(!t.ingest(&again));
        let mut forgotten = record("old");
        forgotten.event_time = 100;
        assert!(t.ingest(&forgotten), "the old eventID was forgotten");
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
        t.ingest(&a.clone());
        let mut b = a.clone();
        b.event_id = "b".into();
        b.caller_type = Some("AWSAccount".into());
        t.ingest(&b);
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
}
