//! The job queue: at-least-once delivery, at most [`MAX_DELIVERIES`] deliveries, dead letters.
//!
//! Promises, whatever the backend:
//! - publishing a message id already published stores one message (a duplicate publish is dropped)
//!   within the duplicate window (2 minutes, JetStream's default); after it, the id is new again;
//! - a delivered message that is neither acknowledged nor handed back is delivered again once its
//!   visibility timeout passes (a worker that died loses nothing);
//! - no message is delivered more than [`MAX_DELIVERIES`] times; a message whose last delivery
//!   was lost comes back once more as [`Delivery::exhausted`] so the consumer can settle its job;
//! - a dead-lettered message is kept, with its error, and never delivered again.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

mod nats;
mod sql;

pub use nats::{NatsQueue, NatsQueueConfig};
pub use sql::SqlQueue;

/// Deliveries of one message, counting the first.
pub const MAX_DELIVERIES: u32 = 3;

/// What failed underneath a [`QueueError`].
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The database or NATS failed.
    #[error("queue storage")]
    Storage(#[source] Cause),
    /// The database or NATS failed while doing something worth naming.
    #[error("queue storage: {doing}")]
    During {
        doing: String,
        #[source]
        cause: Cause,
    },
    /// The queue's own rules were broken: a claimed message vanished, a topic outside the stream.
    #[error("queue: {0}")]
    Broken(String),
}

impl QueueError {
    pub(crate) fn during(doing: impl Into<String>, cause: impl Into<Cause>) -> Self {
        Self::During { doing: doing.into(), cause: cause.into() }
    }
}

/// A message to publish. `id` de-duplicates: use the job id.
#[derive(Debug, Clone)]
pub struct OutgoingMessage {
    pub id: String,
    pub topic: String,
    pub payload: Bytes,
}

/// The queue a producer publishes to and a consumer receives from.
#[async_trait]
pub trait JobQueue: Send + Sync + 'static {
    async fn publish(&self, message: OutgoingMessage) -> Result<(), QueueError>;

    /// The next message, waiting at most `wait` for one.
    async fn receive(&self, wait: Duration) -> Result<Option<Delivery>, QueueError>;

    /// Dead letters, oldest first (for operators and tests).
    async fn dead_letters(&self) -> Result<Vec<DeadLetter>, QueueError>;
}

/// A message kept after its last failure.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub id: String,
    pub topic: String,
    pub payload: Bytes,
    pub deliveries: u32,
    pub error: String,
}

/// How a consumer settles a delivery; one implementation per backend.
#[async_trait]
pub trait Settle: Send + Sync {
    async fn ack(&self) -> Result<(), QueueError>;
    async fn retry(&self, error: &str, delay: Duration) -> Result<(), QueueError>;
    async fn dead_letter(&self, error: &str) -> Result<(), QueueError>;
    async fn in_progress(&self) -> Result<(), QueueError>;
}

/// One delivery of a message.
pub struct Delivery {
    pub id: String,
    pub topic: String,
    pub payload: Bytes,
    /// 1 for the first delivery.
    pub attempt: u32,
    /// The last delivery was never settled (its worker died): settle the work, don't redo it.
    pub exhausted: bool,
    settle: Box<dyn Settle>,
}

impl Delivery {
    pub fn new(
        id: String,
        topic: String,
        payload: Bytes,
        attempt: u32,
        exhausted: bool,
        settle: Box<dyn Settle>,
    ) -> Self {
        Self { id, topic, payload, attempt, exhausted, settle }
    }

    /// Whether a failure now should dead-letter the message rather than retry it.
    pub fn is_last_attempt(&self) -> bool {
        self.exhausted || self.attempt >= MAX_DELIVERIES
    }

    /// Done: never delivered again.
    pub async fn ack(self) -> Result<(), QueueError> {
        self.settle.ack().await
    }

    /// Failed for now: delivered again after `delay`.
    pub async fn retry(self, error: &str, delay: Duration) -> Result<(), QueueError> {
        self.settle.retry(error, delay).await
    }

    /// Failed for good: kept with its error among the dead letters, never delivered again.
    pub async fn dead_letter(self, error: &str) -> Result<(), QueueError> {
        self.settle.dead_letter(error).await
    }

    /// Still working: extends the visibility timeout.
    pub async fn in_progress(&self) -> Result<(), QueueError> {
        self.settle.in_progress().await
    }
}
