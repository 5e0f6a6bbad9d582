//! The switches a test flips, and their defaults: a prediction succeeds with one URL after four
//! 50 ms steps, each webhook is sent once and retried up to four times, nothing is throttled.

use std::collections::HashMap;
use std::time::Duration;

/// The shape of a succeeded prediction's output, as each model has its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputShape {
    /// One URL string.
    Single,
    /// A list of two URLs.
    List,
    /// An object of URLs: `{"image": ..}`, `{"audio": ..}` or `{"video": .., "thumbnail": ..}`.
    Object,
}

/// How a prediction ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Succeed,
    /// `failed`, with this `error`.
    Fail(String),
    /// Stays `processing` while this is the outcome; switching away lets it finish.
    NeverFinish,
}

/// How webhooks are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Webhooks {
    Normal,
    /// Each event sent this many times at once, with the same `webhook-id`.
    Duplicate(usize),
    /// A prediction's events are held back until it is terminal, then sent one after the other
    /// in reverse order: `completed` first.
    Reorder,
    /// Each event sent this long after it happened.
    Delay(Duration),
    /// None sent (nor recorded as deliveries).
    Drop,
}

/// The switches a test flips. Read when they apply: the output shape when the output appears,
/// the outcome at the end of processing, the webhook mode when an event happens.
#[derive(Debug, Clone)]
pub struct Behaviour {
    pub output_shape: OutputShape,
    /// Replaces the output's URLs, in the same shape (for tests that point it at other hosts).
    pub output_urls: Option<Vec<String>>,
    pub outcome: Outcome,
    /// The time between two states of a prediction.
    pub step: Duration,
    pub webhooks: Webhooks,
    /// How many times a failed webhook is sent again.
    pub webhook_retries: usize,
    pub webhook_backoff: Duration,
    pub webhook_timeout: Duration,
    /// Every Nth create (counted over all creates) answers 429 and creates nothing.
    pub throttle_every: Option<usize>,
    pub retry_after_secs: u64,
    /// The model a bare version id belongs to (it decides the output's file type); a version not
    /// listed belongs to `fake/image-model`. `owner/name:version` needs no entry.
    pub versions: HashMap<String, String>,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            output_shape: OutputShape::Single,
            output_urls: None,
            outcome: Outcome::Succeed,
            step: Duration::from_millis(50),
            webhooks: Webhooks::Normal,
            webhook_retries: 4,
            webhook_backoff: Duration::from_millis(100),
            webhook_timeout: Duration::from_secs(5),
            throttle_every: None,
            retry_after_secs: 1,
            versions: HashMap::new(),
        }
    }
}
