//! The runtime model's flag and gate boundaries, held to what each runtime release defines
//! (`data/ack-runtime/runtime-flags-and-gates.tsv`, read from the runtime's
//! `pkg/config/config.go` and `pkg/featuregate/features.go` at every tag).

mod common;

use std::collections::{BTreeMap, BTreeSet};

use ack_drift_exporter::evaluate::runtime::RuntimeBehaviour;
use ack_drift_exporter::model::runtime_version::RuntimeVersion;

/// Release tag → (flags, gates); pseudo-versions (untagged commits) are left out.
fn releases() -> BTreeMap<RuntimeVersion, (BTreeSet<String>, BTreeSet<String>)> {
    let path = common::root().join("data/ack-runtime/runtime-flags-and-gates.tsv");
    let text = std::fs::read_to_string(path).unwrap();
    let mut out: BTreeMap<RuntimeVersion, (BTreeSet<String>, BTreeSet<String>)> = BTreeMap::new();
    for line in text.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        assert_eq!(cols.len(), 3, "{line}");
        let Ok(version) = cols[0].parse::<RuntimeVersion>() else {
            continue;
        };
        let entry = out.entry(version).or_default();
        match cols[1] {
            "flag" => entry.0.insert(cols[2].to_string()),
            "gate" => entry.1.insert(cols[2].to_string()),
            other => panic!("kind {other}"),
        };
    }
    out
}

#[test]
fn gates_are_defined_exactly_where_the_releases_define_them() {
    let releases = releases();
    assert!(releases.len() > 100, "{} releases", releases.len());
    let every_gate: BTreeSet<String> = releases.values().flat_map(|r| r.1.clone()).collect();
    assert!(every_gate.len() >= 6, "{every_gate:?}");
    for (version, (_, gates)) in &releases {
        let b = RuntimeBehaviour::of(*version);
        for gate in &every_gate {
            assert_eq!(
                b.defines_gate(gate),
                gates.contains(gate),
                "{version} {gate}"
            );
        }
    }
}

#[test]
fn the_flags_the_model_reads_exist_where_it_says() {
    for (version, (flags, _)) in &releases() {
        let b = RuntimeBehaviour::of(*version);
        assert_eq!(
            b.enable_carm_flag,
            flags.contains("enable-carm"),
            "{version}"
        );
        assert_eq!(
            b.feature_gates_flag,
            flags.contains("feature-gates"),
            "{version}"
        );
        // --watch-namespace, which the CARM cache rule reads, exists in every modelled release.
        if *version >= ack_drift_exporter::evaluate::runtime::OLDEST_MODELLED {
            assert!(flags.contains("watch-namespace"), "{version}");
        }
    }
}
