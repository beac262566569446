//! The organisation trail's bucket: which delivery objects a time range needs (listing only
//! the `account/region/YYYY/MM/DD` partitions it covers) and reading them with the parser
//! `--cloudtrail-dir` uses. Layout (CloudTrail's, README "Reading an organisation trail"):
//! `<prefix>AWSLogs/[<org-id>/]<account>/CloudTrail/<region>/YYYY/MM/DD/<file>.json.gz`.

use std::sync::Arc;

use aws_config::SdkConfig;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::Region;
use futures_util::StreamExt;

use super::aws::{self, RequestError};
use super::{trail_dir, trail_file};
use crate::config::Folders;
use crate::model::ParseError;
use crate::model::account::is_account_id;
use crate::model::time::{format_rfc3339, parse_rfc3339};
use crate::model::trail::TrailRecord;
use crate::state::trail::TrailStore;
use crate::telemetry::Telemetry;

const SERVICE: &str = "s3";

/// How to reach the bucket.
#[derive(Debug, Clone, Default)]
pub struct BucketSettings {
    pub bucket: String,
    /// The trail's key prefix before `AWSLogs/` (with or without its final `/`).
    pub prefix: String,
    pub role_arn: Option<String>,
    pub region: Option<String>,
    pub path_style: bool,
}

/// Which deliveries a read wants.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub accounts: Folders,
    pub regions: Folders,
    pub insight_events: bool,
}

/// The folder a trail object is in, below the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrailFolder {
    Events,
    Insight,
    /// Digest files prove integrity and hold no events: never read.
    Digest,
}

impl TrailFolder {
    fn name(self) -> &'static str {
        match self {
            TrailFolder::Events => "CloudTrail",
            TrailFolder::Insight => "CloudTrail-Insight",
            TrailFolder::Digest => "CloudTrail-Digest",
        }
    }
}

/// What a key in CloudTrail's layout says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrailKey {
    pub account: String,
    pub folder: TrailFolder,
    pub region: String,
    /// Delivery time from the file name (`…_20261202T0905Z_…`), epoch seconds.
    pub delivered: Option<i64>,
}

/// Reads a key in CloudTrail's layout; `None` for anything else in the bucket.
pub fn parse_key(key: &str) -> Option<TrailKey> {
    let (_, rest) = key.split_once("AWSLogs/")?;
    let mut parts: Vec<&str> = rest.split('/').collect();
    if parts.first().is_some_and(|p| p.starts_with("o-")) {
        parts.remove(0);
    }
    let [account, folder, region, y, m, d, file] = parts[..] else {
        return None;
    };
    let folder = match folder {
        "CloudTrail" => TrailFolder::Events,
        "CloudTrail-Insight" => TrailFolder::Insight,
        "CloudTrail-Digest" => TrailFolder::Digest,
        _ => return None,
    };
    let date_ok = [(y, 4), (m, 2), (d, 2)]
        .iter()
        .all(|(p, n)| p.len() == *n && p.bytes().all(|b| b.is_ascii_digit()));
    if !is_account_id(account) || region.is_empty() || !date_ok || file.is_empty() {
        return None;
    }
    Some(TrailKey {
        account: account.to_string(),
        folder,
        region: region.to_string(),
        delivered: file.split(['_', '.']).find_map(delivery_stamp),
    })
}

/// `20261202T0905Z` as epoch seconds.
fn delivery_stamp(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 14 || b[8] != b'T' || b[13] != b'Z' {
        return None;
    }
    parse_rfc3339(&format!(
        "{}-{}-{}T{}:{}:00Z",
        &s[0..4],
        &s[4..6],
        &s[6..8],
        &s[9..11],
        &s[11..13]
    ))
}

/// The `YYYY/MM/DD` partitions (UTC) a delivery range touches, oldest first.
pub fn dates(from: i64, to: i64) -> Vec<String> {
    let mut out = Vec::new();
    if from > to {
        return out;
    }
    let mut day = from.div_euclid(86_400);
    while day <= to.div_euclid(86_400) {
        out.push(format_rfc3339(day * 86_400)[..10].replace('-', "/"));
        day += 1;
    }
    out
}

