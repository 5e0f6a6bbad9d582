//! A fake Replicate: a real HTTP server on `127.0.0.1:0` that speaks Replicate's documented wire
//! format (`/v1`, bearer token, prediction objects, Standard Webhooks signatures), so the end-to-end
//! tests exercise CutX's Replicate client, webhook receiver and media copier as they would run
//! against the real service.
//!
//! What it follows:
//! - `POST /v1/predictions {version, input, webhook?, webhook_events_filter?}` and
//!   `POST /v1/models/{owner}/{name}/predictions {input, ...}` answer 201 with the prediction
//!   (`status: "starting"`); a bad body is 422, a missing or wrong token 401, both with `detail`.
//!   `Prefer: wait=N` holds the create until the prediction is terminal or N seconds pass, then
//!   answers 201 if it is terminal and 202 if it still runs.
//! - `GET /v1/predictions/{id}`, `POST /v1/predictions/{id}/cancel` (a terminal prediction is
//!   answered as it is) and `GET /v1/webhooks/default/secret` (`{"key": "whsec_..."}`).
//! - A prediction moves one state per [`Behaviour::step`]: `starting`, then `processing` with
//!   `step 1/3` .. `step 3/3` in its logs (the output appears with the third), then `succeeded`
//!   or `failed`. Terminal states never change again.
//! - Its output points at real files served without auth at `/files/{id}/{n}.{ext}`: a WAV for a
//!   model whose name says `speech` or `tts`, an animated GIF for `video`, `wan`, `omni` or
//!   `reframe-video`, a 64×64 PNG otherwise. `/files/endless` never ends and
//!   `/files/redirect?to=URL` answers 302 to `URL`, for tests of the copier's limits.
//! - Webhooks carry the prediction as their body and `webhook-id`, `webhook-timestamp` and
//!   `webhook-signature` headers signed with the secret; an event's retries keep its
//!   `webhook-id`; a non-2xx answer or a connection error is retried; redirects are not followed.
//!   Each event is sent by its own task, so a retried event can arrive after a later one, as
//!   Replicate warns.
//!
//!   Without `webhook_events_filter` every event (`start`, `output`, `logs`, `completed`) is sent.
//!
//! The switches, in [`Behaviour`], which a test changes at any time with [`FakeReplicate::set`]:
//! - `output_shape`: one URL (`Single`), a list of two (`List`) or an object of URLs (`Object`);
//!   `output_urls`: URLs put in their place (at `169.254.169.254`, another local port, ...).
//! - `outcome`: `Succeed`, `Fail(error)`, or `NeverFinish` (processing until switched away);
//!   `step`: the time between two states (50 ms).
//! - `webhooks`: `Normal`; `Duplicate(n)`, each event n times at once with the same id; `Reorder`,
//!   a prediction's events held until it is terminal, then sent `completed` first; `Delay(d)`;
//!   `Drop`, none at all. `webhook_retries` (4), `webhook_backoff` (100 ms), `webhook_timeout`.
//! - `throttle_every: Some(n)`: every nth create answers 429 with `Retry-After:
//!   retry_after_secs` and creates nothing.
//! - `versions`: the model a bare version id belongs to, which decides its output's file type.
//!
//! A test reads what happened with [`FakeReplicate::predictions`], [`FakeReplicate::creates`] and
//! [`FakeReplicate::deliveries`]. Dropping the fake stops its server and every task it started.

mod api;
mod behaviour;
mod files;
mod lifecycle;
mod state;
#[cfg(test)]
mod tests;
mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

pub use behaviour::{Behaviour, Outcome, OutputShape, Webhooks};
use state::Shared;

/// A prediction's status, as Replicate spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Starting,
    Processing,
    Succeeded,
    Failed,
    Canceled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Starting => "starting",
            Status::Processing => "processing",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Canceled => "canceled",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Succeeded | Status::Failed | Status::Canceled)
    }
}

/// A webhook event, as named in `webhook_events_filter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Start,
    Output,
    Logs,
    Completed,
}

impl Event {
    pub const ALL: [Event; 4] = [Event::Start, Event::Output, Event::Logs, Event::Completed];

