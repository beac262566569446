//! Whether an ACK controller can start, and what it reconciles once it runs: its flags held
//! to what its runtime release defines, then the checks of the generated `main`
//! (code-generator `templates/cmd/controller/main.go.tpl`: `flag.Parse()`, `Config.Validate`,
//! `ParseWatchSelectors`, each an exit), then what the Deployment's status shows.

use std::collections::BTreeSet;

use serde::Serialize;

use super::controllers::{ControllerSettings, gates};
use super::label_selector::LabelSelector;
use super::runtime_flags::{FlagDefined, defines_flag};
use crate::model::ControllerDeployment;
use crate::model::runtime_version::RuntimeVersion;

/// Why a controller cannot run (the `problem` label of `ack_drift_controller_problem`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ControllerProblem {
    /// A flag the runtime does not define: pflag exits 2.
    UndefinedFlag,
    /// A boolean flag with a value `strconv.ParseBool` refuses: pflag exits 2.
    InvalidFlagValue,
    /// `parseFeatureGates` fails (v0.35.0 on): `Config.Validate`, exit 1.
    InvalidFeatureGate,
    /// A gate name the release does not define (v0.39.0 on, `GetFeatureGatesWithOverrides`).
    UnknownFeatureGate,
    /// Gate IAMRoleSelector with `--enable-carm=true` (`Config.Validate`, v0.53.0 on).
    RoleSelectorWithCarm,
    /// `parseReconcileResourcesString` fails: an empty or duplicate kind.
    InvalidReconcileResources,
    /// `validateReconcileResources`: a kind the controller does not serve.
    UnsupportedReconcileKind,
    /// `ParseWatchSelectors` (`labels.Parse`) fails.
    InvalidWatchSelectors,
    /// Observed: the Deployment has no available replica.
    NoAvailableReplica,
}

label_values!(ControllerProblem {
    UndefinedFlag => "undefined_flag",
    InvalidFlagValue => "invalid_flag_value",
    InvalidFeatureGate => "invalid_feature_gate",
    UnknownFeatureGate => "unknown_feature_gate",
    RoleSelectorWithCarm => "role_selector_with_carm",
    InvalidReconcileResources => "invalid_reconcile_resources",
    UnsupportedReconcileKind => "unsupported_reconcile_kind",
    InvalidWatchSelectors => "invalid_watch_selectors",
    NoAvailableReplica => "no_available_replica",
});

/// Where the evidence comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Evidence {
    /// From the flags and the runtime version: the controller exits at start.
    Predicted,
    /// From the Deployment's status.
    Observed,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct StartupProblem {
    pub problem: ControllerProblem,
    pub evidence: Evidence,
    pub detail: String,
}

/// What the Deployment's command line and status say, kept for the start-up checks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
pub struct StartFacts {
    pub flags: BTreeSet<String>,
    pub invalid_values: Vec<String>,
    pub feature_gates_error: Option<String>,
    pub reconcile_resources: Option<String>,
    pub watch_selectors: Option<String>,
    pub replicas: u32,
    pub available_replicas: Option<u32>,
}

impl StartFacts {
    pub fn of(d: &ControllerDeployment) -> Self {
        StartFacts {
            flags: d.flags.clone(),
            invalid_values: d.invalid_values.clone(),
            feature_gates_error: d.feature_gates_error.clone(),
            reconcile_resources: d.reconcile_resources.clone(),
            watch_selectors: d.watch_selectors.clone(),
            replicas: d.replicas,
            available_replicas: d.available_replicas,
        }
    }
}

/// What the controller reconciles when it runs: `None` is everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ReconcileScope {
    /// `--reconcile-resources` (v0.46.0 on): the kinds that get a reconciler.
    pub kinds: Option<BTreeSet<String>>,
    /// `--watch-selectors` (v0.44.0 on): the manager cache's `DefaultLabelSelector`.
    pub labels: Option<LabelSelector>,
}

/// `parseReconcileResourcesString`: trimmed, comma-separated, no empty or repeated kind.
pub fn parse_reconcile_resources(s: &str) -> Result<Option<BTreeSet<String>>, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    let mut kinds = BTreeSet::new();
    for kind in s.split(',').map(str::trim) {
        if kind.is_empty() {
            return Err("invalid resource kind: empty kind".into());
        }
        if !kinds.insert(kind.to_string()) {
            return Err(format!("duplicate resource kind {kind:?}"));
        }
    }
    Ok(Some(kinds))
}

/// The flags in effect: the Deployment's, plus what the config's overrides imply.
fn flags_in_effect(c: &ControllerSettings) -> BTreeSet<String> {
    let mut flags = c.start.flags.clone();
    if !c.enable_carm {
        flags.insert("enable-carm".into());
    }
    if !c.feature_gates.is_empty() {
        flags.insert("feature-gates".into());
    }
    flags
}

