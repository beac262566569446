//! Remediation steps for a verdict: concrete kubectl commands and AWS checks for a person to
//! run. The tool never runs them.

use super::controllers::ControllerSettings;
use super::ownership::{AccountSource, Effect, Ownership, Problem};
use crate::model::{ACCOUNT_MAP, AckResource, TEAM_MAP};

/// The `kubectl` resource argument for a CR: `securitygroup.ec2.services.k8s.aws`, which
/// kubectl resolves without knowing the plural.
pub fn kubectl_resource(r: &AckResource) -> String {
    format!("{}.{}", r.gvk.kind.to_ascii_lowercase(), r.gvk.group)
}

pub fn steps(r: &AckResource, o: &Ownership, controller: &ControllerSettings) -> Vec<String> {
    let mut out = Vec::new();
    let kres = kubectl_resource(r);
    let target = format!("-n {} {} {}", r.namespace, kres, r.name);
    let unknown = "?".to_string();

    if o.account_drift || o.region_drift {
        let (wrong_acct, right_acct) = (
            o.status_account.as_ref().unwrap_or(&unknown),
            o.expected_account.as_ref().unwrap_or(&unknown),
        );
        let (wrong_region, right_region) = (
            o.status_region.as_ref().unwrap_or(&unknown),
            o.expected_region.as_ref().unwrap_or(&unknown),
        );
        let what = match (o.account_drift, o.region_drift) {
            (true, true) => format!(
                "account {wrong_acct} / {wrong_region}, but belongs in account {right_acct} / {right_region}"
            ),
            (true, false) => {
                format!("account {wrong_acct}, but belongs in account {right_acct}")
            }
            _ => format!("region {wrong_region}, but belongs in region {right_region}"),
        };
        out.push(format!("The status records {what}."));
        match o.effect {
            Some(Effect::CallsWrongAccount) => out.push(format!(
                "The controller keeps calling account {} for it: every reconcile is an AWS call in the wrong account.",
                o.called_account.as_ref().unwrap_or(&unknown)
            )),
            Some(Effect::Blocked) => out.push(
                "The controller cannot reconcile it (terminal error or no role to assume), so a plain delete will hang on the finalizer."
                    .to_string(),
            ),
            Some(Effect::StaleStatus) => out.push(format!(
                "The controller uses account {right_acct}; the status (ARN, ids) still points at account {wrong_acct}."
            )),
            None => {}
        }
        out.push(format!(
            "Save the manifest: kubectl get {target} -o yaml > {}.{}.yaml",
            r.namespace, r.name
        ));
        out.push(format!(
            "Keep the controller from deleting AWS objects while the CR goes: kubectl annotate {target} services.k8s.aws/deletion-policy=retain --overwrite"
        ));
        out.push(format!(
            "Delete the CR: kubectl delete {target} --wait=false"
        ));
        if o.effect == Some(Effect::Blocked) || o.problems.contains(&Problem::Terminal) {
            out.push(format!(
                "If it stays in Terminating, release the finalizer: kubectl patch {target} --type=merge -p '{{\"metadata\":{{\"finalizers\":null}}}}'"
            ));
        }
        let arn = r.metadata.as_ref().and_then(|m| m.arn.as_ref());
        out.push(format!(
            "In AWS account {wrong_acct}, region {wrong_region}: list what ACK created for this namespace: aws resourcegroupstaggingapi get-resources --region {wrong_region} --tag-filters Key=services.k8s.aws/namespace,Values={}",
            r.namespace
        ));
        match arn {
            // A status ARN means a real object exists where the status says: it may hold data.
            Some(arn) => out.push(format!(
                "The status ARN {arn} names a real object in account {wrong_acct}: move or keep what it holds before deleting it; delete only leftovers of failed creates."
            )),
            None => out.push(format!(
                "No ARN was recorded, so nothing was created for it in account {wrong_acct}: delete only leftovers of failed creates that carry this namespace's tag."
            )),
        }
        out.push(format!(
            "In AWS account {right_acct}, region {right_region}: check whether the resource already exists there; if so adopt it instead of creating a duplicate."
        ));
        out.push(format!(
            "Recreate the CR from its source of truth (GitOps), or from {}.{}.yaml without status, metadata.uid, metadata.resourceVersion and metadata.finalizers.",
            r.namespace, r.name
        ));
        out.push(format!(
            "Verify: kubectl get {target} -o jsonpath='{{.status.ackResourceMetadata.ownerAccountID}} {{.status.ackResourceMetadata.region}}' prints {right_acct} {right_region}"
        ));
    }

    let sys = &controller.system_namespace;
    if o.problems.contains(&Problem::RoleUnavailable) {
        match o.account_source {
            Some(AccountSource::Team) => out.push(format!(
                "No role for the namespace's team: add one to ConfigMap {sys}/{TEAM_MAP}: kubectl -n {sys} edit configmap {TEAM_MAP}"
            )),
            _ => {
                let acct = if o.account_source == Some(AccountSource::Namespace) {
                    o.expected_account.as_ref()
                } else {
                    o.status_account.as_ref()
                }
                .unwrap_or(&unknown);
                out.push(format!(
                    "No role for account {acct}: the controller fails with \"IAM Role is not available\". Add it: kubectl -n {sys} patch configmap {ACCOUNT_MAP} --type merge -p '{{\"data\":{{\"{acct}\":\"arn:aws:iam::{acct}:role/<role-for-ack-{}>\"}}}}'",
                    controller.service
                ));
            }
        }
    }
    if o.problems.contains(&Problem::SelectorConflict) {
        out.push(format!(
            "IAMRoleSelectors {} all match this resource and the controller refuses to pick one: narrow them (kubectl get iamroleselectors.services.k8s.aws {} -o yaml).",
            o.matched_selectors.join(", "),
            o.matched_selectors.join(" ")
        ));
    }
    if o.problems.contains(&Problem::Unresolved) {
        out.push(format!(
            "The target account cannot be worked out: the {} controller's own account is unknown. Set controllers.{}.default_account in the config.",
            controller.service, controller.service
        ));
    }
    out
}
