//! Which AWS account and region each ACK resource should live in, what its status records,
//! and what its controller will do about a difference: the ACK runtime's `Reconcile`
//! (`pkg/runtime/reconciler.go`) replayed, up to its first AWS call, as the controller's
//! runtime version runs it (README "How the verdict is reached"). Pure functions.

use std::collections::BTreeSet;

use serde::Serialize;

use super::controllers::{ControllerSettings, gates};
use super::role_selector;
use super::runtime::{AccountOrder, TeamCarm};
use crate::model::account::{go_arn_account, is_account_id};
use crate::model::runtime_version::{RuntimeName, RuntimeVersion};
use crate::model::{
    ACCOUNT_MAP, AckResource, CARM_V2_MAP, ClusterSnapshot, Namespace, TEAM_MAP, arn_account,
};

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
    /// The mapped role lives in another account than the one it was looked up for.
    RoleAccountMismatch,
    ArnAccountMismatch,
    Unresolved,
    NotSynced,
    Terminal,
    /// Blocked by a status account or region that differs from the target (>= v0.53): a
    /// terminal error with no `ACK.Terminal` condition, and a delete that hangs.
    TerminalMismatch,
    /// Its controller cannot start or has no available replica: nothing is reconciled.
    ControllerNotRunning,
    /// Outside `--watch-namespace`, `--reconcile-resources` or `--watch-selectors`.
    NotReconciled,
    /// The namespace's owner-account annotation is not 12 digits (looked up as written).
    InvalidAccountId,
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

/// What the controller does about a region drift.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum RegionEffect {
    /// Before v0.53 `getRegion` takes the status region first: calls keep going there.
    CallsWrongRegion,
    /// Nothing is called: the v0.53+ terminal check, or a lookup that failed before it.
    Blocked,
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
    RoleAccountMismatch => "role_account_mismatch",
    ArnAccountMismatch => "arn_account_mismatch",
    Unresolved => "unresolved",
    NotSynced => "not_synced",
    Terminal => "terminal",
    TerminalMismatch => "terminal_mismatch",
    ControllerNotRunning => "controller_not_running",
    NotReconciled => "not_reconciled",
    InvalidAccountId => "invalid_account_id",
});
label_values!(Effect {
    CallsWrongAccount => "calls_wrong_account",
    StaleStatus => "stale_status",
    Blocked => "blocked",
});
label_values!(RegionEffect {
    CallsWrongRegion => "calls_wrong_region",
    Blocked => "blocked",
});

/// Why a lookup found no usable role (`CARMMap.GetValue`, `arn.Parse`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RoleErrorReason {
    /// The CARM caches do not run (flags), so every lookup reports the map as missing.
    CarmNotRunning,
    MapNotFound,
    KeyNotFound,
    EmptyValue,
    /// The value is no ARN Go's `arn.Parse` accepts.
    InvalidArn,
}

label_values!(RoleErrorReason {
    CarmNotRunning => "carm_not_running",
    MapNotFound => "map_not_found",
    KeyNotFound => "key_not_found",
    EmptyValue => "empty_value",
    InvalidArn => "invalid_arn",
});

/// A failed role lookup: which map (or `IAMRoleSelector`), which key, why.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct RoleError {
    pub map: &'static str,
    pub key: String,
    pub reason: RoleErrorReason,
}

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
    pub region_effect: Option<RegionEffect>,
    /// The role the controller would assume for the target (selector, team or account map).
    pub role_arn: Option<String>,
    /// The lookup that failed, when a problem is `role_unavailable`.
    pub role_error: Option<RoleError>,
    /// Selectors matching the resource (more than one is a conflict).
    pub matched_selectors: Vec<String>,
    /// The account the controller really calls, when it can call one.
    pub called_account: Option<String>,
    /// `namespace/name` of the controller Deployment judged responsible.
    pub controller: Option<String>,
    pub runtime: RuntimeVersion,
    pub runtime_name: Option<RuntimeName>,
}

