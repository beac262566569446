//! Live CloudTrail: `LookupEvents` per (account, region, event source), inside the API's
//! ceiling of 2 requests per second per account and region.
//!
//! One task per (account, region) polls its event sources one after the other, so a single
//! limiter in front of every attempt keeps the pair under its budget. Retries belong to the
//! poller (the SDK's own are off: they would bypass the limiter). With a delivery allowance
//! (`overlap`) of up to a minute, each stream reads every range once, when its allowance has
//! passed. With a longer one it reads twice: a fresh pass up to `now` every poll keeps the
//! figures current, and a settling pass reads a range again once its allowance has passed, to
//! pick up events CloudTrail delivered late. Fresh passes go first; settling gets what is left
//! of the poll interval, so under load the figures stay current and settling falls behind, not
//! the reverse. eventIDs de-duplicate what both passes read. Consecutive ranges of a pass do
//! not share a second (see `Cursor::ranges`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_config::SdkConfig;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_cloudtrail::Client;
use aws_sdk_cloudtrail::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_cloudtrail::types::{LookupAttribute, LookupAttributeKey};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::aws::{self, ErrorClass, error_text};
use crate::model::ParseError;
use crate::model::trail::LookupPlan;
use crate::model::trail_json::RecordElement;
use crate::state::trail::TrailStore;
use crate::telemetry::{Telemetry, label, labels};

const API: &str = "LookupEvents";
/// LookupEvents' page size ceiling.
const PAGE: i32 = 50;
/// Attempts per request before a poll gives up (it is retried whole at the next poll).
const ATTEMPTS: u32 = 6;
/// Timing of the polls.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub poll_interval: Duration,
    pub window: Duration,
    pub delivery_allowance: Duration,
    /// Per attempt, connect to answer.
    pub attempt_timeout: Duration,
}

/// Up to this delivery allowance, a range is read once, as soon as its allowance has passed:
/// the figures are then at most a poll and a minute behind, and no request re-reads anything.
/// Longer allowances would keep the figures that far behind, so ranges are read fresh first
/// and once more when their allowance has passed.
const READ_ONCE_ALLOWANCE: i64 = 60;

impl Timing {
    /// How far behind `now` fresh reads stop.
    fn holdback(&self) -> i64 {
        let allowance = self.delivery_allowance.as_secs() as i64;
        if allowance <= READ_ONCE_ALLOWANCE {
            allowance
        } else {
            0
        }
    }

    /// How much of a fresh read's range is still within its allowance when it is read.
    fn unsettled(&self) -> i64 {
        self.delivery_allowance.as_secs() as i64 - self.holdback()
    }
}

struct Ctx {
    store: Arc<TrailStore>,
    telemetry: Arc<Telemetry>,
    timing: Timing,
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Spaces requests at least `1 / rate` apart (plus a margin for scheduling jitter), and
/// further apart after a `ThrottlingException` until calls succeed again.
struct Limiter {
    base: Duration,
    interval: Duration,
    next: Instant,
}

impl Limiter {
    fn new(requests_per_second: f64) -> Self {
        let base = Duration::from_secs_f64(1.0 / requests_per_second) + Duration::from_millis(20);
        Limiter {
            base,
            interval: base,
            next: Instant::now(),
        }
    }

    async fn acquire(&mut self) {
        tokio::time::sleep_until(self.next).await;
        self.next = Instant::now() + self.interval;
    }

    /// Gentle on purpose: a throttle may come from another reader of the same account, and
    /// halving the rate on each would starve the poller.
    fn throttled(&mut self) {
        self.interval = self.interval.mul_f64(1.5).min(self.base * 4);
        self.next = Instant::now() + self.interval;
    }

