//! Evaluation: pure functions over a snapshot. No I/O happens below this module.

pub mod attribution;
pub mod cloudtrail;
pub mod controllers;
pub mod ownership;
pub mod remediation;
pub mod role_selector;

use crate::config::Config;
use crate::model::ClusterSnapshot;

pub use controllers::ControllerSettings;
pub use ownership::Ownership;

/// The verdict on one resource of the snapshot.
#[derive(Debug, Clone)]
pub struct ResourceVerdict {
    /// Index into `ClusterSnapshot::resources`.
    pub index: usize,
    pub ownership: Ownership,
    pub remediation: Vec<String>,
}

/// Everything evaluation says about a cluster.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub controllers: Vec<ControllerSettings>,
    pub resources: Vec<ResourceVerdict>,
}

pub fn evaluate(snapshot: &ClusterSnapshot, config: &Config) -> Evaluation {
    let controllers = controllers::resolve(snapshot, config);
    let resources = snapshot
        .resources
        .iter()
        .enumerate()
        .filter_map(|(index, r)| {
            // Every service with resources has a controller entry after `resolve`.
            let controller = ownership::controller_for(&controllers, r)?;
            let o = ownership::evaluate(snapshot, controller, r);
            let remediation = remediation::steps(r, &o, controller);
            Some(ResourceVerdict {
                index,
                ownership: o,
                remediation,
            })
        })
        .collect();
    Evaluation {
        controllers,
        resources,
    }
}
