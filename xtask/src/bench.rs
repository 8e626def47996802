//! `cargo xtask bench`: run every section, collect rows, write the report.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use clap::Args;
use kuai_benches::{Better, Record};
use serde::{Deserialize, Serialize};

use crate::machine::Machine;
use crate::run::{Result, cargo, render, step};

/// The order sections appear in, following the seed's chapters; sections not
/// listed here come after, alphabetically.
const ORDER: &[&str] = &[
    "lockfree", "zerocopy", "codec", "pool", "reactor", "cache", "shard", "queue", "store",
    "server",
];

#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// Smaller sizes and fewer repeats: the whole suite in under 2 minutes.
    #[arg(long)]
    quick: bool,
    /// Only these sections (comma-separated), e.g. `--only lockfree,codec`.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Also run the rows that need local services (Redis, PostgreSQL, NATS).
    #[arg(long)]
    services: bool,
    /// Re-render REPORT.md and charts from docs/bench/results.json without running anything.
    #[arg(long)]
    render_only: bool,
}

/// What `results.json` holds.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Results {
    pub generated_unix: u64,
    pub quick: bool,
    pub services: bool,
    pub total_seconds: f64,
    pub machine: Machine,
    pub sections: Vec<SectionRun>,
    pub records: Vec<Record>,
}

/// How one section's run went.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SectionRun {
    pub name: String,
    pub seconds: f64,
    pub rows: usize,
    pub error: Option<String>,
}

/// Reads the `[[bench]]` names from benches/Cargo.toml.
fn sections(root: &Path) -> Result<Vec<String>> {
    let manifest = std::fs::read_to_string(root.join("benches/Cargo.toml"))
        .map_err(|e| format!("reading benches/Cargo.toml: {e}"))?;
    let mut names = Vec::new();
    let mut in_bench = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bench = line == "[[bench]]";
        } else if in_bench && let Some(rest) = line.strip_prefix("name") {
            let name = rest.trim_start_matches([' ', '=']).trim().trim_matches('"');
            // criterion_* files are plain criterion benches for `cargo
            // bench`; the report's sections record rows themselves.
            if !name.starts_with("criterion") {
                names.push(name.to_string());
            }
        }
    }
    names.sort_by_key(|n| {
        (
            ORDER.iter().position(|o| o == n).unwrap_or(ORDER.len()),
            n.clone(),
        )
    });
    Ok(names)
}

