//! The worker pool's queue on NATS JetStream.
//!
//! JetStream does the hard parts; this is the thin client both sides use:
//! - **Jobs** go into a work-queue stream ([`JOBS_STREAM`]), each with the
//!   message id `<stage key>.<generation>`, so the same stage sent twice
//!   (two requesters, or one that died and was run again) is stored once.
//!   Every worker pulls through one durable consumer ([`WORKERS_CONSUMER`]):
//!   a message is handed to one worker at a time, and handed again when
//!   its worker stops acknowledging progress (killed, stopped, its machine
//!   lost) for the consumer's ack wait.
//! - **Results** go into a key-value bucket ([`RESULTS_BUCKET`]) written
//!   with create, so the first worker to finish a stage is the one kept and
//!   a late result from a worker thought dead changes nothing. Each
//!   delivery's fate is kept beside it (`<key>.delivery.<n>`), so a stage no
//!   worker can finish fails with what the workers last said.
//! - **Live events** (log lines, progress, "finished") go over plain NATS
//!   subjects (`cairn.stage.<key>`): lost when nobody listens, which is
//!   fine, since the result keeps the log and a waiting requester also
//!   looks for the result now and then. (Watching the bucket instead would
//!   create a consumer on the server per waiting stage, and consumers
//!   linger.)
//! - **Workers** announce themselves in a bucket whose entries expire
//!   ([`WORKERS_BUCKET`]), for `cairn remote status`.
//!
//! What a job and an event hold is the engine's business: here they are
//! bytes.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, kv, stream};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use cairn_core::Digest;

use super::nats::key_value;
use super::{RemoteError, Written};

/// The work-queue stream of jobs.
pub const JOBS_STREAM: &str = "cairn-jobs";
/// The subject jobs are published on.
const JOBS_SUBJECT: &str = "cairn.jobs";
/// The durable pull consumer every worker shares.
pub const WORKERS_CONSUMER: &str = "cairn-workers";
/// The key-value bucket of results and of what each delivery came to.
pub const RESULTS_BUCKET: &str = "cairn-results";
/// The key-value bucket where running workers announce themselves.
pub const WORKERS_BUCKET: &str = "cairn-workers";
/// The prefix of the subjects a running stage's live events go to.
const EVENTS_PREFIX: &str = "cairn.stage";

/// How long a worker's announcement lasts unless renewed.
pub const WORKER_TTL: Duration = Duration::from_secs(15);
/// How long results are kept for requesters to find: a day. The action
/// cache keeps what a stage produced; a result only tells a waiting (or
/// rerun) requester how the job ended.
const RESULT_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Within this time a job sent again under the same message id is dropped
/// by the server; past it a rerun sends it again, which is harmless
/// (results are first-writer-wins).
const DUPLICATE_WINDOW: Duration = Duration::from_secs(60 * 60);
/// How long a server may be unreachable (a cluster electing a new leader
/// takes seconds) before an operation that is safe to repeat fails.
pub const OUTAGE: Duration = Duration::from_secs(60);

/// How a job ended, as its worker published it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobResult {
    /// The worker that ran it.
    pub worker: String,
    /// How many attempts the stage took on that worker (its retries).
    pub attempts: u32,
    /// How long the stage ran there.
    pub duration_ms: u64,
    /// Why it failed; `None` when its result is in the shared action cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<JobFailure>,
}

/// A failed job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobFailure {
    /// What failed.
    pub message: String,
    /// What to do about it, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// A worker as it announces itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerInfo {
    /// Its name (`--name`, or the host name and process id).
    pub name: String,
    /// How many stages it runs at once.
    pub jobs: usize,
    /// How many it is running now.
    pub running: usize,
    /// The cairn version it runs.
    pub version: String,
}

