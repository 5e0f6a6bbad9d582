//! Signed webhooks applied per second: Replicate's callbacks about jobs handed to it, each
//! verified on its raw body, claimed once by its webhook id and acted on by webhook-svc.
//!
//! A fake Replicate (the tests' `fake_replicate`, which follows Replicate's wire format) takes the
//! static ads' predictions and runs each to `succeeded` without calling back. Once every job is
//! handed over, the bench sends the callbacks itself, signed with the fake's secret as Standard
//! Webhooks has it (`webhook-id`, `webhook-timestamp`, `webhook-signature`), to the webhook URL
//! each prediction was created with:
//! - `progress`: `processing` callbacks, each with a webhook id of its own, for the options'
//!   duration (closed loop, or open with `--rate`); each is recorded in its job's history, and
//!   the recorded lines are counted afterwards;
//! - `completed`: each job's `succeeded` callback once, `concurrency` at a time; its output is
//!   copied from the fake into the media store and the job completed, which the database is
//!   asked afterwards.
//!
//! An answer other than 200 is an error (202 would mean the callback was still being acted on).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cutx_tests::Mode;
use cutx_tests::fake_replicate::{FakeReplicate, Webhooks};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use serde_json::Value;

use crate::drive::{Outcome, Pace, drive};
use crate::mesh::Mesh;
use crate::report::Report;
use crate::{Options, Provider, Scenario};

/// How long the jobs may take to be handed to the fake, all together.
const HAND_OVER_DEADLINE: Duration = Duration::from_secs(300);

/// One job handed to the fake: where its callbacks go and its prediction as the fake has it.
struct Handed {
    url: String,
    prediction: Value,
}

/// The callbacks and how they are sent: one HTTP client, the fake's signing key.
#[derive(Clone)]
struct Sender {
    http: reqwest::Client,
    fake: Arc<FakeReplicate>,
}

impl Sender {
    /// Sends one signed callback; anything but 200 is an error.
    async fn send(&self, url: &str, webhook_id: &str, body: String) -> anyhow::Result<()> {
        let timestamp = cutx_platform::clock::now_millis() / 1000;
        let signature = self.fake.sign(webhook_id, timestamp, body.as_bytes());
        let answer = self
            .http
            .post(url)
            .header("webhook-id", webhook_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .with_context(|| format!("POST {url}"))?;
        let status = answer.status();
        if status != reqwest::StatusCode::OK {
            let said = answer.text().await.unwrap_or_default();
            bail!("webhook {webhook_id} answered {status}: {said}");
        }
        Ok(())
    }
}

/// Runs both loads on one CutX with the fake behind it: the `progress` row, then `completed`.
pub(crate) async fn webhooks(mode: Mode, options: &Options) -> anyhow::Result<Vec<Report>> {
    let fake = Arc::new(FakeReplicate::start().await);
    fake.set(|b| {
        // The bench sends the callbacks; the fake only runs each prediction to its end, fast.
        b.webhooks = Webhooks::Drop;
        b.step = Duration::from_millis(1);
    });
    let env = [
        ("CUTX_REPLICATE_TOKEN", fake.token.as_str()),
        ("CUTX_REPLICATE_BASE_URL", fake.base.as_str()),
        // The outputs are copied from the fake's loopback port.
        ("CUTX_FETCH_ALLOW_ORIGINS", fake.origin.as_str()),
        ("CUTX_REPLICATE_CREATES_PER_MINUTE", "1000000"),
        // Callbacks, not the reconciler's questions, settle the jobs.
        ("CUTX_RECONCILE_AFTER_SECS", "3600"),
        ("CUTX_REPLICATE_WEBHOOKS", "true"),
    ];
    let mesh = Mesh::start_with(mode, Provider::Local, &env).await?;
    let reports = on(&mesh, fake, options).await;
    mesh.stop().await;
    reports
}

async fn on(mesh: &Mesh, fake: Arc<FakeReplicate>, options: &Options) -> anyhow::Result<Vec<Report>> {
    let created = crate::jobs::create_static_ads(mesh, options.jobs, options.concurrency).await?;
    if created.errors > 0 {
        bail!("{} of {} static ads were not created: {:?}", created.errors, options.jobs, created.notes);
    }
    let db = mesh.server.database().await;
    let user = mesh.user.to_string();
    let handed = Arc::new(handed_over(&db, &user, &fake, options.jobs).await?);
    let sender = Sender { http: http()?, fake };

    let pace = options.pace();
    let lines_before = progress_lines(&db, &user).await?;
    let progress = {
        let (sender, handed) = (sender.clone(), handed.clone());
        async move {
            let outcome = drive(pace, options.duration, move |n| {
                let (sender, handed) = (sender.clone(), handed.clone());
                async move {
                    let job = &handed[usize::try_from(n).unwrap_or(0) % handed.len()];
                    let mut body = job.prediction.clone();
                    body["status"] = "processing".into();
                    body["output"] = Value::Null;
                    body["completed_at"] = Value::Null;
                    body["logs"] = format!("step {n}").into();
                    sender.send(&job.url, &format!("msg_bench_progress_{n}"), body.to_string()).await
                }
            })
            .await?;
            Ok(outcome.counted())
        }
    };
    let mut progress = mesh.measure(Scenario::Webhooks, "progress", pace.label(), progress).await?;
    let recorded = progress_lines(&db, &user).await? - lines_before;
    if recorded != progress.done as i64 {
        bail!("{} progress callbacks were answered 200, yet {recorded} were recorded", progress.done);
    }
    progress.notes.push(format!("{recorded} recorded in the jobs' history"));

    let callers = Pace::Closed { callers: options.concurrency };
    let completing = complete_each(sender, handed.clone(), options.concurrency);
    let mut completed = mesh.measure(Scenario::Webhooks, "completed", callers.label(), completing).await?;
    let done = completed_count(&db, &user).await?;
    if done != completed.done as i64 {
        bail!("{} completion callbacks were answered 200, yet {done} jobs are completed", completed.done);
    }
    completed.notes.push(format!("{done} jobs completed, each output copied from the fake"));
    Ok(vec![progress, completed])
}

/// The HTTP client the callbacks go out on, as Replicate's would: kept connections.
fn http() -> anyhow::Result<reqwest::Client> {
    cutx_platform::fetch::install_tls_provider();
    reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .tcp_nodelay(true)
        .build()
        .context("building the HTTP client")
}

/// Each job's `succeeded` callback, once, `callers` at a time.
async fn complete_each(sender: Sender, handed: Arc<Vec<Handed>>, callers: usize) -> anyhow::Result<Outcome> {
    let start = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let (sender, handed, next) = (sender.clone(), handed.clone(), next.clone());
            tokio::spawn(async move {
                let mut outcome = Outcome::new();
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = handed.get(n) else { break outcome };
                    let sent = Instant::now();
                    let id = format!("msg_bench_completed_{n}");
                    match sender.send(&job.url, &id, job.prediction.to_string()).await {
                        Ok(()) => outcome.answered(sent.elapsed(), ()),
                        Err(e) => outcome.failed(&e),
                    }
                }
            })
        })
        .collect();
    let mut all = Outcome::new();
    for task in tasks {
        let one = task.await.context("a sender panicked")?;
        all.done += one.done;
        all.errors += one.errors;
        all.latency.add(&one.latency)?;
        if all.notes.is_empty() {
            all.notes = one.notes;
        }
    }
    all.elapsed = start.elapsed();
    Ok(all)
}

