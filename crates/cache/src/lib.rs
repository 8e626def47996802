//! `kuai-cache`: a concurrent in-process cache with a high hit ratio, and
//! the seed article's defence kit around it.
//!
//! * [`Cache`]: sharded, bounded by entry count or weight, with an adaptive
//!   W-TinyLFU default ([`Policy::TinyLfu`]) or FIFO / LRU / LFU; time-to-live,
//!   time-to-idle and per-entry expiry on a timer wheel driven by a
//!   [`kuai_core::Clock`]; an eviction listener told the [`RemovalCause`];
//!   [`CacheStats`].
//!
//! Use it where a process reads the same keys again and again and a
//! `HashMap` would grow without bound.
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
//! # Ok::<(), kuai_cache::CacheError>(())
//! ```
//!
//! # Feature flags
//! * `loader` (default): async loaders over tokio.
//! * `trace`: trace readers for the `replay` example and the benchmarks.
#![forbid(unsafe_code)]

mod bloom;
mod cache;
mod error;
mod hashing;
mod hot_keys;
#[cfg(feature = "redis")]
mod l2;
mod list;
#[cfg(feature = "loader")]
mod loader;
#[cfg(feature = "loader")]
mod patterns;
mod policy;
mod shard;
mod sketch;
mod stats;
mod sync;
mod timer_wheel;
#[cfg(feature = "trace")]
pub mod trace;

pub use bloom::BloomFilter;
pub use cache::{Cache, CacheBuilder, EvictionListener, Lease, MAX_LEASES, MAX_TTL, Weigher};
pub use error::CacheError;
pub use hashing::{FastHashBuilder, FastHasher};
pub use hot_keys::{HotKeyCache, HotKeyDetector};
#[cfg(feature = "redis")]
pub use l2::{TwoLevelCache, TwoLevelConfig, TwoLevelStats};
#[cfg(feature = "loader")]
pub use loader::{LoadingCache, LoadingCacheBuilder};
#[cfg(feature = "loader")]
pub use patterns::{CacheAside, ReadThrough, WriteBehind, WriteBehindConfig, WriteThrough};
pub use policy::Policy;
pub use stats::{CacheStats, RemovalCause};

/// The workspace-wide error; [`CacheError`] converts into it.
pub use kuai_core::Error;
