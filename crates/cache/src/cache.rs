//! The sharded, bounded, concurrent cache and its builder.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;
use kuai_core::{Clock, SystemClock};

use crate::error::CacheError;
use crate::hashing::FastHashBuilder;
use crate::policy::Policy;
use crate::read_buffer::ReadBuffer;
use crate::shard::{NEVER, Now, Shard, Sink};
use crate::stats::{CacheStats, RemovalCause};
use crate::sync::{AtomicBool, AtomicU64, Mutex, RwLock, RwLockWriteGuard};

pub(crate) mod keyspace;

/// The longest time-to-live / time-to-idle accepted (100 years); longer is
/// treated as a mistake ([`CacheError::InvalidDuration`]).
pub const MAX_TTL: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Computes an entry's weight (must be ≥ 1).
pub type Weigher<K, V> = Arc<dyn Fn(&K, &V) -> u32 + Send + Sync>;

/// Called after an entry leaves the cache, outside any lock.
pub type EvictionListener<K, V> = Arc<dyn Fn(&K, &V, RemovalCause) + Send + Sync>;

const MIN_SHARD_ENTRIES: u64 = 2048;
const MAX_SHARDS: usize = 64;

/// Configures and builds a [`Cache`].
///
/// ```
/// use std::time::Duration;
/// use kuai_cache::{Cache, Policy};
/// let cache: Cache<String, u64> = Cache::builder()
///     .max_capacity(10_000)
///     .policy(Policy::TinyLfu)
///     .time_to_live(Duration::from_secs(60))
///     .build()?;
/// cache.insert("a".to_string(), 1);
/// assert_eq!(cache.get("a"), Some(1));
/// # Ok::<(), kuai_cache::CacheError>(())
/// ```
pub struct CacheBuilder<K, V, S = FastHashBuilder> {
    max_capacity: Option<u64>,
    max_weight: Option<u64>,
    weigher: Option<Weigher<K, V>>,
    policy: Policy,
    ttl: Option<Duration>,
    tti: Option<Duration>,
    clock: Option<Arc<dyn Clock>>,
    listener: Option<EvictionListener<K, V>>,
    shards: Option<usize>,
    expected_entries: Option<usize>,
    reject_when_full: bool,
    hasher: S,
}

impl<K, V, S> fmt::Debug for CacheBuilder<K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheBuilder")
            .field("max_capacity", &self.max_capacity)
            .field("max_weight", &self.max_weight)
            .field("weigher", &self.weigher.is_some())
            .field("policy", &self.policy)
            .field("ttl", &self.ttl)
            .field("tti", &self.tti)
            .field("listener", &self.listener.is_some())
            .field("shards", &self.shards)
            .field("reject_when_full", &self.reject_when_full)
            .finish()
    }
}

impl<K, V> Default for CacheBuilder<K, V, FastHashBuilder> {
    fn default() -> Self {
        CacheBuilder {
            max_capacity: None,
            max_weight: None,
            weigher: None,
            policy: Policy::default(),
            ttl: None,
            tti: None,
            clock: None,
            listener: None,
            shards: None,
            expected_entries: None,
            reject_when_full: false,
            hasher: FastHashBuilder::new(),
        }
    }
}

impl<K, V, S> CacheBuilder<K, V, S>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher,
{
    /// Bounds the cache to `n` entries.
    pub fn max_capacity(mut self, n: u64) -> Self {
        self.max_capacity = Some(n);
        self
    }

    /// Bounds the cache by total weight instead of entry count; entries are
    /// weighed by `weigher` (which must return ≥ 1).
    pub fn max_weight(
        mut self,
        max: u64,
        weigher: impl Fn(&K, &V) -> u32 + Send + Sync + 'static,
    ) -> Self {
        self.max_weight = Some(max);
        self.weigher = Some(Arc::new(weigher));
        self
    }

