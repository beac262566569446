//! `upgrade-preview`: the cluster judged twice, as it is and with some controllers on other
//! runtimes (README "Before upgrading a controller"). Pure: a snapshot and a config in, the
//! resources and controllers whose verdict changes out.

use std::collections::BTreeMap;

use serde::Serialize;

use super::controllers::{self, Upgrade};
use super::ownership::{Effect, Ownership, Problem, RegionEffect};
use super::release_table::{self, PinnedRuntime};
use super::remediation::{self, Step};
use super::runtime_flags;
use super::startup::StartupProblem;
use super::{ControllerSettings, EvaluationCache, evaluate_controllers};
use crate::config::Config;
use crate::model::runtime_version::RuntimeVersion;
use crate::model::{AckResource, ClusterSnapshot};

/// The preview JSON's version (README "Before upgrading a controller").
pub const SCHEMA_VERSION: u32 = 1;

/// `<service>=<controller release>` or `<service>=<runtime version>`: a release of that
/// controller in the release table first, then a runtime release the exporter knows.
pub fn parse_target(arg: &str) -> Result<(String, Upgrade), String> {
    let Some((service, value)) = arg
        .split_once('=')
        .filter(|(s, v)| !s.is_empty() && !v.is_empty())
    else {
        return Err(format!(
            "{arg:?}: expected <service>=<controller release or runtime version>, e.g. ec2=1.20.0 or ec2=v0.62.0"
        ));
    };
    if let Some((release, runtime)) = release_table::listed_release(service, value) {
        let release = Some(release.to_string());
        return Ok((service.to_string(), Upgrade { runtime, release }));
    }
    match value.parse::<RuntimeVersion>() {
        Ok(version) if known_runtime(version) => Ok((
            service.to_string(),
            Upgrade {
                runtime: PinnedRuntime {
                    version,
                    commit: None,
                },
                release: None,
            },
        )),
        _ => Err(format!(
            "{arg:?}: {value} is neither a release of {service}-controller in the release table nor a known runtime version"
        )),
    }
}

/// A runtime release in the flag table, or the newest one known.
fn known_runtime(v: RuntimeVersion) -> bool {
    v == RuntimeVersion::NEWEST || runtime_flags::is_listed_release(v)
}

/// What the controller does with a resource, before or after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub effect: Option<Effect>,
    pub region_effect: Option<RegionEffect>,
    pub called_account: Option<String>,
    pub problems: Vec<Problem>,
}

impl Verdict {
    fn of(o: &Ownership) -> Self {
        Verdict {
            effect: o.effect,
            region_effect: o.region_effect,
            called_account: o.called_account.clone(),
            problems: o.problems.iter().copied().collect(),
        }
    }

    fn has(&self, p: Problem) -> bool {
        self.problems.contains(&p)
    }

    /// Nothing is called: a terminal check, a failed lookup, a selector conflict.
    fn blocked(&self) -> bool {
        self.effect == Some(Effect::Blocked)
            || self.region_effect == Some(RegionEffect::Blocked)
            || [
                Problem::TerminalMismatch,
                Problem::RoleUnavailable,
                Problem::SelectorConflict,
            ]
            .iter()
            .any(|p| self.has(*p))
    }

    fn idle(&self) -> bool {
        self.has(Problem::ControllerNotRunning) || self.has(Problem::NotReconciled)
    }

    fn calls_elsewhere(&self) -> bool {
        self.effect == Some(Effect::CallsWrongAccount)
            || self.region_effect == Some(RegionEffect::CallsWrongRegion)
    }
}

/// True when `after` is worse than `before`: it becomes blocked, is no longer reconciled, or
/// starts calling another account or region than its target.
pub fn worse(before: &Verdict, after: &Verdict) -> bool {
    (after.blocked() && !before.blocked())
        || (after.idle() && !before.idle())
        || (after.calls_elsewhere() && !before.calls_elsewhere())
}

