//! The live Kubernetes source at scale: 100 000 ACK resources over 20 kinds and 200 namespaces
//! served by the in-repo fake API server; the release binary watches it. Measures time to
//! ready, RSS after sync, change-to-metric delay, and `/metrics` latency and size.
//! Prints numbers; asserts nothing.
//!
//! Run: `cargo bench --bench live_kube`.

#[path = "../tests/support/fake_apiserver.rs"]
mod fake_apiserver;

#[path = "support/scrape_client.rs"]
mod scrape_client;

use scrape_client::{get, get_len, proc_mib};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use fake_apiserver::FakeApiServer;
use serde_json::{Value, json};

const SERVICES: [&str; 5] = ["ec2", "s3", "rds", "iam", "sqs"];
const KINDS_PER_SERVICE: usize = 4;
const NAMESPACES: usize = 200;
const RESOURCES: usize = 100_000;
const HOME: &str = "111111111111";

fn crd(group: &str, kind: &str) -> Value {
    let plural = format!("{}s", kind.to_ascii_lowercase());
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.{group}")},
        "spec": {"group": group, "scope": "Namespaced",
            "names": {"kind": kind, "plural": plural, "singular": kind.to_ascii_lowercase(), "listKind": format!("{kind}List")},
            "versions": [{"name": "v1alpha1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]},
        "status": {"conditions": [{"type": "Established", "status": "True"}]}
    })
}

fn account(ns: usize) -> String {
    format!("{:012}", 300_000_000_000u64 + ns as u64)
}

fn resource(group: &str, kind: &str, i: usize, status_account: &str) -> Value {
    let ns = i % NAMESPACES;
    let name = format!("{}-{i}", kind.to_ascii_lowercase());
    json!({
        "apiVersion": format!("{group}/v1alpha1"), "kind": kind,
        "metadata": {"name": name, "namespace": format!("team-{ns}"), "labels": {"app": format!("app-{}", i % 50)},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"a\":\"large annotation the exporter must not keep\"}"},
            "managedFields": [{"manager": "kubectl", "operation": "Apply", "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:name": {}}}}]},
        "spec": {"name": name, "description": "synthetic resource for the live benchmark", "tags": [{"key": "team", "value": format!("team-{ns}")}]},
        "status": {"ackResourceMetadata": {"ownerAccountID": status_account, "region": "eu-west-2",
                "arn": format!("arn:aws:{group}:eu-west-2:{status_account}:{}/{name}", kind.to_ascii_lowercase())},
            "conditions": [{"type": "ACK.ResourceSynced", "status": "True", "lastTransitionTime": "2026-11-01T10:00:00Z"}]}
    })
}

