//! A sharded, cache-padded counter for statistics under contention.

use crossbeam_utils::CachePadded;

use crate::sync::{AtomicIsize, Ordering};

/// A counter split over cache-padded shards, so that threads bumping it do
/// not fight over one cache line.
///
/// [`add`](Self::add) touches only the calling thread's shard (one relaxed
/// `fetch_add` on a line that other threads rarely write);
/// [`sum`](Self::sum) adds all shards and is therefore a snapshot that may
/// miss updates racing with it. Use it for statistics and approximate sizes,
/// not for synchronisation.
///
/// ```
/// use std::sync::Arc;
/// use kuai_lockfree::ShardedCounter;
///
/// let hits = Arc::new(ShardedCounter::new());
/// let workers: Vec<_> = (0..4)
///     .map(|_| {
///         let hits = Arc::clone(&hits);
///         std::thread::spawn(move || (0..1000).for_each(|_| hits.incr()))
///     })
///     .collect();
/// workers.into_iter().for_each(|w| w.join().unwrap());
/// assert_eq!(hits.sum(), 4000);
/// ```
pub struct ShardedCounter {
    shards: Box<[CachePadded<AtomicIsize>]>,
    mask: usize,
}

impl ShardedCounter {
    /// A counter with two shards per available CPU (rounded up to a power
    /// of two, at most 64).
    pub fn new() -> Self {
        let cpus = std::thread::available_parallelism().map_or(4, |n| n.get());
        Self::with_shards(cpus.saturating_mul(2))
    }

    /// A counter with `shards` shards (rounded up to a power of two, clamped
    /// to 1..=64 — beyond that `sum` only gets slower).
    pub fn with_shards(shards: usize) -> Self {
        let n = shards.clamp(1, 64).next_power_of_two();
        let shards: Vec<_> = (0..n)
            .map(|_| CachePadded::new(AtomicIsize::new(0)))
            .collect();
        ShardedCounter {
            shards: shards.into_boxed_slice(),
            mask: n - 1,
        }
    }

    /// Adds `delta` (which may be negative) to the calling thread's shard.
    #[inline]
    pub fn add(&self, delta: isize) {
        self.shards[shard_index() & self.mask].fetch_add(delta, Ordering::Relaxed);
    }

    /// Adds one.
    #[inline]
    pub fn incr(&self) {
        self.add(1);
    }

    /// Subtracts one.
    #[inline]
    pub fn decr(&self) {
        self.add(-1);
    }

    /// The sum over all shards: exact when no thread is updating, a
    /// snapshot otherwise.
    pub fn sum(&self) -> isize {
        self.shards
            .iter()
            .fold(0isize, |acc, s| acc.wrapping_add(s.load(Ordering::Relaxed)))
    }

    /// Resets every shard to zero (updates racing with it may survive).
    pub fn reset(&self) {
        for s in self.shards.iter() {
            s.store(0, Ordering::Relaxed);
        }
    }

    /// The number of shards.
    pub fn shards(&self) -> usize {
        self.shards.len()
    }
}

impl Default for ShardedCounter {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for ShardedCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardedCounter")
            .field("sum", &self.sum())
            .field("shards", &self.shards.len())
            .finish()
    }
}

/// The calling thread's shard index: threads get consecutive indices in the
/// order they first count, so up to `shards` threads never share a shard.
#[inline]
fn shard_index() -> usize {
    #[cfg(not(kuai_loom))]
    {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        std::thread_local! {
            static INDEX: usize = NEXT.fetch_add(1, Ordering::Relaxed);
        }
        INDEX.with(|i| *i)
    }
    #[cfg(kuai_loom)]
    {
        // Deterministic under loom: the model explores interleavings, not
        // shard choices.
        crate::sync::next_random() as usize
    }
}

#[cfg(all(test, not(kuai_loom)))]
mod tests {
    use super::*;

    #[test]
    fn counts_across_threads() {
        let c = ShardedCounter::with_shards(3);
        assert_eq!(c.shards(), 4);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..500 {
                        c.incr();
                    }
                    c.decr();
                });
            }
        });
        assert_eq!(c.sum(), 4 * 499);
        c.add(-10);
        assert_eq!(c.sum(), 4 * 499 - 10);
        c.reset();
        assert_eq!(c.sum(), 0);
        assert!(format!("{c:?}").contains("sum"));
    }

    #[test]
    fn clamps_shards() {
        assert_eq!(ShardedCounter::with_shards(0).shards(), 1);
        assert_eq!(ShardedCounter::with_shards(1000).shards(), 64);
        assert!(ShardedCounter::new().shards() >= 1);
    }
}
