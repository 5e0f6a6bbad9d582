//! Load on a CutX started on loopback, in either mode, with the machine's floor beside it
//! (issue 9). Each scenario starts its own CutX (a fresh database, a signed-in user who can pay
//! for anything), applies its load, and stops it; each measured load is one row of the table:
//! throughput, latency percentiles from an HDR histogram, errors, credits charged, and each
//! process's CPU time and memory from `/proc`.
//!
//! A load is either closed (a fixed number of callers) or open (a fixed arrival rate, latency
//! counted from each call's scheduled departure, so slow answers are not hidden). Load stays on
//! loopback and stops by itself. Nothing here judges a speed: debug builds and shared machines
//! make the figures what they are.

mod drive;
mod floor;
mod grpc;
mod jobs;
mod mesh;
mod pickup;
mod processes;
mod reads;
mod report;
mod rest;
mod startup;
mod webhooks;

use std::time::Duration;

pub use cutx_tests::Mode;
pub use report::{ProcessUse, Report, table};

use crate::drive::Pace;
use crate::mesh::Mesh;

/// What a load does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// `cutx dev` only: time from spawning the process to its gateway answering the health check
    /// `SERVING`, and resident memory idle before any load.
    Startup,
    /// Distributed only: pgbench's naive five-commit job on the same PostgreSQL, the floor the
    /// jobs rows are quoted against.
    Floor,
    /// `POST /api/generate/copy` (synchronous, 1 credit): each answer is a completed job.
    Copy,
    /// `POST /api/generate/static-ad` (queued, 3 credits), then until every job is completed.
    StaticAd,
    /// Static-ad creates at a fixed arrival rate (500/s unless `--rate`): the create call's
    /// latency from its scheduled departure.
    CreateRate,
    /// Static-ad creates at a low fixed rate (20/s unless `--rate`): how soon each is taken,
    /// created → processing and queued → processing.
    Pickup,
    /// `GetJob` of one completed job over REST and gRPC through the gateway and over gRPC
    /// straight to jobs-svc, one after the other on the same CutX.
    GetJob,
    /// Replicate's signed callbacks to webhook-svc, about static ads handed to a fake Replicate:
    /// `processing` callbacks for the duration (each recorded in its job's history), then each
    /// job's `succeeded` callback once (its output copied, the job completed).
    Webhooks,
}

impl Scenario {
    /// Every scenario, in the order a full run takes them.
    pub const ALL: [Scenario; 8] = [
        Self::Startup,
        Self::Floor,
        Self::Copy,
        Self::StaticAd,
        Self::CreateRate,
        Self::Pickup,
        Self::GetJob,
        Self::Webhooks,
    ];

    /// The name on the command line and in the table.
    pub fn name(self) -> &'static str {
        match self {
            Self::Startup => "startup",
            Self::Floor => "floor",
            Self::Copy => "copy",
            Self::StaticAd => "static-ad",
            Self::CreateRate => "create-rate",
            Self::Pickup => "pickup",
            Self::GetJob => "get-job",
            Self::Webhooks => "webhooks",
        }
    }

    /// Whether the scenario means anything in `mode` (`startup` is `cutx dev`'s, the floor needs
    /// the distributed mode's PostgreSQL).
    pub fn applies_to(self, mode: Mode) -> bool {
        match self {
            Self::Startup => mode == Mode::Dev,
            Self::Floor => mode == Mode::Distributed,
            Self::Copy | Self::StaticAd | Self::CreateRate | Self::Pickup | Self::GetJob | Self::Webhooks => true,
        }
    }
}

/// What makes the queued jobs' files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Provider {
    /// `--instant-provider`: a tiny fixed file at once, so a row measures CutX's own cost.
    Instant,
    /// The default local providers (the renderer draws and encodes each static ad).
    Local,
}

impl Provider {
    pub fn name(self) -> &'static str {
        match self {
            Self::Instant => "instant",
            Self::Local => "local",
        }
    }
}

/// `create-rate`'s arrival rate when none is given: the target is quoted at it.
pub const CREATE_RATE: f64 = 500.0;

/// `pickup`'s arrival rate when none is given: low enough that workers wait for jobs.
pub const PICKUP_RATE: f64 = 20.0;

#[derive(Debug, Clone)]
pub struct Options {
    pub scenario: Scenario,
    /// Callers of a closed loop (and gRPC connections of `get-job`).
    pub concurrency: usize,
    /// How long each timed load runs (the floor's pgbench too).
    pub duration: Duration,
    /// How many jobs `static-ad` creates.
    pub jobs: usize,
    /// Calls a second, sent on schedule (open loop), for `copy`, `create-rate`, `pickup` and
    /// `get-job`; `None`: `create-rate` at 500/s, `pickup` at 20/s, the others closed loop.
    pub rate: Option<f64>,
    /// How many times `startup` starts `cutx dev`.
    pub starts: usize,
    /// What makes the queued jobs' files (copy is the template copywriter either way).
    pub provider: Provider,
}

impl Options {
    /// Open at the given rate, else closed at the concurrency.
    fn pace(&self) -> Pace {
        match self.rate {
            Some(per_second) => Pace::Open { per_second },
            None => Pace::Closed { callers: self.concurrency },
        }
    }
}

/// Runs one scenario in `mode`: its rows of the table (`get-job` and `pickup` measure several
/// things on one CutX). A scenario that does not apply to `mode` is an error.
pub async fn run(mode: Mode, options: &Options) -> anyhow::Result<Vec<Report>> {
    let scenario = options.scenario;
    anyhow::ensure!(scenario.applies_to(mode), "{} does not run in {} mode", scenario.name(), report::mode_name(mode));
    match scenario {
        Scenario::Startup => return Ok(vec![startup::run(options).await?]),
        Scenario::Floor => return Ok(vec![floor::run(options).await?]),
        // Its own CutX, with a fake Replicate behind it; the provider is Replicate.
        Scenario::Webhooks => return webhooks::webhooks(mode, options).await,
        Scenario::Copy | Scenario::StaticAd | Scenario::CreateRate | Scenario::Pickup | Scenario::GetJob => {}
    }
    let mesh = Mesh::start(mode, options.provider).await?;
    let reports = match scenario {
        Scenario::Copy => jobs::copy(&mesh, options, options.pace()).await.map(|r| vec![r]),
        Scenario::StaticAd => jobs::static_ads(&mesh, options).await.map(|r| vec![r]),
        Scenario::CreateRate => {
            pickup::create_rate(&mesh, options, options.rate.unwrap_or(CREATE_RATE)).await.map(|r| vec![r])
        }
        Scenario::Pickup => pickup::pickup(&mesh, options, options.rate.unwrap_or(PICKUP_RATE)).await,
        Scenario::GetJob => reads::get_job(&mesh, options, options.pace()).await,
        Scenario::Startup | Scenario::Floor | Scenario::Webhooks => unreachable!("run above without this mesh"),
    };
    mesh.stop().await;
    let mut reports = reports?;
    if scenario != Scenario::GetJob {
        for report in &mut reports {
            let provider = options.provider.name();
            report.variant = match report.variant.is_empty() {
                true => provider.to_string(),
                false => format!("{provider}, {}", report.variant),
            };
        }
    }
    Ok(reports)
}
