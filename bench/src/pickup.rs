//! Static ads created at a fixed arrival rate: the create call's latency (`create-rate`), and how
//! soon a worker takes each job (`pickup`: created → processing).
//!
//! The moment a job becomes `processing` is not observable from outside any closer: `WatchJob`
//! hears of a move at once, but a watch can start only once the create has answered with the
//! job's id, by when a worker may have taken it already; polling `GetJob` would load the mesh it
//! measures. jobs-svc records every move in `job_transitions` with its own clock, so pick-up is
//! read from there once the jobs have moved: in whole milliseconds, the resolution of the stored
//! times.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::Context;
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};

use crate::drive::{Outcome, Pace, drive, histogram};
use crate::mesh::Mesh;
use crate::report::Report;
use crate::{Options, Scenario};

/// How long the created jobs may take to be picked up once the creates have ended.
const PICKUP_DEADLINE: Duration = Duration::from_secs(60);

/// Static-ad creates at `per_second`: the create call's latency from its scheduled departure.
pub(crate) async fn create_rate(mesh: &Mesh, options: &Options, per_second: f64) -> anyhow::Result<Report> {
    let pace = Pace::Open { per_second };
    let load = async {
        let mut outcome = creates(mesh, options, pace).await?.counted();
        outcome.notes.push("the jobs render meanwhile".into());
        Ok(outcome)
    };
    mesh.measure(Scenario::CreateRate, "", pace.label(), load).await
}

/// Static-ad creates at `per_second`; once every job has been picked up, two rows: created →
/// processing and queued → processing, each from jobs-svc's recorded times.
pub(crate) async fn pickup(mesh: &Mesh, options: &Options, per_second: f64) -> anyhow::Result<Vec<Report>> {
    let pace = Pace::Open { per_second };
    let db = mesh.server.database().await;
    let mut queued_to_processing = histogram();
    let load = async {
        let created = creates(mesh, options, pace).await?;
        let ids: HashSet<String> = created.answers.into_iter().collect();
        let moves = picked_up(&db, &ids).await?;
        let mut outcome = Outcome::new();
        outcome.errors = created.errors + (ids.len() - moves.len()) as u64;
        outcome.elapsed = created.elapsed;
        outcome.notes = created.notes;
        for m in moves.values() {
            outcome.answered(between(m.created, m.processing), ());
            queued_to_processing.saturating_record(crate::drive::micros(between(m.queued, m.processing)));
        }
        if moves.len() < ids.len() {
            outcome.notes.push(format!(
                "{} of {} jobs not picked up within {} s",
                ids.len() - moves.len(),
                ids.len(),
                PICKUP_DEADLINE.as_secs()
            ));
        }
        Ok(outcome)
    };
    let mut created = mesh.measure(Scenario::Pickup, "created→processing", pace.label(), load).await?;
    let resolution = "server clock, whole ms (job_transitions)".to_string();
    created.notes.push(resolution.clone());
    let queued = Report {
        variant: "queued→processing".into(),
        latency: queued_to_processing,
        notes: vec![resolution],
        ..created.clone()
    };
    Ok(vec![created, queued])
}

/// Static ads at `pace` for the options' duration; the answers are their ids.
async fn creates(mesh: &Mesh, options: &Options, pace: Pace) -> anyhow::Result<Outcome<String>> {
    let rest = mesh.rest.clone();
    drive(pace, options.duration, move |n| {
        let rest = rest.clone();
        async move { rest.static_ad(n).await }
    })
    .await
}

/// The time from one stored instant (milliseconds) to a later one; none if it is earlier.
fn between(from: i64, to: i64) -> Duration {
    Duration::from_millis(u64::try_from(to.saturating_sub(from)).unwrap_or(0))
}

/// When a job was created, queued and first taken, in jobs-svc's milliseconds.
struct Moves {
    created: i64,
    queued: i64,
    processing: i64,
}

/// The moves of every job of `ids` that a worker has taken, waiting (up to the deadline) until
/// all have been.
async fn picked_up(db: &DatabaseConnection, ids: &HashSet<String>) -> anyhow::Result<HashMap<String, Moves>> {
    let deadline = Instant::now() + PICKUP_DEADLINE;
    loop {
        let moves = recorded_moves(db, ids).await?;
        if moves.len() == ids.len() || Instant::now() > deadline {
            return Ok(moves);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn recorded_moves(db: &DatabaseConnection, ids: &HashSet<String>) -> anyhow::Result<HashMap<String, Moves>> {
    let sql = "SELECT j.id AS id, j.created_at AS created_at, t.to_status AS to_status, MIN(t.created_at) AS at \
               FROM jobs j JOIN job_transitions t ON t.job_id = j.id \
               WHERE t.to_status IN ('queued', 'processing') \
               GROUP BY j.id, j.created_at, t.to_status";
    let rows = db
        .query_all_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .context("reading the jobs' recorded moves (job_transitions)")?;
    let mut seen: HashMap<String, (i64, Option<i64>, Option<i64>)> = HashMap::new();
    for row in rows {
        let id: String = row.try_get("", "id")?;
        if !ids.contains(&id) {
            continue;
        }
        let created: i64 = row.try_get("", "created_at")?;
        let at: i64 = row.try_get("", "at")?;
        let entry = seen.entry(id).or_insert((created, None, None));
        match row.try_get::<String>("", "to_status")?.as_str() {
            "queued" => entry.1 = Some(at),
            _ => entry.2 = Some(at),
        }
    }
    Ok(seen
        .into_iter()
        .filter_map(|(id, (created, queued, processing))| {
            let processing = processing?;
            // A job taken before its create call moved it to queued has no queued move.
            Some((id, Moves { created, queued: queued.unwrap_or(processing), processing }))
        })
        .collect())
}
