//! Ties ACK-originated CloudTrail events to the custom resource that caused them.
//!
//! Each CR of a kind offers identifier strings (README "How CloudTrail events are tied to resources"). An event of that kind (from its
//! user agent) matches a CR when one of its request values equals one of them. A value held
//! by exactly one CR decides; values shared by several CRs only narrow the candidates; then
//! the request's `services.k8s.aws/namespace` tag narrows further. Anything still ambiguous,
//! or matching nothing, stays unattributed with a reason: never guessed.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::config::IdentifierRule;
use crate::model::trail::Unattributed;
use crate::model::{AckResource, ClusterSnapshot, Section};

/// The default identifier rule: spec fields named `name` or ending in `Name`/`Identifier`,
/// the status ARN, and status fields named `id` or ending in `ID`/`Id`/`ARN`/`Arn` except
/// `ownerID` (an account).
fn default_rule(section: Section, field: &str) -> bool {
    match section {
        Section::Spec => {
            field == "name" || field.ends_with("Name") || field.ends_with("Identifier")
        }
        Section::Status => {
            field != "ownerID"
                && (field == "id"
                    || field.ends_with("ID")
                    || field.ends_with("Id")
                    || field.ends_with("ARN")
                    || field.ends_with("Arn"))
        }
    }
}

/// The identifier strings of one CR under the configured rules.
pub fn identifiers(r: &AckResource, overrides: &BTreeMap<String, IdentifierRule>) -> Vec<String> {
    let rule = overrides
        .get(&format!("{}.{}", r.gvk.kind, r.gvk.group))
        .or_else(|| overrides.get(&r.gvk.kind));
    let mut ids: Vec<String> = r
        .id_fields
        .iter()
        .filter(|f| match rule {
            Some(rule) => match f.section {
                Section::Spec => rule.spec.contains(&f.field),
                Section::Status => rule.status.contains(&f.field),
            },
            None => default_rule(f.section, &f.field),
        })
        .map(|f| f.value.clone())
        .collect();
    if rule.is_none_or(|r| r.arn)
        && let Some(arn) = r.metadata.as_ref().and_then(|m| m.arn.clone())
    {
        ids.push(arn);
    }
    ids.sort();
    ids.dedup();
    ids
}

/// Identifier → CRs, per (group, kind).
pub struct AttributionIndex {
    by_kind: HashMap<(String, String), HashMap<String, Vec<usize>>>,
}

impl AttributionIndex {
    pub fn build(snapshot: &ClusterSnapshot, overrides: &BTreeMap<String, IdentifierRule>) -> Self {
        let mut by_kind: HashMap<(String, String), HashMap<String, Vec<usize>>> = HashMap::new();
        for (i, r) in snapshot.resources.iter().enumerate() {
            let index = by_kind
                .entry((r.gvk.group.clone(), r.gvk.kind.clone()))
                .or_default();
            for id in identifiers(r, overrides) {
                index.entry(id).or_default().push(i);
            }
        }
        AttributionIndex { by_kind }
    }

