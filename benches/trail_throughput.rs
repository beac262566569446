//! CloudTrail throughput: records per second through read + parse + classify + de-duplicate +
//! attribute, on the real public datasets (tests/fixtures/cloudtrail/real) plus the demo's ACK
//! records, replicated with fresh eventIDs to a gigabyte of S3-delivery files, once plain and
//! once gzipped as S3 writes them (~5 MB per `.json.gz`). In the same run, on the same files:
//! `jq` and DuckDB counting errors by account and normalised code (their counts are checked
//! against the exporter's), and the physical references (reading the plain files, inflating the
//! gz files with GNU `zcat` and in-process). The exporter and the references run three times
//! and the fastest counts; prints numbers and ratios; asserts nothing.
//!
//! Run: `cargo bench --bench trail_throughput` (the corpora are written once under target/).
//! Peers, when installed: `jq` and `zcat` (Debian), DuckDB (`pip install duckdb`).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use ack_drift_exporter::config::Config;
use ack_drift_exporter::evaluate::{self, cloudtrail};
use ack_drift_exporter::source::{kube_dir, trail_dir};
use serde_json::Value;

const MIB: u64 = 1024 * 1024;
/// Plain files joined into one gz delivery: ~5 MB compressed, as S3 deliveries of a busy
/// account are.
const PLAIN_PER_GZ: usize = 9;

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

/// Writes S3-delivery-shaped files of ~5.6 MB under `dir` until `bytes` are written; every
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

/// The gz corpus: the plain corpus's records, in order, [`PLAIN_PER_GZ`] files to a delivery.
fn build_gz_corpus(plain: &Path, dir: &Path) {
    let marker = dir.join(".complete");
    if marker.exists() {
        return;
    }
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    for (n, group) in corpus_files(plain).chunks(PLAIN_PER_GZ).enumerate() {
        let name = format!("123456789012_CloudTrail_us-east-1_{n:06}.json.gz");
        let file = std::fs::File::create(dir.join(name)).unwrap();
        let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
        gz.write_all(b"{\"Records\":[").unwrap();
        for (i, path) in group.iter().enumerate() {
            let body = std::fs::read(path).unwrap();
            // Every plain file is `{"Records":[...]}` as serde_json writes it.
            let inner = &body[b"{\"Records\":[".len()..body.len() - b"]}".len()];
            if i > 0 {
                gz.write_all(b",").unwrap();
            }
            gz.write_all(inner).unwrap();
        }
        gz.write_all(b"]}").unwrap();
        gz.finish().unwrap();
    }
    std::fs::write(marker, b"").unwrap();
}

