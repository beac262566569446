//! The live Kubernetes source: kube-rs watches of every ACK kind (discovered from CRDs, and
//! followed as CRDs come and go), Namespaces, IAMRoleSelectors, and — inside the controller
//! namespaces only — the CARM ConfigMaps, controller Deployments and ServiceAccounts.
//!
//! Objects are turned into snapshot facts the moment they arrive (the same
//! [`object::classify`] the dump reader uses), so no whole object is kept. Every watch
//! recovers by itself (kube's watcher re-lists after `410 Gone`; errors back off); one failing
//! kind never stops the others.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace as K8sNamespace, ServiceAccount as K8sServiceAccount,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::model::object::{self, Object};
use crate::model::{
    AckResource, CARM_MAPS, ClusterSnapshot, Gvk, ParseError, ack_service_of_group,
};
use crate::telemetry::{Telemetry, label};

/// What the watches read cluster-wide besides the ACK kinds: (API group, resource). The shipped
/// RBAC (deploy/kustomize/base/rbac.yaml) is held to these by a test.
pub const CLUSTER_READS: &[(&str, &str)] = &[
    ("apiextensions.k8s.io", "customresourcedefinitions"),
    ("", "namespaces"),
    ("services.k8s.aws", "iamroleselectors"),
];

/// What the watches read inside each controller namespace: (API group, resource).
pub const CONTROLLER_NAMESPACE_READS: &[(&str, &str)] = &[
    ("", "configmaps"),
    ("apps", "deployments"),
    ("", "serviceaccounts"),
];

/// How long after its last error a watch counts as failing (see [`LiveCluster::is_healthy`]).
pub const HEALTH_WINDOW: Duration = Duration::from_secs(35);

/// How to reach the cluster and what to watch.
#[derive(Debug, Clone, Default)]
pub struct KubeOptions {
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    /// Limit ACK resources to these namespaces (empty: all).
    pub namespaces: Vec<String>,
    /// Where controllers, their ServiceAccounts and the CARM maps live.
    pub controller_namespaces: Vec<String>,
}

