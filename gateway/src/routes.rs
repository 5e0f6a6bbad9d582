//! The REST route table, read from the `google.api.http` rules of the exposed services.
//!
//! Every rule (and each of its `additional_bindings`) of a unary or server-streaming method of an
//! exposed service becomes one [`RestRoute`]; nothing else does, so an internal service can never
//! get a REST route. The table is sorted by template precedence, so the first match is the most
//! specific one (verb routes first, literal segments before variables).

use std::collections::HashSet;

use anyhow::{Context, bail};
use http::Method;
use prost_reflect::{
    DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, MethodDescriptor, Value,
};

use crate::dialect::Dialect;
use crate::http_rule::{Bindings, PathTemplate};

/// The `google.api.http` extension of `google.protobuf.MethodOptions`.
pub const HTTP_EXTENSION: &str = "google.api.http";

/// Which part of the request message the HTTP body fills.
#[derive(Debug, Clone)]
pub enum BodyRule {
    /// No body: every field not bound by the path comes from the query.
    Empty,
    /// `body: "*"`: the whole message, minus path-bound fields; the query is not read.
    Whole,
    /// `body: "field"`: that top-level field; the query fills the others.
    Field(FieldDescriptor),
}

#[derive(Debug, Clone)]
pub struct RestRoute {
    pub http_method: Method,
    pub template: PathTemplate,
    pub body: BodyRule,
    /// `response_body: "field"`: answer with that field of the response instead of all of it.
    pub response_body: Option<FieldDescriptor>,
    /// The HTTP status of a successful answer (`cutx.v1.rest_success_status`, 200 by default).
    pub success: http::StatusCode,
    pub rpc: MethodDescriptor,
}

impl RestRoute {
    /// `/<service>/<method>`, the gRPC path the route calls.
    pub fn grpc_path(&self) -> String {
        format!("/{}/{}", self.rpc.parent_service().full_name(), self.rpc.name())
    }
}

/// One `google.api.http` rule as written in the proto, before it is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRule {
    pub method: String,
    pub path: String,
    pub body: String,
    pub response_body: String,
}

/// Every rule of a method, the primary one first, then its `additional_bindings`.
pub fn raw_rules(pool: &DescriptorPool, method: &MethodDescriptor) -> Vec<RawRule> {
    let Some(extension) = pool.get_extension_by_name(HTTP_EXTENSION) else {
        return Vec::new();
    };
    let options = method.options();
    if !options.has_extension(&extension) {
        return Vec::new();
    }
    let mut out = Vec::new();
    if let Some(rule) = options.get_extension(&extension).as_message() {
        flatten_rule(rule, &mut out);
    }
    out
}

fn flatten_rule(rule: &DynamicMessage, out: &mut Vec<RawRule>) {
    let text =
        |name: &str| rule.get_field_by_name(name).and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
    let pattern = ["get", "put", "post", "delete", "patch"]
        .into_iter()
        .find(|m| rule.has_field_by_name(m))
        .map(|m| (m.to_ascii_uppercase(), text(m)))
        .or_else(|| {
            let custom = rule.get_field_by_name("custom")?;
            let custom = custom.as_message()?;
            let field =
                |n: &str| custom.get_field_by_name(n).and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
            rule.has_field_by_name("custom").then(|| (field("kind"), field("path")))
        });
    if let Some((method, path)) = pattern {
        out.push(RawRule { method, path, body: text("body"), response_body: text("response_body") });
    }
    if let Some(Value::List(bindings)) = rule.get_field_by_name("additional_bindings").as_deref() {
        for binding in bindings.iter().filter_map(Value::as_message) {
            flatten_rule(binding, out);
        }
    }
}

/// A dotted field path (`a.b`, each part by proto or JSON name) resolved through singular
/// message fields. `None` if any part is not a field.
pub fn resolve_field_path<S: AsRef<str>>(message: &MessageDescriptor, path: &[S]) -> Option<Vec<FieldDescriptor>> {
    let mut current = message.clone();
    let mut fields = Vec::with_capacity(path.len());
    for (i, part) in path.iter().enumerate() {
        let part = part.as_ref();
        let field = current.get_field_by_name(part).or_else(|| current.get_field_by_json_name(part))?;
        if i + 1 < path.len() {
            match field.kind() {
                Kind::Message(inner) if !field.is_list() && !field.is_map() => current = inner,
                _ => return None,
            }
        }
        fields.push(field);
    }
    Some(fields)
}

pub enum Lookup<'a> {
    Found(&'a RestRoute, Bindings),
    /// Some route has this path, none with this method.
    MethodNotAllowed,
    NotFound,
}

#[derive(Debug, Clone)]
pub struct RouteTable {
    routes: Vec<RestRoute>,
    dialect: Dialect,
}

impl RouteTable {
    pub fn from_pool(pool: &DescriptorPool, exposed: &HashSet<String>) -> anyhow::Result<Self> {
        let mut routes = Vec::new();
        for service in pool.services().filter(|s| exposed.contains(s.full_name())) {
            for rpc in service.methods() {
                for raw in raw_rules(pool, &rpc) {
                    if rpc.is_client_streaming() {
                        tracing::warn!(method = rpc.full_name(), "client-streaming methods have no REST route");
                        continue;
                    }
                    let route = build_route(pool, &rpc, &raw)
                        .with_context(|| format!("google.api.http rule of {}", rpc.full_name()))?;
                    routes.push(route);
                }
            }
        }
        routes.sort_by(|a, b| a.template.precedence(&b.template));
        Ok(Self { routes, dialect: Dialect::from_pool(pool)? })
    }

