//! The README tells the truth: its metric reference table is the one the code serves.

mod common;

#[test]
fn readme_metric_table_matches_the_code() {
    let readme = std::fs::read_to_string(common::root().join("README.md")).unwrap();
    let start = "<!-- metrics-table:start -->\n";
    let end = "<!-- metrics-table:end -->";
    let from = readme
        .find(start)
        .expect("README has the metrics-table markers")
        + start.len();
    let to = readme[from..].find(end).expect("end marker") + from;
    let want = ack_drift_exporter::output::metrics::reference_table();
    assert!(
        readme[from..to] == want,
        "README's metric table is out of date; replace it with:\n{want}"
    );
}

#[test]
fn readme_has_the_two_setup_commands_and_ci_runs_the_test_one() {
    let readme = std::fs::read_to_string(common::root().join("README.md")).unwrap();
    assert!(readme.contains("\ncargo run -- serve --demo\n"));
    assert!(readme.contains("\nscripts/test\n"));
    let ci = std::fs::read_to_string(common::root().join(".ci/run")).unwrap();
    assert!(ci.lines().any(|l| l.trim() == "scripts/test"));
}
