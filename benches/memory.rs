//! Bytes held per resource by each layer, counted by a counting allocator (requested sizes,
//! without the allocator's own overhead): the reduced objects, the evaluation cache, the
//! prepared metric lines. 100 000 synthetic SecurityGroups. Prints numbers; asserts nothing.
//!
//! Run: `cargo bench --bench memory`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
/// Counts the bytes currently allocated.
struct Counting;
static NOW: AtomicUsize = AtomicUsize::new(0);
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        NOW.fetch_add(l.size(), Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        NOW.fetch_sub(l.size(), Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
}
#[global_allocator]
static A: Counting = Counting;
fn mib() -> f64 {
    NOW.load(Ordering::Relaxed) as f64 / 1048576.0
}
fn main() {
    use ack_drift_exporter::model::ClusterSnapshot;
    use ack_drift_exporter::model::object::{Object, classify};
    let n = 100_000;
    let base = mib();
    let mut snap = ClusterSnapshot::default();
    for i in 0..n {
        let ns = i % 200;
        let v = serde_json::json!({"apiVersion": "ec2.services.k8s.aws/v1alpha1", "kind": "SecurityGroup",
          "metadata": {"name": format!("securitygroup-{i}"), "namespace": format!("team-{ns}"), "labels": {"app": format!("app-{}", i % 50)}},
          "spec": {"name": format!("securitygroup-{i}"), "description": "synthetic resource for the live benchmark"},
          "status": {"ackResourceMetadata": {"ownerAccountID": "111111111111", "region": "eu-west-2", "arn": format!("arn:aws:ec2:eu-west-2:111111111111:securitygroup/securitygroup-{i}")},
            "conditions": [{"type": "ACK.ResourceSynced", "status": "True", "lastTransitionTime": "2026-11-01T10:00:00Z"}]}});
        for o in classify(&v).objects {
            if let Object::Resource(mut r) = o {
                // As a live source without a CloudTrail side keeps them.
                r.id_fields = Vec::new();
                snap.insert(Object::Resource(r));
            }
        }
    }
    let after_state = mib();
    println!(
        "state: {:.1} MiB ({:.0} B/resource)",
        after_state - base,
        (after_state - base) * 1048576.0 / n as f64
    );
    let config = ack_drift_exporter::config::Config::parse("controllers:\n  ec2:\n    default_account: '111111111111'\n    default_region: eu-west-2\n").unwrap();
    let mut ec = ack_drift_exporter::evaluate::EvaluationCache::default();
    let ev = ack_drift_exporter::evaluate::evaluate_with(&mut ec, &snap, &config);
    let after_eval = mib();
    println!(
        "evaluation cache + evaluation: {:.1} MiB ({:.0} B/resource)",
        after_eval - after_state,
        (after_eval - after_state) * 1048576.0 / n as f64
    );
    drop(ev);
    let after_drop = mib();
    println!(
        "evaluation cache alone: {:.1} MiB",
        after_drop - after_state
    );
    let ev = ack_drift_exporter::evaluate::evaluate_with(&mut ec, &snap, &config);
    let mut rc = ack_drift_exporter::output::metrics::ResourceCache::default();
    let before_render = mib();
    let inputs = ev
        .resources
        .iter()
        .map(|v| ack_drift_exporter::output::metrics::ResourceInput {
            resource: &snap.resources[v.index],
            ownership: &v.ownership,
            evidence: None,
            controller_version: Some("1.0.0"),
        });
    let exp = rc.prepare(inputs, &Default::default(), None, Default::default());
    let after_render = mib();
    println!(
        "render cache + exposition: {:.1} MiB ({:.0} B/resource); text {:.1} MiB",
        after_render - before_render,
        (after_render - before_render) * 1048576.0 / n as f64,
        exp.len() as f64 / 1048576.0
    );
}