    /// The eviction policy (default: adaptive W-TinyLFU).
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// Entries expire this long after they were written.
    pub fn time_to_live(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Entries expire this long after they were last read or written.
    pub fn time_to_idle(mut self, tti: Duration) -> Self {
        self.tti = Some(tti);
        self
    }

    /// The clock for expiry (default: the system clock). Tests pass a
    /// [`kuai_core::ManualClock`].
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Called (outside any lock) for every entry that leaves the cache.
    pub fn eviction_listener(
        mut self,
        f: impl Fn(&K, &V, RemovalCause) + Send + Sync + 'static,
    ) -> Self {
        self.listener = Some(Arc::new(f));
        self
    }

    /// The number of shards (rounded up to a power of two). Default: enough
    /// that each shard holds at least ~2,048 entries, at most 64.
    pub fn shards(mut self, n: usize) -> Self {
        self.shards = Some(n);
        self
    }

    /// How many entries a weight-bounded cache is expected to hold (sizes the
    /// frequency sketch). Default: derived from the bound.
    pub fn expected_entries(mut self, n: usize) -> Self {
        self.expected_entries = Some(n);
        self
    }

    /// A custom hasher.
    pub fn hasher<S2: BuildHasher>(self, hasher: S2) -> CacheBuilder<K, V, S2> {
        CacheBuilder {
            max_capacity: self.max_capacity,
            max_weight: self.max_weight,
            weigher: self.weigher,
            policy: self.policy,
            ttl: self.ttl,
            tti: self.tti,
            clock: self.clock,
            listener: self.listener,
            shards: self.shards,
            expected_entries: self.expected_entries,
            reject_when_full: self.reject_when_full,
            hasher,
        }
    }

    /// Builds the cache, or says what is wrong with the configuration.
    pub fn build(self) -> Result<Cache<K, V, S>, CacheError> {
        let (max, weighted) = match (self.max_capacity, self.max_weight) {
            (Some(_), Some(_)) => {
                return Err(CacheError::InvalidConfig(
                    "set either max_capacity or max_weight, not both",
                ));
            }
            (Some(n), None) => (n, false),
            (None, Some(w)) => (w, true),
            (None, None) => return Err(CacheError::InvalidConfig("no capacity set")),
        };
        if max == 0 {
            return Err(CacheError::InvalidConfig("capacity must be at least 1"));
        }
        if max > 1 << 48 {
            return Err(CacheError::InvalidConfig("capacity above 2^48"));
        }
        for d in [self.ttl, self.tti].into_iter().flatten() {
            check_duration(d)?;
        }
        let mut n = match self.shards {
            Some(0) => return Err(CacheError::InvalidConfig("shards must be at least 1")),
            Some(n) => n.min(1 << 16).next_power_of_two(),
            None if weighted => {
                let expected = self.expected_entries.map_or(max / 64, |e| e as u64);
                prev_power_of_two(expected / MIN_SHARD_ENTRIES).clamp(1, 16) as usize
            }
            None => prev_power_of_two(max / MIN_SHARD_ENTRIES).clamp(1, MAX_SHARDS as u64) as usize,
        };
        n = n.min(prev_power_of_two(max) as usize).max(1);
        let seed = FastHashBuilder::new().hash_one(0x51ab_u64);
        let shards: Box<[_]> = (0..n)
            .map(|i| {
                let shard_max = max / n as u64 + u64::from((i as u64) < max % n as u64);
                let expected = if weighted {
                    self.expected_entries
                        .map_or((shard_max / 64).clamp(16, 1 << 20), |e| {
                            (e / n).max(16) as u64
                        })
                } else {
                    shard_max
                };
                let expected = usize::try_from(expected).unwrap_or(1 << 20).min(1 << 24);
                let mut shard = Shard::new(
                    self.policy,
                    shard_max,
                    expected,
                    seed.wrapping_add(i as u64),
                );
                shard.reject_when_full = self.reject_when_full;
                CachePadded::new(ShardCell {
                    lock: RwLock::new(shard),
                    reads: ReadBuffer::new(),
                })
            })
            .collect();
        let clock = self.clock.unwrap_or_else(|| Arc::new(SystemClock));
        let epoch = clock.now();
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Ok(Cache {
            inner: Arc::new(Inner {
                shards,
                mask: n - 1,
                hasher: self.hasher,
                timed: AtomicBool::new(self.ttl.is_some() || self.tti.is_some()),
                ttl: self.ttl.map(nanos),
                tti: self.tti.map(nanos),
                clock,
                epoch,
                weigher: self.weigher,
                listener: self.listener,
                policy: self.policy,
                max,
                loads: AtomicU64::new(0),
                load_failures: AtomicU64::new(0),
                load_nanos: AtomicU64::new(0),
                leases: Mutex::new(hashbrown::HashMap::with_hasher(FastHashBuilder::new())),
                open_leases: AtomicU64::new(0),
                lease_seq: AtomicU64::new(1),
            }),
        })
    }
}

fn prev_power_of_two(x: u64) -> u64 {
    if x == 0 {
        0
    } else {
        1 << (63 - x.leading_zeros())
    }
}

pub(crate) fn check_duration(d: Duration) -> Result<(), CacheError> {
    if d.is_zero() || d > MAX_TTL {
        Err(CacheError::InvalidDuration(d))
    } else {
        Ok(())
    }
}

/// One shard: its lock and, beside it, its read buffer (written by readers
/// that hold only the read lock).
struct ShardCell<K, V> {
    lock: RwLock<Shard<K, V>>,
    reads: ReadBuffer,
}

impl<K: Eq, V> ShardCell<K, V> {
    /// The shard, exclusively, with the read buffer replayed into its policy.
    #[inline(always)]
    fn write(&self) -> RwLockWriteGuard<'_, Shard<K, V>> {
        let mut g = self.lock.write();
        self.drain(&mut g);
        g
    }

