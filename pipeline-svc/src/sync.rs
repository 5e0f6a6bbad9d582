//! `PipelineInternalService`: jobs-svc runs synchronous kinds (copy) here, at once.

use std::sync::Arc;

use cutx_proto::pb::{self, pipeline_internal_service_server::PipelineInternalService};
use tonic::{Request, Response, Status};

use crate::provider::{Provider, ProviderJob};

pub struct SyncRunner {
    pub(crate) provider: Arc<dyn Provider>,
    pub(crate) sources: crate::sources::Sources,
}

#[tonic::async_trait]
impl PipelineInternalService for SyncRunner {
    async fn run_sync_job(
        &self,
        request: Request<pb::RunSyncJobRequest>,
    ) -> Result<Response<pb::RunSyncJobResponse>, Status> {
        let pb::RunSyncJobRequest { job_id, input } = request.into_inner();
        let input = input.ok_or_else(|| cutx_platform::error::invalid_field("input", "is required"))?;
        let job_id = job_id.parse().map_err(|_| cutx_platform::error::invalid_field("job_id", "must be a job id"))?;
        let job = ProviderJob { job_id, input, sources: self.sources.clone() };
        match self.provider.run(&job).await {
            Ok(produced) => Ok(Response::new(pb::RunSyncJobResponse { variants: produced.variants })),
            // The public words only; the cause stays in this process's log.
            Err(e) => {
                tracing::warn!(job = %job.job_id, error = %e.detail(), "a synchronous job failed");
                let code = if e.is_permanent() { tonic::Code::FailedPrecondition } else { tonic::Code::Unavailable };
                Err(Status::new(code, e.to_string()))
            }
        }
    }
}
