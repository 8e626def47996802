//! The request queue under 2× overload, quick numbers without the bench
//! suite (the `queue` bench section's overload rows measure the same):
//!
//! ```text
//! cargo run --release -p kuai-queue --example request_overload [-- <millis per run>]
//! ```
//!
//! A service with 4 slots and ~1 ms per request; requests arrive open-loop
//! at twice the measured capacity with a 20 ms deadline. Compared: no
//! deadline dropping, deadline dropping, and CoDel (target 5 ms, interval
//! 100 ms) on top of deadline dropping. Goodput counts requests served
//! within their deadline; p50/p99 are over served requests that arrived
//! after a 300 ms warm-up, from arrival.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kuai_queue::RequestQueue;

async fn serve() {
    tokio::time::sleep(Duration::from_millis(1)).await;
}

fn queue(drop_expired: bool, codel: bool) -> RequestQueue {
    let b = RequestQueue::builder()
        .max_concurrency(4)
        .queue_capacity(100_000)
        .drop_expired(drop_expired);
    if codel {
        b.codel(Duration::from_millis(5), Duration::from_millis(100))
            .build()
    } else {
        b.build()
    }
}

/// (goodput/s, p50 and p99 ms of served after warm-up, shed+expired share).
async fn run(rq: RequestQueue, rate: f64, dur: Duration) -> (f64, f64, f64, f64) {
    let deadline = Duration::from_millis(20);
    let lat = Arc::new(Mutex::new(Vec::new()));
    let ontime = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    let (mut owed, mut tasks, mut sent) = (0.0, Vec::new(), 0u64);
    while start.elapsed() < dur {
        tick.tick().await;
        owed += rate / 1000.0;
        while owed >= 1.0 {
            owed -= 1.0;
            sent += 1;
            let (rq, lat, ontime) = (rq.clone(), Arc::clone(&lat), Arc::clone(&ontime));
            tasks.push(tokio::spawn(async move {
                let t0 = Instant::now();
                if rq.call(Some(t0 + deadline), serve()).await.is_ok() {
                    let el = t0.elapsed();
                    if el <= deadline {
                        ontime.fetch_add(1, Ordering::Relaxed);
                    }
                    // Steady state only: skip the first 300 ms (CoDel needs
                    // one interval to see a standing queue).
                    if t0.duration_since(start) >= Duration::from_millis(300) {
                        if let Ok(mut l) = lat.lock() {
                            l.push(el);
                        }
                    }
                }
            }));
        }
    }
    let elapsed = start.elapsed();
    for t in tasks {
        let _ = t.await;
    }
    let mut l = lat.lock().map(|l| l.clone()).unwrap_or_default();
    l.sort();
    let q = |p: usize| {
        l.get((l.len() * p / 100).min(l.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    let (p50, p99) = (q(50), q(99));
    let s = rq.stats();
    (
        ontime.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64(),
        p50,
        p99,
        (s.shed_codel + s.dropped_expired) as f64 / sent.max(1) as f64,
    )
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let ms: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1500);
    let dur = Duration::from_millis(ms);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()?;
    let capacity = rt.block_on(async {
        let rq = queue(true, false);
        let start = Instant::now();
        let n = Arc::new(AtomicU64::new(0));
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let (rq, n) = (rq.clone(), Arc::clone(&n));
                tokio::spawn(async move {
                    while start.elapsed() < Duration::from_millis(300) {
                        let _ = rq.call(None, serve()).await;
                        n.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for w in workers {
            let _ = w.await;
        }
        n.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
    });
    let rate = 2.0 * capacity;
    println!("capacity {capacity:.0}/s, offered {rate:.0}/s, deadline 20 ms, {ms} ms per run");
    for round in 0..2 {
        for (name, drop_expired, codel) in [
            ("no dropping", false, false),
            ("deadline dropping", true, false),
            ("CoDel 5/100 ms + deadline", true, true),
        ] {
            let (good, p50, p99, shed) = rt.block_on(run(queue(drop_expired, codel), rate, dur));
            println!(
                "  round {round} {name:<28} goodput {good:>7.0}/s  p50 {p50:>6.1} ms  p99 {p99:>6.1} ms  shed {:>4.1}%",
                shed * 100.0
            );
        }
    }
    Ok(())
}
