//! Each ACK controller's effective settings: what its Deployment says, then the config's
//! overrides, then the runtime's own defaults and rules (CARM forced off, gate conflicts).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::release_table::{self, PinnedRuntime, RuntimeSource};
use super::runtime::{OLDEST_MODELLED, RuntimeBehaviour};
use super::startup::{self, ReconcileScope, StartFacts, StartupProblem};
use crate::config::Config;
use crate::model::runtime_version::{RuntimeName, RuntimeVersion};
use crate::model::{ClusterSnapshot, ControllerDeployment, account::arn_account};

pub mod gates {
    pub const CARM_V2: &str = "CARMv2";
    pub const TEAM_LEVEL_CARM: &str = "TeamLevelCARM";
    pub const SERVICE_LEVEL_CARM: &str = "ServiceLevelCARM";
    pub const IAM_ROLE_SELECTOR: &str = "IAMRoleSelector";
}

/// The runtime's default system namespace when neither env var is set.
pub const DEFAULT_SYSTEM_NAMESPACE: &str = "ack-system";

/// Where a setting's value came from, so `check-config` can show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    Deployment,
    Config,
    Default,
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Serialize, Hash)]
pub struct ControllerSettings {
    pub service: String,
    /// `namespace/name` of the Deployment, when one was found.
    pub deployment: Option<String>,
    pub version: Option<String>,
    pub default_account: Option<String>,
    pub default_account_origin: Origin,
    pub default_region: Option<String>,
    pub default_region_origin: Origin,
    /// The ACK runtime the controller was built with, and the config's name for it.
    pub runtime: RuntimeVersion,
    pub runtime_name: Option<RuntimeName>,
    pub runtime_source: RuntimeSource,
    /// The untagged runtime commit (Go pseudo-version) the release pins, whose own flags
    /// count; `runtime` is then the newest release that commit contains.
    pub runtime_commit: Option<&'static str>,
    /// The listed controller release whose runtime was taken (the image tag, or the nearest).
    pub runtime_release: Option<String>,
    /// Why the image says nothing of the runtime, when the default is used for it.
    pub runtime_warning: Option<String>,
    /// Declared under `controllers:` in the config.
    pub configured: bool,
    /// What that runtime does (derived from `runtime`).
    pub behaviour: RuntimeBehaviour,
    /// `--enable-carm` as given (the runtime's default is true; before v0.52 there is no
    /// such flag and this stays true).
    pub enable_carm: bool,
    /// Whether the CARM caches run: the controller reads the CARM maps and the namespaces'
    /// account, team and region annotations only then.
    pub carm: bool,
    pub feature_gates: BTreeMap<String, bool>,
    pub system_namespace: String,
    pub watch_namespaces: Vec<String>,
    /// The Deployment's command line and status, for the start-up checks.
    #[serde(skip)]
    pub start: StartFacts,
    /// Why the controller cannot run; empty when it can (README "Controllers that cannot run").
    pub problems: Vec<StartupProblem>,
    /// What it reconciles when it runs.
    #[serde(skip)]
    pub scope: ReconcileScope,
    pub notes: Vec<String>,
}

impl ControllerSettings {
    /// True when the gate is switched on and the controller's runtime defines it (releases
    /// before v0.39.0 ignore names they do not define; later ones refuse to start).
    pub fn gate(&self, name: &str) -> bool {
        self.feature_gates.get(name).copied().unwrap_or(false) && self.behaviour.defines_gate(name)
    }

    /// False when the controller cannot start or has no available replica.
    pub fn running(&self) -> bool {
        self.problems.is_empty()
    }

    /// True when this controller reconciles resources in `namespace`.
    pub fn watches(&self, namespace: &str) -> bool {
        self.watch_namespaces.is_empty() || self.watch_namespaces.iter().any(|n| n == namespace)
    }

