//! What an ACK controller's Deployment says about how it picks accounts and regions.
//!
//! The controller is a Go program reading its flags with spf13/pflag, so flags are read the
//! way pflag reads them: `--flag value` and `--flag=value` for valued flags, but boolean flags
//! only as `--flag` or `--flag=bool` (in `--enable-carm false` the `false` is a stray argument).

use std::collections::{BTreeMap, BTreeSet};

/// Facts read from one ACK controller container of a Deployment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ControllerDeployment {
    /// Service alias from the image name: `ec2` for `.../aws-controllers-k8s/ec2-controller`.
    pub service: String,
    pub namespace: String,
    pub name: String,
    /// The image tag (`1.2.0`), when the image has one.
    pub version: Option<String>,
    pub service_account: String,
    /// `--aws-region`, else the `AWS_REGION` env var.
    pub region: Option<String>,
    /// `--enable-carm`; `None` when not given (the controller's default is on).
    pub enable_carm: Option<bool>,
    /// `--feature-gates` as the runtime's `parseFeatureGates` reads it; empty when not given
    /// or when it does not parse (see `feature_gates_error`).
    pub feature_gates: BTreeMap<String, bool>,
    /// Why `parseFeatureGates` rejects the value (the controller exits at start).
    pub feature_gates_error: Option<String>,
    /// Every flag name given (`--name` or `--name=value`), defined by the runtime or not.
    pub flags: BTreeSet<String>,
    /// Flag values the controller cannot read (`--enable-carm=maybe`): pflag exits at start.
    pub invalid_values: Vec<String>,
    /// `--reconcile-resources` and `--watch-selectors`, as written (after `$(VAR)` expansion).
    pub reconcile_resources: Option<String>,
    pub watch_selectors: Option<String>,
    /// `spec.replicas` (1 when absent) and `status.availableReplicas` (`None` when the input
    /// has no `status`, as in a GitOps manifest: availability is then unknown).
    pub replicas: u32,
    pub available_replicas: Option<u32>,
    /// `ACK_SYSTEM_NAMESPACE`, else the older `K8S_NAMESPACE`.
    pub system_namespace: Option<String>,
    /// `--watch-namespace`, split on commas; empty means every namespace.
    pub watch_namespaces: Vec<String>,
    /// Things the controller would reject or that could not be read (unexpanded `$(VAR)`, bad bools).
    pub warnings: Vec<String>,
}

/// A ServiceAccount, for the IRSA role that gives a controller its default account.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceAccount {
    pub namespace: String,
    pub name: String,
    /// `eks.amazonaws.com/role-arn`.
    pub role_arn: Option<String>,
}

/// The ACK runtime flags that are booleans (`flag.BoolVar` in `BindFlags`); every other flag
/// takes a value.
const BOOL_FLAGS: &[&str] = &[
    "allow-unsafe-aws-endpoint-urls",
    "aws-endpoint-use-path-style",
    "enable-carm",
    "enable-cross-namespace",
    "enable-development-logging",
    "enable-field-export-reconciler",
    "enable-leader-election",
    "enable-webhook-server",
];

/// The service alias and tag of an ACK controller image, e.g.
/// `public.ecr.aws/aws-controllers-k8s/ec2-controller:1.2.0` → (`ec2`, `Some("1.2.0")`).
pub fn parse_controller_image(image: &str) -> Option<(String, Option<String>)> {
    // Split off a digest first, then a tag (a ':' after the last '/').
    let (without_digest, _digest) = match image.split_once('@') {
        Some((a, d)) => (a, Some(d)),
        None => (image, None),
    };
    let last_slash = without_digest.rfind('/')?;
    let (path, tag) = match without_digest[last_slash..].find(':') {
        Some(i) => (
            &without_digest[..last_slash + i],
            Some(without_digest[last_slash + i + 1..].to_string()),
        ),
        None => (without_digest, None),
    };
    let mut segments = path.rsplit('/');
    let name = segments.next()?;
    if segments.next()? != "aws-controllers-k8s" {
        return None;
    }
    let service = name.strip_suffix("-controller")?;
    if service.is_empty() {
        return None;
    }
    Some((service.to_string(), tag.filter(|t| !t.is_empty())))
}

