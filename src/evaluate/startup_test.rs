//! Start-up checks per runtime version: each row names the runtime function and release that
//! decides it (`pkg/config/config.go`, `pkg/featuregate/features.go`, the generated `main`).

use std::collections::BTreeSet;

use super::*;
use crate::config::Config;
use crate::evaluate::controllers::resolve;
use crate::model::{ClusterSnapshot, ControllerDeployment};

fn deployment(args: &[&str]) -> ControllerDeployment {
    let c = crate::model::controller::Container {
        image: "public.ecr.aws/aws-controllers-k8s/ec2-controller:1.0.0".into(),
        command: vec![],
        args: args.iter().map(|a| a.to_string()).collect(),
        env: vec![],
    };
    crate::model::controller::from_container("ack-system", "ack-ec2-controller", "sa", &c).unwrap()
}

/// The controller as resolved for a Deployment with `args` on runtime `version`.
fn controller(version: &str, args: &[&str], kinds: Option<&[&str]>) -> ControllerSettings {
    let mut snap = ClusterSnapshot {
        controllers: vec![deployment(args)],
        ..Default::default()
    };
    if let Some(k) = kinds {
        snap.ack_kinds.insert(
            "ec2.services.k8s.aws".into(),
            k.iter().map(|s| s.to_string()).collect(),
        );
    }
    let config = Config::parse(&format!("controllers:\n  ec2:\n    runtime: {version}\n")).unwrap();
    resolve(&snap, &config).remove(0)
}

fn problems(c: &ControllerSettings) -> Vec<ControllerProblem> {
    c.problems.iter().map(|p| p.problem).collect()
}

#[test]
fn flags_and_gates_the_release_refuses_stop_the_controller() {
    use ControllerProblem::*;
    let rows: &[(&str, &str, &[&str], &[ControllerProblem])] = &[
        (
            "--enable-carm before v0.52 (flag undefined)",
            "v0.51.0",
            &["--enable-carm=false"],
            &[UndefinedFlag],
        ),
        (
            "--enable-carm=true is refused just the same",
            "v0.28.0",
            &["--enable-carm"],
            &[UndefinedFlag],
        ),
        (
            "--enable-carm from v0.52",
            "v0.52.0",
            &["--enable-carm=false"],
            &[],
        ),
        (
            "--watch-selectors before v0.44",
            "v0.43.0",
            &["--watch-selectors=a=b"],
            &[UndefinedFlag],
        ),
        (
            "--reconcile-resources before v0.46",
            "v0.45.0",
            &["--reconcile-resources=VPC"],
            &[UndefinedFlag],
        ),
        (
            "--feature-gates before v0.35",
            "v0.34.0",
            &["--feature-gates=TeamLevelCARM=true"],
            &[UndefinedFlag],
        ),
        (
            "a malformed gate entry from v0.35",
            "v0.35.0",
            &["--feature-gates=A=true,"],
            &[InvalidFeatureGate],
        ),
        (
            "an unknown gate v0.35-v0.38 is ignored",
            "v0.38.0",
            &["--feature-gates=Nonsense=true"],
            &[],
        ),
        (
            "an unknown gate from v0.39, even off",
            "v0.39.0",
            &["--feature-gates=Nonsense=false"],
            &[UnknownFeatureGate],
        ),
        (
            "CARMv2 after v0.37 is unknown",
            "v0.40.0",
            &["--feature-gates=CARMv2=true"],
            &[UnknownFeatureGate],
        ),
        (
            "IAMRoleSelector with CARM on (default)",
            "v0.53.0",
            &["--feature-gates=IAMRoleSelector=true"],
            &[RoleSelectorWithCarm],
        ),
        (
            "IAMRoleSelector with CARM off",
            "v0.53.0",
            &[
                "--feature-gates=IAMRoleSelector=true",
                "--enable-carm=false",
            ],
            &[],
        ),
        (
            "a boolean pflag cannot read",
            "v0.52.0",
            &["--enable-carm=maybe"],
            &[InvalidFlagValue],
        ),
        (
            "a flag no runtime defines",
            "v0.61.0",
            &["--no-such-flag=1"],
            &[UndefinedFlag],
        ),
        (
            "an empty kind",
            "v0.46.0",
            &["--reconcile-resources=VPC,,Subnet"],
            &[InvalidReconcileResources],
        ),
        (
            "a repeated kind",
            "v0.46.0",
            &["--reconcile-resources=VPC, VPC"],
            &[InvalidReconcileResources],
        ),
        (
            "a selector that does not parse",
            "v0.44.0",
            &["--watch-selectors=a in (b"],
            &[InvalidWatchSelectors],
        ),
        (
            "a valid setup",
            "v0.61.0",
            &[
                "--aws-region=eu-west-2",
                "--reconcile-resources=VPC",
                "--watch-selectors=team=a",
            ],
            &[],
        ),
    ];
    for (what, version, args, want) in rows {
        let c = controller(version, args, None);
        assert_eq!(&problems(&c), want, "{what} ({version}): {:?}", c.problems);
        assert_eq!(c.running(), want.is_empty(), "{what}");
    }
}

