#!/usr/bin/env python3
"""Writes dashboards/overview.json and dashboards/resource.json (Grafana, schemaVersion 39).

Run after editing: python3 scripts/gen-dashboards.py && scripts/gen-pack
Panels whose query only returns data with live sources or under faults carry
`"description"` starting with "Live only:" or "Faults only:"; tests/pack_e2e.rs checks every
other panel returns data from a Prometheus scraping the demo.
"""
import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DS = {"type": "prometheus", "uid": "${datasource}"}


def panel(pid, kind, title, exprs, unit, x, y, w=12, h=8, description=None, instant=False):
    targets = []
    for i, (expr, legend) in enumerate(exprs):
        t = {"datasource": DS, "expr": expr, "legendFormat": legend, "refId": chr(65 + i)}
        if instant:
            t["instant"] = True
            t["format"] = "table"
        targets.append(t)
    p = {
        "id": pid,
        "type": kind,
        "title": title,
        "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {},
        "targets": targets,
    }
    if description:
        p["description"] = description
    return p


def datasource_var():
    return {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
            "current": {}, "hide": 0, "refresh": 1}


def query_var(name, label, query):
    return {"name": name, "label": label, "type": "query", "datasource": DS,
            "query": {"query": query, "refId": name}, "definition": query,
            "refresh": 2, "sort": 1, "current": {}, "hide": 0, "includeAll": False, "multi": False}


def dashboard(uid, title, description, panels, variables):
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["ack", "ack-drift-exporter", "aws"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "refresh": "1m",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": variables},
        "annotations": {"list": []},
        "links": [],
        "panels": panels,
    }


def overview():
    p = []
    p.append(panel(1, "stat", "Resources in the wrong account", [("sum(ack_drift_resource_account_drift)", "")], "none", 0, 0, 6, 4))
    p.append(panel(2, "stat", "Calling the wrong account", [('sum(ack_drift_resource_account_drift{effect="calls_wrong_account"})', "")], "none", 6, 0, 6, 4))
    p.append(panel(3, "stat", "Resources in the wrong region", [("sum(ack_drift_resource_region_drift)", "")], "none", 12, 0, 6, 4))
    p.append(panel(4, "stat", "ACK resources watched", [("sum(ack_drift_resources)", "")], "none", 18, 0, 6, 4))
    p.append(panel(5, "table", "Account drift by namespace and kind", [("namespace_kind:ack_drift_resource_account_drift:sum", "")], "none", 0, 4, instant=True))
    p.append(panel(6, "table", "Account drift by expected account", [("account:ack_drift_resource_account_drift:sum", "")], "none", 12, 4, instant=True))
    p.append(panel(7, "table", "Drifted resources", [("ack_drift_resource_account_drift == 1", ""), ("ack_drift_resource_region_drift == 1", "")], "none", 0, 12, 24, 8, instant=True))
    p.append(panel(8, "table", "Error storms per resource (CloudTrail window)", [("topk(20, ack_drift_resource_error_events)", "")], "none", 0, 20, instant=True))
    p.append(panel(9, "table", "Wrong-account calls per resource (CloudTrail window)", [("ack_drift_resource_wrong_account_calls > 0", "")], "none", 12, 20, instant=True))
    p.append(panel(10, "timeseries", "CloudTrail errors by account and code", [("account_region_code:ack_drift_cloudtrail_errors:rate5m", "{{account}} {{region}} {{error_code}}")], "reqps", 0, 28))
    p.append(panel(11, "timeseries", "Cross-account calls (caller → recipient)", [("caller_recipient:ack_drift_cloudtrail_cross_account_calls:rate5m", "{{caller_account}} → {{recipient_account}} expected={{expected}}")], "reqps", 12, 28))
    p.append(panel(12, "table", "Cross-account calls since the exporter started", [("sum by (caller_account, recipient_account, service, event_name, expected) (ack_drift_cloudtrail_cross_account_calls_total)", "")], "none", 0, 36, instant=True))
    p.append(panel(13, "timeseries", "Unattributed ACK events", [("sum by (account, reason) (rate(ack_drift_cloudtrail_unattributed_ack_events_total[$__rate_interval]))", "{{account}} {{reason}}")], "reqps", 12, 36))
    p.append(panel(14, "timeseries", "Exporter sources up", [("ack_drift_exporter_source_up", "{{source}}")], "bool_yes_no", 0, 44, 8))
    p.append(panel(15, "timeseries", "Scrape duration", [("ack_drift_exporter_scrape_duration_seconds", "{{instance}}")], "s", 8, 44, 8))
    p.append(panel(16, "timeseries", "Parse errors", [("sum by (source) (rate(ack_drift_exporter_parse_errors_total[$__rate_interval]))", "{{source}}")], "reqps", 16, 44, 8))
    p.append(panel(17, "timeseries", "CloudTrail lag by account and region", [("ack_drift_exporter_cloudtrail_lag_seconds", "{{account}} {{region}}")], "s", 0, 52, 8,
                   description="Live only: with cloudtrail.accounts set."))
    p.append(panel(18, "timeseries", "LookupEvents requests and errors", [("sum by (account, region) (rate(ack_drift_exporter_cloudtrail_requests_total[$__rate_interval]))", "{{account}} {{region}}"),
                                                                           ("sum by (account, region, code) (rate(ack_drift_exporter_cloudtrail_request_errors_total[$__rate_interval]))", "{{account}} {{region}} {{code}}")], "reqps", 8, 52, 8,
                   description="Live only: with cloudtrail.accounts set."))
    p.append(panel(19, "timeseries", "Kubernetes watch restarts", [("sum by (resource) (increase(ack_drift_exporter_kube_watch_restarts_total[$__rate_interval]))", "{{resource}}")], "none", 16, 52, 8,
                   description="Live only: with a live cluster."))
    return dashboard("ack-drift-overview", "ACK drift / Overview",
                     "ACK resources in the wrong AWS account or region, CloudTrail error storms and cross-account calls, exporter health.",
                     p, [datasource_var()])


