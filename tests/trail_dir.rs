//! `--cloudtrail-dir` on real public CloudTrail data nobody here wrote, in every format, read
//! twice, and with damaged input. Ground truth comes from a plain JSON walk in this file.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::Value;

fn real() -> PathBuf {
    common::fixture("cloudtrail/real")
}

/// Every `.json` file below `dir`, sorted.
fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(json_files(&p));
        } else if p.extension().is_some_and(|x| x == "json") {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// The records of a trail file: `{"Records": [...]}` or a bare array.
fn records_of(path: &Path) -> Vec<Value> {
    let v: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    match v {
        Value::Array(a) => a,
        Value::Object(mut m) => match m.remove("Records") {
            Some(Value::Array(a)) => a,
            _ => panic!("{}: no Records", path.display()),
        },
        _ => panic!("{}: not a trail file", path.display()),
    }
}

struct Truth {
    events: u64,
    /// (recipient account, error code without its Client./Server. prefix) → records.
    errors: BTreeMap<(String, String), u64>,
}

/// Counts computed independently: distinct eventIDs and error codes per account.
fn truth(dir: &Path) -> Truth {
    let mut ids = std::collections::BTreeSet::new();
    let mut errors = BTreeMap::new();
    for f in json_files(dir) {
        for r in records_of(&f) {
            if !ids.insert(r["eventID"].as_str().unwrap().to_string()) {
                continue;
            }
            if let Some(code) = r["errorCode"].as_str() {
                let code = match code.split_once('.') {
                    Some(("Client" | "Server", rest)) => rest,
                    _ => code,
                };
                *errors
                    .entry((
                        r["recipientAccountId"].as_str().unwrap().to_string(),
                        code.to_string(),
                    ))
                    .or_insert(0) += 1;
            }
        }
    }
    Truth {
        events: ids.len() as u64,
        errors,
    }
}

fn audit_trail(dir: &Path) -> Value {
    let empty = common::scratch(&format!(
        "empty-kube-{}",
        dir.file_name().unwrap().to_string_lossy()
    ));
    let run = common::run([
        "audit",
        "--kube-dir",
        empty.to_str().unwrap(),
        "--cloudtrail-dir",
        dir.to_str().unwrap(),
        "--output",
        "json",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    run.json()["cloudtrail"].clone()
}

fn reported_errors(trail: &Value) -> BTreeMap<(String, String), u64> {
    let mut out = BTreeMap::new();
    for e in trail["errors"].as_array().unwrap() {
        *out.entry((
            e["account"].as_str().unwrap().to_string(),
            e["error_code"].as_str().unwrap().to_string(),
        ))
        .or_insert(0) += e["count"].as_u64().unwrap();
    }
    out
}

#[test]
fn real_datasets_match_an_independent_count() {
    let want = truth(&real());
    // The datasets' own SOURCES.md numbers, as a check on the check.
    assert_eq!(want.events, 2900 + 310);
    assert_eq!(want.errors.values().sum::<u64>(), 300 + 52);

    let trail = audit_trail(&real());
    assert_eq!(trail["events"], want.events);
    assert_eq!(trail["duplicates"], 0);
    assert_eq!(trail["parse_errors"], 0, "{:#}", trail["input_errors"]);
    assert_eq!(trail["files"], json_files(&real()).len());
    assert_eq!(reported_errors(&trail), want.errors);
    // Nothing here comes from ACK.
    assert_eq!(trail["unattributed_ack_events"], serde_json::json!([]));
    assert!(
        trail["errors"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["ack_kind"] == "")
    );
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// The records as saved `aws cloudtrail lookup-events` output.
fn lookup_events_form(records: &[Value]) -> Value {
    let events: Vec<Value> = records
        .iter()
        .map(|r| {
            serde_json::json!({
                "EventId": r["eventID"],
                "EventName": r["eventName"],
                "CloudTrailEvent": serde_json::to_string(r).unwrap(),
            })
        })
        .collect();
    serde_json::json!({"Events": events, "NextToken": null})
}

/// Copies every file below `from` into `to`, keeping the tree.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dest = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_tree(&p, &dest);
        } else {
            std::fs::copy(&p, &dest).unwrap();
        }
    }
}

#[test]
fn every_file_read_twice_counts_once() {
    let want = truth(&real());
    let dir = common::scratch("trail-twice");
    copy_tree(&real(), &dir.join("first"));
    copy_tree(&real(), &dir.join("second"));
    let trail = audit_trail(&dir);
    assert_eq!(trail["events"], want.events);
    assert_eq!(trail["duplicates"], want.events);
    assert_eq!(reported_errors(&trail), want.errors);
}

#[test]
fn every_format_read_again_only_adds_duplicates() {
    let want = truth(&real());
    let dir = common::scratch("trail-three-formats");
    let files = json_files(&real());
    for (i, f) in files.iter().enumerate() {
        let bytes = std::fs::read(f).unwrap();
        // Copy 1: as delivered. Copy 2: gzipped, as S3 holds them.
        // Copy 3: the same records as lookup-events output.
        std::fs::create_dir_all(dir.join("plain")).unwrap();
        std::fs::write(dir.join(format!("plain/{i}.json")), &bytes).unwrap();
        std::fs::create_dir_all(dir.join("gz/nested")).unwrap();
        std::fs::write(dir.join(format!("gz/nested/{i}.json.gz")), gzip(&bytes)).unwrap();
        std::fs::create_dir_all(dir.join("lookup")).unwrap();
        std::fs::write(
            dir.join(format!("lookup/{i}.json")),
            serde_json::to_vec(&lookup_events_form(&records_of(f))).unwrap(),
        )
        .unwrap();
    }
    let trail = audit_trail(&dir);
    assert_eq!(trail["parse_errors"], 0, "{:#}", trail["input_errors"]);
    assert_eq!(trail["files"], files.len() * 3);
    assert_eq!(trail["events"], want.events);
    assert_eq!(trail["duplicates"], want.events * 2);
    assert_eq!(reported_errors(&trail), want.errors);
}

#[test]
fn damaged_input_is_reported_and_the_rest_is_read() {
    let dir = common::scratch("trail-damaged");
    let seed = common::fixture(
        "scenarios/seed-incident/cloudtrail/AWSLogs/178394743802/CloudTrail/eu-west-2/2024/01/05",
    );
    let gz_name = "178394743802_CloudTrail_eu-west-2_20240105T0820Z_Xc9aPz.json.gz";
    let whole = std::fs::read(seed.join(gz_name)).unwrap();
    // 1. A truncated .json.gz: half of the compressed bytes.
    std::fs::write(dir.join("truncated.json.gz"), &whole[..whole.len() / 2]).unwrap();
    // 2. A file that is not JSON.
    std::fs::write(dir.join("notes.json"), b"this is not JSON at all\n").unwrap();
    // 3-5. lookup-events output with a CloudTrailEvent that is not JSON, a record without
    //      eventID, and a record whose 1 KB user agent was cut mid-token.
    let mut records = records_of_gz(
        &seed.join("178394743802_CloudTrail_eu-west-2_20240105T0905Z_Q2mBv1.json.gz"),
    );
    let good = records.len();
    let mut no_id = records[0].clone();
    no_id.as_object_mut().unwrap().remove("eventID");
    let mut cut = records[1].clone();
    let ua = cut["userAgent"].as_str().unwrap().to_string();
    let at = ua.find("CRDKind/").unwrap() + "CRDKind/Secu".len();
    cut["userAgent"] = Value::String(ua[..at].to_string());
    cut["eventID"] = Value::String("0badc0de-0000-4000-8000-000000000001".into());
    let mut lookup = lookup_events_form(&records);
    let events = lookup["Events"].as_array_mut().unwrap();
    events
        .push(serde_json::json!({"EventId": "x", "CloudTrailEvent": "{\"eventID\": \"x\", oops"}));
    events.push(serde_json::json!({"EventId": "y", "CloudTrailEvent": serde_json::to_string(&no_id).unwrap()}));
    events.push(serde_json::json!({"EventId": "z", "CloudTrailEvent": serde_json::to_string(&cut).unwrap()}));
    std::fs::write(
        dir.join("lookup.json"),
        serde_json::to_vec_pretty(&lookup).unwrap(),
    )
    .unwrap();
    records.clear();

    let trail = audit_trail(&dir);
    let errors = trail["input_errors"].as_array().unwrap();
    let has = |file: &str, text: &str| {
        errors.iter().any(|e| {
            e["file"].as_str().unwrap().ends_with(file)
                && e["message"].as_str().unwrap().contains(text)
        })
    };
    assert!(
        has("truncated.json.gz", "gzip stream is truncated or corrupt"),
        "{errors:#?}"
    );
    assert!(has("notes.json", "invalid JSON"), "{errors:#?}");
    assert!(
        has("lookup.json", "Events[14].CloudTrailEvent: is not JSON"),
        "{errors:#?}"
    );
    assert!(
        has("lookup.json", "Events[15]: record without eventID"),
        "{errors:#?}"
    );
    assert_eq!(errors.len(), 4, "{errors:#?}");
    assert_eq!(trail["parse_errors"], 4);

    // Read: every good record of lookup.json, the cut-UA record, and whatever the truncated
    // gzip yielded before the damage (its records are the first ones of the file).
    let events = trail["events"].as_u64().unwrap();
    assert!(events > good as u64, "{events}");
    // The record with the cut user agent is still an ACK event, but its kind is gone: it is
    // counted as unattributed for that reason, never guessed.
    let unattributed = trail["unattributed_ack_events"].as_array().unwrap();
    assert!(
        unattributed
            .iter()
            .any(|u| u["reason"] == "no_kind" && u["count"] == 1),
        "{unattributed:#?}"
    );
}

fn records_of_gz(path: &Path) -> Vec<Value> {
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap()),
        &mut text,
    )
    .unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    v["Records"].as_array().unwrap().clone()
}

