//! `cutx-bench`: runs the load scenarios against CutX started on loopback and prints a table.
//!
//!   cargo run --release -p cutx-bench -- --mode dev --scenario copy --concurrency 16 --seconds 10
//!
//! The distributed mode needs scripts/infra.sh's servers (`source DIR/env` first). The `cutx`
//! binary used is the one beside this one (build both with the same profile), or `CUTX_BIN`.

use std::time::Duration;

use clap::Parser;
use cutx_bench::{Options, Report, Scenario};
use cutx_tests::Mode;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Modes {
    Dev,
    Distributed,
    Both,
}

#[derive(Parser)]
#[command(name = "cutx-bench", about = "Load on CutX over REST: throughput, latency, CPU and memory")]
struct Args {
    #[arg(long, value_enum, default_value = "dev")]
    mode: Modes,
    /// Scenarios to run (every one when none is given).
    #[arg(long, value_enum)]
    scenario: Vec<Scenario>,
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// How long each timed scenario runs.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Jobs the static-ad scenario creates.
    #[arg(long, default_value_t = 1000)]
    jobs: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.concurrency == 0 || args.seconds == 0 || args.jobs == 0 {
        anyhow::bail!("--concurrency, --seconds and --jobs must be at least 1");
    }
    let modes = match args.mode {
        Modes::Dev => vec![Mode::Dev],
        Modes::Distributed => vec![Mode::Distributed],
        Modes::Both => vec![Mode::Dev, Mode::Distributed],
    };
    let scenarios = if args.scenario.is_empty() {
        vec![Scenario::Copy, Scenario::StaticAd, Scenario::GetJob]
    } else {
        args.scenario
    };
    println!("{}", Report::HEADER);
    for mode in modes {
        for &scenario in &scenarios {
            let options = Options {
                scenario,
                concurrency: args.concurrency,
                duration: Duration::from_secs(args.seconds),
                jobs: args.jobs,
            };
            let report = cutx_bench::run(mode, &options).await?;
            println!("{}", report.row());
        }
    }
    Ok(())
}