def resource():
    sel = 'namespace="$namespace", kind="$kind", name="$name"'
    p = []
    p.append(panel(1, "table", "Recorded account and region", [(f"ack_drift_resource_info{{{sel}}}", "")], "none", 0, 0, 24, 4, instant=True))
    p.append(panel(2, "table", "Account drift", [(f"ack_drift_resource_account_drift{{{sel}}}", "")], "none", 0, 4, instant=True))
    p.append(panel(3, "table", "Region drift", [(f"ack_drift_resource_region_drift{{{sel}}}", "")], "none", 12, 4, instant=True))
    p.append(panel(4, "table", "Problems", [(f"ack_drift_resource_problem{{{sel}}}", "")], "none", 0, 12, instant=True))
    p.append(panel(5, "table", "Conditions", [(f"ack_drift_resource_condition{{{sel}}}", "")], "none", 12, 12, instant=True))
    p.append(panel(6, "timeseries", "Time since last condition change", [(f"time() - ack_drift_resource_condition_last_transition_timestamp_seconds{{{sel}}}", "{{condition}}")], "s", 0, 20))
    p.append(panel(7, "timeseries", "CloudTrail errors for this resource (window)", [(f"ack_drift_resource_error_events{{{sel}}}", "{{account}} {{region}} {{error_code}}")], "none", 12, 20))
    p.append(panel(8, "timeseries", "Calls outside its account (window)", [(f"ack_drift_resource_wrong_account_calls{{{sel}}}", "{{called_account}} (expected {{expected_account}})")], "none", 0, 28, 24))
    variables = [
        datasource_var(),
        query_var("namespace", "Namespace", "label_values(ack_drift_resource_info, namespace)"),
        query_var("kind", "Kind", 'label_values(ack_drift_resource_info{namespace="$namespace"}, kind)'),
        query_var("name", "Name", 'label_values(ack_drift_resource_info{namespace="$namespace", kind="$kind"}, name)'),
    ]
    return dashboard("ack-drift-resource", "ACK drift / Resource",
                     "One ACK resource: where it is recorded, where it belongs, its problems, conditions and CloudTrail evidence.",
                     p, variables)


for name, d in (("overview", overview()), ("resource", resource())):
    with open(os.path.join(ROOT, "dashboards", f"{name}.json"), "w") as f:
        json.dump(d, f, indent=2, ensure_ascii=False)
        f.write("\n")
