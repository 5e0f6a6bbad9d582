//! JSON request bodies parsed strictly: a key given twice in one object is an error.
//!
//! `serde_json::Value` keeps the last of two equal keys, so `{"amount": 1, "amount": 100}`
//! would mean whatever the last parser in a chain decides; a proxy or a WAF in front may read
//! the first. serde_json has no switch for this, and no kept crate does it for `Value`, so this
//! is a small `Deserialize` of our own that builds the same `Value` and refuses duplicates.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// What was wrong, and where: the field as the client wrote it (`a.b[2].c`), or `body` for
/// the body as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    pub field: String,
    pub description: String,
}

/// Parses a body, refusing malformed JSON and duplicate keys.
pub fn from_slice(body: &[u8]) -> Result<Value, JsonError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let mut track = serde_path_to_error::Track::new();
    let parsed = Strict::deserialize(serde_path_to_error::Deserializer::new(&mut deserializer, &mut track))
        .and_then(|value| deserializer.end().map(|()| value));
    match parsed {
        Ok(Strict(value)) => Ok(value),
        Err(e) => {
            let path = track.path().to_string();
            match e.to_string().strip_prefix(DUPLICATE) {
                Some(rest) => {
                    let key = rest.split(" at line").next().unwrap_or(rest).to_string();
                    let field = if path == "." || path.is_empty() { key } else { format!("{path}.{key}") };
                    Err(JsonError { field, description: "is given twice".to_string() })
                }
                None => Err(JsonError {
                    field: crate::transcode::BODY_FIELD.to_string(),
                    description: format!("malformed JSON: {e}"),
                }),
            }
        }
    }
}

const DUPLICATE: &str = "duplicate key ";

struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v).map(Value::Number).ok_or_else(|| E::custom("a number that is not finite"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        Strict::deserialize(deserializer).map(|s| s.0)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom(format!("{DUPLICATE}{key}")));
            }
            let Strict(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_duplicate_key_is_named_with_its_path_and_everything_else_parses_as_serde_json_does() {
        let table: [(&str, Result<Value, (&str, &str)>); 8] = [
            (r#"{"a": 1, "b": [true, null, 2.5, "x"]}"#, Ok(json!({ "a": 1, "b": [true, null, 2.5, "x"] }))),
            (r#"{"a": {"b": 1}, "c": {"b": 2}}"#, Ok(json!({ "a": { "b": 1 }, "c": { "b": 2 } }))),
            (r#"[{"a": 1}, {"a": 2}]"#, Ok(json!([{ "a": 1 }, { "a": 2 }]))),
            (r#"{"a": 1, "a": 2}"#, Err(("a", "is given twice"))),
            (r#"{"a": {"b": 1, "b": 1}}"#, Err(("a.b", "is given twice"))),
            (r#"{"list": [{"k": 1, "k": 2}]}"#, Err(("list[0].k", "is given twice"))),
            (r#"{"a": 1"#, Err(("body", "malformed JSON"))),
            (r#"{"a": 1} {"b": 2}"#, Err(("body", "malformed JSON"))),
        ];
        for (body, want) in table {
            let got = from_slice(body.as_bytes());
            match want {
                Ok(value) => assert_eq!(got.unwrap(), value, "{body}"),
                Err((field, description)) => {
                    let e = got.unwrap_err();
                    assert_eq!(e.field, field, "{body}");
                    assert!(e.description.starts_with(description), "{body}: {}", e.description);
                }
            }
        }
    }
}
