//! `ack-drift-exporter`: command-line entry point.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use ack_drift_exporter::config::{Config, Folders, parse_duration};
use ack_drift_exporter::evaluate;
use ack_drift_exporter::model::ClusterSnapshot;
use ack_drift_exporter::model::account::is_account_id;
use ack_drift_exporter::model::time::parse_rfc3339;
use ack_drift_exporter::output::audit::AuditReport;
use ack_drift_exporter::output::controllers;
use ack_drift_exporter::source::{kube_dir, s3_trail};
use ack_drift_exporter::{demo, offline, serve as exporter};

/// Exit code for usage and config errors (clap uses 2 as well).
const EXIT_USAGE: u8 = 2;
/// The input is right but the process cannot do its work (the address in use, the cluster
/// not listed in time).
const EXIT_RUNTIME: u8 = 3;

/// Why a command stopped, and so its exit code (README "Exit codes").
#[derive(Debug, thiserror::Error)]
enum CliError {
    /// A flag, or a file or cluster configuration it names, is wrong.
    #[error("{0}")]
    Usage(String),
    /// The process could not do its work.
    #[error("{0}")]
    Runtime(String),
}

impl CliError {
    /// Prints the error and gives its exit code.
    fn exit(self) -> ExitCode {
        eprintln!("error: {self}");
        ExitCode::from(match self {
            CliError::Usage(_) => EXIT_USAGE,
            CliError::Runtime(_) => EXIT_RUNTIME,
        })
    }
}

#[derive(Parser)]
#[command(
    name = "ack-drift-exporter",
    version,
    about = "Finds ACK resources in the wrong AWS account or region"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The Prometheus exporter: /metrics, /healthz, /readyz and a landing page on /.
    Serve(ServeArgs),
    /// One-shot report; exit code 1 when any resource drifts, 2 on usage or config errors.
    Audit(AuditArgs),
    /// Validate a config file and show what each controller's settings resolve to.
    CheckConfig(CheckConfigArgs),
    /// Which resources moving controllers to other runtimes would change or break; exit code
    /// 1 when any would get worse, 2 on usage or config errors.
    UpgradePreview(UpgradePreviewArgs),
}

#[derive(clap::Args)]
struct UpgradePreviewArgs {
    /// `<service>=<controller release>` (`ec2=1.20.0`) or `<service>=<runtime version>`
    /// (`ec2=v0.62.0`); a release is looked up in the release table first.
    #[arg(required = true, value_name = "SERVICE=VERSION")]
    targets: Vec<String>,
    /// Folder of `kubectl get ... -o yaml|json` output; without it, the live cluster.
    #[arg(long, value_name = "DIR")]
    kube_dir: Option<PathBuf>,
    #[command(flatten)]
    kube: KubeArgs,
    /// Preview on the bundled demo.
    #[arg(long, conflicts_with_all = ["kube_dir", "config"])]
    demo: bool,
    /// Config file (YAML).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Output::Table)]
    output: Output,
}

#[derive(clap::Args)]
struct AuditArgs {
    /// Folder of `kubectl get ... -o yaml|json` output, read recursively. Without it (and
    /// without --demo) the audit lists the cluster of the kubeconfig or in-cluster config.
    #[arg(long, value_name = "DIR")]
    kube_dir: Option<PathBuf>,
    #[command(flatten)]
    kube: KubeArgs,
    /// Audit the bundled demo (cluster, trail and config compiled into the binary).
    #[arg(long, conflicts_with_all = ["kube_dir", "cloudtrail_dir", "config"])]
    demo: bool,
    /// Folder of CloudTrail files (S3 deliveries, .json or .json.gz; arrays of records;
    /// saved `aws cloudtrail lookup-events` output), read recursively.
    #[arg(long, value_name = "DIR")]
    cloudtrail_dir: Option<PathBuf>,
    /// An organisation (or account) trail's bucket, `s3://bucket/prefix` (the prefix before
    /// AWSLogs/): the deliveries of --from..--to are read straight from S3.
    #[arg(long, value_name = "URL", conflicts_with_all = ["cloudtrail_dir", "demo"], requires = "from")]
    cloudtrail_s3: Option<String>,
    /// Start of the time range read from --cloudtrail-s3 (RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = parse_time, requires = "cloudtrail_s3")]
    from: Option<i64>,
    /// End of that range (RFC 3339, not included); default: now.
    #[arg(long, value_name = "TIME", value_parser = parse_time, requires = "cloudtrail_s3")]
    to: Option<i64>,
    /// Read only this account's folders of --cloudtrail-s3 (repeatable).
    #[arg(long = "account", value_name = "ACCOUNT", requires = "cloudtrail_s3")]
    accounts: Vec<String>,
    /// Read only this region's folders of --cloudtrail-s3 (repeatable).
    #[arg(long = "region", value_name = "REGION", requires = "cloudtrail_s3")]
    regions: Vec<String>,
    /// Count per-resource evidence only over this much time before the window's end
    /// (e.g. 1h, 90m); default: the whole input (or `cloudtrail.window` from the config).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    window: Option<std::time::Duration>,
    /// End of the window (RFC 3339); default: the newest event in the input.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    at: Option<i64>,
    /// Config file (YAML): controller overrides and more.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Output::Table)]
    output: Output,
}

