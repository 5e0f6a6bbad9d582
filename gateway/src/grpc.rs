//! The gRPC side of the port: health, reflection and the pass-through, behind tonic-web.
//!
//! Reflection (v1, and v1alpha for grpcurl 1.8) lists only the exposed services, health and
//! reflection itself, and describes only what they reach; health reports SERVING for "" and for
//! each exposed service.

use std::collections::HashSet;
use std::convert::Infallible;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use prost_reflect::DescriptorPool;
use tonic::service::Routes;
use tonic_health::ServingStatus;
use tower::util::BoxCloneSyncService;
use tower::{Layer, ServiceExt};

use crate::forward::Forwarder;

const HEALTH_SERVICE: &str = "grpc.health.v1.Health";
const REFLECTION_SERVICES: [&str; 2] =
    ["grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"];

pub type GrpcService = BoxCloneSyncService<Request, Response, Infallible>;

/// Requests of the gRPC side: gRPC and gRPC-web (binary or text) alike.
pub fn is_grpc(request: &Request) -> bool {
    is_grpc_headers(request.headers())
}

/// Requests by header alone, for middleware that sees only the head.
pub fn is_grpc_headers(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"))
}

/// The gateway's own refusal of a gRPC or gRPC-web call it read the head of: a trailers-only
/// `status` under HTTP 200 (grpc-go and grpc-web derive the code from any other HTTP status), in
/// the request's own content type (gRPC-web answers binary or text even when trailers-only).
pub fn refusal(status: tonic::Status, request_headers: &http::HeaderMap) -> Response {
    let mut answer = status.into_http::<axum::body::Body>();
    if let Some(content_type) = request_headers.get(http::header::CONTENT_TYPE) {
        answer.headers_mut().insert(http::header::CONTENT_TYPE, content_type.clone());
    }
    answer
}

pub async fn grpc_service(
    pool: &DescriptorPool,
    exposed: &HashSet<String>,
    forwarder: Forwarder,
) -> anyhow::Result<GrpcService> {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_service_status("", ServingStatus::Serving).await;
    for service in exposed {
        reporter.set_service_status(service, ServingStatus::Serving).await;
    }

    // Only what the exposed services reach can be described (see `crate::reflection`).
    let public = crate::reflection::public_descriptor_set(pool, exposed)?;
    let listed = exposed.iter().map(String::as_str).chain([HEALTH_SERVICE]).chain(REFLECTION_SERVICES);
    let reflection = || {
        listed.clone().fold(
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(&public)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET),
            |builder, name| builder.with_service_name(name),
        )
    };
    let routes = Routes::new(health)
        .add_service(reflection().build_v1()?)
        .add_service(reflection().build_v1alpha()?)
        .into_axum_router()
        // Routes' router already has a fallback (UNIMPLEMENTED); merging would panic.
        .fallback_service(forwarder);
    let web = tonic_web::GrpcWebLayer::new().layer(routes);
    let web = ServiceExt::<Request>::map_response(web, IntoResponse::into_response);
    // gRPC-web-text bodies are checked as base64 before tonic-web decodes them.
    let checked = tower::service_fn(move |request: Request| {
        let web = web.clone();
        async move {
            if crate::grpc_web_text::is_grpc_web_text(&request) {
                crate::grpc_web_text::checked(web, request).await
            } else {
                web.oneshot(request).await
            }
        }
    });
    Ok(BoxCloneSyncService::new(checked))
}
