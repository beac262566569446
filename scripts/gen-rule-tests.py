#!/usr/bin/env python3
"""Writes alerts/ack-drift.rules.test.yml: for every alert, a case where it fires (labels and
annotations rendered here from the rule's templates) and one where it stays silent.

Run after editing the alert texts: python3 scripts/gen-rule-tests.py
The rendering here is a plain substitution of {{ $labels.x }} and {{ $value }}; promtool's Go
templates must agree with it, which is part of what `promtool test rules` checks.
"""
import json
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RULES = os.path.join(ROOT, "alerts", "ack-drift.rules.yml")
OUT = os.path.join(ROOT, "alerts", "ack-drift.rules.test.yml")

RES = {"group": "ec2.services.k8s.aws", "kind": "SecurityGroup", "namespace": "uat", "name": "amq-uat"}
OK = {"group": "ec2.services.k8s.aws", "kind": "SecurityGroup", "namespace": "dev", "name": "healthy"}


def series(name, labels):
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return f"{name}{{{inner}}}"


# alert → (firing input series, silent input series, labels of the alert, $value, eval minutes)
# Each series is (metric, labels, values).
CASES = {
    "AckDriftCallsWrongAccount": (
        [("ack_drift_resource_account_drift", {**RES, "status_account": "178394743802", "expected_account": "474417630776", "account_source": "namespace", "effect": "calls_wrong_account"}, "1x30")],
        [("ack_drift_resource_account_drift", {**OK, "status_account": "178394743802", "expected_account": "178394743802", "account_source": "controller_default", "effect": ""}, "0x30"),
         ("ack_drift_resource_account_drift", {**RES, "status_account": "178394743802", "expected_account": "474417630776", "account_source": "namespace", "effect": "stale_status"}, "1x30")],
        None, "1", 20),
    "AckDriftAccountDrift": (
        [("ack_drift_resource_account_drift", {**RES, "status_account": "178394743802", "expected_account": "474417630776", "account_source": "team", "effect": "stale_status"}, "1x30")],
        [("ack_drift_resource_account_drift", {**OK, "status_account": "178394743802", "expected_account": "178394743802", "account_source": "controller_default", "effect": ""}, "0x30")],
        None, "1", 20),
    "AckDriftRegionDrift": (
        [("ack_drift_resource_region_drift", {**RES, "status_region": "eu-west-1", "expected_region": "eu-west-2", "region_source": "namespace"}, "1x30")],
        [("ack_drift_resource_region_drift", {**OK, "status_region": "eu-west-2", "expected_region": "eu-west-2", "region_source": "namespace"}, "0x30")],
        None, "1", 20),
    "AckDriftRoleUnavailable": (
        [("ack_drift_resource_problem", {**RES, "problem": "role_unavailable"}, "1x30")],
        [("ack_drift_resource_problem", {**OK, "problem": "not_synced"}, "1x30")],
        None, "1", 20),
    "AckDriftSelectorConflict": (
        [("ack_drift_resource_problem", {**RES, "problem": "selector_conflict"}, "1x30")],
        [("ack_drift_resource_problem", {**OK, "problem": "arn_account_mismatch"}, "1x30")],
        None, "1", 20),
    "AckDriftResourceTerminal": (
        [("ack_drift_resource_condition", {**RES, "condition": "ACK.Terminal", "status": "True"}, "1x30")],
        [("ack_drift_resource_condition", {**OK, "condition": "ACK.Terminal", "status": "False"}, "1x30")],
        None, "1", 20),
    "AckDriftResourceNotSynced": (
        [("ack_drift_resource_condition", {**RES, "condition": "ACK.ResourceSynced", "status": "False"}, "1x120"),
         ("ack_drift_resource_condition_last_transition_timestamp_seconds", {**RES, "condition": "ACK.ResourceSynced"}, "0x120")],
        # Unsynced, but only for ten minutes (transitioned at minute 80 of 90).
        [("ack_drift_resource_condition", {**OK, "condition": "ACK.ResourceSynced", "status": "False"}, "1x120"),
         ("ack_drift_resource_condition_last_transition_timestamp_seconds", {**OK, "condition": "ACK.ResourceSynced"}, "4800x120")],
        None, "1", 90),
    "AckDriftNotFoundStorm": (
        [("ack_drift_resource_error_events", {**RES, "account": "178394743802", "region": "eu-west-2", "error_code": "InvalidVpcID.NotFound"}, "30x30")],
        [("ack_drift_resource_error_events", {**OK, "account": "178394743802", "region": "eu-west-2", "error_code": "InvalidVpcID.NotFound"}, "2x30"),
         ("ack_drift_resource_error_events", {**OK, "account": "178394743802", "region": "eu-west-2", "error_code": "UnauthorizedOperation"}, "40x30")],
        None, "30", 20),
    "AckDriftWrongAccountCalls": (
        [("ack_drift_resource_wrong_account_calls", {**RES, "called_account": "178394743802", "expected_account": "474417630776"}, "30x30")],
        [("ack_drift_resource_wrong_account_calls", {**OK, "called_account": "178394743802", "expected_account": "474417630776"}, "0x30")],
        None, "30", 20),
    "AckDriftUnexpectedCrossAccountCalls": (
        [("ack_drift_cloudtrail_cross_account_calls_total", {"caller_account": "178394743802", "recipient_account": "555566667777", "service": "sts", "event_name": "AssumeRole", "signal": "assume_role", "expected": "false"}, "0 0 0 0 0 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1")],
        # Expected pivots keep coming; an unexpected one that happened long ago stays quiet.
        [("ack_drift_cloudtrail_cross_account_calls_total", {"caller_account": "178394743802", "recipient_account": "474417630776", "service": "sts", "event_name": "AssumeRole", "signal": "assume_role", "expected": "true"}, "0+1x90"),
         ("ack_drift_cloudtrail_cross_account_calls_total", {"caller_account": "178394743802", "recipient_account": "555566667777", "service": "sts", "event_name": "AssumeRole", "signal": "assume_role", "expected": "false"}, "1x90")],
        {"caller_account": "178394743802", "recipient_account": "555566667777", "service": "sts", "event_name": "AssumeRole", "signal": "assume_role"}, "1", (10, 60)),
    "AckExporterDown": (
        [("up", {"job": "ack-drift-exporter", "instance": "10.0.0.7:9754"}, "0x30")],
        [("up", {"job": "ack-drift-exporter", "instance": "10.0.0.8:9754"}, "1x30")],
        None, "0", 20),
    "AckExporterAbsent": (
        [("up", {"job": "something-else", "instance": "x:1"}, "1x30")],
        [("up", {"job": "ack-drift-exporter", "instance": "10.0.0.8:9754"}, "1x30")],
        {"job": "ack-drift-exporter"}, "1", 20),
    "AckExporterSourceDown": (
        [("ack_drift_exporter_source_up", {"source": "kube"}, "0x30")],
        [("ack_drift_exporter_source_up", {"source": "cloudtrail"}, "1x30")],
        None, "0", 20),
    "AckExporterCloudTrailFailing": (
        [("ack_drift_exporter_cloudtrail_up", {"account": "474417630776", "region": "eu-west-2"}, "0x30")],
        [("ack_drift_exporter_cloudtrail_up", {"account": "178394743802", "region": "eu-west-2"}, "1x30")],
        None, "0", 20),
    "AckExporterCloudTrailLagging": (
        [("ack_drift_exporter_cloudtrail_lag_seconds", {"account": "474417630776", "region": "eu-west-2"}, "3600x30")],
        [("ack_drift_exporter_cloudtrail_lag_seconds", {"account": "178394743802", "region": "eu-west-2"}, "70x30")],
        None, "3600", 20),
    "AckExporterKubeWatchFailing": (
        [("ack_drift_exporter_kube_watch_restarts_total", {"resource": "securitygroups.ec2.services.k8s.aws"}, "0+1x40")],
        [("ack_drift_exporter_kube_watch_restarts_total", {"resource": "namespaces"}, "3x40")],
        None, "15", 35),
}


