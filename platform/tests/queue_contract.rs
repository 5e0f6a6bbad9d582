//! The queue's promises (`cutx_platform::queue`'s module doc), run against every backend: the
//! SQL queue on a real SQLite file with the real schema, and the NATS queue on the nats-server of
//! `CUTX_TEST_NATS_URL` (skipped without it, unless `CUTX_REQUIRE_TOOLS=1`). Each test has its
//! own database file, or its own streams, consumer and subjects.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cutx_platform::queue::{JobQueue, MAX_DELIVERIES, NatsQueue, NatsQueueConfig, OutgoingMessage, SqlQueue};
use tokio::time::Instant;

/// Long enough for anything that should happen now.
const WAIT: Duration = Duration::from_secs(10);

/// Where one test's queue lives; `open` is what one more process would do.
enum Backend {
    Sql { url: String, _dir: tempfile::TempDir },
    Nats { config: NatsQueueConfig },
}

impl Backend {
    async fn sql() -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let url = cutx_platform::db::sqlite_url(&dir.path().join("q.db"));
        let db = cutx_platform::db::connect(&url, 4).await.unwrap();
        cutx_migrations::migrate(db.writes()).await.unwrap();
        Some(Self::Sql { url, _dir: dir })
    }

    async fn nats() -> Option<Self> {
        let Ok(url) = std::env::var("CUTX_TEST_NATS_URL") else {
            assert!(
                std::env::var("CUTX_REQUIRE_TOOLS").as_deref() != Ok("1"),
                "CUTX_TEST_NATS_URL is not set but CUTX_REQUIRE_TOOLS=1: start nats-server (scripts/infra.sh)"
            );
            eprintln!("skipped: CUTX_TEST_NATS_URL is not set");
            return None;
        };
        let tag = uuid::Uuid::new_v4().simple().to_string();
        let config = NatsQueueConfig {
            url: cutx_platform::secret::Secret::new(url),
            stream: format!("T_{tag}"),
            jobs_subjects: format!("t{tag}.jobs"),
            dlq_stream: format!("T_{tag}_DLQ"),
            dlq_subjects: format!("t{tag}.dlq"),
            consumer: "pipeline".into(),
            // NATS counts ack waits in time it checks about once a second: 1 s is the shortest.
            ack_wait: Duration::from_secs(1),
            ..Default::default()
        };
        Some(Self::Nats { config })
    }

    /// How long a delivery stays claimed without `in_progress`.
    fn visibility(&self) -> Duration {
        match self {
            Self::Sql { .. } => Duration::from_secs(1),
            Self::Nats { config } => config.ack_wait,
        }
    }

    async fn open(&self) -> Arc<dyn JobQueue> {
        match self {
            Self::Sql { url, .. } => {
                let db = cutx_platform::db::connect(url, 4).await.unwrap();
                Arc::new(SqlQueue::new(db, self.visibility()))
            }
            Self::Nats { config } => Arc::new(NatsQueue::connect(config.clone()).await.unwrap()),
        }
    }

    fn message(&self, id: &str) -> OutgoingMessage {
        let topic = match self {
            Self::Sql { .. } => "cutx.jobs.static_ad".to_string(),
            Self::Nats { config } => format!("{}.static_ad", config.jobs_subjects),
        };
        OutgoingMessage { id: id.into(), topic, payload: format!("payload of {id}").into_bytes().into() }
    }

    /// Removes what the test left on a shared server.
    async fn finish(self) {
        if let Self::Nats { config } = self {
            NatsQueue::connect(config).await.unwrap().delete().await.unwrap();
        }
    }
}

/// Runs each contract test once per backend: `sql::<name>` and `nats::<name>`.
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod sql {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let backend = super::Backend::sql().await.unwrap();
                    super::$name(&backend).await;
                    backend.finish().await;
                }
            )*
        }
        mod nats {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(backend) = super::Backend::nats().await else { return };
                    super::$name(&backend).await;
                    backend.finish().await;
                }
            )*
        }
    };
}

contract!(
    a_duplicate_publish_is_delivered_once,
    an_unsettled_delivery_comes_back_after_the_visibility_timeout_then_once_as_exhausted_then_never,
    a_retry_waits_its_delay_and_counts_a_delivery,
    in_progress_keeps_a_long_job_claimed,
    a_dead_letter_keeps_its_error_and_is_never_delivered_again,
    concurrent_consumers_take_every_message_exactly_once,
);

/// Nothing is delivered during `quiet`.
async fn assert_nothing_for(q: &dyn JobQueue, quiet: Duration, why: &str) {
    if let Some(d) = q.receive(quiet).await.unwrap() {
        panic!("{why}: got {} (attempt {})", d.id, d.attempt);
    }
}

