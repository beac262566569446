//! The Prometheus exposition formats (text 0.0.4 and OpenMetrics 1.0): family descriptors,
//! `# HELP`/`# TYPE` headers, label escaping and sample lines. Shared by the families the
//! outputs render (`output::metrics`) and the exporter's own health (`telemetry`).

use std::fmt::Write as _;

/// How a family is typed on `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    Counter,
    Info,
}

/// One metric family, by its sample name as it appears on `/metrics`.
#[derive(Debug)]
pub struct Family {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
    pub labels: &'static [&'static str],
    /// Served only with a live source (Kubernetes watch or LookupEvents polling).
    pub live_only: bool,
}

/// `family!(ID, "name", Gauge, "help", ["label", …] [, live_only])`: a `pub const` [`Family`].
macro_rules! family {
    ($id:ident, $name:literal, $kind:ident, $help:literal, [$($l:literal),*]) => {
        $crate::exposition::family!($id, $name, $kind, $help, [$($l),*], false);
    };
    ($id:ident, $name:literal, $kind:ident, $help:literal, [$($l:literal),*], $live:literal) => {
        pub const $id: $crate::exposition::Family = $crate::exposition::Family {
            name: $name,
            kind: $crate::exposition::Kind::$kind,
            help: $help,
            labels: &[$($l),*],
            live_only: $live,
        };
    };
}
pub(crate) use family;

/// The two exposition formats, chosen by the scrape's `Accept` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    OpenMetrics,
    Text,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
        }
    }

    /// OpenMetrics when the scraper asks for it (Prometheus does by default), else text.
    pub fn from_accept(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Text,
        }
    }
}

impl Family {
    /// The name in `# HELP`/`# TYPE`: OpenMetrics names counters and infos without their
    /// `_total`/`_info` suffix; the text format names every family by its samples.
    pub fn header_name(&self, format: Format) -> &'static str {
        match (format, self.kind) {
            (Format::OpenMetrics, Kind::Counter) => {
                self.name.strip_suffix("_total").unwrap_or(self.name)
            }
            (Format::OpenMetrics, Kind::Info) => {
                self.name.strip_suffix("_info").unwrap_or(self.name)
            }
            _ => self.name,
        }
    }

    pub fn type_name(&self, format: Format) -> &'static str {
        match (format, self.kind) {
            (_, Kind::Counter) => "counter",
            (Format::OpenMetrics, Kind::Info) => "info",
            _ => "gauge",
        }
    }

    pub fn write_header(&self, format: Format, out: &mut String) {
        let name = self.header_name(format);
        let _ = writeln!(out, "# HELP {name} {}", self.help);
        let _ = writeln!(out, "# TYPE {name} {}", self.type_name(format));
    }
}

/// Writes a label value with the exposition escapes (`\\`, `\"`, `\n`).
pub(crate) fn escape_into(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Writes one sample line. `labels` must follow the family's label order.
pub(crate) fn sample(
    out: &mut String,
    family: &Family,
    labels: &[&str],
    value: impl std::fmt::Display,
) {
    debug_assert_eq!(labels.len(), family.labels.len(), "{}", family.name);
    out.push_str(family.name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in family.labels.iter().zip(labels).enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(k);
            out.push_str("=\"");
            escape_into(out, v);
            out.push('"');
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}
