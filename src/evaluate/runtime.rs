//! What an ACK controller does, as a function of the runtime version it was built with. One
//! field per rule, each naming the runtime commit (`aws-controllers-k8s/runtime`) that
//! introduced it; every boundary was read at its tag (`git show <tag>:<path>`). The README's
//! version table is this struct in prose.

use serde::Serialize;

use crate::model::runtime_version::RuntimeVersion;

const fn v(minor: u32, patch: u32) -> RuntimeVersion {
    RuntimeVersion::new(0, minor, patch)
}

/// When `BindControllerManager` (`pkg/runtime/service_controller.go`) starts the CARM caches
/// (the namespace cache and the CARM maps).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CarmCaches {
    /// `if cfg.WatchNamespace == ""`: any `--watch-namespace` leaves them empty.
    WithoutWatchNamespace,
    /// `len(namespaces) == 0 || len(namespaces) >= 2` (5ce3c59, #133, v0.29.2).
    ZeroOrSeveralNamespaces,
    /// The same, and only with `--enable-carm` (2130565 #199, 2ab09c6 #201, v0.52.0).
    ZeroOrSeveralNamespacesWithEnableCarm,
}

/// How `getOwnerAccountID` (`pkg/runtime/reconciler.go`) orders its sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountOrder {
    /// status, then the namespace annotation, then the controller's own account.
    StatusFirst,
    /// namespace annotation, then status, then the controller's account (fa6e794, #153, v0.36.0).
    NamespaceFirst,
}

/// Where team ids are looked up (`Reconcile`, `getRoleARN`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TeamCarm {
    /// No team support.
    None,
    /// Gate `CARMv2`: team and account ids, and `<service>.<id>` keys (always tried first),
    /// all in `ack-carm-map` (a1359c9, #155, v0.37.0).
    CarmV2,
    /// Gate `TeamLevelCARM`: `ack-role-team-map`; gate `ServiceLevelCARM`: `<service>.<id>`
    /// keys first in both maps (b52262f, #158, v0.38.0).
    TeamAndServiceGates,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct RuntimeBehaviour {
    pub version: RuntimeVersion,
    pub carm_caches: CarmCaches,
    /// `NamespaceCache` ignores the ACK system namespace, kube-system and kube-public before
    /// v0.29.2 (`isIgnoredNamespace`); kube-system, kube-public and kube-node-lease from
    /// v0.29.2 (`cache.Config.Ignored`, 5ce3c59, #133).
    pub ignores_system_namespace: bool,
    /// `getRoleARN` returns an error instead of dropping it: a CARM miss requeues instead of
    /// silently using the controller's own credentials (24070d9, #138, v0.31.0). Before, every
    /// account (the controller's own too) was looked up.
    pub lookup_miss_blocks: bool,
    /// A failed lookup writes `ACK.ResourceSynced=False` "IAM Role is not available"
    /// (861f7ed, #140, v0.32.0).
    pub role_unavailable_condition: bool,
    pub account_order: AccountOrder,
    pub team_carm: TeamCarm,
    /// The `--feature-gates` flag exists (1fe89e5, #151, v0.35.0).
    pub feature_gates_flag: bool,
    /// The `--enable-carm` flag exists (2130565, #199, v0.52.0).
    pub enable_carm_flag: bool,
    /// `Reconcile` skips the account-map lookup with `--enable-carm=false`, and takes the
    /// account from the chosen role ARN on the account path too (46340f7, #204, v0.53.0).
    pub reconciler_checks_enable_carm: bool,
    pub account_path_parses_role: bool,
    /// A status account or region that differs from the target is a terminal error returned
    /// before any AWS call, with no condition written (c101a18, #203, v0.53.0).
    pub status_mismatch_terminal: bool,
    /// IAMRoleSelectors (gate `IAMRoleSelector`, 46340f7, #204, v0.53.0).
    pub role_selectors: bool,
    /// `getRegion`/`regionDrifted` fall back to the selector cache's namespaces for default
    /// regions (10474d5, #216, v0.54.0).
    pub selector_namespace_region: bool,
    /// Selectors match `resourceLabelSelector` (7960c4c, #222, v0.57.0).
    pub selector_resource_labels: bool,
}

