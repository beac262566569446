//! The command-line flags each ACK runtime release defines (`pkg/config/config.go`), from the
//! table the binary embeds (`data/ack-runtime/runtime-flags-and-gates.tsv`, provenance in
//! `data/ack-runtime/SOURCES.md`). A flag the runtime does not define makes the controller
//! exit at start: `flag.Parse()` (spf13/pflag, `ExitOnError`) in the generated `main`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use crate::model::runtime_version::RuntimeVersion;

const TABLE: &str = include_str!("../../data/ack-runtime/runtime-flags-and-gates.tsv");

/// The flags of each row of the table: releases by version, untagged commits (Go
/// pseudo-versions some controller releases pin) by their pseudo-version.
#[derive(Default)]
struct Table {
    releases: BTreeMap<RuntimeVersion, BTreeSet<&'static str>>,
    commits: BTreeMap<&'static str, BTreeSet<&'static str>>,
}

fn table() -> &'static Table {
    static TABLE_ROWS: OnceLock<Table> = OnceLock::new();
    TABLE_ROWS.get_or_init(|| {
        let mut t = Table::default();
        for line in TABLE.lines().skip(1) {
            let mut cols = line.split('\t');
            let (Some(version), Some("flag"), Some(name)) = (cols.next(), cols.next(), cols.next())
            else {
                continue;
            };
            match version.parse::<RuntimeVersion>() {
                Ok(v) => t.releases.entry(v).or_default().insert(name),
                Err(_) => t.commits.entry(version).or_default().insert(name),
            };
        }
        t
    })
}

fn releases() -> &'static BTreeMap<RuntimeVersion, BTreeSet<&'static str>> {
    &table().releases
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

/// True when the table lists this runtime release.
pub fn is_listed_release(version: RuntimeVersion) -> bool {
    releases().contains_key(&version)
}

/// The newest release the table lists.
pub fn newest_listed() -> RuntimeVersion {
    releases()
        .keys()
        .next_back()
        .copied()
        .unwrap_or(RuntimeVersion::NEWEST)
}

/// Whether the runtime defines `--flag`: a pinned commit (`pseudo`, e.g.
/// `v0.58.2-0.20260508231111-2345cb4c58b1`) answers for itself, since it can already define a
/// later release's flags; otherwise the nearest listed release at or below `version` (a
/// patch release not in the table has its minor release's flags).
pub fn defines_flag(version: RuntimeVersion, pseudo: Option<&str>, flag: &str) -> FlagDefined {
    if let Some(flags) = pseudo.and_then(|p| table().commits.get(p)) {
        return if flags.contains(flag) {
            FlagDefined::Yes
        } else {
            FlagDefined::No
        };
    }
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
            assert_eq!(
                defines_flag(v(version), None, flag),
                want,
                "{flag} at {version}"
            );
        }
    }

    #[test]
    fn newer_than_the_table_keeps_known_flags_and_doubts_the_rest() {
        let newest = newest_listed();
        assert_eq!(newest, v("v0.61.0"));
        assert_eq!(
            defines_flag(v("v0.62.0"), None, "enable-carm"),
            FlagDefined::Yes
        );
        assert_eq!(
            defines_flag(v("v0.62.0"), None, "no-such-flag"),
            FlagDefined::Unknown
        );
    }

    /// A pinned commit answers for itself: these v0.58.2 pseudo-versions contain v0.58.1
    /// and already define `http-client-timeout`, released in v0.59.0 (SOURCES.md).
    #[test]
    fn a_pinned_commit_has_its_own_flags() {
        let commit = Some("v0.58.2-0.20260508231111-2345cb4c58b1");
        let flag = "http-client-timeout";
        assert_eq!(defines_flag(v("v0.58.1"), None, flag), FlagDefined::No);
        assert_eq!(defines_flag(v("v0.58.1"), commit, flag), FlagDefined::Yes);
        assert_eq!(defines_flag(v("v0.59.0"), None, flag), FlagDefined::Yes);
        // The 2021 commit older than every release: its own eight flags.
        let old = Some("v0.0.0-20210204203051-91a6bd53a48c");
        assert_eq!(
            defines_flag(v("v0.0.0"), old, "aws-account-id"),
            FlagDefined::Yes
        );
        assert_eq!(
            defines_flag(v("v0.0.0"), old, "watch-namespace"),
            FlagDefined::No
        );
    }
}
