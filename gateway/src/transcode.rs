//! REST <-> protobuf: the request message from JSON, path and query; the JSON of the answer.
//!
//! Input follows the proto3 JSON mapping (lowerCamelCase or proto names, unknown fields refused,
//! and a key given twice refused too) in the REST dialect (enum values by their REST names, see
//! [`crate::dialect`]), and the `google.api.http` rules for what fills what: the body (whole or
//! one field) first, then path variables, then query parameters for the fields neither took.
//! Any bad input is an `INVALID_ARGUMENT` whose `BadRequest` violation names the field as the
//! client wrote it, and is found here, before any backend is called.
//!
//! Output keeps default-valued fields (a zero balance is `"balance": 0`, not a missing key),
//! with JSON names, 64-bit integers as JSON numbers (credits, sizes and counts are far below
//! 2^53) and enum values by their REST names.

use std::collections::HashSet;

use base64::Engine;
use http::{HeaderMap, HeaderValue, header};
use prost_reflect::{DeserializeOptions, DynamicMessage, FieldDescriptor, Kind, SerializeOptions, Value};
use tonic::Status;
use tonic::metadata::MetadataMap;

use crate::dialect::Dialect;
use crate::http_rule::Bindings;
use crate::routes::{BodyRule, RestRoute, resolve_field_path};

/// The field named when the body as a whole is wrong (malformed, too large, not an object).
pub const BODY_FIELD: &str = "body";

fn field_error(field: &str, description: impl Into<String>) -> Status {
    cutx_platform::error::invalid_field(field, description)
}

/// The body-too-large error, answered before any parsing.
pub fn body_too_large(limit: usize) -> Status {
    field_error(BODY_FIELD, format!("request body is larger than the {limit} byte limit"))
}

/// Whether a request of `route` must carry a body: its rule takes one, and the body has fields
/// to fill besides those the path binds. `POST /api/jobs/{id}/cancel` needs none.
pub fn body_required(route: &RestRoute) -> bool {
    let bound: HashSet<u32> = route
        .template
        .variables
        .iter()
        .filter_map(|var| resolve_field_path(&route.rpc.input(), &var.field_path))
        .map(|fields| fields[0].number())
        .collect();
    match &route.body {
        BodyRule::Empty => false,
        BodyRule::Field(_) => true,
        BodyRule::Whole => route.rpc.input().fields().any(|f| !bound.contains(&f.number())),
    }
}

/// Past the body limit, up to this much more is read and dropped so that a client still
/// sending reads the 413 instead of a reset connection; beyond it the connection is closed.
pub const DRAIN_LIMIT: usize = 16 * 1024 * 1024;
/// How long the drain may take.
pub const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(10);

pub enum BodyRead {
    Read(bytes::Bytes),
    /// Over the limit; `drained` when the whole body was read (the connection can be reused).
    TooLarge {
        drained: bool,
    },
    Unreadable,
    /// Not all there within [`BODY_TIME`].
    TooSlow,
}

/// Reads a request body within `limit` bytes (see [`DRAIN_LIMIT`] for what happens past it).
pub async fn read_body(headers: &HeaderMap, mut body: axum::body::Body, limit: usize) -> BodyRead {
    use http_body_util::BodyExt;
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit.saturating_add(DRAIN_LIMIT)) {
        return BodyRead::TooLarge { drained: false };
    }
    let deadline = tokio::time::Instant::now() + DRAIN_TIME;
    let arrive_by = tokio::time::Instant::now() + BODY_TIME;
    let mut kept = bytes::BytesMut::new();
    let mut seen = 0usize;
    loop {
        let frame = if seen > limit {
            match tokio::time::timeout_at(deadline, body.frame()).await {
                Ok(frame) => frame,
                Err(_) => return BodyRead::TooLarge { drained: false },
            }
        } else {
            match tokio::time::timeout_at(arrive_by, body.frame()).await {
                Ok(frame) => frame,
                Err(_) => return BodyRead::TooSlow,
            }
        };
        match frame {
            None => break,
            Some(Err(_)) if seen > limit => return BodyRead::TooLarge { drained: false },
            Some(Err(_)) => return BodyRead::Unreadable,
            Some(Ok(frame)) => {
                let Ok(data) = frame.into_data() else { continue };
                seen = seen.saturating_add(data.len());
                if seen <= limit {
                    kept.extend_from_slice(&data);
                } else if seen > limit.saturating_add(DRAIN_LIMIT) {
                    return BodyRead::TooLarge { drained: false };
                }
            }
        }
    }
    if seen > limit { BodyRead::TooLarge { drained: true } } else { BodyRead::Read(kept.freeze()) }
}

