//! End to end with the real tools: the exporter on the bundled demo, Prometheus (Debian
//! `prometheus`) scraping it with the shipped rules loaded (only `for:` shortened), and
//! Alertmanager (Debian `prometheus-alertmanager`) routing to a webhook receiver written here.
//! The alerts that reach the webhook must be the ones the demo's hand-written facts call for,
//! healthy resources must raise nothing, and every dashboard query must return data.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::http::Server;
use serde_json::Value;

/// A child process killed when the test ends, however it ends.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn tool(names: &[&'static str]) -> &'static str {
    for n in names {
        if Command::new("sh")
            .args(["-c", &format!("command -v {n}")])
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return n;
        }
    }
    panic!("none of {names:?} is installed (scripts/test installs them)");
}

fn start(bin: &'static str, args: &[String], dir: &Path) -> Guard {
    let log = std::fs::File::create(dir.join(format!("{bin}.log"))).unwrap();
    let child = Command::new(bin)
        .args(args)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("{bin}: {e}"));
    Guard(child)
}

/// Accepts webhook POSTs from Alertmanager and keeps their JSON bodies.
fn webhook() -> (u16, Arc<Mutex<Vec<Value>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let l = line.trim_end();
                if l.is_empty() {
                    break;
                }
                if let Some(v) = l
                    .to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().to_string())
                {
                    length = v.parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_ok()
                && let Ok(v) = serde_json::from_slice(&body)
            {
                sink.lock().unwrap().push(v);
            }
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (port, got)
}