    /// A controller that nothing is known about: the runtime's defaults, no account.
    fn unknown(service: &str) -> Self {
        ControllerSettings {
            service: service.to_string(),
            deployment: None,
            version: None,
            default_account: None,
            default_account_origin: Origin::Unknown,
            default_region: None,
            default_region_origin: Origin::Unknown,
            runtime: RuntimeVersion::default(),
            runtime_name: None,
            runtime_source: RuntimeSource::Default,
            runtime_commit: None,
            runtime_release: None,
            runtime_warning: None,
            configured: false,
            behaviour: RuntimeBehaviour::of(RuntimeVersion::default()),
            enable_carm: true,
            carm: true,
            feature_gates: BTreeMap::new(),
            system_namespace: DEFAULT_SYSTEM_NAMESPACE.to_string(),
            watch_namespaces: Vec::new(),
            start: StartFacts::default(),
            problems: Vec::new(),
            scope: ReconcileScope::default(),
            notes: Vec::new(),
        }
    }
}

/// A discovered controller container's settings, before the config and the runtime rules.
fn from_deployment(
    d: &ControllerDeployment,
    snapshot: &ClusterSnapshot,
    config: &Config,
) -> ControllerSettings {
    let mut s = ControllerSettings::unknown(&d.service);
    s.deployment = Some(format!("{}/{}", d.namespace, d.name));
    s.version = d.version.clone();
    let image = release_table::runtime_of_image(&d.service, d.version.as_deref());
    s.runtime = image.runtime.version;
    s.runtime_commit = image.runtime.commit;
    s.runtime_source = image.source;
    s.runtime_release = image.release;
    s.runtime_warning = image.warning;
    if !config.kube.controller_namespaces.contains(&d.namespace) {
        s.notes.push(format!(
            "Deployment is in namespace {:?}, outside kube.controller_namespaces {:?}; the live source would not watch it",
            d.namespace, config.kube.controller_namespaces
        ));
    }
    default_account_from_irsa(&mut s, d, snapshot);
    if let Some(r) = &d.region {
        s.default_region = Some(r.clone());
        s.default_region_origin = Origin::Deployment;
    }
    if let Some(c) = d.enable_carm {
        s.enable_carm = c;
    }
    s.feature_gates = d.feature_gates.clone();
    if let Some(ns) = &d.system_namespace {
        s.system_namespace = ns.clone();
    }
    s.watch_namespaces = d.watch_namespaces.clone();
    s.start = StartFacts::of(d);
    s.notes.extend(d.warnings.iter().cloned());
    s
}

/// The controller's own account: the one in its ServiceAccount's IRSA role.
fn default_account_from_irsa(
    s: &mut ControllerSettings,
    d: &ControllerDeployment,
    snapshot: &ClusterSnapshot,
) {
    match snapshot.service_account(&d.namespace, &d.service_account) {
        Some(sa) => match sa.role_arn.as_deref() {
            Some(arn) => match arn_account(arn) {
                Some(acct) => {
                    s.default_account = Some(acct);
                    s.default_account_origin = Origin::Deployment;
                }
                None => s
                    .notes
                    .push(format!("ServiceAccount role ARN {arn:?} names no account")),
            },
            None => s.notes.push(format!(
                "ServiceAccount {}/{} has no eks.amazonaws.com/role-arn (Pod Identity or node role?): set controllers.{}.default_account",
                d.namespace, d.service_account, d.service
            )),
        },
        None => s.notes.push(format!(
            "ServiceAccount {}/{} not in the input: set controllers.{}.default_account",
            d.namespace, d.service_account, d.service
        )),
    }
}

/// A controller moved to another runtime (and maybe another release), as `upgrade-preview`
/// asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade {
    pub runtime: PinnedRuntime,
    /// The controller release, when one was named (the image tag it would run).
    pub release: Option<String>,
}

/// All controllers: one per discovered Deployment container, one per configured service
/// without a Deployment, and one (with unknown defaults) per service that only has resources.
pub fn resolve(snapshot: &ClusterSnapshot, config: &Config) -> Vec<ControllerSettings> {
    resolve_upgraded(snapshot, config, &BTreeMap::new())
}

