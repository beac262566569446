//! The organisation trail end to end: a generated trail (3 accounts × 2 regions, ACK records
//! tied to a cluster of 300 SecurityGroups) in moto's S3, one notification per delivery on
//! moto's SQS, the release binary consuming them. Beside it, on the same files: `audit
//! --cloudtrail-dir` (the parser alone), the bucket's backfill at start, and a plain SDK read of
//! every object from moto (the emulator's own floor). Prints numbers; asserts only that every
//! figure came out exact.
//!
//! Run: `cargo bench --bench org_trail` (`RECORDS=…` to change the 300 000).

#[path = "../tests/support/moto.rs"]
mod moto;
#[path = "../tests/support/org_trail.rs"]
mod org_trail;
#[path = "support/scrape_client.rs"]
mod scrape_client;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use moto::Moto;
use org_trail::{ObjectCreated, OrgSpec, OrgTrail};

const BUCKET: &str = "org-trail-bench";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The sum of a family's samples in a classic-text scrape.
fn sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with('{') || r.starts_with(' '))
        })
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

fn metrics(port: u16) -> String {
    let (_, body) = scrape_client::get(port, "/metrics").unwrap_or_default();
    String::from_utf8_lossy(&body).into_owned()
}

fn serve(bin: &Path, moto: &Moto, cluster: &Path, config: &Path, port: u16) -> Child {
    Command::new(bin)
        .arg("serve")
        .arg("--kube-dir")
        .arg(cluster)
        .arg("--config")
        .arg(config)
        .args(["--web.listen-address", &format!("127.0.0.1:{port}")])
        .envs(moto.env())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the exporter starts")
}

