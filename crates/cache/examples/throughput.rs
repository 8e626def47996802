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
    if std::env::var_os("PAIRS").is_some() {
        // Many short alternating slices: the median of the per-pair ratios
        // is robust to the machine's noise.
        let pairs = env("PAIRS", 40);
        let slice = env("SLICE", 200_000);
        let run = |f: &(dyn Fn(u64, bool) + Sync), off: usize| {
            let t = Instant::now();
            std::thread::scope(|s| {
                for th in 0..threads {
                    let keys = &keys;
                    s.spawn(move || {
                        for i in 0..slice {
                            let k = keys[(off + i + th * 1000) & ((1 << 20) - 1)];
                            f(k, i % write_every == 0);
                        }
                    });
                }
            });
            t.elapsed().as_secs_f64()
        };
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
        let mut ratios = Vec::new();
        let (mut kt, mut qt) = (0.0, 0.0);
        for p in 0..pairs {
            let off = p * slice;
            let (a, b) = if p % 2 == 0 {
                let a = run(&kf, off);
                (a, run(&qf, off))
            } else {
                let b = run(&qf, off);
                (run(&kf, off), b)
            };
            kt += a;
            qt += b;
            ratios.push(b / a);
        }
        ratios.sort_by(f64::total_cmp);
        let ops = (slice * threads * pairs) as f64;
        println!(
            "threads {threads}: kuai {:.2} Mops/s, quick_cache {:.2} Mops/s, median ratio {:.2} (p25 {:.2}, p75 {:.2})",
            ops / kt / 1e6,
            ops / qt / 1e6,
            ratios[pairs / 2],
            ratios[pairs / 4],
            ratios[pairs * 3 / 4]
        );
        return;
    }
    let qc_only = std::env::var_os("QC_ONLY").is_some();
    for round in 0..rounds {
        let t = Instant::now();
        if qc_only {
            std::thread::scope(|s| {
                for th in 0..threads {
                    let (qc, keys) = (&qc, &keys);
                    s.spawn(move || {
                        for i in 0..ops {
                            let k = keys[(i + th * 1000) & ((1 << 20) - 1)];
                            if i % write_every == 0 {
                                qc.insert(k, 1);
                            } else {
                                std::hint::black_box(qc.get(&k));
                            }
                        }
                    });
                }
            });
            let q = (ops * threads) as f64 / t.elapsed().as_secs_f64() / 1e6;
            println!("quick_cache {q:.2}");
            continue;
        }
        std::thread::scope(|s| {
            for th in 0..threads {
                let (kuai, keys) = (&kuai, &keys);
                s.spawn(move || {
                    for i in 0..ops {
                        let k = keys[(i + th * 1000) & ((1 << 20) - 1)];
                        if i % write_every == 0 {
                            kuai.insert(k, 1);
                        } else {
                            std::hint::black_box(kuai.get(&k));
                        }
                    }
                });
            }
        });
        let k = (ops * threads) as f64 / t.elapsed().as_secs_f64() / 1e6;
        if std::env::var_os("KUAI_ONLY").is_some() {
            println!("kuai {k:.2}");
            continue;
        }
        let t = Instant::now();
        std::thread::scope(|s| {
            for th in 0..threads {
                let (qc, keys) = (&qc, &keys);
                s.spawn(move || {
                    for i in 0..ops {
                        let k = keys[(i + th * 1000) & ((1 << 20) - 1)];
                        if i % write_every == 0 {
                            qc.insert(k, 1);
                        } else {
                            std::hint::black_box(qc.get(&k));
                        }
                    }
                });
            }
        });
        let q = (ops * threads) as f64 / t.elapsed().as_secs_f64() / 1e6;
        if std::env::var_os("KUAI_ONLY").is_some() {
            continue;
        }
        println!(
            "round {round}: kuai {k:.2} Mops/s, quick_cache {q:.2} Mops/s, ratio {:.2}",
            k / q
        );
    }
}
