//! The README's table of REST routes, written from the OpenAPI document (itself read from the
//! descriptors), so that it names fields and values exactly as a REST client sends and reads
//! them. `gateway/tests/readme_routes.rs` fails when the README's copy is not this table.

use serde_json::Value;

/// Where the table starts and ends in the README.
pub const BEGIN: &str =
    "<!-- rest-routes:begin (generated: CUTX_BLESS=1 cargo test -p cutx-gateway --test readme_routes) -->";
pub const END: &str = "<!-- rest-routes:end -->";

/// One Markdown table: method, path, request fields, answer fields, one row per operation.
pub fn markdown(document: &Value) -> String {
    let mut out = String::from("| Method | Path | Request | Answer |\n|---|---|---|---|\n");
    let Some(paths) = document["paths"].as_object() else { return out };
    for (path, operations) in paths {
        let Some(operations) = operations.as_object() else { continue };
        for (method, operation) in operations {
            out.push_str(&format!(
                "| {} | `{}` | {} | {} |\n",
                method.to_ascii_uppercase(),
                path,
                cell(&request(document, operation)),
                cell(&answer(document, operation)),
            ));
        }
    }
    out
}

fn cell(parts: &[String]) -> String {
    if parts.is_empty() { "none".to_string() } else { parts.join("<br>") }
}

fn request(document: &Value, operation: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let parameters = operation["parameters"].as_array().cloned().unwrap_or_default();
    let query: Vec<String> = parameters
        .iter()
        .filter(|p| p["in"] == "query")
        .map(|p| field(document, p["name"].as_str().unwrap_or_default(), &p["schema"], p["required"] == true))
        .collect();
    if !query.is_empty() {
        out.push(format!("query: {}", query.join(", ")));
    }
    if let Some(schema) = operation["requestBody"]["content"]["application/json"].get("schema") {
        let fields = object_fields(document, schema);
        if !fields.is_empty() {
            out.push(format!("body: {}", fields.join(", ")));
        }
    }
    out
}

fn answer(document: &Value, operation: &Value) -> Vec<String> {
    let Some(responses) = operation["responses"].as_object() else { return Vec::new() };
    responses
        .iter()
        .filter(|(status, _)| status.starts_with('2'))
        .flat_map(|(status, response)| {
            let content = response["content"].as_object().cloned().unwrap_or_default();
            content
                .into_iter()
                .map(|(content_type, body)| {
                    let fields = object_fields(document, &body["schema"]);
                    let shape = if fields.is_empty() { "{}".to_string() } else { fields.join(", ") };
                    match content_type.as_str() {
                        "application/json" => format!("{status}: {shape}"),
                        other => format!("{status} ({other}): {shape}"),
                    }
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The fields of an object schema, required ones marked with `*`.
fn object_fields(document: &Value, schema: &Value) -> Vec<String> {
    let schema = resolve(document, schema);
    let required: Vec<&str> =
        schema["required"].as_array().map(|r| r.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    let Some(properties) = schema["properties"].as_object() else { return Vec::new() };
    properties
        .iter()
        .map(|(name, field_schema)| field(document, name, field_schema, required.contains(&name.as_str())))
        .collect()
}

/// `name` with a `*` when required, and the values of an enum.
fn field(document: &Value, name: &str, schema: &Value, required: bool) -> String {
    let schema = resolve(document, schema);
    let star = if required { "\\*" } else { "" };
    let values =
        schema["enum"].as_array().or_else(|| resolve(document, &schema["items"])["enum"].as_array()).map(|values| {
            values.iter().filter_map(Value::as_str).map(|v| format!("`{v}`")).collect::<Vec<_>>().join(" \\| ")
        });
    match values {
        Some(values) if !values.is_empty() => format!("`{name}`{star} ({values})"),
        _ => format!("`{name}`{star}"),
    }
}

fn resolve<'a>(document: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str().and_then(|r| r.strip_prefix("#/components/schemas/")) {
        Some(name) => &document["components"]["schemas"][name],
        None => schema,
    }
}
