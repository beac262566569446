//! Evaluation: pure functions over a snapshot. No I/O happens below this module.

/// Label values as they appear in JSON and on `/metrics`.
macro_rules! label_values {
    ($t:ty { $($v:ident => $s:literal),* $(,)? }) => {
        impl $t {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$v => $s),* }
            }
        }
    };
}

pub mod attribution;
pub mod cloudtrail;
pub mod controllers;
pub mod label_selector;
pub mod lookup_plan;
pub mod ownership;
pub mod release_table;
pub mod remediation;
pub mod role_selector;
pub mod runtime;
pub mod runtime_flags;
pub mod startup;
pub mod upgrade;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use crate::config::Config;
use crate::intern::{Interner, fingerprint_hasher};
use crate::model::{AckResource, ClusterSnapshot};

pub use controllers::ControllerSettings;
pub use ownership::Ownership;
use remediation::Step;

/// The verdict on one resource of the snapshot.
#[derive(Debug, Clone)]
pub struct ResourceVerdict {
    /// Index into `ClusterSnapshot::resources`.
    pub index: usize,
    /// Shared with the evaluation cache: reusing a verdict copies a pointer.
    pub ownership: Arc<Ownership>,
    pub remediation: Arc<[Step]>,
}

/// Everything evaluation says about a cluster.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub controllers: Vec<ControllerSettings>,
    pub resources: Vec<ResourceVerdict>,
    pub role_selectors: Vec<role_selector::SelectorVerdict>,
}

pub fn evaluate(snapshot: &ClusterSnapshot, config: &Config) -> Evaluation {
    evaluate_with(&mut EvaluationCache::default(), snapshot, config)
}

/// Verdicts kept between snapshots: a resource is judged again only when it changed (a new
/// `Arc`) or when what its verdict depends on changed — its namespace, its controller's
/// settings, the CARM maps of that controller's system namespace, the role selectors.
#[derive(Default)]
pub struct EvaluationCache {
    entries: HashMap<u64, CachedVerdict>,
    /// Distinct verdicts by content hash: most resources of a namespace get the same verdict,
    /// so equal verdicts share one allocation (a 100 000-resource cluster holds a few hundred).
    shared: Interner<Ownership>,
    /// Resources judged by the last call (the rest were reused).
    pub evaluated_last: usize,
}

struct CachedVerdict {
    resource: Arc<AckResource>,
    context: u64,
    ownership: Arc<Ownership>,
    remediation: Arc<[Step]>,
}

/// A fingerprint of everything outside the resource that a verdict reads.
fn context_fingerprint(
    snapshot: &ClusterSnapshot,
    controller: &ControllerSettings,
    namespace: &str,
    selectors: u64,
) -> u64 {
    let mut h = fingerprint_hasher();
    snapshot.namespaces.get(namespace).hash(&mut h);
    controller.hash(&mut h);
    for map in crate::model::CARM_MAPS {
        snapshot
            .carm_map(&controller.system_namespace, map)
            .hash(&mut h);
    }
    selectors.hash(&mut h);
    h.finish()
}

pub fn evaluate_with(
    cache: &mut EvaluationCache,
    snapshot: &ClusterSnapshot,
    config: &Config,
) -> Evaluation {
    evaluate_controllers(cache, snapshot, controllers::resolve(snapshot, config))
}