/// The queue's state, for `cairn remote status`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct QueueStatus {
    /// Jobs not yet handed to a worker.
    pub waiting: u64,
    /// Jobs handed to a worker and not yet finished.
    pub running: u64,
    /// Jobs handed out again after a worker stopped answering.
    pub redelivered: u64,
    /// How long a worker may go silent before its job is handed out again.
    pub ack_wait_ms: u64,
    /// The workers connected.
    pub workers: Vec<WorkerInfo>,
}

/// A job sent.
#[derive(Clone, Copy, Debug)]
pub struct Submitted {
    /// Its place in the stream.
    pub sequence: u64,
    /// The same job was already there (another requester, or an earlier
    /// run of this one, sent it): this one waits for that one's result.
    pub duplicate: bool,
}

/// A connection to the queue, its stream and buckets open.
pub struct WorkQueue {
    server: String,
    client: async_nats::Client,
    jetstream: jetstream::Context,
    results: kv::Store,
    workers: kv::Store,
}

impl WorkQueue {
    /// Opens the queue on a connected client, creating what is missing
    /// with `replicas` copies of each message.
    pub(crate) async fn open(server: String, client: async_nats::Client, replicas: usize) -> Result<Self, RemoteError> {
        let jetstream = jetstream::new(client.clone());
        let failed = |doing: &str, error: &dyn std::fmt::Display| RemoteError::operation(&server, doing, error);
        jetstream
            .get_or_create_stream(stream::Config {
                name: JOBS_STREAM.to_owned(),
                description: Some("cairn: stages waiting for a worker".to_owned()),
                subjects: vec![JOBS_SUBJECT.to_owned()],
                retention: stream::RetentionPolicy::WorkQueue,
                max_age: RESULT_TTL,
                duplicate_window: DUPLICATE_WINDOW,
                num_replicas: replicas,
                ..Default::default()
            })
            .await
            .map_err(|error| failed("open the job queue", &error))?;
        let results = key_value(
            &jetstream,
            RESULTS_BUCKET,
            "cairn: stage key -> how its job ended",
            RESULT_TTL,
            replicas,
        )
        .await
        .map_err(|error| failed("open the results bucket", &error))?;
        let workers = key_value(
            &jetstream,
            WORKERS_BUCKET,
            "cairn: workers running now",
            WORKER_TTL,
            replicas,
        )
        .await
        .map_err(|error| failed("open the workers bucket", &error))?;
        Ok(Self {
            server,
            client,
            jetstream,
            results,
            workers,
        })
    }

    fn failed(&self, doing: impl Into<String>, error: impl std::fmt::Display) -> RemoteError {
        RemoteError::operation(&self.server, doing, error)
    }

    /// The server, for messages.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Sends the job for `key`. `generation` tells a job sent again after a
    /// failure apart from a duplicate of one still queued or running.
    ///
    /// The server drops a job whose message id it saw in the last hour. A
    /// job seen but no longer queued and without a result (dropped, or
    /// purged by an operator) would then never run: it is sent again under
    /// an id of its own.
    pub async fn submit(&self, key: &Digest, generation: u64, job: Vec<u8>) -> Result<Submitted, RemoteError> {
        let job = Bytes::from(job);
        let first = self
            .publish_job(key, format!("{}.{generation}", key.to_hex()), job.clone())
            .await?;
        if !first.duplicate || self.result(key).await?.is_some() || self.queued(first.sequence).await? {
            return Ok(first);
        }
        self.publish_job(key, format!("{}.{generation}.{}", key.to_hex(), first.sequence), job)
            .await
    }

    async fn publish_job(&self, key: &Digest, id: String, job: Bytes) -> Result<Submitted, RemoteError> {
        let message = jetstream::message::PublishMessage::build().message_id(id).payload(job);
        let ack = self
            .jetstream
            .send_publish(JOBS_SUBJECT, message)
            .await
            .map_err(|error| self.failed(format!("queue the job {}", key.short()), error))?
            .await
            .map_err(|error| self.failed(format!("queue the job {}", key.short()), error))?;
        Ok(Submitted {
            sequence: ack.sequence,
            duplicate: ack.duplicate,
        })
    }

