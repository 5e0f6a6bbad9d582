//! How a webhook endpoint refuses a delivery: the status its sender acts on (401 never retried
//! by a forger's luck, 503 retried later, 400 for a body that will never do) and a small JSON body
//! in the gateway's words.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// What a refusal means to the sender.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    Unauthenticated,
    Unavailable,
    InvalidArgument,
}

/// The answer to a refused delivery, saying `message`.
pub(crate) fn answer(kind: Kind, message: String) -> Response {
    let (status, error) = match kind {
        Kind::Unauthenticated => (StatusCode::UNAUTHORIZED, "unauthenticated"),
        Kind::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        Kind::InvalidArgument => (StatusCode::BAD_REQUEST, "invalid_argument"),
    };
    let body = serde_json::json!({ "error": error, "message": message, "code": status.as_u16() });
    (status, axum::Json(body)).into_response()
}
