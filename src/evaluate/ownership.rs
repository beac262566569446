//! Which AWS account and region each ACK resource should live in, what its status records,
//! and what the controller will do about a difference (DESIGN §2, §5). Pure functions.

use std::collections::BTreeSet;

use serde::Serialize;

use super::controllers::{ControllerSettings, gates};
use super::role_selector;
use crate::config::Runtime;
use crate::model::{ACCOUNT_MAP, AckResource, ClusterSnapshot, Namespace, TEAM_MAP, arn_account};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum AccountSource {
    IamRoleSelector,
    Team,
    Namespace,
    ControllerDefault,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum RegionSource {
    ResourceAnnotation,
    Namespace,
    ControllerDefault,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Problem {
    RoleUnavailable,
    SelectorConflict,
    ArnAccountMismatch,
    Unresolved,
    NotSynced,
    Terminal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// The controller keeps calling an account other than the target.
    CallsWrongAccount,
    /// The controller uses the target account; the status still names the other one.
    StaleStatus,
    /// The controller cannot reconcile (terminal error or no role to assume).
    Blocked,
}

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

label_values!(AccountSource {
    IamRoleSelector => "iam_role_selector",
    Team => "team",
    Namespace => "namespace",
    ControllerDefault => "controller_default",
});
label_values!(RegionSource {
    ResourceAnnotation => "resource_annotation",
    Namespace => "namespace",
    ControllerDefault => "controller_default",
});
label_values!(Problem {
    RoleUnavailable => "role_unavailable",
    SelectorConflict => "selector_conflict",
    ArnAccountMismatch => "arn_account_mismatch",
    Unresolved => "unresolved",
    NotSynced => "not_synced",
    Terminal => "terminal",
});
label_values!(Effect {
    CallsWrongAccount => "calls_wrong_account",
    StaleStatus => "stale_status",
    Blocked => "blocked",
});

/// The verdict on one resource.
#[derive(Debug, Clone, PartialEq, Serialize, Hash)]
pub struct Ownership {
    pub status_account: Option<String>,
    pub status_region: Option<String>,
    pub arn_account: Option<String>,
    pub expected_account: Option<String>,
    pub account_source: Option<AccountSource>,
    pub account_drift: bool,
    pub expected_region: Option<String>,
    pub region_source: Option<RegionSource>,
    pub region_drift: bool,
    pub problems: BTreeSet<Problem>,
    pub effect: Option<Effect>,
    /// The role the controller would assume for the target (selector, team or account map).
    pub role_arn: Option<String>,
    /// Selectors matching the resource (more than one is a conflict).
    pub matched_selectors: Vec<String>,
    /// The account the controller really calls, when it can call one.
    pub called_account: Option<String>,
    /// `namespace/name` of the controller Deployment judged responsible.
    pub controller: Option<String>,
    pub runtime: Runtime,
}

/// The target account ignoring status, as the runtime's rules 1–3 and 5 give it.
#[derive(Debug, Clone, Default, PartialEq)]
struct Target {
    account: Option<String>,
    source: Option<AccountSource>,
    role_arn: Option<String>,
    role_unavailable: bool,
    matched_selectors: Vec<String>,
}

/// Looks `id` up in a CARM map of the controller's system namespace; with ServiceLevelCARM the
/// `<service>.<id>` key is tried first.
pub fn carm_lookup<'s>(
    snapshot: &'s ClusterSnapshot,
    controller: &ControllerSettings,
    map: &str,
    id: &str,
) -> Option<&'s str> {
    let data = &snapshot.carm_map(&controller.system_namespace, map)?.data;
    if controller.gate(gates::SERVICE_LEVEL_CARM)
        && let Some(arn) = data.get(&format!("{}.{}", controller.service, id))
    {
        return Some(arn);
    }
    data.get(id).map(String::as_str)
}

