//! Jobs end to end: `copy` (synchronous, so each answer is a completed job) and `static_ad`
//! (queued, counted when completed).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};

use crate::drive::{Outcome, Pace, drive};
use crate::mesh::Mesh;
use crate::report::Report;
use crate::{Options, Scenario};

/// How long the static ads may take to complete, all together.
const COMPLETION_DEADLINE: Duration = Duration::from_secs(600);

/// `POST /api/generate/copy` at `pace` for the options' duration.
pub(crate) async fn copy(mesh: &Mesh, options: &Options, pace: Pace) -> anyhow::Result<Report> {
    let rest = mesh.rest.clone();
    let load = async move {
        let outcome = drive(pace, options.duration, move |n| {
            let rest = rest.clone();
            async move { rest.copy(n).await }
        })
        .await?;
        Ok(outcome.counted())
    };
    mesh.measure(Scenario::Copy, "", pace.label(), load).await
}

/// Creates the options' number of static ads, `concurrency` at a time, and waits until every one
/// is completed; latency is from a job's creation to its completion, as jobs-svc recorded them.
pub(crate) async fn static_ads(mesh: &Mesh, options: &Options) -> anyhow::Result<Report> {
    let pace = Pace::Closed { callers: options.concurrency };
    mesh.measure(Scenario::StaticAd, "", pace.label(), create_and_complete(mesh, options)).await
}

async fn create_and_complete(mesh: &Mesh, options: &Options) -> anyhow::Result<Outcome> {
    let start = Instant::now();
    let created = create_static_ads(mesh, options.jobs, options.concurrency).await?;
    let mut pending: HashMap<String, Instant> = created.answers.into_iter().collect();
    let mut outcome = Outcome::new();
    outcome.errors = created.errors;
    outcome.notes = created.notes;
    // Watched in the database, not over the API: a page of completed jobs read every few
    // milliseconds (signed URLs and all) would load the mesh it measures.
    let db = mesh.server.database().await;
    let deadline = Instant::now() + COMPLETION_DEADLINE;
    let user = mesh.user.to_string();
    loop {
        // A count while waiting (cheap for the database being measured), the rows once at the end.
        if ended_count(&db, &user).await? < pending.len() as i64 {
            if Instant::now() > deadline {
                let left = pending.len() as i64 - ended_count(&db, &user).await?;
                bail!("{left} static ads were not completed within {} s", COMPLETION_DEADLINE.as_secs());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        let ended = ended(&db, &user).await?;
        if pending.keys().all(|id| ended.contains_key(id)) {
            outcome.elapsed = start.elapsed();
            for (id, end) in ended {
                if pending.remove(&id).is_none() {
                    continue;
                }
                match end.status.as_str() {
                    "completed" => outcome.answered(end.after, ()),
                    other => outcome.failed(&anyhow::anyhow!("static ad {id} ended {other}")),
                }
            }
            return Ok(outcome);
        }
        if Instant::now() > deadline {
            let left = pending.keys().filter(|id| !ended.contains_key(*id)).count();
            bail!("{left} static ads were not completed within {} s", COMPLETION_DEADLINE.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Creates `jobs` static ads, `callers` at a time: each answered create's job id and when it
/// was answered, and the creates that failed.
pub(crate) async fn create_static_ads(
    mesh: &Mesh,
    jobs: usize,
    callers: usize,
) -> anyhow::Result<Outcome<(String, Instant)>> {
    let next = Arc::new(AtomicUsize::new(0));
    let creators: Vec<_> = (0..callers)
        .map(|_| {
            let (rest, next) = (mesh.rest.clone(), next.clone());
            tokio::spawn(async move {
                let mut created = Outcome::<(String, Instant)>::new();
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= jobs {
                        break created;
                    }
                    let sent = Instant::now();
                    match rest.static_ad(n as u64).await {
                        Ok(id) => created.answered(sent.elapsed(), (id, Instant::now())),
                        Err(e) => created.failed(&e),
                    }
                }
            })
        })
        .collect();
    let mut all = Outcome::new();
    for creator in creators {
        let mut created = creator.await.context("a creator panicked")?;
        all.done += created.done;
        all.errors += created.errors;
        all.answers.append(&mut created.answers);
        if all.notes.is_empty() {
            all.notes = created.notes;
        }
    }
    Ok(all)
}

/// How a job ended, and how long after it was created (jobs-svc's clock, whole milliseconds).
struct Ended {
    status: String,
    after: Duration,
}

/// `SELECT <columns>` of the user's jobs that have ended, in `db`'s dialect.
fn ended_jobs(db: &DatabaseConnection, columns: &str, user: &str) -> Statement {
    let backend = db.get_database_backend();
    let user_is = if backend == DbBackend::Sqlite { "?" } else { "$1" };
    let sql = format!(
        "SELECT {columns} FROM jobs \
         WHERE user_id = {user_is} AND status IN ('completed', 'failed', 'canceled', 'expired')"
    );
    Statement::from_sql_and_values(backend, sql, [user.into()])
}

/// How many of the user's jobs have ended.
async fn ended_count(db: &DatabaseConnection, user: &str) -> anyhow::Result<i64> {
    let row = db
        .query_one_raw(ended_jobs(db, "COUNT(*) AS n", user))
        .await
        .context("counting the jobs that have ended")?
        .context("a count")?;
    Ok(row.try_get("", "n")?)
}

/// The user's jobs that have ended, by id.
async fn ended(db: &DatabaseConnection, user: &str) -> anyhow::Result<HashMap<String, Ended>> {
    let rows = db
        .query_all_raw(ended_jobs(db, "id, status, created_at, updated_at", user))
        .await
        .context("reading the jobs that have ended")?;
    let mut ended = HashMap::new();
    for row in rows {
        let (created, updated): (i64, i64) = (row.try_get("", "created_at")?, row.try_get("", "updated_at")?);
        let after = Duration::from_millis(u64::try_from(updated - created).unwrap_or(0));
        ended.insert(row.try_get("", "id")?, Ended { status: row.try_get("", "status")?, after });
    }
    Ok(ended)
}
