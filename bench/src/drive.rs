//! The two ways a load is applied, and what it did.
//!
//! Closed loop: a fixed number of callers, each sending again as soon as its answer arrives
//! (throughput at a concurrency). Open loop: calls leave on a fixed schedule whatever the
//! answers do, and each call's latency is counted from the moment it was scheduled to leave, so
//! a slow answer delays nothing and hides nothing (no coordinated omission). The schedule is
//! kept by a thread of its own sleeping to each departure (the runtime's timer ticks in whole
//! milliseconds); how late it was is reported too.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;

/// Open-loop calls that may be unanswered at once; a departure beyond it is not sent and is
/// counted as an error (a mesh this far behind is failing anyway).
const MOST_IN_FLIGHT: usize = 4096;

/// How long an open loop waits for its last answers once the schedule has ended.
const GRACE: Duration = Duration::from_secs(30);

/// How a load is applied.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Pace {
    /// This many callers, each calling again when answered.
    Closed { callers: usize },
    /// This many calls a second, on schedule.
    Open { per_second: f64 },
}

impl Pace {
    /// How the table names it.
    pub fn label(&self) -> String {
        match self {
            Self::Closed { callers } => format!("{callers} callers"),
            Self::Open { per_second } => format!("{per_second}/s open"),
        }
    }
}

/// What a load did.
#[derive(Debug)]
pub(crate) struct Outcome<T = ()> {
    /// Calls answered without an error.
    pub done: u64,
    pub errors: u64,
    pub elapsed: Duration,
    /// Microseconds per answered call (open loop: from its scheduled departure).
    pub latency: Histogram<u64>,
    /// What the answered calls returned, in no particular order.
    pub answers: Vec<T>,
    pub notes: Vec<String>,
}