/// A body is read as JSON only when it says it is: `application/json`, any parameters. A
/// cross-site form can send `text/plain` without a preflight; it must not be able to act.
/// How long a request body (within its limit) may take to arrive: a client trickling a body
/// would otherwise hold its connection and the bytes read so far for as long as it likes.
pub const BODY_TIME: std::time::Duration = std::time::Duration::from_secs(30);

pub fn require_json(headers: &HeaderMap) -> Result<(), Status> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(field_error("content-type", "must be application/json for a request with a body"))
    }
}

/// Builds the request message of `route` from its body, path bindings and query string.
pub fn request_message(
    route: &RestRoute,
    dialect: &Dialect,
    bindings: &Bindings,
    query: Option<&str>,
    body: &[u8],
) -> Result<DynamicMessage, Status> {
    let input = route.rpc.input();
    let mut message = body_message(route, dialect, body)?;
    let mut taken: HashSet<u32> = HashSet::new();
    for (var, text) in bindings {
        let fields =
            resolve_field_path(&input, &var.field_path).expect("path variables are checked when the table is built");
        set_from_text(&mut message, dialect, &fields, text, &var.dotted(), false)?;
        taken.insert(fields[0].number());
    }
    let query_allowed = match &route.body {
        BodyRule::Whole => false,
        BodyRule::Field(field) => {
            taken.insert(field.number());
            true
        }
        BodyRule::Empty => true,
    };
    if let (true, Some(query)) = (query_allowed, query) {
        let mut seen_lists: HashSet<Vec<u32>> = HashSet::new();
        for (key, text) in url::form_urlencoded::parse(query.as_bytes()) {
            let parts: Vec<&str> = key.split('.').collect();
            // Unknown parameters are ignored, as grpc-gateway does: they may be a cache buster.
            let Some(fields) = resolve_field_path(&input, &parts) else {
                continue;
            };
            if taken.contains(&fields[0].number()) {
                continue;
            }
            let numbers: Vec<u32> = fields.iter().map(FieldDescriptor::number).collect();
            let leaf = fields.last().expect("a field path has at least one part");
            // The first value of a repeated field replaces whatever was there; later ones append.
            let append = leaf.is_list() && !seen_lists.insert(numbers);
            set_from_text(&mut message, dialect, &fields, &text, &key, append)?;
        }
    }
    Ok(message)
}

fn body_message(route: &RestRoute, dialect: &Dialect, body: &[u8]) -> Result<DynamicMessage, Status> {
    let input = route.rpc.input();
    let wrap_in: Option<&FieldDescriptor> = match &route.body {
        BodyRule::Empty => return Ok(DynamicMessage::new(input)),
        BodyRule::Whole => None,
        BodyRule::Field(field) => Some(field),
    };
    if body.iter().all(u8::is_ascii_whitespace) {
        if body_required(route) {
            return Err(field_error(BODY_FIELD, "a JSON object is required"));
        }
        return Ok(DynamicMessage::new(input));
    }
    let json = crate::strict_json::from_slice(body).map_err(|e| field_error(&e.field, e.description))?;
    let mut json = match wrap_in {
        // Wrapping under the proto name makes an error inside it name `field.sub`.
        Some(field) => serde_json::json!({ field.name(): json }),
        None => json,
    };
    dialect.incoming(&input, &mut json).map_err(|bad| field_error(&bad.field, bad.description))?;
    let mut track = serde_path_to_error::Track::new();
    let deserializer = serde_path_to_error::Deserializer::new(json, &mut track);
    DynamicMessage::deserialize_with_options(input, deserializer, &DeserializeOptions::new().deny_unknown_fields(true))
        .map_err(|e| json_error(&track.path().to_string(), &e.to_string()))
}