/// One object read and parsed.
#[derive(Debug)]
pub struct ObjectRead {
    pub key: String,
    /// Bytes as stored (compressed).
    pub bytes: u64,
    pub records: Vec<TrailRecord>,
    /// Problems met in it (a broken gzip stream, bad JSON), named `s3://bucket/key`.
    pub problems: Vec<ParseError>,
}

/// Why an object could not be read.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ObjectError {
    #[error("s3://{bucket}/{key}: no such object")]
    Missing { bucket: String, key: String },
    #[error("s3://{bucket}/{key}: {source}")]
    Request {
        bucket: String,
        key: String,
        source: RequestError,
    },
}

/// A connected bucket.
pub struct TrailBucket {
    client: Client,
    pub bucket: String,
    /// Ends with `/` unless empty.
    prefix: String,
    telemetry: Option<Arc<Telemetry>>,
}

impl TrailBucket {
    pub async fn connect(
        base: &SdkConfig,
        settings: &BucketSettings,
        telemetry: Option<Arc<Telemetry>>,
    ) -> Self {
        let mut conf =
            aws_sdk_s3::config::Builder::from(base).force_path_style(settings.path_style);
        if let Some(r) = &settings.region {
            conf = conf.region(Region::new(r.clone()));
        }
        if let Some(role) = &settings.role_arn {
            conf = conf.credentials_provider(
                aws::assume_role(base, role, settings.region.as_deref()).await,
            );
        }
        let prefix = settings.prefix.trim_matches('/');
        TrailBucket {
            client: Client::from_conf(conf.build()),
            bucket: settings.bucket.clone(),
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
            telemetry,
        }
    }

    fn count(&self, operation: &str, code: Option<&str>) {
        if let Some(t) = &self.telemetry {
            t.org_trail.request(SERVICE, operation, code);
        }
    }

