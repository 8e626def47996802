//! What a keyspace needs from a cache: reading values by reference, reading
//! and changing an entry's expiry without rewriting it, atomic
//! read-modify-write ([`Cache::compute`]), cursor scans that survive
//! resizes ([`Cache::scan`]), iteration ([`Cache::for_each`]), and a mode
//! that refuses writes instead of evicting ([`CacheBuilder::reject_when_full`]).
//!
//! A Redis-like server built on these keeps its whole keyspace in a
//! [`Cache`]: `maxmemory` is the weight bound, the eviction policy is the
//! cache's [`Policy`](crate::Policy), `noeviction` is `reject_when_full`, and
//! `INCR`/`APPEND`/`SET NX`/`GETDEL`/`EXPIRE GT` are single `compute` calls.

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{Cache, CacheBuilder, check_duration};
use crate::error::CacheError;
use crate::shard::{Action, Deadline, KeyArg, NEVER, Now, Shard, Sink};
use crate::sync::RwLockWriteGuard;

/// When an entry written or changed by [`Cache::compute`] expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// Keep the entry's current expiry (Redis's `KEEPTTL`); a new entry gets
    /// the cache's time-to-live, if any.
    Keep,
    /// Never (Redis's `PERSIST`, or a plain `SET`). Time-to-idle, if
    /// configured, still applies.
    Never,
    /// This long from now (must be > 0 and at most [`MAX_TTL`](crate::MAX_TTL)).
    After(Duration),
    /// At this instant of the cache's clock (an instant already past
    /// expires the entry).
    At(Instant),
}

/// What [`Cache::compute`] does with the key, as decided by its closure.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Compute<V> {
    /// Leave the entry (or its absence) as it is.
    Keep,
    /// Remove the entry, if there is one.
    Remove,
    /// Insert or replace the value, with the given expiry.
    Insert(V, Expiry),
    /// Change only the expiry of a present entry (no-op when absent).
    SetExpiry(Expiry),
}

/// The live entry [`Cache::compute`]'s closure sees.
#[derive(Debug)]
pub struct Current<'a, V> {
    value: &'a V,
    expires_at: Option<Instant>,
}

impl<'a, V> Current<'a, V> {
    /// The value.
    pub fn value(&self) -> &'a V {
        self.value
    }

    /// When the entry expires (`None`: never).
    pub fn expires_at(&self) -> Option<Instant> {
        self.expires_at
    }
}

type ShardGuard<'a, K, V> = RwLockWriteGuard<'a, Shard<K, V>>;

/// Several keys' shards locked together, from [`Cache::batch`]: computes on
/// those keys are atomic as a group (no other operation on any of them
/// interleaves).
pub struct Batch<'a, K, V, S> {
    cache: &'a Cache<K, V, S>,
    /// Shard index and its guard, sorted by index; `None` only while the
    /// batch is being formed.
    guards: Vec<(usize, Option<ShardGuard<'a, K, V>>)>,
    sink: Sink<K, V>,
}

impl<K, V, S> std::fmt::Debug for Batch<'_, K, V, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field(
                "shards",
                &self.guards.iter().map(|g| g.0).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl<K, V, S> Batch<'_, K, V, S>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher,
{
    /// [`Cache::compute_ref`] on one of the batch's keys (leases on the
    /// batch's keys were revoked when it was formed). A key outside the
    /// batch's shards is refused with [`CacheError::InvalidConfig`].
    pub fn compute_ref<Q, O, F, G>(
        &mut self,
        key: &Q,
        to_owned: O,
        f: F,
        then: G,
    ) -> Result<Option<V>, CacheError>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        O: FnOnce(&Q) -> K,
        F: FnOnce(Option<Current<'_, V>>) -> Compute<V>,
        G: FnOnce(Option<&V>),
    {
        let hash = self.cache.hash(key);
        let i = self.cache.shard_index(hash);
        let Some(g) = self
            .guards
            .iter_mut()
            .find(|g| g.0 == i)
            .and_then(|g| g.1.as_mut())
        else {
            return Err(CacheError::InvalidConfig(
                "compute on a key outside the batch's shards",
            ));
        };
        self.cache.compute_locked(
            g,
            hash,
            KeyArg::Borrowed(key, to_owned),
            f,
            then,
            &mut self.sink,
        )
    }

    /// The live value of one of the batch's keys (no access recorded), or
    /// `None` (also for a key outside the batch's shards).
    pub fn peek_with<Q, R>(&self, key: &Q, f: impl FnOnce(&V) -> R) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.cache.hash(key);
        let i = self.cache.shard_index(hash);
        let g = self.guards.iter().find(|g| g.0 == i)?.1.as_ref()?;
        g.peek_with(hash, key, self.cache.time().now, |v, _| f(v))
    }
}

