//! Which ACK runtime a controller image was built with: the release table the binary embeds
//! (`data/ack-runtime/controller-runtime-versions.tsv`: the runtime each controller release's
//! `go.mod` requires; `runtime-pseudo-versions.tsv`: the newest runtime release each pinned
//! untagged commit contains; provenance in `data/ack-runtime/SOURCES.md`).

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::Serialize;

use crate::model::runtime_version::RuntimeVersion;

const RELEASES: &str = include_str!("../../data/ack-runtime/controller-runtime-versions.tsv");
const PSEUDO: &str = include_str!("../../data/ack-runtime/runtime-pseudo-versions.tsv");

/// Where a controller's runtime version came from (`runtime_source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuntimeSource {
    /// `controllers.<service>.runtime` (always wins).
    Config,
    /// The image tag is a listed release.
    Image,
    /// The tag is not listed: the nearest lower release's runtime (or, newer than every
    /// listed release, that controller's newest one).
    ImageNearest,
    /// Nothing to go by: the newest runtime known.
    Default,
}

label_values!(RuntimeSource {
    Config => "config",
    Image => "image",
    ImageNearest => "image_nearest",
    Default => "default",
});

/// A controller release's runtime: the release it behaves as, and the pinned commit (a Go
/// pseudo-version) when its `go.mod` names one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinnedRuntime {
    pub version: RuntimeVersion,
    pub commit: Option<&'static str>,
}

/// The runtime of an image, where it came from, and why when it fell back to the default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRuntime {
    pub runtime: PinnedRuntime,
    pub source: RuntimeSource,
    /// The listed release that answered (the tag itself for `Image`).
    pub release: Option<String>,
    /// Why the default applies, for `check-config` and the log.
    pub warning: Option<String>,
}

/// A controller release as `(major, minor, patch)`, from `1.2.0` or `v1.2.0`.
fn release_version(tag: &str) -> Option<(u32, u32, u32)> {
    let mut parts = tag.strip_prefix('v').unwrap_or(tag).split('.');
    let mut next = || parts.next()?.parse::<u32>().ok();
    let v = (next()?, next()?, next()?);
    parts.next().is_none().then_some(v)
}

/// What a runtime entry of the table behaves as: a release as itself, a pseudo-version as
/// the newest release its commit contains (none: older than every release, v0.0.0).
fn pinned(entry: &'static str) -> PinnedRuntime {
    if let Ok(version) = entry.parse() {
        return PinnedRuntime {
            version,
            commit: None,
        };
    }
    let contained = PSEUDO
        .lines()
        .skip(1)
        .filter_map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            (cols.first() == Some(&entry)).then(|| cols.get(2).copied())?
        })
        .next();
    PinnedRuntime {
        version: contained
            .and_then(|c| c.parse().ok())
            .unwrap_or(RuntimeVersion::new(0, 0, 0)),
        commit: Some(entry),
    }
}

type Releases = BTreeMap<&'static str, BTreeMap<(u32, u32, u32), (&'static str, PinnedRuntime)>>;

/// Service → release → (tag as listed, runtime).
fn releases() -> &'static Releases {
    static TABLE: OnceLock<Releases> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut out = Releases::new();
        for line in RELEASES.lines().skip(1) {
            let cols: Vec<&'static str> = line.split('\t').collect();
            let [service, release, runtime, ..] = cols[..] else {
                continue;
            };
            if let Some(v) = release_version(release) {
                out.entry(service)
                    .or_default()
                    .insert(v, (release, pinned(runtime)));
            }
        }
        out
    })
}

fn fallback(warning: String) -> ImageRuntime {
    ImageRuntime {
        runtime: PinnedRuntime {
            version: RuntimeVersion::NEWEST,
            commit: None,
        },
        source: RuntimeSource::Default,
        release: None,
        warning: Some(format!(
            "{warning}: judged as the newest runtime known ({}); set controllers.<service>.runtime",
            RuntimeVersion::NEWEST
        )),
    }
}

/// A listed release of `<service>-controller` (`1.2.0` or `v1.2.0`) and its runtime.
pub fn listed_release(service: &str, tag: &str) -> Option<(&'static str, PinnedRuntime)> {
    let (release, runtime) = releases().get(service)?.get(&release_version(tag)?)?;
    Some((*release, *runtime))
}