    fn succeeded(&mut self) {
        // One success undoes one throttle: a throttle that came from elsewhere (or from the
        // service's own bad second) does not slow every later request.
        self.interval = self.interval.mul_f64(2.0 / 3.0).max(self.base);
    }
}

/// How a failed attempt is handled.
#[derive(Debug, PartialEq)]
enum Failure {
    /// Slow down and try again.
    Throttled,
    /// Server-side or network trouble: back off and try again.
    Transient,
    /// The account cannot be read (denied, role not assumable): stop polling it this round.
    AccountDown,
    /// Anything else: this poll of the stream fails; the next one goes on from there.
    Other,
    /// Out of time for settling this poll; the next one goes on from there.
    Postponed,
}

/// The bounded error code for the metric label, and what the poller does about it.
fn classify<E: ProvideErrorMetadata + std::error::Error + 'static>(
    e: &SdkError<E, aws_sdk_cloudtrail::config::http::HttpResponse>,
) -> (String, Failure) {
    let (code, class) = aws::classify(e);
    let failure = match class {
        ErrorClass::Throttled => Failure::Throttled,
        ErrorClass::Transient => Failure::Transient,
        ErrorClass::Denied => Failure::AccountDown,
        ErrorClass::Other => Failure::Other,
    };
    (code, failure)
}

/// Where one (account, region, event source) stream stands, in epoch seconds.
#[derive(Debug, Clone, Copy, Default)]
struct Cursor {
    /// Everything up to here was read at least once.
    fresh_until: Option<i64>,
    /// Everything up to here was read after its delivery allowance had passed: complete.
    final_until: Option<i64>,
}

impl Cursor {
    /// The ranges to read at `now`: the fresh one, and the one to settle (if any).
    fn ranges(&self, now: i64, timing: &Timing) -> (Option<(i64, i64)>, (i64, i64)) {
        let window_start = now - timing.window.as_secs() as i64;
        let allowance = timing.delivery_allowance.as_secs() as i64;
        // Both ends of a LookupEvents range are inclusive and event times are whole seconds,
        // so the next range starts a second after the last one read: no event is read twice.
        let after = |until: i64| (until + 1).max(window_start);
        let start = self.fresh_until.map_or(window_start, after);
        let fresh = (start, (now - timing.holdback()).max(start));
        // Settled in chunks of a third of the allowance (at least a poll): fewer requests
        // for partly filled pages than settling a sliver every poll.
        let chunk = (allowance / 3)
            .max(timing.poll_interval.as_secs() as i64)
            .max(1);
        let settle = self.final_until.and_then(|f| {
            let start = after(f);
            let end = (now - allowance).min(self.fresh_until.unwrap_or(start));
            (end - f.max(window_start) >= chunk).then_some((start, end))
        });
        (settle, fresh)
    }

    /// A fresh read of `[start, end]` finished; its last `unsettled` seconds were still within
    /// their delivery allowance when read.
    fn fresh_done(&mut self, (start, end): (i64, i64), unsettled: i64) {
        self.fresh_until = Some(end);
        // What it read before that was already past its allowance: final, if it joins what
        // was final before (or this was the first read).
        let joins = self.final_until.is_none_or(|f| f + 1 >= start);
        if joins {
            self.final_until = Some(self.final_until.unwrap_or(start).max(end - unsettled));
        }
    }

    fn settle_done(&mut self, (_, end): (i64, i64)) {
        self.final_until = Some(self.final_until.map_or(end, |f| f.max(end)));
    }
}

/// Which pass a read belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Pass {
    Fresh,
    Settle,
}

/// A read interrupted by a failure: resumed at the next poll from the page it stopped at
/// (the token stays with the query it belongs to).
struct Pending {
    range: (i64, i64),
    token: Option<String>,
}

/// Polls one (account, region).
struct AccountRegion {
    ctx: Arc<Ctx>,
    account: String,
    region: String,
    client: Client,
    limiter: Limiter,
    cursors: BTreeMap<String, Cursor>,
    pending: BTreeMap<(String, Pass), Pending>,
}

impl AccountRegion {
    fn labels(&self) -> crate::telemetry::Labels {
        labels(&[("account", &self.account), ("region", &self.region)])
    }

    async fn run(mut self, mut sources: watch::Receiver<Vec<String>>) {
        let t = self.ctx.telemetry.clone();
        let ar = self.labels();
        let mut tick = tokio::time::interval(self.ctx.timing.poll_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let deadline = Instant::now() + self.ctx.timing.poll_interval;
            let list = sources.borrow_and_update().clone();
            self.cursors.retain(|s, _| list.contains(s));
            self.pending.retain(|(s, _), _| list.contains(s));
            let up = self.poll(&list, deadline).await;
            let now = now();
            t.cloudtrail_up.get_or_create(&ar).set(i64::from(up));
            if up {
                t.cloudtrail_last_success.get_or_create(&ar).set(now as f64);
            }
            let oldest = list
                .iter()
                .map(|s| self.cursors.get(s).and_then(|c| c.fresh_until))
                .min()
                .flatten();
            let lag = oldest.map_or(self.ctx.timing.window.as_secs() as i64, |o| now - o);
            t.cloudtrail_lag.get_or_create(&ar).set(lag.max(0) as f64);
            if sources.has_changed().is_err() {
                return;
            }
        }
    }