#[test]
fn a_missing_folder_is_a_usage_error() {
    let empty = common::scratch("empty-kube-missing");
    let run = common::run([
        "audit",
        "--kube-dir",
        empty.to_str().unwrap(),
        "--cloudtrail-dir",
        "/nonexistent/trail",
    ]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("/nonexistent/trail"));
}

#[test]
fn any_number_of_readers_hands_on_the_same_records_in_the_same_order() {
    use ack_drift_exporter::source::trail_dir::read_trail_dir_with;
    let dir = common::scratch("trail-readers");
    let files = json_files(&real());
    let mut written = 0u64;
    for (i, f) in files.iter().enumerate() {
        let bytes = std::fs::read(f).unwrap();
        written += records_of(f).len() as u64;
        // Alternate plain and gzipped, in nested folders, so readers meet both.
        let sub = dir.join(format!("{:02}", i % 3));
        std::fs::create_dir_all(&sub).unwrap();
        if i % 2 == 0 {
            std::fs::write(sub.join(format!("{i}.json")), &bytes).unwrap();
        } else {
            std::fs::write(sub.join(format!("{i}.json.gz")), gzip(&bytes)).unwrap();
        }
    }
    // One file longer than a reader's batch of records, with fresh eventIDs.
    let mut all: Vec<Value> = files.iter().flat_map(|f| records_of(f)).collect();
    for (n, r) in all.iter_mut().enumerate() {
        r["eventID"] = Value::String(format!("big-{n}"));
    }
    written += all.len() as u64;
    let big = serde_json::to_vec(&serde_json::json!({ "Records": all })).unwrap();
    std::fs::write(dir.join("01/big.json.gz"), gzip(&big)).unwrap();
    // Damage among the good files: its problem must come at its place in the order too.
    std::fs::write(dir.join("01/zz-broken.json"), b"{\"Records\": [1, ").unwrap();
    let read = |readers: usize| {
        let mut records = Vec::new();
        let report = read_trail_dir_with(&dir, readers, &mut |r| records.push(r.clone())).unwrap();
        (records, report)
    };
    let (one, one_report) = read(1);
    assert_eq!(one.len() as u64, written, "one reader read every record");
    assert_eq!(one_report.records, written);
    assert_eq!(one_report.files, files.len() + 2);
    assert_eq!(one_report.errors.len(), 2, "{:?}", one_report.errors);
    for readers in [2, 3, 8] {
        let (many, report) = read(readers);
        assert!(
            many == one,
            "{readers} readers changed the records or their order"
        );
        assert_eq!(report.records, one_report.records);
        assert_eq!(report.files, one_report.files);
        assert_eq!(report.errors, one_report.errors, "{readers} readers");
    }
}
