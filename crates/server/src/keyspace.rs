//! The keyspace: a weight-bounded `kuai::cache::Cache` of byte-string keys
//! to byte-string values, with millisecond TTLs.
//!
//! `maxmemory` is the cache's weight bound (each key weighs its key and
//! value bytes plus [`ENTRY_OVERHEAD`]); the eviction policy is the cache's:
//! `allkeys-lru` → [`Policy::Lru`], `allkeys-lfu` → [`Policy::Lfu`],
//! `allkeys-random` → [`Policy::Fifo`] (kuai-cache has no random policy;
//! FIFO is the nearest insertion-order-blind choice), `noeviction` → the
//! cache [rejects writes when full](kuai::cache::CacheBuilder::reject_when_full).
//! The `volatile-*` policies map onto their `allkeys-*` counterparts (and
//! `volatile-ttl` onto FIFO): they may evict keys without a TTL, where Redis
//! would only evict keys with one.
//!
//! TTLs are absolute Unix milliseconds in the commands and the append-only
//! file, and [`Instant`]s of the server's clock in the cache: the mapping is
//! fixed at start, so a deadline written as `PXAT t` reads back as exactly
//! `t`. Expired keys are never returned; the cache's timer wheel reclaims
//! them as keys are written and when [`Keyspace::sweep_expired`] runs.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use bytes::Bytes;
use kuai::cache::{Cache, CacheError, CacheStats, Expiry, Policy};
use kuai::core::Clock;

use crate::reply::{ReplyBuf, ZERO_COPY_THRESHOLD};

/// Bytes charged per key on top of its key and value (the cache's slab
/// node and table slot, and the timer links once TTLs are used), for
/// `maxmemory` accounting.
pub const ENTRY_OVERHEAD: usize = 96;

/// Deadlines further out than this (kuai-cache counts nanoseconds in a
/// `u64`, about 584 years) are stored in the cache as this far marker and
/// their exact millisecond in a side table.
const FAR: Duration = Duration::from_secs(400 * 365 * 24 * 3600);

/// Each shard of a `maxmemory`-bounded keyspace holds at least this many
/// bytes (fewer, bigger shards for small budgets: the bound is per shard).
const MIN_SHARD_BYTES: usize = 16 << 20;

/// What happens when `maxmemory` is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EvictionPolicy {
    /// Refuse writes that add memory (`-OOM`).
    #[default]
    NoEviction,
    /// Evict the least recently used key.
    AllKeysLru,
    /// Evict the least frequently used key.
    AllKeysLfu,
    /// Evict "a random key": served by FIFO (the oldest write goes first).
    AllKeysRandom,
    /// Served as `allkeys-lru` (keys without a TTL may be evicted too).
    VolatileLru,
    /// Served as `allkeys-lfu` (keys without a TTL may be evicted too).
    VolatileLfu,
    /// Served as `allkeys-random`, i.e. FIFO.
    VolatileRandom,
    /// Served by FIFO, not by the nearest deadline.
    VolatileTtl,
}

