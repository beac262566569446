//! The install: `kubectl kustomize` renders the base and every overlay; each rendered object
//! validates against the Kubernetes and prometheus-operator JSON schemas in
//! tests/fixtures/k8s-schemas (Python `jsonschema`); the pod is hardened; RBAC stays read-only
//! and namespaced where it must; the Dockerfile builds locked and runs as a numeric non-root
//! user on a distroless base.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

const OVERLAYS: &[&str] = &["base", "overlays/kube-prometheus-stack", "overlays/tls"];

fn render(dir: &str) -> String {
    let out = Command::new("kubectl")
        .args(["kustomize", &format!("deploy/kustomize/{dir}")])
        .current_dir(common::root())
        .output()
        .expect("kubectl (with kustomize v5) is installed");
    assert!(
        out.status.success(),
        "{dir}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn docs(dir: &str) -> Vec<Value> {
    serde_saphyr::from_multiple(&render(dir)).unwrap()
}

/// Runs the schema validator on a YAML stream: (success, report lines).
fn validate(yaml: &str) -> (bool, Vec<String>) {
    let mut child = Command::new("python3")
        .args([
            "scripts/validate-manifests.py",
            "tests/fixtures/k8s-schemas",
        ])
        .current_dir(common::root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(yaml.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect();
    assert!(
        out.stderr.is_empty() || out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), report)
}

fn find<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind}"))
}

#[test]
fn every_rendered_object_validates_against_its_schema() {
    for dir in OVERLAYS {
        let (ok, report) = validate(&render(dir));
        assert!(ok, "{dir}:\n{}", report.join("\n"));
        // Only the Namespace has no schema among the fixtures.
        let unknown: Vec<&String> = report.iter().filter(|l| l.starts_with("unknown")).collect();
        assert_eq!(unknown, ["unknown Namespace ack-drift-exporter"], "{dir}");
        assert!(report.iter().filter(|l| l.starts_with("ok ")).count() >= 13);
    }
    // The validator does reject a broken object.
    let broken = render("base").replace("replicas: 1", "replicas: one");
    let (ok, report) = validate(&broken);
    assert!(!ok);
    assert!(
        report.iter().any(|l| l.starts_with("invalid Deployment")),
        "{report:?}"
    );
}

#[test]
fn one_process_reads_the_queue_even_during_a_rollout() {
    for overlay in OVERLAYS {
        let docs = docs(overlay);
        let spec = &find(&docs, "Deployment")["spec"];
        assert_eq!(spec["replicas"], 1, "{overlay}");
        assert_eq!(spec["strategy"]["type"], "Recreate", "{overlay}");
    }
}

#[test]
fn the_pod_is_hardened_and_probed() {
    let docs = docs("base");
    let pod = &find(&docs, "Deployment")["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert!(pod["securityContext"]["runAsUser"].as_u64().unwrap() > 0);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let c = &pod["containers"][0];
    let sc = &c["securityContext"];
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["capabilities"]["drop"][0], "ALL");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert!(c["resources"]["limits"]["memory"].as_str().is_some());
    assert!(c["resources"]["requests"]["memory"].as_str().is_some());
    // The shipped config is one the exporter accepts.
    let cm = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == "ack-drift-exporter-config")
        .unwrap();
    ack_drift_exporter::config::Config::parse(cm["data"]["config.yaml"].as_str().unwrap()).unwrap();
    // Scrapes keep the resources' own namespace label; only the scrape port comes in.
    let sm = find(&docs, "ServiceMonitor");
    assert_eq!(sm["spec"]["endpoints"][0]["honorLabels"], true);
    let np = find(&docs, "NetworkPolicy");
    assert_eq!(np["spec"]["policyTypes"], serde_json::json!(["Ingress"]));
    let ports = &np["spec"]["ingress"][0]["ports"];
    assert_eq!(ports.as_array().unwrap().len(), 1);
    assert_eq!(ports[0]["port"], 9754);
}

