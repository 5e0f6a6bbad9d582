//! The one request message of a call that is not client-streaming.
//!
//! gRPC frames each message as a compressed flag (1 byte), a big-endian length (4 bytes) and the
//! message. A unary or server-streaming call carries exactly one. The gateway reads the whole
//! request body first and forwards it only if it holds exactly one whole, uncompressed message,
//! so a backend never silently serves the first of two messages, and a [`RequestCheck`] sees the
//! very bytes the backend will decode.
//!
//! Codes follow grpc's statuscodes.md: a request cardinality violation (none, or more than one)
//! is `UNIMPLEMENTED`; a compressed flag without a `grpc-encoding`, or a frame cut short, is a
//! protocol error, `INTERNAL`; an encoding the server does not support is `UNIMPLEMENTED`, and no
//! backend of the mesh takes compressed requests, which also means a check can never be skipped
//! by compressing; a message over the limit is `RESOURCE_EXHAUSTED`.
//!
//! [`RequestCheck`]: crate::forward::RequestCheck

use bytes::Bytes;
use http_body::Body;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tonic::Status;

/// tonic's default limit on a decoded message, which every backend keeps.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

const FRAME_HEADER_BYTES: usize = 5;

/// The whole request body, refused once it is longer than one frame of the largest message.
pub async fn read_body<B>(body: B) -> Result<Bytes, Status>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let read = Limited::new(body, FRAME_HEADER_BYTES + MAX_MESSAGE_BYTES).collect();
    let Ok(read) = tokio::time::timeout(crate::transcode::BODY_TIME, read).await else {
        return Err(Status::deadline_exceeded("the request message did not arrive in time"));
    };
    match read {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(too_large()),
        Err(_) => Err(Status::cancelled("the request body could not be read")),
    }
}

/// The message of a body that frames exactly one, uncompressed. `grpc_encoding` is the
/// request's `grpc-encoding` header, if any.
pub fn single_message(body: &Bytes, grpc_encoding: Option<&str>) -> Result<Bytes, Status> {
    let Some(header) = body.get(..FRAME_HEADER_BYTES) else {
        if body.is_empty() {
            return Err(Status::unimplemented("a request message is required"));
        }
        return Err(Status::internal("the request ends inside a message frame header"));
    };
    let compressed = match header[0] {
        0 => false,
        1 => true,
        flag => return Err(Status::internal(format!("unknown message frame flag {flag}"))),
    };
    let length = u32::from_be_bytes(header[1..].try_into().expect("four length bytes")) as usize;
    if length > MAX_MESSAGE_BYTES {
        return Err(too_large());
    }
    let end = FRAME_HEADER_BYTES + length;
    if body.len() < end {
        return Err(Status::internal("the request ends inside a message"));
    }
    if body.len() > end {
        return Err(Status::unimplemented("the method takes one request message, and more were sent"));
    }
    if compressed {
        return Err(match grpc_encoding {
            None | Some("identity") => Status::internal("a compressed message without a grpc-encoding"),
            Some(encoding) => Status::unimplemented(format!("compressed requests ({encoding}) are not accepted")),
        });
    }
    Ok(body.slice(FRAME_HEADER_BYTES..end))
}

fn too_large() -> Status {
    Status::resource_exhausted(format!("request message is larger than {MAX_MESSAGE_BYTES} bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use tonic::Code;

    fn frame(flag: u8, message: &[u8]) -> Vec<u8> {
        let mut out = vec![flag];
        out.extend((message.len() as u32).to_be_bytes());
        out.extend(message);
        out
    }

    #[test]
    fn exactly_one_uncompressed_message_passes() {
        let two = [frame(0, b"ab"), frame(0, b"c")].concat();
        let table: Vec<(Vec<u8>, Option<&str>, Result<&[u8], Code>)> = vec![
            (frame(0, b"hello"), None, Ok(b"hello")),
            (frame(0, b""), None, Ok(b"")),
            (frame(0, b"hello"), Some("gzip"), Ok(b"hello")),
            (vec![], None, Err(Code::Unimplemented)),
            (two, None, Err(Code::Unimplemented)),
            ([frame(0, b"ab"), vec![0]].concat(), None, Err(Code::Unimplemented)),
            (vec![0, 0, 0], None, Err(Code::Internal)),
            (frame(0, b"hello")[..7].to_vec(), None, Err(Code::Internal)),
            (frame(1, b"hello"), None, Err(Code::Internal)),
            (frame(1, b"hello"), Some("identity"), Err(Code::Internal)),
            (frame(1, b"hello"), Some("gzip"), Err(Code::Unimplemented)),
            (frame(2, b"hello"), None, Err(Code::Internal)),
            (
                [vec![0], (MAX_MESSAGE_BYTES as u32 + 1).to_be_bytes().to_vec()].concat(),
                None,
                Err(Code::ResourceExhausted),
            ),
        ];
        for (body, encoding, want) in table {
            let got = single_message(&Bytes::from(body.clone()), encoding);
            match want {
                Ok(message) => assert_eq!(got.as_deref().ok(), Some(message), "{body:?}"),
                Err(code) => assert_eq!(got.map_err(|s| s.code()).err(), Some(code), "{body:?} {encoding:?}"),
            }
        }
    }

    #[tokio::test]
    async fn a_body_longer_than_one_largest_frame_is_not_read_to_its_end() {
        let body = http_body_util::Full::new(Bytes::from(vec![0u8; FRAME_HEADER_BYTES + MAX_MESSAGE_BYTES + 1]));
        assert_eq!(read_body(body).await.unwrap_err().code(), Code::ResourceExhausted);
    }

    proptest! {
        #[test]
        fn one_framed_message_comes_back_as_it_was(message in proptest::collection::vec(any::<u8>(), 0..512)) {
            let got = single_message(&Bytes::from(frame(0, &message)), None).unwrap();
            prop_assert_eq!(got.as_ref(), message.as_slice());
        }

        #[test]
        fn any_body_that_is_not_one_frame_is_refused(messages in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..16), 2..5)) {
            let body: Vec<u8> = messages.iter().flat_map(|m| frame(0, m)).collect();
            prop_assert_eq!(single_message(&Bytes::from(body), None).unwrap_err().code(), Code::Unimplemented);
        }
    }
}