    /// One poll: every stream's fresh pass first (that is what keeps the figures current),
    /// then settling with what is left of the poll interval; a settling read that runs out of
    /// time goes on at the next poll from its token. Returns whether nothing failed.
    async fn poll(&mut self, list: &[String], deadline: Instant) -> bool {
        let unsettled = self.ctx.timing.unsettled();
        let mut up = true;
        for pass in [Pass::Fresh, Pass::Settle] {
            for source in list {
                match self.pass(source, pass, unsettled, deadline).await {
                    Ok(()) | Err(Failure::Postponed) => {}
                    // Denied or no role: the other streams would fail the same way.
                    Err(Failure::AccountDown) => return false,
                    Err(_) => up = false,
                }
            }
        }
        up
    }

    /// One pass of one stream: an interrupted read of that pass first, then the next range.
    async fn pass(
        &mut self,
        source: &str,
        pass: Pass,
        unsettled: i64,
        deadline: Instant,
    ) -> Result<(), Failure> {
        let deadline = (pass == Pass::Settle).then_some(deadline);
        let window_start = now() - self.ctx.timing.window.as_secs() as i64;
        if let Some(p) = self.pending.remove(&(source.to_string(), pass)) {
            // A settling read that slid out of the window is no longer worth its requests.
            if pass == Pass::Fresh || p.range.1 > window_start {
                self.read(source, pass, p.range, p.token, deadline).await?;
            }
            self.done(source, pass, p.range, unsettled);
        }
        let cursor = self.cursors.get(source).copied().unwrap_or_default();
        let (settle, fresh) = cursor.ranges(now(), &self.ctx.timing);
        let range = match pass {
            Pass::Fresh => Some(fresh),
            Pass::Settle => settle,
        };
        if let Some(range) = range.filter(|(start, end)| end > start) {
            self.read(source, pass, range, None, deadline).await?;
            self.done(source, pass, range, unsettled);
        }
        Ok(())
    }

    fn done(&mut self, source: &str, pass: Pass, range: (i64, i64), unsettled: i64) {
        let cursor = self.cursors.entry(source.to_string()).or_default();
        match pass {
            Pass::Fresh => cursor.fresh_done(range, unsettled),
            Pass::Settle => cursor.settle_done(range),
        }
    }

