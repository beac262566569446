//! Remediation steps for a verdict: what a person does about it, each with the concrete kubectl
//! or AWS CLI command that does it when there is one. The tool never runs them.

use std::fmt;

use serde::{Serialize, Serializer};

use super::controllers::ControllerSettings;
use super::ownership::{
    AccountSource, Effect, Ownership, Problem, RegionEffect, RoleError, RoleErrorReason,
};
use crate::model::{AckResource, TEAM_MAP};

/// One remediation step: what to do and why, and the command that does it, if any.
///
/// Its text (`Display`, and the audit JSON) is the explanation, then `": "` and the command
/// when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub explain: String,
    pub command: Option<Command>,
}

/// A command a person runs for a step, against the cluster or against AWS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// A kubectl command line; `prints` is what it shows when the step worked.
    Kubectl {
        command: String,
        prints: Option<String>,
    },
    /// An AWS CLI command line, to run with credentials for `account` in `region` (`None`
    /// when the verdict does not know them).
    Aws {
        account: Option<String>,
        region: Option<String>,
        command: String,
    },
}

impl Command {
    /// The command line, as pasted into a shell.
    pub fn line(&self) -> &str {
        match self {
            Command::Kubectl { command, .. } | Command::Aws { command, .. } => command,
        }
    }

    /// What the command shows when the step worked, if the step says.
    pub fn prints(&self) -> Option<&str> {
        match self {
            Command::Kubectl { prints, .. } => prints.as_deref(),
            Command::Aws { .. } => None,
        }
    }
}

impl Step {
    /// A step with nothing to run.
    pub fn note(explain: impl Into<String>) -> Step {
        Step {
            explain: explain.into(),
            command: None,
        }
    }

    /// A step done by a kubectl command.
    pub fn kubectl(explain: impl Into<String>, command: String) -> Step {
        Step {
            explain: explain.into(),
            command: Some(Command::Kubectl {
                command,
                prints: None,
            }),
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.explain)?;
        let Some(c) = &self.command else {
            return Ok(());
        };
        write!(f, ": {}", c.line())?;
        match c.prints() {
            Some(p) => write!(f, " prints {p}"),
            None => Ok(()),
        }
    }
}

/// As its text: the audit and preview JSON list steps as strings.
impl Serialize for Step {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The `kubectl` resource argument for a CR: `securitygroup.ec2.services.k8s.aws`, which
/// kubectl resolves without knowing the plural.
pub fn kubectl_resource(r: &AckResource) -> String {
    format!("{}.{}", r.gvk.kind.to_ascii_lowercase(), r.gvk.group)
}

/// The `-n <namespace> <resource> <name>` arguments naming the CR.
fn kubectl_target(r: &AckResource) -> String {
    format!("-n {} {} {}", r.namespace, kubectl_resource(r), r.name)
}

/// Saving the CR's manifest to `<namespace>.<name>.yaml`: the first recovery step, and the
/// backup before an upgrade.
pub fn save_manifest(r: &AckResource) -> Step {
    Step::kubectl(
        "Save the manifest",
        format!(
            "kubectl get {} -o yaml > {}.{}.yaml",
            kubectl_target(r),
            r.namespace,
            r.name
        ),
    )
}

pub fn steps(r: &AckResource, o: &Ownership, controller: &ControllerSettings) -> Vec<Step> {
    let mut out = Vec::new();
    out.extend(idle_step(r, o, controller));
    if o.account_drift || o.region_drift {
        drift_steps(r, o, &mut out);
    }
    if let Some(e) = &o.role_error {
        out.push(role_step(o, e, controller));
    }
    if o.problems.contains(&Problem::InvalidAccountId) {
        out.push(Step::kubectl(
            "The namespace's services.k8s.aws/owner-account-id is not a 12-digit account id (the runtime looks it up as written)",
            format!(
                "kubectl annotate namespace {} services.k8s.aws/owner-account-id=<12-digit account id> --overwrite",
                r.namespace
            ),
        ));
    }
    if o.problems.contains(&Problem::RoleAccountMismatch) {
        out.push(Step::note(format!(
            "The role {} is mapped for another account than the one it lives in: map each account id to a role in that account ({}).",
            o.role_arn.as_deref().unwrap_or("?"),
            if controller.behaviour.account_path_parses_role {
                "this runtime targets the role's account and refuses a status in the other one"
            } else {
                "before runtime v0.53 the controller records one account while its calls land in the role's"
            }
        )));
    }
    if o.problems.contains(&Problem::SelectorConflict) {
        // The command sits inside the sentence: a note, as the page has always shown it.
        out.push(Step::note(format!(
            "IAMRoleSelectors {} all match this resource and the controller refuses to pick one: narrow them (kubectl get iamroleselectors.services.k8s.aws {} -o yaml).",
            o.matched_selectors.join(", "),
            o.matched_selectors.join(" ")
        )));
    }
    if o.problems.contains(&Problem::Unresolved) {
        out.push(Step::note(format!(
            "The target account cannot be worked out: the {} controller's own account is unknown. Set controllers.{}.default_account in the config.",
            controller.service, controller.service
        )));
    }
    out
}

/// Where the status says the resource is, and where it belongs (`?` when unknown).
struct Places<'a> {
    wrong_acct: &'a str,
    right_acct: &'a str,
    wrong_region: &'a str,
    right_region: &'a str,
}

