//! Load on a CutX started on loopback, in either mode: jobs and reads driven over REST at a
//! fixed concurrency (closed loop), with latency percentiles from an HDR histogram, errors,
//! credits charged, and each CutX process's CPU time and peak memory (from `/proc`).
//!
//! First cut of issue 9's harness: the open-loop (fixed arrival rate) scenarios, gRPC, pick-up
//! latency, webhooks and the pgbench floor are still to come.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cutx_tests::{Client, Infra, Mode, Server, Transport};
use hdrhistogram::Histogram;
use serde_json::{Value, json};

/// What the load does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// `POST /api/generate/copy` (synchronous, 1 credit): each answer is a completed job.
    Copy,
    /// `POST /api/generate/static-ad` (queued, 3 credits), then until every job is completed.
    StaticAd,
    /// `GET /api/jobs/{id}` of one completed job.
    GetJob,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub scenario: Scenario,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// How long `copy` and `get-job` run.
    pub duration: Duration,
    /// How many jobs `static-ad` creates.
    pub jobs: usize,
}

/// One CutX process's use of the machine during the load.
#[derive(Debug, Clone)]
pub struct ProcessUse {
    pub name: String,
    pub cpu: Duration,
    pub peak_rss_kib: u64,
}

#[derive(Debug)]
pub struct Report {
    pub mode: Mode,
    pub scenario: Scenario,
    /// Requests answered 2xx (for `static-ad`, jobs completed).
    pub done: u64,
    pub errors: u64,
    pub elapsed: Duration,
    /// Microseconds per request (for `static-ad`, from create to seen completed).
    pub latency: Histogram<u64>,
    /// Credits the user's balance went down by.
    pub charged: i64,
    pub processes: Vec<ProcessUse>,
}

impl Report {
    pub fn per_second(&self) -> f64 {
        self.done as f64 / self.elapsed.as_secs_f64()
    }

    fn ms(&self, quantile: f64) -> f64 {
        self.latency.value_at_quantile(quantile) as f64 / 1000.0
    }

    /// One row of the results table.
    pub fn row(&self) -> String {
        let cpu: Vec<String> = self
            .processes
            .iter()
            .map(|p| format!("{} {:.1} s / {} MB", p.name, p.cpu.as_secs_f64(), p.peak_rss_kib / 1024))
            .collect();
        format!(
            "| {:?} | {:?} | {} | {:.0}/s | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} |",
            self.mode,
            self.scenario,
            self.done,
            self.per_second(),
            self.ms(0.5),
            self.ms(0.9),
            self.ms(0.99),
            self.ms(0.999),
            self.latency.max() as f64 / 1000.0,
            self.errors,
            cpu.join(", "),
        )
    }

    pub const HEADER: &'static str = "| mode | scenario | done | rate | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | errors | CPU time / peak RSS |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |";
}

/// Starts CutX in `mode` with a user who can pay for anything, runs the load, stops CutX.
pub async fn run(mode: Mode, options: &Options) -> anyhow::Result<Report> {
    let env = [("CUTX_FREE_CREDITS", "1000000000"), ("CUTX_LOG", "error")];
    let server = match mode {
        Mode::Dev => Server::spawn_with(&env).await,
        Mode::Distributed => {
            let infra =
                Infra::from_env().context("the distributed mode needs scripts/infra.sh's servers (CUTX_TEST_*)")?;
            Server::spawn_distributed_with(&infra, &env).await
        }
    };
    let mut client = Client::new(&server, Transport::Rest);
    client.sign_in("bench@example.com").await;
    let token = client.token().context("signed in")?.to_string();
    let load = Load { http: http_client(options.concurrency)?, base: server.base.clone(), token };
    let before_balance = load.balance().await?;
    let before = usage(&server);
    let (done, errors, elapsed, latency) = match options.scenario {
        Scenario::Copy => load.closed_loop(options, |load, n| Box::pin(load.copy(n))).await?,
        Scenario::GetJob => {
            let job = load.copy(0).await?;
            let id = job["jobId"].as_str().context("a job id")?.to_string();
            load.closed_loop(options, move |load, _| {
                let path = format!("/api/jobs/{id}");
                Box::pin(async move { load.get(&path).await })
            })
            .await?
        }
        Scenario::StaticAd => load.static_ads(options).await?,
    };
    let after = usage(&server);
    let charged = before_balance - load.balance().await?;
    let processes = after
        .into_iter()
        .map(|(name, cpu, peak_rss_kib)| {
            let was = before.iter().find(|(n, ..)| *n == name).map_or(Duration::ZERO, |(_, c, _)| *c);
            ProcessUse { name, cpu: cpu.saturating_sub(was), peak_rss_kib }
        })
        .collect();
    server.stop().await;
    Ok(Report { mode, scenario: options.scenario, done, errors, elapsed, latency, charged, processes })
}

fn http_client(concurrency: usize) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder().pool_max_idle_per_host(concurrency).tcp_nodelay(true).build()?)
}

#[derive(Clone)]
struct Load {
    http: reqwest::Client,
    base: String,
    token: String,
}

type Outcome = (u64, u64, Duration, Histogram<u64>);

