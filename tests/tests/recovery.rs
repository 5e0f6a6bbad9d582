//! What happens after a crash or an outage: a job whose publish was lost is published again by
//! the relay and runs once; a job a crash left half-made is failed and refunded once by the
//! sweeper.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use cutx_platform::queue::{DeadLetter, Delivery, JobQueue, OutgoingMessage, QueueError};
use cutx_proto::pb;
use cutx_tests::{Client, Server, Transport};
use sea_orm::ConnectionTrait;

/// A queue that is down for the first publish of every message.
struct DownOnce {
    inner: Arc<dyn JobQueue>,
    seen: Mutex<Vec<String>>,
}

#[async_trait]
impl JobQueue for DownOnce {
    async fn publish(&self, message: OutgoingMessage) -> Result<(), QueueError> {
        let first = {
            let mut seen = self.seen.lock().unwrap();
            let first = !seen.contains(&message.id);
            seen.push(message.id.clone());
            first
        };
        if first {
            return Err(QueueError::Storage("queue unavailable".into()));
        }
        self.inner.publish(message).await
    }

    async fn receive(&self, wait: Duration) -> Result<Option<Delivery>, QueueError> {
        self.inner.receive(wait).await
    }

    async fn dead_letters(&self) -> Result<Vec<DeadLetter>, QueueError> {
        self.inner.dead_letters().await
    }
}

fn quick_housekeeping(o: &mut cutx::dev::DevOptions) {
    o.housekeeping = jobs_svc::Housekeeping {
        every: Duration::from_millis(100),
        relay_age: Duration::from_millis(300),
        // Long enough that no create in flight is ever swept, even on a slow machine.
        sweep_age: Duration::from_secs(3),
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_publish_failed_is_published_by_the_relay_and_runs_once() {
    let server = Server::in_process(|o| {
        quick_housekeeping(o);
        o.wrap_queue = Some(Box::new(|inner| Arc::new(DownOnce { inner, seen: Mutex::default() })));
    })
    .await;
    let mut client = Client::new(&server, Transport::Rest);
    client.sign_in("ada@example.com").await;
    let created = client
        .static_ad(pb::GenerateStaticAdRequest { prompt: "Cork yoga blocks".into(), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(created.status(), pb::JobStatus::Queued, "committed as queued although the publish failed");
    let job = client.wait_for_job(&created.job_id).await;
    assert_eq!(job.status(), pb::JobStatus::Completed);
    assert_eq!(client.balance().await.unwrap().balance, 22, "charged once");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_a_crash_left_pending_is_failed_and_refunded_once_by_the_sweeper() {
    let server = Server::in_process(quick_housekeeping).await;
    let mut client = Client::new(&server, Transport::Rest);
    client.sign_in("ada@example.com").await;
    let created = client.copy(pb::GenerateCopyRequest::default()).await.unwrap();
    assert_eq!(client.balance().await.unwrap().balance, 24);
    // As if the process had died after charging, before the job moved on.
    let db =
        cutx_platform::db::connect(&cutx_platform::db::sqlite_url(&server.data_dir.join("cutx.db")), 1).await.unwrap();
    db.writes()
        .execute_unprepared(&format!(
            "UPDATE jobs SET status = 'pending', updated_at = 0 WHERE id = '{}'",
            created.job_id
        ))
        .await
        .unwrap();
    let job = client.wait_for_job(&created.job_id).await;
    assert_eq!(job.status(), pb::JobStatus::Failed);
    cutx_tests::eventually("the refund", Duration::from_secs(10), || async {
        (client.balance().await.unwrap().balance == 25).then_some(())
    })
    .await;
    // Later sweeps find nothing more to do.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let refunds =
        client.ledger().await.unwrap().into_iter().filter(|e| e.r#type() == pb::LedgerEntryType::Refund).count();
    assert_eq!(refunds, 1);
    assert_eq!(client.balance().await.unwrap().balance, 25);
    server.stop().await;
}
