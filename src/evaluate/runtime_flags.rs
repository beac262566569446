//! The command-line flags each ACK runtime release defines (`pkg/config/config.go`), from the
//! table the binary embeds (`data/ack-runtime/runtime-flags-and-gates.tsv`, provenance in
//! `data/ack-runtime/SOURCES.md`). A flag the runtime does not define makes the controller
//! exit at start: `flag.Parse()` (spf13/pflag, `ExitOnError`) in the generated `main`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use crate::model::runtime_version::RuntimeVersion;

const TABLE: &str = include_str!("../../data/ack-runtime/runtime-flags-and-gates.tsv");

/// Release → the flags it defines. Pseudo-version rows (untagged commits) are left out: a
/// controller's runtime is a release here.
fn releases() -> &'static BTreeMap<RuntimeVersion, BTreeSet<&'static str>> {
    static RELEASES: OnceLock<BTreeMap<RuntimeVersion, BTreeSet<&'static str>>> = OnceLock::new();
    RELEASES.get_or_init(|| {
        let mut out: BTreeMap<RuntimeVersion, BTreeSet<&'static str>> = BTreeMap::new();
        for line in TABLE.lines().skip(1) {
            let mut cols = line.split('\t');
            let (Some(version), Some("flag"), Some(name)) = (cols.next(), cols.next(), cols.next())
            else {
                continue;
            };
            if let Ok(v) = version.parse::<RuntimeVersion>() {
                out.entry(v).or_default().insert(name);
            }
        }
        out
    })
}

/// Whether a runtime defines a flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagDefined {
    Yes,
    No,
    /// The runtime is newer than the table and the flag is not in the newest listed release:
    /// the newer release may have added it.
    Unknown,
}

/// The newest release the table lists.
pub fn newest_listed() -> RuntimeVersion {
    releases()
        .keys()
        .next_back()
        .copied()
        .unwrap_or(RuntimeVersion::NEWEST)
}

/// Whether `version` defines `--flag`: the nearest listed release at or below `version`
/// answers (a patch release not in the table has its minor release's flags).
pub fn defines_flag(version: RuntimeVersion, flag: &str) -> FlagDefined {
    let Some((listed, flags)) = releases().range(..=version).next_back() else {
        // Older than every listed release: judged as the oldest one.
        return match releases().values().next() {
            Some(f) if f.contains(flag) => FlagDefined::Yes,
            _ => FlagDefined::No,
        };
    };
    match (
        flags.contains(flag),
        version > *listed && *listed == newest_listed(),
    ) {
        (true, _) => FlagDefined::Yes,
        (false, true) => FlagDefined::Unknown,
        (false, false) => FlagDefined::No,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> RuntimeVersion {
        s.parse().unwrap()
    }

    /// Boundaries from the runtime's history (each flag's first release, read at its tag).
    #[test]
    fn flags_exist_from_the_release_that_added_them() {
        let rows = [
            ("enable-carm", "v0.51.0", FlagDefined::No),
            ("enable-carm", "v0.52.0", FlagDefined::Yes),
            ("watch-selectors", "v0.43.0", FlagDefined::No),
            ("watch-selectors", "v0.44.0", FlagDefined::Yes),
            ("reconcile-resources", "v0.45.0", FlagDefined::No),
            ("reconcile-resources", "v0.46.0", FlagDefined::Yes),
            ("feature-gates", "v0.34.0", FlagDefined::No),
            ("feature-gates", "v0.35.0", FlagDefined::Yes),
            // Not a release: the nearest lower one (v0.46.1) answers.
            ("reconcile-resources", "v0.46.7", FlagDefined::Yes),
            ("aws-region", "v0.10.0", FlagDefined::Yes),
            ("no-such-flag", "v0.61.0", FlagDefined::No),
        ];
        for (flag, version, want) in rows {
            assert_eq!(defines_flag(v(version), flag), want, "{flag} at {version}");
        }
    }

    #[test]
    fn newer_than_the_table_keeps_known_flags_and_doubts_the_rest() {
        let newest = newest_listed();
        assert_eq!(newest, v("v0.61.0"));
        assert_eq!(defines_flag(v("v0.62.0"), "enable-carm"), FlagDefined::Yes);
        assert_eq!(
            defines_flag(v("v0.62.0"), "no-such-flag"),
            FlagDefined::Unknown
        );
    }
}
