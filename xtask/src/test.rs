//! `cargo xtask test` and `cargo xtask ci`.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;

use crate::run::{Result, cargo, step};

#[derive(Debug, Args)]
pub(crate) struct TestArgs {
    /// Skip the loom models (they are slow to build).
    #[arg(long)]
    no_loom: bool,
}

/// The local services the service-backed tests use, and how to start each.
const SERVICES: &[(&str, &str, &str)] = &[
    (
        "Redis",
        "127.0.0.1:6379",
        "redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save \"\" --appendonly no",
    ),
    (
        "PostgreSQL",
        "127.0.0.1:5432",
        "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
    ),
    (
        "NATS",
        "127.0.0.1:4222",
        "start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server",
    ),
    ("RabbitMQ", "127.0.0.1:5672", "rabbitmq-server -detached"),
];

fn report_services() {
    println!("==> local services (service-backed tests fail loudly if theirs is down)");
    for (name, addr, start) in SERVICES {
        let up = addr
            .parse::<SocketAddr>()
            .ok()
            .and_then(|a| TcpStream::connect_timeout(&a, Duration::from_millis(300)).ok())
            .is_some();
        if up {
            println!("    {name:<10} {addr}: up");
        } else {
            println!("    {name:<10} {addr}: DOWN — start it with: {start}");
        }
    }
}

/// Crates that carry loom models: `crates/*/tests/loom.rs`, with their package names.
fn loom_crates() -> Vec<String> {
    let root = crate::root();
    let Ok(dirs) = std::fs::read_dir(root.join("crates")) else {
        return Vec::new();
    };
    let mut out: Vec<String> = dirs
        .flatten()
        .map(|d| d.path())
        .filter(|p| p.join("tests/loom.rs").is_file())
        .filter_map(|p| package_name(&p.join("Cargo.toml")))
        .collect();
    out.sort();
    out
}

fn package_name(manifest: &PathBuf) -> Option<String> {
    let text = std::fs::read_to_string(manifest).ok()?;
    text.lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("name"))
        .map(|rest| {
            rest.trim_start_matches([' ', '='])
                .trim()
                .trim_matches('"')
                .to_string()
        })
}

pub(crate) fn run(args: &TestArgs) -> Result {
    let started = Instant::now();
    report_services();
    let mut failures = Vec::new();
    let mut passed = 0usize;
    let mut record = |r: Result| match r {
        Ok(()) => passed += 1,
        Err(e) => {
            eprintln!("!!! {e}");
            failures.push(e);
        }
    };

    record(step(
        "workspace tests: unit, integration, doc, property and service-backed (all features)",
        cargo().args(["test", "--workspace", "--all-features", "--no-fail-fast"]),
    ));
    record(step(
        "facade with no optional features",
        cargo().args(["test", "-p", "kuai", "--no-default-features"]),
    ));
    if args.no_loom {
        println!("\n==> loom models skipped (--no-loom)");
    } else {
        for pkg in loom_crates() {
            record(step(
                &format!("loom models of {pkg} (LOOM_MAX_PREEMPTIONS=2)"),
                cargo()
                    .args(["test", "-p", &pkg, "--test", "loom", "--release"])
                    .env("RUSTFLAGS", "--cfg kuai_loom")
                    .env("LOOM_MAX_PREEMPTIONS", "2")
                    .env("CARGO_TARGET_DIR", crate::root().join("target/loom")),
            ));
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "\nxtask test: {passed} steps passed, {} failed in {secs:.0}s",
        failures.len()
    );
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\n"))
    }
}

pub(crate) fn ci(args: &TestArgs) -> Result {
    step("rustfmt", cargo().args(["fmt", "--all", "--", "--check"]))?;
    step(
        "clippy (warnings are errors)",
        cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--all-features",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    step(
        "rustdoc (warnings are errors)",
        cargo()
            .args(["doc", "--workspace", "--no-deps", "--all-features"])
            .env("RUSTDOCFLAGS", "-D warnings"),
    )?;
    crate::tidy::run()?;
    if crate::root().join("fuzz/Cargo.toml").is_file() {
        step(
            "fuzz targets build (cargo check, stable)",
            cargo().args([
                "check",
                "--manifest-path",
                "fuzz/Cargo.toml",
                "--bins",
                "--quiet",
            ]),
        )?;
    }
    run(args)
}
