//! `/api/openapi.json`: an OpenAPI 3.0.3 document derived from the same route table and
//! descriptors the REST handler uses, so it cannot drift from what is served.
//!
//! Schemas follow the proto3 JSON mapping as the REST dialect speaks it: JSON names
//! (lowerCamelCase unless a field declares its own), 64-bit integers as numbers, enums as their
//! REST names (see [`crate::dialect`]), `Timestamp` as a date-time string, repeated fields as
//! arrays, maps as objects, oneof members as plain optional properties. Summaries and
//! descriptions are the proto comments.

use std::collections::{BTreeMap, HashSet};

use prost_reflect::{EnumDescriptor, FieldDescriptor, FileDescriptor, Kind, MessageDescriptor};
use serde_json::{Value, json};

use crate::dialect::Dialect;
use crate::routes::{BodyRule, RestRoute, RouteTable};

const STATUS_SCHEMA: &str = "Error";

pub fn document(table: &RouteTable) -> Value {
    let mut schemas = Schemas { entries: BTreeMap::new(), dialect: table.dialect().clone() };
    let mut paths: BTreeMap<String, serde_json::Map<String, Value>> = BTreeMap::new();
    let mut tags: BTreeMap<String, Value> = BTreeMap::new();
    for route in table.routes() {
        let service = route.rpc.parent_service();
        tags.entry(service.name().to_string()).or_insert_with(|| {
            let mut tag = json!({ "name": service.name() });
            if let Some(text) = comment(&service.parent_file(), service.path()) {
                tag["description"] = json!(text);
            }
            tag
        });
        let operation = operation(route, &mut schemas);
        paths
            .entry(route.template.openapi_path())
            .or_default()
            .insert(route.http_method.as_str().to_ascii_lowercase(), operation);
    }
    schemas.entries.insert(STATUS_SCHEMA.to_string(), status_schema());
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "CutX API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Derived from the google.api.http annotations of the cutx.v1 services."
        },
        "tags": tags.into_values().collect::<Vec<_>>(),
        "paths": paths,
        "components": {
            "schemas": schemas.entries,
            "securitySchemes": {
                "bearerAuth": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT" },
                "cookieAuth": { "type": "apiKey", "in": "cookie", "name": cutx_platform::session::SESSION_COOKIE }
            }
        },
        "security": [ { "bearerAuth": [] }, { "cookieAuth": [] } ]
    })
}

fn operation(route: &RestRoute, schemas: &mut Schemas) -> Value {
    let rpc = &route.rpc;
    let service = rpc.parent_service();
    let input = rpc.input();
    let mut op = json!({
        "operationId": format!("{}_{}", service.name(), rpc.name()),
        "tags": [service.name()],
    });
    if let Some(text) = comment(&rpc.parent_file(), rpc.path()) {
        op["summary"] = json!(text.lines().next().unwrap_or_default());
        op["description"] = json!(text);
    }

    let mut parameters = Vec::new();
    let mut taken: HashSet<u32> = HashSet::new();
    for var in &route.template.variables {
        let fields =
            crate::routes::resolve_field_path(&input, &var.field_path).expect("checked when the table was built");
        taken.insert(fields[0].number());
        let leaf = fields.last().expect("non-empty path");
        parameters.push(json!({
            "name": var.dotted(),
            "in": "path",
            "required": true,
            "schema": schemas.field(leaf),
        }));
    }
    let required = crate::transcode::body_required(route);
    match &route.body {
        BodyRule::Whole => {
            // Fields bound in the path are not the body's: a body that repeated them would only
            // be refused when they differ.
            let schema =
                if taken.is_empty() { schemas.message_ref(&input) } else { schemas.message_without(&input, &taken) };
            op["requestBody"] =
                json!({ "required": required, "content": { "application/json": { "schema": schema } } });
        }
        BodyRule::Field(field) => {
            taken.insert(field.number());
            op["requestBody"] =
                json!({ "required": required, "content": { "application/json": { "schema": schemas.field(field) } } });
        }
        BodyRule::Empty => {}
    }
    if !matches!(route.body, BodyRule::Whole) {
        let mut seen = HashSet::new();
        query_parameters(&input, "", &taken, schemas, &mut seen, &mut parameters);
    }
    if !parameters.is_empty() {
        op["parameters"] = json!(parameters);
    }

    let output = rpc.output();
    let result = match &route.response_body {
        Some(field) => schemas.field(field),
        None => schemas.message_ref(&output),
    };
    let ok = if rpc.is_server_streaming() {
        json!({
            "description": "A stream of newline-delimited JSON objects, each {\"result\": ...}; a failure ends it with {\"error\": Status}.",
            "content": { "application/x-ndjson": { "schema": {
                "type": "object",
                "properties": { "result": result, "error": schema_ref(STATUS_SCHEMA) }
            } } }
        })
    } else {
        let reason = route.success.canonical_reason().unwrap_or("OK");
        json!({ "description": reason, "content": { "application/json": { "schema": result } } })
    };
    op["responses"] = json!({
        route.success.as_str(): ok,
        "default": {
            "description": "An error: a short name, a message, the gRPC code's name and google.rpc details.",
            "content": { "application/json": { "schema": schema_ref(STATUS_SCHEMA) } }
        }
    });
    op
}

