//! `POST /webhooks/replicate?job=<job id>`: Replicate's callbacks about a job's prediction.
//!
//! Order of work, each step before the next: the raw body's signature is verified (401 and no
//! state change if it fails); the webhook id is claimed (a duplicate answers 200 at once);
//! the body is parsed; the callback is acted on. A final status is final: `completed` ends the
//! job, and a `start` or `output` arriving after it only adds a line to the job's history.
//! Replicate wants an answer within a few seconds: a callback still being acted on (copying
//! large outputs) after `answer_within` is answered 202 and finished meanwhile; if that fails,
//! its claim is given back and the reconciler in jobs-svc finishes the job.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State as AxumState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use cutx_platform::fetch::GuardedClient;
use cutx_platform::grpc::MeshChannel;
use cutx_platform::ids::JobId;
use cutx_platform::media::MediaStore;
use cutx_platform::secret::Secret;
use cutx_proto::pb::{self, job_internal_service_client::JobInternalServiceClient};
use cutx_replicate::Prediction;
use cutx_replicate::outputs::{Verdict, copy_outputs};
use serde::Deserialize;
use tokio::sync::RwLock;

use crate::claims::{self, Claims};

/// The largest callback body taken: a prediction with its input and logs.
const MAX_BODY: usize = 4 * 1024 * 1024;

#[derive(Clone)]
pub struct State {
    pub claims: Claims,
    pub jobs: JobInternalServiceClient<MeshChannel>,
    pub media: Arc<dyn MediaStore>,
    pub http: GuardedClient,
    pub secret: Arc<SigningSecret>,
    pub answer_within: Duration,
}

