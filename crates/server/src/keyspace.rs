//! The keyspace: string keys to string values with millisecond TTLs, sharded
//! over mutex-guarded open-addressing tables.
//!
//! A key is hashed once; the middle bits pick the shard, the low and top bits
//! drive the shard's `hashbrown::HashTable` (so the shard choice does not
//! correlate with the table's control bytes). Expired keys are removed lazily
//! when touched and actively by [`Keyspace::sweep_expired`]. With a
//! `maxmemory` budget, writes evict by sampling (approximate LRU or LFU, or
//! random), or are refused under `noeviction`.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use bytes::Bytes;
use hashbrown::{DefaultHashBuilder, HashTable};
use parking_lot::{Mutex, MutexGuard};

use crate::reply::{ReplyBuf, ZERO_COPY_THRESHOLD};

/// Bytes charged per key on top of its key and value (table slot, allocator
/// headers), for `maxmemory` accounting.
pub const ENTRY_OVERHEAD: usize = 96;

/// What happens when `maxmemory` is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EvictionPolicy {
    /// Refuse writes that add memory (`-OOM`).
    #[default]
    NoEviction,
    /// Evict the least recently used key among a sample.
    AllKeysLru,
    /// Evict the least frequently used key among a sample.
    AllKeysLfu,
    /// Evict a random key.
    AllKeysRandom,
}

impl EvictionPolicy {
    /// Parses Redis's names (`noeviction`, `allkeys-lru`, `allkeys-lfu`, `allkeys-random`).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "noeviction" => EvictionPolicy::NoEviction,
            "allkeys-lru" => EvictionPolicy::AllKeysLru,
            "allkeys-lfu" => EvictionPolicy::AllKeysLfu,
            "allkeys-random" => EvictionPolicy::AllKeysRandom,
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
        }
    }
}

/// Where an entry keeps its bytes: small values share one allocation with
/// the key; large ones are a shared `Bytes`, so replies can chain them
/// without copying.
#[derive(Debug, Clone)]
enum Storage {
    /// Key bytes followed by value bytes.
    Inline(Box<[u8]>),
    /// Key and a large value.
    Large(Box<(Box<[u8]>, Bytes)>),
}

/// One key and its value: 32 bytes in the table (64-bit) plus one allocation for
/// key and value (the per-key overhead decides RSS per key).
#[derive(Debug, Clone)]
pub struct Entry {
    data: Storage,
    klen: u32,
    /// LRU: last access (coarse ticks); LFU: logarithmic access counter.
    pub touched: u32,
    /// Absolute expiry in Unix milliseconds; 0 = no TTL.
    pub expire_at: u64,
}

impl Entry {
    /// An entry for `key` = `value`.
    pub fn new(key: &[u8], value: &[u8], expire_at: u64) -> Self {
        let mut e = Entry {
            data: Storage::Inline(Box::default()),
            klen: key.len() as u32,
            touched: 0,
            expire_at,
        };
        e.store(key, value);
        e
    }

    fn store(&mut self, key: &[u8], value: &[u8]) {
        self.klen = key.len() as u32;
        self.data = if value.len() >= ZERO_COPY_THRESHOLD {
            Storage::Large(Box::new((key.into(), Bytes::copy_from_slice(value))))
        } else {
            let mut kv = Vec::with_capacity(key.len() + value.len());
            kv.extend_from_slice(key);
            kv.extend_from_slice(value);
            Storage::Inline(kv.into_boxed_slice())
        };
    }

    /// The key.
    #[inline]
    pub fn key(&self) -> &[u8] {
        match &self.data {
            Storage::Inline(kv) => &kv[..self.klen as usize],
            Storage::Large(b) => &b.0,
        }
    }

    /// The value.
    #[inline]
    pub fn value(&self) -> &[u8] {
        match &self.data {
            Storage::Inline(kv) => &kv[self.klen as usize..],
            Storage::Large(b) => &b.1,
        }
    }

    /// The value as `Bytes` (shared for large values, copied for small ones).
    pub fn value_bytes(&self) -> Bytes {
        match &self.data {
            Storage::Inline(kv) => Bytes::copy_from_slice(&kv[self.klen as usize..]),
            Storage::Large(b) => b.1.clone(),
        }
    }

