//! The harness shared by kuai's benchmark binaries.
//!
//! Every bench target in `benches/benches/` is a `harness = false` binary that
//! opens a [`Section`], measures its experiments against a named peer in the
//! same run, and records one [`Record`] per row. `cargo xtask bench` runs them
//! all, collects the records into `docs/bench/results.json` and renders
//! `docs/bench/REPORT.md` and the charts.
//!
//! A bench binary can also be run alone (`cargo bench -p kuai-benches --bench
//! lockfree -- --quick`); it prints its rows to stdout.
//!
//! ```
//! use kuai_benches::{Better, Row, Section};
//! let mut section = Section::new("demo", true);
//! section.record(
//!     Row::new("sum 1k", "us", Better::Lower)
//!         .peer("naive", 10.0)
//!         .kuai(5.0)
//!         .seed(12.0)
//!         .param("n", 1000),
//! );
//! assert_eq!(section.records()[0].ratio, Some(2.0));
//! ```
#![forbid(unsafe_code)]

use std::fmt;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Which direction of a number is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    /// Times, bytes, CPU: smaller wins.
    Lower,
    /// Throughput, hit ratio: larger wins.
    Higher,
}

/// One row of the report, as written to `results.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Record {
    /// The report section (one bench binary may write several).
    pub section: String,
    /// What was measured, with its size.
    pub experiment: String,
    /// Unit of `seed`, `peer` and `kuai`.
    pub unit: String,
    /// Which direction is better.
    pub better: Better,
    /// The seed article's published figure, if it gives one.
    pub seed: Option<f64>,
    /// The peer measured in the same run.
    pub peer_name: String,
    /// The peer's figure.
    pub peer: Option<f64>,
    /// kuai's figure.
    pub kuai: Option<f64>,
    /// How many times better kuai is than the peer (≥ 1 means kuai wins).
    pub ratio: Option<f64>,
    /// The experiment's parameters (threads, sizes, …).
    pub params: serde_json::Map<String, serde_json::Value>,
    /// Whether this was a `--quick` run (smaller sizes, fewer repeats).
    pub quick: bool,
    /// Why the measurement failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// A note for the reader (e.g. the target this row is judged against).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A builder for one row.
#[derive(Debug, Clone)]
pub struct Row {
    experiment: String,
    unit: String,
    better: Better,
    seed: Option<f64>,
    peer_name: String,
    peer: Option<f64>,
    kuai: Option<f64>,
    params: serde_json::Map<String, serde_json::Value>,
    error: Option<String>,
    note: Option<String>,
}

impl Row {
    /// A row measuring `experiment` in `unit`.
    pub fn new(experiment: impl Into<String>, unit: impl Into<String>, better: Better) -> Self {
        Row {
            experiment: experiment.into(),
            unit: unit.into(),
            better,
            seed: None,
            peer_name: String::new(),
            peer: None,
            kuai: None,
            params: serde_json::Map::new(),
            error: None,
            note: None,
        }
    }
    /// The seed article's figure for this experiment.
    pub fn seed(mut self, value: f64) -> Self {
        self.seed = Some(value);
        self
    }
    /// The peer and its figure.
    pub fn peer(mut self, name: impl Into<String>, value: f64) -> Self {
        self.peer_name = name.into();
        self.peer = Some(value);
        self
    }
    /// kuai's figure.
    pub fn kuai(mut self, value: f64) -> Self {
        self.kuai = Some(value);
        self
    }
    /// A parameter of the experiment.
    pub fn param(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.params.insert(key.to_string(), value.into());
        self
    }
    /// Marks the measurement as failed.
    pub fn error(mut self, why: impl fmt::Display) -> Self {
        self.error = Some(why.to_string());
        self
    }
    /// A note for the reader.
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }
}

/// Computes "how many times better kuai is": peer/kuai when lower is better,
/// kuai/peer when higher is better. `None` when either side is missing or
/// the division is meaningless.
pub fn ratio(better: Better, peer: Option<f64>, kuai: Option<f64>) -> Option<f64> {
    let (p, k) = (peer?, kuai?);
    let r = match better {
        Better::Lower => p / k,
        Better::Higher => k / p,
    };
    r.is_finite().then_some(r)
}

/// The rows of one bench binary, written as JSON lines to `$KUAI_BENCH_OUT`
/// (when set) and printed as they come.
#[derive(Debug)]
pub struct Section {
    name: String,
    quick: bool,
    out: Option<PathBuf>,
    records: Vec<Record>,
}

impl Section {
    /// A section named `name`.
    pub fn new(name: impl Into<String>, quick: bool) -> Self {
        Section {
            name: name.into(),
            quick,
            out: std::env::var_os("KUAI_BENCH_OUT").map(PathBuf::from),
            records: Vec::new(),
        }
    }