/// Names the field of a JSON error: the path where it happened, or for an unknown field the
/// field itself (the error is raised at the enclosing object).
fn json_error(path: &str, message: &str) -> Status {
    let parent = if path == "." { "" } else { path };
    if let Some(name) = message.strip_prefix("unrecognized field name '").and_then(|rest| rest.split('\'').next()) {
        let field = if parent.is_empty() { name.to_string() } else { format!("{parent}.{name}") };
        return field_error(&field, "unknown field");
    }
    let field = if parent.is_empty() { BODY_FIELD } else { parent };
    field_error(field, message.to_string())
}

/// Sets the field at the end of `fields` from text (a path segment or a query value).
fn set_from_text(
    message: &mut DynamicMessage,
    dialect: &Dialect,
    fields: &[FieldDescriptor],
    text: &str,
    name: &str,
    append: bool,
) -> Result<(), Status> {
    let (leaf, parents) = fields.split_last().expect("a field path has at least one part");
    let mut target = message;
    for parent in parents {
        target = target.get_field_mut(parent).as_message_mut().expect("field paths go through singular message fields");
    }
    if leaf.is_map() {
        return Err(field_error(name, "a map cannot be set from a path or query parameter"));
    }
    let value = parse_text(leaf, dialect, text).map_err(|description| field_error(name, description))?;
    if leaf.is_list() {
        let list = target.get_field_mut(leaf).as_list_mut().expect("a repeated field holds a list");
        if !append {
            list.clear();
        }
        list.push(value);
    } else {
        target.set_field(leaf, value);
    }
    Ok(())
}

/// One scalar, enum or well-known message value from text.
fn parse_text(field: &FieldDescriptor, dialect: &Dialect, text: &str) -> Result<Value, String> {
    let bad = |what: &str| format!("invalid value {text:?}: expected {what}");
    Ok(match field.kind() {
        Kind::Double => Value::F64(text.parse().map_err(|_| bad("a number"))?),
        Kind::Float => Value::F32(text.parse().map_err(|_| bad("a number"))?),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Value::I32(text.parse().map_err(|_| bad("a 32-bit integer"))?),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Value::I64(text.parse().map_err(|_| bad("a 64-bit integer"))?),
        Kind::Uint32 | Kind::Fixed32 => Value::U32(text.parse().map_err(|_| bad("an unsigned 32-bit integer"))?),
        Kind::Uint64 | Kind::Fixed64 => Value::U64(text.parse().map_err(|_| bad("an unsigned 64-bit integer"))?),
        Kind::Bool => Value::Bool(match text {
            "true" | "1" => true,
            "false" | "0" => false,
            _ => return Err(bad("true or false")),
        }),
        Kind::String => Value::String(text.to_string()),
        Kind::Bytes => {
            let engines = [base64::engine::general_purpose::STANDARD, base64::engine::general_purpose::URL_SAFE];
            let bytes = engines.iter().find_map(|e| e.decode(text).ok()).ok_or_else(|| bad("base64"))?;
            Value::Bytes(bytes.into())
        }
        Kind::Enum(desc) => {
            let value = dialect
                .parse_value(&desc, text)
                .ok_or_else(|| bad(&format!("one of {}", dialect.names(&desc).join(", "))))?;
            Value::EnumNumber(value.number())
        }
        // Well-known types with a string JSON form (Timestamp, Duration, FieldMask, wrappers).
        Kind::Message(desc) => {
            let json = serde_json::Value::String(text.to_string());
            Value::Message(
                DynamicMessage::deserialize(desc.clone(), json)
                    .map_err(|_| bad(&format!("a {} in its JSON form", desc.full_name())))?,
            )
        }
    })
}

fn serialize_options() -> SerializeOptions {
    SerializeOptions::new().skip_default_fields(false).stringify_64_bit_integers(false)
}

