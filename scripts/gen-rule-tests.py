#!/usr/bin/env python3
"""Writes alerts/ack-drift.rules.test.yml: for every alert, cases where it fires (labels and
annotations rendered here from the rule's templates) and cases where it stays silent.

Run after editing the alert texts or the cases below: python3 scripts/gen-rule-tests.py
The rendering here is a plain substitution of {{ $labels.x }}, {{ $value }},
{{ $value | humanizeDuration }}, {{ if eq $labels.x `text` }}...{{ else }}...{{ end }} and
{{ if $labels.x }}...{{ else }}...{{ end }} (a label set or not);
promtool's Go templates must agree with it, which is part of what `promtool test rules` checks.
An annotation whose template does more (a `query`, a `range`) is not rendered here: the case
gives its expected text (fires(..., annotations={...})), and promtool checks that text.
"""
import json
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RULES = os.path.join(ROOT, "alerts", "ack-drift.rules.yml")
OUT = os.path.join(ROOT, "alerts", "ack-drift.rules.test.yml")

RES = {"group": "ec2.services.k8s.aws", "kind": "SecurityGroup", "namespace": "uat", "name": "amq-uat"}
OK = {"group": "ec2.services.k8s.aws", "kind": "SecurityGroup", "namespace": "dev", "name": "healthy"}
EC2_CONTROLLER = {"service": "ec2", "namespace": "ack-system", "deployment": "ack-ec2-controller"}


def series(name, labels):
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return f"{name}{{{inner}}}"


def case(title, inputs, *checks):
    """One promtool test, written under the comment "# <alert> <title>".
    inputs: (metric, labels, values) per input series; a string is a comment line put before
    the next series. checks: fires(...) or silent(...), evaluated in that order."""
    return (title, inputs, checks)


def fires(at, value, labels=None, annotations=None, alert=None):
    """The alert (the case's own, or the one named by alert=) fires at minute `at` with $value
    `value`. Its labels are `labels`, or else those of the case's first input series, plus the
    rule's severity. `annotations` holds the expected text of annotations not rendered here."""
    return {"alert": alert, "at": at, "fires": True, "value": value, "labels": labels,
            "annotations": annotations or {}}


def silent(at, alert=None):
    """The alert (the case's own, or the one named by alert=) does not fire at minute `at`."""
    return {"alert": alert, "at": at, "fires": False}