/// The runtime of `<service>-controller:<tag>`: the listed release, else the nearest lower
/// one, else (newer than every listed release) the newest one; the default otherwise.
pub fn runtime_of_image(service: &str, tag: Option<&str>) -> ImageRuntime {
    let Some(listed) = releases().get(service) else {
        return fallback(format!("{service}-controller is not in the release table"));
    };
    let Some(tag) = tag else {
        return fallback(format!(
            "the {service}-controller image has no tag (digest only?)"
        ));
    };
    let Some(wanted) = release_version(tag) else {
        return fallback(format!(
            "{service}-controller tag {tag:?} is no release version"
        ));
    };
    let found = |(release, runtime): &(&str, PinnedRuntime), source| ImageRuntime {
        runtime: *runtime,
        source,
        release: Some(release.to_string()),
        warning: None,
    };
    if let Some(exact) = listed.get(&wanted) {
        return found(exact, RuntimeSource::Image);
    }
    match listed.range(..wanted).next_back() {
        Some((_, lower)) => found(lower, RuntimeSource::ImageNearest),
        None => fallback(format!(
            "{service}-controller {tag} is older than every listed release"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> RuntimeVersion {
        s.parse().unwrap()
    }

    /// One image and what the table says of it.
    struct Row {
        service: &'static str,
        tag: Option<&'static str>,
        runtime: &'static str,
        source: RuntimeSource,
        release: Option<&'static str>,
    }

    const fn row(
        service: &'static str,
        tag: Option<&'static str>,
        runtime: &'static str,
        source: RuntimeSource,
        release: Option<&'static str>,
    ) -> Row {
        Row {
            service,
            tag,
            runtime,
            source,
            release,
        }
    }

    /// Rows from `controller-runtime-versions.tsv` and what its SOURCES.md says of them.
    #[test]
    fn images_map_to_the_runtime_their_release_pins() {
        use RuntimeSource::*;
        let rows = [
            row("ec2", Some("1.2.0"), "v0.28.0", Image, Some("1.2.0")),
            row("ec2", Some("v1.2.0"), "v0.28.0", Image, Some("1.2.0")),
            row("s3", Some("1.10.0"), "v0.62.0", Image, Some("1.10.0")),
            row("rds", Some("1.6.2"), "v0.52.0", Image, Some("1.6.2")),
            // Not a release, between two: the nearest lower one.
            row("ec2", Some("1.1.5"), "v0.28.0", ImageNearest, Some("1.1.2")),
            row("ec2", Some("0.5.0"), "v0.23.0", ImageNearest, Some("0.1.1")),
            // Newer than every listed release: the newest one (ec2 1.20.0, v0.62.0).
            row(
                "ec2",
                Some("9.0.0"),
                "v0.62.0",
                ImageNearest,
                Some("1.20.0"),
            ),
            // Release order and runtime order disagree here: the release decides.
            row("dynamodb", Some("0.1.10"), "v0.24.0", Image, Some("0.1.10")),
            row("dynamodb", Some("1.0.0"), "v0.23.0", Image, Some("1.0.0")),
            // Pseudo-versions behave as the newest release their commit contains.
            row("iam", Some("1.3.10"), "v0.36.0", Image, Some("1.3.10")),
            row("elasticache", Some("0.0.3"), "v0.0.0", Image, Some("0.0.3")),
            // Nothing to go by.
            row("ec2", None, "v0.62.0", Default, None),
            row("ec2", Some("latest"), "v0.62.0", Default, None),
            row("ec2", Some("0.0.0"), "v0.62.0", Default, None),
            row("nosuchservice", Some("1.0.0"), "v0.62.0", Default, None),
        ];
        for r in rows {
            let got = runtime_of_image(r.service, r.tag);
            let what = format!("{} {:?}", r.service, r.tag);
            assert_eq!(got.runtime.version, v(r.runtime), "{what}");
            assert_eq!(got.source, r.source, "{what}");
            assert_eq!(got.release.as_deref(), r.release, "{what}");
            assert_eq!(got.warning.is_some(), r.source == Default, "{what}");
        }
    }

    #[test]
    fn a_pinned_commit_is_kept_for_its_flags() {
        let iam = runtime_of_image("iam", Some("1.3.10"));
        assert_eq!(
            iam.runtime.commit,
            Some("v0.35.1-0.20240801040145-dda2022eddbe")
        );
        assert_eq!(runtime_of_image("iam", Some("1.3.9")).runtime.commit, None);
    }

    #[test]
    fn the_table_covers_what_its_provenance_says() {
        assert_eq!(releases().len(), 62);
        let rows: usize = releases().values().map(|r| r.len()).sum();
        assert_eq!(rows, 2713);
    }
}
