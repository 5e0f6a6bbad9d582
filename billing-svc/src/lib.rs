//! billing-svc: credits. It alone moves them; everything else asks it over gRPC.

pub mod catalog;
pub mod checkout;
mod entity;
mod entry;
pub mod payments;
mod service;
pub mod store;
pub mod stripe_client;

use std::sync::Arc;

use cutx_platform::grpc::RequireMesh;
use cutx_platform::mesh::MeshKey;
use cutx_proto::pb::billing_internal_service_server::BillingInternalServiceServer;
use cutx_proto::pb::billing_service_server::BillingServiceServer;
use tonic::service::interceptor::InterceptedService;

pub use entry::EntryType;
use service::Billing;

/// Credits a new user starts with.
pub const FREE_TIER_CREDITS: cutx_platform::credits::Credits = cutx_platform::credits::Credits::from_u32(25);

/// billing-svc's two gRPC services, ready to add to a server.
pub struct BillingServices {
    pub public: InterceptedService<BillingServiceServer<Billing>, RequireMesh>,
    pub internal: InterceptedService<BillingInternalServiceServer<Billing>, RequireMesh>,
}

/// What billing-svc runs with.
pub struct BillingConfig {
    pub db: cutx_platform::db::Db,
    pub mesh: MeshKey,
    pub catalog: catalog::Catalog,
    /// None without a Stripe key: checkout answers UNAVAILABLE, everything else works.
    pub checkout: Option<Arc<dyn checkout::Checkout>>,
}

impl BillingConfig {
    /// The reference catalog, no Stripe.
    pub fn new(db: cutx_platform::db::Db, mesh: MeshKey) -> Self {
        Self { db, mesh, catalog: catalog::Catalog::reference(), checkout: None }
    }
}

pub fn services(config: BillingConfig) -> BillingServices {
    let BillingConfig { db, mesh, catalog, checkout } = config;
    let billing = Billing { store: store::Store::new(db), mesh: mesh.clone(), catalog: Arc::new(catalog), checkout };
    BillingServices {
        public: InterceptedService::new(BillingServiceServer::new(billing.clone()), RequireMesh::any(mesh.clone())),
        internal: InterceptedService::new(
            BillingInternalServiceServer::new(billing),
            RequireMesh::services(
                mesh,
                &[cutx_platform::mesh::Peer::Auth, cutx_platform::mesh::Peer::Jobs, cutx_platform::mesh::Peer::Webhook],
            ),
        ),
    }
}

/// Serves billing-svc on `listener` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: BillingConfig,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let s = services(config);
    let router = cutx_platform::grpc::server().add_service(s.public).add_service(s.internal);
    cutx_platform::grpc::serve(router, listener, shutdown).await?;
    Ok(())
}
