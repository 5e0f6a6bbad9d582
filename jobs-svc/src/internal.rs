//! `JobInternalService`: how workers move jobs. Every call is idempotent: starting a job that is
//! already processing lets a redelivered message proceed (its worker died), starting a finished
//! job tells the worker to drop the message, completing a completed job and failing a failed job
//! change nothing (the refund behind a failure is idempotent too).

use cutx_proto::pb::{self, job_internal_service_server::JobInternalService};
use prost::Message;
use tonic::{Request, Response, Status};

use crate::Jobs;
use crate::entity::job;

use crate::service::parse_job_id;
use crate::state::Status as JobStatus;
use crate::store::{Changes, Lease, StoreError, lease_allows};

use cutx_platform::ids::JobId;

fn job_id(raw: &str) -> Result<JobId, Status> {
    parse_job_id(raw).map_err(|_| cutx_platform::error::invalid_field("job_id", "must be a job id"))
}

#[tonic::async_trait]
impl JobInternalService for Jobs {
    async fn start_job(&self, request: Request<pb::StartJobRequest>) -> Result<Response<pb::StartJobResponse>, Status> {
        let pb::StartJobRequest { job_id: raw, worker, lease_token, lease_seconds } = request.into_inner();
        let id = job_id(&raw)?;
        if lease_token.is_empty() {
            return Err(cutx_platform::error::invalid_field("lease_token", "is required"));
        }
        let now = cutx_platform::clock::now_millis();
        let lease = Lease { token: lease_token, until: now + i64::from(lease_length(lease_seconds)?) * 1000 };
        let who = if worker.is_empty() { "a worker".to_string() } else { worker };
        let row = self.store.find_for_worker(id).await?;
        let mut status = row.status;
        let mut proceed = false;
        if matches!(status, JobStatus::Pending | JobStatus::Queued) {
            let changes = Changes { lease: Some(lease.clone()), ..Changes::default() };
            let taken = format!("taken by {who}");
            match self.store.transition_from(id, Some(status), JobStatus::Processing, &taken, changes).await {
                Ok(moved) if moved.changed => proceed = true,
                // Another delivery moved it first, or it was canceled meanwhile: decide again.
                Ok(_) | Err(StoreError::Refused { .. }) => status = self.store.find_for_worker(id).await?.status,
                Err(e) => return Err(e.into()),
            }
        }
        let mut busy = false;
        let mut retry_after_ms = 0;
        // Handed to a provider: its callback or the reconciler ends it, no delivery does.
        let submitted = row.provider_ref.is_some();
        if !proceed && status == JobStatus::Processing && !submitted {
            // Its worker died (the lease ran out), or a duplicate message met a live worker.
            if self.store.take_over(id, &lease, now).await? {
                self.store.record_note(id, JobStatus::Processing, &format!("retaken by {who}")).await?;
                proceed = true;
            } else {
                busy = true;
                let held_until = self.store.find_for_worker(id).await?.lease_until.unwrap_or(now);
                retry_after_ms = (held_until - now).clamp(100, 3_600_000) as u32;
            }
        }
        let input = pb::JobInput::decode(row.input.as_slice())
            .map_err(|e| cutx_platform::error::internal("stored input", e))?;
        let kind = row.kind.to_pb();
        Ok(Response::new(pb::StartJobResponse {
            proceed,
            busy,
            retry_after_ms,
            user_id: row.user_id,
            kind: kind as i32,
            input: Some(input),
        }))
    }

    async fn renew_job_lease(
        &self,
        request: Request<pb::RenewJobLeaseRequest>,
    ) -> Result<Response<pb::RenewJobLeaseResponse>, Status> {
        let pb::RenewJobLeaseRequest { job_id: raw, lease_token, lease_seconds } = request.into_inner();
        let id = job_id(&raw)?;
        let until = cutx_platform::clock::now_millis() + i64::from(lease_length(lease_seconds)?) * 1000;
        let held = self.store.renew(id, &Lease { token: lease_token, until }).await?;
        Ok(Response::new(pb::RenewJobLeaseResponse { held }))
    }

    async fn release_job_lease(
        &self,
        request: Request<pb::ReleaseJobLeaseRequest>,
    ) -> Result<Response<pb::ReleaseJobLeaseResponse>, Status> {
        let pb::ReleaseJobLeaseRequest { job_id: raw, lease_token } = request.into_inner();
        self.store.release(job_id(&raw)?, &lease_token).await?;
        Ok(Response::new(pb::ReleaseJobLeaseResponse {}))
    }

    async fn complete_job(
        &self,
        request: Request<pb::CompleteJobRequest>,
    ) -> Result<Response<pb::CompleteJobResponse>, Status> {
        let pb::CompleteJobRequest { job_id: raw, outputs, lease_token, prediction_id } = request.into_inner();
        let id = job_id(&raw)?;
        let row = self.store.find_for_worker(id).await?;
        if row.status != JobStatus::Processing {
            // Completed already (a duplicate), or canceled/failed meanwhile: nothing to do.
            return Ok(Response::new(pb::CompleteJobResponse { status: row.status.to_pb() as i32 }));
        }
        check_holder(&row, id, &lease_token, &prediction_id)?;
        let note = if prediction_id.is_empty() {
            "completed".to_string()
        } else {
            format!("completed from prediction {prediction_id}")
        };
        let status = self.complete_with(id, Some(row.status), outputs, &note).await?;
        Ok(Response::new(pb::CompleteJobResponse { status: status.to_pb() as i32 }))
    }

