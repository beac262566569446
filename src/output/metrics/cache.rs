//! The render cache: each resource's lines kept between publishes and rendered again only
//! when something they depend on changed; verdict lines interned so equal verdicts share one
//! allocation.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::Options;
use super::cluster::{ClusterMetrics, controller_blocks, resource_counts};
use super::resource::{Rendered, RenderedResource, ResourceInput, VerdictLines};
use super::stream::Exposition;
use super::trail::trail_blocks;
use crate::evaluate::cloudtrail::TrailView;
use crate::intern::Interner;

/// Per-resource rendered lines, kept between snapshots: a resource is rendered again only
/// when something its lines depend on changed.
/// [`AckResource::identity_hash`]; a collision is caught by the content fingerprint.
type ResourceKey = u64;

/// A resource's rendered sample lines, shared by the cache and the published exposition.
type Chunks = Arc<RenderedResource>;

/// A resource's input fingerprint and its rendered chunks.
type Cached = (u64, Chunks);

#[derive(Default)]
pub struct ResourceCache {
    entries: HashMap<ResourceKey, Cached>,
    verdicts: Interner<VerdictLines>,
    /// Resources rendered by the last `prepare` (the rest were reused).
    pub rendered_last: usize,
    /// Cluster warnings already logged, each once while it holds.
    pub announced: BTreeSet<String>,
}

impl ResourceCache {
    /// Renders changed resources, reuses the others, drops vanished ones, and assembles the
    /// exposition.
    pub fn prepare<'a>(
        &mut self,
        resources: impl IntoIterator<Item = ResourceInput<'a>>,
        cluster: &ClusterMetrics,
        trail: Option<&TrailView>,
        options: Options,
    ) -> Exposition {
        let mut prepared = Vec::new();
        // Counted by borrowed names: a copy per resource and publish cost more than the rest.
        let mut counts: BTreeMap<(&str, &str, &str), u64> = BTreeMap::new();
        let mut next = HashMap::with_capacity(self.entries.len());
        self.rendered_last = 0;
        for input in resources {
            let r = input.resource;
            let key = r.identity_hash();
            *counts
                .entry((&r.gvk.group, &r.gvk.kind, &r.namespace))
                .or_default() += 1;
            let fp = input.fingerprint(options);
            let chunks = match self.entries.remove(&key) {
                Some((old_fp, chunks)) if old_fp == fp => chunks,
                _ => {
                    self.rendered_last += 1;
                    let Rendered { verdict, own } = input.render(options);
                    Arc::new(RenderedResource {
                        verdict: self.verdicts.intern(verdict),
                        own,
                    })
                }
            };
            prepared.push(chunks.clone());
            next.insert(key, (fp, chunks));
        }
        self.entries = next;
        self.verdicts.prune();

        let mut blocks = vec![resource_counts(&counts)];
        blocks.extend(controller_blocks(cluster));
        if let Some(t) = trail {
            blocks.extend(trail_blocks(t));
        }
        Exposition::new(prepared, blocks)
    }
}
