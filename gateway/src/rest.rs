//! The REST handler: one function for every `google.api.http` route.
//!
//! It finds the route, reads the body within the size limit (a JSON body only, by its content
//! type, so a cross-site form post cannot call it), builds the request message, calls
//! the backend over gRPC with the caller's mesh identity, and answers with the JSON of the
//! response or of the error. A server-streaming method answers newline-delimited JSON, one
//! `{"result": ...}` per message and, if the stream fails, a last `{"error": ...}` line.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderValue, StatusCode, header};
use prost::Message;
use prost_reflect::DescriptorPool;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::codec::BytesCodec;
use crate::identity::IdentityMinter;
use crate::routes::{Lookup, RestRoute, RouteTable};
use crate::status_http::{error_response, error_response_as, route_error};
use crate::transcode::{BodyRead, read_body, require_json};
use crate::transcode::{body_too_large, copy_set_cookies, request_message, response_json};
use crate::validate::Validator;

pub struct RestState {
    pub validator: Validator,
    pub pool: DescriptorPool,
    pub table: RouteTable,
    pub backends: HashMap<String, Channel>,
    pub identity: IdentityMinter,
    pub max_body_bytes: usize,
}

/// Request headers passed on as metadata, besides the minted mesh token. The session travels
/// too, so auth-svc can revoke the very token a logout comes with.
const FORWARDED_HEADERS: [header::HeaderName; 3] = [header::AUTHORIZATION, header::COOKIE, header::USER_AGENT];

