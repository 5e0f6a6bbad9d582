//! auth-svc: sign-in by magic link, sessions, the signed-in user.

mod email;
mod entity;
mod mailer;
mod service;
mod store;
mod user;

use std::sync::Arc;

use cutx_platform::grpc::{RequireMesh, mesh_channel};
use cutx_platform::mesh::MeshKey;
use cutx_platform::mesh::Peer;
use cutx_platform::session::SessionKey;
use cutx_proto::pb::auth_internal_service_server::AuthInternalServiceServer;
use cutx_proto::pb::auth_service_server::AuthServiceServer;
use cutx_proto::pb::billing_internal_service_client::BillingInternalServiceClient;
use cutx_proto::pb::dev_mailbox_service_server::DevMailboxServiceServer;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub use email::Email;
pub use mailer::{DevMailbox, Mailer, SmtpConfig, SmtpConfigError, SmtpMailer};
pub use service::MAGIC_LINK_SENT;

pub struct AuthConfig {
    pub db: cutx_platform::db::Db,
    pub mesh: MeshKey,
    pub sessions: SessionKey,
    /// billing-svc, for the free credits of a new user.
    pub billing: Channel,
    pub mailer: Arc<dyn Mailer>,
    /// Served as `DevMailboxService` when set (`cutx dev` only).
    pub dev_mailbox: Option<DevMailbox>,
    /// Where users reach the gateway; sign-in links start with it.
    pub public_url: String,
    pub secure_cookies: bool,
    pub free_credits: cutx_platform::credits::Credits,
}

/// Serves auth-svc on `listener` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: AuthConfig,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let auth = service::Auth {
        store: store::Store::new(config.db),
        billing: BillingInternalServiceClient::new(mesh_channel(config.billing, config.mesh.clone(), Peer::Auth)),
        mesh: config.mesh,
        sessions: config.sessions,
        mailer: config.mailer,
        public_url: config.public_url.trim_end_matches('/').to_string(),
        secure_cookies: config.secure_cookies,
        free_credits: config.free_credits,
    };
    // Every call, signed in or not, comes through the gateway (or another service) with a mesh
    // token; a call around them is refused.
    let require = RequireMesh::any(auth.mesh.clone());
    let dev = config
        .dev_mailbox
        .map(|m| InterceptedService::new(DevMailboxServiceServer::new(service::DevMail(m)), require.clone()));
    let internal = RequireMesh::services(auth.mesh.clone(), &[Peer::Gateway]);
    let router = cutx_platform::grpc::server()
        .add_service(InterceptedService::new(AuthInternalServiceServer::new(auth.clone()), internal))
        .add_service(InterceptedService::new(AuthServiceServer::new(auth), require))
        .add_optional_service(dev);
    cutx_platform::grpc::serve(router, listener, shutdown).await?;
    Ok(())
}
