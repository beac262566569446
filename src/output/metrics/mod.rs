//! The `/metrics` contract (README "Metrics") and its rendering *before* any scrape.
//!
//! Each family is defined beside its generator: per resource in [`resource`], cluster-level in
//! [`cluster`], CloudTrail in [`trail`], the exporter's own health in [`crate::telemetry`]
//! (encoded at scrape time: they are few). [`ALL`] lists them in exposition order; the README
//! table and `tests/testdata/stable-metrics.txt` are held to it. [`cache`] keeps each
//! resource's lines between publishes and [`stream`] hands them to a scrape piece by piece.

pub mod cache;
pub mod cluster;
pub mod resource;
pub mod stream;
pub mod trail;

use std::fmt::Write as _;

pub use crate::exposition::{Family, Format, Kind};
use crate::telemetry;
pub use cache::ResourceCache;
pub use cluster::ClusterMetrics;
use resource::*;
pub use resource::{MAX_LABEL_VALUE_BYTES, ResourceInput, bounded};
pub use stream::{Cursor, Exposition};

/// Every family the exporter can serve, in exposition order.
pub const ALL: [&Family; 38] = [
    &RESOURCE_INFO.family,
    &RESOURCE_ACCOUNT_DRIFT.family,
    &RESOURCE_REGION_DRIFT.family,
    &RESOURCE_PROBLEM.family,
    &RESOURCE_CONDITION.family,
    &RESOURCE_CONDITION_TRANSITION.family,
    &RESOURCE_ERROR_EVENTS.family,
    &RESOURCE_WRONG_ACCOUNT_CALLS.family,
    &cluster::RESOURCES,
    &cluster::CONTROLLER_INFO,
    &cluster::CONTROLLER_UP,
    &cluster::CONTROLLER_PROBLEM,
    &cluster::ROLE_SELECTOR_INVALID,
    &trail::CLOUDTRAIL_EVENTS,
    &trail::CLOUDTRAIL_ERRORS,
    &trail::CLOUDTRAIL_CROSS_ACCOUNT,
    &trail::CLOUDTRAIL_UNATTRIBUTED,
    &trail::CLOUDTRAIL_WINDOW,
    &telemetry::EXPORTER_BUILD_INFO,
    &telemetry::EXPORTER_SOURCE_UP,
    &telemetry::EXPORTER_KUBE_WATCH_RESTARTS,
    &telemetry::EXPORTER_KUBE_OBJECTS,
    &telemetry::EXPORTER_CLOUDTRAIL_REQUESTS,
    &telemetry::EXPORTER_CLOUDTRAIL_REQUEST_ERRORS,
    &telemetry::EXPORTER_CLOUDTRAIL_LAST_SUCCESS,
    &telemetry::EXPORTER_CLOUDTRAIL_LAG,
    &telemetry::EXPORTER_CLOUDTRAIL_UP,
    &telemetry::EXPORTER_SQS_RECEIVED,
    &telemetry::EXPORTER_SQS_DELETED,
    &telemetry::EXPORTER_SQS_LAG,
    &telemetry::EXPORTER_S3_OBJECTS,
    &telemetry::EXPORTER_S3_BYTES,
    &telemetry::EXPORTER_BAD_MESSAGES,
    &telemetry::EXPORTER_AWS_REQUESTS,
    &telemetry::EXPORTER_AWS_REQUEST_ERRORS,
    &telemetry::EXPORTER_DUPLICATES,
    &telemetry::EXPORTER_PARSE_ERRORS,
    &telemetry::EXPORTER_SCRAPE_DURATION,
];

/// The metric reference table for the README (a test keeps the two identical).
pub fn reference_table() -> String {
    let mut out = String::from("| metric | type | labels | meaning |\n|---|---|---|---|\n");
    for f in ALL {
        let ty = match f.kind {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
            Kind::Info => "info",
        };
        let live = if f.live_only {
            " (live sources only)"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "| `{}` | {ty} | {} | {}{live} |",
            f.name,
            f.labels
                .iter()
                .map(|l| format!("`{l}`"))
                .collect::<Vec<_>>()
                .join(", "),
            f.help
        );
    }
    out
}

