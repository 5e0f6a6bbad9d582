//! gRPC status -> HTTP answer, in one place.
//!
//! Codes map as grpc-gateway's `runtime.HTTPStatusFromCode` does, with one product exception:
//! `FAILED_PRECONDITION` with the `INSUFFICIENT_CREDITS` reason is 402, as the reference REST API
//! answered. The body is always `{"code", "message", "details"}`, each detail an `Any` rendered
//! as proto3 JSON through the descriptor pool (so a `BadRequest` shows its `fieldViolations`).

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
use tonic::{Code, Status};

use cutx_platform::error::{REASON_INSUFFICIENT_CREDITS, reason_of};

/// The HTTP status for a gRPC code, exactly as grpc-gateway maps it.
pub fn http_status_from_code(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::from_u16(499).expect("499 is a valid status code"),
        Code::Unknown => StatusCode::INTERNAL_SERVER_ERROR,
        Code::InvalidArgument => StatusCode::BAD_REQUEST,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::FailedPrecondition => StatusCode::BAD_REQUEST,
        Code::Aborted => StatusCode::CONFLICT,
        Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
    }
}

/// The HTTP status for a whole status: the code mapping plus the 402 exception.
pub fn http_status(status: &Status) -> StatusCode {
    if status.code() == Code::FailedPrecondition && reason_of(status).as_deref() == Some(REASON_INSUFFICIENT_CREDITS) {
        return StatusCode::PAYMENT_REQUIRED;
    }
    http_status_from_code(status.code())
}

/// `{"code", "message", "details"}` for a status.
pub fn error_body(pool: &DescriptorPool, status: &Status) -> serde_json::Value {
    serde_json::json!({
        "code": status.code() as i32,
        "message": status.message(),
        "details": details_json(pool, status.details()),
    })
}

/// The HTTP answer for a status, with its `Set-Cookie` metadata carried over.
pub fn error_response(pool: &DescriptorPool, status: &Status) -> Response {
    let mut response = (http_status(status), axum::Json(error_body(pool, status))).into_response();
    crate::transcode::copy_set_cookies(status.metadata(), response.headers_mut());
    response
}

/// Each `Any` of an encoded `google.rpc.Status` as JSON. Details the pool cannot describe are
/// shown by their type URL only, so an unknown detail never hides the error itself.
fn details_json(pool: &DescriptorPool, encoded_status: &[u8]) -> Vec<serde_json::Value> {
    if encoded_status.is_empty() {
        return Vec::new();
    }
    let status_desc =
        pool.get_message_by_name("google.rpc.Status").expect("google/rpc/status.proto is in the descriptor set");
    let Ok(rpc_status) = DynamicMessage::decode(status_desc, encoded_status) else {
        return Vec::new();
    };
    let Some(details) = rpc_status.get_field_by_name("details") else {
        return Vec::new();
    };
    let options = SerializeOptions::new().skip_default_fields(false);
    details
        .as_list()
        .unwrap_or_default()
        .iter()
        .filter_map(|value| value.as_message())
        .map(|any| {
            any.serialize_with_options(serde_json::value::Serializer, &options).unwrap_or_else(|_| {
                let type_url = any.get_field_by_name("type_url").and_then(|v| v.as_str().map(str::to_string));
                serde_json::json!({ "@type": type_url.unwrap_or_default() })
            })
        })
        .collect()
}

/// The gateway's own 404/405 answers, in the same shape as a backend's errors.
pub fn route_error(pool: &DescriptorPool, code: Code, message: &str) -> Response {
    let status = Status::new(code, message);
    let http = match code {
        // A known path with another method: HTTP says 405, whatever the gRPC code maps to.
        Code::Unimplemented => StatusCode::METHOD_NOT_ALLOWED,
        other => http_status_from_code(other),
    };
    let mut response = (http, axum::Json(error_body(pool, &status))).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_grpc_code_maps_to_grpc_gateways_http_status() {
        let table = [
            (Code::Ok, 200),
            (Code::Cancelled, 499),
            (Code::Unknown, 500),
            (Code::InvalidArgument, 400),
            (Code::DeadlineExceeded, 504),
            (Code::NotFound, 404),
            (Code::AlreadyExists, 409),
            (Code::PermissionDenied, 403),
            (Code::ResourceExhausted, 429),
            (Code::FailedPrecondition, 400),
            (Code::Aborted, 409),
            (Code::OutOfRange, 400),
            (Code::Unimplemented, 501),
            (Code::Internal, 500),
            (Code::Unavailable, 503),
            (Code::DataLoss, 500),
            (Code::Unauthenticated, 401),
        ];
        for (code, http) in table {
            assert_eq!(http_status_from_code(code).as_u16(), http, "{code:?}");
            assert_eq!(http_status(&Status::new(code, "x")).as_u16(), http, "{code:?} without details");
        }
    }

    #[test]
    fn insufficient_credits_is_402_and_other_failed_preconditions_stay_400() {
        let table = [
            (cutx_platform::error::insufficient_credits(3, 1), 402),
            (cutx_platform::error::with_reason(Code::FailedPrecondition, "x", "OTHER"), 400),
            (cutx_platform::error::with_reason(Code::PermissionDenied, "x", REASON_INSUFFICIENT_CREDITS), 403),
            (Status::failed_precondition("x"), 400),
        ];
        for (status, http) in table {
            assert_eq!(http_status(&status).as_u16(), http, "{status:?}");
        }
    }

    #[test]
    fn the_error_body_renders_bad_request_details_as_json() {
        let pool = DescriptorPool::decode(cutx_proto::FILE_DESCRIPTOR_SET).unwrap();
        let status = cutx_platform::error::invalid_field("prompt", "too short");
        let body = error_body(&pool, &status);
        assert_eq!(body["code"], 3);
        assert_eq!(body["details"][0]["@type"], "type.googleapis.com/google.rpc.BadRequest");
        assert_eq!(body["details"][0]["fieldViolations"][0]["field"], "prompt");
        assert_eq!(body["details"][0]["fieldViolations"][0]["description"], "too short");
    }
}
