#!/usr/bin/env python3
"""Writes the demo's CloudTrail deliveries (cloudtrail/AWSLogs/...), deterministically.

The records follow the shape of real S3 trail deliveries (see tests/fixtures/cloudtrail/real);
what they say is the story in README.md. Re-run after editing: python3 make-trail.py
"""
import gzip
import json
import os
import uuid
from datetime import datetime, timedelta, timezone

DEV, UAT, PROD, SHARED = "178394743802", "474417630776", "555566667777", "210987654321"
REGION = "eu-west-2"
START = datetime(2024, 3, 12, 9, 0, 0, tzinfo=timezone.utc)
NS = uuid.UUID("6f1c1d2e-8a55-4c1a-9d43-3f0d7f9e2b10")
counter = 0


def ack_ua(service, version, kind):
    return (f"aws-controllers-k8s/{service}.services.k8s.aws-{version} (GitCommit/8d2f0e1c; "
            f"BuildDate/2024-02-01T10:00; CRDKind/{kind}; CRDVersion/v1alpha1) "
            "aws-sdk-go/1.50.0 (go1.21.6; linux; amd64)")


def identity(account, role, session="1710234000000000000"):
    return {
        "type": "AssumedRole",
        "principalId": f"AROA{account[:6]}DEMO:{session}",
        "arn": f"arn:aws:sts::{account}:assumed-role/{role}/{session}",
        "accountId": account,
        "sessionContext": {"sessionIssuer": {"type": "Role", "arn": f"arn:aws:iam::{account}:role/{role}",
                                              "accountId": account, "userName": role}},
    }


def record(t, account, source, name, ua, ident, params, error=None, resources=None, shared=None):
    global counter
    counter += 1
    r = {
        "eventVersion": "1.09",
        "userIdentity": ident,
        "eventTime": t.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "eventSource": f"{source}.amazonaws.com",
        "eventName": name,
        "awsRegion": REGION,
        "sourceIPAddress": "52.56.10.20",
        "userAgent": ua,
        "requestParameters": params,
        "responseElements": None,
        "requestID": str(uuid.uuid5(NS, f"req-{counter}")),
        "eventID": str(uuid.uuid5(NS, f"event-{counter}")),
        "readOnly": name.startswith(("Describe", "Get", "List")),
        "eventType": "AwsApiCall",
        "managementEvent": True,
        "recipientAccountId": account,
        "eventCategory": "Management",
    }
    if error:
        r["errorCode"], r["errorMessage"] = error
    if resources:
        r["resources"] = resources
    if shared:
        r["sharedEventID"] = shared
    return r


def pivot(t, caller, caller_role, role_arn, ua):
    """One sts:AssumeRole, logged in the caller's and the role's account."""
    global counter
    shared = str(uuid.uuid5(NS, f"shared-{counter}"))
    target = role_arn.split(":")[4]
    params = {"roleArn": role_arn, "roleSessionName": "1710234000000000001"}
    res = [{"accountId": target, "type": "AWS::IAM::Role", "ARN": role_arn}]
    a = record(t, caller, "sts", "AssumeRole", ua, identity(caller, caller_role), params, resources=res, shared=shared)
    b = record(t, target, "sts", "AssumeRole", ua, {"type": "AWSAccount", "principalId": f"AROA{caller[:6]}DEMO:x",
                                                      "accountId": caller}, params, resources=res, shared=shared)
    return a, b


files = {}  # (account, stamp) -> records


def add(account, r):
    t = datetime.strptime(r["eventTime"], "%Y-%m-%dT%H:%M:%SZ")
    stamp = t.strftime("%Y%m%dT%H") + ("00Z" if t.minute < 30 else "30Z")
    files.setdefault((account, stamp), []).append(r)


ec2 = lambda kind: ack_ua("ec2", "1.2.0", kind)
rds = ack_ua("rds", "1.6.2", "DBInstance")

# The storm: the legacy ec2 controller creates uat's security group in dev, with the UAT VPC.
for i in range(30):
    t = START + timedelta(minutes=2 * i, seconds=7)
    add(DEV, record(t, DEV, "ec2", "CreateSecurityGroup", ec2("SecurityGroup"), identity(DEV, "ack-ec2-controller"),
                    {"groupName": "amq-uat", "groupDescription": "AMQ from the UAT private subnets",
                     "vpcId": "vpc-0a1b2c3d4e5f60718",
                     "tagSpecificationSet": {"items": [{"resourceType": "security-group", "tags": [
                         {"key": "services.k8s.aws/controller-version", "value": "ec2-1.2.0"},
                         {"key": "services.k8s.aws/namespace", "value": "uat"}]}]}},
                    error=("Client.InvalidVpcID.NotFound", "The vpc ID 'vpc-0a1b2c3d4e5f60718' does not exist")))