/// Exposition options from the config.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Options {
    /// Leave out per-resource series whose value is 0 (drift gauges of healthy resources).
    pub omit_zero_series: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluate::Ownership;
    use crate::exposition::sample;
    use cluster::*;
    use telemetry::*;
    use trail::*;

    #[test]
    fn names_follow_the_conventions() {
        let mut seen = std::collections::BTreeSet::new();
        for f in ALL {
            assert!(seen.insert(f.name), "{} twice", f.name);
            assert!(f.name.starts_with("ack_drift_"));
            assert_eq!(
                f.kind == Kind::Counter,
                f.name.ends_with("_total"),
                "{}",
                f.name
            );
            if f.kind == Kind::Info {
                assert!(f.name.ends_with("_info"));
            }
            assert!(!f.help.is_empty() && !f.help.contains('\n'));
        }
    }

    #[test]
    fn headers_per_format() {
        let mut om = String::new();
        CLOUDTRAIL_ERRORS.write_header(Format::OpenMetrics, &mut om);
        assert!(om.contains("# TYPE ack_drift_cloudtrail_errors counter\n"));
        let mut text = String::new();
        CLOUDTRAIL_ERRORS.write_header(Format::Text, &mut text);
        assert!(text.contains("# TYPE ack_drift_cloudtrail_errors_total counter\n"));
        let mut om = String::new();
        RESOURCE_INFO
            .family
            .write_header(Format::OpenMetrics, &mut om);
        assert!(om.contains("# TYPE ack_drift_resource info\n"));
        let mut text = String::new();
        RESOURCE_INFO.family.write_header(Format::Text, &mut text);
        assert!(text.contains("# TYPE ack_drift_resource_info gauge\n"));
    }

    #[test]
    fn long_label_values_are_cut_on_a_character_boundary() {
        let short = "x".repeat(MAX_LABEL_VALUE_BYTES);
        assert_eq!(bounded(&short), short.as_str());
        let long = "r".repeat(1000);
        let cut = bounded(&long);
        assert_eq!(cut.len(), MAX_LABEL_VALUE_BYTES);
        assert!(cut.ends_with('…') && cut.starts_with("rrr"));
        // Two-byte characters: the cut never splits one.
        let wide = "é".repeat(100);
        let cut = bounded(&wide);
        assert!(cut.len() <= MAX_LABEL_VALUE_BYTES && cut.ends_with('…'));
        assert_eq!(cut.chars().filter(|c| *c == 'é').count(), 62);
    }

    #[test]
    fn label_values_are_escaped() {
        let mut out = String::new();
        sample(&mut out, &EXPORTER_SOURCE_UP, &["a\"b\\c\nd"], 1);
        assert_eq!(
            out,
            "ack_drift_exporter_source_up{source=\"a\\\"b\\\\c\\nd\"} 1\n"
        );
    }

    fn world() -> (Vec<crate::model::AckResource>, Vec<Ownership>) {
        use crate::model::{AckResource, Gvk};
        let resources: Vec<AckResource> = (0..3)
            .map(|i| AckResource {
                gvk: Gvk {
                    group: "ec2.services.k8s.aws".into(),
                    version: "v1alpha1".into(),
                    kind: "VPC".into(),
                }
                .into(),
                namespace: "dev".into(),
                name: format!("v{i}"),
                ..Default::default()
            })
            .collect();
        let ownership = Ownership {
            status_account: None,
            status_region: None,
            arn_account: None,
            expected_account: Some("111111111111".into()),
            account_source: None,
            account_drift: false,
            expected_region: None,
            region_source: None,
            region_drift: false,
            problems: Default::default(),
            effect: None,
            region_effect: None,
            role_arn: None,
            role_error: None,
            matched_selectors: vec![],
            called_account: None,
            controller: None,
            runtime: Default::default(),
            runtime_name: None,
        };
        (resources, vec![ownership; 3])
    }

    fn inputs<'a>(
        r: &'a [crate::model::AckResource],
        o: &'a [Ownership],
    ) -> impl Iterator<Item = ResourceInput<'a>> {
        r.iter().zip(o).map(|(resource, ownership)| ResourceInput {
            resource,
            ownership,
            evidence: None,
            controller_version: None,
        })
    }

    #[test]
    fn only_changed_resources_are_rendered_again() {
        let (mut r, mut o) = world();
        let mut cache = ResourceCache::default();
        let first = cache.prepare(
            inputs(&r, &o),
            &ClusterMetrics::default(),
            None,
            Options::default(),
        );
        assert_eq!(cache.rendered_last, 3);
        let mut a = String::new();
        first.write(Format::Text, &mut a);

        let _ = cache.prepare(
            inputs(&r, &o),
            &ClusterMetrics::default(),
            None,
            Options::default(),
        );
        assert_eq!(cache.rendered_last, 0, "nothing changed, nothing rendered");

        o[1].status_account = Some("222222222222".into());
        o[1].account_drift = true;
        let changed = cache.prepare(
            inputs(&r, &o),
            &ClusterMetrics::default(),
            None,
            Options::default(),
        );
        assert_eq!(cache.rendered_last, 1);
        let mut b = String::new();
        changed.write(Format::Text, &mut b);
        assert!(
            b.contains("name=\"v1\",status_account=\"222222222222\""),
            "{b}"
        );

        r.pop();
        o.pop();
        let shrunk = cache.prepare(
            inputs(&r, &o),
            &ClusterMetrics::default(),
            None,
            Options::default(),
        );
        assert_eq!(cache.rendered_last, 0);
        let mut c = String::new();
        shrunk.write(Format::Text, &mut c);
        assert!(!c.contains("name=\"v2\""));
        assert!(c.contains(
            "ack_drift_resources{group=\"ec2.services.k8s.aws\",kind=\"VPC\",namespace=\"dev\"} 2"
        ));

        // Changing options renders everything again, and zeros go.
        let lean = cache.prepare(
            inputs(&r, &o),
            &ClusterMetrics::default(),
            None,
            Options {
                omit_zero_series: true,
            },
        );
        assert_eq!(cache.rendered_last, 2);
        let mut d = String::new();
        lean.write(Format::Text, &mut d);
        assert_eq!(d.matches("ack_drift_resource_account_drift{").count(), 1);
        assert_eq!(d.matches("ack_drift_resource_region_drift{").count(), 0);
    }
}
