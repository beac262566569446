//! Turns one raw Kubernetes object (as JSON) into the snapshot facts evaluation needs.
//!
//! Wrongly typed fields never abort: the object is kept with what could be read, and each
//! problem comes back as a message naming the object and the field path.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::controller::{self, Container};
use super::{
    AckMetadata, AckResource, CARM_MAPS, CarmMap, Condition, Gvk, IdField, Namespace, RoleSelector,
    Section, ServiceAccount, ack_service_of_group, annotations,
};

/// One object, classified.
#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    Namespace(Namespace),
    Resource(AckResource),
    RoleSelector(RoleSelector),
    CarmMap(CarmMap),
    Controller(super::ControllerDeployment),
    ServiceAccount(ServiceAccount),
    /// A CRD of an ACK service group: (group, kind) the cluster serves.
    AckKind(String, String),
    Ignored,
}

/// The result of reading one object: what could be used, plus every problem met.
#[derive(Debug, Default)]
pub struct Classified {
    pub objects: Vec<Object>,
    pub errors: Vec<String>,
}

/// Field access that records type errors with a path instead of failing.
struct Reader<'a> {
    who: String,
    errors: &'a mut Vec<String>,
}

impl Reader<'_> {
    fn err(&mut self, path: &str, msg: impl std::fmt::Display) {
        self.errors.push(format!("{}: {path}: {msg}", self.who));
    }

    fn object<'v>(&mut self, v: &'v Value, path: &str) -> Option<&'v Map<String, Value>> {
        let found = lookup(v, path)?;
        match found {
            Value::Object(m) => Some(m),
            Value::Null => None,
            other => {
                self.err(path, format!("is {}, expected an object", type_name(other)));
                None
            }
        }
    }

    fn array<'v>(&mut self, v: &'v Value, path: &str) -> &'v [Value] {
        match lookup(v, path) {
            Some(Value::Array(a)) => a,
            None | Some(Value::Null) => &[],
            Some(other) => {
                self.err(path, format!("is {}, expected a list", type_name(other)));
                &[]
            }
        }
    }

    /// A string field; numbers and booleans are accepted as their text (hand-written YAML
    /// often leaves account ids unquoted).
    fn string(&mut self, v: &Value, path: &str) -> Option<String> {
        match lookup(v, path)? {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            Value::Number(n) => Some(number_text(n, path)),
            Value::Bool(b) => Some(b.to_string()),
            other => {
                self.err(path, format!("is {}, expected a string", type_name(other)));
                None
            }
        }
    }

    fn string_map(&mut self, v: &Value, path: &str) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        if let Some(m) = self.object(v, path) {
            for (k, val) in m {
                match val {
                    Value::String(s) => {
                        out.insert(k.clone(), s.clone());
                    }
                    Value::Number(n) => {
                        out.insert(k.clone(), number_text(n, k));
                    }
                    Value::Bool(b) => {
                        out.insert(k.clone(), b.to_string());
                    }
                    Value::Null => {}
                    other => {
                        self.err(
                            &format!("{path}.{k}"),
                            format!("is {}, expected a string", type_name(other)),
                        );
                    }
                }
            }
        }
        out
    }

    fn string_list(&mut self, v: &Value, path: &str) -> Vec<String> {
        let mut out = Vec::new();
        for (i, item) in self.array(v, path).iter().enumerate() {
            match item {
                Value::String(s) => out.push(s.clone()),
                Value::Number(n) => out.push(n.to_string()),
                other => self.err(
                    &format!("{path}[{i}]"),
                    format!("is {}, expected a string", type_name(other)),
                ),
            }
        }
        out
    }
}

/// Account ids written unquoted arrive as numbers; give them back their 12 digits.
fn number_text(n: &serde_json::Number, key: &str) -> String {
    let text = n.to_string();
    let looks_like_account =
        key.to_ascii_lowercase().contains("account") || key.bytes().all(|b| b.is_ascii_digit());
    match n.as_u64() {
        Some(u) if looks_like_account && u < 1_000_000_000_000 && text.len() < 12 => {
            format!("{u:012}")
        }
        _ => text,
    }
}

fn lookup<'v>(v: &'v Value, path: &str) -> Option<&'v Value> {
    let mut cur = v;
    for part in path.split('.') {
        cur = cur.as_object()?.get(part)?;
    }
    Some(cur)
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Splits `apiVersion` into (group, version); the core group is empty.
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.rsplit_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