    /// The folder names directly under `under` (which ends with `/`).
    async fn folders(&self, under: &str) -> Result<Vec<String>, RequestError> {
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let answer = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(under)
                .delimiter("/")
                .set_continuation_token(token)
                .send()
                .await;
            let page = self.answered("ListObjectsV2", answer)?;
            out.extend(page.common_prefixes().iter().filter_map(|p| {
                let name = p.prefix()?.strip_prefix(under)?.trim_end_matches('/');
                Some(name.to_string())
            }));
            token = page.next_continuation_token().map(str::to_string);
            if token.is_none() {
                return Ok(out);
            }
        }
    }

    /// Counts the request and names its failure.
    fn answered<T, E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static>(
        &self,
        operation: &'static str,
        answer: Result<T, aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>>,
    ) -> Result<T, RequestError> {
        match answer {
            Ok(t) => {
                self.count(operation, None);
                Ok(t)
            }
            Err(e) => {
                let e = RequestError::new(operation, &e);
                self.count(operation, Some(&e.code));
                Err(e)
            }
        }
    }

    /// Every account folder under the prefix the scope admits, as `(account, path/)`:
    /// an organisation trail's `AWSLogs/<org-id>/<account>/` and an account trail's
    /// `AWSLogs/<account>/`.
    async fn accounts(&self, scope: &Scope) -> Result<Vec<(String, String)>, RequestError> {
        let logs = format!("{}AWSLogs/", self.prefix);
        let mut out = Vec::new();
        for top in self.folders(&logs).await? {
            if top.starts_with("o-") {
                let org = format!("{logs}{top}/");
                for account in self.folders(&org).await? {
                    out.push((account.clone(), format!("{org}{account}/")));
                }
            } else {
                out.push((top.clone(), format!("{logs}{top}/")));
            }
        }
        out.retain(|(a, _)| is_account_id(a) && scope.accounts.admits(a));
        Ok(out)
    }

    /// The partition prefixes holding deliveries made in `[from, to]`.
    pub async fn partitions(
        &self,
        scope: &Scope,
        from: i64,
        to: i64,
    ) -> Result<Vec<String>, RequestError> {
        let folders: &[TrailFolder] = if scope.insight_events {
            &[TrailFolder::Events, TrailFolder::Insight]
        } else {
            &[TrailFolder::Events]
        };
        let days = dates(from, to);
        let mut out = Vec::new();
        for (_, path) in self.accounts(scope).await? {
            for folder in folders {
                let under = format!("{path}{}/", folder.name());
                let regions = match &scope.regions {
                    Folders::List(l) => l.clone(),
                    Folders::Keyword(_) => self.folders(&under).await?,
                };
                for region in regions {
                    out.extend(days.iter().map(|d| format!("{under}{region}/{d}/")));
                }
            }
        }
        Ok(out)
    }

    /// The delivery keys in a partition delivered in `[from, to]`, in key order.
    pub async fn deliveries(
        &self,
        partition: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<String>, RequestError> {
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let answer = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(partition)
                .set_continuation_token(token)
                .send()
                .await;
            let page = self.answered("ListObjectsV2", answer)?;
            out.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key())
                    .filter(|k| {
                        parse_key(k).is_some_and(|t| {
                            t.folder != TrailFolder::Digest
                                && t.delivered.is_none_or(|d| d >= from && d <= to)
                        })
                    })
                    .map(str::to_string),
            );
            token = page.next_continuation_token().map(str::to_string);
            if token.is_none() {
                return Ok(out);
            }
        }
    }

    /// Every delivery of the scope made in `[from, to]`.
    pub async fn plan(
        &self,
        scope: &Scope,
        from: i64,
        to: i64,
    ) -> Result<Vec<String>, RequestError> {
        let mut keys = Vec::new();
        for partition in self.partitions(scope, from, to).await? {
            keys.extend(self.deliveries(&partition, from, to).await?);
        }
        Ok(keys)
    }

    /// Gets one object of `bucket` (a notification may name another bucket than ours) and
    /// parses it on the blocking pool.
    pub async fn read(&self, bucket: &str, key: &str) -> Result<ObjectRead, ObjectError> {
        let request = |source: RequestError| ObjectError::Request {
            bucket: bucket.to_string(),
            key: key.to_string(),
            source,
        };
        let answer = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await;
        if let Err(e) = &answer
            && e.as_service_error().is_some_and(|s| s.is_no_such_key())
        {
            self.count("GetObject", Some("NoSuchKey"));
            return Err(ObjectError::Missing {
                bucket: bucket.to_string(),
                key: key.to_string(),
            });
        }
        let object = self.answered("GetObject", answer).map_err(request)?;
        let body = object.body.collect().await.map_err(|e| {
            request(RequestError {
                operation: "GetObject",
                code: "ConnectionError".into(),
                class: aws::ErrorClass::Transient,
                detail: aws::error_text(&e),
            })
        })?;
        let raw = body.into_bytes();
        if let Some(t) = &self.telemetry {
            t.org_trail.objects.inc();
            t.org_trail.bytes.inc_by(raw.len() as u64);
        }
        let name = format!("s3://{bucket}/{key}");
        let key = key.to_string();
        let parsed = tokio::task::spawn_blocking(move || {
            let mut records = Vec::new();
            let problems = trail_file::read_named(&name, &raw, &mut |r| records.push(r)).errors;
            ObjectRead {
                key,
                bytes: raw.len() as u64,
                records,
                problems,
            }
        });
        parsed.await.map_err(|e| {
            request(RequestError {
                operation: "GetObject",
                code: "ParseFailed".into(),
                class: aws::ErrorClass::Other,
                detail: e.to_string(),
            })
        })
    }

    /// Reads `keys` of our bucket, up to `concurrency` at a time, handing each to `each` in
    /// key order (so results do not depend on which answer came first).
    pub async fn read_all(
        self: &Arc<Self>,
        keys: Vec<String>,
        concurrency: usize,
        mut each: impl FnMut(Result<ObjectRead, ObjectError>),
    ) {
        let reads = futures_util::stream::iter(keys)
            .map(|key| {
                let bucket = self.clone();
                tokio::spawn(async move { bucket.read(&bucket.bucket, &key).await })
            })
            .buffered(concurrency.max(1));
        futures_util::pin_mut!(reads);
        while let Some(joined) = reads.next().await {
            match joined {
                Ok(read) => each(read),
                Err(e) => tracing::warn!("reading a trail object stopped: {e}"),
            }
        }
    }
}

/// Objects read at once by a backfill or an audit.
pub const CONCURRENCY: usize = 4;
/// Rounds of re-reading objects whose requests failed, before a backfill gives up on them.
const BACKFILL_ROUNDS: u32 = 3;

