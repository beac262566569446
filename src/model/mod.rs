//! The cluster snapshot: only the facts evaluation needs, never whole objects.
//!
//! Sources (files today, the kube watch later) turn raw Kubernetes objects into these types
//! through [`object::classify`], so every source reads objects the same way.

pub mod account;
pub mod controller;
pub mod object;
pub mod runtime_version;
pub mod time;
pub mod trail;
pub mod trail_json;
pub mod trail_scan;
pub mod user_agent;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

pub use account::{AccountId, arn_account};
pub use controller::{ControllerDeployment, ServiceAccount};

/// Annotation keys ACK reads.
pub mod annotations {
    pub const OWNER_ACCOUNT_ID: &str = "services.k8s.aws/owner-account-id";
    pub const TEAM_ID: &str = "services.k8s.aws/team-id";
    pub const DEFAULT_REGION: &str = "services.k8s.aws/default-region";
    pub const REGION: &str = "services.k8s.aws/region";
    pub const IRSA_ROLE_ARN: &str = "eks.amazonaws.com/role-arn";
}

/// Names of the CARM ConfigMaps in a controller's system namespace.
pub const ACCOUNT_MAP: &str = "ack-role-account-map";
pub const TEAM_MAP: &str = "ack-role-team-map";
/// The one map of runtime v0.37.x's `CARMv2` gate: team and account ids, service keys.
pub const CARM_V2_MAP: &str = "ack-carm-map";
/// Every CARM map some runtime reads.
pub const CARM_MAPS: [&str; 3] = [ACCOUNT_MAP, TEAM_MAP, CARM_V2_MAP];

/// A problem found while reading input: which file (or source), where, and what.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ParseError {
    pub file: String,
    pub line: Option<usize>,
    pub message: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file, line, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// Labels of an object, as a sorted list: most objects carry a few, and a map would
/// allocate a whole tree node for each resource.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Labels(Vec<(String, String)>);

impl Labels {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(k, _)| k.as_str().cmp(key))
            .ok()
            .map(|i| self.0[i].1.as_str())
    }

    pub fn insert(&mut self, key: String, value: String) {
        match self.0.binary_search_by(|(k, _)| k.cmp(&key)) {
            Ok(i) => self.0[i].1 = value,
            Err(i) => self.0.insert(i, (key, value)),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<BTreeMap<String, String>> for Labels {
    fn from(map: BTreeMap<String, String>) -> Self {
        // A BTreeMap iterates in key order: already sorted, no duplicates.
        let mut v: Vec<(String, String)> = map.into_iter().collect();
        v.shrink_to_fit();
        Labels(v)
    }
}

impl FromIterator<(String, String)> for Labels {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Self {
        let map: BTreeMap<String, String> = iter.into_iter().collect();
        map.into()
    }
}

/// What evaluation needs to know of a Namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Namespace {
    pub name: String,
    pub labels: Labels,
    /// `services.k8s.aws/owner-account-id`, kept verbatim (validated at evaluation).
    pub owner_account_id: Option<String>,
    pub team_id: Option<String>,
    pub default_region: Option<String>,
}

/// `group/version/kind` of an object.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Gvk {
    pub group: String,
    pub version: String,
    pub kind: String,
}

impl Gvk {
    /// The ACK service alias of a `<service>.services.k8s.aws` group (`ec2`), if it is one.
    pub fn ack_service(&self) -> Option<&str> {
        ack_service_of_group(&self.group)
    }
}

/// `ec2.services.k8s.aws` → `ec2`; the runtime's own `services.k8s.aws` group is no service.
pub fn ack_service_of_group(group: &str) -> Option<&str> {
    group
        .strip_suffix(".services.k8s.aws")
        .filter(|s| !s.is_empty() && !s.contains('.'))
}

/// One entry of `status.conditions`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Condition {
    pub type_: String,
    pub status: String,
    pub reason: Option<String>,
    pub message: Option<String>,
    pub last_transition_time: Option<String>,
}

/// `status.ackResourceMetadata`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct AckMetadata {
    pub arn: Option<String>,
    pub owner_account_id: Option<String>,
    pub region: Option<String>,
}

/// An ACK custom resource, reduced to what ownership and attribution need.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct AckResource {
    /// Shared by every resource of the kind (a live watch hands out one `Arc` per kind).
    pub gvk: Arc<Gvk>,
    pub namespace: String,
    pub name: String,
    pub labels: Labels,
    /// CR annotation `services.k8s.aws/region`.
    pub region_annotation: Option<String>,
    /// `None` when the CR has no `status.ackResourceMetadata` (never reconciled, or unreadable).
    pub metadata: Option<AckMetadata>,
    pub conditions: Vec<Condition>,
    /// Short top-level string fields of `spec` and `status`: the candidates for the identifier
    /// strings that tie CloudTrail events to this CR (which ones count is evaluation's rule).
    pub id_fields: Vec<IdField>,
}

