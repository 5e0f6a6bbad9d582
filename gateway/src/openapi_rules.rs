//! The `buf.validate` rules of a request as OpenAPI 3.0 schema keywords, so that a client (or a
//! fuzzer) driven by `/api/openapi.json` sends what the gateway accepts.
//!
//! A field outside `required` may be left out, and then the service uses its default; when it is
//! given, it obeys every keyword listed. Patterns are written in the dialect both Rust's `regex`
//! and ECMA-262 read the same way.

use prost_reflect::{FieldDescriptor, MessageDescriptor};
use serde_json::{Map, Value, json};

use crate::field_rules::{self, Bound};

/// The keywords a scalar field's schema gains from its rules: `minLength`, `maxLength`,
/// `pattern`, `enum`, `minimum`, `maximum` (and their `exclusive*` flags).
pub fn constraints(field: &FieldDescriptor) -> Map<String, Value> {
    let declared = field_rules::declared(field);
    let mut out = Map::new();
    if declared.required && declared.string.is_none() && field.kind() == prost_reflect::Kind::String {
        out.insert("minLength".into(), json!(1));
    }
    if let Some(string) = &declared.string {
        // `required` on a string means "not empty", which is a minimum length of one.
        if let Some(n) = string.len.or(string.min_len).or(declared.required.then_some(1)) {
            out.insert("minLength".into(), json!(n));
        }
        if let Some(n) = string.len.or(string.max_len) {
            out.insert("maxLength".into(), json!(n));
        }
        if let Some(pattern) = &string.pattern {
            out.insert("pattern".into(), json!(pattern));
        }
        if !string.r#in.is_empty() {
            out.insert("enum".into(), json!(string.r#in));
        }
    }
    if let Some(Bound { value, exclusive }) = &declared.min {
        out.insert("minimum".into(), json!(value));
        if *exclusive {
            out.insert("exclusiveMinimum".into(), json!(true));
        }
    }
    if let Some(Bound { value, exclusive }) = &declared.max {
        out.insert("maximum".into(), json!(value));
        if *exclusive {
            out.insert("exclusiveMaximum".into(), json!(true));
        }
    }
    out
}

/// Whether the field must be given (and not as its zero value).
pub fn is_required(field: &FieldDescriptor) -> bool {
    field_rules::declared(field).required
}

/// The keywords a message's object schema gains: `required` (its required fields) and, for a
/// `(buf.validate.message).oneof` rule that needs one of its fields, `oneOf` the alternatives.
pub fn object_rules(message: &MessageDescriptor) -> Map<String, Value> {
    let mut out = Map::new();
    let required: Vec<String> = message.fields().filter(is_required).map(|f| f.json_name().to_string()).collect();
    if !required.is_empty() {
        out.insert("required".into(), json!(required));
    }
    let alternatives: Vec<Value> = field_rules::oneof_rules(message)
        .into_iter()
        .filter(|rule| rule.required.unwrap_or(false))
        .map(|rule| {
            let names: Vec<Value> = rule
                .fields
                .iter()
                .filter_map(|name| message.get_field_by_name(name))
                .map(|f| json!({ "required": [f.json_name()] }))
                .collect();
            json!(names)
        })
        .collect();
    match alternatives.len() {
        0 => {}
        1 => {
            out.insert("oneOf".into(), alternatives.into_iter().next().expect("one"));
        }
        _ => {
            let all: Vec<Value> = alternatives.into_iter().map(|one_of| json!({ "oneOf": one_of })).collect();
            out.insert("allOf".into(), json!(all));
        }
    }
    out
}
