//! Live CloudTrail under load: events arrive at 80 % of what one account and region can read
//! (2 requests/second × 50 events), a tenth of them delivered late; the release binary polls
//! the in-repo fake LookupEvents. Measures requests spent against the floor ⌈events / 50⌉ and
//! the lag the exporter reports. Prints numbers; asserts nothing.
//!
//! Run: `cargo bench --bench lookup_events` (overlap 60 s: each range read once, after its
//! allowance), or `OVERLAP=120 cargo bench --bench lookup_events` (read fresh, then again).

#[path = "../tests/support/fake_cloudtrail.rs"]
mod fake_cloudtrail;

#[path = "support/scrape_client.rs"]
mod scrape_client;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fake_cloudtrail::{FakeCloudTrail, FakeEvent, now, rfc3339};
use scrape_client::get;
use serde_json::json;

const ACCOUNT: &str = "111111111111";
const REGION: &str = "eu-west-2";
/// 80 % of the ceiling: 0.8 × 2 requests/s × 50 events.
const RATE: usize = 80;
const SECONDS: i64 = 180;
const POLL: u64 = 10;

fn gauge(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn counter_sum(body: &str, name: &str) -> f64 {
    body.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn main() {
    let overlap: i64 = std::env::var("OVERLAP")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let bin = scrape_client::release_binary();
    let dir = root.join("target/bench-lookup-events");
    std::fs::create_dir_all(dir.join("cluster")).unwrap();
    std::fs::write(
        dir.join("cluster/ns.yaml"),
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: apps\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("config.yaml"),
        format!(
            "controllers:\n  ec2:\n    default_account: \"{ACCOUNT}\"\n    default_region: {REGION}\ncloudtrail:\n  poll_interval: {POLL}s\n  window: 15m\n  overlap: {overlap}s\n  event_sources: [ec2.amazonaws.com]\n  accounts:\n  - account: \"{ACCOUNT}\"\n    role_arn: arn:aws:iam::{ACCOUNT}:role/reader\n    regions: [{REGION}]\n"
        ),
    )
    .unwrap();

    let fake = FakeCloudTrail::start();
    let t0 = now() as i64;
    let mut events = Vec::new();
    for s in 0..SECONDS {
        for i in 0..RATE {
            let k = s as usize * RATE + i;
            let time = t0 + s;
            // A tenth arrive late, by up to 80 % of the overlap; the rest within 5 s.
            let delay = if k.is_multiple_of(10) {
                (k * 7919 % (overlap as usize * 8 / 10)) as f64
            } else {
                (k % 5) as f64
            };
            let record = json!({
                "eventVersion": "1.09", "eventTime": "", "eventSource": "ec2.amazonaws.com",
                "eventName": "DescribeSecurityGroups", "awsRegion": REGION,
                "userIdentity": {"type": "AssumedRole", "accountId": ACCOUNT},
                "userAgent": "aws-cli/2.15", "requestParameters": {},
                "eventID": format!("{k:08x}-0000-4000-8000-{k:012x}"), "recipientAccountId": ACCOUNT,
            });
            let mut record = record;
            record["eventTime"] = json!(rfc3339(time));
            events.push(FakeEvent {
                account: ACCOUNT.into(),
                region: REGION.into(),
                event_id: record["eventID"].as_str().unwrap().into(),
                event_source: "ec2.amazonaws.com".into(),
                event_name: "DescribeSecurityGroups".into(),
                event_time: time,
                visible_at: time as f64 + delay,
                record,
            });
        }
    }
    let total = events.len();
    fake.add(events);

    let port = 19_878;
    let mut child = Command::new(&bin)
        .args(["serve", "--kube-dir"])
        .arg(dir.join("cluster"))
        .arg("--config")
        .arg(dir.join("config.yaml"))
        .args(["--web.listen-address", &format!("127.0.0.1:{port}")])
        .envs(fake.env())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let mut lags = Vec::new();
    let mut counted = 0.0;
    // Lag while events arrive; then until every event is counted (or long after it should be).
    let arriving = Duration::from_secs(SECONDS as u64);
    let give_up = Duration::from_secs(SECONDS as u64 + 3 * overlap as u64 + 10 * POLL);
    while started.elapsed() < give_up && (counted as usize) < total {
        std::thread::sleep(Duration::from_secs(1));
        let Ok((200, body)) = get(port, "/metrics") else {
            continue;
        };
        let body = String::from_utf8(body).unwrap();
        counted = counter_sum(&body, "ack_drift_cloudtrail_events_total{");
        if (Duration::from_secs(20)..arriving).contains(&started.elapsed())
            && let Some(lag) = gauge(&body, "ack_drift_exporter_cloudtrail_lag_seconds{")
        {
            lags.push(lag);
        }
    }
    let all_counted_after = started.elapsed();
    let _ = child.kill();
    let _ = child.wait();
    let stats = fake.stats();
    let floor = total.div_ceil(50);
    let polls = all_counted_after.as_secs() / POLL;
    lags.sort_by(f64::total_cmp);
    let p = |q: f64| lags[((lags.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "\n{RATE} events/s for {SECONDS} s (80 % of one account-region's ceiling), a tenth late by up to {} s; poll {POLL} s, overlap {overlap} s\n",
        overlap * 8 / 10
    );
    println!("| measure | value |\n|---|---|");
    println!(
        "| events / counted by the exporter | {total} / {counted} (after {:.0} s) |",
        all_counted_after.as_secs_f64()
    );
    println!(
        "| LookupEvents requests (all attempts) | {} ({} throttled by the service) |",
        stats.lookups, stats.throttled_rate
    );
    println!("| floor ⌈events / 50⌉ | {floor} |");
    println!(
        "| requests / floor | {:.2} (target read once ≤ 1.05 + {polls} polls / {floor} = {:.2}, two passes ≤ 2.05) |",
        stats.lookups as f64 / floor as f64,
        1.05 + polls as f64 / floor as f64
    );
    println!(
        "| events returned / distinct events | {:.2} |",
        stats.events_returned as f64 / total as f64
    );
    println!(
        "| lag p50 / max (s) | {:.0} / {:.0} (target ≤ {}) |",
        p(0.5),
        p(1.0),
        POLL + 60
    );
    let busiest = stats
        .arrivals
        .values()
        .map(|a| fake_cloudtrail::busiest_second(a))
        .max()
        .unwrap_or(0);
    println!("| most requests in any second | {busiest} |");
}
