//! The client against a fake Replicate: a real HTTP server on 127.0.0.1 that answers as
//! Replicate's API documents, from a script each test writes, and records what it received.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use cutx_platform::fetch::{FetchPolicy, GuardedClient};
use cutx_platform::secret::Secret;
use cutx_replicate::{
    ModelRef, PredictionStatus, Replicate, ReplicateConfig, ReplicateError, WebhookEvent, WebhookTarget,
};
use serde_json::{Value, json};

const TOKEN: &str = "r8_test_token_do_not_print";
const VERSION: &str = "5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa";

#[derive(Debug, Clone)]
struct Received {
    method: Method,
    path: String,
    authorization: Option<String>,
    content_type: Option<String>,
    body: Option<Value>,
}

struct Answer {
    status: u16,
    retry_after: Option<&'static str>,
    body: Value,
}

fn answer(status: u16, body: Value) -> Answer {
    Answer { status, retry_after: None, body }
}

fn throttled(retry_after: &'static str) -> Answer {
    Answer {
        status: 429,
        retry_after: Some(retry_after),
        body: json!({"detail": "Request was throttled. Expected available in 1 second."}),
    }
}

fn prediction(id: &str, status: &str) -> Value {
    json!({
        "id": id,
        "model": "black-forest-labs/flux-1.1-pro",
        "version": "dp-4d0bcc010b3049749a251855f12800be",
        "input": {"prompt": "a red shoe"},
        "logs": "",
        "output": null,
        "error": null,
        "status": status,
        "created_at": "2025-01-01T00:00:00.000Z",
        "urls": {
            "get": format!("https://api.replicate.com/v1/predictions/{id}"),
            "cancel": format!("https://api.replicate.com/v1/predictions/{id}/cancel")
        }
    })
}

#[derive(Clone, Default)]
struct Fake {
    received: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<VecDeque<Answer>>>,
    base_url: String,
}

impl Fake {
    /// Answers from `script` in order, then 201 with a starting prediction.
    async fn start(script: Vec<Answer>) -> Self {
        Self::start_dropping(0, script).await
    }