/// What a backfill read.
#[derive(Debug, Default)]
pub struct Backfilled {
    pub objects: usize,
    pub records: u64,
    /// Objects still unread after every round (their request kept failing).
    pub unread: usize,
}

impl TrailBucket {
    /// Reads every delivery of the scope made in `[from, to]` into `store`, re-reading those
    /// whose request failed a few rounds; fails only when the bucket cannot be listed.
    pub async fn backfill(
        self: &Arc<Self>,
        scope: &Scope,
        (from, to): (i64, i64),
        store: &TrailStore,
        source: &str,
    ) -> Result<Backfilled, RequestError> {
        let mut keys = self.plan(scope, from, to).await?;
        let mut done = Backfilled::default();
        for round in 1..=BACKFILL_ROUNDS {
            let mut failed = Vec::new();
            self.read_all(keys, CONCURRENCY, |read| match read {
                Ok(read) => {
                    done.objects += 1;
                    done.records += read.records.len() as u64;
                    self.keep(store, source, read);
                }
                // Gone between listing and reading (a lifecycle rule): nothing to read.
                Err(e @ ObjectError::Missing { .. }) => tracing::debug!("{e}"),
                Err(ObjectError::Request { key, source, .. }) => {
                    tracing::warn!(round, "s3://{}/{key}: {source}", self.bucket);
                    failed.push(key);
                }
            })
            .await;
            keys = failed;
            if keys.is_empty() {
                break;
            }
        }
        done.unread = keys.len();
        Ok(done)
    }

    /// Puts one object's records and problems into the store.
    fn keep(&self, store: &TrailStore, source: &str, read: ObjectRead) {
        let repeats = store.ingest_all(read.records);
        if let Some(t) = &self.telemetry {
            t.duplicates.inc_by(repeats);
            t.parse_errors
                .get_or_create(&crate::telemetry::label("source", source))
                .inc_by(read.problems.len() as u64);
        }
        for p in &read.problems {
            tracing::warn!("{p}");
        }
        store.add_errors(read.problems);
        store.changed.notify_one();
    }
}

/// An audit's read of a bucket: the deliveries of a time range and the records in it.
#[derive(Debug, Clone)]
pub struct RangeQuery {
    pub settings: BucketSettings,
    pub scope: Scope,
    /// Records with `from <= eventTime < to` are kept.
    pub from: i64,
    pub to: i64,
    /// How late CloudTrail may deliver: deliveries up to this long after `to` are read.
    pub allowance: i64,
}

/// What an audit's read of a bucket gave, besides the records.
#[derive(Debug, Default)]
pub struct RangeRead {
    pub objects: usize,
    pub errors: Vec<ParseError>,
}

/// Reads a range of a bucket for `audit`, handing each record in range to `sink` in key
/// order; fails only when the bucket cannot be listed (or no runtime starts).
pub fn read_range(
    query: &RangeQuery,
    sink: &mut dyn FnMut(TrailRecord),
) -> Result<RangeRead, RequestError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(CONCURRENCY.min(4))
        .enable_all()
        .build()
        .map_err(|e| RequestError {
            operation: "start",
            code: "NoRuntime".into(),
            class: aws::ErrorClass::Other,
            detail: e.to_string(),
        })?;
    runtime.block_on(async {
        let base = aws::base_config().await;
        let bucket = Arc::new(TrailBucket::connect(&base, &query.settings, None).await);
        let keys = bucket
            .plan(&query.scope, query.from, query.to + query.allowance)
            .await?;
        let mut progress = trail_dir::Progress::new(keys.len());
        let (mut read, mut records) = (RangeRead::default(), 0u64);
        bucket
            .read_all(keys, CONCURRENCY, |object| {
                read.objects += 1;
                match object {
                    Ok(o) => {
                        for r in o.records {
                            if r.event_time >= query.from && r.event_time < query.to {
                                records += 1;
                                sink(r);
                            }
                        }
                        read.errors.extend(o.problems);
                    }
                    Err(e) => read.errors.push(ParseError {
                        file: e.to_string(),
                        line: None,
                        message: "not read".into(),
                    }),
                }
                progress.tick(read.objects, records);
            })
            .await;
        progress.done(read.objects, records);
        Ok(read)
    })
}

