//! What keeps a web page the user happens to visit away from the API on their machine.
//!
//! - **Host names.** A gateway told which names it has ([`AllowedHosts::Only`]) answers no
//!   request for another name: a DNS-rebinding page (`evil.example` re-pointed at 127.0.0.1) is
//!   refused though its requests reach the port. Ports are not compared; a name is.
//! - **Origins.** [`is_loopback_origin`] is the CORS rule of `cutx dev`: a web studio on any
//!   localhost port, never `null` and never another site.
//! - **No CORS at all** on the routes of [`cutx_proto::DEV_SERVICES`] (the dev mailbox, which
//!   holds every sign-in link): their answers lose every `access-control-*` header, so no other
//!   origin can read them, loopback ones included.
//!
//! Refusals answer as [`crate::header_limit`] does: REST gets its status (421 Misdirected
//! Request) and the usual error body, gRPC and gRPC-web a trailers-only `PERMISSION_DENIED`.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use prost_reflect::DescriptorPool;
use tonic::Status;

use crate::http_rule::PathTemplate;

/// The names the gateway answers for.
#[derive(Debug, Clone)]
pub enum AllowedHosts {
    /// Any name (a distributed gateway behind a load balancer that checks names itself).
    Any,
    /// Only these host names, compared without port and case.
    Only(Vec<String>),
}

impl AllowedHosts {
    /// `cutx dev`'s names: the loopback ones, the listening address and the public URL's host,
    /// and any `extra`.
    pub fn local(listen: std::net::IpAddr, public_url: Option<&str>, extra: &[String]) -> Self {
        let mut names: Vec<String> = ["localhost", "127.0.0.1", "::1"].into_iter().map(String::from).collect();
        if !listen.is_unspecified() {
            names.push(listen.to_string());
        }
        if let Some(host) = public_url.and_then(|u| url::Url::parse(u).ok()).and_then(|u| u.host_str().map(host_name)) {
            names.push(host);
        }
        names.extend(extra.iter().map(|h| host_name(h)));
        names.sort();
        names.dedup();
        Self::Only(names)
    }

    fn allows(&self, host: Option<&str>) -> bool {
        match self {
            Self::Any => true,
            Self::Only(names) => host.is_some_and(|h| names.iter().any(|n| *n == host_name(h))),
        }
    }
}

/// A host as compared: lower case, without port or IPv6 brackets.
fn host_name(authority: &str) -> String {
    let authority = authority.trim().to_ascii_lowercase();
    let host = match authority.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default().to_string(),
        // One colon: `name:port`. More: a bare IPv6 address (already without brackets).
        None if authority.matches(':').count() == 1 => authority.split(':').next().unwrap_or_default().to_string(),
        None => authority,
    };
    host.trim_end_matches('.').to_string()
}

/// The request's host: HTTP/2's `:authority` (in the URI), else HTTP/1.1's `Host`.
fn request_host(request: &http::request::Parts) -> Option<&str> {
    request.uri.authority().map(|a| a.as_str()).or_else(|| request.headers.get(header::HOST)?.to_str().ok())
}

/// An `http` or `https` origin on `localhost`, `127.0.0.1` or `[::1]`, any port.
pub fn is_loopback_origin(origin: &HeaderValue) -> bool {
    let Ok(text) = origin.to_str() else { return false };
    let Ok(url) = url::Url::parse(text) else { return false };
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip == std::net::Ipv4Addr::LOCALHOST,
        Some(url::Host::Ipv6(ip)) => ip == std::net::Ipv6Addr::LOCALHOST,
        None => false,
    };
    // An origin is scheme, host and port only; anything more is not one a browser sends.
    let bare = url.path() == "/" && url.query().is_none() && url.fragment().is_none() && !text.ends_with('/');
    matches!(url.scheme(), "http" | "https") && loopback && bare && url.username().is_empty()
}

#[derive(Clone)]
pub struct Guard {
    pub pool: DescriptorPool,
    pub hosts: AllowedHosts,
    /// gRPC paths (`/service/`) and REST templates that never answer CORS.
    no_cors: Arc<(Vec<String>, Vec<PathTemplate>)>,
}