impl<'a> Places<'a> {
    fn of(o: &'a Ownership) -> Self {
        let or_unknown = |v: &'a Option<String>| v.as_deref().unwrap_or("?");
        Places {
            wrong_acct: or_unknown(&o.status_account),
            right_acct: or_unknown(&o.expected_account),
            wrong_region: or_unknown(&o.status_region),
            right_region: or_unknown(&o.expected_region),
        }
    }
}

/// What the drift does, and how to move the resource where it belongs.
fn drift_steps(r: &AckResource, o: &Ownership, out: &mut Vec<Step>) {
    let Places {
        wrong_acct,
        right_acct,
        wrong_region,
        right_region,
    } = Places::of(o);
    let what = match (o.account_drift, o.region_drift) {
        (true, true) => format!(
            "account {wrong_acct} / {wrong_region}, but belongs in account {right_acct} / {right_region}"
        ),
        (true, false) => {
            format!("account {wrong_acct}, but belongs in account {right_acct}")
        }
        _ => format!("region {wrong_region}, but belongs in region {right_region}"),
    };
    out.push(Step::note(format!("The status records {what}.")));
    match o.effect {
        Some(Effect::CallsWrongAccount) => out.push(Step::note(format!(
            "The controller keeps calling account {} for it: every reconcile is an AWS call in the wrong account.",
            o.called_account.as_deref().unwrap_or("?")
        ))),
        Some(Effect::Blocked) => out.push(Step::note(
            "The controller cannot reconcile it (terminal error or no role to assume), so a plain delete will hang on the finalizer.",
        )),
        Some(Effect::StaleStatus) => out.push(Step::note(format!(
            "The controller uses account {right_acct}; the status (ARN, ids) still points at account {wrong_acct}."
        ))),
        None => {}
    }
    if o.region_effect == Some(RegionEffect::CallsWrongRegion) {
        out.push(Step::note(format!(
            "The controller keeps calling region {wrong_region} for it: runtime {} reads the status region first.",
            o.runtime
        )));
    }
    if o.problems.contains(&Problem::TerminalMismatch) {
        out.push(Step::note(format!(
            "Runtime {} refuses the status with a terminal error before any AWS call and writes no condition: the old conditions (even ACK.ResourceSynced=True) stay, and a plain delete hangs on the finalizer.",
            o.runtime
        )));
    }
    recovery_steps(r, o, out);
}

