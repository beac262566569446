//! `serve` over real HTTP: the metrics contract on the seed scenario, both exposition formats
//! through real parsers (promtool; the Prometheus project's Python parser), gzip, health
//! endpoints, SIGTERM, and the stable-metrics list.

mod common;
use common::samples;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::http::{Server, get};

fn seed_server() -> Server {
    let s = common::fixture("scenarios/seed-incident");
    Server::start(&[
        "--kube-dir",
        s.join("cluster").to_str().unwrap(),
        "--cloudtrail-dir",
        s.join("cloudtrail").to_str().unwrap(),
        "--config",
        s.join("config.yaml").to_str().unwrap(),
    ])
}

/// `serve` on a scenario folder: its cluster and its config.
fn scenario_server(dir: &std::path::Path) -> Server {
    Server::start(&[
        "--kube-dir",
        dir.join("cluster").to_str().unwrap(),
        "--config",
        dir.join("config.yaml").to_str().unwrap(),
    ])
}

fn value(
    all: &BTreeMap<(String, BTreeMap<String, String>), f64>,
    name: &str,
    want: &[(&str, &str)],
) -> f64 {
    let found: Vec<f64> = all
        .iter()
        .filter(|((n, labels), _)| {
            n == name
                && want
                    .iter()
                    .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, v)| *v)
        .collect();
    assert_eq!(found.len(), 1, "{name} {want:?}: {found:?}");
    found[0]
}

#[test]
fn seed_scenario_over_http() {
    let server = seed_server();
    for path in ["/healthz", "/readyz", "/"] {
        assert_eq!(server.get(path).status, 200, "{path}");
    }
    assert_eq!(server.get("/nope").status, 404);
    let r = server.get("/metrics");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let all = samples(&r.text());
    let uat = [("namespace", "uat"), ("name", "limit-amq-to-subnet-uat")];
    let drift = value(
        &all,
        "ack_drift_resource_account_drift",
        &[
            uat[0],
            uat[1],
            ("status_account", "178394743802"),
            ("expected_account", "474417630776"),
            ("account_source", "namespace"),
            ("effect", "calls_wrong_account"),
        ],
    );
    assert_eq!(drift, 1.0);
    assert_eq!(
        value(
            &all,
            "ack_drift_resource_account_drift",
            &[("namespace", "dev"), ("name", "limit-amq-to-subnet-dev")]
        ),
        0.0
    );
    assert_eq!(
        value(
            &all,
            "ack_drift_resource_error_events",
            &[
                uat[0],
                uat[1],
                ("account", "178394743802"),
                ("error_code", "InvalidVpcID.NotFound")
            ]
        ),
        24.0
    );
    assert_eq!(
        value(
            &all,
            "ack_drift_resource_wrong_account_calls",
            &[
                uat[0],
                uat[1],
                ("called_account", "178394743802"),
                ("expected_account", "474417630776")
            ]
        ),
        24.0
    );
    assert_eq!(
        value(
            &all,
            "ack_drift_cloudtrail_errors_total",
            &[
                ("account", "178394743802"),
                ("event_name", "CreateSecurityGroup"),
                ("error_code", "InvalidVpcID.NotFound"),
                ("ack_kind", "SecurityGroup")
            ]
        ),
        24.0
    );
    assert_eq!(
        value(
            &all,
            "ack_drift_cloudtrail_cross_account_calls_total",
            &[
                ("caller_account", "178394743802"),
                ("recipient_account", "474417630776"),
                ("signal", "assume_role"),
                ("expected", "true")
            ]
        ),
        3.0
    );
    assert_eq!(
        value(&all, "ack_drift_cloudtrail_window_seconds", &[]),
        3600.0
    );
    assert_eq!(
        value(
            &all,
            "ack_drift_exporter_source_up",
            &[("source", "kube_dir")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &all,
            "ack_drift_exporter_source_up",
            &[("source", "cloudtrail_dir")]
        ),
        1.0
    );
    let build = all
        .keys()
        .find(|(n, _)| n == "ack_drift_exporter_build_info")
        .expect("build_info");
    assert_eq!(build.1["version"], env!("CARGO_PKG_VERSION"));
    assert!(!build.1["revision"].is_empty());

    let (code, took) = server.terminate();
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(5), "{took:?}");
}

