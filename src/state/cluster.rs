//! The live cluster store: per watch, the facts classified from each object (never the whole
//! object), re-list buffers, sync and health; the snapshot the evaluation reads is taken from
//! it. The watches (`source::kube`) only feed it events.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tracing::warn;

use crate::model::object::Object;
use crate::model::{AckResource, ClusterSnapshot, ParseError, ack_service_of_group};
use crate::telemetry::{Telemetry, label};

/// How long after its last error a watch counts as failing (see [`LiveCluster::is_healthy`]).
pub const HEALTH_WINDOW: Duration = Duration::from_secs(35);

/// What one watch contributes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WatchId {
    Crds,
    Namespaces,
    RoleSelectors,
    CarmMap {
        namespace: String,
        name: String,
    },
    Deployments {
        namespace: String,
    },
    ServiceAccounts {
        namespace: String,
    },
    Kind {
        group: String,
        kind: String,
        namespace: Option<String>,
    },
}

impl WatchId {
    /// The `resource` label of the restart counter.
    pub(crate) fn resource_label(&self) -> String {
        match self {
            WatchId::Crds => "customresourcedefinitions.apiextensions.k8s.io".into(),
            WatchId::Namespaces => "namespaces".into(),
            WatchId::RoleSelectors => "iamroleselectors.services.k8s.aws".into(),
            WatchId::CarmMap { .. } => "configmaps".into(),
            WatchId::Deployments { .. } => "deployments.apps".into(),
            WatchId::ServiceAccounts { .. } => "serviceaccounts".into(),
            WatchId::Kind { group, kind, .. } => format!("{}.{group}", kind.to_ascii_lowercase()),
        }
    }
}

/// `namespace/name` (neither may hold a `/`): one string per object, not two.
pub(crate) type ObjectKey = Box<str>;

/// What a watch holds: per (namespace, name), the facts classified from the object.
#[derive(Default)]
struct WatchState {
    objects: BTreeMap<ObjectKey, Stored>,
    /// Objects of a re-list in progress; replaces `objects` at `InitDone`.
    relist: Option<BTreeMap<ObjectKey, Stored>>,
    synced: bool,
    /// When the watch last failed; cleared by the next event.
    last_error: Option<std::time::Instant>,
    lists: u64,
    /// (group, kind) of the objects, for `kube_objects`.
    kind: (String, String),
}

#[derive(Clone)]
pub(crate) enum Stored {
    Resource(Arc<AckResource>),
    Other(Vec<Object>),
}

#[derive(Default)]
struct State {
    watches: BTreeMap<WatchId, WatchState>,
    /// Latched once every watch finished its first list.
    ready: bool,
    parse_errors: Vec<ParseError>,
}

/// The cluster as the watches see it, shared by the watch tasks and the publisher.
pub struct LiveCluster {
    state: Mutex<State>,
    /// Whether resources keep their identifier strings (only CloudTrail attribution reads them).
    pub(crate) keep_identifiers: bool,
    /// Woken on every change; the publisher debounces.
    pub changed: Notify,
    pub(crate) telemetry: Arc<Telemetry>,
}