#[derive(Debug, Clone, Serialize)]
pub struct ResourceChange {
    pub group: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub before: Verdict,
    pub after: Verdict,
    pub worse: bool,
    /// For a resource that would become blocked: back it up, then avoid the breakage.
    pub remediation: Vec<Step>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ControllerChange {
    pub service: String,
    pub deployment: Option<String>,
    pub runtime_before: String,
    pub runtime_after: String,
    pub release_after: Option<String>,
    pub running_before: bool,
    pub running_after: bool,
    /// Why it would not start on the new runtime (flags or gates it does not accept).
    pub problems_after: Vec<StartupProblem>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Preview {
    pub schema_version: u32,
    pub controllers: Vec<ControllerChange>,
    /// Resources whose verdict changes, in the snapshot's order.
    pub resources: Vec<ResourceChange>,
    /// Resources judged, and how many change and get worse.
    pub resources_judged: usize,
    pub changed: usize,
    pub worse: usize,
}

impl Preview {
    /// True when some resource or controller would get worse (exit code 1).
    pub fn breaks_something(&self) -> bool {
        self.worse > 0
            || self
                .controllers
                .iter()
                .any(|c| c.running_before && !c.running_after)
    }
}

/// Judges the cluster as it is and with `upgrades` applied, and lists what changes.
pub fn preview(
    snapshot: &ClusterSnapshot,
    config: &Config,
    upgrades: &BTreeMap<String, Upgrade>,
) -> Preview {
    let now = controllers::resolve(snapshot, config);
    let moved = controllers::resolve_upgraded(snapshot, config, upgrades);
    let controllers = controller_changes(&now, &moved, upgrades);
    let before = evaluate_controllers(&mut EvaluationCache::default(), snapshot, now);
    let after = evaluate_controllers(&mut EvaluationCache::default(), snapshot, moved);
    let mut resources = Vec::new();
    for (b, a) in before.resources.iter().zip(&after.resources) {
        let (vb, va) = (Verdict::of(&b.ownership), Verdict::of(&a.ownership));
        if vb == va {
            continue;
        }
        let r = &snapshot.resources[a.index];
        let worse = worse(&vb, &va);
        let remediation = if va.blocked() && !vb.blocked() {
            before_upgrade(r, &a.remediation)
        } else {
            Vec::new()
        };
        resources.push(ResourceChange {
            group: r.gvk.group.clone(),
            kind: r.gvk.kind.clone(),
            namespace: r.namespace.clone(),
            name: r.name.clone(),
            before: vb,
            after: va,
            worse,
            remediation,
        });
    }
    let worse = resources.iter().filter(|c| c.worse).count();
    Preview {
        schema_version: SCHEMA_VERSION,
        controllers,
        changed: resources.len(),
        worse,
        resources,
        resources_judged: before.resources.len(),
    }
}

/// For a resource the upgrade would block: back it up, then the steps of its verdict after
/// the upgrade, without their own backup.
fn before_upgrade(r: &AckResource, after: &[Step]) -> Vec<Step> {
    let save = remediation::save_manifest(r);
    let mut steps = vec![
        Step {
            explain: "Back it up before the upgrade".to_string(),
            ..save.clone()
        },
        Step::note(
            "Fix the status or recreate the CR before the upgrade, as below; after it the controller refuses the resource and a plain delete hangs.",
        ),
    ];
    steps.extend(after.iter().filter(|s| **s != save).cloned());
    steps
}

/// The controllers being moved: runtime before and after, and whether they still start.
fn controller_changes(
    now: &[ControllerSettings],
    moved: &[ControllerSettings],
    upgrades: &BTreeMap<String, Upgrade>,
) -> Vec<ControllerChange> {
    now.iter()
        .zip(moved)
        .filter(|(_, m)| upgrades.contains_key(&m.service))
        .map(|(n, m)| ControllerChange {
            service: m.service.clone(),
            deployment: m.deployment.clone(),
            runtime_before: n.runtime.to_string(),
            runtime_after: m.runtime.to_string(),
            release_after: upgrades[&m.service].release.clone(),
            running_before: n.running(),
            running_after: m.running(),
            problems_after: m.problems.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_name_a_release_first_then_a_runtime() {
        let (service, u) = parse_target("ec2=1.20.0").unwrap();
        assert_eq!(service, "ec2");
        assert_eq!(u.runtime.version.to_string(), "v0.62.0");
        assert_eq!(u.release.as_deref(), Some("1.20.0"));
        let (_, u) = parse_target("ec2=v1.2.0").unwrap();
        assert_eq!(
            (u.runtime.version.to_string(), u.release.as_deref()),
            ("v0.28.0".to_string(), Some("1.2.0"))
        );
        // ec2 has no release 0.53.0: the runtime.
        let (_, u) = parse_target("ec2=v0.53.0").unwrap();
        assert_eq!(
            (u.runtime.version.to_string(), u.release),
            ("v0.53.0".to_string(), None)
        );
        let (_, u) = parse_target("rds=v0.62.0").unwrap();
        assert_eq!(u.runtime.version, RuntimeVersion::NEWEST);
        // A release pinning a commit keeps it, for its flags.
        let (_, u) = parse_target("iam=1.3.10").unwrap();
        assert!(u.runtime.commit.is_some());
        for bad in [
            "ec2",
            "=v0.62.0",
            "ec2=",
            "ec2=v0.99.0",
            "ec2=7.7.7",
            "ec2=latest",
        ] {
            let e = parse_target(bad).unwrap_err();
            assert!(e.contains(bad), "{bad}: {e}");
        }
    }

    fn verdict(effect: Option<Effect>, problems: &[Problem]) -> Verdict {
        Verdict {
            effect,
            region_effect: None,
            called_account: None,
            problems: problems.to_vec(),
        }
    }

    #[test]
    fn worse_means_blocked_idle_or_calling_elsewhere() {
        use Effect::*;
        let wrong = verdict(Some(CallsWrongAccount), &[]);
        let stale = verdict(Some(StaleStatus), &[]);
        let blocked = verdict(Some(Blocked), &[Problem::TerminalMismatch]);
        let idle = verdict(None, &[Problem::ControllerNotRunning]);
        assert!(worse(&wrong, &blocked), "the seed incident on v0.53+");
        assert!(worse(&stale, &idle));
        assert!(worse(&stale, &wrong));
        assert!(
            !worse(&wrong, &stale),
            "an upgrade that stops the wrong calls is better"
        );
        assert!(!worse(&blocked, &blocked));
        assert!(!worse(&blocked, &stale));
    }
}