    /// Appends the value as a bulk reply: large values are chained, not copied.
    #[inline]
    pub fn reply_value(&self, out: &mut ReplyBuf) {
        match &self.data {
            Storage::Inline(kv) => out.bulk(&kv[self.klen as usize..]),
            Storage::Large(b) => out.bulk_bytes(&b.1),
        }
    }

    /// Replaces the value (account the size change with [`Shard::resized`]).
    pub fn set_value(&mut self, value: &[u8]) {
        let key: Box<[u8]> = self.key().into();
        self.store(&key, value);
    }

    /// The same entry under another key (RENAME).
    pub fn rekey(&self, key: &[u8]) -> Entry {
        let mut e = Entry::new(key, b"", self.expire_at);
        match &self.data {
            Storage::Large(b) => e.data = Storage::Large(Box::new((key.into(), b.1.clone()))),
            Storage::Inline(_) => e.store(key, self.value()),
        }
        e.touched = self.touched;
        e
    }

    #[inline]
    fn expired(&self, now_ms: u64) -> bool {
        self.expire_at != 0 && self.expire_at <= now_ms
    }

    fn cost(&self) -> usize {
        self.key().len() + self.value().len() + ENTRY_OVERHEAD
    }
}

/// Per-shard counters.
#[derive(Debug, Default, Clone, Copy)]
pub struct ShardStats {
    /// Lookups that found a live key.
    pub hits: u64,
    /// Lookups that found nothing.
    pub misses: u64,
    /// Keys removed because their TTL passed.
    pub expired: u64,
    /// Keys evicted for `maxmemory`.
    pub evicted: u64,
}

/// One shard: a table plus its bookkeeping. Obtain it with [`Keyspace::lock`].
#[derive(Debug, Default)]
pub struct Shard {
    table: HashTable<Entry>,
    volatile: usize,
    mem: usize,
    /// This shard's counters.
    pub stats: ShardStats,
}

/// A hashed key: compute once with [`Keyspace::hash`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyHash(pub u64);

impl Shard {
    /// Live keys plus expired ones not yet removed.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether the shard holds no key.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Keys with a TTL.
    pub fn volatile(&self) -> usize {
        self.volatile
    }

    /// Bytes charged to this shard.
    pub fn mem(&self) -> usize {
        self.mem
    }

    fn remove_found(&mut self, h: KeyHash, key: &[u8]) -> Option<Entry> {
        match self.table.find_entry(h.0, |e| e.key() == key) {
            Ok(occ) => {
                let (e, _) = occ.remove();
                if e.expire_at != 0 {
                    self.volatile -= 1;
                }
                self.mem -= e.cost();
                Some(e)
            }
            Err(_) => None,
        }
    }

    /// The live entry for `key`, removing it first if it has expired.
    #[inline]
    pub fn get(&mut self, h: KeyHash, key: &[u8], now_ms: u64) -> Option<&mut Entry> {
        let expired = match self.table.find(h.0, |e| e.key() == key) {
            None => {
                self.stats.misses += 1;
                return None;
            }
            Some(e) => e.expired(now_ms),
        };
        if expired {
            self.remove_found(h, key);
            self.stats.expired += 1;
            self.stats.misses += 1;
            return None;
        }
        self.stats.hits += 1;
        self.table.find_mut(h.0, |e| e.key() == key)
    }

    /// Like [`get`](Self::get) but without touching the hit/miss counters.
    #[inline]
    pub fn get_quiet(&mut self, h: KeyHash, key: &[u8], now_ms: u64) -> Option<&mut Entry> {
        let expired = self.table.find(h.0, |e| e.key() == key)?.expired(now_ms);
        if expired {
            self.remove_found(h, key);
            self.stats.expired += 1;
            return None;
        }
        self.table.find_mut(h.0, |e| e.key() == key)
    }

    /// Removes `key` if it is live; returns the removed entry.
    pub fn remove(&mut self, h: KeyHash, key: &[u8], now_ms: u64) -> Option<Entry> {
        let e = self.remove_found(h, key)?;
        if e.expired(now_ms) {
            self.stats.expired += 1;
            return None;
        }
        Some(e)
    }