/// Feature gates and the releases that define them (`pkg/featuregate/features.go`). A gate
/// a release does not define is ignored before v0.39.0 and refused from v0.39.0.
const GATES: &[(&str, RuntimeVersion, Option<RuntimeVersion>)] = &[
    ("CARMv2", v(37, 0), Some(v(38, 0))),
    ("TeamLevelCARM", v(38, 0), None),
    ("ServiceLevelCARM", v(38, 0), None),
    ("ReadOnlyResources", v(39, 0), None),
    ("ResourceAdoption", v(40, 0), None),
    ("IAMRoleSelector", v(53, 0), None),
];

/// The oldest runtime whose account rules were read; older ones are judged as this one
/// (`getOwnerAccountID` and `getRoleARN` are unchanged from v0.10.0 to v0.30.0).
pub const OLDEST_MODELLED: RuntimeVersion = v(10, 0);

impl RuntimeBehaviour {
    pub fn of(version: RuntimeVersion) -> Self {
        let at = |minor, patch| version >= v(minor, patch);
        RuntimeBehaviour {
            version,
            carm_caches: if at(52, 0) {
                CarmCaches::ZeroOrSeveralNamespacesWithEnableCarm
            } else if at(29, 2) {
                CarmCaches::ZeroOrSeveralNamespaces
            } else {
                CarmCaches::WithoutWatchNamespace
            },
            ignores_system_namespace: !at(29, 2),
            lookup_miss_blocks: at(31, 0),
            role_unavailable_condition: at(32, 0),
            account_order: if at(36, 0) {
                AccountOrder::NamespaceFirst
            } else {
                AccountOrder::StatusFirst
            },
            team_carm: if at(38, 0) {
                TeamCarm::TeamAndServiceGates
            } else if at(37, 0) {
                TeamCarm::CarmV2
            } else {
                TeamCarm::None
            },
            feature_gates_flag: at(35, 0),
            enable_carm_flag: at(52, 0),
            reconciler_checks_enable_carm: at(53, 0),
            account_path_parses_role: at(53, 0),
            status_mismatch_terminal: at(53, 0),
            role_selectors: at(53, 0),
            selector_namespace_region: at(54, 0),
            selector_resource_labels: at(57, 0),
        }
    }

    /// True when this release defines the feature gate `name`.
    pub fn defines_gate(&self, name: &str) -> bool {
        GATES.iter().any(|(g, from, until)| {
            *g == name && self.version >= *from && until.is_none_or(|u| self.version < u)
        })
    }

    /// Whether the CARM caches run for these flags (`BindControllerManager`).
    pub fn carm_caches_run(&self, enable_carm: bool, watch_namespaces: usize) -> bool {
        match self.carm_caches {
            CarmCaches::WithoutWatchNamespace => watch_namespaces == 0,
            CarmCaches::ZeroOrSeveralNamespaces => watch_namespaces != 1,
            CarmCaches::ZeroOrSeveralNamespacesWithEnableCarm => {
                enable_carm && watch_namespaces != 1
            }
        }
    }