    /// Whether the job at `sequence` is still in the queue (a work queue
    /// forgets what its workers finished or dropped).
    async fn queued(&self, sequence: u64) -> Result<bool, RemoteError> {
        let stream = self
            .jetstream
            .get_stream(JOBS_STREAM)
            .await
            .map_err(|error| self.failed("read the job queue", error))?;
        match stream.get_raw_message(sequence).await {
            Ok(_) => Ok(true),
            Err(error) if matches!(error.kind(), stream::RawMessageErrorKind::NoMessageFound) => Ok(false),
            Err(error) => Err(self.failed("read the job queue", error)),
        }
    }

    /// The published result of `key` and its revision, if there is one.
    pub async fn result(&self, key: &Digest) -> Result<Option<(JobResult, u64)>, RemoteError> {
        let entry = self
            .results
            .entry(key.to_hex())
            .await
            .map_err(|error| self.failed(format!("read the result of {}", key.short()), error))?;
        let Some(entry) = entry.filter(|entry| entry.operation == kv::Operation::Put) else {
            return Ok(None);
        };
        let result = serde_json::from_slice(&entry.value)
            .map_err(|error| self.failed(format!("read the result of {}", key.short()), error))?;
        Ok(Some((result, entry.revision)))
    }

    /// Forgets the result of `key` and what its deliveries came to, so the
    /// job can be sent again (a failure being retried by a new run).
    pub async fn clear_result(&self, key: &Digest) -> Result<(), RemoteError> {
        self.results
            .purge(key.to_hex())
            .await
            .map_err(|error| self.failed(format!("clear the result of {}", key.short()), error))
    }

    /// Publishes how the job of `key` ended, unless a result is there.
    pub async fn publish_result(&self, key: &Digest, result: &JobResult) -> Result<Written, RemoteError> {
        let value = serde_json::to_vec(result).map_err(|error| self.failed("encode a result", error))?;
        match self.results.create(key.to_hex(), value.into()).await {
            Ok(_) => Ok(Written::Stored),
            Err(error) if error.kind() == kv::CreateErrorKind::AlreadyExists => Ok(Written::AlreadyThere),
            Err(error) => Err(self.failed(format!("publish the result of {}", key.short()), error)),
        }
    }

    /// Keeps what delivery `delivery` of the job `key` came to (`started on
    /// worker w1`, then its error), for the message of a job no worker
    /// finishes.
    pub async fn record_delivery(&self, key: &Digest, delivery: u64, text: &str) -> Result<(), RemoteError> {
        self.results
            .put(delivery_key(key, delivery), Bytes::copy_from_slice(text.as_bytes()))
            .await
            .map(drop)
            .map_err(|error| self.failed(format!("record a delivery of {}", key.short()), error))
    }

    /// What deliveries 1 to `last` of `key` came to, those recorded.
    pub async fn deliveries(&self, key: &Digest, last: u64) -> Result<Vec<(u64, String)>, RemoteError> {
        let mut recorded = Vec::new();
        for delivery in 1..=last {
            let value = self
                .results
                .get(delivery_key(key, delivery))
                .await
                .map_err(|error| self.failed(format!("read the deliveries of {}", key.short()), error))?;
            if let Some(value) = value {
                recorded.push((delivery, String::from_utf8_lossy(&value).into_owned()));
            }
        }
        Ok(recorded)
    }

    /// Sends a live event of the stage `key` to whoever listens.
    pub async fn emit(&self, key: &Digest, event: Vec<u8>) {
        if let Err(error) = self.client.publish(events_subject(key), event.into()).await {
            tracing::debug!(%error, "a live event was not sent");
        }
    }