async fn a_duplicate_publish_is_delivered_once(b: &Backend) {
    let q = b.open().await;
    q.publish(b.message("a")).await.unwrap();
    q.publish(b.message("a")).await.unwrap();
    let d = q.receive(WAIT).await.unwrap().expect("the message");
    assert_eq!((d.id.as_str(), d.attempt, d.exhausted), ("a", 1, false));
    assert_eq!(d.payload, b.message("a").payload);
    d.ack().await.unwrap();
    assert_nothing_for(&*q, Duration::from_millis(300), "a duplicate was delivered").await;
    q.publish(b.message("a")).await.unwrap();
    assert_nothing_for(&*q, Duration::from_millis(300), "an acknowledged id came back").await;
}

async fn an_unsettled_delivery_comes_back_after_the_visibility_timeout_then_once_as_exhausted_then_never(b: &Backend) {
    let q = b.open().await;
    q.publish(b.message("a")).await.unwrap();
    let mut claimed: Option<Instant> = None;
    let mut redelivery = || {
        let previous = claimed.replace(Instant::now());
        if let Some(previous) = previous {
            assert!(previous.elapsed() >= b.visibility() * 3 / 4, "came back before its visibility timeout");
        }
    };
    for attempt in 1..=MAX_DELIVERIES {
        let d = q.receive(WAIT).await.unwrap().expect("a delivery");
        redelivery();
        assert_eq!((d.id.as_str(), d.attempt, d.exhausted), ("a", attempt, false));
        assert_nothing_for(&*q, b.visibility() / 4, "claimed twice at once").await;
        drop(d); // the worker died
    }
    let last = q.receive(WAIT).await.unwrap().expect("the lost last delivery comes back to be settled");
    redelivery();
    assert!(last.exhausted && last.is_last_attempt());
    assert_eq!(last.attempt, MAX_DELIVERIES);
    last.dead_letter("worker lost").await.unwrap();
    assert_nothing_for(&*q, b.visibility() * 2, "a dead letter was delivered").await;
    let letters = q.dead_letters().await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!((letters[0].id.as_str(), letters[0].deliveries, letters[0].error.as_str()), ("a", 3, "worker lost"));
}

async fn a_retry_waits_its_delay_and_counts_a_delivery(b: &Backend) {
    let q = b.open().await;
    q.publish(b.message("a")).await.unwrap();
    let d = q.receive(WAIT).await.unwrap().unwrap();
    let delay = Duration::from_millis(600);
    let retried = Instant::now();
    d.retry("flaky", delay).await.unwrap();
    let again = q.receive(WAIT).await.unwrap().expect("the retry");
    assert!(retried.elapsed() >= delay, "delivered after {:?}, before its delay", retried.elapsed());
    assert_eq!((again.id.as_str(), again.attempt, again.exhausted), ("a", 2, false));
    again.ack().await.unwrap();
}

async fn in_progress_keeps_a_long_job_claimed(b: &Backend) {
    let q = b.open().await;
    q.publish(b.message("a")).await.unwrap();
    let d = q.receive(WAIT).await.unwrap().unwrap();
    let until = Instant::now() + b.visibility() * 3;
    while Instant::now() < until {
        // Another worker polls meanwhile, for a third of the visibility at a time.
        assert_nothing_for(&*q, b.visibility() / 3, "taken while in progress").await;
        d.in_progress().await.unwrap();
    }
    d.ack().await.unwrap();
    assert_nothing_for(&*q, b.visibility() * 2, "an acknowledged message came back").await;
}

async fn a_dead_letter_keeps_its_error_and_is_never_delivered_again(b: &Backend) {
    let q = b.open().await;
    assert!(q.dead_letters().await.unwrap().is_empty());
    for id in ["a", "b"] {
        q.publish(b.message(id)).await.unwrap();
        let d = q.receive(WAIT).await.unwrap().unwrap();
        assert_eq!(d.id, id);
        d.dead_letter(&format!("{id} failed: provider said no")).await.unwrap();
    }
    assert_nothing_for(&*q, b.visibility() * 2, "a dead letter was delivered").await;
    let letters = q.dead_letters().await.unwrap();
    let got: Vec<_> = letters.iter().map(|l| (l.id.as_str(), l.deliveries, l.error.as_str())).collect();
    assert_eq!(got, [("a", 1, "a failed: provider said no"), ("b", 1, "b failed: provider said no")]);
    assert_eq!(
        (letters[0].topic.as_str(), &letters[0].payload),
        (b.message("a").topic.as_str(), &b.message("a").payload)
    );
}