/// Waits until each of the user's `jobs` jobs is processing with its prediction recorded and the
/// fake has run that prediction to `succeeded`; then each one's callback URL and prediction.
async fn handed_over(
    db: &DatabaseConnection,
    user: &str,
    fake: &FakeReplicate,
    jobs: usize,
) -> anyhow::Result<Vec<Handed>> {
    let deadline = Instant::now() + HAND_OVER_DEADLINE;
    loop {
        let waiting = count(db, "SELECT COUNT(*) AS n FROM jobs WHERE user_id = {user} AND status = 'processing' AND provider_ref IS NOT NULL", user).await?;
        let predictions = fake.predictions();
        let succeeded = predictions.iter().filter(|p| p.status.is_terminal()).count();
        if waiting == jobs as i64 && succeeded == jobs {
            let mut handed = Vec::with_capacity(jobs);
            for prediction in predictions {
                let url = prediction
                    .webhook
                    .clone()
                    .with_context(|| format!("prediction {} was created without a webhook URL", prediction.id))?;
                let body = fake.body(&prediction.id).context("a prediction the fake has just listed")?;
                if body["status"] != "succeeded" {
                    bail!("prediction {} ended {}", prediction.id, body["status"]);
                }
                handed.push(Handed { url, prediction: body });
            }
            return Ok(handed);
        }
        if Instant::now() > deadline {
            bail!(
                "after {} s, {waiting} of {jobs} jobs were handed over and {succeeded} predictions had ended",
                HAND_OVER_DEADLINE.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Lines the progress callbacks added to the user's jobs' history.
async fn progress_lines(db: &DatabaseConnection, user: &str) -> anyhow::Result<i64> {
    let sql = "SELECT COUNT(*) AS n FROM job_transitions t JOIN jobs j ON j.id = t.job_id \
               WHERE j.user_id = {user} AND t.reason LIKE 'replicate webhook: processing%'";
    count(db, sql, user).await
}

async fn completed_count(db: &DatabaseConnection, user: &str) -> anyhow::Result<i64> {
    count(db, "SELECT COUNT(*) AS n FROM jobs WHERE user_id = {user} AND status = 'completed'", user).await
}

/// `sql`'s `COUNT(*) AS n`, with `{user}` bound to the user's id in `db`'s dialect.
async fn count(db: &DatabaseConnection, sql: &str, user: &str) -> anyhow::Result<i64> {
    let backend = db.get_database_backend();
    let sql = sql.replace("{user}", if backend == DbBackend::Sqlite { "?" } else { "$1" });
    let row = db
        .query_one_raw(Statement::from_sql_and_values(backend, &sql, [user.into()]))
        .await
        .with_context(|| format!("asking the database: {sql}"))?
        .context("a count")?;
    Ok(row.try_get("", "n")?)
}