impl<T> Outcome<T> {
    pub fn new() -> Self {
        Self {
            done: 0,
            errors: 0,
            elapsed: Duration::ZERO,
            latency: histogram(),
            answers: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Counts one answer.
    pub fn answered(&mut self, latency: Duration, answer: T) {
        self.done += 1;
        self.latency.saturating_record(micros(latency));
        self.answers.push(answer);
    }

    /// Counts one failure; the first is kept as a note and said on stderr.
    pub fn failed(&mut self, error: &anyhow::Error) {
        if self.errors == 0 {
            eprintln!("bench: first error: {error:#}");
            let said = format!("{error:#}");
            self.notes.push(format!("first error: {}", said.chars().take(160).collect::<String>()));
        }
        self.errors += 1;
    }

    /// The same outcome without its answers.
    pub fn counted(self) -> Outcome {
        Outcome {
            done: self.done,
            errors: self.errors,
            elapsed: self.elapsed,
            latency: self.latency,
            answers: Vec::new(),
            notes: self.notes,
        }
    }
}

/// A histogram from 1 µs to 10 min, 3 significant digits.
pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("1 µs to 10 min at 3 digits are valid bounds")
}

pub(crate) fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Calls `call(n)` with `pace` for `duration`; `n` is unique to each call.
pub(crate) async fn drive<T, F, Fut>(pace: Pace, duration: Duration, call: F) -> anyhow::Result<Outcome<T>>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<T>> + Send + 'static,
    T: Send + 'static,
{
    match pace {
        Pace::Closed { callers } => closed_loop(callers, duration, call).await,
        Pace::Open { per_second } => open_loop(per_second, duration, call).await,
    }
}

async fn closed_loop<T, F, Fut>(callers: usize, duration: Duration, call: F) -> anyhow::Result<Outcome<T>>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<T>> + Send + 'static,
    T: Send + 'static,
{
    let call = Arc::new(call);
    let start = Instant::now();
    let until = start + duration;
    let tasks: Vec<_> = (0..callers as u64)
        .map(|caller| {
            let call = call.clone();
            tokio::spawn(async move {
                let mut outcome = Outcome::new();
                // Caller c makes calls c, c + callers, c + 2 callers, ...: unique, and n % callers
                // names the caller.
                let mut n = caller;
                while Instant::now() < until {
                    let sent = Instant::now();
                    match call(n).await {
                        Ok(answer) => outcome.answered(sent.elapsed(), answer),
                        Err(e) => outcome.failed(&e),
                    }
                    n += callers as u64;
                }
                outcome
            })
        })
        .collect();
    let mut total = Outcome::new();
    for task in tasks {
        let mut one = task.await.context("a caller panicked")?;
        total.done += one.done;
        total.errors += one.errors;
        total.latency.add(&one.latency)?;
        total.answers.append(&mut one.answers);
        if total.notes.is_empty() {
            total.notes = one.notes;
        }
    }
    total.elapsed = start.elapsed();
    Ok(total)
}

/// What the open loop's pacer did: each departure's task (none when too many were in flight)
/// and how late it left.
type Departures<T> = (Vec<Option<tokio::task::JoinHandle<(Duration, anyhow::Result<T>)>>>, Histogram<u64>);

async fn open_loop<T, F, Fut>(per_second: f64, duration: Duration, call: F) -> anyhow::Result<Outcome<T>>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<T>> + Send + 'static,
    T: Send + 'static,
{
    anyhow::ensure!(per_second > 0.0 && per_second.is_finite(), "a rate must be a positive number of calls a second");
    let calls = ((per_second * duration.as_secs_f64()).round() as u64).max(1);
    let runtime = tokio::runtime::Handle::current();
    let call = Arc::new(call);
    let in_flight = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let pacer = tokio::task::spawn_blocking(move || -> Departures<T> {
        let mut departures = Vec::with_capacity(usize::try_from(calls).unwrap_or(0));
        let mut late = histogram();
        for n in 0..calls {
            let at = start + Duration::from_secs_f64(n as f64 / per_second);
            if let Some(wait) = at.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            late.saturating_record(micros(at.elapsed()));
            if in_flight.load(Ordering::Relaxed) >= MOST_IN_FLIGHT {
                departures.push(None);
                continue;
            }
            in_flight.fetch_add(1, Ordering::Relaxed);
            let (call, in_flight) = (call.clone(), in_flight.clone());
            departures.push(Some(runtime.spawn(async move {
                let answer = call(n).await;
                in_flight.fetch_sub(1, Ordering::Relaxed);
                (at.elapsed(), answer)
            })));
        }
        if departures.iter().any(Option::is_none) {
            eprintln!("bench: the open loop fell {MOST_IN_FLIGHT} calls behind; some calls were not sent");
        }
        (departures, late)
    });
    let (departures, late) = pacer.await.context("the open loop's pacer panicked")?;
    let mut outcome = Outcome::new();
    let (mut unsent, mut unanswered) = (0u64, 0u64);
    let deadline = tokio::time::Instant::now() + GRACE;
    for departure in departures {
        let Some(mut task) = departure else {
            unsent += 1;
            continue;
        };
        match tokio::time::timeout_at(deadline, &mut task).await {
            Ok(Ok((latency, Ok(answer)))) => outcome.answered(latency, answer),
            Ok(Ok((_, Err(e)))) => outcome.failed(&e),
            Ok(Err(panicked)) => outcome.failed(&anyhow::Error::new(panicked).context("a call panicked")),
            Err(_) => {
                task.abort();
                unanswered += 1;
            }
        }
    }
    outcome.elapsed = start.elapsed();
    outcome.errors += unsent + unanswered;
    if unsent + unanswered > 0 {
        outcome.notes.push(format!(
            "{unsent} not sent ({MOST_IN_FLIGHT} in flight), {unanswered} unanswered {} s after the schedule",
            GRACE.as_secs()
        ));
    }
    outcome.notes.push(format!(
        "sender late p50 {} µs, p99 {} µs, max {} µs",
        late.value_at_quantile(0.5),
        late.value_at_quantile(0.99),
        late.max()
    ));
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_open_loop_sends_every_call_on_schedule_even_when_answers_are_slow() {
        // Every answer takes 200 ms; at 50/s over 0.4 s, 20 calls leave anyway.
        let outcome = drive(Pace::Open { per_second: 50.0 }, Duration::from_millis(400), |n| async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            Ok(n)
        })
        .await
        .unwrap();
        assert_eq!((outcome.done, outcome.errors), (20, 0));
        let mut sent = outcome.answers.clone();
        sent.sort_unstable();
        assert_eq!(sent, (0..20).collect::<Vec<u64>>());
        assert!(outcome.latency.min() >= 200_000, "latency counts the whole slow answer");
        // The schedule took 0.38 s, not 20 x 0.2 s as a single closed-loop caller would.
        assert!(outcome.elapsed < Duration::from_secs(3), "{:?}", outcome.elapsed);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_open_loop_counts_a_failed_call_as_an_error_and_keeps_going() {
        let outcome = drive(Pace::Open { per_second: 100.0 }, Duration::from_millis(100), |n| async move {
            if n == 3 { anyhow::bail!("call {n} failed") } else { Ok(()) }
        })
        .await
        .unwrap();
        assert_eq!((outcome.done, outcome.errors), (9, 1));
        assert!(outcome.notes[0].contains("call 3 failed"), "{:?}", outcome.notes);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn closed_loop_callers_make_unique_calls_named_by_their_caller() {
        let outcome = drive(Pace::Closed { callers: 3 }, Duration::from_millis(50), |n| async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            Ok(n)
        })
        .await
        .unwrap();
        let mut seen = outcome.answers.clone();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len() as u64, outcome.done);
        assert!(outcome.done >= 3 && outcome.errors == 0);
    }
}