async fn concurrent_consumers_take_every_message_exactly_once(b: &Backend) {
    // Two processes with two workers each.
    let (first, second) = (b.open().await, b.open().await);
    for i in 0..60 {
        first.publish(b.message(&format!("m{i:02}"))).await.unwrap();
    }
    let seen: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let workers: Vec<_> = [&first, &first, &second, &second]
        .into_iter()
        .map(|q| {
            let (q, seen) = (q.clone(), seen.clone());
            tokio::spawn(async move {
                while let Some(d) = q.receive(Duration::from_millis(500)).await.unwrap() {
                    *seen.lock().unwrap().entry(d.id.clone()).or_default() += 1;
                    d.ack().await.unwrap();
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 60);
    assert!(seen.values().all(|&n| n == 1), "{seen:?}");
}

/// Waits for `condition` to hold, polling, until `WAIT` has passed.
async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn sql_an_id_settled_longer_ago_than_the_duplicate_window_may_be_published_again() {
    use sea_orm::ConnectionTrait;
    let backend = Backend::sql().await.unwrap();
    let q = backend.open().await;
    q.publish(backend.message("a")).await.unwrap();
    q.receive(WAIT).await.unwrap().unwrap().ack().await.unwrap();
    q.publish(backend.message("a")).await.unwrap();
    assert_nothing_for(&*q, Duration::from_millis(300), "a duplicate within the window was delivered").await;
    // As if the ack were older than the window.
    let Backend::Sql { url, .. } = &backend else { unreachable!() };
    let db = cutx_platform::db::connect(url, 1).await.unwrap();
    db.writes().execute_unprepared("UPDATE queue_messages SET acked_at = 0 WHERE id = 'a'").await.unwrap();
    q.publish(backend.message("a")).await.unwrap();
    let again = q.receive(WAIT).await.unwrap().expect("delivered again after the window");
    assert_eq!((again.id.as_str(), again.attempt), ("a", 1));
}

#[tokio::test]
async fn sql_a_worker_whose_claim_expired_cannot_settle_the_new_holders_delivery() {
    let backend = Backend::sql().await.unwrap();
    let q = backend.open().await;
    q.publish(backend.message("a")).await.unwrap();
    let stale = q.receive(WAIT).await.unwrap().unwrap();
    let current = q.receive(WAIT).await.unwrap().unwrap();
    assert_eq!(current.attempt, 2);
    current.in_progress().await.unwrap();
    stale.ack().await.unwrap();
    // The stale ack changed nothing: the current holder still settles it.
    current.retry("again", Duration::ZERO).await.unwrap();
    assert_eq!(q.receive(WAIT).await.unwrap().unwrap().attempt, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_processes_starting_at_once_and_again_share_one_queue() {
    let Some(backend) = Backend::nats().await else { return };
    let Backend::Nats { config } = &backend else { unreachable!() };
    let (first, second) = tokio::join!(NatsQueue::connect(config.clone()), NatsQueue::connect(config.clone()));
    let (first, second) = (first.unwrap(), second.unwrap());
    let third = NatsQueue::connect(config.clone()).await.unwrap();
    first.publish(backend.message("a")).await.unwrap();
    second.publish(backend.message("a")).await.unwrap();
    let d = third.receive(WAIT).await.unwrap().expect("the message");
    assert_eq!(d.id, "a");
    d.ack().await.unwrap();
    assert_nothing_for(&second, Duration::from_millis(300), "a duplicate was delivered").await;
    drop((first, second, third));
    backend.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_a_message_whose_every_delivery_was_lost_is_dead_lettered_by_the_advisory() {
    let Some(backend) = Backend::nats().await else { return };
    let q = backend.open().await;
    q.publish(backend.message("a")).await.unwrap();
    for attempt in 1..=MAX_DELIVERIES + 1 {
        let d = q.receive(WAIT).await.unwrap().expect("a delivery");
        assert_eq!(d.exhausted, attempt > MAX_DELIVERIES);
        drop(d); // every worker died, the one with the exhausted delivery too
    }
    // The server notices the exhausted message when workers ask for more.
    assert_nothing_for(&*q, backend.visibility() * 2, "a lost message came back").await;
    eventually("the lost message is a dead letter", || async { !q.dead_letters().await.unwrap().is_empty() }).await;
    let letters = q.dead_letters().await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!((letters[0].id.as_str(), letters[0].deliveries), ("a", MAX_DELIVERIES));
    assert!(letters[0].error.contains("never settled"), "{}", letters[0].error);
    assert_eq!(letters[0].topic, backend.message("a").topic);
    drop(q);
    backend.finish().await;
}

#[tokio::test]
async fn nats_an_error_with_line_breaks_is_kept_on_one_line() {
    let Some(backend) = Backend::nats().await else { return };
    let q = backend.open().await;
    q.publish(backend.message("a")).await.unwrap();
    let d = q.receive(WAIT).await.unwrap().unwrap();
    d.dead_letter("provider said:\r\nno").await.unwrap();
    assert_eq!(q.dead_letters().await.unwrap()[0].error, "provider said:  no");
    drop(q);
    backend.finish().await;
}

/// Unlike the SQL queue's, a NATS delivery is settled by stream sequence, whoever holds it: the
/// database, not the ack, decides who owns a job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_a_late_ack_settles_the_message_and_the_current_holder_can_still_ack() {
    let Some(backend) = Backend::nats().await else { return };
    let q = backend.open().await;
    q.publish(backend.message("a")).await.unwrap();
    let stale = q.receive(WAIT).await.unwrap().unwrap();
    let current = q.receive(WAIT).await.unwrap().expect("the redelivery");
    assert_eq!(current.attempt, 2);
    stale.ack().await.unwrap();
    current.ack().await.unwrap();
    assert_nothing_for(&*q, backend.visibility() * 2, "an acknowledged message came back").await;
    drop(q);
    backend.finish().await;
}