/// Every reason the controller cannot run, and what it would reconcile if it did.
/// `ack_kinds` are the kinds its API group serves, when the input has its CRDs.
pub fn check(
    c: &ControllerSettings,
    ack_kinds: Option<&BTreeSet<String>>,
) -> (Vec<StartupProblem>, ReconcileScope, Vec<String>) {
    let mut out = Checks::default();
    let defined = undefined_flags(c, &mut out);
    if defined("feature-gates") {
        feature_gates(c, &mut out);
    }
    if c.gate(gates::IAM_ROLE_SELECTOR) && c.enable_carm {
        out.predicted(
            ControllerProblem::RoleSelectorWithCarm,
            "cannot enable feature gate 'IAMRoleSelector' when flag 'enable-carm' is set to true"
                .into(),
        );
    }
    let mut scope = ReconcileScope::default();
    if let Some(raw) = c
        .start
        .reconcile_resources
        .as_deref()
        .filter(|_| defined("reconcile-resources"))
    {
        scope.kinds = reconcile_kinds(raw, ack_kinds, &c.service, &mut out);
    }
    if let Some(raw) = c
        .start
        .watch_selectors
        .as_deref()
        .filter(|_| defined("watch-selectors"))
    {
        match LabelSelector::parse(raw) {
            Ok(sel) if sel.is_empty() => {}
            Ok(sel) => scope.labels = Some(sel),
            Err(e) => out.predicted(
                ControllerProblem::InvalidWatchSelectors,
                format!("invalid value for flag 'watch-selectors' {raw:?}: {e}"),
            ),
        }
    }
    if let Some(n) = c
        .start
        .available_replicas
        .filter(|n| *n > 0 && !out.problems.is_empty())
    {
        // A rollout of this spec cannot finish; the pods still up run an earlier template.
        out.notes.push(format!(
            "{n} replica(s) of an earlier template are still available: this spec's rollout cannot finish, and the verdicts follow this spec (what any restart runs)"
        ));
    }
    if let Some(0) = c.start.available_replicas {
        out.problems.push(StartupProblem {
            problem: ControllerProblem::NoAvailableReplica,
            evidence: Evidence::Observed,
            detail: format!("0 of {} replicas available", c.start.replicas),
        });
    }
    (out.problems, scope, out.notes)
}

#[derive(Default)]
struct Checks {
    problems: Vec<StartupProblem>,
    notes: Vec<String>,
}

impl Checks {
    fn predicted(&mut self, problem: ControllerProblem, detail: String) {
        self.problems.push(StartupProblem {
            problem,
            evidence: Evidence::Predicted,
            detail,
        });
    }
}

/// Reports flags the runtime does not define; returns whether a given flag is usable.
fn undefined_flags<'c>(c: &'c ControllerSettings, out: &mut Checks) -> impl Fn(&str) -> bool + 'c {
    let given = flags_in_effect(c);
    let version: RuntimeVersion = c.runtime;
    for flag in &given {
        match defines_flag(version, c.runtime_commit, flag) {
            FlagDefined::Yes => {}
            FlagDefined::No => out.predicted(
                ControllerProblem::UndefinedFlag,
                format!("--{flag} is not defined by runtime {version}: the controller exits at start (unknown flag)"),
            ),
            FlagDefined::Unknown => out.notes.push(format!(
                "--{flag} is not defined by runtime {}, the newest whose flags are listed; runtime {version} may define it",
                super::runtime_flags::newest_listed()
            )),
        }
    }
    for v in &c.start.invalid_values {
        out.predicted(
            ControllerProblem::InvalidFlagValue,
            format!("{v}: the controller exits at start"),
        );
    }
    let commit = c.runtime_commit;
    move |flag: &str| given.contains(flag) && defines_flag(version, commit, flag) != FlagDefined::No
}

/// `parseFeatureGates`, then `GetFeatureGatesWithOverrides` (v0.39.0 refuses unknown names).
fn feature_gates(c: &ControllerSettings, out: &mut Checks) {
    if let Some(e) = &c.start.feature_gates_error {
        out.predicted(
            ControllerProblem::InvalidFeatureGate,
            format!("invalid value for flag 'feature-gates': {e}"),
        );
        return;
    }
    let refuses_unknown = c.runtime >= RuntimeVersion::new(0, 39, 0);
    for gate in c
        .feature_gates
        .keys()
        .filter(|g| !c.behaviour.defines_gate(g))
    {
        if refuses_unknown {
            out.predicted(
                ControllerProblem::UnknownFeatureGate,
                format!(
                    "unknown feature gate: {gate} (runtime {} does not define it)",
                    c.runtime
                ),
            );
        } else {
            out.notes.push(format!(
                "feature gate {gate} is not defined by runtime {}: the release ignores it and starts without the feature",
                c.runtime
            ));
        }
    }
}

/// `parseReconcileResourcesString`, then `validateReconcileResources` against the CRDs.
fn reconcile_kinds(
    raw: &str,
    ack_kinds: Option<&BTreeSet<String>>,
    service: &str,
    out: &mut Checks,
) -> Option<BTreeSet<String>> {
    let kinds = match parse_reconcile_resources(raw) {
        Ok(k) => k?,
        Err(e) => {
            out.predicted(
                ControllerProblem::InvalidReconcileResources,
                format!("invalid value for flag 'reconcile-resources': {e}"),
            );
            return None;
        }
    };
    match ack_kinds {
        Some(served) => {
            for kind in kinds.iter().filter(|k| !served.contains(*k)) {
                out.predicted(
                    ControllerProblem::UnsupportedReconcileKind,
                    format!(
                        "--reconcile-resources names {kind:?}, which no CRD of {service}.services.k8s.aws serves (kinds: {})",
                        served.iter().cloned().collect::<Vec<_>>().join(", ")
                    ),
                );
            }
        }
        None => out.notes.push(format!(
            "--reconcile-resources is not checked against the controller's kinds: the input has no CRD of {service}.services.k8s.aws"
        )),
    }
    Some(kinds)
}

#[cfg(test)]
#[path = "startup_test.rs"]
mod tests;