fn load(fake: &FakeApiServer) -> Vec<(String, String)> {
    let mut kinds = Vec::new();
    let mut objects = Vec::new();
    for svc in SERVICES {
        let group = format!("{svc}.services.k8s.aws");
        for k in 0..KINDS_PER_SERVICE {
            let kind = format!("{}Kind{k}", svc.to_ascii_uppercase());
            objects.push(crd(&group, &kind));
            kinds.push((group.clone(), kind));
        }
        objects.push(json!({"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": format!("ack-{svc}"), "namespace": "ack-system",
                "annotations": {"eks.amazonaws.com/role-arn": format!("arn:aws:iam::{HOME}:role/ack-{svc}")}}}));
        objects.push(json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": format!("ack-{svc}-controller"), "namespace": "ack-system"},
            "spec": {"template": {"spec": {"serviceAccountName": format!("ack-{svc}"), "containers": [{
                "name": "controller", "image": format!("public.ecr.aws/aws-controllers-k8s/{svc}-controller:1.0.0"),
                "args": ["--aws-region", "eu-west-2"]}]}}}}));
    }
    let mut map = serde_json::Map::new();
    for ns in 0..NAMESPACES {
        let mut ann = serde_json::Map::new();
        if ns.is_multiple_of(2) {
            ann.insert(
                "services.k8s.aws/owner-account-id".into(),
                account(ns).into(),
            );
            map.insert(
                account(ns),
                format!("arn:aws:iam::{}:role/ack", account(ns)).into(),
            );
        }
        objects.push(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": format!("team-{ns}"), "annotations": ann}}));
    }
    objects
        .push(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ack-system"}}));
    objects.push(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ack-role-account-map", "namespace": "ack-system"}, "data": map}));
    for i in 0..RESOURCES {
        let (group, kind) = &kinds[i % kinds.len()];
        let ns = i % NAMESPACES;
        let expected = if ns.is_multiple_of(2) {
            account(ns)
        } else {
            HOME.to_string()
        };
        objects.push(resource(group, kind, i, &expected));
    }
    fake.apply_all(objects);
    kinds
}

/// Whether the body holds the drift line of the resource `name` at 1. Only the lines that name
/// it are looked at: splitting a 98 MiB body into lines took longer than the scrape, and every
/// poll's cost adds to the delay measured.
fn drift_shown(body: &[u8], name: &str) -> bool {
    memchr::memmem::find_iter(body, name.as_bytes()).any(|at| {
        let start = body[..at]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let end = body[at..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(body.len(), |i| at + i);
        let line = &body[start..end];
        line.starts_with(b"ack_drift_resource_account_drift{") && line.ends_with(b" 1")
    })
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let bin = scrape_client::release_binary();
    let fake = FakeApiServer::start();
    let t = Instant::now();
    let kinds = load(&fake);
    println!(
        "fake loaded {RESOURCES} resources over {} kinds and {NAMESPACES} namespaces in {:.1} s",
        kinds.len(),
        t.elapsed().as_secs_f64()
    );
    let dir = root.join("target/bench-live");
    std::fs::create_dir_all(&dir).unwrap();
    let kc = fake.write_kubeconfig(&dir);
    let port = 19_877;
    let started = Instant::now();
    let mut child = scrape_client::serve(&bin, &["--kubeconfig".as_ref(), kc.as_os_str()], port);
    scrape_client::wait_ready(port);
    let ready = started.elapsed();
    // The first publish after ready may still be under way; wait until all resources show.
    loop {
        let body = String::from_utf8(get(port, "/metrics").unwrap().1).unwrap();
        if body.matches("ack_drift_resource_info{").count() == RESOURCES {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let synced = started.elapsed();
    let rss_sync = proc_mib(child.id(), "VmRSS:");
    println!(
        "RSS after sync: {rss_sync:.0} MiB = heap and stacks {:.0} MiB + mapped files (the binary's code) {:.0} MiB",
        proc_mib(child.id(), "RssAnon:"),
        proc_mib(child.id(), "RssFile:")
    );

    let mut times = Vec::new();
    let mut size = 0;
    for _ in 0..30 {
        let t = Instant::now();
        size = get_len(port, "/metrics").unwrap().1;
        times.push(t.elapsed());
    }
    times.sort();
    let p = |q: f64| times[((times.len() as f64 - 1.0) * q).round() as usize];

    // Change-to-metric: give one resource a wrong status account, then poll until drift shows.
    let mut delays = Vec::new();
    for round in 0..5 {
        let (group, kind) = &kinds[round];
        let i = round * kinds.len() + round; // a resource of that kind
        let t = Instant::now();
        fake.apply(resource(group, kind, i, "999999999999"));
        let name = format!("name=\"{}-{i}\"", kind.to_ascii_lowercase());
        loop {
            if drift_shown(&get(port, "/metrics").unwrap().1, &name) {
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(60), "change not seen");
        }
        delays.push(t.elapsed());
    }
    delays.sort();
    let rss_end = proc_mib(child.id(), "VmRSS:");
    let hwm = proc_mib(child.id(), "VmHWM:");
    let _ = child.kill();
    let _ = child.wait();
    println!(
        "\n| measure | value |\n|---|---|\n| time to /readyz | {:.2} s |\n| time until every resource is on /metrics | {:.2} s |\n| RSS after sync | {rss_sync:.0} MiB |\n| RSS at the end / peak | {rss_end:.0} / {hwm:.0} MiB |\n| change-to-metric (5 changes, median / max; includes one full scrape per poll) | {:.2} s / {:.2} s |\n| scrape p50 / p99 (30 scrapes, 0-valued series kept) | {:.0} ms / {:.0} ms |\n| body | {:.1} MiB |",
        ready.as_secs_f64(),
        synced.as_secs_f64(),
        delays[2].as_secs_f64(),
        delays[4].as_secs_f64(),
        p(0.5).as_secs_f64() * 1e3,
        p(0.99).as_secs_f64() * 1e3,
        size as f64 / 1048576.0
    );
}