/// The JSON answer for an encoded response of `route`'s method.
pub fn response_json(route: &RestRoute, dialect: &Dialect, encoded: &[u8]) -> Result<serde_json::Value, Status> {
    let message = DynamicMessage::decode(route.rpc.output(), encoded)
        .map_err(|e| cutx_platform::error::internal("decoding a backend response", e))?;
    let mut json = message
        .serialize_with_options(serde_json::value::Serializer, &serialize_options())
        .map_err(|e| cutx_platform::error::internal("rendering a backend response", e))?;
    dialect.outgoing(&route.rpc.output(), &mut json);
    Ok(match &route.response_body {
        Some(field) => json.get(field.json_name()).cloned().unwrap_or(serde_json::Value::Null),
        None => json,
    })
}

/// `set-cookie` response metadata becomes `Set-Cookie` headers: the one piece of a backend's
/// metadata a REST client sees, so auth-svc can set the session cookie without gateway code.
pub fn copy_set_cookies(metadata: &MetadataMap, headers: &mut HeaderMap) {
    for value in metadata.get_all(header::SET_COOKIE.as_str()).iter() {
        if let Ok(value) = HeaderValue::from_bytes(value.as_encoded_bytes()) {
            headers.append(header::SET_COOKIE, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::{Lookup, RouteTable};
    use http::Method;
    use prost::Message;
    use prost_reflect::DescriptorPool;
    use tonic_types::StatusExt;

    fn with_route<T>(method: Method, path: &str, f: impl FnOnce(&RestRoute, &Dialect, &Bindings) -> T) -> T {
        let pool = DescriptorPool::decode(cutx_proto::FILE_DESCRIPTOR_SET).unwrap();
        let exposed =
            cutx_proto::PUBLIC_SERVICES.iter().chain(cutx_proto::DEV_SERVICES).map(|s| s.to_string()).collect();
        let table = RouteTable::from_pool(&pool, &exposed).unwrap();
        match table.find(&method, path) {
            Lookup::Found(route, bindings) => f(route, table.dialect(), &bindings),
            _ => panic!("no route for {method} {path}"),
        }
    }

    fn request(method: Method, path: &str, query: Option<&str>, body: &str) -> Result<DynamicMessage, Status> {
        with_route(method, path, |r, d, b| request_message(r, d, b, query, body.as_bytes()))
    }

    fn violation(status: &Status) -> (String, String) {
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        let bad = status.get_details_bad_request().expect("BadRequest details");
        let v = &bad.field_violations[0];
        (v.field.clone(), v.description.clone())
    }

    fn static_ad(body: &str) -> Result<DynamicMessage, Status> {
        request(Method::POST, "/api/generate/static-ad", None, body)
    }

    #[test]
    fn json_errors_name_the_field() {
        let cases = [
            (r#"{"prompt": 5}"#, "prompt"),
            (r#"{"style": "nope"}"#, "style"),
            (r#"{"prompt": "a", "colour": "red"}"#, "colour"),
            (r#"{"prompt": "#, "body"),
            (r#"[1, 2]"#, "body"),
        ];
        for (body, field) in cases {
            let status = static_ad(body).unwrap_err();
            assert_eq!(violation(&status).0, field, "{body}");
        }
    }

    #[test]
    fn camel_case_and_proto_names_both_fill_the_message() {
        for body in [r#"{"aspectRatio": "9:16", "style": 1}"#, r#"{"aspect_ratio": "9:16"}"#] {
            let message = static_ad(body).unwrap();
            assert_eq!(message.get_field_by_name("aspect_ratio").unwrap().as_str(), Some("9:16"), "{body}");
        }
    }

    #[test]
    fn an_empty_body_is_refused_where_one_is_needed_and_an_empty_message_where_not() {
        for body in ["", "  \n"] {
            assert_eq!(violation(&static_ad(body).unwrap_err()).0, "body", "{body:?}");
        }
        let cancel = request(Method::POST, "/api/jobs/j1/cancel", None, "").unwrap();
        assert_eq!(cancel.get_field_by_name("id").unwrap().as_str(), Some("j1"));
        assert!(request(Method::POST, "/api/auth/logout", None, "").is_ok());
        assert!(static_ad("{}").is_ok(), "an empty object is a body; the service checks what it lacks");
    }

    #[test]
    fn enums_are_read_by_rest_name_proto_name_or_number_in_body_and_query() {
        for style in [r#""minimal""#, r#""STATIC_AD_STYLE_MINIMAL""#, "3"] {
            let message = static_ad(&format!(r#"{{"style": {style}}}"#)).unwrap();
            assert_eq!(message.get_field_by_name("style").unwrap().as_enum_number(), Some(3), "{style}");
        }
        let (field, description) = violation(&static_ad(r#"{"style": "shiny"}"#).unwrap_err());
        assert_eq!(field, "style");
        assert!(description.contains("product_hero, lifestyle, minimal, bold, seasonal"), "{description}");

        let message = request(Method::GET, "/api/jobs", Some("status=completed&kind=static_ad"), "").unwrap();
        assert_eq!(message.get_field_by_name("status").unwrap().as_enum_number(), Some(4));
        assert_eq!(message.get_field_by_name("kind").unwrap().as_enum_number(), Some(3));
    }

    #[test]
    fn a_key_given_twice_is_refused_naming_it() {
        let cases = [
            (r#"{"prompt": "a prompt", "prompt": "another"}"#, "prompt"),
            (r#"{"prompt": "a prompt", "aspectRatio": "1:1", "aspect_ratio": "9:16"}"#, "aspect_ratio"),
        ];
        for (body, field) in cases {
            assert_eq!(violation(&static_ad(body).unwrap_err()).0, field, "{body}");
        }
    }

    #[test]
    fn answers_carry_numbers_rest_enum_names_and_declared_json_names() {
        let encoded =
            cutx_proto::pb::GetBalanceResponse { balance: 21, lifetime_purchased: 0, lifetime_used: 4 }.encode_to_vec();
        let json = with_route(Method::GET, "/api/credits/balance", |r, d, _| response_json(r, d, &encoded)).unwrap();
        assert_eq!(json, serde_json::json!({ "balance": 21, "lifetime_purchased": 0, "lifetime_used": 4 }));

        let job = cutx_proto::pb::Job {
            id: "j1".into(),
            kind: cutx_proto::pb::JobKind::StaticAd as i32,
            status: cutx_proto::pb::JobStatus::Completed as i32,
            credits_used: 3,
            ..Default::default()
        };
        let encoded = cutx_proto::pb::GetJobResponse { job: Some(job) }.encode_to_vec();
        let json = with_route(Method::GET, "/api/jobs/j1", |r, d, _| response_json(r, d, &encoded)).unwrap();
        assert_eq!(json["id"], "j1", "GET /api/jobs/{{id}} answers the job itself: {json}");
        assert_eq!(json["kind"], "static_ad");
        assert_eq!(json["status"], "completed");
        assert_eq!(json["creditsUsed"], 3);
    }

    #[test]
    fn path_and_query_parameters_fill_fields_by_either_name() {
        let message =
            request(Method::GET, "/api/jobs", Some("pageSize=5&page_token=t&status=JOB_STATUS_QUEUED&unknown=1"), "")
                .unwrap();
        assert_eq!(message.get_field_by_name("page_size").unwrap().as_i32(), Some(5));
        assert_eq!(message.get_field_by_name("page_token").unwrap().as_str(), Some("t"));
        assert!(message.get_field_by_name("status").unwrap().as_enum_number().unwrap() > 0);

        let message = request(Method::GET, "/api/jobs/j%201", None, "").unwrap();
        assert_eq!(message.get_field_by_name("id").unwrap().as_str(), Some("j 1"));
    }

    #[test]
    fn bad_query_values_name_the_parameter() {
        let cases = [("pageSize=abc", "pageSize"), ("page_size=1.5", "page_size"), ("kind=nope", "kind")];
        for (query, field) in cases {
            let status = request(Method::GET, "/api/jobs", Some(query), "").unwrap_err();
            assert_eq!(violation(&status).0, field, "{query}");
        }
    }

    #[test]
    fn an_oversized_body_names_the_body_and_the_limit() {
        let (field, description) = violation(&body_too_large(65536));
        assert_eq!(field, "body");
        assert!(description.contains("65536"), "{description}");
    }
}