    /// Reads `[start, end]` of one event source to the last page, from `token` on. On a
    /// failure, or when `deadline` passes, the read is kept pending with the token of the page
    /// it did not get.
    async fn read(
        &mut self,
        source: &str,
        pass: Pass,
        (start, end): (i64, i64),
        mut token: Option<String>,
        deadline: Option<Instant>,
    ) -> Result<(), Failure> {
        loop {
            let result = if deadline.is_some_and(|d| Instant::now() >= d) {
                Err(Failure::Postponed)
            } else {
                self.request(source, start, end, token.clone()).await
            };
            let page = match result {
                Ok(page) => page,
                Err(f) => {
                    self.pending.insert(
                        (source.to_string(), pass),
                        Pending {
                            range: (start, end),
                            token,
                        },
                    );
                    return Err(f);
                }
            };
            self.ingest(source, page.events());
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(()),
            }
        }
    }

    /// One LookupEvents call, attempted until it succeeds or a failure ends the poll.
    async fn request(
        &mut self,
        source: &str,
        start: i64,
        end: i64,
        token: Option<String>,
    ) -> Result<aws_sdk_cloudtrail::operation::lookup_events::LookupEventsOutput, Failure> {
        let t = self.ctx.telemetry.clone();
        let with_api = labels(&[
            ("account", &self.account),
            ("region", &self.region),
            ("api", API),
        ]);
        let attribute = LookupAttribute::builder()
            .attribute_key(LookupAttributeKey::EventSource)
            .attribute_value(source)
            .build()
            .map_err(|_| Failure::Other)?;
        let mut backoff = Duration::from_millis(250);
        for attempt in 1..=ATTEMPTS {
            self.limiter.acquire().await;
            t.cloudtrail_requests.get_or_create(&with_api).inc();
            let sent = self
                .client
                .lookup_events()
                .lookup_attributes(attribute.clone())
                .start_time(aws_sdk_cloudtrail::primitives::DateTime::from_secs(start))
                .end_time(aws_sdk_cloudtrail::primitives::DateTime::from_secs(end))
                .max_results(PAGE)
                .set_next_token(token.clone())
                .send()
                .await;
            let e = match sent {
                Ok(out) => {
                    self.limiter.succeeded();
                    return Ok(out);
                }
                Err(e) => e,
            };
            let (code, failure) = classify(&e);
            let mut with_code = with_api.clone();
            with_code.push(("code".into(), code.clone()));
            t.cloudtrail_request_errors.get_or_create(&with_code).inc();
            match failure {
                Failure::Throttled => {
                    debug!(account = %self.account, region = %self.region, "throttled; slowing down");
                    self.limiter.throttled();
                }
                Failure::Transient if attempt < ATTEMPTS => {
                    debug!(account = %self.account, region = %self.region, %code, attempt, "retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(8));
                }
                f => {
                    // The message names the failure (a role ARN at most), never a secret.
                    warn!(account = %self.account, region = %self.region, %code, "LookupEvents failed: {}", error_text(&e));
                    return Err(if f == Failure::Transient {
                        Failure::Other
                    } else {
                        f
                    });
                }
            }
        }
        warn!(account = %self.account, region = %self.region, "LookupEvents still throttled after {ATTEMPTS} attempts; next poll retries");
        Err(Failure::Other)
    }

    fn ingest(&self, source: &str, events: &[aws_sdk_cloudtrail::types::Event]) {
        let mut records = Vec::with_capacity(events.len());
        let mut problems = Vec::new();
        for e in events {
            let id = e.event_id().unwrap_or("?");
            let parsed = match e.cloud_trail_event() {
                None => Err("event without CloudTrailEvent".to_string()),
                Some(text) => serde_json::from_str::<RecordElement>(text)
                    .map_err(|err| format!("CloudTrailEvent is not JSON: {err}"))
                    .and_then(RecordElement::into_record),
            };
            match parsed {
                Ok(r) => records.push(r),
                Err(message) => problems.push(ParseError {
                    file: format!("lookup_events:{}/{}/{source}", self.account, self.region),
                    line: None,
                    message: format!("event {id}: {message}"),
                }),
            }
        }
        let t = &self.ctx.telemetry;
        t.duplicates.inc_by(self.ctx.store.ingest_all(records));
        if !problems.is_empty() {
            t.parse_errors
                .get_or_create(&label("source", "lookup_events"))
                .inc_by(problems.len() as u64);
            for p in &problems {
                warn!("{p}");
            }
            self.ctx.store.add_errors(problems);
        }
        self.ctx.store.changed.notify_one();
    }
}

/// Starts and stops (account, region) pollers as the plan changes.
pub struct Poller {
    ctx: Arc<Ctx>,
    base: SdkConfig,
    /// One cache for every client: it keeps each account's credentials (keyed by provider)
    /// until shortly before they expire, so regions share one AssumeRole.
    identities: aws_sdk_cloudtrail::config::SharedIdentityCache,
    /// Per account: its role and the credentials its regional clients share.
    credentials: HashMap<String, (Option<String>, SharedCredentialsProvider)>,
    running: HashMap<(String, String), Running>,
}

struct Running {
    role_arn: Option<String>,
    requests_per_second: f64,
    sources: watch::Sender<Vec<String>>,
    task: JoinHandle<()>,
}

impl Drop for Poller {
    fn drop(&mut self) {
        for r in self.running.values() {
            r.task.abort();
        }
    }
}

impl Poller {
    pub fn new(
        base: SdkConfig,
        store: Arc<TrailStore>,
        telemetry: Arc<Telemetry>,
        timing: Timing,
    ) -> Self {
        Poller {
            ctx: Arc::new(Ctx {
                store,
                telemetry,
                timing,
            }),
            base,
            identities: aws_sdk_cloudtrail::config::IdentityCache::lazy().build(),
            credentials: HashMap::new(),
            running: HashMap::new(),
        }
    }