    async fn fail_job(&self, request: Request<pb::FailJobRequest>) -> Result<Response<pb::FailJobResponse>, Status> {
        let pb::FailJobRequest { job_id: raw, error, lease_token, prediction_id } = request.into_inner();
        let id = job_id(&raw)?;
        let row = self.store.find_for_worker(id).await?;
        if row.status == JobStatus::Processing {
            check_holder(&row, id, &lease_token, &prediction_id)?;
        }
        let status = self.fail(id, &error).await?;
        Ok(Response::new(pb::FailJobResponse { status: status.to_pb() as i32 }))
    }

    async fn submit_job(
        &self,
        request: Request<pb::SubmitJobRequest>,
    ) -> Result<Response<pb::SubmitJobResponse>, Status> {
        let pb::SubmitJobRequest { job_id: raw, lease_token, provider, prediction_id, model } = request.into_inner();
        let id = job_id(&raw)?;
        if prediction_id.is_empty() {
            return Err(cutx_platform::error::invalid_field("prediction_id", "is required"));
        }
        let row = self.store.find_for_worker(id).await?;
        let status = row.status;
        if status != JobStatus::Processing || row.provider_ref.as_deref() == Some(prediction_id.as_str()) {
            // Canceled meanwhile (the worker cancels the prediction), or a repeated call.
            return Ok(Response::new(pb::SubmitJobResponse { status: status.to_pb() as i32 }));
        }
        let deadline = cutx_platform::clock::now_millis() + self.deadlines.run_for.as_millis() as i64;
        let note = format!("submitted to {provider} ({model}) as prediction {prediction_id}");
        if !self.store.submit(id, &lease_token, &prediction_id, deadline, &note).await? {
            return Err(StoreError::LeaseHeld(id).into());
        }
        Ok(Response::new(pb::SubmitJobResponse { status: JobStatus::Processing.to_pb() as i32 }))
    }

    async fn record_job_progress(
        &self,
        request: Request<pb::RecordJobProgressRequest>,
    ) -> Result<Response<pb::RecordJobProgressResponse>, Status> {
        let pb::RecordJobProgressRequest { job_id: raw, prediction_id, message } = request.into_inner();
        let id = job_id(&raw)?;
        let row = self.store.find_for_worker(id).await?;
        match &row.provider_ref {
            None if row.status == JobStatus::Processing => return Err(not_handed_over(id)),
            Some(ours) if *ours == prediction_id => {}
            _ => return Err(StoreError::LeaseHeld(id).into()),
        }
        self.store.heard(id, &message).await?;
        Ok(Response::new(pb::RecordJobProgressResponse {}))
    }
}

/// Whether the caller may settle a processing job: the delivery whose lease holds it, or, for
/// a job handed to a provider, a callback about that job's own prediction.
fn check_holder(row: &job::Model, id: JobId, lease_token: &str, prediction_id: &str) -> Result<(), Status> {
    let allowed = match (&row.provider_ref, prediction_id.is_empty()) {
        (Some(ours), false) => ours == prediction_id,
        // Handed to a provider: no delivery settles it any more.
        (Some(_), true) => false,
        // A callback faster than the worker's SubmitJob: the sender tries again shortly.
        (None, false) => return Err(not_handed_over(id)),
        (None, true) => lease_allows(row, lease_token, cutx_platform::clock::now_millis()),
    };
    if allowed { Ok(()) } else { Err(StoreError::LeaseHeld(id).into()) }
}

fn not_handed_over(id: JobId) -> Status {
    Status::unavailable(format!("job {id} has not been handed to its provider yet"))
}

impl Jobs {
    /// Records a job's stored files and completes it; completing a completed job changes
    /// nothing, and a job that ended otherwise meanwhile keeps its end.
    pub(crate) async fn complete_with(
        &self,
        id: JobId,
        seen: Option<JobStatus>,
        outputs: Vec<pb::StoredOutput>,
        note: &str,
    ) -> Result<JobStatus, Status> {
        let changes = Changes { outputs, ..Changes::default() };
        match self.store.transition_from(id, seen, JobStatus::Completed, note, changes).await {
            Ok(moved) => Ok(moved.to),
            Err(StoreError::Refused { .. }) => Ok(self.store.find_for_worker(id).await?.status),
            Err(e) => Err(e.into()),
        }
    }
}

/// The longest lease a delivery may ask for: an hour (a pipeline asks for half its queue's
/// visibility timeout, which `CUTX_QUEUE_VISIBILITY_SECS` bounds to two hours).
pub const MAX_LEASE_SECONDS: u32 = 3600;

/// A lease's length as asked, refused (not clamped) outside 1 s to an hour.
fn lease_length(seconds: u32) -> Result<u32, Status> {
    match seconds {
        1..=MAX_LEASE_SECONDS => Ok(seconds),
        _ => Err(cutx_platform::error::invalid_field("lease_seconds", "must be 1 to 3600")),
    }
}
