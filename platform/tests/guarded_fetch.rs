//! `GuardedClient` against real HTTP servers on 127.0.0.1: an allowed origin is reached, and no
//! refused URL, first or redirected to, ever reaches a server.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use cutx_platform::fetch::{FetchError, FetchPolicy, GuardedClient, Refusal};
use reqwest::Method;

const KIB: u64 = 1024;

/// What the test server saw and did.
#[derive(Default)]
struct Seen {
    requests: AtomicUsize,
    endless_bytes: AtomicU64,
    endless_dropped: AtomicBool,
}

async fn spawn(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

/// A provider-like server with every behaviour a test needs.
async fn spawn_server() -> (SocketAddr, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let router = Router::new()
        .route("/hello", get(|| async { ([(header::CONTENT_TYPE, "text/plain")], "hello") }))
        .route("/redirect", get(redirect))
        .route("/hop/{n}", get(hop))
        .route("/status/{code}", get(|Path(code): Path<u16>| async move { StatusCode::from_u16(code).unwrap() }))
        .route("/endless", get(endless))
        .route("/announced", get(announced))
        .route("/silent", get(std::future::pending::<()>))
        .route("/stalled", get(stalled))
        .layer(axum::middleware::from_fn_with_state(seen.clone(), count))
        .with_state(seen.clone());
    (spawn(router).await, seen)
}

async fn count(
    State(seen): State<Arc<Seen>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    seen.requests.fetch_add(1, Ordering::SeqCst);
    next.run(request).await
}

async fn redirect(Query(query): Query<HashMap<String, String>>) -> Response {
    (StatusCode::FOUND, [(header::LOCATION, query["to"].clone())]).into_response()
}

async fn hop(Path(n): Path<u32>) -> Response {
    if n == 0 {
        return "landed".into_response();
    }
    (StatusCode::FOUND, [(header::LOCATION, format!("/hop/{}", n - 1))]).into_response()
}

/// Marks the endless body dropped, which happens once the client hangs up.
struct DropFlag(Arc<Seen>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.endless_dropped.store(true, Ordering::SeqCst);
    }
}

async fn endless(State(seen): State<Arc<Seen>>) -> Body {
    let chunk = Bytes::from(vec![b'x'; 8 * KIB as usize]);
    let stream = futures::stream::unfold(DropFlag(seen), move |flag| {
        let chunk = chunk.clone();
        async move {
            flag.0.endless_bytes.fetch_add(chunk.len() as u64, Ordering::SeqCst);
            Some((Ok::<_, Infallible>(chunk), flag))
        }
    });
    Body::from_stream(stream)
}

/// Announces a gigabyte and sends nothing: only a client that trusts Content-Length returns.
async fn announced() -> Response {
    let nothing = futures::stream::pending::<Result<Bytes, Infallible>>();
    ([(header::CONTENT_LENGTH, "1073741824")], Body::from_stream(nothing)).into_response()
}

async fn stalled() -> Body {
    let first = futures::stream::once(async { Ok::<_, Infallible>(Bytes::from_static(b"a start")) });
    Body::from_stream(futures::StreamExt::chain(first, futures::stream::pending()))
}

fn allowing(addr: SocketAddr) -> FetchPolicy {
    FetchPolicy { allowed_origins: vec![addr.to_string()], ..FetchPolicy::default() }
}

fn client(policy: FetchPolicy) -> GuardedClient {
    GuardedClient::new(policy).unwrap()
}

fn redirect_to(server: SocketAddr, location: &str) -> String {
    let mut url = url::Url::parse(&format!("http://{server}/redirect")).unwrap();
    url.query_pairs_mut().append_pair("to", location);
    url.into()
}

