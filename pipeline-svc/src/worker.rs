//! The queue consumer. For each delivery: ask jobs-svc to lease the job to this delivery (the
//! database, not the message, decides whether there is work: a finished job's message, or a
//! duplicate of one another worker is running, is just acknowledged), run the provider while
//! extending both the queue's claim and the lease, store the files, complete the job, ack.
//!
//! A transient failure is retried with backoff until the last delivery; then the job is failed
//! (jobs-svc refunds it once) and the message dead-lettered with its error. A permanent failure
//! fails the job at once. The job is always failed before the message is settled, so a crash in
//! between leaves a redelivery that finds the job finished, never a job stuck in processing.

use std::sync::Arc;
use std::time::Duration;

use cutx_platform::grpc::MeshChannel;
use cutx_platform::ids::JobId;
use cutx_platform::media::MediaStore;
use cutx_platform::queue::{Delivery, JobQueue};
use cutx_proto::pb::{self, job_internal_service_client::JobInternalServiceClient};
use tokio::sync::watch;

use crate::provider::{Dispatched, Provider, ProviderError, ProviderJob, Submission};
use crate::sources::Sources;

#[derive(Clone)]
pub struct Worker {
    pub(crate) jobs: JobInternalServiceClient<MeshChannel>,
    pub(crate) queue: Arc<dyn JobQueue>,
    pub(crate) media: Arc<dyn MediaStore>,
    pub(crate) provider: Arc<dyn Provider>,
    pub(crate) sources: Sources,
    pub(crate) retry_base: Duration,
    pub(crate) heartbeat: Duration,
    /// Recorded in a job's history when this worker takes it.
    pub(crate) worker_id: String,
}

/// What jobs-svc said about running a delivery's job.
enum Start {
    /// This delivery holds the job now: run it.
    Run(pb::JobInput),
    /// The job has ended.
    Ended,
    /// Another delivery holds the job until about this long from now.
    Busy(Duration),
}

/// Whether jobs-svc refused a call because another delivery holds the job.
fn lease_lost(status: &tonic::Status) -> bool {
    cutx_platform::error::reason_of(status).as_deref() == Some(cutx_platform::error::REASON_LEASE_LOST)
}

/// Why a delivery failed, and whether another one could help: the job's owner reads its public
/// words (the job's error); the log and the dead-letter queue get its detail.
type Failure = ProviderError;

