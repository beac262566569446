//! moto in server mode (`moto_server`, Python) on 127.0.0.1: a real S3 and SQS emulator for
//! the real `aws-sdk-s3` / `aws-sdk-sqs` clients, and the environment the exporter binary needs
//! to reach it through the SDK's default chain.
//!
//! Tests are plain `#[test]` functions: [`Moto`] owns a tokio runtime, and every helper blocks
//! on it ([`Moto::block_on`] for anything else). The server is killed when `Moto` is dropped.
//!
//! moto 5.2's SQS costs each call time in proportion to the messages the queue holds (visible
//! and in flight): ~50 ms a SendMessageBatch and ~0.65 s a ReceiveMessage at 440 messages, so
//! draining 440 without deleting takes ~30 s. Delete what is handled, or keep queues small.
//!
//! Include it with `#[path = "support/moto.rs"] mod moto;`.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_sqs::types::{QueueAttributeName, SendMessageBatchRequestEntry};
use futures_util::StreamExt;

/// The region every client and the exporter's environment use.
pub const REGION: &str = "us-east-1";
/// moto accepts any credentials; these are the ones its documentation uses.
pub const ACCESS_KEY: &str = "testing";
pub const SECRET_KEY: &str = "testing";
/// moto's account for every resource it creates (queue ARNs, bucket owner).
pub const MOTO_ACCOUNT: &str = "123456789012";

/// How long moto may take to print its address, and then to answer.
const START_BOUND: Duration = Duration::from_secs(60);
const ANSWER_BOUND: Duration = Duration::from_secs(30);
/// Requests in flight at once in the bulk helpers (moto serves them on threads).
const IN_FLIGHT: usize = 8;

