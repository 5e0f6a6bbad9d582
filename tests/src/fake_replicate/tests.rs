//! The fake against real HTTP: reqwest as the client, and a receiver on port 0 that records
//! webhooks and checks their signatures with Standard Webhooks' own verifier.

use std::collections::HashMap;
use std::io::Cursor;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use image::AnimationDecoder;
use serde_json::{Value, json};
use standardwebhooks::Webhook;

use super::*;
use crate::eventually;

const DEADLINE: Duration = Duration::from_secs(10);

fn http() -> reqwest::Client {
    super::state::http_client()
}

/// Starts the fake with short steps, so a prediction ends in about 40 ms.
async fn fake() -> FakeReplicate {
    let fake = FakeReplicate::start().await;
    fake.set(|b| b.step = Duration::from_millis(10));
    fake
}

async fn post(fake: &FakeReplicate, path: &str, body: Value) -> reqwest::Response {
    http().post(format!("{}{path}", fake.base)).bearer_auth(&fake.token).json(&body).send().await.unwrap()
}

async fn create(fake: &FakeReplicate, path: &str, body: Value) -> Value {
    let response = post(fake, path, body).await;
    assert_eq!(response.status(), 201);
    response.json().await.unwrap()
}

async fn read(fake: &FakeReplicate, id: &str) -> Value {
    let response = http().get(format!("{}/predictions/{id}", fake.base)).bearer_auth(&fake.token).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn read_until_terminal(fake: &FakeReplicate, id: &str) -> Value {
    eventually(&format!("{id} to end"), DEADLINE, || async {
        let prediction = read(fake, id).await;
        matches!(prediction["status"].as_str(), Some("succeeded" | "failed" | "canceled")).then_some(prediction)
    })
    .await
}

fn urls_in(output: &Value) -> Vec<String> {
    match output {
        Value::String(url) => vec![url.clone()],
        Value::Array(items) => items.iter().flat_map(urls_in).collect(),
        Value::Object(fields) => fields.values().flat_map(urls_in).collect(),
        _ => Vec::new(),
    }
}

/// Downloads `url` (without a token) and decodes it by its content type, answering the type.
async fn fetch_and_decode(url: &str) -> String {
    let response = http().get(url).send().await.unwrap();
    assert_eq!(response.status(), 200, "{url}");
    let content_type = response.headers()["content-type"].to_str().unwrap().to_string();
    let length: usize = response.headers()["content-length"].to_str().unwrap().parse().unwrap();
    let bytes = response.bytes().await.unwrap();
    assert_eq!(bytes.len(), length, "{url}");
    match content_type.as_str() {
        "image/png" => {
            let picture = image::load_from_memory_with_format(&bytes, image::ImageFormat::Png).unwrap();
            assert_eq!((picture.width(), picture.height()), (64, 64));
        }
        "audio/wav" => {
            let wav = hound::WavReader::new(Cursor::new(bytes.to_vec())).unwrap();
            assert_eq!(wav.duration(), wav.spec().sample_rate, "a second of sound");
        }
        "image/gif" => {
            let decoder = image::codecs::gif::GifDecoder::new(Cursor::new(bytes.to_vec())).unwrap();
            let frames = decoder.into_frames().collect_frames().unwrap();
            assert!(frames.len() >= 2, "an animated GIF, got {} frame(s)", frames.len());
        }
        other => panic!("{url} served {other}"),
    }
    content_type
}

#[derive(Debug, Clone)]
struct Received {
    id: String,
    timestamp: i64,
    signature: String,
    content_type: String,
    verified: bool,
    raw: Bytes,
    body: Value,
}

#[derive(Clone)]
struct Inbox {
    got: Arc<Mutex<Vec<Received>>>,
    /// Answer 500 to this many more webhooks.
    fail_next: Arc<AtomicUsize>,
    verifier: Arc<Webhook>,
}

/// A webhook endpoint on port 0 that records every request, verified or not.
struct Receiver {
    url: String,
    inbox: Inbox,
    server: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// Verifies with the secret the fake's API gives, as CutX would fetch it.
    async fn start(fake: &FakeReplicate) -> Receiver {
        let response =
            http().get(format!("{}/webhooks/default/secret", fake.base)).bearer_auth(&fake.token).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let key: Value = response.json().await.unwrap();
        let secret = key["key"].as_str().unwrap();
        assert!(secret.starts_with("whsec_"), "{secret}");
        assert_eq!(secret, fake.secret());
        let inbox =
            Inbox { got: Arc::default(), fail_next: Arc::default(), verifier: Arc::new(Webhook::new(secret).unwrap()) };
        let app = axum::Router::new().route("/hook", axum::routing::post(receive)).with_state(inbox.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { url, inbox, server }
    }

    fn got(&self) -> Vec<Received> {
        self.inbox.got.lock().unwrap().clone()
    }

    async fn wait_for(&self, count: usize) -> Vec<Received> {
        eventually(&format!("{count} webhooks"), DEADLINE, || async {
            let got = self.got();
            (got.len() >= count).then_some(got)
        })
        .await
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn receive(State(inbox): State<Inbox>, headers: HeaderMap, raw: Bytes) -> StatusCode {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    inbox.got.lock().unwrap().push(Received {
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp").parse().unwrap_or_default(),
        signature: header("webhook-signature"),
        content_type: header("content-type"),
        verified: inbox.verifier.verify(&raw, &headers).is_ok(),
        body: serde_json::from_slice(&raw).unwrap_or(Value::Null),
        raw,
    });
    match inbox.fail_next.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)) {
        Ok(_) => StatusCode::INTERNAL_SERVER_ERROR,
        Err(_) => StatusCode::NO_CONTENT,
    }
}

fn statuses(got: &[Received]) -> Vec<&str> {
    got.iter().map(|r| r.body["status"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn predictions_by_version_and_by_official_model_succeed_with_real_files_in_every_shape() {
    let fake = fake().await;
    let sdxl = "39ed52f2a78e934b3ba6e2a89f5b1c712de7dfea535525255b1aa35c5565e08b";
    fake.set(|b| b.versions = HashMap::from([(sdxl.to_string(), "stability-ai/sdxl".to_string())]));
    let creates = [
        (
            "/predictions",
            json!({"version": sdxl, "input": {"prompt": "a red bike"}}),
            "stability-ai/sdxl",
            sdxl,
            "image/png",
        ),
        (
            "/predictions",
            json!({"version": "minimax/speech-02-turbo:0ab1c2", "input": {"text": "hello"}}),
            "minimax/speech-02-turbo",
            "0ab1c2",
            "audio/wav",
        ),
        (
            "/models/wan-video/wan-2.2-t2v-fast/predictions",
            json!({"input": {"prompt": "a bike ride"}}),
            "wan-video/wan-2.2-t2v-fast",
            "hidden",
            "image/gif",
        ),
        (
            "/models/black-forest-labs/flux-schnell/predictions",
            json!({"input": {"prompt": "a blue bike"}}),
            "black-forest-labs/flux-schnell",
            "hidden",
            "image/png",
        ),
    ];
    for shape in [OutputShape::Single, OutputShape::List, OutputShape::Object] {
        fake.set(|b| b.output_shape = shape);
        for (path, body, model, version, content_type) in &creates {
            let created = create(&fake, path, body.clone()).await;
            let id = created["id"].as_str().unwrap();
            assert!(id.len() >= 20 && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()), "{id}");
            assert_eq!(created["status"], "starting");
            assert_eq!(created["model"], *model);
            assert_eq!(created["version"], *version);
            assert_eq!(created["input"], body["input"]);
            assert_eq!(created["output"], Value::Null);
            assert_eq!(created["metrics"], json!({}));
            assert_eq!(created["urls"]["get"], format!("{}/predictions/{id}", fake.base));
            assert_eq!(created["urls"]["cancel"], format!("{}/predictions/{id}/cancel", fake.base));
            assert!(chrono::DateTime::parse_from_rfc3339(created["created_at"].as_str().unwrap()).is_ok());

            let done = read_until_terminal(&fake, id).await;
            assert_eq!(done["status"], "succeeded", "{done}");
            assert!(done["logs"].as_str().unwrap().contains("step 3/3"), "{done}");
            assert!(done["metrics"]["predict_time"].as_f64().unwrap() > 0.0, "{done}");
            assert!(done["completed_at"].is_string() && done["started_at"].is_string(), "{done}");
            let output = &done["output"];
            match shape {
                OutputShape::Single => assert!(output.is_string(), "{output}"),
                OutputShape::List => assert_eq!(output.as_array().map(Vec::len), Some(2), "{output}"),
                OutputShape::Object => assert!(output.is_object(), "{output}"),
            }
            let urls = urls_in(output);
            assert!(!urls.is_empty());
            let mut types = Vec::new();
            // A video's object also has a PNG thumbnail, checked below.
            for url in urls.iter().filter(|url| output.get("thumbnail") != Some(&json!(url))) {
                assert!(url.starts_with(&format!("http://{}/files/{id}/", fake.origin)), "{url}");
                types.push(fetch_and_decode(url).await);
            }
            assert!(types.iter().all(|t| t == content_type), "{model} in {shape:?}: {types:?}");
            if shape == OutputShape::Object && *content_type == "image/gif" {
                assert_eq!(fetch_and_decode(output["thumbnail"].as_str().unwrap()).await, "image/png");
            }
        }
    }
    let recorded = fake.predictions();
    assert_eq!(recorded.len(), 12);
    assert!(recorded.iter().all(|p| p.status == Status::Succeeded && p.gets > 0));
    assert_eq!(fake.creates(), Creates { created: 12, throttled: 0 });
}

#[tokio::test]
async fn output_urls_replace_the_output_in_its_shape() {
    let fake = fake().await;
    let urls = vec!["http://169.254.169.254/latest/meta-data".to_string(), "http://127.0.0.1:1/x.png".to_string()];
    let by_model = "/models/black-forest-labs/flux-schnell/predictions";
    for (shape, expected) in [
        (OutputShape::Single, json!(urls[0])),
        (OutputShape::List, json!(urls)),
        (OutputShape::Object, json!({"image": urls[0], "file_1": urls[1]})),
    ] {
        fake.set(|b| {
            b.output_shape = shape;
            b.output_urls = Some(urls.clone());
        });
        let created = create(&fake, by_model, json!({"input": {"prompt": "x"}})).await;
        let done = fake.wait_terminal(created["id"].as_str().unwrap()).await;
        assert_eq!(done.output, expected);
    }
}

#[tokio::test]
async fn webhooks_arrive_signed_and_completed_carries_the_terminal_status() {
    let fake = fake().await;
    let receiver = Receiver::start(&fake).await;
    let body = json!({"input": {"prompt": "x"}, "webhook": receiver.url});
    let by_model = "/models/black-forest-labs/flux-schnell/predictions";

    let created = create(&fake, by_model, body.clone()).await;
    let succeeded = fake.wait_terminal(created["id"].as_str().unwrap()).await;
    fake.set(|b| b.outcome = Outcome::Fail("CUDA out of memory".into()));
    let created = create(&fake, by_model, body).await;
    let failed = fake.wait_terminal(created["id"].as_str().unwrap()).await;
    // start, logs, logs, output, completed; and start, logs, logs, logs, completed.
    let got = receiver.wait_for(10).await;

    for webhook in &got {
        assert!(webhook.verified, "{webhook:?}");
        assert!(webhook.id.starts_with("msg_"), "{webhook:?}");
        assert_eq!(webhook.content_type, "application/json");
        assert_eq!(fake.sign(&webhook.id, webhook.timestamp, &webhook.raw), webhook.signature);
        assert!((chrono::Utc::now().timestamp() - webhook.timestamp).abs() < 60);
    }
    let ids: std::collections::HashSet<_> = got.iter().map(|w| w.id.clone()).collect();
    assert_eq!(ids.len(), 10, "one webhook-id per event");
    let completed = |id: &str| {
        let of: Vec<_> = got.iter().filter(|w| w.body["id"] == id).collect();
        assert_eq!(of.len(), 5, "{of:?}");
        assert!(of.iter().any(|w| w.body["status"] == "starting"));
        assert!(of.iter().any(|w| w.body["status"] == "processing" && !w.body["logs"].as_str().unwrap().is_empty()));
        let terminal: Vec<_> = of.iter().filter(|w| w.body["completed_at"].is_string()).collect();
        assert_eq!(terminal.len(), 1);
        terminal[0].body.clone()
    };
    let completed_ok = completed(&succeeded.id);
    assert_eq!(completed_ok["status"], "succeeded");
    assert_eq!(completed_ok["output"], succeeded.output);
    let completed_failed = completed(&failed.id);
    assert_eq!(completed_failed["status"], "failed");
    assert_eq!(completed_failed["error"], "CUDA out of memory");

    // The fake records a delivery once it is answered, a moment after the receiver saw it.
    let events = eventually("five answered deliveries", DEADLINE, || async {
        let events: Vec<Event> =
            fake.deliveries().iter().filter(|d| d.prediction_id == succeeded.id).map(|d| d.event).collect();
        (events.len() == 5).then_some(events)
    })
    .await;
    for event in Event::ALL {
        assert!(events.contains(&event), "{event:?} in {events:?}");
    }
}

#[tokio::test]
async fn a_receiver_answering_500_twice_gets_the_same_webhook_id_three_times() {
    let fake = fake().await;
    fake.set(|b| b.webhook_backoff = Duration::from_millis(20));
    let receiver = Receiver::start(&fake).await;
    receiver.inbox.fail_next.store(2, Ordering::SeqCst);
    let body = json!({"version": "abc", "input": {}, "webhook": receiver.url, "webhook_events_filter": ["completed"]});
    create(&fake, "/predictions", body).await;

    let got = receiver.wait_for(3).await;
    assert!(got.iter().all(|w| w.id == got[0].id && w.verified), "{got:?}");
    assert!(got.iter().all(|w| w.body["status"] == "succeeded"));
    let deliveries = eventually("the third answer to be recorded", DEADLINE, || async {
        Some(fake.deliveries()).filter(|d| d.len() == 3)
    })
    .await;
    let attempts: Vec<_> = deliveries.iter().map(|d| (d.attempt, d.answer.clone())).collect();
    assert_eq!(attempts, [(1, Answer::Status(500)), (2, Answer::Status(500)), (3, Answer::Status(204))]);
    assert!(deliveries.iter().all(|d| d.webhook_id == got[0].id && d.event == Event::Completed));
}

#[tokio::test]
async fn an_unreachable_receiver_is_retried_until_the_retries_run_out() {
    let fake = fake().await;
    fake.set(|b| {
        b.webhook_retries = 2;
        b.webhook_backoff = Duration::from_millis(10);
    });
    // Nothing listens on port 1.
    let body = json!({"version": "abc", "input": {}, "webhook": "http://127.0.0.1:1/hook", "webhook_events_filter": ["start"]});
    create(&fake, "/predictions", body).await;
    let deliveries =
        eventually("three attempts", DEADLINE, || async { Some(fake.deliveries()).filter(|d| d.len() == 3) }).await;
    assert!(deliveries.iter().all(|d| matches!(d.answer, Answer::Unreachable(_))), "{deliveries:?}");
    assert_eq!(deliveries.iter().map(|d| d.attempt).collect::<Vec<_>>(), [1, 2, 3]);
}

#[tokio::test]
async fn duplicate_3_sends_each_event_three_times_with_the_same_id() {
    let fake = fake().await;
    fake.set(|b| b.webhooks = Webhooks::Duplicate(3));
    let receiver = Receiver::start(&fake).await;
    create(&fake, "/predictions", json!({"version": "abc", "input": {}, "webhook": receiver.url})).await;

    let got = receiver.wait_for(15).await;
    let mut per_id: HashMap<&str, usize> = HashMap::new();
    for webhook in &got {
        assert!(webhook.verified);
        *per_id.entry(&webhook.id).or_default() += 1;
    }
    assert_eq!(per_id.len(), 5, "{per_id:?}");
    assert!(per_id.values().all(|&n| n == 3), "{per_id:?}");
    assert_eq!(statuses(&got).iter().filter(|&&s| s == "succeeded").count(), 3);
}

#[tokio::test]
async fn reorder_sends_completed_first_and_start_last() {
    let fake = fake().await;
    fake.set(|b| b.webhooks = Webhooks::Reorder);
    let receiver = Receiver::start(&fake).await;
    create(&fake, "/predictions", json!({"version": "abc", "input": {}, "webhook": receiver.url})).await;

    let got = receiver.wait_for(5).await;
    assert_eq!(statuses(&got), ["succeeded", "processing", "processing", "processing", "starting"]);
    let logs: Vec<usize> = got.iter().map(|w| w.body["logs"].as_str().unwrap().len()).collect();
    assert!(logs.windows(2).all(|pair| pair[0] >= pair[1]), "newest first: {logs:?}");
    assert!(got.iter().all(|w| w.verified));
}

#[tokio::test]
async fn delay_holds_each_webhook_back() {
    let fake = fake().await;
    fake.set(|b| b.webhooks = Webhooks::Delay(Duration::from_millis(300)));
    let receiver = Receiver::start(&fake).await;
    let body = json!({"version": "abc", "input": {}, "webhook": receiver.url, "webhook_events_filter": ["start"]});
    let sent = tokio::time::Instant::now();
    create(&fake, "/predictions", body).await;
    receiver.wait_for(1).await;
    assert!(sent.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn drop_sends_no_webhook() {
    let fake = fake().await;
    fake.set(|b| b.webhooks = Webhooks::Drop);
    let receiver = Receiver::start(&fake).await;
    let created = create(&fake, "/predictions", json!({"version": "abc", "input": {}, "webhook": receiver.url})).await;
    // Each webhook is decided when its event happens: once terminal, none is left to send.
    fake.wait_terminal(created["id"].as_str().unwrap()).await;
    assert!(fake.deliveries().is_empty());
    assert!(receiver.got().is_empty());
}

#[tokio::test]
async fn never_finish_stays_processing_until_released() {
    let fake = fake().await;
    fake.set(|b| b.outcome = Outcome::NeverFinish);
    let created = create(&fake, "/predictions", json!({"version": "abc", "input": {}})).await;
    let id = created["id"].as_str().unwrap();

    let stuck = eventually("ten steps", DEADLINE, || async { fake.prediction(id).filter(|p| p.steps >= 10) }).await;
    assert_eq!(stuck.status, Status::Processing);
    let read_back = read(&fake, id).await;
    assert_eq!(read_back["status"], "processing");
    assert_eq!(read_back["output"], Value::Null);
    assert!(read_back["logs"].as_str().unwrap().contains("step 3/3"));

    fake.set(|b| b.outcome = Outcome::Succeed);
    let done = fake.wait_terminal(id).await;
    assert_eq!(done.status, Status::Succeeded);
    assert!(!urls_in(&done.output).is_empty());
}

#[tokio::test]
async fn cancel_gives_canceled_and_a_completed_webhook() {
    let fake = fake().await;
    fake.set(|b| b.outcome = Outcome::NeverFinish);
    let receiver = Receiver::start(&fake).await;
    let body = json!({"version": "abc", "input": {}, "webhook": receiver.url, "webhook_events_filter": ["completed"]});
    let created = create(&fake, "/predictions", body).await;
    let id = created["id"].as_str().unwrap();
    eventually("processing", DEADLINE, || async { fake.prediction(id).filter(|p| p.status == Status::Processing) })
        .await;

    let canceled: Value = post(&fake, &format!("/predictions/{id}/cancel"), json!({})).await.json().await.unwrap();
    assert_eq!(canceled["status"], "canceled");
    assert!(canceled["completed_at"].is_string());
    let got = receiver.wait_for(1).await;
    assert_eq!(got[0].body["status"], "canceled");
    assert!(got[0].verified);

    fake.set(|b| b.outcome = Outcome::Succeed);
    let again = post(&fake, &format!("/predictions/{id}/cancel"), json!({})).await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.json::<Value>().await.unwrap()["completed_at"], canceled["completed_at"]);
    let steps = fake.prediction(id).unwrap().steps;
    // Another prediction's whole life is time enough for this one to have moved, had it not ended.
    let other = create(&fake, "/predictions", json!({"version": "x", "input": {}})).await;
    let other = fake.wait_terminal(other["id"].as_str().unwrap()).await;
    assert_eq!(other.status, Status::Succeeded);
    let recorded = fake.prediction(id).unwrap();
    assert_eq!((recorded.status, recorded.cancels, recorded.steps), (Status::Canceled, 2, steps));
    assert_eq!(read(&fake, id).await["status"], "canceled");
    assert_eq!(receiver.got().len(), 1, "a terminal prediction sends no second completed");
}

#[tokio::test]
async fn throttle_every_3_answers_429_with_retry_after_to_exactly_every_third_create() {
    let fake = fake().await;
    fake.set(|b| b.throttle_every = Some(3));
    let mut answers = Vec::new();
    for n in 0..9 {
        let response = post(&fake, "/predictions", json!({"version": "abc", "input": {"n": n}})).await;
        let status = response.status().as_u16();
        if status == 429 {
            assert_eq!(response.headers()["retry-after"], "1");
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["detail"], "Request was throttled. Expected available in 1 second.");
        }
        answers.push(status);
    }
    assert_eq!(answers, [201, 201, 429, 201, 201, 429, 201, 201, 429]);
    assert_eq!(fake.creates(), Creates { created: 6, throttled: 3 });
    let inputs: Vec<_> = fake.predictions().iter().map(|p| p.input["n"].as_i64().unwrap()).collect();
    assert_eq!(inputs, [0, 1, 3, 4, 6, 7], "a throttled create creates nothing");
}

#[tokio::test]
async fn a_call_without_the_bearer_token_is_401() {
    let fake = fake().await;
    let client = http();
    let no_token = client.post(format!("{}/predictions", fake.base)).json(&json!({"version": "abc", "input": {}}));
    let wrong_token = client.get(format!("{}/webhooks/default/secret", fake.base)).bearer_auth("r8_wrong");
    let no_token_read = client.get(format!("{}/predictions/abc", fake.base));
    for request in [no_token, wrong_token, no_token_read] {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401);
        let body: Value = response.json().await.unwrap();
        assert!(body["detail"].is_string(), "{body}");
    }
    assert!(fake.predictions().is_empty());
}

#[tokio::test]
async fn an_unknown_prediction_is_404_and_a_bad_body_is_422() {
    let fake = fake().await;
    let unknown =
        http().get(format!("{}/predictions/nosuchid", fake.base)).bearer_auth(&fake.token).send().await.unwrap();
    assert_eq!(unknown.status(), 404);
    assert_eq!(unknown.json::<Value>().await.unwrap(), json!({"detail": "Not found."}));
    let cancel_unknown = post(&fake, "/predictions/nosuchid/cancel", json!({})).await;
    assert_eq!(cancel_unknown.status(), 404);

    for (path, body) in [
        ("/predictions", json!({"input": {}})),
        ("/predictions", json!({"version": "abc"})),
        ("/predictions", json!({"version": "abc", "input": "a string"})),
        ("/predictions", json!({"version": "abc", "input": {}, "webhook": "not a url"})),
        ("/predictions", json!({"version": "abc", "input": {}, "webhook_events_filter": ["finished"]})),
        ("/models/a/b/predictions", json!([1, 2])),
    ] {
        let response = post(&fake, path, body.clone()).await;
        assert_eq!(response.status(), 422, "{body}");
        assert!(response.json::<Value>().await.unwrap()["detail"].is_string());
    }
    let not_json = http()
        .post(format!("{}/predictions", fake.base))
        .bearer_auth(&fake.token)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 422);
    assert!(fake.predictions().is_empty());
}

#[tokio::test]
async fn prefer_wait_holds_the_create_until_the_prediction_ends() {
    let fake = fake().await;
    let waited = http()
        .post(format!("{}/models/minimax/speech-02-turbo/predictions", fake.base))
        .bearer_auth(&fake.token)
        .header("Prefer", "wait=5")
        .json(&json!({"input": {"text": "hi"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(waited.status(), 201);
    let done: Value = waited.json().await.unwrap();
    assert_eq!(done["status"], "succeeded");
    assert_eq!(fetch_and_decode(done["output"].as_str().unwrap()).await, "audio/wav");

    fake.set(|b| b.outcome = Outcome::NeverFinish);
    let still_running = http()
        .post(format!("{}/predictions", fake.base))
        .bearer_auth(&fake.token)
        .header("Prefer", "wait=1")
        .json(&json!({"version": "abc", "input": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(still_running.status(), 202);
    assert_eq!(still_running.json::<Value>().await.unwrap()["status"], "processing");
}

#[tokio::test]
async fn the_endless_file_never_ends_and_the_redirect_points_where_asked() {
    let fake = fake().await;
    let mut endless = http().get(format!("http://{}/files/endless", fake.origin)).send().await.unwrap();
    assert_eq!(endless.status(), 200);
    assert!(endless.headers().get("content-length").is_none());
    let mut read = 0;
    while read < 4 * 1024 * 1024 {
        read += endless.chunk().await.unwrap().expect("more bytes").len();
    }

    let to = "http://169.254.169.254/latest/meta-data/";
    let redirect_url =
        url::Url::parse_with_params(&format!("http://{}/files/redirect", fake.origin), [("to", to)]).unwrap();
    let redirect = http().get(redirect_url).send().await.unwrap();
    assert_eq!(redirect.status(), 302);
    assert_eq!(redirect.headers()["location"], to);

    let missing = http().get(format!("http://{}/files/nosuchid/0.png", fake.origin)).send().await.unwrap();
    assert_eq!(missing.status(), 404);
}