/// Every field the query can set: scalars, enums and repeated ones, nested messages by dotted
/// path. Well-known messages with a string form count as scalars; maps cannot be set.
fn query_parameters(
    message: &MessageDescriptor,
    prefix: &str,
    taken: &HashSet<u32>,
    schemas: &mut Schemas,
    seen: &mut HashSet<String>,
    out: &mut Vec<Value>,
) {
    if !seen.insert(message.full_name().to_string()) {
        return;
    }
    for field in message.fields() {
        if prefix.is_empty() && taken.contains(&field.number()) || field.is_map() {
            continue;
        }
        let name = format!("{prefix}{}", field.json_name());
        match field.kind() {
            Kind::Message(inner) if !is_string_wkt(inner.full_name()) => {
                if !field.is_list() {
                    query_parameters(&inner, &format!("{name}."), taken, schemas, seen, out);
                }
            }
            _ => {
                let mut param = json!({ "name": name, "in": "query", "required": prefix.is_empty() && crate::openapi_rules::is_required(&field), "schema": schemas.field(&field) });
                if field.is_list() {
                    param["explode"] = json!(true);
                }
                if let Some(text) = comment(&field.parent_file(), field.path()) {
                    param["description"] = json!(text);
                }
                out.push(param);
            }
        }
    }
    seen.remove(message.full_name());
}

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn status_schema() -> Value {
    let codes: Vec<&str> = (0..=16).map(|n| crate::status_http::code_name(tonic::Code::from_i32(n))).collect();
    json!({
        "type": "object",
        "description": "An error: a short name (\"Insufficient Credits\", \"Not Found\"), a message for people, the gRPC code's lowercase name and google.rpc error details as JSON Any.",
        "required": ["error", "message", "code"],
        "properties": {
            "error": { "type": "string" },
            "message": { "type": "string" },
            "code": { "type": "string", "enum": codes },
            "details": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": { "@type": { "type": "string" } },
                    "additionalProperties": true
                }
            }
        }
    })
}

fn is_string_wkt(full_name: &str) -> bool {
    matches!(full_name, "google.protobuf.Timestamp" | "google.protobuf.Duration" | "google.protobuf.FieldMask")
}

struct Schemas {
    entries: BTreeMap<String, Value>,
    dialect: Dialect,
}

