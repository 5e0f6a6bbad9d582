//! `cutx dev` on SQLite with many writers at once: every service shares one database file, and
//! 200 jobs created at once by 8 users must all complete, charged exactly once each.

use std::sync::Arc;
use std::time::Duration;

use cutx_proto::pb;
use cutx_tests::{Client, Server, Transport};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_jobs_at_once_on_sqlite_all_complete_and_are_charged_once() {
    let server = Server::in_process(|o| {
        o.prices.static_ad = cutx_platform::credits::Credits::from_u32(1);
        o.workers = 4;
    })
    .await;
    let mut tasks = Vec::new();
    for u in 0..8 {
        let mut client = Client::new(&server, Transport::Rest);
        client.sign_in(&format!("load{u}@example.com")).await;
        let client = Arc::new(client);
        for j in 0..25 {
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                let request = pb::GenerateStaticAdRequest {
                    prompt: format!("Load test mug {u}-{j}"),
                    idempotency_key: format!("{u}-{j}"),
                    ..Default::default()
                };
                let created = client.static_ad(request).await.expect("create under load");
                (client, created.job_id)
            }));
        }
    }
    let mut created = Vec::new();
    for task in tasks {
        created.push(task.await.unwrap());
    }
    for (client, id) in &created {
        let job = cutx_tests::eventually("the job to end", Duration::from_secs(120), || async {
            let job = client.get_job(id).await.ok()?;
            matches!(job.status(), pb::JobStatus::Completed | pb::JobStatus::Failed).then_some(job)
        })
        .await;
        assert_eq!(job.status(), pb::JobStatus::Completed, "{job:?}");
    }
    for (client, _) in created.iter().step_by(25) {
        assert_eq!(client.balance().await.unwrap().balance, 0);
        let ledger = client.ledger().await.unwrap();
        assert_eq!(ledger.iter().filter(|e| e.r#type() == pb::LedgerEntryType::Deduction).count(), 25);
    }
    server.stop().await;
}
