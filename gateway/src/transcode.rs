//! REST <-> protobuf: the request message from JSON, path and query; the JSON of the answer.
//!
//! Input follows the proto3 JSON mapping (lowerCamelCase or proto names, unknown fields refused)
//! and the `google.api.http` rules for what fills what: the body (whole or one field) first,
//! then path variables, then query parameters for the fields neither took. Any bad input is an
//! `INVALID_ARGUMENT` whose `BadRequest` violation names the field as the client wrote it, and
//! is found here, before any backend is called.
//!
//! Output keeps default-valued fields (a zero balance is `"balance": "0"`, not a missing key),
//! with lowerCamelCase names.

use std::collections::HashSet;

use base64::Engine;
use http::{HeaderMap, HeaderValue, header};
use prost_reflect::{DeserializeOptions, DynamicMessage, FieldDescriptor, Kind, SerializeOptions, Value};
use tonic::Status;
use tonic::metadata::MetadataMap;

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

/// Builds the request message of `route` from its body, path bindings and query string.
pub fn request_message(
    route: &RestRoute,
    bindings: &Bindings,
    query: Option<&str>,
    body: &[u8],
) -> Result<DynamicMessage, Status> {
    let input = route.rpc.input();
    let mut message = body_message(route, body)?;
    let mut taken: HashSet<u32> = HashSet::new();
    for (var, text) in bindings {
        let fields =
            resolve_field_path(&input, &var.field_path).expect("path variables are checked when the table is built");
        set_from_text(&mut message, &fields, text, &var.dotted(), false)?;
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
            set_from_text(&mut message, &fields, &text, &key, append)?;
        }
    }
    Ok(message)
}

fn body_message(route: &RestRoute, body: &[u8]) -> Result<DynamicMessage, Status> {
    let input = route.rpc.input();
    let wrap_in: Option<&FieldDescriptor> = match &route.body {
        BodyRule::Empty => return Ok(DynamicMessage::new(input)),
        BodyRule::Whole => None,
        BodyRule::Field(field) => Some(field),
    };
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(DynamicMessage::new(input));
    }
    let json: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| field_error(BODY_FIELD, format!("malformed JSON: {e}")))?;
    let json = match wrap_in {
        // Wrapping under the proto name makes an error inside it name `field.sub`.
        Some(field) => serde_json::json!({ field.name(): json }),
        None => json,
    };
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
    let value = parse_text(leaf, text).map_err(|description| field_error(name, description))?;
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
fn parse_text(field: &FieldDescriptor, text: &str) -> Result<Value, String> {
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
            let by_name = desc.get_value_by_name(text);
            let by_number = text.parse::<i32>().ok().and_then(|n| desc.get_value(n));
            let value = by_name.or(by_number).ok_or_else(|| {
                let names: Vec<_> = desc.values().map(|v| v.name().to_string()).collect();
                bad(&format!("one of {}", names.join(", ")))
            })?;
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
    SerializeOptions::new().skip_default_fields(false)
}

/// The JSON answer for an encoded response of `route`'s method.
pub fn response_json(route: &RestRoute, encoded: &[u8]) -> Result<serde_json::Value, Status> {
    let message = DynamicMessage::decode(route.rpc.output(), encoded)
        .map_err(|e| cutx_platform::error::internal("decoding a backend response", e))?;
    let json = message
        .serialize_with_options(serde_json::value::Serializer, &serialize_options())
        .map_err(|e| cutx_platform::error::internal("rendering a backend response", e))?;
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
    use prost_reflect::DescriptorPool;
    use tonic_types::StatusExt;

    fn with_route<T>(method: Method, path: &str, f: impl FnOnce(&RestRoute, &Bindings) -> T) -> T {
        let pool = DescriptorPool::decode(cutx_proto::FILE_DESCRIPTOR_SET).unwrap();
        let exposed =
            cutx_proto::PUBLIC_SERVICES.iter().chain(cutx_proto::DEV_SERVICES).map(|s| s.to_string()).collect();
        let table = RouteTable::from_pool(&pool, &exposed).unwrap();
        match table.find(&method, path) {
            Lookup::Found(route, bindings) => f(route, &bindings),
            _ => panic!("no route for {method} {path}"),
        }
    }

    fn violation(status: &Status) -> (String, String) {
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        let bad = status.get_details_bad_request().expect("BadRequest details");
        let v = &bad.field_violations[0];
        (v.field.clone(), v.description.clone())
    }

    fn static_ad(body: &str) -> Result<DynamicMessage, Status> {
        with_route(Method::POST, "/api/generate/static-ad", |r, b| request_message(r, b, None, body.as_bytes()))
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
    fn an_empty_body_is_an_empty_message() {
        assert!(static_ad("").unwrap().fields().next().is_none());
    }

    #[test]
    fn path_and_query_parameters_fill_fields_by_either_name() {
        let message = with_route(Method::GET, "/api/jobs", |r, b| {
            request_message(r, b, Some("pageSize=5&page_token=t&status=JOB_STATUS_QUEUED&unknown=1"), b"")
        })
        .unwrap();
        assert_eq!(message.get_field_by_name("page_size").unwrap().as_i32(), Some(5));
        assert_eq!(message.get_field_by_name("page_token").unwrap().as_str(), Some("t"));
        assert!(message.get_field_by_name("status").unwrap().as_enum_number().unwrap() > 0);

        let message = with_route(Method::GET, "/api/jobs/j%201", |r, b| request_message(r, b, None, b"")).unwrap();
        assert_eq!(message.get_field_by_name("id").unwrap().as_str(), Some("j 1"));
    }

    #[test]
    fn bad_query_values_name_the_parameter() {
        let cases = [("pageSize=abc", "pageSize"), ("page_size=1.5", "page_size"), ("kind=nope", "kind")];
        for (query, field) in cases {
            let status =
                with_route(Method::GET, "/api/jobs", |r, b| request_message(r, b, Some(query), b"")).unwrap_err();
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