#[test]
fn rendered_rbac_is_read_only_and_namespaced_where_it_must_be() {
    for dir in OVERLAYS {
        for d in docs(dir) {
            let kind = d["kind"].as_str().unwrap();
            if kind != "ClusterRole" && kind != "Role" {
                continue;
            }
            for rule in d["rules"].as_array().unwrap() {
                let list = |k: &str| -> Vec<String> {
                    rule[k]
                        .as_array()
                        .map(|a| a.iter().map(|x| x.as_str().unwrap().to_string()).collect())
                        .unwrap_or_default()
                };
                for verb in list("verbs") {
                    assert!(
                        ["get", "list", "watch"].contains(&verb.as_str()),
                        "{dir}: {verb}"
                    );
                }
                let resources = list("resources");
                assert!(!resources.iter().any(|r| r == "secrets"), "{dir}: {rule}");
                // Every kind of a group is only granted in ACK service groups, which hold
                // nothing but ACK custom resources.
                if resources.iter().any(|r| r == "*") {
                    assert!(
                        list("apiGroups")
                            .iter()
                            .all(|g| g.ends_with(".services.k8s.aws")),
                        "{dir}: {rule}"
                    );
                }
                assert!(!list("apiGroups").iter().any(|g| g == "*"), "{dir}: {rule}");
                let sensitive = resources
                    .iter()
                    .any(|r| r == "configmaps" || r == "deployments");
                if sensitive {
                    assert_eq!(kind, "Role", "{dir}: cluster-wide {rule}");
                    assert_eq!(d["metadata"]["namespace"], "ack-system");
                }
                if resources.iter().any(|r| r == "configmaps") {
                    assert_eq!(
                        list("resourceNames"),
                        ["ack-role-account-map", "ack-role-team-map", "ack-carm-map"]
                    );
                }
            }
        }
    }
}

#[test]
fn the_kube_prometheus_stack_overlay_labels_what_the_operator_selects() {
    let docs = docs("overlays/kube-prometheus-stack");
    for kind in ["ServiceMonitor", "PrometheusRule"] {
        assert_eq!(
            find(&docs, kind)["metadata"]["labels"]["release"],
            "kube-prometheus-stack"
        );
    }
}

#[test]
fn the_tls_overlay_serves_and_scrapes_https() {
    let docs = docs("overlays/tls");
    let c = &find(&docs, "Deployment")["spec"]["template"]["spec"]["containers"][0];
    assert!(
        c["args"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "--web.config.file=/etc/ack-drift-exporter/web/web.yml")
    );
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        assert_eq!(c[probe]["httpGet"]["scheme"], "HTTPS", "{probe}");
    }
    let sm = &find(&docs, "ServiceMonitor")["spec"]["endpoints"][0];
    assert_eq!(sm["scheme"], "https");
    assert_eq!(
        sm["tlsConfig"]["ca"]["secret"]["name"],
        "ack-drift-exporter-tls"
    );
    let web = docs
        .iter()
        .find(|d| d["metadata"]["name"] == "ack-drift-exporter-web")
        .unwrap();
    assert!(
        web["data"]["web.yml"]
            .as_str()
            .unwrap()
            .contains("tls_server_config:")
    );
}

/// Dockerfile instructions, continuation lines joined, comments dropped.
fn instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let t = line.trim();
        if current.is_empty() && (t.is_empty() || t.starts_with('#')) {
            continue;
        }
        match t.strip_suffix('\\') {
            Some(rest) => {
                current.push_str(rest);
                current.push(' ');
            }
            None => {
                current.push_str(t);
                let (op, args) = current.split_once(' ').unwrap_or((&current, ""));
                out.push((op.to_ascii_uppercase(), args.trim().to_string()));
                current.clear();
            }
        }
    }
    out
}

#[test]
fn the_image_builds_locked_and_runs_the_binary_alone_as_non_root() {
    let text = std::fs::read_to_string(common::root().join("Dockerfile")).unwrap();
    let ins = instructions(&text);
    let stages: Vec<(usize, &str)> = ins
        .iter()
        .enumerate()
        .filter(|(_, (op, _))| op == "FROM")
        .map(|(i, (_, args))| (i, args.as_str()))
        .collect();
    assert_eq!(stages.len(), 2, "a build stage and a runtime stage");
    assert!(
        stages[0].1.starts_with("docker.io/library/rust:") && stages[0].1.ends_with(" AS build")
    );
    assert!(
        ins.iter()
            .any(|(op, a)| op == "RUN" && a.contains("cargo build --release --locked"))
    );
    let runtime = &ins[stages[1].0..];
    assert!(
        stages[1].1.starts_with("gcr.io/distroless/"),
        "{}",
        stages[1].1
    );
    let copies: Vec<&String> = runtime
        .iter()
        .filter(|(op, _)| op == "COPY")
        .map(|(_, a)| a)
        .collect();
    assert_eq!(copies.len(), 1, "only the binary: {copies:?}");
    assert!(
        copies[0].starts_with("--from=build ") && copies[0].contains("release/ack-drift-exporter")
    );
    let user = runtime
        .iter()
        .rev()
        .find(|(op, _)| op == "USER")
        .map(|(_, a)| a)
        .unwrap();
    let uid: u32 = user
        .split(':')
        .next()
        .unwrap()
        .parse()
        .expect("a numeric user");
    assert!(uid > 0, "non-root");
    assert!(
        !runtime.iter().any(|(op, _)| op == "RUN"),
        "nothing runs in the runtime stage"
    );
    // The Deployment runs the image as the same user.
    let docs = docs("base");
    let pod = &find(&docs, "Deployment")["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsUser"], uid);
}