impl<K, V, S> CacheBuilder<K, V, S>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher,
{
    /// Refuse writes that would exceed the bound with
    /// [`CacheError::Full`] instead of evicting (Redis's `noeviction`).
    /// Replacing a value with one no heavier, removing, and expiry still
    /// work; expired entries are reclaimed before a write is refused.
    /// [`Cache::insert`] drops a refused value silently; use
    /// [`Cache::try_insert`] or [`Cache::compute`] to see the error.
    ///
    /// The bound is per shard (the total divided by the shard count), so a
    /// write may be refused while other shards still have room.
    pub fn reject_when_full(mut self, reject: bool) -> Self {
        self.reject_when_full = reject;
        self
    }
}

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher,
{
    fn instant_of_deadline(&self, deadline: u64) -> Option<Instant> {
        (deadline != NEVER).then(|| self.inner.epoch + Duration::from_nanos(deadline))
    }

    fn deadline_of_instant(&self, at: Instant) -> u64 {
        let d = at.saturating_duration_since(self.inner.epoch);
        u64::try_from(d.as_nanos())
            .unwrap_or(NEVER - 1)
            .min(NEVER - 1)
    }

    /// The time context for an operation that may set a deadline: marks the
    /// cache as timed first.
    fn timed_now(&self) -> u64 {
        self.inner.timed.store(true, Ordering::Relaxed);
        self.now_nanos()
    }

    /// Passes the value for `key` to `f` by reference (no clone), recording
    /// the access like [`get`](Cache::get). `f` runs under the shard lock:
    /// it must not call back into the cache.
    ///
    /// ```
    /// # use kuai_cache::Cache;
    /// let c: Cache<String, Vec<u8>> = Cache::new(10)?;
    /// c.insert("k".into(), vec![1, 2, 3]);
    /// assert_eq!(c.get_with("k", |v| v.len()), Some(3));
    /// # Ok::<(), kuai_cache::CacheError>(())
    /// ```
    #[inline]
    pub fn get_with<Q, R>(&self, key: &Q, f: impl FnOnce(&V) -> R) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        let t = self.time();
        let mut sink = self.sink();
        let r = self.shard(hash).get_with(hash, key, t, &mut sink, f);
        if !sink.items.is_empty() {
            self.notify(sink);
        }
        r
    }

    /// Like [`get_with`](Cache::get_with) without recording an access or
    /// counting a hit or miss.
    pub fn peek_with<Q, R>(&self, key: &Q, f: impl FnOnce(&V) -> R) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        let t = self.time();
        self.shard(hash).peek_with(hash, key, t.now, |v, _| f(v))
    }

    /// When the live entry for `key` expires: `None` if there is no live
    /// entry, `Some(None)` if it never expires. Records no access.
    pub fn expires_at<Q>(&self, key: &Q) -> Option<Option<Instant>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        let t = self.time();
        let d = self.shard(hash).peek_with(hash, key, t.now, |_, d| d)?;
        Some(self.instant_of_deadline(d))
    }

    /// The time-to-live left for `key`: `None` if there is no live entry,
    /// `Some(None)` if it never expires.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use kuai_cache::Cache;
    /// let c: Cache<u32, u32> = Cache::new(10)?;
    /// c.insert(1, 1);
    /// assert_eq!(c.ttl_of(&1), Some(None));
    /// assert!(c.set_ttl(&1, Duration::from_secs(60))?);
    /// assert!(c.ttl_of(&1).flatten().is_some_and(|t| t <= Duration::from_secs(60)));
    /// assert!(c.persist(&1));
    /// assert_eq!(c.ttl_of(&1), Some(None));
    /// assert_eq!(c.ttl_of(&2), None);
    /// # Ok::<(), kuai_cache::CacheError>(())
    /// ```
    pub fn ttl_of<Q>(&self, key: &Q) -> Option<Option<Duration>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let at = self.expires_at(key)?;
        let now = self.inner.clock.now();
        Some(at.map(|at| at.saturating_duration_since(now)))
    }

    /// Sets the time-to-live of the live entry for `key` without rewriting
    /// it. Returns whether there was one. Outstanding leases are kept.
    pub fn set_ttl<Q>(&self, key: &Q, ttl: Duration) -> Result<bool, CacheError>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        check_duration(ttl)?;
        let now = self.timed_now();
        let at = now.saturating_add(u64::try_from(ttl.as_nanos()).unwrap_or(NEVER));
        Ok(self.set_deadline(key, at.min(NEVER - 1), now))
    }

    /// Sets when the live entry for `key` expires (an instant already past
    /// expires it now). Returns whether there was one.
    pub fn set_expires_at<Q>(&self, key: &Q, at: Instant) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let now = self.timed_now();
        let at = self.deadline_of_instant(at);
        self.set_deadline(key, at, now)
    }

    /// Removes the expiry of the live entry for `key` (time-to-idle, if
    /// configured, still applies). Returns whether there was one.
    pub fn persist<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let t = self.time();
        self.set_deadline(key, NEVER, t.now.unwrap_or(0))
    }

    fn set_deadline<Q>(&self, key: &Q, at: u64, now: u64) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        let t = Now {
            now: self.time().now.map(|_| now),
            tti: self.inner.tti,
        };
        let mut sink = self.sink();
        let found = self.shard(hash).set_deadline(hash, key, at, t, &mut sink);
        if !sink.items.is_empty() {
            self.notify(sink);
        }
        found
    }

    /// Atomically reads and changes `key`: `f` sees the live entry (or
    /// `None`) and returns what to do, all under the key's shard lock, so no
    /// other operation on the key interleaves. Returns the value that left
    /// the cache (replaced or removed), if any.
    ///
    /// The building block of read-modify-write commands: increment, append,
    /// insert-if-absent / if-present, get-and-delete, conditional expiry.
    /// `f` must not call back into the cache (it would deadlock on the shard
    /// lock). A write revokes outstanding [`Lease`](crate::Lease)s on the key.
    ///
    /// Errors leave the entry as it was: [`CacheError::ZeroWeight`] and
    /// [`CacheError::TooHeavy`] for a value the weigher refuses,
    /// [`CacheError::Full`] when the cache
    /// [rejects when full](CacheBuilder::reject_when_full),
    /// [`CacheError::InvalidDuration`] for a bad [`Expiry::After`].
    ///
    /// ```
    /// use kuai_cache::{Cache, Compute, Expiry};
    /// let c: Cache<&str, i64> = Cache::new(100)?;
    /// // INCR: read, add, write back, keeping the expiry.
    /// let incr = |c: &Cache<&str, i64>| {
    ///     c.compute("n", |cur| {
    ///         let n = cur.map_or(0, |e| *e.value()) + 1;
    ///         Compute::Insert(n, Expiry::Keep)
    ///     })
    /// };
    /// incr(&c)?;
    /// incr(&c)?;
    /// assert_eq!(c.get("n"), Some(2));
    /// // GETDEL: the removed value comes back.
    /// assert_eq!(c.compute("n", |_| Compute::Remove)?, Some(2));
    /// assert_eq!(c.get("n"), None);
    /// # Ok::<(), kuai_cache::CacheError>(())
    /// ```
    pub fn compute<F>(&self, key: K, f: F) -> Result<Option<V>, CacheError>
    where
        F: FnOnce(Option<Current<'_, V>>) -> Compute<V>,
    {
        self.compute_then(key, f, |_| ())
    }

    /// [`compute`](Cache::compute), then — still under the shard lock, and
    /// only if the change was applied — `then` with the value that left.
    ///
    /// For a write-ahead log or a replication stream: whatever `then`
    /// records about a key is recorded in the order the changes happened.
    /// Like `f`, `then` must not call back into the cache.
    ///
    /// ```
    /// use std::sync::Mutex;
    /// use kuai_cache::{Cache, Compute, Expiry};
    /// let c: Cache<u32, u32> = Cache::new(10)?;
    /// let log = Mutex::new(Vec::new());
    /// c.compute_then(1, |_| Compute::Insert(5, Expiry::Never), |_| {
    ///     log.lock().unwrap().push("SET 1 5")
    /// })?;
    /// assert_eq!(*log.lock().unwrap(), ["SET 1 5"]);
    /// # Ok::<(), kuai_cache::CacheError>(())
    /// ```
    pub fn compute_then<F, G>(&self, key: K, f: F, then: G) -> Result<Option<V>, CacheError>
    where
        F: FnOnce(Option<Current<'_, V>>) -> Compute<V>,
        G: FnOnce(Option<&V>),
    {
        self.compute_inner(KeyArg::<K, K, fn(&K) -> K>::Owned(key), f, then)
    }

    /// [`compute_then`](Cache::compute_then) looking the key up by a
    /// borrowed form: `to_owned` makes the owned key only if a new entry is
    /// inserted (no key is built for a hit, a removal or a refused write).
    ///
    /// ```
    /// use kuai_cache::{Cache, Compute, Expiry};
    /// let c: Cache<String, u64> = Cache::new(10)?;
    /// let bump = |c: &Cache<String, u64>| {
    ///     c.compute_ref("hits", |k| k.to_string(), |cur| {
    ///         Compute::Insert(cur.map_or(0, |e| *e.value()) + 1, Expiry::Keep)
    ///     }, |_| ())
    /// };
    /// bump(&c)?;
    /// bump(&c)?; // no String allocated: the key exists
    /// assert_eq!(c.get("hits"), Some(2));
    /// # Ok::<(), kuai_cache::CacheError>(())
    /// ```
    pub fn compute_ref<Q, O, F, G>(
        &self,
        key: &Q,
        to_owned: O,
        f: F,
        then: G,
    ) -> Result<Option<V>, CacheError>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        O: FnOnce(&Q) -> K,
        F: FnOnce(Option<Current<'_, V>>) -> Compute<V>,
        G: FnOnce(Option<&V>),
    {
        self.compute_inner(KeyArg::Borrowed(key, to_owned), f, then)
    }

    fn compute_inner<Q, O, F, G>(
        &self,
        key: KeyArg<'_, K, Q, O>,
        f: F,
        then: G,
    ) -> Result<Option<V>, CacheError>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        O: FnOnce(&Q) -> K,
        F: FnOnce(Option<Current<'_, V>>) -> Compute<V>,
        G: FnOnce(Option<&V>),
    {
        self.revoke(key.get());
        let hash = self.hash(key.get());
        let mut sink = self.sink();
        let mut shard = self.shard(hash);
        let r = self.compute_locked(&mut shard, hash, key, f, then, &mut sink);
        drop(shard);
        if !sink.items.is_empty() {
            self.notify(sink);
        }
        r
    }

    /// The body of every compute: `shard` is the key's shard, locked.
    #[allow(clippy::too_many_arguments)]
    fn compute_locked<Q, O, F, G>(
        &self,
        shard: &mut Shard<K, V>,
        hash: u64,
        key: KeyArg<'_, K, Q, O>,
        f: F,
        then: G,
        sink: &mut Sink<K, V>,
    ) -> Result<Option<V>, CacheError>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        O: FnOnce(&Q) -> K,
        F: FnOnce(Option<Current<'_, V>>) -> Compute<V>,
        G: FnOnce(Option<&V>),
    {
        let t = self.time();
        let default_deadline = match (t.now, self.inner.ttl) {
            (Some(now), Some(ttl)) => now.saturating_add(ttl),
            _ => NEVER,
        };
        let mut bad: Option<CacheError> = None;
        let weigh = |k: &K, v: &V| self.weigh(k, v);
        let decide = |cur: Option<(&V, u64)>| {
            let cur = cur.map(|(value, d)| Current {
                value,
                expires_at: self.instant_of_deadline(d),
            });
            let deadline = |e: Expiry| -> Result<Deadline, CacheError> {
                Ok(match e {
                    Expiry::Keep => Deadline::Keep,
                    // Re-read under the lock: an entry may have been given
                    // a deadline since `t` was taken.
                    Expiry::Never => match self.time().now {
                        None => Deadline::Keep,
                        Some(now) => Deadline::Set { at: NEVER, now },
                    },
                    Expiry::After(d) => {
                        check_duration(d)?;
                        let now = self.timed_now();
                        let d = u64::try_from(d.as_nanos()).unwrap_or(NEVER);
                        Deadline::Set {
                            at: now.saturating_add(d).min(NEVER - 1),
                            now,
                        }
                    }
                    Expiry::At(at) => {
                        let now = self.timed_now();
                        Deadline::Set {
                            at: self.deadline_of_instant(at),
                            now,
                        }
                    }
                })
            };
            let r = match f(cur) {
                Compute::Keep => Ok(Action::Keep),
                Compute::Remove => Ok(Action::Remove),
                Compute::Insert(v, e) => deadline(e).map(|d| Action::Insert(v, d)),
                Compute::SetExpiry(e) => deadline(e).map(Action::Expire),
            };
            r.unwrap_or_else(|e| {
                bad = Some(e);
                Action::Keep
            })
        };
        let r = shard.compute(hash, key, t, default_deadline, &weigh, decide, sink);
        if bad.is_none() {
            if let Ok(old) = &r {
                then(old.as_ref());
            }
        }
        match bad {
            Some(e) => Err(e),
            None => r,
        }
    }

    /// Locks the shards of all `keys` (in shard order, so batches never
    /// deadlock) and runs `f` with a [`Batch`] whose computes on those keys
    /// are atomic as a group: multi-key writes (Redis's `MSET`, `MSETNX`,
    /// `RENAME`) that no reader sees half done. `f` must not call the cache
    /// itself, only the batch. The eviction listener runs after the locks
    /// are released.
    ///
    /// ```
    /// use kuai_cache::{Cache, Compute, Expiry};
    /// let c: Cache<String, u32> = Cache::new(100)?;
    /// c.insert("a".into(), 1);
    /// // Move "a" to "b" atomically.
    /// c.batch(&["a", "b"], |b| {
    ///     let v = b.compute_ref("a", |k| k.to_string(), |_| Compute::Remove, |_| ())?;
    ///     if let Some(v) = v {
    ///         b.compute_ref("b", |k| k.to_string(), |_| Compute::Insert(v, Expiry::Keep), |_| ())?;
    ///     }
    ///     Ok::<_, kuai_cache::CacheError>(())
    /// })?;
    /// assert_eq!((c.get("a"), c.get("b")), (None, Some(1)));
    /// # Ok::<(), kuai_cache::CacheError>(())
    /// ```
    pub fn batch<Q, R>(&self, keys: &[&Q], f: impl FnOnce(&mut Batch<'_, K, V, S>) -> R) -> R
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut guards: Vec<(usize, Option<ShardGuard<'_, K, V>>)> = keys
            .iter()
            .map(|k| {
                self.revoke(*k);
                (self.shard_index(self.hash(*k)), None)
            })
            .collect();
        guards.sort_unstable_by_key(|g| g.0);
        guards.dedup_by_key(|g| g.0);
        // In index order: two batches never wait on each other in a cycle.
        for g in guards.iter_mut() {
            g.1 = Some(self.inner.shards[g.0].write());
        }
        let mut b = Batch {
            cache: self,
            guards,
            sink: self.sink(),
        };
        let r = f(&mut b);
        let sink = std::mem::replace(&mut b.sink, self.sink());
        drop(b);
        if !sink.items.is_empty() {
            self.notify(sink);
        }
        r
    }

    /// One step of a cursor scan: passes up to about `count` live entries to
    /// `f` and returns the cursor to continue from (`0` when the scan is
    /// complete; start with `0`).
    ///
    /// Redis `SCAN`'s guarantee holds: an entry present from the start of a
    /// scan to its end is passed to `f` at least once (in fact exactly
    /// once), however the cache grows or shrinks meanwhile, because the
    /// cursor walks each shard's slab, whose indices do not move while an
    /// entry lives. Entries added or removed during the scan may or may not
    /// be seen. `f` runs under one shard lock at a time and must not call
    /// back into the cache. No access is recorded.
    ///
    /// ```
    /// # use kuai_cache::Cache;
    /// let c: Cache<u32, u32> = Cache::new(1000)?;
    /// for i in 0..100 { c.insert(i, i); }
    /// let (mut cursor, mut seen) = (0, Vec::new());
    /// loop {
    ///     cursor = c.scan(cursor, 10, |k, _| seen.push(*k));
    ///     if cursor == 0 { break; }
    /// }
    /// seen.sort();
    /// assert_eq!(seen, (0..100).collect::<Vec<_>>());
    /// # Ok::<(), kuai_cache::CacheError>(())
    /// ```
    pub fn scan(&self, cursor: u64, count: usize, mut f: impl FnMut(&K, &V)) -> u64 {
        let n = self.inner.shards.len() as u64;
        let mut shard = cursor >> 32;
        let mut index = (cursor & 0xffff_ffff) as u32;
        let mut left = count.max(1);
        let now = self.time().now;
        while shard < n {
            let mut seen = 0usize;
            let next = {
                let s = self.inner.shards[shard as usize].lock.read();
                s.scan_from(index, left, now, &mut |k, v, _| {
                    seen += 1;
                    f(k, v)
                })
            };
            left = left.saturating_sub(seen);
            match next {
                Some(i) => {
                    // Budget spent inside this shard.
                    return (shard << 32) | u64::from(i);
                }
                None => {
                    shard += 1;
                    index = 0;
                }
            }
            if left == 0 {
                break;
            }
        }
        if shard >= n {
            0
        } else {
            // A cursor of 0 means "done": encode the start of a later shard
            // as index 0 of that shard, never the whole-zero value.
            shard << 32
        }
    }

    /// [`scan`](Cache::scan) collecting the keys.
    pub fn scan_keys(&self, cursor: u64, count: usize) -> (Vec<K>, u64) {
        let mut keys = Vec::with_capacity(count.min(1024));
        let next = self.scan(cursor, count, |k, _| keys.push(k.clone()));
        (keys, next)
    }

    /// Passes every live entry to `f`, one shard at a time (not a snapshot:
    /// concurrent writes to other shards may or may not be seen). `f` runs
    /// under a shard lock and must not call back into the cache. No access
    /// is recorded.
    pub fn for_each(&self, mut f: impl FnMut(&K, &V)) {
        self.for_each_with_expiry(|k, v, _| f(k, v));
    }

    /// [`for_each`](Cache::for_each) that also passes each entry's expiry
    /// (`None`: never), e.g. to count the entries with a TTL in one pass.
    pub fn for_each_with_expiry(&self, mut f: impl FnMut(&K, &V, Option<Instant>)) {
        let now = self.time().now;
        for s in self.inner.shards.iter() {
            let s = s.lock.read();
            s.scan_from(0, usize::MAX, now, &mut |k, v, d| {
                f(k, v, self.instant_of_deadline(d))
            });
        }
    }

    /// Every live key (see [`for_each`](Cache::for_each)).
    pub fn keys(&self) -> Vec<K> {
        let mut keys = Vec::new();
        self.for_each(|k, _| keys.push(k.clone()));
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Policy, RemovalCause};
    use kuai_core::{Clock, ManualClock};
    use std::collections::HashSet;
    use std::sync::{Arc, Mutex, PoisonError};

    fn timed(clock: &ManualClock) -> Cache<u64, u64> {
        Cache::builder()
            .max_capacity(10_000)
            .clock(Arc::new(clock.clone()))
            .build()
            .expect("ok")
    }

    #[test]
    fn ttl_of_set_ttl_persist_and_exact_deadlines() {
        let clock = ManualClock::new();
        let c = timed(&clock);
        c.insert(1, 10);
        assert_eq!(c.ttl_of(&1), Some(None));
        assert_eq!(c.ttl_of(&2), None);
        assert!(!c.set_ttl(&2, Duration::from_secs(1)).expect("ok"));
        assert!(matches!(
            c.set_ttl(&1, Duration::ZERO),
            Err(CacheError::InvalidDuration(_))
        ));
        assert!(c.set_ttl(&1, Duration::from_secs(10)).expect("ok"));
        assert_eq!(c.ttl_of(&1), Some(Some(Duration::from_secs(10))));
        clock.advance(Duration::from_secs(4));
        assert_eq!(c.ttl_of(&1), Some(Some(Duration::from_secs(6))));
        assert_eq!(c.get(&1), Some(10), "set_ttl does not rewrite the value");
        assert!(c.persist(&1));
        clock.advance(Duration::from_secs(60));
        assert_eq!(c.get(&1), Some(10), "persisted");
        // An absolute deadline round-trips exactly.
        let at = clock.now() + Duration::from_millis(1234);
        assert!(c.set_expires_at(&1, at));
        assert_eq!(c.expires_at(&1), Some(Some(at)));
        clock.advance(Duration::from_millis(1233));
        assert_eq!(c.peek(&1), Some(10));
        clock.advance(Duration::from_millis(1));
        assert_eq!(c.peek(&1), None, "expired at the deadline");
        assert_eq!(c.ttl_of(&1), None);
        assert!(!c.persist(&1));
        // A past instant expires the entry now.
        c.insert(3, 3);
        assert!(c.set_expires_at(&3, clock.now() - Duration::from_secs(1)));
        assert_eq!(c.get(&3), None);
        c.run_pending_tasks();
        assert_eq!(c.entry_count(), 0);
        c.check_invariants();
    }

    #[test]
    fn ttl_and_persist_on_a_cache_with_a_default_ttl_and_tti() {
        let clock = ManualClock::new();
        let c: Cache<u64, u64> = Cache::builder()
            .max_capacity(100)
            .time_to_live(Duration::from_secs(10))
            .clock(Arc::new(clock.clone()))
            .build()
            .expect("ok");
        c.insert(1, 1);
        assert_eq!(c.ttl_of(&1), Some(Some(Duration::from_secs(10))));
        assert!(c.persist(&1));
        assert_eq!(c.ttl_of(&1), Some(None));
        clock.advance(Duration::from_secs(20));
        assert_eq!(c.get(&1), Some(1));
        // A new entry written with Expiry::Keep gets the default TTL.
        c.compute(2, |_| Compute::Insert(2, Expiry::Keep))
            .expect("ok");
        assert_eq!(c.ttl_of(&2), Some(Some(Duration::from_secs(10))));

        let c: Cache<u64, u64> = Cache::builder()
            .max_capacity(100)
            .time_to_idle(Duration::from_secs(5))
            .clock(Arc::new(clock.clone()))
            .build()
            .expect("ok");
        c.insert(1, 1);
        assert!(c.set_ttl(&1, Duration::from_secs(100)).expect("ok"));
        assert_eq!(
            c.ttl_of(&1),
            Some(Some(Duration::from_secs(5))),
            "idle time caps the deadline"
        );
    }

    #[test]
    fn compute_reads_modifies_and_writes_atomically() {
        let clock = ManualClock::new();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = Arc::clone(&seen);
        let c: Cache<u64, u64> = Cache::builder()
            .max_capacity(100)
            .clock(Arc::new(clock.clone()))
            .eviction_listener(move |k, v, cause| {
                s2.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push((*k, *v, cause))
            })
            .build()
            .expect("ok");
        // Insert when absent (SET NX).
        let nx = |c: &Cache<u64, u64>, k, v| {
            c.compute(k, |cur| match cur {
                Some(_) => Compute::Keep,
                None => Compute::Insert(v, Expiry::Never),
            })
        };
        assert_eq!(nx(&c, 1, 5).expect("ok"), None);
        assert_eq!(nx(&c, 1, 6).expect("ok"), None);
        assert_eq!(c.get(&1), Some(5));
        // Replace returns the old value; Expiry::Keep keeps the TTL.
        assert!(c.set_ttl(&1, Duration::from_secs(30)).expect("ok"));
        let old = c
            .compute(1, |cur| {
                Compute::Insert(cur.map_or(0, |e| *e.value()) + 1, Expiry::Keep)
            })
            .expect("ok");
        assert_eq!(old, Some(5));
        assert_eq!(c.peek(&1), Some(6));
        assert_eq!(c.ttl_of(&1), Some(Some(Duration::from_secs(30))));
        // The closure sees the deadline.
        let mut saw = None;
        c.compute(1, |cur| {
            saw = cur.and_then(|e| e.expires_at());
            Compute::Keep
        })
        .expect("ok");
        assert_eq!(saw, Some(clock.now() + Duration::from_secs(30)));
        // Expiry::Never clears it, After sets one, SetExpiry changes only it.
        c.compute(1, |_| Compute::Insert(7, Expiry::Never))
            .expect("ok");
        assert_eq!(c.ttl_of(&1), Some(None));
        c.compute(1, |_| {
            Compute::SetExpiry(Expiry::After(Duration::from_secs(3)))
        })
        .expect("ok");
        assert_eq!(c.ttl_of(&1), Some(Some(Duration::from_secs(3))));
        assert_eq!(c.peek(&1), Some(7));
        assert!(matches!(
            c.compute(1, |_| Compute::SetExpiry(Expiry::After(Duration::ZERO))),
            Err(CacheError::InvalidDuration(_))
        ));
        assert_eq!(
            c.ttl_of(&1),
            Some(Some(Duration::from_secs(3))),
            "unchanged on error"
        );
        c.compute(9, |_| Compute::SetExpiry(Expiry::Never))
            .expect("ok");
        assert_eq!(c.peek(&9), None, "SetExpiry on an absent key is a no-op");
        // An expired entry is absent to the closure.
        clock.advance(Duration::from_secs(3));
        let mut was = Some(0);
        c.compute(1, |cur| {
            was = cur.map(|e| *e.value());
            Compute::Keep
        })
        .expect("ok");
        assert_eq!(was, None);
        // Remove returns the value (GETDEL).
        c.insert(2, 20);
        assert_eq!(c.compute(2, |_| Compute::Remove).expect("ok"), Some(20));
        assert_eq!(c.compute(2, |_| Compute::Remove).expect("ok"), None);
        let seen = seen.lock().unwrap_or_else(PoisonError::into_inner).clone();
        assert!(seen.contains(&(1, 5, RemovalCause::Replaced)));
        assert!(seen.contains(&(1, 7, RemovalCause::Expired)));
        assert!(seen.contains(&(2, 20, RemovalCause::Explicit)));
        c.check_invariants();
    }

    #[test]
    fn compute_ref_builds_the_owned_key_only_for_a_new_entry() {
        let c: Cache<String, u64> = Cache::new(100).expect("ok");
        let made = std::cell::Cell::new(0);
        let bump = |c: &Cache<String, u64>, k: &str| {
            c.compute_ref(
                k,
                |k| {
                    made.set(made.get() + 1);
                    k.to_string()
                },
                |cur| Compute::Insert(cur.map_or(0, |e| *e.value()) + 1, Expiry::Keep),
                |_| (),
            )
            .expect("ok")
        };
        assert_eq!(bump(&c, "a"), None);
        assert_eq!(bump(&c, "a"), Some(1));
        assert_eq!(bump(&c, "a"), Some(2));
        assert_eq!(made.get(), 1, "the key was built once, for the insert");
        c.compute_ref("a", |k| k.to_string(), |_| Compute::Remove, |_| ())
            .expect("ok");
        c.compute_ref("b", |k| k.to_string(), |_| Compute::Keep, |_| ())
            .expect("ok");
        assert_eq!(made.get(), 1);
        assert_eq!(c.entry_count(), 0);
        c.check_invariants();
    }

    #[test]
    fn batches_are_atomic_across_shards() {
        let c: Cache<u64, u64> = Cache::builder()
            .max_capacity(10_000)
            .shards(16)
            .build()
            .expect("ok");
        // Keys in different shards.
        let (a, b) = (
            0u64,
            (1..1000)
                .find(|k| {
                    let h = |k: &u64| c.shard_index(c.hash(k));
                    h(k) != h(&0)
                })
                .expect("two shards"),
        );
        c.insert(a, 7);
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            let c2 = c.clone();
            let stop = &stop;
            s.spawn(move || {
                for _ in 0..20_000 {
                    c2.batch(&[&a, &b], |bt| {
                        let (from, to) = if bt.peek_with(&a, |_| ()).is_some() {
                            (a, b)
                        } else {
                            (b, a)
                        };
                        let v = bt
                            .compute_ref(&from, |k| *k, |_| Compute::Remove, |_| ())
                            .expect("ok")
                            .expect("present");
                        bt.compute_ref(&to, |k| *k, |_| Compute::Insert(v, Expiry::Keep), |_| ())
                            .expect("ok");
                    });
                }
                stop.store(true, Ordering::Relaxed);
            });
            let mut checks = 0;
            while !stop.load(Ordering::Relaxed) {
                let n = c.batch(&[&a, &b], |bt| {
                    usize::from(bt.peek_with(&a, |_| ()).is_some())
                        + usize::from(bt.peek_with(&b, |_| ()).is_some())
                });
                assert_eq!(n, 1, "a reader saw a half-done move");
                checks += 1;
            }
            assert!(checks > 0);
        });
        let outside = (0..1000)
            .find(|k| {
                let h = |k: &u64| c.shard_index(c.hash(k));
                h(k) != h(&a) && h(k) != h(&b)
            })
            .expect("a third shard");
        let r = c.batch(&[&a], |bt| {
            bt.compute_ref(
                &outside,
                |k| *k,
                |_| Compute::Insert(1, Expiry::Keep),
                |_| (),
            )
        });
        assert!(matches!(r, Err(CacheError::InvalidConfig(_))));
        c.check_invariants();
    }

    #[test]
    fn compute_errors_leave_the_entry() {
        let c: Cache<u64, Vec<u8>> = Cache::builder()
            .max_weight(1000, |_, v: &Vec<u8>| {
                u32::try_from(v.len()).unwrap_or(u32::MAX)
            })
            .shards(1)
            .build()
            .expect("ok");
        c.insert(1, vec![1; 10]);
        assert!(matches!(
            c.compute(1, |_| Compute::Insert(Vec::new(), Expiry::Keep)),
            Err(CacheError::ZeroWeight)
        ));
        assert!(matches!(
            c.compute(1, |_| Compute::Insert(vec![0; 2000], Expiry::Keep)),
            Err(CacheError::TooHeavy { .. })
        ));
        assert_eq!(c.peek(&1), Some(vec![1; 10]));
        // Growing a value evicts others to stay within the bound.
        for k in 2..50 {
            c.insert(k, vec![0; 20]);
        }
        c.compute(1, |_| Compute::Insert(vec![2; 500], Expiry::Keep))
            .expect("ok");
        assert!(c.weighted_size() <= 1000);
        c.check_invariants();
    }

    #[test]
    fn concurrent_compute_loses_no_increment() {
        let c: Cache<u64, u64> = Cache::builder()
            .max_capacity(1000)
            .shards(4)
            .build()
            .expect("ok");
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let c = c.clone();
                s.spawn(move || {
                    for i in 0..5_000u64 {
                        let k = (i + t) % 8;
                        c.compute(k, |cur| {
                            Compute::Insert(cur.map_or(0, |e| *e.value()) + 1, Expiry::Keep)
                        })
                        .expect("ok");
                    }
                });
            }
        });
        let total: u64 = (0..8).map(|k| c.peek(&k).unwrap_or(0)).sum();
        assert_eq!(total, 20_000);
        c.check_invariants();
    }

    #[test]
    fn scan_returns_every_key_present_throughout_despite_growth_and_churn() {
        let c: Cache<u64, u64> = Cache::builder()
            .max_capacity(1 << 20)
            .shards(8)
            .build()
            .expect("ok");
        for k in 0..1000 {
            c.insert(k, k);
        }
        let mut seen = HashSet::new();
        let mut cursor = 0;
        let mut steps = 0;
        let mut next_new = 1_000_000u64;
        loop {
            cursor = c.scan(cursor, 7, |k, _| {
                seen.insert(*k);
            });
            steps += 1;
            // Grow (the tables resize several times over the scan) and churn
            // other keys between steps.
            for _ in 0..5 {
                c.insert(next_new, 0);
                next_new += 1;
            }
            c.remove(&(next_new - 3));
            if cursor == 0 {
                break;
            }
        }
        assert!(steps > 100, "{steps}");
        for k in 0..1000 {
            assert!(seen.contains(&k), "key {k} missed");
        }
    }

    #[test]
    fn scan_while_other_threads_write() {
        let c: Cache<u64, u64> = Cache::builder()
            .max_capacity(1 << 20)
            .shards(4)
            .build()
            .expect("ok");
        for k in 0..2000 {
            c.insert(k, k);
        }
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            let w = c.clone();
            let stop = &stop;
            s.spawn(move || {
                let mut k = 10_000u64;
                while !stop.load(Ordering::Relaxed) && k < 60_000 {
                    w.insert(k, k);
                    if k % 3 == 0 {
                        w.remove(&(k - 1));
                    }
                    k += 1;
                }
            });
            let mut seen = HashSet::new();
            let mut cursor = 0;
            loop {
                let (keys, next) = c.scan_keys(cursor, 16);
                seen.extend(keys);
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
            stop.store(true, Ordering::Relaxed);
            assert!((0..2000).all(|k| seen.contains(&k)));
        });
        c.check_invariants();
    }

    #[test]
    fn for_each_and_keys_skip_expired_entries() {
        let clock = ManualClock::new();
        let c = timed(&clock);
        for k in 0..10 {
            c.insert(k, k);
        }
        c.set_ttl(&3, Duration::from_secs(1)).expect("ok");
        clock.advance(Duration::from_secs(2));
        let mut keys = c.keys();
        keys.sort_unstable();
        assert_eq!(keys, vec![0, 1, 2, 4, 5, 6, 7, 8, 9]);
        let mut sum = 0;
        c.for_each(|_, v| sum += v);
        assert_eq!(sum, 45 - 3);
        c.set_ttl(&4, Duration::from_secs(9)).expect("ok");
        let mut expiring = Vec::new();
        c.for_each_with_expiry(|k, _, at| {
            if let Some(at) = at {
                expiring.push((*k, at));
            }
        });
        assert_eq!(expiring, vec![(4, clock.now() + Duration::from_secs(9))]);
    }

    #[test]
    fn get_with_counts_like_get_and_peek_with_does_not() {
        let c: Cache<u64, String> = Cache::new(10).expect("ok");
        c.insert(1, "one".into());
        assert_eq!(c.get_with(&1, |v| v.len()), Some(3));
        assert_eq!(c.get_with(&2, |v| v.len()), None);
        assert_eq!(c.peek_with(&1, |v| v.clone()), Some("one".to_string()));
        let s = c.stats();
        assert_eq!((s.hits, s.misses), (1, 1));
    }

    fn rejecting(max: u64, shards: usize) -> Cache<u64, Vec<u8>> {
        Cache::builder()
            .max_weight(max, |_, v: &Vec<u8>| {
                u32::try_from(v.len()).unwrap_or(u32::MAX).max(1)
            })
            .policy(Policy::Lru)
            .shards(shards)
            .reject_when_full(true)
            .build()
            .expect("ok")
    }

    #[test]
    fn reject_when_full_refuses_instead_of_evicting() {
        let c = rejecting(1000, 1);
        for k in 0..10 {
            c.try_insert(k, vec![0; 100]).expect("fits");
        }
        assert!(matches!(
            c.try_insert(10, vec![0; 1]),
            Err(CacheError::Full { limit: 1000 })
        ));
        assert!(matches!(
            c.compute(11, |_| Compute::Insert(vec![0; 1], Expiry::Keep)),
            Err(CacheError::Full { limit: 1000 })
        ));
        // Growing a value is refused and leaves it; shrinking one is fine.
        assert!(matches!(
            c.compute(0, |_| Compute::Insert(vec![1; 101], Expiry::Keep)),
            Err(CacheError::Full { .. })
        ));
        assert_eq!(c.peek(&0), Some(vec![0; 100]));
        c.try_insert(0, vec![1; 50]).expect("shrink");
        c.try_insert(12, vec![1; 50]).expect("fits again");
        c.insert(13, vec![0; 1]); // dropped silently
        assert_eq!(c.peek(&13), None);
        assert_eq!(c.entry_count(), 11);
        assert_eq!(c.stats().evicted_size, 0);
        // Removing makes room.
        c.remove(&1);
        c.try_insert(14, vec![0; 100]).expect("room after remove");
        c.check_invariants();
        let e: kuai_core::Error = CacheError::Full { limit: 1 }.into();
        assert_eq!(e.kind(), kuai_core::ErrorKind::Overloaded);
    }

    #[test]
    fn reject_when_full_reclaims_expired_entries_first() {
        let clock = ManualClock::new();
        let c: Cache<u64, Vec<u8>> = Cache::builder()
            .max_weight(1000, |_, v: &Vec<u8>| {
                u32::try_from(v.len()).unwrap_or(u32::MAX).max(1)
            })
            .shards(1)
            .reject_when_full(true)
            .clock(Arc::new(clock.clone()))
            .build()
            .expect("ok");
        for k in 0..10 {
            c.compute(k, |_| {
                Compute::Insert(vec![0; 100], Expiry::After(Duration::from_secs(1)))
            })
            .expect("fits");
        }
        assert!(c.try_insert(10, vec![0; 100]).is_err());
        clock.advance(Duration::from_secs(5));
        c.try_insert(10, vec![0; 100])
            .expect("expired entries made room");
        c.check_invariants();
    }

    #[test]
    fn reject_when_full_under_concurrent_writers_stays_bounded() {
        let c = rejecting(64_000, 4);
        let refused = std::sync::atomic::AtomicU64::new(0);
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let c = c.clone();
                let refused = &refused;
                s.spawn(move || {
                    for i in 0..2_000u64 {
                        let k = t * 1_000_000 + i;
                        match c.compute(k, |_| Compute::Insert(vec![0; 64], Expiry::Keep)) {
                            Ok(_) => {}
                            Err(CacheError::Full { .. }) => {
                                refused.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => panic!("{e}"),
                        }
                    }
                });
            }
        });
        assert!(c.weighted_size() <= 64_000);
        assert!(refused.load(Ordering::Relaxed) > 0);
        assert_eq!(c.stats().evicted_size, 0);
        assert_eq!(
            c.entry_count() + refused.load(Ordering::Relaxed),
            8_000,
            "every write either landed or was refused"
        );
        c.check_invariants();
    }
}
