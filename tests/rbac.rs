//! The shipped RBAC grants exactly what the live source reads: get/list/watch, the ACK groups
//! one by one, ConfigMaps only by name and only in the controller namespace.

mod common;

use std::collections::BTreeSet;

use ack_drift_exporter::source::kube::{CLUSTER_READS, CONTROLLER_NAMESPACE_READS};
use serde_json::Value;

fn documents() -> Vec<Value> {
    let text =
        std::fs::read_to_string(common::root().join("deploy/kustomize/base/rbac.yaml")).unwrap();
    serde_saphyr::from_multiple(&text).unwrap()
}

fn rules(docs: &[Value], kind: &str) -> Vec<Value> {
    docs.iter()
        .filter(|d| d["kind"] == kind)
        .flat_map(|d| d["rules"].as_array().unwrap().clone())
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().map(|x| x.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

fn grants(rules: &[Value], group: &str, resource: &str) -> bool {
    rules.iter().any(|r| {
        strings(&r["apiGroups"]).iter().any(|g| g == group)
            && strings(&r["resources"])
                .iter()
                .any(|x| x == resource || x == "*")
    })
}

#[test]
fn read_only_and_least_privilege() {
    let docs = documents();
    let cluster = rules(&docs, "ClusterRole");
    let namespaced = rules(&docs, "Role");
    for r in cluster.iter().chain(&namespaced) {
        let verbs: BTreeSet<String> = strings(&r["verbs"]).into_iter().collect();
        assert!(
            verbs
                .iter()
                .all(|v| ["get", "list", "watch"].contains(&v.as_str())),
            "{r}"
        );
        assert!(
            !strings(&r["apiGroups"]).iter().any(|g| g == "*"),
            "wildcard group: {r}"
        );
        assert!(
            !strings(&r["resources"]).iter().any(|x| x == "secrets"),
            "{r}"
        );
    }
    // Nothing cluster-wide on ConfigMaps, Deployments or Secrets.
    for (group, resource) in [("", "configmaps"), ("apps", "deployments"), ("", "secrets")] {
        assert!(
            !grants(&cluster, group, resource),
            "cluster-wide {resource}"
        );
    }
    // A resource wildcard only inside ACK service groups.
    for r in &cluster {
        if strings(&r["resources"]).iter().any(|x| x == "*") {
            for g in strings(&r["apiGroups"]) {
                assert!(
                    g.ends_with(".services.k8s.aws") && g != "services.k8s.aws",
                    "{g}"
                );
            }
        }
    }
    // ConfigMaps only by the CARM names (v0.37.x reads `ack-carm-map`).
    for r in &namespaced {
        if strings(&r["resources"]).contains(&"configmaps".to_string()) {
            let names: BTreeSet<String> = strings(&r["resourceNames"]).into_iter().collect();
            assert_eq!(
                names,
                ["ack-role-account-map", "ack-role-team-map", "ack-carm-map"]
                    .map(String::from)
                    .into()
            );
        }
    }
}

#[test]
fn everything_the_source_reads_is_granted() {
    let docs = documents();
    let cluster = rules(&docs, "ClusterRole");
    let namespaced = rules(&docs, "Role");
    for (group, resource) in CLUSTER_READS {
        assert!(
            grants(&cluster, group, resource),
            "ClusterRole lacks {resource}.{group}"
        );
    }
    for (group, resource) in CONTROLLER_NAMESPACE_READS {
        assert!(
            grants(&namespaced, group, resource),
            "Role lacks {resource}.{group}"
        );
    }
    // Every ACK group of the real CRDs in the fixtures is listed.
    for e in std::fs::read_dir(common::fixture("ack/crds")).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().to_string();
        let group = name.split('_').next().unwrap();
        if group != "services.k8s.aws" {
            assert!(
                grants(&cluster, group, "anything"),
                "ClusterRole lacks group {group}"
            );
        }
    }
    // Bindings point at the roles and the exporter's ServiceAccount.
    for kind in ["ClusterRoleBinding", "RoleBinding"] {
        let b = docs.iter().find(|d| d["kind"] == kind).unwrap();
        assert_eq!(b["roleRef"]["name"], "ack-drift-exporter");
        assert_eq!(b["subjects"][0]["kind"], "ServiceAccount");
        assert_eq!(b["subjects"][0]["name"], "ack-drift-exporter");
    }
}