/// Save, release, clean up, recreate, verify: moving a drifted resource where it belongs.
fn recovery_steps(r: &AckResource, o: &Ownership, out: &mut Vec<Step>) {
    let target = kubectl_target(r);
    let Places {
        wrong_acct,
        right_acct,
        wrong_region,
        right_region,
    } = Places::of(o);
    out.push(save_manifest(r));
    out.push(Step::kubectl(
        "Keep the controller from deleting AWS objects while the CR goes",
        format!("kubectl annotate {target} services.k8s.aws/deletion-policy=retain --overwrite"),
    ));
    out.push(Step::kubectl(
        "Delete the CR",
        format!("kubectl delete {target} --wait=false"),
    ));
    // Nobody removes the finalizer of a blocked resource, nor of one nothing reconciles.
    let stuck = [
        Problem::Terminal,
        Problem::ControllerNotRunning,
        Problem::NotReconciled,
    ];
    if o.effect == Some(Effect::Blocked)
        || o.region_effect == Some(RegionEffect::Blocked)
        || stuck.iter().any(|p| o.problems.contains(p))
    {
        out.push(Step::kubectl(
            "If it stays in Terminating, release the finalizer",
            format!(
                "kubectl patch {target} --type=merge -p '{{\"metadata\":{{\"finalizers\":null}}}}'"
            ),
        ));
    }
    out.push(Step {
        explain: format!(
            "In AWS account {wrong_acct}, region {wrong_region}: list what ACK created for this namespace"
        ),
        command: Some(Command::Aws {
            account: o.status_account.clone(),
            region: o.status_region.clone(),
            command: format!(
                "aws resourcegroupstaggingapi get-resources --region {wrong_region} --tag-filters Key=services.k8s.aws/namespace,Values={}",
                r.namespace
            ),
        }),
    });
    let arn = r.metadata.as_ref().and_then(|m| m.arn.as_ref());
    out.push(Step::note(match arn {
        // A status ARN means a real object exists where the status says: it may hold data.
        Some(arn) => format!(
            "The status ARN {arn} names a real object in account {wrong_acct}: move or keep what it holds before deleting it; delete only leftovers of failed creates."
        ),
        None => format!(
            "No ARN was recorded, so nothing was created for it in account {wrong_acct}: delete only leftovers of failed creates that carry this namespace's tag."
        ),
    }));
    out.push(Step::note(format!(
        "In AWS account {right_acct}, region {right_region}: check whether the resource already exists there; if so adopt it instead of creating a duplicate."
    )));
    out.push(Step::note(format!(
        "Recreate the CR from its source of truth (GitOps), or from {}.{}.yaml without status, metadata.uid, metadata.resourceVersion and metadata.finalizers.",
        r.namespace, r.name
    )));
    out.push(Step {
        explain: "Verify".to_string(),
        command: Some(Command::Kubectl {
            command: format!(
                "kubectl get {target} -o jsonpath='{{.status.ackResourceMetadata.ownerAccountID}} {{.status.ackResourceMetadata.region}}'"
            ),
            prints: Some(format!("{right_acct} {right_region}")),
        }),
    });
}

/// Why nothing happens to the resource, when its controller never reconciles it.
fn idle_step(r: &AckResource, o: &Ownership, c: &ControllerSettings) -> Option<Step> {
    let deployment = c.deployment.as_deref().unwrap_or("(no Deployment found)");
    if o.problems.contains(&Problem::ControllerNotRunning) {
        let why: Vec<&str> = c.problems.iter().map(|p| p.detail.as_str()).collect();
        return Some(Step::note(format!(
            "The {} controller {deployment} cannot run, so nothing reconciles this resource: {}. Fix the Deployment first (ack-drift-exporter check-config shows every reason).",
            c.service,
            why.join("; ")
        )));
    }
    if !o.problems.contains(&Problem::NotReconciled) {
        return None;
    }
    let why = if !c.watches(&r.namespace) {
        format!("its namespace {} is not in --watch-namespace", r.namespace)
    } else if c
        .scope
        .kinds
        .as_ref()
        .is_some_and(|k| !k.contains(&r.gvk.kind))
    {
        format!("kind {} is not in --reconcile-resources", r.gvk.kind)
    } else {
        let sel = c
            .scope
            .labels
            .as_ref()
            .map(|l| l.to_string())
            .unwrap_or_default();
        format!("its labels do not match --watch-selectors={sel}")
    };
    Some(Step::note(format!(
        "The {} controller {deployment} never reconciles this resource: {why}. Widen that flag, or leave the resource to a controller that reconciles it.",
        c.service
    )))
}