impl EvictionPolicy {
    /// Parses Redis's names (`noeviction`, `allkeys-lru`, `allkeys-lfu`,
    /// `allkeys-random`, `volatile-lru`, `volatile-lfu`, `volatile-random`,
    /// `volatile-ttl`).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "noeviction" => EvictionPolicy::NoEviction,
            "allkeys-lru" => EvictionPolicy::AllKeysLru,
            "allkeys-lfu" => EvictionPolicy::AllKeysLfu,
            "allkeys-random" => EvictionPolicy::AllKeysRandom,
            "volatile-lru" => EvictionPolicy::VolatileLru,
            "volatile-lfu" => EvictionPolicy::VolatileLfu,
            "volatile-random" => EvictionPolicy::VolatileRandom,
            "volatile-ttl" => EvictionPolicy::VolatileTtl,
            _ => return None,
        })
    }

    /// Redis's name of the policy.
    pub fn name(self) -> &'static str {
        match self {
            EvictionPolicy::NoEviction => "noeviction",
            EvictionPolicy::AllKeysLru => "allkeys-lru",
            EvictionPolicy::AllKeysLfu => "allkeys-lfu",
            EvictionPolicy::AllKeysRandom => "allkeys-random",
            EvictionPolicy::VolatileLru => "volatile-lru",
            EvictionPolicy::VolatileLfu => "volatile-lfu",
            EvictionPolicy::VolatileRandom => "volatile-random",
            EvictionPolicy::VolatileTtl => "volatile-ttl",
        }
    }

    /// The kuai-cache policy that serves this one.
    pub fn cache_policy(self) -> Policy {
        match self {
            EvictionPolicy::AllKeysLru | EvictionPolicy::VolatileLru => Policy::Lru,
            EvictionPolicy::AllKeysLfu | EvictionPolicy::VolatileLfu => Policy::Lfu,
            // Nothing is evicted under noeviction: FIFO's hits cost nothing.
            EvictionPolicy::NoEviction
            | EvictionPolicy::AllKeysRandom
            | EvictionPolicy::VolatileRandom
            | EvictionPolicy::VolatileTtl => Policy::Fifo,
        }
    }
}

/// The keyspace's hasher: foldhash (hashbrown's default), which is faster
/// than kuai-cache's general-purpose hasher on short byte strings.
pub type KeyHasher = hashbrown::DefaultHashBuilder;

/// Bytes stored inline in a [`Blob`] (no allocation).
const INLINE: usize = 22;

/// A key or value: up to 22 bytes inline (no allocation), larger ones on the
/// heap, and values of [`ZERO_COPY_THRESHOLD`] bytes or more as shared
/// `Bytes` so replies chain them without copying. 24 bytes.
///
/// Hashes and compares as its bytes, so the keyspace is looked up by `&[u8]`.
#[derive(Clone)]
pub enum Blob {
    /// Short: the bytes and their length.
    Inline(u8, [u8; INLINE]),
    /// Medium.
    Heap(Box<[u8]>),
    /// Large, shared with replies.
    Shared(Box<Bytes>),
}

impl Blob {
    /// Copies `b`.
    #[inline]
    pub fn new(b: &[u8]) -> Self {
        if b.len() <= INLINE {
            let mut buf = [0u8; INLINE];
            buf[..b.len()].copy_from_slice(b);
            Blob::Inline(b.len() as u8, buf)
        } else if b.len() < ZERO_COPY_THRESHOLD {
            Blob::Heap(b.into())
        } else {
            Blob::Shared(Box::new(Bytes::copy_from_slice(b)))
        }
    }

    /// Takes `v` (no copy for large values).
    pub fn from_vec(v: Vec<u8>) -> Self {
        if v.len() >= ZERO_COPY_THRESHOLD {
            Blob::Shared(Box::new(Bytes::from(v)))
        } else if v.len() <= INLINE {
            Blob::new(&v)
        } else {
            Blob::Heap(v.into_boxed_slice())
        }
    }

    /// The bytes.
    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        match self {
            Blob::Inline(n, b) => &b[..*n as usize],
            Blob::Heap(b) => b,
            Blob::Shared(b) => b,
        }
    }

    /// The bytes as `Bytes` (shared for large values, copied otherwise).
    pub fn to_bytes(&self) -> Bytes {
        match self {
            Blob::Shared(b) => (**b).clone(),
            other => Bytes::copy_from_slice(other.as_slice()),
        }
    }

    /// Appends the value as a bulk reply: large values are chained, not copied.
    #[inline]
    pub fn reply(&self, out: &mut ReplyBuf) {
        match self {
            Blob::Shared(b) => out.bulk_bytes(b),
            other => out.bulk(other.as_slice()),
        }
    }

    /// Length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    /// Whether it holds no byte.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Debug for Blob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_slice()))
    }
}

impl Borrow<[u8]> for Blob {
    #[inline]
    fn borrow(&self) -> &[u8] {
        self.as_slice()
    }
}