/// Why `Reconcile` stops before any AWS call.
#[derive(Debug, Clone, PartialEq)]
enum Block {
    /// A CARM or selector lookup failed (`handleCacheError`, or a plain parse error).
    Role(RoleError),
    /// Several IAMRoleSelectors match (a plain error).
    SelectorConflict,
    /// Status region or account differs from the target: terminal, no condition (>= v0.53).
    RegionMismatch,
    AccountMismatch,
}

/// One replay of `Reconcile` for a resource, up to its first AWS call.
#[derive(Debug, Clone, PartialEq, Default)]
struct Replay {
    /// The account the runtime works with (`acctID`).
    account: Option<String>,
    source: Option<AccountSource>,
    role_arn: Option<String>,
    /// The chosen role lives in another account than the one it was looked up for.
    role_account_mismatch: bool,
    matched_selectors: Vec<String>,
    /// Before v0.31.0 a failed lookup for another account than the controller's own is
    /// dropped: the controller carries on with its own credentials.
    silent_miss: Option<RoleError>,
    /// `Err` when it stops; else the account its calls land in (`None`: unknown).
    outcome: Option<Result<Option<String>, Block>>,
}

/// What the CARM namespace cache (`NamespaceCache`) holds for a namespace: nothing when the
/// caches do not run, for the namespaces the runtime ignores, and outside the watch scope.
#[derive(Debug, Default, Clone, Copy)]
struct CarmNamespace<'a> {
    owner_account: Option<&'a str>,
    team: Option<&'a str>,
    default_region: Option<&'a str>,
}

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|v| !v.is_empty())
}

fn carm_namespace<'a>(
    controller: &ControllerSettings,
    name: &str,
    namespace: Option<&'a Namespace>,
) -> CarmNamespace<'a> {
    let b = &controller.behaviour;
    let seen = controller.carm
        && controller.watches(name)
        && !b.carm_ignores_namespace(name, &controller.system_namespace);
    match namespace.filter(|_| seen) {
        Some(ns) => CarmNamespace {
            owner_account: non_empty(&ns.owner_account_id),
            // The namespace cache reads team-id from v0.37.0 on.
            team: non_empty(&ns.team_id).filter(|_| b.team_carm != TeamCarm::None),
            default_region: non_empty(&ns.default_region),
        },
        None => CarmNamespace::default(),
    }
}

/// `getRoleARN`: a CARM map lookup, the `<service>.<id>` key first when the runtime tries it.
/// Before v0.31.0 the error is dropped by the caller.
fn lookup_role(
    snapshot: &ClusterSnapshot,
    controller: &ControllerSettings,
    map: &'static str,
    id: &str,
    service_key_first: bool,
) -> Result<String, RoleError> {
    let error = |reason| RoleError {
        map,
        key: id.to_string(),
        reason,
    };
    if !controller.carm {
        return Err(error(RoleErrorReason::CarmNotRunning));
    }
    let data = &snapshot
        .carm_map(&controller.system_namespace, map)
        .ok_or_else(|| error(RoleErrorReason::MapNotFound))?
        .data;
    let service_key = format!("{}.{}", controller.service, id);
    if service_key_first && let Some(v) = data.get(&service_key).filter(|v| !v.is_empty()) {
        return Ok(v.clone());
    }
    match data.get(id) {
        None => Err(error(RoleErrorReason::KeyNotFound)),
        Some(v) if v.is_empty() => Err(error(RoleErrorReason::EmptyValue)),
        Some(v) => Ok(v.clone()),
    }
}

/// Which map the team (or account) path reads and whether service keys go first.
fn team_map(controller: &ControllerSettings) -> Option<(&'static str, bool)> {
    match controller.behaviour.team_carm {
        TeamCarm::CarmV2 if controller.gate(gates::CARM_V2) => Some((CARM_V2_MAP, true)),
        TeamCarm::TeamAndServiceGates if controller.gate(gates::TEAM_LEVEL_CARM) => {
            Some((TEAM_MAP, controller.gate(gates::SERVICE_LEVEL_CARM)))
        }
        _ => None,
    }
}