fn parse_time(s: &str) -> Result<i64, String> {
    parse_rfc3339(s)
        .ok_or_else(|| format!("{s:?} is not an RFC 3339 time (e.g. 2024-01-05T09:00:00Z)"))
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on ([HOST]:PORT).
    #[arg(
        long = "web.listen-address",
        value_name = "ADDRESS",
        default_value = ":9754"
    )]
    listen_address: String,
    /// Path under which to expose metrics.
    #[arg(
        long = "web.telemetry-path",
        value_name = "PATH",
        default_value = "/metrics"
    )]
    telemetry_path: String,
    /// Exporter-toolkit web config: TLS (`tls_server_config`) and basic auth
    /// (`basic_auth_users`, bcrypt). /healthz and /readyz stay open for probes.
    #[arg(long = "web.config.file", value_name = "FILE")]
    web_config: Option<PathBuf>,
    /// Most scrapes served at once; more get 503 (0: no limit).
    #[arg(long = "web.max-requests", value_name = "N", default_value_t = 40)]
    max_requests: usize,
    /// Serve the bundled demo (cluster, trail and config compiled into the binary).
    #[arg(long, conflicts_with_all = ["kube_dir", "cloudtrail_dir", "config"])]
    demo: bool,
    /// Folder of `kubectl get ... -o yaml|json` output, read recursively. Without it (and
    /// without --demo) the exporter watches the cluster of the kubeconfig or in-cluster config.
    #[arg(long, value_name = "DIR")]
    kube_dir: Option<PathBuf>,
    #[command(flatten)]
    kube: KubeArgs,
    /// Folder of CloudTrail files, read recursively.
    #[arg(long, value_name = "DIR")]
    cloudtrail_dir: Option<PathBuf>,
    /// End of the per-resource window for trail files (RFC 3339); default: the newest event.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    at: Option<i64>,
    /// Config file (YAML).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

/// Reaching a live cluster (used when no --kube-dir is given).
#[derive(clap::Args)]
struct KubeArgs {
    /// Kubeconfig file (default: $KUBECONFIG, ~/.kube/config, then in-cluster).
    #[arg(long, value_name = "FILE", conflicts_with = "kube_dir")]
    kubeconfig: Option<PathBuf>,
    /// Kubeconfig context to use.
    #[arg(long, value_name = "NAME", conflicts_with = "kube_dir")]
    context: Option<String>,
    /// Only ACK resources in this namespace (repeatable; default: all namespaces).
    #[arg(
        long = "namespace",
        value_name = "NAMESPACE",
        conflicts_with = "kube_dir"
    )]
    namespaces: Vec<String>,
}

impl KubeArgs {
    fn options(&self, config: &Config) -> ack_drift_exporter::source::kube::KubeOptions {
        ack_drift_exporter::source::kube::KubeOptions {
            kubeconfig: self.kubeconfig.clone(),
            context: self.context.clone(),
            namespaces: self.namespaces.clone(),
            controller_namespaces: config.kube.controller_namespaces.clone(),
        }
    }
}