    /// Sets `key` to `value`. `expire_at`: `Some(t)` sets the TTL (0 clears
    /// it), `None` keeps the existing one (`KEEPTTL`). Returns whether a live
    /// value was replaced.
    pub fn set(
        &mut self,
        h: KeyHash,
        key: &[u8],
        value: &[u8],
        expire_at: Option<u64>,
        now_ms: u64,
    ) -> bool {
        if let Some(e) = self.table.find_mut(h.0, |e| e.key() == key) {
            let was_live = !e.expired(now_ms);
            let old_cost = e.cost();
            let had_ttl = e.expire_at != 0;
            e.set_value(value);
            match expire_at {
                Some(t) => e.expire_at = t,
                None if !was_live => e.expire_at = 0,
                None => {}
            }
            let has_ttl = e.expire_at != 0;
            let new_cost = e.cost();
            self.volatile = self.volatile + usize::from(has_ttl) - usize::from(had_ttl);
            self.mem = self.mem + new_cost - old_cost;
            return was_live;
        }
        let entry = Entry::new(key, value, expire_at.unwrap_or(0));
        if entry.expire_at != 0 {
            self.volatile += 1;
        }
        self.mem += entry.cost();
        self.table.insert_unique(h.0, entry, |e| e.touched_hash());
        false
    }

    /// Sets or clears the TTL of a live entry (0 clears). Returns false if
    /// the key is missing.
    pub fn set_expire(&mut self, h: KeyHash, key: &[u8], expire_at: u64, now_ms: u64) -> bool {
        let Some(e) = self.get_quiet(h, key, now_ms) else {
            return false;
        };
        let had = e.expire_at != 0;
        e.expire_at = expire_at;
        let has = expire_at != 0;
        self.volatile = self.volatile + usize::from(has) - usize::from(had);
        true
    }

    /// Accounts a value whose length changed in place from `old_len` bytes.
    pub fn resized(&mut self, old_len: usize, new_len: usize) {
        self.mem = self.mem + new_len - old_len;
    }

    /// Inserts a whole entry (RENAME), replacing any existing one.
    pub fn put_entry(&mut self, h: KeyHash, entry: Entry, now_ms: u64) {
        let key: Box<[u8]> = entry.key().into();
        self.remove(h, &key, now_ms);
        if entry.expire_at != 0 {
            self.volatile += 1;
        }
        self.mem += entry.cost();
        self.table.insert_unique(h.0, entry, |e| e.touched_hash());
    }

    /// Removes every key.
    pub fn clear(&mut self) {
        self.table = HashTable::new();
        self.volatile = 0;
        self.mem = 0;
    }

    /// Every live key (expired ones are skipped, not removed).
    pub fn live_entries(&self, now_ms: u64) -> impl Iterator<Item = &Entry> {
        self.table.iter().filter(move |e| !e.expired(now_ms))
    }

    /// Removes every expired key; returns how many.
    pub fn sweep(&mut self, now_ms: u64) -> usize {
        if self.volatile == 0 {
            return 0;
        }
        let mut removed = 0;
        let mut mem = 0;
        self.table.retain(|e| {
            if e.expired(now_ms) {
                removed += 1;
                mem += e.cost();
                false
            } else {
                true
            }
        });
        self.volatile -= removed;
        self.mem -= mem;
        self.stats.expired += removed as u64;
        removed
    }

    /// Evicts one key chosen by `policy` among a sample; returns the bytes freed.
    fn evict_one(&mut self, policy: EvictionPolicy, sample_seed: usize) -> usize {
        const SAMPLE: usize = 8;
        let len = self.table.len();
        if len == 0 {
            return 0;
        }
        let skip = sample_seed % len.max(1);
        let victim = {
            let mut best: Option<(&Entry, u32)> = None;
            for e in self.table.iter().skip(skip.min(len - 1)).take(SAMPLE) {
                let score = match policy {
                    EvictionPolicy::AllKeysRandom => 0,
                    _ => e.touched,
                };
                if best.is_none_or(|(_, s)| score < s) {
                    best = Some((e, score));
                }
            }
            best.map(|(e, _)| Box::<[u8]>::from(e.key()))
        };
        let Some(key) = victim else { return 0 };
        let h = KeyHash(hasher().hash_one(&key[..]));
        match self.remove_found(h, &key) {
            Some(e) => {
                self.stats.evicted += 1;
                e.cost()
            }
            None => 0,
        }
    }
}

static GLOBAL_HASHER: std::sync::OnceLock<DefaultHashBuilder> = std::sync::OnceLock::new();