    #[inline(always)]
    fn drain(&self, shard: &mut Shard<K, V>) {
        if !self.reads.is_empty() {
            let hits = self.reads.drain(|note| shard.replay_read(note));
            shard.stats.hits += hits;
        }
    }
}

struct Inner<K, V, S> {
    shards: Box<[CachePadded<ShardCell<K, V>>]>,
    mask: usize,
    hasher: S,
    timed: AtomicBool,
    ttl: Option<u64>,
    tti: Option<u64>,
    clock: Arc<dyn Clock>,
    epoch: Instant,
    weigher: Option<Weigher<K, V>>,
    listener: Option<EvictionListener<K, V>>,
    policy: Policy,
    max: u64,
    loads: AtomicU64,
    load_failures: AtomicU64,
    load_nanos: AtomicU64,
    leases: Mutex<hashbrown::HashMap<K, u64, FastHashBuilder>>,
    open_leases: AtomicU64,
    lease_seq: AtomicU64,
}

/// Permission to fill one key, taken before reading the source; refused at
/// [`Cache::fill`] if the key was written or invalidated in between.
///
/// This closes the cache-aside race where a slow reader re-inserts a value
/// that a writer has just replaced in the source and invalidated here.
#[derive(Debug, Clone)]
#[must_use = "a lease does nothing until it is passed to Cache::fill"]
pub struct Lease<K> {
    key: K,
    token: u64,
}

impl<K> Lease<K> {
    /// The leased key.
    pub fn key(&self) -> &K {
        &self.key
    }
}

/// At most this many leases are outstanding; beyond it new leases are born
/// revoked (their fills are refused: safe, merely uncached).
pub const MAX_LEASES: usize = 1 << 16;

/// A sharded, bounded, concurrent in-process cache.
///
/// Cloning a `Cache` gives another handle to the same cache. Every operation
/// locks one shard for a few dozen nanoseconds; the eviction listener runs
/// after the lock is released.
///
/// ```
/// use kuai_cache::{Cache, RemovalCause};
/// let cache: Cache<u64, &str> = Cache::new(2)?;
/// cache.insert(1, "one");
/// assert_eq!(cache.get(&1), Some("one"));
/// assert_eq!(cache.remove(&1), Some("one"));
/// assert_eq!(cache.get(&1), None);
/// # Ok::<(), kuai_cache::CacheError>(())
/// ```
pub struct Cache<K, V, S = FastHashBuilder> {
    inner: Arc<Inner<K, V, S>>,
}

impl<K, V, S> Clone for Cache<K, V, S> {
    fn clone(&self) -> Self {
        Cache {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K, V, S> fmt::Debug for Cache<K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("policy", &self.inner.policy)
            .field("max", &self.inner.max)
            .field("shards", &self.inner.shards.len())
            .finish_non_exhaustive()
    }
}

impl<K, V> Cache<K, V, FastHashBuilder>
where
    K: Hash + Eq + Clone,
    V: Clone,
{
    /// A cache of at most `max_capacity` entries with the default policy.
    pub fn new(max_capacity: u64) -> Result<Self, CacheError> {
        Self::builder().max_capacity(max_capacity).build()
    }

    /// A builder with the defaults.
    pub fn builder() -> CacheBuilder<K, V, FastHashBuilder> {
        CacheBuilder::default()
    }
}

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher,
{
    #[inline(always)]
    fn hash<Q: Hash + ?Sized>(&self, key: &Q) -> u64 {
        self.inner.hasher.hash_one(key)
    }

    #[inline(always)]
    fn shard_index(&self, hash: u64) -> usize {
        (hash >> 40) as usize & self.inner.mask
    }

    #[inline(always)]
    fn cell(&self, hash: u64) -> &ShardCell<K, V> {
        &self.inner.shards[self.shard_index(hash)]
    }

    /// The shard of `hash`, exclusively (its read buffer drained).
    #[inline(always)]
    fn shard(&self, hash: u64) -> RwLockWriteGuard<'_, Shard<K, V>> {
        self.cell(hash).write()
    }

    /// Nanoseconds since the cache's epoch on its clock.
    pub(crate) fn now_nanos(&self) -> u64 {
        let d = self
            .inner
            .clock
            .now()
            .saturating_duration_since(self.inner.epoch);
        u64::try_from(d.as_nanos()).unwrap_or(u64::MAX - 1)
    }

    /// The cache's clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    #[inline(always)]
    fn time(&self) -> Now {
        if self.inner.timed.load(Ordering::Relaxed) {
            Now {
                now: Some(self.now_nanos()),
                tti: self.inner.tti,
            }
        } else {
            Now {
                now: None,
                tti: None,
            }
        }
    }

