//! The REST dialect: the reference API's spellings, declared once in the protos and read here
//! from the descriptors, never written per route.
//!
//! - An enum value's `(cutx.v1.rest_name)` option is its name on REST, in and out (`"meta"`,
//!   `"completed"`). On input the proto3 JSON name (`AD_PLATFORM_META`) and the number are
//!   still accepted; gRPC and gRPC-web never see any of this.
//! - A method's `(cutx.v1.rest_success_status)` is the HTTP status of its successful answer.
//!
//! prost-reflect's JSON mapping knows only proto3's names, so the JSON is rewritten on its way
//! in (REST names to proto names, before prost-reflect reads it) and on its way out, walking it
//! with the message descriptor. The walk knows nothing of any particular message.

use std::collections::HashMap;

use anyhow::{Context, bail};
use http::StatusCode;
use prost_reflect::{
    DescriptorPool, EnumDescriptor, EnumValueDescriptor, FieldDescriptor, Kind, MessageDescriptor, MethodDescriptor,
};
use serde_json::Value;

/// `extend google.protobuf.EnumValueOptions { string rest_name }` in `cutx/v1/options.proto`.
pub const REST_NAME_EXTENSION: &str = "cutx.v1.rest_name";
/// `extend google.protobuf.MethodOptions { uint32 rest_success_status }`.
pub const SUCCESS_STATUS_EXTENSION: &str = "cutx.v1.rest_success_status";

/// One enum's REST names, both ways.
#[derive(Debug, Clone, Default)]
struct Spellings {
    /// REST name -> proto name.
    to_proto: HashMap<String, String>,
    /// Proto name -> REST name.
    to_rest: HashMap<String, String>,
}

#[derive(Debug, Clone, Default)]
pub struct Dialect {
    /// Enum full name -> its spellings; enums without any `rest_name` are absent.
    enums: HashMap<String, Spellings>,
}

/// What the walk does with an enum value it visited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Visit {
    Keep,
    /// Drop the field (a singular field only; a list keeps its items).
    Remove,
}

type Visitor<'a> = dyn FnMut(&EnumDescriptor, &mut Value, &str) -> Result<Visit, BadValue> + 'a;

/// A value the dialect could not read: the field as the client wrote it, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadValue {
    pub field: String,
    pub description: String,
}

impl Dialect {
    /// Reads every `rest_name` of the pool. Two values of one enum with the same REST name, or
    /// a REST name that is another value's proto name, are refused: input would be ambiguous.
    pub fn from_pool(pool: &DescriptorPool) -> anyhow::Result<Self> {
        let Some(extension) = pool.get_extension_by_name(REST_NAME_EXTENSION) else {
            return Ok(Self::default());
        };
        let mut enums = HashMap::new();
        for desc in pool.all_enums() {
            let mut spellings = Spellings::default();
            for value in desc.values() {
                let options = value.options();
                if !options.has_extension(&extension) {
                    continue;
                }
                let rest = options.get_extension(&extension);
                let rest = rest.as_str().context("rest_name is a string")?.to_string();
                if rest.is_empty() {
                    bail!("{}: rest_name is empty", value.full_name());
                }
                if desc.values().any(|other| other.name() == rest && other.number() != value.number()) {
                    bail!("{}: rest_name {rest:?} is another value's name", value.full_name());
                }
                if spellings.to_proto.insert(rest.clone(), value.name().to_string()).is_some() {
                    bail!("{}: rest_name {rest:?} is used twice in {}", value.full_name(), desc.full_name());
                }
                spellings.to_rest.insert(value.name().to_string(), rest);
            }
            if !spellings.to_rest.is_empty() {
                enums.insert(desc.full_name().to_string(), spellings);
            }
        }
        Ok(Self { enums })
    }

