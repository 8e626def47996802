//! Quick side-by-side numbers for the durable log's backends and read modes
//! (the same measurements as the `queue` bench section's backend rows,
//! without building the whole bench suite):
//!
//! ```text
//! cargo run --release -p kuai-queue --example log_backends [-- <millis per run>]
//! ```
//!
//! Appends: `SegmentBackend::Write` (pwrite + fdatasync) vs
//! `SegmentBackend::Mapped` (mmap appender + msync), 100 B and 1 KiB records,
//! fsync per message (4 threads, one ack in flight each) and group commit
//! 1 ms (2 producers × 4096 acks in flight). Reads: `ReadMode::Mmap` vs
//! `ReadMode::Pread`, a sequential scan and random single-record reads of a
//! page-cache-hot log. Each pair runs interleaved, three times; medians.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kuai_queue::log::{Log, ReadMode, SegmentBackend, SyncPolicy};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// Acked msgs/s for `size`-byte records.
pub fn append_rate(
    backend: SegmentBackend,
    sync: SyncPolicy,
    size: usize,
    producers: usize,
    window: usize,
    dur: Duration,
) -> Res<f64> {
    let dir = tempfile::tempdir()?;
    let log = Arc::new(
        Log::builder(dir.path())
            .backend(backend)
            .sync_policy(sync)
            .segment_bytes(256 << 20)
            .open()?,
    );
    let acked = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let payload = vec![0x5au8; size];
    let start = Instant::now();
    std::thread::scope(|s| -> Res<()> {
        let hs: Vec<_> = (0..producers)
            .map(|_| {
                let (log, acked, stop, payload) = (&log, &acked, &stop, &payload);
                s.spawn(move || -> Result<(), kuai_queue::QueueError> {
                    let mut q = VecDeque::with_capacity(window);
                    while !stop.load(Ordering::Relaxed) {
                        while q.len() < window {
                            q.push_back(log.append(payload)?);
                        }
                        for _ in 0..window.div_ceil(2) {
                            if let Some(t) = q.pop_front() {
                                t.wait()?;
                                acked.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    for t in q {
                        t.wait()?;
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(())
                })
            })
            .collect();
        std::thread::sleep(dur);
        stop.store(true, Ordering::Relaxed);
        for h in hs {
            h.join().map_err(|_| "producer panicked")??;
        }
        Ok(())
    })?;
    Ok(acked.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64())
}

/// (sequential scan msgs/s, random reads/s) of `n` records of `size` bytes.
pub fn read_rates(dir: &std::path::Path, mode: ReadMode, n: u64, reads: u64) -> Res<(f64, f64)> {
    let log = Log::builder(dir).read_mode(mode).open()?;
    let t = Instant::now();
    let mut next = 0;
    let mut sum = 0u64;
    while next < n {
        let batch = log.read_from(next, 256 << 10)?;
        for r in &batch {
            sum = sum.wrapping_add(u64::from(r.payload[r.payload.len() / 2]));
        }
        next += batch.len() as u64;
    }
    let scan = n as f64 / t.elapsed().as_secs_f64();
    let mut rng = fastrand::Rng::with_seed(7);
    let t = Instant::now();
    for _ in 0..reads {
        let r = log.read(rng.u64(0..n))?;
        sum = sum.wrapping_add(u64::from(r.payload[0]));
    }
    let random = reads as f64 / t.elapsed().as_secs_f64();
    std::hint::black_box(sum);
    Ok((scan, random))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Res<()> {
    let ms: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(700);
    let dur = Duration::from_millis(ms);
    let group = SyncPolicy::Group {
        max_latency: Duration::from_millis(1),
        max_batch_bytes: 4 << 20,
    };
    println!("append, acked msgs/s (median of 3, {ms} ms runs, interleaved)");
    for size in [100usize, 1024] {
        for (label, sync, producers, window) in [
            ("fsync per msg, 4 threads x 1", SyncPolicy::PerRecord, 4, 1),
            ("group commit 1 ms, 2 x 4096", group, 2, 4096),
        ] {
            let (mut w, mut m) = (Vec::new(), Vec::new());
            for _ in 0..3 {
                w.push(append_rate(
                    SegmentBackend::Write,
                    sync,
                    size,
                    producers,
                    window,
                    dur,
                )?);
                m.push(append_rate(
                    SegmentBackend::Mapped,
                    sync,
                    size,
                    producers,
                    window,
                    dur,
                )?);
            }
            let (w, m) = (median(w), median(m));
            println!(
                "  {size:>5} B  {label:<30} write+fsync {w:>10.0}  mmap+msync {m:>10.0}  mapped/write {:.2}x",
                m / w
            );
        }
    }
    for (size, n) in [(100usize, 200_000u64), (1024, 50_000)] {
        let dir = tempfile::tempdir()?;
        {
            let log = Log::builder(dir.path()).open()?;
            let payload = vec![0x33u8; size];
            let mut q = VecDeque::new();
            for _ in 0..n {
                q.push_back(log.append(&payload)?);
                if q.len() > 4096 {
                    q.pop_front().map(|t| t.wait()).transpose()?;
                }
            }
            log.close()?;
        }
        let reads = 200_000;
        let (mut ms_, mut mr, mut ps, mut pr) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..3 {
            let (s, r) = read_rates(dir.path(), ReadMode::Mmap, n, reads)?;
            ms_.push(s);
            mr.push(r);
            let (s, r) = read_rates(dir.path(), ReadMode::Pread, n, reads)?;
            ps.push(s);
            pr.push(r);
        }
        let (ms_, mr, ps, pr) = (median(ms_), median(mr), median(ps), median(pr));
        println!(
            "read {size:>5} B x {n}: scan mmap {ms_:>10.0}/s pread {ps:>10.0}/s ({:.2}x)  random mmap {mr:>9.0}/s pread {pr:>9.0}/s ({:.2}x)",
            ms_ / ps,
            mr / pr
        );
    }
    Ok(())
}
