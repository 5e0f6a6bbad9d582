//! What the fake remembers, behind one lock: its predictions, counts, deliveries and files. A
//! change to a prediction goes through [`Shared::change`], which refuses to touch a terminal one.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use base64::Engine;
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use rand::Rng;
use serde_json::{Value, json};
use standardwebhooks::Webhook;
use tokio::task::JoinSet;

use super::webhooks::{self, Pending};
use super::{Behaviour, Creates, Delivery, Event, Recorded, Status};

pub(super) struct Shared {
    pub origin: String,
    pub token: String,
    pub secret: String,
    pub signer: Webhook,
    pub behaviour: Mutex<Behaviour>,
    pub book: Mutex<Book>,
    pub tasks: Mutex<JoinSet<()>>,
    /// Sends webhooks; follows no redirect, as Replicate does not.
    pub http: reqwest::Client,
}

#[derive(Default)]
pub(super) struct Book {
    pub predictions: Vec<Prediction>,
    /// Every create that passed the token check, throttled or not.
    pub create_calls: usize,
    pub creates: Creates,
    pub deliveries: Vec<Delivery>,
    /// By path under `/files/`: `{id}/{n}.{ext}`.
    pub files: HashMap<String, File>,
}

impl Book {
    pub fn find(&self, id: &str) -> Option<&Prediction> {
        self.predictions.iter().find(|p| p.id == id)
    }

    pub fn find_mut(&mut self, id: &str) -> Option<&mut Prediction> {
        self.predictions.iter_mut().find(|p| p.id == id)
    }
}

#[derive(Clone)]
pub(super) struct File {
    pub content_type: &'static str,
    pub bytes: Bytes,
}

pub(super) struct Prediction {
    pub id: String,
    pub model: String,
    pub version: String,
    pub input: Value,
    pub webhook: Option<String>,
    pub events_filter: Vec<Event>,
    pub status: Status,
    pub logs: String,
    pub output: Value,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub steps: usize,
    pub gets: usize,
    pub cancels: usize,
    /// Events held back under `Webhooks::Reorder` until the prediction is terminal.
    pub held: Vec<Pending>,
}

impl Prediction {
    pub fn new(id: String, model: String, version: String, input: Value) -> Self {
        Self {
            id,
            model,
            version,
            input,
            webhook: None,
            events_filter: Event::ALL.to_vec(),
            status: Status::Starting,
            logs: String::new(),
            output: Value::Null,
            error: None,
            created_at: Utc::now(),
            started_at: None,
            completed_at: None,
            steps: 0,
            gets: 0,
            cancels: 0,
            held: Vec::new(),
        }
    }

    /// The prediction object of Replicate's API.
    pub fn to_json(&self, origin: &str) -> Value {
        let time = |t: &DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Micros, true);
        let seconds = |from: DateTime<Utc>, to: DateTime<Utc>| (to - from).num_microseconds().unwrap_or(0) as f64 / 1e6;
        let mut metrics = serde_json::Map::new();
        if let Some(completed) = self.completed_at {
            if let Some(started) = self.started_at {
                metrics.insert("predict_time".into(), json!(seconds(started, completed)));
            }
            metrics.insert("total_time".into(), json!(seconds(self.created_at, completed)));
        }
        let get = format!("http://{origin}/v1/predictions/{}", self.id);
        json!({
            "id": self.id,
            "model": self.model,
            "version": self.version,
            "input": self.input,
            "logs": self.logs,
            "output": self.output,
            "data_removed": false,
            "error": self.error,
            "status": self.status.as_str(),
            "source": "api",
            "created_at": time(&self.created_at),
            "started_at": self.started_at.as_ref().map(time),
            "completed_at": self.completed_at.as_ref().map(time),
            "metrics": metrics,
            "webhook": self.webhook,
            "webhook_events_filter": self.events_filter.iter().map(|e| e.as_str()).collect::<Vec<_>>(),
            "urls": {"get": get, "cancel": format!("{get}/cancel")},
        })
    }

    pub fn recorded(&self) -> Recorded {
        Recorded {
            id: self.id.clone(),
            model: self.model.clone(),
            version: self.version.clone(),
            input: self.input.clone(),
            webhook: self.webhook.clone(),
            events_filter: self.events_filter.clone(),
            status: self.status,
            output: self.output.clone(),
            error: self.error.clone(),
            steps: self.steps,
            gets: self.gets,
            cancels: self.cancels,
        }
    }
}

impl Shared {
    pub fn new(origin: String) -> Self {
        let key: [u8; 32] = rand::rng().random();
        let secret = format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(key));
        let signer = Webhook::new(&secret).expect("a well-formed webhook secret");
        Self {
            origin,
            token: format!("r8_{}", random_id(37)),
            secret,
            signer,
            behaviour: Mutex::new(Behaviour::default()),
            book: Mutex::new(Book::default()),
            tasks: Mutex::new(JoinSet::new()),
            http: http_client(),
        }
    }

    pub fn behaviour(&self) -> Behaviour {
        self.behaviour.lock().unwrap().clone()
    }

    /// Runs `task` until it ends or the fake is dropped.
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let mut tasks = self.tasks.lock().unwrap();
        while tasks.try_join_next().is_some() {}
        tasks.spawn(task);
    }

    /// Applies `f` to a prediction that is not terminal yet and sends the webhook of the event
    /// it names, if any. The webhook is decided under the same lock as the change, so a cancel
    /// cannot slip between an event and the decision to hold it back.
    pub fn change(self: &Arc<Self>, id: &str, f: impl FnOnce(&mut Prediction) -> Option<Event>) -> Result<(), Ended> {
        let mut book = self.book.lock().unwrap();
        let prediction = book.find_mut(id).filter(|p| !p.status.is_terminal()).ok_or(Ended)?;
        if let Some(event) = f(prediction) {
            webhooks::dispatch(self, prediction, event);
        }
        Ok(())
    }
}

/// The prediction is unknown or already terminal: nothing changes it any more.
pub(super) struct Ended;

/// A client that follows no redirect, as Replicate's webhook sender does not.
pub(super) fn http_client() -> reqwest::Client {
    cutx_platform::fetch::install_tls_provider();
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("an HTTP client")
}

/// Lowercase letters and digits, like Replicate's prediction ids.
pub(super) fn random_id(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}
