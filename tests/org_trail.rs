//! An AWS Organizations CloudTrail trail in S3 (issue 17), generated with its ground truth
//! (`support/org_trail.rs`), and moto in server mode as the S3 and SQS the exporter reads it
//! from (`support/moto.rs`). The first tests check the harness itself: the real binary's
//! offline audit of the generated deliveries gives the truth exactly, and the deliveries and
//! their notifications land in moto as they would in AWS.

mod common;
#[path = "support/moto.rs"]
mod moto;
#[path = "support/org_trail.rs"]
mod org_trail;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::io::Read;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use moto::Moto;
use org_trail::{Evidence, ObjectCreated, OrgSpec, OrgTrail, Truth};
use serde_json::Value;

const BUCKET: &str = "org-trail-logs";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// 3 accounts × 2 regions, 20 000 records over the six hours before now.
fn org_trail() -> OrgTrail {
    OrgTrail::generate(OrgSpec::new(3, 2, 20_000, now(), 17))
}

/// Panics listing the keys on which `got` and `want` differ (the first 20).
fn assert_same<K: Ord + Debug, V: PartialEq + Debug>(
    what: &str,
    got: &BTreeMap<K, V>,
    want: &BTreeMap<K, V>,
) {
    let keys: BTreeSet<&K> = got.keys().chain(want.keys()).collect();
    let diff: Vec<String> = keys
        .into_iter()
        .filter(|k| got.get(k) != want.get(k))
        .map(|k| format!("  {k:?}: got {:?}, want {:?}", got.get(k), want.get(k)))
        .collect();
    assert!(
        diff.is_empty(),
        "{what}: {} keys differ from the ground truth:\n{}",
        diff.len(),
        diff[..diff.len().min(20)].join("\n")
    );
}

fn text(v: &Value, k: &str) -> String {
    v[k].as_str()
        .unwrap_or_else(|| panic!("no string {k} in {v}"))
        .to_string()
}

fn count(v: &Value) -> u64 {
    v["count"]
        .as_u64()
        .unwrap_or_else(|| panic!("no count in {v}"))
}

/// The audit JSON's `cloudtrail` and per-resource figures, in the truth's shape (`events_by`
/// stays empty: the audit gives only the total).
fn truth_from_audit(audit: &Value) -> Truth {
    let ct = &audit["cloudtrail"];
    let list = |k: &str| {
        ct[k]
            .as_array()
            .unwrap_or_else(|| panic!("no {k}: {ct}"))
            .iter()
    };
    Truth {
        events: ct["events"].as_u64().expect("cloudtrail.events"),
        events_by: BTreeMap::new(),
        errors: list("errors")
            .map(|e| {
                let k = [
                    "account",
                    "region",
                    "service",
                    "event_name",
                    "error_code",
                    "ack_kind",
                ]
                .map(|f| text(e, f));
                let [a, r, s, n, c, kind] = k;
                ((a, r, s, n, c, kind), count(e))
            })
            .collect(),
        resources: audit["resources"]
            .as_array()
            .expect("resources")
            .iter()
            .map(|r| (common::resource_key(r), evidence_of(r)))
            .collect(),
        unattributed: list("unattributed_ack_events")
            .map(|u| {
                let k = ["account", "region", "ack_kind", "reason"].map(|f| text(u, f));
                let [a, r, kind, reason] = k;
                ((a, r, kind, reason), count(u))
            })
            .collect(),
        cross_account: list("cross_account_calls")
            .map(|c| {
                let k = [
                    "caller_account",
                    "recipient_account",
                    "service",
                    "event_name",
                    "signal",
                ]
                .map(|f| text(c, f));
                let [caller, recipient, s, n, signal] = k;
                let expected = c["expected"].as_bool().expect("expected");
                ((caller, recipient, s, n, signal, expected), count(c))
            })
            .collect(),
    }
}

fn evidence_of(r: &Value) -> Evidence {
    let list = |k: &str| {
        r[k].as_array()
            .unwrap_or_else(|| panic!("{k} is not a list (no trail read?): {r}"))
            .clone()
    };
    Evidence {
        error_events: list("error_events")
            .iter()
            .map(|e| {
                let key = (text(e, "account"), text(e, "region"), text(e, "error_code"));
                (key, count(e))
            })
            .collect(),
        wrong_account_calls: list("wrong_account_calls")
            .iter()
            .map(|c| (text(c, "account"), count(c)))
            .collect(),
    }
}

