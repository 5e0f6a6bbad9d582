//! The Replicate API client CutX's services use. Every call goes through the guarded HTTP
//! client with `Authorization: Bearer <token>`, and follows Replicate's documented rules:
//!
//! - a create is sent again only after a 429, which means it was not made; after a 5xx or a
//!   broken connection it may have been, so it is never repeated here (the caller decides);
//! - reads, cancels and the webhook secret are safe to repeat, and are, after a 429, a 5xx or a
//!   transport error, up to `max_attempts` in all;
//! - waits honour `Retry-After` (capped at `max_retry_wait`), else back off exponentially;
//! - creates are paced below Replicate's limit of 600 a minute, across every clone of the
//!   client, so a burst of jobs waits its turn instead of being throttled.
//!
//! The token appears in no `Debug` output and no error.

use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use cutx_platform::fetch::{FetchError, GuardedClient};
use cutx_platform::secret::Secret;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde::Deserialize;

use crate::error::ReplicateError;
use crate::error::detail_of;
use crate::model_ref::ModelRef;
use crate::prediction::Prediction;
use crate::retry::{RetryPolicy, retry_after};
use crate::webhook::WebhookTarget;

pub const DEFAULT_BASE_URL: &str = "https://api.replicate.com/v1";

#[derive(Debug, Clone)]
pub struct ReplicateConfig {
    /// Default [`DEFAULT_BASE_URL`]; a fake Replicate's in tests.
    pub base_url: String,
    pub token: Secret,
    /// Default 500, below Replicate's 600 so retries and other processes have room.
    pub creates_per_minute: NonZeroU32,
    /// Attempts in all for one call, the first included. Default 6.
    pub max_attempts: u32,
    /// The longest one wait between attempts, however long `Retry-After` asks for. Default 60 s.
    pub max_retry_wait: Duration,
}

impl ReplicateConfig {
    /// Replicate's own API with `token` and the defaults above.
    pub fn new(token: Secret) -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_string(),
            token,
            creates_per_minute: NonZeroU32::new(500).expect("500 is not zero"),
            max_attempts: 6,
            max_retry_wait: Duration::from_secs(60),
        }
    }
}

#[derive(Clone)]
pub struct Replicate {
    inner: Arc<Inner>,
}

struct Inner {
    base_url: String,
    token: Secret,
    http: GuardedClient,
    creates: DefaultDirectRateLimiter,
    retry: RetryPolicy,
}

/// Whether a call may be sent again when its answer leaves unknown whether it took effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Repeat {
    /// A create: again only after a 429, which says it was not made.
    OnlyIfThrottled,
    /// Reads, and cancels (canceling twice is canceling once).
    Safe,
}

/// Why one attempt did not succeed, sorted by what may follow it.
enum Failure {
    /// 429: not done; try again after the wait, if any.
    Throttled(Option<Duration>),
    /// A 5xx or a broken connection: it may or may not have been done.
    Unsure(ReplicateError),
    /// Trying again would get the same answer.
    Final(ReplicateError),
}

impl Replicate {
    /// The base URL's origin is trusted configuration, not user input: `http` must already allow
    /// it (the caller does `policy.allow_origin_of(&config.base_url)` before building it), and
    /// every other origin stays as the policy has it.
    pub fn new(config: ReplicateConfig, http: GuardedClient) -> Self {
        let ReplicateConfig { base_url, token, creates_per_minute, max_attempts, max_retry_wait } = config;
        // `Quota::per_minute` alone would allow a whole minute's creates in one burst; a second's
        // worth keeps a queue of jobs flowing at the pace Replicate counts them.
        let burst = NonZeroU32::new(creates_per_minute.get() / 60).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_minute(creates_per_minute).allow_burst(burst);
        Self {
            inner: Arc::new(Inner {
                base_url: base_url.trim_end_matches('/').to_string(),
                token,
                http,
                creates: RateLimiter::direct(quota),
                retry: RetryPolicy { max_attempts: max_attempts.max(1), max_wait: max_retry_wait },
            }),
        }
    }

    /// Starts a prediction of `model` on `input`; Replicate posts its updates to `webhook`.
    /// Both 201 (created, maybe already finished) and 202 (created, running) are success.
    pub async fn create(
        &self,
        model: &ModelRef,
        input: serde_json::Value,
        webhook: Option<&WebhookTarget>,
    ) -> Result<Prediction, ReplicateError> {
        model.check().map_err(ReplicateError::InvalidModel)?;
        let mut body = serde_json::Map::new();
        let path = match model {
            ModelRef::Official { owner, name } => format!("/models/{owner}/{name}/predictions"),
            ModelRef::Version(version) => {
                body.insert("version".into(), version.clone().into());
                "/predictions".to_string()
            }
        };
        body.insert("input".into(), input);
        if let Some(WebhookTarget { url, events }) = webhook {
            body.insert("webhook".into(), url.clone().into());
            if !events.is_empty() {
                let filter = events.iter().map(|event| serde_json::Value::from(event.as_str())).collect();
                body.insert("webhook_events_filter".into(), serde_json::Value::Array(filter));
            }
        }
        let body = serde_json::Value::Object(body);
        let prediction: Prediction =
            decode(&self.call(Method::POST, &path, Some(&body), Repeat::OnlyIfThrottled).await?)?;
        tracing::debug!(prediction = %prediction.id, %model, "created a replicate prediction");
        Ok(prediction)
    }

