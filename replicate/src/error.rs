//! What can go wrong calling Replicate, and whether trying again later could help. No error
//! carries the API token: details from Replicate are scrubbed of it and kept short.

use std::time::Duration;

use cutx_platform::fetch::FetchError;

/// Longest `detail` kept from an error answer: enough for a log line.
const DETAIL_CHARS: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum ReplicateError {
    /// Replicate answered 429 to every attempt; `retry_after` is what it asked for last.
    #[error("replicate throttled the request on every attempt")]
    Throttled { retry_after: Option<Duration> },
    /// A 4xx other than 429: bad input, a bad token, an unknown prediction or model.
    #[error("replicate refused the request ({status}): {detail}")]
    Refused { status: u16, detail: String },
    /// A 5xx: after every attempt for calls that are safe to repeat, at once for a create
    /// (which may have been made, so only the caller can decide whether to try again).
    #[error("replicate is unavailable ({status})")]
    Unavailable { status: u16 },
    /// An answer that is neither success nor an error Replicate documents (a redirect, a 1xx).
    #[error("replicate answered with status {status}, which this call does not expect")]
    UnexpectedStatus { status: u16 },
    /// A model reference built by hand that `ModelRef::from_str` would not have made.
    #[error("not a model to run")]
    InvalidModel(#[source] crate::model_ref::InvalidModelRef),
    /// A prediction id that cannot be a path segment of Replicate's API.
    #[error("{id:?} is not a prediction id")]
    InvalidId { id: String },
    #[error("calling replicate")]
    Fetch(#[source] FetchError),
    #[error("replicate's answer is not the JSON it documents")]
    Decode(#[source] serde_json::Error),
}

impl ReplicateError {
    /// Trying the same call again cannot succeed: the job should fail (and refund) at once.
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::Throttled { .. } | Self::Unavailable { .. } => false,
            Self::Refused { .. }
            | Self::UnexpectedStatus { .. }
            | Self::InvalidModel(_)
            | Self::InvalidId { .. }
            | Self::Decode(_) => true,
            Self::Fetch(error) => error.is_permanent(),
        }
    }
}

/// The `detail` of an error answer (Replicate's problem JSON, or the text as it came), on one
/// line, without the token, at most [`DETAIL_CHARS`] characters.
pub(crate) fn detail_of(body: &[u8], token: &str) -> String {
    let text = String::from_utf8_lossy(body);
    let detail = match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(serde_json::Value::Object(problem)) => match problem.get("detail").or_else(|| problem.get("title")) {
            Some(serde_json::Value::String(detail)) => detail.clone(),
            _ => text.into_owned(),
        },
        _ => text.into_owned(),
    };
    let scrubbed = if token.is_empty() { detail } else { detail.replace(token, "***") };
    let one_line = scrubbed.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut chars = one_line.chars();
    let mut short: String = chars.by_ref().take(DETAIL_CHARS).collect();
    if chars.next().is_some() {
        short.push('…');
    }
    short
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_detail_of_a_problem_answer_is_its_detail_field() {
        let body =
            br#"{"title": "Input validation failed", "detail": "- input.prompt: Field required", "status": 422}"#;
        assert_eq!(detail_of(body, "r8_token"), "- input.prompt: Field required");
        assert_eq!(detail_of(br#"{"title": "Unauthenticated"}"#, "r8_token"), "Unauthenticated");
    }

    #[test]
    fn a_detail_that_is_not_json_is_kept_as_text_on_one_line() {
        assert_eq!(detail_of(b"<html>\n  Bad\tGateway\n</html>", "r8_token"), "<html> Bad Gateway </html>");
    }

    #[test]
    fn a_detail_never_contains_the_token() {
        let body = br#"{"detail": "token r8_SeCrEt is not valid; r8_SeCrEt"}"#;
        let detail = detail_of(body, "r8_SeCrEt");
        assert!(!detail.contains("r8_SeCrEt"), "{detail}");
        assert_eq!(detail, "token *** is not valid; ***");
    }

    #[test]
    fn a_long_detail_is_cut_to_about_two_hundred_characters() {
        let body = format!(r#"{{"detail": "{}"}}"#, "ü".repeat(1000));
        let detail = detail_of(body.as_bytes(), "r8_token");
        assert_eq!(detail.chars().count(), DETAIL_CHARS + 1);
        assert!(detail.ends_with('…'));
    }
}