pub async fn handle(State(state): State<Arc<RestState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let (route, bindings) = match state.table.find(&parts.method, parts.uri.path()) {
        Lookup::Found(route, bindings) => (route, bindings),
        Lookup::MethodNotAllowed => {
            return route_error(&state.pool, Code::Unimplemented, &format!("method {} not allowed here", parts.method));
        }
        Lookup::NotFound => {
            return route_error(&state.pool, Code::NotFound, &format!("no route for {}", parts.uri.path()));
        }
    };
    let body = match read_body(&parts.headers, body, state.max_body_bytes).await {
        BodyRead::Read(body) => body,
        BodyRead::TooLarge { drained } => {
            let mut answer =
                error_response_as(&state.pool, &body_too_large(state.max_body_bytes), StatusCode::PAYLOAD_TOO_LARGE);
            // The rest of an undrained body is still on its way: this connection is done.
            if !drained && parts.version <= http::Version::HTTP_11 {
                answer.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            return answer;
        }
        BodyRead::TooSlow => {
            let status = Status::deadline_exceeded("the request body did not arrive in time");
            let mut answer = error_response_as(&state.pool, &status, StatusCode::REQUEST_TIMEOUT);
            answer.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            return answer;
        }
        BodyRead::Unreadable => {
            return error_response(&state.pool, &Status::cancelled("the request body could not be read"));
        }
    };
    // A body, or a declared content type even with an empty body (a form always declares one),
    // must be JSON.
    let declares_type = parts.headers.contains_key(header::CONTENT_TYPE);
    if !matches!(route.body, crate::routes::BodyRule::Empty)
        && (declares_type || !body.iter().all(u8::is_ascii_whitespace))
        && let Err(status) = require_json(&parts.headers)
    {
        return error_response_as(&state.pool, &status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
    let message = match request_message(route, state.table.dialect(), &bindings, parts.uri.query(), &body) {
        Ok(message) => message,
        Err(status) => return error_response(&state.pool, &status),
    };
    if let Err(status) = state.validator.check(&message) {
        return error_response(&state.pool, &status);
    }
    let Some(channel) = state.backends.get(route.rpc.parent_service().full_name()) else {
        return error_response(
            &state.pool,
            &Status::unimplemented(format!("{} is not served here", route.rpc.parent_service().full_name())),
        );
    };
    let mut call = tonic::Request::new(Bytes::from(message.encode_to_vec()));
    fill_metadata(&state.identity, &parts.headers, call.metadata_mut());
    if route.rpc.is_server_streaming() {
        server_streaming(state.clone(), route.clone(), channel.clone(), call).await
    } else {
        unary(&state, route, channel.clone(), call).await
    }
}

fn fill_metadata(identity: &IdentityMinter, headers: &http::HeaderMap, metadata: &mut MetadataMap) {
    for name in &FORWARDED_HEADERS {
        for value in headers.get_all(name) {
            if let Ok(value) = MetadataValue::try_from(value.as_bytes()) {
                metadata.append(name.as_str(), value);
            }
        }
    }
    let mesh = identity.mesh_value(identity.user(headers));
    let mesh = MetadataValue::try_from(mesh.as_bytes()).expect("a JWT is valid metadata");
    metadata.insert(cutx_platform::mesh::MESH_HEADER, mesh);
    if let Some(id) = cutx_platform::request_id::RequestId::current() {
        let id = MetadataValue::try_from(id.as_str()).expect("an id is letters, digits, - and _");
        metadata.insert(cutx_platform::request_id::HEADER, id);
    }
}

fn path_of(route: &RestRoute) -> http::uri::PathAndQuery {
    route.grpc_path().parse().expect("service and method names make a valid path")
}

/// How long a REST call waits for its backend: a hung backend answers DEADLINE_EXCEEDED (504)
/// instead of holding the connection open. Streams run until they end.
const UNARY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);

async fn unary(state: &RestState, route: &RestRoute, channel: Channel, mut call: tonic::Request<Bytes>) -> Response {
    call.set_timeout(UNARY_DEADLINE);
    let mut client = tonic::client::Grpc::new(channel);
    if let Err(e) = client.ready().await {
        return error_response(&state.pool, &crate::status_http::unreachable(&route.grpc_path(), &e));
    }
    let response = match client.unary(call, path_of(route), BytesCodec).await {
        Ok(response) => response,
        Err(status) => {
            return error_response(&state.pool, &crate::status_http::from_backend(&route.grpc_path(), status));
        }
    };
    let (metadata, encoded, _) = response.into_parts();
    let json = match response_json(route, state.table.dialect(), &encoded) {
        Ok(json) => json,
        Err(status) => return error_response(&state.pool, &status),
    };
    let mut answer = (route.success, axum::Json(json)).into_response();
    copy_set_cookies(&metadata, answer.headers_mut());
    // Every answer is the caller's own (or a session token): never kept by a cache.
    answer.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    answer
}

async fn server_streaming(
    state: Arc<RestState>,
    route: RestRoute,
    channel: Channel,
    call: tonic::Request<Bytes>,
) -> Response {
    let mut client = tonic::client::Grpc::new(channel);
    if let Err(e) = client.ready().await {
        return error_response(&state.pool, &crate::status_http::unreachable(&route.grpc_path(), &e));
    }
    // An error before the first message (trailers-only) is an ordinary HTTP error answer.
    let response = match client.server_streaming(call, path_of(&route), BytesCodec).await {
        Ok(response) => response,
        Err(status) => {
            return error_response(&state.pool, &crate::status_http::from_backend(&route.grpc_path(), status));
        }
    };
    let (metadata, stream, _) = response.into_parts();
    let lines = stream
        .map(move |item| {
            let item = item.map_err(|status| crate::status_http::from_backend(&route.grpc_path(), status));
            let line = match item.and_then(|encoded| response_json(&route, state.table.dialect(), &encoded)) {
                Ok(json) => serde_json::json!({ "result": json }),
                Err(status) => serde_json::json!({ "error": crate::status_http::error_body(&state.pool, &status) }),
            };
            let mut bytes = serde_json::to_vec(&line).expect("JSON values serialize");
            bytes.push(b'\n');
            (line.get("error").is_some(), Bytes::from(bytes))
        })
        // Nothing follows an error line.
        .scan(false, |failed, (is_error, bytes)| {
            if *failed {
                return futures::future::ready(None);
            }
            *failed = is_error;
            futures::future::ready(Some(Ok::<_, std::convert::Infallible>(bytes)))
        });
    let mut answer = Response::new(Body::from_stream(lines));
    answer.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
    answer.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    copy_set_cookies(&metadata, answer.headers_mut());
    answer
}