    /// The live events of the stage `key`, from now on.
    pub async fn events(&self, key: &Digest) -> Result<impl futures_util::Stream<Item = Bytes> + use<>, RemoteError> {
        let subscriber = self
            .client
            .subscribe(events_subject(key))
            .await
            .map_err(|error| self.failed(format!("follow the stage {}", key.short()), error))?;
        // The subscription must exist on the server before the job is
        // sent, or the first lines are lost.
        self.client
            .flush()
            .await
            .map_err(|error| self.failed(format!("follow the stage {}", key.short()), error))?;
        Ok(subscriber.map(|message| message.payload))
    }

    /// The consumer workers pull jobs through, created with `ack_wait` if
    /// it does not exist yet (the first worker's setting stands).
    pub async fn consumer(&self, ack_wait: Duration) -> Result<JobConsumer, RemoteError> {
        let stream = self
            .jetstream
            .get_stream(JOBS_STREAM)
            .await
            .map_err(|error| self.failed("open the job queue", error))?;
        let consumer = stream
            .get_or_create_consumer(
                WORKERS_CONSUMER,
                consumer::pull::Config {
                    durable_name: Some(WORKERS_CONSUMER.to_owned()),
                    description: Some("cairn workers".to_owned()),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait,
                    // Workers bound deliveries themselves, so that the
                    // last one can fail the job with what went wrong.
                    max_deliver: -1,
                    ..Default::default()
                },
            )
            .await
            .map_err(|error| self.failed("open the workers' consumer", error))?;
        Ok(JobConsumer {
            server: self.server.clone(),
            consumer,
        })
    }

    /// Announces (or renews) a running worker.
    pub async fn announce(&self, worker: &WorkerInfo) -> Result<(), RemoteError> {
        let value = serde_json::to_vec(worker).map_err(|error| self.failed("announce the worker", error))?;
        self.workers
            .put(worker_key(&worker.name), value.into())
            .await
            .map(drop)
            .map_err(|error| self.failed("announce the worker", error))
    }

    /// Withdraws a worker that stops.
    pub async fn withdraw(&self, name: &str) {
        if let Err(error) = self.workers.purge(worker_key(name)).await {
            tracing::debug!(%error, "the worker's announcement stays until it expires");
        }
    }

    /// The workers announced in the last [`WORKER_TTL`].
    pub async fn workers(&self) -> Result<Vec<WorkerInfo>, RemoteError> {
        let keys: Vec<String> = match self.workers.keys().await {
            Ok(keys) => keys.filter_map(|key| std::future::ready(key.ok())).collect().await,
            Err(error) => return Err(self.failed("list the workers", error)),
        };
        let mut workers = Vec::new();
        for key in keys {
            let value = self
                .workers
                .get(&key)
                .await
                .map_err(|error| self.failed("list the workers", error))?;
            if let Some(worker) = value.and_then(|value| serde_json::from_slice(&value).ok()) {
                workers.push(worker);
            }
        }
        workers.sort_by(|left: &WorkerInfo, right| left.name.cmp(&right.name));
        Ok(workers)
    }

    /// The queue's depth, what is running, and the workers.
    pub async fn status(&self) -> Result<QueueStatus, RemoteError> {
        let mut stream = self
            .jetstream
            .get_stream(JOBS_STREAM)
            .await
            .map_err(|error| self.failed("read the job queue", error))?;
        let messages = stream
            .info()
            .await
            .map_err(|error| self.failed("read the job queue", error))?
            .state
            .messages;
        let mut status = QueueStatus {
            waiting: messages,
            workers: self.workers().await?,
            ..QueueStatus::default()
        };
        if let Ok(info) = stream.consumer_info(WORKERS_CONSUMER).await {
            status.running = info.num_ack_pending as u64;
            status.waiting = info.num_pending;
            status.redelivered = info.num_redelivered as u64;
            status.ack_wait_ms = info.config.ack_wait.as_millis() as u64;
        }
        Ok(status)
    }
}

/// Where workers pull jobs from.
pub struct JobConsumer {
    server: String,
    consumer: consumer::PullConsumer,
}

