//! `JobService`: create (per kind), read, list, cancel and watch the caller's jobs.
//!
//! Creating a job: validate ([`NewJob`]), store it `pending` (or find the caller's job with the
//! same idempotency key), debit `debit:<job>` through billing-svc, then either run it at once
//! through pipeline-svc (copy) or move it to `queued` and publish it (static ad). Too few
//! credits removes the unpaid job: no job, no charge. Any later failure fails the job and
//! refunds `refund:<job>` once.

use std::pin::Pin;
use std::time::Duration;

use cutx_platform::error::{REASON_INSUFFICIENT_CREDITS, from_downstream, internal, invalid_field};

/// The `ErrorInfo` reason of a kind refused because no provider for it is configured.
pub const REASON_PROVIDER_NOT_CONFIGURED: &str = "PROVIDER_NOT_CONFIGURED";
use cutx_platform::credits::Credits;
use cutx_platform::ids::JobId;
use cutx_platform::queue::OutgoingMessage;
use cutx_proto::pb::{self, job_service_server::JobService};
use futures::Stream;
use prost::Message;
use sea_orm::ActiveEnum;
use tonic::{Request, Response, Status};

use crate::Jobs;
use crate::entity::job;
use crate::input::NewJob;
use crate::kind::Kind;
use crate::state::Status as JobStatus;
use crate::store::{Changes, JobFilter, StoreError};
use cutx_platform::paging::{Page, PageQuery};

/// How often a watcher looks at its job by itself, besides being woken by a move.
const WATCH_LOOKS_EVERY: Duration = Duration::from_millis(250);

/// Jobs and projects listed per page when the caller does not say.
pub(crate) const DEFAULT_PAGE: u64 = 20;

pub(crate) fn parse_job_id(raw: &str) -> Result<JobId, Status> {
    raw.parse().map_err(|_| invalid_field("id", "must be a job id"))
}

/// The copy a synchronous job produced, as stored with it.
fn variants_of(row: &job::Model) -> Result<Vec<pb::CopyVariant>, Status> {
    match &row.result {
        Some(bytes) => {
            Ok(pb::RunSyncJobResponse::decode(bytes.as_slice()).map_err(|e| internal("stored result", e))?.variants)
        }
        None => Ok(Vec::new()),
    }
}

/// A count of credits another service answered; a negative one is its fault, not the caller's.
fn credits_from(what: &str, n: i64) -> Result<Credits, Status> {
    Credits::new(n).map_err(|e| internal(what, e))
}

/// What a stored job cost; a negative cost (the schema's check forbids it) names the row.
fn cost_of(row: &job::Model) -> Result<Credits, Status> {
    Credits::new(row.cost).map_err(|e| StoreError::Corrupt { row: row.id.clone(), what: format!("cost: {e}") }.into())
}

/// What a create call answers, whatever the kind.
struct Created {
    job_id: String,
    status: pb::JobStatus,
    credits_used: Credits,
    credits_remaining: Credits,
    variants: Vec<pb::CopyVariant>,
}

impl Jobs {
    async fn create(&self, request: Request<NewJob>) -> Result<Created, Status> {
        let caller = self.mesh.caller(&request)?;
        let mut new = request.into_inner();
        if let Some(why) = self.unavailable.get(&new.kind) {
            return Err(cutx_platform::error::with_reason(
                tonic::Code::FailedPrecondition,
                why.clone(),
                REASON_PROVIDER_NOT_CONFIGURED,
            ));
        }
        self.resolve_source(caller, &mut new).await?;
        if let Some(project) = new.project_id
            && self.store.project(caller, project).await?.is_none()
        {
            return Err(Status::not_found(format!("project {project} not found")));
        }
        let cost = self.prices.of(new.kind);
        let (row, created) = self.store.insert_job(caller, &new, cost).await?;
        let id: JobId = row.id.parse().map_err(|e| internal("stored job id", e))?;
        // A replay (same idempotency key) is answered from the stored job and pays nothing.
        let remaining = if created && !cost.is_zero() {
            match self.debit(caller.user_id().to_string(), id, cost).await {
                Ok(balance) => balance,
                Err(status)
                    if cutx_platform::error::reason_of(&status).as_deref() == Some(REASON_INSUFFICIENT_CREDITS) =>
                {
                    self.store.delete_unpaid(caller, id).await?;
                    return Err(status);
                }
                Err(status) => {
                    // The debit may still land later: failing refunds it, or closes its key.
                    let _ = self.fail(id, "charging credits failed").await;
                    return Err(status);
                }
            }
        } else {
            self.balance(caller).await?
        };
        let ran = if created {
            match self.start(id, &new).await {
                Ok(ran) => ran,
                Err(status) => {
                    // Failed inline, or paid for but not started (canceled meanwhile, the
                    // database down): end it and give the credits back; both are idempotent.
                    // The code stays: a refusal is not worth retrying, an outage is.
                    let _ = self.fail(id, status.message()).await;
                    let message = format!("the job failed and its credits were refunded: {}", status.message());
                    return Err(Status::new(status.code(), message));
                }
            }
        } else {
            None
        };
        let credits_used = cost_of(&row)?;
        // A synchronous job this call ran is completed with what it made: no need to read it back.
        if let Some(result) = ran {
            let status = JobStatus::Completed.to_pb();
            let variants = result.variants;
            return Ok(Created { job_id: row.id, status, credits_used, credits_remaining: remaining, variants });
        }
        let row = self.store.find(caller, id).await?;
        let variants = variants_of(&row)?;
        // A queued job a worker has already taken (or finished) was still queued when this call
        // queued it: the answer says what the call did, as the reference's does. A replay, or a
        // job that failed or was canceled meanwhile, answers what is stored.
        let status = match row.status {
            JobStatus::Processing | JobStatus::Completed if created && !new.kind.is_sync() => JobStatus::Queued,
            stored => stored,
        };
        Ok(Created {
            job_id: row.id.clone(),
            status: status.to_pb(),
            credits_used,
            credits_remaining: remaining,
            variants,
        })
    }

