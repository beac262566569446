//! IAMRoleSelector matching, as the ACK runtime does it.
//!
//! Different selector fields are ANDed, entries of one list are ORed, and an empty or absent
//! field (names, matchLabels, resourceTypeSelector, or group/version/kind inside an entry) is
//! a wildcard. `names` and the namespace labels are ANDed when both are set.

use std::collections::BTreeMap;

use crate::model::{AckResource, Labels, Namespace, RoleSelector};

/// True when every label of `selector` is on `labels` with the same value.
fn labels_match(selector: &BTreeMap<String, String>, labels: &Labels) -> bool {
    selector
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v.as_str()))
}

fn field_matches(want: &str, have: &str) -> bool {
    want.is_empty() || want == have
}

/// `Matches` (`pkg/runtime/iamroleselector/matcher.go`); `resource_labels` is false before
/// runtime v0.57.0, whose matcher has no `resourceLabelSelector` (7960c4c).
pub fn matches(
    selector: &RoleSelector,
    resource: &AckResource,
    namespace: Option<&Namespace>,
    resource_labels: bool,
) -> bool {
    let empty = Labels::default();
    let ns_labels = namespace.map(|n| &n.labels).unwrap_or(&empty);
    let names_ok = selector.namespace_names.is_empty()
        || selector
            .namespace_names
            .iter()
            .any(|n| n == &resource.namespace);
    let ns_labels_ok = labels_match(&selector.namespace_labels, ns_labels);
    let type_ok = selector.resource_types.is_empty()
        || selector.resource_types.iter().any(|t| {
            field_matches(&t.group, &resource.gvk.group)
                && field_matches(&t.version, &resource.gvk.version)
                && field_matches(&t.kind, &resource.gvk.kind)
        });
    let labels_ok = !resource_labels || labels_match(&selector.resource_labels, &resource.labels);
    names_ok && ns_labels_ok && type_ok && labels_ok
}

/// Every selector that matches the resource, in name order.
pub fn matching<'a>(
    selectors: &'a [RoleSelector],
    resource: &AckResource,
    namespace: Option<&Namespace>,
    resource_labels: bool,
) -> Vec<&'a RoleSelector> {
    selectors
        .iter()
        .filter(|s| matches(s, resource, namespace, resource_labels))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Gvk;

    /// The newest runtime's matcher (resource labels included).
    fn matches_newest(s: &RoleSelector, r: &AckResource, ns: Option<&Namespace>) -> bool {
        matches(s, r, ns, true)
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn sg(ns: &str, l: &[(&str, &str)]) -> AckResource {
        AckResource {
            gvk: Gvk {
                group: "ec2.services.k8s.aws".into(),
                version: "v1alpha1".into(),
                kind: "SecurityGroup".into(),
            }
            .into(),
            namespace: ns.into(),
            name: "x".into(),
            labels: labels(l).into(),
            ..Default::default()
        }
    }

    fn ns(name: &str, l: &[(&str, &str)]) -> Namespace {
        Namespace {
            name: name.into(),
            labels: labels(l).into(),
            ..Default::default()
        }
    }

    fn gvk(g: &str, v: &str, k: &str) -> Gvk {
        Gvk {
            group: g.into(),
            version: v.into(),
            kind: k.into(),
        }
    }

    #[test]
    fn empty_selector_matches_everything() {
        let s = RoleSelector::default();
        assert!(matches_newest(&s, &sg("any", &[]), None));
    }

    #[test]
    fn empty_names_with_a_label_selector_selects_by_labels_only() {
        let s = RoleSelector {
            namespace_labels: labels(&[("env", "uat")]),
            ..Default::default()
        };
        assert!(matches_newest(
            &s,
            &sg("uat-1", &[]),
            Some(&ns("uat-1", &[("env", "uat")]))
        ));
        assert!(!matches_newest(
            &s,
            &sg("dev", &[]),
            Some(&ns("dev", &[("env", "dev")]))
        ));
        assert!(!matches_newest(&s, &sg("nolabels", &[]), None));
    }

    #[test]
    fn names_and_labels_are_anded() {
        let s = RoleSelector {
            namespace_names: vec!["uat".into(), "uat-2".into()],
            namespace_labels: labels(&[("env", "uat")]),
            ..Default::default()
        };
        assert!(matches_newest(
            &s,
            &sg("uat", &[]),
            Some(&ns("uat", &[("env", "uat")]))
        ));
        // Named, but the labels do not match.
        assert!(!matches_newest(&s, &sg("uat", &[]), Some(&ns("uat", &[]))));
        // Labelled, but not named.
        assert!(!matches_newest(
            &s,
            &sg("uat-3", &[]),
            Some(&ns("uat-3", &[("env", "uat")]))
        ));
        // Names are ORed.
        assert!(matches_newest(
            &s,
            &sg("uat-2", &[]),
            Some(&ns("uat-2", &[("env", "uat")]))
        ));
    }

    #[test]
    fn resource_type_entries_are_ored_and_empty_fields_are_wildcards() {
        let s = RoleSelector {
            resource_types: vec![
                gvk("s3.services.k8s.aws", "v1alpha1", "Bucket"),
                // Empty version: any version of ec2 SecurityGroup.
                gvk("ec2.services.k8s.aws", "", "SecurityGroup"),
            ],
            ..Default::default()
        };
        assert!(matches_newest(&s, &sg("a", &[]), None));
        let mut vpc = sg("a", &[]);
        std::sync::Arc::make_mut(&mut vpc.gvk).kind = "VPC".into();
        assert!(!matches_newest(&s, &vpc, None));
        let mut v2 = sg("a", &[]);
        std::sync::Arc::make_mut(&mut v2.gvk).version = "v1".into();
        assert!(matches_newest(&s, &v2, None));
        let any_kind = RoleSelector {
            resource_types: vec![gvk("ec2.services.k8s.aws", "v1alpha1", "")],
            ..Default::default()
        };
        assert!(matches_newest(&any_kind, &vpc, None));
    }

    #[test]
    fn resource_labels_and_namespace_fields_are_anded() {
        let s = RoleSelector {
            namespace_names: vec!["uat".into()],
            resource_labels: labels(&[("team", "payments")]),
            ..Default::default()
        };
        assert!(matches_newest(
            &s,
            &sg("uat", &[("team", "payments"), ("x", "y")]),
            None
        ));
        assert!(!matches_newest(&s, &sg("uat", &[("team", "search")]), None));
        assert!(!matches_newest(
            &s,
            &sg("dev", &[("team", "payments")]),
            None
        ));
    }

    #[test]
    fn resource_labels_count_from_v0_57_only() {
        let s = RoleSelector {
            resource_labels: labels(&[("team", "payments")]),
            ..Default::default()
        };
        let unlabelled = sg("uat", &[]);
        assert!(!matches(&s, &unlabelled, None, true), "v0.57.0 and later");
        assert!(matches(&s, &unlabelled, None, false), "before v0.57.0");
    }
}
