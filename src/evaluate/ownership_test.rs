//! One test per rule of README "How the verdict is reached", the versioned ones as tables.
//! Each case states its world (controller, namespace, maps, selectors, resource) and the
//! verdict worked out by hand from the rule.

use std::collections::BTreeMap;

use super::*;
use crate::evaluate::controllers::{ControllerSettings, Origin, apply_runtime_rules};
use crate::evaluate::runtime::RuntimeBehaviour;
use crate::model::{AckMetadata, CARM_V2_MAP, CarmMap, Condition, Gvk, RoleSelector};

const DEV: &str = "178394743802";
const UAT: &str = "474417630776";
const PROD: &str = "555566667777";

fn role(account: &str, name: &str) -> String {
    format!("arn:aws:iam::{account}:role/{name}")
}

fn controller(service: &str) -> ControllerSettings {
    ControllerSettings {
        service: service.into(),
        deployment: Some(format!("ack-system/ack-{service}-controller")),
        version: Some("1.0.0".into()),
        default_account: Some(DEV.into()),
        default_account_origin: Origin::Deployment,
        default_region: Some("eu-west-2".into()),
        default_region_origin: Origin::Deployment,
        runtime: RuntimeVersion::NEWEST,
        runtime_name: None,
        runtime_source: crate::evaluate::release_table::RuntimeSource::Default,
        runtime_commit: None,
        runtime_release: None,
        runtime_warning: None,
        configured: false,
        behaviour: RuntimeBehaviour::of(RuntimeVersion::NEWEST),
        enable_carm: true,
        carm: true,
        feature_gates: BTreeMap::new(),
        system_namespace: "ack-system".into(),
        watch_namespaces: vec![],
        start: Default::default(),
        problems: vec![],
        scope: Default::default(),
        notes: vec![],
    }
}

/// The controller built on runtime `version`, its flags settled as that runtime settles them.
fn at(mut c: ControllerSettings, version: &str) -> ControllerSettings {
    c.runtime = version.parse().unwrap();
    settled(c)
}

fn settled(mut c: ControllerSettings) -> ControllerSettings {
    c.notes.clear();
    apply_runtime_rules(&mut c);
    c
}

fn with_gate(mut c: ControllerSettings, gate: &str) -> ControllerSettings {
    c.feature_gates.insert(gate.into(), true);
    if gate == gates::IAM_ROLE_SELECTOR {
        c.enable_carm = false;
        c.carm = false;
    }
    c
}

fn ns(name: &str) -> Namespace {
    Namespace {
        name: name.into(),
        ..Default::default()
    }
}

fn ns_account(name: &str, account: &str) -> Namespace {
    Namespace {
        owner_account_id: Some(account.into()),
        ..ns(name)
    }
}

