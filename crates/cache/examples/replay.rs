//! Replays a cache trace through kuai's policies, moka and quick_cache and
//! prints the hit ratios side by side.
//!
//! ```text
//! cargo run --release -p kuai-cache --features trace --example replay -- <trace> [capacity|N%]...
//! ```
//!
//! Formats: ARC `.lis`, one key per line, optionally zstd/gzip/xz compressed.
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

/// `replay --suite <traces dir>`: the benchmark's 22 rows (every trace at 3
/// capacities, Zipf 0.9 and 1.2 at 2), kuai's default policy against the best
/// of moka, quick_cache and LRU. Peer results are cached in
/// `$TMPDIR/kuai-replay-peers.txt` (they do not change while kuai is tuned).
fn suite(dir: &std::path::Path) -> ExitCode {
    let lirs: &[f64] = &[5.0, 20.0, 50.0];
    let arc: &[f64] = &[1.0, 5.0, 20.0];
    let files: [(&str, &str, &[f64], Option<usize>); 6] = [
        ("lirs/loop.trace.gz", "loop", lirs, None),
        ("lirs/multi2.trace.gz", "multi2", lirs, None),
        ("lirs/sprite.trace.gz", "sprite", lirs, None),
        ("lirs/2_pools.trace.gz", "2_pools", lirs, None),
        ("arc/OLTP.lis.zst", "OLTP", arc, None),
        ("arc/P3.lis.zst", "P3", arc, Some(1_000_000)),
    ];
    let mut sets: Vec<(String, Vec<u64>, &[f64])> = Vec::new();
    for (file, label, pcts, limit) in files {
        match trace::read_keys(&dir.join(file), limit) {
            Ok(k) => sets.push((label.to_string(), k, pcts)),
            Err(e) => {
                eprintln!("replay: {e}");
                return ExitCode::from(1);
            }
        }
    }
    for s in [0.9, 1.2] {
        sets.push((
            format!("zipf{s}"),
            trace::zipf(100_000, s, 500_000, 42),
            &[1.0, 10.0],
        ));
    }
    let cache_path = std::env::temp_dir().join("kuai-replay-peers.txt");
    let mut known: std::collections::HashMap<String, (f64, String)> =
        std::fs::read_to_string(&cache_path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                let k = f.next()?.to_string();
                let v = f.next()?.parse().ok()?;
                Some((k, (v, f.next()?.to_string())))
            })
            .collect();
    let only = std::env::var("ONLY").ok();
    let (mut ok, mut rows, mut worst) = (0, 0, 0.0f64);
    for (label, keys, pcts) in &sets {
        if only.as_deref().is_some_and(|o| !label.contains(o)) {
            continue;
        }
        let fp = trace::footprint(keys) as f64;
        for &p in *pcts {
            let cap = ((fp * p / 100.0).round() as u64).max(1);
            let id = format!("{label}@{p}");
            let (best, who) = known
                .entry(id.clone())
                .or_insert_with(|| {
                    let c = [
                        (moka(keys, cap), "moka"),
                        (quick(keys, cap), "quick"),
                        (kuai(keys, cap, Policy::Lru), "lru"),
                    ];
                    let b = c
                        .iter()
                        .copied()
                        .fold((f64::MIN, ""), |a, b| if b.0 > a.0 { b } else { a });
                    (b.0, b.1.to_string())
                })
                .clone();
            let runs: u64 = std::env::var("SEEDS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(1);
            let all: Vec<f64> = (0..runs)
                .map(|_| kuai(keys, cap, Policy::TinyLfu))
                .collect();
            let d = all.iter().sum::<f64>() / runs as f64;
            let lo = all.iter().copied().fold(f64::MAX, f64::min);
            let delta = (d - best) * 100.0;
            rows += 1;
            if delta >= -0.5 {
                ok += 1;
            }
            worst = worst.min(delta);
            println!(
                "{id:>14} cap {cap:>7}: kuai {:>6.2}% (min {:>6.2})  best {:>6.2}% ({who:>5})  {delta:>+6.2}{}",
                d * 100.0,
                lo * 100.0,
                best * 100.0,
                if delta < -0.5 { "  <-- miss" } else { "" }
            );
        }
    }
    let text: String = known
        .iter()
        .map(|(k, (v, w))| format!("{k} {v} {w}\n"))
        .collect();
    let _ = std::fs::write(&cache_path, text);
    println!("{ok}/{rows} rows within 0.5 points of the best peer; worst {worst:+.2}");
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let first = args.next();
    if first.as_deref() == Some("--suite") {
        let dir = args
            .next()
            .unwrap_or_else(|| "../shared/data/traces".into());
        return suite(std::path::Path::new(&dir));
    }
    let Some(path) = first.map(PathBuf::from) else {
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
