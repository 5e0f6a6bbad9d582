//! The `buf.validate` rules a request declares, read back from the descriptor options of the
//! gateway's own pool as plain data. prost-protovalidate enforces them; this module is what
//! explains them: the validator's error words and the OpenAPI schema keywords both come from
//! here, so they can only say what is enforced.

use prost_protovalidate::types::{
    FieldConstraintsDynExt, FieldConstraintsExt, MessageConstraintsExt, MessageOneofRule, StringRules, field_rules,
};
use prost_reflect::{FieldDescriptor, MessageDescriptor, ReflectMessage, Value};

/// The rules of one field that a client can be told about.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Declared {
    /// A proto3 scalar must not be its zero value (an empty string, 0).
    pub required: bool,
    pub string: Option<StringRules>,
    pub defined_only: bool,
    pub min: Option<Bound>,
    pub max: Option<Bound>,
}

/// One end of a numeric range.
#[derive(Debug, Clone, PartialEq)]
pub struct Bound {
    pub value: serde_json::Number,
    /// `gt`/`lt` rather than `gte`/`lte`.
    pub exclusive: bool,
}

/// The rules declared on `field`; none when it has no `buf.validate.field` option (or one this
/// version of the rules cannot read, which the validator refuses to start with).
pub fn declared(field: &FieldDescriptor) -> Declared {
    let Ok(Some(rules)) = field.field_constraints() else {
        return Declared::default();
    };
    let (min, max) = bounds(field);
    Declared {
        required: rules.required.unwrap_or(false),
        defined_only: match &rules.r#type {
            Some(field_rules::Type::Enum(e)) => e.defined_only.unwrap_or(false),
            _ => false,
        },
        string: match rules.r#type {
            Some(field_rules::Type::String(string)) => Some(string),
            _ => None,
        },
        min,
        max,
    }
}

/// The message's `(buf.validate.message).oneof` rules: groups of fields of which at most one
/// (exactly one when `required`) may be set.
pub fn oneof_rules(message: &MessageDescriptor) -> Vec<MessageOneofRule> {
    match message.message_constraints() {
        Ok(Some(rules)) => rules.oneof,
        _ => Vec::new(),
    }
}

/// `gte`/`gt` and `lte`/`lt` of whichever numeric rule type the field uses, read from the
/// dynamic form so that one function covers all twelve of them.
fn bounds(field: &FieldDescriptor) -> (Option<Bound>, Option<Bound>) {
    let Some(rules) = field.field_constraints_dynamic() else {
        return (None, None);
    };
    let typed = rules.fields().find_map(|(f, value)| {
        let in_type_oneof = f.containing_oneof().is_some_and(|o| o.name() == "type");
        if in_type_oneof { value.as_message().cloned() } else { None }
    });
    let Some(typed) = typed else {
        return (None, None);
    };
    let bound = |name: &str, exclusive: bool| {
        let f = typed.descriptor().get_field_by_name(name)?;
        if !typed.has_field(&f) {
            return None;
        }
        number(&typed.get_field(&f)).map(|value| Bound { value, exclusive })
    };
    (bound("gte", false).or_else(|| bound("gt", true)), bound("lte", false).or_else(|| bound("lt", true)))
}

fn number(value: &Value) -> Option<serde_json::Number> {
    match *value {
        Value::I32(n) => Some(n.into()),
        Value::I64(n) => Some(n.into()),
        Value::U32(n) => Some(n.into()),
        Value::U64(n) => Some(n.into()),
        Value::F32(n) => serde_json::Number::from_f64(f64::from(n)),
        Value::F64(n) => serde_json::Number::from_f64(n),
        _ => None,
    }
}
