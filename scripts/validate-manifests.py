#!/usr/bin/env python3
"""Validates a stream of Kubernetes manifests (YAML, stdin) against JSON schemas.

Usage: kubectl kustomize DIR | python3 scripts/validate-manifests.py SCHEMA_DIR
SCHEMA_DIR holds kubernetes/v1.33.6-standalone-strict/<kind>-<group>-<version>.json and
crds-catalog/<kind>_<version>.json (tests/fixtures/k8s-schemas). Prints one line per document
("ok KIND NAME" or "invalid KIND NAME: reason", "unknown KIND" when no schema is shipped) and
exits 1 when any document is invalid.
"""
import json
import os
import sys

import jsonschema
import yaml


def schema_path(root, doc):
    kind = doc["kind"].lower()
    group, _, version = doc["apiVersion"].rpartition("/")
    if group.endswith("monitoring.coreos.com"):
        return os.path.join(root, "crds-catalog", f"{kind}_{version}.json")
    group = group.split(".")[0]
    name = f"{kind}-{group}-{version}.json" if group else f"{kind}-{version}.json"
    return os.path.join(root, "kubernetes", "v1.33.6-standalone-strict", name)


def main():
    root = sys.argv[1]
    bad = 0
    for doc in yaml.safe_load_all(sys.stdin):
        if not doc:
            continue
        name = doc.get("metadata", {}).get("name", "?")
        path = schema_path(root, doc)
        if not os.path.exists(path):
            print(f"unknown {doc['kind']} {name}")
            continue
        with open(path) as f:
            schema = json.load(f)
        errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(doc), key=str)
        if errors:
            bad += 1
            e = errors[0]
            where = "/".join(str(p) for p in e.absolute_path)
            print(f"invalid {doc['kind']} {name}: {where}: {e.message}")
        else:
            print(f"ok {doc['kind']} {name}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