    /// A section configured from the command line (`--quick`) and the
    /// environment (`KUAI_BENCH_QUICK=1`, `KUAI_BENCH_OUT`).
    pub fn from_args(name: impl Into<String>) -> Self {
        let quick = std::env::args().any(|a| a == "--quick")
            || std::env::var("KUAI_BENCH_QUICK").is_ok_and(|v| v == "1");
        Self::new(name, quick)
    }

    /// Whether this is a quick run: use smaller sizes and fewer repeats.
    pub fn quick(&self) -> bool {
        self.quick
    }

    /// Picks `quick` or `full` depending on the mode.
    pub fn pick<T>(&self, quick: T, full: T) -> T {
        if self.quick { quick } else { full }
    }

    /// The section's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The rows recorded so far.
    pub fn records(&self) -> &[Record] {
        &self.records
    }

    /// Records a row under this section's name.
    pub fn record(&mut self, row: Row) {
        let section = self.name.clone();
        self.record_in(&section, row);
    }

    /// Records a row under another section name (one binary, several report
    /// sections).
    pub fn record_in(&mut self, section: &str, row: Row) {
        let ratio = if row.error.is_some() {
            None
        } else {
            ratio(row.better, row.peer, row.kuai)
        };
        let rec = Record {
            section: section.to_string(),
            experiment: row.experiment,
            unit: row.unit,
            better: row.better,
            seed: row.seed,
            peer_name: row.peer_name,
            peer: row.peer,
            kuai: row.kuai,
            ratio,
            params: row.params,
            quick: self.quick,
            error: row.error,
            note: row.note,
        };
        println!("{}", describe(&rec));
        if let Some(path) = &self.out {
            let line = serde_json::to_string(&rec).unwrap_or_default();
            let written = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|mut f| writeln!(f, "{line}"));
            if let Err(e) = written {
                eprintln!("kuai-benches: cannot write {}: {e}", path.display());
            }
        }
        self.records.push(rec);
    }
}

fn describe(r: &Record) -> String {
    let num = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
    match &r.error {
        Some(e) => format!("[{}] {}: ERROR {e}", r.section, r.experiment),
        None => format!(
            "[{}] {}: peer {} = {} {u}, kuai = {} {u}, ratio {}",
            r.section,
            r.experiment,
            r.peer_name,
            num(r.peer),
            num(r.kuai),
            num(r.ratio),
            u = r.unit
        ),
    }
}

/// Runs `f` `runs` times (after one warm-up) and returns the median duration.
/// `f` returns the time of the part it wants measured.
pub fn median_time(runs: usize, mut f: impl FnMut() -> Duration) -> Duration {
    let _ = f();
    let mut samples: Vec<Duration> = (0..runs.max(1)).map(|_| f()).collect();
    samples.sort();
    samples[samples.len() / 2]
}

/// Times one call of `f`.
pub fn time<R>(f: impl FnOnce() -> R) -> (Duration, R) {
    let t = Instant::now();
    let r = f();
    (t.elapsed(), r)
}

/// Runs `a` and `b` alternately `runs` times each (after a warm-up of each)
/// and returns both medians: interleaving keeps background noise from
/// favouring whichever ran second.
pub fn median_pair(
    runs: usize,
    mut a: impl FnMut() -> Duration,
    mut b: impl FnMut() -> Duration,
) -> (Duration, Duration) {
    let _ = (a(), b());
    let mut sa = Vec::with_capacity(runs);
    let mut sb = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        sa.push(a());
        sb.push(b());
    }
    sa.sort();
    sb.sort();
    (sa[sa.len() / 2], sb[sb.len() / 2])
}

/// Milliseconds as `f64`.
/// A two-worker tokio runtime, for the rows that drive async clients and
/// servers (the machine has two cores).
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Nanoseconds as `f64`.
pub fn ns(d: Duration) -> f64 {
    d.as_secs_f64() * 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_direction() {
        assert_eq!(ratio(Better::Lower, Some(10.0), Some(5.0)), Some(2.0));
        assert_eq!(ratio(Better::Higher, Some(10.0), Some(5.0)), Some(0.5));
        assert_eq!(ratio(Better::Higher, None, Some(5.0)), None);
        assert_eq!(ratio(Better::Lower, Some(1.0), Some(0.0)), None);
    }

    #[test]
    fn failed_rows_have_no_ratio() {
        let mut s = Section::new("t", true);
        s.record(
            Row::new("x", "ms", Better::Lower)
                .peer("p", 1.0)
                .kuai(1.0)
                .error("boom"),
        );
        assert_eq!(s.records()[0].ratio, None);
        assert_eq!(s.records()[0].error.as_deref(), Some("boom"));
    }

    #[test]
    fn median_picks_middle() {
        let mut v = [5u64, 1, 3, 2, 4].into_iter();
        let d = median_time(4, || Duration::from_millis(v.next().unwrap_or(0)));
        assert_eq!(d, Duration::from_millis(3));
    }
}