    /// Points a job that starts from an earlier job's output at that stored file: it must be
    /// one of the caller's completed jobs, with a file of a type this kind can start from.
    async fn resolve_source(&self, caller: cutx_platform::mesh::Caller, new: &mut NewJob) -> Result<(), Status> {
        let kind = new.kind;
        let Some((field, media)) = crate::input::media_ref_mut(&mut new.input) else { return Ok(()) };
        if media.job_id.is_empty() {
            return Ok(());
        }
        let id: JobId = media.job_id.parse().map_err(|_| invalid_field(field, "must be a job id"))?;
        // Another user's job is as unknown as one that never was.
        let output = match self.store.first_output(caller, id).await {
            Ok(found) => found,
            Err(StoreError::JobNotFound(_)) => return Err(Status::not_found(format!("{field}: job {id} not found"))),
            Err(e) => return Err(e.into()),
        };
        let Some(output) = output else {
            return Err(invalid_field(field, "must be one of your completed jobs with an output"));
        };
        let fits = output.content_type.starts_with("image/")
            || (kind == Kind::Reframe && output.content_type.starts_with("video/"));
        if !fits {
            let wanted = if kind == Kind::Reframe { "an image or a video" } else { "an image" };
            return Err(invalid_field(field, format!("must be a job whose output is {wanted}")));
        }
        media.media_key = output.media_key;
        media.content_type = output.content_type;
        Ok(())
    }

    /// The caller's balance, asked of billing-svc on the caller's behalf.
    async fn balance(&self, caller: cutx_platform::mesh::Caller) -> Result<Credits, Status> {
        let mut request = Request::new(pb::GetBalanceRequest {});
        self.mesh.attach(&mut request, cutx_platform::mesh::Peer::Jobs, Some(caller.user_id()));
        let answer = self.billing_public.clone().get_balance(request).await;
        credits_from("billing's balance", answer.map_err(|s| from_downstream("billing", s))?.into_inner().balance)
    }

    async fn debit(&self, user_id: String, id: JobId, cost: Credits) -> Result<Credits, Status> {
        let response = self
            .billing
            .clone()
            .debit(pb::DebitRequest {
                user_id,
                amount: cost.get(),
                idempotency_key: format!("debit:{id}"),
                reference: id.to_string(),
            })
            .await
            .map_err(|s| from_downstream("billing", s))?;
        credits_from("billing's balance", response.into_inner().balance)
    }