impl Schemas {
    fn message_ref(&mut self, message: &MessageDescriptor) -> Value {
        if let Some(inline) = well_known(message.full_name()) {
            return inline;
        }
        let name = message.full_name().to_string();
        if !self.entries.contains_key(&name) {
            // The placeholder stops recursion through self-referencing messages.
            self.entries.insert(name.clone(), Value::Null);
            let schema = self.message_schema(message);
            self.entries.insert(name.clone(), schema);
        }
        schema_ref(&name)
    }

    /// The message's schema, inline, without the top-level fields numbered in `taken`.
    fn message_without(&mut self, message: &MessageDescriptor, taken: &HashSet<u32>) -> Value {
        let mut schema = self.message_schema(message);
        let gone: Vec<String> =
            message.fields().filter(|f| taken.contains(&f.number())).map(|f| f.json_name().to_string()).collect();
        if let Some(properties) = schema["properties"].as_object_mut() {
            properties.retain(|name, _| !gone.contains(name));
        }
        if let Some(required) = schema.get_mut("required").and_then(Value::as_array_mut) {
            required.retain(|name| !name.as_str().is_some_and(|n| gone.iter().any(|g| g == n)));
            if required.is_empty() {
                schema.as_object_mut().expect("an object").remove("required");
            }
        }
        schema
    }

    fn message_schema(&mut self, message: &MessageDescriptor) -> Value {
        let mut properties = serde_json::Map::new();
        for field in message.fields() {
            let mut schema = self.field(&field);
            if let Some(text) = comment(&field.parent_file(), field.path()) {
                schema = with_description(schema, text);
            }
            properties.insert(field.json_name().to_string(), schema);
        }
        // The transcoder refuses a field the message does not have, so the schema says so.
        let mut schema = json!({ "type": "object", "properties": properties, "additionalProperties": false });
        schema.as_object_mut().expect("an object").extend(crate::openapi_rules::object_rules(message));
        if let Some(text) = comment(&message.parent_file(), message.path()) {
            schema["description"] = json!(text);
        }
        schema
    }

    fn enum_ref(&mut self, desc: &EnumDescriptor) -> Value {
        let name = desc.full_name().to_string();
        if !self.entries.contains_key(&name) {
            let values = self.dialect.names(desc);
            let mut schema = json!({ "type": "string", "enum": values });
            if let Some(text) = comment(&desc.parent_file(), desc.path()) {
                schema["description"] = json!(text);
            }
            self.entries.insert(name.clone(), schema);
        }
        schema_ref(&name)
    }

    /// The schema of a field's JSON value, repeated and map fields included.
    fn field(&mut self, field: &FieldDescriptor) -> Value {
        if field.is_map() {
            let Kind::Message(entry) = field.kind() else { unreachable!("a map field is a message of entries") };
            let value = self.kind(&entry.map_entry_value_field().kind());
            return json!({ "type": "object", "additionalProperties": value });
        }
        let mut single = self.kind(&field.kind());
        if let (Value::Object(schema), false) = (&mut single, field.is_list()) {
            schema.extend(crate::openapi_rules::constraints(field));
        }
        if field.is_list() { json!({ "type": "array", "items": single }) } else { single }
    }

    fn kind(&mut self, kind: &Kind) -> Value {
        match kind {
            Kind::Double => json!({ "type": "number", "format": "double" }),
            Kind::Float => json!({ "type": "number", "format": "float" }),
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
                json!({ "type": "integer", "format": "int32" })
            }
            Kind::Uint32 | Kind::Fixed32 => {
                json!({ "type": "integer", "format": "int64", "minimum": 0 })
            }
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
                json!({ "type": "integer", "format": "int64" })
            }
            Kind::Uint64 | Kind::Fixed64 => json!({ "type": "integer", "format": "int64", "minimum": 0 }),
            Kind::Bool => json!({ "type": "boolean" }),
            Kind::String => json!({ "type": "string" }),
            Kind::Bytes => json!({ "type": "string", "format": "byte" }),
            Kind::Enum(desc) => self.enum_ref(desc),
            Kind::Message(desc) => self.message_ref(desc),
        }
    }
}