#[inline]
fn hasher() -> &'static DefaultHashBuilder {
    GLOBAL_HASHER.get_or_init(DefaultHashBuilder::default)
}

impl Entry {
    #[inline]
    fn touched_hash(&self) -> u64 {
        hasher().hash_one(self.key())
    }
}

/// The sharded keyspace.
///
/// ```
/// use bytes::Bytes;
/// use kuai_server::keyspace::Keyspace;
/// let ks = Keyspace::new(16);
/// let key = Bytes::from_static(b"k");
/// let h = ks.hash(&key);
/// let mut shard = ks.lock(ks.shard_of(h));
/// shard.set(h, &key, b"v", Some(0), 0);
/// assert_eq!(shard.get(h, &key, 0).unwrap().value(), b"v");
/// ```
#[derive(Debug)]
pub struct Keyspace {
    shards: Box<[Mutex<Shard>]>,
    mask: u64,
    maxmemory: AtomicUsize,
    policy: parking_lot::RwLock<EvictionPolicy>,
    lru_clock: AtomicU64,
    evict_cursor: AtomicUsize,
}

impl Keyspace {
    /// A keyspace of `shards` shards (rounded up to a power of two).
    pub fn new(shards: usize) -> Self {
        let n = shards.clamp(1, 1 << 16).next_power_of_two();
        Keyspace {
            shards: (0..n).map(|_| Mutex::new(Shard::default())).collect(),
            mask: (n - 1) as u64,
            maxmemory: AtomicUsize::new(0),
            policy: parking_lot::RwLock::new(EvictionPolicy::NoEviction),
            lru_clock: AtomicU64::new(0),
            evict_cursor: AtomicUsize::new(0),
        }
    }

    /// Sets the memory budget (0 = unlimited) and the eviction policy.
    pub fn set_maxmemory(&self, bytes: usize, policy: EvictionPolicy) {
        self.maxmemory.store(bytes, Ordering::Relaxed);
        *self.policy.write() = policy;
    }

    /// The memory budget (0 = unlimited).
    pub fn maxmemory(&self) -> usize {
        self.maxmemory.load(Ordering::Relaxed)
    }

    /// The eviction policy.
    pub fn policy(&self) -> EvictionPolicy {
        *self.policy.read()
    }

    /// Hashes a key.
    #[inline]
    pub fn hash(&self, key: &[u8]) -> KeyHash {
        KeyHash(hasher().hash_one(key))
    }

    /// The shard index of a hashed key.
    #[inline]
    pub fn shard_of(&self, h: KeyHash) -> usize {
        ((h.0 >> 32) & self.mask) as usize
    }

