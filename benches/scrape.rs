//! `/metrics` at scale: initial read + first render, scrape latency p50/p99, body size and the
//! exporter's RSS for 1 000, 10 000 and 100 000 synthetic resources over 20 kinds, with
//! 0-valued per-resource series kept and left out. Runs the real binary on a generated dump,
//! scraping it over loopback. Prints numbers; asserts nothing.
//!
//! Run: `cargo bench --bench scrape` (builds the release binary first).

#[path = "support/scrape_client.rs"]
mod scrape_client;

use scrape_client::{get_len, proc_mib};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

const KINDS: [(&str, &str); 20] = [
    ("ec2", "SecurityGroup"),
    ("ec2", "VPC"),
    ("ec2", "Subnet"),
    ("ec2", "RouteTable"),
    ("ec2", "Instance"),
    ("ec2", "InternetGateway"),
    ("ec2", "NATGateway"),
    ("ec2", "ElasticIPAddress"),
    ("s3", "Bucket"),
    ("rds", "DBInstance"),
    ("rds", "DBCluster"),
    ("rds", "DBSubnetGroup"),
    ("iam", "Role"),
    ("iam", "Policy"),
    ("sqs", "Queue"),
    ("sns", "Topic"),
    ("dynamodb", "Table"),
    ("lambda", "Function"),
    ("ecr", "Repository"),
    ("kms", "Key"),
];
const NAMESPACES: usize = 50;
const HOME: &str = "111111111111";

fn account(ns: usize) -> String {
    format!("{:012}", 200_000_000_000u64 + ns as u64)
}

/// A dump of `n` resources: namespaces (every other one mapped to its own account), one
/// controller per service, and one JSON List per kind. 1 % of resources record a wrong account.
fn write_dump(dir: &Path, n: usize) {
    if dir.join(".complete").exists() {
        return;
    }
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let mut ns_items = Vec::new();
    let mut map = serde_json::Map::new();
    for i in 0..NAMESPACES {
        let mut ann = serde_json::Map::new();
        if i.is_multiple_of(2) {
            ann.insert(
                "services.k8s.aws/owner-account-id".into(),
                account(i).into(),
            );
            map.insert(
                account(i),
                format!("arn:aws:iam::{}:role/ack", account(i)).into(),
            );
        }
        ns_items.push(serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": format!("team-{i}"), "annotations": ann}}));
    }
    ns_items.push(serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "ack-role-account-map", "namespace": "ack-system"}, "data": map}));
    let mut services: Vec<&str> = KINDS.iter().map(|(s, _)| *s).collect();
    services.dedup();
    for svc in services {
        ns_items.push(serde_json::json!({"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": format!("ack-{svc}"), "namespace": "ack-system",
                "annotations": {"eks.amazonaws.com/role-arn": format!("arn:aws:iam::{HOME}:role/ack-{svc}")}}}));
        ns_items.push(serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": format!("ack-{svc}-controller"), "namespace": "ack-system"},
            "spec": {"template": {"spec": {"serviceAccountName": format!("ack-{svc}"), "containers": [{
                "name": "controller", "image": format!("public.ecr.aws/aws-controllers-k8s/{svc}-controller:1.0.0"),
                "args": ["--aws-region", "eu-west-2"]}]}}}}));
    }
    std::fs::write(
        dir.join("cluster.json"),
        serde_json::to_vec(
            &serde_json::json!({"apiVersion": "v1", "kind": "List", "items": ns_items}),
        )
        .unwrap(),
    )
    .unwrap();
    for (k, (svc, kind)) in KINDS.iter().enumerate() {
        let mut items = Vec::new();
        for j in (k..n).step_by(KINDS.len()) {
            let ns = j % NAMESPACES;
            let expected = if ns.is_multiple_of(2) {
                account(ns)
            } else {
                HOME.to_string()
            };
            let status_account = if j % 100 == 7 {
                "999999999999".to_string()
            } else {
                expected
            };
            let name = format!("{}-{j}", kind.to_ascii_lowercase());
            items.push(serde_json::json!({
                "apiVersion": format!("{svc}.services.k8s.aws/v1alpha1"), "kind": kind,
                "metadata": {"name": name, "namespace": format!("team-{ns}")},
                "spec": {"name": name},
                "status": {"ackResourceMetadata": {"ownerAccountID": status_account, "region": "eu-west-2",
                    "arn": format!("arn:aws:{svc}:eu-west-2:{status_account}:{}/{name}", kind.to_ascii_lowercase())},
                    "conditions": [{"type": "ACK.ResourceSynced", "status": "True", "lastTransitionTime": "2026-11-01T10:00:00Z"}]}
            }));
        }
        std::fs::write(
            dir.join(format!("{svc}-{kind}.json")),
            serde_json::to_vec(
                &serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items}),
            )
            .unwrap(),
        )
        .unwrap();
    }
    std::fs::write(dir.join(".complete"), b"").unwrap();
}

fn run(bin: &Path, dump: &Path, n: usize, omit: bool, scrapes: usize) -> String {
    let config = dump.join(format!("config-{omit}.yaml"));
    std::fs::write(&config, format!("metrics:\n  omit_zero_series: {omit}\n")).unwrap();
    let port = 19_900 + (n % 97) as u16 + u16::from(omit);
    let started = Instant::now();
    let mut child = scrape_client::serve(
        bin,
        &[
            "--kube-dir".as_ref(),
            dump.as_os_str(),
            "--config".as_ref(),
            config.as_os_str(),
        ],
        port,
    );
    scrape_client::wait_ready(port);
    let ready = started.elapsed();
    let mut times = Vec::with_capacity(scrapes);
    let mut body = 0;
    for _ in 0..scrapes {
        let t = Instant::now();
        let (status, len) = get_len(port, "/metrics").unwrap();
        times.push(t.elapsed());
        assert_eq!(status, 200);
        body = len;
    }
    times.sort();
    let p = |q: f64| times[((times.len() as f64 - 1.0) * q).round() as usize];
    let rss = proc_mib(child.id(), "VmRSS:");
    let hwm = proc_mib(child.id(), "VmHWM:");
    let _ = child.kill();
    let _ = child.wait();
    format!(
        "| {n} | {} | {:.2} s | {:.1} ms | {:.1} ms | {:.1} MiB | {rss:.0} MiB | {hwm:.0} MiB |",
        if omit { "left out" } else { "kept" },
        ready.as_secs_f64(),
        p(0.5).as_secs_f64() * 1e3,
        p(0.99).as_secs_f64() * 1e3,
        body as f64 / 1048576.0,
    )
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let bin = scrape_client::release_binary();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name\t: ").map(String::from))
        .unwrap_or_default();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "machine: {} cores, {cpu}\n\n| resources | 0-valued series | read + first render | scrape p50 | scrape p99 | body (OpenMetrics) | RSS after scrapes | peak RSS |\n|---|---|---|---|---|---|---|---|",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    for (n, scrapes) in [(1_000, 200), (10_000, 100), (100_000, 30)] {
        let dump = root.join(format!("target/bench-dump/{n}"));
        write_dump(&dump, n);
        for omit in [false, true] {
            let line = run(&bin, &dump, n, omit, scrapes);
            println!("{line}");
            let _ = writeln!(out, "{line}");
        }
    }
    println!("\n{out}");
}