impl Hash for Blob {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Exactly as `[u8]` hashes, as `Borrow` requires.
        self.as_slice().hash(state)
    }
}

impl PartialEq for Blob {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Blob {}

/// The keyspace's counters (from the cache's statistics).
#[derive(Debug, Default, Clone, Copy)]
pub struct KeyspaceStats {
    /// Lookups that found a live key.
    pub hits: u64,
    /// Lookups that found nothing.
    pub misses: u64,
    /// Keys removed because their TTL passed.
    pub expired: u64,
    /// Keys evicted for `maxmemory`.
    pub evicted: u64,
}

/// The keyspace: a `kuai::cache::Cache<Blob, Blob>` plus the server's time
/// base.
///
/// ```
/// use std::sync::Arc;
/// use kuai::cache::{Compute, Expiry};
/// use kuai::core::SystemClock;
/// use kuai_server::keyspace::{Blob, EvictionPolicy, Keyspace};
/// let ks = Keyspace::new(16, 0, EvictionPolicy::NoEviction, Arc::new(SystemClock))?;
/// ks.cache().compute(Blob::new(b"k"), |_| Compute::Insert(Blob::new(b"v"), Expiry::Never))?;
/// assert_eq!(ks.cache().peek_with(&b"k"[..], |v| v.to_bytes()).as_deref(), Some(&b"v"[..]));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Keyspace {
    cache: Cache<Blob, Blob, KeyHasher>,
    maxmemory: usize,
    policy: EvictionPolicy,
    clock: Arc<dyn Clock>,
    base: Instant,
    base_ms: u64,
    /// Exact deadlines of keys whose deadline is past [`FAR`].
    far: parking_lot::Mutex<std::collections::HashMap<Box<[u8]>, u64>>,
}