impl LiveCluster {
    /// `keep_identifiers`: keep the identifier strings CloudTrail attribution needs; without a
    /// CloudTrail side they are dropped on arrival.
    pub fn new(telemetry: Arc<Telemetry>, keep_identifiers: bool) -> Arc<Self> {
        Arc::new(LiveCluster {
            state: Mutex::new(State::default()),
            keep_identifiers,
            changed: Notify::new(),
            telemetry,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn register(&self, id: &WatchId, kind: (String, String)) {
        let mut s = self.lock();
        let w = s.watches.entry(id.clone()).or_default();
        w.kind = kind;
    }

    pub(crate) fn unregister(&self, id: &WatchId) {
        self.lock().watches.remove(id);
        self.changed.notify_one();
    }

    pub(crate) fn on_event(&self, id: &WatchId, event: WatchEvent) {
        let mut s = self.lock();
        let Some(w) = s.watches.get_mut(id) else {
            return;
        };
        match event {
            WatchEvent::Init => {
                w.relist = Some(BTreeMap::new());
                w.lists += 1;
                if w.lists > 1 {
                    // A re-list: the watch restarted (410 Gone, or after an error).
                    self.telemetry
                        .kube_watch_restarts
                        .get_or_create(&label("resource", &id.resource_label()))
                        .inc();
                }
            }
            WatchEvent::Put {
                key,
                facts: stored,
                relisting: initial,
            } => {
                w.last_error = None;
                match (&mut w.relist, initial) {
                    (Some(buffer), true) => {
                        buffer.insert(key, stored);
                    }
                    _ => {
                        w.objects.insert(key, stored);
                    }
                }
            }
            WatchEvent::InitDone => {
                if let Some(buffer) = w.relist.take() {
                    w.objects = buffer;
                }
                w.synced = true;
                w.last_error = None;
                if !s.ready && s.watches.values().all(|w| w.synced) {
                    s.ready = true;
                }
            }
            WatchEvent::Remove(key) => {
                w.objects.remove(&key);
            }
            WatchEvent::Error { message, forbidden } => {
                w.last_error = Some(std::time::Instant::now());
                self.telemetry
                    .kube_watch_restarts
                    .get_or_create(&label("resource", &id.resource_label()))
                    .inc();
                warn!(watch = %id.resource_label(), "watch error, retrying with backoff: {message}");
                if forbidden && !w.synced {
                    // A kind RBAC refuses must not hold readiness hostage: the others are read.
                    w.synced = true;
                    if !s.ready && s.watches.values().all(|w| w.synced) {
                        s.ready = true;
                    }
                }
                return;
            }
            WatchEvent::Problems(errors) => {
                for e in &errors {
                    warn!("{e}");
                }
                self.telemetry
                    .parse_errors
                    .get_or_create(&label("source", "kube"))
                    .inc_by(errors.len() as u64);
                s.parse_errors.extend(errors);
                let excess = s.parse_errors.len().saturating_sub(100);
                s.parse_errors.drain(..excess);
                return;
            }
        }
        drop(s);
        self.changed.notify_one();
    }

    /// True once every watch finished its first full list.
    pub fn is_ready(&self) -> bool {
        self.lock().ready
    }

    /// True when no watch failed recently. A watch that recovers after an error may see no
    /// event for a long time, so "recently" is longer than the watcher's longest backoff
    /// (30 s): a watch still failing errs again within it.
    pub fn is_healthy(&self) -> bool {
        self.lock()
            .watches
            .values()
            .all(|w| w.last_error.is_none_or(|t| t.elapsed() > HEALTH_WINDOW))
    }

    /// The current facts, as a snapshot. Resources are shared, not copied.
    pub fn snapshot(&self) -> ClusterSnapshot {
        let s = self.lock();
        let mut snap = ClusterSnapshot::default();
        for w in s.watches.values() {
            if ack_service_of_group(&w.kind.0).is_some() {
                let kinds = snap.ack_kinds.entry(w.kind.0.clone()).or_default();
                kinds.insert(w.kind.1.clone());
            }
            if !w.objects.is_empty() {
                *snap.object_kinds.entry(w.kind.clone()).or_default() += w.objects.len();
            }
            snap.objects += w.objects.len();
            for stored in w.objects.values() {
                match stored {
                    Stored::Resource(r) => snap.resources.push(r.clone()),
                    Stored::Other(objects) => {
                        for o in objects {
                            snap.insert(o.clone());
                        }
                    }
                }
            }
        }
        snap.parse_errors = s.parse_errors.clone();
        drop(s);
        snap.normalize();
        snap
    }
}

pub(crate) enum WatchEvent {
    Init,
    /// An object's facts; `relisting` while a re-list replaces the objects held.
    Put {
        key: ObjectKey,
        facts: Stored,
        relisting: bool,
    },
    InitDone,
    Remove(ObjectKey),
    /// A failed list or watch; `forbidden` when RBAC refused it (it will not list soon).
    Error {
        message: String,
        forbidden: bool,
    },
    Problems(Vec<ParseError>),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live() -> Arc<LiveCluster> {
        LiveCluster::new(Arc::new(Telemetry::new("test", "test")), false)
    }

    fn kind(k: &str) -> WatchId {
        WatchId::Kind {
            group: "ec2.services.k8s.aws".into(),
            kind: k.into(),
            namespace: None,
        }
    }

    #[test]
    fn ready_after_every_watch_listed_or_was_refused() {
        let l = live();
        l.register(&WatchId::Namespaces, (String::new(), "Namespace".into()));
        l.register(&kind("VPC"), ("ec2.services.k8s.aws".into(), "VPC".into()));
        l.register(
            &kind("Subnet"),
            ("ec2.services.k8s.aws".into(), "Subnet".into()),
        );
        l.on_event(&WatchId::Namespaces, WatchEvent::InitDone);
        l.on_event(&kind("VPC"), WatchEvent::InitDone);
        assert!(!l.is_ready());
        // A transient error does not count as listed...
        let error = |message: &str, forbidden| WatchEvent::Error {
            message: message.into(),
            forbidden,
        };
        l.on_event(&kind("Subnet"), error("boom", false));
        assert!(!l.is_ready());
        assert!(!l.is_healthy());
        // ...a refusal does, so the other kinds are served.
        l.on_event(&kind("Subnet"), error("forbidden", true));
        assert!(l.is_ready());
        assert!(!l.is_healthy());
    }

    #[test]
    fn a_relist_replaces_objects_at_init_done() {
        let l = live();
        let id = kind("VPC");
        l.register(&id, ("ec2.services.k8s.aws".into(), "VPC".into()));
        let put = |name: &str, initial: bool| WatchEvent::Put {
            key: format!("dev/{name}").into_boxed_str(),
            facts: Stored::Resource(Arc::new(AckResource {
                gvk: crate::model::Gvk {
                    group: "ec2.services.k8s.aws".into(),
                    version: "v1alpha1".into(),
                    kind: "VPC".into(),
                }
                .into(),
                namespace: "dev".into(),
                name: name.into(),
                ..Default::default()
            })),
            relisting: initial,
        };
        l.on_event(&id, WatchEvent::Init);
        l.on_event(&id, put("a", true));
        l.on_event(&id, put("b", true));
        l.on_event(&id, WatchEvent::InitDone);
        assert_eq!(l.snapshot().resources.len(), 2);
        // A re-list that no longer sees "a": until it is done the old state stands.
        l.on_event(&id, WatchEvent::Init);
        l.on_event(&id, put("b", true));
        assert_eq!(l.snapshot().resources.len(), 2);
        l.on_event(&id, WatchEvent::InitDone);
        let names: Vec<String> = l
            .snapshot()
            .resources
            .iter()
            .map(|r| r.name.clone())
            .collect();
        assert_eq!(names, vec!["b".to_string()]);
    }
}
