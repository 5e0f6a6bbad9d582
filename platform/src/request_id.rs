//! A request's id. The gateway gives every request it takes a fresh one and answers it in
//! `x-request-id`; each call made while handling the request carries it on to the next service;
//! and every log line written meanwhile, in any service, names it. A client-sent id is never
//! trusted: the gateway replaces it.
//!
//! Hand-written rather than tower-http's request-id layers: those keep an incoming id and only
//! set a header, while this one also scopes the id to the handling task (so outgoing calls and
//! `error::internal` find it without being handed it) and opens the span that logs it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tracing::Instrument;

/// The header (and gRPC metadata key) an id travels in.
pub const HEADER: &str = "x-request-id";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(String);

tokio::task_local! {
    static CURRENT: RequestId;
}

impl RequestId {
    /// A fresh id: 32 hex digits, time-ordered.
    pub fn new() -> Self {
        Self(uuid::Uuid::now_v7().simple().to_string())
    }

    /// An id as another service sent it; `None` unless it is 1 to 64 letters, digits, `-` or
    /// `_` (so a log line never carries anything else).
    pub fn parse(value: &str) -> Option<Self> {
        let fits = (1..=64).contains(&value.len())
            && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        fits.then(|| Self(value.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id of the request the current task is handling, if any.
    pub fn current() -> Option<Self> {
        CURRENT.try_with(Clone::clone).ok()
    }

    /// The id as a header value.
    pub fn header_value(&self) -> http::HeaderValue {
        http::HeaderValue::from_str(&self.0).expect("an id is letters, digits, - and _")
    }

    /// Runs `work` as the handling of this request: [`RequestId::current`] answers this id, and
    /// every log line inside the `span` it opens names it.
    pub fn scope<F: Future>(self, span: tracing::Span, work: F) -> impl Future<Output = F::Output> {
        CURRENT.scope(self, work).instrument(span)
    }
}

impl Default for RequestId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Spawns `work` as part of the current request: inside its id's scope and its span, so what
/// `work` logs and the calls it makes still name the request.
pub fn spawn<F>(work: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match RequestId::current() {
        Some(id) => tokio::spawn(id.scope(tracing::Span::current(), work)),
        None => tokio::spawn(work.instrument(tracing::Span::current())),
    }
}

/// Puts the current request's id, if any, on an outgoing call.
pub fn propagate(headers: &mut http::HeaderMap) {
    headers.remove(HEADER);
    if let Some(id) = RequestId::current() {
        headers.insert(HEADER, id.header_value());
    }
}

/// A service's side: each incoming call is handled inside the scope of the id it carries (a
/// fresh one if it carries none or a malformed one), in a span naming the method.
#[derive(Debug, Clone, Copy, Default)]
pub struct ScopeLayer;

impl<S> tower::Layer<S> for ScopeLayer {
    type Service = Scoped<S>;

    fn layer(&self, inner: S) -> Scoped<S> {
        Scoped { inner }
    }
}

#[derive(Debug, Clone)]
pub struct Scoped<S> {
    inner: S,
}

impl<S, B> tower::Service<http::Request<B>> for Scoped<S>
where
    S: tower::Service<http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let id =
            request.headers().get(HEADER).and_then(|v| v.to_str().ok()).and_then(RequestId::parse).unwrap_or_default();
        let span = tracing::info_span!("rpc", request_id = %id, method = %request.uri().path());
        Box::pin(id.scope(span, self.inner.call(request)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_ids_of_letters_digits_dashes_and_underscores_are_taken() {
        let table = [
            ("0193a1b2c3d4e5f6", true),
            ("req-1_A", true),
            (&"a".repeat(64), true),
            (&"a".repeat(65), false),
            ("", false),
            ("has space", false),
            ("new\nline", false),
            ("quote\"", false),
            ("ünïcode", false),
        ];
        for (value, taken) in table {
            assert_eq!(RequestId::parse(value).is_some(), taken, "{value:?}");
        }
        assert!(RequestId::parse(RequestId::new().as_str()).is_some());
    }

    #[tokio::test]
    async fn the_current_id_is_the_scopes_and_reaches_an_outgoing_call() {
        assert_eq!(RequestId::current(), None);
        let id = RequestId::new();
        let seen = id.clone().scope(tracing::Span::none(), async { RequestId::current() }).await;
        assert_eq!(seen, Some(id.clone()));
        let mut headers = http::HeaderMap::new();
        headers.insert(HEADER, "forged".parse().unwrap());
        id.clone().scope(tracing::Span::none(), async { propagate(&mut headers) }).await;
        assert_eq!(headers.get(HEADER).unwrap(), id.as_str());
        propagate(&mut headers);
        assert!(headers.get(HEADER).is_none(), "outside a request nothing is sent on");
    }
}
