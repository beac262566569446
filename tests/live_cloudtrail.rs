//! Live CloudTrail: the real binary (the AWS SDK inside) polls the in-repo fake LookupEvents
//! and STS over HTTP. Figures must equal what the fake's events say, computed here
//! independently; the fake must never see more than 2 requests in a second per account and
//! region.

mod common;
#[path = "support/fake_cloudtrail.rs"]
mod fake_cloudtrail;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::http::Server;
use common::samples;
use fake_cloudtrail::{
    FakeCloudTrail, FakeEvent, Faults, busiest_second, now, rfc3339, rfc3339_secs,
};
use serde_json::{Value, json};

const HOME: &str = "111111111111";
const ACCOUNTS: [&str; 3] = [HOME, "222222222222", "333333333333"];
const REGIONS: [&str; 2] = ["eu-west-2", "us-east-1"];
const NS: &str = "payments";
const UA: &str = "aws-controllers-k8s/ec2.services.k8s.aws-v1.2.0 (GitCommit/8d2f0e1c; BuildDate/2024-02-01T10:00; CRDKind/SecurityGroup; CRDVersion/v1alpha1) aws-sdk-go/1.50.0 (go1.21.6; linux; amd64)";

type Samples = BTreeMap<(String, BTreeMap<String, String>), f64>;

fn sg_id(i: usize) -> String {
    format!("sg-{i:017x}")
}

/// A cluster of `n` SecurityGroups in one namespace, all recorded (and expected) in HOME.
fn write_cluster(dir: &Path, n: usize) {
    let mut yaml = format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {NS}\n");
    for i in 0..n {
        yaml.push_str(&format!(
            "---\napiVersion: ec2.services.k8s.aws/v1alpha1\nkind: SecurityGroup\nmetadata:\n  name: sg-{i}\n  namespace: {NS}\nspec:\n  name: sg-{i}\n  description: test\nstatus:\n  id: {id}\n  ackResourceMetadata:\n    ownerAccountID: \"{HOME}\"\n    region: eu-west-2\n    arn: arn:aws:ec2:eu-west-2:{HOME}:security-group/{id}\n  conditions:\n  - type: ACK.ResourceSynced\n    status: \"True\"\n",
            id = sg_id(i)
        ));
    }
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("cluster.yaml"), yaml).unwrap();
}

/// `overlap`: above a minute the poller reads every range fresh and again once the overlap has
/// passed; up to a minute it reads each range once, after it.
fn write_config(path: &Path, accounts: &[&str], overlap: &str) {
    let mut cfg = format!(
        "controllers:\n  ec2:\n    default_account: \"{HOME}\"\n    default_region: eu-west-2\ncloudtrail:\n  poll_interval: 2s\n  window: 15m\n  overlap: {overlap}\n  accounts:\n"
    );
    for a in accounts {
        cfg.push_str(&format!(
            "  - account: \"{a}\"\n    role_arn: arn:aws:iam::{a}:role/ack-drift-reader\n    regions: [{}]\n",
            REGIONS.join(", ")
        ));
    }
    std::fs::write(path, cfg).unwrap();
}

/// One ACK call on SecurityGroup `resource`, as CloudTrail records it.
fn ack_event(
    k: usize,
    account: &str,
    region: &str,
    resource: usize,
    time: i64,
    error: Option<&str>,
) -> Value {
    let mut r = json!({
        "eventVersion": "1.09",
        "userIdentity": {"type": "AssumedRole", "accountId": account,
            "arn": format!("arn:aws:sts::{account}:assumed-role/ack-ec2/1")},
        "eventTime": rfc3339(time),
        "eventSource": "ec2.amazonaws.com",
        "eventName": if error.is_some() { "AuthorizeSecurityGroupIngress" } else { "DescribeSecurityGroups" },
        "awsRegion": region,
        "userAgent": UA,
        "requestParameters": {"groupId": sg_id(resource)},
        "eventID": format!("{k:08x}-0000-4000-8000-{k:012x}"),
        "eventType": "AwsApiCall",
        "recipientAccountId": account,
    });
    if let Some(code) = error {
        r["errorCode"] = json!(code);
        r["errorMessage"] = json!("test");
    }
    r
}

fn fake_event(record: Value, visible_at: f64) -> FakeEvent {
    FakeEvent {
        account: record["recipientAccountId"].as_str().unwrap().into(),
        region: record["awsRegion"].as_str().unwrap().into(),
        event_id: record["eventID"].as_str().unwrap().into(),
        event_source: record["eventSource"].as_str().unwrap().into(),
        event_name: record["eventName"].as_str().unwrap().into(),
        event_time: rfc3339_secs(record["eventTime"].as_str().unwrap()),
        visible_at,
        record,
    }
}