    /// Whether every (account, region) polled so far read all of its streams at its last poll;
    /// false with nothing to poll.
    pub fn all_up(&self) -> bool {
        !self.running.is_empty()
            && self.running.keys().all(|(account, region)| {
                let ar = labels(&[("account", account), ("region", region)]);
                // A pair not polled yet has no series: it has not failed.
                self.ctx
                    .telemetry
                    .cloudtrail_up
                    .get(&ar)
                    .is_none_or(|g| g.get() == 1)
            })
    }

    /// Brings the running pollers in line with `plan`.
    pub async fn apply(&mut self, plan: &LookupPlan) {
        let mut wanted: HashMap<(String, String), (Option<String>, f64)> = HashMap::new();
        for a in &plan.accounts {
            for region in &a.regions {
                wanted.insert(
                    (a.account.clone(), region.clone()),
                    (a.role_arn.clone(), a.requests_per_second),
                );
            }
        }
        let t = &self.ctx.telemetry;
        self.running.retain(|(account, region), r| {
            let keep = wanted
                .get(&(account.clone(), region.clone()))
                .is_some_and(|(role, rps)| *role == r.role_arn && *rps == r.requests_per_second);
            if !keep {
                r.task.abort();
                let ar = labels(&[("account", account), ("region", region)]);
                t.cloudtrail_up.remove(&ar);
                t.cloudtrail_lag.remove(&ar);
                t.cloudtrail_last_success.remove(&ar);
            }
            keep
        });
        for ((account, region), (role_arn, rps)) in wanted {
            if let Some(r) = self.running.get(&(account.clone(), region.clone())) {
                r.sources.send_if_modified(|s| {
                    let changed = *s != plan.event_sources;
                    if changed {
                        s.clone_from(&plan.event_sources);
                    }
                    changed
                });
                continue;
            }
            let credentials = self
                .credentials_for(&account, role_arn.as_deref(), &region)
                .await;
            let mut conf = aws_sdk_cloudtrail::config::Builder::from(&self.base)
                .region(aws_sdk_cloudtrail::config::Region::new(region.clone()))
                .identity_cache(self.identities.clone())
                .retry_config(RetryConfig::disabled())
                .timeout_config(
                    TimeoutConfig::builder()
                        .operation_attempt_timeout(self.ctx.timing.attempt_timeout)
                        .build(),
                );
            if let Some(c) = credentials {
                // The shared provider itself, not re-wrapped: its cache partition is what
                // lets the regions share one set of credentials.
                conf.set_credentials_provider(Some(c));
            }
            let client = Client::from_conf(conf.build());
            let (tx, rx) = watch::channel(plan.event_sources.clone());
            info!(%account, %region, role = role_arn.as_deref().unwrap_or("(own credentials)"), sources = ?plan.event_sources, "polling CloudTrail");
            let poller = AccountRegion {
                ctx: self.ctx.clone(),
                account: account.clone(),
                region: region.clone(),
                client,
                limiter: Limiter::new(rps),
                cursors: BTreeMap::new(),
                pending: BTreeMap::new(),
            };
            let task = tokio::spawn(poller.run(rx));
            self.running.insert(
                (account, region),
                Running {
                    role_arn,
                    requests_per_second: rps,
                    sources: tx,
                    task,
                },
            );
        }
    }

