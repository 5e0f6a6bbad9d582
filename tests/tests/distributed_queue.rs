//! The distributed mode's queue (NATS JetStream) with providers plugged in through the
//! `Provider` trait: retries, the dead-letter stream, permanent failures, duplicate publishes.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use cutx_platform::queue::{JobQueue, NatsQueue, NatsQueueConfig};
use cutx_platform::secret::Secret;
use cutx_proto::pb;
use cutx_tests::{Client, Infra, Server, Transport};
use pipeline_svc::{LocalProvider, Produced, Provider, ProviderError, ProviderJob};

/// Counts calls; fails with `error`, or runs the local provider when there is none.
struct Counting {
    calls: AtomicUsize,
    error: Option<ProviderError>,
}

#[async_trait]
impl Provider for Counting {
    async fn run(&self, job: &ProviderJob) -> Result<Produced, ProviderError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        match &self.error {
            Some(e) => Err(e.clone()),
            None => LocalProvider::default().run(job).await,
        }
    }
}

async fn mesh(error: Option<ProviderError>) -> Option<(Server, Client, Arc<Counting>)> {
    let infra = Infra::from_env()?;
    let provider = Arc::new(Counting { calls: AtomicUsize::new(0), error });
    let server = Server::spawn_distributed_with_provider(&infra, &[], provider.clone()).await;
    let mut client = Client::new(&server, Transport::Grpc);
    client.sign_in("ada@example.com").await;
    Some((server, client, provider))
}

fn ad() -> pb::GenerateStaticAdRequest {
    pb::GenerateStaticAdRequest { prompt: "Hemp rope dog toys".into(), ..Default::default() }
}

async fn refunds(client: &Client) -> usize {
    client.ledger().await.unwrap().iter().filter(|e| e.r#type() == pb::LedgerEntryType::Refund).count()
}

async fn dead_letters(server: &Server) -> Vec<cutx_platform::queue::DeadLetter> {
    let url = server.nats.as_ref().unwrap().url.clone();
    let queue = NatsQueue::connect(NatsQueueConfig { url: Secret::new(url), ..Default::default() }).await.unwrap();
    queue.dead_letters().await.unwrap()
}

async fn refunded(client: &Client) {
    cutx_tests::eventually("the refund", Duration::from_secs(15), || async {
        (client.balance().await.unwrap().balance == 25).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_always_fails_gets_three_deliveries_then_its_message_is_in_the_dlq_stream_and_the_job_refunded()
{
    let Some((server, client, provider)) = mesh(Some(ProviderError::transient("model timed out"))).await else {
        return;
    };
    let created = client.static_ad(ad()).await.unwrap();
    let job = client.wait_for_job(&created.job_id).await;
    assert_eq!(job.status(), pb::JobStatus::Failed);
    let letters = cutx_tests::eventually("the dead letter", Duration::from_secs(15), || async {
        let letters = dead_letters(&server).await;
        (!letters.is_empty()).then_some(letters)
    })
    .await;
    assert_eq!(provider.calls.load(Ordering::SeqCst), 3);
    assert_eq!(letters.len(), 1);
    assert_eq!((letters[0].id.as_str(), letters[0].deliveries), (created.job_id.as_str(), 3));
    assert_eq!(letters[0].error, "model timed out");
    assert_eq!(letters[0].topic, "cutx.jobs.static_ad");
    refunded(&client).await;
    assert_eq!(refunds(&client).await, 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_error_gets_one_delivery_and_the_job_fails_refunded() {
    let Some((server, client, provider)) = mesh(Some(ProviderError::permanent("prompt refused"))).await else {
        return;
    };
    let created = client.static_ad(ad()).await.unwrap();
    let job = client.wait_for_job(&created.job_id).await;
    assert_eq!(job.status(), pb::JobStatus::Failed);
    assert_eq!(job.error, "prompt refused");
    refunded(&client).await;
    assert_eq!(provider.calls.load(Ordering::SeqCst), 1);
    assert_eq!(refunds(&client).await, 1);
    assert!(dead_letters(&server).await.is_empty(), "a permanent failure is not a delivery problem");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_job_published_twice_is_processed_once() {
    let Some((server, client, provider)) = mesh(None).await else { return };
    let nats = server.nats.as_ref().unwrap();
    let created = client.static_ad(ad()).await.unwrap();
    // Within the duplicate window: the same Nats-Msg-Id is dropped by the stream.
    let queue =
        NatsQueue::connect(NatsQueueConfig { url: Secret::new(nats.url.clone()), ..Default::default() }).await.unwrap();
    let again = cutx_platform::queue::OutgoingMessage {
        id: created.job_id.clone(),
        topic: "cutx.jobs.static_ad".into(),
        payload: created.job_id.clone().into_bytes().into(),
    };
    queue.publish(again).await.unwrap();
    let job = client.wait_for_job(&created.job_id).await;
    assert_eq!(job.status(), pb::JobStatus::Completed);
    // After the window (a new message id): the database, not the queue, refuses the rerun.
    let raw = async_nats::connect(nats.url.as_str()).await.unwrap();
    let js = async_nats::jetstream::new(raw);
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", format!("{}-late", created.job_id).as_str());
    js.publish_with_headers("cutx.jobs.static_ad", headers, created.job_id.clone().into_bytes().into())
        .await
        .unwrap()
        .await
        .unwrap();
    cutx_tests::eventually("the queue to drain", Duration::from_secs(20), || async {
        nats.consumer_idle().await.then_some(())
    })
    .await;
    assert_eq!(provider.calls.load(Ordering::SeqCst), 1, "the job ran more than once");
    let job = client.get_job(&created.job_id).await.unwrap();
    assert_eq!((job.status(), job.outputs.len()), (pb::JobStatus::Completed, 1));
    assert_eq!(client.balance().await.unwrap().balance, 22);
    server.stop().await;
}