pub struct Moto {
    child: Child,
    port: u16,
    /// Everything moto printed, stdout and stderr interleaved by line.
    output: Arc<Mutex<String>>,
    rt: tokio::runtime::Runtime,
    s3: aws_sdk_s3::Client,
    sqs: aws_sdk_sqs::Client,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    /// Starts `moto_server` on an ephemeral port and returns once it answers HTTP.
    pub fn start() -> Moto {
        let mut child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("moto_server does not start ({e}): scripts/test installs moto[server]")
            });
        let output = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = channel();
        forward_lines(child.stdout.take().unwrap(), output.clone(), tx.clone());
        forward_lines(child.stderr.take().unwrap(), output.clone(), tx);
        let port = wait_for_address(&rx, &output);
        wait_until_answering(port, &output);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime for the SDK clients");
        let endpoint = format!("http://127.0.0.1:{port}");
        Moto {
            child,
            port,
            output,
            rt,
            s3: s3_client(&endpoint),
            sqs: sqs_client(&endpoint),
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// What moto printed so far (its request log included), for panic messages.
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// An S3 client on moto: path-style addressing, us-east-1, static credentials.
    pub fn s3(&self) -> aws_sdk_s3::Client {
        self.s3.clone()
    }

    /// An SQS client on moto: us-east-1, static credentials.
    pub fn sqs(&self) -> aws_sdk_sqs::Client {
        self.sqs.clone()
    }

    /// The environment the exporter binary needs to reach moto through the SDK's default
    /// chain: one endpoint for every service, static credentials from the environment, a
    /// region, no IMDS, and no shared config or credentials file read from the user's home.
    /// The endpoint is an IP address, so the SDK's S3 endpoint rules pick path-style
    /// addressing on their own (`moto_env_is_enough_for_the_sdk_default_chain` checks it).
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
            ("AWS_REGION", REGION.into()),
            ("AWS_DEFAULT_REGION", REGION.into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
            ("AWS_CONFIG_FILE", "/dev/null".into()),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null".into()),
            ("NO_PROXY", "127.0.0.1,localhost".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Runs a future on this Moto's runtime (for SDK calls the helpers do not cover).
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    pub fn create_bucket(&self, name: &str) {
        self.block_on(self.s3.create_bucket().bucket(name).send())
            .unwrap_or_else(|e| panic!("CreateBucket {name}: {e:?}"));
    }

    /// Uploads one object; returns its ETag without the quotes (as S3 notifications carry it).
    pub fn put_object(&self, bucket: &str, key: &str, bytes: Vec<u8>) -> String {
        self.block_on(put(&self.s3, bucket, key, bytes))
    }

    /// Uploads many objects, a few at a time; returns their ETags in the same order.
    pub fn put_objects(&self, bucket: &str, objects: &[(String, Vec<u8>)]) -> Vec<String> {
        let uploads = objects
            .iter()
            .map(|(key, bytes)| put(&self.s3, bucket, key, bytes.clone()));
        self.block_on(
            futures_util::stream::iter(uploads)
                .buffered(IN_FLIGHT)
                .collect(),
        )
    }

    pub fn get_object(&self, bucket: &str, key: &str) -> Vec<u8> {
        self.block_on(async {
            let out = self
                .s3
                .get_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .unwrap_or_else(|e| panic!("GetObject {bucket}/{key}: {e:?}"));
            let body = out.body.collect().await;
            body.unwrap_or_else(|e| panic!("GetObject {bucket}/{key} body: {e:?}"))
                .into_bytes()
                .to_vec()
        })
    }

    /// Every key under `prefix`, in S3's order (all pages).
    pub fn list_keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .block_on(
                    self.s3
                        .list_objects_v2()
                        .bucket(bucket)
                        .prefix(prefix)
                        .set_continuation_token(token.take())
                        .send(),
                )
                .unwrap_or_else(|e| panic!("ListObjectsV2 {bucket}/{prefix}: {e:?}"));
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(String::from)),
            );
            match page.next_continuation_token() {
                Some(t) => token = Some(t.to_string()),
                None => return keys,
            }
        }
    }

    /// The common prefixes one level below `prefix` (ListObjectsV2 with a delimiter).
    pub fn list_prefixes(&self, bucket: &str, prefix: &str, delimiter: &str) -> Vec<String> {
        let page = self
            .block_on(
                self.s3
                    .list_objects_v2()
                    .bucket(bucket)
                    .prefix(prefix)
                    .delimiter(delimiter)
                    .send(),
            )
            .unwrap_or_else(|e| panic!("ListObjectsV2 {bucket}/{prefix} by {delimiter:?}: {e:?}"));
        page.common_prefixes()
            .iter()
            .filter_map(|p| p.prefix().map(String::from))
            .collect()
    }

    /// A standard queue; returns its URL.
    pub fn create_queue(&self, name: &str, visibility_timeout_s: u32) -> String {
        self.create_queue_with(name, visibility_timeout_s, None)
    }

    /// A standard queue whose messages go to `dlq_url` after `max_receive_count` receives
    /// (moto moves a message on the receive after the last allowed one, as SQS does).
    pub fn create_queue_with_dlq(
        &self,
        name: &str,
        visibility_timeout_s: u32,
        dlq_url: &str,
        max_receive_count: u32,
    ) -> String {
        let policy = serde_json::json!({
            "deadLetterTargetArn": self.queue_arn(dlq_url),
            "maxReceiveCount": max_receive_count.to_string(),
        });
        self.create_queue_with(name, visibility_timeout_s, Some(policy.to_string()))
    }

    fn create_queue_with(
        &self,
        name: &str,
        visibility_timeout_s: u32,
        redrive_policy: Option<String>,
    ) -> String {
        let mut call = self.sqs.create_queue().queue_name(name).attributes(
            QueueAttributeName::VisibilityTimeout,
            visibility_timeout_s.to_string(),
        );
        if let Some(policy) = redrive_policy {
            call = call.attributes(QueueAttributeName::RedrivePolicy, policy);
        }
        let out = self
            .block_on(call.send())
            .unwrap_or_else(|e| panic!("CreateQueue {name}: {e:?}"));
        out.queue_url()
            .unwrap_or_else(|| panic!("CreateQueue {name} gave no QueueUrl"))
            .to_string()
    }

    pub fn queue_arn(&self, queue_url: &str) -> String {
        self.queue_attribute(queue_url, QueueAttributeName::QueueArn)
    }

    pub fn send(&self, queue_url: &str, body: &str) {
        self.block_on(
            self.sqs
                .send_message()
                .queue_url(queue_url)
                .message_body(body)
                .send(),
        )
        .unwrap_or_else(|e| panic!("SendMessage to {queue_url}: {e:?}"));
    }

    /// Sends every body, ten to a `SendMessageBatch`, a few batches at a time.
    pub fn send_all(&self, queue_url: &str, bodies: &[String]) {
        let batches = bodies
            .chunks(10)
            .map(|chunk| send_batch(&self.sqs, queue_url, chunk));
        self.block_on(
            futures_util::stream::iter(batches)
                .buffer_unordered(IN_FLIGHT)
                .collect::<Vec<()>>(),
        );
    }

    /// (`ApproximateNumberOfMessages`, `ApproximateNumberOfMessagesNotVisible`).
    pub fn queue_counts(&self, queue_url: &str) -> (u64, u64) {
        let count = |name: QueueAttributeName| {
            let text = self.queue_attribute(queue_url, name.clone());
            text.parse::<u64>()
                .unwrap_or_else(|_| panic!("{name:?} of {queue_url} is {text:?}"))
        };
        (
            count(QueueAttributeName::ApproximateNumberOfMessages),
            count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        )
    }

    /// Receives until no message is visible; returns the bodies. They stay in flight (not
    /// deleted) until their visibility timeout passes, and each receive counts towards a
    /// redrive policy's maxReceiveCount.
    pub fn receive_all(&self, queue_url: &str) -> Vec<String> {
        let deadline = Instant::now() + ANSWER_BOUND;
        let mut bodies = Vec::new();
        loop {
            let got = self.receive(queue_url);
            if got.is_empty() && self.queue_counts(queue_url).0 == 0 {
                return bodies;
            }
            bodies.extend(got);
            assert!(
                Instant::now() < deadline,
                "{queue_url} still had visible messages after {ANSWER_BOUND:?} of receiving ({} received)",
                bodies.len()
            );
        }
    }

    /// One `ReceiveMessage` (up to ten, no long polling); returns the bodies.
    pub fn receive(&self, queue_url: &str) -> Vec<String> {
        let out = self
            .block_on(
                self.sqs
                    .receive_message()
                    .queue_url(queue_url)
                    .max_number_of_messages(10)
                    .wait_time_seconds(0)
                    .send(),
            )
            .unwrap_or_else(|e| panic!("ReceiveMessage from {queue_url}: {e:?}"));
        out.messages()
            .iter()
            .map(|m| m.body().unwrap_or_default().to_string())
            .collect()
    }

    fn queue_attribute(&self, queue_url: &str, name: QueueAttributeName) -> String {
        let out = self
            .block_on(
                self.sqs
                    .get_queue_attributes()
                    .queue_url(queue_url)
                    .attribute_names(name.clone())
                    .send(),
            )
            .unwrap_or_else(|e| panic!("GetQueueAttributes {name:?} of {queue_url}: {e:?}"));
        out.attributes()
            .and_then(|a| a.get(&name))
            .unwrap_or_else(|| panic!("{queue_url} has no {name:?}"))
            .clone()
    }
}

