//! An in-process fake Kubernetes API server for integration tests and benchmarks.
//!
//! It speaks plain HTTP/1.1 on 127.0.0.1 and follows the kube-apiserver REST protocol closely
//! enough for the real kube-rs client: discovery (legacy and aggregated v2), `/version`, list with
//! consistent pagination (`limit`/`continue`), single-object GET, field and label selectors, and
//! chunked watch streams with bookmarks, `timeoutSeconds` and `410 Expired` after compaction.
//!
//! Objects are kept per resource type (API group + kind) in a `BTreeMap` keyed by
//! `(namespace, name)`; every change is appended to that type's history with a global,
//! monotonic resource version. Watches replay the history after their resource version and
//! then follow live changes; nothing is lost across a dropped stream until `expire_history`
//! compacts it.
//!
//! Include it with `#[path = "support/fake_apiserver.rs"] mod fake_apiserver;`.
#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use serde_json::{Map, Value, json};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

/// Longest a watch stays open, whatever `timeoutSeconds` asks for.
const WATCH_TIMEOUT_CAP: Duration = Duration::from_secs(60);
/// How long a watch must be idle before a bookmark is sent (when bookmarks are allowed).
const BOOKMARK_IDLE: Duration = Duration::from_secs(1);
/// Most list snapshots kept for `continue` tokens; the oldest are forgotten (410) beyond this.
const MAX_SNAPSHOTS: usize = 256;
/// Watch events are written in frames of about this many bytes.
const FRAME_BYTES: usize = 256 * 1024;

const CRD_GROUP: &str = "apiextensions.k8s.io";
const CRD_KIND: &str = "CustomResourceDefinition";
const AGGREGATED_CONTENT_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

type Body = UnsyncBoxBody<Bytes, std::io::Error>;
/// (API group, kind); the core group is "".
type KindKey = (String, String);
/// (namespace, name); cluster-scoped objects have namespace "".
type ObjKey = (String, String);

/// Request counters, read with [`FakeApiServer::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FakeStats {
    /// Every HTTP request received.
    pub requests: u64,
    /// List responses answered 200 (each page counts).
    pub lists: u64,
    /// Watch requests answered 200 (including those whose only event is a 410 ERROR).
    pub watches: u64,
    /// ADDED / MODIFIED / DELETED events written to watch streams.
    pub watch_events: u64,
    /// 410 Expired answers: HTTP 410 for a stale `continue`, or an ERROR event in a watch.
    pub gone_410: u64,
    /// HTTP 500 answers injected by [`FakeApiServer::fail_next`].
    pub errors_500: u64,
    /// BOOKMARK events written to watch streams.
    pub bookmarks: u64,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    lists: AtomicU64,
    watches: AtomicU64,
    watch_events: AtomicU64,
    gone_410: AtomicU64,
    errors_500: AtomicU64,
    bookmarks: AtomicU64,
}

fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// A fake kube-apiserver on 127.0.0.1, served from its own thread and tokio runtime.
pub struct FakeApiServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FakeApiServer {
    /// Starts on 127.0.0.1:0 in its own background thread with its own tokio runtime.
    pub fn start() -> FakeApiServer {
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("fake apiserver: bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("fake apiserver: non-blocking listener");
        let addr = listener
            .local_addr()
            .expect("fake apiserver: local address");
        let shared = Arc::new(Shared::new(addr));
        let (stop_tx, stop_rx) = oneshot::channel();
        let server_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("fake-apiserver".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("fake-apiserver-rt")
                    .enable_all()
                    .build()
                    .expect("fake apiserver: tokio runtime");
                runtime.block_on(accept_loop(listener, server_shared, stop_rx));
                runtime.shutdown_timeout(Duration::from_secs(2));
            })
            .expect("fake apiserver: spawn thread");
        FakeApiServer {
            shared,
            addr,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Writes a kubeconfig (cluster, context and user named "fake", no auth, namespace
    /// "default") to `dir/kubeconfig` and returns its path.
    pub fn write_kubeconfig(&self, dir: &Path) -> PathBuf {
        std::fs::create_dir_all(dir).expect("fake apiserver: create kubeconfig dir");
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\n\
             kind: Config\n\
             clusters:\n\
             - name: fake\n  cluster:\n    server: {url}\n\
             contexts:\n\
             - name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\n\
             current-context: fake\n\
             preferences: {{}}\n\
             users:\n\
             - name: fake\n  user: {{}}\n",
            url = self.url()
        );
        std::fs::write(&path, text).expect("fake apiserver: write kubeconfig");
        path
    }

    /// Creates or replaces an object (JSON as kubectl shows it; a `kind: List` applies its
    /// items). Assigns `metadata.resourceVersion` (global, monotonic), `metadata.uid` and
    /// `metadata.creationTimestamp` when missing (kept from the replaced object if it had them),
    /// and emits ADDED or MODIFIED. Applying a CustomResourceDefinition makes its resource
    /// servable at once. Panics when `apiVersion`, `kind` or `metadata.name` is missing.
    pub fn apply(&self, obj: Value) {
        self.shared.lock().put(obj);
    }

    /// Applies many objects under one lock (faster for bulk loads).
    pub fn apply_all<I: IntoIterator<Item = Value>>(&self, objs: I) {
        let mut store = self.shared.lock();
        for obj in objs {
            store.put(obj);
        }
    }

    /// Applies every object of a kubectl dump file or folder (multi-document YAML, JSON, a JSON
    /// array, `kind: List`), recursively for folders (`.yaml`, `.yml`, `.json` files, in name
    /// order). CustomResourceDefinitions are applied first, then Namespaces, then the rest.
    pub fn apply_path(&self, path: &Path) {
        let mut docs = Vec::new();
        collect_path(path, &mut docs);
        docs.sort_by_key(|doc| match doc.get("kind").and_then(Value::as_str) {
            Some(CRD_KIND) => 0,
            Some("Namespace") => 1,
            _ => 2,
        });
        self.apply_all(docs);
    }

    /// Deletes one object and emits DELETED (with a new resourceVersion). For a namespaced
    /// kind, `None` means "default". Deleting a CustomResourceDefinition first deletes all its
    /// custom resources (each emitting DELETED) and stops serving its resource. Deleting an
    /// object that does not exist does nothing.
    pub fn delete(&self, api_version: &str, kind: &str, namespace: Option<&str>, name: &str) {
        self.shared
            .lock()
            .remove(group_of(api_version), kind, namespace, name);
    }

    /// Current objects of a kind (apiVersion + kind; the version is not checked), sorted by
    /// namespace then name.
    pub fn objects(&self, api_version: &str, kind: &str) -> Vec<Value> {
        let store = self.shared.lock();
        let key = (group_of(api_version).to_string(), kind.to_string());
        store
            .kinds
            .get(&key)
            .map(|entry| entry.objects.values().map(|o| (**o).clone()).collect())
            .unwrap_or_default()
    }

    /// The current (latest) resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.lock().rv
    }

    /// Abruptly ends every open watch stream: the connection is dropped mid-stream (the chunked
    /// body never terminates) and no final event is sent.
    pub fn drop_watches(&self) {
        self.shared
            .drop_tx
            .send_modify(|generation| *generation += 1);
    }

    /// Compacts history at the current resourceVersion. Every open watch stream receives an
    /// ERROR event (Status 410, reason "Expired") and ends; a later watch from an older
    /// resourceVersion gets the same ERROR as its only event; `continue` tokens issued before
    /// answer HTTP 410 Gone.
    pub fn expire_history(&self) {
        let mut store = self.shared.lock();
        store.compacted_at = store.rv;
        for entry in store.kinds.values_mut() {
            entry.history = Vec::new();
        }
        store.snapshots.clear();
        store.first_valid_snapshot = store.next_snapshot;
        self.shared
            .expire_tx
            .send_modify(|generation| *generation += 1);
    }

    /// The next `n` requests (of any kind) answer HTTP 500 with a Status body.
    pub fn fail_next(&self, n: usize) {
        self.shared.fail_next.store(n, Ordering::SeqCst);
    }

    /// Delay before answering each request (default zero).
    pub fn set_delay(&self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.shared.delay_nanos.store(nanos, Ordering::SeqCst);
    }

    /// When set, get/list/watch of customresourcedefinitions answer 403 Forbidden with a Status
    /// body, as RBAC without access to CRDs would. Discovery is unaffected.
    pub fn forbid_crds(&self, forbid: bool) {
        self.shared.forbid_crds.store(forbid, Ordering::SeqCst);
    }

    /// Counters since start.
    pub fn stats(&self) -> FakeStats {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        FakeStats {
            requests: get(&c.requests),
            lists: get(&c.lists),
            watches: get(&c.watches),
            watch_events: get(&c.watch_events),
            gone_410: get(&c.gone_410),
            errors_500: get(&c.errors_500),
            bookmarks: get(&c.bookmarks),
        }
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Shared state

struct Shared {
    store: Mutex<Store>,
    counters: Counters,
    fail_next: AtomicUsize,
    delay_nanos: AtomicU64,
    forbid_crds: AtomicBool,
    /// Bumped by `drop_watches`.
    drop_tx: watch::Sender<u64>,
    /// Bumped by `expire_history`.
    expire_tx: watch::Sender<u64>,
    addr: SocketAddr,
}

impl Shared {
    fn new(addr: SocketAddr) -> Shared {
        Shared {
            store: Mutex::new(Store::new()),
            counters: Counters::default(),
            fail_next: AtomicUsize::new(0),
            delay_nanos: AtomicU64::new(0),
            forbid_crds: AtomicBool::new(false),
            drop_tx: watch::channel(0).0,
            expire_tx: watch::channel(0).0,
            addr,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Store> {
        self.store
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Consumes one injected failure, if any is left.
    fn take_failure(&self) -> bool {
        self.fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change of one object. `prev` is the object before a MODIFIED, for selector transitions.
struct HistEvent {
    rv: u64,
    ty: EventType,
    obj: Arc<Value>,
    prev: Option<Arc<Value>>,
}

/// How a resource type is served over REST; `None` on a [`KindEntry`] means not served (objects
/// of a kind applied before its CRD, or of a deleted CRD).
#[derive(Clone)]
struct Serving {
    plural: String,
    singular: String,
    list_kind: String,
    namespaced: bool,
    /// Served versions, in CRD order.
    versions: Vec<String>,
    storage_version: String,
    /// Versions with a status subresource.
    status_versions: Vec<String>,
    short_names: Vec<String>,
    categories: Vec<String>,
    /// Changes each time the resource starts being served; watches end when it changes.
    incarnation: u64,
}

struct KindEntry {
    group: String,
    kind: String,
    serving: Option<Serving>,
    /// Scope used while the kind is not served (guessed from the first object).
    namespaced_guess: bool,
    objects: BTreeMap<ObjKey, Arc<Value>>,
    /// Changes since the last compaction, in resourceVersion order.
    history: Vec<HistEvent>,
    /// Carries the resourceVersion of the latest change; watches wait on it.
    notify: watch::Sender<u64>,
}

impl KindEntry {
    fn new(group: &str, kind: &str, namespaced_guess: bool) -> KindEntry {
        KindEntry {
            group: group.to_string(),
            kind: kind.to_string(),
            serving: None,
            namespaced_guess,
            objects: BTreeMap::new(),
            history: Vec::new(),
            notify: watch::channel(0).0,
        }
    }

    fn namespaced(&self) -> bool {
        self.serving
            .as_ref()
            .map_or(self.namespaced_guess, |s| s.namespaced)
    }

    fn record(&mut self, rv: u64, ty: EventType, obj: Arc<Value>, prev: Option<Arc<Value>>) {
        self.history.push(HistEvent { rv, ty, obj, prev });
        self.notify.send_replace(rv);
    }

    /// Removes one object with a DELETED event carrying a fresh resourceVersion.
    fn delete_object(&mut self, rv: &mut u64, key: &ObjKey) -> bool {
        let Some(old) = self.objects.remove(key) else {
            return false;
        };
        *rv += 1;
        let mut obj = (*old).clone();
        set_meta(&mut obj, "resourceVersion", Value::String(rv.to_string()));
        self.record(*rv, EventType::Deleted, Arc::new(obj), None);
        true
    }
}

/// A list result frozen at its first page, for the `continue` tokens that follow.
struct Snapshot {
    key: KindKey,
    items: Arc<Vec<Arc<Value>>>,
    rv: u64,
}

struct Store {
    rv: u64,
    /// History at or before this resourceVersion has been compacted away.
    compacted_at: u64,
    uid_seq: u64,
    incarnations: u64,
    kinds: BTreeMap<KindKey, KindEntry>,
    snapshots: BTreeMap<u64, Snapshot>,
    next_snapshot: u64,
    /// Snapshot ids below this were issued before the last compaction.
    first_valid_snapshot: u64,
}

/// (group, version, kind, plural, singular, namespaced, short names, categories)
type Builtin = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    bool,
    &'static [&'static str],
    &'static [&'static str],
);

const BUILTINS: &[Builtin] = &[
    (
        "",
        "v1",
        "Namespace",
        "namespaces",
        "namespace",
        false,
        &["ns"],
        &[],
    ),
    (
        "",
        "v1",
        "ConfigMap",
        "configmaps",
        "configmap",
        true,
        &["cm"],
        &[],
    ),
    (
        "",
        "v1",
        "ServiceAccount",
        "serviceaccounts",
        "serviceaccount",
        true,
        &["sa"],
        &[],
    ),
    (
        "apps",
        "v1",
        "Deployment",
        "deployments",
        "deployment",
        true,
        &["deploy"],
        &["all"],
    ),
    (
        CRD_GROUP,
        "v1",
        CRD_KIND,
        "customresourcedefinitions",
        "customresourcedefinition",
        false,
        &["crd", "crds"],
        &[],
    ),
];

/// Groups listed first in `/apis`, in this order; CRD groups follow alphabetically.
const BUILTIN_GROUPS: &[&str] = &["apps", CRD_GROUP];

impl Store {
    fn new() -> Store {
        let mut store = Store {
            rv: 1,
            compacted_at: 0,
            uid_seq: 0,
            incarnations: 0,
            kinds: BTreeMap::new(),
            snapshots: BTreeMap::new(),
            next_snapshot: 1,
            first_valid_snapshot: 1,
        };
        for &(group, version, kind, plural, singular, namespaced, short, cats) in BUILTINS {
            store.incarnations += 1;
            let mut entry = KindEntry::new(group, kind, namespaced);
            entry.serving = Some(Serving {
                plural: plural.into(),
                singular: singular.into(),
                list_kind: format!("{kind}List"),
                namespaced,
                versions: vec![version.into()],
                storage_version: version.into(),
                status_versions: Vec::new(),
                short_names: short.iter().map(|s| s.to_string()).collect(),
                categories: cats.iter().map(|s| s.to_string()).collect(),
                incarnation: store.incarnations,
            });
            store.kinds.insert((group.into(), kind.into()), entry);
        }
        store
    }

    /// Create or replace one object (or every item of a List).
    fn put(&mut self, mut obj: Value) {
        let kind_field = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
        if kind_field.ends_with("List")
            && obj.get("items").is_some_and(Value::is_array)
            && obj.pointer("/metadata/name").is_none()
        {
            if let Some(Value::Array(items)) = obj.get_mut("items").map(Value::take) {
                for item in items {
                    self.put(item);
                }
            }
            return;
        }
        let api_version = required_str(&obj, "apiVersion");
        let kind = required_str(&obj, "kind");
        let group = group_of(&api_version).to_string();
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("fake apiserver: {kind} without metadata.name: {obj}"))
            .to_string();
        if !obj.get("metadata").is_some_and(Value::is_object) {
            obj["metadata"] = json!({});
        }
        let given_ns = obj
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .filter(|ns| !ns.is_empty())
            .map(str::to_string);

        self.rv += 1;
        let rv = self.rv;
        let key: KindKey = (group.clone(), kind.clone());
        let entry = self
            .kinds
            .entry(key)
            .or_insert_with(|| KindEntry::new(&group, &kind, given_ns.is_some()));
        let namespaced = entry.namespaced();
        let meta = obj["metadata"]
            .as_object_mut()
            .expect("metadata is an object");
        let ns = if namespaced {
            let ns = given_ns.unwrap_or_else(|| "default".to_string());
            meta.insert("namespace".into(), Value::String(ns.clone()));
            ns
        } else {
            meta.remove("namespace");
            String::new()
        };
        let okey: ObjKey = (ns, name);
        let prev = entry.objects.get(&okey).cloned();
        let prev_meta = prev.as_ref().and_then(|p| p.get("metadata"));

        if !meta.get("uid").is_some_and(Value::is_string) {
            let uid = match prev_meta.and_then(|m| m.get("uid")) {
                Some(uid) => uid.clone(),
                None => {
                    self.uid_seq += 1;
                    Value::String(format!("fa4e0000-0000-4000-8000-{:012x}", self.uid_seq))
                }
            };
            meta.insert("uid".into(), uid);
        }
        if !meta.get("creationTimestamp").is_some_and(Value::is_string) {
            let ts = prev_meta
                .and_then(|m| m.get("creationTimestamp"))
                .cloned()
                .unwrap_or_else(|| Value::String(now_rfc3339()));
            meta.insert("creationTimestamp".into(), ts);
        }
        if !group.is_empty() && !meta.contains_key("generation") {
            let generation = match &prev {
                None => 1,
                Some(p) => {
                    let old = p
                        .pointer("/metadata/generation")
                        .and_then(Value::as_u64)
                        .unwrap_or(1);
                    old + u64::from(p.get("spec") != obj.get("spec"))
                }
            };
            obj["metadata"]["generation"] = json!(generation);
        }
        obj["metadata"]["resourceVersion"] = Value::String(rv.to_string());

        let is_crd = group == CRD_GROUP && kind == CRD_KIND;
        if is_crd && obj.get("status").is_none_or(Value::is_null) {
            obj["status"] = crd_status(&obj);
        }
        let obj = Arc::new(obj);
        let entry = self
            .kinds
            .get_mut(&(group, kind))
            .expect("entry inserted above");
        entry.objects.insert(okey, obj.clone());
        let ty = if prev.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        entry.record(rv, ty, obj.clone(), prev);
        if is_crd {
            self.serve_crd(&obj);
        }
    }

    /// Starts (or updates) serving the resource a CRD defines.
    fn serve_crd(&mut self, crd: &Value) {
        let spec = &crd["spec"];
        let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        };
        let group = text(&spec["group"]);
        let kind = text(&spec["names"]["kind"]);
        let plural = text(&spec["names"]["plural"]);
        if group.is_empty() || kind.is_empty() || plural.is_empty() {
            return;
        }
        let singular = match text(&spec["names"]["singular"]) {
            s if s.is_empty() => kind.to_lowercase(),
            s => s,
        };
        let list_kind = match text(&spec["names"]["listKind"]) {
            s if s.is_empty() => format!("{kind}List"),
            s => s,
        };
        let namespaced = spec["scope"].as_str() != Some("Cluster");
        let mut versions = Vec::new();
        let mut status_versions = Vec::new();
        let mut storage_version = None;
        for v in spec["versions"].as_array().into_iter().flatten() {
            let name = text(&v["name"]);
            if name.is_empty() || v["served"].as_bool() != Some(true) {
                continue;
            }
            if v["storage"].as_bool() == Some(true) {
                storage_version = Some(name.clone());
            }
            if v.pointer("/subresources/status").is_some() {
                status_versions.push(name.clone());
            }
            versions.push(name);
        }
        let next_incarnation = self.incarnations + 1;
        let entry = self
            .kinds
            .entry((group.clone(), kind.clone()))
            .or_insert_with(|| KindEntry::new(&group, &kind, namespaced));
        if versions.is_empty() {
            entry.serving = None;
            entry.notify.send_replace(self.rv);
            return;
        }
        let incarnation = match &entry.serving {
            Some(s) => s.incarnation,
            None => {
                self.incarnations = next_incarnation;
                // Objects applied before their CRD: fix their scope now it is known.
                if entry.namespaced_guess != namespaced {
                    let objects = std::mem::take(&mut entry.objects);
                    for ((ns, name), obj) in objects {
                        let mut obj = (*obj).clone();
                        let ns = match (namespaced, ns.is_empty()) {
                            (true, true) => "default".to_string(),
                            (true, false) => ns,
                            (false, _) => String::new(),
                        };
                        if namespaced {
                            set_meta(&mut obj, "namespace", Value::String(ns.clone()));
                        } else if let Some(meta) = obj["metadata"].as_object_mut() {
                            meta.remove("namespace");
                        }
                        entry.objects.insert((ns, name), Arc::new(obj));
                    }
                    entry.namespaced_guess = namespaced;
                }
                next_incarnation
            }
        };
        let storage_version = storage_version.unwrap_or_else(|| versions[0].clone());
        entry.serving = Some(Serving {
            plural,
            singular,
            list_kind,
            namespaced,
            versions,
            storage_version,
            status_versions,
            short_names: strings(&spec["names"]["shortNames"]),
            categories: strings(&spec["names"]["categories"]),
            incarnation,
        });
    }

    fn remove(&mut self, group: &str, kind: &str, namespace: Option<&str>, name: &str) {
        let key: KindKey = (group.to_string(), kind.to_string());
        let Some(entry) = self.kinds.get(&key) else {
            return;
        };
        let ns = if entry.namespaced() {
            namespace.filter(|ns| !ns.is_empty()).unwrap_or("default")
        } else {
            ""
        };
        let okey: ObjKey = (ns.to_string(), name.to_string());
        let Some(obj) = entry.objects.get(&okey).cloned() else {
            return;
        };
        if group == CRD_GROUP && kind == CRD_KIND {
            // Like the apiserver: the custom resources go first, then the definition.
            let cr_key: KindKey = (
                obj["spec"]["group"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                obj["spec"]["names"]["kind"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            );
            let Store { rv, kinds, .. } = self;
            if let Some(cr_entry) = kinds.get_mut(&cr_key) {
                let keys: Vec<ObjKey> = cr_entry.objects.keys().cloned().collect();
                for k in &keys {
                    cr_entry.delete_object(rv, k);
                }
                cr_entry.serving = None;
                cr_entry.notify.send_replace(*rv);
            }
        }
        let Store { rv, kinds, .. } = self;
        if let Some(entry) = kinds.get_mut(&key) {
            entry.delete_object(rv, &okey);
        }
    }

    /// The served resource at (group, version, plural).
    fn served(&self, group: &str, version: &str, plural: &str) -> Option<(KindKey, Serving)> {
        self.kinds.iter().find_map(|(key, entry)| {
            let s = entry.serving.as_ref()?;
            (key.0 == group && s.plural == plural && s.versions.iter().any(|v| v == version))
                .then(|| (key.clone(), s.clone()))
        })
    }

    /// Served groups other than the core group, in `/apis` order.
    fn groups(&self) -> Vec<String> {
        let mut custom: Vec<String> = Vec::new();
        for entry in self.kinds.values() {
            if entry.serving.is_some()
                && !entry.group.is_empty()
                && !BUILTIN_GROUPS.contains(&entry.group.as_str())
                && !custom.contains(&entry.group)
            {
                custom.push(entry.group.clone());
            }
        }
        custom.sort();
        let mut groups: Vec<String> = BUILTIN_GROUPS.iter().map(|g| g.to_string()).collect();
        groups.extend(custom);
        groups
    }

    /// Versions of a group, preferred first; empty when the group is not served.
    fn group_versions(&self, group: &str) -> Vec<String> {
        let servings: Vec<&Serving> = self
            .kinds
            .values()
            .filter(|e| e.group == group)
            .filter_map(|e| e.serving.as_ref())
            .collect();
        let Some(first) = servings.first() else {
            return Vec::new();
        };
        let mut versions = vec![first.storage_version.clone()];
        for s in &servings {
            for v in &s.versions {
                if !versions.contains(v) {
                    versions.push(v.clone());
                }
            }
        }
        versions
    }

    /// Served kinds of a group version.
    fn resources(&self, group: &str, version: &str) -> Vec<(&KindEntry, &Serving)> {
        self.kinds
            .values()
            .filter(|e| e.group == group)
            .filter_map(|e| e.serving.as_ref().map(|s| (e, s)))
            .filter(|(_, s)| s.versions.iter().any(|v| v == version))
            .collect()
    }
}

fn required_str(obj: &Value, field: &str) -> String {
    match obj.get(field).and_then(Value::as_str) {
        Some(s) if !s.is_empty() => s.to_string(),
        _ => panic!("fake apiserver: object without {field}: {obj}"),
    }
}

/// "apps/v1" -> "apps", "v1" -> "".
fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(g, _)| g)
}

fn group_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    }
}

fn set_meta(obj: &mut Value, field: &str, value: Value) {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    obj["metadata"][field] = value;
}

/// The status the apiextensions controller gives an accepted CRD.
fn crd_status(crd: &Value) -> Value {
    let now = now_rfc3339();
    let storage: Vec<Value> = crd["spec"]["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["storage"].as_bool() == Some(true))
        .map(|v| v["name"].clone())
        .collect();
    json!({
        "acceptedNames": crd["spec"]["names"].clone(),
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
             "message": "no conflicts found", "lastTransitionTime": now},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
             "message": "the initial names have been accepted", "lastTransitionTime": now},
        ],
        "storedVersions": storage,
    })
}

fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    ack_drift_exporter::model::time::format_rfc3339(i64::try_from(secs).unwrap_or(0))
}

// ---------------------------------------------------------------------------------------------
// Loading files

fn collect_path(path: &Path, out: &mut Vec<Value>) {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .unwrap_or_else(|e| panic!("fake apiserver: read {}: {e}", path.display()))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for entry in entries {
            let wanted = entry
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"));
            if entry.is_dir() || wanted {
                collect_path(&entry, out);
            }
        }
        return;
    }
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("fake apiserver: read {}: {e}", path.display()));
    let looks_json =
        path.extension().is_some_and(|e| e == "json") || text.trim_start().starts_with(['{', '[']);
    let docs: Vec<Value> = match serde_json::from_str::<Value>(&text) {
        Ok(doc) if looks_json => vec![doc],
        _ => {
            let mut options = serde_saphyr::Options::default();
            options.budget = None;
            serde_saphyr::from_multiple_with_options::<Value>(&text, options)
                .unwrap_or_else(|e| panic!("fake apiserver: parse {}: {e}", path.display()))
        }
    };
    for doc in docs {
        flatten_doc(doc, out);
    }
}

fn flatten_doc(doc: Value, out: &mut Vec<Value>) {
    match doc {
        Value::Null => {}
        Value::Array(items) => items.into_iter().for_each(|d| flatten_doc(d, out)),
        Value::Object(mut map) => {
            let is_list = map
                .get("kind")
                .and_then(Value::as_str)
                .is_some_and(|k| k.ends_with("List"))
                && map.get("items").is_some_and(Value::is_array)
                && map.get("metadata").and_then(|m| m.get("name")).is_none();
            match map.remove("items") {
                Some(Value::Array(items)) if is_list => {
                    items.into_iter().for_each(|d| flatten_doc(d, out));
                }
                Some(items) => {
                    map.insert("items".into(), items);
                    out.push(Value::Object(map));
                }
                None => out.push(Value::Object(map)),
            }
        }
        other => panic!("fake apiserver: not a Kubernetes object: {other}"),
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP

async fn accept_loop(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    mut stop: oneshot::Receiver<()>,
) {
    let listener =
        tokio::net::TcpListener::from_std(listener).expect("fake apiserver: tokio listener");
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let shared = shared.clone();
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |req| {
                            let shared = shared.clone();
                            async move { Ok::<_, Infallible>(handle(shared, req).await) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            },
        }
    }
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

fn json_response(code: StatusCode, content_type: &str, bytes: Vec<u8>) -> Response<Body> {
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, "no-cache, private")
        .body(full(bytes))
        .expect("valid response")
}

fn ok_json(value: &Value) -> Response<Body> {
    json_response(
        StatusCode::OK,
        "application/json",
        serde_json::to_vec(value).expect("serialize JSON"),
    )
}

fn status_value(code: u16, reason: &str, message: &str, details: Option<Value>) -> Value {
    let mut status = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    });
    if let Some(details) = details {
        status["details"] = details;
    }
    status
}