    /// Namespaces whose annotations the CARM namespace cache never reads.
    pub fn carm_ignores_namespace(&self, namespace: &str, system_namespace: &str) -> bool {
        if self.ignores_system_namespace {
            matches!(namespace, "kube-system" | "kube-public") || namespace == system_namespace
        } else {
            matches!(namespace, "kube-system" | "kube-public" | "kube-node-lease")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> RuntimeBehaviour {
        RuntimeBehaviour::of(s.parse().unwrap())
    }

    #[test]
    fn each_boundary_at_its_release() {
        // (version, caches for 0 / 1 / 2 watched namespaces with CARM on, and with it off)
        let caches = [
            ("v0.28.0", [true, false, false], [true, false, false]),
            ("v0.29.1", [true, false, false], [true, false, false]),
            ("v0.29.2", [true, false, true], [true, false, true]),
            ("v0.51.0", [true, false, true], [true, false, true]),
            ("v0.52.0", [true, false, true], [false, false, false]),
            ("v0.62.0", [true, false, true], [false, false, false]),
        ];
        for (version, on, off) in caches {
            for (n, (want_on, want_off)) in on.iter().zip(off).enumerate() {
                assert_eq!(
                    b(version).carm_caches_run(true, n),
                    *want_on,
                    "{version} {n} on"
                );
                assert_eq!(
                    b(version).carm_caches_run(false, n),
                    want_off,
                    "{version} {n} off"
                );
            }
        }
        // (version, lookup miss blocks, condition, namespace first, team, parses, terminal)
        let rules = [
            ("v0.30.0", false, false, false, TeamCarm::None, false, false),
            ("v0.31.0", true, false, false, TeamCarm::None, false, false),
            ("v0.32.0", true, true, false, TeamCarm::None, false, false),
            ("v0.35.0", true, true, false, TeamCarm::None, false, false),
            ("v0.36.0", true, true, true, TeamCarm::None, false, false),
            ("v0.37.1", true, true, true, TeamCarm::CarmV2, false, false),
            (
                "v0.38.0",
                true,
                true,
                true,
                TeamCarm::TeamAndServiceGates,
                false,
                false,
            ),
            (
                "v0.52.0",
                true,
                true,
                true,
                TeamCarm::TeamAndServiceGates,
                false,
                false,
            ),
            (
                "v0.53.0",
                true,
                true,
                true,
                TeamCarm::TeamAndServiceGates,
                true,
                true,
            ),
        ];
        for (version, blocks, condition, ns_first, team, parses, terminal) in rules {
            let r = b(version);
            assert_eq!(r.lookup_miss_blocks, blocks, "{version}");
            assert_eq!(r.role_unavailable_condition, condition, "{version}");
            assert_eq!(
                r.account_order == AccountOrder::NamespaceFirst,
                ns_first,
                "{version}"
            );
            assert_eq!(r.team_carm, team, "{version}");
            assert_eq!(r.account_path_parses_role, parses, "{version}");
            assert_eq!(r.reconciler_checks_enable_carm, parses, "{version}");
            assert_eq!(r.status_mismatch_terminal, terminal, "{version}");
        }
        assert!(!b("v0.51.0").enable_carm_flag && b("v0.52.0").enable_carm_flag);
        assert!(!b("v0.34.0").feature_gates_flag && b("v0.35.0").feature_gates_flag);
        assert!(!b("v0.52.0").role_selectors && b("v0.53.0").role_selectors);
        assert!(!b("v0.53.1").selector_namespace_region && b("v0.54.0").selector_namespace_region);
        assert!(!b("v0.56.0").selector_resource_labels && b("v0.57.0").selector_resource_labels);
    }

    #[test]
    fn ignored_namespaces_changed_at_v0_29_2() {
        let cases = [
            ("v0.28.0", "kube-system", true),
            ("v0.28.0", "kube-public", true),
            ("v0.28.0", "kube-node-lease", false),
            ("v0.28.0", "ack-system", true),
            ("v0.29.2", "kube-node-lease", true),
            ("v0.29.2", "ack-system", false),
            ("v0.62.0", "kube-system", true),
            ("v0.62.0", "uat", false),
        ];
        for (version, ns, ignored) in cases {
            assert_eq!(
                b(version).carm_ignores_namespace(ns, "ack-system"),
                ignored,
                "{version} {ns}"
            );
        }
    }

    #[test]
    fn gates_exist_from_their_release() {
        let cases = [
            ("v0.36.0", "ServiceLevelCARM", false),
            ("v0.37.0", "CARMv2", true),
            ("v0.37.1", "TeamLevelCARM", false),
            ("v0.38.0", "CARMv2", false),
            ("v0.38.0", "TeamLevelCARM", true),
            ("v0.52.0", "IAMRoleSelector", false),
            ("v0.53.0", "IAMRoleSelector", true),
            ("v0.62.0", "Nonsense", false),
        ];
        for (version, gate, defined) in cases {
            assert_eq!(b(version).defines_gate(gate), defined, "{version} {gate}");
        }
    }
}