impl JobConsumer {
    /// The next job, waiting for one at most `wait`.
    pub async fn next(&self, wait: Duration) -> Result<Option<Delivery>, RemoteError> {
        let failed = |error: &dyn std::fmt::Display| RemoteError::operation(&self.server, "take a job", error);
        let mut batch = self
            .consumer
            .batch()
            .max_messages(1)
            .expires(wait)
            .messages()
            .await
            .map_err(|error| failed(&error))?;
        let Some(message) = batch.next().await else {
            return Ok(None);
        };
        let message = message.map_err(|error| failed(&error))?;
        let delivered = message.info().map_err(|error| failed(&error))?.delivered.max(1) as u64;
        let key = message
            .headers
            .as_ref()
            .and_then(|headers| headers.get(async_nats::header::NATS_MESSAGE_ID))
            .and_then(|id| id.as_str().split('.').next().and_then(Digest::from_hex));
        Ok(Some(Delivery {
            server: self.server.clone(),
            message,
            key,
            delivered,
        }))
    }
}

/// A job handed to this worker.
pub struct Delivery {
    server: String,
    message: jetstream::Message,
    /// The stage key the job was sent under (`None` for a message that is
    /// not a cairn job).
    pub key: Option<Digest>,
    /// How many times the job has been handed out, this time included.
    pub delivered: u64,
}

impl Delivery {
    /// The job, as the requester encoded it.
    pub fn payload(&self) -> &[u8] {
        &self.message.payload
    }

    async fn answer(&self, kind: jetstream::AckKind, doing: &str) -> Result<(), RemoteError> {
        self.message
            .ack_with(kind)
            .await
            .map_err(|error| RemoteError::operation(&self.server, doing, error))
    }

    /// Says the job is still being worked on, so it is not handed out again.
    pub async fn progress(&self) -> Result<(), RemoteError> {
        self.answer(jetstream::AckKind::Progress, "report progress on a job")
            .await
    }

    /// Says the job is done (its result published): it leaves the queue.
    pub async fn done(&self) -> Result<(), RemoteError> {
        self.message
            .double_ack()
            .await
            .map_err(|error| RemoteError::operation(&self.server, "finish a job", error))
    }

    /// Gives the job back to be handed to a worker again after `delay`.
    pub async fn give_back(&self, delay: Duration) -> Result<(), RemoteError> {
        self.answer(jetstream::AckKind::Nak(Some(delay)), "give a job back")
            .await
    }

    /// Takes a job no worker may run out of the queue for good.
    pub async fn drop_job(&self) -> Result<(), RemoteError> {
        self.answer(jetstream::AckKind::Term, "drop a job").await
    }
}

/// Runs `attempt` until it succeeds or has failed for [`OUTAGE`]: for
/// operations that are safe to repeat (everything is named by digest or
/// key, and written first-writer-wins), across a cluster electing a new
/// leader or a server restarting.
pub async fn through_outage<T, E, F>(mut attempt: impl FnMut() -> F) -> Result<T, E>
where
    E: std::fmt::Display,
    F: Future<Output = Result<T, E>>,
{
    let started = std::time::Instant::now();
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(error) if started.elapsed() < OUTAGE => {
                tracing::debug!(%error, "trying again");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(error) => return Err(error),
        }
    }
}

fn events_subject(key: &Digest) -> String {
    format!("{EVENTS_PREFIX}.{}", key.to_hex())
}

fn delivery_key(key: &Digest, delivery: u64) -> String {
    format!("{}.delivery.{delivery}", key.to_hex())
}

/// A key-value key for a worker's name (whose characters are not all
/// allowed in keys).
fn worker_key(name: &str) -> String {
    name.chars()
        .map(|character| {
            if character.is_ascii_alphanumeric() || matches!(character, '-' | '_') {
                character
            } else {
                '_'
            }
        })
        .collect()
}