fn refusal(result: Result<impl std::fmt::Debug, FetchError>) -> Refusal {
    match result {
        Err(FetchError::Refused { reason, .. }) => reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Waits for `condition` to hold, failing after `deadline`.
async fn eventually(deadline: Duration, what: &str, condition: impl Fn() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < deadline, "{what} did not happen within {deadline:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// What a refusal must look like, when its exact address cannot be known in advance.
type Expected = Box<dyn Fn(&Refusal) -> bool>;

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[tokio::test]
async fn urls_that_are_not_https_to_a_public_address_are_refused_before_any_connection() {
    let client = client(FetchPolicy::default());
    let table = [
        ("http://example.com/x", Refusal::PlainHttp),
        ("https://127.0.0.1/", Refusal::Address(ip("127.0.0.1"))),
        ("https://[::1]/", Refusal::Address(ip("::1"))),
        ("https://[::ffff:127.0.0.1]/", Refusal::Address(ip("::ffff:127.0.0.1"))),
        ("https://[::ffff:7f00:1]/", Refusal::Address(ip("::ffff:7f00:1"))),
        ("https://[64:ff9b::a9fe:a9fe]/", Refusal::Address(ip("64:ff9b::169.254.169.254"))),
        ("https://169.254.169.254/latest/meta-data", Refusal::Address(ip("169.254.169.254"))),
        ("https://10.0.0.1/", Refusal::Address(ip("10.0.0.1"))),
        ("https://0.0.0.0/", Refusal::Address(ip("0.0.0.0"))),
        ("https://0x7f.1/", Refusal::Address(ip("127.0.0.1"))),
        ("ftp://x/", Refusal::Scheme("ftp".into())),
        ("file:///etc/passwd", Refusal::Scheme("file".into())),
        ("https://user:pw@example.com/", Refusal::Credentials),
        ("https://user@example.com/", Refusal::Credentials),
        ("not-a-url", Refusal::BadUrl),
    ];
    for (url, expected) in table {
        assert_eq!(refusal(client.request(Method::GET, url)), expected, "request {url}");
        assert_eq!(refusal(client.get(url).await), expected, "get {url}");
    }
}

#[tokio::test]
async fn a_refused_url_names_itself_and_its_reason_but_not_its_password() {
    let client = client(FetchPolicy::default());
    let error = client.get("https://169.254.169.254/latest/meta-data").await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "https://169.254.169.254/latest/meta-data is not allowed: link-local address 169.254.169.254"
    );
    let error = client.get("https://user:hunter2@example.com/").await.unwrap_err();
    assert!(!error.to_string().contains("hunter2"), "{error}");
}

#[tokio::test]
async fn a_get_from_an_allowed_origin_returns_its_body_and_content_type() {
    let (server, seen) = spawn_server().await;
    let fetched = client(allowing(server)).get(&format!("http://{server}/hello")).await.unwrap();
    assert_eq!(fetched.bytes, "hello");
    assert_eq!(fetched.content_type.as_deref(), Some("text/plain"));
    assert_eq!(fetched.url.as_str(), format!("http://{server}/hello"));
    assert_eq!(seen.requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_name_that_resolves_to_loopback_is_refused_unless_its_origin_is_allowed() {
    let (server, seen) = spawn_server().await;
    let by_address = client(allowing(server));
    let over_http = format!("http://localhost:{}/hello", server.port());
    assert_eq!(refusal(by_address.get(&over_http).await), Refusal::PlainHttp);
    let over_https = format!("https://localhost:{}/hello", server.port());
    let reason = refusal(by_address.get(&over_https).await);
    assert!(matches!(reason, Refusal::Address(ip) if ip.is_loopback()), "{reason:?}");
    assert_eq!(seen.requests.load(Ordering::SeqCst), 0);

    let mut by_name = FetchPolicy::default();
    by_name.allow_origin_of(&over_http).unwrap();
    assert_eq!(client(by_name).get(&over_http).await.unwrap().bytes, "hello");
}

#[tokio::test]
async fn a_request_built_by_another_client_is_checked_again_when_sent() {
    let (server, seen) = spawn_server().await;
    let guarded = client(allowing(server));
    let elsewhere = {
        cutx_platform::fetch::install_tls_provider();
        reqwest::Client::builder()
    }
    .build()
    .unwrap()
    .get("http://10.0.0.1/");
    assert_eq!(refusal(guarded.send(elsewhere).await), Refusal::PlainHttp);
    let metadata = {
        cutx_platform::fetch::install_tls_provider();
        reqwest::Client::builder()
    }
    .build()
    .unwrap()
    .get("https://169.254.169.254/");
    assert_eq!(refusal(guarded.send(metadata).await), Refusal::Address(ip("169.254.169.254")));
    assert_eq!(seen.requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn the_client_never_follows_a_redirect_by_itself() {
    let (server, _) = spawn_server().await;
    let client = client(allowing(server));
    let request = client.request(Method::GET, &redirect_to(server, "/hello")).unwrap();
    let response = client.send(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
}

#[tokio::test]
async fn a_redirect_within_the_allowed_origin_is_followed() {
    let (server, _) = spawn_server().await;
    let fetched = client(allowing(server)).get(&redirect_to(server, "/hello")).await.unwrap();
    assert_eq!(fetched.bytes, "hello");
    assert_eq!(fetched.url.as_str(), format!("http://{server}/hello"));
}

#[tokio::test]
async fn a_redirect_to_a_refused_url_is_refused_and_never_reaches_its_target() {
    let (server, _) = spawn_server().await;
    let (target, target_seen) = spawn_server().await;
    let client = client(allowing(server));
    let port = target.port();
    let loopback = |reason: &Refusal| matches!(reason, Refusal::Address(ip) if ip.is_loopback());
    let table: Vec<(String, Expected)> = vec![
        (format!("http://127.0.0.1:{port}/"), Box::new(|r| *r == Refusal::PlainHttp)),
        (format!("https://127.0.0.1:{port}/"), Box::new(|r| *r == Refusal::Address(ip("127.0.0.1")))),
        ("https://169.254.169.254/".into(), Box::new(|r| *r == Refusal::Address(ip("169.254.169.254")))),
        (format!("http://[::1]:{port}/"), Box::new(|r| *r == Refusal::PlainHttp)),
        (format!("https://[::1]:{port}/"), Box::new(|r| *r == Refusal::Address(ip("::1")))),
        (format!("http://localhost:{port}/"), Box::new(|r| *r == Refusal::PlainHttp)),
        (format!("https://localhost:{port}/"), Box::new(loopback)),
        (format!("https://user:pw@127.0.0.1:{port}/"), Box::new(|r| *r == Refusal::Credentials)),
        ("ftp://example.com/".into(), Box::new(|r| *r == Refusal::Scheme("ftp".into()))),
    ];
    for (location, expected) in table {
        let reason = refusal(client.get(&redirect_to(server, &location)).await);
        assert!(expected(&reason), "{location}: {reason:?}");
    }
    assert_eq!(target_seen.requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_redirect_chain_longer_than_the_policy_allows_is_cut_off() {
    let (server, seen) = spawn_server().await;
    let client = client(FetchPolicy { max_redirects: 3, ..allowing(server) });
    assert_eq!(client.get(&format!("http://{server}/hop/3")).await.unwrap().bytes, "landed");
    let error = client.get(&format!("http://{server}/hop/4")).await.unwrap_err();
    assert!(matches!(error, FetchError::TooManyRedirects(3)), "{error:?}");
    assert_eq!(seen.requests.load(Ordering::SeqCst), 4 + 4);
}

#[tokio::test]
async fn an_endless_body_stops_at_the_cap_and_the_connection_is_dropped() {
    let (server, seen) = spawn_server().await;
    let client = client(FetchPolicy { max_body_bytes: 64 * KIB, ..allowing(server) });
    let error = client.get(&format!("http://{server}/endless")).await.unwrap_err();
    assert!(matches!(error, FetchError::TooLarge { cap } if cap == 64 * KIB), "{error:?}");
    eventually(Duration::from_secs(10), "the server's body being dropped", || {
        seen.endless_dropped.load(Ordering::SeqCst)
    })
    .await;
    // What the server wrote is bounded by the socket buffers, not by the cap: the exact count of
    // bytes read is checked by the unit test of `read_body`.
    let written = seen.endless_bytes.load(Ordering::SeqCst);
    assert!(written < 64 * 1024 * KIB, "the server wrote {written} bytes");
}

#[tokio::test]
async fn a_content_length_over_the_cap_is_refused_before_reading() {
    let (server, _) = spawn_server().await;
    // The server sends no byte of its announced body: reading it would end only at the deadline.
    let policy = FetchPolicy { max_body_bytes: 64 * KIB, timeout: Duration::from_secs(60), ..allowing(server) };
    let client = client(policy);
    let start = Instant::now();
    let error = client.get(&format!("http://{server}/announced")).await.unwrap_err();
    assert!(matches!(error, FetchError::TooLarge { cap } if cap == 64 * KIB), "{error:?}");
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn a_server_that_never_answers_hits_the_deadline() {
    let (server, _) = spawn_server().await;
    let deadline = Duration::from_millis(300);
    let client = client(FetchPolicy { timeout: deadline, ..allowing(server) });

    let start = Instant::now();
    let error = client.get(&format!("http://{server}/silent")).await.unwrap_err();
    assert!(matches!(error, FetchError::Timeout), "{error:?}");
    assert!(start.elapsed() < deadline + Duration::from_secs(2), "{:?}", start.elapsed());

    let start = Instant::now();
    let error = client.send(client.request(Method::GET, &format!("http://{server}/silent")).unwrap()).await;
    assert!(matches!(error, Err(FetchError::Timeout)), "{error:?}");
    assert!(start.elapsed() < deadline + Duration::from_secs(2), "{:?}", start.elapsed());
}

#[tokio::test]
async fn a_body_that_stalls_hits_the_same_deadline_as_the_request() {
    let (server, _) = spawn_server().await;
    let deadline = Duration::from_millis(300);
    let client = client(FetchPolicy { timeout: deadline, ..allowing(server) });
    let start = Instant::now();
    let response = client.send(client.request(Method::GET, &format!("http://{server}/stalled")).unwrap()).await;
    let error = client.read_body(response.unwrap()).await.unwrap_err();
    assert!(matches!(error, FetchError::Timeout), "{error:?}");
    assert!(start.elapsed() < deadline + Duration::from_secs(2), "{:?}", start.elapsed());
}

#[tokio::test]
async fn every_error_kind_says_whether_it_is_worth_retrying() {
    let (server, _) = spawn_server().await;
    let closed = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    };
    let mut policy = FetchPolicy { max_body_bytes: 64 * KIB, max_redirects: 1, ..allowing(server) };
    policy.allowed_origins.push(closed.to_string());
    let client = client(policy);
    let url = |path: &str| format!("http://{server}{path}");

    let refused = client.get("https://10.0.0.1/").await.unwrap_err();
    let too_large = client.get(&url("/endless")).await.unwrap_err();
    let too_many_redirects = client.get(&url("/hop/2")).await.unwrap_err();
    let transport = client.get(&format!("http://{closed}/")).await.unwrap_err();
    let timeout = {
        let request = client.request(Method::GET, &url("/silent")).unwrap().timeout(Duration::from_millis(100));
        client.send(request).await.unwrap_err()
    };
    assert!(matches!(refused, FetchError::Refused { .. }) && refused.is_permanent());
    assert!(matches!(too_large, FetchError::TooLarge { .. }) && too_large.is_permanent());
    assert!(matches!(too_many_redirects, FetchError::TooManyRedirects(1)) && too_many_redirects.is_permanent());
    assert!(matches!(transport, FetchError::Transport(_)) && !transport.is_permanent(), "{transport:?}");
    assert!(matches!(timeout, FetchError::Timeout) && !timeout.is_permanent(), "{timeout:?}");

    for (status, permanent) in [(400, true), (403, true), (404, true), (408, false), (429, false), (500, false)] {
        let error = client.get(&url(&format!("/status/{status}"))).await.unwrap_err();
        assert!(matches!(error, FetchError::Status { status: s, .. } if s == status), "{error:?}");
        assert_eq!(error.is_permanent(), permanent, "{status}");
    }
}

#[tokio::test]
async fn an_https_request_to_a_public_host_is_prepared_on_the_ring_provider() {
    let client = client(FetchPolicy::default());
    let request = client.request(Method::GET, "https://example.com/output.png").unwrap().build().unwrap();
    assert_eq!(request.url().as_str(), "https://example.com/output.png");
    let installed = rustls::crypto::CryptoProvider::get_default().expect("a process-wide crypto provider");
    let ring = rustls::crypto::ring::default_provider();
    let suites = |provider: &rustls::crypto::CryptoProvider| {
        provider.cipher_suites.iter().map(|suite| suite.suite()).collect::<Vec<_>>()
    };
    assert_eq!(suites(installed), suites(&ring));
}