fn account_map(controller: &ControllerSettings) -> (&'static str, bool) {
    match controller.behaviour.team_carm {
        TeamCarm::CarmV2 if controller.gate(gates::CARM_V2) => (CARM_V2_MAP, true),
        _ => (ACCOUNT_MAP, controller.gate(gates::SERVICE_LEVEL_CARM)),
    }
}

/// The account field of a role ARN as `arn.Parse` gives it, or the lookup error.
fn role_account(map: &'static str, key: &str, role: &str) -> Result<String, Block> {
    go_arn_account(role).map(str::to_string).ok_or_else(|| {
        Block::Role(RoleError {
            map,
            key: key.to_string(),
            reason: RoleErrorReason::InvalidArn,
        })
    })
}

/// The status fields a replay compares with (`desired.Identifiers()`).
#[derive(Debug, Clone, Copy, Default)]
struct Status<'a> {
    account: Option<&'a str>,
    region: Option<&'a str>,
}

struct World<'a> {
    snapshot: &'a ClusterSnapshot,
    controller: &'a ControllerSettings,
    resource: &'a AckResource,
    namespace: Option<&'a Namespace>,
    /// What `regionDrifted` compares the status region with.
    target_region: Option<&'a str>,
}

/// `getOwnerAccountID`: (account, whether a CARM lookup is needed, where it came from).
fn owner_account(
    w: &World,
    view: CarmNamespace,
    status: Status,
) -> (Option<String>, bool, AccountSource) {
    let own = w.controller.default_account.as_deref();
    // With the controller's own account unknown, whether a lookup happens is unknown too:
    // assume none rather than guess a failure.
    let from_status = |s: &str| {
        let other = own.is_some_and(|o| o != s);
        (Some(s.to_string()), other, AccountSource::ControllerDefault)
    };
    let from_namespace = |a: &str| (Some(a.to_string()), true, AccountSource::Namespace);
    let default = (
        own.map(String::from),
        false,
        AccountSource::ControllerDefault,
    );
    match w.controller.behaviour.account_order {
        AccountOrder::StatusFirst => status
            .account
            .map(from_status)
            .or_else(|| view.owner_account.map(from_namespace))
            .unwrap_or(default),
        AccountOrder::NamespaceFirst => view
            .owner_account
            .map(from_namespace)
            .or_else(|| status.account.map(from_status))
            .unwrap_or(default),
    }
}

/// `Reconcile` up to `NewAWSConfig`: the CARM lookups, the selectors, the terminal checks.
fn replay(w: &World, status: Status) -> Replay {
    let view = carm_namespace(w.controller, &w.resource.namespace, w.namespace);
    let (account, need_lookup, source) = owner_account(w, view, status);
    let mut r = Replay {
        source: account.is_some().then_some(source),
        account,
        ..Default::default()
    };
    let outcome = (|| {
        carm_lookups(w, view, need_lookup, &mut r)?;
        select_role(w, &mut r)?;
        terminal_checks(w, status, &r)?;
        // The session pivots to the role only when there is one (`NewAWSConfig`).
        Ok(match &r.role_arn {
            Some(role) => arn_account(role),
            None => w.controller.default_account.clone(),
        })
    })();
    r.outcome = Some(outcome);
    r
}