    pub fn as_str(self) -> &'static str {
        match self {
            Event::Start => "start",
            Event::Output => "output",
            Event::Logs => "logs",
            Event::Completed => "completed",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == name)
    }
}

/// A prediction as the fake saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub id: String,
    pub model: String,
    pub version: String,
    pub input: Value,
    pub webhook: Option<String>,
    pub events_filter: Vec<Event>,
    pub status: Status,
    pub output: Value,
    pub error: Option<String>,
    /// How many steps its lifecycle has taken (a `NeverFinish` prediction keeps counting).
    pub steps: usize,
    pub gets: usize,
    pub cancels: usize,
}

/// The creates answered so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Creates {
    /// Answered 201 (or 202 under `Prefer: wait`).
    pub created: usize,
    /// Answered 429.
    pub throttled: usize,
}

/// One attempt to deliver a webhook.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub prediction_id: String,
    pub webhook_id: String,
    pub event: Event,
    /// The prediction's status in the body.
    pub status: Status,
    pub answer: Answer,
    /// 1 for the first send, 2 for the first retry, ...
    pub attempt: usize,
}

/// What the receiver answered to a webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Status(u16),
    /// The request failed before an answer: refused, reset or timed out.
    Unreachable(String),
}

/// The running fake. Its server and tasks stop when it is dropped.
pub struct FakeReplicate {
    /// `http://127.0.0.1:PORT/v1`
    pub base: String,
    /// `127.0.0.1:PORT`
    pub origin: String,
    /// The bearer token every `/v1` call needs.
    pub token: String,
    shared: Arc<Shared>,
}

impl FakeReplicate {
    /// Starts the fake on a free port of the loopback address.
    pub async fn start() -> FakeReplicate {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the fake Replicate");
        let origin = listener.local_addr().expect("the fake Replicate's address").to_string();
        let shared = Arc::new(Shared::new(origin.clone()));
        let app = api::router(shared.clone());
        shared.spawn(async move {
            axum::serve(listener, app).await.expect("the fake Replicate serves");
        });
        FakeReplicate { base: format!("http://{origin}/v1"), origin, token: shared.token.clone(), shared }
    }

    /// Changes the behaviour from now on.
    pub fn set(&self, f: impl FnOnce(&mut Behaviour)) {
        f(&mut self.shared.behaviour.lock().unwrap());
    }

    /// Every prediction created, oldest first.
    pub fn predictions(&self) -> Vec<Recorded> {
        self.shared.book.lock().unwrap().predictions.iter().map(state::Prediction::recorded).collect()
    }

    pub fn prediction(&self, id: &str) -> Option<Recorded> {
        self.shared.book.lock().unwrap().find(id).map(state::Prediction::recorded)
    }

    /// The prediction object as the fake's API and webhooks give it now, to send a webhook of
    /// one's own (a benchmark's load, a forged or replayed callback).
    pub fn body(&self, id: &str) -> Option<Value> {
        self.shared.book.lock().unwrap().find(id).map(|p| p.to_json(&self.shared.origin))
    }

    pub fn creates(&self) -> Creates {
        self.shared.book.lock().unwrap().creates
    }

    /// Every webhook attempt, in the order their answers came.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.shared.book.lock().unwrap().deliveries.clone()
    }

    /// The `webhook-signature` value the fake would send for this id, timestamp and body, to
    /// forge or replay a webhook. Panics if `body` is not UTF-8, which Standard Webhooks requires.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        self.shared.signer.sign(id, timestamp, body).expect("a UTF-8 webhook body")
    }

    /// The signing secret, `whsec_<base64>`, as `/v1/webhooks/default/secret` gives it.
    pub fn secret(&self) -> String {
        self.shared.secret.clone()
    }

    /// Waits (up to 10 s) until the prediction is terminal.
    pub async fn wait_terminal(&self, id: &str) -> Recorded {
        crate::eventually(&format!("prediction {id} to end"), Duration::from_secs(10), || async {
            self.prediction(id).filter(|p| p.status.is_terminal())
        })
        .await
    }
}

impl Drop for FakeReplicate {
    fn drop(&mut self) {
        self.shared.tasks.lock().unwrap().abort_all();
    }
}