    /// The HTTP status of a method's successful REST answer.
    pub fn success_status(pool: &DescriptorPool, method: &MethodDescriptor) -> anyhow::Result<StatusCode> {
        let Some(extension) = pool.get_extension_by_name(SUCCESS_STATUS_EXTENSION) else {
            return Ok(StatusCode::OK);
        };
        let options = method.options();
        if !options.has_extension(&extension) {
            return Ok(StatusCode::OK);
        }
        let code = options.get_extension(&extension).as_u32().context("rest_success_status is a uint32")?;
        let status = u16::try_from(code).ok().and_then(|c| StatusCode::from_u16(c).ok());
        match status {
            Some(status) if status.is_success() => Ok(status),
            _ => bail!("{}: rest_success_status {code} is not a 2xx status", method.full_name()),
        }
    }

    /// A value's name on REST: its `rest_name`, or its proto name when it has none.
    pub fn rest_name<'a>(&'a self, value: &'a EnumValueDescriptor) -> &'a str {
        self.enums
            .get(value.parent_enum().full_name())
            .and_then(|s| s.to_rest.get(value.name()))
            .map_or(value.name(), String::as_str)
    }

    /// The names a client should write for an enum, in number order: each value's REST name,
    /// leaving out the zero value when the enum has REST names (it means "unset": a request
    /// leaves the field out, and an answer does not carry it).
    pub fn names(&self, desc: &EnumDescriptor) -> Vec<String> {
        let has_rest = self.enums.contains_key(desc.full_name());
        let mut values: Vec<EnumValueDescriptor> =
            desc.values().filter(|v| !(has_rest && v.number() == 0 && self.rest_of(v).is_none())).collect();
        values.sort_by_key(EnumValueDescriptor::number);
        values.iter().map(|v| self.rest_name(v).to_string()).collect()
    }

    fn rest_of(&self, value: &EnumValueDescriptor) -> Option<&str> {
        self.enums.get(value.parent_enum().full_name())?.to_rest.get(value.name()).map(String::as_str)
    }

    /// The value a client's text names: a REST name, a proto name or a number.
    pub fn parse_value(&self, desc: &EnumDescriptor, text: &str) -> Option<EnumValueDescriptor> {
        let proto_name = self.enums.get(desc.full_name()).and_then(|s| s.to_proto.get(text)).map(String::as_str);
        desc.get_value_by_name(proto_name.unwrap_or(text))
            .or_else(|| text.parse::<i32>().ok().and_then(|n| desc.get_value(n)))
    }

    /// Rewrites the REST names of a request's JSON to proto names, in place. A string that is
    /// no name of its enum is a [`BadValue`] naming the field and listing the names.
    pub fn incoming(&self, message: &MessageDescriptor, json: &mut Value) -> Result<(), BadValue> {
        self.walk_message(message, json, "", &mut |desc, value, path| {
            let Value::String(text) = value else {
                return Ok(Visit::Keep);
            };
            match self.parse_value(desc, text) {
                Some(found) => {
                    *text = found.name().to_string();
                    Ok(Visit::Keep)
                }
                None => Err(BadValue {
                    field: path.to_string(),
                    description: format!("must be one of {}", self.names(desc).join(", ")),
                }),
            }
        })
    }

    /// Rewrites the proto names of an answer's JSON to REST names, in place. An unset field of
    /// an enum with REST names (its zero value, which has none) is left out.
    pub fn outgoing(&self, message: &MessageDescriptor, json: &mut Value) {
        let renamed = self.walk_message(message, json, "", &mut |desc, value, _| {
            let Some(spellings) = self.enums.get(desc.full_name()) else {
                return Ok(Visit::Keep);
            };
            let Value::String(text) = value else {
                return Ok(Visit::Keep);
            };
            if let Some(rest) = spellings.to_rest.get(text.as_str()) {
                *text = rest.clone();
            } else if desc.get_value(0).is_some_and(|zero| zero.name() == text) {
                return Ok(Visit::Remove);
            }
            Ok(Visit::Keep)
        });
        debug_assert!(renamed.is_ok(), "the outgoing rewrite never fails");
    }