    /// Runs a synchronous kind now (answering what it made), or queues an asynchronous one.
    async fn start(&self, id: JobId, new: &NewJob) -> Result<Option<pb::RunSyncJobResponse>, Status> {
        if new.kind.is_sync() {
            let pending = Some(JobStatus::Pending);
            self.store
                .transition_from(id, pending, JobStatus::Processing, "running inline", Changes::default())
                .await?;
            let request = pb::RunSyncJobRequest { job_id: id.to_string(), input: Some(new.input.clone()) };
            match self.pipeline.clone().run_sync_job(request).await {
                Ok(result) => {
                    let result = result.into_inner();
                    let changes = Changes { result: Some(result.clone()), ..Changes::default() };
                    let processing = Some(JobStatus::Processing);
                    self.store
                        .transition_from(id, processing, JobStatus::Completed, "completed inline", changes)
                        .await?;
                    Ok(Some(result))
                }
                // The caller (create) fails and refunds the job.
                Err(status) => Err(from_downstream("pipeline", status)),
            }
        } else {
            let pending = Some(JobStatus::Pending);
            self.store.transition_from(id, pending, JobStatus::Queued, "queued", Changes::default()).await?;
            // If this publish is lost, the relay publishes the job again from the database.
            if let Err(e) = self.publish(id, new.kind).await {
                tracing::warn!(job = %id, error = %e, "publish failed; the relay will retry it");
            }
            Ok(None)
        }
    }

    pub(crate) async fn publish(&self, id: JobId, kind: Kind) -> Result<(), cutx_platform::queue::QueueError> {
        let message =
            OutgoingMessage { id: id.to_string(), topic: kind.topic(), payload: id.to_string().into_bytes().into() };
        self.queue.publish(message).await
    }

    /// Fails a job (if it may still fail) and refunds it once.
    pub(crate) async fn fail(&self, id: JobId, error: &str) -> Result<JobStatus, Status> {
        self.settle_unfinished(id, JobStatus::Failed, error, Changes::default()).await
    }

    /// Ends a job that did not complete (`failed`, or `expired` when no worker finished it) and
    /// refunds it once. Answers with the job's final status, or an error while the job has not
    /// ended (the caller tries again later; a refund billing-svc did not confirm is asked for
    /// again by the sweeper).
    pub(crate) async fn settle_unfinished(
        &self,
        id: JobId,
        to: JobStatus,
        error: &str,
        guard: Changes,
    ) -> Result<JobStatus, Status> {
        let changes = Changes { error: Some(error.to_string()), ..guard };
        let status = match self.store.transition(id, to, error, changes).await {
            Ok(moved) => moved.to,
            // Ended some other way meanwhile (completed, canceled): decide from where it is.
            Err(StoreError::Refused { .. }) => self.store.find_for_worker(id).await?.status,
            Err(e) => return Err(e.into()),
        };
        if !status.is_terminal() {
            return Err(Status::unavailable(format!("job {id} is still {}", status.to_value())));
        }
        if matches!(status, JobStatus::Failed | JobStatus::Canceled | JobStatus::Expired) {
            self.refund(id).await;
        }
        Ok(status)
    }

    /// Refunds a job's debit (idempotent by `refund:<job>`) and records that it was confirmed;
    /// an unconfirmed refund is asked for again by the sweeper.
    pub(crate) async fn refund(&self, id: JobId) {
        let row = match self.store.find_for_worker(id).await {
            Ok(row) => row,
            // Unconfirmed, so the sweeper asks again later.
            Err(e) => return tracing::warn!(job = %id, error = %e, "reading a job to refund"),
        };
        let request = pb::RefundRequest {
            user_id: row.user_id,
            debit_idempotency_key: format!("debit:{id}"),
            idempotency_key: format!("refund:{id}"),
            reference: id.to_string(),
        };
        match self.billing.clone().refund(request).await {
            Ok(_) => {
                if let Err(e) = self.store.mark_refunded(id).await {
                    tracing::warn!(job = %id, error = %e, "recording a refund");
                }
            }
            Err(e) => tracing::warn!(job = %id, error = %e, "refund failed; the sweeper will ask again"),
        }
    }

    pub(crate) async fn job_pb(&self, row: job::Model) -> Result<pb::Job, Status> {
        let mut jobs = self.jobs_pb(vec![row]).await?;
        Ok(jobs.pop().expect("one job in, one job out"))
    }

