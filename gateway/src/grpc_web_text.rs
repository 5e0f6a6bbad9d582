//! A gRPC-web-text request body is checked before tonic-web sees it: one that is not base64
//! answers `INVALID_ARGUMENT`.
//!
//! tonic-web decodes base64 as the body streams by, so a malformed body surfaces as a broken
//! body in the middle of the forwarded call, which the backend connection reports as
//! `UNAVAILABLE`: a code clients retry, for a request that can never succeed. gRPC-web clients
//! only make unary and server-streaming calls, so a request body is one message, and reading it
//! whole (within [`MAX_TEXT_BODY_BYTES`]) costs nothing a call would not spend anyway.
//!
//! A text body may be several base64 chunks, each padded (a client encodes as it writes); the
//! decoded bytes go on to tonic-web re-encoded as one string, because tonic-web decodes
//! whatever is buffered in one go and refuses padding in the middle of it.

use std::convert::Infallible;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, general_purpose};
use http::header;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tonic::Status;
use tower::{Service, ServiceExt};

use crate::frames::MAX_MESSAGE_BYTES;

/// Base64 of one largest message and its frame header, with room for per-chunk padding.
pub const MAX_TEXT_BODY_BYTES: usize = (MAX_MESSAGE_BYTES + 5).div_ceil(3) * 4 + 4096;

/// Padding optional, as tonic-web decodes.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

pub fn is_grpc_web_text(request: &Request) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc-web-text"))
}

/// Passes `request` on to `inner` with its body checked and re-encoded, or answers the error
/// itself, trailers-only in the request's own content type.
pub async fn checked<S>(inner: S, request: Request) -> Result<Response, Infallible>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    let (mut parts, body) = request.into_parts();
    let read = Limited::new(body, MAX_TEXT_BODY_BYTES).collect();
    let Ok(read) = tokio::time::timeout(crate::transcode::BODY_TIME, read).await else {
        let status = Status::deadline_exceeded("the request message did not arrive in time");
        return Ok(trailers_only(status, &parts.headers));
    };
    let text = match read {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => {
            let status =
                Status::resource_exhausted(format!("request message is larger than {MAX_MESSAGE_BYTES} bytes"));
            return Ok(trailers_only(status, &parts.headers));
        }
        Err(_) => return Ok(trailers_only(Status::cancelled("the request body could not be read"), &parts.headers)),
    };
    let Some(decoded) = decode_chunks(&text) else {
        return Ok(trailers_only(Status::invalid_argument("the request body is not valid base64"), &parts.headers));
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    let body = Body::from(general_purpose::STANDARD.encode(decoded));
    inner.oneshot(Request::from_parts(parts, body)).await
}

/// The bytes of one or more concatenated base64 chunks, each ending at its padding.
fn decode_chunks(text: &[u8]) -> Option<Vec<u8>> {
    let mut decoded = Vec::with_capacity(text.len() / 4 * 3);
    let mut rest = text;
    while !rest.is_empty() {
        let padding_at = rest.iter().position(|b| *b == b'=').unwrap_or(rest.len());
        let end = padding_at + rest[padding_at..].iter().take_while(|b| **b == b'=').count();
        LENIENT.decode_vec(&rest[..end], &mut decoded).ok()?;
        rest = &rest[end..];
    }
    Some(decoded)
}

fn trailers_only(status: Status, request_headers: &http::HeaderMap) -> Response {
    let mut answer = status.into_http::<Body>();
    if let Some(content_type) = request_headers.get(header::CONTENT_TYPE) {
        answer.headers_mut().insert(header::CONTENT_TYPE, content_type.clone());
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_chunks_decode_and_anything_else_is_refused() {
        let table: [(&str, Option<&[u8]>); 10] = [
            ("", Some(b"")),
            ("AAAAAAA=", Some(&[0, 0, 0, 0, 0])),
            ("AAAAAAA", Some(&[0, 0, 0, 0, 0])),
            ("AA==AAAAAA==", Some(&[0, 0, 0, 0, 0])),
            ("aGk=aGk=", Some(b"hihi")),
            ("!!!not base64!!!", None),
            ("AAAA AAAA", None),
            ("AAAAA", None),
            ("=", None),
            ("AA-_", None),
        ];
        for (text, want) in table {
            assert_eq!(decode_chunks(text.as_bytes()).as_deref(), want, "{text:?}");
        }
    }
}