fn target(
    snapshot: &ClusterSnapshot,
    resource: &AckResource,
    namespace: Option<&Namespace>,
    controller: &ControllerSettings,
) -> Target {
    if controller.gate(gates::IAM_ROLE_SELECTOR) {
        let found = role_selector::matching(&snapshot.role_selectors, resource, namespace);
        match found.as_slice() {
            [] => {}
            [one] => {
                return Target {
                    account: arn_account(&one.arn),
                    source: Some(AccountSource::IamRoleSelector),
                    role_arn: Some(one.arn.clone()),
                    matched_selectors: vec![one.name.clone()],
                    ..Default::default()
                };
            }
            many => {
                // The controller errors out: no fall-through to lower rules.
                return Target {
                    matched_selectors: many.iter().map(|s| s.name.clone()).collect(),
                    ..Default::default()
                };
            }
        }
    }
    if controller.carm
        && let Some(ns) = namespace
    {
        if controller.gate(gates::TEAM_LEVEL_CARM)
            && let Some(team) = ns.team_id.as_deref().filter(|t| !t.is_empty())
        {
            return match carm_lookup(snapshot, controller, TEAM_MAP, team) {
                Some(arn) => Target {
                    account: arn_account(arn),
                    source: Some(AccountSource::Team),
                    role_arn: Some(arn.to_string()),
                    ..Default::default()
                },
                None => Target {
                    source: Some(AccountSource::Team),
                    role_unavailable: true,
                    ..Default::default()
                },
            };
        }
        if let Some(acct) = ns.owner_account_id.as_deref().filter(|a| !a.is_empty()) {
            // The controller's own account needs no role from the map.
            if controller.default_account.as_deref() == Some(acct) {
                return Target {
                    account: Some(acct.to_string()),
                    source: Some(AccountSource::Namespace),
                    ..Default::default()
                };
            }
            return match carm_lookup(snapshot, controller, ACCOUNT_MAP, acct) {
                Some(arn) => Target {
                    account: arn_account(arn).or_else(|| Some(acct.to_string())),
                    source: Some(AccountSource::Namespace),
                    role_arn: Some(arn.to_string()),
                    ..Default::default()
                },
                None => Target {
                    account: Some(acct.to_string()),
                    source: Some(AccountSource::Namespace),
                    role_unavailable: true,
                    ..Default::default()
                },
            };
        }
    }
    Target {
        source: controller
            .default_account
            .as_ref()
            .map(|_| AccountSource::ControllerDefault),
        account: controller.default_account.clone(),
        ..Default::default()
    }
}

/// The region the controller uses for the resource, ignoring status.
pub fn expected_region(
    resource: &AckResource,
    namespace: Option<&Namespace>,
    controller: &ControllerSettings,
) -> (Option<String>, Option<RegionSource>) {
    if let Some(r) = resource
        .region_annotation
        .as_ref()
        .filter(|r| !r.is_empty())
    {
        return (Some(r.clone()), Some(RegionSource::ResourceAnnotation));
    }
    // Namespace annotations are only read with CARM or the role-selector gate on.
    let reads_namespace = controller.carm || controller.gate(gates::IAM_ROLE_SELECTOR);
    if reads_namespace
        && let Some(r) = namespace
            .and_then(|n| n.default_region.as_ref())
            .filter(|r| !r.is_empty())
    {
        return (Some(r.clone()), Some(RegionSource::Namespace));
    }
    match &controller.default_region {
        Some(r) => (Some(r.clone()), Some(RegionSource::ControllerDefault)),
        None => (None, None),
    }
}

/// The account the controller reaches when it falls back to the status account: its own
/// credentials for its own account, a mapped role with CARM on, nothing without a map entry.
/// `Err(())` means the controller cannot get a role (blocked).
fn status_account_called(
    snapshot: &ClusterSnapshot,
    controller: &ControllerSettings,
    status_account: &str,
) -> Result<Option<String>, ()> {
    if controller.default_account.as_deref() == Some(status_account) {
        return Ok(Some(status_account.to_string()));
    }
    if !controller.carm {
        return Ok(controller.default_account.clone());
    }
    match carm_lookup(snapshot, controller, ACCOUNT_MAP, status_account) {
        Some(arn) => Ok(arn_account(arn).or_else(|| Some(status_account.to_string()))),
        None => Err(()),
    }
}

