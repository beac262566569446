//! The cluster-level families: resources counted per kind and namespace, the controllers
//! (info, up, problems) and the invalid IAMRoleSelectors, with their generators.

use std::collections::{BTreeMap, BTreeSet};

use super::bounded;
use crate::evaluate::ControllerSettings;
use crate::evaluate::role_selector::SelectorVerdict;
use crate::exposition::{Family, family, sample};

family!(
    RESOURCES,
    "ack_drift_resources",
    Gauge,
    "ACK resources per group, kind and namespace.",
    ["group", "kind", "namespace"]
);
family!(
    CONTROLLER_INFO,
    "ack_drift_controller_info",
    Info,
    "Each discovered or configured ACK controller: its release and the runtime it is judged as, with where that came from (config, image, image_nearest, default); value always 1.",
    [
        "service",
        "namespace",
        "deployment",
        "controller_version",
        "runtime_version",
        "runtime_source"
    ]
);
family!(
    CONTROLLER_UP,
    "ack_drift_controller_up",
    Gauge,
    "1 when the ACK controller can run, 0 when it cannot start (predicted from its flags and runtime) or has no available replica (observed).",
    ["service", "namespace", "deployment"]
);
family!(
    CONTROLLER_PROBLEM,
    "ack_drift_controller_problem",
    Gauge,
    "1 for each reason the ACK controller cannot run (undefined_flag, invalid_flag_value, invalid_feature_gate, unknown_feature_gate, role_selector_with_carm, invalid_reconcile_resources, unsupported_reconcile_kind, invalid_watch_selectors, no_available_replica).",
    ["service", "namespace", "deployment", "problem"]
);
family!(
    ROLE_SELECTOR_INVALID,
    "ack_drift_role_selector_invalid",
    Gauge,
    "1 for each IAMRoleSelector the ACK runtime rejects (validateSelector) and so never uses, by reason.",
    ["name", "reason"]
);

/// `ack_drift_resources`: (group, kind, namespace) → resources.
pub(super) fn resource_counts(
    counts: &BTreeMap<(&str, &str, &str), u64>,
) -> (&'static Family, String) {
    let mut body = String::new();
    for ((group, kind, ns), n) in counts {
        sample(&mut body, &RESOURCES, &[group, kind, ns], n);
    }
    (&RESOURCES, body)
}

/// Cluster-level input to the exposition: the controllers and the role selectors.
#[derive(Default)]
pub struct ClusterMetrics<'a> {
    pub controllers: &'a [ControllerSettings],
    pub role_selectors: &'a [SelectorVerdict],
}

/// `ack_drift_controller_info` for every discovered or configured controller,
/// `ack_drift_controller_up` for every controller with a Deployment or a reason it cannot
/// run (one without either is unknown, not up), and `ack_drift_controller_problem`.
pub(super) fn controller_blocks(c: &ClusterMetrics) -> Vec<(&'static Family, String)> {
    let (mut info, mut up, mut problems) = (String::new(), String::new(), String::new());
    for s in c.controllers {
        let (ns, name) = s
            .deployment
            .as_deref()
            .and_then(|d| d.split_once('/'))
            .unwrap_or(("", ""));
        if s.deployment.is_some() || s.configured {
            let runtime = s.runtime.to_string();
            let version = bounded(s.version.as_deref().unwrap_or(""));
            let labels = [
                &s.service,
                ns,
                name,
                &version,
                &runtime,
                s.runtime_source.as_str(),
            ];
            sample(&mut info, &CONTROLLER_INFO, &labels, 1);
        }
        if s.deployment.is_none() && s.running() {
            continue;
        }
        sample(
            &mut up,
            &CONTROLLER_UP,
            &[&s.service, ns, name],
            u8::from(s.running()),
        );
        let reasons: BTreeSet<_> = s.problems.iter().map(|p| p.problem).collect();
        for p in reasons {
            sample(
                &mut problems,
                &CONTROLLER_PROBLEM,
                &[&s.service, ns, name, p.as_str()],
                1,
            );
        }
    }
    let mut selectors = String::new();
    for v in c.role_selectors {
        if let Some(reason) = v.invalid {
            sample(
                &mut selectors,
                &ROLE_SELECTOR_INVALID,
                &[&v.name, reason.as_str()],
                1,
            );
        }
    }
    vec![
        (&CONTROLLER_INFO, info),
        (&CONTROLLER_UP, up),
        (&CONTROLLER_PROBLEM, problems),
        (&ROLE_SELECTOR_INVALID, selectors),
    ]
}
