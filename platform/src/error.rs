//! Building `tonic::Status` values with `google.rpc` details, the same way in every service.
//!
//! The gateway renders these details into the REST error body, so a field violation reaches a
//! curl user as `{"code":3,"message":"prompt: ...","details":[{"@type":...BadRequest,...}]}`.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The `ErrorInfo.domain` of every CutX error.
pub const ERROR_DOMAIN: &str = "cutx.dev";
/// The `ErrorInfo.reason` for a debit that would go below zero (HTTP 402 over REST).
pub const REASON_INSUFFICIENT_CREDITS: &str = "INSUFFICIENT_CREDITS";
/// The `ErrorInfo.reason` of a worker's call refused because another delivery holds the job.
pub const REASON_LEASE_LOST: &str = "LEASE_LOST";

/// One bad field of a request: its name as the client wrote it and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

impl FieldViolation {
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self { field: field.into(), description: description.into() }
    }
}

/// `INVALID_ARGUMENT` naming every bad field, in the message and as `BadRequest` details.
pub fn invalid_argument(violations: &[FieldViolation]) -> Status {
    let message = violations.iter().map(|v| format!("{}: {}", v.field, v.description)).collect::<Vec<_>>().join("; ");
    let mut details = ErrorDetails::new();
    for v in violations {
        details.add_bad_request_violation(v.field.clone(), v.description.clone());
    }
    Status::with_error_details(Code::InvalidArgument, message, details)
}

/// `INVALID_ARGUMENT` for one field.
pub fn invalid_field(field: &str, description: impl Into<String>) -> Status {
    invalid_argument(&[FieldViolation::new(field, description)])
}

/// `ALREADY_EXISTS` (HTTP 409) for a field whose value is already taken by something else, such
/// as an idempotency key sent before with a different request; the field is named as in
/// [`invalid_field`], and `reason` says what happened for clients that branch on it.
pub fn conflicting_field(field: &str, description: impl Into<String>, reason: &str) -> Status {
    let description = description.into();
    let mut details = ErrorDetails::new();
    details.add_bad_request_violation(field, description.clone());
    details.set_error_info(reason, ERROR_DOMAIN, HashMap::new());
    Status::with_error_details(Code::AlreadyExists, format!("{field}: {description}"), details)
}

/// A status with an `ErrorInfo` reason, for clients that branch on it.
pub fn with_reason(code: Code, message: impl Into<String>, reason: &str) -> Status {
    let mut details = ErrorDetails::new();
    details.set_error_info(reason, ERROR_DOMAIN, HashMap::new());
    Status::with_error_details(code, message, details)
}

/// Too many requests: `RESOURCE_EXHAUSTED` with a `RetryInfo` (how long to wait, at least a
/// second; the gateway answers it as HTTP 429 with `Retry-After`) and an `ErrorInfo` reason.
pub fn rate_limited(message: impl Into<String>, retry_in: std::time::Duration, reason: &str) -> Status {
    let mut details = ErrorDetails::new();
    details.set_retry_info(Some(retry_in.max(std::time::Duration::from_secs(1))));
    details.set_error_info(reason, ERROR_DOMAIN, HashMap::new());
    Status::with_error_details(Code::ResourceExhausted, message, details)
}

/// Too few credits: `FAILED_PRECONDITION` with reason `INSUFFICIENT_CREDITS`.
pub fn insufficient_credits(needed: crate::credits::Credits, balance: crate::credits::Credits) -> Status {
    with_reason(
        Code::FailedPrecondition,
        format!("insufficient credits: {needed} needed, {balance} available"),
        REASON_INSUFFICIENT_CREDITS,
    )
}

/// The `ErrorInfo.reason` of a status, if it has one.
pub fn reason_of(status: &Status) -> Option<String> {
    status.get_details_error_info().map(|info| info.reason)
}

/// A status another service's call ended with, as this service's own client may see it. One the
/// other service answered passes as it is (every service answers in its own words, never a
/// backend's). One the client side of the call made up (the connection failed, the answer was
/// not gRPC: tonic's words, with the transport's) describes the mesh, not the call: it is logged
/// and answered as a bare `UNAVAILABLE`, `DEADLINE_EXCEEDED`, `CANCELLED` or `INTERNAL`.
pub fn from_downstream(callee: &str, status: Status) -> Status {
    use std::error::Error as _;
    let message = status.message();
    let made_up_here = status.source().is_some()
        || ["grpc-status header missing", "protocol error", "Unexpected EOF", "error decoding", "h2 protocol error"]
            .iter()
            .any(|prefix| message.starts_with(prefix));
    if !made_up_here {
        return status;
    }
    tracing::warn!(callee, code = ?status.code(), error = %status.message(), "a call to another service failed in transport");
    match status.code() {
        Code::DeadlineExceeded => Status::deadline_exceeded("the service did not answer in time"),
        Code::Cancelled => Status::cancelled("the call was cancelled"),
        Code::Unavailable => Status::unavailable("the service is unavailable"),
        _ => Status::internal("the service answered in a way that could not be read"),
    }
}

/// An error and every `source()` under it, on one line: `a: b: c`. What a log line needs, and
/// what a client must never see.
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut next = err.source();
    while let Some(cause) = next {
        let said = cause.to_string();
        // Some errors repeat their source's words in their own; say them once.
        if !text.ends_with(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        next = cause.source();
    }
    text
}

/// A failure the client cannot act on: logged once, with its whole cause, answered as a bare
/// `INTERNAL`.
pub fn internal(context: &str, err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Status {
    let err = err.into();
    tracing::error!(error = %chain(err.as_ref()), "{context}");
    Status::internal("internal error")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_argument_names_every_field_in_message_and_details() {
        let status = invalid_argument(&[
            FieldViolation::new("prompt", "must be 5 to 1000 characters"),
            FieldViolation::new("aspect_ratio", "must be one of 1:1, 9:16, 4:5, 16:9"),
        ]);
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains("prompt:") && status.message().contains("aspect_ratio:"));
        let fields: Vec<_> =
            status.get_details_bad_request().unwrap().field_violations.into_iter().map(|v| v.field).collect();
        assert_eq!(fields, ["prompt", "aspect_ratio"]);
    }

    #[test]
    fn insufficient_credits_is_failed_precondition_with_its_reason() {
        let status = insufficient_credits(crate::credits::Credits::from_u32(3), crate::credits::Credits::from_u32(1));
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert_eq!(reason_of(&status).as_deref(), Some(REASON_INSUFFICIENT_CREDITS));
    }

    #[test]
    fn internal_errors_carry_no_cause() {
        let status = internal("db", "syntax error at SELECT * FROM secrets");
        assert_eq!(status.message(), "internal error");
        assert!(status.details().is_empty());
    }
}