pub(crate) fn run(args: &BenchArgs) -> Result {
    let root = crate::root();
    let out_dir = root.join("docs/bench");
    std::fs::create_dir_all(&out_dir).map_err(|e| format!("creating docs/bench: {e}"))?;
    if args.render_only {
        let text = std::fs::read_to_string(out_dir.join("results.json"))
            .map_err(|e| format!("reading results.json: {e}"))?;
        let results: Results =
            serde_json::from_str(&text).map_err(|e| format!("parsing results.json: {e}"))?;
        return crate::report::write(&out_dir, &results);
    }

    let started = Instant::now();
    let mut names = sections(&root)?;
    if !args.only.is_empty() {
        names.retain(|n| args.only.contains(n));
        if let Some(unknown) = args.only.iter().find(|o| !names.contains(o)) {
            return Err(format!("--only: no bench section named {unknown:?}"));
        }
    }
    let mode = if args.quick { "quick" } else { "full" };
    println!(
        "kuai bench: {} sections ({mode} mode{}): {}",
        names.len(),
        if args.services { ", with services" } else { "" },
        names.join(", ")
    );

    step(
        "build the benchmarks (release)",
        cargo().args(["bench", "-p", "kuai-benches", "--no-run", "--quiet"]),
    )?;

    let scratch = root.join("target/kuai-bench");
    std::fs::create_dir_all(&scratch)
        .map_err(|e| format!("creating {}: {e}", scratch.display()))?;
    let budget = if args.quick {
        Duration::from_secs(90)
    } else {
        Duration::from_secs(240)
    };

    let mut records = Vec::new();
    let mut runs = Vec::new();
    for (i, name) in names.iter().enumerate() {
        println!(
            "\n[{}/{}] section {name} (elapsed {:.0}s)",
            i + 1,
            names.len(),
            started.elapsed().as_secs_f64()
        );
        let (run, mut rows) = run_section(name, &scratch, args, budget);
        println!(
            "[{}/{}] section {name}: {} rows in {:.1}s{}",
            i + 1,
            names.len(),
            run.rows,
            run.seconds,
            run.error
                .as_deref()
                .map(|e| format!(" — FAILED: {e}"))
                .unwrap_or_default()
        );
        records.append(&mut rows);
        runs.push(run);
    }

    // With --only, the other sections' rows from the last run are kept, so
    // the report stays whole.
    let mut merged = false;
    if !args.only.is_empty()
        && let Some(previous) = std::fs::read_to_string(out_dir.join("results.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<Results>(&t).ok())
    {
        let kept = |name: &str| !names.iter().any(|n| n == name);
        let mut merged_runs: Vec<SectionRun> = previous
            .sections
            .into_iter()
            .filter(|s| kept(&s.name))
            .collect();
        merged_runs.append(&mut runs);
        merged_runs.sort_by_key(|s| {
            (
                ORDER
                    .iter()
                    .position(|o| *o == s.name)
                    .unwrap_or(ORDER.len()),
                s.name.clone(),
            )
        });
        runs = merged_runs;
        let mut kept_records: Vec<Record> = previous
            .records
            .into_iter()
            .filter(|r| kept(&r.section))
            .collect();
        kept_records.append(&mut records);
        records = kept_records;
        merged = true;
    }

    let results = Results {
        generated_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        quick: args.quick,
        services: args.services,
        // A merged report spans several runs: count the sections' own time.
        total_seconds: if merged {
            runs.iter().map(|r| r.seconds).sum()
        } else {
            started.elapsed().as_secs_f64()
        },
        machine: Machine::read(),
        sections: runs,
        records,
    };
    let json = serde_json::to_string_pretty(&results).map_err(|e| e.to_string())?;
    std::fs::write(out_dir.join("results.json"), json)
        .map_err(|e| format!("writing results.json: {e}"))?;
    crate::report::write(&out_dir, &results)?;
    let failed = results
        .sections
        .iter()
        .filter(|s| s.error.is_some())
        .count();
    println!(
        "\nkuai bench: {} rows from {} sections in {:.0}s ({failed} sections failed) → docs/bench/REPORT.md",
        results.records.len(),
        results.sections.len(),
        results.total_seconds
    );
    Ok(())
}

/// Runs one bench binary with a time budget; a failure becomes an error row.
fn run_section(
    name: &str,
    scratch: &Path,
    args: &BenchArgs,
    budget: Duration,
) -> (SectionRun, Vec<Record>) {
    let started = Instant::now();
    let out: PathBuf = scratch.join(format!("{name}.jsonl"));
    let _ = std::fs::remove_file(&out);
    let mut cmd = cargo();
    cmd.current_dir(crate::root())
        .args([
            "bench",
            "-p",
            "kuai-benches",
            "--quiet",
            "--bench",
            name,
            "--",
        ])
        .env("KUAI_BENCH_OUT", &out)
        .env("KUAI_BENCH_QUICK", if args.quick { "1" } else { "0" })
        .env("KUAI_BENCH_SERVICES", if args.services { "1" } else { "0" })
        .stdin(Stdio::null());
    if args.quick {
        cmd.arg("--quick");
    }
    println!("    $ {}", render(&cmd));
    let error = match cmd.spawn() {
        Err(e) => Some(format!("cannot start: {e}")),
        Ok(mut child) => loop {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => break None,
                Ok(Some(status)) => break Some(format!("bench exited with {status}")),
                Ok(None) if started.elapsed() > budget => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break Some(format!(
                        "killed after exceeding its {}s budget",
                        budget.as_secs()
                    ));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(100)),
                Err(e) => break Some(format!("waiting for the bench: {e}")),
            }
        },
    };
    let mut rows: Vec<Record> = std::fs::read_to_string(&out)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let error = error.or_else(|| {
        rows.is_empty()
            .then(|| "the section recorded no rows".to_string())
    });
    if let Some(why) = &error {
        rows.push(Record {
            section: name.to_string(),
            experiment: "(section run)".into(),
            unit: String::new(),
            better: Better::Higher,
            seed: None,
            peer_name: String::new(),
            peer: None,
            kuai: None,
            ratio: None,
            params: Default::default(),
            quick: args.quick,
            error: Some(why.clone()),
            note: None,
        });
    }
    let run = SectionRun {
        name: name.to_string(),
        seconds: started.elapsed().as_secs_f64(),
        rows: rows.iter().filter(|r| r.error.is_none()).count(),
        error,
    };
    (run, rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_are_read_from_the_manifest_in_chapter_order() {
        let names = sections(&crate::root()).unwrap_or_default();
        assert!(names.contains(&"lockfree".to_string()), "{names:?}");
        let pos = |n: &str| names.iter().position(|x| x == n);
        assert!(pos("lockfree") < pos("codec"));
    }
}