/// Every group is judged as the dump means it: its target account is the group's account.
fn assert_targets(audit: &Value, trail: &OrgTrail) {
    let expected: BTreeMap<String, String> = audit["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (common::resource_key(r), text(r, "expected_account")))
        .collect();
    let want: BTreeMap<String, String> = trail
        .groups
        .iter()
        .map(|g| (g.key(), g.account.clone()))
        .collect();
    assert_same("expected_account per resource", &expected, &want);
}

#[test]
fn the_audit_of_the_generated_deliveries_gives_the_ground_truth() {
    let started = Instant::now();
    let dir = common::scratch("org-trail-audit");
    let trail = org_trail();
    let generated = started.elapsed();
    trail.write_cluster(&dir.join("cluster"));
    trail.write_deliveries(&dir.join("trail"), "");
    let (digest_key, digest) = trail.digest("", BUCKET);
    org_trail::write_at(&dir.join("trail"), &digest_key, &digest);
    let run = common::run([
        "audit",
        "--kube-dir",
        dir.join("cluster").to_str().unwrap(),
        "--cloudtrail-dir",
        dir.join("trail").to_str().unwrap(),
        "--output",
        "json",
    ]);
    assert_eq!(run.code, 0, "no group drifts; stderr:\n{}", run.stderr);
    let audit = run.json();
    let ct = &audit["cloudtrail"];
    assert_eq!(
        ct["parse_errors"], 0,
        "the digest is skipped: {}",
        ct["input_errors"]
    );
    assert_eq!(ct["files"], trail.deliveries.len(), "one file per delivery");
    assert_eq!(ct["duplicates"], 0);
    assert_targets(&audit, &trail);

    let got = truth_from_audit(&audit);
    let want = &trail.truth;
    assert_eq!(got.events, want.events, "cloudtrail.events");
    assert_eq!(want.events, 20_000);
    assert_same("cloudtrail.errors", &got.errors, &want.errors);
    assert_same(
        "unattributed_ack_events",
        &got.unattributed,
        &want.unattributed,
    );
    assert_same(
        "cross_account_calls",
        &got.cross_account,
        &want.cross_account,
    );
    assert_same(
        "error_events / wrong_account_calls",
        &got.resources,
        &want.resources,
    );
    assert_enough_evidence(want);
    eprintln!(
        "generated in {generated:?}; {} deliveries; whole test {:?}",
        trail.deliveries.len(),
        started.elapsed()
    );
}

/// The truth is not trivially empty: every kind of figure has something to compare.
fn assert_enough_evidence(t: &Truth) {
    let errors: u64 = t
        .resources
        .values()
        .flat_map(|e| e.error_events.values())
        .sum();
    let wrong: u64 = t
        .resources
        .values()
        .flat_map(|e| e.wrong_account_calls.values())
        .sum();
    let reasons: BTreeSet<&str> = t.unattributed.keys().map(|k| k.3.as_str()).collect();
    let expected: BTreeSet<bool> = t.cross_account.keys().map(|k| k.5).collect();
    assert!(
        errors > 500 && wrong > 500,
        "{errors} error events, {wrong} wrong-account calls"
    );
    assert_eq!(reasons, BTreeSet::from(["no_kind", "no_match"]));
    assert_eq!(expected, BTreeSet::from([false, true]));
    let kinds: BTreeSet<&str> = t.events_by.keys().map(|k| k.3.as_str()).collect();
    assert_eq!(kinds, BTreeSet::from(["", "SecurityGroup"]));
}

#[test]
fn the_generated_deliveries_and_their_notifications_land_in_moto() {
    let trail = org_trail();
    let spec = &trail.spec;
    let started = Instant::now();
    let moto = Moto::start();
    let up = started.elapsed();
    moto.create_bucket(BUCKET);
    let queue = moto.create_queue("org-trail-deliveries", 300);
    let objects = trail.objects("");
    let etags = moto.put_objects(BUCKET, &objects);
    let (digest_key, digest) = trail.digest("", BUCKET);
    moto.put_object(BUCKET, &digest_key, digest);
    let uploaded = started.elapsed();
    let notifications = notifications_of(&trail, &objects, &etags);
    moto.send_all(&queue, &notifications);
    let sent_at = started.elapsed();

    let org = format!("AWSLogs/{}/", spec.org_id);
    let accounts: Vec<String> = spec.accounts.iter().map(|a| format!("{org}{a}/")).collect();
    assert_eq!(
        moto.list_prefixes(BUCKET, &org, "/"),
        accounts,
        "one folder per account"
    );
    let keys = moto.list_keys(BUCKET, &org);
    assert_eq!(
        keys.len(),
        trail.deliveries.len() + 1,
        "every delivery and the digest"
    );
    let (key, body) = &objects[objects.len() / 2];
    assert_eq!(&moto.get_object(BUCKET, key), body, "{key} reads back");
    let sent = notifications.len() as u64;
    wait_for_counts(&moto, &queue, (sent, 0));
    // One receive: bodies come back as sent, and are then counted in flight. (Draining the
    // whole queue without deleting costs moto O(n²): ~30 s for 440 messages.)
    let got = moto.receive(&queue);
    assert_eq!(got.len(), 10, "a receive gives ten");
    assert!(
        got.iter().all(|b| notifications.contains(b)),
        "received what was sent"
    );
    wait_for_counts(&moto, &queue, (sent - 10, 10));
    eprintln!(
        "moto up in {up:?}; {} objects at {uploaded:?}, {sent} notifications at {sent_at:?}; whole test {:?}",
        objects.len(),
        started.elapsed()
    );
}

/// One S3 notification per uploaded delivery, with the ETag moto gave it.
fn notifications_of(
    trail: &OrgTrail,
    objects: &[(String, Vec<u8>)],
    etags: &[String],
) -> Vec<String> {
    objects
        .iter()
        .zip(etags)
        .zip(&trail.deliveries)
        .map(|(((key, body), etag), d)| {
            let o = ObjectCreated::new(BUCKET, moto::REGION, key, body.len(), etag, d.delivered_at);
            org_trail::s3_notification(&o)
        })
        .collect()
}

/// Polls the queue's approximate counts until they are `want` (10 s at most).
fn wait_for_counts(moto: &Moto, queue: &str, want: (u64, u64)) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = moto.queue_counts(queue);
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{queue}: (visible, in flight) = {got:?}, want {want:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_message_received_too_often_goes_to_the_dead_letter_queue() {
    let moto = Moto::start();
    let dlq = moto.create_queue("org-trail-dlq", 300);
    // Visibility 0: a received message is visible again at once, so no test waits for it.
    let queue = moto.create_queue_with_dlq("org-trail-poison", 0, &dlq, 1);
    moto.send(&queue, &org_trail::not_json());
    assert_eq!(moto.receive(&queue), [org_trail::not_json()]);
    assert_eq!(
        moto.receive(&queue),
        Vec::<String>::new(),
        "moved on the second receive"
    );
    wait_for_counts(&moto, &dlq, (1, 0));
    assert_eq!(moto.receive_all(&dlq), [org_trail::not_json()]);
    wait_for_counts(&moto, &dlq, (0, 1));
    wait_for_counts(&moto, &queue, (0, 0));
}

/// The messages the readers will meet, checked for the fields they will read.
#[test]
fn messages_and_poison_have_the_shapes_aws_sends() {
    let trail = OrgTrail::generate(OrgSpec::new(2, 1, 200, 1_796_000_000, 3));
    for d in &trail.deliveries {
        assert_delivery_key(&trail.spec.org_id, d);
    }
    let d = &trail.deliveries[0];
    let key = format!("org trail/{}", d.key);
    let o = ObjectCreated::new(
        BUCKET,
        "eu-west-2",
        &key,
        d.body.len(),
        "0123abcd",
        d.delivered_at,
    );
    let n: Value = serde_json::from_str(&org_trail::s3_notification(&o)).unwrap();
    let object = &n["Records"][0]["s3"]["object"];
    assert_eq!(
        object["key"],
        format!("org+trail/{}", d.key),
        "form-encoded key"
    );
    assert_eq!(n["Records"][0]["eventName"], "ObjectCreated:Put");
    let sns: Value = serde_json::from_str(&org_trail::sns_notification(
        &n.to_string(),
        "arn:aws:sns:eu-west-2:111111111111:org-trail",
        d.delivered_at,
    ))
    .unwrap();
    let inner: Value = serde_json::from_str(sns["Message"].as_str().unwrap()).unwrap();
    assert_eq!(inner, n, "SNS carries the notification as a JSON string");
    let eb: Value =
        serde_json::from_str(&org_trail::eventbridge_object_created(&o, "111111111111")).unwrap();
    assert_eq!(
        eb["detail"]["object"]["key"], key,
        "EventBridge keys are not encoded"
    );
    let call: Value =
        serde_json::from_str(&org_trail::eventbridge_api_call(&trail.records[0])).unwrap();
    assert_eq!(call["detail"], trail.records[0]);
    assert!(call["source"].as_str().unwrap().starts_with("aws."));
    let test_event: Value = serde_json::from_str(&org_trail::s3_test_event(BUCKET, 0)).unwrap();
    assert_eq!(test_event["Event"], "s3:TestEvent");

    assert!(serde_json::from_str::<Value>(&org_trail::not_json()).is_err());
    let (broken_key, broken) = org_trail::broken_gzip(&trail, "");
    assert!(broken_key.ends_with(".json.gz") && broken_key.starts_with("AWSLogs/o-"));
    let mut out = Vec::new();
    let inflated = flate2::read::GzDecoder::new(&broken[..]).read_to_end(&mut out);
    assert!(inflated.is_err(), "the broken delivery does not inflate");
    let missing = org_trail::missing_key(&trail, "");
    assert!(trail.deliveries.iter().all(|d| d.key != missing));
}

/// Run by `moto_env_is_enough_for_the_sdk_default_chain` in a child process whose AWS
/// environment is only `Moto::env()`; without `ORG_TRAIL_PROBE_BUCKET` it does nothing.
#[test]
fn sdk_default_chain_probe() {
    let Ok(bucket) = std::env::var("ORG_TRAIL_PROBE_BUCKET") else {
        return;
    };
    let queue = std::env::var("ORG_TRAIL_PROBE_QUEUE").expect("ORG_TRAIL_PROBE_QUEUE");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (objects, arn) = rt.block_on(async {
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let s3 = aws_sdk_s3::Client::new(&config);
        let listed = s3.list_objects_v2().bucket(&bucket).send().await;
        let sqs = aws_sdk_sqs::Client::new(&config);
        let attrs = sqs
            .get_queue_attributes()
            .queue_url(&queue)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await;
        (listed, attrs)
    });
    let objects = objects.unwrap_or_else(|e| panic!("ListObjectsV2 by the default chain: {e:?}"));
    let arn = arn.unwrap_or_else(|e| panic!("GetQueueAttributes by the default chain: {e:?}"));
    let arn = arn.attributes().unwrap().values().next().unwrap().clone();
    println!("probe: {} objects, queue {arn}", objects.contents().len());
}

#[test]
fn moto_env_is_enough_for_the_sdk_default_chain() {
    let moto = Moto::start();
    moto.create_bucket("probe-bucket");
    moto.put_object(
        "probe-bucket",
        "AWSLogs/probe.json.gz",
        org_trail::gzip(b"[]"),
    );
    let queue = moto.create_queue("probe", 30);
    let started = Instant::now();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["sdk_default_chain_probe", "--exact", "--nocapture"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(moto.env())
        .env("ORG_TRAIL_PROBE_BUCKET", "probe-bucket")
        .env("ORG_TRAIL_PROBE_QUEUE", &queue)
        .output()
        .expect("the test binary runs again");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("probe: 1 objects, queue arn:aws:sqs:"),
        "the SDK's default chain with Moto::env() alone did not reach moto:\n{stdout}\n{stderr}"
    );
    eprintln!("default-chain probe answered in {:?}", started.elapsed());
}

/// `AWSLogs/<org>/<account>/CloudTrail/<region>/YYYY/MM/DD/<account>_CloudTrail_<region>_YYYYMMDDTHHMMZ_<16 alnum>.json.gz`,
/// the date and time those of the delivery (the end of a five-minute slot, UTC).
fn assert_delivery_key(org: &str, d: &org_trail::Delivery) {
    let at = ack_drift_exporter::model::time::format_rfc3339(d.delivered_at);
    let (date, time) = (&at[..10], &at[11..16]);
    let folder = format!(
        "AWSLogs/{org}/{a}/CloudTrail/{r}/{}/",
        date.replace('-', "/"),
        a = d.account,
        r = d.region
    );
    let name = format!(
        "{a}_CloudTrail_{r}_{}T{}Z_",
        date.replace('-', ""),
        time.replace(':', ""),
        a = d.account,
        r = d.region
    );
    let suffix = d.key.strip_prefix(&format!("{folder}{name}"));
    let suffix = suffix.and_then(|s| s.strip_suffix(".json.gz"));
    assert!(
        suffix.is_some_and(|s| s.len() == 16 && s.bytes().all(|b| b.is_ascii_alphanumeric())),
        "{} is not {folder}{name}<16 alnum>.json.gz",
        d.key
    );
    assert_eq!(
        d.delivered_at % 300,
        0,
        "{} is delivered at the end of a slot",
        d.key
    );
    let org_ok = org.len() == 12
        && org.starts_with("o-")
        && org[2..]
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    assert!(org_ok, "{org} is not o- and 10 lowercase letters or digits");
}

// ---------------------------------------------------------------------------------------
// The exporter reading the trail from moto: `serve` through the queue (and the bucket's
// backfill), `audit --cloudtrail-s3` straight from the bucket.

use common::http::Server;

type Samples = BTreeMap<(String, BTreeMap<String, String>), f64>;

/// The figures `/metrics` shows, in the truth's shape (`resources`: every resource expected,
/// with or without evidence).
fn truth_from_metrics(samples: &Samples, resources: impl IntoIterator<Item = String>) -> Truth {
    let mut t = Truth {
        resources: resources
            .into_iter()
            .map(|k| (k, Evidence::default()))
            .collect(),
        ..Truth::default()
    };
    for ((name, l), v) in samples {
        let n = *v as u64;
        let get = |k: &str| l.get(k).cloned().unwrap_or_default();
        let resource = || format!("{}/{}/{}", get("namespace"), get("kind"), get("name"));
        match name.as_str() {
            _ if n == 0 => {}
            "ack_drift_cloudtrail_events_total" => {
                t.events += n;
                let key = (
                    get("account"),
                    get("region"),
                    get("service"),
                    get("ack_kind"),
                );
                t.events_by.insert(key, n);
            }
            "ack_drift_cloudtrail_errors_total" => {
                let key = [
                    "account",
                    "region",
                    "service",
                    "event_name",
                    "error_code",
                    "ack_kind",
                ]
                .map(get);
                let [a, r, s, e, c, k] = key;
                t.errors.insert((a, r, s, e, c, k), n);
            }
            "ack_drift_cloudtrail_unattributed_ack_events_total" => {
                let [a, r, k, why] = ["account", "region", "ack_kind", "reason"].map(get);
                t.unattributed.insert((a, r, k, why), n);
            }
            "ack_drift_cloudtrail_cross_account_calls_total" => {
                let key = [
                    "caller_account",
                    "recipient_account",
                    "service",
                    "event_name",
                    "signal",
                ]
                .map(get);
                let [c, r, s, e, sig] = key;
                t.cross_account
                    .insert((c, r, s, e, sig, get("expected") == "true"), n);
            }
            "ack_drift_resource_error_events" => {
                let e = t.resources.entry(resource()).or_default();
                e.error_events
                    .insert((get("account"), get("region"), get("error_code")), n);
            }
            "ack_drift_resource_wrong_account_calls" => {
                let e = t.resources.entry(resource()).or_default();
                e.wrong_account_calls.insert(get("called_account"), n);
            }
            _ => {}
        }
    }
    t
}

fn assert_truth(got: &Truth, want: &Truth) {
    assert_eq!(got.events, want.events, "ack_drift_cloudtrail_events_total");
    assert_same(
        "events by account, region, service, kind",
        &got.events_by,
        &want.events_by,
    );
    assert_same("errors", &got.errors, &want.errors);
    assert_same(
        "unattributed ACK events",
        &got.unattributed,
        &want.unattributed,
    );
    assert_same(
        "cross-account calls",
        &got.cross_account,
        &want.cross_account,
    );
    assert_same("per-resource evidence", &got.resources, &want.resources);
}

/// A config reading the queue (and the bucket, when `backfill`), with a window covering the
/// whole generated span.
fn serve_config(dir: &std::path::Path, queue: &str, format: &str, backfill: bool) -> String {
    // The generated span is 6 h.
    let mut yaml = format!(
        "cloudtrail:\n  window: 7h\n  sqs:\n    queue_url: {queue}\n    format: {format}\n"
    );
    if backfill {
        yaml.push_str(&format!(
            "  s3:\n    bucket: {BUCKET}\n    accounts: auto\n    regions: auto\n"
        ));
    }
    let path = dir.join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    path.to_str().unwrap().to_string()
}

fn start_serve(moto: &Moto, cluster: &std::path::Path, config: &str) -> Server {
    let env: Vec<(String, String)> = moto.env();
    let env: Vec<(&str, String)> = env.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    Server::start_listening_with(
        &["--kube-dir", cluster.to_str().unwrap(), "--config", config],
        &env,
    )
}

fn scrape(server: &Server) -> Samples {
    common::samples(&server.get("/metrics").text())
}

fn total(samples: &Samples, name: &str) -> u64 {
    samples
        .iter()
        .filter(|((n, _), _)| n == name)
        .map(|(_, v)| *v as u64)
        .sum()
}

/// Scrapes until `done` holds (4 minutes at most: moto's SQS is slow with full queues).
fn scrape_until(server: &Server, what: &str, done: impl Fn(&Samples) -> bool) -> Samples {
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let s = scrape(server);
        if done(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "{what} not reached in 240 s; last scrape:\n{}\nlog:\n{}",
            server.get("/metrics").text(),
            server.stderr.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The notifications of the test's queue: each delivery announced in one of the three
/// shapes S3 sends (direct, through SNS, EventBridge), every seventh twice, an `s3:TestEvent`,
/// and the digest (skipped). Returns (good messages, poison messages).
fn announcements(trail: &OrgTrail, objects: &[(String, Vec<u8>)], etags: &[String]) -> Vec<String> {
    let mut out = vec![org_trail::s3_test_event(BUCKET, trail.spec.now)];
    for (i, n) in notifications_of(trail, objects, etags)
        .into_iter()
        .enumerate()
    {
        let d = &trail.deliveries[i];
        let o = ObjectCreated::new(
            BUCKET,
            moto::REGION,
            &objects[i].0,
            objects[i].1.len(),
            &etags[i],
            d.delivered_at,
        );
        let body = match i % 3 {
            0 => n,
            1 => org_trail::sns_notification(
                &n,
                "arn:aws:sns:us-east-1:123456789012:org-trail",
                d.delivered_at,
            ),
            _ => org_trail::eventbridge_object_created(&o, trail.spec.home()),
        };
        if i % 7 == 0 {
            out.push(body.clone());
        }
        out.push(body);
    }
    out
}

/// Three messages the exporter must count and leave on the queue: not JSON, a missing
/// object, a broken gzip (uploaded here).
fn poison(moto: &Moto, trail: &OrgTrail) -> Vec<String> {
    let (broken_key, broken) = org_trail::broken_gzip(trail, "");
    let etag = moto.put_object(BUCKET, &broken_key, broken.clone());
    let at = trail.last_slot_end();
    let missing = ObjectCreated::new(
        BUCKET,
        moto::REGION,
        &org_trail::missing_key(trail, ""),
        100,
        "0",
        at,
    );
    let broken = ObjectCreated::new(BUCKET, moto::REGION, &broken_key, broken.len(), &etag, at);
    vec![
        org_trail::not_json(),
        org_trail::s3_notification(&missing),
        org_trail::s3_notification(&broken),
    ]
}

fn bad_messages(s: &Samples) -> BTreeMap<String, u64> {
    s.iter()
        .filter(|((n, _), _)| n == "ack_drift_exporter_cloudtrail_bad_messages_total")
        .map(|((_, l), v)| (l["reason"].clone(), *v as u64))
        .collect()
}

#[test]
fn serve_reads_every_delivery_the_queue_announces_exactly_once() {
    let trail = org_trail();
    let dir = common::scratch("org-trail-serve");
    trail.write_cluster(&dir.join("cluster"));
    let moto = Moto::start();
    moto.create_bucket(BUCKET);
    let queue = moto.create_queue("org-trail-serve", 30);
    let objects = trail.objects("");
    let etags = moto.put_objects(BUCKET, &objects);
    let (digest_key, digest) = trail.digest("", BUCKET);
    let digest_etag = moto.put_object(BUCKET, &digest_key, digest.clone());
    let mut good = announcements(&trail, &objects, &etags);
    let digest = ObjectCreated::new(
        BUCKET,
        moto::REGION,
        &digest_key,
        digest.len(),
        &digest_etag,
        trail.last_slot_end(),
    );
    good.push(org_trail::s3_notification(&digest));
    let poison = poison(&moto, &trail);
    // Half before the exporter starts, the rest (and the poison) while it runs: late ones.
    let (early, late) = good.split_at(good.len() / 2);
    moto.send_all(&queue, early);
    let config = serve_config(&dir, &queue, "s3_notification", false);
    let server = start_serve(&moto, &dir.join("cluster"), &config);
    server.wait_ready();
    moto.send_all(&queue, late);
    moto.send_all(&queue, &poison);

    let want_deleted = good.len() as u64;
    // Health counters are live; the CloudTrail figures are published a moment later.
    let s = scrape_until(
        &server,
        "every good message deleted, every poison counted, all published",
        |s| {
            total(s, "ack_drift_exporter_sqs_messages_deleted_total") >= want_deleted
                && bad_messages(s).values().sum::<u64>() >= 3
                && total(s, "ack_drift_cloudtrail_events_total") >= trail.truth.events
        },
    );
    assert_eq!(
        total(&s, "ack_drift_exporter_sqs_messages_deleted_total"),
        want_deleted,
        "each good message deleted once"
    );
    assert_eq!(
        bad_messages(&s),
        BTreeMap::from([
            ("broken_object".into(), 1),
            ("missing_object".into(), 1),
            ("not_json".into(), 1)
        ])
    );
    assert_eq!(
        total(&s, "ack_drift_exporter_s3_objects_read_total"),
        (trail.deliveries.len() + trail.deliveries.len().div_ceil(7) + 1) as u64,
        "one GetObject per announcement of a delivery (repeats included) and the broken one; never the digest"
    );
    let repeats: usize = trail.deliveries.iter().step_by(7).map(|d| d.records).sum();
    assert_eq!(
        total(&s, "ack_drift_exporter_cloudtrail_duplicate_events_total"),
        repeats as u64,
        "a repeated announcement only counts duplicates"
    );
    assert_truth(
        &truth_from_metrics(&s, trail.groups.iter().map(|g| g.key())),
        &trail.truth,
    );
    assert_eq!(
        s[&(
            "ack_drift_exporter_source_up".to_string(),
            BTreeMap::from([("source".to_string(), "cloudtrail_sqs".to_string())])
        )],
        1.0
    );
    // The poison stays on the queue, hidden (for the redrive policy, not a tight loop).
    wait_for_counts(&moto, &queue, (0, 3));
}

#[test]
fn a_killed_exporter_restarts_from_the_bucket_and_loses_nothing() {
    let trail = org_trail();
    let dir = common::scratch("org-trail-restart");
    trail.write_cluster(&dir.join("cluster"));
    let moto = Moto::start();
    moto.create_bucket(BUCKET);
    // A short visibility timeout: what the killed process held comes back quickly.
    let queue = moto.create_queue("org-trail-restart", 5);
    let objects = trail.objects("");
    let etags = moto.put_objects(BUCKET, &objects);
    moto.send_all(&queue, &notifications_of(&trail, &objects, &etags));
    let config = serve_config(&dir, &queue, "s3_notification", true);

    let first = start_serve(&moto, &dir.join("cluster"), &config);
    let third = objects.len() as u64 / 3;
    scrape_until(&first, "a third of the messages deleted", |s| {
        total(s, "ack_drift_exporter_sqs_messages_deleted_total") >= third
    });
    let mut first = first;
    first.child.kill().expect("SIGKILL");
    first.child.wait().unwrap();

    let second = start_serve(&moto, &dir.join("cluster"), &config);
    second.wait_ready();
    let ready = scrape(&second);
    // Every delivery is in the window: the backfill alone holds every event, and /readyz
    // says ready only once it is published.
    assert_eq!(
        total(&ready, "ack_drift_cloudtrail_events_total"),
        trail.truth.events,
        "ready only after the backfill"
    );
    assert!(total(&ready, "ack_drift_exporter_s3_objects_read_total") >= objects.len() as u64);
    let s = scrape_until(&second, "the queue drained and everything published", |s| {
        total(s, "ack_drift_cloudtrail_events_total") >= trail.truth.events
            && moto.queue_counts(&queue) == (0, 0)
    });
    assert_truth(
        &truth_from_metrics(&s, trail.groups.iter().map(|g| g.key())),
        &trail.truth,
    );
    assert!(
        total(&s, "ack_drift_exporter_cloudtrail_duplicate_events_total") > 0,
        "the messages left after the restart announce what the backfill read"
    );
}

/// `audit` with the moto environment.
fn audit_with(moto: &Moto, args: &[&str]) -> Value {
    let out = std::process::Command::new(common::bin())
        .arg("audit")
        .args(args)
        .args(["--output", "json"])
        .envs(moto.env())
        .output()
        .expect("audit runs");
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "audit {args:?}: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("audit JSON")
}

fn rfc3339(t: i64) -> String {
    org_trail::millis_time(t).replace(".000", "")
}

#[test]
fn audit_from_the_bucket_reports_what_the_downloaded_files_report() {
    let trail = org_trail();
    let dir = common::scratch("org-trail-audit-s3");
    let cluster = dir.join("cluster");
    trail.write_cluster(&cluster);
    trail.write_deliveries(&dir.join("trail"), "trail/");
    let moto = Moto::start();
    moto.create_bucket(BUCKET);
    let objects = trail.objects("trail/");
    moto.put_objects(BUCKET, &objects);
    let (digest_key, digest) = trail.digest("trail/", BUCKET);
    moto.put_object(BUCKET, &digest_key, digest);
    let cluster = cluster.to_str().unwrap();
    let url = format!("s3://{BUCKET}/trail");
    let (from, to) = (trail.spec.now - trail.spec.span, trail.spec.now + 1);
    let range = ["--from", &rfc3339(from), "--to", &rfc3339(to)];

    let files = audit_with(
        &moto,
        &[
            "--kube-dir",
            cluster,
            "--cloudtrail-dir",
            dir.join("trail").to_str().unwrap(),
        ],
    );
    let bucket = audit_with(
        &moto,
        &[
            &["--kube-dir", cluster, "--cloudtrail-s3", &url][..],
            &range,
        ]
        .concat(),
    );
    assert_eq!(
        bucket, files,
        "the same report from S3 as from the downloaded files"
    );
    assert_eq!(bucket["cloudtrail"]["events"], trail.truth.events);

    // Filters: one account, one region, half the time.
    let account = &trail.spec.accounts[1];
    let region = &trail.spec.regions[0];
    let mid = trail.spec.now - trail.spec.span / 2;
    let narrow = audit_with(
        &moto,
        &[
            "--kube-dir",
            cluster,
            "--cloudtrail-s3",
            &url,
            "--from",
            &rfc3339(mid),
            "--to",
            &rfc3339(to),
            "--account",
            account,
            "--region",
            region,
        ],
    );
    let in_range = |r: &Value| {
        let t = r["eventTime"].as_str().unwrap();
        let t = ack_drift_exporter::model::time::parse_rfc3339(t).unwrap();
        t >= mid && t < to
    };
    let want = trail
        .deliveries
        .iter()
        .filter(|d| &d.account == account && &d.region == region)
        .flat_map(|d| delivery_records(&d.body))
        .filter(in_range)
        .count();
    assert_eq!(
        narrow["cloudtrail"]["events"], want as u64,
        "only the account, region and range asked for"
    );
}

/// The records of a gzipped delivery.
fn delivery_records(gz: &[u8]) -> Vec<Value> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(gz)
        .read_to_string(&mut text)
        .unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    v["Records"].as_array().unwrap().clone()
}

/// The seed incident's CloudTrail records (its S3 deliveries).
fn seed_records() -> Vec<Value> {
    let root = common::fixture("scenarios/seed-incident/cloudtrail");
    let mut files = Vec::new();
    let mut dirs = vec![root];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(d).unwrap().map(Result::unwrap) {
            if e.file_type().unwrap().is_dir() {
                dirs.push(e.path());
            } else {
                files.push(e.path());
            }
        }
    }
    files.sort();
    files
        .iter()
        .flat_map(|f| delivery_records(&std::fs::read(f).unwrap()))
        .collect()
}

#[test]
fn eventbridge_api_calls_give_the_seed_incidents_facts() {
    let dir = common::scratch("org-trail-eventbridge");
    let seed = common::fixture("scenarios/seed-incident");
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(seed.join("expected.json")).unwrap())
            .unwrap();
    let moto = Moto::start();
    let queue = moto.create_queue("org-trail-eventbridge", 30);
    let records = seed_records();
    let mut bodies: Vec<String> = records
        .iter()
        .map(org_trail::eventbridge_api_call)
        .collect();
    let sign_in = serde_json::json!({"version": "0", "id": "x", "detail-type": "AWS Console Sign In via CloudTrail", "source": "aws.signin", "detail": {}});
    bodies.push(sign_in.to_string());
    moto.send_all(&queue, &bodies);
    // The seed's records are from January 2024: a window reaching back that far.
    let config = dir.join("config.yaml");
    let seed_config = std::fs::read_to_string(seed.join("config.yaml")).unwrap();
    std::fs::write(
        &config,
        format!("{seed_config}cloudtrail:\n  window: 2000d\n  sqs:\n    queue_url: {queue}\n    format: eventbridge\n"),
    )
    .unwrap();
    let server = start_serve(&moto, &seed.join("cluster"), config.to_str().unwrap());
    let s = scrape_until(&server, "every event published", |s| {
        total(s, "ack_drift_exporter_sqs_messages_deleted_total") >= bodies.len() as u64
            && total(s, "ack_drift_cloudtrail_events_total") >= records.len() as u64
    });
    assert_eq!(
        total(&s, "ack_drift_cloudtrail_events_total"),
        records.len() as u64
    );
    assert_eq!(
        bad_messages(&s),
        BTreeMap::from([("other_detail_type".into(), 1)]),
        "counted and dropped"
    );
    assert_eq!(
        total(&s, "ack_drift_exporter_s3_objects_read_total"),
        0,
        "the record is in the message"
    );
    let got = truth_from_metrics(&s, []);
    for (key, facts) in expected["resources"].as_object().unwrap() {
        let evidence = got.resources.get(key).cloned().unwrap_or_default();
        if let Some(errors) = facts.get("error_events") {
            let want: BTreeMap<_, _> = errors
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    (
                        (text(e, "account"), text(e, "region"), text(e, "error_code")),
                        count(e),
                    )
                })
                .collect();
            assert_eq!(evidence.error_events, want, "{key} error_events");
        }
        if let Some(calls) = facts.get("wrong_account_calls") {
            let want: BTreeMap<_, _> = calls
                .as_array()
                .unwrap()
                .iter()
                .map(|c| (text(c, "account"), count(c)))
                .collect();
            assert_eq!(
                evidence.wrong_account_calls, want,
                "{key} wrong_account_calls"
            );
        }
        if let Some(drift) = facts.get("account_drift").and_then(Value::as_bool) {
            let [ns, kind, name] =
                <[&str; 3]>::try_from(key.split('/').collect::<Vec<_>>()).unwrap();
            let drifted = s.iter().any(|((n, l), v)| {
                n == "ack_drift_resource_account_drift"
                    && l.get("namespace").map(String::as_str) == Some(ns)
                    && l.get("kind").map(String::as_str) == Some(kind)
                    && l.get("name").map(String::as_str) == Some(name)
                    && *v == 1.0
            });
            assert_eq!(drifted, drift, "{key} account_drift");
        }
    }
    wait_for_counts(&moto, &queue, (0, 0));
}
