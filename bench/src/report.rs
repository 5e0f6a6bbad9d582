//! A row of results per measured load, and the table they make together, with each jobs
//! scenario's throughput as a ratio to the floor measured in the same run.

use std::time::Duration;

use cutx_tests::Mode;
use hdrhistogram::Histogram;

use crate::Scenario;

/// One process's use of the machine during one load.
#[derive(Debug, Clone)]
pub struct ProcessUse {
    pub name: String,
    /// CPU time (user + system) spent during the load.
    pub cpu: Duration,
    /// Resident memory when the load began (none for a process tree such as PostgreSQL).
    pub rss_before_kib: Option<u64>,
    /// The most resident memory the process has had, at the end of the load.
    pub peak_rss_kib: Option<u64>,
}

/// One measured load: one row of the table.
#[derive(Debug, Clone)]
pub struct Report {
    pub mode: Mode,
    pub scenario: Scenario,
    /// What the row measured when its scenario measures several things (`rest`, `grpc
    /// direct`, ...); empty otherwise.
    pub variant: String,
    /// How the load was applied: `16 callers`, `500/s open`.
    pub pace: String,
    /// Calls answered without an error (`static-ad`: jobs completed; `pickup`: jobs picked up;
    /// `startup`: starts; `floor`: pgbench jobs).
    pub done: u64,
    pub errors: u64,
    pub elapsed: Duration,
    /// Microseconds per call, or per what `done` counts.
    pub latency: Histogram<u64>,
    /// Credits the user's balance went down by.
    pub charged: i64,
    pub processes: Vec<ProcessUse>,
    /// What the figures need to be read right (resolution, ratios, the server's settings).
    pub notes: Vec<String>,
}

impl Report {
    pub fn per_second(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 { self.done as f64 / secs } else { 0.0 }
    }

    fn ms(&self, quantile: f64) -> f64 {
        self.latency.value_at_quantile(quantile) as f64 / 1000.0
    }

    /// Whether the row counts jobs through CutX, so its rate compares with the floor.
    fn is_jobs(&self) -> bool {
        matches!(self.scenario, Scenario::Copy | Scenario::StaticAd)
    }

    /// Each busy process's CPU time (and per answered call) and memory, at the load's start and
    /// peak. A process that used less than one clock tick (10 ms) is left out.
    fn processes_cell(&self) -> String {
        let mb = |kib: Option<u64>| kib.map_or("?".to_string(), |k| format!("{}", k / 1024));
        self.processes
            .iter()
            .filter(|p| p.cpu >= Duration::from_millis(10))
            .map(|p| {
                let per_call = match self.done {
                    0 => String::new(),
                    done => format!(" ({:.0} µs/op)", p.cpu.as_secs_f64() * 1e6 / done as f64),
                };
                let memory = match (p.rss_before_kib, p.peak_rss_kib) {
                    (None, None) => String::new(),
                    (before, peak) => format!(" {}→{} MB", mb(before), mb(peak)),
                };
                format!("{} {:.2} s{per_call}{memory}", p.name, p.cpu.as_secs_f64())
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// One row of the table; `floor` is the floor's jobs a second in this row's mode, if measured.
    fn row(&self, floor: Option<f64>) -> String {
        let scenario = match self.variant.as_str() {
            "" => self.scenario.name().to_string(),
            variant => format!("{} {variant}", self.scenario.name()),
        };
        let to_floor = match floor {
            Some(floor) if self.is_jobs() && floor > 0.0 => format!("{:.2}x", self.per_second() / floor),
            _ => String::new(),
        };
        format!(
            "| {} | {scenario} | {} | {} | {:.0}/s | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} | {to_floor} | {} | {} |",
            mode_name(self.mode),
            self.pace,
            self.done,
            self.per_second(),
            self.ms(0.5),
            self.ms(0.9),
            self.ms(0.99),
            self.ms(0.999),
            self.latency.max() as f64 / 1000.0,
            self.errors,
            self.charged,
            self.processes_cell(),
            self.notes.join("; ").replace('|', "/"),
        )
    }

    /// This row alone, for progress while the run goes on.
    pub fn line(&self) -> String {
        self.row(None)
    }
}

const HEADER: &str = "| mode | scenario | load | done | rate | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | errors | credits | x floor | CPU time (per op), memory start→peak | notes |\n\
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |";

pub(crate) fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Dev => "dev",
        Mode::Distributed => "distributed",
    }
}

/// The results as a Markdown table; jobs rows of a mode whose floor was measured get their rate
/// as a multiple of it.
pub fn table(reports: &[Report]) -> String {
    let floor = |mode: Mode| {
        reports.iter().find(|r| r.scenario == Scenario::Floor && r.mode == mode && r.done > 0).map(Report::per_second)
    };
    let mut out = String::from(HEADER);
    for report in reports {
        out.push('\n');
        out.push_str(&report.row(floor(report.mode)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(scenario: Scenario, done: u64) -> Report {
        let mut latency = crate::drive::histogram();
        latency.record(1500).unwrap();
        Report {
            mode: Mode::Distributed,
            scenario,
            variant: String::new(),
            pace: "8 callers".into(),
            done,
            errors: 0,
            elapsed: Duration::from_secs(1),
            latency,
            charged: 0,
            processes: vec![ProcessUse {
                name: "gateway".into(),
                cpu: Duration::from_millis(50),
                rss_before_kib: Some(20 * 1024),
                peak_rss_kib: Some(30 * 1024),
            }],
            notes: vec!["a | b".into()],
        }
    }

    #[test]
    fn a_jobs_row_is_quoted_as_a_multiple_of_the_floor_of_its_mode() {
        let table =
            table(&[report(Scenario::Floor, 1000), report(Scenario::Copy, 250), report(Scenario::GetJob, 5000)]);
        let rows: Vec<&str> = table.lines().skip(2).collect();
        assert!(rows[1].contains("| 0.25x |"), "{}", rows[1]);
        assert!(!rows[2].contains("5.00x"), "reads are not jobs: {}", rows[2]);
        assert!(rows[1].contains("gateway 0.05 s (200 µs/op) 20→30 MB"), "{}", rows[1]);
        assert!(rows[1].ends_with("| a / b |"), "a note cannot break the table: {}", rows[1]);
    }
}