/// Expands Kubernetes `$(VAR)` references the way the kubelet does: known variables are
/// replaced, unknown ones stay as written, `$$` is a literal `$`.
pub fn expand_vars(input: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('(') {
            match body.find(')') {
                Some(end) => {
                    let name = &body[..end];
                    match env.get(name) {
                        Some(v) => out.push_str(v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &body[end + 1..];
                }
                None => {
                    out.push_str(&rest[i..]);
                    rest = "";
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Go's `strconv.ParseBool`.
pub fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// Flags as pflag would parse them: the last occurrence wins; stray arguments are reported.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ParsedFlags {
    pub values: BTreeMap<String, String>,
    pub stray: Vec<String>,
}

pub fn parse_flags(args: &[String]) -> ParsedFlags {
    let mut parsed = ParsedFlags::default();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "--" {
            parsed.stray.extend(args[i..].iter().cloned());
            break;
        }
        let Some(body) = arg.strip_prefix("--") else {
            parsed.stray.push(arg.clone());
            continue;
        };
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        let value = match inline {
            Some(v) => v,
            None if BOOL_FLAGS.contains(&name) => "true".to_string(),
            None if i < args.len() => {
                i += 1;
                args[i - 1].clone()
            }
            None => String::new(),
        };
        parsed.values.insert(name.to_string(), value);
    }
    parsed
}

/// `parseFeatureGates` (`pkg/config/config.go`, v0.35.0 on): the whole value is trimmed, then
/// every comma-separated entry must be `NAME=BOOL` with a non-empty name and a Go boolean (a
/// trailing comma is an empty entry, and an error). One bad entry fails the whole flag.
pub fn parse_feature_gates(s: &str) -> Result<BTreeMap<String, bool>, String> {
    let mut gates = BTreeMap::new();
    let s = s.trim();
    if s.is_empty() {
        return Ok(gates);
    }
    for entry in s.split(',') {
        let Some((name, value)) = entry.split_once('=') else {
            return Err(format!("invalid feature gate format: {entry:?}"));
        };
        let name = name.trim();
        if name.is_empty() {
            return Err(format!("invalid feature gate name: {entry:?}"));
        }
        let Some(on) = parse_go_bool(value.trim()) else {
            return Err(format!(
                "invalid feature gate value for {name}: {:?}",
                value.trim()
            ));
        };
        gates.insert(name.to_string(), on);
    }
    Ok(gates)
}

/// The container's env as the kubelet expands it: in order, each value seeing the ones
/// before it; `valueFrom` entries are not knowable from the Deployment alone.
fn container_env(container: &Container) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for (k, v) in &container.env {
        match v {
            Some(v) => {
                let expanded = expand_vars(v, &env);
                env.insert(k.clone(), expanded);
            }
            None => {
                env.remove(k);
            }
        }
    }
    env
}

/// Boolean flags whose value `strconv.ParseBool` refuses (pflag exits at start).
fn unreadable_booleans(flags: &ParsedFlags) -> Vec<String> {
    BOOL_FLAGS
        .iter()
        .filter_map(|flag| {
            let v = flags.values.get(*flag)?;
            (!v.contains("$(") && parse_go_bool(v).is_none())
                .then(|| format!("--{flag}={v}: not a boolean"))
        })
        .collect()
}

/// Reads one container of a Deployment; `None` when it is not an ACK controller.
pub fn from_container(
    namespace: &str,
    deployment: &str,
    service_account: &str,
    container: &Container,
) -> Option<ControllerDeployment> {
    let (service, version) = parse_controller_image(&container.image)?;
    let mut warnings = Vec::new();
    let env = container_env(container);
    let args: Vec<String> = container
        .command
        .iter()
        .skip(1)
        .chain(container.args.iter())
        .map(|a| expand_vars(a, &env))
        .collect();
    let flags = parse_flags(&args);
    for stray in &flags.stray {
        warnings.push(format!(
            "stray argument {stray:?} (pflag ignores it; boolean flags take `--flag=false`)"
        ));
    }
    let mut checked = |flag: &str| expanded_value(&flags, flag, &mut warnings);
    let region = checked("aws-region")
        .filter(|r| !r.is_empty())
        .or_else(|| env.get("AWS_REGION").cloned().filter(|r| !r.is_empty()));
    let enable_carm = checked("enable-carm").as_deref().and_then(parse_go_bool);
    let (feature_gates, feature_gates_error) = match checked("feature-gates") {
        Some(raw) => match parse_feature_gates(&raw) {
            Ok(g) => (g, None),
            Err(e) => (BTreeMap::new(), Some(e)),
        },
        None => (BTreeMap::new(), None),
    };
    let watch_namespaces = checked("watch-namespace")
        .map(|w| comma_list(&w))
        .unwrap_or_default();
    let reconcile_resources = checked("reconcile-resources");
    let watch_selectors = checked("watch-selectors");
    Some(ControllerDeployment {
        service,
        namespace: namespace.to_string(),
        name: deployment.to_string(),
        version,
        service_account: service_account.to_string(),
        region,
        enable_carm,
        feature_gates,
        feature_gates_error,
        flags: flags.values.keys().cloned().collect(),
        invalid_values: unreadable_booleans(&flags),
        reconcile_resources,
        watch_selectors,
        replicas: 1,
        available_replicas: None,
        system_namespace: system_namespace(&env),
        watch_namespaces,
        warnings,
    })
}

/// A flag's value, unless it still references a variable the container's env does not set
/// (then a warning says so, and the flag counts as unreadable).
fn expanded_value(flags: &ParsedFlags, flag: &str, warnings: &mut Vec<String>) -> Option<String> {
    let v = flags.values.get(flag)?;
    if v.contains("$(") {
        warnings.push(format!(
            "--{flag}={v}: references a variable not set in the container's env"
        ));
        return None;
    }
    Some(v.clone())
}

/// `a, b,,c` → `[a, b, c]`, as the runtime splits `--watch-namespace`.
fn comma_list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// Where the controller reads its CARM maps: `ACK_SYSTEM_NAMESPACE`, else `K8S_NAMESPACE`.
fn system_namespace(env: &BTreeMap<String, String>) -> Option<String> {
    env.get("ACK_SYSTEM_NAMESPACE")
        .or_else(|| env.get("K8S_NAMESPACE"))
        .filter(|s| !s.is_empty() && !s.contains("$("))
        .cloned()
}

/// The parts of a container spec discovery reads.
#[derive(Debug, Clone, Default)]
pub struct Container {
    pub image: String,
    pub command: Vec<String>,
    pub args: Vec<String>,
    /// In order; `None` for `valueFrom` entries.
    pub env: Vec<(String, Option<String>)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn images() {
        assert_eq!(
            parse_controller_image("public.ecr.aws/aws-controllers-k8s/ec2-controller:1.2.0"),
            Some(("ec2".into(), Some("1.2.0".into())))
        );
        assert_eq!(
            parse_controller_image(
                "registry:5000/mirror/aws-controllers-k8s/s3-controller@sha256:abcd"
            ),
            Some(("s3".into(), None))
        );
        assert_eq!(
            parse_controller_image("registry:5000/aws-controllers-k8s/rds-controller"),
            Some(("rds".into(), None))
        );
        // A tag pinned by digest keeps its tag.
        assert_eq!(
            parse_controller_image(
                "public.ecr.aws/aws-controllers-k8s/ec2-controller:1.2.0@sha256:0123abcd"
            ),
            Some(("ec2".into(), Some("1.2.0".into())))
        );
        assert_eq!(parse_controller_image("nginx:1.25"), None);
        assert_eq!(
            parse_controller_image("public.ecr.aws/aws-controllers-k8s/runtime:1.0"),
            None
        );
        assert_eq!(
            parse_controller_image("example.com/other/ec2-controller:1.0"),
            None
        );
    }

    #[test]
    fn pflag_booleans_do_not_take_the_next_argument() {
        let f = parse_flags(&strings(&[
            "--enable-carm",
            "false",
            "--aws-region",
            "eu-west-2",
        ]));
        assert_eq!(f.values["enable-carm"], "true");
        assert_eq!(f.values["aws-region"], "eu-west-2");
        assert_eq!(f.stray, strings(&["false"]));

        let f = parse_flags(&strings(&["--enable-carm=false", "--aws-region=us-east-1"]));
        assert_eq!(f.values["enable-carm"], "false");
        assert_eq!(f.values["aws-region"], "us-east-1");
        assert!(f.stray.is_empty());
    }

    #[test]
    fn pflag_last_occurrence_wins_and_double_dash_stops() {
        let f = parse_flags(&strings(&[
            "--aws-region",
            "a",
            "--aws-region=b",
            "--",
            "--aws-region=c",
        ]));
        assert_eq!(f.values["aws-region"], "b");
        assert_eq!(f.stray, strings(&["--aws-region=c"]));
    }

    #[test]
    fn vars_expand_like_the_kubelet() {
        let env: BTreeMap<String, String> =
            [("A".to_string(), "x".to_string())].into_iter().collect();
        assert_eq!(expand_vars("--r=$(A)", &env), "--r=x");
        assert_eq!(expand_vars("$(B)-$(A)", &env), "$(B)-x");
        assert_eq!(expand_vars("$$(A)", &env), "$(A)");
        assert_eq!(expand_vars("a$b$(", &env), "a$b$(");
    }

    #[test]
    fn feature_gates_parse_like_parse_feature_gates() {
        let g = parse_feature_gates(" TeamLevelCARM=true, ServiceLevelCARM = F ").unwrap();
        assert_eq!(g.get("TeamLevelCARM"), Some(&true));
        assert_eq!(g.get("ServiceLevelCARM"), Some(&false));
        assert_eq!(parse_feature_gates("  ").unwrap(), BTreeMap::new());
        // Each of these fails the whole flag (`invalid value for flag 'feature-gates'`).
        for (bad, why) in [
            ("A=true,Bad", "invalid feature gate format"),
            ("A=true,", "invalid feature gate format"),
            ("=true", "invalid feature gate name"),
            ("A=maybe", "invalid feature gate value for A"),
            ("A=yes", "invalid feature gate value for A"),
        ] {
            let e = parse_feature_gates(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn container_discovery_expands_env_and_reads_flags() {
        let c = Container {
            image: "public.ecr.aws/aws-controllers-k8s/ec2-controller:1.4.0".into(),
            command: strings(&["./bin/controller"]),
            args: strings(&[
                "--aws-region",
                "$(AWS_REGION)",
                "--enable-carm=$(ACK_ENABLE_CARM)",
                "--feature-gates=$(FEATURE_GATES)",
                "--watch-namespace=$(ACK_WATCH_NAMESPACE)",
            ]),
            env: vec![
                ("AWS_REGION".into(), Some("eu-west-1".into())),
                ("ACK_ENABLE_CARM".into(), Some("false".into())),
                ("FEATURE_GATES".into(), Some("TeamLevelCARM=true".into())),
                ("ACK_WATCH_NAMESPACE".into(), Some("".into())),
                ("K8S_NAMESPACE".into(), Some("ack-ec2".into())),
            ],
        };
        let d = from_container("ack-ec2", "ack-ec2-controller", "sa", &c).unwrap();
        assert_eq!(d.service, "ec2");
        assert_eq!(d.version.as_deref(), Some("1.4.0"));
        assert_eq!(d.region.as_deref(), Some("eu-west-1"));
        assert_eq!(d.enable_carm, Some(false));
        assert_eq!(d.feature_gates.get("TeamLevelCARM"), Some(&true));
        assert!(d.watch_namespaces.is_empty());
        assert_eq!(d.system_namespace.as_deref(), Some("ack-ec2"));
        assert!(d.warnings.is_empty(), "{:?}", d.warnings);
    }

    #[test]
    fn unresolvable_env_is_a_warning_not_a_value() {
        let c = Container {
            image: "x/aws-controllers-k8s/s3-controller:1".into(),
            command: vec![],
            args: strings(&["--aws-region=$(REGION)", "--enable-carm", "false"]),
            env: vec![("REGION".into(), None)],
        };
        let d = from_container("ack-system", "s3", "sa", &c).unwrap();
        assert_eq!(d.region, None);
        assert_eq!(d.enable_carm, Some(true));
        assert_eq!(d.warnings.len(), 2, "{:?}", d.warnings);
    }

    #[test]
    fn flags_given_and_values_pflag_cannot_read_are_kept() {
        let c = Container {
            image: "x/aws-controllers-k8s/s3-controller:1".into(),
            command: vec![],
            args: strings(&[
                "--enable-carm=maybe",
                "--reconcile-resources=Bucket",
                "--watch-selectors",
                "team=a",
                "--feature-gates=A=true,",
                "--no-such-flag=1",
            ]),
            env: vec![],
        };
        let d = from_container("ack-system", "s3", "sa", &c).unwrap();
        assert_eq!(d.enable_carm, None);
        assert_eq!(
            d.invalid_values,
            strings(&["--enable-carm=maybe: not a boolean"])
        );
        assert_eq!(d.reconcile_resources.as_deref(), Some("Bucket"));
        assert_eq!(d.watch_selectors.as_deref(), Some("team=a"));
        assert!(d.feature_gates_error.is_some());
        assert!(d.flags.contains("no-such-flag") && d.flags.contains("enable-carm"));
        assert_eq!(d.flags.len(), 5);
    }
}
