//! webhook-svc: the outside world's callbacks, turned into gRPC calls on jobs-svc (Replicate)
//! and billing-svc (Stripe, see [`stripe`]).
//!
//! `POST /webhooks/replicate?job=<id>`: the Standard Webhooks signature is checked on the raw
//! body before anything is parsed (several signatures, 5 minutes' tolerance, constant-time
//! compare); a bad one is 401 and changes nothing. Each `webhook-id` is acted on once: a
//! duplicate, concurrent or not, answers 200 and does nothing. A final status completes the job
//! (its outputs copied first) or fails it (refunded once); progress is recorded in the job's
//! history. It owns only its table of webhook ids; jobs are reached over gRPC with the mesh
//! identity `webhook`.

mod claims;
mod refusal;
mod replicate;
pub mod stripe;
pub mod stripe_signature;

use std::sync::Arc;
use std::time::Duration;

use cutx_platform::fetch::GuardedClient;
use cutx_platform::grpc::mesh_channel;
use cutx_platform::media::MediaStore;
use cutx_platform::mesh::MeshKey;
use cutx_platform::secret::Secret;
use cutx_proto::pb::billing_internal_service_client::BillingInternalServiceClient;
use cutx_proto::pb::job_internal_service_client::JobInternalServiceClient;
use tonic::transport::Channel;

pub struct WebhookConfig {
    pub db: cutx_platform::db::Db,
    pub mesh: MeshKey,
    /// jobs-svc.
    pub jobs: Channel,
    pub media: Arc<dyn MediaStore>,
    /// Downloads outputs (the one guarded client).
    pub http: GuardedClient,
    /// Asked for the signing secret when none is configured.
    pub replicate: Option<cutx_replicate::Replicate>,
    /// The signing secret (`whsec_...`), when configured rather than fetched.
    pub replicate_secret: Option<Secret>,
    /// A webhook still being acted on after this long is answered 202 and finished meanwhile.
    pub answer_within: Duration,
    /// billing-svc, for Stripe's events.
    pub billing: Channel,
    /// Stripe's endpoint signing secrets (`whsec_...`); none, `/webhooks/stripe` answers 503.
    pub stripe_secrets: Vec<Secret>,
}

/// The webhook routes, to serve on their own port or mount on the gateway's (`cutx dev`).
pub fn router(config: WebhookConfig) -> axum::Router {
    let WebhookConfig {
        db,
        mesh,
        jobs,
        media,
        http,
        replicate,
        replicate_secret,
        answer_within,
        billing,
        stripe_secrets,
    } = config;
    let stripe = stripe::State {
        claims: claims::Claims::new(db.clone()),
        billing: BillingInternalServiceClient::new(mesh_channel(
            billing,
            mesh.clone(),
            cutx_platform::mesh::Peer::Webhook,
        )),
        secrets: Arc::new(stripe_secrets),
    };
    let state = replicate::State {
        claims: claims::Claims::new(db),
        jobs: JobInternalServiceClient::new(mesh_channel(jobs, mesh, cutx_platform::mesh::Peer::Webhook)),
        media,
        http,
        secret: Arc::new(replicate::SigningSecret::new(replicate, replicate_secret)),
        answer_within,
    };
    replicate::routes(state).merge(stripe::routes(stripe))
}

/// Serves the webhook routes on `listener` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: WebhookConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    axum::serve(listener, router(config)).with_graceful_shutdown(shutdown).await?;
    Ok(())
}
