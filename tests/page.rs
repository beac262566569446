//! The landing page as a person sees it: rendered by headless Chromium (Debian `chromium`,
//! installed by scripts/test), no JavaScript involved.

mod common;

use std::process::Command;

use common::http::Server;

/// The DOM Chromium renders for `url`.
/// The DOM Chromium renders; `profile` names its own profile folder (one per test, since
/// Chromium refuses a profile another instance holds).
fn chromium_dom(url: &str, profile: &str) -> String {
    let profile = common::scratch(&format!("chromium-{profile}"));
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--dump-dom", url])
        .output()
        .expect("chromium is installed (scripts/test installs Debian's chromium)");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Text content of the DOM: tags dropped, entities for what commands contain decoded.
fn visible_text(dom: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    let mut in_style = false;
    let mut i = 0;
    let b = dom.as_bytes();
    while i < b.len() {
        if dom[i..].starts_with("<style") {
            in_style = true;
        }
        if dom[i..].starts_with("</style>") {
            in_style = false;
        }
        match b[i] {
            b'<' => in_tag = true,
            b'>' if in_tag => {
                in_tag = false;
                out.push(' ');
            }
            _ if !in_tag && !in_style => out.push(dom[i..].chars().next().unwrap()),
            _ => {}
        }
        i += dom[i..].chars().next().unwrap().len_utf8();
    }
    let out = out
        .replace("&gt;", ">")
        .replace("&lt;", "<")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&");
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn the_landing_page_shows_drift_evidence_and_remediation() {
    let server = Server::start(&["--demo"]);
    let dom = chromium_dom(&format!("http://127.0.0.1:{}/", server.port), "demo");
    assert!(dom.contains("<title>ACK drift exporter</title>"), "{dom}");
    assert!(
        !dom.contains("<script"),
        "the page must work without JavaScript"
    );
    assert!(dom.contains("href=\"/metrics\""));
    let text = visible_text(&dom);

    assert!(
        text.contains("8 ACK resources: 2 in the wrong account , 1 in the wrong region"),
        "{text}"
    );
    // The incident row: where it is, where it should be, what the controller does, the storm.
    assert!(
        text.contains("uat/SecurityGroup/amq-uat 178394743802 474417630776 (namespace) eu-west-2 calls_wrong_account 30 30"),
        "{text}"
    );
    assert!(
        text.contains("payments/DBInstance/ledger 178394743802 210987654321 (team)"),
        "{text}"
    );
    assert!(
        text.contains(
            "uat/Bucket/uat-artifacts 474417630776 474417630776 (namespace) eu-west-1 → eu-west-2 blocked"
        ),
        "{text}"
    );
    // Every controller of the demo runs: no such section.
    assert!(!text.contains("Controllers that cannot run"), "{text}");
    // Evidence and remediation of the incident.
    assert!(text.contains("CloudTrail: 30 error events (30 × InvalidVpcID.NotFound in 178394743802/eu-west-2); 30 calls in another account than 474417630776."), "{text}");
    assert!(text.contains(
        "kubectl annotate -n uat securitygroup.ec2.services.k8s.aws amq-uat services.k8s.aws/deletion-policy=retain --overwrite"
    ));
    assert!(dom.contains(
        "<code>kubectl delete -n uat securitygroup.ec2.services.k8s.aws amq-uat --wait=false</code>"
    ));
    // Problems without drift, and the unexpected pivot.
    assert!(
        text.contains("prod/DBInstance/orders role_unavailable, not_synced"),
        "{text}"
    );
    assert!(
        text.contains("178394743802 → 555566667777: sts:AssumeRole (assume_role) × 1"),
        "{text}"
    );
    // Healthy resources are not listed as drifted.
    assert!(!text.contains("dev/SecurityGroup/amq-dev"));
}

#[test]
fn the_landing_page_leads_with_controllers_that_cannot_run_and_rejected_selectors() {
    let dir = common::fixture("scenarios/what-controllers-cannot-do");
    let server = Server::start(&[
        "--kube-dir",
        dir.join("cluster").to_str().unwrap(),
        "--config",
        dir.join("config.yaml").to_str().unwrap(),
    ]);
    let dom = chromium_dom(&format!("http://127.0.0.1:{}/", server.port), "controllers");
    let text = visible_text(&dom);
    let controllers = text.find("Controllers that cannot run (4)").expect(&text);
    let drifted = text.find("Drifted resources").expect(&text);
    assert!(controllers < drifted, "{text}");
    assert!(
        text.contains("ec2 (ack-system/ack-ec2-controller) v0.51.0 undefined_flag: --enable-carm is not defined by runtime v0.51.0"),
        "{text}"
    );
    assert!(
        text.contains("sqs (ack-system/ack-sqs-controller) v0.62.0 no_available_replica: 0 of 1 replicas available"),
        "{text}"
    );
    assert!(
        text.contains("IAMRoleSelectors the runtime rejects (7)"),
        "{text}"
    );
    assert!(
        text.contains("bad-arn: invalid_arn (it matches nothing)"),
        "{text}"
    );
    // The region drift before v0.53 says where the calls go.
    assert!(
        text.contains("uat/Function/fn 474417630776 474417630776 (namespace) eu-west-1 → eu-west-2 calls_wrong_region"),
        "{text}"
    );
}