#[derive(clap::Args)]
struct CheckConfigArgs {
    /// Config file (YAML) to validate.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// A cluster dump whose controller Deployments are discovered first.
    #[arg(long, value_name = "DIR")]
    kube_dir: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Table,
    Json,
    Markdown,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The exporter logs what it does; the one-shot commands only warn.
    let default_level = match cli.command {
        Command::Serve(_) => "info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .init();
    match cli.command {
        Command::Serve(a) => serve(a),
        Command::Audit(a) => audit(a),
        Command::CheckConfig(a) => check_config(a),
        Command::UpgradePreview(a) => upgrade_preview(a),
    }
}

/// The bundled demo's config with `--demo`, else `--config FILE`, else the defaults.
fn load_config(demo: bool, path: Option<&PathBuf>) -> Result<Config, ExitCode> {
    if demo {
        return Ok(Config::parse(demo::CONFIG).expect("the bundled demo config is valid"));
    }
    match path {
        Some(p) => Config::load(p).map_err(|e| {
            eprintln!("error: config {e}");
            ExitCode::from(EXIT_USAGE)
        }),
        None => Ok(Config::default()),
    }
}

fn load_cluster(dir: &std::path::Path) -> Result<ClusterSnapshot, ExitCode> {
    let snapshot = kube_dir::read_kube_dir(dir).map_err(|e| {
        eprintln!("error: --kube-dir {}: {e}", dir.display());
        ExitCode::from(EXIT_USAGE)
    })?;
    for e in &snapshot.parse_errors {
        eprintln!("warning: {e}");
    }
    Ok(snapshot)
}

fn serve(args: ServeArgs) -> ExitCode {
    let config = match load_config(args.demo, args.config.as_ref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let sources = match (args.demo, args.kube_dir) {
        (true, _) => exporter::Sources::Demo,
        (false, Some(kube_dir)) => exporter::Sources::Offline {
            kube_dir,
            cloudtrail_dir: args.cloudtrail_dir,
        },
        (false, None) => exporter::Sources::Live {
            kube: args.kube.options(&config),
            cloudtrail_dir: args.cloudtrail_dir,
        },
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            return CliError::Runtime(format!("cannot start the async runtime: {e}")).exit();
        }
    };
    let options = exporter::ServeOptions {
        listen_address: args.listen_address,
        telemetry_path: args.telemetry_path,
        web_config: args.web_config,
        max_requests: args.max_requests,
        sources,
        config,
        at: args.at,
    };
    let result = runtime.block_on(exporter::run(options));
    // Background watches end with the runtime; do not wait for them.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(exporter::ServeError::Usage(e)) => CliError::Usage(e).exit(),
        Err(exporter::ServeError::Runtime(e)) => CliError::Runtime(e).exit(),
    }
}

