//! The CloudTrail families: events, errors, cross-account pivots and unattributed ACK calls
//! as counted from the de-duplicated tally, and the per-resource window, with their generator.

use crate::evaluate::cloudtrail::TrailView;
use crate::exposition::{Family, family, sample};

family!(
    CLOUDTRAIL_EVENTS,
    "ack_drift_cloudtrail_events_total",
    Counter,
    "Distinct CloudTrail events read (by eventID); ack_kind is the CRDKind of ACK callers, empty for others.",
    ["account", "region", "service", "ack_kind"]
);
family!(
    CLOUDTRAIL_ERRORS,
    "ack_drift_cloudtrail_errors_total",
    Counter,
    "Distinct CloudTrail events with an errorCode (EC2's Client./Server. prefix stripped).",
    [
        "account",
        "region",
        "service",
        "event_name",
        "error_code",
        "ack_kind"
    ]
);
family!(
    CLOUDTRAIL_CROSS_ACCOUNT,
    "ack_drift_cloudtrail_cross_account_calls_total",
    Counter,
    "Calls crossing AWS accounts, one per pivot even when logged in both accounts; expected is true when a controller's CARM maps, team maps or IAMRoleSelectors name the assumed role.",
    [
        "caller_account",
        "recipient_account",
        "service",
        "event_name",
        "signal",
        "expected"
    ]
);
family!(
    CLOUDTRAIL_UNATTRIBUTED,
    "ack_drift_cloudtrail_unattributed_ack_events_total",
    Counter,
    "ACK-originated events not tied to exactly one resource, by reason (no_match, ambiguous, no_kind).",
    ["account", "region", "ack_kind", "reason"]
);
family!(
    CLOUDTRAIL_WINDOW,
    "ack_drift_cloudtrail_window_seconds",
    Gauge,
    "Length of the sliding window the per-resource CloudTrail gauges cover.",
    []
);

pub(super) fn trail_blocks(t: &TrailView) -> Vec<(&'static Family, String)> {
    let mut events = String::new();
    let mut sorted: Vec<_> = t.tally.events_by.iter().collect();
    sorted.sort();
    for (k, n) in sorted {
        sample(
            &mut events,
            &CLOUDTRAIL_EVENTS,
            &[&k.account, &k.region, &k.service, &k.ack_kind],
            n,
        );
    }
    let mut errors = String::new();
    let mut sorted: Vec<_> = t.tally.errors_by.iter().collect();
    sorted.sort();
    for (k, n) in sorted {
        sample(
            &mut errors,
            &CLOUDTRAIL_ERRORS,
            &[
                &k.account,
                &k.region,
                &k.service,
                &k.event_name,
                &k.error_code,
                &k.ack_kind,
            ],
            n,
        );
    }
    let mut cross = String::new();
    for (k, n) in &t.evidence.cross_account {
        sample(
            &mut cross,
            &CLOUDTRAIL_CROSS_ACCOUNT,
            &[
                &k.caller_account,
                &k.recipient_account,
                &k.service,
                &k.event_name,
                k.signal.as_str(),
                if k.expected { "true" } else { "false" },
            ],
            n,
        );
    }
    let mut unattributed = String::new();
    for ((account, region, kind, reason), n) in &t.evidence.unattributed {
        sample(
            &mut unattributed,
            &CLOUDTRAIL_UNATTRIBUTED,
            &[account, region, kind, reason.as_str()],
            n,
        );
    }
    let mut window = String::new();
    sample(&mut window, &CLOUDTRAIL_WINDOW, &[], t.window_seconds);
    vec![
        (&CLOUDTRAIL_EVENTS, events),
        (&CLOUDTRAIL_ERRORS, errors),
        (&CLOUDTRAIL_CROSS_ACCOUNT, cross),
        (&CLOUDTRAIL_UNATTRIBUTED, unattributed),
        (&CLOUDTRAIL_WINDOW, window),
    ]
}