fn status_response(
    code: StatusCode,
    reason: &str,
    message: &str,
    details: Option<Value>,
) -> Response<Body> {
    let body = status_value(code.as_u16(), reason, message, details);
    json_response(
        code,
        "application/json",
        serde_json::to_vec(&body).expect("serialize Status"),
    )
}

fn not_found() -> Response<Body> {
    status_response(
        StatusCode::NOT_FOUND,
        "NotFound",
        "the server could not find the requested resource",
        Some(json!({})),
    )
}

fn bad_request(message: &str) -> Response<Body> {
    status_response(StatusCode::BAD_REQUEST, "BadRequest", message, None)
}

fn expired_continue() -> Response<Body> {
    status_response(
        StatusCode::GONE,
        "Expired",
        "The provided continue parameter is too old to display a consistent list result. \
         You can start a new list without the continue parameter.",
        None,
    )
}

/// Decodes `%XX` escapes (and `+` as space when `plus_is_space`).
fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' if plus_is_space => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

struct Query(Vec<(String, String)>);

impl Query {
    fn parse(raw: &str) -> Query {
        Query(
            raw.split('&')
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    (percent_decode(k, true), percent_decode(v, true))
                })
                .collect(),
        )
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn flag(&self, name: &str) -> bool {
        matches!(self.get(name), Some("true" | "1"))
    }
}