/// Reads one object. `kind: List` must be unpacked by the caller.
pub fn classify(value: &Value) -> Classified {
    let mut out = Classified::default();
    let Some(map) = value.as_object() else {
        out.errors.push(format!(
            "document is {}, expected a Kubernetes object",
            type_name(value)
        ));
        return out;
    };
    let api_version = map.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = map.get("kind").and_then(Value::as_str).unwrap_or("");
    if api_version.is_empty() || kind.is_empty() {
        out.errors
            .push("object without apiVersion or kind; skipped".to_string());
        return out;
    }
    let (group, version) = split_api_version(api_version);
    let name = lookup(value, "metadata.name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let namespace = lookup(value, "metadata.namespace")
        .and_then(Value::as_str)
        .map(String::from);
    let who = match &namespace {
        Some(ns) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} {name}"),
    };
    let mut r = Reader {
        who,
        errors: &mut out.errors,
    };
    if name.is_empty() {
        r.err("metadata.name", "missing; object skipped");
        return out;
    }
    let object = match (group, kind) {
        ("", "Namespace") => Object::Namespace(namespace_of(&mut r, value, name)),
        ("", "ConfigMap") if CARM_MAPS.contains(&name.as_str()) => Object::CarmMap(CarmMap {
            namespace: namespace.unwrap_or_default(),
            name,
            data: r.string_map(value, "data"),
        }),
        ("", "ServiceAccount") => {
            let ann = r.string_map(value, "metadata.annotations");
            Object::ServiceAccount(ServiceAccount {
                namespace: namespace.unwrap_or_default(),
                name,
                role_arn: ann.get(annotations::IRSA_ROLE_ARN).cloned(),
            })
        }
        ("apps", "Deployment") => {
            let ns = namespace.unwrap_or_default();
            let controllers = deployment(&mut r, value, &ns, &name);
            out.objects
                .extend(controllers.into_iter().map(Object::Controller));
            return out;
        }
        ("services.k8s.aws", "IAMRoleSelector") => role_selector(&mut r, value, name),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => ack_kind(&mut r, value),
        (g, _) if ack_service_of_group(g).is_some() => {
            let ns = match namespace {
                Some(ns) => ns,
                None => {
                    r.err(
                        "metadata.namespace",
                        "missing on a namespaced ACK resource; read as `default`",
                    );
                    "default".to_string()
                }
            };
            Object::Resource(resource(&mut r, value, group, version, kind, ns, name))
        }
        _ => Object::Ignored,
    };
    out.objects.push(object);
    out
}

/// The (group, kind) of a CRD, when the group is an ACK service's.
fn ack_kind(r: &mut Reader, v: &Value) -> Object {
    match (r.string(v, "spec.group"), r.string(v, "spec.names.kind")) {
        (Some(g), Some(k)) if ack_service_of_group(&g).is_some() => Object::AckKind(g, k),
        _ => Object::Ignored,
    }
}

fn namespace_of(r: &mut Reader, v: &Value, name: String) -> Namespace {
    let ann = r.string_map(v, "metadata.annotations");
    Namespace {
        name,
        labels: r.string_map(v, "metadata.labels").into(),
        owner_account_id: ann.get(annotations::OWNER_ACCOUNT_ID).cloned(),
        team_id: ann.get(annotations::TEAM_ID).cloned(),
        default_region: ann.get(annotations::DEFAULT_REGION).cloned(),
    }
}