    #[inline(always)]
    fn sink(&self) -> Sink<K, V> {
        Sink::new(self.inner.listener.is_some())
    }

    fn notify(&self, sink: Sink<K, V>) {
        if let Some(l) = &self.inner.listener {
            for (k, v, cause) in &sink.items {
                l(k, v, cause.to_owned());
            }
        }
    }

    /// The value for `key`, recording the access (a hit or a miss).
    #[inline]
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        if self.inner.timed.load(Ordering::Relaxed) {
            let t = self.time();
            let mut sink = self.sink();
            let v = self.shard(hash).get(hash, key, t, &mut sink);
            if !sink.items.is_empty() {
                self.notify(sink);
            }
            return v;
        }
        // Nothing can expire: no removal on a read, so no listener either.
        let cell = self.cell(hash);
        // Uncontended (one thread, or another shard busy): take the shard
        // and update the policy in place, the cheapest path.
        // (Notes left by contended readers wait for the next writer, or for
        // a reader that finds the buffer half full: they are hints.)
        if let Some(mut g) = cell.lock.try_write() {
            return g.get_untimed(hash, key);
        }
        // Contended: look up under the read lock, in parallel with other
        // readers, and leave a note of the hit for the next lock holder.
        let found = cell.lock.read().lookup(hash, key);
        match found {
            Some((i, v)) => {
                if cell.reads.record(ReadBuffer::note(i, hash)) {
                    if let Some(mut g) = cell.lock.try_write() {
                        cell.drain(&mut g);
                    }
                }
                Some(v)
            }
            None => {
                cell.reads.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// The value for `key` without recording an access or counting a hit.
    pub fn peek<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        let t = self.time();
        self.cell(hash).lock.read().peek(hash, key, t.now)
    }

    /// Whether a live entry for `key` is present (no access recorded).
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.peek(key).is_some()
    }

    fn weigh(&self, key: &K, value: &V) -> Result<u32, CacheError> {
        match &self.inner.weigher {
            None => Ok(1),
            Some(w) => match w(key, value) {
                0 => Err(CacheError::ZeroWeight),
                n => Ok(n),
            },
        }
    }

    #[inline]
    fn insert_inner(&self, key: K, value: V, deadline: Option<u64>) -> Result<(), CacheError> {
        self.revoke(&key);
        self.insert_unrevoked(key, value, deadline)
    }

    #[inline]
    fn insert_unrevoked(&self, key: K, value: V, deadline: Option<u64>) -> Result<(), CacheError> {
        let (r, sink) = self.insert_core(key, value, deadline);
        if !sink.items.is_empty() {
            self.notify(sink);
        }
        r
    }

    /// Inserts without revoking leases or notifying; the caller notifies.
    #[inline]
    fn insert_core(
        &self,
        key: K,
        value: V,
        deadline: Option<u64>,
    ) -> (Result<(), CacheError>, Sink<K, V>) {
        let mut sink = self.sink();
        let weight = match self.weigh(&key, &value) {
            Ok(w) => w,
            Err(e) => {
                // A value we refuse must not leave an older one behind.
                let hash = self.hash(&key);
                let t = self.time();
                self.shard(hash).remove(hash, &key, t.now, &mut sink);
                return (Err(e), sink);
            }
        };
        let hash = self.hash(&key);
        let t = self.time();
        let write_deadline = match (deadline, t.now, self.inner.ttl) {
            (Some(d), _, _) => d,
            (None, Some(now), Some(ttl)) => now.saturating_add(ttl),
            _ => NEVER,
        };
        let r = self
            .shard(hash)
            .insert(hash, key, value, weight, write_deadline, t, &mut sink);
        (r, sink)
    }

    /// Inserts or replaces `key`. A value the cache refuses (see
    /// [`try_insert`](Cache::try_insert)) is dropped and counted as rejected.
    #[inline]
    pub fn insert(&self, key: K, value: V) {
        let _ = self.insert_inner(key, value, None);
    }

    /// Inserts or replaces `key`, saying why a value was refused: a weigher
    /// that returned 0 ([`CacheError::ZeroWeight`]) or an entry heavier than a
    /// shard may hold ([`CacheError::TooHeavy`]). A refused value also removes
    /// the key's older value.
    pub fn try_insert(&self, key: K, value: V) -> Result<(), CacheError> {
        self.insert_inner(key, value, None)
    }

    /// Inserts with a per-entry time-to-live (overrides the cache's TTL for
    /// this entry; time-to-idle still applies).
    pub fn insert_with_ttl(&self, key: K, value: V, ttl: Duration) -> Result<(), CacheError> {
        check_duration(ttl)?;
        self.inner.timed.store(true, Ordering::Relaxed);
        let ttl = u64::try_from(ttl.as_nanos()).unwrap_or(u64::MAX);
        let deadline = self.now_nanos().saturating_add(ttl);
        self.insert_inner(key, value, Some(deadline))
    }