def alerts_of(path):
    """(name, labels, annotations) per alert, read with a small YAML walk (flat structure)."""
    text = open(path).read()
    out = {}
    for block in re.split(r"\n      - alert: ", text)[1:]:
        name = block.split("\n", 1)[0].strip()
        labels = dict(re.findall(r"\n          (severity): (\w+)", block))
        ann = {}
        for key in ("summary", "description", "runbook_url"):
            m = re.search(r"\n          " + key + r': "((?:[^"\\]|\\.)*)"', block)
            ann[key] = json.loads('"' + m.group(1) + '"')
        out[name] = (labels, ann)
    return out


def humanize_duration(v):
    """Prometheus' humanizeDuration for whole seconds: every unit after the largest non-zero."""
    v = int(float(v))
    d, rem = divmod(v, 86400)
    h, rem = divmod(rem, 3600)
    m, s = divmod(rem, 60)
    if d:
        return f"{d}d {h}h {m}m {s}s"
    if h:
        return f"{h}h {m}m {s}s"
    if m:
        return f"{m}m {s}s"
    return f"{s}s"


def render(template, labels, value):
    t = re.sub(r"\{\{ \$value \| humanizeDuration \}\}", humanize_duration(value), template)
    t = t.replace("{{ $value }}", value)
    return re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels.get(m.group(1), ""), t)


def main():
    rules = alerts_of(RULES)
    assert set(rules) == set(CASES), set(rules) ^ set(CASES)
    lines = ["# Generated by scripts/gen-rule-tests.py; run with: promtool test rules alerts/ack-drift.rules.test.yml",
             "rule_files:", "  - ack-drift.rules.yml", "evaluation_interval: 1m", "tests:"]
    for name, (fire, silent, alert_labels, value, minutes) in CASES.items():
        severity, ann = rules[name]
        fire_at, silent_at = minutes if isinstance(minutes, tuple) else (minutes, minutes)
        for kind, inputs, at in (("fires", fire, fire_at), ("silent", silent, silent_at)):
            lines.append(f"  # {name} {kind}")
            lines.append("  - interval: 1m")
            lines.append("    input_series:")
            for metric, labels, values in inputs:
                lines.append(f"      - series: {json.dumps(series(metric, labels))}")
                lines.append(f"        values: {json.dumps(values)}")
            lines.append("    alert_rule_test:")
            lines.append(f"      - eval_time: {at}m")
            lines.append(f"        alertname: {name}")
            if kind == "silent":
                lines.append("        exp_alerts: []")
                continue
            labels = dict(alert_labels) if alert_labels is not None else dict(fire[0][1])
            labels["severity"] = severity["severity"]
            lines.append("        exp_alerts:")
            lines.append("          - exp_labels:")
            for k, v in labels.items():
                lines.append(f"              {k}: {json.dumps(v)}")
            lines.append("            exp_annotations:")
            for k, v in ann.items():
                lines.append(f"              {k}: {json.dumps(render(v, labels, value))}")
    open(OUT, "w").write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