    pub fn routes(&self) -> &[RestRoute] {
        &self.routes
    }

    /// How REST spells the enums of these routes.
    pub fn dialect(&self) -> &Dialect {
        &self.dialect
    }

    pub fn find(&self, method: &Method, path: &str) -> Lookup<'_> {
        let mut path_known = false;
        for route in &self.routes {
            let Some(bindings) = route.template.matches(path) else {
                continue;
            };
            if route.http_method == *method {
                return Lookup::Found(route, bindings);
            }
            path_known = true;
        }
        if path_known { Lookup::MethodNotAllowed } else { Lookup::NotFound }
    }
}

fn build_route(pool: &DescriptorPool, rpc: &MethodDescriptor, raw: &RawRule) -> anyhow::Result<RestRoute> {
    let http_method =
        Method::from_bytes(raw.method.as_bytes()).with_context(|| format!("HTTP method {:?}", raw.method))?;
    let template = PathTemplate::parse(&raw.path)?;
    let input = rpc.input();
    for var in &template.variables {
        let fields = resolve_field_path(&input, &var.field_path)
            .with_context(|| format!("path variable {} is not a field of {}", var.dotted(), input.full_name()))?;
        let leaf = fields.last().expect("a field path has at least one part");
        if leaf.is_list() || leaf.is_map() {
            bail!("path variable {} is a repeated field", var.dotted());
        }
    }
    let body = match raw.body.as_str() {
        "" => BodyRule::Empty,
        "*" => BodyRule::Whole,
        name => BodyRule::Field(
            input
                .get_field_by_name(name)
                .with_context(|| format!("body field {name} is not a field of {}", input.full_name()))?,
        ),
    };
    let response_body = match raw.response_body.as_str() {
        "" => None,
        name => {
            let output = rpc.output();
            Some(
                output
                    .get_field_by_name(name)
                    .with_context(|| format!("response_body {name} is not a field of {}", output.full_name()))?,
            )
        }
    };
    let success = Dialect::success_status(pool, rpc)?;
    Ok(RestRoute { http_method, template, body, response_body, success, rpc: rpc.clone() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable {
        let pool = DescriptorPool::decode(cutx_proto::FILE_DESCRIPTOR_SET).unwrap();
        let exposed =
            cutx_proto::PUBLIC_SERVICES.iter().chain(cutx_proto::DEV_SERVICES).map(|s| s.to_string()).collect();
        RouteTable::from_pool(&pool, &exposed).unwrap()
    }

    fn found(table: &RouteTable, method: Method, path: &str) -> Option<(String, Vec<(String, String)>)> {
        match table.find(&method, path) {
            Lookup::Found(route, bindings) => {
                Some((route.rpc.full_name().to_string(), bindings.into_iter().map(|(v, s)| (v.dotted(), s)).collect()))
            }
            _ => None,
        }
    }

    #[test]
    #[allow(clippy::type_complexity)] // the table reads best with its row type inline
    fn the_cutx_rules_become_routes_to_their_methods() {
        let table = table();
        let cases: &[(Method, &str, &str, &[(&str, &str)])] = &[
            (Method::GET, "/api/jobs/j1", "cutx.v1.JobService.GetJob", &[("id", "j1")]),
            (Method::POST, "/api/jobs/j1/cancel", "cutx.v1.JobService.CancelJob", &[("id", "j1")]),
            (Method::GET, "/api/jobs/j1/watch", "cutx.v1.JobService.WatchJob", &[("id", "j1")]),
            (Method::GET, "/api/jobs", "cutx.v1.JobService.ListJobs", &[]),
            (Method::POST, "/api/products/ingest", "cutx.v1.ProjectService.IngestProduct", &[]),
            (Method::GET, "/api/dev/mailbox", "cutx.v1.DevMailboxService.ListDevMail", &[]),
        ];
        for (method, path, rpc, bindings) in cases {
            let want = bindings.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
            assert_eq!(found(&table, method.clone(), path), Some((rpc.to_string(), want)), "{method} {path}");
        }
    }

    #[test]
    fn a_known_path_with_another_method_is_not_allowed_and_an_unknown_one_is_not_found() {
        let table = table();
        assert!(matches!(table.find(&Method::DELETE, "/api/jobs/j1"), Lookup::MethodNotAllowed));
        assert!(matches!(table.find(&Method::GET, "/api/nope"), Lookup::NotFound));
    }

    #[test]
    fn internal_services_get_no_routes() {
        let table = table();
        assert!(table.routes().iter().all(|r| !r.rpc.parent_service().name().contains("Internal")));
    }

    #[test]
    fn field_paths_resolve_by_proto_or_json_name() {
        let pool = DescriptorPool::decode(cutx_proto::FILE_DESCRIPTOR_SET).unwrap();
        let msg = pool.get_message_by_name("cutx.v1.ListJobsRequest").unwrap();
        assert_eq!(resolve_field_path(&msg, &["page_size"]).unwrap()[0].name(), "page_size");
        assert_eq!(resolve_field_path(&msg, &["pageSize"]).unwrap()[0].name(), "page_size");
        assert!(resolve_field_path(&msg, &["nope"]).is_none());
        assert!(resolve_field_path(&msg, &["page_size", "x"]).is_none());
    }
}
