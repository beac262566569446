//! Which CloudTrail streams to poll: (account, region, event source), from the config and,
//! for `auto`, from every account and region the cluster mentions (README "Reading CloudTrail live").

use std::collections::BTreeSet;

use super::Evaluation;
use crate::config::{Accounts, CloudTrailConfig, EventSources};
use crate::model::trail::{AccountPlan, LookupPlan};
use crate::model::{ClusterSnapshot, arn_account};

/// The CloudTrail `eventSource` of an ACK service alias. Most are `<alias>.amazonaws.com`;
/// these are the controllers whose alias is not the API's endpoint prefix.
pub fn event_source(alias: &str) -> String {
    let prefix = match alias {
        "applicationautoscaling" => "application-autoscaling",
        "cloudwatch" => "monitoring",
        "cloudwatchlogs" => "logs",
        "cognitoidentityprovider" => "cognito-idp",
        "documentdb" => "rds",
        "elbv2" => "elasticloadbalancing",
        "emrcontainers" => "emr-containers",
        "eventbridge" => "events",
        "keyspaces" => "cassandra",
        "networkfirewall" => "network-firewall",
        "opensearchservice" => "es",
        "prometheusservice" => "aps",
        "recyclebin" => "rbin",
        "sfn" => "states",
        "bedrockagent" => "bedrock",
        other => other,
    };
    format!("{prefix}.amazonaws.com")
}

/// Accounts the cluster mentions: CARM map keys and role ARNs, namespace annotations, role
/// selectors, statuses and ARNs, controller defaults.
fn accounts_seen(snapshot: &ClusterSnapshot, evaluation: &Evaluation) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut add = |a: Option<&str>| {
        if let Some(a) = a.filter(|a| crate::model::account::is_account_id(a)) {
            out.insert(a.to_string());
        }
    };
    for m in &snapshot.carm_maps {
        for (key, arn) in &m.data {
            // Account-map keys are account ids (ServiceLevelCARM: `<service>.<id>`).
            add(key.rsplit('.').next());
            add(arn_account(arn).as_deref());
        }
    }
    for ns in snapshot.namespaces.values() {
        add(ns.owner_account_id.as_deref());
    }
    for s in &snapshot.role_selectors {
        add(arn_account(&s.arn).as_deref());
    }
    for r in &snapshot.resources {
        if let Some(m) = &r.metadata {
            add(m.owner_account_id.as_deref());
            add(m.arn.as_deref().and_then(arn_account).as_deref());
        }
    }
    for c in &evaluation.controllers {
        add(c.default_account.as_deref());
    }
    out
}

/// Regions the cluster mentions: controller defaults, namespace and CR annotations, statuses,
/// and the regions verdicts expect.
fn regions_seen(snapshot: &ClusterSnapshot, evaluation: &Evaluation) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut add = |r: Option<&str>| {
        if let Some(r) = r.filter(|r| !r.is_empty()) {
            out.insert(r.to_string());
        }
    };
    for c in &evaluation.controllers {
        add(c.default_region.as_deref());
    }
    for ns in snapshot.namespaces.values() {
        add(ns.default_region.as_deref());
    }
    for r in &snapshot.resources {
        add(r.region_annotation.as_deref());
        add(r.metadata.as_ref().and_then(|m| m.region.as_deref()));
    }
    for v in &evaluation.resources {
        add(v.ownership.expected_region.as_deref());
    }
    out
}

