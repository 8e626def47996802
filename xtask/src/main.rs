//! kuai's project commands, after rust-analyzer's `xtask/`:
//!
//! - `cargo xtask bench [--quick] [--only a,b] [--services]`: runs every
//!   benchmark section, writes `docs/bench/results.json`, `docs/bench/REPORT.md`
//!   and SVG charts.
//! - `cargo xtask test`: every test of the workspace (unit, integration, doc,
//!   property, service-backed) and the loom models at a small bound.
//! - `cargo xtask ci`: fmt, clippy, doc, tidy, fuzz-target check, then `test`.
#![forbid(unsafe_code)]

mod bench;
mod chart;
mod machine;
mod report;
mod run;
mod test;
mod tidy;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "kuai project commands")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the benchmark suite and write docs/bench/REPORT.md, results.json and charts.
    Bench(bench::BenchArgs),
    /// Run all tests: workspace (all features, service-backed included) and loom models.
    Test(test::TestArgs),
    /// fmt --check, clippy -D warnings, doc -D warnings, tidy, fuzz check, then test.
    Ci(test::TestArgs),
    /// Only the tidy checks (crate docs, dependency rules, file names, SAFETY comments).
    Tidy,
}

/// The workspace root (the parent of this crate's directory).
pub(crate) fn root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(PathBuf::from).unwrap_or(here)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Bench(args) => bench::run(&args),
        Command::Test(args) => test::run(&args),
        Command::Ci(args) => test::ci(&args),
        Command::Tidy => tidy::run(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}
