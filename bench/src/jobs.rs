//! Jobs end to end: `copy` (synchronous, so each answer is a completed job) and `static_ad`
//! (queued, counted when seen completed).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;

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
/// is completed; latency is from a job's create answer to the read that saw it completed.
pub(crate) async fn static_ads(mesh: &Mesh, options: &Options) -> anyhow::Result<Report> {
    let pace = Pace::Closed { callers: options.concurrency };
    mesh.measure(Scenario::StaticAd, "", pace.label(), create_and_complete(mesh, options)).await
}

async fn create_and_complete(mesh: &Mesh, options: &Options) -> anyhow::Result<Outcome> {
    let start = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let creators: Vec<_> = (0..options.concurrency)
        .map(|_| {
            let (rest, next, jobs) = (mesh.rest.clone(), next.clone(), options.jobs);
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
    let mut pending = HashMap::new();
    let mut outcome = Outcome::new();
    for creator in creators {
        let created = creator.await?;
        pending.extend(created.answers);
        outcome.errors += created.errors;
        if outcome.notes.is_empty() {
            outcome.notes = created.notes;
        }
    }
    let deadline = Instant::now() + COMPLETION_DEADLINE;
    let rest = &mesh.rest;
    while !pending.is_empty() {
        if Instant::now() > deadline {
            bail!("{} static ads were not completed within {} s", pending.len(), COMPLETION_DEADLINE.as_secs());
        }
        let page = rest.get("/api/jobs?limit=100&status=completed").await?;
        for job in page["jobs"].as_array().into_iter().flatten() {
            if let Some(created) = job["id"].as_str().and_then(|id| pending.remove(id)) {
                outcome.answered(created.elapsed(), ());
            }
        }
        let failed = rest.get("/api/jobs?limit=100&status=failed").await?;
        for job in failed["jobs"].as_array().into_iter().flatten() {
            if let Some(id) = job["id"].as_str()
                && pending.remove(id).is_some()
            {
                outcome.failed(&anyhow::anyhow!("static ad {id} failed: {}", job["error"]));
            }
        }
        // Completed jobs beyond the first page are found by their own reads.
        if page["jobs"].as_array().is_some_and(|j| j.len() == 100) {
            let ids: Vec<String> = pending.keys().take(50).cloned().collect();
            for id in ids {
                let job = rest.get(&format!("/api/jobs/{id}")).await?;
                match job["status"].as_str() {
                    Some("completed") => {
                        if let Some(created) = pending.remove(&id) {
                            outcome.answered(created.elapsed(), ());
                        }
                    }
                    Some(ended @ ("failed" | "canceled" | "expired")) => {
                        pending.remove(&id);
                        outcome.failed(&anyhow::anyhow!("static ad {id} {ended}: {}", job["error"]));
                    }
                    _ => {}
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    outcome.elapsed = start.elapsed();
    Ok(outcome)
}
