//! Short runs of the harness, so it keeps working: every load completes without errors, every
//! job is charged once, and each scenario reports the rows it promises. No speed is checked
//! (the machines are shared and these are debug builds).

use std::time::Duration;

use cutx_bench::{Mode, Options, Provider, Report, Scenario};
use cutx_tests::Infra;

fn options(scenario: Scenario) -> Options {
    Options {
        scenario,
        concurrency: 4,
        duration: Duration::from_secs(2),
        jobs: 20,
        rate: None,
        starts: 1,
        provider: Provider::Local,
    }
}

/// Whether `mode` can run here (the distributed mode needs scripts/infra.sh's servers).
fn available(mode: Mode) -> bool {
    mode == Mode::Dev || Infra::from_env().is_some()
}

async fn one_row(mode: Mode, options: Options) -> Report {
    let mut rows = cutx_bench::run(mode, &options).await.unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    rows.pop().unwrap()
}

async fn short_run_charges_each_job_once(mode: Mode) {
    if !available(mode) {
        return;
    }
    let copy = one_row(mode, options(Scenario::Copy)).await;
    assert!(copy.done > 0 && copy.errors == 0, "{copy:?}");
    assert_eq!(copy.charged, copy.done as i64, "one credit per copy job, charged once");
    assert_eq!(copy.latency.len(), copy.done);

    for provider in [Provider::Local, Provider::Instant] {
        let ads = one_row(mode, Options { provider, ..options(Scenario::StaticAd) }).await;
        assert_eq!((ads.done, ads.errors), (20, 0), "{ads:?}");
        assert_eq!(ads.charged, 3 * 20, "three credits per static ad, charged once");
        assert_eq!(ads.variant, provider.name());
        let cutx = if mode == Mode::Dev { "cutx dev" } else { "jobs" };
        assert!(ads.processes.iter().any(|p| p.name == cutx && p.peak_rss_kib.is_some_and(|k| k > 0)), "{ads:?}");
    }
}

async fn open_loop_at_a_low_rate_sends_every_create_on_schedule(mode: Mode) {
    if !available(mode) {
        return;
    }
    let at = |scenario, per_second| Options {
        rate: Some(per_second),
        duration: Duration::from_secs(1),
        ..options(scenario)
    };

    let creates = one_row(mode, at(Scenario::CreateRate, 20.0)).await;
    assert_eq!((creates.done, creates.errors), (20, 0), "every scheduled create answered: {creates:?}");
    assert_eq!(creates.charged, 3 * 20, "three credits per static ad, charged once");
    assert_eq!(creates.latency.len(), 20);

    let rows = cutx_bench::run(mode, &at(Scenario::Pickup, 10.0)).await.unwrap();
    let variants: Vec<&str> = rows.iter().map(|r| r.variant.as_str()).collect();
    assert_eq!(variants, ["local, created→processing", "local, queued→processing"]);
    for row in &rows {
        assert_eq!((row.done, row.errors), (10, 0), "every job created was picked up: {row:?}");
        assert_eq!(row.latency.len(), 10);
        assert_eq!(row.charged, 3 * 10);
    }
}

async fn get_job_is_read_three_ways(mode: Mode) {
    if !available(mode) {
        return;
    }
    let rows = cutx_bench::run(mode, &options(Scenario::GetJob)).await.unwrap();
    let variants: Vec<&str> = rows.iter().map(|r| r.variant.as_str()).collect();
    assert_eq!(variants, ["rest", "grpc gateway", "grpc direct"], "jobs-svc was reached straight: {rows:?}");
    for row in &rows {
        assert!(row.done > 0 && row.errors == 0, "{row:?}");
        assert_eq!(row.charged, 0, "reads charge nothing");
    }
    for gateway in &rows[..2] {
        assert!(gateway.notes.iter().any(|n| n.ends_with("x direct")), "{:?}", gateway.notes);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_benchmark_run_completes_without_errors_and_charges_each_job_once_in_dev() {
    short_run_charges_each_job_once(Mode::Dev).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_benchmark_run_completes_without_errors_and_charges_each_job_once_when_distributed() {
    short_run_charges_each_job_once(Mode::Distributed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_loop_at_a_low_rate_answers_every_create_and_each_job_is_picked_up_in_dev() {
    open_loop_at_a_low_rate_sends_every_create_on_schedule(Mode::Dev).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_loop_at_a_low_rate_answers_every_create_and_each_job_is_picked_up_when_distributed() {
    open_loop_at_a_low_rate_sends_every_create_on_schedule(Mode::Distributed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_job_is_read_over_rest_and_grpc_through_the_gateway_and_straight_from_jobs_svc_in_dev() {
    get_job_is_read_three_ways(Mode::Dev).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_job_is_read_over_rest_and_grpc_through_the_gateway_and_straight_from_jobs_svc_when_distributed() {
    get_job_is_read_three_ways(Mode::Distributed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cutx_dev_is_timed_from_spawn_to_ready_with_its_idle_memory() {
    let start = one_row(Mode::Dev, options(Scenario::Startup)).await;
    assert_eq!((start.done, start.errors, start.latency.len()), (1, 0, 1), "{start:?}");
    assert!(start.processes[0].rss_before_kib.is_some_and(|k| k > 0), "{start:?}");
    assert!(start.notes.iter().any(|n| n.starts_with("idle VmRSS")), "{:?}", start.notes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_floor_runs_pgbench_jobs_on_the_same_postgresql_without_errors() {
    if !available(Mode::Distributed) {
        return;
    }
    let floor = one_row(Mode::Distributed, options(Scenario::Floor)).await;
    assert!(floor.done > 0 && floor.errors == 0, "{floor:?}");
    assert_eq!(floor.latency.len(), floor.done, "pgbench logged every job");
    assert!(floor.notes[0].contains("synchronous_commit="), "the server's settings are stated: {:?}", floor.notes);
}

#[test]
fn a_scenario_outside_its_mode_is_refused_rather_than_run() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for (scenario, mode) in [(Scenario::Startup, Mode::Distributed), (Scenario::Floor, Mode::Dev)] {
        let refused = runtime.block_on(cutx_bench::run(mode, &options(scenario))).unwrap_err();
        assert!(refused.to_string().contains("does not run in"), "{refused}");
    }
}

async fn signed_webhooks_are_each_applied_once(mode: Mode) {
    if !available(mode) {
        return;
    }
    let rows = cutx_bench::run(mode, &options(Scenario::Webhooks)).await.unwrap();
    let variants: Vec<&str> = rows.iter().map(|r| r.variant.as_str()).collect();
    assert_eq!(variants, ["progress", "completed"], "{rows:?}");
    let (progress, completed) = (&rows[0], &rows[1]);
    assert!(progress.done > 0 && progress.errors == 0, "{progress:?}");
    assert!(progress.notes.iter().any(|n| n == &format!("{} recorded in the jobs' history", progress.done)));
    assert_eq!((completed.done, completed.errors), (20, 0), "each job's completion applied: {completed:?}");
    assert_eq!(completed.latency.len(), 20);
    for row in &rows {
        assert_eq!(row.charged, 0, "callbacks move no credits (the jobs were charged when created)");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_replicate_webhooks_are_applied_and_each_job_completed_once_in_dev() {
    signed_webhooks_are_each_applied_once(Mode::Dev).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_replicate_webhooks_are_applied_and_each_job_completed_once_when_distributed() {
    signed_webhooks_are_each_applied_once(Mode::Distributed).await;
}
