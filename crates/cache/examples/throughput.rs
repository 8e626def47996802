//! A quick single-process throughput probe (kuai vs quick_cache), Zipf keys.
//!
//! `cargo run --release -p kuai-cache --features trace --example throughput -- [threads] [keyspace] [write_every]`
//!
//! Environment: `POLICY=lru|fifo|tinylfu`, `SHARDS=n`, `KUAI_ONLY=1` (skip quick_cache),
//! `QC_ONLY=1` (quick_cache only), `OPS=n` per thread and round, `ROUNDS=n`.
use std::time::Instant;

use kuai_cache::{Cache, trace};

fn main() {
    let mut args = std::env::args().skip(1);
    let threads: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1);
    let space: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let write_every: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    let mut keys = trace::zipf(space, 0.99, 1 << 20, 7);
    if std::env::var_os("SCRAMBLE").is_some() {
        for k in &mut keys {
            *k = k.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(17);
        }
    }
    let env = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    // OPS / ROUNDS: e.g. instructions per op under callgrind, as the
    // difference of two runs with different OPS.
    let ops = env("OPS", 2_000_000);
    let rounds = env("ROUNDS", 3);
    let policy = match std::env::var("POLICY").as_deref() {
        Ok("lru") => kuai_cache::Policy::Lru,
        Ok("fifo") => kuai_cache::Policy::Fifo,
        _ => kuai_cache::Policy::TinyLfu,
    };
    let shards: usize = std::env::var("SHARDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32);
    let kuai = match Cache::<u64, u64>::builder()
        .max_capacity(100_000)
        .policy(policy)
        .shards(shards)
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return;
        }
    };
    let qc = quick_cache::sync::Cache::<u64, u64>::new(100_000);
    for k in keys.iter().take(200_000) {
        kuai.insert(*k, 0);
        qc.insert(*k, 0);
    }
    macro_rules! run {
        ($f:expr, $off:expr, $ops:expr) => {
            timed(&keys, threads, write_every, $f, $off, $ops)
        };
    }
    let kf = |k: u64, w: bool| {
        if w {
            kuai.insert(k, 1);
        } else {
            std::hint::black_box(kuai.get(&k));
        }
    };
    let qf = |k: u64, w: bool| {
        if w {
            qc.insert(k, 1);
        } else {
            std::hint::black_box(qc.get(&k));
        }
    };
    let mops = |ops: usize, secs: f64| (ops * threads) as f64 / secs / 1e6;
    if std::env::var_os("PAIRS").is_some() {
        // Many short alternating slices: the median of the per-pair ratios
        // is robust to the machine's noise.
        let pairs = env("PAIRS", 40).max(1);
        let slice = env("SLICE", 200_000);
        let mut ratios = Vec::new();
        let (mut kt, mut qt) = (0.0, 0.0);
        for p in 0..pairs {
            let off = p * slice;
            let (a, b) = if p % 2 == 0 {
                let a = run!(&kf, off, slice);
                (a, run!(&qf, off, slice))
            } else {
                let b = run!(&qf, off, slice);
                (run!(&kf, off, slice), b)
            };
            kt += a;
            qt += b;
            ratios.push(b / a);
        }
        ratios.sort_by(f64::total_cmp);
        println!(
            "threads {threads}: kuai {:.2} Mops/s, quick_cache {:.2} Mops/s, median ratio {:.2} (p25 {:.2}, p75 {:.2})",
            mops(slice * pairs, kt),
            mops(slice * pairs, qt),
            ratios[pairs / 2],
            ratios[pairs / 4],
            ratios[pairs * 3 / 4]
        );
        return;
    }
    let qc_only = std::env::var_os("QC_ONLY").is_some();
    let kuai_only = std::env::var_os("KUAI_ONLY").is_some();
    for round in 0..rounds {
        if qc_only {
            println!("quick_cache {:.2}", mops(ops, run!(&qf, 0, ops)));
            continue;
        }
        let k = mops(ops, run!(&kf, 0, ops));
        if kuai_only {
            println!("kuai {k:.2}");
            continue;
        }
        let q = mops(ops, run!(&qf, 0, ops));
        println!(
            "round {round}: kuai {k:.2} Mops/s, quick_cache {q:.2} Mops/s, ratio {:.2}",
            k / q
        );
    }
}

/// `ops` operations per thread over `keys` from `off`, every `write_every`-th
/// an insert; returns seconds. Generic, so `f` is inlined into the loop (the
/// instruction counts read with callgrind are the cache's own).
fn timed<F: Fn(u64, bool) + Sync>(
    keys: &[u64],
    threads: usize,
    write_every: usize,
    f: &F,
    off: usize,
    ops: usize,
) -> f64 {
    let t = Instant::now();
    std::thread::scope(|s| {
        for th in 0..threads {
            s.spawn(move || {
                for i in 0..ops {
                    let k = keys[(off + i + th * 1000) & ((1 << 20) - 1)];
                    f(k, i % write_every == 0);
                }
            });
        }
    });
    t.elapsed().as_secs_f64()
}
