//! One validator for every transport: the `buf.validate` rules declared in the protos, checked
//! on a decoded request before it is forwarded. A refused request never reaches a backend; it is
//! answered `INVALID_ARGUMENT` with a `google.rpc.BadRequest` naming each bad field by its proto
//! path (`prompt`, `input.aspect_ratio`), as the services' own checks name them, and saying in
//! words which rule it broke.
//!
//! The services keep their own checks. The rules are written so that they never refuse a value
//! a service accepts, with one exception the protos cannot avoid: the services trim surrounding
//! whitespace before they count characters or compare a value, and the rules see it.

use std::sync::Arc;

use cutx_platform::error::{FieldViolation, invalid_argument};
use prost_protovalidate::Error as RulesError;
use prost_protovalidate::types::{FieldPathElement, field_path_element::Subscript};
use prost_reflect::{DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, ReflectMessage};
use tonic::Status;

use crate::field_rules::{self, Bound};

/// The compiled rules of every request message of a pool. Cloning is cheap and shares them.
#[derive(Clone)]
pub struct Validator {
    rules: Arc<prost_protovalidate::Validator>,
}

#[derive(Debug, thiserror::Error)]
#[error("the buf.validate rules of {message} cannot be used: {cause}")]
pub struct UnusableRules {
    message: String,
    cause: String,
}

impl Validator {
    /// Compiles the rules of the input message of every method in `pool`, so that a rule the
    /// library cannot enforce stops the gateway at start-up instead of failing calls.
    pub fn new(pool: &DescriptorPool) -> Result<Self, UnusableRules> {
        let rules = prost_protovalidate::Validator::new();
        for input in pool.services().flat_map(|s| s.methods().map(|m| m.input()).collect::<Vec<_>>()) {
            match rules.validate(&DynamicMessage::new(input.clone())) {
                Ok(()) | Err(RulesError::Validation(_)) => {}
                Err(e) => return Err(UnusableRules { message: input.full_name().to_string(), cause: e.to_string() }),
            }
        }
        Ok(Self { rules: Arc::new(rules) })
    }

    /// `Ok` when `message` keeps every rule of its type; otherwise `INVALID_ARGUMENT` naming
    /// every field that does not.
    pub fn check(&self, message: &DynamicMessage) -> Result<(), Status> {
        let violations = match self.rules.validate(message) {
            Ok(()) => return Ok(()),
            Err(RulesError::Validation(e)) => e.into_violations(),
            Err(e) => return Err(cutx_platform::error::internal("validating a request", e)),
        };
        // One violation per field, the first rule it breaks: a too-short prompt is "at least 5
        // characters", not that and the pattern that says the same of its trimmed text.
        let mut fields: Vec<FieldViolation> = Vec::new();
        for violation in violations.iter().map(|v| field_violation(message, v)) {
            if !fields.iter().any(|f| f.field == violation.field) {
                fields.push(violation);
            }
        }
        Err(invalid_argument(&fields))
    }
}

fn field_violation(message: &DynamicMessage, violation: &prost_protovalidate::Violation) -> FieldViolation {
    let elements = violation.to_proto().field.map(|p| p.elements).unwrap_or_default();
    let (path, at) = json_path(&message.descriptor(), &elements);
    if violation.rule_id() == "message.oneof"
        && let Some(found) = at.and_then(|m| oneof_violation(message, &elements, &m))
    {
        return FieldViolation::new(join(&path, &found.field), found.description);
    }
    let field = violation.field_descriptor().cloned().or_else(|| leaf(&message.descriptor(), &elements));
    FieldViolation::new(path, words(violation, field.as_ref()))
}