# alert → its cases. Each series is (metric, labels, values).
CASES = {
    "AckDriftCallsWrongAccount": [
        case("fires",
             [("ack_drift_resource_account_drift", {**RES, "status_account": "178394743802", "expected_account": "474417630776", "account_source": "namespace", "effect": "calls_wrong_account"}, "1x30")],
             fires(20, "1")),
        # Drift that does not make the controller call the wrong account or region.
        case("silent",
             [("ack_drift_resource_account_drift", {**OK, "status_account": "178394743802", "expected_account": "178394743802", "account_source": "controller_default", "effect": ""}, "0x30"),
              ("ack_drift_resource_account_drift", {**RES, "status_account": "178394743802", "expected_account": "474417630776", "account_source": "namespace", "effect": "stale_status"}, "1x30"),
              ("ack_drift_resource_region_drift", {**OK, "status_region": "eu-west-2", "expected_region": "eu-west-2", "region_source": "namespace", "effect": ""}, "0x30"),
              ("ack_drift_resource_region_drift", {"group": "s3.services.k8s.aws", "kind": "Bucket", "namespace": "uat", "name": "amq-uat-logs", "status_region": "eu-west-1", "expected_region": "eu-west-2", "region_source": "namespace", "effect": "blocked"}, "1x30")],
             silent(20)),
    ],
    "AckDriftAccountDrift": [
        case("fires",
             [("ack_drift_resource_account_drift", {**RES, "status_account": "178394743802", "expected_account": "474417630776", "account_source": "team", "effect": "stale_status"}, "1x30")],
             fires(20, "1")),
        case("silent",
             [("ack_drift_resource_account_drift", {**OK, "status_account": "178394743802", "expected_account": "178394743802", "account_source": "controller_default", "effect": ""}, "0x30")],
             silent(20)),
    ],
    "AckDriftRegionDrift": [
        case("fires",
             [("ack_drift_resource_region_drift", {**RES, "status_region": "eu-west-1", "expected_region": "eu-west-2", "region_source": "namespace", "effect": "blocked"}, "1x30")],
             fires(20, "1")),
        case("silent",
             [("ack_drift_resource_region_drift", {**OK, "status_region": "eu-west-2", "expected_region": "eu-west-2", "region_source": "namespace", "effect": ""}, "0x30"),
              ("ack_drift_resource_region_drift", {**RES, "status_region": "eu-west-1", "expected_region": "eu-west-2", "region_source": "namespace", "effect": "calls_wrong_region"}, "1x30")],
             silent(20)),
        case("silent for calls_wrong_region: AckDriftCallsWrongAccount fires instead",
             [("ack_drift_resource_region_drift", {**RES, "status_region": "eu-west-1", "expected_region": "eu-west-2", "region_source": "namespace", "effect": "calls_wrong_region"}, "1x30")],
             silent(20),
             fires(20, "1", alert="AckDriftCallsWrongAccount")),
    ],
    "AckDriftRoleUnavailable": [
        case("fires",
             [("ack_drift_resource_problem", {**RES, "problem": "role_unavailable"}, "1x30")],
             fires(20, "1")),
        case("silent",
             [("ack_drift_resource_problem", {**OK, "problem": "not_synced"}, "1x30")],
             silent(20)),
    ],
    "AckDriftSelectorConflict": [
        case("fires",
             [("ack_drift_resource_problem", {**RES, "problem": "selector_conflict"}, "1x30")],
             fires(20, "1")),
        case("silent",
             [("ack_drift_resource_problem", {**OK, "problem": "arn_account_mismatch"}, "1x30")],
             silent(20)),
    ],
    "AckDriftRoleSelectorInvalid": [
        case("fires",
             [("ack_drift_role_selector_invalid", {"name": "team-a-prod", "reason": "duplicate_namespace_name"}, "1x30")],
             fires(20, "1")),
        case("silent",
             [("ack_drift_role_selector_invalid", {"name": "team-b-dev", "reason": "empty_arn"}, "0x30")],
             silent(20)),
    ],
    "AckDriftTerminalMismatch": [
        case("fires",
             [("ack_drift_resource_problem", {**RES, "problem": "terminal_mismatch"}, "1x30")],
             fires(20, "1")),
        case("silent",
             [("ack_drift_resource_problem", {**OK, "problem": "not_reconciled"}, "1x30")],
             silent(20)),
    ],
    "AckDriftResourceNotReconciled": [
        case("fires",
             [("ack_drift_resource_problem", {**RES, "problem": "not_reconciled"}, "1x30")],
             fires(20, "1")),
        case("silent",
             [("ack_drift_resource_problem", {**OK, "problem": "controller_not_running"}, "1x30")],
             silent(20)),
    ],
    "AckDriftResourceTerminal": [
        case("fires",
             [("ack_drift_resource_condition", {**RES, "condition": "ACK.Terminal", "status": "True"}, "1x30")],
             fires(20, "1")),
        case("silent",
             [("ack_drift_resource_condition", {**OK, "condition": "ACK.Terminal", "status": "False"}, "1x30")],
             silent(20)),
    ],
    "AckDriftResourceNotSynced": [
        case("fires",
             [("ack_drift_resource_condition", {**RES, "condition": "ACK.ResourceSynced", "status": "False"}, "1x120"),
              ("ack_drift_resource_condition_last_transition_timestamp_seconds", {**RES, "condition": "ACK.ResourceSynced"}, "0x120")],
             fires(90, "1")),
        # Unsynced, but only for ten minutes (transitioned at minute 80 of 90).
        case("silent",
             [("ack_drift_resource_condition", {**OK, "condition": "ACK.ResourceSynced", "status": "False"}, "1x120"),
              ("ack_drift_resource_condition_last_transition_timestamp_seconds", {**OK, "condition": "ACK.ResourceSynced"}, "4800x120")],
             silent(90)),
        # Never reconciled because its controller cannot run: AckDriftControllerNotRunning says so.
        case("silent when nothing reconciles it",
             [("ack_drift_resource_problem", {**RES, "problem": "not_synced"}, "1x120"),
              ("ack_drift_resource_problem", {**RES, "problem": "controller_not_running"}, "1x120")],
             silent(90)),
    ],
    # The description lists the controller's problems with a `query`: not rendered here.
    "AckDriftControllerNotRunning": [
        case("fires",
             [("ack_drift_controller_up", EC2_CONTROLLER, "0x30"),
              ("ack_drift_controller_problem", {**EC2_CONTROLLER, "problem": "unknown_feature_gate"}, "1x30"),
              ("ack_drift_controller_problem", {**EC2_CONTROLLER, "problem": "undefined_flag"}, "1x30"),
              ("ack_drift_controller_problem", {**EC2_CONTROLLER, "problem": "no_available_replica"}, "1x30"),
              "Not this controller's, or no longer a problem: left out of the description.",
              ("ack_drift_controller_problem", {**EC2_CONTROLLER, "problem": "role_selector_with_carm"}, "0x30"),
              ("ack_drift_controller_problem", {"service": "s3", "namespace": "ack-system", "deployment": "ack-s3-controller", "problem": "invalid_watch_selectors"}, "1x30")],
             fires(20, "0", annotations={"description":
                 "The ec2 controller Deployment ack-system/ack-ec2-controller cannot start or has no available replica "
                 "(ack_drift_controller_problem: no_available_replica, undefined_flag, unknown_feature_gate): "
                 "no resource it owns is reconciled, and deleting one hangs on its finalizer. "
                 "ack-drift-exporter check-config names the flag or gate at fault."})),
        case("fires without a problem series",
             [("ack_drift_controller_up", {"service": "rds", "namespace": "ack-system", "deployment": "ack-rds-controller"}, "0x30")],
             fires(20, "0", annotations={"description":
                 "The rds controller Deployment ack-system/ack-rds-controller cannot start or has no available replica "
                 "(ack_drift_controller_problem: none reported): "
                 "no resource it owns is reconciled, and deleting one hangs on its finalizer. "
                 "ack-drift-exporter check-config names the flag or gate at fault."})),
        case("silent",
             [("ack_drift_controller_up", {"service": "s3", "namespace": "ack-system", "deployment": "ack-s3-controller"}, "1x30"),
              "A rollout: no available replica for five minutes, less than the rule's ten.",
              ("ack_drift_controller_up", EC2_CONTROLLER, "1x9 0x21"),
              ("ack_drift_controller_problem", {**EC2_CONTROLLER, "problem": "no_available_replica"}, "0x9 1x21")],
             silent(15)),
    ],
    "AckDriftNotFoundStorm": [
        case("fires",
             [("ack_drift_resource_error_events", {**RES, "account": "178394743802", "region": "eu-west-2", "error_code": "InvalidVpcID.NotFound"}, "30x30")],
             fires(20, "30")),
        case("silent",
             [("ack_drift_resource_error_events", {**OK, "account": "178394743802", "region": "eu-west-2", "error_code": "InvalidVpcID.NotFound"}, "2x30"),
              ("ack_drift_resource_error_events", {**OK, "account": "178394743802", "region": "eu-west-2", "error_code": "UnauthorizedOperation"}, "40x30")],
             silent(20)),
    ],
    "AckDriftWrongAccountCalls": [
        case("fires",
             [("ack_drift_resource_wrong_account_calls", {**RES, "called_account": "178394743802", "expected_account": "474417630776"}, "30x30")],
             fires(20, "30")),
        case("silent",
             [("ack_drift_resource_wrong_account_calls", {**OK, "called_account": "178394743802", "expected_account": "474417630776"}, "0x30")],
             silent(20)),
    ],
    "AckDriftUnexpectedCrossAccountCalls": [
        case("fires",
             [("ack_drift_cloudtrail_cross_account_calls_total", {"caller_account": "178394743802", "recipient_account": "555566667777", "service": "sts", "event_name": "AssumeRole", "signal": "assume_role", "expected": "false"}, "0 0 0 0 0 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1")],
             fires(10, "1", labels={"caller_account": "178394743802", "recipient_account": "555566667777", "service": "sts", "event_name": "AssumeRole", "signal": "assume_role"})),
        # Expected pivots keep coming; an unexpected one that happened long ago stays quiet.
        case("silent",
             [("ack_drift_cloudtrail_cross_account_calls_total", {"caller_account": "178394743802", "recipient_account": "474417630776", "service": "sts", "event_name": "AssumeRole", "signal": "assume_role", "expected": "true"}, "0+1x90"),
              ("ack_drift_cloudtrail_cross_account_calls_total", {"caller_account": "178394743802", "recipient_account": "555566667777", "service": "sts", "event_name": "AssumeRole", "signal": "assume_role", "expected": "false"}, "1x90")],
             silent(60)),
    ],
    "AckExporterDown": [
        case("fires",
             [("up", {"job": "ack-drift-exporter", "instance": "10.0.0.7:9754"}, "0x30")],
             fires(20, "0")),
        case("silent",
             [("up", {"job": "ack-drift-exporter", "instance": "10.0.0.8:9754"}, "1x30")],
             silent(20)),
    ],
    "AckExporterAbsent": [
        case("fires",
             [("up", {"job": "something-else", "instance": "x:1"}, "1x30")],
             fires(20, "1", labels={"job": "ack-drift-exporter"})),
        case("silent",
             [("up", {"job": "ack-drift-exporter", "instance": "10.0.0.8:9754"}, "1x30")],
             silent(20)),
    ],
    "AckExporterSourceDown": [
        case("fires",
             [("ack_drift_exporter_source_up", {"source": "kube"}, "0x30")],
             fires(20, "0")),
        case("silent",
             [("ack_drift_exporter_source_up", {"source": "cloudtrail"}, "1x30")],
             silent(20)),
    ],
    "AckExporterCloudTrailFailing": [
        case("fires",
             [("ack_drift_exporter_cloudtrail_up", {"account": "474417630776", "region": "eu-west-2"}, "0x30")],
             fires(20, "0")),
        case("silent",
             [("ack_drift_exporter_cloudtrail_up", {"account": "178394743802", "region": "eu-west-2"}, "1x30")],
             silent(20)),
    ],
    "AckExporterCloudTrailLagging": [
        case("fires",
             [("ack_drift_exporter_cloudtrail_lag_seconds", {"account": "474417630776", "region": "eu-west-2"}, "3600x30")],
             fires(20, "3600")),
        case("silent",
             [("ack_drift_exporter_cloudtrail_lag_seconds", {"account": "178394743802", "region": "eu-west-2"}, "70x30")],
             silent(20)),
        # The organisation trail's queue: its lag has no account or region.
        case("fires for the queue",
             [("ack_drift_exporter_sqs_lag_seconds", {}, "5400x30")],
             fires(20, "5400")),
        # A backlog after an outage, over 30 minutes old for 14 minutes (less than the rule's 15),
        # then an empty queue (0).
        case("silent for the queue",
             [("ack_drift_exporter_sqs_lag_seconds", {}, "5400-250x15 0x15")],
             silent(14), silent(25)),
    ],
    "AckExporterKubeWatchFailing": [
        case("fires",
             [("ack_drift_exporter_kube_watch_restarts_total", {"resource": "securitygroups.ec2.services.k8s.aws"}, "0+1x40")],
             fires(35, "15")),
        case("silent",
             [("ack_drift_exporter_kube_watch_restarts_total", {"resource": "namespaces"}, "3x40")],
             silent(35)),
    ],
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


# {{ if eq $labels.x `text` }}A{{ else }}B{{ end }}, with no other if/else/end/range/with in A or B.
_BRANCH = r"((?:(?!\{\{ (?:if|else|end|range|with)\b).)*)"
IF_EQ = re.compile(r"\{\{ if eq \$labels\.(\w+) `([^`]*)` \}\}" + _BRANCH + r"\{\{ else \}\}" + _BRANCH + r"\{\{ end \}\}")
# {{ if $labels.x }}A{{ else }}B{{ end }}: Go's templates take a missing label as "", which is false.
IF_SET = re.compile(r"\{\{ if \$labels\.(\w+) \}\}" + _BRANCH + r"\{\{ else \}\}" + _BRANCH + r"\{\{ end \}\}")


def render(template, labels, value):
    t = IF_EQ.sub(lambda m: m.group(3) if labels.get(m.group(1), "") == m.group(2) else m.group(4), template)
    t = IF_SET.sub(lambda m: m.group(2) if labels.get(m.group(1), "") else m.group(3), t)
    t = re.sub(r"\{\{ \$value \| humanizeDuration \}\}", humanize_duration(value), t)
    t = t.replace("{{ $value }}", value)
    return re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels.get(m.group(1), ""), t)