/// The JSON shapes of the well-known types, which are not objects of their fields.
fn well_known(full_name: &str) -> Option<Value> {
    Some(match full_name {
        "google.protobuf.Timestamp" => json!({ "type": "string", "format": "date-time" }),
        "google.protobuf.Duration" => json!({ "type": "string", "example": "1.5s" }),
        "google.protobuf.FieldMask" => json!({ "type": "string" }),
        "google.protobuf.Empty" => json!({ "type": "object" }),
        "google.protobuf.Struct" => json!({ "type": "object", "additionalProperties": true }),
        "google.protobuf.Value" => json!({}),
        "google.protobuf.ListValue" => json!({ "type": "array", "items": {} }),
        "google.protobuf.Any" => {
            json!({ "type": "object", "properties": { "@type": { "type": "string" } }, "additionalProperties": true })
        }
        "google.protobuf.StringValue" => json!({ "type": "string", "nullable": true }),
        "google.protobuf.BytesValue" => {
            json!({ "type": "string", "format": "byte", "nullable": true })
        }
        "google.protobuf.BoolValue" => json!({ "type": "boolean", "nullable": true }),
        "google.protobuf.Int32Value" | "google.protobuf.UInt32Value" => {
            json!({ "type": "integer", "nullable": true })
        }
        "google.protobuf.Int64Value" | "google.protobuf.UInt64Value" => {
            json!({ "type": "integer", "format": "int64", "nullable": true })
        }
        "google.protobuf.FloatValue" | "google.protobuf.DoubleValue" => {
            json!({ "type": "number", "nullable": true })
        }
        _ => return None,
    })
}

/// A `$ref` cannot have siblings in OpenAPI 3.0: a described reference goes through `allOf`.
fn with_description(schema: Value, text: String) -> Value {
    if schema.get("$ref").is_some() {
        return json!({ "allOf": [schema], "description": text });
    }
    let mut schema = schema;
    schema["description"] = json!(text);
    schema
}

