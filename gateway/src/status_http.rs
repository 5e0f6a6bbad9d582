//! gRPC status -> HTTP answer, in one place.
//!
//! Codes map as grpc-gateway's `runtime.HTTPStatusFromCode` does, with one product exception:
//! `FAILED_PRECONDITION` with the `INSUFFICIENT_CREDITS` reason is 402, as the reference REST API
//! answered. The body is the reference API's `{"error", "message"}`, still machine-readable:
//! `error` is a short name (the `ErrorInfo` reason in words, `Insufficient Credits`, or else the
//! HTTP reason phrase, `Not Found`), `code` the gRPC code's lowercase name (`not_found`) and
//! `details` each `Any` rendered as proto3 JSON through the descriptor pool (so a `BadRequest`
//! shows its `fieldViolations`).

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

/// The lowercase name of a gRPC code, as the gRPC spec spells it (`invalid_argument`).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

/// The short name of an error: its reason in words (`INSUFFICIENT_CREDITS` is `Insufficient
/// Credits`), or the HTTP reason phrase of its status.
pub fn short_name(status: &Status, http: StatusCode) -> String {
    match reason_of(status) {
        Some(reason) if !reason.is_empty() => reason
            .split('_')
            .filter(|word| !word.is_empty())
            .map(|word| {
                let lower = word.to_ascii_lowercase();
                let mut chars = lower.chars();
                chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join(" "),
        _ => http.canonical_reason().unwrap_or("Error").to_string(),
    }
}

/// A status as the client may see it. One the backend answered passes as it is; one the client
/// side of the call made up (the connection failed, the answer was not gRPC) describes the mesh,
/// not the call, so it is logged and the caller gets a bare `UNAVAILABLE` or `INTERNAL`.
pub fn from_backend(path: &str, status: Status) -> Status {
    cutx_platform::error::from_downstream(path, status)
}

/// A backend whose connection is not ready: logged, and a bare `UNAVAILABLE` for the client.
pub fn unreachable(path: &str, error: &dyn std::fmt::Display) -> Status {
    tracing::warn!(path, error = %error, "a backend is not reachable");
    Status::unavailable("the service is unavailable")
}

/// `{"error", "message", "code", "details"}` for a status answered with `http`.
pub fn error_body_as(pool: &DescriptorPool, status: &Status, http: StatusCode) -> serde_json::Value {
    serde_json::json!({
        "error": short_name(status, http),
        "message": status.message(),
        "code": code_name(status.code()),
        "details": details_json(pool, status.details()),
    })
}

/// [`error_body_as`] with the status's own HTTP status.
pub fn error_body(pool: &DescriptorPool, status: &Status) -> serde_json::Value {
    error_body_as(pool, status, http_status(status))
}

/// The HTTP answer for a status, with its `Set-Cookie` metadata carried over.
pub fn error_response(pool: &DescriptorPool, status: &Status) -> Response {
    error_response_as(pool, status, http_status(status))
}

/// The answer for a status under an HTTP status of the gateway's own choosing (413, 415),
/// where HTTP says more than the gRPC code does.
pub fn error_response_as(pool: &DescriptorPool, status: &Status, http: StatusCode) -> Response {
    let mut response = (http, axum::Json(error_body_as(pool, status, http))).into_response();
    crate::transcode::copy_set_cookies(status.metadata(), response.headers_mut());
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(seconds) = retry_after_seconds(status) {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// A status's `RetryInfo` delay in whole seconds, rounded up (HTTP's `Retry-After` has no
/// fractions, and waiting less than asked would be refused again).
pub fn retry_after_seconds(status: &Status) -> Option<u64> {
    use tonic_types::StatusExt;
    let delay = status.get_details_retry_info()?.retry_delay?;
    Some(delay.as_secs() + u64::from(delay.subsec_nanos() > 0))
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
    error_response_as(pool, &status, http)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cutx_platform::credits::Credits;

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
            (cutx_platform::error::insufficient_credits(Credits::from_u32(3), Credits::from_u32(1)), 402),
            (cutx_platform::error::with_reason(Code::FailedPrecondition, "x", "OTHER"), 400),
            (cutx_platform::error::with_reason(Code::PermissionDenied, "x", REASON_INSUFFICIENT_CREDITS), 403),
            (Status::failed_precondition("x"), 400),
        ];
        for (status, http) in table {
            assert_eq!(http_status(&status).as_u16(), http, "{status:?}");
        }
    }

    #[test]
    fn the_short_name_is_the_reason_in_words_or_the_http_reason_phrase() {
        let pool = DescriptorPool::decode(cutx_proto::FILE_DESCRIPTOR_SET).unwrap();
        let table = [
            (
                cutx_platform::error::insufficient_credits(Credits::from_u32(3), Credits::from_u32(1)),
                "Insufficient Credits",
                "failed_precondition",
            ),
            (
                cutx_platform::error::with_reason(Code::FailedPrecondition, "x", "PROVIDER_NOT_CONFIGURED"),
                "Provider Not Configured",
                "failed_precondition",
            ),
            (Status::not_found("no job"), "Not Found", "not_found"),
            (Status::unauthenticated("sign in"), "Unauthorized", "unauthenticated"),
            (Status::permission_denied("no"), "Forbidden", "permission_denied"),
            (Status::resource_exhausted("slow down"), "Too Many Requests", "resource_exhausted"),
            (Status::unavailable("later"), "Service Unavailable", "unavailable"),
            (Status::already_exists("twice"), "Conflict", "already_exists"),
        ];
        for (status, error, code) in table {
            let body = error_body(&pool, &status);
            assert_eq!(body["error"], error, "{status:?}");
            assert_eq!(body["code"], code, "{status:?}");
            assert_eq!(body["message"], status.message());
        }
    }

    #[test]
    fn the_error_body_renders_bad_request_details_as_json() {
        let pool = DescriptorPool::decode(cutx_proto::FILE_DESCRIPTOR_SET).unwrap();
        let status = cutx_platform::error::invalid_field("prompt", "too short");
        let body = error_body(&pool, &status);
        assert_eq!(body["error"], "Bad Request");
        assert_eq!(body["code"], "invalid_argument");
        assert_eq!(body["details"][0]["@type"], "type.googleapis.com/google.rpc.BadRequest");
        assert_eq!(body["details"][0]["fieldViolations"][0]["field"], "prompt");
        assert_eq!(body["details"][0]["fieldViolations"][0]["description"], "too short");
    }
}
