//! Providers that fail, plugged into the mesh through the `Provider` trait: a transient failure
//! is retried up to the third delivery, then dead-lettered, the job failed and refunded once; a
//! permanent failure fails at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use cutx_proto::pb;
use cutx_tests::{Client, Server, Transport};
use pipeline_svc::{Produced, Provider, ProviderError, ProviderJob};

struct Failing {
    calls: AtomicUsize,
    error: ProviderError,
}

#[async_trait]
impl Provider for Failing {
    async fn run(&self, _job: &ProviderJob) -> Result<Produced, ProviderError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Err(self.error.clone())
    }
}

async fn mesh_with(error: ProviderError) -> (Server, Client, Arc<Failing>) {
    let provider = Arc::new(Failing { calls: AtomicUsize::new(0), error });
    let plugged = provider.clone();
    let server = Server::in_process(move |o| o.provider = Some(plugged)).await;
    let mut client = Client::new(&server, Transport::Rest);
    client.sign_in("ada@example.com").await;
    (server, client, provider)
}

fn ad() -> pb::GenerateStaticAdRequest {
    pb::GenerateStaticAdRequest { prompt: "Beeswax wraps, set of three".into(), ..Default::default() }
}

async fn refunds(client: &Client) -> usize {
    client.ledger().await.unwrap().iter().filter(|e| e.r#type() == pb::LedgerEntryType::Refund).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_always_fails_gets_three_attempts_one_dead_letter_a_failed_job_and_one_refund() {
    let (server, client, provider) = mesh_with(ProviderError::transient("provider timed out")).await;
    let created = client.static_ad(ad()).await.unwrap();
    let job = client.wait_for_job(&created.job_id).await;
    assert_eq!(job.status(), pb::JobStatus::Failed);
    assert_eq!(job.error, "provider timed out");
    let queue = server.queue().unwrap();
    let letters = cutx_tests::eventually("the dead letter", std::time::Duration::from_secs(10), || async {
        let letters = cutx_platform::queue::JobQueue::dead_letters(queue.as_ref()).await.unwrap();
        (!letters.is_empty()).then_some(letters)
    })
    .await;
    assert_eq!(provider.calls.load(Ordering::SeqCst), 3);
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].id, created.job_id);
    assert_eq!(letters[0].deliveries, 3);
    assert_eq!(letters[0].error, "provider timed out");
    assert_eq!(client.balance().await.unwrap().balance, 25);
    assert_eq!(refunds(&client).await, 1);
    // Nothing else arrives later: no fourth attempt, no second refund.
    let no_more = tokio::time::timeout(std::time::Duration::from_millis(500), async {
        loop {
            if provider.calls.load(Ordering::SeqCst) > 3 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(no_more.is_err(), "a fourth attempt was made");
    assert_eq!(refunds(&client).await, 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_failure_is_not_retried_and_is_refunded_once() {
    let (server, client, provider) = mesh_with(ProviderError::permanent("the model refused the prompt")).await;
    let created = client.static_ad(ad()).await.unwrap();
    let job = client.wait_for_job(&created.job_id).await;
    assert_eq!(job.status(), pb::JobStatus::Failed);
    assert_eq!(provider.calls.load(Ordering::SeqCst), 1);
    // The refund follows the failure (billing-svc is another service): poll for it.
    cutx_tests::eventually("the refund", std::time::Duration::from_secs(10), || async {
        (client.balance().await.unwrap().balance == 25).then_some(())
    })
    .await;
    assert_eq!(refunds(&client).await, 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_copy_job_answers_with_an_error_and_is_refunded() {
    let (server, client, _provider) = mesh_with(ProviderError::transient("llm unavailable")).await;
    let err = client.copy(pb::GenerateCopyRequest::default()).await.unwrap_err();
    assert_eq!(err.code, tonic::Code::Unavailable, "{err:?}");
    let jobs = client.all_jobs().await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].status(), pb::JobStatus::Failed);
    assert_eq!(client.balance().await.unwrap().balance, 25);
    assert_eq!(refunds(&client).await, 1);
    server.stop().await;
}