# Healthy dev reads.
for i in range(5):
    t = START + timedelta(minutes=10 * i, seconds=30)
    add(DEV, record(t, DEV, "ec2", "DescribeSecurityGroups", ec2("SecurityGroup"), identity(DEV, "ack-ec2-controller"),
                    {"securityGroupIdSet": {"items": [{"groupId": "sg-0d1e2f3a4b5c6d7e8"}]}}))

# The VPC in UAT, reached through the mapped role: expected pivots and healthy reads.
for i in range(3):
    t = START + timedelta(minutes=20 * i, seconds=50)
    a, b = pivot(t, DEV, "ack-ec2-controller", f"arn:aws:iam::{UAT}:role/ack-uat", ec2("VPC"))
    add(DEV, a)
    add(UAT, b)
    add(UAT, record(t + timedelta(seconds=2), UAT, "ec2", "DescribeVpcs", ec2("VPC"), identity(UAT, "ack-uat"),
                    {"vpcSet": {"items": [{"vpcId": "vpc-0a1b2c3d4e5f60718"}]}}))

# The ledger DB: the rds controller now uses the payments team role; the DB is still in dev.
for i in range(6):
    t = START + timedelta(minutes=9 * i, seconds=15)
    if i % 3 == 0:
        a, b = pivot(t, DEV, "ack-rds-controller", f"arn:aws:iam::{SHARED}:role/ack-payments", rds)
        add(DEV, a)
        add(SHARED, b)
    add(SHARED, record(t + timedelta(seconds=1), SHARED, "rds", "DescribeDBInstances", rds,
                       identity(SHARED, "ack-payments"), {"dBInstanceIdentifier": "ledger"},
                       error=("DBInstanceNotFound", "DBInstance ledger not found.")))

# The bucket recorded in eu-west-1 while the namespace says eu-west-2: the s3 controller
# (runtime v0.62.0) stops with a terminal error before any AWS call, so the trail has nothing.

# Someone in dev assumes an admin role in prod: nothing in ACK's maps explains it.
a, b = pivot(START + timedelta(minutes=33), DEV, "platform-engineer", f"arn:aws:iam::{PROD}:role/admin",
             "aws-cli/2.15.0 Python/3.11.6 Linux/6.1 exe/x86_64.amzn.2")
a["userIdentity"] = {"type": "IAMUser", "principalId": "AIDADEMO", "arn": f"arn:aws:iam::{DEV}:user/jo", "accountId": DEV, "userName": "jo"}
add(DEV, a)
add(PROD, b)

# Terraform probing for the UAT VPC from dev: an error, but not ACK's.
for i in range(2):
    t = START + timedelta(minutes=41 + i)
    add(DEV, record(t, DEV, "ec2", "DescribeVpcs", "[Terraform/1.7.4 (+https://www.terraform.io) terraform-provider-aws/5.40.0] aws-sdk-go/1.50.0",
                    {"type": "IAMUser", "principalId": "AIDATF", "arn": f"arn:aws:iam::{DEV}:user/terraform", "accountId": DEV},
                    {"vpcSet": {"items": [{"vpcId": "vpc-0a1b2c3d4e5f60718"}]}},
                    error=("Client.InvalidVpcID.NotFound", "The vpc ID 'vpc-0a1b2c3d4e5f60718' does not exist")))

# An ACK call about something no CR in the dump names (a CR deleted since): unattributed.
add(DEV, record(START + timedelta(minutes=47), DEV, "ec2", "CreateTags", ec2("SecurityGroup"),
                identity(DEV, "ack-ec2-controller"),
                {"resourcesSet": {"items": [{"resourceId": "sg-0fedcba9876543210"}]}, "tagSet": {"items": [{"key": "team", "value": "x"}]}}))

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cloudtrail")
total = 0
for (account, stamp), recs in sorted(files.items()):
    day = f"{stamp[0:4]}/{stamp[4:6]}/{stamp[6:8]}"
    d = os.path.join(root, "AWSLogs", account, "CloudTrail", REGION, day)
    os.makedirs(d, exist_ok=True)
    name = f"{account}_CloudTrail_{REGION}_{stamp}_demo.json.gz"
    recs.sort(key=lambda r: r["eventTime"])
    with open(os.path.join(d, name), "wb") as f:
        # mtime=0 keeps the bytes stable across runs.
        f.write(gzip.compress(json.dumps({"Records": recs}, indent=1).encode(), mtime=0))
    total += len(recs)
print(f"wrote {total} records in {len(files)} files under {root}")
