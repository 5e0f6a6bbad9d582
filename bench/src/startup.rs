//! `cutx dev`'s start: the time from spawning the process (in a fresh data folder, so it makes
//! its secrets and migrates a new database, as on a first run) until the gateway answers the
//! gRPC health check `SERVING`, and its resident memory idle, a second later, before any load.

use std::time::{Duration, Instant};

use anyhow::bail;
use cutx_tests::{Mode, Server};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use crate::drive::{histogram, micros};
use crate::mesh::ENV;
use crate::processes::{self, Reading};
use crate::report::{ProcessUse, Report};
use crate::{Options, Scenario};

/// How long the process idles, after it is ready, before its memory is read.
const IDLE: Duration = Duration::from_secs(1);

const READY_DEADLINE: Duration = Duration::from_secs(60);

pub(crate) async fn run(options: &Options) -> anyhow::Result<Report> {
    let (mut to_ready, mut to_listening) = (histogram(), histogram());
    let (mut idle_kib, mut cpu, mut peak_kib, mut ready_kib) = (Vec::new(), Duration::ZERO, 0u64, Vec::new());
    let began_all = Instant::now();
    for _ in 0..options.starts {
        let began = Instant::now();
        let server = Server::spawn_with(&ENV).await;
        to_listening.saturating_record(micros(began.elapsed()));
        wait_serving(&server.base, began + READY_DEADLINE).await?;
        to_ready.saturating_record(micros(began.elapsed()));
        let watched = processes::of(&server);
        let ready = processes::read(&watched);
        tokio::time::sleep(IDLE).await;
        let idle = processes::read(&watched);
        server.stop().await;
        let (Some(ready), Some(idle)) = (dev(&ready), dev(&idle)) else { bail!("cutx dev exited while idle") };
        ready_kib.push(ready.rss_kib.unwrap_or(0));
        idle_kib.push(idle.rss_kib.unwrap_or(0));
        peak_kib = peak_kib.max(idle.peak_rss_kib.unwrap_or(0));
        cpu += ready.cpu;
    }
    let mb = |kib: Option<&u64>| kib.map_or(0, |k| k / 1024);
    idle_kib.sort_unstable();
    Ok(Report {
        mode: Mode::Dev,
        scenario: Scenario::Startup,
        variant: String::new(),
        pace: format!("{} starts", options.starts),
        done: idle_kib.len() as u64,
        errors: 0,
        elapsed: began_all.elapsed(),
        latency: to_ready,
        charged: 0,
        processes: vec![ProcessUse {
            name: "cutx dev".into(),
            // The table divides by the starts: CPU time per start.
            cpu,
            rss_before_kib: ready_kib.iter().max().copied(),
            peak_rss_kib: Some(peak_kib),
        }],
        notes: vec![
            format!(
                "latency: spawn → health SERVING, of which spawn → `listening` line p50 {:.0} ms, max {:.0} ms; CPU: spawn → ready",
                to_listening.value_at_quantile(0.5) as f64 / 1000.0,
                to_listening.max() as f64 / 1000.0
            ),
            format!("idle VmRSS {} s after ready: {}–{} MB", IDLE.as_secs(), mb(idle_kib.first()), mb(idle_kib.last())),
        ],
    })
}

fn dev(readings: &[Reading]) -> Option<&Reading> {
    readings.iter().find(|r| r.name == "cutx dev")
}

/// Asks the gateway's health service until it answers `SERVING`, on a new connection each time.
async fn wait_serving(base: &str, deadline: Instant) -> anyhow::Result<()> {
    loop {
        if serving(base).await {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("cutx dev at {base} was not serving within {} s", READY_DEADLINE.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn serving(base: &str) -> bool {
    let Ok(endpoint) = tonic::transport::Endpoint::from_shared(base.to_string()) else { return false };
    let Ok(channel) = endpoint.tcp_nodelay(true).connect().await else { return false };
    let answer = HealthClient::new(channel).check(HealthCheckRequest { service: String::new() }).await;
    answer.is_ok_and(|a| a.get_ref().status == ServingStatus::Serving as i32)
}