/// The leading comment of the element at `path` in its file, trimmed.
fn comment(file: &FileDescriptor, path: &[i32]) -> Option<String> {
    let info = file.file_descriptor_proto().source_code_info.as_ref()?;
    let location = info.location.iter().find(|l| l.path == path)?;
    let text = location.leading_comments.as_deref()?;
    let text = text.lines().map(str::trim).collect::<Vec<_>>().join("\n").trim().to_string();
    (!text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost_reflect::DescriptorPool;

    fn setup(exposed: &[&str]) -> (DescriptorPool, Value) {
        let pool = DescriptorPool::decode(cutx_proto::FILE_DESCRIPTOR_SET).unwrap();
        let exposed = exposed.iter().map(|s| s.to_string()).collect();
        let table = RouteTable::from_pool(&pool, &exposed).unwrap();
        let doc = document(&table);
        (pool, doc)
    }

    fn operations(doc: &Value) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                out.push((path.clone(), method.clone(), op["operationId"].as_str().unwrap().to_string()));
            }
        }
        out
    }

    #[test]
    fn openapi_lists_every_http_rule_of_the_exposed_services_and_no_internal_service() {
        let exposed: Vec<&str> = cutx_proto::PUBLIC_SERVICES.iter().chain(cutx_proto::DEV_SERVICES).copied().collect();
        let (pool, doc) = setup(&exposed);
        let mut expected = Vec::new();
        for service in pool.services().filter(|s| exposed.contains(&s.full_name())) {
            for rpc in service.methods() {
                for rule in crate::routes::raw_rules(&pool, &rpc) {
                    let template = crate::http_rule::PathTemplate::parse(&rule.path).unwrap();
                    expected.push((
                        template.openapi_path(),
                        rule.method.to_ascii_lowercase(),
                        format!("{}_{}", service.name(), rpc.name()),
                    ));
                }
            }
        }
        assert!(!expected.is_empty());
        let mut got = operations(&doc);
        got.sort();
        expected.sort();
        assert_eq!(got, expected);

        let internal: Vec<_> =
            pool.services().filter(|s| s.name().ends_with("InternalService")).map(|s| s.name().to_string()).collect();
        assert!(!internal.is_empty(), "the descriptor set has internal services to hide");
        let text = doc.to_string();
        for name in internal {
            assert!(!text.contains(&name), "{name} appears in the document");
        }
    }

    #[test]
    fn dev_services_are_documented_only_when_exposed() {
        let (_, doc) = setup(cutx_proto::PUBLIC_SERVICES);
        assert!(operations(&doc).iter().all(|(_, _, id)| !id.starts_with("DevMailboxService")));
    }

    #[test]
    fn schemas_follow_the_proto3_json_mapping() {
        let (_, doc) = setup(cutx_proto::PUBLIC_SERVICES);
        let schemas = &doc["components"]["schemas"];
        let balance = &schemas["cutx.v1.GetBalanceResponse"]["properties"];
        assert_eq!(balance["lifetime_purchased"]["type"], "integer", "int64 is a number, under its declared name");
        assert_eq!(balance["balance"]["type"], "integer");
        let job = &schemas["cutx.v1.Job"]["properties"];
        assert!(job.as_object().unwrap().keys().all(|k| !k.contains('_')), "camelCase names: {job}");
        let list = &schemas["cutx.v1.ListJobsResponse"]["properties"]["jobs"];
        assert_eq!(list["type"], "array");
        assert_eq!(list["items"]["$ref"], "#/components/schemas/cutx.v1.Job");
        assert_eq!(schemas["cutx.v1.JobStatus"]["type"], "string");
        assert_eq!(
            schemas["cutx.v1.JobStatus"]["enum"],
            json!(["pending", "queued", "processing", "completed", "failed", "canceled", "expired"])
        );
        assert_eq!(
            schemas["cutx.v1.StaticAdStyle"]["enum"],
            json!(["product_hero", "lifestyle", "minimal", "bold", "seasonal"])
        );
        assert!(doc.to_string().contains("date-time"), "Timestamps are date-time strings");
        assert_eq!(schemas["Error"]["properties"]["code"]["type"], "string");
        assert_eq!(schemas["Error"]["properties"]["code"]["enum"][3], "invalid_argument");
    }

    #[test]
    fn operations_carry_comments_parameters_and_error_responses() {
        let (_, doc) = setup(cutx_proto::PUBLIC_SERVICES);
        let get_job = &doc["paths"]["/api/jobs/{id}"]["get"];
        assert_eq!(get_job["operationId"], "JobService_GetJob");
        assert_eq!(get_job["summary"], "Returns one of the caller's jobs.");
        assert_eq!(get_job["parameters"][0]["in"], "path");
        assert_eq!(
            get_job["responses"]["default"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/Error"
        );
        assert!(
            get_job["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
                .as_str()
                .is_some_and(|r| r.ends_with("cutx.v1.Job")),
            "response_body answers the job itself"
        );
        let create = &doc["paths"]["/api/products"]["post"];
        assert!(create["responses"]["201"].is_object(), "a create answers 201: {create}");
        assert!(create["responses"].get("200").is_none());
        assert_eq!(doc["paths"]["/api/jobs/{id}/cancel"]["post"]["requestBody"]["required"], false);
        let list = &doc["paths"]["/api/jobs"]["get"]["parameters"];
        let names: Vec<_> = list.as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
        assert!(names.contains(&"pageSize") && names.contains(&"status"), "{names:?}");
        let create = &doc["paths"]["/api/generate/static-ad"]["post"];
        assert!(create.get("parameters").is_none(), "body \"*\" leaves no query parameters");
        assert!(create["requestBody"].is_object());
    }
}