/// The JSON name path of a violation (`input.aspectRatio`, `items[2].name`) and the message
/// type it ends in, if it ends in one.
fn json_path(root: &MessageDescriptor, elements: &[FieldPathElement]) -> (String, Option<MessageDescriptor>) {
    let mut path = String::new();
    let mut at = Some(root.clone());
    for element in elements {
        let field = at.as_ref().and_then(|m| find_field(m, element));
        let name = match &field {
            Some(f) => f.name().to_string(),
            None => element.field_name.clone().unwrap_or_default(),
        };
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(&name);
        match &element.subscript {
            Some(Subscript::Index(i)) => path.push_str(&format!("[{i}]")),
            Some(Subscript::StringKey(k)) => path.push_str(&format!("[{k:?}]")),
            Some(Subscript::IntKey(k)) => path.push_str(&format!("[{k}]")),
            Some(Subscript::UintKey(k)) => path.push_str(&format!("[{k}]")),
            Some(Subscript::BoolKey(k)) => path.push_str(&format!("[{k}]")),
            None => {}
        }
        at = field.and_then(|f| match f.kind() {
            Kind::Message(m) if f.is_map() => m.map_entry_value_field().kind().as_message().cloned(),
            Kind::Message(m) => Some(m),
            _ => None,
        });
    }
    (path, at)
}

fn find_field(message: &MessageDescriptor, element: &FieldPathElement) -> Option<FieldDescriptor> {
    let by_number = element.field_number.and_then(|n| u32::try_from(n).ok()).and_then(|n| message.get_field(n));
    by_number.or_else(|| element.field_name.as_deref().and_then(|name| message.get_field_by_name(name)))
}

fn leaf(root: &MessageDescriptor, elements: &[FieldPathElement]) -> Option<FieldDescriptor> {
    let (last, parents) = elements.split_last()?;
    let (_, parent) = json_path(root, parents);
    find_field(&parent?, last)
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() { name.to_string() } else { format!("{prefix}.{name}") }
}

struct OneofViolation {
    field: String,
    description: String,
}

/// Which `(buf.validate.message).oneof` rule of the message at `elements` failed, named by its
/// first field as the services name it: "is required (or sourceJobId)", "give imageUrl or
/// sourceJobId, not both".
fn oneof_violation(
    root: &DynamicMessage,
    elements: &[FieldPathElement],
    descriptor: &MessageDescriptor,
) -> Option<OneofViolation> {
    let message = submessage(root, elements)?;
    field_rules::oneof_rules(descriptor).into_iter().find_map(|rule| {
        let fields: Vec<FieldDescriptor> =
            rule.fields.iter().filter_map(|name| descriptor.get_field_by_name(name)).collect();
        let set = fields.iter().filter(|f| message.has_field(f)).count();
        let names: Vec<&str> = fields.iter().map(FieldDescriptor::name).collect();
        let (first, others) = names.split_first()?;
        let description = if set > 1 {
            format!("give {}, not both", names.join(" or "))
        } else if set == 0 && rule.required.unwrap_or(false) {
            format!("is required (or {})", others.join(" or "))
        } else {
            return None;
        };
        Some(OneofViolation { field: first.to_string(), description })
    })
}

fn submessage(root: &DynamicMessage, elements: &[FieldPathElement]) -> Option<DynamicMessage> {
    let mut at = root.clone();
    for element in elements {
        let field = find_field(&at.descriptor(), element)?;
        let value = at.get_field(&field).into_owned();
        let next = match (&element.subscript, value) {
            (None, prost_reflect::Value::Message(m)) => m,
            (Some(Subscript::Index(i)), prost_reflect::Value::List(items)) => {
                items.get(usize::try_from(*i).ok()?)?.as_message()?.clone()
            }
            _ => return None,
        };
        at = next;
    }
    Some(at)
}