    /// Like [`Fake::start`], after closing the first `dropped` connections unanswered.
    async fn start_dropping(dropped: usize, script: Vec<Answer>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake = Fake {
            script: Arc::new(Mutex::new(script.into())),
            base_url: format!("http://{}/v1", listener.local_addr().unwrap()),
            ..Fake::default()
        };
        let app = axum::Router::new().fallback(respond).with_state(fake.clone());
        tokio::spawn(async move {
            for _ in 0..dropped {
                drop(listener.accept().await.unwrap());
            }
            axum::serve(listener, app).await.unwrap()
        });
        fake
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    fn client(&self) -> Replicate {
        self.client_with(|_| {})
    }

    fn client_with(&self, tweak: impl FnOnce(&mut ReplicateConfig)) -> Replicate {
        let mut policy = FetchPolicy::default();
        policy.allow_origin_of(&self.base_url).unwrap();
        let mut config = ReplicateConfig::new(Secret::new(TOKEN.to_string()));
        config.base_url = self.base_url.clone();
        tweak(&mut config);
        Replicate::new(config, GuardedClient::new(policy).unwrap())
    }
}

async fn respond(State(fake): State<Fake>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let header = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_string());
    fake.received.lock().unwrap().push(Received {
        method,
        path: uri.path().to_string(),
        authorization: header("authorization"),
        content_type: header("content-type"),
        body: (!body.is_empty()).then(|| serde_json::from_slice(&body).unwrap()),
    });
    let next = fake.script.lock().unwrap().pop_front();
    let Answer { status, retry_after, body } = next.unwrap_or_else(|| answer(201, prediction("p1", "starting")));
    let mut response = (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response();
    if let Some(seconds) = retry_after {
        response.headers_mut().insert("retry-after", seconds.parse().unwrap());
    }
    response
}

fn official(model: &str) -> ModelRef {
    model.parse().unwrap()
}

#[tokio::test]
async fn a_create_by_version_posts_the_version_input_and_webhook_with_the_bearer_token() {
    let fake = Fake::start(vec![]).await;
    let model: ModelRef = format!("stability-ai/sdxl:{VERSION}").parse().unwrap();
    let webhook = WebhookTarget {
        url: "https://cutx.test/webhooks/replicate".into(),
        events: vec![WebhookEvent::Start, WebhookEvent::Output, WebhookEvent::Logs, WebhookEvent::Completed],
    };

    let created =
        fake.client().create(&model, json!({"prompt": "a red shoe", "num_outputs": 1}), Some(&webhook)).await.unwrap();

    assert_eq!(created.id, "p1");
    assert_eq!(created.status, PredictionStatus::Starting);
    let [request] = fake.received().try_into().unwrap();
    assert_eq!(request.method, Method::POST);
    assert_eq!(request.path, "/v1/predictions");
    assert_eq!(request.authorization.as_deref(), Some("Bearer r8_test_token_do_not_print"));
    assert_eq!(request.content_type.as_deref(), Some("application/json"));
    assert_eq!(
        request.body,
        Some(json!({
            "version": format!("stability-ai/sdxl:{VERSION}"),
            "input": {"prompt": "a red shoe", "num_outputs": 1},
            "webhook": "https://cutx.test/webhooks/replicate",
            "webhook_events_filter": ["start", "output", "logs", "completed"]
        }))
    );
}

#[tokio::test]
async fn a_create_of_an_official_model_posts_to_the_models_predictions_without_a_version() {
    let fake = Fake::start(vec![]).await;
    let webhook =
        WebhookTarget { url: "https://cutx.test/webhooks/replicate".into(), events: vec![WebhookEvent::Completed] };

    fake.client()
        .create(&official("black-forest-labs/flux-1.1-pro"), json!({"prompt": "a red shoe"}), Some(&webhook))
        .await
        .unwrap();

    let [request] = fake.received().try_into().unwrap();
    assert_eq!(request.method, Method::POST);
    assert_eq!(request.path, "/v1/models/black-forest-labs/flux-1.1-pro/predictions");
    assert_eq!(request.authorization.as_deref(), Some("Bearer r8_test_token_do_not_print"));
    assert_eq!(request.content_type.as_deref(), Some("application/json"));
    assert_eq!(
        request.body,
        Some(json!({
            "input": {"prompt": "a red shoe"},
            "webhook": "https://cutx.test/webhooks/replicate",
            "webhook_events_filter": ["completed"]
        }))
    );
}

#[tokio::test]
async fn a_create_without_a_webhook_sends_only_the_input_and_a_bare_version_as_it_is() {
    let fake = Fake::start(vec![]).await;

    fake.client().create(&VERSION.parse().unwrap(), json!({"text": "hi"}), None).await.unwrap();
    let no_filter = WebhookTarget { url: "https://cutx.test/hook".into(), events: vec![] };
    fake.client().create(&official("minimax/speech-02-turbo"), json!({"text": "hi"}), Some(&no_filter)).await.unwrap();

    let [by_version, no_events] = fake.received().try_into().unwrap();
    assert_eq!(by_version.body, Some(json!({"version": VERSION, "input": {"text": "hi"}})));
    assert_eq!(no_events.body, Some(json!({"input": {"text": "hi"}, "webhook": "https://cutx.test/hook"})));
}

#[tokio::test]
async fn a_create_answered_202_still_running_is_a_success() {
    let fake = Fake::start(vec![answer(202, prediction("p2", "processing"))]).await;

    let created = fake.client().create(&official("luma/reframe-video"), json!({}), None).await.unwrap();

    assert_eq!((created.id.as_str(), created.status), ("p2", PredictionStatus::Processing));
}

#[tokio::test]
async fn a_throttled_create_waits_out_retry_after_and_succeeds_on_the_third_attempt() {
    let fake = Fake::start(vec![throttled("1"), throttled("1")]).await;
    let started = Instant::now();

    let created = fake.client().create(&official("black-forest-labs/flux-1.1-pro"), json!({}), None).await.unwrap();

    let elapsed = started.elapsed();
    assert_eq!(created.id, "p1");
    assert_eq!(fake.received().len(), 3);
    assert!(elapsed >= Duration::from_millis(1900), "retried after {elapsed:?}");
}

#[tokio::test]
async fn a_create_answered_500_is_not_sent_again_and_is_not_permanent() {
    let fake = Fake::start(vec![answer(500, json!({"detail": "Internal server error"}))]).await;

    let error = fake.client().create(&official("black-forest-labs/flux-1.1-pro"), json!({}), None).await.unwrap_err();

    assert!(matches!(error, ReplicateError::Unavailable { status: 500 }), "{error:?}");
    assert!(!error.is_permanent());
    assert_eq!(fake.received().len(), 1);
}

#[tokio::test]
async fn a_create_answered_422_is_refused_for_good() {
    let problem =
        json!({"title": "Input validation failed", "detail": "- input.prompt: Field required", "status": 422});
    let fake = Fake::start(vec![answer(422, problem)]).await;

    let error = fake.client().create(&official("black-forest-labs/flux-1.1-pro"), json!({}), None).await.unwrap_err();

    match &error {
        ReplicateError::Refused { status: 422, detail } => assert_eq!(detail, "- input.prompt: Field required"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(error.is_permanent());
    assert_eq!(fake.received().len(), 1);
}

#[tokio::test]
async fn a_create_throttled_on_every_attempt_is_throttled_with_the_last_retry_after() {
    let fake = Fake::start(vec![throttled("0"), throttled("0"), throttled("0"), throttled("0")]).await;

    let client = fake.client_with(|config| config.max_attempts = 3);
    let error = client.create(&official("black-forest-labs/flux-1.1-pro"), json!({}), None).await.unwrap_err();

    assert!(matches!(error, ReplicateError::Throttled { retry_after: Some(wait) } if wait.is_zero()), "{error:?}");
    assert!(!error.is_permanent());
    assert_eq!(fake.received().len(), 3);
}

#[tokio::test]
async fn a_get_answered_503_then_200_succeeds() {
    let fake =
        Fake::start(vec![answer(503, json!({"detail": "unavailable"})), answer(200, prediction("p1", "succeeded"))])
            .await;

    let prediction = fake.client().get("p1").await.unwrap();

    assert_eq!(prediction.status, PredictionStatus::Succeeded);
    let received = fake.received();
    assert_eq!(received.len(), 2);
    for request in received {
        assert_eq!((request.method, request.path.as_str()), (Method::GET, "/v1/predictions/p1"));
        assert_eq!(request.authorization.as_deref(), Some("Bearer r8_test_token_do_not_print"));
        assert_eq!(request.body, None);
    }
}

#[tokio::test]
async fn a_get_whose_connection_broke_is_tried_again() {
    let fake = Fake::start_dropping(1, vec![answer(200, prediction("p1", "processing"))]).await;

    let prediction = fake.client().get("p1").await.unwrap();

    assert_eq!(prediction.status, PredictionStatus::Processing);
    assert_eq!(fake.received().len(), 1);
}

#[tokio::test]
async fn a_create_whose_connection_broke_is_not_sent_again() {
    let fake = Fake::start_dropping(1, vec![]).await;

    let error = fake.client().create(&official("black-forest-labs/flux-1.1-pro"), json!({}), None).await.unwrap_err();

    assert!(matches!(error, ReplicateError::Fetch(_)), "{error:?}");
    assert!(!error.is_permanent());
    assert!(fake.received().is_empty());
}

#[tokio::test]
async fn a_get_answered_404_is_refused() {
    let fake = Fake::start(vec![answer(404, json!({"detail": "Not found."}))]).await;

    let error = fake.client().get("missing").await.unwrap_err();

    assert!(matches!(&error, ReplicateError::Refused { status: 404, detail } if detail == "Not found."), "{error:?}");
    assert!(error.is_permanent());
    assert_eq!(fake.received().len(), 1);
}

#[tokio::test]
async fn a_get_keeps_answering_5xx_until_its_attempts_run_out() {
    let fake = Fake::start((0..4).map(|_| answer(502, json!({}))).collect()).await;

    let error = fake.client_with(|config| config.max_attempts = 3).get("p1").await.unwrap_err();

    assert!(matches!(error, ReplicateError::Unavailable { status: 502 }), "{error:?}");
    assert_eq!(fake.received().len(), 3);
}

#[tokio::test]
async fn a_prediction_id_that_would_leave_the_predictions_path_is_never_sent() {
    let fake = Fake::start(vec![]).await;

    let error = fake.client().get("../webhooks/default/secret").await.unwrap_err();

    assert!(matches!(error, ReplicateError::InvalidId { .. }), "{error:?}");
    assert!(fake.received().is_empty());
}

#[tokio::test]
async fn a_cancel_posts_to_the_predictions_cancel_path() {
    let fake = Fake::start(vec![answer(200, prediction("p1", "canceled"))]).await;

    let canceled = fake.client().cancel("p1").await.unwrap();

    assert_eq!(canceled.status, PredictionStatus::Canceled);
    let [request] = fake.received().try_into().unwrap();
    assert_eq!((request.method, request.path.as_str()), (Method::POST, "/v1/predictions/p1/cancel"));
    assert_eq!(request.authorization.as_deref(), Some("Bearer r8_test_token_do_not_print"));
}

#[tokio::test]
async fn the_webhook_secret_is_read_from_the_default_webhooks_secret() {
    let key = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let fake = Fake::start(vec![answer(200, json!({"key": key}))]).await;

    let secret = fake.client().webhook_secret().await.unwrap();

    assert_eq!(secret.expose(), key);
    assert_eq!(format!("{secret:?}"), "[redacted]");
    let [request] = fake.received().try_into().unwrap();
    assert_eq!((request.method, request.path.as_str()), (Method::GET, "/v1/webhooks/default/secret"));
}

#[tokio::test]
async fn an_unauthorized_answer_never_shows_the_token() {
    let fake = Fake::start(vec![answer(401, json!({"detail": format!("Invalid token {TOKEN}")}))]).await;
    let client = fake.client();

    let error = client.get("p1").await.unwrap_err();

    assert!(matches!(error, ReplicateError::Refused { status: 401, .. }), "{error:?}");
    assert!(error.is_permanent());
    for shown in [format!("{error}"), format!("{error:?}"), format!("{client:?}")] {
        assert!(!shown.contains(TOKEN), "{shown}");
    }
}

#[tokio::test]
async fn a_burst_of_creates_waits_for_the_client_side_rate_limit() {
    let fake = Fake::start(vec![]).await;
    // Two a second: a second's worth goes at once, the rest every half second.
    let client = fake.client_with(|config| config.creates_per_minute = 120.try_into().unwrap());
    let started = Instant::now();

    let mut creates = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let client = client.clone();
        creates.spawn(async move { client.create(&official("black-forest-labs/flux-1.1-pro"), json!({}), None).await });
    }
    while let Some(created) = creates.join_next().await {
        created.unwrap().unwrap();
    }

    let elapsed = started.elapsed();
    assert_eq!(fake.received().len(), 6);
    assert!(elapsed >= Duration::from_millis(1500), "6 creates at 120 a minute took {elapsed:?}");
}
