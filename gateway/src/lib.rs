//! The CutX gateway: one port (HTTP/1.1 and h2c) for gRPC, gRPC-web and REST, with no
//! per-endpoint code.
//!
//! Everything it serves comes from `cutx_proto::FILE_DESCRIPTOR_SET`: gRPC calls of the exposed
//! services pass through undecoded, REST routes come from their `google.api.http` rules, and
//! `/api/openapi.json`, reflection and health describe the same set. Internal services are never
//! reachable, and every forwarded call carries a mesh token minted here from the caller's
//! verified session (see [`identity`]).

mod browser_guard;
mod codec;
mod connection_cap;
pub mod dialect;
mod field_rules;
mod forward;
mod frames;
mod grpc;
mod grpc_web_text;
mod header_limit;
mod http_rule;
mod identity;
pub mod openapi;
mod openapi_rules;
mod rate_limit;
mod reflection;
mod rest;
mod revocations;
pub mod route_table;
pub mod routes;
mod serve;
pub mod status_http;
mod strict_json;
mod transcode;
mod validate;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::extract::Request;
use axum::routing::get;
use http::{HeaderName, Method, header};
use prost_reflect::DescriptorPool;
use tokio::net::TcpListener;
use tonic::transport::Channel;
use tower::ServiceExt;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::forward::Forwarder;
use crate::identity::IdentityMinter;
use crate::rest::RestState;
use crate::routes::RouteTable;
pub use crate::serve::EdgeLimits;

pub use browser_guard::AllowedHosts;
pub use rate_limit::{Rate, RateLimits};

pub struct GatewayConfig {
    pub listen: SocketAddr,
    /// Fully-qualified service name ("cutx.v1.JobService") -> channel to the process serving it.
    pub backends: HashMap<String, Channel>,
    /// Services clients may reach: `cutx_proto::PUBLIC_SERVICES`, plus `DEV_SERVICES` in dev
    /// mode. Every other service of the descriptor set is never reachable.
    pub exposed_services: Vec<String>,
    pub sessions: cutx_platform::session::SessionKey,
    pub mesh: cutx_platform::mesh::MeshKey,
    /// Extra routes mounted as they are (signed media downloads under `/media`).
    pub extra_routes: Router,
    /// REST body limit, [`GatewayConfig::DEFAULT_MAX_BODY`] by default.
    pub max_body_bytes: usize,
    /// Which browser origins may call with credentials.
    pub cors: CorsOrigins,
    /// auth-svc, whose list of logged-out sessions the gateway follows; `None` honours no
    /// logout beyond the cleared cookie.
    pub revocations_from: Option<Channel>,
    /// Header-read timeout, connections per client and the other limits of the accept loop.
    pub edge: EdgeLimits,
    /// The host names it answers for (`cutx dev`: loopback and its own).
    pub allowed_hosts: AllowedHosts,
    /// Calls per user and per client address; none by default.
    pub rate_limits: RateLimits,
}

/// The origins a browser may call the gateway from, with the session cookie. Never `null`,
/// and never on the dev mailbox's routes (see [`browser_guard`]).
#[derive(Debug, Clone)]
pub enum CorsOrigins {
    /// Any loopback origin (`cutx dev`: a web studio on any localhost port), and these.
    LoopbackAnd(Vec<http::HeaderValue>),
    /// Only these, e.g. `https://studio.example.com`; none means same-origin only.
    List(Vec<http::HeaderValue>),
}

impl GatewayConfig {
    pub const DEFAULT_MAX_BODY: usize = 64 * 1024;
}

pub struct Gateway {
    listener: TcpListener,
    local_addr: SocketAddr,
    app: Router,
    edge: EdgeLimits,
    follower: Option<(Channel, cutx_platform::mesh::MeshKey, identity::Revocations)>,
}