/// The streams to poll, or `None` when live CloudTrail is off (`cloudtrail.accounts` unset).
pub fn plan(
    snapshot: &ClusterSnapshot,
    evaluation: &Evaluation,
    config: &CloudTrailConfig,
) -> Option<LookupPlan> {
    let accounts = config.accounts.as_ref()?;
    let default_regions: Vec<String> = match &config.regions {
        Some(r) => r.clone(),
        None => regions_seen(snapshot, evaluation).into_iter().collect(),
    };
    let role_for = |account: &str| {
        config
            .role_arn_template
            .as_ref()
            .map(|t| t.replace("{account}", account))
    };
    let accounts = match accounts {
        Accounts::Keyword(_) => accounts_seen(snapshot, evaluation)
            .into_iter()
            .map(|account| AccountPlan {
                role_arn: role_for(&account),
                account,
                regions: default_regions.clone(),
                requests_per_second: config.requests_per_second,
            })
            .collect(),
        Accounts::List(list) => list
            .iter()
            .map(|a| AccountPlan {
                account: a.account.clone(),
                role_arn: a.role_arn.clone().or_else(|| role_for(&a.account)),
                regions: a.regions.clone().unwrap_or_else(|| default_regions.clone()),
                requests_per_second: a
                    .requests_per_second
                    .unwrap_or(config.requests_per_second)
                    .min(config.requests_per_second),
            })
            .collect(),
    };
    let event_sources = match &config.event_sources {
        Some(EventSources::List(l)) => l.clone(),
        _ => {
            let mut s: BTreeSet<String> = snapshot
                .resources
                .iter()
                .filter_map(|r| r.gvk.ack_service())
                .map(event_source)
                .collect();
            // Role pivots show up as sts:AssumeRole in the target account.
            s.insert("sts.amazonaws.com".to_string());
            s.into_iter().collect()
        }
    };
    Some(LookupPlan {
        accounts,
        event_sources,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn cluster(yaml: &str) -> ClusterSnapshot {
        let mut s = ClusterSnapshot::default();
        crate::source::kube_dir::read_bytes("t.yaml", yaml.as_bytes(), &mut s);
        s.normalize();
        s
    }

    const CLUSTER: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: uat
  annotations:
    services.k8s.aws/owner-account-id: "222222222222"
    services.k8s.aws/default-region: eu-west-1
---
apiVersion: v1
kind: ConfigMap
metadata: {name: ack-role-account-map, namespace: ack-system}
data:
  "333333333333": arn:aws:iam::333333333333:role/ack
---
apiVersion: ec2.services.k8s.aws/v1alpha1
kind: SecurityGroup
metadata: {name: sg, namespace: uat}
status:
  ackResourceMetadata: {ownerAccountID: "444444444444", region: us-east-1}
---
apiVersion: s3.services.k8s.aws/v1alpha1
kind: Bucket
metadata: {name: b, namespace: uat}
"#;

    #[test]
    fn auto_reads_every_account_and_region_the_cluster_names() {
        let config = Config::parse(
            "controllers:\n  ec2:\n    default_account: '111111111111'\n    default_region: eu-west-2\ncloudtrail:\n  accounts: auto\n  role_arn_template: 'arn:aws:iam::{account}:role/reader'\n",
        )
        .unwrap();
        let s = cluster(CLUSTER);
        let e = crate::evaluate::evaluate(&s, &config);
        let p = plan(&s, &e, &config.cloudtrail).unwrap();
        let accounts: Vec<&str> = p.accounts.iter().map(|a| a.account.as_str()).collect();
        assert_eq!(
            accounts,
            [
                "111111111111",
                "222222222222",
                "333333333333",
                "444444444444"
            ]
        );
        assert_eq!(
            p.accounts[1].role_arn.as_deref(),
            Some("arn:aws:iam::222222222222:role/reader")
        );
        assert_eq!(
            p.accounts[0].regions,
            ["eu-west-1", "eu-west-2", "us-east-1"]
        );
        assert_eq!(
            p.event_sources,
            ["ec2.amazonaws.com", "s3.amazonaws.com", "sts.amazonaws.com"]
        );
    }

    #[test]
    fn a_list_keeps_its_roles_regions_and_budgets() {
        let config = Config::parse(
            "cloudtrail:\n  accounts:\n  - account: '111111111111'\n    role_arn: arn:aws:iam::111111111111:role/x\n    regions: [eu-west-2]\n    requests_per_second: 0.5\n  - account: '222222222222'\n  regions: [us-east-1]\n  event_sources: [ec2.amazonaws.com]\n",
        )
        .unwrap();
        let s = cluster(CLUSTER);
        let e = crate::evaluate::evaluate(&s, &config);
        let p = plan(&s, &e, &config.cloudtrail).unwrap();
        assert_eq!(p.accounts.len(), 2);
        assert_eq!(p.accounts[0].regions, ["eu-west-2"]);
        assert_eq!(p.accounts[0].requests_per_second, 0.5);
        assert_eq!(p.accounts[1].role_arn, None);
        assert_eq!(p.accounts[1].regions, ["us-east-1"]);
        assert_eq!(p.accounts[1].requests_per_second, 2.0);
        assert_eq!(p.event_sources, ["ec2.amazonaws.com"]);
    }

    #[test]
    fn no_accounts_no_polling() {
        let s = cluster(CLUSTER);
        let config = Config::default();
        let e = crate::evaluate::evaluate(&s, &config);
        assert_eq!(plan(&s, &e, &config.cloudtrail), None);
        assert_eq!(event_source("elbv2"), "elasticloadbalancing.amazonaws.com");
        assert_eq!(event_source("rds"), "rds.amazonaws.com");
    }
}
