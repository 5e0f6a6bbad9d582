//! `JobInternalService`: how workers move jobs. Every call is idempotent: starting a job that is
//! already processing lets a redelivered message proceed (its worker died), starting a finished
//! job tells the worker to drop the message, completing a completed job and failing a failed job
//! change nothing (the refund behind a failure is idempotent too).

use cutx_proto::pb::{self, job_internal_service_server::JobInternalService};
use prost::Message;
use tonic::{Request, Response, Status};

use crate::Jobs;
use crate::kind::Kind;
use crate::service::parse_job_id;
use crate::state::Status as JobStatus;
use crate::store::{Changes, StoreError, status_of};

fn job_id(raw: &str) -> Result<cutx_platform::ids::JobId, Status> {
    parse_job_id(raw).map_err(|_| cutx_platform::error::invalid_field("job_id", "must be a job id"))
}

#[tonic::async_trait]
impl JobInternalService for Jobs {
    async fn start_job(&self, request: Request<pb::StartJobRequest>) -> Result<Response<pb::StartJobResponse>, Status> {
        let pb::StartJobRequest { job_id: raw, worker } = request.into_inner();
        let id = job_id(&raw)?;
        let row = self.store.find_for_worker(id).await?;
        let reason = format!("taken by {}", if worker.is_empty() { "a worker" } else { worker.as_str() });
        let proceed = match status_of(&row)? {
            JobStatus::Pending | JobStatus::Queued => {
                match self.store.transition(id, JobStatus::Processing, &reason, Changes::default()).await {
                    Ok(_) => true,
                    // Canceled (or failed) between the read and the move: drop the message.
                    Err(StoreError::Refused { .. }) => false,
                    Err(e) => return Err(e.into()),
                }
            }
            // Its worker died (or its claim expired): this delivery takes it over.
            JobStatus::Processing => {
                self.store.record_note(id, JobStatus::Processing, &format!("re{reason}")).await?;
                true
            }
            JobStatus::Completed | JobStatus::Failed | JobStatus::Canceled | JobStatus::Expired => false,
        };
        let input = pb::JobInput::decode(row.input.as_slice())
            .map_err(|e| cutx_platform::error::internal("stored input", e))?;
        let kind = Kind::parse(&row.kind).map(|k| k.to_pb()).unwrap_or_default();
        Ok(Response::new(pb::StartJobResponse { proceed, user_id: row.user_id, kind: kind as i32, input: Some(input) }))
    }

    async fn complete_job(
        &self,
        request: Request<pb::CompleteJobRequest>,
    ) -> Result<Response<pb::CompleteJobResponse>, Status> {
        let pb::CompleteJobRequest { job_id: raw, outputs } = request.into_inner();
        let id = job_id(&raw)?;
        let row = self.store.find_for_worker(id).await?;
        if status_of(&row)? != JobStatus::Processing {
            // Completed already (a duplicate), or canceled/failed meanwhile: nothing to do.
            return Ok(Response::new(pb::CompleteJobResponse { status: status_of(&row)?.to_pb() as i32 }));
        }
        self.store.add_outputs(id, &outputs).await?;
        let status = match self.store.transition(id, JobStatus::Completed, "completed", Changes::default()).await {
            Ok(moved) => moved.to,
            Err(StoreError::Refused { .. }) => status_of(&self.store.find_for_worker(id).await?)?,
            Err(e) => return Err(e.into()),
        };
        Ok(Response::new(pb::CompleteJobResponse { status: status.to_pb() as i32 }))
    }

    async fn fail_job(&self, request: Request<pb::FailJobRequest>) -> Result<Response<pb::FailJobResponse>, Status> {
        let pb::FailJobRequest { job_id: raw, error } = request.into_inner();
        let id = job_id(&raw)?;
        self.store.find_for_worker(id).await?;
        let status = self.fail(id, &error).await;
        Ok(Response::new(pb::FailJobResponse { status: status.to_pb() as i32 }))
    }
}