impl Gateway {
    /// Checks the configuration against the descriptor set, builds every route and binds the
    /// listener; nothing is served until [`Gateway::run_until_stopped`].
    pub async fn build(config: GatewayConfig) -> anyhow::Result<Gateway> {
        let pool =
            DescriptorPool::decode(cutx_proto::FILE_DESCRIPTOR_SET).context("decoding the cutx descriptor set")?;
        let exposed: HashSet<String> = config.exposed_services.iter().cloned().collect();
        for service in &exposed {
            anyhow::ensure!(
                pool.get_service_by_name(service).is_some(),
                "exposed service {service} is not in the descriptor set"
            );
            if !config.backends.contains_key(service) {
                tracing::warn!(service, "exposed service has no backend: its calls answer UNIMPLEMENTED");
            }
        }
        let table = RouteTable::from_pool(&pool, &exposed)?;
        let guard = browser_guard::Guard::new(pool.clone(), config.allowed_hosts, &table);
        let revoked = identity::Revocations::default();
        let follower = config.revocations_from.map(|auth| (auth, config.mesh.clone(), revoked.clone()));
        let identity = IdentityMinter::new(config.sessions, config.mesh, revoked);
        let limiter = rate_limit::Limiter::new(&config.rate_limits, identity.clone());

        let openapi = Arc::new(openapi::document(&table));
        config.edge.validate()?;
        let validator = validate::Validator::new(&pool)?;
        let forwarder =
            Forwarder::new(&pool, &config.backends, &exposed, identity.clone()).with_check(validator.clone());
        let grpc = grpc::grpc_service(&pool, &exposed, forwarder).await?;
        let header_pool = pool.clone();
        let rest_state = Arc::new(RestState {
            validator,
            pool,
            table,
            backends: config.backends,
            identity,
            max_body_bytes: config.max_body_bytes,
        });
        let http = Router::new()
            .route("/api/openapi.json", get(move || async move { axum::Json(openapi.as_ref().clone()) }))
            .fallback(rest::handle)
            .with_state(rest_state)
            .merge(config.extra_routes);

        // gRPC paths are any `/<service>/<method>`, so the split is by content type, not path;
        // it also keeps tonic-web's "400 to non-grpc-web HTTP/1.1" away from REST.
        let app = Router::new()
            .fallback_service(tower::service_fn(move |request: Request| {
                let grpc = grpc.clone();
                let http = http.clone();
                async move {
                    if grpc::is_grpc(&request) { grpc.oneshot(request).await } else { http.oneshot(request).await }
                }
            }))
            // Inside CORS, so that a browser can read a 431 too.
            .layer(axum::middleware::from_fn_with_state((limiter, header_pool.clone()), rate_limit::limit))
            .layer(axum::middleware::from_fn_with_state(header_pool, header_limit::refuse_large_heads))
            .layer(cors(config.cors))
            // Outside CORS, so that it can take CORS off the dev mailbox.
            .layer(axum::middleware::from_fn_with_state(guard, browser_guard::guard))
            // Every answer, errors and CORS preflights included, is what it says it is.
            .layer(SetResponseHeaderLayer::overriding(
                header::X_CONTENT_TYPE_OPTIONS,
                http::HeaderValue::from_static("nosniff"),
            ))
            // Outermost: every answer names its request, and everything logged meanwhile does too.
            .layer(axum::middleware::from_fn(request_scope));

        let listener = TcpListener::bind(config.listen).await.with_context(|| format!("binding {}", config.listen))?;
        let local_addr = listener.local_addr()?;
        Ok(Gateway { listener, local_addr, app, edge: config.edge, follower })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` completes, then lets open calls finish.
    pub async fn run_until_stopped(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        tracing::info!(addr = %self.local_addr, "gateway listening");
        let follower =
            self.follower.map(|(auth, mesh, revoked)| tokio::spawn(revocations::follow(auth, mesh, revoked)));
        serve::serve(self.listener, self.app, self.edge, shutdown).await;
        if let Some(follower) = follower {
            follower.abort();
        }
        Ok(())
    }
}

/// Browsers call from the web studio's origin with credentials (the session cookie), and
/// gRPC-web clients must read the status trailers-as-headers.
/// Gives the request a fresh id (a client's own is dropped), handles it in that id's scope and
/// span (calls to the services carry it on), and answers it in `x-request-id`.
async fn request_scope(request: Request, next: axum::middleware::Next) -> axum::response::Response {
    use cutx_platform::request_id::{HEADER, RequestId};
    let id = RequestId::new();
    let span =
        tracing::info_span!("request", request_id = %id, method = %request.method(), path = %request.uri().path());
    let value = id.header_value();
    let mut response = id.scope(span, next.run(request)).await;
    response.headers_mut().insert(HEADER, value);
    response
}

fn cors(origins: CorsOrigins) -> CorsLayer {
    let allow = match origins {
        CorsOrigins::LoopbackAnd(list) => {
            AllowOrigin::predicate(move |origin, _| browser_guard::is_loopback_origin(origin) || list.contains(origin))
        }
        CorsOrigins::List(list) => AllowOrigin::list(list),
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_credentials(true)
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            HeaderName::from_static("x-grpc-web"),
            HeaderName::from_static("x-user-agent"),
            HeaderName::from_static("grpc-timeout"),
        ])
        .expose_headers([
            HeaderName::from_static("grpc-status"),
            HeaderName::from_static("grpc-message"),
            HeaderName::from_static("grpc-status-details-bin"),
            HeaderName::from_static(cutx_platform::request_id::HEADER),
        ])
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE, Method::OPTIONS])
}
