//! 200 jobs while NATS and PostgreSQL restart under them. Every job ends completed, or failed
//! (or expired) and refunded, and every user's ledger sums to their balance.
//!
//! Alone in its test binary: it restarts the PostgreSQL server the other tests share, and test
//! binaries run one after another.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cutx_proto::pb;
use cutx_tests::{Client, Infra, Server, Transport};

const USERS: usize = 8;
const JOBS_PER_USER: usize = 25;

fn restart_postgres() {
    let dir = std::env::var("CUTX_TEST_POSTGRES_DIR").expect("CUTX_TEST_POSTGRES_DIR (scripts/infra.sh sets it)");
    let script = format!("/usr/lib/postgresql/15/bin/pg_ctl -D '{dir}' -m fast -w restart >/dev/null");
    let status = std::process::Command::new("su").args(["postgres", "-s", "/bin/sh", "-c", &script]).status().unwrap();
    assert!(status.success(), "pg_ctl restart failed");
}

/// Creates one job, retrying with the same idempotency key through outages, as a client would.
async fn create(client: &Client, key: String) -> String {
    let request = pb::GenerateStaticAdRequest {
        prompt: format!("Chaos candle {key}"),
        idempotency_key: key,
        ..Default::default()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        match client.static_ad(request.clone()).await {
            Ok(created) => return created.job_id,
            Err(e) => {
                assert!(
                    !matches!(e.code, tonic::Code::InvalidArgument | tonic::Code::FailedPrecondition),
                    "refused: {e:?}"
                );
                assert!(tokio::time::Instant::now() < deadline, "could not create a job: {e:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_jobs_survive_nats_and_postgresql_restarts_and_every_ledger_sums_to_its_balance() {
    let Some(infra) = Infra::from_env() else { return };
    let env = [
        ("CUTX_PRICE_STATIC_AD", "1"),
        ("CUTX_QUEUE_VISIBILITY_SECS", "3"),
        ("CUTX_HOUSEKEEPING_EVERY_SECS", "1"),
        ("CUTX_RELAY_AGE_SECS", "3"),
        ("CUTX_SWEEP_AGE_SECS", "10"),
        ("CUTX_RETRY_BASE_MS", "300"),
        ("CUTX_LOCAL_LATENCY_MS", "20"),
    ];
    let mut server = Server::spawn_distributed_with(&infra, &env).await;
    let mut clients = Vec::new();
    for u in 0..USERS {
        let mut client = Client::new(&server, Transport::Rest);
        client.sign_in(&format!("chaos{u}@example.com")).await;
        clients.push(Arc::new(client));
    }

    let created = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = clients
        .iter()
        .enumerate()
        .map(|(u, client)| {
            let (client, created) = (client.clone(), created.clone());
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for j in 0..JOBS_PER_USER {
                    ids.push(create(&client, format!("u{u}-j{j}")).await);
                    created.fetch_add(1, Ordering::SeqCst);
                }
                ids
            })
        })
        .collect();

    let at = |n: usize| {
        let created = created.clone();
        async move {
            cutx_tests::eventually(&format!("{n} jobs"), Duration::from_secs(120), || async {
                (created.load(Ordering::SeqCst) >= n).then_some(())
            })
            .await
        }
    };
    at(40).await;
    let nats = server.nats.as_mut().unwrap();
    nats.stop().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    nats.restart().await.unwrap();
    at(120).await;
    tokio::task::spawn_blocking(restart_postgres).await.unwrap();

    let mut all = Vec::new();
    for task in tasks {
        all.push(task.await.unwrap());
    }
    assert_eq!(all.iter().map(Vec::len).sum::<usize>(), USERS * JOBS_PER_USER);

    for (client, ids) in clients.iter().zip(&all) {
        let jobs = cutx_tests::eventually("every job to end", Duration::from_secs(180), || async {
            let jobs = client.all_jobs().await;
            let ended = jobs.iter().all(|j| {
                matches!(j.status(), pb::JobStatus::Completed | pb::JobStatus::Failed | pb::JobStatus::Expired)
            });
            (ended && jobs.len() == ids.len()).then_some(jobs)
        })
        .await;
        let completed = jobs.iter().filter(|j| j.status() == pb::JobStatus::Completed).count() as i64;
        eprintln!("{} jobs: {completed} completed, the rest failed or expired", jobs.len());
        // The refunds of failed jobs follow their failure: wait for the books to settle.
        let (balance, ledger) = cutx_tests::eventually("the ledger to settle", Duration::from_secs(60), || async {
            let balance = client.balance().await.ok()?.balance;
            let ledger = client.ledger().await.ok()?;
            (balance == 25 - completed).then_some((balance, ledger))
        })
        .await;
        assert_eq!(ledger.iter().map(|e| e.amount).sum::<i64>(), balance, "the ledger sums to the balance");
        for job in &jobs {
            // A refund of 0 closes the debit key of a job that never paid: it gives nothing back.
            let for_job = |t: pb::LedgerEntryType| {
                ledger.iter().filter(|e| e.reference == job.id && e.r#type() == t && e.amount != 0).count()
            };
            let (debits, refunds) = (for_job(pb::LedgerEntryType::Deduction), for_job(pb::LedgerEntryType::Refund));
            match job.status() {
                pb::JobStatus::Completed => assert_eq!((debits, refunds), (1, 0), "{job:?}"),
                _ => assert_eq!(debits, refunds, "a failed job is refunded exactly what it paid: {job:?}"),
            }
        }
    }
    server.stop().await;
}
