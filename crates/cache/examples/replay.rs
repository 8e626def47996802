//! Replays a cache trace through kuai's policies, moka and quick_cache and
//! prints the hit ratios side by side.
//!
//! ```text
//! cargo run --release -p kuai-cache --features trace --example replay -- <trace> [capacity|N%]...
//! ```
//!
//! Formats: ARC `.lis`, one key per line, optionally zstd/gzip compressed.
//! Capacities are entry counts or percentages of the trace's footprint
//! (default: 1 %, 10 % and 50 %).

use std::path::PathBuf;
use std::process::ExitCode;

use kuai_cache::{Cache, Policy, trace};

fn kuai(keys: &[u64], cap: u64, policy: Policy) -> f64 {
    let Ok(c) = Cache::<u64, u64>::builder()
        .max_capacity(cap)
        .policy(policy)
        .build()
    else {
        return f64::NAN;
    };
    let mut hits = 0u64;
    for &k in keys {
        if c.get(&k).is_some() {
            hits += 1;
        } else {
            c.insert(k, k);
        }
    }
    hits as f64 / keys.len().max(1) as f64
}

fn moka(keys: &[u64], cap: u64) -> f64 {
    let c = moka::sync::Cache::<u64, u64>::new(cap);
    let mut hits = 0u64;
    for &k in keys {
        if c.get(&k).is_some() {
            hits += 1;
        } else {
            c.insert(k, k);
        }
    }
    hits as f64 / keys.len().max(1) as f64
}

fn quick(keys: &[u64], cap: u64) -> f64 {
    let c = quick_cache::sync::Cache::<u64, u64>::new(cap as usize);
    let mut hits = 0u64;
    for &k in keys {
        if c.get(&k).is_some() {
            hits += 1;
        } else {
            c.insert(k, k);
        }
    }
    hits as f64 / keys.len().max(1) as f64
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next().map(PathBuf::from) else {
        eprintln!("usage: replay <trace> [capacity|N%]...");
        return ExitCode::from(2);
    };
    let keys = match trace::read_keys(&path, None) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("replay: {e}");
            return ExitCode::from(1);
        }
    };
    let footprint = trace::footprint(&keys) as u64;
    let mut caps = Vec::new();
    for a in args {
        let cap = match a.strip_suffix('%') {
            Some(p) => p
                .parse::<f64>()
                .ok()
                .map(|p| (footprint as f64 * p / 100.0).round() as u64),
            None => a.parse::<u64>().ok(),
        };
        match cap {
            Some(c) if c > 0 => caps.push(c),
            _ => {
                eprintln!("replay: bad capacity {a:?}");
                return ExitCode::from(2);
            }
        }
    }
    if caps.is_empty() {
        caps = [1.0, 10.0, 50.0]
            .iter()
            .map(|p| ((footprint as f64 * p / 100.0).round() as u64).max(1))
            .collect();
    }
    println!(
        "{}: {} requests, {} distinct keys",
        path.display(),
        keys.len(),
        footprint
    );
    println!(
        "{:>10} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "capacity", "kuai", "k-LRU", "k-FIFO", "k-LFU", "moka", "quick", "best-peer"
    );
    for cap in caps {
        let pct = |x: f64| x * 100.0;
        let d = kuai(&keys, cap, Policy::TinyLfu);
        let lru = kuai(&keys, cap, Policy::Lru);
        let fifo = kuai(&keys, cap, Policy::Fifo);
        let lfu = kuai(&keys, cap, Policy::Lfu);
        let m = moka(&keys, cap);
        let q = quick(&keys, cap);
        let best = lru.max(m).max(q);
        println!(
            "{cap:>10} {:>9.2}% {:>7.2}% {:>7.2}% {:>7.2}% {:>7.2}% {:>7.2}% {:>+8.2}",
            pct(d),
            pct(lru),
            pct(fifo),
            pct(lfu),
            pct(m),
            pct(q),
            pct(d - best)
        );
    }
    ExitCode::SUCCESS
}
