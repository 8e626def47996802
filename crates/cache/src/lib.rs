//! `kuai-cache`: a concurrent in-process cache with a high hit ratio, and
//! the seed article's defence kit around it.
//!
//! Use it where a process reads the same keys again and again and a
//! `HashMap` would grow without bound, or where a slow source (a database, a
//! remote service) needs a cache in front that does not stampede, go stale
//! or fall over when the cache server does.
//!
//! | item | what for |
//! |---|---|
//! | [`Cache`] | sharded, bounded by entries or weight; adaptive W-TinyLFU by default ([`Policy`]: FIFO, LRU, LFU too); TTL, TTI, per-entry expiry on a timer wheel driven by a [`kuai_core::Clock`]; eviction listener with the [`RemovalCause`]; [`CacheStats`] |
//! | [`Lease`] / [`Cache::fill`] | version-checked fills: a read that raced with a write or an invalidation is refused instead of caching a stale value |
//! | `LoadingCache` (feature `loader`) | single-flight `get_with` (one load per key; waiters share the result or error), load timeout, panic isolation, refresh-ahead, negative caching, bloom guard, TTL jitter |
//! | `CacheAside`, `ReadThrough`, `WriteThrough`, `WriteBehind` (feature `loader`) | the seed's patterns over a [`kuai_core::KvStore`]; write-behind optionally durable through a [`JournalConfig`] (a crash loses no acknowledged write) |
//! | [`BloomFilter`] | cache-penetration guard for keys that never existed |
//! | [`HotKeyDetector`], [`HotKeyCache`] | top-k hot keys over a sliding window; local replicas of hot keys |
//! | `TwoLevelCache` (feature `redis`) | L1 + Redis L2 over one or several nodes (rendezvous placement, per-node breaker and stats): per-level TTLs, pub/sub invalidation, 100 ms timeouts, fail-open, hot keys as copies on distinct nodes |
//! | `trace` (feature `trace`) | ARC / key-per-line trace readers (gzip, zstd, xz) and a Zipf source, for the `replay` example |
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use kuai_cache::{Cache, RemovalCause};
//! use kuai_core::ManualClock;
//!
//! let clock = ManualClock::new();
//! let cache: Cache<u64, String> = Cache::builder()
//!     .max_capacity(1_000)
//!     .time_to_live(Duration::from_secs(30))
//!     .clock(Arc::new(clock.clone()))
//!     .build()?;
//! cache.insert(7, "seven".to_string());
//! assert_eq!(cache.get(&7).as_deref(), Some("seven"));
//! clock.advance(Duration::from_secs(31));
//! assert_eq!(cache.get(&7), None, "expired");
//! assert_eq!(cache.stats().hits, 1);
//!
//! // A reader's fill that raced with a write is refused.
//! let lease = cache.lease(8);
//! cache.insert(8, "new".to_string());
//! assert!(cache.fill(lease, "old".to_string(), None).is_err());
//! assert_eq!(cache.get(&8).as_deref(), Some("new"));
//! # Ok::<(), kuai_cache::CacheError>(())
//! ```
//!
//! # Feature flags
//! * `loader` (default): async loaders and patterns; depends on tokio. Without
//!   it the crate has no async runtime dependency.
//! * `trace`: trace readers for the `replay` example and the benchmarks.
//! * `redis`: the Redis L2 (`TwoLevelCache`), against one or several real
//!   servers; pulls `kuai-shard` for rendezvous placement.
//!
//! # Errors
//! Bad input is a typed [`CacheError`] (zero capacity, absurd durations, a
//! weigher returning 0, an entry heavier than a shard), never a panic; a
//! loader that fails, panics or hangs gives its waiters an error and frees
//! the key. `CacheError` converts into [`kuai_core::Error`].
#![forbid(unsafe_code)]

mod bloom;
mod cache;
mod error;
mod hashing;
mod hot_keys;
mod journal;
#[cfg(feature = "redis")]
mod l2;
mod list;
#[cfg(feature = "loader")]
mod loader;
#[cfg(feature = "loader")]
mod patterns;
mod policy;
mod read_buffer;
mod shard;
mod sketch;
mod stats;
mod sync;
mod timer_wheel;
#[cfg(feature = "trace")]
pub mod trace;

pub use bloom::BloomFilter;
pub use cache::keyspace::{Batch, Compute, Current, Expiry};
pub use cache::{Cache, CacheBuilder, EvictionListener, Lease, MAX_LEASES, MAX_TTL, Weigher};
pub use error::CacheError;
pub use hashing::{FastHashBuilder, FastHasher};
pub use hot_keys::{HotKeyCache, HotKeyDetector};
pub use journal::{JournalConfig, JournalRecovery, MAX_JOURNAL_RECORD};
#[cfg(feature = "redis")]
pub use l2::{L2NodeStats, TwoLevelCache, TwoLevelConfig, TwoLevelStats};
#[cfg(feature = "loader")]
pub use loader::{LoadingCache, LoadingCacheBuilder};
#[cfg(feature = "loader")]
pub use patterns::{CacheAside, ReadThrough, WriteBehind, WriteBehindConfig, WriteThrough};
pub use policy::Policy;
pub use stats::{CacheStats, RemovalCause};

/// The workspace-wide error; [`CacheError`] converts into it.
pub use kuai_core::Error;
