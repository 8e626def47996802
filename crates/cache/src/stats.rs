//! Removal causes and statistics.

use std::time::Duration;

/// Why an entry left the cache (passed to the eviction listener).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RemovalCause {
    /// Evicted to respect the capacity / weight bound.
    Size,
    /// Its time-to-live, time-to-idle or per-entry deadline passed.
    Expired,
    /// Removed by `remove` / `invalidate_all`.
    Explicit,
    /// Overwritten by a new value for the same key.
    Replaced,
}

impl RemovalCause {
    pub(crate) fn index(self) -> usize {
        match self {
            RemovalCause::Size => 0,
            RemovalCause::Expired => 1,
            RemovalCause::Explicit => 2,
            RemovalCause::Replaced => 3,
        }
    }

    /// Whether the cache removed the entry on its own (size or expiry),
    /// as opposed to the caller's remove or overwrite.
    pub fn was_evicted(self) -> bool {
        matches!(self, RemovalCause::Size | RemovalCause::Expired)
    }
}

/// Counters of one shard (kept under the shard lock: no atomics on the hot path).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ShardStats {
    pub(crate) hits: u64,
    pub(crate) misses: u64,
    pub(crate) inserts: u64,
    pub(crate) rejected: u64,
    pub(crate) removals: [u64; 4],
}

/// A snapshot of a cache's statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CacheStats {
    /// Lookups that found a live entry.
    pub hits: u64,
    /// Lookups that found nothing (or an expired entry).
    pub misses: u64,
    /// New entries inserted (overwrites excluded).
    pub inserts: u64,
    /// Inserts refused (entry too heavy, zero weight).
    pub rejected: u64,
    /// Loads run by the loaders (`get_or_load` and friends).
    pub loads: u64,
    /// Loads that failed, timed out or panicked.
    pub load_failures: u64,
    /// Total time spent in loads.
    pub load_time: Duration,
    /// Entries evicted for size.
    pub evicted_size: u64,
    /// Entries that expired.
    pub evicted_expired: u64,
    /// Entries removed explicitly.
    pub removed_explicit: u64,
    /// Entries replaced by a newer value.
    pub replaced: u64,
}

impl CacheStats {
    /// hits / (hits + misses), or 0 when there were no lookups.
    pub fn hit_ratio(&self) -> f64 {
        let total = self.hits + self.misses;
        if total == 0 {
            0.0
        } else {
            self.hits as f64 / total as f64
        }
    }

    pub(crate) fn add_shard(&mut self, s: &ShardStats) {
        self.hits += s.hits;
        self.misses += s.misses;
        self.inserts += s.inserts;
        self.rejected += s.rejected;
        self.evicted_size += s.removals[RemovalCause::Size.index()];
        self.evicted_expired += s.removals[RemovalCause::Expired.index()];
        self.removed_explicit += s.removals[RemovalCause::Explicit.index()];
        self.replaced += s.removals[RemovalCause::Replaced.index()];
    }
}