    /// Number of shards.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Locks shard `idx`.
    #[inline]
    pub fn lock(&self, idx: usize) -> MutexGuard<'_, Shard> {
        self.shards[idx].lock()
    }

    /// Locks every shard, in index order.
    pub fn lock_all(&self) -> Vec<MutexGuard<'_, Shard>> {
        self.shards.iter().map(|s| s.lock()).collect()
    }

    /// Keys (including expired ones not yet removed), summed over shards.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes charged to keys and values.
    pub fn used_memory(&self) -> usize {
        self.shards.iter().map(|s| s.lock().mem()).sum()
    }

    /// Summed counters.
    pub fn stats(&self) -> ShardStats {
        let mut t = ShardStats::default();
        for s in self.shards.iter() {
            let s = s.lock().stats;
            t.hits += s.hits;
            t.misses += s.misses;
            t.expired += s.expired;
            t.evicted += s.evicted;
        }
        t
    }

    /// Keys with a TTL.
    pub fn volatile(&self) -> usize {
        self.shards.iter().map(|s| s.lock().volatile()).sum()
    }

    /// Removes expired keys from up to `max_shards` shards starting at
    /// `start`; returns (keys removed, next start).
    pub fn sweep_expired(&self, start: usize, max_shards: usize, now_ms: u64) -> (usize, usize) {
        let n = self.shards.len();
        let mut removed = 0;
        for i in 0..max_shards.min(n) {
            removed += self.shards[(start + i) % n].lock().sweep(now_ms);
        }
        (removed, (start + max_shards) % n)
    }

    /// Advances the coarse LRU clock (called by the server's timer).
    pub fn tick(&self) {
        self.lru_clock.fetch_add(1, Ordering::Relaxed);
    }

    /// Records an access for the eviction policy.
    #[inline]
    pub fn touch(&self, e: &mut Entry) {
        match self.maxmemory.load(Ordering::Relaxed) {
            0 => {}
            _ => match *self.policy.read() {
                EvictionPolicy::AllKeysLfu => {
                    // A Morris counter: increments get rarer as it grows.
                    let c = e.touched;
                    if c < u32::MAX {
                        let r = (self.evict_cursor.fetch_add(0x9e37_79b9, Ordering::Relaxed)
                            as u64)
                            .wrapping_mul(0x2545_f491_4f6c_dd1d);
                        let p = 1u64 << (c.min(40) / 4);
                        if r % p == 0 {
                            e.touched = c + 1;
                        }
                    }
                }
                _ => e.touched = self.lru_clock.load(Ordering::Relaxed) as u32,
            },
        }
    }

    /// Makes room for a write under `maxmemory`. Returns false when the
    /// policy is `noeviction` and memory is over budget (the write must be
    /// refused with `-OOM`). Must be called without any shard locked.
    pub fn make_room(&self) -> bool {
        let max = self.maxmemory.load(Ordering::Relaxed);
        if max == 0 {
            return true;
        }
        let mut used = self.used_memory();
        if used <= max {
            return true;
        }
        let policy = *self.policy.read();
        if policy == EvictionPolicy::NoEviction {
            return false;
        }
        let n = self.shards.len();
        let mut misses = 0;
        while used > max && misses < n {
            let c = self.evict_cursor.fetch_add(1, Ordering::Relaxed);
            let freed = self.shards[c % n]
                .lock()
                .evict_one(policy, c.wrapping_mul(2_654_435_761));
            if freed == 0 {
                misses += 1;
            } else {
                misses = 0;
                used = used.saturating_sub(freed);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn ttl_and_lazy_expiry() {
        let ks = Keyspace::new(4);
        let k = b("k");
        let h = ks.hash(&k);
        let mut s = ks.lock(ks.shard_of(h));
        s.set(h, &k, b"v", Some(100), 0);
        assert_eq!(s.volatile(), 1);
        assert!(s.get(h, &k, 99).is_some());
        assert!(s.get(h, &k, 100).is_none());
        assert_eq!(s.len(), 0);
        assert_eq!(s.volatile(), 0);
        assert_eq!(s.mem(), 0);
    }

    #[test]
    fn large_values_are_shared_small_ones_inline() {
        let big = vec![7u8; ZERO_COPY_THRESHOLD];
        let e = Entry::new(b"k", &big, 0);
        assert_eq!(e.key(), b"k");
        assert_eq!(e.value_bytes().as_ptr(), e.value_bytes().as_ptr());
        let mut small = Entry::new(b"key", b"v", 9);
        small.set_value(b"longer");
        assert_eq!((small.key(), small.value()), (&b"key"[..], &b"longer"[..]));
        let moved = e.rekey(b"other");
        assert_eq!(
            (moved.key(), moved.value().len()),
            (&b"other"[..], big.len())
        );
        assert!(std::mem::size_of::<Entry>() <= 40);
    }

    #[test]
    fn keepttl_and_sweep() {
        let ks = Keyspace::new(1);
        let k = b("k");
        let h = ks.hash(&k);
        {
            let mut s = ks.lock(0);
            s.set(h, &k, b"v", Some(50), 0);
            assert!(s.set(h, &k, b"w", None, 10));
            assert_eq!(s.get(h, &k, 10).unwrap().expire_at, 50);
        }
        assert_eq!(ks.sweep_expired(0, 1, 60).0, 1);
        assert!(ks.is_empty());
    }

    #[test]
    fn eviction_keeps_under_budget() {
        let ks = Keyspace::new(4);
        for i in 0..1000 {
            let k = b(&format!("key{i}"));
            let h = ks.hash(&k);
            ks.lock(ks.shard_of(h))
                .set(h, &k, b"0123456789", Some(0), 0);
        }
        let used = ks.used_memory();
        ks.set_maxmemory(used / 2, EvictionPolicy::AllKeysLru);
        assert!(ks.make_room());
        assert!(ks.used_memory() <= used / 2);
        assert!(ks.stats().evicted > 0);
        ks.set_maxmemory(1, EvictionPolicy::NoEviction);
        assert!(!ks.make_room());
    }
}