/// What to do about a failed role lookup, from the map, key and reason the runtime met.
fn role_step(o: &Ownership, e: &RoleError, controller: &ControllerSettings) -> Step {
    let sys = &controller.system_namespace;
    let (map, key) = (e.map, &e.key);
    let why = match e.reason {
        RoleErrorReason::CarmNotRunning => {
            return Step::note(format!(
                "The controller's CARM caches do not run (--watch-namespace names one namespace, or --enable-carm=false), yet the status account {key} asks for a role: fix the drift, or run the controller with CARM."
            ));
        }
        RoleErrorReason::MapNotFound => format!("ConfigMap {sys}/{map} does not exist"),
        RoleErrorReason::KeyNotFound => format!("{sys}/{map} has no entry {key}"),
        RoleErrorReason::EmptyValue => format!("the entry {key} in {sys}/{map} is empty"),
        RoleErrorReason::InvalidArn => format!("the entry {key} in {sys}/{map} is no role ARN"),
    };
    let for_status = o.status_account.as_deref() == Some(key.as_str())
        && o.expected_account.as_deref() != Some(key.as_str());
    if for_status {
        return Step::note(format!(
            "The controller looks up a role for {key} only because the status records it: fix the drift rather than mapping {key} in {sys}/{map}."
        ));
    }
    if map == "IAMRoleSelector" {
        return Step::kubectl(
            format!("IAMRoleSelector {key} names no valid role ARN"),
            format!("kubectl edit iamroleselectors.services.k8s.aws {key}"),
        );
    }
    let example = if map == TEAM_MAP || o.account_source == Some(AccountSource::Team) {
        format!(
            "arn:aws:iam::<account>:role/<role-for-ack-{}>",
            controller.service
        )
    } else {
        format!(
            "arn:aws:iam::{key}:role/<role-for-ack-{}>",
            controller.service
        )
    };
    let condition = if controller.behaviour.role_unavailable_condition
        && e.reason != RoleErrorReason::InvalidArn
    {
        " (its condition says \"IAM Role is not available\")"
    } else {
        " (no condition says so)"
    };
    Step::kubectl(
        format!("The controller finds no usable role{condition}: {why}. Set it"),
        format!(
            "kubectl -n {sys} patch configmap {map} --type merge -p '{{\"data\":{{\"{key}\":\"{example}\"}}}}'"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::evaluate::controllers::resolve;
    use crate::evaluate::ownership;
    use crate::evaluate::startup::{ControllerProblem, Evidence, StartupProblem};
    use crate::model::{AckMetadata, ClusterSnapshot, Gvk, Namespace};
    use crate::output::page;

    const DEV: &str = "178394743802";

    /// The steps for a VPC in `namespace` with status `(account, region)`, its ec2 controller
    /// on `runtime` (own account DEV in eu-west-2) changed by `tweak`.
    fn steps_for(
        runtime: &str,
        namespace: Namespace,
        status: (&str, &str),
        tweak: impl Fn(&mut ControllerSettings),
    ) -> Vec<Step> {
        let config = Config::parse(&format!(
            "controllers:\n  ec2:\n    runtime: {runtime}\n    default_account: '{DEV}'\n    default_region: eu-west-2\n"
        ))
        .unwrap();
        let mut snapshot = ClusterSnapshot::default();
        let r = AckResource {
            gvk: Gvk {
                group: "ec2.services.k8s.aws".into(),
                version: "v1alpha1".into(),
                kind: "VPC".into(),
            }
            .into(),
            namespace: namespace.name.clone(),
            name: "v".into(),
            metadata: Some(AckMetadata {
                arn: None,
                owner_account_id: Some(status.0.into()),
                region: Some(status.1.into()),
            }),
            ..Default::default()
        };
        snapshot
            .namespaces
            .insert(namespace.name.clone(), namespace);
        snapshot.resources.push(r.clone().into());
        let mut c = resolve(&snapshot, &config).remove(0);
        tweak(&mut c);
        steps(&r, &ownership::evaluate(&snapshot, &c, &r), &c)
    }

    fn dev() -> Namespace {
        Namespace {
            name: "dev".into(),
            ..Default::default()
        }
    }

    fn has(steps: &[Step], text: &str) -> bool {
        steps.iter().any(|s| s.to_string().contains(text))
    }

    #[test]
    fn each_new_verdict_has_its_step() {
        let region = (DEV, "eu-west-1");
        let finalizer = "release the finalizer";
        // Before v0.53 the stale region is called; no hang to warn about.
        let s = steps_for("v0.52.0", dev(), region, |_| {});
        assert!(has(&s, "keeps calling region eu-west-1"), "{s:?}");
        assert!(!has(&s, finalizer), "{s:?}");
        // From v0.53 it is terminal, without a condition, and the delete hangs.
        let s = steps_for("v0.53.0", dev(), region, |_| {});
        assert!(has(&s, "refuses the status with a terminal error"), "{s:?}");
        assert!(has(&s, finalizer), "{s:?}");
        // A controller that cannot run comes first, and nobody removes the finalizer.
        let s = steps_for("v0.62.0", dev(), region, |c| {
            c.problems.push(StartupProblem {
                problem: ControllerProblem::UndefinedFlag,
                evidence: Evidence::Predicted,
                detail: "--x is not defined".into(),
            })
        });
        assert!(
            s[0].explain
                .contains("cannot run, so nothing reconciles this resource: --x is not defined"),
            "{s:?}"
        );
        assert!(has(&s, finalizer), "{s:?}");
        // A kind outside --reconcile-resources.
        let s = steps_for("v0.62.0", dev(), region, |c| {
            c.scope.kinds = Some(["Subnet".to_string()].into_iter().collect())
        });
        assert!(
            s[0].explain
                .contains("kind VPC is not in --reconcile-resources"),
            "{s:?}"
        );
        // An owner account that is no account id.
        let typo = Namespace {
            name: "typo".into(),
            owner_account_id: Some("1234".into()),
            ..Default::default()
        };
        let s = steps_for("v0.62.0", typo, (DEV, "eu-west-2"), |_| {});
        assert!(
            has(
                &s,
                "kubectl annotate namespace typo services.k8s.aws/owner-account-id="
            ),
            "{s:?}"
        );
    }

    /// Every step with a command reads "explanation: command" (a check then says what it
    /// prints), the page sets exactly that command in `<code>`, and no step's text names a
    /// command its data lacks.
    #[test]
    fn steps_carry_their_commands_as_data() {
        let region = (DEV, "eu-west-1");
        let team = Namespace {
            name: "team".into(),
            owner_account_id: Some("474417630776".into()),
            ..Default::default()
        };
        let typo = Namespace {
            name: "typo".into(),
            owner_account_id: Some("1234".into()),
            ..Default::default()
        };
        // (steps, how many of them carry a command)
        let table = [
            (steps_for("v0.52.0", dev(), region, |_| {}), 5),
            (steps_for("v0.53.0", dev(), region, |_| {}), 6),
            (steps_for("v0.62.0", team, (DEV, "eu-west-2"), |_| {}), 7),
            (steps_for("v0.62.0", typo, (DEV, "eu-west-2"), |_| {}), 8),
        ];
        for (steps, commands) in &table {
            for step in steps {
                let (text, html) = (step.to_string(), page::step_html(step));
                let Some(c) = &step.command else {
                    assert!(
                        !text.contains(": kubectl ") && !text.contains(": aws "),
                        "{text}: the command is only text"
                    );
                    assert_eq!(html, page::esc(&text));
                    continue;
                };
                let tool = match c {
                    Command::Kubectl { .. } => "kubectl ",
                    Command::Aws { .. } => "aws ",
                };
                assert!(c.line().starts_with(tool), "{text}");
                let prints = c.prints().map(|p| format!(" prints {p}"));
                let line = format!(
                    "{}: {}{}",
                    step.explain,
                    c.line(),
                    prints.unwrap_or_default()
                );
                assert_eq!(text, line);
                let code = format!(": <br><code>{}</code>", page::esc(c.line()));
                assert!(html.contains(&code), "{html}");
            }
            let found = steps.iter().filter(|s| s.command.is_some()).count();
            assert_eq!(found, *commands, "{steps:#?}");
        }
        let s = &table[0].0;
        let texts: Vec<String> = s.iter().map(Step::to_string).collect();
        let target = "-n dev vpc.ec2.services.k8s.aws v";
        for whole in [
            format!("Delete the CR: kubectl delete {target} --wait=false"),
            format!(
                "Verify: kubectl get {target} -o jsonpath='{{.status.ackResourceMetadata.ownerAccountID}} {{.status.ackResourceMetadata.region}}' prints {DEV} eu-west-2"
            ),
        ] {
            assert!(texts.contains(&whole), "{texts:#?}");
        }
        assert!(
            s.iter().any(|x| page::step_html(x)
                == format!("Save the manifest: <br><code>kubectl get {target} -o yaml &gt; dev.v.yaml</code>")),
            "{s:#?}"
        );
        // What a check prints follows its command, outside the `<code>` a person copies.
        let verify = format!("&#39;</code> prints {DEV} eu-west-2");
        assert!(
            s.iter().any(|x| page::step_html(x).ends_with(&verify)),
            "{s:#?}"
        );
        // The AWS listing runs where the status says the resource is.
        let aws = s.iter().find_map(|x| match &x.command {
            Some(Command::Aws {
                account, region, ..
            }) => Some((account.as_deref(), region.as_deref())),
            _ => None,
        });
        assert_eq!(aws, Some((Some(DEV), Some("eu-west-1"))));
    }
}
