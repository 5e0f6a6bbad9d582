//! jobs-svc: jobs and projects. It alone changes a job's state, through
//! [`store::Store::transition`].

mod entity;
mod input;
mod internal;
mod kind;
mod moves;
mod projects;
mod reconcile;
mod service;
mod state;
mod store;

use std::sync::Arc;
use std::time::Duration;

use cutx_platform::grpc::{MeshChannel, RequireMesh, mesh_channel};
use cutx_platform::media::MediaStore;
use cutx_platform::mesh::MeshKey;
use cutx_platform::mesh::Peer;
use cutx_platform::queue::JobQueue;
use cutx_proto::pb::billing_internal_service_client::BillingInternalServiceClient;
use cutx_proto::pb::billing_service_client::BillingServiceClient;
use cutx_proto::pb::job_internal_service_server::JobInternalServiceServer;
use cutx_proto::pb::job_service_server::JobServiceServer;
use cutx_proto::pb::pipeline_internal_service_client::PipelineInternalServiceClient;
use cutx_proto::pb::project_service_server::ProjectServiceServer;
use tonic::Status;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub use kind::{Kind, Prices};
pub use reconcile::{Deadlines, RemoteProvider};
pub use service::REASON_PROVIDER_NOT_CONFIGURED;
use store::{Store, StoreError};

impl From<StoreError> for Status {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::JobNotFound(id) => Status::not_found(format!("job {id} not found")),
            e @ StoreError::Refused { .. } => {
                cutx_platform::error::with_reason(tonic::Code::FailedPrecondition, e.to_string(), "JOB_STATE")
            }
            StoreError::Db(e) => cutx_platform::error::internal("jobs store", e),
            e @ StoreError::Corrupt { .. } => cutx_platform::error::internal("jobs store", e),
            e @ StoreError::KeyReused(_) => {
                cutx_platform::error::conflicting_field("idempotency_key", e.to_string(), "IDEMPOTENCY_KEY_REUSED")
            }
            e @ StoreError::LeaseHeld(_) => cutx_platform::error::with_reason(
                tonic::Code::FailedPrecondition,
                e.to_string(),
                cutx_platform::error::REASON_LEASE_LOST,
            ),
        }
    }
}

pub struct JobsConfig {
    pub db: cutx_platform::db::Db,
    pub mesh: MeshKey,
    pub billing: Channel,
    pub pipeline: Channel,
    pub queue: Arc<dyn JobQueue>,
    pub media: Arc<dyn MediaStore>,
    pub prices: Prices,
    /// How long a signed output URL works.
    pub url_ttl: Duration,
    pub housekeeping: Housekeeping,
    /// Where jobs handed to a provider are asked about and canceled; `None` without one.
    pub remote: Option<RemoteProvider>,
    pub deadlines: Deadlines,
    /// Kinds refused at creation (nothing charged), with the message that says how to enable them.
    pub unavailable: std::collections::HashMap<Kind, String>,
}

/// jobs-svc's state, shared by its three gRPC services.
#[derive(Clone)]
pub struct Jobs {
    store: Store,
    mesh: MeshKey,
    billing: BillingInternalServiceClient<MeshChannel>,
    billing_public: BillingServiceClient<Channel>,
    pipeline: PipelineInternalServiceClient<MeshChannel>,
    queue: Arc<dyn JobQueue>,
    media: Arc<dyn MediaStore>,
    prices: Prices,
    url_ttl: Duration,
    remote: Option<RemoteProvider>,
    deadlines: Deadlines,
    unavailable: Arc<std::collections::HashMap<Kind, String>>,
}

impl Jobs {
    pub fn new(config: JobsConfig) -> Self {
        let JobsConfig {
            db,
            mesh,
            billing,
            pipeline,
            queue,
            media,
            prices,
            url_ttl,
            housekeeping: _,
            remote,
            deadlines,
            unavailable,
        } = config;
        Self {
            store: Store::new(db),
            billing: BillingInternalServiceClient::new(mesh_channel(billing.clone(), mesh.clone(), Peer::Jobs)),
            billing_public: BillingServiceClient::new(billing),
            pipeline: PipelineInternalServiceClient::new(mesh_channel(pipeline, mesh.clone(), Peer::Jobs)),
            mesh,
            queue,
            media,
            prices,
            url_ttl,
            remote,
            deadlines,
            unavailable: Arc::new(unavailable),
        }
    }

