//! A short run of the harness, so it keeps working: the load completes without errors and every
//! job is charged once. It checks no speed (the machines are shared).

use std::time::Duration;

use cutx_bench::{Options, Scenario};
use cutx_tests::{Infra, Mode};

async fn short_run_charges_each_job_once(mode: Mode) {
    if mode == Mode::Distributed && Infra::from_env().is_none() {
        return;
    }
    let options = |scenario| Options { scenario, concurrency: 4, duration: Duration::from_secs(2), jobs: 20 };

    let copy = cutx_bench::run(mode, &options(Scenario::Copy)).await.unwrap();
    assert!(copy.done > 0 && copy.errors == 0, "{copy:?}");
    assert_eq!(copy.charged, copy.done as i64, "one credit per copy job, charged once");
    assert_eq!(copy.latency.len(), copy.done);

    let ads = cutx_bench::run(mode, &options(Scenario::StaticAd)).await.unwrap();
    assert_eq!((ads.done, ads.errors), (20, 0), "{ads:?}");
    assert_eq!(ads.charged, 3 * 20, "three credits per static ad, charged once");

    let reads = cutx_bench::run(mode, &options(Scenario::GetJob)).await.unwrap();
    assert!(reads.done > 0 && reads.errors == 0, "{reads:?}");
    assert_eq!(reads.charged, 1, "only the copy job read back was charged");
    if mode == Mode::Dev {
        assert_eq!(reads.processes.len(), 1, "cutx dev is one process: {:?}", reads.processes);
        assert!(reads.processes[0].peak_rss_kib > 0);
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