pub fn routes(state: State) -> axum::Router {
    axum::Router::new()
        .route("/webhooks/replicate", post(receive))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// The key Replicate signs webhooks with: configured, or fetched from Replicate once and kept.
pub struct SigningSecret {
    replicate: Option<cutx_replicate::Replicate>,
    verifier: RwLock<Option<standardwebhooks::Webhook>>,
}

impl SigningSecret {
    pub fn new(replicate: Option<cutx_replicate::Replicate>, configured: Option<Secret>) -> Self {
        let verifier = configured.and_then(|s| match standardwebhooks::Webhook::new(s.expose()) {
            Ok(v) => Some(v),
            Err(_) => {
                tracing::error!("the configured Replicate webhook secret is not a whsec_ key; fetching it instead");
                None
            }
        });
        Self { replicate, verifier: RwLock::new(verifier) }
    }

    async fn verify(&self, body: &[u8], headers: &HeaderMap) -> Result<(), Refusal> {
        if self.verifier.read().await.is_none() {
            let replicate = self.replicate.as_ref().ok_or(Refusal::NoSecret)?;
            let secret = replicate.webhook_secret().await.map_err(|e| {
                tracing::warn!(error = %e, "fetching Replicate's webhook signing secret");
                Refusal::NoSecret
            })?;
            let verifier = standardwebhooks::Webhook::new(secret.expose()).map_err(|_| Refusal::NoSecret)?;
            *self.verifier.write().await = Some(verifier);
        }
        let guard = self.verifier.read().await;
        let verifier = guard.as_ref().ok_or(Refusal::NoSecret)?;
        verifier.verify(body, headers).map_err(|_| Refusal::Signature)
    }
}

/// Why a callback was not taken, as the sender is told.
#[derive(Debug, thiserror::Error)]
enum Refusal {
    #[error("the webhook signature is missing, stale or wrong")]
    Signature,
    #[error("webhooks cannot be verified yet")]
    NoSecret,
    #[error("{0}")]
    BadRequest(&'static str),
    #[error("try again later")]
    Busy,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        use crate::refusal::Kind;
        let kind = match self {
            Self::Signature => Kind::Unauthenticated,
            Self::NoSecret | Self::Busy => Kind::Unavailable,
            Self::BadRequest(_) => Kind::InvalidArgument,
        };
        crate::refusal::answer(kind, self.to_string())
    }
}

#[derive(Deserialize)]
struct Target {
    job: Option<String>,
}

async fn receive(
    AxumState(state): AxumState<State>,
    Query(target): Query<Target>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal> {
    state.secret.verify(&body, &headers).await?;
    let webhook_id = headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    if webhook_id.is_empty() || webhook_id.len() > claims::MAX_WEBHOOK_ID {
        return Err(Refusal::BadRequest("webhook-id must be 1 to 256 characters"));
    }
    let job_id: JobId = target
        .job
        .and_then(|j| j.parse().ok())
        .ok_or(Refusal::BadRequest("the job query parameter must be a job id"))?;
    let prediction: Prediction =
        serde_json::from_slice(&body).map_err(|_| Refusal::BadRequest("the body is not a prediction"))?;
    // Claimed per job: the job in the URL is not signed, so a genuine body replayed at another
    // job's URL must not use up the id its real delivery needs.
    let webhook_id = claims::claim_id(&job_id.to_string(), &webhook_id);
    match state.claims.claim("replicate", &webhook_id).await {
        Ok(claims::Claim::Taken) => {}
        Ok(claims::Claim::Done) => return Ok((StatusCode::OK, "duplicate").into_response()),
        // The first delivery may still fail: this one must come back rather than be dropped.
        Ok(claims::Claim::InFlight) => return Err(Refusal::Busy),
        Err(e) => {
            tracing::error!(error = %e, "claiming a webhook id");
            return Err(Refusal::Busy);
        }
    }
    let act = tokio::spawn({
        let state = state.clone();
        let webhook_id = webhook_id.clone();
        async move {
            let outcome = act(&state, job_id, &prediction).await;
            let settled = match &outcome {
                Ok(()) => state.claims.done(&webhook_id).await,
                Err(_) => state.claims.release(&webhook_id).await,
            };
            if let Err(e) = settled {
                tracing::error!(webhook = %webhook_id, error = %e, "recording a webhook");
            }
            outcome
        }
    });
    match tokio::time::timeout(state.answer_within, act).await {
        Ok(Ok(Ok(()))) => Ok((StatusCode::OK, "ok").into_response()),
        Ok(Ok(Err(Retry))) => Err(Refusal::Busy),
        // The task panicked before it could give its claim back.
        Ok(Err(_)) => {
            if let Err(e) = state.claims.release(&webhook_id).await {
                tracing::error!(webhook = %webhook_id, error = %e, "giving a claim back");
            }
            Err(Refusal::Busy)
        }
        // Still copying: answered now, finished meanwhile.
        Err(_) => Ok((StatusCode::ACCEPTED, "accepted").into_response()),
    }
}

/// Acting on a callback failed for a reason that may pass: the sender should try again.
#[derive(Debug, thiserror::Error)]
#[error("acting on the callback failed; the sender should try again")]
struct Retry;

/// Whether jobs-svc's refusal means the callback is not about this job's prediction (a stray
/// or superseded prediction: nothing to do), rather than a reason to try again.
fn not_ours(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::NotFound
        || cutx_platform::error::reason_of(status).as_deref() == Some(cutx_platform::error::REASON_LEASE_LOST)
}

fn settled<T>(job_id: JobId, call: &str, result: Result<T, tonic::Status>) -> Result<(), Retry> {
    match result {
        Ok(_) => Ok(()),
        Err(status) if not_ours(&status) => {
            tracing::info!(job = %job_id, call, "a callback about a prediction the job does not have; dropped");
            Ok(())
        }
        // The usual race: the callback came before the worker recorded the hand-over.
        Err(status) if status.code() == tonic::Code::Unavailable => {
            tracing::info!(job = %job_id, call, "jobs-svc cannot take the callback yet; the sender retries");
            Err(Retry)
        }
        Err(status) => {
            tracing::warn!(job = %job_id, call, code = ?status.code(), "jobs-svc refused a callback for now");
            Err(Retry)
        }
    }
}

async fn act(state: &State, job_id: JobId, prediction: &Prediction) -> Result<(), Retry> {
    let mut jobs = state.jobs.clone();
    match Verdict::of(prediction) {
        Verdict::Running(progress) => {
            let mut message = format!("replicate webhook: {}", prediction.status.as_str());
            if let Some(progress) = progress {
                message = format!("{message}: {progress}");
            }
            let request = pb::RecordJobProgressRequest {
                job_id: job_id.to_string(),
                prediction_id: prediction.id.clone(),
                message,
            };
            settled(job_id, "RecordJobProgress", jobs.record_job_progress(request).await)
        }
        Verdict::Failed(failed) => {
            tracing::info!(job = %job_id, detail = %failed.detail, "the provider failed the job");
            let request = pb::FailJobRequest {
                job_id: job_id.to_string(),
                error: format!("{}; credits refunded", failed.public),
                lease_token: String::new(),
                prediction_id: prediction.id.clone(),
            };
            settled(job_id, "FailJob", jobs.fail_job(request).await)
        }
        Verdict::Succeeded => {
            match copy_outputs(prediction, &job_id.to_string(), &state.http, state.media.as_ref()).await {
                Ok(outputs) => {
                    let request = pb::CompleteJobRequest {
                        job_id: job_id.to_string(),
                        outputs,
                        lease_token: String::new(),
                        prediction_id: prediction.id.clone(),
                    };
                    settled(job_id, "CompleteJob", jobs.complete_job(request).await)
                }
                Err(e) if e.is_permanent() => {
                    tracing::warn!(job = %job_id, error = %e, "a prediction's output cannot be copied");
                    let request = pb::FailJobRequest {
                        job_id: job_id.to_string(),
                        error: "the provider's output could not be copied; credits refunded".into(),
                        lease_token: String::new(),
                        prediction_id: prediction.id.clone(),
                    };
                    settled(job_id, "FailJob", jobs.fail_job(request).await)
                }
                Err(e) => {
                    tracing::warn!(job = %job_id, error = %e, "copying a prediction's outputs; the sender will retry");
                    Err(Retry)
                }
            }
        }
    }
}