/// Runs a Python snippet from the Prometheus project's client library on `input`.
fn python_parse(script: &str, input: &str) -> String {
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "parser rejected the exposition:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

const PARSE_TEXT: &str = "
import sys
from prometheus_client.parser import text_string_to_metric_families
for f in text_string_to_metric_families(sys.stdin.read()):
    print(f.name, f.type, len(f.samples))
";

const PARSE_OPENMETRICS: &str = "
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
for f in text_string_to_metric_families(sys.stdin.read()):
    print(f.name, f.type, len(f.samples))
";

#[test]
fn both_formats_pass_real_parsers_and_promtool() {
    let server = Server::start(&["--demo"]);
    let text = server.get("/metrics").text();

    // promtool lints the text format (HELP, TYPE, counter suffixes, ...).
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed (scripts/test installs Debian's prometheus)");
    std::io::Write::write_all(&mut promtool.stdin.take().unwrap(), text.as_bytes()).unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let parsed_text = python_parse(PARSE_TEXT, &text);
    let om = get(
        server.port,
        "/metrics",
        &[(
            "Accept",
            "application/openmetrics-text; version=1.0.0,text/plain;q=0.5",
        )],
    )
    .unwrap();
    assert_eq!(
        om.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    let om_text = om.text();
    assert!(om_text.ends_with("# EOF\n"));
    let parsed_om = python_parse(PARSE_OPENMETRICS, &om_text);

    // The same families with the same sample counts, whatever the format.
    let families = |s: &str| -> BTreeMap<String, (String, usize)> {
        s.lines()
            .map(|l| {
                let mut p = l.split(' ');
                let name = p.next().unwrap().to_string();
                let ty = p.next().unwrap().to_string();
                let n: usize = p.next().unwrap().parse().unwrap();
                (name, (ty, n))
            })
            .collect()
    };
    let t = families(&parsed_text);
    let o = families(&parsed_om);
    assert_eq!(t.len(), o.len());
    assert_eq!(o["ack_drift_resource"], ("info".to_string(), 8));
    assert_eq!(o["ack_drift_cloudtrail_errors"].0, "counter");
    for (name, (_, n)) in &o {
        let text_name = t.keys().find(|k| {
            k == &name
                || k.strip_suffix("_total") == Some(name)
                || k.strip_suffix("_info") == Some(name)
        });
        let text_name = text_name.unwrap_or_else(|| panic!("{name} missing from the text format"));
        assert_eq!(t[text_name].1, *n, "{name}");
    }
}

#[test]
fn gzip_when_asked() {
    let server = Server::start(&["--demo"]);
    let plain = server.get("/metrics").text();
    let r = get(server.port, "/metrics", &[("Accept-Encoding", "gzip")]).unwrap();
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    let mut unzipped = String::new();
    flate2::read::GzDecoder::new(&r.body[..])
        .read_to_string(&mut unzipped)
        .unwrap();
    // The scrape duration gauge differs between scrapes; the rest is the same.
    let strip = |s: &str| -> String {
        s.lines()
            .filter(|l| !l.starts_with("ack_drift_exporter_scrape_duration_seconds"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(strip(&unzipped), strip(&plain));
    assert!(
        r.body.len() * 3 < plain.len(),
        "gzip should shrink the body"
    );
}

#[test]
fn every_family_is_in_the_stable_list_with_help_type_and_bounded_labels() {
    let server = Server::start(&["--demo"]);
    let text = server.get("/metrics").text();
    let stable =
        std::fs::read_to_string(common::root().join("tests/testdata/stable-metrics.txt")).unwrap();
    let stable: BTreeMap<String, (String, BTreeSet<String>)> = stable
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let mut p = l.split_whitespace();
            let name = p.next().unwrap().to_string();
            let ty = p.next().unwrap().to_string();
            let labels = p
                .next()
                .map(|x| {
                    x.split(',')
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default();
            (name, (ty, labels))
        })
        .collect();

    let mut helped = BTreeSet::new();
    let mut typed = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            helped.insert(rest.split(' ').next().unwrap().to_string());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut p = rest.split(' ');
            typed.insert(p.next().unwrap().to_string(), p.next().unwrap().to_string());
        }
    }
    for (name, ty) in &typed {
        assert!(helped.contains(name), "{name} has no HELP");
        let (want_ty, _) = stable.get(name).unwrap_or_else(|| {
            panic!("{name} is served but not in tests/testdata/stable-metrics.txt")
        });
        assert_eq!(ty, want_ty, "{name}");
        if ty == "counter" {
            assert!(name.ends_with("_total"), "{name}");
        }
    }
    for ((name, labels), _) in samples(&text) {
        let (_, allowed) = stable
            .get(&name)
            .unwrap_or_else(|| panic!("sample {name} not in the stable list"));
        for l in labels.keys() {
            assert!(
                allowed.contains(l),
                "{name} has label {l} outside the contract"
            );
        }
        // No free text: no label may hold a message, a request id or anything long.
        for v in labels.values() {
            assert!(v.len() <= 128, "{name}: label value too long: {v}");
        }
    }
    // And the list holds exactly the contract's families (a rename must change both).
    let contract: BTreeMap<String, String> = ack_drift_exporter::output::metrics::ALL
        .iter()
        .map(|f| {
            let ty = match f.kind {
                ack_drift_exporter::output::metrics::Kind::Counter => "counter",
                _ => "gauge",
            };
            (f.name.to_string(), ty.to_string())
        })
        .collect();
    let listed: BTreeMap<String, String> = stable
        .iter()
        .map(|(n, (t, _))| (n.clone(), t.clone()))
        .collect();
    assert_eq!(contract, listed);
}

#[test]
fn bad_flags_and_missing_inputs_exit_2() {
    let run = common::run([
        "serve",
        "--kube-dir",
        "/nonexistent/dump",
        "--web.listen-address",
        "127.0.0.1:0",
    ]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("/nonexistent/dump"));
    let run = common::run(["serve", "--demo", "--web.listen-address", "nonsense"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("--web.listen-address"));
}

#[test]
fn hostile_annotation_and_status_values_are_cut_on_metrics() {
    let dir = common::scratch("serve-hostile");
    let (account, region, kind) = ("1".repeat(400), "r".repeat(1000), "T".repeat(300));
    std::fs::write(
        dir.join("objects.yaml"),
        format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: hostile\n  annotations:\n    services.k8s.aws/owner-account-id: \"{}\"\n---\n\
             apiVersion: ec2.services.k8s.aws/v1alpha1\nkind: VPC\nmetadata:\n  name: v\n  namespace: hostile\n\
             status:\n  ackResourceMetadata:\n    ownerAccountID: \"{account}\"\n    region: {region}\n  conditions:\n  - type: {kind}\n    status: \"True\"\n",
            "9".repeat(300)
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("config.yaml"),
        "controllers:\n  ec2:\n    default_account: '178394743802'\n    default_region: eu-west-2\n",
    )
    .unwrap();
    let server = Server::start(&[
        "--kube-dir",
        dir.to_str().unwrap(),
        "--config",
        dir.join("config.yaml").to_str().unwrap(),
    ]);
    let text = server.get("/metrics").text();
    let all = samples(&text);
    let mut cut = 0;
    for (name, labels) in all.keys() {
        for v in labels.values() {
            assert!(v.len() <= 128, "{name}: {} bytes", v.len());
            cut += usize::from(v.ends_with('…'));
        }
    }
    // Status account and region (info, drift gauges) and the condition type were all cut.
    let info = value(&all, "ack_drift_resource_info", &[("name", "v")]);
    assert_eq!(info, 1.0);
    assert!(cut >= 5, "{cut} cut values\n{text}");
    let region_drift = all
        .keys()
        .find(|(n, _)| n == "ack_drift_resource_region_drift")
        .expect("the region drift is still reported");
    assert!(region_drift.1["status_region"].starts_with("rrrr"));
    // The annotation is no account id: reported as such.
    assert_eq!(
        value(
            &all,
            "ack_drift_resource_problem",
            &[("name", "v"), ("problem", "invalid_account_id")]
        ),
        1.0
    );
}

#[test]
fn controllers_and_selectors_are_on_metrics_as_the_scenario_says() {
    let dir = common::fixture("scenarios/what-controllers-cannot-do");
    let facts: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let server = scenario_server(&dir);
    let all = samples(&server.get("/metrics").text());
    for (service, c) in facts["controllers"].as_object().unwrap() {
        let deployment = format!("ack-{service}-controller");
        let who = [
            ("service", service.as_str()),
            ("namespace", "ack-system"),
            ("deployment", deployment.as_str()),
        ];
        let up = value(&all, "ack_drift_controller_up", &who);
        assert_eq!(
            up,
            if c["running"] == true { 1.0 } else { 0.0 },
            "{service}"
        );
        let served: BTreeSet<&str> = all
            .keys()
            .filter(|(n, l)| n == "ack_drift_controller_problem" && l["service"] == *service)
            .map(|(_, l)| l["problem"].as_str())
            .collect();
        let want: BTreeSet<&str> = c["problems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap())
            .collect();
        assert_eq!(served, want, "{service}");
    }
    for (name, reason) in facts["role_selectors"].as_object().unwrap() {
        let served: Vec<&str> = all
            .keys()
            .filter(|(n, l)| n == "ack_drift_role_selector_invalid" && l["name"] == *name)
            .map(|(_, l)| l["reason"].as_str())
            .collect();
        let want: Vec<&str> = reason.as_str().into_iter().collect();
        assert_eq!(served, want, "selector {name}");
    }
    // Each is logged once, as a warning.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let wanted = [
        "IAMRoleSelector bad-arn is invalid (invalid_arn)",
        "controller ec2 (ack-system/ack-ec2-controller) cannot run: undefined_flag",
    ];
    loop {
        let log = server.stderr.lock().unwrap().clone();
        if wanted.iter().all(|w| log.matches(w).count() == 1) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{log}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Region drift carries its effect.
    let fn_drift = value(
        &all,
        "ack_drift_resource_region_drift",
        &[("name", "fn"), ("effect", "calls_wrong_region")],
    );
    assert_eq!(fn_drift, 1.0);
}

#[test]
fn controller_info_names_each_release_and_its_runtime() {
    // The demo: three Deployments, no runtime in the config: every runtime from its image.
    let all = samples(&Server::start(&["--demo"]).get("/metrics").text());
    for (service, version, runtime) in [
        ("ec2", "1.2.0", "v0.28.0"),
        ("s3", "1.10.0", "v0.62.0"),
        ("rds", "1.6.2", "v0.52.0"),
    ] {
        let deployment = format!("ack-{service}-controller");
        let info = value(
            &all,
            "ack_drift_controller_info",
            &[
                ("service", service),
                ("namespace", "ack-system"),
                ("deployment", &deployment),
                ("controller_version", version),
                ("runtime_version", runtime),
                ("runtime_source", "image"),
            ],
        );
        assert_eq!(info, 1.0, "{service}");
    }
    // Managed ACK: declared in the config only, no Deployment.
    let dir = common::fixture("scenarios/managed-ack");
    let server = scenario_server(&dir);
    let all = samples(&server.get("/metrics").text());
    let ec2 = value(
        &all,
        "ack_drift_controller_info",
        &[
            ("service", "ec2"),
            ("deployment", ""),
            ("controller_version", ""),
            ("runtime_version", "v0.28.0"),
            ("runtime_source", "config"),
        ],
    );
    assert_eq!(ec2, 1.0);
    let info_series = all
        .keys()
        .filter(|(n, _)| n == "ack_drift_controller_info")
        .count();
    assert_eq!(info_series, 3);
    // Without a Deployment, up is unknown, not 1.
    assert!(!all.keys().any(|(n, _)| n == "ack_drift_controller_up"));
}

/// `/metrics` of the demo with what changes from build to build or scrape to scrape masked,
/// and each family's samples sorted (the exporter's own families come from hash maps).
fn masked_demo_metrics() -> String {
    let text = Server::start(&["--demo"]).get("/metrics").text();
    let mut lines: Vec<String> = Vec::new();
    let mut block: Vec<String> = Vec::new();
    for l in text
        .lines()
        .map(mask)
        .chain(std::iter::once("#".to_string()))
    {
        if l.starts_with('#') {
            block.sort();
            lines.append(&mut block);
            lines.push(l);
        } else {
            block.push(l);
        }
    }
    lines.pop();
    lines.into_iter().map(|l| l + "\n").collect()
}

/// The build's version and revision and the last scrape's duration, masked.
fn mask(l: &str) -> String {
    if l.starts_with("ack_drift_exporter_build_info{") {
        "ack_drift_exporter_build_info{version=\"<version>\",revision=\"<revision>\"} 1".to_string()
    } else if l.starts_with("ack_drift_exporter_scrape_duration_seconds ") {
        "ack_drift_exporter_scrape_duration_seconds <seconds>".to_string()
    } else {
        l.to_string()
    }
}

/// The demo's whole exposition, held to `tests/testdata/demo-metrics.txt`: any change of a
/// sample shows in review. `UPDATE_GOLDEN=1` rewrites the file.
#[test]
fn the_demo_exposition_matches_its_golden_file() {
    let got = masked_demo_metrics();
    let path = common::root().join("tests/testdata/demo-metrics.txt");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &got).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap();
    if got != want {
        let first = got
            .lines()
            .zip(want.lines())
            .find(|(g, w)| g != w)
            .map(|(g, w)| format!("got:  {g}\nwant: {w}"))
            .unwrap_or_else(|| "one is a prefix of the other".into());
        panic!("the demo's /metrics changed (UPDATE_GOLDEN=1 to accept):\n{first}");
    }
}

#[test]
fn an_image_that_names_no_release_is_judged_as_the_default_and_says_so() {
    let dir = common::scratch("serve-digest-only");
    std::fs::write(
        dir.join("deploy.yaml"),
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: ack-ec2-controller, namespace: ack-system}\n\
         spec:\n  template:\n    spec:\n      containers:\n      - name: c\n        image: \
         registry.example/aws-controllers-k8s/ec2-controller@sha256:0123456789abcdef\n",
    )
    .unwrap();
    let server = Server::start(&["--kube-dir", dir.to_str().unwrap()]);
    let all = samples(&server.get("/metrics").text());
    let info = value(
        &all,
        "ack_drift_controller_info",
        &[
            ("service", "ec2"),
            ("runtime_version", "v0.62.0"),
            ("runtime_source", "default"),
        ],
    );
    assert_eq!(info, 1.0);
    // The log says why, once.
    let wanted = "controller ec2 runtime: the ec2-controller image has no tag (digest only?)";
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let log = server.stderr.lock().unwrap().clone();
        if log.matches(wanted).count() == 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{log}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