fn res(group: &str, kind: &str, namespace: &str) -> AckResource {
    AckResource {
        gvk: Gvk {
            group: group.into(),
            version: "v1alpha1".into(),
            kind: kind.into(),
        }
        .into(),
        namespace: namespace.into(),
        name: "r".into(),
        conditions: vec![Condition {
            type_: "ACK.ResourceSynced".into(),
            status: "True".into(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn sg(namespace: &str) -> AckResource {
    res("ec2.services.k8s.aws", "SecurityGroup", namespace)
}

fn with_status(mut r: AckResource, account: &str, region: &str) -> AckResource {
    r.metadata = Some(AckMetadata {
        arn: None,
        owner_account_id: Some(account.into()),
        region: Some(region.into()),
    });
    r
}

fn world(namespaces: Vec<Namespace>, account_map: &[(&str, String)]) -> ClusterSnapshot {
    let mut s = ClusterSnapshot::default();
    for n in namespaces {
        s.namespaces.insert(n.name.clone(), n);
    }
    if !account_map.is_empty() {
        s.carm_maps.push(CarmMap {
            namespace: "ack-system".into(),
            name: ACCOUNT_MAP.into(),
            data: account_map
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        });
    }
    s
}

fn team_map(s: &mut ClusterSnapshot, entries: &[(&str, String)]) {
    s.carm_maps.push(CarmMap {
        namespace: "ack-system".into(),
        name: TEAM_MAP.into(),
        data: entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    });
}

fn selector(name: &str, arn: String) -> RoleSelector {
    RoleSelector {
        name: name.into(),
        arn,
        ..Default::default()
    }
}

fn problems(o: &Ownership) -> Vec<Problem> {
    o.problems.iter().copied().collect()
}

// ---- account rules ----

#[test]
fn controller_default_when_nothing_is_annotated() {
    let s = world(vec![ns("dev")], &[]);
    let o = evaluate(
        &s,
        &controller("ec2"),
        &with_status(sg("dev"), DEV, "eu-west-2"),
    );
    assert_eq!(o.expected_account.as_deref(), Some(DEV));
    assert_eq!(o.account_source, Some(AccountSource::ControllerDefault));
    assert!(!o.account_drift);
    assert_eq!(o.effect, None);
    assert!(problems(&o).is_empty());
}

#[test]
fn namespace_annotation_with_a_map_entry_targets_the_role_account() {
    let s = world(vec![ns_account("uat", UAT)], &[(UAT, role(UAT, "ack-uat"))]);
    let o = evaluate(&s, &controller("ec2"), &sg("uat"));
    assert_eq!(o.expected_account.as_deref(), Some(UAT));
    assert_eq!(o.account_source, Some(AccountSource::Namespace));
    assert_eq!(o.role_arn.as_deref(), Some(role(UAT, "ack-uat").as_str()));
    assert!(problems(&o).is_empty());
}

#[test]
fn the_account_inside_the_role_arn_is_what_is_used() {
    // The map sends account UAT to a role that lives in PROD: the controller lands in PROD.
    let s = world(vec![ns_account("uat", UAT)], &[(UAT, role(PROD, "x"))]);
    let o = evaluate(&s, &controller("ec2"), &sg("uat"));
    assert_eq!(o.expected_account.as_deref(), Some(PROD));
}

#[test]
fn namespace_annotation_without_a_map_entry_is_role_unavailable() {
    let s = world(vec![ns_account("uat", UAT)], &[]);
    let o = evaluate(&s, &controller("ec2"), &sg("uat"));
    assert_eq!(o.expected_account.as_deref(), Some(UAT));
    assert_eq!(o.account_source, Some(AccountSource::Namespace));
    assert_eq!(problems(&o), vec![Problem::RoleUnavailable]);
}

/// One row of a versioned rule table: the runtime, the status account of the resource, and
/// the verdict worked out by hand from that runtime's `Reconcile`.
struct Row {
    name: &'static str,
    runtime: &'static str,
    status: Option<&'static str>,
    expected: Option<&'static str>,
    called: Option<&'static str>,
    effect: Option<Effect>,
    problems: &'static [Problem],
}

fn check_rows(
    rows: &[Row],
    s: &ClusterSnapshot,
    controller: impl Fn(&str) -> ControllerSettings,
    resource: impl Fn() -> AckResource,
) {
    for row in rows {
        let c = controller(row.runtime);
        let r = match row.status {
            Some(a) => with_status(resource(), a, "eu-west-2"),
            None => resource(),
        };
        let o = evaluate(s, &c, &r);
        let n = row.name;
        assert_eq!(o.expected_account.as_deref(), row.expected, "{n}: expected");
        assert_eq!(o.called_account.as_deref(), row.called, "{n}: called");
        assert_eq!(o.effect, row.effect, "{n}: effect");
        assert_eq!(problems(&o), row.problems, "{n}: problems");
        assert_eq!(o.runtime.to_string(), row.runtime, "{n}");
    }
}

const NONE: &[Problem] = &[];
const ROLE_UNAVAILABLE: &[Problem] = &[Problem::RoleUnavailable];

#[test]
fn a_namespace_annotated_with_the_controllers_own_account_needs_a_map_entry() {
    // getOwnerAccountID asks for a lookup for any annotated namespace (>= v0.36 always;
    // v0.31-v0.35 only when no status account comes first); before v0.31 the miss is dropped.
    let s = world(vec![ns_account("dev", DEV)], &[(UAT, role(UAT, "ack-uat"))]);
    let rows = [
        Row {
            name: "v0.30: the miss is dropped, own credentials",
            runtime: "v0.30.0",
            status: None,
            expected: Some(DEV),
            called: Some(DEV),
            effect: None,
            problems: NONE,
        },
        Row {
            name: "v0.35: no status, the annotation is looked up",
            runtime: "v0.35.0",
            status: None,
            expected: Some(DEV),
            called: None,
            effect: None,
            problems: ROLE_UNAVAILABLE,
        },
        Row {
            name: "v0.35: the own status account comes first, no lookup",
            runtime: "v0.35.0",
            status: Some(DEV),
            expected: Some(DEV),
            called: Some(DEV),
            effect: None,
            problems: NONE,
        },
        Row {
            name: "v0.36: the namespace comes first, even with a status",
            runtime: "v0.36.0",
            status: Some(DEV),
            expected: Some(DEV),
            called: None,
            effect: None,
            problems: ROLE_UNAVAILABLE,
        },
        Row {
            name: "v0.62: likewise",
            runtime: "v0.62.0",
            status: Some(DEV),
            expected: Some(DEV),
            called: None,
            effect: None,
            problems: ROLE_UNAVAILABLE,
        },
    ];
    check_rows(&rows, &s, |v| at(controller("ec2"), v), || sg("dev"));
    let o = evaluate(&s, &at(controller("ec2"), "v0.62.0"), &sg("dev"));
    assert_eq!(
        o.role_error,
        Some(RoleError {
            map: ACCOUNT_MAP,
            key: DEV.into(),
            reason: RoleErrorReason::KeyNotFound
        })
    );
}

#[test]
fn one_watched_namespace_leaves_the_carm_caches_empty_while_carm_stays_on() {
    // BindControllerManager runs the caches for zero or >= 2 namespaces (v0.29.2), only with
    // no --watch-namespace at all before; a status account other than the controller's own
    // still asks for a lookup on the empty maps.
    let s = world(vec![ns_account("uat", UAT)], &[(UAT, role(UAT, "ack-uat"))]);
    let watching = |list: &[&str]| {
        let list: Vec<String> = list.iter().map(|n| n.to_string()).collect();
        move |v: &str| {
            let mut c = controller("ec2");
            c.watch_namespaces = list.clone();
            at(c, v)
        }
    };
    let one = [
        Row {
            name: "v0.31: annotation unseen, no status",
            runtime: "v0.31.0",
            status: None,
            expected: Some(DEV),
            called: Some(DEV),
            effect: None,
            problems: NONE,
        },
        Row {
            name: "v0.31: a status account finds no role",
            runtime: "v0.31.0",
            status: Some(UAT),
            expected: Some(DEV),
            called: None,
            effect: Some(Effect::Blocked),
            problems: ROLE_UNAVAILABLE,
        },
        Row {
            name: "v0.30: the miss is dropped, own credentials",
            runtime: "v0.30.0",
            status: Some(UAT),
            expected: Some(DEV),
            called: Some(DEV),
            effect: Some(Effect::StaleStatus),
            problems: ROLE_UNAVAILABLE,
        },
        Row {
            name: "v0.62: a status account finds no role",
            runtime: "v0.62.0",
            status: Some(UAT),
            expected: Some(DEV),
            called: None,
            effect: Some(Effect::Blocked),
            problems: ROLE_UNAVAILABLE,
        },
    ];
    check_rows(&one, &s, watching(&["uat"]), || sg("uat"));
    let two = [
        Row {
            name: "v0.29.1: any --watch-namespace leaves them empty",
            runtime: "v0.29.1",
            status: None,
            expected: Some(DEV),
            called: Some(DEV),
            effect: None,
            problems: NONE,
        },
        Row {
            name: "v0.29.2: two namespaces run them",
            runtime: "v0.29.2",
            status: None,
            expected: Some(UAT),
            called: Some(UAT),
            effect: None,
            problems: NONE,
        },
    ];
    check_rows(&two, &s, watching(&["uat", "dev"]), || sg("uat"));
    let c = watching(&["uat"])("v0.62.0");
    assert!(c.enable_carm && !c.carm);
    let o = evaluate(&s, &c, &with_status(sg("uat"), UAT, "eu-west-2"));
    assert_eq!(
        o.role_error.unwrap().reason,
        RoleErrorReason::CarmNotRunning
    );
}

#[test]
fn enable_carm_false_is_checked_by_the_reconciler_from_v0_53() {
    // v0.52 stops the caches but still looks up a status account; v0.53 keeps the status
    // account and calls with the controller's own credentials.
    let s = world(vec![ns_account("uat", UAT)], &[(UAT, role(UAT, "ack-uat"))]);
    let off = |v: &str| {
        let mut c = controller("ec2");
        c.enable_carm = false;
        at(c, v)
    };
    let rows = [
        Row {
            name: "v0.52: lookup on empty maps",
            runtime: "v0.52.0",
            status: Some(UAT),
            expected: Some(DEV),
            called: None,
            effect: Some(Effect::Blocked),
            problems: ROLE_UNAVAILABLE,
        },
        Row {
            name: "v0.53: no lookup, own credentials",
            runtime: "v0.53.0",
            status: Some(UAT),
            expected: Some(DEV),
            called: Some(DEV),
            effect: Some(Effect::StaleStatus),
            problems: NONE,
        },
        Row {
            name: "v0.53: nothing recorded",
            runtime: "v0.53.0",
            status: None,
            expected: Some(DEV),
            called: Some(DEV),
            effect: None,
            problems: NONE,
        },
    ];
    check_rows(&rows, &s, off, || sg("uat"));
}

#[test]
fn kube_system_annotations_are_never_read_through_carm() {
    // NamespaceCache ignores kube-system, kube-public (and kube-node-lease from v0.29.2, the
    // ACK system namespace before); the selector cache ignores nothing (region from v0.54).
    let mut kube_system = ns_account("kube-system", UAT);
    kube_system.default_region = Some("eu-west-1".into());
    let mut system = ns_account("ack-system", UAT);
    system.default_region = Some("eu-west-1".into());
    let s = world(vec![kube_system, system], &[(UAT, role(UAT, "ack-uat"))]);
    let cases = [
        ("v0.28.0", "kube-system", false, DEV, "eu-west-2"),
        ("v0.62.0", "kube-system", false, DEV, "eu-west-2"),
        ("v0.28.0", "ack-system", false, DEV, "eu-west-2"),
        ("v0.29.2", "ack-system", false, UAT, "eu-west-1"),
        ("v0.53.0", "kube-system", true, DEV, "eu-west-2"),
        ("v0.54.0", "kube-system", true, DEV, "eu-west-1"),
    ];
    for (runtime, namespace, selector_gate, account, region) in cases {
        let mut c = controller("ec2");
        if selector_gate {
            c = with_gate(c, gates::IAM_ROLE_SELECTOR);
        }
        let o = evaluate(&s, &at(c, runtime), &sg(namespace));
        let case = format!("{runtime} {namespace} selector gate {selector_gate}");
        assert_eq!(o.expected_account.as_deref(), Some(account), "{case}");
        assert_eq!(o.expected_region.as_deref(), Some(region), "{case}");
    }
}

#[test]
fn a_map_entry_whose_role_lives_in_another_account() {
    // >= v0.53 the account is the role's (a status that differs is terminal); before, the
    // account path keeps the annotated account while the calls land in the role's.
    let s = world(vec![ns_account("uat", UAT)], &[(UAT, role(PROD, "x"))]);
    let mismatch: &[Problem] = &[Problem::RoleAccountMismatch];
    let rows = [
        Row {
            name: "v0.62: the role's account is the target",
            runtime: "v0.62.0",
            status: None,
            expected: Some(PROD),
            called: Some(PROD),
            effect: None,
            problems: mismatch,
        },
        Row {
            name: "v0.62: a status in the annotated account is terminal",
            runtime: "v0.62.0",
            status: Some(UAT),
            expected: Some(PROD),
            called: None,
            effect: Some(Effect::Blocked),
            problems: &[Problem::RoleAccountMismatch, Problem::TerminalMismatch],
        },
        Row {
            name: "v0.52: calls land in the role's account",
            runtime: "v0.52.0",
            status: None,
            expected: Some(UAT),
            called: Some(PROD),
            effect: None,
            problems: mismatch,
        },
        Row {
            name: "v0.52: a status in the annotated account is no drift",
            runtime: "v0.52.0",
            status: Some(UAT),
            expected: Some(UAT),
            called: Some(PROD),
            effect: None,
            problems: mismatch,
        },
        Row {
            name: "v0.28: likewise",
            runtime: "v0.28.0",
            status: None,
            expected: Some(UAT),
            called: Some(PROD),
            effect: None,
            problems: mismatch,
        },
    ];
    check_rows(&rows, &s, |v| at(controller("ec2"), v), || sg("uat"));
}

#[test]
fn an_empty_or_unparseable_role_is_not_a_usable_role() {
    let empty = world(vec![ns_account("uat", UAT)], &[(UAT, String::new())]);
    let rows = [
        Row {
            name: "v0.30: empty, own credentials",
            runtime: "v0.30.0",
            status: None,
            expected: Some(UAT),
            called: Some(DEV),
            effect: None,
            problems: ROLE_UNAVAILABLE,
        },
        Row {
            name: "v0.31: empty blocks",
            runtime: "v0.31.0",
            status: None,
            expected: Some(UAT),
            called: None,
            effect: None,
            problems: ROLE_UNAVAILABLE,
        },
        Row {
            name: "v0.62: empty blocks",
            runtime: "v0.62.0",
            status: None,
            expected: Some(UAT),
            called: None,
            effect: None,
            problems: ROLE_UNAVAILABLE,
        },
    ];
    check_rows(&rows, &empty, |v| at(controller("ec2"), v), || sg("uat"));
    let o = evaluate(&empty, &at(controller("ec2"), "v0.62.0"), &sg("uat"));
    assert_eq!(o.role_error.unwrap().reason, RoleErrorReason::EmptyValue);

    let garbage = world(vec![ns_account("uat", UAT)], &[(UAT, "ack-uat".into())]);
    for runtime in ["v0.30.0", "v0.52.0", "v0.62.0"] {
        // No ARN to assume: every call fails before v0.53, a plain error from v0.53.
        let o = evaluate(&garbage, &at(controller("ec2"), runtime), &sg("uat"));
        assert_eq!(o.called_account, None, "{runtime}");
        assert_eq!(problems(&o), ROLE_UNAVAILABLE, "{runtime}");
        let e = o.role_error.unwrap();
        assert_eq!(
            (e.map, e.key.as_str(), e.reason),
            (ACCOUNT_MAP, UAT, RoleErrorReason::InvalidArn)
        );
    }
}

#[test]
fn an_empty_service_key_falls_through_to_the_plain_key() {
    // getRoleARN: a service-level GetValue error (empty value too) tries the plain id.
    let s = world(
        vec![ns_account("uat", UAT)],
        &[
            ("ec2.474417630776", String::new()),
            (UAT, role(UAT, "ack-uat")),
        ],
    );
    let c = at(
        with_gate(controller("ec2"), gates::SERVICE_LEVEL_CARM),
        "v0.38.0",
    );
    let o = evaluate(&s, &c, &sg("uat"));
    assert_eq!(o.role_arn.as_deref(), Some(role(UAT, "ack-uat").as_str()));
    assert!(problems(&o).is_empty());
}

#[test]
fn an_empty_region_annotation_counts_an_empty_namespace_one_does_not() {
    let mut uat = ns_account("uat", UAT);
    uat.default_region = Some("eu-west-1".into());
    let mut blank = ns_account("blank", UAT);
    blank.default_region = Some(String::new());
    let s = world(vec![uat, blank], &[(UAT, role(UAT, "ack-uat"))]);
    let mut r = sg("uat");
    r.region_annotation = Some(String::new());
    let o = evaluate(&s, &controller("ec2"), &r);
    assert_eq!(o.expected_region.as_deref(), Some(""));
    assert_eq!(o.region_source, Some(RegionSource::ResourceAnnotation));
    let o = evaluate(&s, &controller("ec2"), &sg("blank"));
    assert_eq!(o.expected_region.as_deref(), Some("eu-west-2"));
    assert_eq!(o.region_source, Some(RegionSource::ControllerDefault));
}

#[test]
fn carm_v2_reads_one_map_for_teams_accounts_and_service_keys() {
    // v0.37.x gate CARMv2: ack-carm-map, `<service>.<id>` first without a gate; v0.38 drops it.
    let mut payments = ns_account("payments", UAT);
    payments.team_id = Some("payments".into());
    let mut s = world(
        vec![payments, ns_account("uat", UAT)],
        &[(UAT, role(UAT, "ack-uat"))],
    );
    s.carm_maps.push(CarmMap {
        namespace: "ack-system".into(),
        name: CARM_V2_MAP.into(),
        data: [
            ("payments".to_string(), role(PROD, "ack-payments")),
            ("ec2.payments".to_string(), role(PROD, "ack-ec2-payments")),
        ]
        .into_iter()
        .collect(),
    });
    let v2 = |v: &str| at(with_gate(controller("ec2"), gates::CARM_V2), v);
    let o = evaluate(&s, &v2("v0.37.1"), &sg("payments"));
    assert_eq!(o.account_source, Some(AccountSource::Team));
    assert_eq!(o.expected_account.as_deref(), Some(PROD));
    assert_eq!(
        o.role_arn.as_deref(),
        Some(role(PROD, "ack-ec2-payments").as_str())
    );
    // The account path reads ack-carm-map too, which has no entry for UAT.
    let o = evaluate(&s, &v2("v0.37.0"), &sg("uat"));
    assert_eq!(
        o.role_error.map(|e| (e.map, e.reason)),
        Some((CARM_V2_MAP, RoleErrorReason::KeyNotFound))
    );
    // Without the gate, and on v0.38 (no such gate), the account map and no team.
    for c in [
        at(controller("ec2"), "v0.37.1"),
        v2("v0.38.0"),
        v2("v0.36.0"),
    ] {
        let o = evaluate(&s, &c, &sg("payments"));
        assert_eq!(
            o.account_source,
            Some(AccountSource::Namespace),
            "{}",
            c.runtime
        );
        assert_eq!(o.role_arn.as_deref(), Some(role(UAT, "ack-uat").as_str()));
    }
}

#[test]
fn gates_the_runtime_does_not_define_do_nothing() {
    let mut payments = ns_account("payments", UAT);
    payments.team_id = Some("payments".into());
    let mut s = world(vec![payments], &[(UAT, role(UAT, "ack-uat"))]);
    team_map(&mut s, &[("payments", role(PROD, "ack-payments"))]);
    s.role_selectors.push(selector("all", role(PROD, "sel")));
    let team = |v: &str| at(with_gate(controller("ec2"), gates::TEAM_LEVEL_CARM), v);
    assert_eq!(
        evaluate(&s, &team("v0.38.0"), &sg("payments")).account_source,
        Some(AccountSource::Team)
    );
    assert_eq!(
        evaluate(&s, &team("v0.37.1"), &sg("payments")).account_source,
        Some(AccountSource::Namespace)
    );
    let sel = |v: &str| at(with_gate(controller("ec2"), gates::IAM_ROLE_SELECTOR), v);
    assert_eq!(
        evaluate(&s, &sel("v0.53.0"), &sg("payments")).account_source,
        Some(AccountSource::IamRoleSelector)
    );
    assert_eq!(
        evaluate(&s, &sel("v0.52.0"), &sg("payments")).account_source,
        Some(AccountSource::ControllerDefault)
    );
}

#[test]
fn resource_label_selectors_count_from_v0_57() {
    let mut s = world(vec![ns("dev")], &[]);
    s.role_selectors.push(RoleSelector {
        resource_labels: [("team".to_string(), "payments".to_string())]
            .into_iter()
            .collect(),
        ..selector("payments", role(PROD, "sel"))
    });
    let sel = |v: &str| at(with_gate(controller("ec2"), gates::IAM_ROLE_SELECTOR), v);
    assert_eq!(
        evaluate(&s, &sel("v0.56.0"), &sg("dev"))
            .expected_account
            .as_deref(),
        Some(PROD)
    );
    assert_eq!(
        evaluate(&s, &sel("v0.57.0"), &sg("dev"))
            .expected_account
            .as_deref(),
        Some(DEV)
    );
}

#[test]
fn the_account_order_decides_the_seed_incident() {
    // uat annotated and mapped, status dev (the controller's own account).
    let s = world(vec![ns_account("uat", UAT)], &[(UAT, role(UAT, "ack-uat"))]);
    let rows = [
        Row {
            name: "v0.28: status first, own credentials",
            runtime: "v0.28.0",
            status: Some(DEV),
            expected: Some(UAT),
            called: Some(DEV),
            effect: Some(Effect::CallsWrongAccount),
            problems: NONE,
        },
        Row {
            name: "v0.35: status first",
            runtime: "v0.35.0",
            status: Some(DEV),
            expected: Some(UAT),
            called: Some(DEV),
            effect: Some(Effect::CallsWrongAccount),
            problems: NONE,
        },
        Row {
            name: "v0.36: namespace first, stale status",
            runtime: "v0.36.0",
            status: Some(DEV),
            expected: Some(UAT),
            called: Some(UAT),
            effect: Some(Effect::StaleStatus),
            problems: NONE,
        },
        Row {
            name: "v0.52: likewise",
            runtime: "v0.52.0",
            status: Some(DEV),
            expected: Some(UAT),
            called: Some(UAT),
            effect: Some(Effect::StaleStatus),
            problems: NONE,
        },
        Row {
            name: "v0.53: terminal",
            runtime: "v0.53.0",
            status: Some(DEV),
            expected: Some(UAT),
            called: None,
            effect: Some(Effect::Blocked),
            problems: &[Problem::TerminalMismatch],
        },
    ];
    check_rows(&rows, &s, |v| at(controller("ec2"), v), || sg("uat"));
}

#[test]
fn a_differing_status_region_stops_every_call_from_v0_53() {
    // Reconcile checks regionDrifted before the account (c101a18, v0.53.0); before v0.53
    // getRegion takes the status region first and the calls go there.
    let s = world(vec![ns_account("uat", UAT)], &[(UAT, role(UAT, "ack-uat"))]);
    let rows = [
        (
            "v0.52.0",
            Some(UAT),
            Some(RegionEffect::CallsWrongRegion),
            false,
        ),
        ("v0.53.0", None, Some(RegionEffect::Blocked), true),
        ("v0.62.0", None, Some(RegionEffect::Blocked), true),
    ];
    for (runtime, called, region_effect, terminal) in rows {
        let r = with_status(sg("uat"), UAT, "eu-west-1");
        let o = evaluate(&s, &at(controller("ec2"), runtime), &r);
        assert!(o.region_drift && !o.account_drift, "{runtime}");
        assert_eq!(o.called_account.as_deref(), called, "{runtime}");
        assert_eq!(
            o.effect, None,
            "{runtime}: no account drift, no account effect"
        );
        assert_eq!(o.region_effect, region_effect, "{runtime}");
        assert_eq!(
            o.problems.contains(&Problem::TerminalMismatch),
            terminal,
            "{runtime}"
        );
    }
}

#[test]
fn a_resource_drifting_in_account_and_region_is_blocked_from_v0_53() {
    let s = world(vec![ns_account("uat", UAT)], &[(UAT, role(UAT, "ack-uat"))]);
    let r = with_status(sg("uat"), DEV, "eu-west-1");
    for (runtime, effect, region_effect, called) in [
        // Namespace first from v0.36: the target UAT role is assumed, in the stale region.
        (
            "v0.52.0",
            Effect::StaleStatus,
            RegionEffect::CallsWrongRegion,
            Some(UAT),
        ),
        ("v0.53.0", Effect::Blocked, RegionEffect::Blocked, None),
    ] {
        let o = evaluate(&s, &at(controller("ec2"), runtime), &r);
        assert!(o.account_drift && o.region_drift, "{runtime}");
        assert_eq!(o.effect, Some(effect), "{runtime}");
        assert_eq!(o.region_effect, Some(region_effect), "{runtime}");
        assert_eq!(o.called_account.as_deref(), called, "{runtime}");
    }
}

#[test]
fn a_failed_lookup_comes_before_the_region_check() {
    // No map entry for UAT: the lookup fails first (role_unavailable), nothing is called,
    // and the region check is never reached (no terminal_mismatch).
    let s = world(vec![ns_account("uat", UAT)], &[]);
    let r = with_status(sg("uat"), UAT, "eu-west-1");
    let o = evaluate(&s, &at(controller("ec2"), "v0.53.0"), &r);
    assert_eq!(o.region_effect, Some(RegionEffect::Blocked));
    assert_eq!(problems(&o), vec![Problem::RoleUnavailable]);
    assert_eq!(o.called_account, None);
}

#[test]
fn an_account_mismatch_alone_is_a_terminal_mismatch_from_v0_53() {
    let s = world(vec![ns_account("uat", UAT)], &[(UAT, role(UAT, "ack-uat"))]);
    let r = with_status(sg("uat"), DEV, "eu-west-2");
    for (runtime, terminal) in [("v0.52.0", false), ("v0.53.0", true)] {
        let o = evaluate(&s, &at(controller("ec2"), runtime), &r);
        assert_eq!(o.region_effect, None, "{runtime}: no region drift");
        assert_eq!(
            o.problems.contains(&Problem::TerminalMismatch),
            terminal,
            "{runtime}"
        );
    }
}

#[test]
fn a_controller_that_cannot_run_calls_nothing_and_does_nothing_about_drift() {
    use crate::evaluate::startup::{ControllerProblem, Evidence, StartupProblem};
    let s = world(vec![ns_account("uat", UAT)], &[(UAT, role(UAT, "ack-uat"))]);
    let mut c = controller("ec2");
    c.problems.push(StartupProblem {
        problem: ControllerProblem::NoAvailableReplica,
        evidence: Evidence::Observed,
        detail: "0 of 1 replicas available".into(),
    });
    let o = evaluate(&s, &c, &with_status(sg("uat"), DEV, "eu-west-1"));
    assert!(
        o.account_drift && o.region_drift,
        "the drift is still reported"
    );
    assert_eq!(
        (o.effect, o.region_effect, o.called_account.as_deref()),
        (None, None, None)
    );
    assert!(o.problems.contains(&Problem::ControllerNotRunning));
    assert!(!o.problems.contains(&Problem::TerminalMismatch));
}

#[test]
fn resources_outside_the_reconcile_scope_are_never_reconciled() {
    use crate::evaluate::label_selector::LabelSelector;
    let s = world(vec![ns_account("uat", UAT)], &[(UAT, role(UAT, "ack-uat"))]);
    let stale = with_status(sg("uat"), DEV, "eu-west-2");
    let mut kinds = controller("ec2");
    kinds.scope.kinds = Some(["VPC".to_string()].into_iter().collect());
    let mut labelled = controller("ec2");
    labelled.scope.labels = Some(LabelSelector::parse("team=payments").unwrap());
    let mut other_ns = controller("ec2");
    other_ns.watch_namespaces = vec!["dev".into(), "prod".into()];
    // Outside the watched namespaces the annotation is not read either: the target is the
    // controller's own account, so a PROD status drifts.
    let stale_prod = with_status(sg("uat"), PROD, "eu-west-2");
    for (what, c, r) in [
        ("kinds", &kinds, &stale),
        ("labels", &labelled, &stale),
        ("namespaces", &other_ns, &stale_prod),
    ] {
        let o = evaluate(&s, c, r);
        assert!(o.account_drift, "{what}");
        assert_eq!(
            (o.effect, o.called_account.as_deref()),
            (None, None),
            "{what}"
        );
        assert!(o.problems.contains(&Problem::NotReconciled), "{what}");
    }
    // In scope: reconciled as usual.
    let mut team = stale.clone();
    team.labels = [("team".to_string(), "payments".to_string())]
        .into_iter()
        .collect::<BTreeMap<_, _>>()
        .into();
    let o = evaluate(&s, &labelled, &team);
    assert_eq!(o.effect, Some(Effect::Blocked));
    assert!(!o.problems.contains(&Problem::NotReconciled));
}

#[test]
fn an_owner_account_that_is_not_twelve_digits_is_flagged_and_still_looked_up() {
    let bad = "47441763077";
    let s = world(vec![ns_account("uat", bad)], &[(bad, role(UAT, "ack-uat"))]);
    let o = evaluate(&s, &controller("ec2"), &sg("uat"));
    assert!(o.problems.contains(&Problem::InvalidAccountId));
    // getRoleARN looks the key up as written: the map entry is found.
    assert_eq!(o.role_arn.as_deref(), Some(role(UAT, "ack-uat").as_str()));
}

#[test]
fn carm_off_ignores_an_annotated_namespace() {
    let s = world(vec![ns_account("uat", UAT)], &[(UAT, role(UAT, "ack-uat"))]);
    let mut c = controller("ec2");
    c.enable_carm = false;
    c.carm = false;
    let o = evaluate(&s, &c, &sg("uat"));
    assert_eq!(o.expected_account.as_deref(), Some(DEV));
    assert_eq!(o.account_source, Some(AccountSource::ControllerDefault));
}

#[test]
fn carm_forced_off_by_a_single_watch_namespace() {
    use crate::config::Config;
    use crate::model::{ControllerDeployment, ServiceAccount};
    let mut s = world(vec![ns_account("uat", UAT)], &[(UAT, role(UAT, "ack-uat"))]);
    s.controllers.push(ControllerDeployment {
        service: "ec2".into(),
        namespace: "ack-system".into(),
        name: "ack-ec2-controller".into(),
        service_account: "sa".into(),
        watch_namespaces: vec!["uat".into()],
        ..Default::default()
    });
    s.service_accounts.push(ServiceAccount {
        namespace: "ack-system".into(),
        name: "sa".into(),
        role_arn: Some(role(DEV, "ack-ec2")),
    });
    let resolved = crate::evaluate::controllers::resolve(&s, &Config::default());
    let o = evaluate(&s, &resolved[0], &sg("uat"));
    assert_eq!(o.account_source, Some(AccountSource::ControllerDefault));
    assert_eq!(o.expected_account.as_deref(), Some(DEV));
}

#[test]
fn unknown_controller_account_is_unresolved_never_drift() {
    let s = world(vec![ns("dev")], &[]);
    let mut c = controller("ec2");
    c.default_account = None;
    let o = evaluate(&s, &c, &with_status(sg("dev"), DEV, "eu-west-2"));
    assert_eq!(o.expected_account, None);
    assert_eq!(o.account_source, None);
    assert!(!o.account_drift);
    assert_eq!(problems(&o), vec![Problem::Unresolved]);
}

// ---- teams ----

#[test]
fn team_map_wins_over_the_namespace_account() {
    let mut s = world(
        vec![Namespace {
            team_id: Some("payments".into()),
            ..ns_account("uat", UAT)
        }],
        &[(UAT, role(UAT, "ack-uat"))],
    );
    team_map(&mut s, &[("payments", role(PROD, "payments"))]);
    let o = evaluate(
        &s,
        &with_gate(controller("ec2"), gates::TEAM_LEVEL_CARM),
        &sg("uat"),
    );
    assert_eq!(o.expected_account.as_deref(), Some(PROD));
    assert_eq!(o.account_source, Some(AccountSource::Team));
}

#[test]
fn team_map_miss_is_role_unavailable_without_fall_through() {
    let mut s = world(
        vec![Namespace {
            team_id: Some("search".into()),
            ..ns_account("uat", UAT)
        }],
        &[(UAT, role(UAT, "ack-uat"))],
    );
    team_map(&mut s, &[("payments", role(PROD, "payments"))]);
    let o = evaluate(
        &s,
        &with_gate(controller("ec2"), gates::TEAM_LEVEL_CARM),
        &sg("uat"),
    );
    assert_eq!(o.expected_account, None);
    assert_eq!(o.account_source, Some(AccountSource::Team));
    assert_eq!(problems(&o), vec![Problem::RoleUnavailable]);
}

#[test]
fn team_annotation_is_ignored_without_the_team_gate() {
    let mut s = world(
        vec![Namespace {
            team_id: Some("payments".into()),
            ..ns_account("uat", UAT)
        }],
        &[(UAT, role(UAT, "ack-uat"))],
    );
    team_map(&mut s, &[("payments", role(PROD, "payments"))]);
    let o = evaluate(&s, &controller("ec2"), &sg("uat"));
    assert_eq!(o.expected_account.as_deref(), Some(UAT));
    assert_eq!(o.account_source, Some(AccountSource::Namespace));
}

#[test]
fn service_level_team_key_is_tried_first() {
    let mut s = world(
        vec![Namespace {
            team_id: Some("payments".into()),
            ..ns("uat")
        }],
        &[],
    );
    team_map(
        &mut s,
        &[
            ("payments", role(UAT, "payments")),
            ("ec2.payments", role(PROD, "payments-ec2")),
        ],
    );
    let c = with_gate(
        with_gate(controller("ec2"), gates::TEAM_LEVEL_CARM),
        gates::SERVICE_LEVEL_CARM,
    );
    assert_eq!(
        evaluate(&s, &c, &sg("uat")).expected_account.as_deref(),
        Some(PROD)
    );
    let c = with_gate(controller("ec2"), gates::TEAM_LEVEL_CARM);
    assert_eq!(
        evaluate(&s, &c, &sg("uat")).expected_account.as_deref(),
        Some(UAT)
    );
}

// ---- service-level CARM keys ----

#[test]
fn s3_keys_are_seen_by_the_s3_controller_only() {
    let s = world(
        vec![ns_account("data", UAT)],
        &[(&format!("s3.{UAT}"), role(UAT, "ack-s3-uat"))],
    );
    let bucket = res("s3.services.k8s.aws", "Bucket", "data");
    let s3 = with_gate(controller("s3"), gates::SERVICE_LEVEL_CARM);
    let o = evaluate(&s, &s3, &bucket);
    assert_eq!(o.expected_account.as_deref(), Some(UAT));
    assert_eq!(
        o.role_arn.as_deref(),
        Some(role(UAT, "ack-s3-uat").as_str())
    );
    assert!(problems(&o).is_empty());

    // The ec2 controller, even with the gate, looks up `ec2.<id>` then `<id>`: no role.
    let ec2 = with_gate(controller("ec2"), gates::SERVICE_LEVEL_CARM);
    let o = evaluate(&s, &ec2, &sg("data"));
    assert_eq!(problems(&o), vec![Problem::RoleUnavailable]);

    // Without the gate the s3 controller does not read service-level keys either.
    let o = evaluate(&s, &controller("s3"), &bucket);
    assert_eq!(problems(&o), vec![Problem::RoleUnavailable]);
}

#[test]
fn service_level_key_wins_over_the_plain_key() {
    let s = world(
        vec![ns_account("data", UAT)],
        &[
            (UAT, role(UAT, "plain")),
            (&format!("s3.{UAT}"), role(UAT, "s3-specific")),
        ],
    );
    let bucket = res("s3.services.k8s.aws", "Bucket", "data");
    let o = evaluate(
        &s,
        &with_gate(controller("s3"), gates::SERVICE_LEVEL_CARM),
        &bucket,
    );
    assert_eq!(
        o.role_arn.as_deref(),
        Some(role(UAT, "s3-specific").as_str())
    );
    let o = evaluate(&s, &controller("s3"), &bucket);
    assert_eq!(o.role_arn.as_deref(), Some(role(UAT, "plain").as_str()));
}

#[test]
fn maps_are_read_from_the_controllers_system_namespace() {
    let mut s = world(vec![ns_account("uat", UAT)], &[]);
    s.carm_maps.push(CarmMap {
        namespace: "ack-ec2".into(),
        name: ACCOUNT_MAP.into(),
        data: [(UAT.to_string(), role(UAT, "r"))].into_iter().collect(),
    });
    let o = evaluate(&s, &controller("ec2"), &sg("uat"));
    assert_eq!(problems(&o), vec![Problem::RoleUnavailable]);
    let mut c = controller("ec2");
    c.system_namespace = "ack-ec2".into();
    assert!(problems(&evaluate(&s, &c, &sg("uat"))).is_empty());
}

// ---- IAMRoleSelectors ----

#[test]
fn a_matching_selector_wins_over_everything() {
    let mut s = world(vec![ns_account("uat", UAT)], &[(UAT, role(UAT, "ack-uat"))]);
    s.role_selectors.push(RoleSelector {
        namespace_names: vec!["uat".into()],
        ..selector("uat-sel", role(PROD, "sel"))
    });
    let c = with_gate(controller("ec2"), gates::IAM_ROLE_SELECTOR);
    let o = evaluate(&s, &c, &sg("uat"));
    assert_eq!(o.expected_account.as_deref(), Some(PROD));
    assert_eq!(o.account_source, Some(AccountSource::IamRoleSelector));
    assert_eq!(o.matched_selectors, vec!["uat-sel".to_string()]);
}

#[test]
fn selectors_are_ignored_without_the_gate() {
    let mut s = world(vec![ns("uat")], &[]);
    s.role_selectors.push(selector("all", role(PROD, "sel")));
    let o = evaluate(&s, &controller("ec2"), &sg("uat"));
    assert_eq!(o.account_source, Some(AccountSource::ControllerDefault));
}

#[test]
fn empty_names_with_a_label_selector() {
    let mut s = world(
        vec![Namespace {
            labels: [("env".to_string(), "uat".to_string())]
                .into_iter()
                .collect(),
            ..ns("uat-x")
        }],
        &[],
    );
    s.role_selectors.push(RoleSelector {
        namespace_names: vec![],
        namespace_labels: [("env".to_string(), "uat".to_string())]
            .into_iter()
            .collect(),
        ..selector("by-label", role(UAT, "sel"))
    });
    let c = with_gate(controller("ec2"), gates::IAM_ROLE_SELECTOR);
    assert_eq!(
        evaluate(&s, &c, &sg("uat-x")).account_source,
        Some(AccountSource::IamRoleSelector)
    );
    // A namespace without the label falls through to the controller default.
    assert_eq!(
        evaluate(&s, &c, &sg("other")).account_source,
        Some(AccountSource::ControllerDefault)
    );
}

#[test]
fn resource_type_entry_with_an_empty_version() {
    let mut s = world(vec![ns("uat")], &[]);
    s.role_selectors.push(RoleSelector {
        resource_types: vec![Gvk {
            group: "ec2.services.k8s.aws".into(),
            version: String::new(),
            kind: "SecurityGroup".into(),
        }],
        ..selector("sgs", role(UAT, "sel"))
    });
    let c = with_gate(controller("ec2"), gates::IAM_ROLE_SELECTOR);
    let mut r = sg("uat");
    std::sync::Arc::make_mut(&mut r.gvk).version = "v1".into();
    assert_eq!(evaluate(&s, &c, &r).expected_account.as_deref(), Some(UAT));
    let vpc = res("ec2.services.k8s.aws", "VPC", "uat");
    assert_eq!(
        evaluate(&s, &c, &vpc).expected_account.as_deref(),
        Some(DEV)
    );
}

#[test]
fn two_matching_selectors_conflict_without_fall_through() {
    let mut s = world(vec![ns("uat")], &[]);
    s.role_selectors.push(selector("a", role(UAT, "a")));
    s.role_selectors.push(RoleSelector {
        namespace_names: vec!["uat".into()],
        ..selector("b", role(PROD, "b"))
    });
    let c = with_gate(controller("ec2"), gates::IAM_ROLE_SELECTOR);
    let o = evaluate(&s, &c, &with_status(sg("uat"), DEV, "eu-west-2"));
    assert_eq!(o.expected_account, None);
    assert_eq!(o.account_source, None);
    assert!(!o.account_drift);
    assert_eq!(problems(&o), vec![Problem::SelectorConflict]);
    assert_eq!(o.matched_selectors, vec!["a".to_string(), "b".to_string()]);
}

// ---- regions ----

#[test]
fn region_from_the_resource_annotation() {
    let s = world(
        vec![Namespace {
            default_region: Some("eu-central-1".into()),
            ..ns("dev")
        }],
        &[],
    );
    let mut r = sg("dev");
    r.region_annotation = Some("us-west-2".into());
    assert_eq!(
        expected_region(&r, s.namespaces.get("dev"), &controller("ec2")),
        (
            Some("us-west-2".into()),
            Some(RegionSource::ResourceAnnotation)
        )
    );
}

#[test]
fn region_from_the_namespace_annotation() {
    let s = world(
        vec![Namespace {
            default_region: Some("eu-central-1".into()),
            ..ns("dev")
        }],
        &[],
    );
    assert_eq!(
        expected_region(&sg("dev"), s.namespaces.get("dev"), &controller("ec2")),
        (Some("eu-central-1".into()), Some(RegionSource::Namespace))
    );
}

#[test]
fn region_from_the_controller_default() {
    let s = world(vec![ns("dev")], &[]);
    assert_eq!(
        expected_region(&sg("dev"), s.namespaces.get("dev"), &controller("ec2")),
        (
            Some("eu-west-2".into()),
            Some(RegionSource::ControllerDefault)
        )
    );
}

#[test]
fn namespace_region_needs_carm_or_the_selector_gate() {
    let s = world(
        vec![Namespace {
            default_region: Some("eu-central-1".into()),
            ..ns("dev")
        }],
        &[],
    );
    let mut off = controller("ec2");
    off.enable_carm = false;
    off.carm = false;
    assert_eq!(
        expected_region(&sg("dev"), s.namespaces.get("dev"), &off).1,
        Some(RegionSource::ControllerDefault)
    );
    let gate = with_gate(controller("ec2"), gates::IAM_ROLE_SELECTOR);
    assert!(!gate.carm);
    assert_eq!(
        expected_region(&sg("dev"), s.namespaces.get("dev"), &gate).1,
        Some(RegionSource::Namespace)
    );
}

#[test]
fn region_drift() {
    let s = world(
        vec![Namespace {
            default_region: Some("eu-central-1".into()),
            ..ns("dev")
        }],
        &[],
    );
    let o = evaluate(
        &s,
        &controller("ec2"),
        &with_status(sg("dev"), DEV, "eu-west-2"),
    );
    assert!(o.region_drift);
    assert!(!o.account_drift);
    assert_eq!(o.status_region.as_deref(), Some("eu-west-2"));
    assert_eq!(o.expected_region.as_deref(), Some("eu-central-1"));
    assert_eq!(o.effect, None, "effect is about account drift only");
}

#[test]
fn no_region_anywhere_is_no_drift() {
    let s = world(vec![ns("dev")], &[]);
    let mut c = controller("ec2");
    c.default_region = None;
    let o = evaluate(&s, &c, &with_status(sg("dev"), DEV, "eu-west-2"));
    assert_eq!(o.expected_region, None);
    assert!(!o.region_drift);
}

// ---- status, ARNs, conditions ----

#[test]
fn a_cr_without_status() {
    let s = world(vec![ns_account("uat", UAT)], &[(UAT, role(UAT, "ack-uat"))]);
    let mut r = sg("uat");
    r.conditions.clear();
    let o = evaluate(&s, &controller("ec2"), &r);
    assert_eq!(o.status_account, None);
    assert_eq!(o.status_region, None);
    assert_eq!(o.arn_account, None);
    assert_eq!(o.expected_account.as_deref(), Some(UAT));
    assert!(!o.account_drift && !o.region_drift);
    assert_eq!(o.effect, None);
    assert_eq!(problems(&o), vec![Problem::NotSynced]);
}

#[test]
fn s3_arn_without_an_account() {
    let s = world(vec![ns("dev")], &[]);
    let mut b = res("s3.services.k8s.aws", "Bucket", "dev");
    b.metadata = Some(AckMetadata {
        arn: Some("arn:aws:s3:::my-bucket".into()),
        owner_account_id: Some(DEV.into()),
        region: Some("eu-west-2".into()),
    });
    let o = evaluate(&s, &controller("s3"), &b);
    assert_eq!(o.arn_account, None);
    assert!(problems(&o).is_empty());
}

#[test]
fn arn_account_mismatch() {
    let s = world(vec![ns("dev")], &[]);
    let mut r = sg("dev");
    r.metadata = Some(AckMetadata {
        arn: Some(format!("arn:aws:ec2:eu-west-2:{UAT}:security-group/sg-1")),
        owner_account_id: Some(DEV.into()),
        region: Some("eu-west-2".into()),
    });
    let o = evaluate(&s, &controller("ec2"), &r);
    assert_eq!(o.arn_account.as_deref(), Some(UAT));
    assert_eq!(problems(&o), vec![Problem::ArnAccountMismatch]);
}

#[test]
fn conditions_give_not_synced_and_terminal() {
    let s = world(vec![ns("dev")], &[]);
    let mut r = sg("dev");
    r.conditions = vec![
        Condition {
            type_: "ACK.ResourceSynced".into(),
            status: "False".into(),
            ..Default::default()
        },
        Condition {
            type_: "ACK.Terminal".into(),
            status: "True".into(),
            ..Default::default()
        },
    ];
    let o = evaluate(&s, &controller("ec2"), &r);
    assert_eq!(problems(&o), vec![Problem::NotSynced, Problem::Terminal]);
    r.conditions[1].status = "False".into();
    r.conditions[0].status = "Unknown".into();
    assert_eq!(
        problems(&evaluate(&s, &controller("ec2"), &r)),
        vec![Problem::NotSynced]
    );
}

// ---- effects of an account drift ----

fn incident(runtime: &str) -> Ownership {
    // The seed incident: uat annotated and mapped, status says dev (the controller's own).
    let s = world(vec![ns_account("uat", UAT)], &[(UAT, role(UAT, "ack-uat"))]);
    let c = at(controller("ec2"), runtime);
    evaluate(&s, &c, &with_status(sg("uat"), DEV, "eu-west-2"))
}

#[test]
fn legacy_runtime_keeps_calling_the_status_account() {
    let o = incident("v0.35.0");
    assert!(o.account_drift);
    assert_eq!(o.effect, Some(Effect::CallsWrongAccount));
    assert_eq!(o.called_account.as_deref(), Some(DEV));
}

#[test]
fn namespace_first_runtime_leaves_a_stale_status() {
    let o = incident("v0.52.0");
    assert_eq!(o.effect, Some(Effect::StaleStatus));
    assert_eq!(o.called_account.as_deref(), Some(UAT));
}

#[test]
fn strict_runtime_blocks() {
    let o = incident("v0.62.0");
    assert_eq!(o.effect, Some(Effect::Blocked));
    assert_eq!(o.called_account, None);
}

#[test]
fn legacy_with_an_unmapped_status_account_is_blocked() {
    // Status names PROD, which neither is the controller's account nor has a role.
    let s = world(vec![ns_account("uat", UAT)], &[(UAT, role(UAT, "ack-uat"))]);
    let c = at(controller("ec2"), "v0.35.0");
    let o = evaluate(&s, &c, &with_status(sg("uat"), PROD, "eu-west-2"));
    assert_eq!(o.effect, Some(Effect::Blocked));
    assert_eq!(problems(&o), vec![Problem::RoleUnavailable]);
}

#[test]
fn namespace_first_without_the_target_role_is_blocked() {
    let s = world(vec![ns_account("uat", UAT)], &[]);
    let c = at(controller("ec2"), "v0.52.0");
    let o = evaluate(&s, &c, &with_status(sg("uat"), DEV, "eu-west-2"));
    assert_eq!(o.effect, Some(Effect::Blocked));
}

#[test]
fn controller_default_target_with_a_mapped_status_account_calls_it() {
    // Nothing annotated; the status names UAT, which the map can reach: every runtime
    // falls back to the status account.
    let s = world(vec![ns("dev")], &[(UAT, role(UAT, "ack-uat"))]);
    for runtime in ["v0.35.0", "v0.52.0", "v0.62.0"] {
        let c = at(controller("ec2"), runtime);
        let o = evaluate(&s, &c, &with_status(sg("dev"), UAT, "eu-west-2"));
        assert_eq!(o.account_source, Some(AccountSource::ControllerDefault));
        assert_eq!(o.effect, Some(Effect::CallsWrongAccount), "{runtime}");
        assert_eq!(o.called_account.as_deref(), Some(UAT));
        assert!(problems(&o).is_empty());
    }
}

#[test]
fn controller_default_target_with_an_unmapped_status_account_is_blocked() {
    let s = world(vec![ns("dev")], &[]);
    let o = evaluate(
        &s,
        &controller("ec2"),
        &with_status(sg("dev"), UAT, "eu-west-2"),
    );
    assert_eq!(o.effect, Some(Effect::Blocked));
    assert_eq!(problems(&o), vec![Problem::RoleUnavailable]);
}

#[test]
fn controller_default_target_with_carm_off_is_a_stale_status() {
    let s = world(vec![ns("dev")], &[(UAT, role(UAT, "ack-uat"))]);
    let mut c = controller("ec2");
    c.enable_carm = false;
    c.carm = false;
    let o = evaluate(&s, &c, &with_status(sg("dev"), UAT, "eu-west-2"));
    assert_eq!(o.effect, Some(Effect::StaleStatus));
    assert_eq!(o.called_account.as_deref(), Some(DEV));
    assert!(problems(&o).is_empty());
}

#[test]
fn no_drift_no_effect() {
    let o = evaluate(
        &world(vec![ns_account("uat", UAT)], &[(UAT, role(UAT, "ack-uat"))]),
        &controller("ec2"),
        &with_status(sg("uat"), UAT, "eu-west-2"),
    );
    assert!(!o.account_drift);
    assert_eq!(o.effect, None);
}

// ---- choosing the controller ----

#[test]
fn the_controller_watching_the_namespace_is_chosen() {
    let mut a = controller("ec2");
    a.deployment = Some("ack-system/all".into());
    let mut b = controller("ec2");
    b.deployment = Some("team-a/only-uat".into());
    b.watch_namespaces = vec!["uat".into()];
    let cs = vec![a, b];
    assert_eq!(
        controller_for(&cs, &sg("uat"))
            .unwrap()
            .deployment
            .as_deref(),
        Some("team-a/only-uat")
    );
    assert_eq!(
        controller_for(&cs, &sg("dev"))
            .unwrap()
            .deployment
            .as_deref(),
        Some("ack-system/all")
    );
    assert!(controller_for(&cs, &res("rds.services.k8s.aws", "DBInstance", "dev")).is_none());
}

#[test]
fn label_values_match_their_json_names() {
    let all: Vec<(String, &str)> = [
        AccountSource::IamRoleSelector,
        AccountSource::Team,
        AccountSource::Namespace,
        AccountSource::ControllerDefault,
    ]
    .iter()
    .map(|v| {
        (
            serde_json::to_value(v)
                .unwrap()
                .as_str()
                .unwrap()
                .to_string(),
            v.as_str(),
        )
    })
    .chain(
        [
            Problem::RoleUnavailable,
            Problem::SelectorConflict,
            Problem::ArnAccountMismatch,
            Problem::Unresolved,
            Problem::NotSynced,
            Problem::Terminal,
        ]
        .iter()
        .map(|v| {
            (
                serde_json::to_value(v)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_string(),
                v.as_str(),
            )
        }),
    )
    .chain(
        [
            Effect::CallsWrongAccount,
            Effect::StaleStatus,
            Effect::Blocked,
        ]
        .iter()
        .map(|v| {
            (
                serde_json::to_value(v)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_string(),
                v.as_str(),
            )
        }),
    )
    .chain(
        [
            RegionSource::ResourceAnnotation,
            RegionSource::Namespace,
            RegionSource::ControllerDefault,
        ]
        .iter()
        .map(|v| {
            (
                serde_json::to_value(v)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_string(),
                v.as_str(),
            )
        }),
    )
    .collect();
    for (json, label) in all {
        assert_eq!(json, label);
    }
}