    /// Calls `visit` on every enum value in `json`, read as a `message`, with the path of the
    /// field as the client wrote it (`variants[0].tone`).
    fn walk_message(
        &self,
        message: &MessageDescriptor,
        json: &mut Value,
        path: &str,
        visit: &mut Visitor<'_>,
    ) -> Result<(), BadValue> {
        // Well-known types have their own JSON forms (a Timestamp is a string, a Struct any
        // object) and hold no enum of ours.
        if message.package_name() == "google.protobuf" {
            return Ok(());
        }
        let Value::Object(object) = json else {
            return Ok(());
        };
        let mut removed = Vec::new();
        let mut seen: HashMap<u32, &str> = HashMap::new();
        for (key, value) in object.iter_mut() {
            let Some(field) = message.get_field_by_json_name(key).or_else(|| message.get_field_by_name(key)) else {
                continue;
            };
            let path = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
            // `aspectRatio` and `aspect_ratio` are one field: given both, which one counts?
            if let Some(first) = seen.insert(field.number(), key) {
                return Err(BadValue { field: path, description: format!("is given twice (also as {first})") });
            }
            if self.walk_field(&field, value, &path, visit)? == Visit::Remove {
                removed.push(key.clone());
            }
        }
        for key in removed {
            object.remove(&key);
        }
        Ok(())
    }

    fn walk_field(
        &self,
        field: &FieldDescriptor,
        value: &mut Value,
        path: &str,
        visit: &mut Visitor<'_>,
    ) -> Result<Visit, BadValue> {
        if field.is_map() {
            let Kind::Message(entry) = field.kind() else {
                return Ok(Visit::Keep);
            };
            let value_field = entry.map_entry_value_field();
            if let Value::Object(map) = value {
                for (key, item) in map.iter_mut() {
                    self.walk_single(&value_field, item, &format!("{path}.{key}"), visit)?;
                }
            }
            return Ok(Visit::Keep);
        }
        if field.is_list() {
            if let Value::Array(items) = value {
                for (i, item) in items.iter_mut().enumerate() {
                    self.walk_single(field, item, &format!("{path}[{i}]"), visit)?;
                }
            }
            return Ok(Visit::Keep);
        }
        self.walk_single(field, value, path, visit)
    }