/// `s3://bucket/prefix` as the bucket and the prefix.
pub fn parse_url(url: &str) -> Result<(String, String), String> {
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| format!("{url:?}: write s3://bucket/prefix"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(format!("{url:?}: no bucket name after s3://"));
    }
    Ok((bucket.to_string(), prefix.trim_matches('/').to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_in_cloudtrails_layout() {
        let org = "AWSLogs/o-abcdefghij/111111111111/CloudTrail/eu-west-2/2026/12/02/111111111111_CloudTrail_eu-west-2_20261202T0905Z_AbCdEfGhIjKlMnOp.json.gz";
        let t = parse_key(org).unwrap();
        assert_eq!(
            t,
            TrailKey {
                account: "111111111111".into(),
                folder: TrailFolder::Events,
                region: "eu-west-2".into(),
                delivered: parse_rfc3339("2026-12-02T09:05:00Z"),
            }
        );
        let cases = [
            (
                "trail/AWSLogs/222222222222/CloudTrail/us-east-1/2026/01/31/222222222222_CloudTrail_us-east-1_20260131T2355Z_x.json.gz",
                Some((TrailFolder::Events, "us-east-1")),
            ),
            (
                "AWSLogs/o-x/111111111111/CloudTrail-Digest/eu-west-2/2026/12/02/111111111111_CloudTrail-Digest_eu-west-2_org_eu-west-2_20261202T0905Z.json.gz",
                Some((TrailFolder::Digest, "eu-west-2")),
            ),
            (
                "AWSLogs/o-x/111111111111/CloudTrail-Insight/eu-west-2/2026/12/02/f.json.gz",
                Some((TrailFolder::Insight, "eu-west-2")),
            ),
            (
                "AWSLogs/111111111111/Config/eu-west-2/2026/12/02/f.json.gz",
                None,
            ),
            (
                "AWSLogs/1111/CloudTrail/eu-west-2/2026/12/02/f.json.gz",
                None,
            ),
            (
                "AWSLogs/111111111111/CloudTrail/eu-west-2/2026/12/f.json.gz",
                None,
            ),
            ("elsewhere/f.json.gz", None),
        ];
        for (key, want) in cases {
            let got = parse_key(key).map(|t| (t.folder, t.region));
            assert_eq!(got, want.map(|(f, r)| (f, r.to_string())), "{key}");
        }
        let digest = parse_key(cases[1].0).unwrap();
        assert_eq!(digest.delivered, parse_rfc3339("2026-12-02T09:05:00Z"));
        assert_eq!(parse_key(cases[2].0).unwrap().delivered, None);
    }

    #[test]
    fn date_partitions_cover_the_range() {
        let t = |s: &str| parse_rfc3339(s).unwrap();
        assert_eq!(
            dates(t("2026-12-02T00:00:00Z"), t("2026-12-02T23:59:59Z")),
            ["2026/12/02"]
        );
        assert_eq!(
            dates(t("2026-12-31T23:00:00Z"), t("2027-01-01T00:15:00Z")),
            ["2026/12/31", "2027/01/01"]
        );
        assert_eq!(
            dates(t("2024-02-28T12:00:00Z"), t("2024-03-01T00:00:00Z")).len(),
            3
        );
        assert!(dates(10, 5).is_empty());
    }

    #[test]
    fn bucket_urls() {
        let ok = |b: &str, p: &str| Ok((b.to_string(), p.to_string()));
        assert_eq!(parse_url("s3://org-trail"), ok("org-trail", ""));
        assert_eq!(parse_url("s3://org-trail/"), ok("org-trail", ""));
        assert_eq!(
            parse_url("s3://org-trail/logs/trail/"),
            ok("org-trail", "logs/trail")
        );
        assert!(parse_url("org-trail/logs").is_err());
        assert!(parse_url("s3:///logs").is_err());
    }

    #[test]
    fn delivery_stamps() {
        assert_eq!(
            delivery_stamp("20261202T0905Z"),
            parse_rfc3339("2026-12-02T09:05:00Z")
        );
        for bad in ["20261202T0905", "2026120T0905Z", "20261302T0905Z", "x"] {
            assert_eq!(delivery_stamp(bad), None, "{bad}");
        }
    }
}
