//! The distributed queue: NATS JetStream, with the module's promises kept this way.
//!
//! - Jobs live in stream `CUTX_JOBS` (subjects `cutx.jobs.>`, file storage, work-queue retention:
//!   a message leaves the stream once acknowledged or terminated). A message's subject is its
//!   topic and its header `Nats-Msg-Id` its id, so a second publish of an id is dropped by the
//!   server — within the stream's duplicate window (2 minutes), not forever as in [`SqlQueue`](super::SqlQueue);
//!   past the window the job's state in the database, not the queue, decides who owns the job.
//! - Every pipeline process reads one durable pull consumer (`pipeline`, explicit ack). A
//!   receive pulls one message at a time, so no process holds messages it is not working on.
//!   Visibility is the consumer's ack wait; `in_progress` sends `+WPI`, which restarts it.
//! - Delivery counting: [`MAX_DELIVERIES`] (3) is what the worker counts; the consumer's
//!   `max_deliver` is one more (4). The worker dead-letters the message itself on its third
//!   failed delivery, so a fourth delivery only happens when the worker handling the third died:
//!   it is surfaced as `attempt: 3, exhausted: true`, exactly as [`SqlQueue`](super::SqlQueue) does, and the
//!   worker fails the job and dead-letters it.
//! - Dead letters go to stream `CUTX_JOBS_DLQ` (subjects `cutx.dlq.>`, file storage), subject
//!   `cutx.dlq.<kind>`, payload unchanged, headers `Cutx-Error`, `Cutx-Deliveries`, `Cutx-Topic`
//!   and `Nats-Msg-Id` = the message id (a dead-lettering retried after a crash stores one
//!   letter). Only after the dead letter's publish is acknowledged is the original terminated.
//! - Safety net: if the fourth delivery is lost too, the server's max-deliveries advisory is
//!   captured by every connected queue and the message copied to the dead letters (the msg id
//!   makes the copies one) with an error saying it was never settled, then removed from the jobs
//!   stream. An advisory sent while no queue is connected is lost, as advisories are.
//! - Acks, naks and terms are double acks: they return only once the server confirmed them.
//!   A late settle from a worker whose delivery timed out still reaches the message (NATS settles
//!   by stream sequence, not by delivery), which is why the database decides who owns a job.
//! - Streams and consumer are created or updated at every connect, so any number of processes
//!   may start at once. A receive cancelled while it waits may leave a pull request at the
//!   server; a message it is served comes back after the ack wait, one delivery spent.

use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::message::AckKind;
use async_nats::jetstream::stream::{self, RetentionPolicy, StorageType};
use async_nats::jetstream::{self, Context};
use async_trait::async_trait;
use futures::StreamExt;

use crate::secret::Secret;

use super::{DeadLetter, Delivery, JobQueue, MAX_DELIVERIES, OutgoingMessage, QueueError, Settle};

mod dead_letters;

const MSG_ID: &str = "Nats-Msg-Id";

/// Where the queue lives. [`Default`] gives the production names; tests change the names and
/// subject prefixes so they can share one server.
#[derive(Debug, Clone)]
pub struct NatsQueueConfig {
    /// A secret: it may carry a user and password.
    pub url: Secret,
    pub stream: String,
    /// Subjects of `stream` are `<jobs_subjects>.>`; a topic must start with `<jobs_subjects>.`.
    pub jobs_subjects: String,
    pub dlq_stream: String,
    /// A dead letter of `<jobs_subjects>.<kind>` is stored under `<dlq_subjects>.<kind>`.
    pub dlq_subjects: String,
    /// The durable pull consumer every pipeline process shares.
    pub consumer: String,
    /// How long a delivery stays claimed without `in_progress` (NATS counts in whole seconds
    /// well enough; below 1 s is not useful).
    pub ack_wait: Duration,
    pub duplicate_window: Duration,
}

