//! A minimal gRPC-web client (binary mode, HTTP/1.1), written from the gRPC-web protocol
//! description so the tests exercise the gateway the way a browser's grpc-web library does:
//! length-prefixed frames in the body, the status in a trailer frame (flag 0x80), or in the
//! headers for a trailers-only answer.

use base64::Engine;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use tonic::{Code, Status};

fn frame(message: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(5 + message.len());
    buf.put_u8(0);
    buf.put_u32(message.len() as u32);
    buf.put_slice(message);
    buf.freeze()
}

fn status_from(fields: &[(String, String)]) -> Option<Status> {
    let get = |k: &str| fields.iter().find(|(name, _)| name.eq_ignore_ascii_case(k)).map(|(_, v)| v.as_str());
    let code = Code::from(get("grpc-status")?.trim().parse::<i32>().ok()?);
    let message = get("grpc-message")
        .map(|m| {
            url::form_urlencoded::parse(format!("m={}", m.replace('+', "%2B")).as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        })
        .unwrap_or_default();
    let details = get("grpc-status-details-bin")
        .and_then(|d| base64::engine::general_purpose::STANDARD_NO_PAD.decode(d.trim_end_matches('=')).ok())
        .unwrap_or_default();
    Some(Status::with_details(code, message, details.into()))
}

/// One unary call to `path` (`/package.Service/Method`).
pub async fn unary<Req: prost::Message, Res: prost::Message + Default>(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    request: &Req,
    metadata: &[(String, String)],
) -> Result<Res, Status> {
    let mut call = http
        .post(format!("{base}{path}"))
        .header("content-type", "application/grpc-web+proto")
        .header("accept", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .body(frame(&request.encode_to_vec()));
    for (k, v) in metadata {
        call = call.header(k.as_str(), v.as_str());
    }
    let response = call.send().await.map_err(|e| Status::unavailable(e.to_string()))?;
    let header_fields: Vec<(String, String)> = response
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or_default().to_string()))
        .collect();
    if !response.status().is_success() {
        return Err(Status::unknown(format!("HTTP {}", response.status())));
    }
    if let Some(status) = status_from(&header_fields)
        && status.code() != Code::Ok
    {
        return Err(status);
    }
    let mut body = response.bytes().await.map_err(|e| Status::unavailable(e.to_string()))?;
    let mut message = None;
    while body.remaining() >= 5 {
        let flag = body.get_u8();
        let len = body.get_u32() as usize;
        if body.remaining() < len {
            return Err(Status::internal("truncated grpc-web frame"));
        }
        let payload = body.split_to(len);
        if flag & 0x80 != 0 {
            let text = String::from_utf8_lossy(&payload);
            let trailers: Vec<(String, String)> = text
                .split("\r\n")
                .filter_map(|line| line.split_once(':'))
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .collect();
            let status = status_from(&trailers).ok_or_else(|| Status::internal("trailers without grpc-status"))?;
            if status.code() != Code::Ok {
                return Err(status);
            }
        } else {
            message = Some(Res::decode(payload).map_err(|e| Status::internal(e.to_string()))?);
        }
    }
    message.ok_or_else(|| Status::internal("no message in the answer"))
}