/// The team and account lookups of `Reconcile` (`getRoleARN`, `handleCacheError`).
fn carm_lookups(
    w: &World,
    view: CarmNamespace,
    need_lookup: bool,
    r: &mut Replay,
) -> Result<(), Block> {
    let c = w.controller;
    let b = &c.behaviour;
    if !b.lookup_miss_blocks {
        return dropped_miss_lookup(w, r);
    }
    if let (Some(team), Some((map, service_first))) = (view.team, team_map(c)) {
        r.source = Some(AccountSource::Team);
        r.account = None;
        let role = lookup_role(w.snapshot, c, map, team, service_first).map_err(Block::Role)?;
        r.account = Some(role_account(map, team, &role)?);
        r.role_arn = Some(role);
    } else if need_lookup && (c.enable_carm || !b.reconciler_checks_enable_carm) {
        let id = r.account.clone().unwrap_or_default();
        let (map, service_first) = account_map(c);
        let role = lookup_role(w.snapshot, c, map, &id, service_first).map_err(Block::Role)?;
        // Before v0.53 the ARN is not parsed here, but assuming a role that is no ARN fails.
        let in_account = role_account(map, &id, &role)?;
        r.role_account_mismatch = in_account != id;
        if b.account_path_parses_role {
            r.account = Some(in_account);
        }
        r.role_arn = Some(role);
    }
    Ok(())
}

/// Before v0.31.0 every account is looked up and a miss means the own credentials.
fn dropped_miss_lookup(w: &World, r: &mut Replay) -> Result<(), Block> {
    let Some(id) = r.account.clone() else {
        return Ok(());
    };
    match lookup_role(w.snapshot, w.controller, ACCOUNT_MAP, &id, false) {
        Ok(role) => {
            r.role_account_mismatch = role_account(ACCOUNT_MAP, &id, &role)? != id;
            r.role_arn = Some(role);
        }
        Err(e) if Some(id.as_str()) != w.controller.default_account.as_deref() => {
            r.silent_miss = Some(e)
        }
        Err(_) => {}
    }
    Ok(())
}

/// IAMRoleSelectors override whatever CARM chose (`irsCache.Matches`, >= v0.53).
fn select_role(w: &World, r: &mut Replay) -> Result<(), Block> {
    let b = &w.controller.behaviour;
    if !(b.role_selectors && w.controller.gate(gates::IAM_ROLE_SELECTOR)) {
        return Ok(());
    }
    let found = role_selector::matching(
        &w.snapshot.role_selectors,
        w.resource,
        w.namespace,
        b.selector_resource_labels,
    );
    r.matched_selectors = found.iter().map(|s| s.name.clone()).collect();
    match found.as_slice() {
        [] => Ok(()),
        [one] => {
            r.account = Some(role_account("IAMRoleSelector", &one.name, &one.arn)?);
            r.role_arn = Some(one.arn.clone());
            r.source = Some(AccountSource::IamRoleSelector);
            r.role_account_mismatch = false;
            Ok(())
        }
        _ => {
            r.account = None;
            r.source = None;
            Err(Block::SelectorConflict)
        }
    }
}

/// `regionDrifted`, then the account comparison: terminal errors from v0.53.0 (c101a18).
fn terminal_checks(w: &World, status: Status, r: &Replay) -> Result<(), Block> {
    if !w.controller.behaviour.status_mismatch_terminal {
        return Ok(());
    }
    // Unknown target region (the controller's own is unknown): no conclusion either.
    if let (Some(s), Some(t)) = (status.region, w.target_region)
        && s != t
    {
        return Err(Block::RegionMismatch);
    }
    // With the working account unknown (the controller's own is), the comparison is unknown.
    if let (Some(s), Some(a)) = (status.account, r.account.as_deref())
        && s != a
    {
        return Err(Block::AccountMismatch);
    }
    Ok(())
}