    fn walk_single(
        &self,
        field: &FieldDescriptor,
        value: &mut Value,
        path: &str,
        visit: &mut Visitor<'_>,
    ) -> Result<Visit, BadValue> {
        match field.kind() {
            Kind::Enum(desc) => visit(&desc, value, path),
            Kind::Message(inner) => self.walk_message(&inner, value, path, visit).map(|()| Visit::Keep),
            _ => Ok(Visit::Keep),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pool() -> DescriptorPool {
        DescriptorPool::decode(cutx_proto::FILE_DESCRIPTOR_SET).unwrap()
    }

    #[test]
    fn every_enum_value_a_client_can_send_has_a_rest_name_except_unspecified() {
        let pool = pool();
        let dialect = Dialect::from_pool(&pool).unwrap();
        for desc in pool.all_enums().filter(|e| e.package_name() == "cutx.v1") {
            for value in desc.values().filter(|v| v.number() != 0) {
                assert!(dialect.rest_of(&value).is_some(), "{} has no rest_name", value.full_name());
            }
        }
    }

    #[test]
    fn rest_names_proto_names_and_numbers_all_parse() {
        let pool = pool();
        let dialect = Dialect::from_pool(&pool).unwrap();
        let platform = pool.get_enum_by_name("cutx.v1.AdPlatform").unwrap();
        for text in ["meta", "AD_PLATFORM_META", "1"] {
            assert_eq!(dialect.parse_value(&platform, text).map(|v| v.number()), Some(1), "{text}");
        }
        for text in ["Meta", "facebook", "99", ""] {
            assert!(dialect.parse_value(&platform, text).is_none(), "{text}");
        }
        assert_eq!(dialect.names(&platform), ["meta", "tiktok", "google", "linkedin", "pinterest", "universal"]);
    }

    #[test]
    fn the_known_spellings_of_the_reference_api() {
        let pool = pool();
        let dialect = Dialect::from_pool(&pool).unwrap();
        let table = [
            ("cutx.v1.JobStatus", 1, "pending"),
            ("cutx.v1.JobStatus", 7, "expired"),
            ("cutx.v1.JobKind", 3, "static_ad"),
            ("cutx.v1.JobKind", 7, "ugc_video"),
            ("cutx.v1.StaticAdStyle", 1, "product_hero"),
            ("cutx.v1.CopyFormat", 1, "short"),
            ("cutx.v1.CopyTone", 5, "playful"),
            ("cutx.v1.UserRole", 1, "user"),
            ("cutx.v1.LedgerEntryType", 6, "free_tier"),
        ];
        for (name, number, rest) in table {
            let value = pool.get_enum_by_name(name).unwrap().get_value(number).unwrap();
            assert_eq!(dialect.rest_name(&value), rest, "{name} {number}");
        }
    }

    #[test]
    fn incoming_json_is_rewritten_to_proto_names_and_a_bad_value_names_its_field() {
        let pool = pool();
        let dialect = Dialect::from_pool(&pool).unwrap();
        let request = pool.get_message_by_name("cutx.v1.GenerateCopyRequest").unwrap();
        let mut json = json!({ "platform": "meta", "format": "COPY_FORMAT_SHORT", "tone": 5, "projectId": "p" });
        dialect.incoming(&request, &mut json).unwrap();
        let want =
            json!({ "platform": "AD_PLATFORM_META", "format": "COPY_FORMAT_SHORT", "tone": 5, "projectId": "p" });
        assert_eq!(json, want, "numbers are left for prost-reflect to read");

        let mut json = json!({ "customInstructions": "a", "custom_instructions": "b" });
        let bad = dialect.incoming(&request, &mut json).unwrap_err();
        assert!(bad.description.starts_with("is given twice"), "{bad:?}");

        let mut json = json!({ "tone": "shouty" });
        let bad = dialect.incoming(&request, &mut json).unwrap_err();
        assert_eq!(bad.field, "tone");
        assert_eq!(bad.description, "must be one of professional, casual, urgent, luxe, playful, bold");
    }

    #[test]
    fn outgoing_json_uses_rest_names_in_nested_and_repeated_messages_and_leaves_out_unset_enums() {
        let pool = pool();
        let dialect = Dialect::from_pool(&pool).unwrap();
        let response = pool.get_message_by_name("cutx.v1.ListJobsResponse").unwrap();
        let mut json = json!({
            "jobs": [
                { "kind": "JOB_KIND_STATIC_AD", "status": "JOB_STATUS_COMPLETED", "createdAt": "2026-01-01T00:00:00Z" },
                { "kind": "JOB_KIND_UNSPECIFIED", "status": 42 }
            ],
            "nextPageToken": ""
        });
        dialect.outgoing(&response, &mut json);
        assert_eq!(json["jobs"][0]["kind"], "static_ad");
        assert_eq!(json["jobs"][0]["status"], "completed");
        assert_eq!(json["jobs"][0]["createdAt"], "2026-01-01T00:00:00Z");
        assert!(json["jobs"][1].get("kind").is_none(), "an unset kind is left out: {json}");
        assert_eq!(json["jobs"][1]["status"], 42, "an unknown number stays a number");
    }

    #[test]
    fn the_success_status_of_a_create_is_201_and_of_others_200() {
        let pool = pool();
        let create = pool.get_service_by_name("cutx.v1.ProjectService").unwrap();
        let status =
            |name: &str| Dialect::success_status(&pool, &create.methods().find(|m| m.name() == name).unwrap()).unwrap();
        assert_eq!(status("CreateProject"), StatusCode::CREATED);
        assert_eq!(status("ListProjects"), StatusCode::OK);
    }
}
