//! The live Kubernetes source: the real binary (kube-rs inside) against the in-repo fake API
//! server over HTTP. Changes on the server must show on /metrics; faults must heal.

mod common;
#[path = "support/fake_apiserver.rs"]
mod fake_apiserver;

use std::time::{Duration, Instant};

use common::http::Server;
use fake_apiserver::FakeApiServer;
use serde_json::{Value, json};

/// The CRDs of the real ACK controllers, as the API server reports them once established.
fn apply_crds(fake: &FakeApiServer, files: &[&str]) {
    for f in files {
        let path = common::fixture(&format!("ack/crds/{f}"));
        let text = std::fs::read_to_string(&path).unwrap();
        let mut crd: Value = serde_saphyr::from_str(&text).unwrap();
        crd["status"] = json!({"conditions": [{"type": "Established", "status": "True"}],
            "acceptedNames": crd["spec"]["names"].clone(), "storedVersions": ["v1alpha1"]});
        fake.apply(crd);
    }
}

const SEED_CRDS: &[&str] = &[
    "ec2.services.k8s.aws_securitygroups.yaml",
    "ec2.services.k8s.aws_vpcs.yaml",
    "ec2.services.k8s.aws_subnets.yaml",
    "services.k8s.aws_iamroleselectors.yaml",
];

fn seed_fake() -> FakeApiServer {
    let fake = FakeApiServer::start();
    apply_crds(&fake, SEED_CRDS);
    fake.apply_path(&common::fixture("scenarios/seed-incident/cluster"));
    fake
}

/// An audit's resources by `namespace/kind/name`, in key order.
fn by_key(v: &Value) -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = v["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (common::resource_key(r), r.clone()))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn kubeconfig(fake: &FakeApiServer, name: &str) -> std::path::PathBuf {
    fake.write_kubeconfig(&common::scratch(name))
}

#[test]
fn the_seed_cluster_listed_live_audits_like_its_dump() {
    let fake = seed_fake();
    let kc = kubeconfig(&fake, "live-seed-audit");
    let seed = common::fixture("scenarios/seed-incident");
    let config = seed.join("config.yaml");
    let live = common::run([
        "audit",
        "--kubeconfig",
        kc.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--cloudtrail-dir",
        seed.join("cloudtrail").to_str().unwrap(),
        "--output",
        "json",
    ]);
    let offline = common::run([
        "audit",
        "--kube-dir",
        seed.join("cluster").to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--cloudtrail-dir",
        seed.join("cloudtrail").to_str().unwrap(),
        "--output",
        "json",
    ]);
    assert_eq!(live.code, 1, "{}", live.stderr);
    assert_eq!(offline.code, 1);
    let (l, o) = (live.json(), offline.json());
    assert_eq!(by_key(&l), by_key(&o));
    assert_eq!(l["summary"], o["summary"]);
    assert_eq!(l["cloudtrail"], o["cloudtrail"]);
    assert_eq!(l["cluster"]["parse_errors"], 0);
}

/// A CRD as the API server reports it once established, for a kind no fixture has.
fn crd(group: &str, kind: &str) -> Value {
    let plural = format!("{}s", kind.to_ascii_lowercase());
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.{group}")},
        "spec": {
            "group": group,
            "names": {"kind": kind, "plural": plural, "singular": kind.to_ascii_lowercase(),
                      "listKind": format!("{kind}List")},
            "scope": "Namespaced",
            "versions": [{"name": "v1alpha1", "served": true, "storage": true}]
        },
        "status": {"conditions": [{"type": "Established", "status": "True"}],
                   "storedVersions": ["v1alpha1"]}
    })
}