/// The controller responsible for a resource: one of its service that watches the namespace,
/// preferring one that names it explicitly.
pub fn controller_for<'c>(
    controllers: &'c [ControllerSettings],
    resource: &AckResource,
) -> Option<&'c ControllerSettings> {
    let service = resource.gvk.ack_service()?;
    let of_service = || controllers.iter().filter(move |c| c.service == service);
    of_service()
        .find(|c| c.watch_namespaces.iter().any(|n| n == &resource.namespace))
        .or_else(|| of_service().find(|c| c.watches(&resource.namespace)))
        .or_else(|| of_service().next())
}

/// The full verdict for one resource.
pub fn evaluate(
    snapshot: &ClusterSnapshot,
    controller: &ControllerSettings,
    resource: &AckResource,
) -> Ownership {
    let namespace = snapshot.namespaces.get(&resource.namespace);
    let md = resource.metadata.as_ref();
    let status_account = md
        .and_then(|m| m.owner_account_id.clone())
        .filter(|s| !s.is_empty());
    let status_region = md.and_then(|m| m.region.clone()).filter(|s| !s.is_empty());
    let arn_acct = md.and_then(|m| m.arn.as_deref()).and_then(arn_account);

    let t = target(snapshot, resource, namespace, controller);
    let (expected_region, region_source) = expected_region(resource, namespace, controller);
    let mut problems = BTreeSet::new();

    let conflict = t.matched_selectors.len() > 1;
    if conflict {
        problems.insert(Problem::SelectorConflict);
    }
    if t.role_unavailable {
        problems.insert(Problem::RoleUnavailable);
    }
    if t.account.is_none() && !conflict && !t.role_unavailable {
        problems.insert(Problem::Unresolved);
    }
    if let (Some(a), Some(s)) = (&arn_acct, &status_account)
        && a != s
    {
        problems.insert(Problem::ArnAccountMismatch);
    }
    if resource
        .condition("ACK.ResourceSynced")
        .is_none_or(|c| c.status != "True")
    {
        problems.insert(Problem::NotSynced);
    }
    if resource
        .condition("ACK.Terminal")
        .is_some_and(|c| c.status == "True")
    {
        problems.insert(Problem::Terminal);
    }

    let account_drift = matches!((&status_account, &t.account), (Some(s), Some(e)) if s != e);
    let region_drift = matches!((&status_region, &expected_region), (Some(s), Some(e)) if s != e);

    let mut effect = None;
    let mut called_account = if t.role_unavailable {
        None
    } else {
        t.account.clone()
    };
    if account_drift && let Some(status) = status_account.as_deref() {
        let falls_back = match t.source {
            Some(AccountSource::ControllerDefault) => true,
            _ => controller.runtime == Runtime::Legacy,
        };
        effect = Some(if falls_back {
            // The status account wins: what happens depends on whether it can be reached.
            match status_account_called(snapshot, controller, status) {
                Ok(called) => {
                    called_account = called.clone();
                    if called.is_some() && called != t.account {
                        Effect::CallsWrongAccount
                    } else {
                        Effect::StaleStatus
                    }
                }
                Err(()) => {
                    called_account = None;
                    problems.insert(Problem::RoleUnavailable);
                    Effect::Blocked
                }
            }
        } else {
            match controller.runtime {
                Runtime::Strict => {
                    called_account = None;
                    Effect::Blocked
                }
                _ if t.role_unavailable => Effect::Blocked,
                _ => Effect::StaleStatus,
            }
        });
    }

    Ownership {
        status_account,
        status_region,
        arn_account: arn_acct,
        expected_account: t.account,
        account_source: if conflict { None } else { t.source },
        account_drift,
        expected_region,
        region_source,
        region_drift,
        problems,
        effect,
        role_arn: t.role_arn,
        matched_selectors: t.matched_selectors,
        called_account,
        controller: controller.deployment.clone(),
        runtime: controller.runtime,
    }
}

#[cfg(test)]
#[path = "ownership_test.rs"]
mod tests;