def check_cases(rules):
    assert set(rules) == set(CASES), set(rules) ^ set(CASES)
    for name, cases in CASES.items():
        own = [c["fires"] for _, _, checks in cases for c in checks if (c["alert"] or name) == name]
        assert True in own and False in own, f"{name}: needs a case where it fires and one where it is silent"
        for _, _, checks in cases:
            for c in checks:
                assert (c["alert"] or name) in rules, f"{name}: no alert {c['alert']}"


def main():
    rules = alerts_of(RULES)
    check_cases(rules)
    lines = ["# Generated by scripts/gen-rule-tests.py; run with: promtool test rules alerts/ack-drift.rules.test.yml",
             "rule_files:", "  - ack-drift.rules.yml", "evaluation_interval: 1m", "tests:"]
    for name, cases in CASES.items():
        for title, inputs, checks in cases:
            lines.append(f"  # {name} {title}")
            lines.append("  - interval: 1m")
            lines.append("    input_series:")
            for item in inputs:
                if isinstance(item, str):
                    lines.append(f"      # {item}")
                    continue
                metric, labels, values = item
                lines.append(f"      - series: {json.dumps(series(metric, labels))}")
                lines.append(f"        values: {json.dumps(values)}")
            first_labels = next(item[1] for item in inputs if not isinstance(item, str))
            lines.append("    alert_rule_test:")
            for check in checks:
                alert = check["alert"] or name
                lines.append(f"      - eval_time: {check['at']}m")
                lines.append(f"        alertname: {alert}")
                if not check["fires"]:
                    lines.append("        exp_alerts: []")
                    continue
                severity, ann = rules[alert]
                given = check["annotations"]
                assert set(given) <= set(ann), f"{name} {title}: {alert} has no annotation {set(given) - set(ann)}"
                labels = dict(check["labels"] if check["labels"] is not None else first_labels)
                labels["severity"] = severity["severity"]
                lines.append("        exp_alerts:")
                lines.append("          - exp_labels:")
                for k, v in labels.items():
                    lines.append(f"              {k}: {json.dumps(v)}")
                lines.append("            exp_annotations:")
                for k, template in ann.items():
                    text = given[k] if k in given else render(template, labels, check["value"])
                    if "{{" in text:
                        sys.exit(f"{name} {title}: cannot render the {k} of {alert} here; give it in the case "
                                 f"(fires(..., annotations={{{k!r}: ...}})):\n  {text}")
                    lines.append(f"              {k}: {json.dumps(text)}")
    open(OUT, "w").write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