#[test]
fn controllers_that_cannot_run_are_judged_live_as_from_the_dump() {
    let dir = common::fixture("scenarios/what-controllers-cannot-do");
    let fake = FakeApiServer::start();
    fake.apply_path(&dir.join("cluster"));
    apply_crds(&fake, &["services.k8s.aws_iamroleselectors.yaml"]);
    for (group, kind) in [
        ("ec2", "SecurityGroup"),
        ("s3", "Bucket"),
        ("dynamodb", "Table"),
        ("rds", "DBInstance"),
        ("rds", "DBCluster"),
        ("sqs", "Queue"),
        ("sns", "Topic"),
        ("kms", "Key"),
        ("lambda", "Function"),
    ] {
        fake.apply(crd(&format!("{group}.services.k8s.aws"), kind));
    }
    let kc = kubeconfig(&fake, "live-controllers");
    let audit = |source: [&str; 2]| {
        let config = dir.join("config.yaml").display().to_string();
        let run = common::run([
            "audit", source[0], source[1], "--config", &config, "--output", "json",
        ]);
        assert_eq!(run.code, 1, "{}", run.stderr);
        run.json()
    };
    let live = audit(["--kubeconfig", kc.to_str().unwrap()]);
    let offline = audit(["--kube-dir", dir.join("cluster").to_str().unwrap()]);
    assert_eq!(by_key(&live), by_key(&offline));
    // Deployment status (sqs: no available replica) and CRD kinds (rds) arrive live too.
    assert_eq!(live["controllers"], offline["controllers"]);
    assert_eq!(live["role_selectors"], offline["role_selectors"]);
    assert_eq!(live["summary"], offline["summary"]);

    // The CRDs the live source follows hold --reconcile-resources to the group's kinds.
    let mut rds = fake
        .objects("apps/v1", "Deployment")
        .into_iter()
        .find(|d| d["metadata"]["name"] == "ack-rds-controller")
        .unwrap();
    rds["spec"]["template"]["spec"]["containers"][0]["args"][2] =
        json!("--reconcile-resources=DBInstance,DBProxy");
    fake.apply(rds);
    let live = audit(["--kubeconfig", kc.to_str().unwrap()]);
    let rds = live["controllers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["service"] == "rds")
        .unwrap()
        .clone();
    assert_eq!(rds["running"], false, "{rds}");
    assert_eq!(rds["problems"][0]["problem"], "unsupported_reconcile_kind");
    assert!(
        rds["problems"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("\"DBProxy\""),
        "{rds}"
    );
}

/// Samples of a classic text exposition: `name{labels}` → value.
fn scrape(server: &Server) -> Vec<(String, f64)> {
    server
        .get("/metrics")
        .text()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// Polls /metrics until `check` holds (the product target is 2 s; tests allow 20).
fn eventually(server: &Server, what: &str, check: impl Fn(&[(String, f64)]) -> bool) -> Duration {
    let started = Instant::now();
    loop {
        let samples = scrape(server);
        if check(&samples) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{what}: not seen within 20 s; last scrape:\n{}",
            samples
                .iter()
                .filter(|(s, _)| s.starts_with("ack_drift_resource_account_drift")
                    || s.starts_with("ack_drift_resources"))
                .map(|(s, v)| format!("{s} {v}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn has(samples: &[(String, f64)], parts: &[&str], value: f64) -> bool {
    samples
        .iter()
        .any(|(s, v)| *v == value && parts.iter().all(|p| s.contains(p)))
}

fn object(fake: &FakeApiServer, api_version: &str, kind: &str, ns: &str, name: &str) -> Value {
    fake.objects(api_version, kind)
        .into_iter()
        .find(|o| {
            o["metadata"]["namespace"].as_str().unwrap_or("") == ns && o["metadata"]["name"] == name
        })
        .unwrap_or_else(|| panic!("{kind} {ns}/{name} not on the server"))
}

#[test]
fn changes_on_the_server_show_on_metrics() {
    let fake = seed_fake();
    let kc = kubeconfig(&fake, "live-changes");
    // No config: the controller is judged as the newest runtime, which has IAMRoleSelectors
    // (step 4 moves it to a release built on that runtime).
    let server = Server::start(&["--kubeconfig", kc.to_str().unwrap()]);
    let uat_sg = [
        "name=\"limit-amq-to-subnet-uat\"",
        "ack_drift_resource_account_drift{",
    ];
    eventually(&server, "the seed drift", |s| has(s, &uat_sg, 1.0));
    assert!(has(
        &scrape(&server),
        &["ack_drift_exporter_source_up{source=\"kube\"}"],
        1.0
    ));

    // 1. Fixing the drifted resource's status clears its drift.
    let mut sg = object(
        &fake,
        "ec2.services.k8s.aws/v1alpha1",
        "SecurityGroup",
        "uat",
        "limit-amq-to-subnet-uat",
    );
    sg["status"]["ackResourceMetadata"]["ownerAccountID"] = json!("474417630776");
    fake.apply(sg);
    eventually(&server, "status fixed", |s| has(s, &uat_sg, 0.0));

    // 2. Annotating a namespace moves the dev resources' target to UAT (mapped): drift.
    let mut dev = object(&fake, "v1", "Namespace", "", "dev");
    dev["metadata"]["annotations"] = json!({"services.k8s.aws/owner-account-id": "474417630776"});
    fake.apply(dev);
    let dev_sg = [
        "name=\"limit-amq-to-subnet-dev\"",
        "ack_drift_resource_account_drift{",
        "expected_account=\"474417630776\"",
        "account_source=\"namespace\"",
    ];
    eventually(&server, "namespace annotated", |s| has(s, &dev_sg, 1.0));

    // 3. Annotating with an unmapped account gives role_unavailable; adding the CARM entry
    //    clears it.
    let mut dev = object(&fake, "v1", "Namespace", "", "dev");
    dev["metadata"]["annotations"] = json!({"services.k8s.aws/owner-account-id": "555566667777"});
    fake.apply(dev);
    let unavailable = [
        "ack_drift_resource_problem{",
        "name=\"limit-amq-to-subnet-dev\"",
        "problem=\"role_unavailable\"",
    ];
    eventually(&server, "role unavailable", |s| has(s, &unavailable, 1.0));
    let mut carm = object(
        &fake,
        "v1",
        "ConfigMap",
        "ack-system",
        "ack-role-account-map",
    );
    carm["data"]["555566667777"] = json!("arn:aws:iam::555566667777:role/ack-ec2-prod");
    fake.apply(carm);
    eventually(&server, "CARM entry added", |s| {
        !has(s, &unavailable, 1.0)
            && has(
                s,
                &[
                    "ack_drift_resource_account_drift{",
                    "name=\"limit-amq-to-subnet-dev\"",
                    "expected_account=\"555566667777\"",
                ],
                1.0,
            )
    });

    // 4. An IAMRoleSelector wins once the controller runs with the IAMRoleSelector gate.
    let mut deploy = object(
        &fake,
        "apps/v1",
        "Deployment",
        "ack-system",
        "ack-ec2-controller",
    );
    let args = deploy["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array_mut()
        .unwrap();
    args.retain(|a| a != "--enable-carm=true");
    args.push(json!("--enable-carm=false"));
    args.push(json!("--feature-gates=IAMRoleSelector=true"));
    deploy["spec"]["template"]["spec"]["containers"][0]["image"] =
        json!("public.ecr.aws/aws-controllers-k8s/ec2-controller:1.20.0");
    fake.apply(deploy);
    fake.apply(json!({
        "apiVersion": "services.k8s.aws/v1alpha1", "kind": "IAMRoleSelector",
        "metadata": {"name": "dev-to-sandbox"},
        "spec": {"arn": "arn:aws:iam::123456789012:role/sandbox", "namespaceSelector": {"names": ["dev"]}}
    }));
    eventually(&server, "selector applied", |s| {
        has(
            s,
            &[
                "ack_drift_resource_account_drift{",
                "name=\"limit-amq-to-subnet-dev\"",
                "expected_account=\"123456789012\"",
                "account_source=\"iam_role_selector\"",
            ],
            1.0,
        )
    });
    let (code, _) = server.terminate();
    assert_eq!(code, Some(0));
}

#[test]
fn crds_created_and_deleted_after_start_are_followed() {
    let fake = seed_fake();
    let kc = kubeconfig(&fake, "live-crds");
    let server = Server::start(&["--kubeconfig", kc.to_str().unwrap()]);
    let bucket = [
        "ack_drift_resource_info{",
        "kind=\"Bucket\"",
        "name=\"late-bucket\"",
    ];
    assert!(!has(&scrape(&server), &bucket, 1.0));

    apply_crds(&fake, &["s3.services.k8s.aws_buckets.yaml"]);
    fake.apply(json!({
        "apiVersion": "s3.services.k8s.aws/v1alpha1", "kind": "Bucket",
        "metadata": {"name": "late-bucket", "namespace": "dev"},
        "spec": {"name": "late-bucket-178394743802"},
        "status": {"ackResourceMetadata": {"arn": "arn:aws:s3:::late-bucket-178394743802", "ownerAccountID": "178394743802", "region": "eu-west-2"}}
    }));
    eventually(&server, "new kind watched", |s| has(s, &bucket, 1.0));

    fake.delete(
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        None,
        "buckets.s3.services.k8s.aws",
    );
    eventually(&server, "deleted kind's series gone", |s| {
        !s.iter()
            .any(|(series, _)| series.contains("kind=\"Bucket\""))
    });
    // The other kinds are untouched.
    assert!(has(
        &scrape(&server),
        &[
            "ack_drift_resources{",
            "kind=\"SecurityGroup\"",
            "namespace=\"uat\""
        ],
        1.0
    ));
}

#[test]
fn dropped_streams_and_expired_versions_heal_to_the_servers_state() {
    let fake = seed_fake();
    let kc = kubeconfig(&fake, "live-faults");
    let server = Server::start(&["--kubeconfig", kc.to_str().unwrap()]);
    let vpc = |i: usize, account: &str| {
        json!({
            "apiVersion": "ec2.services.k8s.aws/v1alpha1", "kind": "VPC",
            "metadata": {"name": format!("churn-{i}"), "namespace": if i.is_multiple_of(2) { "dev" } else { "uat" }},
            "spec": {"cidrBlocks": ["10.0.0.0/16"]},
            "status": {"ackResourceMetadata": {"ownerAccountID": account, "region": "eu-west-2"},
                       "conditions": [{"type": "ACK.ResourceSynced", "status": "True"}]}
        })
    };
    // 100 dropped streams and 20 compactions, with creates, updates and deletes in between.
    for round in 0..100 {
        for i in (round * 3)..(round * 3 + 3) {
            fake.apply(vpc(
                i,
                if i % 5 == 0 {
                    "999999999999"
                } else {
                    "178394743802"
                },
            ));
        }
        if round % 4 == 0 && round > 0 {
            fake.delete(
                "ec2.services.k8s.aws/v1alpha1",
                "VPC",
                Some(if (round * 3 - 3) % 2 == 0 {
                    "dev"
                } else {
                    "uat"
                }),
                &format!("churn-{}", round * 3 - 3),
            );
        }
        fake.drop_watches();
        if round % 5 == 0 {
            fake.expire_history();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let stats = fake.stats();
    assert!(stats.gone_410 >= 1, "the fake sent no 410: {stats:?}");

    // Final state on the server, counted independently.
    let vpcs = fake.objects("ec2.services.k8s.aws/v1alpha1", "VPC");
    let count_in = |ns: &str| {
        vpcs.iter()
            .filter(|o| o["metadata"]["namespace"] == ns)
            .count() as f64
    };
    let want_dev = count_in("dev");
    let want_uat = count_in("uat");
    eventually(&server, "converged to the server's state", |s| {
        has(
            s,
            &["ack_drift_resources{", "kind=\"VPC\"", "namespace=\"dev\""],
            want_dev,
        ) && has(
            s,
            &["ack_drift_resources{", "kind=\"VPC\"", "namespace=\"uat\""],
            want_uat,
        )
    });
    // Exactly one info series per object: nothing double-counted, nothing left over.
    let samples = scrape(&server);
    let infos: Vec<&String> = samples
        .iter()
        .filter(|(s, _)| s.starts_with("ack_drift_resource_info{") && s.contains("kind=\"VPC\""))
        .map(|(s, _)| s)
        .collect();
    assert_eq!(infos.len(), vpcs.len());
    for o in &vpcs {
        let name = format!("name=\"{}\"", o["metadata"]["name"].as_str().unwrap());
        assert_eq!(
            infos.iter().filter(|s| s.contains(&name)).count(),
            1,
            "{name}"
        );
    }
    // The restarts were seen and counted.
    let restarts: f64 = samples
        .iter()
        .filter(|(s, _)| s.starts_with("ack_drift_exporter_kube_watch_restarts_total{"))
        .map(|(_, v)| *v)
        .sum();
    assert!(restarts >= 1.0, "no restart counted");
    // While watches were failing the source was down; once they stay healthy for longer than
    // the watcher's longest backoff it is up again.
    let started = Instant::now();
    while !has(
        &scrape(&server),
        &["ack_drift_exporter_source_up{source=\"kube\"}"],
        1.0,
    ) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "source_up stayed 0"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn server_errors_at_start_delay_readiness_but_heal() {
    let fake = seed_fake();
    fake.fail_next(5);
    let kc = kubeconfig(&fake, "live-500");
    let server = Server::start(&["--kubeconfig", kc.to_str().unwrap()]);
    eventually(&server, "seed visible after 500s", |s| {
        has(
            s,
            &[
                "ack_drift_resource_account_drift{",
                "name=\"limit-amq-to-subnet-uat\"",
            ],
            1.0,
        )
    });
}

#[test]
fn without_crd_access_kinds_come_from_api_discovery() {
    let fake = seed_fake();
    fake.forbid_crds(true);
    let kc = kubeconfig(&fake, "live-no-crds");
    let server = Server::start(&["--kubeconfig", kc.to_str().unwrap()]);
    eventually(&server, "seed visible through discovery", |s| {
        has(
            s,
            &[
                "ack_drift_resource_account_drift{",
                "name=\"limit-amq-to-subnet-uat\"",
            ],
            1.0,
        ) && has(
            s,
            &["ack_drift_exporter_source_up{source=\"kube_crds\"}"],
            0.0,
        )
    });
    let log = server.stderr.lock().unwrap().clone();
    assert!(log.contains("falling back to API discovery"), "{log}");
}

#[test]
fn not_ready_until_every_watch_has_listed() {
    let fake = seed_fake();
    // The first requests fail: the watches back off and list later.
    fake.fail_next(12);
    let kc = kubeconfig(&fake, "live-readiness");
    let server = Server::start_listening(&["--kubeconfig", kc.to_str().unwrap()]);
    assert_eq!(server.get("/healthz").status, 200);
    let early = server.get("/readyz");
    assert_eq!(early.status, 503, "ready before any list succeeded");
    server.wait_ready();
    // Ready means listed: the seed drift is there at once.
    assert!(has(
        &scrape(&server),
        &[
            "ack_drift_resource_account_drift{",
            "name=\"limit-amq-to-subnet-uat\""
        ],
        1.0
    ));
}

#[test]
fn a_bearer_token_never_reaches_logs_or_metrics_even_at_debug() {
    const TOKEN: &str = "kube-bearer-token-do-not-log-0123456789";
    let fake = seed_fake();
    let kc = kubeconfig(&fake, "live-token");
    let text = std::fs::read_to_string(&kc).unwrap();
    let with_token = text.replace("  user: {}", &format!("  user:\n    token: {TOKEN}"));
    assert_ne!(text, with_token);
    std::fs::write(&kc, with_token).unwrap();
    let server = Server::start_listening_with(
        &["--kubeconfig", kc.to_str().unwrap()],
        &[("RUST_LOG", "debug".to_string())],
    );
    server.wait_ready();
    // Some traffic after the lists: a change and a dropped watch.
    fake.drop_watches();
    eventually(&server, "seed visible", |s| {
        has(
            s,
            &[
                "ack_drift_resource_account_drift{",
                "name=\"limit-amq-to-subnet-uat\"",
            ],
            1.0,
        )
    });
    let metrics = server.get("/metrics").text();
    let log = server.stderr.lock().unwrap().clone();
    assert!(log.contains("DEBUG"), "debug logging was on");
    assert!(!log.contains(TOKEN), "the token in the log");
    assert!(!metrics.contains(TOKEN), "the token in the metrics");
    assert!(!log.to_ascii_lowercase().contains("authorization: bearer"));
}
