//! ACK runtime versions (`github.com/aws-controllers-k8s/runtime` release tags), and the three
//! names older configs use for them.

use std::fmt;
use std::str::FromStr;

/// A runtime release `vMAJOR.MINOR.PATCH`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RuntimeVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl RuntimeVersion {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        RuntimeVersion {
            major,
            minor,
            patch,
        }
    }

    /// The newest runtime this project knows (controllers released from 2026-08 pin it).
    pub const NEWEST: RuntimeVersion = RuntimeVersion::new(0, 62, 0);
}

impl Default for RuntimeVersion {
    fn default() -> Self {
        RuntimeVersion::NEWEST
    }
}

impl fmt::Display for RuntimeVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl serde::Serialize for RuntimeVersion {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Why a runtime version did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRuntime(pub String);

impl fmt::Display for BadRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not a runtime version (vMAJOR.MINOR.PATCH) or one of legacy, namespace-first, strict",
            self.0
        )
    }
}

impl std::error::Error for BadRuntime {}

impl FromStr for RuntimeVersion {
    type Err = BadRuntime;

    /// `v0.35.0` (the tag) or `0.35.0`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadRuntime(s.to_string());
        let body = s.strip_prefix('v').unwrap_or(s);
        let mut parts = body.split('.');
        let mut next = || -> Result<u32, BadRuntime> {
            let p = parts.next().ok_or_else(bad)?;
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || p.len() > 6 {
                return Err(bad());
            }
            p.parse().map_err(|_| bad())
        };
        let v = RuntimeVersion::new(next()?, next()?, next()?);
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(v)
    }
}

/// The coarse names of the first releases of this project, each now one version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RuntimeName {
    /// v0.35.0: the status account comes first (the seed incident).
    Legacy,
    /// v0.52.0: the namespace comes first, a stale status stays.
    NamespaceFirst,
    /// The newest runtime known: a differing status account is a terminal error.
    Strict,
}

impl RuntimeName {
    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeName::Legacy => "legacy",
            RuntimeName::NamespaceFirst => "namespace-first",
            RuntimeName::Strict => "strict",
        }
    }

    pub fn version(self) -> RuntimeVersion {
        match self {
            RuntimeName::Legacy => RuntimeVersion::new(0, 35, 0),
            RuntimeName::NamespaceFirst => RuntimeVersion::new(0, 52, 0),
            RuntimeName::Strict => RuntimeVersion::NEWEST,
        }
    }
}

/// What a config's `runtime:` says: a version, or one of the names (kept for old configs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RuntimeSetting {
    pub version: RuntimeVersion,
    pub name: Option<RuntimeName>,
}

impl FromStr for RuntimeSetting {
    type Err = BadRuntime;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let name = match s {
            "legacy" => Some(RuntimeName::Legacy),
            "namespace-first" => Some(RuntimeName::NamespaceFirst),
            "strict" => Some(RuntimeName::Strict),
            _ => None,
        };
        Ok(match name {
            Some(n) => RuntimeSetting {
                version: n.version(),
                name: Some(n),
            },
            None => RuntimeSetting {
                version: s.parse()?,
                name: None,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_order_and_print_as_tags() {
        let v: RuntimeVersion = "v0.35.0".parse().unwrap();
        assert_eq!(v, RuntimeVersion::new(0, 35, 0));
        assert_eq!(v.to_string(), "v0.35.0");
        assert_eq!(
            "0.29.2".parse::<RuntimeVersion>().unwrap().to_string(),
            "v0.29.2"
        );
        assert!(RuntimeVersion::new(0, 9, 9) < RuntimeVersion::new(0, 10, 0));
        assert!(RuntimeVersion::new(0, 29, 2) > RuntimeVersion::new(0, 29, 1));
        for bad in [
            "",
            "v0.35",
            "v0.35.0.1",
            "v0.x.0",
            "0.35.-1",
            "v0.35.1-0.2024",
            "latest",
        ] {
            assert!(bad.parse::<RuntimeVersion>().is_err(), "{bad}");
        }
    }

    #[test]
    fn names_stand_for_one_version_each() {
        let cases = [
            ("legacy", "v0.35.0"),
            ("namespace-first", "v0.52.0"),
            ("strict", "v0.62.0"),
            ("v0.28.0", "v0.28.0"),
        ];
        for (given, version) in cases {
            let s: RuntimeSetting = given.parse().unwrap();
            assert_eq!(s.version.to_string(), version, "{given}");
            let named = (!given.starts_with('v')).then_some(given);
            assert_eq!(s.name.map(|n| n.as_str()), named, "{given}");
        }
        assert!("newest".parse::<RuntimeSetting>().is_err());
    }
}
