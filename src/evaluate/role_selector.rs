//! IAMRoleSelector matching, as the ACK runtime does it.
//!
//! Different selector fields are ANDed, entries of one list are ORed, and an empty or absent
//! field (names, matchLabels, resourceTypeSelector, or group/version/kind inside an entry) is
//! a wildcard. `names` and the namespace labels are ANDed when both are set.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::account::go_arn_account;
use crate::model::{AckResource, Labels, Namespace, RoleSelector};

/// Why the runtime rejects a selector (`validateSelector`, `iamroleselector/matcher.go`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SelectorInvalid {
    EmptyArn,
    /// Go's `arn.Parse` refuses it.
    InvalidArn,
    EmptyNamespaceName,
    DuplicateNamespaceName,
    /// In `namespaceSelector.labelSelector`, or (v0.57.0 on) in `resourceLabelSelector`.
    EmptyLabelKey,
    /// A `resourceTypeSelector` entry with group, version and kind all empty.
    EmptyResourceType,
    DuplicateResourceType,
}

label_values!(SelectorInvalid {
    EmptyArn => "empty_arn",
    InvalidArn => "invalid_arn",
    EmptyNamespaceName => "empty_namespace_name",
    DuplicateNamespaceName => "duplicate_namespace_name",
    EmptyLabelKey => "empty_label_key",
    EmptyResourceType => "empty_resource_type",
    DuplicateResourceType => "duplicate_resource_type",
});

/// A selector and whether the runtime caches it (`invalid` is `None` then).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct SelectorVerdict {
    pub name: String,
    pub invalid: Option<SelectorInvalid>,
}

/// Every selector judged by the newest runtime's rules (`resourceLabelSelector` keys too).
pub fn verdicts(selectors: &[RoleSelector]) -> Vec<SelectorVerdict> {
    selectors
        .iter()
        .map(|s| SelectorVerdict {
            name: s.name.clone(),
            invalid: validate(s, true).err(),
        })
        .collect()
}

/// `validateSelector`, checks in its order (the first failure is the reason). `cache.go`
/// `handleAdd` never caches a selector that fails, `handleUpdate` drops it: it neither
/// matches nor conflicts. `resource_labels`: the runtime has `resourceLabelSelector`
/// (v0.57.0 on, 7960c4c), whose keys are checked too.
pub fn validate(s: &RoleSelector, resource_labels: bool) -> Result<(), SelectorInvalid> {
    use SelectorInvalid::*;
    if s.arn.is_empty() {
        return Err(EmptyArn);
    }
    if go_arn_account(&s.arn).is_none() {
        return Err(InvalidArn);
    }
    // Checked per resource judged: no allocation; the lists are a few entries long.
    let names = &s.namespace_names;
    for (i, name) in names.iter().enumerate() {
        if name.is_empty() {
            return Err(EmptyNamespaceName);
        }
        if names[..i].contains(name) {
            return Err(DuplicateNamespaceName);
        }
    }
    if s.namespace_labels.contains_key("") {
        return Err(EmptyLabelKey);
    }
    let types = &s.resource_types;
    for (i, t) in types.iter().enumerate() {
        if t.group.is_empty() && t.version.is_empty() && t.kind.is_empty() {
            return Err(EmptyResourceType);
        }
        if types[..i].contains(t) {
            return Err(DuplicateResourceType);
        }
    }
    if resource_labels && s.resource_labels.contains_key("") {
        return Err(EmptyLabelKey);
    }
    Ok(())
}

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

/// Every selector the runtime caches that matches the resource, in name order.
pub fn matching<'a>(
    selectors: &'a [RoleSelector],
    resource: &AckResource,
    namespace: Option<&Namespace>,
    resource_labels: bool,
) -> Vec<&'a RoleSelector> {
    selectors
        .iter()
        .filter(|s| validate(s, resource_labels).is_ok())
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

    const ARN: &str = "arn:aws:iam::111111111111:role/r";

    #[test]
    fn empty_selector_matches_everything() {
        let s = RoleSelector::default();
        assert!(matches_newest(&s, &sg("any", &[]), None));
    }

    /// `validateSelector` at v0.53.0 and v0.57.0 (`iamroleselector/matcher.go`).
    #[test]
    fn invalid_selectors_are_named_for_the_first_check_they_fail() {
        use SelectorInvalid::*;
        let with = |f: &dyn Fn(&mut RoleSelector)| {
            let mut s = RoleSelector {
                name: "s".into(),
                arn: ARN.into(),
                ..Default::default()
            };
            f(&mut s);
            s
        };
        let rows: Vec<(
            &str,
            RoleSelector,
            Option<SelectorInvalid>,
            Option<SelectorInvalid>,
        )> = vec![
            ("valid", with(&|_| {}), None, None),
            (
                "no arn",
                with(&|s| s.arn.clear()),
                Some(EmptyArn),
                Some(EmptyArn),
            ),
            (
                "not an arn",
                with(&|s| s.arn = "role/r".into()),
                Some(InvalidArn),
                Some(InvalidArn),
            ),
            (
                "empty name",
                with(&|s| s.namespace_names = vec!["a".into(), "".into()]),
                Some(EmptyNamespaceName),
                Some(EmptyNamespaceName),
            ),
            (
                "repeated name",
                with(&|s| s.namespace_names = vec!["a".into(), "a".into()]),
                Some(DuplicateNamespaceName),
                Some(DuplicateNamespaceName),
            ),
            (
                "empty namespace label key",
                with(&|s| s.namespace_labels = labels(&[("", "x")])),
                Some(EmptyLabelKey),
                Some(EmptyLabelKey),
            ),
            (
                "empty type entry",
                with(&|s| s.resource_types = vec![gvk("", "", "")]),
                Some(EmptyResourceType),
                Some(EmptyResourceType),
            ),
            (
                "repeated type entry",
                with(&|s| s.resource_types = vec![gvk("g", "", "K"), gvk("g", "", "K")]),
                Some(DuplicateResourceType),
                Some(DuplicateResourceType),
            ),
            // Resource label keys are checked only where the field exists (v0.57.0 on).
            (
                "empty resource label key",
                with(&|s| s.resource_labels = labels(&[("", "x")])),
                None,
                Some(EmptyLabelKey),
            ),
            // The empty ARN is reported before anything else.
            (
                "two faults",
                with(&|s| {
                    s.arn.clear();
                    s.namespace_names = vec!["".into()];
                }),
                Some(EmptyArn),
                Some(EmptyArn),
            ),
        ];
        for (what, s, v053, v057) in rows {
            assert_eq!(validate(&s, false).err(), v053, "{what} at v0.53");
            assert_eq!(validate(&s, true).err(), v057, "{what} at v0.57");
        }
    }

    #[test]
    fn invalid_selectors_neither_match_nor_conflict() {
        let wildcard_bad = RoleSelector {
            name: "bad".into(),
            arn: "not-an-arn".into(),
            ..Default::default()
        };
        let good = RoleSelector {
            name: "good".into(),
            arn: ARN.into(),
            ..Default::default()
        };
        let all = [wildcard_bad, good];
        let found = matching(&all, &sg("uat", &[]), None, true);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].name, "good");
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