/// A client from `--kubeconfig`/`--context`, else the usual inference (KUBECONFIG, then
/// in-cluster).
pub async fn client(opts: &KubeOptions) -> Result<Client, String> {
    let options = kube::config::KubeConfigOptions {
        context: opts.context.clone(),
        ..Default::default()
    };
    let config = match (&opts.kubeconfig, &opts.context) {
        (Some(path), _) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| format!("--kubeconfig {}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &options)
                .await
                .map_err(|e| format!("--kubeconfig {}: {e}", path.display()))?
        }
        (None, Some(ctx)) => kube::Config::from_kubeconfig(&options)
            .await
            .map_err(|e| format!("--context {ctx}: {e}"))?,
        (None, None) => kube::Config::infer()
            .await
            .map_err(|e| format!("no Kubernetes configuration (kubeconfig or in-cluster): {e}"))?,
    };
    Client::try_from(config).map_err(|e| format!("Kubernetes client: {e}"))
}

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
    fn resource_label(&self) -> String {
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
enum Stored {
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
    keep_identifiers: bool,
    /// Woken on every change; the publisher debounces.
    pub changed: Notify,
    telemetry: Arc<Telemetry>,
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

    fn register(&self, id: &WatchId, kind: (String, String)) {
        let mut s = self.lock();
        let w = s.watches.entry(id.clone()).or_default();
        w.kind = kind;
    }

    fn unregister(&self, id: &WatchId) {
        self.lock().watches.remove(id);
        self.changed.notify_one();
    }

    fn on_event(&self, id: &WatchId, event: WatchEvent) {
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

enum WatchEvent {
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

/// Classifies a watched object into stored facts; problems come back labelled with the object.
fn classify<K: Serialize + ResourceExt>(
    obj: &K,
    keep_identifiers: bool,
    shared_gvk: &mut Option<Arc<Gvk>>,
) -> (Stored, Vec<ParseError>) {
    let who = format!(
        "kube:{}/{}",
        obj.namespace().unwrap_or_default(),
        obj.name_any()
    );
    let value = match serde_json::to_value(obj) {
        Ok(v) => v,
        Err(e) => {
            return (
                Stored::Other(Vec::new()),
                vec![ParseError {
                    file: who,
                    line: None,
                    message: format!("cannot read: {e}"),
                }],
            );
        }
    };
    let classified = object::classify(&value);
    let errors = classified
        .errors
        .into_iter()
        .map(|message| ParseError {
            file: who.clone(),
            line: None,
            message,
        })
        .collect();
    let mut objects = classified.objects;
    let stored = match objects.as_slice() {
        [Object::Resource(_)] => match objects.pop() {
            Some(Object::Resource(mut r)) => {
                if !keep_identifiers {
                    r.id_fields = Vec::new();
                }
                match shared_gvk {
                    Some(g) if *g == r.gvk => r.gvk = g.clone(),
                    _ => *shared_gvk = Some(r.gvk.clone()),
                }
                Stored::Resource(Arc::new(r))
            }
            _ => unreachable!("matched one resource"),
        },
        _ => Stored::Other(objects),
    };
    (stored, errors)
}

/// `namespace/name` (neither may hold a `/`): one string per object, not two.
type ObjectKey = Box<str>;

fn key_of<K: ResourceExt>(obj: &K) -> ObjectKey {
    format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any()).into_boxed_str()
}

/// Runs one watch until its task is aborted, feeding `live`.
async fn run_watch<K>(api: Api<K>, config: watcher::Config, id: WatchId, live: Arc<LiveCluster>)
where
    K: Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug + Send + Sync + 'static,
{
    let mut stream = watcher::watcher(api, config).default_backoff().boxed();
    // Every object of a kind watch has the same group/version/kind: one copy serves them all.
    let mut gvk: Option<Arc<Gvk>> = None;
    while let Some(event) = stream.next().await {
        let mut problems = Vec::new();
        let event = match event {
            Ok(Event::Init) => WatchEvent::Init,
            Ok(Event::InitApply(o)) => {
                let (stored, errors) = classify(&o, live.keep_identifiers, &mut gvk);
                problems = errors;
                WatchEvent::Put {
                    key: key_of(&o),
                    facts: stored,
                    relisting: true,
                }
            }
            Ok(Event::Apply(o)) => {
                let (stored, errors) = classify(&o, live.keep_identifiers, &mut gvk);
                problems = errors;
                WatchEvent::Put {
                    key: key_of(&o),
                    facts: stored,
                    relisting: false,
                }
            }
            Ok(Event::InitDone) => WatchEvent::InitDone,
            Ok(Event::Delete(o)) => WatchEvent::Remove(key_of(&o)),
            Err(e) => WatchEvent::Error {
                message: e.to_string(),
                forbidden: is_forbidden(&e),
            },
        };
        if !problems.is_empty() {
            live.on_event(&id, WatchEvent::Problems(problems));
        }
        live.on_event(&id, event);
    }
}

/// The storage version and plural of an established ACK CRD, if it is one.
fn ack_kind_of(crd: &CustomResourceDefinition) -> Option<(GroupVersionKind, String)> {
    let spec = &crd.spec;
    let established = crd
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
        });
    if !established {
        return None;
    }
    let is_service = ack_service_of_group(&spec.group).is_some();
    let is_selector = spec.group == "services.k8s.aws" && spec.names.kind == "IAMRoleSelector";
    if !is_service && !is_selector {
        return None;
    }
    let version = spec
        .versions
        .iter()
        .find(|v| v.storage && v.served)
        .or_else(|| spec.versions.iter().find(|v| v.served))?;
    Some((
        GroupVersionKind::gvk(&spec.group, &version.name, &spec.names.kind),
        spec.names.plural.clone(),
    ))
}

/// Starts every watch and follows CRDs. Returns the task handles' owner; dropping it stops
/// nothing (the tasks run until the runtime ends).
pub fn start(client: Client, opts: KubeOptions, live: Arc<LiveCluster>) -> JoinHandle<()> {
    // Fixed watches first, so readiness waits for them.
    let fixed: Vec<(WatchId, (String, String))> = {
        let mut v = vec![
            (
                WatchId::Namespaces,
                (String::new(), "Namespace".to_string()),
            ),
            (
                WatchId::Crds,
                (
                    "apiextensions.k8s.io".to_string(),
                    "CustomResourceDefinition".to_string(),
                ),
            ),
        ];
        for ns in &opts.controller_namespaces {
            for name in CARM_MAPS {
                v.push((
                    WatchId::CarmMap {
                        namespace: ns.clone(),
                        name: name.to_string(),
                    },
                    (String::new(), "ConfigMap".to_string()),
                ));
            }
            v.push((
                WatchId::Deployments {
                    namespace: ns.clone(),
                },
                ("apps".to_string(), "Deployment".to_string()),
            ));
            v.push((
                WatchId::ServiceAccounts {
                    namespace: ns.clone(),
                },
                (String::new(), "ServiceAccount".to_string()),
            ));
        }
        v
    };
    for (id, kind) in &fixed {
        live.register(id, kind.clone());
    }
    for (id, _) in fixed {
        let live = live.clone();
        let client = client.clone();
        let id2 = id.clone();
        match id {
            WatchId::Namespaces => {
                tokio::spawn(run_watch(
                    Api::<K8sNamespace>::all(client),
                    watcher::Config::default(),
                    id2,
                    live,
                ));
            }
            WatchId::CarmMap { namespace, name } => {
                tokio::spawn(run_watch(
                    Api::<ConfigMap>::namespaced(client, &namespace),
                    watcher::Config::default().fields(&format!("metadata.name={name}")),
                    id2,
                    live,
                ));
            }
            WatchId::Deployments { namespace } => {
                tokio::spawn(run_watch(
                    Api::<Deployment>::namespaced(client, &namespace),
                    watcher::Config::default(),
                    id2,
                    live,
                ));
            }
            WatchId::ServiceAccounts { namespace } => {
                tokio::spawn(run_watch(
                    Api::<K8sServiceAccount>::namespaced(client, &namespace),
                    watcher::Config::default(),
                    id2,
                    live,
                ));
            }
            WatchId::Crds => {}
            _ => unreachable!("not a fixed watch"),
        }
    }
    tokio::spawn(follow_crds(client, opts, live))
}

/// Watches CRDs and keeps one watch per served ACK kind (and the IAMRoleSelector watch).
async fn follow_crds(client: Client, opts: KubeOptions, live: Arc<LiveCluster>) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut running: KindWatches = HashMap::new();
    let mut listed: Option<BTreeSet<(String, String)>> = None;
    let mut stream = watcher::watcher(crds, watcher::Config::default())
        .default_backoff()
        .boxed();
    let id = WatchId::Crds;

    let ensure = |crd: &CustomResourceDefinition, running: &mut KindWatches| {
        let (gvk, plural) = ack_kind_of(crd)?;
        Some(ensure_kind(&client, &opts, &live, running, &gvk, &plural))
    };

    while let Some(event) = stream.next().await {
        match event {
            Ok(Event::Init) => {
                listed = Some(BTreeSet::new());
                live.on_event(&id, WatchEvent::Init);
            }
            Ok(Event::InitApply(crd)) => {
                if let Some(key) = ensure(&crd, &mut running)
                    && let Some(l) = &mut listed
                {
                    l.insert(key);
                }
            }
            Ok(Event::InitDone) => {
                // Kinds whose CRD vanished while we were not watching.
                if let Some(l) = listed.take() {
                    let gone: Vec<_> = running
                        .keys()
                        .filter(|k| !l.contains(*k))
                        .cloned()
                        .collect();
                    for key in gone {
                        stop_kind(&mut running, &key, &live);
                    }
                }
                live.on_event(&id, WatchEvent::InitDone);
            }
            Ok(Event::Apply(crd)) => {
                if ensure(&crd, &mut running).is_none() {
                    // No longer established or served: stop it if it ran.
                    let key = (crd.spec.group.clone(), crd.spec.names.kind.clone());
                    stop_kind(&mut running, &key, &live);
                }
                live.changed.notify_one();
            }
            Ok(Event::Delete(crd)) => {
                let key = (crd.spec.group.clone(), crd.spec.names.kind.clone());
                stop_kind(&mut running, &key, &live);
            }
            Err(e) => {
                if is_forbidden(&e) {
                    warn!(
                        "listing CustomResourceDefinitions is forbidden ({e}); falling back to API discovery every {DISCOVERY_INTERVAL:?}: new kinds show up that late"
                    );
                    live.telemetry
                        .source_up
                        .get_or_create(&label("source", "kube_crds"))
                        .set(0);
                    drop(stream);
                    follow_discovery(client, opts, live, running).await;
                    return;
                }
                debug!("CRD watch: {e}");
                live.on_event(
                    &id,
                    WatchEvent::Error {
                        message: e.to_string(),
                        forbidden: false,
                    },
                );
            }
        }
    }
}

