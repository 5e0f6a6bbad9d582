//! pipeline-svc: every provider, and the queue consumer that feeds them. It owns no tables;
//! it moves jobs only by calling jobs-svc.

mod copywriter;
mod motion;
mod provider;
mod reframe;
mod render;
mod replicate;
mod sources;
mod speech;
mod sync;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use cutx_platform::grpc::{RequireMesh, mesh_channel};
use cutx_platform::media::MediaStore;
use cutx_platform::mesh::MeshKey;
use cutx_platform::mesh::Peer;
use cutx_platform::queue::JobQueue;
use cutx_proto::pb::job_internal_service_client::JobInternalServiceClient;
use cutx_proto::pb::pipeline_internal_service_server::PipelineInternalServiceServer;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub use provider::{
    Dispatched, LocalProvider, OutputFile, Produced, Provider, ProviderError, ProviderJob, Submission,
    UGC_NEEDS_PROVIDER,
};
pub use replicate::ReplicateProvider;
pub use sources::Sources;

/// How a pipeline process names itself in jobs' histories: `pipeline pid <pid>`.
pub fn process_worker_id() -> String {
    format!("pipeline pid {}", std::process::id())
}

pub struct PipelineConfig {
    pub mesh: MeshKey,
    /// jobs-svc, which the workers move jobs through.
    pub jobs: Channel,
    pub queue: Arc<dyn JobQueue>,
    pub media: Arc<dyn MediaStore>,
    pub provider: Arc<dyn Provider>,
    /// Fetches the URLs jobs start from (the one guarded client).
    pub http: cutx_platform::fetch::GuardedClient,
    /// Queue consumers in this process.
    pub workers: usize,
    /// The first retry waits this long; each later one twice as long as the one before.
    pub retry_base: Duration,
    /// How often a long job extends its claim on the message.
    pub heartbeat: Duration,
    /// Names this process in jobs' histories.
    pub worker_id: String,
}

/// Serves `PipelineInternalService` and runs the queue consumers until `shutdown`; consumers
/// finish the job in hand before the function returns.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: PipelineConfig,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let sources = Sources::new(config.media.clone(), config.http);
    let worker = worker::Worker {
        sources: sources.clone(),
        jobs: JobInternalServiceClient::new(mesh_channel(config.jobs, config.mesh.clone(), Peer::Pipeline)),
        queue: config.queue,
        media: config.media,
        provider: config.provider.clone(),
        retry_base: config.retry_base,
        heartbeat: config.heartbeat,
        worker_id: config.worker_id,
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let consumers: Vec<_> = (0..config.workers).map(|_| tokio::spawn(worker.clone().run(stopped.clone()))).collect();
    let sync = PipelineInternalServiceServer::new(sync::SyncRunner { provider: config.provider, sources });
    let router = cutx_platform::grpc::server()
        .add_service(InterceptedService::new(sync, RequireMesh::services(config.mesh, &[Peer::Jobs])));
    let served = cutx_platform::grpc::serve(router, listener, shutdown).await;
    let _ = stop.send(true);
    for consumer in consumers {
        let _ = consumer.await;
    }
    served?;
    Ok(())
}
