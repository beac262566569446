//! The organisation trail's queue: long-polls it, reads what each message announces into the
//! store, and deletes a message only once its records are in the store (a redelivery is
//! harmless: eventIDs de-duplicate). Bad messages are counted, logged and left to the queue's
//! redrive policy, hidden for a while so they do not come straight back.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_config::SdkConfig;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::config::Region;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry,
    Message as SqsMessage, MessageSystemAttributeName, QueueAttributeName,
};
use tracing::{debug, info, warn};

use super::aws::{self, RequestError};
use super::queue_message::{BadMessage, Message, ObjectRef, decode};
use super::s3_trail::{ObjectError, TrailBucket, TrailFolder, parse_key};
use crate::config::{QueueConfig, QueueFormat};
use crate::model::ParseError;
use crate::model::trail::{TrailRecord, parse_record};
use crate::state::trail::TrailStore;
use crate::telemetry::{Telemetry, label};

const SERVICE: &str = "sqs";
/// The source's name in `source_up` and `parse_errors`.
pub const SOURCE: &str = "cloudtrail_sqs";
/// SQS's longest long poll and largest batch.
const WAIT_SECONDS: i32 = 20;
const MAX_MESSAGES: i32 = 10;
/// A bad message stays hidden at least this long before the queue offers it again.
const BAD_MESSAGE_HOLD: i32 = 300;
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// What became of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    /// Its records are in the store (or it announced nothing to read): delete it.
    Done,
    /// Unusable: counted; deleted only if the reason says so.
    Bad(BadMessage),
    /// A request failed on the way: leave it, the queue offers it again.
    Retry,
}

/// The queue consumer.
pub struct QueueConsumer {
    sqs: Client,
    queue_url: String,
    format: QueueFormat,
    insight_events: bool,
    /// Reads the objects notifications name (in whatever bucket they name).
    objects: Arc<TrailBucket>,
    store: Arc<TrailStore>,
    telemetry: Arc<Telemetry>,
    /// The queue's visibility timeout, seconds.
    visibility: i32,
}

/// The region in a queue URL (`https://sqs.eu-west-2.amazonaws.com/…`).
pub fn queue_region(url: &str) -> Option<String> {
    let host = url.split("://").nth(1)?.split('/').next()?;
    let mut parts = host.split('.');
    match (parts.next()?, parts.next()?) {
        ("sqs", region) if host.ends_with(".amazonaws.com") => Some(region.to_string()),
        _ => None,
    }
}

impl QueueConsumer {
    pub async fn connect(
        base: &SdkConfig,
        config: &QueueConfig,
        objects: Arc<TrailBucket>,
        store: Arc<TrailStore>,
        telemetry: Arc<Telemetry>,
    ) -> Self {
        let region = config
            .region
            .clone()
            .or_else(|| queue_region(&config.queue_url));
        let mut conf = aws_sdk_sqs::config::Builder::from(base);
        if let Some(r) = &region {
            conf = conf.region(Region::new(r.clone()));
        }
        if let Some(role) = &config.role_arn {
            conf = conf.credentials_provider(aws::assume_role(base, role, region.as_deref()).await);
        }
        QueueConsumer {
            sqs: Client::from_conf(conf.build()),
            queue_url: config.queue_url.clone(),
            format: config.format,
            insight_events: config.insight_events,
            objects,
            store,
            telemetry,
            visibility: 30,
        }
    }