/// As [`resolve`], with the controllers of `upgrades` (by service) on those runtimes.
pub fn resolve_upgraded(
    snapshot: &ClusterSnapshot,
    config: &Config,
    upgrades: &BTreeMap<String, Upgrade>,
) -> Vec<ControllerSettings> {
    let mut out: Vec<ControllerSettings> = snapshot
        .controllers
        .iter()
        .map(|d| from_deployment(d, snapshot, config))
        .collect();
    let discovered: BTreeSet<String> = out.iter().map(|s| s.service.clone()).collect();
    for service in config.controllers.keys() {
        if !discovered.contains(service) {
            let mut s = ControllerSettings::unknown(service);
            s.notes.push(
                "no controller Deployment in the input (as with EKS managed ACK, which runs it outside the cluster): settings from the config only".into(),
            );
            out.push(s);
        }
    }
    let known: BTreeSet<String> = out.iter().map(|s| s.service.clone()).collect();
    let mut orphan: BTreeSet<&str> = BTreeSet::new();
    for r in &snapshot.resources {
        if let Some(svc) = r.gvk.ack_service()
            && !known.contains(svc)
        {
            orphan.insert(svc);
        }
    }
    for svc in orphan {
        let mut s = ControllerSettings::unknown(svc);
        s.notes.push(format!(
            "no controller Deployment in the input and no controllers.{svc} in the config: default account unknown"
        ));
        out.push(s);
    }

    for s in &mut out {
        finish(s, snapshot, config, upgrades.get(&s.service));
    }
    out.sort_by(|a, b| (&a.service, &a.deployment).cmp(&(&b.service, &b.deployment)));
    out
}

/// The config's overrides, an upgrade, then the runtime's own rules and start-up checks.
fn finish(
    s: &mut ControllerSettings,
    snapshot: &ClusterSnapshot,
    config: &Config,
    upgrade: Option<&Upgrade>,
) {
    if let Some(o) = config.controllers.get(&s.service) {
        s.configured = true;
        apply_override(s, o);
    }
    if let Some(u) = upgrade {
        s.runtime = u.runtime.version;
        s.runtime_commit = u.runtime.commit;
        s.runtime_name = None;
        if let Some(release) = &u.release {
            s.version = Some(release.clone());
            s.runtime_release = Some(release.clone());
        }
    }
    apply_runtime_rules(s);
    let group = format!("{}.services.k8s.aws", s.service);
    let (problems, scope, notes) = startup::check(s, snapshot.ack_kinds.get(&group));
    s.problems = problems;
    s.scope = scope;
    s.notes.extend(notes);
}

fn apply_override(s: &mut ControllerSettings, o: &crate::config::ControllerOverride) {
    if let Some(a) = &o.default_account {
        s.default_account = Some(a.clone());
        s.default_account_origin = Origin::Config;
    }
    if let Some(r) = &o.default_region {
        s.default_region = Some(r.clone());
        s.default_region_origin = Origin::Config;
    }
    if let Some(r) = o.runtime {
        s.runtime = r.version;
        s.runtime_name = r.name;
        s.runtime_source = RuntimeSource::Config;
        s.runtime_commit = None;
        s.runtime_release = None;
        s.runtime_warning = None;
    }
    if let Some(c) = o.enable_carm {
        s.enable_carm = c;
    }
    if let Some(g) = &o.feature_gates {
        for (k, v) in g {
            s.feature_gates.insert(k.clone(), *v);
        }
    }
    if let Some(ns) = &o.system_namespace {
        s.system_namespace = ns.clone();
    }
    if let Some(w) = &o.watch_namespaces {
        s.watch_namespaces = w.clone();
    }
}

/// The runtime's own rules on top of the flags (`BindControllerManager`, `Config.Validate`).
pub(crate) fn apply_runtime_rules(s: &mut ControllerSettings) {
    s.behaviour = RuntimeBehaviour::of(s.runtime);
    let b = s.behaviour;
    // Before v0.52 there is no --enable-carm: nothing but the watch scope stops the caches.
    let enable_carm = s.enable_carm || !b.enable_carm_flag;
    s.carm = b.carm_caches_run(enable_carm, s.watch_namespaces.len());
    version_notes(s);
    if enable_carm && !s.carm {
        s.notes.push(match s.watch_namespaces.as_slice() {
            [one] => format!(
                "CARM caches do not run: --watch-namespace names one namespace ({one}); namespace annotations are not read, and a status account other than the controller's own finds no role"
            ),
            _ => format!(
                "CARM caches do not run: runtime {} starts them only without --watch-namespace",
                s.runtime
            ),
        });
    }
    if s.gate(gates::IAM_ROLE_SELECTOR) && s.enable_carm {
        // It cannot start with both (a start-up problem); the target is what the selectors
        // give once `--enable-carm=false` is set.
        s.carm = false;
    }
}