fn audit(args: AuditArgs) -> ExitCode {
    let config = match load_config(args.demo, args.config.as_ref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let bucket_query = match bucket_query(&args, &config) {
        Ok(q) => q,
        Err(e) => return e.exit(),
    };
    let live_snapshot;
    let (cluster, trail) = if args.demo {
        (
            offline::Input::Embedded(demo::CLUSTER),
            Some(offline::Input::Embedded(demo::CLOUDTRAIL)),
        )
    } else {
        let cluster = match &args.kube_dir {
            Some(dir) => offline::Input::Dir(dir),
            None => {
                live_snapshot = match list_live_cluster(
                    args.kube.options(&config),
                    args.cloudtrail_dir.is_some() || bucket_query.is_some(),
                ) {
                    Ok(s) => s,
                    Err(e) => return e.exit(),
                };
                offline::Input::Snapshot(&live_snapshot)
            }
        };
        let trail = match (&args.cloudtrail_dir, &bucket_query) {
            (Some(dir), _) => Some(offline::Input::Dir(dir)),
            (None, Some(q)) => Some(offline::Input::Bucket(q)),
            (None, None) => None,
        };
        (cluster, trail)
    };
    let window = offline::Window {
        length: args.window.or(config.cloudtrail.window),
        at: args.at,
    };
    let loaded = match offline::load(cluster, trail, &config, window) {
        Ok(l) => l,
        // The bucket could not be listed: AWS, not the command line.
        Err(e @ offline::ReadError::CloudtrailS3 { .. }) => {
            return CliError::Runtime(e.to_string()).exit();
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    for e in &loaded.snapshot.parse_errors {
        eprintln!("warning: {e}");
    }
    let input = loaded.trail.as_ref().map(|t| {
        for e in &t.errors {
            eprintln!("warning: {e}");
        }
        // 0: the whole input counts.
        t.view(window.length.map_or(0, |w| w.as_secs()))
    });
    let report = AuditReport::build(&loaded.snapshot, &loaded.evaluation, input.as_ref());
    let text = match args.output {
        Output::Table => report.to_table(),
        Output::Json => report.to_json(),
        Output::Markdown => report.to_markdown(),
    };
    println!("{}", text.trim_end());
    if report.has_drift() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// What `--cloudtrail-s3` asks for; the bucket's role, region and addressing come from
/// `cloudtrail.s3` in the config when it has one.
fn bucket_query(
    args: &AuditArgs,
    config: &Config,
) -> Result<Option<s3_trail::RangeQuery>, CliError> {
    let (Some(url), Some(from)) = (&args.cloudtrail_s3, args.from) else {
        return Ok(None);
    };
    let (bucket, prefix) = s3_trail::parse_url(url).map_err(CliError::Usage)?;
    if let Some(bad) = args.accounts.iter().find(|a| !is_account_id(a)) {
        return Err(CliError::Usage(format!(
            "--account {bad:?}: not a 12-digit AWS account id"
        )));
    }
    let to = args.to.unwrap_or_else(epoch_now);
    if to <= from {
        return Err(CliError::Usage("--to must be after --from".into()));
    }
    let folders = |l: &[String]| {
        if l.is_empty() {
            Folders::default()
        } else {
            Folders::List(l.to_vec())
        }
    };
    let configured = config.cloudtrail.s3.as_ref();
    Ok(Some(s3_trail::RangeQuery {
        settings: s3_trail::BucketSettings {
            bucket,
            prefix,
            role_arn: configured.and_then(|b| b.role_arn.clone()),
            region: configured.and_then(|b| b.region.clone()),
            path_style: configured.is_some_and(|b| b.path_style),
        },
        scope: s3_trail::Scope {
            accounts: folders(&args.accounts),
            regions: folders(&args.regions),
            insight_events: configured.is_some_and(|b| b.insight_events),
        },
        from,
        to,
        allowance: config.cloudtrail.delivery_allowance.as_secs() as i64,
    }))
}

fn epoch_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Lists a live cluster once (every watch's first full list) and returns its snapshot.
fn list_live_cluster(
    opts: ack_drift_exporter::source::kube::KubeOptions,
    keep_identifiers: bool,
) -> Result<ClusterSnapshot, CliError> {
    use ack_drift_exporter::source::kube;
    use ack_drift_exporter::telemetry::{REVISION, Telemetry, VERSION};
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CliError::Runtime(format!("cannot start the async runtime: {e}")))?;
    let result = runtime.block_on(async {
        let client = kube::client(&opts)
            .await
            .map_err(|e| CliError::Usage(e.to_string()))?;
        let mut telemetry = Telemetry::new(VERSION, REVISION);
        telemetry.enable_live_kube();
        let live = ack_drift_exporter::state::cluster::LiveCluster::new(
            std::sync::Arc::new(telemetry),
            keep_identifiers,
        );
        kube::start(client, opts, live.clone());
        if !kube::wait_ready(&live, std::time::Duration::from_secs(120)).await {
            return Err(CliError::Runtime(
                "the cluster was not fully listed within 120 s (see the warnings above)"
                    .to_string(),
            ));
        }
        Ok(live.snapshot())
    });
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    result
}

fn upgrade_preview(args: UpgradePreviewArgs) -> ExitCode {
    let mut upgrades = std::collections::BTreeMap::new();
    for t in &args.targets {
        match evaluate::upgrade::parse_target(t) {
            Ok((service, u)) => {
                upgrades.insert(service, u);
            }
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(EXIT_USAGE);
            }
        }
    }
    let config = match load_config(args.demo, args.config.as_ref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let snapshot = if args.demo {
        match offline::read_cluster(offline::Input::Embedded(demo::CLUSTER)) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(EXIT_USAGE);
            }
        }
    } else {
        match &args.kube_dir {
            Some(dir) => match load_cluster(dir) {
                Ok(s) => s,
                Err(code) => return code,
            },
            None => match list_live_cluster(args.kube.options(&config), false) {
                Ok(s) => s,
                Err(e) => return e.exit(),
            },
        }
    };
    let preview = evaluate::upgrade::preview(&snapshot, &config, &upgrades);
    for service in upgrades.keys() {
        if !preview.controllers.iter().any(|c| &c.service == service) {
            eprintln!(
                "warning: no {service} controller in the input or the config: nothing to move"
            );
        }
    }
    let text = match args.output {
        Output::Table => preview.to_table(),
        Output::Json => preview.to_json(),
        Output::Markdown => preview.to_markdown(),
    };
    println!("{}", text.trim_end());
    if preview.breaks_something() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn check_config(args: CheckConfigArgs) -> ExitCode {
    let config = match load_config(false, args.config.as_ref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let snapshot = match &args.kube_dir {
        Some(dir) => match load_cluster(dir) {
            Ok(s) => s,
            Err(code) => return code,
        },
        None => ClusterSnapshot::default(),
    };
    if let Some(p) = &args.config {
        println!("{}: valid", p.display());
    }
    let resolved = evaluate::controllers::resolve(&snapshot, &config);
    print!("{}", controllers::render(&resolved));
    let selectors = evaluate::role_selector::verdicts(&snapshot.role_selectors);
    print!("{}", controllers::render_selectors(&selectors));
    // Exit 1 when a controller cannot run: a CI gate on a manifest change catches it.
    if resolved.iter().all(|c| c.running()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