/// Polls /metrics until `done` (10 minutes at most); returns the elapsed time and the text.
fn until(port: u16, started: Instant, done: impl Fn(&str) -> bool) -> (Duration, String) {
    loop {
        let text = metrics(port);
        if done(&text) {
            return (started.elapsed(), text);
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "not done in 10 minutes"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn write_config(dir: &Path, queue: &str, backfill: bool) -> PathBuf {
    let mut yaml = format!("cloudtrail:\n  window: 2h\n  sqs:\n    queue_url: {queue}\n");
    if backfill {
        yaml.push_str(&format!("  s3:\n    bucket: {BUCKET}\n"));
    }
    let path = dir.join(if backfill {
        "backfill.yaml"
    } else {
        "queue.yaml"
    });
    std::fs::write(&path, yaml).unwrap();
    path
}

struct Figures {
    records: u64,
    objects: usize,
    mib: f64,
}

fn report(what: &str, f: &Figures, took: Duration, extra: &str) -> f64 {
    let s = took.as_secs_f64();
    let rate = f.records as f64 / s;
    println!(
        "{what}: {:.2} s, {:.0} records/s, {:.1} objects/s, {:.1} MiB/s (compressed){extra}",
        s,
        rate,
        f.objects as f64 / s,
        f.mib / s
    );
    rate
}

fn main() {
    let records: usize = std::env::var("RECORDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(300_000);
    let bin = scrape_client::release_binary();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-org-trail");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut spec = OrgSpec::new(3, 2, records, now(), 18);
    spec.span = 3600;
    let trail = OrgTrail::generate(spec);
    let cluster = dir.join("cluster");
    trail.write_cluster(&cluster);
    trail.write_deliveries(&dir.join("trail"), "");
    let objects = trail.objects("");
    let bytes: usize = objects.iter().map(|(_, b)| b.len()).sum();
    let f = Figures {
        records: trail.truth.events,
        objects: objects.len(),
        mib: bytes as f64 / (1024.0 * 1024.0),
    };
    println!(
        "{} records in {} deliveries, {:.1} MiB gzipped (3 accounts × 2 regions, 300 SecurityGroups)",
        f.records, f.objects, f.mib
    );

    let dir_rate = audit_files(&bin, &cluster, &dir.join("trail"), &f);
    let moto = Moto::start();
    moto.create_bucket(BUCKET);
    let queue = moto.create_queue("org-trail-bench", 60);
    let etags = moto.put_objects(BUCKET, &objects);
    moto_floor(&moto, &objects, &f);
    let queue_rate = through_the_queue(&bin, &moto, &trail, &objects, &etags, &queue, &dir, &f);
    println!(
        "queue / --cloudtrail-dir throughput: {:.3}",
        queue_rate / dir_rate
    );
    let backfill_rate = backfill(&bin, &moto, &queue, &dir, &f);
    println!(
        "backfill / --cloudtrail-dir throughput: {:.3}",
        backfill_rate / dir_rate
    );
}

/// `audit --cloudtrail-dir` on the same files, as the process's wall time.
fn audit_files(bin: &Path, cluster: &Path, trail: &Path, f: &Figures) -> f64 {
    let started = Instant::now();
    let out = Command::new(bin)
        .args(["audit", "--output", "json", "--kube-dir"])
        .arg(cluster)
        .arg("--cloudtrail-dir")
        .arg(trail)
        .output()
        .unwrap();
    let took = started.elapsed();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("audit JSON");
    assert_eq!(
        v["cloudtrail"]["events"], f.records,
        "the audit counts every record"
    );
    report("audit --cloudtrail-dir (the files on disk)", f, took, "")
}

/// Every object read from moto with the SDK, 4 at a time and nothing else: what moto itself
/// takes.
fn moto_floor(moto: &Moto, objects: &[(String, Vec<u8>)], f: &Figures) {
    let started = Instant::now();
    let s3 = moto.s3();
    moto.block_on(async {
        use futures_util::StreamExt;
        let reads = futures_util::stream::iter(objects.iter().map(|(k, _)| k.clone()))
            .map(|k| {
                let s3 = s3.clone();
                async move {
                    let o = s3.get_object().bucket(BUCKET).key(k).send().await.unwrap();
                    o.body.collect().await.unwrap().into_bytes().len()
                }
            })
            .buffered(4);
        let total: usize = reads.collect::<Vec<_>>().await.iter().sum();
        assert_eq!(total as f64, f.mib * 1024.0 * 1024.0);
    });
    report(
        "moto alone: GetObject of every object, 4 at a time",
        f,
        started.elapsed(),
        "",
    );
}

#[allow(clippy::too_many_arguments)]
fn through_the_queue(
    bin: &Path,
    moto: &Moto,
    trail: &OrgTrail,
    objects: &[(String, Vec<u8>)],
    etags: &[String],
    queue: &str,
    dir: &Path,
    f: &Figures,
) -> f64 {
    let port = free_port();
    let config = write_config(dir, queue, false);
    let mut child = serve(bin, moto, &dir.join("cluster"), &config, port);
    scrape_client::wait_ready(port);
    let notifications: Vec<String> = objects
        .iter()
        .zip(etags)
        .zip(&trail.deliveries)
        .map(|(((key, body), etag), d)| {
            let o = ObjectCreated::new(BUCKET, moto::REGION, key, body.len(), etag, d.delivered_at);
            org_trail::s3_notification(&o)
        })
        .collect();
    let started = Instant::now();
    moto.send_all(queue, &notifications);
    let sent = started.elapsed();
    let n = objects.len() as f64;
    let (took, text) = until(port, started, |t| {
        sum(t, "ack_drift_exporter_sqs_messages_deleted_total") >= n
            && sum(t, "ack_drift_cloudtrail_events_total") >= f.records as f64
    });
    let hwm = scrape_client::proc_mib(child.id(), "VmHWM:");
    let rss = scrape_client::proc_mib(child.id(), "VmRSS:");
    let op = |o: &str| {
        sum(
            &text,
            &format!(
                "ack_drift_exporter_aws_requests_total{{service=\"{}\",operation=\"{o}\"}}",
                if o == "GetObject" { "s3" } else { "sqs" }
            ),
        )
    };
    let extra = format!(
        ", {:.1} messages/s (sending them took {:.2} s); RSS {rss:.0} MiB, peak {hwm:.0} MiB; GetObject per object {:.2}; receives {}, DeleteMessageBatch {}",
        n / took.as_secs_f64(),
        sent.as_secs_f64(),
        op("GetObject") / n,
        op("ReceiveMessage"),
        op("DeleteMessageBatch"),
    );
    let rate = report(
        "serve through SQS (send, receive, GetObject, ingest, delete, publish)",
        f,
        took,
        &extra,
    );
    assert_eq!(
        sum(&text, "ack_drift_exporter_cloudtrail_bad_messages_total"),
        0.0
    );
    let _ = child.kill();
    let _ = child.wait();
    rate
}

fn backfill(bin: &Path, moto: &Moto, queue: &str, dir: &Path, f: &Figures) -> f64 {
    let port = free_port();
    let config = write_config(dir, queue, true);
    let started = Instant::now();
    let mut child = serve(bin, moto, &dir.join("cluster"), &config, port);
    scrape_client::wait_ready(port);
    let took = started.elapsed();
    let text = metrics(port);
    assert_eq!(
        sum(&text, "ack_drift_cloudtrail_events_total"),
        f.records as f64,
        "ready after the whole backfill"
    );
    let hwm = scrape_client::proc_mib(child.id(), "VmHWM:");
    let extra = format!(
        ", ListObjectsV2 {}, peak RSS {hwm:.0} MiB",
        sum(
            &text,
            "ack_drift_exporter_aws_requests_total{service=\"s3\",operation=\"ListObjectsV2\"}"
        )
    );
    let rate = report(
        "serve's backfill from the bucket at start (start to /readyz)",
        f,
        took,
        &extra,
    );
    let _ = child.kill();
    let _ = child.wait();
    rate
}