impl Load {
    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let answer = request.bearer_auth(&self.token).send().await?;
        let status = answer.status();
        let body: Value = answer.json().await?;
        if !status.is_success() {
            bail!("HTTP {status}: {body}");
        }
        Ok(body)
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(self.http.get(format!("{}{path}", self.base))).await
    }

    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.send(self.http.post(format!("{}{path}", self.base)).json(&body)).await
    }

    async fn balance(&self) -> anyhow::Result<i64> {
        self.get("/api/credits/balance").await?["balance"].as_i64().context("a balance")
    }

    async fn copy(&self, n: u64) -> anyhow::Result<Value> {
        let body = json!({ "platform": "meta", "format": "short", "tone": "playful", "customInstructions": format!("bench {n}") });
        self.post("/api/generate/copy", body).await
    }

    /// `concurrency` callers, each calling `call` again as soon as it answers, for `duration`.
    async fn closed_loop<F>(&self, options: &Options, call: F) -> anyhow::Result<Outcome>
    where
        F: Fn(&Load, u64) -> std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<Value>> + Send + '_>>
            + Send
            + Sync
            + 'static,
    {
        let load = std::sync::Arc::new(self.clone());
        let call = std::sync::Arc::new(call);
        let start = Instant::now();
        let until = start + options.duration;
        let callers: Vec<_> = (0..options.concurrency as u64)
            .map(|caller| {
                let (load, call) = (load.clone(), call.clone());
                tokio::spawn(async move {
                    let mut latency = histogram();
                    let (mut done, mut errors, mut n) = (0u64, 0u64, caller << 32);
                    while Instant::now() < until {
                        let sent = Instant::now();
                        match call(&load, n).await {
                            Ok(_) => {
                                done += 1;
                                latency.saturating_record(sent.elapsed().as_micros() as u64);
                            }
                            Err(e) => {
                                if errors == 0 {
                                    eprintln!("bench: first error of caller {caller}: {e:#}");
                                }
                                errors += 1;
                            }
                        }
                        n += 1;
                    }
                    (done, errors, latency)
                })
            })
            .collect();
        let mut total = (0, 0, histogram());
        for caller in callers {
            let (done, errors, latency) = caller.await?;
            total.0 += done;
            total.1 += errors;
            total.2.add(latency)?;
        }
        Ok((total.0, total.1, start.elapsed(), total.2))
    }

    /// Creates `jobs` static ads, `concurrency` at a time, and waits until all are completed.
    async fn static_ads(&self, options: &Options) -> anyhow::Result<Outcome> {
        let load = std::sync::Arc::new(self.clone());
        let start = Instant::now();
        let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let creators: Vec<_> = (0..options.concurrency)
            .map(|_| {
                let (load, next, jobs) = (load.clone(), next.clone(), options.jobs);
                tokio::spawn(async move {
                    let mut created = Vec::new();
                    let mut errors = 0u64;
                    loop {
                        let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if n >= jobs {
                            break;
                        }
                        let body = json!({ "prompt": format!("Bench ad number {n}"), "style": "minimal" });
                        match load.post("/api/generate/static-ad", body).await {
                            Ok(job) => {
                                created.push((job["jobId"].as_str().unwrap_or_default().to_string(), Instant::now()))
                            }
                            Err(e) => {
                                if errors == 0 {
                                    eprintln!("bench: creating a static ad: {e:#}");
                                }
                                errors += 1;
                            }
                        }
                    }
                    (created, errors)
                })
            })
            .collect();
        let mut pending = std::collections::HashMap::new();
        let mut errors = 0;
        for creator in creators {
            let (created, failed) = creator.await?;
            pending.extend(created);
            errors += failed;
        }
        let mut latency = histogram();
        let mut done = 0;
        let deadline = Instant::now() + Duration::from_secs(600);
        while !pending.is_empty() {
            if Instant::now() > deadline {
                bail!("{} static ads were not completed within 10 minutes", pending.len());
            }
            let page = load.get("/api/jobs?limit=100&status=completed").await?;
            for job in page["jobs"].as_array().into_iter().flatten() {
                if let Some(created) = job["id"].as_str().and_then(|id| pending.remove(id)) {
                    latency.saturating_record(created.elapsed().as_micros() as u64);
                    done += 1;
                }
            }
            // Completed jobs beyond the first page are found by their own reads.
            if page["jobs"].as_array().is_some_and(|j| j.len() == 100) {
                let ids: Vec<String> = pending.keys().take(50).cloned().collect();
                for id in ids {
                    let job = load.get(&format!("/api/jobs/{id}")).await?;
                    match job["status"].as_str() {
                        Some("completed") => {
                            let created = pending.remove(&id).expect("pending");
                            latency.saturating_record(created.elapsed().as_micros() as u64);
                            done += 1;
                        }
                        Some("failed" | "canceled" | "expired") => {
                            pending.remove(&id);
                            errors += 1;
                        }
                        _ => {}
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok((done, errors, start.elapsed(), latency))
    }
}

fn histogram() -> Histogram<u64> {
    // 1 µs to 10 min, 3 significant digits.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds")
}

/// CPU time (user + system) and peak resident memory of each CutX process, from `/proc`.
fn usage(server: &Server) -> Vec<(String, Duration, u64)> {
    server
        .pids()
        .into_iter()
        .filter_map(|(name, pid)| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // Fields after the command's closing parenthesis: utime and stime are the 12th and 13th.
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            let peak = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0);
            // Linux counts CPU time in clock ticks of 1/100 s (USER_HZ).
            Some((name, Duration::from_millis(ticks * 10), peak))
        })
        .collect()
}
