//! The README tells the truth: its metric reference table is the one the code serves, and
//! its Layout is the tree.

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

/// The README's "Layout" block: (path, the words beside it and on its continuation lines).
fn layout_entries(readme: &str) -> Vec<(String, String)> {
    let from = readme
        .find("## Layout\n\n```\n")
        .expect("README has a Layout section")
        + 14;
    let to = readme[from..].find("```").expect("the block ends") + from;
    let mut entries: Vec<(String, String)> = Vec::new();
    for line in readme[from..to].lines() {
        match (line.starts_with(' '), entries.last_mut()) {
            (true, Some((_, words))) => words.push_str(line),
            _ => {
                // The path column ends at the first run of two spaces.
                let (path, words) = line.split_once("  ").unwrap_or((line, ""));
                entries.push((path.to_string(), words.to_string()));
            }
        }
    }
    entries
}

#[test]
fn readme_layout_matches_the_tree() {
    let root = common::root();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let entries = layout_entries(&readme);
    for (path, _) in &entries {
        for p in path.split(", ") {
            assert!(
                root.join(p).exists(),
                "README Layout names {p}, which does not exist"
            );
        }
    }
    // Every module under src/ is in the block: files by path, a folder's modules by name.
    for entry in std::fs::read_dir(root.join("src")).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        let path = if entry.path().is_dir() {
            format!("src/{name}/")
        } else {
            format!("src/{name}")
        };
        if name == "lib.rs" {
            continue;
        }
        let Some((_, words)) = entries.iter().find(|(p, _)| *p == path) else {
            panic!("README Layout does not describe {path}");
        };
        if !entry.path().is_dir() {
            continue;
        }
        for module in std::fs::read_dir(entry.path()).unwrap() {
            let module = module.unwrap().file_name().into_string().unwrap();
            let stem = module.trim_end_matches(".rs");
            if stem == "mod" || stem.ends_with("_test") {
                continue;
            }
            assert!(
                words.contains(stem),
                "README Layout's {path} line does not name its module {stem}"
            );
        }
    }
}