enum Route {
    Version,
    CoreVersions,
    Groups,
    Group(String),
    GroupVersion(String, String),
    Resource {
        group: String,
        version: String,
        namespace: Option<String>,
        plural: String,
        name: Option<String>,
    },
    NotFound,
}

fn route(path: &str) -> Route {
    let segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_decode(s, false))
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let (group, version, rest) = match segs.as_slice() {
        ["version"] => return Route::Version,
        ["api"] => return Route::CoreVersions,
        ["apis"] => return Route::Groups,
        ["apis", g] => return Route::Group(g.to_string()),
        ["api", v] => return Route::GroupVersion(String::new(), v.to_string()),
        ["apis", g, v] => return Route::GroupVersion(g.to_string(), v.to_string()),
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Route::NotFound,
    };
    let (namespace, plural, name) = match rest {
        [plural] => (None, *plural, None),
        [plural, name] => (None, *plural, Some(*name)),
        ["namespaces", ns, plural] => (Some(*ns), *plural, None),
        ["namespaces", ns, plural, name] => (Some(*ns), *plural, Some(*name)),
        _ => return Route::NotFound,
    };
    Route::Resource {
        group: group.to_string(),
        version: version.to_string(),
        namespace: namespace.map(str::to_string),
        plural: plural.to_string(),
        name: name.map(str::to_string),
    }
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    bump(&shared.counters.requests, 1);
    let delay = Duration::from_nanos(shared.delay_nanos.load(Ordering::SeqCst));
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if shared.take_failure() {
        bump(&shared.counters.errors_500, 1);
        return status_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "Internal error occurred: injected failure (fake apiserver)",
            Some(json!({"causes": [{"message": "injected failure"}]})),
        );
    }
    let route = route(req.uri().path());
    if req.method() != Method::GET && !matches!(route, Route::NotFound) {
        return status_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
            Some(json!({})),
        );
    }
    let aggregated = req
        .headers()
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',').next().is_some_and(|first| {
                first.contains("as=APIGroupDiscoveryList") && first.contains("v=v2")
            })
        });
    let query = Query::parse(req.uri().query().unwrap_or(""));
    match route {
        Route::Version => ok_json(&version_info()),
        Route::CoreVersions if aggregated => aggregated_discovery(&shared, true),
        Route::CoreVersions => ok_json(&json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": shared.addr.to_string()}
            ],
        })),
        Route::Groups if aggregated => aggregated_discovery(&shared, false),
        Route::Groups => {
            let store = shared.lock();
            let groups: Vec<Value> = store
                .groups()
                .iter()
                .map(|g| api_group_json(g, &store.group_versions(g)))
                .collect();
            ok_json(&json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}))
        }
        Route::Group(group) => {
            let store = shared.lock();
            let versions = store.group_versions(&group);
            if versions.is_empty() {
                return not_found();
            }
            let mut body = api_group_json(&group, &versions);
            body["kind"] = json!("APIGroup");
            body["apiVersion"] = json!("v1");
            ok_json(&body)
        }
        Route::GroupVersion(group, version) => {
            let store = shared.lock();
            let resources = store.resources(&group, &version);
            if resources.is_empty() {
                return not_found();
            }
            let list: Vec<Value> = resources
                .iter()
                .flat_map(|(entry, s)| api_resources_json(entry, s, &version))
                .collect();
            ok_json(&json!({
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": group_version(&group, &version),
                "resources": list,
            }))
        }
        Route::Resource {
            group,
            version,
            namespace,
            plural,
            name,
        } => {
            let served = shared.lock().served(&group, &version, &plural);
            let Some((key, serving)) = served else {
                return not_found();
            };
            if namespace.is_some() && !serving.namespaced
                || name.is_some() && namespace.is_none() && serving.namespaced
            {
                return not_found();
            }
            let target = Target {
                gv: group_version(&group, &version),
                group,
                key,
                serving,
                namespace,
            };
            let verb = match (&name, query.flag("watch")) {
                (Some(_), _) => "get",
                (None, true) => "watch",
                (None, false) => "list",
            };
            if target.group == CRD_GROUP
                && target.serving.plural == "customresourcedefinitions"
                && shared.forbid_crds.load(Ordering::SeqCst)
            {
                return forbidden(verb);
            }
            match name {
                Some(name) => get_object(&shared, &target, &name),
                None => {
                    let filter = match Filter::parse(&target, &query) {
                        Ok(filter) => filter,
                        Err(message) => return bad_request(&message),
                    };
                    if let Some(rv) = query.get("resourceVersion")
                        && !rv.is_empty()
                        && rv.parse::<u64>().is_err()
                    {
                        return bad_request(&format!(
                            "resourceVersion: Invalid value: \"{rv}\": must be an unsigned integer"
                        ));
                    }
                    if verb == "watch" {
                        start_watch(&shared, target, filter, &query)
                    } else {
                        list(&shared, &target, &filter, &query)
                    }
                }
            }
        }
        Route::NotFound => not_found(),
    }
}

/// A served resource as addressed by one request.
struct Target {
    group: String,
    /// The requested group/version ("v1" for core).
    gv: String,
    key: KindKey,
    serving: Serving,
    namespace: Option<String>,
}

fn forbidden(verb: &str) -> Response<Body> {
    status_response(
        StatusCode::FORBIDDEN,
        "Forbidden",
        &format!(
            "customresourcedefinitions.apiextensions.k8s.io is forbidden: User \
             \"system:serviceaccount:ack-system:ack-drift-exporter\" cannot {verb} resource \
             \"customresourcedefinitions\" in API group \"apiextensions.k8s.io\" at the cluster scope"
        ),
        Some(json!({"group": CRD_GROUP, "kind": "customresourcedefinitions"})),
    )
}

fn version_info() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "emulationMajor": "1",
        "emulationMinor": "33",
        "minCompatibilityMajor": "1",
        "minCompatibilityMinor": "32",
        "gitVersion": "v1.33.0",
        "gitCommit": "60a317eadfcb839692a68eab88b2096f4d708f4f",
        "gitTreeState": "clean",
        "buildDate": "2025-04-23T13:01:43Z",
        "goVersion": "go1.24.2",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

fn api_group_json(group: &str, versions: &[String]) -> Value {
    let gvs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": group_version(group, v), "version": v}))
        .collect();
    json!({
        "name": group,
        "versions": gvs,
        "preferredVersion": gvs.first().cloned().unwrap_or(Value::Null),
    })
}