fn s3_client(endpoint: &str) -> aws_sdk_s3::Client {
    use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
    let config = aws_sdk_s3::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "moto"))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

fn sqs_client(endpoint: &str) -> aws_sdk_sqs::Client {
    use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};
    let config = aws_sdk_sqs::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "moto"))
        .endpoint_url(endpoint)
        .build();
    aws_sdk_sqs::Client::from_conf(config)
}

async fn put(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, bytes: Vec<u8>) -> String {
    let out = s3
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(bytes))
        .send()
        .await
        .unwrap_or_else(|e| panic!("PutObject {bucket}/{key}: {e:?}"));
    out.e_tag()
        .unwrap_or_else(|| panic!("PutObject {bucket}/{key} gave no ETag"))
        .trim_matches('"')
        .to_string()
}

async fn send_batch(sqs: &aws_sdk_sqs::Client, queue_url: &str, bodies: &[String]) {
    let entries = bodies.iter().enumerate().map(|(i, body)| {
        SendMessageBatchRequestEntry::builder()
            .id(format!("m{i}"))
            .message_body(body)
            .build()
            .expect("id and body are set")
    });
    let out = sqs
        .send_message_batch()
        .queue_url(queue_url)
        .set_entries(Some(entries.collect()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("SendMessageBatch to {queue_url}: {e:?}"));
    assert!(
        out.failed().is_empty(),
        "SendMessageBatch to {queue_url} refused: {:?}",
        out.failed()
    );
}

/// Copies a pipe into `output` line by line, and hands each line to `lines`.
fn forward_lines(
    pipe: impl Read + Send + 'static,
    output: Arc<Mutex<String>>,
    lines: Sender<String>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            {
                let mut seen = output.lock().unwrap();
                seen.push_str(&line);
                seen.push('\n');
            }
            // The receiver goes once the address is known; the log keeps filling.
            let _ = lines.send(line);
        }
    });
}

/// The port from moto's ` * Running on http://127.0.0.1:PORT` line.
fn wait_for_address(lines: &Receiver<String>, output: &Mutex<String>) -> u16 {
    let deadline = Instant::now() + START_BOUND;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                if let Some(port) = running_port(&line) {
                    return port;
                }
            }
            Err(RecvTimeoutError::Timeout) => panic!(
                "moto_server printed no `Running on http://127.0.0.1:PORT` line in {START_BOUND:?}; it printed:\n{}",
                output.lock().unwrap()
            ),
            Err(RecvTimeoutError::Disconnected) => panic!(
                "moto_server exited before printing its address; it printed:\n{}",
                output.lock().unwrap()
            ),
        }
    }
}

fn running_port(line: &str) -> Option<u16> {
    let (_, rest) = line.split_once("Running on http://127.0.0.1:")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Polls a plain HTTP GET until moto answers with any status line.
fn wait_until_answering(port: u16, output: &Mutex<String>) {
    let deadline = Instant::now() + ANSWER_BOUND;
    loop {
        if answers_http(port) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "moto_server on port {port} did not answer HTTP in {ANSWER_BOUND:?}; it printed:\n{}",
            output.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn answers_http(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let request =
        format!("GET /moto-api/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    if s.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut status = String::new();
    BufReader::new(s).read_line(&mut status).is_ok() && status.starts_with("HTTP/1.")
}