fn deployment(
    r: &mut Reader,
    v: &Value,
    namespace: &str,
    name: &str,
) -> Vec<super::ControllerDeployment> {
    let containers = r.array(v, "spec.template.spec.containers");
    if containers.is_empty() {
        r.err(
            "spec.template.spec.containers",
            "no containers (not a runnable Deployment); skipped",
        );
        return Vec::new();
    }
    let service_account = r
        .string(v, "spec.template.spec.serviceAccountName")
        .or_else(|| r.string(v, "spec.template.spec.serviceAccount"))
        .unwrap_or_else(|| "default".to_string());
    let mut found = Vec::new();
    for (i, c) in containers.iter().enumerate() {
        let path = format!("spec.template.spec.containers[{i}]");
        let Some(image) = c.get("image").and_then(Value::as_str) else {
            r.err(&path, "container without image");
            continue;
        };
        let mut env = Vec::new();
        for (j, e) in r.array(c, "env").iter().enumerate() {
            let Some(n) = e.get("name").and_then(Value::as_str) else {
                r.err(&format!("{path}.env[{j}]"), "env entry without name");
                continue;
            };
            let field_ref = e
                .pointer("/valueFrom/fieldRef/fieldPath")
                .and_then(Value::as_str);
            let value = match e.get("value") {
                Some(Value::String(s)) => Some(s.clone()),
                // The Helm charts set ACK_SYSTEM_NAMESPACE from the pod's own namespace.
                Some(Value::Null) | None if field_ref == Some("metadata.namespace") => {
                    Some(namespace.to_string())
                }
                Some(Value::Null) | None if e.get("valueFrom").is_some() => None,
                Some(Value::Null) | None => Some(String::new()),
                Some(other) => Some(other.to_string()),
            };
            env.push((n.to_string(), value));
        }
        let container = Container {
            image: image.to_string(),
            command: r.string_list(c, "command"),
            args: r.string_list(c, "args"),
            env,
        };
        if let Some(d) = controller::from_container(namespace, name, &service_account, &container) {
            found.push(d);
        }
    }
    let (replicas, available) = replica_counts(r, v);
    for d in &mut found {
        d.replicas = replicas;
        d.available_replicas = available;
    }
    found
}

/// `spec.replicas` (default 1) and, when the object has a `status`, `availableReplicas`
/// (the API server leaves it out when it is 0).
fn replica_counts(r: &mut Reader, v: &Value) -> (u32, Option<u32>) {
    let has_status = r.object(v, "status").is_some();
    let mut count = |path: &str| match lookup(v, path) {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) if n.as_u64().is_some() => {
            Some(u32::try_from(n.as_u64().unwrap_or(0)).unwrap_or(u32::MAX))
        }
        Some(other) => {
            r.err(
                path,
                format!("is {}, expected a replica count", type_name(other)),
            );
            None
        }
    };
    let replicas = count("spec.replicas").unwrap_or(1);
    let available = has_status.then(|| count("status.availableReplicas").unwrap_or(0));
    (replicas, available)
}

fn role_selector(r: &mut Reader, v: &Value, name: String) -> Object {
    // A selector without an ARN is kept: the runtime rejects it (`validateSelector`), and
    // the exporter reports it as invalid.
    let arn = r.string(v, "spec.arn").unwrap_or_default();
    let mut resource_types = Vec::new();
    for (i, t) in r.array(v, "spec.resourceTypeSelector").iter().enumerate() {
        if !t.is_object() {
            r.err(
                &format!("spec.resourceTypeSelector[{i}]"),
                format!("is {}, expected an object", type_name(t)),
            );
            continue;
        }
        resource_types.push(Gvk {
            group: r.string(t, "group").unwrap_or_default(),
            version: r.string(t, "version").unwrap_or_default(),
            kind: r.string(t, "kind").unwrap_or_default(),
        });
    }
    Object::RoleSelector(RoleSelector {
        name,
        arn,
        namespace_names: r.string_list(v, "spec.namespaceSelector.names"),
        namespace_labels: r.string_map(v, "spec.namespaceSelector.labelSelector.matchLabels"),
        resource_types,
        resource_labels: r.string_map(v, "spec.resourceLabelSelector.matchLabels"),
    })
}

fn resource(
    r: &mut Reader,
    v: &Value,
    group: &str,
    version: &str,
    kind: &str,
    namespace: String,
    name: String,
) -> AckResource {
    let ann = r.string_map(v, "metadata.annotations");
    let metadata = r
        .object(v, "status.ackResourceMetadata")
        .map(|_| AckMetadata {
            arn: r.string(v, "status.ackResourceMetadata.arn"),
            owner_account_id: r.string(v, "status.ackResourceMetadata.ownerAccountID"),
            region: r.string(v, "status.ackResourceMetadata.region"),
        });
    let mut conditions = Vec::new();
    for (i, c) in r.array(v, "status.conditions").iter().enumerate() {
        if !c.is_object() {
            r.err(
                &format!("status.conditions[{i}]"),
                format!("is {}, expected an object", type_name(c)),
            );
            continue;
        }
        let Some(type_) = r.string(c, "type") else {
            r.err(&format!("status.conditions[{i}]"), "condition without type");
            continue;
        };
        conditions.push(Condition {
            type_,
            status: r.string(c, "status").unwrap_or_default(),
            reason: r.string(c, "reason"),
            message: r.string(c, "message"),
            last_transition_time: r.string(c, "lastTransitionTime"),
        });
    }
    // A live source keeps one of these per resource: no spare capacity.
    conditions.shrink_to_fit();
    let mut ids = id_fields(v);
    ids.shrink_to_fit();
    AckResource {
        gvk: Gvk {
            group: group.to_string(),
            version: version.to_string(),
            kind: kind.to_string(),
        }
        .into(),
        namespace,
        name,
        labels: r.string_map(v, "metadata.labels").into(),
        region_annotation: ann.get(annotations::REGION).cloned(),
        metadata,
        conditions,
        id_fields: ids,
    }
}