/// `getRegion` for a resource without a status region: the CR annotation (present counts,
/// even empty: `regionDrifted` tests the key), the namespace's default region through the
/// CARM cache, then through the selector cache (>= v0.54), then the controller's region.
pub fn expected_region(
    resource: &AckResource,
    namespace: Option<&Namespace>,
    controller: &ControllerSettings,
) -> (Option<String>, Option<RegionSource>) {
    if let Some(r) = &resource.region_annotation {
        return (Some(r.clone()), Some(RegionSource::ResourceAnnotation));
    }
    let carm = carm_namespace(controller, &resource.namespace, namespace).default_region;
    // The selector cache keeps every namespace, kube-system included, and runs with the gate.
    let selector_cache = (controller.behaviour.selector_namespace_region
        && controller.gate(gates::IAM_ROLE_SELECTOR))
    .then(|| namespace.and_then(|n| non_empty(&n.default_region)))
    .flatten();
    if let Some(r) = carm.or(selector_cache) {
        return (Some(r.to_string()), Some(RegionSource::Namespace));
    }
    match &controller.default_region {
        Some(r) => (Some(r.clone()), Some(RegionSource::ControllerDefault)),
        None => (None, None),
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

/// The lookup that failed in a replay: one that stopped it, or one dropped before v0.31.0.
fn role_error(r: &Replay) -> Option<&RoleError> {
    match &r.outcome {
        Some(Err(Block::Role(e))) => Some(e),
        _ => r.silent_miss.as_ref(),
    }
}

/// Problems read from the resource alone: its ARN and its conditions.
fn resource_problems(
    resource: &AckResource,
    arn_acct: &Option<String>,
    status_account: &Option<String>,
) -> BTreeSet<Problem> {
    let mut problems = BTreeSet::new();
    if let (Some(a), Some(s)) = (arn_acct, status_account)
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
    problems
}

/// What the controller does about an account drift: it stops, or its calls land in the
/// target (the status is stale) or elsewhere.
fn drift_effect(actual: &Replay, expected: &Option<String>) -> Option<Effect> {
    match actual.outcome.as_ref()? {
        Err(_) => Some(Effect::Blocked),
        Ok(called) if called == expected => Some(Effect::StaleStatus),
        Ok(Some(_)) => Some(Effect::CallsWrongAccount),
        Ok(None) => None,
    }
}

/// A region drift's effect: nothing is called when the replay stopped (the v0.53+ terminal
/// check, or a failed lookup before it); otherwise the status region is called (`getRegion`
/// reads it first before v0.53).
fn region_drift_effect(actual: &Replay) -> RegionEffect {
    match actual.outcome {
        Some(Err(_)) => RegionEffect::Blocked,
        _ => RegionEffect::CallsWrongRegion,
    }
}

/// Why the controller never reconciles the resource, if it does not: it cannot run, or the
/// resource is outside what it watches (`--watch-namespace`, `--reconcile-resources`,
/// `--watch-selectors`).
fn idle_problem(controller: &ControllerSettings, resource: &AckResource) -> Option<Problem> {
    if !controller.running() {
        return Some(Problem::ControllerNotRunning);
    }
    let scope = &controller.scope;
    let in_scope = controller.watches(&resource.namespace)
        && scope
            .kinds
            .as_ref()
            .is_none_or(|k| k.contains(&resource.gvk.kind))
        && scope
            .labels
            .as_ref()
            .is_none_or(|sel| sel.matches(|k| resource.labels.get(k)));
    (!in_scope).then_some(Problem::NotReconciled)
}

/// The two replays of a resource: its target (no status) and what happens now.
struct Replays {
    target: Replay,
    actual: Replay,
}

fn replays(world: &World, status: Status) -> Replays {
    // The target ignores the status: what a fresh resource would get.
    let target = replay(world, Status::default());
    // Without status fields the controller does what it would do for a fresh resource.
    let actual = if status.account.is_none() && status.region.is_none() {
        target.clone()
    } else {
        replay(world, status)
    };
    Replays { target, actual }
}

/// Everything the verdict's problems depend on besides the replays.
struct ProblemInput<'a> {
    resource: &'a AckResource,
    namespace: Option<&'a Namespace>,
    arn_account: &'a Option<String>,
    status_account: &'a Option<String>,
    account_drift: bool,
    idle: Option<Problem>,
}

/// The problems of a verdict, and the failed lookup behind `role_unavailable`.
fn verdict_problems(i: &ProblemInput, r: &Replays) -> (BTreeSet<Problem>, Option<RoleError>) {
    let mut problems = resource_problems(i.resource, i.arn_account, i.status_account);
    let target = &r.target;
    // Never reconciled: the status is never looked at, only what the target would need.
    let now = if i.idle.is_some() { target } else { &r.actual };
    // What fails now, and, when the status is to be fixed, what the target will need.
    let role_err = role_error(now)
        .or(role_error(target).filter(|_| i.account_drift))
        .cloned();
    let conflict = matches!(target.outcome, Some(Err(Block::SelectorConflict)));
    let invalid_account = i
        .namespace
        .and_then(|n| non_empty(&n.owner_account_id))
        .is_some_and(|a| !is_account_id(a));
    let terminal = i.idle.is_none()
        && matches!(
            r.actual.outcome,
            Some(Err(Block::RegionMismatch | Block::AccountMismatch))
        );
    let unresolved = target.account.is_none() && !conflict && role_error(target).is_none();
    for (holds, p) in [
        (conflict, Problem::SelectorConflict),
        (role_err.is_some(), Problem::RoleUnavailable),
        (
            target.role_account_mismatch || now.role_account_mismatch,
            Problem::RoleAccountMismatch,
        ),
        (unresolved, Problem::Unresolved),
        (invalid_account, Problem::InvalidAccountId),
        (terminal, Problem::TerminalMismatch),
    ] {
        if holds {
            problems.insert(p);
        }
    }
    problems.extend(i.idle);
    (problems, role_err)
}

/// The full verdict for one resource.
pub fn evaluate(
    snapshot: &ClusterSnapshot,
    controller: &ControllerSettings,
    resource: &AckResource,
) -> Ownership {
    let namespace = snapshot.namespaces.get(&resource.namespace);
    let md = resource.metadata.as_ref();
    let status_account = md.and_then(|m| non_empty(&m.owner_account_id).map(String::from));
    let status_region = md.and_then(|m| non_empty(&m.region).map(String::from));
    let arn_acct = md.and_then(|m| m.arn.as_deref()).and_then(arn_account);
    let (expected_region, region_source) = expected_region(resource, namespace, controller);
    let world = World {
        snapshot,
        controller,
        resource,
        namespace,
        target_region: expected_region.as_deref(),
    };
    let status = Status {
        account: status_account.as_deref(),
        region: status_region.as_deref(),
    };
    let r = replays(&world, status);
    let expected_account = r.target.account.clone();
    let account_drift =
        matches!((&status_account, &expected_account), (Some(s), Some(e)) if s != e);
    let region_drift = matches!((&status_region, &expected_region), (Some(s), Some(e)) if s != e);
    let idle = idle_problem(controller, resource);
    let input = ProblemInput {
        resource,
        namespace,
        arn_account: &arn_acct,
        status_account: &status_account,
        account_drift,
        idle,
    };
    let (problems, role_err) = verdict_problems(&input, &r);
    // A controller that reconciles nothing calls nothing and does nothing about a drift.
    let acts = idle.is_none();
    let effect = account_drift
        .then(|| drift_effect(&r.actual, &expected_account))
        .flatten()
        .filter(|_| acts);
    let region_effect = region_drift
        .then(|| region_drift_effect(&r.actual))
        .filter(|_| acts);
    let called_account = match &r.actual.outcome {
        Some(Ok(called)) if acts => called.clone(),
        _ => None,
    };
    let conflict = problems.contains(&Problem::SelectorConflict);
    Ownership {
        status_account,
        status_region,
        arn_account: arn_acct,
        expected_account,
        account_source: if conflict { None } else { r.target.source },
        account_drift,
        expected_region,
        region_source,
        region_drift,
        problems,
        effect,
        region_effect,
        role_arn: r.target.role_arn,
        role_error: role_err,
        matched_selectors: r.target.matched_selectors,
        called_account,
        controller: controller.deployment.clone(),
        runtime: controller.runtime,
        runtime_name: controller.runtime_name,
    }
}

#[cfg(test)]
#[path = "ownership_test.rs"]
mod tests;