    pub async fn get(&self, id: &str) -> Result<Prediction, ReplicateError> {
        let path = format!("/predictions/{}", prediction_id(id)?);
        decode(&self.call(Method::GET, &path, None, Repeat::Safe).await?)
    }

    pub async fn cancel(&self, id: &str) -> Result<Prediction, ReplicateError> {
        let path = format!("/predictions/{}/cancel", prediction_id(id)?);
        decode(&self.call(Method::POST, &path, None, Repeat::Safe).await?)
    }

    /// The key Replicate signs webhooks with (`whsec_<base64>`), as it gives it.
    pub async fn webhook_secret(&self) -> Result<Secret, ReplicateError> {
        #[derive(Deserialize)]
        struct SigningSecret {
            key: String,
        }
        let answer: SigningSecret =
            decode(&self.call(Method::GET, "/webhooks/default/secret", None, Repeat::Safe).await?)?;
        Ok(Secret::new(answer.key))
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
        repeat: Repeat,
    ) -> Result<bytes::Bytes, ReplicateError> {
        let url = format!("{}{path}", self.inner.base_url);
        let retry = self.inner.retry;
        let mut attempt = 1;
        loop {
            if repeat == Repeat::OnlyIfThrottled {
                self.inner.creates.until_ready().await;
            }
            let (error, asked) = match self.attempt(&method, &url, body).await {
                Ok(bytes) => return Ok(bytes),
                Err(Failure::Final(error)) => return Err(error),
                Err(Failure::Throttled(asked)) => (ReplicateError::Throttled { retry_after: asked }, asked),
                Err(Failure::Unsure(error)) if repeat == Repeat::Safe => (error, None),
                Err(Failure::Unsure(error)) => return Err(error),
            };
            if attempt >= retry.max_attempts {
                return Err(error);
            }
            let wait = retry.wait(attempt, asked);
            tracing::warn!(%method, path, attempt, ?wait, %error, "trying a replicate call again");
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    async fn attempt(
        &self,
        method: &Method,
        url: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<bytes::Bytes, Failure> {
        let http = &self.inner.http;
        let mut request =
            http.request(method.clone(), url).map_err(fetch_failure)?.bearer_auth(self.inner.token.expose());
        if let Some(body) = body {
            // Sets `content-type: application/json` too.
            request = request.json(body);
        }
        let response = http.send(request).await.map_err(fetch_failure)?;
        let status = response.status();
        if status.is_success() {
            return http.read_body(response).await.map_err(fetch_failure);
        }
        if status.is_client_error() && status.as_u16() != 429 {
            // The detail is for logs only; an unreadable one is no reason to hide the status.
            let body = http.read_body(response).await.unwrap_or_default();
            return Err(Failure::Final(ReplicateError::Refused {
                status: status.as_u16(),
                detail: detail_of(&body, self.inner.token.expose()),
            }));
        }
        Err(status_failure(status.as_u16(), response.headers()))
    }
}

impl fmt::Debug for Replicate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Replicate").field("base_url", &self.inner.base_url).finish_non_exhaustive()
    }
}

fn status_failure(status: u16, headers: &HeaderMap) -> Failure {
    match status {
        429 => Failure::Throttled(retry_after(headers)),
        500..=599 => Failure::Unsure(ReplicateError::Unavailable { status }),
        400..=499 => Failure::Final(ReplicateError::Refused { status, detail: String::new() }),
        _ => Failure::Final(ReplicateError::UnexpectedStatus { status }),
    }
}

fn fetch_failure(error: FetchError) -> Failure {
    match error {
        // The guarded client may answer a status as an error rather than a response.
        FetchError::Status { status, .. } => status_failure(status, &HeaderMap::new()),
        error if error.is_permanent() => Failure::Final(ReplicateError::Fetch(error)),
        error => Failure::Unsure(ReplicateError::Fetch(error)),
    }
}

/// A prediction id becomes a path segment: anything but Replicate's id alphabet could reach
/// another endpoint (`../webhooks/default/secret`).
fn prediction_id(id: &str) -> Result<&str, ReplicateError> {
    let valid =
        !id.is_empty() && id.len() <= 100 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid { Ok(id) } else { Err(ReplicateError::InvalidId { id: id.to_string() }) }
}

fn decode<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ReplicateError> {
    serde_json::from_slice(body).map_err(ReplicateError::Decode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prediction_ids_outside_replicates_alphabet_are_refused() {
        for id in ["gm3qorzdhgbfurvjtvhg6dckhu", "abc-DEF_123"] {
            assert_eq!(prediction_id(id).unwrap(), id);
        }
        for id in ["", "../webhooks/default/secret", "a/b", "a?b", "a b", "é"] {
            assert!(matches!(prediction_id(id), Err(ReplicateError::InvalidId { .. })), "{id:?}");
        }
    }

    #[test]
    fn statuses_sort_into_throttled_unsure_and_final() {
        let headers = HeaderMap::new();
        assert!(matches!(status_failure(429, &headers), Failure::Throttled(None)));
        assert!(matches!(status_failure(503, &headers), Failure::Unsure(ReplicateError::Unavailable { status: 503 })));
        assert!(matches!(status_failure(404, &headers), Failure::Final(ReplicateError::Refused { status: 404, .. })));
        assert!(matches!(
            status_failure(302, &headers),
            Failure::Final(ReplicateError::UnexpectedStatus { status: 302 })
        ));
    }
}
