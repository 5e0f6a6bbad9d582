//! A request head larger than the mesh accepts answers 431 here, before anything is forwarded.
//!
//! The backends are tonic servers, whose HTTP/2 limit on a header list is hyper's 16 KiB. A
//! bigger head forwarded to one would come back as the backend's bare 431 (no `grpc-status`, so
//! a gRPC client reads "grpc-status header missing") or, far bigger, as a GOAWAY that breaks the
//! shared backend connection for every caller. So the gateway's limit leaves room below 16 KiB
//! for what it adds (the mesh token), and is measured the way HTTP/2 measures a header list
//! (RFC 9113 §6.5.2: name, value and 32 octets per field, pseudo-headers included) whichever
//! protocol the request came over.
//!
//! A REST answer is 431 Request Header Fields Too Large with the usual error body. A gRPC or
//! gRPC-web one is a trailers-only `RESOURCE_EXHAUSTED` under HTTP 200, as gRPC answers every
//! call it could read: grpc-go and grpc-web derive the code from any other HTTP status.
//!
//! The transports' own limits ([`TRANSPORT_MAX_HEADER_BYTES`]) are well above this one, so heads
//! up to there get this answer; a bigger one gets the transport's bare 431.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use prost_reflect::DescriptorPool;
use tonic::Status;

/// The largest request head the gateway passes on, measured as [`header_list_size`] does.
pub const MAX_HEADER_BYTES: usize = 15 * 1024;

/// What hyper itself reads of a request head (HTTP/1.1 read buffer, HTTP/2 header list).
pub const TRANSPORT_MAX_HEADER_BYTES: usize = 128 * 1024;

/// RFC 9113 §6.5.2's per-field overhead.
const FIELD_OVERHEAD: usize = 32;

/// The size of a request's header list as HTTP/2 counts it, with the pseudo-headers an HTTP/2
/// request would carry.
pub fn header_list_size(request: &http::request::Parts) -> usize {
    let uri = &request.uri;
    let path = uri.path_and_query().map_or(1, |p| p.as_str().len());
    let authority = uri
        .authority()
        .map(|a| a.as_str().len())
        .or_else(|| request.headers.get(header::HOST).map(HeaderValue::len))
        .unwrap_or(0);
    let pseudo = [
        ":method".len() + request.method.as_str().len(),
        ":path".len() + path,
        ":scheme".len() + "https".len(),
        ":authority".len() + authority,
    ];
    let fields = request.headers.iter().map(|(name, value)| name.as_str().len() + value.len());
    pseudo.into_iter().chain(fields).map(|size| size + FIELD_OVERHEAD).sum()
}

/// Middleware: answers 431 to a request whose head is over [`MAX_HEADER_BYTES`].
pub async fn refuse_large_heads(State(pool): State<DescriptorPool>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    if header_list_size(&parts) <= MAX_HEADER_BYTES {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let status =
        Status::resource_exhausted(format!("request headers are larger than the {MAX_HEADER_BYTES} byte limit"));
    if crate::grpc::is_grpc_headers(&parts.headers) {
        // 431 means nothing to a gRPC client: the status goes in `grpc-status` under HTTP 200.
        return crate::grpc::refusal(status, &parts.headers);
    }
    let body = crate::status_http::error_body(&pool, &status);
    (StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut builder = http::Request::get(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap().into_parts().0
    }

    #[test]
    fn a_header_list_is_measured_as_http2_measures_it() {
        // :method GET, :path /a, :scheme https, :authority example.com, then one field.
        let pseudo = (7 + 3 + 32) + (5 + 2 + 32) + (7 + 5 + 32) + (10 + 11 + 32);
        let table = [
            (parts("http://example.com/a", &[]), pseudo),
            (parts("/a", &[("host", "example.com")]), pseudo + (4 + 11 + 32)),
            (parts("http://example.com/a", &[("x-big", &"v".repeat(100))]), pseudo + (5 + 100 + 32)),
            (parts("http://example.com/a", &[("x", "1"), ("x", "2")]), pseudo + 2 * (1 + 1 + 32)),
        ];
        for (request, size) in table {
            assert_eq!(header_list_size(&request), size, "{request:?}");
        }
    }

    #[test]
    fn the_gateways_limit_leaves_room_for_the_mesh_token_below_the_backends() {
        let backends_limit = 16 * 1024;
        let mesh = cutx_platform::mesh::MeshKey::new(&cutx_platform::secret::Secret::new("k".into()));
        let identity = cutx_platform::mesh::MeshIdentity {
            service: cutx_platform::mesh::Peer::Gateway,
            user: Some(cutx_platform::ids::UserId::new()),
        };
        let token = mesh.mint(&identity);
        let added = cutx_platform::mesh::MESH_HEADER.len()
            + token.len()
            + FIELD_OVERHEAD
            + "te: trailers".len()
            + FIELD_OVERHEAD;
        assert!(MAX_HEADER_BYTES + added < backends_limit, "{added} bytes added");
    }

    // Heads up to 100 kB get the gateway's answer, not the transport's.
    const _: () = assert!(TRANSPORT_MAX_HEADER_BYTES > 100 * 1000);
}