/// The verdicts with these controllers (as resolved, or moved to other runtimes).
pub fn evaluate_controllers(
    cache: &mut EvaluationCache,
    snapshot: &ClusterSnapshot,
    controllers: Vec<ControllerSettings>,
) -> Evaluation {
    let selectors = {
        let mut h = fingerprint_hasher();
        snapshot.role_selectors.hash(&mut h);
        h.finish()
    };
    let mut contexts: HashMap<(&str, usize), u64> = HashMap::new();
    let mut next = HashMap::with_capacity(snapshot.resources.len());
    let mut resources = Vec::with_capacity(snapshot.resources.len());
    cache.evaluated_last = 0;
    let empty: Arc<[Step]> = Arc::new([]);
    for (index, r) in snapshot.resources.iter().enumerate() {
        // Every service with resources has a controller entry after `resolve`.
        let Some(controller) = ownership::controller_for(&controllers, r) else {
            continue;
        };
        let slot = controller as *const ControllerSettings as usize;
        let context = *contexts
            .entry((r.namespace.as_str(), slot))
            .or_insert_with(|| context_fingerprint(snapshot, controller, &r.namespace, selectors));
        let key = r.identity_hash();
        let cached = match cache.entries.remove(&key) {
            Some(c) if Arc::ptr_eq(&c.resource, r) && c.context == context => c,
            _ => {
                cache.evaluated_last += 1;
                let o = ownership::evaluate(snapshot, controller, r);
                let remediation = remediation::steps(r, &o, controller);
                CachedVerdict {
                    resource: r.clone(),
                    context,
                    ownership: cache.shared.intern(o),
                    // Most resources need no step; they share the one empty list.
                    remediation: if remediation.is_empty() {
                        empty.clone()
                    } else {
                        remediation.into()
                    },
                }
            }
        };
        resources.push(ResourceVerdict {
            index,
            ownership: cached.ownership.clone(),
            remediation: cached.remediation.clone(),
        });
        next.insert(key, cached);
    }
    cache.entries = next;
    cache.shared.prune();
    Evaluation {
        controllers,
        resources,
        role_selectors: role_selector::verdicts(&snapshot.role_selectors),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Gvk, Namespace};

    fn snapshot() -> ClusterSnapshot {
        let mut s = ClusterSnapshot::default();
        for ns in ["a", "b"] {
            s.namespaces.insert(
                ns.into(),
                Namespace {
                    name: ns.into(),
                    ..Default::default()
                },
            );
            for i in 0..3 {
                s.resources.push(Arc::new(AckResource {
                    gvk: Gvk {
                        group: "ec2.services.k8s.aws".into(),
                        version: "v1alpha1".into(),
                        kind: "VPC".into(),
                    }
                    .into(),
                    namespace: ns.into(),
                    name: format!("v{i}"),
                    ..Default::default()
                }));
            }
        }
        s
    }

    #[test]
    fn only_what_changed_is_judged_again() {
        let config =
            Config::parse("controllers:\n  ec2:\n    default_account: '111111111111'\n").unwrap();
        let mut s = snapshot();
        let mut cache = EvaluationCache::default();
        let first = evaluate_with(&mut cache, &s, &config);
        assert_eq!(cache.evaluated_last, 6);
        evaluate_with(&mut cache, &s, &config);
        assert_eq!(cache.evaluated_last, 0);

        // A namespace annotation re-judges that namespace's resources only.
        s.namespaces.get_mut("a").unwrap().owner_account_id = Some("222222222222".into());
        let second = evaluate_with(&mut cache, &s, &config);
        assert_eq!(cache.evaluated_last, 3);
        assert_ne!(first.resources[0].ownership, second.resources[0].ownership);

        // A changed resource is judged again.
        let mut r = (*s.resources[4]).clone();
        r.labels.insert("x".into(), "y".into());
        s.resources[4] = Arc::new(r);
        evaluate_with(&mut cache, &s, &config);
        assert_eq!(cache.evaluated_last, 1);

        // A CARM map change re-judges everything its controller judges.
        s.carm_maps.push(crate::model::CarmMap {
            namespace: "ack-system".into(),
            name: crate::model::ACCOUNT_MAP.into(),
            data: [(
                "222222222222".to_string(),
                "arn:aws:iam::222222222222:role/r".to_string(),
            )]
            .into_iter()
            .collect(),
        });
        let third = evaluate_with(&mut cache, &s, &config);
        assert_eq!(cache.evaluated_last, 6);
        // And the result equals a fresh evaluation.
        let fresh = evaluate(&s, &config);
        for (a, b) in third.resources.iter().zip(&fresh.resources) {
            assert_eq!(a.ownership, b.ownership);
        }
    }

    #[test]
    fn equal_verdicts_share_one_allocation() {
        let config =
            Config::parse("controllers:\n  ec2:\n    default_account: '111111111111'\n").unwrap();
        let mut s = snapshot();
        s.namespaces.get_mut("b").unwrap().owner_account_id = Some("222222222222".into());
        let mut cache = EvaluationCache::default();
        let e = evaluate_with(&mut cache, &s, &config);
        // Namespace a's three share one verdict, b's three another.
        let distinct: std::collections::HashSet<*const Ownership> = e
            .resources
            .iter()
            .map(|v| Arc::as_ptr(&v.ownership))
            .collect();
        assert_eq!(distinct.len(), 2);
        assert_eq!(cache.shared.len(), 2);
        // A verdict nobody uses any more is forgotten.
        s.namespaces.get_mut("b").unwrap().owner_account_id = None;
        drop(e);
        let e = evaluate_with(&mut cache, &s, &config);
        assert_eq!(cache.shared.len(), 1);
        assert!(Arc::ptr_eq(
            &e.resources[0].ownership,
            &e.resources[5].ownership
        ));
    }
}
