//! The reconciler: a job handed to a provider ends even when the provider's callback never
//! comes. A submission nobody has heard of for a while is asked about (`GET
//! /predictions/{id}`) and finished from the answer, exactly as its webhook would have
//! finished it; one past its deadline is canceled at the provider and expires, refunded once.
//! Canceling a job cancels its prediction too.

use std::time::Duration;

use cutx_platform::clock::now_millis;
use cutx_platform::fetch::GuardedClient;
use cutx_platform::ids::JobId;
use cutx_replicate::outputs::{Verdict, copy_outputs};
use cutx_replicate::{Prediction, Replicate};
use tonic::Status;

use crate::Jobs;
use crate::entity::job;
use crate::state::Status as JobStatus;
use crate::store::{Changes, StoreError};

/// The remote provider jobs-svc asks about submissions and cancels them at.
#[derive(Clone)]
pub struct RemoteProvider {
    pub replicate: Replicate,
    /// Downloads a prediction's outputs (the one guarded client).
    pub http: GuardedClient,
}

/// How long a handed-over job may go unheard, and how long it may run at all.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// Ask the provider about a submission not heard of for this long.
    pub quiet_after: Duration,
    /// A submission still unfinished this long after it was handed over expires.
    pub run_for: Duration,
}

impl Default for Deadlines {
    fn default() -> Self {
        Self { quiet_after: Duration::from_secs(120), run_for: Duration::from_secs(30 * 60) }
    }
}

const EXPIRED: &str = "the provider did not finish in time; credits refunded";

impl Jobs {
    /// Asks about every quiet submission once; answers how many ended.
    pub async fn reconcile_once(&self) -> Result<usize, StoreError> {
        let before = now_millis() - self.deadlines.quiet_after.as_millis() as i64;
        let mut ended = 0;
        for row in self.store.quiet_submissions(before, 50).await? {
            let Some(id) = crate::store::id_or_log(&row) else { continue };
            match self.reconcile(id, &row).await {
                Ok(status) if status.is_terminal() => ended += 1,
                Ok(_) => {}
                Err(e) => tracing::warn!(job = %id, error = %e, "reconciling a job"),
            }
        }
        Ok(ended)
    }

    async fn reconcile(&self, id: JobId, row: &job::Model) -> Result<JobStatus, Status> {
        let prediction = row.provider_ref.clone().unwrap_or_default();
        let overdue = row.provider_deadline.is_some_and(|d| d < now_millis());
        let Some(remote) = &self.remote else {
            // Nobody to ask: only the deadline can end it.
            return if overdue { self.expire(id).await } else { Ok(JobStatus::Processing) };
        };
        let answer = match remote.replicate.get(&prediction).await {
            Ok(answer) => answer,
            Err(e) if overdue => {
                tracing::warn!(job = %id, error = %e, "asking about an overdue prediction");
                self.cancel_prediction(id, &prediction).await;
                return self.expire(id).await;
            }
            Err(e) => {
                tracing::warn!(job = %id, error = %e, "asking about a prediction");
                // Counted as heard, so one unanswerable job does not keep others from their turn.
                self.store.heard(id, &format!("reconciler: GET prediction {prediction} failed")).await?;
                return Ok(JobStatus::Processing);
            }
        };
        self.store.heard(id, &format!("reconciler: GET prediction {prediction}: {}", answer.status.as_str())).await?;
        match Verdict::of(&answer) {
            Verdict::Running(_) if overdue => {
                self.cancel_prediction(id, &prediction).await;
                self.expire(id).await
            }
            Verdict::Running(_) => Ok(JobStatus::Processing),
            Verdict::Failed(failed) => {
                tracing::info!(job = %id, detail = %failed.detail, "the provider failed the job");
                self.fail(id, failed.public).await
            }
            Verdict::Succeeded => self.finish_from(id, remote, &answer, overdue).await,
        }
    }

    /// Copies a succeeded prediction's outputs and completes the job; an output that can never
    /// be copied fails it (refunded), one that may copy later leaves it for the next round.
    /// Past the job's deadline a copy that keeps failing gives up: the job expires, refunded.
    async fn finish_from(
        &self,
        id: JobId,
        remote: &RemoteProvider,
        answer: &Prediction,
        overdue: bool,
    ) -> Result<JobStatus, Status> {
        match copy_outputs(answer, &id.to_string(), &remote.http, self.media.as_ref()).await {
            Ok(outputs) => {
                let note = format!("completed from prediction {} (reconciler)", answer.id);
                self.complete_with(id, None, outputs, &note).await
            }
            Err(e) if e.is_permanent() => {
                tracing::warn!(job = %id, error = %e, "copying a prediction's outputs");
                self.fail(id, "the provider's output could not be copied; credits refunded").await
            }
            Err(e) if overdue => {
                tracing::warn!(job = %id, error = %e, "copying an overdue prediction's outputs; giving up");
                self.expire(id).await
            }
            Err(e) => {
                tracing::warn!(job = %id, error = %e, "copying a prediction's outputs; trying again later");
                Ok(JobStatus::Processing)
            }
        }
    }

    async fn expire(&self, id: JobId) -> Result<JobStatus, Status> {
        self.settle_unfinished(id, JobStatus::Expired, EXPIRED, Changes::default()).await
    }

    /// Cancels a job's prediction at the provider, best effort (it may have ended already).
    pub(crate) async fn cancel_prediction(&self, id: JobId, prediction: &str) {
        let Some(remote) = &self.remote else { return };
        let note = match remote.replicate.cancel(prediction).await {
            Ok(p) => format!("canceled prediction {prediction} at the provider: {}", p.status.as_str()),
            Err(e) => {
                tracing::warn!(job = %id, error = %e, "canceling a prediction");
                format!("canceling prediction {prediction} at the provider failed")
            }
        };
        if let Err(e) = self.store.heard(id, &note).await {
            tracing::warn!(job = %id, error = %e, "recording a cancel");
        }
    }
}
