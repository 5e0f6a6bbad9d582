//! Stripe for the tests: localstripe (a third-party fake of Stripe's API, run on loopback) for
//! everything it serves, and a thin fake of our own in front of it for what localstripe lacks.
//!
//! [`LocalStripe`] starts localstripe bound to 127.0.0.1 with its state kept in memory (its own
//! launcher pins it to `/tmp/localstripe.pickle`, shared by every instance), and registers
//! webhook endpoints with it: localstripe then signs and sends its own events
//! (`invoice.payment_succeeded`, `customer.subscription.*`, ...).
//!
//! [`FakeStripe`] is the base URL CutX is given. It serves, following Stripe's documented shapes:
//! - `POST /v1/checkout/sessions` (form-encoded, as Stripe takes it): a Checkout Session with
//!   `mode`, `line_items`, `customer`, `client_reference_id`, `metadata`, `success_url`;
//! - `POST /v1/billing_portal/sessions`: a portal session for a customer;
//! - everything else proxied to localstripe unchanged (customers, subscriptions, invoices, ...).
//!
//! A test "pays" with [`FakeStripe::complete`], as the hosted page would: a payment session sends
//! `checkout.session.completed` (signed with the endpoint secret, as Stripe signs); a subscription
//! session first creates the subscription in localstripe for the session's customer and price,
//! and localstripe sends the invoice events itself. [`FakeStripe::refund`] refunds a charge in
//! localstripe and sends the `charge.refunded` event localstripe never sends.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

/// The API key tests give CutX; localstripe takes any `sk_` key.
pub const KEY: &str = "sk_test_cutx";