/// What the exporter must report, computed from the events alone.
#[derive(Default, Debug, PartialEq)]
struct Truth {
    /// (account, region, event name, code) → errors.
    errors: BTreeMap<(String, String, String, String), u64>,
    /// (account, region) → ACK events.
    events: BTreeMap<(String, String), u64>,
    /// (resource name, account, region, code) → error events.
    resource_errors: BTreeMap<(String, String, String, String), u64>,
    /// (resource name, called account) → calls outside HOME.
    wrong_account: BTreeMap<(String, String), u64>,
}

fn truth_of(events: &[FakeEvent]) -> Truth {
    let mut t = Truth::default();
    for e in events {
        let r = &e.record;
        let (account, region) = (e.account.clone(), e.region.clone());
        let group = r["requestParameters"]["groupId"].as_str().unwrap();
        let name = format!(
            "sg-{}",
            usize::from_str_radix(group.trim_start_matches("sg-"), 16).unwrap()
        );
        *t.events
            .entry((account.clone(), region.clone()))
            .or_default() += 1;
        if let Some(code) = r["errorCode"].as_str() {
            // EC2 writes some codes with a `Client.` prefix; the exporter reports them bare.
            let code = code.trim_start_matches("Client.");
            *t.errors
                .entry((
                    account.clone(),
                    region.clone(),
                    e.event_name.clone(),
                    code.into(),
                ))
                .or_default() += 1;
            *t.resource_errors
                .entry((name.clone(), account.clone(), region, code.into()))
                .or_default() += 1;
        }
        if account != HOME {
            *t.wrong_account.entry((name, account)).or_default() += 1;
        }
    }
    t
}

fn truth_from_metrics(s: &Samples) -> Truth {
    let mut t = Truth::default();
    for ((name, l), v) in s {
        let g = |k: &str| l.get(k).cloned().unwrap_or_default();
        let v = *v as u64;
        match name.as_str() {
            "ack_drift_cloudtrail_errors_total" => {
                t.errors.insert(
                    (g("account"), g("region"), g("event_name"), g("error_code")),
                    v,
                );
            }
            "ack_drift_cloudtrail_events_total" if g("ack_kind") == "SecurityGroup" => {
                t.events.insert((g("account"), g("region")), v);
            }
            "ack_drift_resource_error_events" if v > 0 => {
                t.resource_errors
                    .insert((g("name"), g("account"), g("region"), g("error_code")), v);
            }
            "ack_drift_resource_wrong_account_calls" if v > 0 => {
                t.wrong_account.insert((g("name"), g("called_account")), v);
            }
            _ => {}
        }
    }
    t
}