impl Guard {
    pub fn new(pool: DescriptorPool, hosts: AllowedHosts, table: &crate::routes::RouteTable) -> Self {
        let services: Vec<String> = cutx_proto::DEV_SERVICES.iter().map(|s| format!("/{s}/")).collect();
        let templates = table
            .routes()
            .iter()
            .filter(|r| cutx_proto::DEV_SERVICES.contains(&r.rpc.parent_service().full_name()))
            .map(|r| r.template.clone())
            .collect();
        Self { pool, hosts, no_cors: Arc::new((services, templates)) }
    }

    fn without_cors(&self, path: &str) -> bool {
        let (services, templates) = self.no_cors.as_ref();
        services.iter().any(|s| path.starts_with(s.as_str())) || templates.iter().any(|t| t.matches(path).is_some())
    }
}

/// Middleware, outside CORS: refuses a foreign host, and takes CORS off the dev-only routes.
pub async fn guard(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    if !guard.hosts.allows(request_host(&parts)) {
        let status = Status::permission_denied("this server does not answer for that host name");
        if crate::grpc::is_grpc_headers(&parts.headers) {
            return crate::grpc::refusal(status, &parts.headers);
        }
        let body = crate::status_http::error_body_as(&guard.pool, &status, StatusCode::MISDIRECTED_REQUEST);
        return (StatusCode::MISDIRECTED_REQUEST, axum::Json(body)).into_response();
    }
    let strip = guard.without_cors(parts.uri.path());
    let mut response = next.run(Request::from_parts(parts, body)).await;
    if strip {
        let cors: Vec<_> =
            response.headers().keys().filter(|k| k.as_str().starts_with("access-control-")).cloned().collect();
        for name in cors {
            response.headers_mut().remove(name);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_origins_pass_the_dev_cors_rule() {
        let table = [
            ("http://localhost:3000", true),
            ("http://LOCALHOST:5173", true),
            ("https://localhost", true),
            ("http://127.0.0.1:8080", true),
            ("http://[::1]:8080", true),
            ("null", false),
            ("", false),
            ("http://localhost.evil.example", false),
            ("http://evil.example", false),
            ("http://127.0.0.2:8080", false),
            ("http://192.168.1.10:3000", false),
            ("file://", false),
            ("chrome-extension://abcdef", false),
            ("http://user@localhost:3000", false),
            ("http://localhost:3000/", false),
            ("http://localhost:3000/path", false),
            ("ws://localhost:3000", false),
        ];
        for (origin, want) in table {
            let value = HeaderValue::from_str(origin).unwrap();
            assert_eq!(is_loopback_origin(&value), want, "{origin:?}");
        }
    }

    #[test]
    fn a_gateway_answers_only_for_the_host_names_it_was_given() {
        let hosts = AllowedHosts::local(
            "127.0.0.1".parse().unwrap(),
            Some("https://studio.example.com/app"),
            &["Dev.Box.Lan".to_string()],
        );
        let table = [
            (Some("127.0.0.1:8080"), true),
            (Some("localhost"), true),
            (Some("LocalHost:9"), true),
            (Some("[::1]:8080"), true),
            (Some("studio.example.com"), true),
            (Some("studio.example.com.:443"), true),
            (Some("dev.box.lan:8080"), true),
            (Some("evil.example:8080"), false),
            (Some("localhost.evil.example"), false),
            (Some("127.0.0.2:8080"), false),
            (Some("[::2]:8080"), false),
            (Some(""), false),
            (None, false),
        ];
        for (host, want) in table {
            assert_eq!(hosts.allows(host), want, "{host:?}");
        }
        assert!(AllowedHosts::Any.allows(Some("anything.example")));
        assert!(AllowedHosts::Any.allows(None));
    }

    #[test]
    fn an_unspecified_listen_address_is_not_a_name() {
        let AllowedHosts::Only(names) = AllowedHosts::local("0.0.0.0".parse().unwrap(), None, &[]) else {
            panic!("a list")
        };
        assert_eq!(names, ["127.0.0.1", "::1", "localhost"]);
    }
}