const VERBS: [&str; 3] = ["get", "list", "watch"];

/// APIResource entries (the resource and its status subresource) for one version.
fn api_resources_json(entry: &KindEntry, s: &Serving, version: &str) -> Vec<Value> {
    let mut main = json!({
        "name": s.plural,
        "singularName": s.singular,
        "namespaced": s.namespaced,
        "kind": entry.kind,
        "verbs": VERBS,
    });
    if !s.short_names.is_empty() {
        main["shortNames"] = json!(s.short_names);
    }
    if !s.categories.is_empty() {
        main["categories"] = json!(s.categories);
    }
    let mut out = vec![main];
    if s.status_versions.iter().any(|v| v == version) {
        out.push(json!({
            "name": format!("{}/status", s.plural),
            "singularName": "",
            "namespaced": s.namespaced,
            "kind": entry.kind,
            "verbs": ["get", "patch", "update"],
        }));
    }
    out
}

/// `GET /api` or `/apis` with `Accept: application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList`.
fn aggregated_discovery(shared: &Shared, core: bool) -> Response<Body> {
    let store = shared.lock();
    let groups = if core {
        vec![String::new()]
    } else {
        store.groups()
    };
    let items: Vec<Value> = groups
        .iter()
        .map(|group| {
            let versions: Vec<Value> = store
                .group_versions(group)
                .iter()
                .map(|version| {
                    let resources: Vec<Value> = store
                        .resources(group, version)
                        .iter()
                        .map(|(entry, s)| {
                            let gvk =
                                json!({"group": group, "version": version, "kind": entry.kind});
                            let mut r = json!({
                                "resource": s.plural,
                                "responseKind": gvk,
                                "scope": if s.namespaced { "Namespaced" } else { "Cluster" },
                                "singularResource": s.singular,
                                "verbs": VERBS,
                            });
                            if !s.short_names.is_empty() {
                                r["shortNames"] = json!(s.short_names);
                            }
                            if !s.categories.is_empty() {
                                r["categories"] = json!(s.categories);
                            }
                            if s.status_versions.iter().any(|v| v == version) {
                                r["subresources"] = json!([{
                                    "subresource": "status",
                                    "responseKind": gvk,
                                    "verbs": ["get", "patch", "update"],
                                }]);
                            }
                            r
                        })
                        .collect();
                    json!({"version": version, "resources": resources, "freshness": "Current"})
                })
                .collect();
            json!({"metadata": {"name": group, "creationTimestamp": null}, "versions": versions})
        })
        .collect();
    let body = json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": items,
    });
    json_response(
        StatusCode::OK,
        AGGREGATED_CONTENT_TYPE,
        serde_json::to_vec(&body).expect("serialize discovery"),
    )
}

/// Serializes an object as served under `gv` (the stored apiVersion may be another version).
fn write_object(buf: &mut Vec<u8>, obj: &Value, gv: &str) {
    if obj.get("apiVersion").and_then(Value::as_str) == Some(gv) {
        serde_json::to_writer(&mut *buf, obj).expect("serialize object");
    } else {
        let mut converted = obj.clone();
        converted["apiVersion"] = Value::String(gv.to_string());
        serde_json::to_writer(&mut *buf, &converted).expect("serialize object");
    }
}

fn get_object(shared: &Shared, target: &Target, name: &str) -> Response<Body> {
    let ns = target.namespace.clone().unwrap_or_default();
    let obj = shared
        .lock()
        .kinds
        .get(&target.key)
        .and_then(|e| e.objects.get(&(ns, name.to_string())).cloned());
    match obj {
        Some(obj) => {
            let mut buf = Vec::new();
            write_object(&mut buf, &obj, &target.gv);
            json_response(StatusCode::OK, "application/json", buf)
        }
        None => {
            let resource = if target.group.is_empty() {
                target.serving.plural.clone()
            } else {
                format!("{}.{}", target.serving.plural, target.group)
            };
            status_response(
                StatusCode::NOT_FOUND,
                "NotFound",
                &format!("{resource} \"{name}\" not found"),
                Some(json!({"name": name, "group": target.group, "kind": target.serving.plural})),
            )
        }
    }
}