    fn count<T, E: aws_sdk_sqs::error::ProvideErrorMetadata + std::error::Error + 'static>(
        &self,
        operation: &'static str,
        answer: Result<T, aws_sdk_sqs::error::SdkError<E, aws_sdk_sqs::config::http::HttpResponse>>,
    ) -> Result<T, RequestError> {
        let answer = answer.map_err(|e| RequestError::new(operation, &e));
        let code = answer.as_ref().err().map(|e| e.code.as_str());
        self.telemetry.org_trail.request(SERVICE, operation, code);
        answer
    }

    fn set_up(&self, up: bool) {
        self.telemetry
            .source_up
            .get_or_create(&label("source", SOURCE))
            .set(i64::from(up));
    }

    /// Takes messages for as long as the process runs.
    pub async fn run(mut self) {
        self.visibility = self.queue_visibility().await;
        info!(queue = %self.queue_url, visibility_seconds = self.visibility, "reading the organisation trail's queue");
        let mut backoff = Duration::from_secs(1);
        loop {
            match self.receive().await {
                Ok(batch) => {
                    backoff = Duration::from_secs(1);
                    let up = self.handle(batch).await;
                    self.set_up(up);
                }
                Err(e) => {
                    warn!(queue = %self.queue_url, "{e}");
                    self.set_up(false);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// The queue's visibility timeout (30 s, SQS's default, if it cannot be read).
    async fn queue_visibility(&self) -> i32 {
        let answer = self
            .sqs
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(QueueAttributeName::VisibilityTimeout)
            .send()
            .await;
        match self.count("GetQueueAttributes", answer) {
            Ok(a) => a
                .attributes()
                .and_then(|m| m.get(&QueueAttributeName::VisibilityTimeout))
                .and_then(|v| v.parse().ok())
                .unwrap_or(30),
            Err(e) => {
                warn!(queue = %self.queue_url, "{e}; assuming a visibility timeout of 30 s");
                30
            }
        }
    }

    async fn receive(&self) -> Result<Vec<SqsMessage>, RequestError> {
        let answer = self
            .sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .wait_time_seconds(WAIT_SECONDS)
            .max_number_of_messages(MAX_MESSAGES)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .send()
            .await;
        let batch = self
            .count("ReceiveMessage", answer)?
            .messages
            .unwrap_or_default();
        let o = &self.telemetry.org_trail;
        o.received.inc_by(batch.len() as u64);
        o.lag.set(oldest_age(&batch));
        Ok(batch)
    }

    /// Settles one batch (its messages side by side, their visibility extended while they
    /// take long), then deletes the done ones in one request. Returns whether every request
    /// succeeded.
    async fn handle(&self, batch: Vec<SqsMessage>) -> bool {
        if batch.is_empty() {
            return true;
        }
        let work = futures_util::future::join_all(batch.iter().map(|m| self.settle(m)));
        let outcomes = self.with_heartbeat(&batch, work).await;
        let mut delete = Vec::new();
        let mut hold = Vec::new();
        for (m, outcome) in batch.iter().zip(&outcomes) {
            match outcome {
                Outcome::Done => delete.push(m),
                Outcome::Bad(b) => {
                    self.telemetry
                        .org_trail
                        .bad_messages
                        .get_or_create(&label("reason", b.reason()))
                        .inc();
                    if b.is_dropped() {
                        delete.push(m)
                    } else {
                        hold.push(m)
                    }
                }
                Outcome::Retry => {}
            }
        }
        let deleted = self.delete(&delete).await;
        let held = hold.is_empty()
            || self
                .hide(&hold, self.visibility.max(BAD_MESSAGE_HOLD))
                .await;
        deleted && held && !outcomes.contains(&Outcome::Retry)
    }

    /// Runs `work`, extending the batch's visibility every half timeout until it is done.
    async fn with_heartbeat<F: Future>(&self, batch: &[SqsMessage], work: F) -> F::Output {
        let period = Duration::from_secs((self.visibility.max(2) / 2) as u64);
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        tokio::pin!(work);
        loop {
            tokio::select! {
                out = &mut work => return out,
                _ = tick.tick() => {
                    let all: Vec<&SqsMessage> = batch.iter().collect();
                    debug!(messages = all.len(), "still reading: extending their visibility");
                    self.hide(&all, self.visibility).await;
                }
            }
        }
    }

    /// One message: decoded, what it announces read and ingested.
    async fn settle(&self, m: &SqsMessage) -> Outcome {
        let id = m.message_id().unwrap_or("?");
        let decoded = decode(self.format, m.body().unwrap_or_default());
        let outcome = match decoded {
            Err(bad) => Outcome::Bad(bad),
            Ok(Message::Nothing) => Outcome::Done,
            Ok(Message::Record(v)) => self.ingest_record(id, &v),
            Ok(Message::Objects(objects)) => self.read_objects(id, &objects).await,
        };
        if let Outcome::Bad(b) = outcome {
            warn!(
                message = id,
                reason = b.reason(),
                "queue message not used: {}",
                excerpt(m.body().unwrap_or_default())
            );
        }
        outcome
    }

    fn ingest_record(&self, id: &str, v: &serde_json::Value) -> Outcome {
        match parse_record(v) {
            Ok(r) => {
                self.ingest(vec![r], Vec::new());
                Outcome::Done
            }
            Err(message) => {
                let problem = ParseError {
                    file: format!("sqs:{id}"),
                    line: None,
                    message,
                };
                self.ingest(Vec::new(), vec![problem]);
                Outcome::Bad(BadMessage::Unrecognised)
            }
        }
    }

    /// Reads every trail object a message names; what was read is ingested whatever the
    /// outcome (a repeat later only counts as a duplicate).
    async fn read_objects(&self, id: &str, objects: &[ObjectRef]) -> Outcome {
        let mut outcome = Outcome::Done;
        let mut records = Vec::new();
        let mut problems = Vec::new();
        for o in objects.iter().filter(|o| self.wanted(o)) {
            let result = match self.objects.read(&o.bucket, &o.key).await {
                Ok(read) => {
                    let broken = !read.problems.is_empty();
                    records.extend(read.records);
                    problems.extend(read.problems);
                    if broken {
                        Outcome::Bad(BadMessage::BrokenObject)
                    } else {
                        Outcome::Done
                    }
                }
                Err(e @ ObjectError::Missing { .. }) => {
                    warn!(message = id, "{e}");
                    Outcome::Bad(BadMessage::MissingObject)
                }
                Err(e @ ObjectError::Request { .. }) => {
                    warn!(message = id, "{e}");
                    Outcome::Retry
                }
            };
            outcome = outcome.max(result);
        }
        self.ingest(records, problems);
        outcome
    }

    /// Whether a notified object is a trail delivery this source reads.
    fn wanted(&self, o: &ObjectRef) -> bool {
        let wanted = parse_key(&o.key).is_some_and(|k| match k.folder {
            TrailFolder::Events => true,
            TrailFolder::Insight => self.insight_events,
            TrailFolder::Digest => false,
        });
        if !wanted {
            debug!(key = %o.key, "not a CloudTrail event delivery: skipped");
        }
        wanted
    }

    fn ingest(&self, records: Vec<TrailRecord>, problems: Vec<ParseError>) {
        let t = &self.telemetry;
        if !records.is_empty() {
            t.duplicates.inc_by(self.store.ingest_all(records));
        }
        if !problems.is_empty() {
            t.parse_errors
                .get_or_create(&label("source", SOURCE))
                .inc_by(problems.len() as u64);
            for p in &problems {
                warn!("{p}");
            }
            self.store.add_errors(problems);
        }
        self.store.changed.notify_one();
    }

    /// Deletes messages in one request; returns whether it succeeded.
    async fn delete(&self, messages: &[&SqsMessage]) -> bool {
        if messages.is_empty() {
            return true;
        }
        let entries = messages.iter().enumerate().filter_map(|(i, m)| {
            DeleteMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .receipt_handle(m.receipt_handle()?)
                .build()
                .ok()
        });
        let answer = self
            .sqs
            .delete_message_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(entries.collect()))
            .send()
            .await;
        match self.count("DeleteMessageBatch", answer) {
            Ok(out) => {
                self.telemetry
                    .org_trail
                    .deleted
                    .inc_by(out.successful().len() as u64);
                for f in out.failed() {
                    warn!(queue = %self.queue_url, code = f.code(), "a message was not deleted (it will come again): {}", f.message().unwrap_or(""));
                }
                out.failed().is_empty()
            }
            Err(e) => {
                warn!(queue = %self.queue_url, "{e}");
                false
            }
        }
    }

    /// Keeps messages hidden for `seconds` more.
    async fn hide(&self, messages: &[&SqsMessage], seconds: i32) -> bool {
        let entries = messages.iter().enumerate().filter_map(|(i, m)| {
            ChangeMessageVisibilityBatchRequestEntry::builder()
                .id(i.to_string())
                .receipt_handle(m.receipt_handle()?)
                .visibility_timeout(seconds)
                .build()
                .ok()
        });
        let answer = self
            .sqs
            .change_message_visibility_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(entries.collect()))
            .send()
            .await;
        match self.count("ChangeMessageVisibilityBatch", answer) {
            Ok(out) => out.failed().is_empty(),
            Err(e) => {
                warn!(queue = %self.queue_url, "{e}");
                false
            }
        }
    }
}

/// Seconds since the oldest message of a batch was sent (0 for an empty batch).
fn oldest_age(batch: &[SqsMessage]) -> f64 {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    batch
        .iter()
        .filter_map(|m| {
            let sent = m
                .attributes()?
                .get(&MessageSystemAttributeName::SentTimestamp)?;
            sent.parse::<i64>().ok()
        })
        .min()
        .map_or(0.0, |sent| (now_ms - sent).max(0) as f64 / 1000.0)
}

/// The start of a message body, for a log line (bodies can be large and are not ours).
fn excerpt(body: &str) -> String {
    let cut = body.char_indices().nth(200).map_or(body.len(), |(i, _)| i);
    let mut out: String = body[..cut]
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if cut < body.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_region_comes_from_the_queue_url() {
        let cases = [
            (
                "https://sqs.eu-west-2.amazonaws.com/111111111111/org-trail",
                Some("eu-west-2"),
            ),
            (
                "https://sqs.us-gov-west-1.amazonaws.com/1/q",
                Some("us-gov-west-1"),
            ),
            ("http://127.0.0.1:5000/123456789012/q", None),
            ("https://vpce-1.sqs.eu-west-2.vpce.amazonaws.com/1/q", None),
            ("not a url", None),
        ];
        for (url, want) in cases {
            assert_eq!(queue_region(url).as_deref(), want, "{url}");
        }
    }

    #[test]
    fn a_retry_outranks_a_bad_object_which_outranks_done() {
        let bad = Outcome::Bad(BadMessage::MissingObject);
        assert_eq!(Outcome::Done.max(bad), bad);
        assert_eq!(bad.max(Outcome::Retry), Outcome::Retry);
    }

    #[test]
    fn log_excerpts_are_short_and_on_one_line() {
        let long = "é\n".repeat(300);
        let e = excerpt(&long);
        assert_eq!(e.chars().count(), 201);
        assert!(!e.contains('\n'));
        assert_eq!(excerpt("{}"), "{}");
    }
}