    /// One assumed-role provider per account, shared by its regional clients so the role is
    /// assumed once per account and refreshed before expiry by the SDK's identity cache.
    async fn credentials_for(
        &mut self,
        account: &str,
        role_arn: Option<&str>,
        region: &str,
    ) -> Option<SharedCredentialsProvider> {
        let role_arn = role_arn?;
        if let Some((role, c)) = self.credentials.get(account)
            && role.as_deref() == Some(role_arn)
        {
            return Some(c.clone());
        }
        // STS needs a region; the account's first one serves when none is configured.
        let shared = aws::assume_role(&self.base, role_arn, Some(region)).await;
        self.credentials.insert(
            account.to_string(),
            (Some(role_arn.to_string()), shared.clone()),
        );
        Some(shared)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing() -> Timing {
        Timing {
            poll_interval: Duration::from_secs(60),
            window: Duration::from_secs(3600),
            delivery_allowance: Duration::from_secs(900),
            attempt_timeout: Duration::from_secs(10),
        }
    }

    #[test]
    fn the_first_poll_backfills_the_window_and_settles_nothing() {
        let c = Cursor::default();
        let (settle, fresh) = c.ranges(10_000, &timing());
        assert_eq!(settle, None);
        assert_eq!(fresh, (6_400, 10_000));
    }

    #[test]
    fn every_range_is_read_fresh_and_again_after_its_allowance() {
        let t = timing();
        let mut c = Cursor::default();
        // First poll at 10 000: backfill; what is older than 9 100 is final already.
        let (_, fresh) = c.ranges(10_000, &t);
        c.fresh_done(fresh, 900);
        assert_eq!((c.fresh_until, c.final_until), (Some(10_000), Some(9_100)));
        // A minute later: read 10 001..=10 060 fresh; too little to settle yet.
        let (settle, fresh) = c.ranges(10_060, &t);
        assert_eq!(settle, None);
        assert_eq!(fresh, (10_001, 10_060));
        c.fresh_done(fresh, 900);
        // Polls every minute: the settled edge follows 15-20 minutes behind, in 5-minute
        // chunks with no gap, and every fresh range is read again once.
        let mut now = 10_060;
        let mut settled = 9_100;
        let mut settles = 0;
        for _ in 0..30 {
            now += 60;
            let (settle, fresh) = c.ranges(now, &t);
            if let Some(s) = settle {
                assert_eq!(s, (settled + 1, now - 900), "settling leaves no gap");
                settled = s.1;
                settles += 1;
                c.settle_done(s);
            }
            assert_eq!(fresh, (now - 59, now));
            c.fresh_done(fresh, 900);
            assert!(now - 900 - c.final_until.unwrap() < 300);
        }
        assert_eq!(settles, 6);
    }

    #[test]
    fn a_short_allowance_reads_every_range_once_after_it_has_passed() {
        let t = Timing {
            poll_interval: Duration::from_secs(10),
            window: Duration::from_secs(900),
            delivery_allowance: Duration::from_secs(60),
            attempt_timeout: Duration::from_secs(10),
        };
        let mut c = Cursor::default();
        let mut now = 10_000;
        let (settle, fresh) = c.ranges(now, &t);
        assert_eq!((settle, fresh), (None, (9_100, 9_940)));
        c.fresh_done(fresh, t.unsettled());
        for _ in 0..20 {
            now += 10;
            let (settle, fresh) = c.ranges(now, &t);
            assert_eq!(settle, None, "nothing is read twice");
            assert_eq!(fresh, (now - 69, now - 60), "no second is read twice");
            c.fresh_done(fresh, t.unsettled());
            assert_eq!(c.final_until, Some(now - 60));
        }
    }

    #[test]
    fn after_an_outage_longer_than_the_window_reading_restarts_at_the_window() {
        let t = timing();
        let mut c = Cursor::default();
        let (_, fresh) = c.ranges(10_000, &t);
        c.fresh_done(fresh, 900);
        let (settle, fresh) = c.ranges(20_000, &t);
        assert_eq!(fresh, (16_400, 20_000));
        // Settling stops where the fresh reads stopped; the rest is read fresh now.
        assert_eq!(settle, None);
        c.fresh_done(fresh, 900);
        // The gap before 16 400 is outside the window: final from here on.
        assert_eq!(c.final_until, Some(9_100));
    }

    #[tokio::test(start_paused = true)]
    async fn the_limiter_spaces_requests_and_backs_off_when_throttled() {
        let mut l = Limiter::new(2.0);
        let start = Instant::now();
        for _ in 0..5 {
            l.acquire().await;
        }
        // Five requests: four gaps of 520 ms.
        assert_eq!(start.elapsed(), Duration::from_millis(2_080));
        l.throttled();
        let before = Instant::now();
        l.acquire().await;
        assert_eq!(before.elapsed(), Duration::from_millis(780));
        for _ in 0..40 {
            l.throttled();
        }
        assert_eq!(l.interval, Duration::from_millis(2_080));
        for _ in 0..40 {
            l.succeeded();
        }
        assert_eq!(l.interval, Duration::from_millis(520));
    }
}
