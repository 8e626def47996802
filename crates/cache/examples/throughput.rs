//! A quick single-process throughput probe (kuai vs quick_cache), Zipf keys.
//!
//! `cargo run --release -p kuai-cache --features trace --example throughput -- [threads]`
use std::time::Instant;

use kuai_cache::{Cache, trace};

fn main() {
    let threads: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1);
    let keys = trace::zipf(1_000_000, 0.99, 1 << 20, 7);
    let ops = 2_000_000usize;
    let kuai = match Cache::<u64, u64>::new(100_000) {
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
    for round in 0..3 {
        let t = Instant::now();
        std::thread::scope(|s| {
            for th in 0..threads {
                let (kuai, keys) = (&kuai, &keys);
                s.spawn(move || {
                    for i in 0..ops {
                        let k = keys[(i + th * 1000) & ((1 << 20) - 1)];
                        if i % 10 == 0 {
                            kuai.insert(k, 1);
                        } else {
                            std::hint::black_box(kuai.get(&k));
                        }
                    }
                });
            }
        });
        let k = (ops * threads) as f64 / t.elapsed().as_secs_f64() / 1e6;
        let t = Instant::now();
        std::thread::scope(|s| {
            for th in 0..threads {
                let (qc, keys) = (&qc, &keys);
                s.spawn(move || {
                    for i in 0..ops {
                        let k = keys[(i + th * 1000) & ((1 << 20) - 1)];
                        if i % 10 == 0 {
                            qc.insert(k, 1);
                        } else {
                            std::hint::black_box(qc.get(&k));
                        }
                    }
                });
            }
        });
        let q = (ops * threads) as f64 / t.elapsed().as_secs_f64() / 1e6;
        println!(
            "round {round}: kuai {k:.2} Mops/s, quick_cache {q:.2} Mops/s, ratio {:.2}",
            k / q
        );
    }
}
