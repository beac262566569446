//! The live Kubernetes source: kube-rs watches of every ACK kind (discovered from CRDs, and
//! followed as CRDs come and go), Namespaces, IAMRoleSelectors, and — inside the controller
//! namespaces only — the CARM ConfigMaps, controller Deployments and ServiceAccounts.
//!
//! Objects are turned into snapshot facts the moment they arrive (the same
//! [`object::classify`] the dump reader uses) and handed to the store
//! ([`crate::state::cluster::LiveCluster`]), so no whole object is kept. Every watch
//! recovers by itself (kube's watcher re-lists after `410 Gone`; errors back off); one failing
//! kind never stops the others.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
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
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::model::object::{self, Object};
use crate::model::{CARM_MAPS, Gvk, ParseError, ack_service_of_group};
use crate::state::cluster::{LiveCluster, ObjectKey, Stored, WatchEvent, WatchId};
use crate::telemetry::label;

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

/// Why no Kubernetes client could be made: the configuration named or found is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("--kubeconfig {}: {message}", path.display())]
    Kubeconfig { path: PathBuf, message: String },
    #[error("--context {context}: {source}")]
    Context {
        context: String,
        source: kube::config::KubeconfigError,
    },
    #[error("no Kubernetes configuration (kubeconfig or in-cluster): {0}")]
    NotFound(kube::config::InferConfigError),
    #[error("Kubernetes client: {0}")]
    Client(kube::Error),
}

/// A client from `--kubeconfig`/`--context`, else the usual inference (KUBECONFIG, then
/// in-cluster).
pub async fn client(opts: &KubeOptions) -> Result<Client, ClientError> {
    let options = kube::config::KubeConfigOptions {
        context: opts.context.clone(),
        ..Default::default()
    };
    let config = match (&opts.kubeconfig, &opts.context) {
        (Some(path), _) => {
            let unusable = |message: String| ClientError::Kubeconfig {
                path: path.clone(),
                message,
            };
            let kc =
                kube::config::Kubeconfig::read_from(path).map_err(|e| unusable(e.to_string()))?;
            kube::Config::from_custom_kubeconfig(kc, &options)
                .await
                .map_err(|e| unusable(e.to_string()))?
        }
        (None, Some(ctx)) => kube::Config::from_kubeconfig(&options)
            .await
            .map_err(|source| ClientError::Context {
                context: ctx.clone(),
                source,
            })?,
        (None, None) => kube::Config::infer().await.map_err(ClientError::NotFound)?,
    };
    Client::try_from(config).map_err(ClientError::Client)
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
    let stored = match <[Object; 1]>::try_from(classified.objects) {
        Ok([Object::Resource(mut r)]) => {
            if !keep_identifiers {
                r.id_fields = Vec::new();
            }
            match shared_gvk {
                Some(g) if *g == r.gvk => r.gvk = g.clone(),
                _ => *shared_gvk = Some(r.gvk.clone()),
            }
            Stored::Resource(Arc::new(r))
        }
        Ok([other]) => Stored::Other(vec![other]),
        Err(objects) => Stored::Other(objects),
    };
    (stored, errors)
}

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

/// A watch that runs for the process's lifetime, whatever CRDs exist.
enum FixedWatch {
    Namespaces,
    CarmMap { namespace: String, name: String },
    Deployments { namespace: String },
    ServiceAccounts { namespace: String },
}

impl FixedWatch {
    /// Every fixed watch the options ask for.
    fn all(opts: &KubeOptions) -> Vec<FixedWatch> {
        let mut v = vec![FixedWatch::Namespaces];
        for ns in &opts.controller_namespaces {
            for name in CARM_MAPS {
                v.push(FixedWatch::CarmMap {
                    namespace: ns.clone(),
                    name: name.to_string(),
                });
            }
            v.push(FixedWatch::Deployments {
                namespace: ns.clone(),
            });
            v.push(FixedWatch::ServiceAccounts {
                namespace: ns.clone(),
            });
        }
        v
    }

    fn id(&self) -> WatchId {
        match self {
            FixedWatch::Namespaces => WatchId::Namespaces,
            FixedWatch::CarmMap { namespace, name } => WatchId::CarmMap {
                namespace: namespace.clone(),
                name: name.clone(),
            },
            FixedWatch::Deployments { namespace } => WatchId::Deployments {
                namespace: namespace.clone(),
            },
            FixedWatch::ServiceAccounts { namespace } => WatchId::ServiceAccounts {
                namespace: namespace.clone(),
            },
        }
    }

    /// (API group, kind) of the objects, for `kube_objects`.
    fn kind(&self) -> (String, String) {
        let (group, kind) = match self {
            FixedWatch::Namespaces => ("", "Namespace"),
            FixedWatch::CarmMap { .. } => ("", "ConfigMap"),
            FixedWatch::Deployments { .. } => ("apps", "Deployment"),
            FixedWatch::ServiceAccounts { .. } => ("", "ServiceAccount"),
        };
        (group.to_string(), kind.to_string())
    }

    fn spawn(self, client: Client, live: Arc<LiveCluster>) {
        let id = self.id();
        let all = watcher::Config::default();
        match self {
            FixedWatch::Namespaces => {
                tokio::spawn(run_watch(Api::<K8sNamespace>::all(client), all, id, live));
            }
            FixedWatch::CarmMap { namespace, name } => {
                let api = Api::<ConfigMap>::namespaced(client, &namespace);
                let one = all.fields(&format!("metadata.name={name}"));
                tokio::spawn(run_watch(api, one, id, live));
            }
            FixedWatch::Deployments { namespace } => {
                let api = Api::<Deployment>::namespaced(client, &namespace);
                tokio::spawn(run_watch(api, all, id, live));
            }
            FixedWatch::ServiceAccounts { namespace } => {
                let api = Api::<K8sServiceAccount>::namespaced(client, &namespace);
                tokio::spawn(run_watch(api, all, id, live));
            }
        }
    }
}

/// Starts every watch and follows CRDs. Returns the task handles' owner; dropping it stops
/// nothing (the tasks run until the runtime ends).
pub fn start(client: Client, opts: KubeOptions, live: Arc<LiveCluster>) -> JoinHandle<()> {
    // Every fixed watch is registered before any runs, so readiness waits for all of them.
    let fixed = FixedWatch::all(&opts);
    live.register(
        &WatchId::Crds,
        (
            "apiextensions.k8s.io".to_string(),
            "CustomResourceDefinition".to_string(),
        ),
    );
    for watch in &fixed {
        live.register(&watch.id(), watch.kind());
    }
    for watch in fixed {
        watch.spawn(client.clone(), live.clone());
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