/// Identifier values longer than this are not identifiers (policies, user data, certificates).
pub const MAX_ID_FIELD_LEN: usize = 256;

/// The short top-level string fields of `spec` and `status`, for attribution.
pub fn id_fields(v: &Value) -> Vec<IdField> {
    let mut out = Vec::new();
    for (section, key) in [(Section::Spec, "spec"), (Section::Status, "status")] {
        if let Some(map) = v.get(key).and_then(Value::as_object) {
            for (k, val) in map {
                if let Value::String(s) = val
                    && !s.is_empty()
                    && s.len() <= MAX_ID_FIELD_LEN
                {
                    out.push(IdField {
                        section,
                        field: k.clone(),
                        value: s.clone(),
                    });
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn one(v: Value) -> (Object, Vec<String>) {
        let c = classify(&v);
        assert_eq!(c.objects.len(), 1, "{:?}", c);
        (c.objects.into_iter().next().unwrap(), c.errors)
    }

    #[test]
    fn resource_without_status() {
        let (o, errors) = one(json!({
            "apiVersion": "s3.services.k8s.aws/v1alpha1", "kind": "Bucket",
            "metadata": {"name": "b", "namespace": "dev"},
            "spec": {"name": "my-bucket"}
        }));
        assert!(errors.is_empty());
        let Object::Resource(r) = o else { panic!() };
        assert_eq!(r.metadata, None);
        assert!(r.conditions.is_empty());
        assert_eq!(r.id_fields.len(), 1);
        assert_eq!(r.id_fields[0].value, "my-bucket");
    }

    #[test]
    fn wrongly_typed_ack_metadata_is_reported_and_the_resource_kept() {
        let (o, errors) = one(json!({
            "apiVersion": "ec2.services.k8s.aws/v1alpha1", "kind": "VPC",
            "metadata": {"name": "v", "namespace": "dev"},
            "status": {"ackResourceMetadata": "oops", "conditions": [{"type": "ACK.ResourceSynced", "status": "True"}]}
        }));
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].contains("VPC dev/v: status.ackResourceMetadata: is a string"),
            "{errors:?}"
        );
        let Object::Resource(r) = o else { panic!() };
        assert_eq!(r.metadata, None);
        assert_eq!(r.conditions.len(), 1);
    }

    #[test]
    fn unquoted_account_ids_keep_leading_zeros() {
        let (o, _) = one(json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "x", "annotations": {"services.k8s.aws/owner-account-id": 12345678901u64}}
        }));
        let Object::Namespace(ns) = o else { panic!() };
        assert_eq!(ns.owner_account_id.as_deref(), Some("012345678901"));
    }

    #[test]
    fn deployment_without_containers_is_an_error() {
        let c = classify(&json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "namespace": "ack-system"},
            "spec": {"template": {"spec": {"containers": []}}}
        }));
        assert!(c.objects.is_empty());
        assert_eq!(c.errors.len(), 1);
        assert!(c.errors[0].contains("Deployment ack-system/d"));
    }

    #[test]
    fn id_fields_are_short_top_level_strings() {
        let long = "x".repeat(MAX_ID_FIELD_LEN + 1);
        let v = json!({
            "spec": {"name": "sg", "policy": long, "nested": {"name": "no"}, "count": 1},
            "status": {"id": "sg-1", "ackResourceMetadata": {"arn": "a"}}
        });
        let f = id_fields(&v);
        let got: Vec<_> = f
            .iter()
            .map(|f| (f.section, f.field.as_str(), f.value.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (Section::Spec, "name", "sg"),
                (Section::Status, "id", "sg-1")
            ]
        );
    }
}