/// Starts localstripe on 127.0.0.1 with a free port and no state file (localstripe's own `main`
/// binds every interface and shares one pickle file between instances).
const LAUNCHER: &str = r#"
import asyncio, signal, socket, sys
from aiohttp import web
import localstripe.resources as res
from localstripe.server import app
res.Store.dump_to_disk = lambda self: None
res.Store.try_load_from_disk = lambda self: None
async def main():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(('127.0.0.1', 0))
    runner = web.AppRunner(app)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    print('LOCALSTRIPE_READY port=%d' % sock.getsockname()[1], flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()
asyncio.run(main())
"#;

/// A running localstripe; stopped when dropped.
pub struct LocalStripe {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    http: reqwest::Client,
    _child: tokio::process::Child,
}

/// Whether localstripe is installed (`pip install localstripe`).
pub fn installed() -> bool {
    std::process::Command::new("python3")
        .args(["-c", "import localstripe"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl LocalStripe {
    /// None when localstripe is not installed, unless `CUTX_REQUIRE_TOOLS=1` says it must be.
    pub async fn start() -> Option<LocalStripe> {
        if !installed() {
            assert!(
                std::env::var("CUTX_REQUIRE_TOOLS").as_deref() != Ok("1"),
                "localstripe is not installed (scripts/install-test-tools.sh installs it)"
            );
            eprintln!("localstripe is not installed; skipping");
            return None;
        }
        let mut child = tokio::process::Command::new("python3")
            .args(["-c", LAUNCHER])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("starting localstripe");
        let stdout = child.stdout.take().expect("localstripe's stdout");
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let port = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.expect("reading localstripe's stdout") {
                if let Some(port) = line.strip_prefix("LOCALSTRIPE_READY port=") {
                    return port.trim().parse::<u16>().expect("localstripe's port");
                }
            }
            panic!("localstripe ended before it was ready")
        })
        .await
        .expect("localstripe ready within 30 s");
        Some(LocalStripe { base: format!("http://127.0.0.1:{port}"), http: crate::http(), _child: child })
    }

    /// Sends localstripe's signed events for everything to `url`.
    pub async fn register_webhook(&self, url: &str, secret: &str) {
        let answer = self
            .http
            .post(format!("{}/_config/webhooks/cutx", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(encode(&[("url", url), ("secret", secret)]))
            .send()
            .await
            .expect("registering a localstripe webhook");
        assert!(answer.status().is_success(), "localstripe refused the webhook: {}", answer.status());
    }

    /// A Stripe API call on localstripe (form-encoded, as Stripe takes them); the answer's JSON.
    pub async fn call(&self, method: Method, path: &str, form: &[(&str, &str)]) -> Value {
        let answer = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .basic_auth(KEY, Some(""))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(encode(form))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path} on localstripe: {e}"));
        let status = answer.status();
        let body: Value = answer.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{method} {path} on localstripe answered {status}: {body}");
        body
    }
}

/// A Checkout Session as the fake keeps it.
#[derive(Debug, Clone)]
pub struct CheckoutSession {
    pub id: String,
    pub mode: String,
    pub customer: String,
    pub client_reference_id: String,
    pub price: String,
    pub metadata: HashMap<String, String>,
    pub success_url: String,
    /// Whether an Idempotency-Key came with the create.
    pub idempotency_key: Option<String>,
}

struct Shared {
    localstripe: String,
    http: reqwest::Client,
    sessions: Mutex<Vec<CheckoutSession>>,
    /// Where events go, and the secret they are signed with.
    webhook: Mutex<Option<(String, String)>>,
    /// Session creates still to answer 500 (Stripe's `api_error`), as an outage would.
    failing_creates: Mutex<usize>,
    /// The Idempotency-Key of every session create, answered or not, in order.
    create_keys: Mutex<Vec<Option<String>>>,
    origin: String,
}

/// The Stripe base URL CutX is given; stopped when dropped.
pub struct FakeStripe {
    /// `http://127.0.0.1:PORT` (CutX adds `/v1/...`).
    pub base: String,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeStripe {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn stripe_error(status: StatusCode, kind: &str, message: &str) -> Response {
    (status, axum::Json(json!({"error": {"type": kind, "message": message}}))).into_response()
}

fn random(prefix: &str) -> String {
    format!("{prefix}_test_{}", uuid::Uuid::new_v4().simple())
}

fn now() -> i64 {
    cutx_platform::clock::now_millis() / 1000
}

/// Pairs as a form body, the way Stripe's API takes them.
fn encode(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

/// A form body's pairs, with Stripe's bracket keys kept as they are (`metadata[user_id]`).
fn form(body: &[u8]) -> HashMap<String, String> {
    url::form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

fn authorized(headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|key| key.starts_with("sk_"))
}

impl FakeStripe {
    pub async fn start(localstripe: &LocalStripe) -> FakeStripe {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the fake Stripe");
        let origin = listener.local_addr().unwrap().to_string();
        let shared = Arc::new(Shared {
            localstripe: localstripe.base.clone(),
            http: crate::http(),
            sessions: Mutex::new(Vec::new()),
            webhook: Mutex::new(None),
            failing_creates: Mutex::new(0),
            create_keys: Mutex::new(Vec::new()),
            origin: origin.clone(),
        });
        let app = Router::new()
            .route("/v1/checkout/sessions", post(create_session))
            .route("/v1/billing_portal/sessions", post(create_portal))
            .fallback(proxy)
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("the fake Stripe serves");
        });
        FakeStripe { base: format!("http://{origin}"), shared, server }
    }

    /// Where this fake's events go, signed with `secret`.
    pub fn send_events_to(&self, url: &str, secret: &str) {
        *self.shared.webhook.lock().unwrap() = Some((url.to_string(), secret.to_string()));
    }

    /// The next `n` Checkout Session creates answer 500.
    pub fn fail_next_session_creates(&self, n: usize) {
        *self.shared.failing_creates.lock().unwrap() = n;
    }

    /// The Idempotency-Key each session create came with, in order.
    pub fn session_create_keys(&self) -> Vec<Option<String>> {
        self.shared.create_keys.lock().unwrap().clone()
    }

    pub fn session(&self, id: &str) -> Option<CheckoutSession> {
        self.shared.sessions.lock().unwrap().iter().find(|s| s.id == id).cloned()
    }

    /// Sends `kind` about `object` as a signed event, `copies` times at once (Stripe delivers at
    /// least once); each delivery's HTTP status.
    pub async fn send_event(&self, kind: &str, object: Value, copies: usize) -> Vec<u16> {
        let (url, secret) = self.shared.webhook.lock().unwrap().clone().expect("send_events_to first");
        let event = json!({"id": random("evt"), "object": "event", "type": kind, "created": now(), "livemode": false,
                           "api_version": "2024-06-20", "pending_webhooks": 1, "data": {"object": object}});
        let body = serde_json::to_vec(&event).unwrap();
        let deliveries = (0..copies).map(|_| {
            let (url, body, http) = (url.clone(), body.clone(), self.shared.http.clone());
            let signature = webhook_svc::stripe_signature::sign(&secret, now(), &body);
            async move {
                let answer = http
                    .post(url)
                    .header("stripe-signature", signature)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .expect("delivering an event");
                answer.status().as_u16()
            }
        });
        futures::future::join_all(deliveries).await
    }

    /// Pays the session as its hosted page would. A payment session's `checkout.session.completed`
    /// is delivered `copies` times at once; a subscription session first starts the
    /// subscription in localstripe (whose own events then follow).
    pub async fn complete(&self, localstripe: &LocalStripe, id: &str, copies: usize) -> Vec<u16> {
        let session = self.session(id).unwrap_or_else(|| panic!("no checkout session {id}"));
        let mut subscription = Value::Null;
        if session.mode == "subscription" {
            let card = [
                ("type", "card"),
                ("card[number]", "4242424242424242"),
                ("card[exp_month]", "12"),
                ("card[exp_year]", "2030"),
                ("card[cvc]", "123"),
            ];
            let pm = localstripe.call(Method::POST, "/v1/payment_methods", &card).await;
            let pm = pm["id"].as_str().unwrap().to_string();
            let attach = format!("/v1/payment_methods/{pm}/attach");
            localstripe.call(Method::POST, &attach, &[("customer", &session.customer)]).await;
            let customer = format!("/v1/customers/{}", session.customer);
            localstripe.call(Method::POST, &customer, &[("invoice_settings[default_payment_method]", &pm)]).await;
            let items = [("customer", session.customer.as_str()), ("items[0][plan]", session.price.as_str())];
            let created = localstripe.call(Method::POST, "/v1/subscriptions", &items).await;
            subscription = created["id"].clone();
        }
        let paid = json!({
            "id": session.id, "object": "checkout.session", "mode": session.mode, "status": "complete",
            "payment_status": "paid", "customer": session.customer, "client_reference_id": session.client_reference_id,
            "metadata": session.metadata, "amount_total": 1299, "currency": "usd",
            "payment_intent": if session.mode == "payment" { json!(random("pi")) } else { Value::Null },
            "subscription": subscription,
        });
        self.send_event("checkout.session.completed", paid, copies).await
    }

    /// Refunds `amount` of a charge in localstripe and delivers the `charge.refunded` event Stripe
    /// would send (localstripe sends none), built from the charge as localstripe now has it.
    pub async fn refund(&self, localstripe: &LocalStripe, charge_id: &str, amount: i64) -> Vec<u16> {
        let amount = amount.to_string();
        localstripe.call(Method::POST, "/v1/refunds", &[("charge", charge_id), ("amount", &amount)]).await;
        let charge = localstripe.call(Method::GET, &format!("/v1/charges/{charge_id}"), &[]).await;
        self.send_event("charge.refunded", charge, 1).await
    }
}

async fn create_session(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    if !authorized(&headers) {
        return stripe_error(StatusCode::UNAUTHORIZED, "invalid_request_error", "Invalid API Key provided");
    }
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_string);
    shared.create_keys.lock().unwrap().push(key.clone());
    {
        let mut failing = shared.failing_creates.lock().unwrap();
        if *failing > 0 {
            *failing -= 1;
            return stripe_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "api_error",
                "An error occurred with our connection to Stripe",
            );
        }
    }
    let f = form(&body);
    let get = |k: &str| f.get(k).cloned().unwrap_or_default();
    let mode = get("mode");
    if !matches!(mode.as_str(), "payment" | "subscription") {
        return stripe_error(StatusCode::BAD_REQUEST, "invalid_request_error", "Invalid mode");
    }
    if get("line_items[0][price]").is_empty() || get("success_url").is_empty() {
        return stripe_error(StatusCode::BAD_REQUEST, "invalid_request_error", "Missing required param: line_items");
    }
    let metadata: HashMap<String, String> = f
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("metadata[")?.strip_suffix(']')?.to_string(), v.clone())))
        .collect();
    let session = CheckoutSession {
        id: random("cs"),
        mode: mode.clone(),
        customer: get("customer"),
        client_reference_id: get("client_reference_id"),
        price: get("line_items[0][price]"),
        metadata: metadata.clone(),
        success_url: get("success_url"),
        idempotency_key: key,
    };
    shared.sessions.lock().unwrap().push(session.clone());
    let url = format!("http://{}/checkout/{}", shared.origin, session.id);
    axum::Json(json!({
        "id": session.id, "object": "checkout.session", "created": now(), "expires_at": now() + 86_400,
        "livemode": false, "mode": mode, "payment_status": "unpaid", "status": "open",
        "automatic_tax": {"enabled": false}, "custom_fields": [], "custom_text": {}, "payment_method_types": ["card"],
        "shipping_options": [], "customer": session.customer, "client_reference_id": session.client_reference_id,
        "metadata": metadata, "success_url": session.success_url, "url": url,
    }))
    .into_response()
}