#[test]
fn an_unknown_gate_before_v0_39_is_a_note_not_a_stop() {
    let c = controller("v0.37.0", &["--feature-gates=ServiceLevelCARM=true"], None);
    assert!(c.running());
    assert!(
        c.notes
            .iter()
            .any(|n| n.contains("ignores it and starts without the feature")),
        "{:?}",
        c.notes
    );
}

#[test]
fn reconcile_kinds_are_held_to_the_crds_when_the_input_has_them() {
    let args = ["--reconcile-resources=VPC,Vpc"];
    let c = controller("v0.46.0", &args, Some(&["VPC", "Subnet"]));
    assert_eq!(problems(&c), [ControllerProblem::UnsupportedReconcileKind]);
    assert!(
        c.problems[0].detail.contains("\"Vpc\""),
        "{}",
        c.problems[0].detail
    );
    // Without CRDs nothing can be concluded: a note, and the kinds still limit the scope.
    let c = controller("v0.46.0", &args, None);
    assert!(c.running());
    assert!(c.notes.iter().any(|n| n.contains("not checked")));
    let kinds: BTreeSet<String> = ["VPC", "Vpc"].iter().map(|s| s.to_string()).collect();
    assert_eq!(c.scope.kinds, Some(kinds));
}

#[test]
fn an_empty_flag_value_means_everything() {
    let c = controller(
        "v0.61.0",
        &["--reconcile-resources=", "--watch-selectors="],
        None,
    );
    assert!(c.running());
    assert_eq!(c.scope, ReconcileScope::default());
}

#[test]
fn a_deployment_without_available_replicas_is_observed_down() {
    let mut d = deployment(&[]);
    d.replicas = 2;
    d.available_replicas = Some(0);
    let snap = ClusterSnapshot {
        controllers: vec![d.clone()],
        ..Default::default()
    };
    let c = resolve(&snap, &Config::default()).remove(0);
    assert_eq!(c.problems.len(), 1);
    assert_eq!(c.problems[0].evidence, Evidence::Observed);
    assert_eq!(c.problems[0].detail, "0 of 2 replicas available");
    // No status in the input: unknown, so not down.
    d.available_replicas = None;
    let snap = ClusterSnapshot {
        controllers: vec![d],
        ..Default::default()
    };
    assert!(resolve(&snap, &Config::default())[0].running());
}

#[test]
fn config_overrides_count_as_the_flags_they_imply() {
    let snap = ClusterSnapshot::default();
    let config = Config::parse(
        "controllers:\n  ec2:\n    runtime: v0.28.0\n    enable_carm: false\n    default_account: '111111111111'\n",
    )
    .unwrap();
    let c = resolve(&snap, &config).remove(0);
    assert_eq!(problems(&c), [ControllerProblem::UndefinedFlag]);
}

#[test]
fn a_stuck_rollout_is_said_to_be_one() {
    // The spec cannot start, yet a pod of the previous template is still available.
    let mut d = deployment(&["--no-such-flag=1"]);
    d.available_replicas = Some(1);
    let snap = ClusterSnapshot {
        controllers: vec![d],
        ..Default::default()
    };
    let c = resolve(&snap, &Config::default()).remove(0);
    assert_eq!(problems(&c), [ControllerProblem::UndefinedFlag]);
    assert!(
        c.notes
            .iter()
            .any(|n| n.contains("earlier template are still available")),
        "{:?}",
        c.notes
    );
}