    /// Removes `key`, returning its value if it was live. Outstanding
    /// [`Lease`]s on the key are revoked.
    pub fn remove<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.revoke(key);
        self.remove_unrevoked(key)
    }

    /// Removes `key` and revokes its leases: the write side of cache-aside
    /// (write the source, then invalidate).
    pub fn invalidate<Q>(&self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.remove(key);
    }

    fn remove_unrevoked<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        let t = self.time();
        let mut sink = self.sink();
        let v = self.shard(hash).remove(hash, key, t.now, &mut sink);
        if !sink.items.is_empty() {
            self.notify(sink);
        }
        v
    }

    #[inline]
    fn revoke<Q>(&self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if self.inner.open_leases.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut leases = self
            .inner
            .leases
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if leases.remove(key).is_some() {
            self.inner
                .open_leases
                .store(leases.len() as u64, Ordering::Release);
        }
    }

    /// Takes a lease on `key` before reading it from the source. A later
    /// [`fill`](Cache::fill) succeeds only if nobody wrote, removed or leased
    /// the key since (the newest `lease` wins; a
    /// [`lease_shared`](Cache::lease_shared) joins the open one).
    pub fn lease(&self, key: K) -> Lease<K> {
        self.open_lease(key, false)
    }

    /// Like [`lease`](Cache::lease), but joins the lease already open on
    /// `key`, if any, instead of replacing it: for readers that copy a value
    /// from a shared store (an L2) and must not cancel each other's, or a
    /// loader's, fill. Every holder's fill is still refused after a write,
    /// removal or invalidation of the key since the lease was first taken;
    /// the first fill closes the lease, so later ones are refused too (the
    /// entry is already there).
    pub fn lease_shared(&self, key: K) -> Lease<K> {
        self.open_lease(key, true)
    }

    fn open_lease(&self, key: K, join: bool) -> Lease<K> {
        let mut leases = self
            .inner
            .leases
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let open = leases.get(&key).copied();
        if let (true, Some(token)) = (join, open) {
            return Lease { key, token };
        }
        if leases.len() >= MAX_LEASES && open.is_none() {
            return Lease { key, token: 0 };
        }
        let token = self.inner.lease_seq.fetch_add(1, Ordering::Relaxed);
        leases.insert(key.clone(), token);
        self.inner
            .open_leases
            .store(leases.len() as u64, Ordering::Release);
        Lease { key, token }
    }

    /// Fills a leased key with the value read from the source, with an
    /// optional per-entry time-to-live. Refused with [`CacheError::StaleFill`]
    /// if the key was written, invalidated or leased again since the lease.
    pub fn fill(&self, lease: Lease<K>, value: V, ttl: Option<Duration>) -> Result<(), CacheError> {
        if let Some(ttl) = ttl {
            check_duration(ttl)?;
        }
        let mut leases = self
            .inner
            .leases
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match leases.get(&lease.key) {
            Some(&t) if t == lease.token && t != 0 => {
                leases.remove(&lease.key);
            }
            _ => return Err(CacheError::StaleFill),
        }
        // Insert while holding the lease table so no invalidation can slip
        // between the check and the write.
        let deadline = ttl.map(|ttl| {
            self.inner.timed.store(true, Ordering::Relaxed);
            self.now_nanos()
                .saturating_add(u64::try_from(ttl.as_nanos()).unwrap_or(u64::MAX))
        });
        let (r, sink) = self.insert_core(lease.key, value, deadline);
        // Publish the lease count only after the insert: a writer whose
        // revoke saw a non-zero count waits on the lease table until this
        // fill is in, so its write lands after it (found by loom).
        self.inner
            .open_leases
            .store(leases.len() as u64, Ordering::Release);
        drop(leases);
        if !sink.items.is_empty() {
            self.notify(sink);
        }
        r
    }

    /// Removes every entry.
    pub fn invalidate_all(&self) {
        {
            let mut leases = self
                .inner
                .leases
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            leases.clear();
            self.inner.open_leases.store(0, Ordering::Release);
        }
        for s in self.inner.shards.iter() {
            let mut sink = self.sink();
            s.write().clear(&mut sink);
            self.notify(sink);
        }
    }

    /// Drops expired entries now (the cache also does this as it is written
    /// to; reads never return an expired value either way).
    pub fn run_pending_tasks(&self) {
        let Some(now) = self.time().now else {
            return;
        };
        for s in self.inner.shards.iter() {
            let mut sink = self.sink();
            s.write().expire(now, &mut sink);
            self.notify(sink);
        }
    }

    /// Entries currently held (expired entries not yet reclaimed included).
    pub fn entry_count(&self) -> u64 {
        self.inner
            .shards
            .iter()
            .map(|s| s.lock.read().len() as u64)
            .sum()
    }

    /// Total weight held (equals [`entry_count`](Cache::entry_count) without a weigher).
    pub fn weighted_size(&self) -> u64 {
        self.inner
            .shards
            .iter()
            .map(|s| s.lock.read().weight())
            .sum()
    }

    /// The bound: entries, or weight with a weigher.
    pub fn max_capacity(&self) -> u64 {
        self.inner.max
    }

    /// The bound of one shard (the largest entry weight accepted).
    pub fn max_shard_weight(&self) -> u64 {
        self.inner
            .shards
            .iter()
            .map(|s| s.write().max_weight())
            .min()
            .unwrap_or(0)
    }

    /// The number of shards.
    pub fn shard_count(&self) -> usize {
        self.inner.shards.len()
    }

    /// The eviction policy.
    pub fn policy(&self) -> Policy {
        self.inner.policy
    }

    /// A snapshot of the statistics.
    pub fn stats(&self) -> CacheStats {
        let mut out = CacheStats::default();
        for s in self.inner.shards.iter() {
            let mut g = s.write();
            // Dropped notes are counted even when no note waits.
            let hits = s.reads.drain(|note| g.replay_read(note));
            g.stats.hits += hits;
            out.add_shard(&g.stats);
            out.misses += s.reads.misses.load(Ordering::Relaxed);
        }
        out.loads = self.inner.loads.load(Ordering::Relaxed);
        out.load_failures = self.inner.load_failures.load(Ordering::Relaxed);
        out.load_time = Duration::from_nanos(self.inner.load_nanos.load(Ordering::Relaxed));
        out
    }

    /// Records one load (for [`CacheStats`]); used by the loaders.
    pub fn record_load(&self, took: Duration, ok: bool) {
        self.inner.loads.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.inner.load_failures.fetch_add(1, Ordering::Relaxed);
        }
        let n = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.inner.load_nanos.fetch_add(n, Ordering::Relaxed);
    }

    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        for s in self.inner.shards.iter() {
            s.write().check();
        }
    }

    #[cfg(test)]
    pub(crate) fn window_maxes(&self) -> Vec<u64> {
        self.inner
            .shards
            .iter()
            .map(|s| s.write().policy().window_max())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kuai_core::ManualClock;
    use std::sync::Mutex as StdMutex;

    fn single<V: Clone>(cap: u64, policy: Policy) -> Cache<u64, V> {
        Cache::builder()
            .max_capacity(cap)
            .policy(policy)
            .shards(1)
            .hasher(FastHashBuilder::with_seed(1))
            .build()
            .expect("valid config")
    }

    #[test]
    fn bad_config_is_a_typed_error() {
        assert!(matches!(
            Cache::<u64, u64>::new(0),
            Err(CacheError::InvalidConfig(_))
        ));
        let r = Cache::<u64, u64>::builder()
            .max_capacity(10)
            .time_to_live(Duration::MAX)
            .build();
        assert!(matches!(r, Err(CacheError::InvalidDuration(_))));
        let r = Cache::<u64, u64>::builder()
            .max_capacity(10)
            .time_to_idle(Duration::ZERO)
            .build();
        assert!(matches!(r, Err(CacheError::InvalidDuration(_))));
        let r = Cache::<u64, u64>::builder()
            .max_capacity(10)
            .shards(0)
            .build();
        assert!(matches!(r, Err(CacheError::InvalidConfig(_))));
        let r = Cache::<u64, u64>::builder().build();
        assert!(matches!(r, Err(CacheError::InvalidConfig(_))));
        let c = Cache::<u64, u64>::new(10).expect("ok");
        assert!(matches!(
            c.insert_with_ttl(1, 1, Duration::from_secs(u64::MAX)),
            Err(CacheError::InvalidDuration(_))
        ));
    }

    #[test]
    fn every_policy_stays_bounded_under_write_heavy_load() {
        for policy in [Policy::TinyLfu, Policy::Lru, Policy::Fifo, Policy::Lfu] {
            let c: Cache<u64, u64> = Cache::builder()
                .max_capacity(1000)
                .policy(policy)
                .build()
                .expect("ok");
            for i in 0..50_000u64 {
                c.insert(i % 7919 * 31 + i / 3, i);
                if i % 3 == 0 {
                    let _ = c.get(&(i / 2));
                }
                if i % 1000 == 0 {
                    assert!(c.entry_count() <= 1000, "{policy:?}");
                }
            }
            assert!(c.entry_count() <= 1000);
            assert!(c.entry_count() >= 900, "{policy:?}: {}", c.entry_count());
            c.check_invariants();
        }
    }

    #[test]
    fn lru_and_fifo_order() {
        let lru = single::<u64>(3, Policy::Lru);
        let fifo = single::<u64>(3, Policy::Fifo);
        for c in [&lru, &fifo] {
            for k in 1..=3 {
                c.insert(k, k);
            }
            assert_eq!(c.get(&1), Some(1));
            c.insert(4, 4);
        }
        assert_eq!(lru.peek(&1), Some(1));
        assert_eq!(lru.peek(&2), None);
        assert_eq!(fifo.peek(&1), None);
        assert_eq!(fifo.peek(&2), Some(2));
    }

    #[test]
    fn lfu_keeps_the_frequent() {
        let c = single::<u64>(3, Policy::Lfu);
        for k in 1..=3 {
            c.insert(k, k);
        }
        for _ in 0..3 {
            c.get(&1);
            c.get(&3);
        }
        c.insert(4, 4);
        assert_eq!(c.peek(&2), None);
        assert!(c.contains_key(&1) && c.contains_key(&3) && c.contains_key(&4));
    }

    #[test]
    fn tinylfu_protects_a_hot_key_from_a_scan() {
        let c = single::<u64>(100, Policy::TinyLfu);
        for _ in 0..20 {
            if c.get(&0).is_none() {
                c.insert(0, 0);
            }
        }
        for k in 1..10_000u64 {
            if c.get(&k).is_none() {
                c.insert(k, k);
            }
            if k % 50 == 0 {
                assert_eq!(c.get(&0), Some(0), "hot key evicted by the scan at {k}");
            }
        }
        c.check_invariants();
    }

    #[test]
    fn shared_leases_do_not_cancel_each_other_but_a_write_revokes_them() {
        let c = single::<u64>(10, Policy::TinyLfu);
        let a = c.lease_shared(1);
        let b = c.lease_shared(1);
        assert!(
            c.fill(a, 10, None).is_ok(),
            "the second reader did not cancel it"
        );
        assert!(
            c.fill(b, 11, None).is_err(),
            "the first fill closed the lease"
        );
        assert_eq!(c.get(&1), Some(10));
        let a = c.lease_shared(2);
        let b = c.lease_shared(2);
        c.insert(2, 20);
        assert!(c.fill(a, 1, None).is_err());
        assert!(c.fill(b, 1, None).is_err());
        assert_eq!(c.get(&2), Some(20), "no stale fill landed");
        // A shared lease joins an exclusive one without replacing it.
        let loader = c.lease(3);
        let _reader = c.lease_shared(3);
        assert!(c.fill(loader, 30, None).is_ok());
    }

    #[test]
    fn ttl_tti_and_per_entry_expiry_with_listener_causes() {
        let clock = ManualClock::new();
        let seen = Arc::new(StdMutex::new(Vec::new()));
        let seen2 = Arc::clone(&seen);
        let c: Cache<u64, u64> = Cache::builder()
            .max_capacity(100)
            .time_to_live(Duration::from_secs(10))
            .time_to_idle(Duration::from_secs(4))
            .clock(Arc::new(clock.clone()))
            .eviction_listener(move |k, _v, cause| {
                seen2
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push((*k, cause))
            })
            .build()
            .expect("ok");
        c.insert(1, 1);
        c.insert(2, 2);
        c.insert_with_ttl(3, 3, Duration::from_secs(2)).expect("ok");
        for _ in 0..3 {
            clock.advance(Duration::from_secs(3));
            assert_eq!(c.get(&1), Some(1), "TTI refreshed by reads");
        }
        // 9 s: key 2 idle > 4 s, key 3 past its own 2 s TTL.
        assert_eq!(c.get(&2), None);
        assert_eq!(c.peek(&3), None);
        clock.advance(Duration::from_secs(2));
        assert_eq!(c.get(&1), None, "TTL caps TTI");
        c.insert(1, 10);
        c.insert(1, 11);
        assert_eq!(c.remove(&1), Some(11));
        clock.advance(Duration::from_secs(100));
        c.run_pending_tasks();
        assert_eq!(c.entry_count(), 0);
        let seen = seen.lock().unwrap_or_else(PoisonError::into_inner).clone();
        assert!(seen.contains(&(1, RemovalCause::Expired)));
        assert!(seen.contains(&(2, RemovalCause::Expired)));
        assert!(seen.contains(&(3, RemovalCause::Expired)));
        assert!(seen.contains(&(1, RemovalCause::Replaced)));
        assert!(seen.contains(&(1, RemovalCause::Explicit)));
        let s = c.stats();
        assert_eq!(s.evicted_expired, 3);
        assert_eq!(s.replaced, 1);
        assert_eq!(s.removed_explicit, 1);
    }

    #[test]
    fn expired_entries_are_reclaimed_without_reads() {
        let clock = ManualClock::new();
        let c: Cache<u64, u64> = Cache::builder()
            .max_capacity(10_000)
            .time_to_live(Duration::from_secs(5))
            .clock(Arc::new(clock.clone()))
            .build()
            .expect("ok");
        for k in 0..1000 {
            c.insert(k, k);
        }
        clock.advance(Duration::from_secs(7));
        c.insert(5000, 0); // writes advance the wheel in that shard
        c.run_pending_tasks();
        assert_eq!(c.entry_count(), 1);
        c.check_invariants();
    }

    #[test]
    fn weigher_bounds_weight_and_rejects_bad_weights() {
        let evicted = Arc::new(AtomicU64::new(0));
        let e2 = Arc::clone(&evicted);
        let c: Cache<u64, Vec<u8>> = Cache::builder()
            .max_weight(10_000, |_k, v: &Vec<u8>| {
                u32::try_from(v.len()).unwrap_or(u32::MAX)
            })
            .eviction_listener(move |_, _, cause| {
                if cause == RemovalCause::Size {
                    e2.fetch_add(1, Ordering::Relaxed);
                }
            })
            .build()
            .expect("ok");
        for k in 0..1000u64 {
            c.insert(k, vec![0; (k % 97 + 1) as usize]);
            assert!(c.weighted_size() <= 10_000);
        }
        assert!(evicted.load(Ordering::Relaxed) > 0);
        c.insert(1, vec![1; 3]);
        assert!(matches!(
            c.try_insert(1, Vec::new()),
            Err(CacheError::ZeroWeight)
        ));
        assert_eq!(c.peek(&1), None, "a refused value removes the old one");
        assert!(matches!(
            c.try_insert(2, vec![0; 20_000]),
            Err(CacheError::TooHeavy { .. })
        ));
        assert!(c.stats().rejected >= 1);
        c.check_invariants();
    }

    #[test]
    fn concurrent_use_keeps_invariants() {
        let c: Cache<u64, u64> = Cache::builder()
            .max_capacity(500)
            .shards(4)
            .build()
            .expect("ok");
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let c = c.clone();
                s.spawn(move || {
                    for i in 0..20_000u64 {
                        let k = (i * 7 + t) % 2000;
                        if c.get(&k).is_none() {
                            c.insert(k, k * 2);
                        }
                        if i % 101 == 0 {
                            c.remove(&k);
                        }
                    }
                });
            }
        });
        assert!(c.entry_count() <= 500);
        c.check_invariants();
        let s = c.stats();
        assert_eq!(s.hits + s.misses, 80_000);
    }

    #[test]
    fn ghosts_move_the_window() {
        let c = single::<u64>(1000, Policy::TinyLfu);
        let before = c.window_maxes();
        // A recency-heavy workload: a sliding working set.
        for i in 0..200_000u64 {
            let k = i / 4 + (i % 4) * 50;
            if c.get(&k).is_none() {
                c.insert(k, k);
            }
        }
        assert_ne!(c.window_maxes(), before);
        c.check_invariants();
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        #[derive(Debug, Clone)]
        enum Op {
            Get(u16),
            Insert(u16, u32),
            Remove(u16),
            Advance(u8),
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                4 => any::<u16>().prop_map(|k| Op::Get(k % 300)),
                4 => (any::<u16>(), any::<u32>()).prop_map(|(k, v)| Op::Insert(k % 300, v)),
                1 => any::<u16>().prop_map(|k| Op::Remove(k % 300)),
                1 => any::<u8>().prop_map(Op::Advance),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(48))]
            #[test]
            fn matches_a_model_and_stays_bounded(ops in proptest::collection::vec(op(), 1..600), pol in 0..4u8, cap in 1..64u64) {
                let policy = [Policy::TinyLfu, Policy::Lru, Policy::Fifo, Policy::Lfu][pol as usize];
                let clock = ManualClock::new();
                let c: Cache<u16, u32> = Cache::builder()
                    .max_capacity(cap)
                    .policy(policy)
                    .time_to_live(Duration::from_secs(100))
                    .clock(Arc::new(clock.clone()))
                    .build()
                    .expect("ok");
                // model: last written value and its write time
                let mut model = std::collections::HashMap::new();
                for op in ops {
                    match op {
                        Op::Get(k) => {
                            if let Some(v) = c.get(&k) {
                                let (mv, at) = model.get(&k).copied().expect("cache returned a key never written");
                                prop_assert_eq!(v, mv);
                                // Manual time: the entry must not outlive its TTL.
                                let simulated_now = clock.elapsed();
                                prop_assert!(simulated_now < at + Duration::from_secs(100));
                            }
                        }
                        Op::Insert(k, v) => {
                            c.insert(k, v);
                            model.insert(k, (v, clock.elapsed()));
                        }
                        Op::Remove(k) => {
                            c.remove(&k);
                            model.remove(&k);
                        }
                        Op::Advance(s) => clock.advance(Duration::from_secs(u64::from(s % 40))),
                    }
                    prop_assert!(c.entry_count() <= cap);
                }
                c.check_invariants();
            }
        }
    }
}