    /// Publishes again every job left `queued` for `age` without progress: its first publish
    /// may have been lost (the queue down, the process killed between commit and publish). The
    /// queue drops a message id it already has, and a worker drops a message whose job has
    /// ended, so a second publish never runs a job twice.
    pub async fn relay_once(&self, age: Duration) -> Result<usize, StoreError> {
        let before = cutx_platform::clock::now_millis() - age.as_millis() as i64;
        let mut published = 0;
        for row in self.store.stale(state::Status::Queued, before, 100).await? {
            let Some(id) = store::id_or_log(&row) else { continue };
            match self.publish(id, row.kind).await {
                Ok(()) => published += 1,
                Err(e) => tracing::warn!(job = %row.id, error = %e, "relay publish failed"),
            }
        }
        Ok(published)
    }

    /// Settles jobs a crash left half-made: `pending` for `age` (the process died between
    /// storing and queueing or running it) and synchronous kinds `processing` for `age` (it died
    /// while running one inline) are failed; queued kinds whose worker lease ran out `age` ago
    /// with no delivery taking them over (their message is gone) are expired. Each is refunded;
    /// a refund without a debit gives nothing, so credits are never taken without a job, nor
    /// given twice.
    pub async fn sweep_once(&self, age: Duration) -> Result<usize, StoreError> {
        let before = cutx_platform::clock::now_millis() - age.as_millis() as i64;
        let mut swept = 0;
        let pending = self.store.stale(state::Status::Pending, before, 100).await?;
        let processing = self.store.stale(state::Status::Processing, before, 100).await?;
        let inline = processing.into_iter().filter(|r| r.kind.is_sync());
        for row in pending.into_iter().chain(inline) {
            let Some(id) = store::id_or_log(&row) else { continue };
            if let Err(e) = self.fail(id, "interrupted before it could finish; credits refunded").await {
                tracing::warn!(job = %row.id, error = %e, "sweeping a job");
            }
            swept += 1;
        }
        for row in self.store.orphaned(before, 100).await? {
            let Some(id) = store::id_or_log(&row) else { continue };
            let why = "no worker finished it; credits refunded";
            let guard = store::Changes { lease_ended_before: Some(before), ..Default::default() };
            match self.settle_unfinished(id, state::Status::Expired, why, guard).await {
                Ok(_) => swept += 1,
                Err(e) => tracing::info!(job = %row.id, error = %e, "an orphan was taken over meanwhile"),
            }
        }
        // Refunds billing-svc did not confirm (it was unreachable): ask again, idempotently.
        for row in self.store.unrefunded(before, 100).await? {
            let Some(id) = store::id_or_log(&row) else { continue };
            self.refund(id).await;
        }
        Ok(swept)
    }
}

/// How often the relay and the sweeper look, and how old a job must be for them to act.
#[derive(Debug, Clone, Copy)]
pub struct Housekeeping {
    pub every: Duration,
    pub relay_age: Duration,
    pub sweep_age: Duration,
}

impl Default for Housekeeping {
    fn default() -> Self {
        Self { every: Duration::from_secs(15), relay_age: Duration::from_secs(30), sweep_age: Duration::from_secs(300) }
    }
}

/// Serves jobs-svc on `listener` until `shutdown`, with its relay.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: JobsConfig,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let housekeeping = config.housekeeping;
    let jobs = Jobs::new(config);
    let relay = {
        let jobs = jobs.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(housekeeping.every);
            loop {
                tick.tick().await;
                if let Err(e) = jobs.relay_once(housekeeping.relay_age).await {
                    tracing::warn!(error = %e, "relay");
                }
                if let Err(e) = jobs.sweep_once(housekeeping.sweep_age).await {
                    tracing::warn!(error = %e, "sweeper");
                }
            }
        })
    };
    // Its own loop: asking a slow provider and copying large outputs must not hold up the
    // relay and the sweeper.
    let reconciler = {
        let jobs = jobs.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(housekeeping.every);
            loop {
                tick.tick().await;
                if let Err(e) = jobs.reconcile_once().await {
                    tracing::warn!(error = %e, "reconciler");
                }
            }
        })
    };
    let public = RequireMesh::any(jobs.mesh.clone());
    // The pipeline workers and webhook-svc move jobs.
    let internal = RequireMesh::services(jobs.mesh.clone(), &[Peer::Pipeline, Peer::Webhook]);
    let router = cutx_platform::grpc::server()
        .add_service(InterceptedService::new(JobServiceServer::new(jobs.clone()), public.clone()))
        .add_service(InterceptedService::new(ProjectServiceServer::new(jobs.clone()), public))
        .add_service(InterceptedService::new(JobInternalServiceServer::new(jobs.clone()), internal));
    let served = cutx_platform::grpc::serve(router, listener, shutdown).await;
    relay.abort();
    reconciler.abort();
    served?;
    Ok(())
}