impl fmt::Debug for Keyspace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyspace")
            .field("cache", &self.cache)
            .field("maxmemory", &self.maxmemory)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Keyspace {
    /// A keyspace of up to `shards` shards (a power of two; fewer for a
    /// small `maxmemory`, so that each shard holds at least 16 MiB),
    /// bounded to `maxmemory` bytes (0: unbounded) with `policy`, on
    /// `clock`.
    pub fn new(
        shards: usize,
        maxmemory: usize,
        policy: EvictionPolicy,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, String> {
        let shards = shards.clamp(1, 1 << 16).next_power_of_two();
        let (max, shards) = if maxmemory == 0 {
            (1u64 << 48, shards)
        } else {
            let by_size = (maxmemory / MIN_SHARD_BYTES).max(1);
            let by_size = 1usize << (usize::BITS - 1 - by_size.leading_zeros());
            (maxmemory as u64, shards.min(by_size))
        };
        let cache = Cache::<Blob, Blob>::builder()
            .max_weight(max, |k: &Blob, v: &Blob| {
                (k.len() + v.len() + ENTRY_OVERHEAD).min(u32::MAX as usize) as u32
            })
            .policy(policy.cache_policy())
            .shards(shards)
            .expected_entries(shards * 256)
            .reject_when_full(maxmemory != 0 && policy == EvictionPolicy::NoEviction)
            .clock(clock.clone())
            .hasher(KeyHasher::default())
            .build()
            .map_err(|e| e.to_string())?;
        let base = clock.now();
        let base_ms = clock
            .system_time()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Ok(Keyspace {
            cache,
            maxmemory,
            policy,
            clock,
            base,
            base_ms,
            far: parking_lot::Mutex::new(std::collections::HashMap::new()),
        })
    }

    /// The cache holding the keys.
    #[inline]
    pub fn cache(&self) -> &Cache<Blob, Blob, KeyHasher> {
        &self.cache
    }

    /// Unix milliseconds now: the wall clock read at start, advanced by the
    /// monotonic clock (so TTLs do not jump with the wall clock).
    #[inline]
    pub fn now_ms(&self) -> u64 {
        let d = self.clock.now().saturating_duration_since(self.base);
        self.base_ms + d.as_millis() as u64
    }

    /// The instant of the clock at Unix millisecond `ms`.
    pub fn instant_of(&self, ms: u64) -> Instant {
        let d = Duration::from_millis(ms.saturating_sub(self.base_ms));
        self.base
            .checked_add(d)
            .unwrap_or_else(|| self.base + Duration::from_secs(1 << 40))
    }

    /// The Unix millisecond of an instant of the clock.
    pub fn ms_of(&self, at: Instant) -> u64 {
        self.base_ms + at.saturating_duration_since(self.base).as_millis() as u64
    }

    /// The cache's expiry for `key` at Unix millisecond `ms` (0: none).
    /// Call it only when the expiry is about to be applied: a deadline past
    /// the far horizon is recorded for `key` in the side table.
    pub fn expiry_for(&self, key: &[u8], ms: u64) -> Expiry {
        if ms == 0 {
            return Expiry::Never;
        }
        let far = self.base + FAR;
        let at = self.instant_of(ms);
        if at < far {
            return Expiry::At(at);
        }
        self.far.lock().insert(key.into(), ms);
        Expiry::At(far)
    }

    /// The Unix millisecond of `key`'s deadline `at` as the cache holds it.
    pub fn deadline_ms(&self, key: &[u8], at: Instant) -> u64 {
        if at == self.base + FAR {
            if let Some(&ms) = self.far.lock().get(key) {
                return ms;
            }
        }
        self.ms_of(at)
    }

    /// When `key` expires, in Unix milliseconds: `None` if absent, `Some(0)`
    /// if it has no TTL.
    pub fn expire_at(&self, key: &[u8]) -> Option<u64> {
        Some(
            self.cache
                .expires_at(key)?
                .map_or(0, |at| self.deadline_ms(key, at)),
        )
    }

    /// Removes every key.
    pub fn clear(&self) {
        self.cache.invalidate_all();
        self.far.lock().clear();
    }

    /// The memory budget (0 = unlimited).
    pub fn maxmemory(&self) -> usize {
        self.maxmemory
    }

    /// The eviction policy.
    pub fn policy(&self) -> EvictionPolicy {
        self.policy
    }

    /// Number of shards.
    pub fn shard_count(&self) -> usize {
        self.cache.shard_count()
    }

    /// Keys (including expired ones not yet reclaimed).
    pub fn len(&self) -> usize {
        self.cache.entry_count() as usize
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes charged to keys and values (the cache's weight).
    pub fn used_memory(&self) -> usize {
        self.cache.weighted_size() as usize
    }

    /// Counters.
    pub fn stats(&self) -> KeyspaceStats {
        let s: CacheStats = self.cache.stats();
        KeyspaceStats {
            hits: s.hits,
            misses: s.misses,
            expired: s.evicted_expired,
            evicted: s.evicted_size,
        }
    }

    /// Keys with a TTL (one pass over the keyspace, shard by shard).
    pub fn volatile(&self) -> usize {
        let mut n = 0;
        self.cache
            .for_each_with_expiry(|_, _, at| n += usize::from(at.is_some()));
        n
    }

    /// Reclaims expired keys (the housekeeping thread calls this).
    pub fn sweep_expired(&self) {
        self.cache.run_pending_tasks();
    }
}

/// Whether a cache error is the keyspace being full (`-OOM`).
pub fn is_oom(e: &CacheError) -> bool {
    matches!(e, CacheError::Full { .. } | CacheError::TooHeavy { .. })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kuai::cache::Compute;
    use kuai::core::ManualClock;

    fn ks(maxmemory: usize, policy: EvictionPolicy) -> (Keyspace, ManualClock) {
        let clock = ManualClock::new();
        let ks = Keyspace::new(4, maxmemory, policy, Arc::new(clock.clone())).expect("ok");
        (ks, clock)
    }

    fn set(ks: &Keyspace, k: &str, v: &[u8], e: Expiry) -> Result<(), CacheError> {
        ks.cache()
            .compute(Blob::new(k.as_bytes()), |_| {
                Compute::Insert(Blob::new(v), e)
            })
            .map(|_| ())
    }

    #[test]
    fn blobs_are_small_and_hash_as_bytes() {
        assert_eq!(std::mem::size_of::<Blob>(), 24);
        for n in [0, 1, INLINE, INLINE + 1, ZERO_COPY_THRESHOLD] {
            let v = vec![7u8; n];
            let b = Blob::new(&v);
            assert_eq!(b.as_slice(), &v[..]);
            assert_eq!(Blob::from_vec(v.clone()).as_slice(), &v[..]);
            let h = |x: &dyn Fn(&mut std::collections::hash_map::DefaultHasher)| {
                let mut s = std::collections::hash_map::DefaultHasher::new();
                x(&mut s);
                s.finish()
            };
            assert_eq!(h(&|s| b.hash(s)), h(&|s| v[..].hash(s)));
        }
        let big = Blob::new(&vec![1u8; ZERO_COPY_THRESHOLD]);
        assert_eq!(big.to_bytes().as_ptr(), big.to_bytes().as_ptr(), "shared");
    }

    #[test]
    fn millisecond_deadlines_round_trip_and_expire() {
        let (ks, clock) = ks(0, EvictionPolicy::NoEviction);
        let at = ks.now_ms() + 1500;
        set(&ks, "k", b"v", Expiry::At(ks.instant_of(at))).expect("ok");
        assert_eq!(ks.expire_at(b"k"), Some(at));
        assert_eq!(ks.volatile(), 1);
        clock.advance(Duration::from_millis(1499));
        assert!(ks.cache().contains_key(&b"k"[..]));
        clock.advance(Duration::from_millis(1));
        assert!(!ks.cache().contains_key(&b"k"[..]));
        assert_eq!(ks.expire_at(b"k"), None);
        ks.sweep_expired();
        assert!(ks.is_empty());
        // Deadlines beyond the cache's horizon read back exactly too.
        let far = 99_999_999_999_999;
        let e = ks.expiry_for(b"f", far);
        set(&ks, "f", b"v", e).expect("ok");
        assert_eq!(ks.expire_at(b"f"), Some(far));
    }

    #[test]
    fn maxmemory_evicts_or_refuses() {
        let (ks, _) = ks(100_000, EvictionPolicy::AllKeysLru);
        assert_eq!(ks.shard_count(), 1, "small budgets get one shard");
        for i in 0..1000 {
            set(&ks, &format!("key{i}"), &[0; 100], Expiry::Never).expect("evicts");
        }
        assert!(ks.used_memory() <= 100_000);
        assert!(ks.stats().evicted > 0);
        let (ks, _) = ks_noevict();
        let mut refused = 0;
        for i in 0..1000 {
            match set(&ks, &format!("key{i}"), &[0; 100], Expiry::Never) {
                Ok(()) => {}
                Err(e) => {
                    assert!(is_oom(&e), "{e}");
                    refused += 1;
                }
            }
        }
        assert!(refused > 0);
        assert_eq!(ks.stats().evicted, 0);
        assert!(ks.used_memory() <= 100_000);
    }

    fn ks_noevict() -> (Keyspace, ManualClock) {
        ks(100_000, EvictionPolicy::NoEviction)
    }

    #[test]
    fn policies_map_onto_kuai_cache() {
        for (name, p) in [
            ("allkeys-lru", Policy::Lru),
            ("allkeys-lfu", Policy::Lfu),
            ("allkeys-random", Policy::Fifo),
            ("volatile-lru", Policy::Lru),
            ("volatile-lfu", Policy::Lfu),
            ("volatile-ttl", Policy::Fifo),
            ("noeviction", Policy::Fifo),
        ] {
            let e = EvictionPolicy::parse(name).expect(name);
            assert_eq!(e.name(), name);
            assert_eq!(e.cache_policy(), p);
        }
    }
}
