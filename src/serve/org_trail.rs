//! The organisation trail beside `serve`: the bucket read back over the window (so a restart
//! loses nothing the queue already let go of), then the queue, both into the live store.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tracing::{info, warn};

use crate::config::{CloudTrailConfig, DEFAULT_WINDOW};
use crate::source::aws;
use crate::source::s3_trail::{BucketSettings, Scope, TrailBucket};
use crate::source::sqs_trail::{self, QueueConsumer, queue_region};
use crate::state::trail::TrailStore;
use crate::telemetry::{Telemetry, label};

/// The bucket's name in `source_up` and `parse_errors`.
pub(super) const BUCKET_SOURCE: &str = "cloudtrail_s3";
/// Attempts at listing the bucket before the exporter goes on without its backfill.
const BACKFILL_ATTEMPTS: u32 = 5;

/// Backfills from the bucket (if configured), marks `backfilled`, then consumes the queue.
pub(super) async fn run(
    telemetry: Arc<Telemetry>,
    config: CloudTrailConfig,
    store: Arc<TrailStore>,
    backfilled: Arc<AtomicBool>,
) {
    let Some(queue) = config.sqs.clone() else {
        return;
    };
    set_up(&telemetry, sqs_trail::SOURCE, false);
    let base = aws::base_config().await;
    let settings = match &config.s3 {
        Some(b) => BucketSettings {
            bucket: b.bucket.clone(),
            prefix: b.prefix.clone(),
            role_arn: b.role_arn.clone(),
            region: b.region.clone(),
            path_style: b.path_style,
        },
        // Without a bucket configured, objects are read where notifications say, with the
        // exporter's own credentials, in the queue's region.
        None => BucketSettings {
            region: queue
                .region
                .clone()
                .or_else(|| queue_region(&queue.queue_url)),
            ..BucketSettings::default()
        },
    };
    let bucket = Arc::new(TrailBucket::connect(&base, &settings, Some(telemetry.clone())).await);
    if config.s3.is_some() {
        backfill(&telemetry, &config, &bucket, &store).await;
    }
    backfilled.store(true, Ordering::Release);
    store.changed.notify_one();
    QueueConsumer::connect(&base, &queue, bucket, store, telemetry)
        .await
        .run()
        .await;
}

fn set_up(telemetry: &Telemetry, source: &str, up: bool) {
    telemetry
        .source_up
        .get_or_create(&label("source", source))
        .set(i64::from(up));
}

/// Reads the window and its delivery allowance back from the bucket, retrying the listing
/// with backoff; after the last attempt the exporter goes on (and says the bucket is down)
/// rather than never becoming ready.
async fn backfill(
    telemetry: &Telemetry,
    config: &CloudTrailConfig,
    bucket: &Arc<TrailBucket>,
    store: &TrailStore,
) {
    let Some(b) = &config.s3 else { return };
    let scope = Scope {
        accounts: b.accounts.clone(),
        regions: b.regions.clone(),
        insight_events: b.insight_events,
    };
    let window = config.window.unwrap_or(DEFAULT_WINDOW) + config.delivery_allowance;
    let mut pause = Duration::from_secs(1);
    for attempt in 1..=BACKFILL_ATTEMPTS {
        let now = epoch_now();
        // Deliveries stamped a little ahead of this clock still count.
        let range = (now - window.as_secs() as i64, now + 3600);
        match bucket.backfill(&scope, range, store, BUCKET_SOURCE).await {
            Ok(done) => {
                info!(objects = done.objects, records = done.records, unread = done.unread, bucket = %bucket.bucket, "backfilled the window from the organisation trail's bucket");
                set_up(telemetry, BUCKET_SOURCE, done.unread == 0);
                return;
            }
            Err(e) => {
                warn!(attempt, bucket = %bucket.bucket, "backfill: {e}");
                set_up(telemetry, BUCKET_SOURCE, false);
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
        }
    }
    warn!(bucket = %bucket.bucket, "backfill given up: the per-resource window holds only what the queue brings from now on");
}

fn epoch_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
