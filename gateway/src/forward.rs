//! gRPC pass-through: a call to an exposed service goes to its backend as bytes, undecoded, and
//! the backend's answer (headers, message stream, trailers) comes back as it is.
//!
//! A call to any other service or method (an `*InternalService`, a typo, a service nobody
//! serves) gets a trailers-only `UNIMPLEMENTED` and never leaves the gateway. A call that is not
//! client-streaming is read whole first and forwarded only if it carries exactly one message
//! that passes the [`RequestCheck`] (see [`crate::frames`]); a client-streaming call streams
//! through as it comes.
//!
//! A backend that cannot be reached answers a bare `UNAVAILABLE`: the transport's error is
//! logged, never sent, since it describes the mesh rather than the call.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body as AxumBody;
use futures::TryStreamExt;
use http::{Request, Response, Version, header};
use http_body_util::{BodyStream, Full, StreamBody};
use prost_reflect::{DescriptorPool, MethodDescriptor};
use tonic::Status;
use tonic::body::Body;
use tonic::transport::Channel;
use tower::{Service, ServiceExt};

use crate::identity::IdentityMinter;

/// Connection-level headers an HTTP/2 client refuses to send (RFC 9113 §8.2.2); an HTTP/1.1
/// gRPC-web request may carry them. `content-length` goes too: it no longer matches a body
/// tonic-web has decoded.
const HOP_BY_HOP: [header::HeaderName; 6] = [
    header::CONNECTION,
    header::HOST,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::CONTENT_LENGTH,
    header::HeaderName::from_static("keep-alive"),
];

/// What the one request message of a call must pass before it is forwarded.
///
/// It sees the message as the backend will decode it, with the method it is for; an error is
/// the call's answer and nothing is forwarded. Client-streaming calls are not checked.
pub trait RequestCheck: Send + Sync + 'static {
    fn check(&self, method: &MethodDescriptor, message: &[u8]) -> Result<(), Status>;
}

/// The check that lets every well-framed message through.
#[derive(Debug, Clone, Copy, Default)]
pub struct AnyMessage;

impl RequestCheck for AnyMessage {
    fn check(&self, _: &MethodDescriptor, _: &[u8]) -> Result<(), Status> {
        Ok(())
    }
}

#[derive(Clone)]
pub struct Forwarder {
    /// `/<service>/<method>` of every method of an exposed service with a backend.
    methods: Arc<HashMap<String, (MethodDescriptor, Channel)>>,
    identity: IdentityMinter,
    check: Arc<dyn RequestCheck>,
}

impl Forwarder {
    pub fn new(
        pool: &DescriptorPool,
        backends: &HashMap<String, Channel>,
        exposed: &HashSet<String>,
        identity: IdentityMinter,
    ) -> Self {
        let methods = pool
            .services()
            .filter(|service| exposed.contains(service.full_name()))
            .filter_map(|service| Some((backends.get(service.full_name())?.clone(), service)))
            .flat_map(|(channel, service)| {
                let methods: Vec<MethodDescriptor> = service.methods().collect();
                methods.into_iter().map(move |method| {
                    (format!("/{}/{}", method.parent_service().full_name(), method.name()), (method, channel.clone()))
                })
            })
            .collect();
        Self { methods: Arc::new(methods), identity, check: Arc::new(AnyMessage) }
    }

    pub fn with_check(self, check: impl RequestCheck) -> Self {
        Self { check: Arc::new(check), ..self }
    }
}

impl Service<Request<AxumBody>> for Forwarder {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<AxumBody>) -> Self::Future {
        let Some((method, channel)) = self.methods.get(request.uri().path()).cloned() else {
            let status = Status::unimplemented(format!("unknown service or method {}", request.uri().path()));
            return Box::pin(async move { Ok(status.into_http()) });
        };
        let (mut parts, body) = request.into_parts();
        for name in &HOP_BY_HOP {
            parts.headers.remove(name);
        }
        self.identity.stamp(&mut parts.headers);
        parts.version = Version::HTTP_2;
        if method.is_client_streaming() {
            return Box::pin(forward(channel, Request::from_parts(parts, streamed(body))));
        }
        let check = self.check.clone();
        Box::pin(async move {
            let body = match crate::frames::read_body(body).await {
                Ok(body) => body,
                Err(status) => return Ok(status.into_http()),
            };
            let encoding = parts.headers.get("grpc-encoding").and_then(|v| v.to_str().ok());
            let checked =
                crate::frames::single_message(&body, encoding).and_then(|message| check.check(&method, &message));
            if let Err(status) = checked {
                return Ok(status.into_http());
            }
            forward(channel, Request::from_parts(parts, Body::new(Full::new(body)))).await
        })
    }
}

/// A client stream as it comes. A stream has no size hint: tonic-web passes on the base64
/// length of a grpc-web-text body, and hyper would trust it for the decoded (shorter) one. Empty
/// data frames are dropped: the end of a client's stream often arrives as one, and passed on it
/// becomes an empty non-final DATA frame, which h2 servers count as abuse (after about a hundred
/// calls on one connection they answer GOAWAY ENHANCE_YOUR_CALM).
fn streamed(body: AxumBody) -> Body {
    let frames = BodyStream::new(body)
        .try_filter(|frame| std::future::ready(frame.data_ref().is_none_or(|data| !data.is_empty())));
    Body::new(StreamBody::new(frames))
}

async fn forward(channel: Channel, request: Request<Body>) -> Result<Response<Body>, Infallible> {
    let path = request.uri().path().to_string();
    match channel.oneshot(request).await {
        Ok(response) => Ok(response),
        Err(e) => {
            tracing::warn!(path, error = %e, "forwarding a call to its backend failed");
            Ok(Status::unavailable("the service is unavailable").into_http())
        }
    }
}
