//! `cutx-bench`: runs the load scenarios against CutX started on loopback and prints a table.
//!
//!   cargo build --release -p cutx -p cutx-bench
//!   source /tmp/infra-bench/env   # scripts/infra.sh start /tmp/infra-bench, for distributed
//!   target/release/cutx-bench --mode both
//!
//! Every scenario runs in every mode it applies to unless `--scenario` picks some. The `cutx`
//! binary used is the one beside this one (build both with the same profile), or `CUTX_BIN`.
//! Progress goes to stderr, the table to stdout.

use std::time::Duration;

use clap::Parser;
use cutx_bench::{Mode, Options, Report, Scenario};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Modes {
    Dev,
    Distributed,
    Both,
}

#[derive(Parser)]
#[command(
    name = "cutx-bench",
    about = "Load on CutX over REST and gRPC, closed or open loop, beside the PostgreSQL floor: throughput, latency, CPU and memory"
)]
struct Args {
    /// `distributed` and `both` need scripts/infra.sh's servers (`source DIR/env`).
    #[arg(long, value_enum, default_value = "dev")]
    mode: Modes,
    /// Scenarios to run (every one when none is given; each only in the modes it applies to).
    #[arg(long, value_enum)]
    scenario: Vec<Scenario>,
    /// Callers of the closed-loop scenarios (copy, static-ad, get-job without --rate).
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// How long each timed load runs (and pgbench).
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Jobs the static-ad scenario creates and waits for.
    #[arg(long, default_value_t = 300)]
    jobs: usize,
    /// Calls a second, sent on schedule whatever the answers (open loop), for copy, create-rate,
    /// pickup and get-job; repeat it to run them at each rate. Without it create-rate runs at
    /// 500/s, pickup at 20/s, copy and get-job closed loop.
    #[arg(long)]
    rate: Vec<f64>,
    /// How many times the startup scenario starts `cutx dev`.
    #[arg(long, default_value_t = 3)]
    starts: usize,
    /// What makes the queued jobs' files; repeat it to run static-ad with each. By default
    /// static-ad runs with both, create-rate and pickup with the instant one (CutX's own cost),
    /// copy and get-job with the local ones (copy is the template copywriter either way).
    #[arg(long, value_enum)]
    provider: Vec<cutx_bench::Provider>,
}

/// The providers a scenario runs with when `--provider` says nothing.
fn default_providers(scenario: Scenario) -> Vec<cutx_bench::Provider> {
    use cutx_bench::Provider::{Instant, Local};
    match scenario {
        Scenario::StaticAd => vec![Instant, Local],
        Scenario::CreateRate | Scenario::Pickup => vec![Instant],
        _ => vec![Local],
    }
}

/// Whether `--rate` changes how the scenario runs.
fn takes_rate(scenario: Scenario) -> bool {
    matches!(scenario, Scenario::Copy | Scenario::CreateRate | Scenario::Pickup | Scenario::GetJob | Scenario::Webhooks)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.concurrency == 0 || args.seconds == 0 || args.jobs == 0 || args.starts == 0 {
        anyhow::bail!("--concurrency, --seconds, --jobs and --starts must be at least 1");
    }
    if let Some(bad) = args.rate.iter().find(|r| !(r.is_finite() && **r > 0.0)) {
        anyhow::bail!("--rate {bad}: a rate is a positive number of calls a second");
    }
    let modes = match args.mode {
        Modes::Dev => vec![Mode::Dev],
        Modes::Distributed => vec![Mode::Distributed],
        Modes::Both => vec![Mode::Dev, Mode::Distributed],
    };
    if modes.contains(&Mode::Distributed) && cutx_tests::Infra::from_env().is_none() {
        anyhow::bail!(
            "the distributed mode needs scripts/infra.sh's servers: scripts/infra.sh start DIR, then source DIR/env"
        );
    }
    let scenarios = if args.scenario.is_empty() { Scenario::ALL.to_vec() } else { args.scenario.clone() };
    if cfg!(debug_assertions) {
        eprintln!("bench: a debug build; its figures say nothing about CutX's speed (use --release)");
    }
    let mut reports: Vec<Report> = Vec::new();
    let mut failed = Vec::new();
    for &mode in &modes {
        for &scenario in &scenarios {
            if !scenario.applies_to(mode) {
                continue;
            }
            let rates: Vec<Option<f64>> = if takes_rate(scenario) && !args.rate.is_empty() {
                args.rate.iter().copied().map(Some).collect()
            } else {
                vec![None]
            };
            let providers = if args.provider.is_empty() { default_providers(scenario) } else { args.provider.clone() };
            let runs = rates.iter().flat_map(|&rate| providers.iter().map(move |&provider| (rate, provider)));
            for (rate, provider) in runs.collect::<Vec<_>>() {
                let options = Options {
                    scenario,
                    concurrency: args.concurrency,
                    duration: Duration::from_secs(args.seconds),
                    jobs: args.jobs,
                    rate,
                    starts: args.starts,
                    provider,
                };
                eprintln!(
                    "bench: {mode:?} {} ({}){}",
                    scenario.name(),
                    provider.name(),
                    rate.map(|r| format!(" at {r}/s")).unwrap_or_default()
                );
                match cutx_bench::run(mode, &options).await {
                    Ok(rows) => {
                        for row in &rows {
                            eprintln!("{}", row.line());
                        }
                        reports.extend(rows);
                    }
                    Err(e) => {
                        eprintln!("bench: {mode:?} {} failed: {e:#}", scenario.name());
                        failed.push(format!("{mode:?} {}", scenario.name()));
                    }
                }
            }
        }
    }
    println!("{}", cutx_bench::table(&reports));
    if !failed.is_empty() {
        anyhow::bail!("these scenarios failed: {}", failed.join(", "));
    }
    Ok(())
}