    /// The CR (index into the snapshot's resources) an ACK call is about.
    pub fn attribute(
        &self,
        snapshot: &ClusterSnapshot,
        group: &str,
        kind: Option<&str>,
        values: &[String],
        namespace_tag: Option<&str>,
    ) -> Result<usize, Unattributed> {
        let kind = kind.ok_or(Unattributed::NoKind)?;
        let index = self
            .by_kind
            .get(&(group.to_string(), kind.to_string()))
            .ok_or(Unattributed::NoMatch)?;
        let mut decisive: BTreeSet<usize> = BTreeSet::new();
        let mut narrowed: Option<BTreeSet<usize>> = None;
        for v in values {
            let Some(holders) = index.get(v) else {
                continue;
            };
            if let [one] = holders.as_slice() {
                decisive.insert(*one);
            } else {
                let set: BTreeSet<usize> = holders.iter().copied().collect();
                narrowed = Some(match narrowed {
                    None => set,
                    Some(prev) => {
                        let both: BTreeSet<usize> = prev.intersection(&set).copied().collect();
                        // Values that contradict each other do not empty the field.
                        if both.is_empty() { prev } else { both }
                    }
                });
            }
        }
        let mut candidates = match (decisive.len(), narrowed) {
            (1, _) => return Ok(*decisive.first().expect("one")),
            (0, None) => return Err(Unattributed::NoMatch),
            (0, Some(set)) => set,
            // Several CRs named outright (e.g. a Describe of two groups).
            (_, _) => decisive,
        };
        if let Some(ns) = namespace_tag {
            let in_ns: BTreeSet<usize> = candidates
                .iter()
                .copied()
                .filter(|i| snapshot.resources[*i].namespace == ns)
                .collect();
            if !in_ns.is_empty() {
                candidates = in_ns;
            }
        }
        match candidates.len() {
            1 => Ok(*candidates.first().expect("one")),
            0 => Err(Unattributed::NoMatch),
            _ => Err(Unattributed::Ambiguous),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AckMetadata, Gvk, IdField};

    fn cr(
        kind: &str,
        ns: &str,
        name: &str,
        fields: &[(Section, &str, &str)],
        arn: Option<&str>,
    ) -> AckResource {
        AckResource {
            gvk: Gvk {
                group: "ec2.services.k8s.aws".into(),
                version: "v1alpha1".into(),
                kind: kind.into(),
            }
            .into(),
            namespace: ns.into(),
            name: name.into(),
            metadata: arn.map(|a| AckMetadata {
                arn: Some(a.into()),
                ..Default::default()
            }),
            id_fields: fields
                .iter()
                .map(|(s, f, v)| IdField {
                    section: *s,
                    field: f.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            ..Default::default()
        }
    }

    fn snapshot() -> ClusterSnapshot {
        use Section::*;
        ClusterSnapshot {
            resources: vec![
                // 0, 1: two instances sharing a VPC id and a key pair.
                cr(
                    "Instance",
                    "uat",
                    "a",
                    &[
                        (Spec, "keyName", "ops"),
                        (Status, "instanceID", "i-a"),
                        (Status, "vpcID", "vpc-1"),
                    ],
                    None,
                ),
                cr(
                    "Instance",
                    "dev",
                    "b",
                    &[
                        (Spec, "keyName", "ops"),
                        (Status, "instanceID", "i-b"),
                        (Status, "vpcID", "vpc-1"),
                    ],
                    None,
                ),
                // 2: a security group.
                cr(
                    "SecurityGroup",
                    "uat",
                    "sg",
                    &[
                        (Spec, "name", "web"),
                        (Spec, "vpcID", "vpc-1"),
                        (Status, "id", "sg-1"),
                        (Status, "ownerID", "111111111111"),
                    ],
                    Some("arn:aws:ec2:r:111111111111:security-group/sg-1"),
                ),
                // 3: an instance in uat sharing everything with 0 except its id.
                cr(
                    "Instance",
                    "uat",
                    "c",
                    &[
                        (Spec, "keyName", "ops"),
                        (Status, "instanceID", "i-c"),
                        (Status, "vpcID", "vpc-1"),
                    ],
                    None,
                ),
            ]
            .into_iter()
            .map(std::sync::Arc::new)
            .collect(),
            ..Default::default()
        }
    }

    fn attr(values: &[&str], kind: &str, ns: Option<&str>) -> Result<usize, Unattributed> {
        let s = snapshot();
        let idx = AttributionIndex::build(&s, &BTreeMap::new());
        let values: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        idx.attribute(&s, "ec2.services.k8s.aws", Some(kind), &values, ns)
    }

    #[test]
    fn default_identifier_rules() {
        let s = snapshot();
        let ids = identifiers(&s.resources[2], &BTreeMap::new());
        // spec vpcID is a reference, not this CR's identity; ownerID is an account.
        assert_eq!(
            ids,
            vec![
                "arn:aws:ec2:r:111111111111:security-group/sg-1",
                "sg-1",
                "web"
            ]
        );
    }

    #[test]
    fn overrides_replace_the_rules_for_a_kind() {
        let s = snapshot();
        let mut o = BTreeMap::new();
        o.insert(
            "SecurityGroup".to_string(),
            IdentifierRule {
                spec: vec!["vpcID".into()],
                status: vec![],
                arn: false,
            },
        );
        assert_eq!(identifiers(&s.resources[2], &o), vec!["vpc-1"]);
        let mut o = BTreeMap::new();
        o.insert(
            "SecurityGroup.ec2.services.k8s.aws".to_string(),
            IdentifierRule {
                spec: vec![],
                status: vec!["id".into()],
                arn: true,
            },
        );
        assert_eq!(identifiers(&s.resources[2], &o).len(), 2);
    }

    #[test]
    fn a_specific_identifier_decides() {
        assert_eq!(attr(&["i-b", "vpc-1", "ops"], "Instance", None), Ok(1));
        assert_eq!(attr(&["web"], "SecurityGroup", None), Ok(2));
        assert_eq!(
            attr(
                &["arn:aws:ec2:r:111111111111:security-group/sg-1"],
                "SecurityGroup",
                None
            ),
            Ok(2)
        );
    }

    #[test]
    fn shared_values_only_narrow_then_the_namespace_tag_decides() {
        assert_eq!(
            attr(&["vpc-1", "ops"], "Instance", None),
            Err(Unattributed::Ambiguous)
        );
        assert_eq!(attr(&["vpc-1", "ops"], "Instance", Some("dev")), Ok(1));
        // Two uat instances remain: still ambiguous, never guessed.
        assert_eq!(
            attr(&["vpc-1"], "Instance", Some("uat")),
            Err(Unattributed::Ambiguous)
        );
    }

    #[test]
    fn identifiers_of_other_kinds_do_not_count() {
        // sg-1 belongs to a SecurityGroup; an Instance call carrying it matches no Instance.
        assert_eq!(
            attr(&["sg-1"], "Instance", None),
            Err(Unattributed::NoMatch)
        );
        assert_eq!(
            attr(&["nothing"], "SecurityGroup", None),
            Err(Unattributed::NoMatch)
        );
        assert_eq!(attr(&["web"], "Subnet", None), Err(Unattributed::NoMatch));
    }

    #[test]
    fn two_resources_named_outright_are_ambiguous() {
        assert_eq!(
            attr(&["i-a", "i-b"], "Instance", None),
            Err(Unattributed::Ambiguous)
        );
        assert_eq!(attr(&["i-a", "i-b"], "Instance", Some("dev")), Ok(1));
    }

    #[test]
    fn no_kind_is_its_own_reason() {
        let s = snapshot();
        let idx = AttributionIndex::build(&s, &BTreeMap::new());
        assert_eq!(
            idx.attribute(&s, "ec2.services.k8s.aws", None, &["i-a".into()], None),
            Err(Unattributed::NoKind)
        );
    }
}