/// Where an identifier candidate sits in the CR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Section {
    Spec,
    Status,
}

/// One top-level string field of a CR's spec or status.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdField {
    pub section: Section,
    pub field: String,
    pub value: String,
}

impl AckResource {
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }

    /// A hash of what identifies the resource (group, kind, namespace, name): the key of the
    /// per-resource caches, so they do not each keep copies of those strings. Caches verify a
    /// hit (same `Arc`, or same content fingerprint), so a collision costs a recomputation,
    /// never a wrong answer.
    pub fn identity_hash(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = crate::intern::fingerprint_hasher();
        (&self.gvk.group, &self.gvk.kind, &self.namespace, &self.name).hash(&mut h);
        h.finish()
    }
}

/// `services.k8s.aws/v1alpha1` IAMRoleSelector (cluster-scoped).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct RoleSelector {
    pub name: String,
    pub arn: String,
    pub namespace_names: Vec<String>,
    pub namespace_labels: BTreeMap<String, String>,
    /// Entries are ORed; an empty field inside an entry is a wildcard.
    pub resource_types: Vec<Gvk>,
    pub resource_labels: BTreeMap<String, String>,
}

/// A CARM ConfigMap (`ack-role-account-map`, `ack-role-team-map` or `ack-carm-map`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct CarmMap {
    pub namespace: String,
    pub name: String,
    pub data: BTreeMap<String, String>,
}

/// Everything read from a cluster, live or from a dump.
#[derive(Debug, Clone, Default)]
pub struct ClusterSnapshot {
    pub namespaces: BTreeMap<String, Namespace>,
    /// Shared, so a live source can hand out snapshots without copying resources.
    pub resources: Vec<Arc<AckResource>>,
    pub role_selectors: Vec<RoleSelector>,
    pub carm_maps: Vec<CarmMap>,
    pub controllers: Vec<ControllerDeployment>,
    pub service_accounts: Vec<ServiceAccount>,
    /// Objects read, of any kind (including ones evaluation ignores).
    pub objects: usize,
    /// Objects read per (group, kind).
    pub object_kinds: BTreeMap<(String, String), usize>,
    pub parse_errors: Vec<ParseError>,
    /// Kinds each ACK service group serves, from its CRDs, when the input has them (a live
    /// source always does; a dump only when it includes the CRDs).
    pub ack_kinds: BTreeMap<String, BTreeSet<String>>,
}

impl ClusterSnapshot {
    /// Adds one classified object.
    pub fn insert(&mut self, object: object::Object) {
        use object::Object;
        match object {
            Object::Namespace(ns) => {
                self.namespaces.insert(ns.name.clone(), ns);
            }
            Object::Resource(mut r) => {
                // Dumps come kind by kind: share the kind with the resource before.
                if let Some(last) = self.resources.last()
                    && last.gvk == r.gvk
                {
                    r.gvk = last.gvk.clone();
                }
                self.resources.push(Arc::new(r))
            }
            Object::RoleSelector(s) => self.role_selectors.push(s),
            Object::CarmMap(m) => self.carm_maps.push(m),
            Object::Controller(c) => self.controllers.push(c),
            Object::ServiceAccount(sa) => self.service_accounts.push(sa),
            Object::AckKind(group, kind) => {
                self.ack_kinds.entry(group).or_default().insert(kind);
            }
            Object::Ignored => {}
        }
    }

    pub fn carm_map(&self, namespace: &str, name: &str) -> Option<&CarmMap> {
        self.carm_maps
            .iter()
            .find(|m| m.namespace == namespace && m.name == name)
    }

    pub fn service_account(&self, namespace: &str, name: &str) -> Option<&ServiceAccount> {
        self.service_accounts
            .iter()
            .find(|sa| sa.namespace == namespace && sa.name == name)
    }

    /// Sorts everything into a stable order so outputs do not depend on file order.
    pub fn normalize(&mut self) {
        // By (namespace, group, kind, name). Comparing through each resource's pointers cost a
        // cache miss or more per comparison (a third of a live publish at 100 000 resources):
        // the keys are built once, side by side, and compared there. NUL sorts before any
        // byte a name may hold, so the joined key orders as the tuple does.
        self.resources.sort_by_cached_key(|r| {
            [r.namespace.as_str(), &r.gvk.group, &r.gvk.kind, &r.name].join("\0")
        });
        self.role_selectors.sort_by(|a, b| a.name.cmp(&b.name));
        self.controllers.sort_by(|a, b| {
            (&a.service, &a.namespace, &a.name).cmp(&(&b.service, &b.namespace, &b.name))
        });
    }
}
