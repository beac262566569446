//! The fake API server driven by the real kube client: discovery, paginated lists, watches,
//! resumption after dropped streams, 410 Expired after compaction, injected failures, and CRDs
//! appearing and disappearing at run time.

#[path = "support/fake_apiserver.rs"]
mod fake_apiserver;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fake_apiserver::FakeApiServer;
use futures_util::StreamExt;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, WatchEvent, WatchParams,
};
use kube::discovery::{Discovery, Scope};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Config, ResourceExt};
use serde_json::{Value, json};

const SG_API_VERSION: &str = "ec2.services.k8s.aws/v1alpha1";
const SG_KIND: &str = "SecurityGroup";
const CRD_API_VERSION: &str = "apiextensions.k8s.io/v1";
const CRD_KIND: &str = "CustomResourceDefinition";
const SG_CRD_NAME: &str = "securitygroups.ec2.services.k8s.aws";

fn crds_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ack/crds")
}

fn sg_crd_file() -> PathBuf {
    crds_dir().join("ec2.services.k8s.aws_securitygroups.yaml")
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("fake_apiserver-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn client(fake: &FakeApiServer) -> Client {
    let url = fake.url().parse().expect("fake URL parses");
    Client::try_from(Config::new(url)).expect("client builds")
}

fn sg_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("ec2.services.k8s.aws", "v1alpha1", SG_KIND),
        "securitygroups",
    )
}

fn security_group(namespace: &str, name: &str, description: &str) -> Value {
    json!({
        "apiVersion": SG_API_VERSION,
        "kind": SG_KIND,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app": "web", "tier": if name.ends_with('0') { "edge" } else { "core" }},
            "annotations": {"services.k8s.aws/region": "us-east-1"},
        },
        "spec": {"name": name, "description": description, "vpcID": "vpc-0a1b2c3d"},
        "status": {
            "ackResourceMetadata": {
                "ownerAccountID": "111122223333",
                "region": "us-east-1",
                "arn": format!("arn:aws:ec2:us-east-1:111122223333:security-group/{name}"),
            },
        },
    })
}

