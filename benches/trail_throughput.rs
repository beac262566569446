//! CloudTrail throughput: records per second through parse + classify + attribute, on the
//! real public datasets (tests/fixtures/cloudtrail/real) plus the demo's ACK records,
//! replicated with fresh eventIDs to a quarter and a full gigabyte; next to `jq` counting only
//! error codes over the same files. Prints numbers; asserts nothing.
//!
//! Run: `cargo bench --bench trail_throughput` (the corpus is written once under target/).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use ack_drift_exporter::config::Config;
use ack_drift_exporter::evaluate::{self, cloudtrail};
use ack_drift_exporter::source::{kube_dir, trail_dir};
use serde_json::Value;

const MIB: u64 = 1024 * 1024;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every record of the real datasets and the demo, as parsed JSON.
fn source_records() -> Vec<Value> {
    let mut out = Vec::new();
    let mut stack = vec![
        root().join("tests/fixtures/cloudtrail/real"),
        root().join("examples/demo/cloudtrail"),
    ];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let name = p.to_string_lossy().to_string();
            let text = if name.ends_with(".json.gz") {
                let mut s = String::new();
                flate2::read::GzDecoder::new(std::fs::File::open(&p).unwrap())
                    .read_to_string(&mut s)
                    .unwrap();
                s
            } else if name.ends_with(".json") {
                std::fs::read_to_string(&p).unwrap()
            } else {
                continue;
            };
            match serde_json::from_str::<Value>(&text).unwrap() {
                Value::Array(a) => out.extend(a),
                Value::Object(mut m) => {
                    if let Some(Value::Array(a)) = m.remove("Records") {
                        out.extend(a)
                    }
                }
                _ => {}
            }
        }
    }
    out
}

/// Writes S3-delivery-shaped files of ~4 MiB under `dir` until `bytes` are written; every
/// copy gets fresh eventIDs (and sharedEventIDs) so nothing is a duplicate.
fn build_corpus(dir: &Path, bytes: u64, records: &[Value]) {
    let marker = dir.join(".complete");
    if marker.exists() {
        return;
    }
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let mut written = 0u64;
    let mut copy = 0u64;
    let mut file_no = 0u64;
    let mut batch: Vec<Value> = Vec::new();
    let mut batch_bytes = 0usize;
    while written < bytes {
        for r in records {
            let mut r = r.clone();
            for key in ["eventID", "sharedEventID"] {
                if let Some(Value::String(id)) = r.get(key) {
                    let tail = id.get(8..).unwrap_or("").to_string();
                    r[key] = Value::String(format!("{copy:08x}{tail}"));
                }
            }
            batch_bytes += 900;
            batch.push(r);
            if batch_bytes >= 4 * MIB as usize {
                written += flush(dir, file_no, &mut batch);
                file_no += 1;
                batch_bytes = 0;
            }
        }
        copy += 1;
    }
    if !batch.is_empty() {
        flush(dir, file_no, &mut batch);
    }
    std::fs::write(marker, b"").unwrap();
}

fn flush(dir: &Path, n: u64, batch: &mut Vec<Value>) -> u64 {
    let sub = dir.join(format!("{:03}", n / 100));
    std::fs::create_dir_all(&sub).unwrap();
    let body =
        serde_json::to_vec(&serde_json::json!({ "Records": std::mem::take(batch) })).unwrap();
    std::fs::write(
        sub.join(format!("123456789012_CloudTrail_us-east-1_{n:06}.json")),
        &body,
    )
    .unwrap();
    body.len() as u64
}

fn dir_bytes(dir: &Path) -> (u64, usize) {
    let mut total = 0;
    let mut files = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "json") {
                total += std::fs::metadata(&p).unwrap().len();
                files += 1;
            }
        }
    }
    (total, files)
}

/// Peak resident set size of this process so far (VmHWM), in MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn run_pipeline(corpus: &Path) {
    let (bytes, files) = dir_bytes(corpus);
    let kube = kube_dir::read_kube_dir(&root().join("examples/demo/cluster")).unwrap();
    let config = Config::load(&root().join("examples/demo/config.yaml")).unwrap();
    let evaluation = evaluate::evaluate(&kube, &config);
    let start = Instant::now();
    let mut tally = ack_drift_exporter::state::trail::TrailTally::default();
    let report = trail_dir::read_trail_dir(corpus, &mut |r| {
        tally.ingest(r);
    })
    .unwrap();
    let evidence = cloudtrail::evidence(
        &tally,
        &kube,
        &evaluation,
        &config.cloudtrail.identifiers,
        None,
    );
    let secs = start.elapsed().as_secs_f64();
    let errors: u64 = tally.errors_by.values().sum();
    let attributed: u64 = evidence
        .resources
        .values()
        .flat_map(|e| e.error_events.values())
        .sum();
    println!(
        "ack-drift-exporter  {:>6.0} MiB {files:>5} files  {:>9} records  {:>6.2} s  {:>9.0} records/s  {:>6.1} MiB/s  errors {errors}  attributed error events {attributed}  ACK calls {}  parse errors {}  peak RSS {:.0} MiB",
        bytes as f64 / MIB as f64,
        report.records,
        secs,
        report.records as f64 / secs,
        bytes as f64 / MIB as f64 / secs,
        tally.ack_calls.len(),
        report.errors.len(),
        peak_rss_mib()
    );
}

fn run_jq(corpus: &Path) {
    let (bytes, _) = dir_bytes(corpus);
    if Command::new("jq").arg("--version").output().is_err() {
        println!("jq                  not installed; skipped");
        return;
    }
    let script = format!(
        "find '{}' -name '*.json' -print0 | xargs -0 jq -r '(.Records? // .)[] | .errorCode // empty' | sort | uniq -c | awk '{{s+=$1}} END {{print s}}'",
        corpus.display()
    );
    let start = Instant::now();
    let out = Command::new("sh").arg("-c").arg(&script).output().unwrap();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "jq (error codes)    {:>6.0} MiB  {:>6.2} s  {:>6.1} MiB/s  errors {}",
        bytes as f64 / MIB as f64,
        secs,
        bytes as f64 / MIB as f64 / secs,
        String::from_utf8_lossy(&out.stdout).trim()
    );
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let records = source_records();
    let base = root().join("target/bench-corpus");
    let quarter = base.join("quarter");
    let full = base.join("full");
    build_corpus(&quarter, 256 * MIB, &records);
    build_corpus(&full, 1024 * MIB, &records);
    println!(
        "machine: {} cores, {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/cpuinfo")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("model name\t: "))
            .unwrap_or("unknown CPU")
    );
    println!(
        "peak RSS before the runs (the benchmark's own copy of {} source records): {:.0} MiB",
        records.len(),
        peak_rss_mib()
    );
    run_pipeline(&quarter);
    run_pipeline(&full);
    run_jq(&full);
}
