//! The floor: what the distributed mode's PostgreSQL does with a naive job lifecycle, measured
//! by pgbench in the same run as CutX, so CutX's jobs a second read as a multiple of it.
//!
//! A job is five commits: insert it, one debit transaction (lower the user's balance under a
//! check, add a ledger row), then three status updates. Eight clients, each debiting a user of
//! its own (so they do not queue on one row lock), run it for the scenario's duration in a
//! scratch database made for the run and dropped after it. The server's durability settings
//! are reported beside the figure: the floor and CutX share them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use cutx_tests::{Infra, Mode};
use sea_orm::{ConnectionTrait, Database, Statement};

use crate::drive::histogram;
use crate::mesh::used;
use crate::processes;
use crate::report::Report;
use crate::{Options, Scenario};

const CLIENTS: u32 = 8;

/// Where `scripts/infra.sh` takes PostgreSQL from, should the running server's folder not be
/// readable.
const INFRA_PG_BIN: &str = "/usr/lib/postgresql/15/bin";

const SCHEMA: &str = "
CREATE TABLE floor_jobs (
  id bigserial PRIMARY KEY,
  user_id integer NOT NULL,
  status text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE floor_balances (user_id integer PRIMARY KEY, balance bigint NOT NULL CHECK (balance >= 0));
CREATE TABLE floor_ledger (
  id bigserial PRIMARY KEY,
  user_id integer NOT NULL,
  job_id bigint NOT NULL REFERENCES floor_jobs (id),
  amount bigint NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
";

/// One job, five commits; pgbench's `client_id` counts from 0.
const SCRIPT: &str = r"\set user :client_id + 1
INSERT INTO floor_jobs (user_id, status) VALUES (:user, 'pending') RETURNING id \gset
BEGIN;
UPDATE floor_balances SET balance = balance - 1 WHERE user_id = :user AND balance >= 1;
INSERT INTO floor_ledger (user_id, job_id, amount) VALUES (:user, :id, -1);
COMMIT;
UPDATE floor_jobs SET status = 'queued', updated_at = now() WHERE id = :id;
UPDATE floor_jobs SET status = 'processing', updated_at = now() WHERE id = :id;
UPDATE floor_jobs SET status = 'completed', updated_at = now() WHERE id = :id;
";

pub(crate) async fn run(options: &Options) -> anyhow::Result<Report> {
    let infra = Infra::from_env().context("the floor needs scripts/infra.sh's PostgreSQL (source DIR/env)")?;
    let pgbench = pgbench()?;
    let url = infra.fresh_database().await;
    let measured = measure(&pgbench, &url, options).await;
    drop_database(&infra, &url).await;
    measured
}

async fn measure(pgbench: &Path, url: &str, options: &Options) -> anyhow::Result<Report> {
    let db = Database::connect(url).await.context("connecting to the floor's scratch database")?;
    db.execute_unprepared(SCHEMA).await.context("creating the floor's tables")?;
    db.execute_unprepared(&format!(
        "INSERT INTO floor_balances SELECT g, 1000000000000 FROM generate_series(1, {CLIENTS}) g"
    ))
    .await?;
    let settings = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT 'fsync=' || current_setting('fsync') || ', synchronous_commit=' || current_setting('synchronous_commit') \
             || ', full_page_writes=' || current_setting('full_page_writes') AS s",
        ))
        .await?
        .context("the server's settings")?
        .try_get::<String>("", "s")?;
    db.close().await?;

    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("job.sql"), SCRIPT)?;
    let watched: Vec<_> = processes::postgres().into_iter().collect();
    let before = processes::read(&watched);
    let seconds = options.duration.as_secs().max(1).to_string();
    let run = tokio::process::Command::new(pgbench)
        .args(["--no-vacuum", "--protocol=simple", "--client", &CLIENTS.to_string(), "--jobs", "2"])
        .args(["--time", &seconds, "--file", "job.sql", "--log", "--log-prefix", "floor"])
        .arg(url)
        .current_dir(dir.path())
        .output()
        .await
        .with_context(|| format!("running {}", pgbench.display()))?;
    let after = processes::read(&watched);
    let said = String::from_utf8_lossy(&run.stdout);
    ensure!(run.status.success(), "pgbench failed: {}{}", said, String::from_utf8_lossy(&run.stderr));

    let done: u64 = figure(&said, "number of transactions actually processed:")?;
    let failed: u64 = figure(&said, "number of failed transactions:").unwrap_or(0);
    let tps: f64 = figure(&said, "tps =")?;
    let mut latency = histogram();
    for log in std::fs::read_dir(dir.path())?.flatten() {
        if log.file_name().to_string_lossy().starts_with("floor.") {
            // client_id transaction_no time_us script_no epoch epoch_us
            for line in std::fs::read_to_string(log.path())?.lines() {
                if let Some(Ok(micros)) = line.split_whitespace().nth(2).map(str::parse::<u64>) {
                    latency.saturating_record(micros);
                }
            }
        }
    }
    Ok(Report {
        mode: Mode::Distributed,
        scenario: Scenario::Floor,
        variant: String::new(),
        pace: format!("{CLIENTS} clients"),
        done,
        errors: failed,
        // pgbench's rate leaves out the time its clients took to connect; so does this one.
        elapsed: if tps > 0.0 { Duration::from_secs_f64(done as f64 / tps) } else { Duration::ZERO },
        latency,
        charged: 0,
        processes: used(&before, &after),
        notes: vec![format!("pgbench, 5 commits a job; {settings}")],
    })
}

