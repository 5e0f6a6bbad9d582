//! The SQL queue's promises, against a real SQLite file with the real schema.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cutx_platform::queue::{JobQueue, MAX_DELIVERIES, OutgoingMessage, SqlQueue};

async fn queue(visibility: Duration) -> (SqlQueue, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let db = cutx_platform::db::connect(&cutx_platform::db::sqlite_url(&dir.path().join("q.db")), 4).await.unwrap();
    cutx_migrations::migrate(&db).await.unwrap();
    (SqlQueue::new(db, visibility), dir)
}

fn message(id: &str) -> OutgoingMessage {
    OutgoingMessage { id: id.into(), topic: "cutx.jobs.static_ad".into(), payload: id.as_bytes().to_vec().into() }
}

const WAIT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn publishing_the_same_id_twice_delivers_it_once() {
    let (q, _d) = queue(Duration::from_secs(30)).await;
    q.publish(message("a")).await.unwrap();
    q.publish(message("a")).await.unwrap();
    let d = q.receive(WAIT).await.unwrap().unwrap();
    assert_eq!((d.id.as_str(), d.attempt), ("a", 1));
    d.ack().await.unwrap();
    q.publish(message("a")).await.unwrap();
    assert!(q.receive(Duration::from_millis(200)).await.unwrap().is_none(), "an acknowledged id came back");
}

#[tokio::test]
async fn a_delivery_its_worker_never_settled_comes_back_after_the_visibility_timeout_at_most_three_times() {
    let (q, _d) = queue(Duration::from_millis(150)).await;
    q.publish(message("a")).await.unwrap();
    for attempt in 1..=MAX_DELIVERIES {
        let d = q.receive(WAIT).await.unwrap().unwrap();
        assert_eq!((d.attempt, d.exhausted), (attempt, false));
        assert!(q.receive(Duration::from_millis(50)).await.unwrap().is_none(), "claimed twice at once");
        drop(d); // the worker died
    }
    let last = q.receive(WAIT).await.unwrap().unwrap();
    assert!(last.exhausted && last.is_last_attempt(), "the lost last delivery comes back to be settled");
    last.dead_letter("worker lost").await.unwrap();
    assert!(q.receive(Duration::from_millis(400)).await.unwrap().is_none());
    let letters = q.dead_letters().await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!((letters[0].deliveries, letters[0].error.as_str()), (3, "worker lost"));
}

#[tokio::test]
async fn a_retry_waits_its_delay_and_counts_as_a_delivery() {
    let (q, _d) = queue(Duration::from_secs(30)).await;
    q.publish(message("a")).await.unwrap();
    let d = q.receive(WAIT).await.unwrap().unwrap();
    d.retry("flaky", Duration::from_millis(300)).await.unwrap();
    assert!(q.receive(Duration::from_millis(100)).await.unwrap().is_none(), "delivered before its delay");
    let again = q.receive(WAIT).await.unwrap().unwrap();
    assert_eq!(again.attempt, 2);
}

#[tokio::test]
async fn a_worker_whose_claim_expired_cannot_settle_the_new_holders_delivery() {
    let (q, _d) = queue(Duration::from_millis(100)).await;
    q.publish(message("a")).await.unwrap();
    let stale = q.receive(WAIT).await.unwrap().unwrap();
    let current = q.receive(WAIT).await.unwrap().unwrap();
    assert_eq!(current.attempt, 2);
    current.in_progress().await.unwrap();
    stale.ack().await.unwrap();
    // The stale ack changed nothing: the current holder still settles it.
    current.retry("again", Duration::ZERO).await.unwrap();
    assert_eq!(q.receive(WAIT).await.unwrap().unwrap().attempt, 3);
}

#[tokio::test]
async fn in_progress_keeps_a_long_job_claimed() {
    let (q, _d) = queue(Duration::from_millis(200)).await;
    q.publish(message("a")).await.unwrap();
    let d = q.receive(WAIT).await.unwrap().unwrap();
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        d.in_progress().await.unwrap();
    }
    assert!(q.receive(Duration::from_millis(50)).await.unwrap().is_none(), "taken while in progress");
    d.ack().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_consumers_take_every_message_exactly_once() {
    let (q, _d) = queue(Duration::from_secs(30)).await;
    for i in 0..60 {
        q.publish(message(&format!("m{i:02}"))).await.unwrap();
    }
    let seen: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let consumers: Vec<_> = (0..4)
        .map(|_| {
            let (q, seen) = (q.clone(), seen.clone());
            tokio::spawn(async move {
                while let Some(d) = q.receive(Duration::from_millis(300)).await.unwrap() {
                    *seen.lock().unwrap().entry(d.id.clone()).or_default() += 1;
                    d.ack().await.unwrap();
                }
            })
        })
        .collect();
    for c in consumers {
        c.await.unwrap();
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 60);
    assert!(seen.values().all(|&n| n == 1), "{seen:?}");
}