impl Default for NatsQueueConfig {
    fn default() -> Self {
        Self {
            url: Secret::new("nats://127.0.0.1:4222".into()),
            stream: "CUTX_JOBS".into(),
            jobs_subjects: "cutx.jobs".into(),
            dlq_stream: "CUTX_JOBS_DLQ".into(),
            dlq_subjects: "cutx.dlq".into(),
            consumer: "pipeline".into(),
            ack_wait: Duration::from_secs(60),
            duplicate_window: Duration::from_secs(120),
        }
    }
}

pub(super) fn storage(e: impl Into<super::Cause>) -> QueueError {
    QueueError::Storage(e.into())
}

/// A [`JobQueue`] on NATS JetStream. Clones share one connection.
#[derive(Clone)]
pub struct NatsQueue {
    inner: Arc<Inner>,
}

struct Inner {
    config: NatsQueueConfig,
    js: Context,
    consumer: PullConsumer,
    advisories: tokio::task::JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.advisories.abort();
    }
}

impl NatsQueue {
    /// Connects, creates or updates both streams and the consumer, and starts listening for
    /// max-deliveries advisories.
    pub async fn connect(config: NatsQueueConfig) -> Result<Self, QueueError> {
        let client =
            async_nats::ConnectOptions::new().name("cutx-queue").connect(config.url.expose()).await.map_err(|e| {
                QueueError::during(format!("connecting to {}", without_credentials(config.url.expose())), e)
            })?;
        let js = jetstream::new(client.clone());
        let jobs = stream::Config {
            name: config.stream.clone(),
            subjects: vec![format!("{}.>", config.jobs_subjects)],
            storage: StorageType::File,
            retention: RetentionPolicy::WorkQueue,
            duplicate_window: config.duplicate_window,
            ..Default::default()
        };
        let dlq = stream::Config {
            name: config.dlq_stream.clone(),
            subjects: vec![format!("{}.>", config.dlq_subjects)],
            storage: StorageType::File,
            duplicate_window: config.duplicate_window,
            ..Default::default()
        };
        for stream in [jobs, dlq] {
            ensure_stream(&js, stream).await?;
        }
        let consumer: PullConsumer = js
            .create_consumer_on_stream(
                pull::Config {
                    durable_name: Some(config.consumer.clone()),
                    filter_subject: format!("{}.>", config.jobs_subjects),
                    deliver_policy: DeliverPolicy::All,
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: config.ack_wait,
                    max_deliver: i64::from(MAX_DELIVERIES) + 1,
                    ..Default::default()
                },
                config.stream.as_str(),
            )
            .await
            .map_err(|e| QueueError::during(format!("creating consumer {}", config.consumer), e))?;
        let advisory = format!("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{}.{}", config.stream, config.consumer);
        let subscription = client.subscribe(advisory).await.map_err(storage)?;
        let advisories = tokio::spawn(dead_letters::capture_lost_messages(subscription, js.clone(), config.clone()));
        Ok(Self { inner: Arc::new(Inner { config, js, consumer, advisories }) })
    }

    /// Deletes both streams (and so the consumer): for tests and operators.
    pub async fn delete(self) -> Result<(), QueueError> {
        let config = &self.inner.config;
        for name in [&config.stream, &config.dlq_stream] {
            self.inner.js.delete_stream(name).await.map_err(storage)?;
        }
        Ok(())
    }
}

/// The URL without any `user:password@` (errors are logged).
fn without_credentials(url: &str) -> &str {
    url.rsplit_once('@').map_or(url, |(_, host)| host)
}

/// Creates the stream or brings it to `config`; tolerates another process doing the same.
async fn ensure_stream(js: &Context, config: stream::Config) -> Result<(), QueueError> {
    let name = config.name.clone();
    let mut attempt = 0;
    loop {
        attempt += 1;
        match js.create_or_update_stream(config.clone()).await {
            Ok(_) => return Ok(()),
            // Both saw no stream and both created it: the loser's update now finds it.
            Err(e) if attempt < 3 => tracing::debug!(stream = %name, error = %e, "creating a stream, again"),
            Err(e) => return Err(QueueError::during(format!("creating stream {name}"), e)),
        }
    }
}