impl Worker {
    /// Takes and handles messages until `stop` turns true; the delivery in hand is finished first.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        while !*stop.borrow() {
            let received = tokio::select! {
                r = self.queue.receive(Duration::from_secs(1)) => r,
                _ = stop.changed() => break,
            };
            match received {
                Ok(Some(delivery)) => self.handle(delivery).await,
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "receiving from the queue");
                    tokio::time::sleep(self.retry_base).await;
                }
            }
        }
    }

    async fn handle(&self, delivery: Delivery) {
        // The message is a job's id; anything else can never be run.
        let Some(job_id) = std::str::from_utf8(&delivery.payload).ok().and_then(|p| p.parse::<JobId>().ok()) else {
            let payload = String::from_utf8_lossy(&delivery.payload).chars().take(80).collect::<String>();
            tracing::error!(payload = %payload, "a queued message that is not a job id goes to the dead letters");
            if let Err(e) = delivery.dead_letter("the message is not a job id").await {
                tracing::error!(error = %e, "settling a delivery");
            }
            return;
        };
        let lease = uuid::Uuid::new_v4().to_string();
        let outcome = match self.start(job_id, &lease).await {
            // Finished already: the job needs nothing from this message.
            Ok(Start::Ended) => Ok(()),
            // Another delivery holds it. Its own message comes back if its worker dies, so a
            // message with no deliveries left can go; any other waits for the lease to end.
            Ok(Start::Busy(_)) if delivery.exhausted => Ok(()),
            Ok(Start::Busy(wait)) => {
                let settled = delivery.retry("another delivery holds the job", wait).await;
                if let Err(e) = settled {
                    tracing::error!(job = %job_id, error = %e, "settling a delivery");
                }
                return;
            }
            Ok(Start::Run(_)) if delivery.exhausted => {
                Err(Failure::transient("the worker running it stopped without finishing")
                    .because(format!("delivery {} was the last", delivery.attempt)))
            }
            Ok(Start::Run(input)) => self.process(job_id, &lease, input, &delivery).await,
            Err(failure) => Err(failure),
        };
        let settled = match outcome {
            Ok(()) => delivery.ack().await,
            Err(failure) if failure.is_permanent() || delivery.is_last_attempt() => {
                tracing::warn!(job = %job_id, attempt = delivery.attempt, error = %failure.detail(), "job failed");
                match self.fail(job_id, &lease, &failure.to_string()).await {
                    Ok(()) => {}
                    // Another delivery took the job over: it settles the job, not this one.
                    Err(status) if lease_lost(&status) => {
                        if let Err(e) = delivery.ack().await {
                            tracing::error!(job = %job_id, error = %e, "settling a delivery");
                        }
                        return;
                    }
                    // Cannot record the failure now: let the message come back and try again.
                    Err(status) => {
                        tracing::error!(job = %job_id, error = %status, "failing job");
                        return;
                    }
                }
                if failure.is_permanent() {
                    delivery.ack().await
                } else {
                    delivery.dead_letter(&failure.detail()).await
                }
            }
            Err(failure) => {
                // Hand the job back with the message, so the next delivery can lease it.
                let release = pb::ReleaseJobLeaseRequest { job_id: job_id.to_string(), lease_token: lease.clone() };
                if let Err(e) = self.jobs.clone().release_job_lease(release).await {
                    // The lease then runs out on its own, before the message comes back.
                    tracing::warn!(job = %job_id, error = %e, "releasing a lease");
                }
                let delay = self.retry_base * 2u32.saturating_pow(delivery.attempt.saturating_sub(1));
                tracing::info!(job = %job_id, attempt = delivery.attempt, error = %failure.detail(), "retrying job");
                delivery.retry(&failure.detail(), delay).await
            }
        };
        if let Err(e) = settled {
            tracing::error!(job = %job_id, error = %e, "settling a delivery");
        }
    }

    /// Half the queue's visibility timeout: renewed every heartbeat (a third of it), a lease
    /// outlives no live worker, and runs out well before the queue delivers a dead worker's
    /// message again, so that delivery finds the job free.
    fn lease_seconds(&self) -> u32 {
        (self.heartbeat * 3 / 2).as_secs().max(1) as u32
    }

    /// Leases the job to this delivery.
    async fn start(&self, job_id: JobId, lease: &str) -> Result<Start, Failure> {
        let request = pb::StartJobRequest {
            job_id: job_id.to_string(),
            worker: self.worker_id.clone(),
            lease_token: lease.to_string(),
            lease_seconds: self.lease_seconds(),
        };
        let started = match self.jobs.clone().start_job(request).await {
            Ok(r) => r.into_inner(),
            Err(s) if s.code() == tonic::Code::NotFound => {
                return Err(Failure::permanent("the job does not exist"));
            }
            Err(s) => return Err(Failure::transient("the job could not be started").because(s)),
        };
        if started.busy {
            return Ok(Start::Busy(Duration::from_millis(u64::from(started.retry_after_ms))));
        }
        if !started.proceed {
            return Ok(Start::Ended);
        }
        let input = started.input.ok_or_else(|| Failure::permanent("the job has no input"))?;
        Ok(Start::Run(input))
    }

    /// Keeps the queue's claim and the job's lease alive while a job runs.
    async fn heartbeat(&self, job_id: JobId, lease: &str, delivery: &Delivery) {
        if let Err(e) = delivery.in_progress().await {
            tracing::warn!(job = %job_id, error = %e, "extending a claim");
        }
        let request = pb::RenewJobLeaseRequest {
            job_id: job_id.to_string(),
            lease_token: lease.to_string(),
            lease_seconds: self.lease_seconds(),
        };
        match self.jobs.clone().renew_job_lease(request).await {
            Ok(r) if !r.get_ref().held => tracing::warn!(job = %job_id, "lost the job's lease to another delivery"),
            Ok(_) => {}
            Err(e) => tracing::warn!(job = %job_id, error = %e, "renewing a lease"),
        }
    }

    /// Records that the job is the provider's now; the message is done with. jobs-svc is asked a
    /// few times before giving up, because giving up means withdrawing a prediction that was
    /// made and trying the whole delivery again.
    async fn hand_over(&self, job_id: JobId, lease: &str, submission: Submission) -> Result<(), Failure> {
        let request = pb::SubmitJobRequest {
            job_id: job_id.to_string(),
            lease_token: lease.to_string(),
            provider: submission.provider.to_string(),
            prediction_id: submission.prediction_id.clone(),
            model: submission.model.clone(),
        };
        let mut last = None;
        for attempt in 0..3u32 {
            if attempt > 0 {
                tokio::time::sleep(self.retry_base * 2u32.pow(attempt)).await;
            }
            match self.jobs.clone().submit_job(request.clone()).await {
                Ok(answer) if answer.get_ref().status() == pb::JobStatus::Processing => return Ok(()),
                // Canceled (or ended) meanwhile: nobody wants the prediction.
                Ok(_) => {
                    self.provider.withdraw(&submission).await;
                    return Ok(());
                }
                Err(status) if lease_lost(&status) => {
                    // Another delivery took the job over; it runs its own prediction.
                    self.provider.withdraw(&submission).await;
                    return Ok(());
                }
                Err(status) => last = Some(status),
            }
        }
        self.provider.withdraw(&submission).await;
        let status = last.map(|s| s.to_string()).unwrap_or_default();
        Err(Failure::transient("the job could not be handed to the provider").because(status))
    }

    async fn fail(&self, job_id: JobId, lease: &str, error: &str) -> Result<(), tonic::Status> {
        let request = pb::FailJobRequest {
            job_id: job_id.to_string(),
            error: error.to_string(),
            lease_token: lease.to_string(),
            prediction_id: String::new(),
        };
        self.jobs.clone().fail_job(request).await.map(|_| ())
    }

    async fn process(
        &self,
        job_id: JobId,
        lease: &str,
        input: pb::JobInput,
        delivery: &Delivery,
    ) -> Result<(), Failure> {
        let job = ProviderJob { job_id, input, sources: self.sources.clone() };
        let dispatched = {
            let run = self.provider.dispatch(&job);
            tokio::pin!(run);
            let mut beat = tokio::time::interval(self.heartbeat);
            beat.tick().await;
            loop {
                tokio::select! {
                    r = &mut run => break r?,
                    _ = beat.tick() => self.heartbeat(job_id, lease, delivery).await,
                }
            }
        };
        let produced = match dispatched {
            Dispatched::Made(produced) => produced,
            Dispatched::Submitted(submission) => return self.hand_over(job_id, lease, submission).await,
        };
        let mut outputs = produced.stored;
        for (i, file) in produced.files.into_iter().enumerate() {
            let key = format!("jobs/{job_id}/{i}.{}", file.extension);
            let size = file.bytes.len() as u64;
            self.media
                .put(&key, file.bytes, file.content_type)
                .await
                .map_err(|e| Failure::transient("the output could not be stored").because(e))?;
            outputs.push(pb::StoredOutput {
                media_key: key,
                content_type: file.content_type.to_string(),
                width: file.width,
                height: file.height,
                size_bytes: size,
            });
        }
        let request = pb::CompleteJobRequest {
            job_id: job_id.to_string(),
            outputs,
            lease_token: lease.to_string(),
            prediction_id: String::new(),
        };
        self.jobs
            .clone()
            .complete_job(request)
            .await
            // Lost to another delivery (this worker stalled past its lease): that one completes it.
            .or_else(
                |s| if lease_lost(&s) { Ok(tonic::Response::new(pb::CompleteJobResponse::default())) } else { Err(s) },
            )
            .map_err(|s| Failure::transient("the job could not be completed").because(s))?;
        Ok(())
    }
}
