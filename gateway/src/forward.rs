//! gRPC pass-through: a call to an exposed service goes to its backend as bytes, undecoded, and
//! the backend's answer (headers, message stream, trailers) comes back as it is.
//!
//! A call to any other service (an `*InternalService`, a typo, a service nobody serves) gets a
//! trailers-only `UNIMPLEMENTED` and never leaves the gateway.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body as AxumBody;
use futures::TryStreamExt;
use http::{Request, Response, Version, header};
use http_body_util::{BodyStream, StreamBody};
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

#[derive(Clone)]
pub struct Forwarder {
    backends: Arc<HashMap<String, Channel>>,
    exposed: Arc<HashSet<String>>,
    identity: IdentityMinter,
}

impl Forwarder {
    pub fn new(backends: HashMap<String, Channel>, exposed: HashSet<String>, identity: IdentityMinter) -> Self {
        Self { backends: Arc::new(backends), exposed: Arc::new(exposed), identity }
    }

    fn backend_for(&self, path: &str) -> Option<Channel> {
        let service = path.strip_prefix('/')?.split('/').next()?;
        if !self.exposed.contains(service) {
            return None;
        }
        self.backends.get(service).cloned()
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
        let Some(channel) = self.backend_for(request.uri().path()) else {
            let status = Status::unimplemented(format!("unknown service or method {}", request.uri().path()));
            return Box::pin(async move { Ok(status.into_http()) });
        };
        let (mut parts, body) = request.into_parts();
        for name in &HOP_BY_HOP {
            parts.headers.remove(name);
        }
        self.identity.stamp(&mut parts.headers);
        parts.version = Version::HTTP_2;
        // A stream has no size hint: tonic-web passes on the base64 length of a grpc-web-text
        // body, and hyper would trust it for the decoded (shorter) one. Empty data frames are
        // dropped: the end of a client's stream often arrives as one, and passed on it becomes
        // an empty non-final DATA frame, which h2 servers count as abuse (after about a hundred
        // calls on one connection they answer GOAWAY ENHANCE_YOUR_CALM).
        let frames = BodyStream::new(body)
            .try_filter(|frame| std::future::ready(frame.data_ref().is_none_or(|data| !data.is_empty())));
        let body = Body::new(StreamBody::new(frames));
        let request = Request::from_parts(parts, body);
        Box::pin(async move {
            match channel.oneshot(request).await {
                Ok(response) => Ok(response),
                Err(e) => Ok(Status::unavailable(format!("backend unavailable: {e}")).into_http()),
            }
        })
    }
}