/// The kind of a topic `<jobs_subjects>.<kind>`.
fn kind<'a>(config: &NatsQueueConfig, topic: &'a str) -> Result<&'a str, QueueError> {
    topic
        .strip_prefix(config.jobs_subjects.as_str())
        .and_then(|rest| rest.strip_prefix('.'))
        .filter(|kind| !kind.is_empty())
        .ok_or_else(|| QueueError::Broken(format!("topic {topic} is not under {}", config.jobs_subjects)))
}

#[async_trait]
impl JobQueue for NatsQueue {
    async fn publish(&self, m: OutgoingMessage) -> Result<(), QueueError> {
        kind(&self.inner.config, &m.topic)?;
        let mut headers = HeaderMap::new();
        headers.insert(MSG_ID, m.id.as_str());
        self.inner
            .js
            .publish_with_headers(m.topic, headers, m.payload)
            .await
            .map_err(storage)?
            .await
            .map_err(|e| QueueError::during(format!("publishing {}", m.id), e))?;
        Ok(())
    }

    async fn receive(&self, wait: Duration) -> Result<Option<Delivery>, QueueError> {
        // The server refuses pull requests that expire too soon to be served.
        let pulled = if wait < Duration::from_millis(10) {
            self.inner.consumer.fetch().max_messages(1).messages().await
        } else {
            self.inner.consumer.batch().max_messages(1).expires(wait).messages().await
        };
        let Some(message) = pulled.map_err(storage)?.next().await else {
            return Ok(None);
        };
        let message = message.map_err(storage)?;
        let info = message.info().map_err(storage)?;
        let delivered = u32::try_from(info.delivered).unwrap_or(u32::MAX);
        let id = match message.headers.as_ref().and_then(|h| h.get(MSG_ID)) {
            Some(id) => id.as_str().to_string(),
            None => info.stream_sequence.to_string(),
        };
        let topic = message.subject.to_string();
        let payload = message.payload.clone();
        let settle =
            NatsSettle { queue: self.clone(), message, id: id.clone(), topic: topic.clone(), deliveries: delivered };
        Ok(Some(Delivery::new(
            id,
            topic,
            payload,
            delivered.min(MAX_DELIVERIES),
            delivered > MAX_DELIVERIES,
            Box::new(settle),
        )))
    }

    async fn dead_letters(&self) -> Result<Vec<DeadLetter>, QueueError> {
        dead_letters::read_all(&self.inner.js, &self.inner.config).await
    }
}

struct NatsSettle {
    queue: NatsQueue,
    message: jetstream::Message,
    id: String,
    topic: String,
    deliveries: u32,
}

impl NatsSettle {
    async fn reply(&self, kind: AckKind) -> Result<(), QueueError> {
        self.message.double_ack_with(kind).await.map_err(|e| QueueError::during(format!("settling {}", self.id), e))
    }
}

#[async_trait]
impl Settle for NatsSettle {
    async fn ack(&self) -> Result<(), QueueError> {
        self.reply(AckKind::Ack).await
    }

    async fn retry(&self, _error: &str, delay: Duration) -> Result<(), QueueError> {
        self.reply(AckKind::Nak(Some(delay))).await
    }

    async fn dead_letter(&self, error: &str) -> Result<(), QueueError> {
        let letter = dead_letters::Letter {
            id: &self.id,
            topic: &self.topic,
            payload: self.message.payload.clone(),
            deliveries: self.deliveries.min(MAX_DELIVERIES),
            error,
        };
        dead_letters::publish(&self.queue.inner.js, &self.queue.inner.config, letter).await?;
        self.reply(AckKind::Term).await
    }

    async fn in_progress(&self) -> Result<(), QueueError> {
        self.reply(AckKind::Progress).await
    }
}