/// How often API discovery runs when CRDs cannot be watched.
pub const DISCOVERY_INTERVAL: Duration = Duration::from_secs(30);

fn is_forbidden(e: &watcher::Error) -> bool {
    matches!(
        e,
        watcher::Error::InitialListFailed(kube::Error::Api(s))
            | watcher::Error::WatchStartFailed(kube::Error::Api(s))
            if s.code == 403
    )
}

/// Starts (or keeps) the watches of one ACK kind; returns its key.
fn ensure_kind(
    client: &Client,
    opts: &KubeOptions,
    live: &Arc<LiveCluster>,
    running: &mut KindWatches,
    gvk: &GroupVersionKind,
    plural: &str,
) -> (String, String) {
    let key = (gvk.group.clone(), gvk.kind.clone());
    if let Some((version, _)) = running.get(&key)
        && *version == gvk.version
    {
        return key;
    }
    if let Some((_, old)) = running.remove(&key) {
        for (wid, handle) in old {
            handle.abort();
            live.unregister(&wid);
        }
    }
    let ar = ApiResource::from_gvk_with_plural(gvk, plural);
    let mut handles = Vec::new();
    let is_selector = gvk.group == "services.k8s.aws";
    let scopes: Vec<Option<String>> = if is_selector || opts.namespaces.is_empty() {
        vec![None]
    } else {
        opts.namespaces.iter().cloned().map(Some).collect()
    };
    for ns in scopes {
        let wid = if is_selector {
            WatchId::RoleSelectors
        } else {
            WatchId::Kind {
                group: gvk.group.clone(),
                kind: gvk.kind.clone(),
                namespace: ns.clone(),
            }
        };
        live.register(&wid, (gvk.group.clone(), gvk.kind.clone()));
        let api = match &ns {
            Some(ns) => Api::<DynamicObject>::namespaced_with(client.clone(), ns, &ar),
            None => Api::<DynamicObject>::all_with(client.clone(), &ar),
        };
        info!(group = %gvk.group, version = %gvk.version, kind = %gvk.kind, namespace = ?ns, "watching");
        let handle = tokio::spawn(run_watch(
            api,
            watcher::Config::default(),
            wid.clone(),
            live.clone(),
        ));
        handles.push((wid, handle));
    }
    running.insert(key.clone(), (gvk.version.clone(), handles));
    key
}