/// (namespace, name) -> resourceVersion, as the fake holds them now.
fn server_state(fake: &FakeApiServer) -> BTreeMap<(String, String), String> {
    fake.objects(SG_API_VERSION, SG_KIND)
        .iter()
        .map(|o| {
            let meta = &o["metadata"];
            (
                (
                    meta["namespace"].as_str().unwrap_or_default().to_string(),
                    meta["name"].as_str().unwrap_or_default().to_string(),
                ),
                meta["resourceVersion"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

/// What a `kube::runtime::watcher` has told us, folded into a map like a reflector would.
#[derive(Default)]
struct Mirror {
    objects: BTreeMap<(String, String), String>,
    buffer: Option<BTreeMap<(String, String), String>>,
    inits: usize,
    init_dones: usize,
    errors: usize,
}

fn key_rv(obj: &DynamicObject) -> ((String, String), String) {
    (
        (obj.namespace().unwrap_or_default(), obj.name_any()),
        obj.resource_version().unwrap_or_default(),
    )
}

fn spawn_mirror(api: Api<DynamicObject>) -> (Arc<Mutex<Mirror>>, tokio::task::JoinHandle<()>) {
    let mirror = Arc::new(Mutex::new(Mirror::default()));
    let shared = mirror.clone();
    let task = tokio::spawn(async move {
        let mut stream = watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        while let Some(event) = stream.next().await {
            let mut m = shared.lock().unwrap();
            match event {
                Ok(watcher::Event::Init) => {
                    m.inits += 1;
                    m.buffer = Some(BTreeMap::new());
                }
                Ok(watcher::Event::InitApply(obj)) => {
                    let (k, rv) = key_rv(&obj);
                    m.buffer.get_or_insert_with(BTreeMap::new).insert(k, rv);
                }
                Ok(watcher::Event::InitDone) => {
                    m.objects = m.buffer.take().unwrap_or_default();
                    m.init_dones += 1;
                }
                Ok(watcher::Event::Apply(obj)) => {
                    let (k, rv) = key_rv(&obj);
                    m.objects.insert(k, rv);
                }
                Ok(watcher::Event::Delete(obj)) => {
                    let (k, _) = key_rv(&obj);
                    m.objects.remove(&k);
                }
                Err(_) => m.errors += 1,
            }
        }
    });
    (mirror, task)
}

async fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn converged(fake: &FakeApiServer, mirror: &Arc<Mutex<Mirror>>, what: &str) {
    wait_for(what, Duration::from_secs(10), || {
        let m = mirror.lock().unwrap();
        m.buffer.is_none() && m.init_dones > 0 && m.objects == server_state(fake)
    })
    .await;
}

/// A raw GET through the kube client; Ok(body) on 2xx, Err(Status) otherwise.
async fn raw_get(client: &Client, path: &str) -> Result<String, kube::Error> {
    let req = hyper::http::Request::get(path)
        .body(Vec::new())
        .expect("request builds");
    client.request_text(req).await
}

fn api_code(result: Result<impl std::fmt::Debug, kube::Error>) -> (u16, String) {
    match result {
        Err(kube::Error::Api(status)) => (status.code, status.reason.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_finds_applied_crds_and_builtins() {
    let fake = FakeApiServer::start();
    fake.apply_path(&crds_dir());
    assert_eq!(fake.objects(CRD_API_VERSION, CRD_KIND).len(), 10);
    let client = client(&fake);

    let version = client.apiserver_version().await.expect("/version");
    assert_eq!(version.git_version, "v1.33.0");
    assert_eq!(
        (version.major.as_str(), version.minor.as_str()),
        ("1", "33")
    );

    for discovery in [
        Discovery::new(client.clone())
            .run()
            .await
            .expect("discovery"),
        Discovery::new(client.clone())
            .run_aggregated()
            .await
            .expect("aggregated discovery"),
    ] {
        for group in [
            "ec2.services.k8s.aws",
            "rds.services.k8s.aws",
            "s3.services.k8s.aws",
            "services.k8s.aws",
            "apps",
            "apiextensions.k8s.io",
            "",
        ] {
            assert!(discovery.has_group(group), "group {group:?} discovered");
        }
        let gvk = GroupVersionKind::gvk("ec2.services.k8s.aws", "v1alpha1", SG_KIND);
        let (ar, caps) = discovery.resolve_gvk(&gvk).expect("SecurityGroup resolves");
        assert_eq!(ar.plural, "securitygroups");
        assert_eq!(caps.scope, Scope::Namespaced);
        assert!(caps.supports_operation("list") && caps.supports_operation("watch"));
        assert_eq!(
            discovery
                .get("ec2.services.k8s.aws")
                .unwrap()
                .preferred_version_or_latest(),
            "v1alpha1"
        );
        let ec2_kinds: BTreeSet<String> = discovery
            .get("ec2.services.k8s.aws")
            .unwrap()
            .recommended_resources()
            .into_iter()
            .map(|(ar, _)| ar.kind)
            .collect();
        assert_eq!(
            ec2_kinds,
            ["Instance", "RouteTable", "SecurityGroup", "Subnet", "VPC"]
                .map(String::from)
                .into()
        );
        let core = GroupVersionKind::gvk("", "v1", "ConfigMap");
        let (cm, cm_caps) = discovery.resolve_gvk(&core).expect("ConfigMap resolves");
        assert_eq!(cm.plural, "configmaps");
        assert_eq!(cm_caps.scope, Scope::Namespaced);
        let ns = GroupVersionKind::gvk("", "v1", "Namespace");
        assert_eq!(discovery.resolve_gvk(&ns).unwrap().1.scope, Scope::Cluster);
        let crd = GroupVersionKind::gvk("apiextensions.k8s.io", "v1", CRD_KIND);
        assert_eq!(discovery.resolve_gvk(&crd).unwrap().1.scope, Scope::Cluster);
        let dep = GroupVersionKind::gvk("apps", "v1", "Deployment");
        assert_eq!(discovery.resolve_gvk(&dep).unwrap().0.plural, "deployments");
    }

    // The status subresource is listed like the apiserver does.
    let text = raw_get(&client, "/apis/ec2.services.k8s.aws/v1alpha1")
        .await
        .unwrap();
    let list: Value = serde_json::from_str(&text).unwrap();
    let names: Vec<&str> = list["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"securitygroups") && names.contains(&"securitygroups/status"));
    // CRDs come back Established, as the apiextensions controller would leave them.
    let crds: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", CRD_KIND),
            "customresourcedefinitions",
        ),
    );
    let crd = crds.get(SG_CRD_NAME).await.expect("CRD by name");
    let conditions = crd.data["status"]["conditions"].as_array().unwrap();
    assert!(
        conditions
            .iter()
            .any(|c| c["type"] == "Established" && c["status"] == "True")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubeconfig_client_and_error_statuses() {
    let fake = FakeApiServer::start();
    let dir = scratch("kubeconfig");
    let path = fake.write_kubeconfig(&dir);
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).expect("kubeconfig reads");
    let config = Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("config from kubeconfig");
    assert_eq!(config.default_namespace, "default");
    let client = Client::try_from(config).expect("client");

    fake.apply(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}}));
    fake.apply(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "settings", "namespace": "team-a"},
        "data": {"region": "eu-west-1"},
    }));
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let listed = namespaces.list(&ListParams::default()).await.unwrap();
    assert_eq!(listed.items.len(), 1);
    assert_eq!(listed.items[0].name_any(), "team-a");
    let ns = namespaces.get("team-a").await.unwrap();
    assert!(ns.metadata.uid.is_some() && ns.metadata.creation_timestamp.is_some());

    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client.clone(), "team-a");
    let cm = cms.get("settings").await.unwrap();
    assert_eq!(cm.data.unwrap()["region"], "eu-west-1");
    // Missing object: 404 NotFound Status.
    assert_eq!(api_code(cms.get("nope").await), (404, "NotFound".into()));
    // Unknown resource and unknown path: 404 Status.
    assert_eq!(
        api_code(
            raw_get(
                &client,
                "/apis/ec2.services.k8s.aws/v1alpha1/securitygroups"
            )
            .await
        ),
        (404, "NotFound".into())
    );
    assert_eq!(
        api_code(raw_get(&client, "/healthz/nothing/here").await),
        (404, "NotFound".into())
    );
    // Writes are not supported: 405 MethodNotAllowed.
    let post = hyper::http::Request::post("/api/v1/namespaces")
        .body(b"{}".to_vec())
        .unwrap();
    assert_eq!(
        api_code(client.request_text(post).await),
        (405, "MethodNotAllowed".into())
    );
    // Injected failures: 500 with a Status body, then normal service.
    fake.fail_next(2);
    assert_eq!(
        api_code(cms.get("settings").await),
        (500, "InternalError".into())
    );
    assert_eq!(
        api_code(cms.get("settings").await),
        (500, "InternalError".into())
    );
    cms.get("settings")
        .await
        .expect("served again after the failures");
    assert_eq!(fake.stats().errors_500, 2);
    // CRD access forbidden by "RBAC" while discovery keeps working.
    fake.apply_path(&sg_crd_file());
    fake.forbid_crds(true);
    assert_eq!(
        api_code(
            raw_get(
                &client,
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
            )
            .await
        ),
        (403, "Forbidden".into())
    );
    let discovery = Discovery::new(client.clone()).run().await.unwrap();
    assert!(discovery.has_group("ec2.services.k8s.aws"));
    fake.forbid_crds(false);
    raw_get(
        &client,
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
    )
    .await
    .expect("allowed again");
    // Delay before each answer.
    fake.set_delay(Duration::from_millis(300));
    let start = Instant::now();
    cms.get("settings").await.unwrap();
    assert!(start.elapsed() >= Duration::from_millis(300));
    fake.set_delay(Duration::ZERO);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_path_reads_yaml_json_and_lists() {
    let fake = FakeApiServer::start();
    let dir = scratch("apply_path");
    std::fs::create_dir_all(dir.join("nested")).unwrap();
    // A CR before its CRD in name order: apply_path still applies CRDs first.
    std::fs::write(
        dir.join("a-groups.yaml"),
        "---\n\
         apiVersion: ec2.services.k8s.aws/v1alpha1\n\
         kind: SecurityGroup\n\
         metadata:\n  name: from-yaml-1\n  namespace: prod\n\
         spec:\n  name: one\n  description: first\n\
         ---\n\
         apiVersion: ec2.services.k8s.aws/v1alpha1\n\
         kind: SecurityGroup\n\
         metadata:\n  name: from-yaml-2\n\
         spec:\n  name: two\n  description: second\n",
    )
    .unwrap();
    let list = json!({
        "apiVersion": "v1",
        "kind": "List",
        "items": [security_group("prod", "from-json-list", "third")],
    });
    std::fs::write(dir.join("nested/dump.json"), list.to_string()).unwrap();
    std::fs::copy(sg_crd_file(), dir.join("nested/z-crd.yaml")).unwrap();
    std::fs::write(dir.join("ignored.txt"), "not: [yaml").unwrap();
    fake.apply_path(&dir);

    let names: Vec<(String, String)> = server_state(&fake).into_keys().collect();
    assert_eq!(
        names,
        vec![
            ("default".to_string(), "from-yaml-2".to_string()),
            ("prod".to_string(), "from-json-list".to_string()),
            ("prod".to_string(), "from-yaml-1".to_string()),
        ]
    );
    let api: Api<DynamicObject> = Api::all_with(client(&fake), &sg_resource());
    let listed = api.list(&ListParams::default()).await.unwrap();
    assert_eq!(listed.items.len(), 3);
    let rvs: Vec<u64> = listed
        .items
        .iter()
        .map(|o| o.resource_version().unwrap().parse().unwrap())
        .collect();
    let list_rv: u64 = listed.metadata.resource_version.unwrap().parse().unwrap();
    assert!(rvs.iter().all(|&rv| rv <= list_rv));
    // Replacing keeps uid and creationTimestamp, bumps resourceVersion and generation.
    let before = api.get_opt("from-json-list").await;
    assert!(
        before.is_err() || before.unwrap().is_none(),
        "cluster path + name is not a get"
    );
    let ns_api: Api<DynamicObject> = Api::namespaced_with(client(&fake), "prod", &sg_resource());
    let before = ns_api.get("from-json-list").await.unwrap();
    fake.apply(security_group("prod", "from-json-list", "changed"));
    let after = ns_api.get("from-json-list").await.unwrap();
    assert_eq!(before.uid(), after.uid());
    assert_eq!(before.creation_timestamp(), after.creation_timestamp());
    assert!(
        after.resource_version().unwrap().parse::<u64>().unwrap()
            > before.resource_version().unwrap().parse::<u64>().unwrap()
    );
    assert_eq!(before.metadata.generation, Some(1));
    assert_eq!(after.metadata.generation, Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paginated_list_is_a_consistent_snapshot() {
    let fake = FakeApiServer::start();
    fake.apply_path(&sg_crd_file());
    fake.apply_all(
        (0..1200).map(|i| security_group(&format!("ns-{}", i % 3), &format!("sg-{i:04}"), "paged")),
    );
    let client = client(&fake);
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &sg_resource());

    let mut seen = BTreeSet::new();
    let mut pages = 0;
    let mut lp = ListParams::default().limit(500);
    let mut first_rv = None;
    loop {
        let page = api.list(&lp).await.expect("page");
        pages += 1;
        let rv = page.metadata.resource_version.clone().unwrap();
        assert_eq!(*first_rv.get_or_insert(rv.clone()), rv, "same snapshot rv");
        for obj in &page.items {
            assert_eq!(obj.types.as_ref().unwrap().kind, SG_KIND);
            assert!(
                seen.insert((obj.namespace().unwrap(), obj.name_any())),
                "no duplicates"
            );
        }
        if pages == 1 {
            assert_eq!(page.metadata.remaining_item_count, Some(700));
            // Changes after the first page do not leak into later pages.
            fake.apply(security_group("ns-0", "sg-late", "added mid-list"));
            fake.delete(SG_API_VERSION, SG_KIND, Some("ns-0"), "sg-0000");
        }
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => lp = lp.continue_token(&token),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 1200);
    assert!(seen.contains(&("ns-0".into(), "sg-0000".into())));
    assert!(!seen.contains(&("ns-0".into(), "sg-late".into())));
    assert_eq!(fake.stats().lists, 3);

    // Sorted by namespace, then name.
    let all = api.list(&ListParams::default()).await.unwrap();
    let keys: Vec<(String, String)> = all
        .items
        .iter()
        .map(|o| (o.namespace().unwrap(), o.name_any()))
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    assert_eq!(keys.len(), 1200);

    // Selectors and namespaced paths.
    let in_ns1: Api<DynamicObject> = Api::namespaced_with(client.clone(), "ns-1", &sg_resource());
    assert_eq!(
        in_ns1
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        400
    );
    let by_field = api
        .list(&ListParams::default().fields("metadata.namespace=ns-2,metadata.name=sg-0002"))
        .await
        .unwrap();
    assert_eq!(by_field.items.len(), 1);
    let edge = api
        .list(&ListParams::default().labels("app=web,tier=edge"))
        .await
        .unwrap();
    // 120 names end in 0; sg-0000 was deleted mid-list.
    assert_eq!(edge.items.len(), 119);
    let edge_set = api
        .list(&ListParams::default().labels("tier in (edge),app"))
        .await
        .unwrap();
    assert_eq!(edge_set.items.len(), 119);
    let none = api
        .list(&ListParams::default().labels("!app"))
        .await
        .unwrap();
    assert!(none.items.is_empty());
    assert_eq!(
        api_code(api.list(&ListParams::default().fields("spec.name=x")).await),
        (400, "BadRequest".into())
    );

    // A continue token issued before compaction answers 410 Gone (reason Expired).
    let first = api.list(&ListParams::default().limit(100)).await.unwrap();
    let token = first.metadata.continue_.unwrap();
    fake.expire_history();
    let gone = api
        .list(&ListParams::default().limit(100).continue_token(&token))
        .await;
    assert_eq!(api_code(gone), (410, "Expired".into()));
    assert!(fake.stats().gone_410 >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_watch_protocol() {
    let fake = FakeApiServer::start();
    fake.apply_path(&sg_crd_file());
    fake.apply(security_group("prod", "sg-a", "a"));
    let start_rv = fake.resource_version();
    let api: Api<DynamicObject> = Api::all_with(client(&fake), &sg_resource());

    // Events after the given resourceVersion, in order, then live ones; bookmarks while idle.
    let wp = WatchParams::default().timeout(3);
    let mut stream = api.watch(&wp, &start_rv.to_string()).await.unwrap().boxed();
    fake.apply(security_group("prod", "sg-b", "b"));
    fake.apply(security_group("prod", "sg-a", "a2"));
    fake.delete(SG_API_VERSION, SG_KIND, Some("prod"), "sg-b");
    let mut seen = Vec::new();
    let mut bookmarks = 0;
    while let Some(event) = stream.next().await {
        match event.unwrap() {
            WatchEvent::Added(o) => seen.push(format!("ADDED {}", o.name_any())),
            WatchEvent::Modified(o) => seen.push(format!("MODIFIED {}", o.name_any())),
            WatchEvent::Deleted(o) => seen.push(format!("DELETED {}", o.name_any())),
            WatchEvent::Bookmark(b) => {
                assert_eq!(b.types.kind, SG_KIND);
                assert_eq!(b.types.api_version, SG_API_VERSION);
                bookmarks += 1;
            }
            WatchEvent::Error(e) => panic!("unexpected error event {e:?}"),
        }
    }
    // The stream ended by itself after timeoutSeconds=3.
    assert_eq!(seen, ["ADDED sg-b", "MODIFIED sg-a", "DELETED sg-b"]);
    assert!(bookmarks >= 1, "bookmarks while idle");
    assert!(fake.stats().bookmarks >= 1);

    // Label selector transitions: leaving the selection is a DELETED, entering an ADDED.
    let rv = fake.resource_version();
    let wp = WatchParams::default().labels("tier=edge").timeout(1);
    let mut stream = api.watch(&wp, &rv.to_string()).await.unwrap().boxed();
    let mut moved = security_group("prod", "sg-a", "a3");
    moved["metadata"]["labels"]["tier"] = json!("edge");
    fake.apply(moved.clone());
    moved["metadata"]["labels"]["tier"] = json!("core");
    fake.apply(moved);
    let mut types = Vec::new();
    while let Some(event) = stream.next().await {
        match event.unwrap() {
            WatchEvent::Added(_) => types.push("ADDED"),
            WatchEvent::Modified(_) => types.push("MODIFIED"),
            WatchEvent::Deleted(_) => types.push("DELETED"),
            _ => {}
        }
    }
    assert_eq!(types, ["ADDED", "DELETED"]);

    // After compaction a watch from an older resourceVersion gets one ERROR 410 and ends.
    fake.expire_history();
    let mut stream = api
        .watch(&WatchParams::default(), &start_rv.to_string())
        .await
        .unwrap()
        .boxed();
    match stream.next().await {
        Some(Ok(WatchEvent::Error(status))) => {
            assert_eq!(status.code, 410);
            assert_eq!(status.reason, "Expired");
            assert!(status.message.starts_with("too old resource version"));
        }
        other => panic!("expected ERROR 410, got {other:?}"),
    }
    assert!(stream.next().await.is_none(), "stream ends after the ERROR");
    // From the current resourceVersion it is fine.
    let now = fake.resource_version().to_string();
    let mut stream = api
        .watch(&WatchParams::default().timeout(1), &now)
        .await
        .unwrap()
        .boxed();
    fake.apply(security_group("prod", "sg-c", "c"));
    match stream.next().await {
        Some(Ok(WatchEvent::Added(o))) => assert_eq!(o.name_any(), "sg-c"),
        other => panic!("expected ADDED sg-c, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_converges_through_drops_and_expiry() {
    let fake = FakeApiServer::start();
    fake.apply_path(&sg_crd_file());
    fake.apply_all((0..50).map(|i| security_group("prod", &format!("sg-{i:02}"), "initial")));
    let api: Api<DynamicObject> = Api::all_with(client(&fake), &sg_resource());
    let (mirror, task) = spawn_mirror(api);

    converged(&fake, &mirror, "the initial list").await;
    assert_eq!(mirror.lock().unwrap().inits, 1);
    assert_eq!(mirror.lock().unwrap().objects.len(), 50);

    // Live changes: add, modify, delete.
    for i in 50..60 {
        fake.apply(security_group("dev", &format!("sg-{i:02}"), "added"));
    }
    for i in 0..5 {
        fake.apply(security_group("prod", &format!("sg-{i:02}"), "modified"));
    }
    for i in 5..10 {
        fake.delete(SG_API_VERSION, SG_KIND, Some("prod"), &format!("sg-{i:02}"));
    }
    converged(&fake, &mirror, "live changes").await;
    assert_eq!(mirror.lock().unwrap().objects.len(), 55);

    // Idle long enough for a bookmark.
    wait_for("a bookmark", Duration::from_secs(5), || {
        fake.stats().bookmarks > 0
    })
    .await;

    // Dropped streams: the watcher resumes from its resourceVersion and loses nothing.
    let watches = fake.stats().watches;
    fake.drop_watches();
    for i in 10..15 {
        fake.delete(SG_API_VERSION, SG_KIND, Some("prod"), &format!("sg-{i:02}"));
    }
    fake.apply(security_group("dev", "sg-after-drop", "while disconnected"));
    converged(&fake, &mirror, "changes made around a dropped watch").await;
    wait_for("a new watch", Duration::from_secs(10), || {
        fake.stats().watches > watches
    })
    .await;
    assert_eq!(
        mirror.lock().unwrap().inits,
        1,
        "resumed without re-listing"
    );

    // Compaction: the open watch gets 410 Expired and the watcher re-lists.
    let gone = fake.stats().gone_410;
    fake.expire_history();
    wait_for("a re-list after 410", Duration::from_secs(10), || {
        mirror.lock().unwrap().inits >= 2
    })
    .await;
    assert!(fake.stats().gone_410 > gone);
    fake.apply(security_group(
        "dev",
        "sg-after-expiry",
        "after the re-list",
    ));
    fake.delete(SG_API_VERSION, SG_KIND, Some("prod"), "sg-20");
    converged(&fake, &mirror, "changes after the re-list").await;

    // Compaction and a drop back to back, then a change: still converges.
    fake.expire_history();
    fake.drop_watches();
    fake.apply(security_group("dev", "sg-last", "last"));
    converged(&fake, &mirror, "after compaction plus drop").await;
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_recovers_from_server_errors() {
    let fake = FakeApiServer::start();
    fake.apply_path(&sg_crd_file());
    fake.apply_all((0..20).map(|i| security_group("prod", &format!("sg-{i:02}"), "x")));
    let api: Api<DynamicObject> = Api::all_with(client(&fake), &sg_resource());

    // The initial list fails three times; the watcher backs off and retries.
    fake.fail_next(3);
    let (mirror, task) = spawn_mirror(api);
    converged(&fake, &mirror, "the list after 3 failures").await;
    assert_eq!(fake.stats().errors_500, 3);
    assert!(mirror.lock().unwrap().errors >= 3);

    // A failing re-watch after a dropped stream: still converges.
    fake.fail_next(2);
    fake.drop_watches();
    fake.apply(security_group("prod", "sg-new", "y"));
    fake.delete(SG_API_VERSION, SG_KIND, Some("prod"), "sg-00");
    converged(&fake, &mirror, "after failing re-watches").await;
    assert_eq!(fake.stats().errors_500, 5);
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crd_lifecycle_at_run_time() {
    let fake = FakeApiServer::start();
    let client = client(&fake);
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &sg_resource());

    // Not served before its CRD exists.
    assert_eq!(
        api_code(api.list(&ListParams::default()).await),
        (404, "NotFound".into())
    );
    let discovery = Discovery::new(client.clone()).run().await.unwrap();
    assert!(!discovery.has_group("ec2.services.k8s.aws"));

    fake.apply_path(&sg_crd_file());
    fake.apply_all((0..5).map(|i| security_group("prod", &format!("sg-{i}"), "x")));
    assert_eq!(
        api.list(&ListParams::default()).await.unwrap().items.len(),
        5
    );
    let discovery = Discovery::new(client.clone()).run().await.unwrap();
    assert!(discovery.has_group("ec2.services.k8s.aws"));

    // An open watch sees every custom resource deleted with the CRD, then its stream ends.
    let rv = fake.resource_version().to_string();
    let mut stream = api
        .watch(&WatchParams::default().timeout(30), &rv)
        .await
        .unwrap()
        .boxed();
    let (mirror, task) = spawn_mirror(api.clone());
    converged(&fake, &mirror, "the initial list").await;
    // The watcher's watch must be open before the CRD goes: a watch started afterwards would
    // get 404 (the resource is no longer served), as with a real API server.
    wait_for("the watcher's watch", Duration::from_secs(10), || {
        fake.stats().watches >= 2
    })
    .await;

    fake.delete(CRD_API_VERSION, CRD_KIND, None, SG_CRD_NAME);
    assert!(fake.objects(SG_API_VERSION, SG_KIND).is_empty());
    assert!(fake.objects(CRD_API_VERSION, CRD_KIND).is_empty());
    let started = Instant::now();
    let mut deleted = 0;
    while let Some(event) = stream.next().await {
        match event.unwrap() {
            WatchEvent::Deleted(_) => deleted += 1,
            WatchEvent::Bookmark(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(deleted, 5);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "stream ended promptly"
    );
    wait_for("the mirror to empty", Duration::from_secs(10), || {
        mirror.lock().unwrap().objects.is_empty()
    })
    .await;
    task.abort();

    assert_eq!(
        api_code(api.list(&ListParams::default()).await),
        (404, "NotFound".into())
    );
    let discovery = Discovery::new(client.clone()).run().await.unwrap();
    assert!(!discovery.has_group("ec2.services.k8s.aws"));

    // Re-applying the CRD serves the (now empty) resource again.
    fake.apply_path(&sg_crd_file());
    assert!(
        api.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_list_initial_events() {
    let fake = FakeApiServer::start();
    fake.apply_path(&sg_crd_file());
    fake.apply_all((0..30).map(|i| security_group("prod", &format!("sg-{i:02}"), "x")));
    let api: Api<DynamicObject> = Api::all_with(client(&fake), &sg_resource());
    let mut stream = watcher(api, watcher::Config::default().streaming_lists()).boxed();
    let mut applied = 0;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("events in time")
            .expect("stream open")
            .expect("no error")
        {
            watcher::Event::Init => {}
            watcher::Event::InitApply(_) => applied += 1,
            watcher::Event::InitDone => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(applied, 30);
    fake.apply(security_group("prod", "sg-live", "y"));
    match tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
        Ok(Some(Ok(watcher::Event::Apply(o)))) => assert_eq!(o.name_any(), "sg-live"),
        other => panic!("expected Apply, got {other:?}"),
    }
}

/// Reads a raw HTTP/1.1 response: (lower-cased head, body de-chunked when chunked, whether a
/// chunked body ended with its terminating zero-size chunk). Stops at EOF or after `timeout`.
async fn read_raw(
    stream: &mut tokio::net::TcpStream,
    timeout: Duration,
) -> (String, Vec<u8>, bool) {
    let mut raw = Vec::new();
    read_more(stream, &mut raw, None, timeout).await;
    parse_raw(&raw)
}

/// Appends what arrives to `raw` until EOF, `timeout`, or (if given) `until` shows up.
async fn read_more(
    stream: &mut tokio::net::TcpStream,
    raw: &mut Vec<u8>,
    until: Option<&[u8]>,
    timeout: Duration,
) {
    use tokio::io::AsyncReadExt;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf = [0u8; 16 * 1024];
    loop {
        if let Some(needle) = until
            && raw.windows(needle.len()).any(|w| w == needle)
        {
            return;
        }
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return,
            Ok(Ok(n)) => raw.extend_from_slice(&buf[..n]),
        }
    }
}

fn parse_raw(raw: &[u8]) -> (String, Vec<u8>, bool) {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response head");
    let head = String::from_utf8_lossy(&raw[..split]).to_lowercase();
    let mut rest = &raw[split + 4..];
    if !head.contains("transfer-encoding: chunked") {
        return (head, rest.to_vec(), false);
    }
    let mut body = Vec::new();
    let mut terminated = false;
    while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(std::str::from_utf8(&rest[..eol]).unwrap().trim(), 16)
            .expect("chunk size");
        if size == 0 {
            terminated = true;
            break;
        }
        if rest.len() < eol + 2 + size + 2 {
            body.extend_from_slice(&rest[eol + 2..(eol + 2 + size).min(rest.len())]);
            break;
        }
        body.extend_from_slice(&rest[eol + 2..eol + 2 + size]);
        rest = &rest[eol + 2 + size + 2..];
    }
    (head, body, terminated)
}

async fn raw_request(fake: &FakeApiServer, path_and_query: &str) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let addr = fake.url().trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "GET {path_and_query} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(req.as_bytes())
        .await
        .expect("write request");
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_wire_format() {
    let fake = FakeApiServer::start();
    fake.apply_path(&sg_crd_file());
    fake.apply(security_group("prod", "sg-a", "a"));
    let path = "/apis/ec2.services.k8s.aws/v1alpha1/securitygroups";

    // A list: kind <Kind>List, the group/version, resourceVersion and continue in metadata,
    // items carrying apiVersion and kind.
    fake.apply(security_group("prod", "sg-b", "b"));
    let mut s = raw_request(&fake, &format!("{path}?limit=1")).await;
    let (head, body, _) = read_raw(&mut s, Duration::from_secs(5)).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-type: application/json"));
    let list: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(list["kind"], "SecurityGroupList");
    assert_eq!(list["apiVersion"], SG_API_VERSION);
    assert_eq!(
        list["metadata"]["resourceVersion"],
        fake.resource_version().to_string()
    );
    assert!(list["metadata"]["continue"].is_string());
    assert_eq!(list["items"][0]["kind"], SG_KIND);
    assert_eq!(list["items"][0]["apiVersion"], SG_API_VERSION);
    assert_eq!(list["items"][0]["metadata"]["name"], "sg-a");

    // A live watch is chunked JSON lines; dropping it cuts the connection mid-stream.
    let rv = fake.resource_version();
    let mut s = raw_request(
        &fake,
        &format!("{path}?watch=1&resourceVersion={rv}&timeoutSeconds=30"),
    )
    .await;
    fake.apply(security_group("prod", "sg-c", "c"));
    let mut raw = Vec::new();
    read_more(&mut s, &mut raw, Some(b"}\n"), Duration::from_secs(5)).await;
    fake.drop_watches();
    read_more(&mut s, &mut raw, None, Duration::from_secs(5)).await;
    let (head, body, terminated) = parse_raw(&raw);
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    assert!(head.contains("content-type: application/json"), "{head}");
    assert!(!terminated, "a dropped watch has no final chunk");
    let lines: Vec<Value> = body
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["type"], "ADDED");
    assert_eq!(lines[0]["object"]["metadata"]["name"], "sg-c");
    assert_eq!(
        lines[0]["object"]["metadata"]["resourceVersion"],
        (rv + 1).to_string()
    );

    // timeoutSeconds ends the stream cleanly.
    let started = Instant::now();
    let mut s = raw_request(
        &fake,
        &format!("{path}?watch=true&resourceVersion={rv}&timeoutSeconds=1"),
    )
    .await;
    let (_, body, terminated) = read_raw(&mut s, Duration::from_secs(5)).await;
    assert!(terminated, "clean end after timeoutSeconds");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(
        body.split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .count(),
        1
    );

    // After compaction: exactly one ERROR line with a 410 Expired Status, then a clean end.
    fake.expire_history();
    let compacted = fake.resource_version();
    let mut s = raw_request(&fake, &format!("{path}?watch=true&resourceVersion={rv}")).await;
    let (head, body, terminated) = read_raw(&mut s, Duration::from_secs(5)).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(terminated);
    let text = String::from_utf8(body).unwrap();
    let expected = json!({"type": "ERROR", "object": {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": format!("too old resource version: {rv} ({compacted})"),
        "reason": "Expired", "code": 410}});
    assert_eq!(text.lines().count(), 1);
    assert_eq!(
        serde_json::from_str::<Value>(text.trim()).unwrap(),
        expected
    );

    // A stale continue token: HTTP 410 with a Status body.
    let mut s = raw_request(
        &fake,
        &format!(
            "{path}?limit=1&continue={}",
            list["metadata"]["continue"].as_str().unwrap()
        ),
    )
    .await;
    let (head, body, _) = read_raw(&mut s, Duration::from_secs(5)).await;
    assert!(head.starts_with("http/1.1 410"), "{head}");
    let status: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "Expired");
    assert_eq!(status["code"], 410);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_100k_objects_over_20_kinds() {
    const N: usize = 100_000;
    const KINDS: usize = 20;
    let fake = FakeApiServer::start();
    let started = Instant::now();
    let mut resources = Vec::new();
    for k in 0..KINDS {
        let kind = format!("Thing{k}");
        let plural = format!("thing{k}s");
        fake.apply(json!({
            "apiVersion": CRD_API_VERSION, "kind": CRD_KIND,
            "metadata": {"name": format!("{plural}.scale.example.com")},
            "spec": {
                "group": "scale.example.com", "scope": "Namespaced",
                "names": {"kind": kind, "plural": plural, "singular": format!("thing{k}"),
                          "listKind": format!("{kind}List")},
                "versions": [{"name": "v1alpha1", "served": true, "storage": true}],
            },
        }));
        resources.push(ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("scale.example.com", "v1alpha1", &kind),
            &plural,
        ));
    }
    let thing = |i: usize, prefix: &str| {
        json!({
            "apiVersion": "scale.example.com/v1alpha1", "kind": format!("Thing{}", i % KINDS),
            "metadata": {"name": format!("{prefix}-{i:06}"), "namespace": format!("ns-{}", i % 7)},
            "spec": {"index": i, "description": "a custom resource of the scale test"},
            "status": {"ackResourceMetadata": {"ownerAccountID": "111122223333",
                "region": "us-east-1", "arn": format!("arn:aws:ec2:us-east-1:111122223333:thing/{i}")}},
        })
    };
    fake.apply_all((0..N).map(|i| thing(i, "obj")));
    let loaded = started.elapsed();

    let client = client(&fake);
    let started = Instant::now();
    let mirrors: Vec<_> = resources
        .iter()
        .map(|ar| spawn_mirror(Api::all_with(client.clone(), ar)))
        .collect();
    let total = |mirrors: &[(Arc<Mutex<Mirror>>, tokio::task::JoinHandle<()>)]| {
        mirrors
            .iter()
            .map(|(m, _)| m.lock().unwrap().objects.len())
            .sum::<usize>()
    };
    wait_for("every object listed", Duration::from_secs(30), || {
        total(&mirrors) == N
    })
    .await;
    let listed = started.elapsed();

    let started = Instant::now();
    for i in 0..2_000 {
        fake.apply(thing(i, "live"));
    }
    fake.drop_watches();
    for i in 2_000..4_000 {
        fake.apply(thing(i, "live"));
    }
    wait_for("live events", Duration::from_secs(30), || {
        total(&mirrors) == N + 4_000
    })
    .await;
    let live = started.elapsed();
    let stats = fake.stats();
    // Events written just before the drop may be sent again to the resumed watch.
    assert!(stats.watch_events >= 4_000, "{stats:?}");
    // 5 000 objects per kind, listed in pages of 500 (the watcher's default page size).
    assert_eq!(stats.lists, (KINDS * 10) as u64, "{stats:?}");
    eprintln!("load {loaded:?}, list+watch {listed:?}, 4 000 live events across a drop {live:?}");
    for (_, task) in mirrors {
        task.abort();
    }
}