/// The shipped rules with every `for:` set to 0s, checked identical otherwise.
fn fast_rules(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(common::root().join("alerts/ack-drift.rules.yml")).unwrap();
    let fast: String = text
        .lines()
        .map(|l| match l.trim_start().strip_prefix("for: ") {
            Some(_) => format!("{}for: 0s\n", &l[..l.len() - l.trim_start().len()]),
            None => format!("{l}\n"),
        })
        .collect();
    let mut want: Value = serde_saphyr::from_str(&text).unwrap();
    for g in want["groups"].as_array_mut().unwrap() {
        for r in g["rules"].as_array_mut().unwrap() {
            if r.get("for").is_some() {
                r["for"] = Value::String("0s".into());
            }
        }
    }
    let got: Value = serde_saphyr::from_str(&fast).unwrap();
    assert_eq!(got, want, "only `for:` may differ");
    let path = dir.join("rules.yml");
    std::fs::write(&path, fast).unwrap();
    path
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn query(port: u16, promql: &str) -> Vec<Value> {
    let r = common::http::get(
        port,
        &format!("/api/v1/query?query={}", urlencode(promql)),
        &[],
    )
    .expect("prometheus answers");
    let v: Value = serde_json::from_str(&r.text()).unwrap();
    assert_eq!(v["status"], "success", "{promql}: {v}");
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// (alert name, resource "ns/Kind/name" or flow) the demo's facts call for.
/// The alerts a folder's hand-written facts (`expected.json`) call for: (alert, subject).
fn expected_alerts(facts: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (key, r) in facts["resources"].as_object().unwrap() {
        let mut add = |a: &str| out.insert((a.to_string(), key.clone()));
        let problems: Vec<&str> = r["problems"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| p.as_str().unwrap())
            .collect();
        if r["account_drift"] == true {
            add(if r["effect"] == "calls_wrong_account" {
                "AckDriftCallsWrongAccount"
            } else {
                "AckDriftAccountDrift"
            });
        }
        if r["region_drift"] == true {
            add(if r["region_effect"] == "calls_wrong_region" {
                "AckDriftCallsWrongAccount"
            } else {
                "AckDriftRegionDrift"
            });
        }
        let idle = problems
            .iter()
            .any(|p| ["controller_not_running", "not_reconciled"].contains(p));
        for p in &problems {
            match *p {
                "role_unavailable" => add("AckDriftRoleUnavailable"),
                "selector_conflict" => add("AckDriftSelectorConflict"),
                "not_synced" if !idle => add("AckDriftResourceNotSynced"),
                "terminal" => add("AckDriftResourceTerminal"),
                "terminal_mismatch" => add("AckDriftTerminalMismatch"),
                "not_reconciled" => add("AckDriftResourceNotReconciled"),
                _ => false,
            };
        }
        for e in r["error_events"].as_array().into_iter().flatten() {
            if e["error_code"].as_str().unwrap().contains("NotFound")
                && e["count"].as_u64() >= Some(10)
            {
                add("AckDriftNotFoundStorm");
            }
        }
        if r["wrong_account_calls"]
            .as_array()
            .is_some_and(|c| !c.is_empty())
        {
            add("AckDriftWrongAccountCalls");
        }
    }
    for f in facts["cross_account_min"].as_array().into_iter().flatten() {
        if f["expected"] == false {
            out.insert((
                "AckDriftUnexpectedCrossAccountCalls".into(),
                format!(
                    "{}->{}",
                    f["caller_account"].as_str().unwrap(),
                    f["recipient_account"].as_str().unwrap()
                ),
            ));
        }
    }
    for (service, c) in facts["controllers"].as_object().into_iter().flatten() {
        if c["running"] == false {
            let subject = format!("controller ack-system/ack-{service}-controller");
            out.insert(("AckDriftControllerNotRunning".into(), subject));
        }
    }
    for (name, reason) in facts["role_selectors"].as_object().into_iter().flatten() {
        if !reason.is_null() {
            out.insert((
                "AckDriftRoleSelectorInvalid".into(),
                format!("selector {name}"),
            ));
        }
    }
    out
}

fn subject(labels: &Value) -> String {
    if let Some(d) = labels.get("deployment") {
        return format!(
            "controller {}/{}",
            labels["namespace"].as_str().unwrap(),
            d.as_str().unwrap()
        );
    }
    if labels.get("reason").is_some() {
        return format!("selector {}", labels["name"].as_str().unwrap());
    }
    match labels.get("name") {
        Some(name) => format!(
            "{}/{}/{}",
            labels["namespace"].as_str().unwrap(),
            labels["kind"].as_str().unwrap(),
            name.as_str().unwrap()
        ),
        None => format!(
            "{}->{}",
            labels["caller_account"].as_str().unwrap_or(""),
            labels["recipient_account"].as_str().unwrap_or("")
        ),
    }
}

/// The exporter, Prometheus with the shipped rules, Alertmanager and the webhook, running.
struct Pack {
    /// Kept running for as long as the pack is.
    _exporter: Server,
    prom_port: u16,
    dir: PathBuf,
    /// Prometheus and Alertmanager.
    _tools: (Guard, Guard),
    received: Arc<Mutex<Vec<Value>>>,
    alertmanager: &'static str,
}

impl Pack {
    fn start(exporter_args: &[&str], scratch: &str) -> Pack {
        let prometheus = tool(&["prometheus"]);
        let alertmanager = tool(&["prometheus-alertmanager", "alertmanager"]);
        let dir = common::scratch(scratch);
        let exporter = Server::start(exporter_args);
        let (hook, received) = webhook();

        let am_port = free_port();
        std::fs::write(
            dir.join("alertmanager.yml"),
            format!(
                "route:\n  receiver: hook\n  group_by: [alertname, namespace, kind, name, deployment, caller_account, recipient_account]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: http://127.0.0.1:{hook}/\n        send_resolved: false\n"
            ),
        )
        .unwrap();
        let am = start(
            alertmanager,
            &[
                format!("--config.file={}", dir.join("alertmanager.yml").display()),
                format!("--storage.path={}", dir.join("am-data").display()),
                format!("--web.listen-address=127.0.0.1:{am_port}"),
                "--cluster.listen-address=".into(),
            ],
            &dir,
        );
        let rules = fast_rules(&dir);
        let prom_port = free_port();
        std::fs::write(
            dir.join("prometheus.yml"),
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nalerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['127.0.0.1:{am_port}']\nscrape_configs:\n  - job_name: ack-drift-exporter\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n",
                rules.display(),
                exporter.port
            ),
        )
        .unwrap();
        let prom = start(
            prometheus,
            &[
                format!("--config.file={}", dir.join("prometheus.yml").display()),
                format!("--storage.tsdb.path={}", dir.join("prom-data").display()),
                format!("--web.listen-address=127.0.0.1:{prom_port}"),
            ],
            &dir,
        );
        Pack {
            _exporter: exporter,
            prom_port,
            dir,
            _tools: (prom, am),
            received,
            alertmanager,
        }
    }

    /// Waits (90 s at most) until every alert of `want` reached the webhook, then holds the
    /// webhook to exactly `want`: nothing about healthy resources or the exporter itself.
    fn paged_exactly(
        &self,
        want: &BTreeSet<(String, String)>,
    ) -> BTreeMap<(String, String), Value> {
        let deadline = Instant::now() + Duration::from_secs(90);
        let got = loop {
            let got: BTreeMap<(String, String), Value> = self
                .received
                .lock()
                .unwrap()
                .iter()
                .flat_map(|body| body["alerts"].as_array().cloned().unwrap_or_default())
                .map(|a| {
                    let l = &a["labels"];
                    (
                        (l["alertname"].as_str().unwrap().to_string(), subject(l)),
                        a.clone(),
                    )
                })
                .collect();
            if want.iter().all(|k| got.contains_key(k)) || Instant::now() > deadline {
                break got;
            }
            std::thread::sleep(Duration::from_millis(500));
        };
        let fired: BTreeSet<(String, String)> = got.keys().cloned().collect();
        assert!(
            want.is_subset(&fired),
            "missing: {:?}\nlogs:\n{}",
            want.difference(&fired).collect::<Vec<_>>(),
            self.logs()
        );
        assert_eq!(
            fired.difference(want).collect::<Vec<_>>(),
            Vec::<&(String, String)>::new()
        );
        got
    }

    fn logs(&self) -> String {
        ["prometheus", self.alertmanager]
            .iter()
            .map(|b| std::fs::read_to_string(self.dir.join(format!("{b}.log"))).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Pack {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn facts(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn the_demo_pages_the_right_people_and_every_panel_has_data() {
    let pack = Pack::start(&["--demo"], "pack-e2e");
    let prom_port = pack.prom_port;
    let demo = facts(&common::root().join("examples/demo/expected.json"));
    let want = expected_alerts(&demo);
    assert!(want.len() >= 6, "{want:?}");
    let got = pack.paged_exactly(&want);
    // What the on-call engineer reads names the resource, the account and where to look.
    let storm = &got[&(
        "AckDriftNotFoundStorm".to_string(),
        "uat/SecurityGroup/amq-uat".to_string(),
    )];
    assert_eq!(storm["labels"]["severity"], "critical");
    assert_eq!(storm["labels"]["error_code"], "InvalidVpcID.NotFound");
    let d = storm["annotations"]["description"].as_str().unwrap();
    assert!(
        d.contains("uat/amq-uat") && d.contains("178394743802") && d.contains("eu-west-2"),
        "{d}"
    );
    assert!(
        storm["annotations"]["runbook_url"]
            .as_str()
            .unwrap()
            .ends_with("docs/runbooks/AckDriftNotFoundStorm.md")
    );

    // Every dashboard query returns data here, except panels marked live-only.
    let resources: Vec<Vec<String>> = demo["resources"]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.split('/').map(String::from).collect())
        .collect();
    let dashboards = std::fs::read_dir(common::root().join("dashboards")).unwrap();
    let mut checked = 0;
    let data_deadline = Instant::now() + Duration::from_secs(90);
    for entry in dashboards {
        let d: Value =
            serde_json::from_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap()).unwrap();
        for p in d["panels"].as_array().unwrap() {
            let marked = p["description"]
                .as_str()
                .is_some_and(|s| s.starts_with("Live only:") || s.starts_with("Faults only:"));
            if marked {
                continue;
            }
            for t in p["targets"].as_array().unwrap() {
                let expr = t["expr"]
                    .as_str()
                    .unwrap()
                    .replace("$__rate_interval", "30s");
                // The drill-down's variables: some demo resource must give data.
                let has_data = || {
                    if expr.contains("$namespace") {
                        resources.iter().any(|r| {
                            let e = expr
                                .replace("$namespace", &r[0])
                                .replace("$kind", &r[1])
                                .replace("$name", &r[2]);
                            !query(prom_port, &e).is_empty()
                        })
                    } else {
                        !query(prom_port, &expr).is_empty()
                    }
                };
                // A recording rule over a rate has a sample only after two scrapes and one
                // more evaluation: poll for it, within one bound shared by every query.
                while !has_data() {
                    assert!(
                        Instant::now() < data_deadline,
                        "{}: {expr} returns nothing",
                        p["title"]
                    );
                    std::thread::sleep(Duration::from_millis(250));
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 20, "{checked} queries checked");
}

#[test]
fn controllers_that_cannot_run_and_rejected_selectors_page_their_owners() {
    let dir = common::fixture("scenarios/what-controllers-cannot-do");
    let cluster = dir.join("cluster").display().to_string();
    let config = dir.join("config.yaml").display().to_string();
    let pack = Pack::start(
        &["--kube-dir", &cluster, "--config", &config],
        "pack-e2e-controllers",
    );
    let scenario = facts(&dir.join("expected.json"));
    let want = expected_alerts(&scenario);
    let count = |alert: &str| want.iter().filter(|(a, _)| a == alert).count();
    assert_eq!(count("AckDriftControllerNotRunning"), 4, "{want:?}");
    assert_eq!(count("AckDriftRoleSelectorInvalid"), 7, "{want:?}");
    let got = pack.paged_exactly(&want);
    // The page names the controller and why it cannot run, and the selector and its fault.
    let ec2 = &got[&(
        "AckDriftControllerNotRunning".to_string(),
        "controller ack-system/ack-ec2-controller".to_string(),
    )];
    assert_eq!(ec2["labels"]["severity"], "critical");
    let d = ec2["annotations"]["description"].as_str().unwrap();
    assert!(d.contains("undefined_flag"), "{d}");
    let bad = &got[&(
        "AckDriftRoleSelectorInvalid".to_string(),
        "selector bad-arn".to_string(),
    )];
    assert_eq!(bad["labels"]["reason"], "invalid_arn");
    assert_eq!(bad["labels"]["severity"], "warning");
}