/// The number after `label` in pgbench's report.
fn figure<T: std::str::FromStr>(report: &str, label: &str) -> anyhow::Result<T> {
    let line = report
        .lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .with_context(|| format!("no {label:?} in pgbench's report"))?;
    let word = line.split_whitespace().next().unwrap_or_default();
    word.parse().map_err(|_| anyhow::anyhow!("{label:?} is followed by {word:?} in pgbench's report"))
}

/// pgbench beside the running server's `postgres`, else beside `scripts/infra.sh`'s, else on
/// the `PATH`.
fn pgbench() -> anyhow::Result<PathBuf> {
    let beside_server = processes::postgres()
        .and_then(|p| processes::executable(p.pid))
        .and_then(|exe| Some(exe.parent()?.join("pgbench")));
    let candidates = [beside_server, Some(Path::new(INFRA_PG_BIN).join("pgbench"))];
    if let Some(found) = candidates.into_iter().flatten().find(|p| p.is_file()) {
        return Ok(found);
    }
    match std::process::Command::new("pgbench").arg("--version").output() {
        Ok(out) if out.status.success() => Ok("pgbench".into()),
        _ => bail!("no pgbench beside the running postgres, in {INFRA_PG_BIN} or on the PATH"),
    }
}

/// Drops the scratch database; one left behind only costs disk space, so a failure is said and
/// forgotten.
async fn drop_database(infra: &Infra, url: &str) {
    let Some(name) = url.rsplit('/').next() else { return };
    let dropped = async {
        let admin = Database::connect(&infra.postgres_url).await?;
        admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await?;
        admin.close().await
    };
    if let Err(e) = dropped.await {
        eprintln!("bench: dropping the floor's database {name}: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgbench_figures_are_read_from_its_report() {
        let report = "number of clients: 8\nnumber of transactions actually processed: 12345\n\
                      number of failed transactions: 0 (0.000%)\nlatency average = 5.1 ms\n\
                      tps = 1234.567890 (without initial connection time)\n";
        assert_eq!(figure::<u64>(report, "number of transactions actually processed:").unwrap(), 12345);
        assert_eq!(figure::<u64>(report, "number of failed transactions:").unwrap(), 0);
        assert!((figure::<f64>(report, "tps =").unwrap() - 1234.56789).abs() < 1e-9);
        assert!(figure::<u64>(report, "no such line").is_err());
    }
}