async fn create_portal(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    if !authorized(&headers) {
        return stripe_error(StatusCode::UNAUTHORIZED, "invalid_request_error", "Invalid API Key provided");
    }
    let f = form(&body);
    let Some(customer) = f.get("customer").filter(|c| !c.is_empty()) else {
        return stripe_error(StatusCode::BAD_REQUEST, "invalid_request_error", "Missing required param: customer");
    };
    let id = random("bps");
    axum::Json(json!({
        "id": id, "object": "billing_portal.session", "configuration": "bpc_test", "created": now(),
        "customer": customer, "livemode": false, "return_url": f.get("return_url"),
        "url": format!("http://{}/portal/{id}", shared.origin),
    }))
    .into_response()
}

/// Everything else goes to localstripe as it came.
async fn proxy(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
    let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut call = shared.http.request(parts.method.clone(), format!("{}{path}", shared.localstripe)).body(body);
    for name in ["authorization", "content-type"] {
        if let Some(value) = parts.headers.get(name) {
            call = call.header(name, value);
        }
    }
    match call.send().await {
        Ok(answer) => {
            let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            let bytes = answer.bytes().await.unwrap_or_default();
            (status, [("content-type", "application/json")], bytes).into_response()
        }
        Err(e) => stripe_error(StatusCode::BAD_GATEWAY, "api_error", &format!("localstripe: {e}")),
    }
}
