//! The Grafana dashboards: well-formed for provisioning (stable uid, tags, a datasource
//! variable every panel uses, units), and every query parses as PromQL and names only metrics
//! the exporter serves or the rules record. The ConfigMaps in deploy/ hold the same JSON.

mod common;

use std::collections::BTreeSet;

use promql_parser::parser::{self, Expr};
use serde_json::Value;

pub fn dashboards() -> Vec<(String, Value)> {
    let dir = common::root().join("dashboards");
    let mut out: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let v = serde_json::from_str(&std::fs::read_to_string(&p).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p.file_stem().unwrap().to_string_lossy().into_owned(), v)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Grafana's variables replaced by values PromQL accepts.
fn substitute(expr: &str) -> String {
    expr.replace("$__rate_interval", "5m")
        .replace("$namespace", "ns")
        .replace("$kind", "Kind")
        .replace("$name", "name")
}

fn metric_names(e: &Expr, out: &mut BTreeSet<String>) {
    match e {
        Expr::VectorSelector(v) => {
            out.extend(v.name.clone());
        }
        Expr::MatrixSelector(m) => {
            out.extend(m.vs.name.clone());
        }
        Expr::Aggregate(a) => {
            metric_names(&a.expr, out);
            if let Some(p) = &a.param {
                metric_names(p, out);
            }
        }
        Expr::Unary(u) => metric_names(&u.expr, out),
        Expr::Binary(b) => {
            metric_names(&b.lhs, out);
            metric_names(&b.rhs, out);
        }
        Expr::Paren(p) => metric_names(&p.expr, out),
        Expr::Subquery(s) => metric_names(&s.expr, out),
        Expr::Call(c) => {
            for a in &c.args.args {
                metric_names(a, out);
            }
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

/// Metric names the exporter serves (the stable list, counters with and without `_total`)
/// and the recording rules define.
fn known_metrics() -> BTreeSet<String> {
    let stable =
        std::fs::read_to_string(common::root().join("tests/testdata/stable-metrics.txt")).unwrap();
    let mut known: BTreeSet<String> = stable
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect();
    let rules = std::fs::read_to_string(common::root().join("alerts/ack-drift.rules.yml")).unwrap();
    for line in rules.lines() {
        if let Some(name) = line.trim().strip_prefix("- record: ") {
            known.insert(name.trim().to_string());
        }
    }
    known
}

pub fn panels(d: &Value) -> Vec<&Value> {
    d["panels"].as_array().unwrap().iter().collect()
}

#[test]
fn dashboards_are_well_formed_for_provisioning() {
    let all = dashboards();
    assert_eq!(
        all.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["overview", "resource"]
    );
    let mut uids = BTreeSet::new();
    for (name, d) in &all {
        let uid = d["uid"].as_str().unwrap();
        assert!(uid.starts_with("ack-drift-") && uid.len() <= 40, "{name}");
        assert!(uids.insert(uid.to_string()));
        assert!(d["tags"].as_array().unwrap().iter().any(|t| t == "ack"));
        let vars = d["templating"]["list"].as_array().unwrap();
        assert!(
            vars.iter()
                .any(|v| v["name"] == "datasource" && v["type"] == "datasource"),
            "{name}: no datasource variable"
        );
        let mut ids = BTreeSet::new();
        for p in panels(d) {
            let title = p["title"].as_str().unwrap();
            assert!(ids.insert(p["id"].as_u64().unwrap()), "{name}: id twice");
            assert_eq!(p["datasource"]["uid"], "${datasource}", "{name}/{title}");
            assert!(
                p["fieldConfig"]["defaults"]["unit"].as_str().is_some(),
                "{name}/{title}: no unit"
            );
            for t in p["targets"].as_array().unwrap() {
                assert_eq!(t["datasource"]["uid"], "${datasource}", "{name}/{title}");
                let expr = t["expr"].as_str().unwrap();
                for f in ["rate(", "increase(", "irate("] {
                    if let Some(i) = expr.find(f) {
                        // Recording rules have their own range; Grafana queries use the variable.
                        assert!(
                            expr[i..].contains("[$__rate_interval]"),
                            "{name}/{title}: {expr}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn every_query_parses_and_names_only_served_or_recorded_metrics() {
    let known = known_metrics();
    let mut used = BTreeSet::new();
    for (name, d) in dashboards() {
        let mut exprs: Vec<String> = panels(&d)
            .iter()
            .flat_map(|p| p["targets"].as_array().unwrap())
            .map(|t| t["expr"].as_str().unwrap().to_string())
            .collect();
        // Variable queries: label_values(<selector>, label).
        for v in d["templating"]["list"].as_array().unwrap() {
            if let Some(q) = v["query"]["query"].as_str() {
                let inner = q
                    .strip_prefix("label_values(")
                    .and_then(|r| r.rsplit_once(','))
                    .map(|(sel, _)| sel.to_string())
                    .unwrap_or_else(|| panic!("{name}: variable query {q}"));
                exprs.push(inner);
            }
        }
        for expr in exprs {
            let parsed =
                parser::parse(&substitute(&expr)).unwrap_or_else(|e| panic!("{name}: {expr}: {e}"));
            let mut names = BTreeSet::new();
            metric_names(&parsed, &mut names);
            assert!(!names.is_empty(), "{name}: {expr} reads no metric");
            for m in names {
                assert!(known.contains(&m), "{name}: {expr} reads unknown {m}");
                used.insert(m);
            }
        }
    }
    // The headline families are all on a dashboard.
    for m in [
        "ack_drift_resource_account_drift",
        "ack_drift_resource_region_drift",
        "ack_drift_resource_error_events",
        "ack_drift_resource_wrong_account_calls",
        "ack_drift_exporter_source_up",
    ] {
        assert!(used.contains(m), "{m} is on no dashboard");
    }
}

#[test]
fn the_configmaps_hold_the_dashboards() {
    for (name, d) in dashboards() {
        let path = common::root().join(format!("deploy/kustomize/base/dashboard-{name}.yaml"));
        let text = std::fs::read_to_string(&path).unwrap();
        let cm: Value = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(cm["kind"], "ConfigMap");
        assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
        let json = cm["data"][format!("{name}.json")].as_str().unwrap();
        let inner: Value = serde_json::from_str(json).unwrap();
        assert_eq!(inner, d, "regenerate with scripts/gen-pack");
    }
}