fn list(shared: &Shared, target: &Target, filter: &Filter, query: &Query) -> Response<Body> {
    let limit = match query.get("limit").filter(|l| !l.is_empty()) {
        None => 0,
        Some(l) => match l.parse::<usize>() {
            Ok(n) => n,
            Err(_) => return bad_request(&format!("limit: Invalid value: \"{l}\"")),
        },
    };
    let token = query.get("continue").filter(|t| !t.is_empty());
    let (items, rv, page, cont) = {
        let mut store = shared.lock();
        let (items, rv, offset, snapshot_id) = match token {
            Some(token) => {
                let Some((id, offset)) = parse_continue(token) else {
                    return bad_request(&format!("continue key is not valid: {token}"));
                };
                let snapshot = store.snapshots.get(&id).filter(|s| s.key == target.key);
                match snapshot {
                    Some(s) if id >= store.first_valid_snapshot => {
                        (s.items.clone(), s.rv, offset, Some(id))
                    }
                    _ => {
                        bump(&shared.counters.gone_410, 1);
                        return expired_continue();
                    }
                }
            }
            None => {
                let items: Vec<Arc<Value>> = store
                    .kinds
                    .get(&target.key)
                    .map(|e| {
                        e.objects
                            .values()
                            .filter(|o| filter.matches(o))
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default();
                (Arc::new(items), store.rv, 0, None)
            }
        };
        let offset = offset.min(items.len());
        let end = if limit == 0 {
            items.len()
        } else {
            offset.saturating_add(limit).min(items.len())
        };
        let cont = if end < items.len() {
            let id = snapshot_id.unwrap_or_else(|| {
                let id = store.next_snapshot;
                store.next_snapshot += 1;
                store.snapshots.insert(
                    id,
                    Snapshot {
                        key: target.key.clone(),
                        items: items.clone(),
                        rv,
                    },
                );
                while store.snapshots.len() > MAX_SNAPSHOTS {
                    store.snapshots.pop_first();
                }
                id
            });
            Some((format!("{id}.{end}.{rv}"), items.len() - end))
        } else {
            if let Some(id) = snapshot_id {
                store.snapshots.remove(&id);
            }
            None
        };
        (items, rv, offset..end, cont)
    };

    let mut meta = json!({"resourceVersion": rv.to_string()});
    if let Some((token, remaining)) = &cont {
        meta["continue"] = json!(token);
        if filter.is_trivial() {
            meta["remainingItemCount"] = json!(remaining);
        }
    }
    let mut buf = Vec::with_capacity(256 + page.len() * 512);
    buf.extend_from_slice(b"{\"apiVersion\":");
    serde_json::to_writer(&mut buf, &target.gv).expect("serialize");
    buf.extend_from_slice(b",\"kind\":");
    serde_json::to_writer(&mut buf, &target.serving.list_kind).expect("serialize");
    buf.extend_from_slice(b",\"metadata\":");
    serde_json::to_writer(&mut buf, &meta).expect("serialize");
    buf.extend_from_slice(b",\"items\":[");
    for (i, obj) in items[page].iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        write_object(&mut buf, obj, &target.gv);
    }
    buf.extend_from_slice(b"]}");
    bump(&shared.counters.lists, 1);
    json_response(StatusCode::OK, "application/json", buf)
}

/// Tokens are `<snapshot id>.<offset>.<snapshot resourceVersion>`.
fn parse_continue(token: &str) -> Option<(u64, usize)> {
    let mut parts = token.split('.');
    let id = parts.next()?.parse().ok()?;
    let offset = parts.next()?.parse().ok()?;
    let _rv: u64 = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some((id, offset))
}

// ---------------------------------------------------------------------------------------------
// Selectors

#[derive(Clone, Copy)]
enum Field {
    Name,
    Namespace,
}

enum LabelReq {
    Eq(String, String),
    Ne(String, String),
    Exists(String),
    NotExists(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

/// Namespace of the path plus field and label selectors.
struct Filter {
    namespace: Option<String>,
    fields: Vec<(Field, bool, String)>,
    labels: Vec<LabelReq>,
}

impl Filter {
    fn parse(target: &Target, query: &Query) -> Result<Filter, String> {
        let mut fields = Vec::new();
        for term in query
            .get("fieldSelector")
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            let (key, equal, value) = if let Some((k, v)) = term.split_once("!=") {
                (k, false, v)
            } else if let Some((k, v)) = term.split_once("==") {
                (k, true, v)
            } else if let Some((k, v)) = term.split_once('=') {
                (k, true, v)
            } else {
                return Err(format!(
                    "invalid selector: '{term}'; can't understand '{term}'"
                ));
            };
            let field = match key.trim() {
                "metadata.name" => Field::Name,
                "metadata.namespace" => Field::Namespace,
                other => {
                    return Err(format!(
                        "field label not supported: {other} (for {})",
                        target.serving.plural
                    ));
                }
            };
            fields.push((field, equal, value.trim().to_string()));
        }
        let mut labels = Vec::new();
        for term in split_top_level(query.get("labelSelector").unwrap_or("")) {
            labels.push(parse_label_req(&term)?);
        }
        Ok(Filter {
            namespace: target.namespace.clone(),
            fields,
            labels,
        })
    }

    fn is_trivial(&self) -> bool {
        self.fields.is_empty() && self.labels.is_empty()
    }

    fn matches(&self, obj: &Value) -> bool {
        let meta = obj.get("metadata");
        let text = |field: &str| {
            meta.and_then(|m| m.get(field))
                .and_then(Value::as_str)
                .unwrap_or("")
        };
        if let Some(ns) = &self.namespace
            && text("namespace") != ns
        {
            return false;
        }
        for (field, equal, value) in &self.fields {
            let actual = match field {
                Field::Name => text("name"),
                Field::Namespace => text("namespace"),
            };
            if (actual == value) != *equal {
                return false;
            }
        }
        if self.labels.is_empty() {
            return true;
        }
        let labels = meta
            .and_then(|m| m.get("labels"))
            .and_then(Value::as_object);
        let label = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.labels.iter().all(|req| match req {
            LabelReq::Eq(k, v) => label(k) == Some(v.as_str()),
            LabelReq::Ne(k, v) => label(k) != Some(v.as_str()),
            LabelReq::Exists(k) => label(k).is_some(),
            LabelReq::NotExists(k) => label(k).is_none(),
            LabelReq::In(k, set) => label(k).is_some_and(|l| set.iter().any(|s| s == l)),
            LabelReq::NotIn(k, set) => !label(k).is_some_and(|l| set.iter().any(|s| s == l)),
        })
    }

    /// How a stored change looks to this watcher (objects moving in or out of the selection
    /// appear as ADDED or DELETED, as with the apiserver).
    fn translate(&self, e: &HistEvent) -> Option<(EventType, Arc<Value>)> {
        let now = self.matches(&e.obj);
        let ty = match e.ty {
            EventType::Added | EventType::Deleted => now.then_some(e.ty)?,
            EventType::Modified => {
                let before = e.prev.as_ref().is_some_and(|p| self.matches(p));
                match (before, now) {
                    (true, true) => EventType::Modified,
                    (false, true) => EventType::Added,
                    (true, false) => EventType::Deleted,
                    (false, false) => return None,
                }
            }
        };
        Some((ty, e.obj.clone()))
    }
}

/// Splits a label selector at commas outside parentheses.
fn split_top_level(selector: &str) -> Vec<String> {
    let mut terms = Vec::new();
    let mut depth = 0usize;
    let mut current = String::new();
    for c in selector.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                terms.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    terms.push(current);
    terms
        .into_iter()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

fn parse_label_req(term: &str) -> Result<LabelReq, String> {
    let set = |s: &str| -> Result<Vec<String>, String> {
        let inner = s
            .trim()
            .strip_prefix('(')
            .and_then(|s| s.strip_suffix(')'))
            .ok_or_else(|| format!("unable to parse requirement: found '{s}', expected: '('"))?;
        Ok(inner
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect())
    };
    let key = |k: &str| k.trim().to_string();
    if let Some(k) = term.strip_prefix('!') {
        return Ok(LabelReq::NotExists(key(k)));
    }
    if let Some((k, s)) = term.split_once(" notin ") {
        return Ok(LabelReq::NotIn(key(k), set(s)?));
    }
    if let Some((k, s)) = term.split_once(" in ") {
        return Ok(LabelReq::In(key(k), set(s)?));
    }
    if let Some((k, v)) = term.split_once("!=") {
        return Ok(LabelReq::Ne(key(k), v.trim().to_string()));
    }
    if let Some((k, v)) = term.split_once("==") {
        return Ok(LabelReq::Eq(key(k), v.trim().to_string()));
    }
    if let Some((k, v)) = term.split_once('=') {
        return Ok(LabelReq::Eq(key(k), v.trim().to_string()));
    }
    if term.contains([' ', '(', ')', '<', '>']) {
        return Err(format!("unable to parse requirement: '{term}'"));
    }
    Ok(LabelReq::Exists(key(term)))
}

// ---------------------------------------------------------------------------------------------
// Watch

fn gone_line(shared: &Shared, requested: u64, oldest: u64) -> Bytes {
    bump(&shared.counters.gone_410, 1);
    let status = status_value(
        410,
        "Expired",
        &format!("too old resource version: {requested} ({oldest})"),
        None,
    );
    let mut line =
        serde_json::to_vec(&json!({"type": "ERROR", "object": status})).expect("serialize ERROR");
    line.push(b'\n');
    Bytes::from(line)
}

fn watch_response(body: Body) -> Response<Body> {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-cache, private")
        .body(body)
        .expect("valid response")
}

fn start_watch(
    shared: &Arc<Shared>,
    target: Target,
    filter: Filter,
    query: &Query,
) -> Response<Body> {
    bump(&shared.counters.watches, 1);
    let requested = query
        .get("resourceVersion")
        .filter(|rv| !rv.is_empty() && *rv != "0")
        .and_then(|rv| rv.parse::<u64>().ok());
    let send_initial = query.flag("sendInitialEvents");
    let bookmarks = query.flag("allowWatchBookmarks");
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .filter(|&t| t > 0)
        .map_or(WATCH_TIMEOUT_CAP, |t| {
            Duration::from_secs(t).min(WATCH_TIMEOUT_CAP)
        });

    let store = shared.lock();
    if let Some(rv) = requested
        && rv < store.compacted_at
    {
        let line = gone_line(shared, rv, store.compacted_at);
        // Streamed (chunked) like every watch response, then ended.
        let once =
            futures_util::stream::once(async move { Ok::<_, std::io::Error>(Frame::data(line)) });
        return watch_response(BodyExt::boxed_unsync(StreamBody::new(once)));
    }
    let Some(entry) = store.kinds.get(&target.key) else {
        return not_found();
    };
    let mut queue = VecDeque::new();
    let initial = requested.is_none() || send_initial;
    let cursor = if initial {
        // "Get state and start at most recent": synthetic ADDED for what exists now.
        queue.extend(
            entry
                .objects
                .values()
                .filter(|o| filter.matches(o))
                .map(|o| (EventType::Added, o.clone())),
        );
        store.rv
    } else {
        requested.unwrap_or(store.rv)
    };
    let now = Instant::now();
    let session = WatchSession {
        shared: shared.clone(),
        key: target.key.clone(),
        incarnation: target.serving.incarnation,
        gv: target.gv.clone(),
        kind: target.key.1.clone(),
        filter,
        cursor,
        queue,
        initial_end: (send_initial && bookmarks).then_some(store.rv),
        bookmarks,
        bookmark_due: false,
        deadline: now + timeout,
        next_bookmark: now + BOOKMARK_IDLE,
        changes: entry.notify.subscribe(),
        drops: shared.drop_tx.subscribe(),
        expiry: shared.expire_tx.subscribe(),
        final_line: None,
        done: false,
    };
    drop(store);
    let stream = futures_util::stream::unfold(session, WatchSession::next_frame);
    watch_response(BodyExt::boxed_unsync(StreamBody::new(stream)))
}

enum Drained {
    Events,
    Idle,
    /// The resource stopped being served (its CRD was deleted).
    Closed,
    /// History this watch still needed was compacted.
    Gone,
}

struct WatchSession {
    shared: Arc<Shared>,
    key: KindKey,
    incarnation: u64,
    gv: String,
    kind: String,
    filter: Filter,
    /// Every change at or before this resourceVersion has been queued or sent.
    cursor: u64,
    queue: VecDeque<(EventType, Arc<Value>)>,
    /// resourceVersion of the pending "initial-events-end" bookmark (sendInitialEvents).
    initial_end: Option<u64>,
    bookmarks: bool,
    bookmark_due: bool,
    deadline: Instant,
    next_bookmark: Instant,
    changes: watch::Receiver<u64>,
    drops: watch::Receiver<u64>,
    expiry: watch::Receiver<u64>,
    final_line: Option<Bytes>,
    done: bool,
}

type Chunk = Result<Frame<Bytes>, std::io::Error>;

impl WatchSession {
    async fn next_frame(mut self) -> Option<(Chunk, WatchSession)> {
        loop {
            if self.done {
                return None;
            }
            if self.drops.has_changed().unwrap_or(false) {
                // An error from the body makes hyper drop the connection mid-chunk.
                self.done = true;
                let err = std::io::Error::new(ErrorKind::ConnectionAborted, "watch dropped");
                return Some((Err(err), self));
            }
            if self.expiry.has_changed().unwrap_or(false) {
                self.expiry.borrow_and_update();
                self.expire();
            }
            if let Some(line) = self.final_line.take() {
                self.done = true;
                return Some((Ok(Frame::data(line)), self));
            }
            if Instant::now() >= self.deadline {
                return None;
            }
            if !self.queue.is_empty() {
                let chunk = self.encode_batch();
                self.next_bookmark = Instant::now() + BOOKMARK_IDLE;
                return Some((Ok(Frame::data(chunk)), self));
            }
            if let Some(rv) = self.initial_end.take() {
                let line = self.bookmark_line(rv, true);
                return Some((Ok(Frame::data(line)), self));
            }
            match self.drain() {
                Drained::Events => continue,
                Drained::Closed => {
                    self.done = true;
                    continue;
                }
                Drained::Gone => {
                    self.expire();
                    continue;
                }
                Drained::Idle => {}
            }
            if self.bookmark_due {
                self.bookmark_due = false;
                self.next_bookmark = Instant::now() + BOOKMARK_IDLE;
                let line = self.bookmark_line(self.cursor, false);
                return Some((Ok(Frame::data(line)), self));
            }
            let bookmarks = self.bookmarks;
            tokio::select! {
                biased;
                _ = self.drops.changed() => {
                    self.done = true;
                    let err = std::io::Error::new(ErrorKind::ConnectionAborted, "watch dropped");
                    return Some((Err(err), self));
                }
                _ = self.expiry.changed() => self.expire(),
                _ = self.changes.changed() => {}
                _ = tokio::time::sleep_until(self.deadline) => {}
                _ = tokio::time::sleep_until(self.next_bookmark), if bookmarks => {
                    self.bookmark_due = true;
                }
            }
        }
    }

    /// History was compacted under this watch: send 410 Expired and end.
    fn expire(&mut self) {
        let compacted_at = self.shared.lock().compacted_at;
        self.queue.clear();
        self.initial_end = None;
        self.final_line = Some(gone_line(&self.shared, self.cursor, compacted_at));
    }

    /// Queues the changes after `cursor` (those this watch's filter lets through).
    fn drain(&mut self) -> Drained {
        let store = self.shared.lock();
        if self.cursor < store.compacted_at {
            return Drained::Gone;
        }
        let Some(entry) = store.kinds.get(&self.key) else {
            return Drained::Closed;
        };
        let start = entry.history.partition_point(|e| e.rv <= self.cursor);
        for e in &entry.history[start..] {
            if let Some(item) = self.filter.translate(e) {
                self.queue.push_back(item);
            }
        }
        self.cursor = store.rv;
        let open = entry
            .serving
            .as_ref()
            .is_some_and(|s| s.incarnation == self.incarnation);
        if !self.queue.is_empty() {
            Drained::Events
        } else if open {
            Drained::Idle
        } else {
            Drained::Closed
        }
    }

    fn encode_batch(&mut self) -> Bytes {
        let mut buf = Vec::with_capacity(8 * 1024);
        let mut sent = 0;
        while let Some((ty, obj)) = self.queue.pop_front() {
            buf.extend_from_slice(b"{\"type\":\"");
            buf.extend_from_slice(ty.as_str().as_bytes());
            buf.extend_from_slice(b"\",\"object\":");
            write_object(&mut buf, &obj, &self.gv);
            buf.extend_from_slice(b"}\n");
            sent += 1;
            if buf.len() >= FRAME_BYTES {
                break;
            }
        }
        bump(&self.shared.counters.watch_events, sent);
        Bytes::from(buf)
    }

    fn bookmark_line(&self, rv: u64, initial_end: bool) -> Bytes {
        bump(&self.shared.counters.bookmarks, 1);
        let mut metadata = Map::new();
        metadata.insert("resourceVersion".into(), Value::String(rv.to_string()));
        if initial_end {
            metadata.insert(
                "annotations".into(),
                json!({"k8s.io/initial-events-end": "true"}),
            );
        }
        let event = json!({
            "type": "BOOKMARK",
            "object": {"kind": self.kind, "apiVersion": self.gv, "metadata": metadata},
        });
        let mut line = serde_json::to_vec(&event).expect("serialize BOOKMARK");
        line.push(b'\n');
        Bytes::from(line)
    }
}
