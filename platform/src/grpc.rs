//! Serving and calling gRPC the same way in every service: TCP_NODELAY on both sides (Nagle
//! otherwise adds 40 ms stalls), graceful shutdown, lazy channels, mesh tokens on every call.

use std::future::Future;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::service::Interceptor;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

use tower::layer::util::{Identity, Stack};

use crate::mesh::{MeshKey, Peer};
use crate::request_id::ScopeLayer;

/// Binds a listener; `addr` may have port 0.
pub async fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// The incoming connections of a bound listener, with TCP_NODELAY.
pub fn incoming(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// Every CutX service's server: each call handled in the scope of its request id.
pub type Server = tonic::transport::Server<Stack<ScopeLayer, Identity>>;

/// A [`Server`] with its services.
pub type Router = tonic::transport::server::Router<Stack<ScopeLayer, Identity>>;

/// A server builder with the settings every CutX service shares.
pub fn server() -> Server {
    tonic::transport::Server::builder().tcp_nodelay(true).timeout(Duration::from_secs(120)).layer(ScopeLayer)
}

/// Serves `router` on `listener` until `shutdown` completes, then finishes in-flight calls.
pub async fn serve(
    router: Router,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    router.serve_with_incoming_shutdown(incoming(listener), shutdown).await
}

/// A channel to `addr` (`http://host:port`) that connects on first use and reconnects after.
pub fn channel(addr: &str) -> Result<Channel, tonic::transport::Error> {
    Ok(Endpoint::from_shared(addr.to_string())?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(30))
        .connect_lazy())
}

/// Adds a mesh token naming the calling service to every outgoing call.
#[derive(Clone)]
pub struct MeshInterceptor {
    key: MeshKey,
    service: Peer,
}

impl MeshInterceptor {
    pub fn new(key: MeshKey, service: Peer) -> Self {
        Self { key, service }
    }
}

impl Interceptor for MeshInterceptor {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        self.key.attach(&mut request, self.service, None);
        Ok(request)
    }
}

/// A channel whose calls carry this service's mesh token.
pub type MeshChannel = tonic::service::interceptor::InterceptedService<Channel, MeshInterceptor>;

pub fn mesh_channel(channel: Channel, key: MeshKey, service: Peer) -> MeshChannel {
    tonic::service::interceptor::InterceptedService::new(channel, MeshInterceptor::new(key, service))
}

/// Refuses a call without a valid mesh token: `UNAUTHENTICATED`. A public service takes any
/// mesh caller (the gateway, with or without a user; another service); an `*InternalService`
/// takes only the services it names, calling as themselves (no user), else `PERMISSION_DENIED`.
#[derive(Clone)]
pub struct RequireMesh {
    key: MeshKey,
    only: Option<&'static [Peer]>,
}

impl RequireMesh {
    /// For a public service.
    pub fn any(key: MeshKey) -> Self {
        Self { key, only: None }
    }

    /// For an internal service called by `services` only.
    pub fn services(key: MeshKey, services: &'static [Peer]) -> Self {
        Self { key, only: Some(services) }
    }
}

impl Interceptor for RequireMesh {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let identity = self.key.identify(request.metadata())?;
        if let Some(allowed) = self.only
            && (identity.user.is_some() || !allowed.contains(&identity.service))
        {
            return Err(Status::permission_denied(format!("{} may not call this service", identity.service.as_str())));
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::UserId;
    use crate::secret::Secret;

    #[test]
    fn internal_services_take_only_the_services_they_name_calling_as_themselves() {
        let key = MeshKey::new(&Secret::new("mesh-secret".into()));
        let call = |guard: &mut RequireMesh, service: Option<Peer>, user: Option<UserId>| {
            let mut request = Request::new(());
            if let Some(service) = service {
                key.attach(&mut request, service, user);
            }
            guard.call(request).map(|_| ()).map_err(|s| s.code())
        };
        let mut internal = RequireMesh::services(key.clone(), &[Peer::Jobs, Peer::Pipeline]);
        let mut public = RequireMesh::any(key.clone());
        let user = Some(UserId::new());
        let table = [
            (Some(Peer::Jobs), None, Ok(()), Ok(())),
            (Some(Peer::Pipeline), None, Ok(()), Ok(())),
            (Some(Peer::Gateway), None, Err(tonic::Code::PermissionDenied), Ok(())),
            (Some(Peer::Gateway), user, Err(tonic::Code::PermissionDenied), Ok(())),
            (Some(Peer::Jobs), user, Err(tonic::Code::PermissionDenied), Ok(())),
            (None, None, Err(tonic::Code::Unauthenticated), Err(tonic::Code::Unauthenticated)),
        ];
        for (service, user, internal_wants, public_wants) in table {
            assert_eq!(call(&mut internal, service, user), internal_wants, "{service:?} {user:?} internal");
            assert_eq!(call(&mut public, service, user), public_wants, "{service:?} {user:?} public");
        }
    }
}