/// Without CRD access: find ACK kinds through API discovery (`/apis`), periodically.
async fn follow_discovery(
    client: Client,
    opts: KubeOptions,
    live: Arc<LiveCluster>,
    mut running: KindWatches,
) {
    let id = WatchId::Crds;
    loop {
        match kube::discovery::Discovery::new(client.clone()).run().await {
            Ok(discovery) => {
                let mut seen = BTreeSet::new();
                for group in discovery.groups() {
                    let name = group.name();
                    let is_selector_group = name == "services.k8s.aws";
                    if ack_service_of_group(name).is_none() && !is_selector_group {
                        continue;
                    }
                    for (ar, _caps) in group.recommended_resources() {
                        if is_selector_group && ar.kind != "IAMRoleSelector" {
                            continue;
                        }
                        let gvk = GroupVersionKind::gvk(&ar.group, &ar.version, &ar.kind);
                        seen.insert(ensure_kind(
                            &client,
                            &opts,
                            &live,
                            &mut running,
                            &gvk,
                            &ar.plural,
                        ));
                    }
                }
                let gone: Vec<_> = running
                    .keys()
                    .filter(|k| !seen.contains(*k))
                    .cloned()
                    .collect();
                for key in gone {
                    stop_kind(&mut running, &key, &live);
                }
                // The discovery pass stands in for the CRD list.
                live.on_event(&id, WatchEvent::InitDone);
            }
            Err(e) => live.on_event(
                &id,
                WatchEvent::Error {
                    message: format!("API discovery: {e}"),
                    forbidden: false,
                },
            ),
        }
        tokio::time::sleep(DISCOVERY_INTERVAL).await;
    }
}

fn stop_kind(running: &mut KindWatches, key: &(String, String), live: &LiveCluster) {
    if let Some((_, handles)) = running.remove(key) {
        info!(group = %key.0, kind = %key.1, "CRD gone; watch stopped");
        for (wid, handle) in handles {
            handle.abort();
            live.unregister(&wid);
        }
    }
}

/// Running kind watches: (group, kind) → (served version, its watch tasks).
type KindWatches = HashMap<(String, String), (String, Vec<(WatchId, JoinHandle<()>)>)>;

/// Waits (up to `timeout`) until every watch finished its first list.
pub async fn wait_ready(live: &LiveCluster, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while !live.is_ready() {
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
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
