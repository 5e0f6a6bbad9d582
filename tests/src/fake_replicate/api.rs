//! The `/v1` API: bearer token on every call, creates (throttled every Nth when asked), reads,
//! cancels and the webhook secret, with Replicate's status codes and `{"detail": ...}` errors.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use serde_json::{Value, json};

use super::state::{Prediction, Shared, random_id};
use super::{Behaviour, Event, Status, files, lifecycle};

pub(super) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/predictions", post(create_by_version))
        .route("/v1/models/{owner}/{name}/predictions", post(create_by_model))
        .route("/v1/predictions/{id}", get(read))
        .route("/v1/predictions/{id}/cancel", post(cancel))
        .route("/v1/webhooks/default/secret", get(secret))
        .route_layer(middleware::from_fn_with_state(shared.clone(), require_token))
        .merge(files::router())
        .fallback(async || not_found())
        .with_state(shared)
}

fn detail(status: StatusCode, detail: &str) -> Response {
    (status, axum::Json(json!({"detail": detail}))).into_response()
}

fn not_found() -> Response {
    detail(StatusCode::NOT_FOUND, "Not found.")
}

async fn require_token(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let Some(given) = request.headers().get(header::AUTHORIZATION) else {
        return detail(StatusCode::UNAUTHORIZED, "Authentication credentials were not provided.");
    };
    if given.as_bytes() != format!("Bearer {}", shared.token).as_bytes() {
        return detail(StatusCode::UNAUTHORIZED, "Invalid token.");
    }
    next.run(request).await
}

/// A create's body, checked.
struct Create {
    model: String,
    version: String,
    input: Value,
    webhook: Option<String>,
    events_filter: Vec<Event>,
}

impl Create {
    /// `model` is the official model the path names, or `None` when the body names a version.
    fn parse(body: &[u8], model: Option<String>, behaviour: &Behaviour) -> Result<Self, String> {
        let body: Value = serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
        let Value::Object(mut body) = body else { return Err("the body must be a JSON object".into()) };
        let input = match body.remove("input") {
            Some(input @ Value::Object(_)) => input,
            Some(_) => return Err("input: must be an object".into()),
            None => return Err("input: is required".into()),
        };
        let (model, version) = match model {
            Some(model) => (model, "hidden".to_string()),
            None => match body.remove("version") {
                Some(Value::String(version)) if !version.is_empty() => Self::model_of(version, behaviour),
                _ => return Err("version: is required and must be a string".into()),
            },
        };
        let webhook = match body.remove("webhook") {
            None | Some(Value::Null) => None,
            Some(Value::String(url)) => match url::Url::parse(&url) {
                Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => Some(url),
                _ => return Err(format!("webhook: {url:?} is not an http(s) URL")),
            },
            Some(_) => return Err("webhook: must be a string".into()),
        };
        let events_filter = match body.remove("webhook_events_filter") {
            None | Some(Value::Null) => Event::ALL.to_vec(),
            Some(Value::Array(names)) => {
                let mut events = Vec::new();
                for name in &names {
                    let event = name.as_str().and_then(Event::parse).ok_or_else(|| {
                        format!("webhook_events_filter: {name} is not one of start, output, logs, completed")
                    })?;
                    if !events.contains(&event) {
                        events.push(event);
                    }
                }
                events
            }
            Some(_) => return Err("webhook_events_filter: must be a list".into()),
        };
        Ok(Self { model, version, input, webhook, events_filter })
    }

    /// `owner/name:version`, `owner/name`, or a bare version id looked up in `versions`.
    fn model_of(version: String, behaviour: &Behaviour) -> (String, String) {
        if let Some((model, id)) = version.split_once(':') {
            return (model.to_string(), id.to_string());
        }
        if version.contains('/') {
            return (version, "hidden".to_string());
        }
        let model = behaviour.versions.get(&version).cloned().unwrap_or_else(|| "fake/image-model".to_string());
        (model, version)
    }
}

async fn create_by_version(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    create(shared, &headers, &body, None).await
}

async fn create_by_model(
    State(shared): State<Arc<Shared>>,
    Path((owner, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    create(shared, &headers, &body, Some(format!("{owner}/{name}"))).await
}

async fn create(shared: Arc<Shared>, headers: &HeaderMap, body: &[u8], model: Option<String>) -> Response {
    let behaviour = shared.behaviour();
    {
        let mut book = shared.book.lock().unwrap();
        book.create_calls += 1;
        if behaviour.throttle_every.is_some_and(|every| every > 0 && book.create_calls.is_multiple_of(every)) {
            book.creates.throttled += 1;
            drop(book);
            let mut answer =
                detail(StatusCode::TOO_MANY_REQUESTS, "Request was throttled. Expected available in 1 second.");
            answer.headers_mut().insert(header::RETRY_AFTER, behaviour.retry_after_secs.into());
            return answer;
        }
    }
    let Create { model, version, input, webhook, events_filter } = match Create::parse(body, model, &behaviour) {
        Ok(create) => create,
        Err(why) => return detail(StatusCode::UNPROCESSABLE_ENTITY, &why),
    };
    let id = random_id(26);
    let mut prediction = Prediction::new(id.clone(), model.clone(), version, input);
    prediction.webhook = webhook;
    prediction.events_filter = events_filter;
    {
        let mut book = shared.book.lock().unwrap();
        book.predictions.push(prediction);
        book.creates.created += 1;
    }
    let _ = shared.change(&id, |_| Some(Event::Start));
    shared.spawn(lifecycle::run(shared.clone(), id.clone(), model));

    let mut status = StatusCode::CREATED;
    if let Some(wait) = prefer_wait(headers) {
        let until = tokio::time::Instant::now() + wait;
        while !is_terminal(&shared, &id) && tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if !is_terminal(&shared, &id) {
            status = StatusCode::ACCEPTED;
        }
    }
    let object = shared.book.lock().unwrap().find(&id).map(|p| p.to_json(&shared.origin));
    (status, axum::Json(object)).into_response()
}

/// `Prefer: wait` (60 s) or `Prefer: wait=N`, N clamped to 1..=60.
fn prefer_wait(headers: &HeaderMap) -> Option<Duration> {
    let prefer = headers.get("prefer")?.to_str().ok()?;
    let wait = prefer.split(',').map(str::trim).find(|p| p.starts_with("wait"))?;
    let seconds = match wait.strip_prefix("wait=") {
        Some(n) => n.trim().parse::<u64>().ok()?.clamp(1, 60),
        None if wait == "wait" => 60,
        None => return None,
    };
    Some(Duration::from_secs(seconds))
}

fn is_terminal(shared: &Shared, id: &str) -> bool {
    shared.book.lock().unwrap().find(id).is_some_and(|p| p.status.is_terminal())
}

async fn read(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let mut book = shared.book.lock().unwrap();
    let Some(prediction) = book.find_mut(&id) else { return not_found() };
    prediction.gets += 1;
    axum::Json(prediction.to_json(&shared.origin)).into_response()
}

async fn cancel(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    match shared.book.lock().unwrap().find_mut(&id) {
        Some(prediction) => prediction.cancels += 1,
        None => return not_found(),
    }
    // A terminal prediction refuses the change and is answered as it is.
    let _ = shared.change(&id, |p| {
        p.status = Status::Canceled;
        p.completed_at = Some(Utc::now());
        Some(Event::Completed)
    });
    let object = shared.book.lock().unwrap().find(&id).map(|p| p.to_json(&shared.origin));
    axum::Json(object).into_response()
}

async fn secret(State(shared): State<Arc<Shared>>) -> Response {
    axum::Json(json!({"key": shared.secret})).into_response()
}