    /// Jobs as their owner sees them, with signed URLs for the outputs of completed ones; the
    /// outputs of a whole page come from one query.
    pub(crate) async fn jobs_pb(&self, rows: Vec<job::Model>) -> Result<Vec<pb::Job>, Status> {
        let completed: Vec<&str> =
            rows.iter().filter(|r| r.status == JobStatus::Completed).map(|r| r.id.as_str()).collect();
        let mut outputs = self.store.outputs_of(&completed).await?;
        let mut jobs = Vec::with_capacity(rows.len());
        for row in rows {
            let status = row.status;
            let kind = row.kind.to_pb();
            let mut files = Vec::new();
            for o in outputs.remove(&row.id).unwrap_or_default() {
                let signed = self
                    .media
                    .signed_url(&o.media_key, self.url_ttl)
                    .await
                    .map_err(|e| internal("signing a media url", e))?;
                files.push(pb::JobOutput {
                    url: signed.url,
                    content_type: o.content_type,
                    width: o.width as u32,
                    height: o.height as u32,
                    size_bytes: o.size_bytes as u64,
                    url_expires_at: Some(cutx_platform::clock::to_timestamp(signed.expires_at_millis)),
                });
            }
            jobs.push(pb::Job {
                variants: variants_of(&row)?,
                credits_used: cost_of(&row)?.get(),
                id: row.id,
                kind: kind as i32,
                status: status.to_pb() as i32,
                project_id: row.project_id.unwrap_or_default(),
                product_id: row.product_id.unwrap_or_default(),
                outputs: files,
                error: row.error.unwrap_or_default(),
                created_at: Some(cutx_platform::clock::to_timestamp(row.created_at)),
                updated_at: Some(cutx_platform::clock::to_timestamp(row.updated_at)),
                idempotency_key: row.idempotency_key.unwrap_or_default(),
                prediction_id: row.provider_ref.unwrap_or_default(),
            });
        }
        Ok(jobs)
    }
}