/// The trail files under `dir`, sorted.
fn corpus_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(".json")
                || p.to_string_lossy().ends_with(".json.gz")
            {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// A corpus on disk.
struct Corpus {
    dir: PathBuf,
    gz: bool,
    bytes: u64,
    files: usize,
}

impl Corpus {
    fn new(dir: PathBuf, gz: bool) -> Corpus {
        let files = corpus_files(&dir);
        let bytes = files
            .iter()
            .map(|p| std::fs::metadata(p).unwrap().len())
            .sum();
        Corpus {
            dir,
            gz,
            bytes,
            files: files.len(),
        }
    }

    fn name(&self) -> String {
        let kind = if self.gz { "gz" } else { "plain" };
        format!("{kind} {:.0} MiB", self.bytes as f64 / MIB as f64)
    }

    fn glob(&self) -> String {
        let ext = if self.gz { "json.gz" } else { "json" };
        format!("{}/**/*.{ext}", self.dir.display())
    }
}

/// Errors by (account, normalised code): what every contender counts.
type ErrorCounts = BTreeMap<String, u64>;

fn count_key(account: &str, code: &str) -> String {
    format!("{account}\t{code}")
}

/// One contender's run over one corpus.
struct Run {
    who: String,
    corpus: String,
    secs: f64,
    records: Option<u64>,
    counts: Option<ErrorCounts>,
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

/// The library's pipeline, as `audit` runs it, with `readers` files read at once.
fn run_exporter(corpus: &Corpus, readers: usize) -> Run {
    let kube = kube_dir::read_kube_dir(&root().join("examples/demo/cluster")).unwrap();
    let config = Config::load(&root().join("examples/demo/config.yaml")).unwrap();
    let evaluation = evaluate::evaluate(&kube, &config);
    let start = Instant::now();
    let mut tally = ack_drift_exporter::state::trail::TrailTally::default();
    let report = trail_dir::read_trail_dir_with(&corpus.dir, readers, &mut |r| {
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
    let mut counts = ErrorCounts::new();
    for (key, n) in &tally.errors_by {
        *counts
            .entry(count_key(&key.account, &key.error_code))
            .or_default() += n;
    }
    let attributed: u64 = evidence
        .resources
        .values()
        .flat_map(|e| e.error_events.values())
        .sum();
    println!(
        "  exporter, {readers} reader(s), {}: attributed error events {attributed}, ACK calls {}, parse errors {}, peak RSS so far {:.0} MiB",
        corpus.name(),
        tally.ack_calls.len(),
        report.errors.len(),
        peak_rss_mib()
    );
    Run {
        who: format!("ack-drift-exporter, {readers} reader(s)"),
        corpus: corpus.name(),
        secs,
        records: Some(report.records),
        counts: Some(counts),
    }
}

/// The whole `audit` command (both cores), wall time; exit 1 means drift was found.
fn run_audit(corpus: &Corpus) -> Run {
    let start = Instant::now();
    let status = Command::new(env!("CARGO_BIN_EXE_ack-drift-exporter"))
        .arg("audit")
        .arg("--kube-dir")
        .arg(root().join("examples/demo/cluster"))
        .arg("--config")
        .arg(root().join("examples/demo/config.yaml"))
        .arg("--cloudtrail-dir")
        .arg(&corpus.dir)
        .args(["--output", "json"])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    let secs = start.elapsed().as_secs_f64();
    if !matches!(status.code(), Some(0 | 1)) {
        println!("  audit failed: {status}");
    }
    Run {
        who: "ack-drift-exporter audit (whole command)".into(),
        corpus: corpus.name(),
        secs,
        records: None,
        counts: None,
    }
}

/// Runs `program` with `args`, timing it; its stdout is a JSON object of counts.
fn run_peer(who: &str, corpus: &Corpus, program: &str, args: &[&str]) -> Option<Run> {
    let start = Instant::now();
    let out = Command::new(program).args(args).output().ok()?;
    let secs = start.elapsed().as_secs_f64();
    let counts = match serde_json::from_slice::<ErrorCounts>(&out.stdout) {
        Ok(counts) if out.status.success() => Some(counts),
        _ => {
            let err = String::from_utf8_lossy(&out.stderr);
            let said = String::from_utf8_lossy(&out.stdout);
            let said = said.get(..200).unwrap_or(&said);
            println!(
                "  {who} on {}: failed ({}): {} {said}",
                corpus.name(),
                out.status,
                err.trim()
            );
            None
        }
    };
    Some(Run {
        who: who.into(),
        corpus: corpus.name(),
        secs,
        records: None,
        counts,
    })
}

fn installed(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `jq` (after `zcat` for gz), grouping errors itself over every file in one process.
fn run_jq(corpus: &Corpus) -> Option<Run> {
    let program = r#"reduce (inputs | (.Records? // .)[] | select((.errorCode // "") != "")
        | "\((.recipientAccountId // "") as $r | if $r != "" then $r else (.userIdentity.accountId // "") end)\t\(.errorCode | sub("^(Client|Server)\\."; ""))")
        as $k ({}; .[$k] += 1)"#;
    let files = format!(
        "find '{}' -name '*.json{}' -print0 | sort -z",
        corpus.dir.display(),
        if corpus.gz { ".gz" } else { "" }
    );
    let (who, script) = if corpus.gz {
        let s = format!("{files} | xargs -0 zcat | jq -n -c '{program}'");
        ("zcat | jq", s)
    } else {
        let s = format!("{files} | xargs -0 jq -n -c '{program}'");
        ("jq", s)
    };
    run_peer(who, corpus, "sh", &["-c", &script])
}

/// DuckDB's `read_json` + `unnest(Records)`, the same count, on `threads` threads.
fn run_duckdb(corpus: &Corpus, threads: usize) -> Option<Run> {
    let python = format!(
        r#"
import duckdb, json
con = duckdb.connect()
con.execute("SET threads = {threads}")
con.execute("SET enable_progress_bar = false")
rows = con.execute("""
  SELECT coalesce(nullif(r.recipientAccountId, ''), nullif(r.userIdentity.accountId, ''), '') AS account,
         regexp_replace(r.errorCode, '^(Client|Server)\.', '') AS code, count(*)
  FROM (SELECT unnest(Records) AS r FROM read_json(?, maximum_object_size = 1073741824,
        columns = {{'Records': 'STRUCT(recipientAccountId VARCHAR, errorCode VARCHAR, userIdentity STRUCT(accountId VARCHAR))[]'}}))
  WHERE coalesce(r.errorCode, '') <> ''
  GROUP BY ALL""", ["{glob}"]).fetchall()
print(json.dumps({{a + "\t" + c: n for a, c, n in rows}}))
"#,
        glob = corpus.glob()
    );
    let who = format!("DuckDB, {threads} thread(s)");
    run_peer(&who, corpus, "python3", &["-c", &python])
}

/// Runs of the exporter and of the physical references are repeated and the fastest kept:
/// this machine's speed varies by ±15 % from run to run. The peers run once (DuckDB takes
/// minutes); their ratios to the exporter have margins far wider than that.
const TRIES: usize = 3;

fn best_of(mut run: impl FnMut() -> Run) -> Run {
    (0..TRIES)
        .map(|_| run())
        .min_by(|a, b| a.secs.total_cmp(&b.secs))
        .expect("at least one try")
}

/// The fastest of each reference over the tries (each try gives the same references).
fn fastest_each(tries: Vec<Vec<Run>>) -> Vec<Run> {
    let mut best: Vec<Run> = Vec::new();
    for run in tries.into_iter().flatten() {
        match best.iter_mut().find(|b| b.who == run.who) {
            Some(b) if b.secs <= run.secs => {}
            Some(b) => *b = run,
            None => best.push(run),
        }
    }
    best
}

/// Physical references: the time to read the plain corpus, or to inflate the gz corpus.
fn run_references(corpus: &Corpus) -> Vec<Run> {
    let files = corpus_files(&corpus.dir);
    let reference = |who: &str, secs: f64| Run {
        who: who.into(),
        corpus: corpus.name(),
        secs,
        records: None,
        counts: None,
    };
    let start = Instant::now();
    let mut buf = Vec::new();
    let mut bytes = 0usize;
    for path in &files {
        buf.clear();
        let mut file = std::fs::File::open(path).unwrap();
        if corpus.gz {
            flate2::read::MultiGzDecoder::new(std::io::BufReader::new(file))
                .read_to_end(&mut buf)
                .unwrap();
        } else {
            file.read_to_end(&mut buf).unwrap();
        }
        bytes += buf.len();
    }
    let secs = start.elapsed().as_secs_f64();
    assert!(bytes > 0);
    let mut out = vec![reference(
        if corpus.gz {
            "inflate only (flate2 + zlib-rs, 1 thread)"
        } else {
            "read only (std::fs, 1 thread)"
        },
        secs,
    )];
    if corpus.gz && installed("zcat", &["--version"]) {
        let start = Instant::now();
        let script = format!(
            "find '{}' -name '*.json.gz' -print0 | xargs -0 zcat > /dev/null",
            corpus.dir.display()
        );
        Command::new("sh").arg("-c").arg(script).status().unwrap();
        out.push(reference(
            "GNU zcat > /dev/null",
            start.elapsed().as_secs_f64(),
        ));
    }
    out
}

/// Every contender does the same work: the corpus's records (as the exporter counted them).
fn print_runs(runs: &[Run], bytes: &BTreeMap<String, u64>) {
    let records: BTreeMap<&str, u64> = runs
        .iter()
        .filter_map(|r| Some((r.corpus.as_str(), r.records?)))
        .collect();
    println!();
    println!("| contender | input | time | records/s | MiB/s (on disk) | error counts |");
    println!("|---|---|---|---|---|---|");
    let truth = runs.iter().find_map(|r| r.counts.as_ref());
    for r in runs {
        let rate = records[r.corpus.as_str()] as f64 / r.secs;
        let agree = match (&r.counts, truth) {
            (Some(c), Some(t)) if c == t => format!(
                "{} keys, {} errors, agree",
                c.len(),
                c.values().sum::<u64>()
            ),
            (Some(c), Some(_)) => format!(
                "{} keys, {} errors, DIFFER",
                c.len(),
                c.values().sum::<u64>()
            ),
            _ => "–".into(),
        };
        println!(
            "| {} | {} | {:.2} s | {rate:.0} | {:.1} | {agree} |",
            r.who,
            r.corpus,
            r.secs,
            bytes[&r.corpus] as f64 / MIB as f64 / r.secs
        );
    }
}

/// Time of the first run by `who` on `corpus`.
fn secs(runs: &[Run], who: &str, corpus: &Corpus) -> Option<f64> {
    let name = corpus.name();
    runs.iter()
        .find(|r| r.who == who && r.corpus == name)
        .map(|r| r.secs)
}

fn print_ratio(label: &str, slow: Option<f64>, fast: Option<f64>) {
    if let (Some(slow), Some(fast)) = (slow, fast) {
        println!("{label}: {:.2}", slow / fast);
    }
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let records = source_records();
    let base = root().join("target/bench-corpus");
    build_corpus(&base.join("full"), 1024 * MIB, &records);
    build_gz_corpus(&base.join("full"), &base.join("full-gz"));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "machine: {cores} cores, {}",
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
    drop(records);
    let corpora = [
        Corpus::new(base.join("full"), false),
        Corpus::new(base.join("full-gz"), true),
    ];
    let mut runs = Vec::new();
    let mut bytes = BTreeMap::new();
    let has_jq = installed("jq", &["--version"]);
    let has_duckdb = installed("python3", &["-c", "import duckdb"]);
    if !has_duckdb {
        println!("DuckDB not installed (pip install duckdb); its runs are skipped");
    }
    for corpus in &corpora {
        println!(
            "{}: {} files under {}",
            corpus.name(),
            corpus.files,
            corpus.dir.display()
        );
        bytes.insert(corpus.name(), corpus.bytes);
        runs.push(best_of(|| run_exporter(corpus, 1)));
        runs.push(best_of(|| run_exporter(corpus, cores)));
        runs.push(best_of(|| run_audit(corpus)));
        let references: Vec<Vec<Run>> = (0..TRIES).map(|_| run_references(corpus)).collect();
        runs.extend(fastest_each(references));
        if has_jq {
            runs.extend(run_jq(corpus));
        }
        if has_duckdb {
            runs.extend(run_duckdb(corpus, 1));
            runs.extend(run_duckdb(corpus, cores));
        }
    }
    print_runs(&runs, &bytes);
    println!();
    let (one, all) = (
        "ack-drift-exporter, 1 reader(s)".to_string(),
        format!("ack-drift-exporter, {cores} reader(s)"),
    );
    for corpus in &corpora {
        let name = corpus.name();
        let jq = if corpus.gz { "zcat | jq" } else { "jq" };
        print_ratio(
            &format!("{name}: {cores} readers speed-up over 1"),
            secs(&runs, &one, corpus),
            secs(&runs, &all, corpus),
        );
        print_ratio(
            &format!("{name}: DuckDB 1 thread / exporter 1 reader"),
            secs(&runs, "DuckDB, 1 thread(s)", corpus),
            secs(&runs, &one, corpus),
        );
        print_ratio(
            &format!("{name}: DuckDB {cores} threads / exporter {cores} readers"),
            secs(&runs, &format!("DuckDB, {cores} thread(s)"), corpus),
            secs(&runs, &all, corpus),
        );
        print_ratio(
            &format!("{name}: {jq} / exporter 1 reader"),
            secs(&runs, jq, corpus),
            secs(&runs, &one, corpus),
        );
        print_ratio(
            &format!("{name}: {jq} / audit"),
            secs(&runs, jq, corpus),
            secs(&runs, "ack-drift-exporter audit (whole command)", corpus),
        );
        print_ratio(
            &format!("{name}: audit / GNU zcat"),
            secs(&runs, "ack-drift-exporter audit (whole command)", corpus),
            secs(&runs, "GNU zcat > /dev/null", corpus),
        );
    }
}