/// `serve` on a cluster dump with live CloudTrail from `fake`, once ready.
fn serve(cluster: &Path, config: &Path, fake: &FakeCloudTrail) -> Server {
    let server = Server::start_listening_with(
        &[
            "--kube-dir",
            cluster.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
        &fake.env(),
    );
    server.wait_ready();
    server
}

fn scrape(server: &Server) -> Samples {
    samples(&server.get("/metrics").text())
}

fn value(s: &Samples, name: &str, want: &[(&str, &str)]) -> Option<f64> {
    s.iter()
        .filter(|((n, l), _)| {
            n == name
                && want
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, v)| *v)
        .reduce(|a, b| a + b)
}

/// Polls /metrics until `done` holds (or the deadline passes); returns the last scrape.
fn wait_for(server: &Server, deadline: Duration, done: impl Fn(&Samples) -> bool) -> Samples {
    let until = Instant::now() + deadline;
    loop {
        let s = scrape(server);
        if done(&s) || Instant::now() > until {
            return s;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn every_event_counted_once_under_faults_within_the_rate_ceiling() {
    let dir = common::scratch("live-cloudtrail-load");
    write_cluster(&dir.join("cluster"), 30);
    write_config(&dir.join("config.yaml"), &ACCOUNTS, "75s");
    let fake = FakeCloudTrail::start();
    let t0 = now() as i64;
    // 18 000 events delivered before the start (backfill), 2 000 during the run, a quarter of
    // those late by up to 60 s (80 % of the 75 s overlap). 5 % are errors. The overlap is
    // above a minute, so this exercises the fresh and the settling pass together.
    let mut events = Vec::new();
    for k in 0..20_000usize {
        let pair = k % 6;
        let (account, region) = (ACCOUNTS[pair / 2], REGIONS[pair % 2]);
        let code = if k % 80 < 40 {
            "InvalidGroup.NotFound"
        } else {
            "Client.UnauthorizedOperation"
        };
        let error = (k % 40 == 7 || k % 40 == 32).then_some(code);
        let (time, visible) = if k < 18_000 {
            let time = t0 - 600 + (k * 560 / 18_000) as i64;
            (time, time as f64 + 1.0)
        } else {
            let time = t0 - 10 + ((k - 18_000) * 50 / 2_000) as i64;
            let delay = if k % 4 == 0 { (k * 7 % 61) as f64 } else { 1.0 };
            (time, time as f64 + delay)
        };
        let record = ack_event(k, account, region, k * 7 % 30, time, error);
        events.push(fake_event(record, visible));
    }
    let truth = truth_of(&events);
    assert_eq!(truth.errors.values().sum::<u64>(), 1_000);
    fake.add(events);
    fake.set_faults(Faults {
        throttle: 0.3,
        server_error: 0.02,
        ..Default::default()
    });

    let server = serve(&dir.join("cluster"), &dir.join("config.yaml"), &fake);
    let last = wait_for(&server, Duration::from_secs(300), |s| {
        let got = truth_from_metrics(s);
        if std::env::var("PROGRESS").is_ok() {
            eprintln!(
                "{:.0} s: {} events, {} errors, {} lookups",
                now() - t0 as f64,
                got.events.values().sum::<u64>(),
                got.errors.values().sum::<u64>(),
                fake.stats().lookups
            );
        }
        now() > (t0 + 70) as f64 && got == truth
    });
    eprintln!(
        "converged {:.0} s after the start; {} LookupEvents calls, {} events returned",
        now() - t0 as f64,
        fake.stats().lookups,
        fake.stats().events_returned
    );
    assert_eq!(
        truth_from_metrics(&last),
        truth,
        "exporter log:\n{}",
        server.stderr.lock().unwrap()
    );
    // Three more polls of every pair re-read the overlap: nothing may be counted again.
    let lookups_before = fake.stats().lookups;
    let again = wait_for(&server, Duration::from_secs(120), |_| {
        fake.stats().lookups >= lookups_before + 3 * 6
    });
    assert!(
        fake.stats().lookups >= lookups_before + 3 * 6,
        "no more polls"
    );
    assert_eq!(truth_from_metrics(&again), truth);

    let stats = fake.stats();
    for (pair, arrivals) in &stats.arrivals {
        assert!(
            busiest_second(arrivals) <= 2,
            "{pair:?}: {} requests in one second",
            busiest_second(arrivals)
        );
    }
    assert_eq!(stats.arrivals.len(), 6, "every account and region polled");
    assert!(stats.throttled_injected > 0 && stats.server_errors > 0);
    assert_eq!(stats.invalid, BTreeMap::new(), "no request broke a rule");
    // One assumed role per account, shared by its regions; a stable session name.
    for a in ACCOUNTS {
        assert_eq!(
            stats.assume_role[&format!("arn:aws:iam::{a}:role/ack-drift-reader")],
            1
        );
    }
    assert_eq!(
        stats.session_names.iter().collect::<Vec<_>>(),
        ["ack-drift-exporter"]
    );
    // The health series tell the truth about it.
    let throttles = value(
        &again,
        "ack_drift_exporter_cloudtrail_request_errors_total",
        &[("code", "ThrottlingException")],
    )
    .unwrap_or(0.0);
    assert_eq!(
        throttles as u64,
        stats.throttled_injected + stats.throttled_rate
    );
    let requests = value(&again, "ack_drift_exporter_cloudtrail_requests_total", &[]).unwrap();
    assert!(requests as u64 <= stats.lookups && requests as u64 + 20 >= stats.lookups);
    // Once the faults stop, every pair reports up with a lag of about a poll.
    fake.set_faults(Faults::default());
    let healthy = |s: &Samples| {
        value(
            s,
            "ack_drift_exporter_source_up",
            &[("source", "cloudtrail")],
        ) == Some(1.0)
            && ACCOUNTS.iter().all(|a| {
                REGIONS.iter().all(|r| {
                    let ar = [("account", *a), ("region", *r)];
                    value(s, "ack_drift_exporter_cloudtrail_up", &ar) == Some(1.0)
                        && value(s, "ack_drift_exporter_cloudtrail_lag_seconds", &ar)
                            .is_some_and(|lag| lag < 30.0)
                })
            })
    };
    let healed = wait_for(&server, Duration::from_secs(120), healthy);
    assert_eq!(
        value(
            &healed,
            "ack_drift_exporter_source_up",
            &[("source", "cloudtrail")]
        ),
        Some(1.0)
    );
    for a in ACCOUNTS {
        for r in REGIONS {
            let ar = [("account", a), ("region", r)];
            assert_eq!(
                value(&healed, "ack_drift_exporter_cloudtrail_up", &ar),
                Some(1.0)
            );
            let lag = value(&healed, "ack_drift_exporter_cloudtrail_lag_seconds", &ar).unwrap();
            assert!(lag < 30.0, "{a}/{r} lag {lag}");
        }
    }
    server.terminate();
}

#[test]
fn an_account_whose_role_is_refused_is_down_and_the_others_read_on() {
    let dir = common::scratch("live-cloudtrail-refused");
    write_cluster(&dir.join("cluster"), 3);
    let accounts = [HOME, "222222222222"];
    write_config(&dir.join("config.yaml"), &accounts, "30s");
    let fake = FakeCloudTrail::start();
    let t0 = now() as i64;
    let events: Vec<FakeEvent> = (0..40usize)
        .map(|k| {
            let account = accounts[k % 2];
            let record = ack_event(
                k,
                account,
                "eu-west-2",
                k % 3,
                t0 - 60,
                Some("InvalidGroup.NotFound"),
            );
            fake_event(record, 0.0)
        })
        .collect();
    fake.add(events);
    let refused = "arn:aws:iam::222222222222:role/ack-drift-reader".to_string();
    fake.set_faults(Faults {
        refused_roles: [refused.clone()].into(),
        ..Default::default()
    });
    // Debug logging, SDK included: secrets must stay out of it all the same.
    let mut env = fake.env();
    env.push(("RUST_LOG", "debug".to_string()));
    let server = Server::start_listening_with(
        &[
            "--kube-dir",
            dir.join("cluster").to_str().unwrap(),
            "--config",
            dir.join("config.yaml").to_str().unwrap(),
        ],
        &env,
    );
    server.wait_ready();
    let s = wait_for(&server, Duration::from_secs(60), |s| {
        value(s, "ack_drift_cloudtrail_errors_total", &[("account", HOME)]) == Some(20.0)
            && value(
                s,
                "ack_drift_exporter_cloudtrail_up",
                &[("account", "222222222222")],
            )
            .is_some()
    });
    assert_eq!(
        value(
            &s,
            "ack_drift_cloudtrail_errors_total",
            &[("account", HOME)]
        ),
        Some(20.0),
        "{}",
        server.stderr.lock().unwrap()
    );
    assert_eq!(
        value(
            &s,
            "ack_drift_cloudtrail_errors_total",
            &[("account", "222222222222")]
        ),
        None
    );
    let down = [("account", "222222222222"), ("region", "eu-west-2")];
    assert_eq!(
        value(&s, "ack_drift_exporter_cloudtrail_up", &down),
        Some(0.0)
    );
    let mut why = down.to_vec();
    why.push(("code", "AssumeRoleFailed"));
    assert!(
        value(
            &s,
            "ack_drift_exporter_cloudtrail_request_errors_total",
            &why
        )
        .unwrap()
            >= 1.0
    );
    assert_eq!(
        value(
            &s,
            "ack_drift_exporter_cloudtrail_up",
            &[("account", HOME), ("region", "eu-west-2")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &s,
            "ack_drift_exporter_source_up",
            &[("source", "cloudtrail")]
        ),
        Some(0.0)
    );
    let stats = fake.stats();
    assert!(stats.assume_role[&refused] >= 1);
    assert_eq!(
        stats.assume_role[&format!("arn:aws:iam::{HOME}:role/ack-drift-reader")],
        1,
        "one AssumeRole serves both regions: {:?}\n{}",
        stats.assume_role,
        server.stderr.lock().unwrap()
    );
    let log = server.stderr.lock().unwrap().clone();
    assert!(log.contains("AccessDenied"), "the log says why:\n{log}");
    let metrics = server.get("/metrics").text();
    assert!(log.contains("DEBUG"), "debug logging was on");
    for secret in [
        fake_cloudtrail::BASE_SECRET_KEY,
        "fake-secret",
        "fake-session-token",
        "Signature=",
        "x-amz-security-token",
    ] {
        assert!(!log.contains(secret), "{secret} in the log");
        assert!(!metrics.contains(secret), "{secret} in the metrics");
    }
    assert!(
        !log.to_ascii_lowercase().contains("authorization: "),
        "an Authorization header in the log"
    );
    server.terminate();
}

/// Every record of the seed scenario's trail files, as JSON values.
fn seed_records() -> Vec<Value> {
    use std::io::Read;
    let mut out = Vec::new();
    let mut stack = vec![common::fixture("scenarios/seed-incident/cloudtrail")];
    while let Some(p) = stack.pop() {
        if p.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        let mut text = String::new();
        flate2::read::GzDecoder::new(std::fs::File::open(&p).unwrap())
            .read_to_string(&mut text)
            .unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        out.extend(v["Records"].as_array().unwrap().iter().cloned());
    }
    out
}

#[test]
fn the_seed_scenario_served_live_gives_the_offline_figures() {
    let dir = common::scratch("live-cloudtrail-seed");
    let mut records = seed_records();
    // Shift the story so its newest event happened two minutes ago.
    let newest = records
        .iter()
        .map(|r| rfc3339_secs(r["eventTime"].as_str().unwrap()))
        .max()
        .unwrap();
    let shift = now() as i64 - 120 - newest;
    for r in &mut records {
        let t = rfc3339_secs(r["eventTime"].as_str().unwrap()) + shift;
        r["eventTime"] = json!(rfc3339(t));
    }
    // The offline audit of the same (shifted) records.
    let trail = dir.join("trail");
    std::fs::create_dir_all(&trail).unwrap();
    std::fs::write(
        trail.join("records.json"),
        json!({"Records": records}).to_string(),
    )
    .unwrap();
    let seed = common::fixture("scenarios/seed-incident");
    let offline = common::run([
        "audit",
        "--kube-dir",
        seed.join("cluster").to_str().unwrap(),
        "--cloudtrail-dir",
        trail.to_str().unwrap(),
        "--config",
        seed.join("config.yaml").to_str().unwrap(),
        "--window",
        "1h",
        "--output",
        "json",
    ]);
    let audit = offline.json();
    let mut want: BTreeMap<(String, String, String), u64> = BTreeMap::new();
    for r in audit["resources"].as_array().unwrap() {
        let name = r["name"].as_str().unwrap().to_string();
        for e in r["error_events"].as_array().into_iter().flatten() {
            let key = format!(
                "{}/{}/{}",
                e["account"].as_str().unwrap(),
                e["region"].as_str().unwrap(),
                e["error_code"].as_str().unwrap()
            );
            want.insert(
                (name.clone(), "error".into(), key),
                e["count"].as_u64().unwrap(),
            );
        }
        for c in r["wrong_account_calls"].as_array().into_iter().flatten() {
            let key = c["account"].as_str().unwrap().to_string();
            want.insert(
                (name.clone(), "wrong".into(), key),
                c["count"].as_u64().unwrap(),
            );
        }
    }
    assert!(!want.is_empty(), "the seed scenario has evidence: {audit}");

    // The same records, live: every account the trail names, its region.
    let fake = FakeCloudTrail::start();
    let mut accounts: Vec<String> = Vec::new();
    let events: Vec<FakeEvent> = records
        .into_iter()
        .map(|r| {
            let account = r["recipientAccountId"].as_str().unwrap().to_string();
            if !accounts.contains(&account) {
                accounts.push(account);
            }
            fake_event(r, 0.0)
        })
        .collect();
    fake.add(events);
    let mut cfg = std::fs::read_to_string(seed.join("config.yaml")).unwrap();
    cfg.push_str("cloudtrail:\n  poll_interval: 2s\n  window: 1h\n  overlap: 30s\n  role_arn_template: arn:aws:iam::{account}:role/ack-drift-reader\n  regions: [eu-west-2]\n  accounts:\n");
    for a in &accounts {
        cfg.push_str(&format!("  - account: \"{a}\"\n"));
    }
    std::fs::write(dir.join("config.yaml"), cfg).unwrap();
    let server = serve(&seed.join("cluster"), &dir.join("config.yaml"), &fake);
    let live_figures = |s: &Samples| {
        let mut got = BTreeMap::new();
        for ((name, l), v) in s {
            let g = |k: &str| l.get(k).cloned().unwrap_or_default();
            match name.as_str() {
                "ack_drift_resource_error_events" if *v > 0.0 => {
                    let key = format!("{}/{}/{}", g("account"), g("region"), g("error_code"));
                    got.insert((g("name"), "error".to_string(), key), *v as u64);
                }
                "ack_drift_resource_wrong_account_calls" if *v > 0.0 => {
                    got.insert(
                        (g("name"), "wrong".to_string(), g("called_account")),
                        *v as u64,
                    );
                }
                _ => {}
            }
        }
        got
    };
    let s = wait_for(&server, Duration::from_secs(60), |s| {
        live_figures(s) == want
    });
    assert_eq!(live_figures(&s), want, "{}", server.stderr.lock().unwrap());
    server.terminate();
}