/// Notes on what the runtime version cannot do or does not know.
fn version_notes(s: &mut ControllerSettings) {
    if s.runtime < OLDEST_MODELLED {
        s.notes.push(format!(
            "runtime {} is older than {OLDEST_MODELLED}, the oldest whose rules were read: judged as {OLDEST_MODELLED}",
            s.runtime
        ));
    } else if s.runtime > RuntimeVersion::NEWEST {
        s.notes.push(format!(
            "runtime {} is newer than {}, the newest this exporter knows: judged as {}",
            s.runtime,
            RuntimeVersion::NEWEST,
            RuntimeVersion::NEWEST
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ControllerDeployment, ServiceAccount};

    fn snapshot() -> ClusterSnapshot {
        ClusterSnapshot {
            controllers: vec![ControllerDeployment {
                service: "ec2".into(),
                namespace: "ack-system".into(),
                name: "ack-ec2-controller".into(),
                service_account: "ack-ec2".into(),
                region: Some("eu-west-2".into()),
                enable_carm: Some(true),
                ..Default::default()
            }],
            service_accounts: vec![ServiceAccount {
                namespace: "ack-system".into(),
                name: "ack-ec2".into(),
                role_arn: Some("arn:aws:iam::178394743802:role/ack-ec2".into()),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn discovery_then_overrides() {
        let config = Config::parse(
            "controllers:\n  ec2:\n    runtime: legacy\n    default_region: us-east-1\n  s3:\n    default_account: '111111111111'\n",
        )
        .unwrap();
        let all = resolve(&snapshot(), &config);
        assert_eq!(all.len(), 2);
        let ec2 = &all[0];
        assert_eq!(ec2.default_account.as_deref(), Some("178394743802"));
        assert_eq!(ec2.default_account_origin, Origin::Deployment);
        assert_eq!(ec2.default_region.as_deref(), Some("us-east-1"));
        assert_eq!(ec2.default_region_origin, Origin::Config);
        assert_eq!(ec2.runtime.to_string(), "v0.35.0");
        assert_eq!(ec2.runtime_name, Some(RuntimeName::Legacy));
        assert!(ec2.carm);
        let s3 = &all[1];
        assert_eq!(s3.service, "s3");
        assert_eq!(s3.default_account.as_deref(), Some("111111111111"));
        assert_eq!(s3.runtime, RuntimeVersion::NEWEST);
        assert_eq!(s3.runtime_source, RuntimeSource::Default);
    }

    #[test]
    fn single_watch_namespace_leaves_the_carm_caches_off() {
        let mut snap = snapshot();
        snap.controllers[0].watch_namespaces = vec!["uat".into()];
        let ec2 = &resolve(&snap, &Config::default())[0];
        assert!(ec2.enable_carm);
        assert!(!ec2.carm);
        snap.controllers[0].watch_namespaces = vec!["uat".into(), "dev".into()];
        assert!(resolve(&snap, &Config::default())[0].carm);
    }

    #[test]
    fn role_selector_gate_excludes_carm() {
        let mut snap = snapshot();
        snap.controllers[0]
            .feature_gates
            .insert(gates::IAM_ROLE_SELECTOR.into(), true);
        let ec2 = &resolve(&snap, &Config::default())[0];
        assert!(!ec2.carm);
        assert!(!ec2.running());
        assert_eq!(
            ec2.problems[0].problem,
            startup::ControllerProblem::RoleSelectorWithCarm
        );
    }

    #[test]
    fn services_with_only_resources_get_unknown_defaults() {
        let mut snap = snapshot();
        snap.resources
            .push(std::sync::Arc::new(crate::model::AckResource {
                gvk: crate::model::Gvk {
                    group: "rds.services.k8s.aws".into(),
                    version: "v1alpha1".into(),
                    kind: "DBInstance".into(),
                }
                .into(),
                ..Default::default()
            }));
        let all = resolve(&snap, &Config::default());
        let rds = all.iter().find(|c| c.service == "rds").unwrap();
        assert_eq!(rds.default_account, None);
        assert_eq!(rds.default_account_origin, Origin::Unknown);
    }

    #[test]
    fn notes_say_which_runtime_versions_are_judged_as_another() {
        let cases = [
            ("v0.9.0", Some("older than v0.10.0")),
            ("v0.63.0", Some("newer than v0.62.0")),
            ("v0.10.0", None),
            ("v0.62.0", None),
        ];
        for (version, note) in cases {
            let config =
                Config::parse(&format!("controllers:\n  ec2:\n    runtime: {version}\n")).unwrap();
            let ec2 = &resolve(&snapshot(), &config)[0];
            match note {
                Some(n) => assert!(
                    ec2.notes.iter().any(|x| x.contains(n)),
                    "{version}: {:?}",
                    ec2.notes
                ),
                None => assert_eq!(ec2.notes, Vec::<String>::new(), "{version}"),
            }
        }
    }

    /// A Deployment of `<service>-controller:<tag>` with `args`, resolved without a config.
    fn from_image(service: &str, tag: &str, args: &[&str]) -> ControllerSettings {
        let c = crate::model::controller::Container {
            image: format!("public.ecr.aws/aws-controllers-k8s/{service}-controller:{tag}"),
            command: vec![],
            args: args.iter().map(|a| a.to_string()).collect(),
            env: vec![],
        };
        let d = crate::model::controller::from_container("ack-system", "c", "sa", &c).unwrap();
        let snap = ClusterSnapshot {
            controllers: vec![d],
            ..Default::default()
        };
        resolve(&snap, &Config::default()).remove(0)
    }

    #[test]
    fn pinned_commits_behave_as_the_release_they_contain_with_their_own_flags() {
        use crate::evaluate::runtime::AccountOrder;
        use crate::evaluate::startup::ControllerProblem;
        // iam 1.3.10 pins v0.35.1-0.20240801040145-dda2022eddbe, which contains v0.36.0:
        // namespace first, although the name says v0.35.
        let iam = from_image("iam", "1.3.10", &[]);
        assert_eq!(iam.runtime.to_string(), "v0.36.0");
        assert_eq!(iam.behaviour.account_order, AccountOrder::NamespaceFirst);
        assert_eq!(iam.runtime_source, RuntimeSource::Image);
        // elasticache 0.0.3 pins a 2021 commit older than every release: the oldest rules,
        // and that commit's own eight flags (no --watch-namespace yet).
        let old = from_image("elasticache", "0.0.3", &["--watch-namespace=uat"]);
        assert_eq!(old.behaviour.account_order, AccountOrder::StatusFirst);
        assert!(
            old.notes.iter().any(|n| n.contains("older than v0.10.0")),
            "{:?}",
            old.notes
        );
        assert_eq!(old.problems[0].problem, ControllerProblem::UndefinedFlag);
        // sns 1.4.3's commit (contains v0.58.1) already defines --http-client-timeout.
        let sns = from_image("sns", "1.4.3", &["--http-client-timeout=30s"]);
        assert_eq!(sns.runtime.to_string(), "v0.58.1");
        assert!(sns.running(), "{:?}", sns.problems);
        let sns_release = from_image("sns", "1.4.2", &["--http-client-timeout=30s"]);
        // sns 1.4.2 (v0.58.0) does not.
        assert_eq!(
            sns_release.problems[0].problem,
            ControllerProblem::UndefinedFlag
        );
    }

    #[test]
    fn an_image_without_a_listed_release_falls_back_with_a_note_and_the_config_wins() {
        let digest = from_image("ec2", "latest", &[]);
        assert_eq!(digest.runtime_source, RuntimeSource::Default);
        assert!(
            digest
                .runtime_warning
                .as_deref()
                .is_some_and(|w| w.contains("is no release version"))
        );
        let mut snap = ClusterSnapshot::default();
        snap.controllers.push(ControllerDeployment {
            service: "ec2".into(),
            namespace: "ack-system".into(),
            name: "c".into(),
            version: Some("latest".into()),
            ..Default::default()
        });
        let config = Config::parse("controllers:\n  ec2:\n    runtime: v0.53.0\n").unwrap();
        let ec2 = &resolve(&snap, &config)[0];
        assert_eq!(ec2.runtime.to_string(), "v0.53.0");
        assert_eq!(ec2.runtime_source, RuntimeSource::Config);
        assert_eq!(ec2.runtime_warning, None);
        assert!(ec2.configured);
    }
}