/// Turns a wire request into its domain type, keeping the metadata (the mesh token).
fn parse<T, U: TryFrom<T, Error = Status>>(request: Request<T>) -> Result<Request<U>, Status> {
    let (metadata, extensions, message) = request.into_parts();
    Ok(Request::from_parts(metadata, extensions, U::try_from(message)?))
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchJobResponse, Status>> + Send>>;

#[tonic::async_trait]
impl JobService for Jobs {
    async fn generate_copy(
        &self,
        request: Request<pb::GenerateCopyRequest>,
    ) -> Result<Response<pb::GenerateCopyResponse>, Status> {
        self.mesh.caller(&request)?;
        let request = parse(request)?;
        let c = self.create(request).await?;
        Ok(Response::new(pb::GenerateCopyResponse {
            job_id: c.job_id,
            status: c.status as i32,
            credits_used: c.credits_used.get(),
            credits_remaining: c.credits_remaining.get(),
            variants: c.variants,
        }))
    }

    async fn generate_static_ad(
        &self,
        request: Request<pb::GenerateStaticAdRequest>,
    ) -> Result<Response<pb::GenerateStaticAdResponse>, Status> {
        self.mesh.caller(&request)?;
        let request = parse(request)?;
        let c = self.create(request).await?;
        Ok(Response::new(pb::GenerateStaticAdResponse {
            job_id: c.job_id,
            status: c.status as i32,
            credits_used: c.credits_used.get(),
            credits_remaining: c.credits_remaining.get(),
        }))
    }

    async fn generate_voiceover(
        &self,
        request: Request<pb::GenerateVoiceoverRequest>,
    ) -> Result<Response<pb::GenerateVoiceoverResponse>, Status> {
        self.mesh.caller(&request)?;
        let c = self.create(parse(request)?).await?;
        Ok(Response::new(pb::GenerateVoiceoverResponse {
            job_id: c.job_id,
            status: c.status as i32,
            credits_used: c.credits_used.get(),
            credits_remaining: c.credits_remaining.get(),
        }))
    }

    async fn generate_video(
        &self,
        request: Request<pb::GenerateVideoRequest>,
    ) -> Result<Response<pb::GenerateVideoResponse>, Status> {
        self.mesh.caller(&request)?;
        let c = self.create(parse(request)?).await?;
        Ok(Response::new(pb::GenerateVideoResponse {
            job_id: c.job_id,
            status: c.status as i32,
            credits_used: c.credits_used.get(),
            credits_remaining: c.credits_remaining.get(),
        }))
    }

    async fn generate_image_to_video(
        &self,
        request: Request<pb::GenerateImageToVideoRequest>,
    ) -> Result<Response<pb::GenerateImageToVideoResponse>, Status> {
        self.mesh.caller(&request)?;
        let c = self.create(parse(request)?).await?;
        Ok(Response::new(pb::GenerateImageToVideoResponse {
            job_id: c.job_id,
            status: c.status as i32,
            credits_used: c.credits_used.get(),
            credits_remaining: c.credits_remaining.get(),
        }))
    }

    async fn generate_reframe(
        &self,
        request: Request<pb::GenerateReframeRequest>,
    ) -> Result<Response<pb::GenerateReframeResponse>, Status> {
        self.mesh.caller(&request)?;
        let c = self.create(parse(request)?).await?;
        Ok(Response::new(pb::GenerateReframeResponse {
            job_id: c.job_id,
            status: c.status as i32,
            credits_used: c.credits_used.get(),
            credits_remaining: c.credits_remaining.get(),
        }))
    }

    async fn get_job(&self, request: Request<pb::GetJobRequest>) -> Result<Response<pb::GetJobResponse>, Status> {
        let caller = self.mesh.caller(&request)?;
        let id = parse_job_id(&request.get_ref().id)?;
        let row = self.store.find(caller, id).await?;
        Ok(Response::new(pb::GetJobResponse { job: Some(self.job_pb(row).await?) }))
    }

    async fn list_jobs(&self, request: Request<pb::ListJobsRequest>) -> Result<Response<pb::ListJobsResponse>, Status> {
        let caller = self.mesh.caller(&request)?;
        let pb::ListJobsRequest { page_size, page_token, kind, status, limit, offset } = request.into_inner();
        let page = Page::parse(PageQuery { page_size, page_token, limit, offset }, DEFAULT_PAGE)?;
        let kind = match pb::JobKind::try_from(kind) {
            Ok(pb::JobKind::Unspecified) => None,
            Ok(k) => Kind::from_pb(k),
            Err(_) => return Err(invalid_field("kind", "must be a job kind")),
        };
        let status = match pb::JobStatus::try_from(status) {
            Ok(pb::JobStatus::Unspecified) => None,
            Ok(s) => JobStatus::from_pb(s),
            Err(_) => return Err(invalid_field("status", "must be a job status")),
        };
        let filter = JobFilter { kind, status, before: page.before.clone(), limit: page.limit, offset: page.offset };
        let rows = self.store.list(caller, filter).await?;
        let next_page_token = page.next_token(rows.iter().map(|r| r.id.as_str()));
        Ok(Response::new(pb::ListJobsResponse { jobs: self.jobs_pb(rows).await?, next_page_token }))
    }

    async fn cancel_job(
        &self,
        request: Request<pb::CancelJobRequest>,
    ) -> Result<Response<pb::CancelJobResponse>, Status> {
        let caller = self.mesh.caller(&request)?;
        let id = parse_job_id(&request.get_ref().id)?;
        let found = self.store.find(caller, id).await?;
        // Canceling a canceled job again changes nothing and says so: a retried cancel succeeds.
        if found.status == JobStatus::Canceled {
            return Ok(Response::new(pb::CancelJobResponse { job: Some(self.job_pb(found).await?) }));
        }
        self.store.transition(id, JobStatus::Canceled, "canceled by its owner", Changes::default()).await?;
        self.refund(id).await;
        let row = self.store.find(caller, id).await?;
        if let Some(prediction) = &row.provider_ref {
            self.cancel_prediction(id, prediction).await;
        }
        Ok(Response::new(pb::CancelJobResponse { job: Some(self.job_pb(row).await?) }))
    }

    type WatchJobStream = WatchStream;

    async fn watch_job(&self, request: Request<pb::WatchJobRequest>) -> Result<Response<Self::WatchJobStream>, Status> {
        let caller = self.mesh.caller(&request)?;
        let id = parse_job_id(&request.get_ref().id)?;
        // Listening before the first read, so no move between the two goes unheard.
        let wakes = self.store.watch(id);
        let mut moved = Box::pin(wakes.clone().notified_owned());
        moved.as_mut().enable();
        let first = self.store.find(caller, id).await?;
        let jobs = self.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        cutx_platform::request_id::spawn(async move {
            let mut row = first;
            let mut last_sent: Option<(JobStatus, i64)> = None;
            loop {
                let key = (row.status, row.updated_at);
                if last_sent.as_ref() != Some(&key) {
                    let job = jobs.job_pb(row.clone()).await;
                    let done = matches!(&job, Ok(j) if JobStatus::from_pb(j.status()).is_some_and(|s| s.is_terminal()));
                    if tx.send(job.map(|job| pb::WatchJobResponse { job: Some(job) })).await.is_err() || done {
                        return;
                    }
                    last_sent = Some(key);
                }
                // Woken by a move this process made, or looking again by itself for a move
                // another jobs-svc process made; a watcher that went away ends the loop.
                tokio::select! {
                    _ = &mut moved => {}
                    _ = tokio::time::sleep(WATCH_LOOKS_EVERY) => {}
                    _ = tx.closed() => return,
                }
                moved = Box::pin(wakes.clone().notified_owned());
                moved.as_mut().enable();
                row = match jobs.store.find(caller, id).await {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = tx.send(Err(Status::from(e))).await;
                        return;
                    }
                };
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }
}