/// The rule a value broke, in the words a client reads ("must be at least 5 characters").
fn words(violation: &prost_protovalidate::Violation, field: Option<&FieldDescriptor>) -> String {
    let rule_id = violation.rule_id();
    let declared = field.map(field_rules::declared).unwrap_or_default();
    let string = declared.string.clone().unwrap_or_default();
    let said = match rule_id {
        "required" => Some("is required".to_string()),
        "string.min_len" => string.min_len.map(|n| format!("must be at least {n} characters")),
        "string.max_len" => string.max_len.map(|n| format!("must be at most {n} characters")),
        "string.len" => string.len.map(|n| format!("must be exactly {n} characters")),
        "string.pattern" => string.pattern.as_deref().map(pattern_words),
        "string.in" => Some(format!("must be one of {}", string.r#in.join(", "))),
        "enum.defined_only" => field.and_then(|f| f.kind().as_enum().cloned()).map(|e| {
            let names: Vec<String> = e.values().map(|v| v.name().to_string()).collect();
            format!("must be one of {}", names.join(", "))
        }),
        _ if is_range(rule_id) => range_words(declared.min.as_ref(), declared.max.as_ref()),
        _ => None,
    };
    said.unwrap_or_else(|| match violation.message() {
        "" => format!("breaks the rule {rule_id}"),
        message => message.to_string(),
    })
}

fn is_range(rule_id: &str) -> bool {
    let Some((kind, rule)) = rule_id.split_once('.') else { return false };
    let numeric = matches!(
        kind,
        "float"
            | "double"
            | "int32"
            | "int64"
            | "uint32"
            | "uint64"
            | "sint32"
            | "sint64"
            | "fixed32"
            | "fixed64"
            | "sfixed32"
            | "sfixed64"
    );
    numeric && (rule.starts_with("gt") || rule.starts_with("lt"))
}

fn range_words(min: Option<&Bound>, max: Option<&Bound>) -> Option<String> {
    Some(match (min, max) {
        (Some(lo), Some(hi)) if !lo.exclusive && !hi.exclusive => {
            format!("must be between {} and {}", lo.value, hi.value)
        }
        (Some(lo), Some(hi)) => {
            format!("must be {} {} and {} {}", above(lo), lo.value, below(hi), hi.value)
        }
        (Some(lo), None) => format!("must be {} {}", above(lo), lo.value),
        (None, Some(hi)) => format!("must be {} {}", below(hi), hi.value),
        (None, None) => return None,
    })
}

fn above(bound: &Bound) -> &'static str {
    if bound.exclusive { "greater than" } else { "at least" }
}

fn below(bound: &Bound) -> &'static str {
    if bound.exclusive { "less than" } else { "at most" }
}

/// The patterns the protos use, in words. A pattern missing here is shown as it is (a test
/// keeps every pattern of a public request in this table).
pub(crate) const PATTERN_WORDS: &[(&str, &str)] = &[
    (r"^\s*\S[\s\S]{3,}\S\s*$", "must be at least 5 characters, not counting surrounding spaces"),
    ("^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", "must be an id (a UUID)"),
    (
        r"^[Hh][Tt][Tt][Pp][Ss]://([A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?\.)*[A-Za-z]([A-Za-z0-9-]*[A-Za-z0-9])?(:[0-9]{1,4})?([/?#][\x21-\x7E]*)?$",
        "must be an https URL",
    ),
    ("^[A-Za-z0-9_-]*$", "must be letters, digits, _ or -"),
    (r"^[^\x00-\x1F\x7F-\x9F]*$", "must not contain control characters"),
    (r"\S", "must not be blank"),
    (r"^\s*[^@\s\x00-\x1f\x7f-\x9f]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+\s*$", "must be an email address"),
];

fn pattern_words(pattern: &str) -> String {
    match PATTERN_WORDS.iter().find(|(p, _)| *p == pattern) {
        Some((_, words)) => words.to_string(),
        None => format!("must match the pattern {pattern}"),
    }
}

#[cfg(test)]
mod tests;

/// The gRPC and gRPC-web side: the one request message of a call, decoded as its method's
/// input, keeps the same rules as a REST request. Bytes that are not that message are refused
/// here too, as `INVALID_ARGUMENT` rather than the backend's decode error.
impl crate::forward::RequestCheck for Validator {
    fn check(&self, method: &prost_reflect::MethodDescriptor, message: &[u8]) -> Result<(), Status> {
        let decoded = DynamicMessage::decode(method.input(), message)
            .map_err(|_| Status::invalid_argument(format!("the request is not a valid {}", method.input().name())))?;
        Validator::check(self, &decoded)
    }
}
