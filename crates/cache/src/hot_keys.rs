//! Hot keys: detection (top-k by a count-min sketch over a sliding window)
//! and local replicas, so one hot key does not serialize every reader on
//! one shard lock (or, through the same key scheme, on one L2 node).

use std::cell::Cell;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::cache::Cache;
use crate::error::CacheError;
use crate::hashing::FastHashBuilder;

const DEPTH: usize = 4;

/// Counts over two half-windows; an estimate is `current + previous`, so the
/// window slides by half its length at a time.
struct WindowSketch {
    cur: Vec<u32>,
    prev: Vec<u32>,
    mask: usize,
}

impl WindowSketch {
    fn new(width: usize) -> Self {
        let width = width.clamp(64, 1 << 22).next_power_of_two();
        WindowSketch {
            cur: vec![0; width * DEPTH],
            prev: vec![0; width * DEPTH],
            mask: width - 1,
        }
    }
    fn slots(&self, hash: u64) -> [usize; DEPTH] {
        let w = self.mask + 1;
        std::array::from_fn(|i| {
            let h = hash
                .rotate_left(16 * i as u32)
                .wrapping_mul(0x9e37_79b9_7f4a_7c15);
            i * w + ((h >> 32) as usize & self.mask)
        })
    }
    fn add(&mut self, hash: u64) -> u64 {
        let mut est = u64::MAX;
        for s in self.slots(hash) {
            self.cur[s] = self.cur[s].saturating_add(1);
            est = est.min(u64::from(self.cur[s]) + u64::from(self.prev[s]));
        }
        est
    }
    fn estimate(&self, hash: u64) -> u64 {
        self.slots(hash)
            .iter()
            .map(|&s| u64::from(self.cur[s]) + u64::from(self.prev[s]))
            .min()
            .unwrap_or(0)
    }
    fn rotate(&mut self) {
        std::mem::swap(&mut self.cur, &mut self.prev);
        self.cur.iter_mut().for_each(|c| *c = 0);
    }
}

struct State<K> {
    sketch: WindowSketch,
    top: Vec<(K, u64, u64)>, // key, hash, estimate
    in_window: u64,
}

/// Finds the `k` most frequent keys of a sliding window of accesses.
///
/// ```
/// use kuai_cache::HotKeyDetector;
/// let d = HotKeyDetector::new(4, 1_000, 50)?;
/// for i in 0..1_000u64 {
///     d.record(&(if i % 2 == 0 { 7 } else { i }));
/// }
/// assert_eq!(d.top()[0].0, 7);
/// assert!(d.is_hot(&7));
/// # Ok::<(), kuai_cache::CacheError>(())
/// ```
pub struct HotKeyDetector<K> {
    state: Mutex<State<K>>,
    k: usize,
    window: u64,
    threshold: u64,
    hasher: FastHashBuilder,
    /// Hashes of the current hot keys, readable without a lock (0 = empty).
    hot: Box<[AtomicU64]>,
}

impl<K> fmt::Debug for HotKeyDetector<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HotKeyDetector")
            .field("k", &self.k)
            .field("window", &self.window)
            .field("threshold", &self.threshold)
            .finish_non_exhaustive()
    }
}

impl<K: Hash + Eq + Clone> HotKeyDetector<K> {
    /// Tracks the top `k` keys (1..=64) over a window of `window` recorded
    /// accesses; a key is hot when its count in the window reaches
    /// `threshold`.
    pub fn new(k: usize, window: u64, threshold: u64) -> Result<Self, CacheError> {
        if k == 0 || k > 64 || window < 2 || threshold == 0 {
            return Err(CacheError::InvalidConfig(
                "hot keys: need 1 ≤ k ≤ 64, window ≥ 2, threshold ≥ 1",
            ));
        }
        Ok(HotKeyDetector {
            state: Mutex::new(State {
                sketch: WindowSketch::new((window / 2) as usize),
                top: Vec::with_capacity(k),
                in_window: 0,
            }),
            k,
            window,
            threshold,
            hasher: FastHashBuilder::with_seed(0x401),
            hot: (0..k).map(|_| AtomicU64::new(0)).collect(),
        })
    }

    fn hash(&self, key: &K) -> u64 {
        self.hasher.hash_one(key) | 1
    }

    /// Records one access; returns whether `key` is now hot.
    pub fn record(&self, key: &K) -> bool {
        let hash = self.hash(key);
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let est = st.sketch.add(hash);
        st.in_window += 1;
        if st.in_window >= self.window / 2 {
            st.in_window = 0;
            st.sketch.rotate();
            let State { sketch, top, .. } = &mut *st;
            for e in top.iter_mut() {
                e.2 = sketch.estimate(e.1);
            }
            top.retain(|e| e.2 > 0);
        }
        if let Some(e) = st.top.iter_mut().find(|e| e.1 == hash && e.0 == *key) {
            e.2 = est;
        } else if st.top.len() < self.k {
            st.top.push((key.clone(), hash, est));
        } else if let Some(min) = st.top.iter_mut().min_by_key(|e| e.2) {
            if est > min.2 {
                *min = (key.clone(), hash, est);
            }
        }
        st.top.sort_by_key(|e| std::cmp::Reverse(e.2));
        for (i, slot) in self.hot.iter().enumerate() {
            let h = st
                .top
                .get(i)
                .filter(|e| e.2 >= self.threshold)
                .map_or(0, |e| e.1);
            slot.store(h, Ordering::Relaxed);
        }
        est >= self.threshold
    }

    /// Whether `key` is among the current hot keys (lock-free).
    pub fn is_hot(&self, key: &K) -> bool {
        let h = self.hash(key);
        self.hot.iter().any(|s| s.load(Ordering::Relaxed) == h)
    }

    /// The current top keys with their window counts, most frequent first.
    pub fn top(&self) -> Vec<(K, u64)> {
        let st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        st.top.iter().map(|e| (e.0.clone(), e.2)).collect()
    }
}

thread_local! {
    static TICK: Cell<u32> = const { Cell::new(0) };
}

fn tick() -> u32 {
    TICK.with(|t| {
        let v = t.get().wrapping_add(1);
        t.set(v);
        v
    })
}

/// A cache that keeps `replicas` copies of hot keys under distinct internal
/// keys (so in distinct shards) and spreads reads over them.
///
/// Accesses are sampled (1 in `sample`) into a [`HotKeyDetector`]. Writes
/// and invalidations go to every copy.
///
/// ```
/// use kuai_cache::HotKeyCache;
/// let c: HotKeyCache<u64, u64> = HotKeyCache::new(10_000, 4)?;
/// c.insert(1, 10);
/// assert_eq!(c.get(&1), Some(10));
/// # Ok::<(), kuai_cache::CacheError>(())
/// ```
pub struct HotKeyCache<K, V> {
    cache: Cache<(K, u16), V>,
    detector: HotKeyDetector<K>,
    replicas: u16,
    sample: u32,
}

impl<K, V> fmt::Debug for HotKeyCache<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HotKeyCache")
            .field("cache", &self.cache)
            .field("replicas", &self.replicas)
            .finish_non_exhaustive()
    }
}

impl<K, V> HotKeyCache<K, V>
where
    K: Hash + Eq + Clone,
    V: Clone,
{
    /// A cache of `capacity` entries (replicas included) keeping `replicas`
    /// (1..=64) copies of each of up to 16 hot keys.
    pub fn new(capacity: u64, replicas: u16) -> Result<Self, CacheError> {
        if replicas == 0 || replicas > 64 {
            return Err(CacheError::InvalidConfig("replicas must be in 1..=64"));
        }
        Ok(HotKeyCache {
            cache: Cache::new(capacity)?,
            detector: HotKeyDetector::new(16, 100_000, 64)?,
            replicas,
            sample: 8,
        })
    }

    /// The hot-key detector.
    pub fn detector(&self) -> &HotKeyDetector<K> {
        &self.detector
    }

    /// Reads `key`, from a replica if it is hot.
    pub fn get(&self, key: &K) -> Option<V> {
        let t = tick();
        if t % self.sample == 0 {
            self.detector.record(key);
        }
        if self.replicas > 1 && self.detector.is_hot(key) {
            let r = (t % u32::from(self.replicas)) as u16;
            if let Some(v) = self.cache.get(&(key.clone(), r)) {
                return Some(v);
            }
            let v = self.cache.get(&(key.clone(), 0))?;
            if r != 0 {
                self.cache.insert((key.clone(), r), v.clone());
            }
            return Some(v);
        }
        self.cache.get(&(key.clone(), 0))
    }

    /// Writes `key` (every replica of a hot key).
    pub fn insert(&self, key: K, value: V) {
        if self.detector.is_hot(&key) {
            for r in 1..self.replicas {
                self.cache.insert((key.clone(), r), value.clone());
            }
        } else {
            for r in 1..self.replicas {
                self.cache.remove(&(key.clone(), r));
            }
        }
        self.cache.insert((key, 0), value);
    }

    /// Removes `key` and all its replicas.
    pub fn invalidate(&self, key: &K) {
        for r in 0..self.replicas {
            self.cache.invalidate(&(key.clone(), r));
        }
    }

    /// Entries held (replicas included).
    pub fn entry_count(&self) -> u64 {
        self.cache.entry_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_hot_keys_of_a_skewed_stream_and_forgets_them() {
        let d = HotKeyDetector::new(3, 10_000, 100).expect("ok");
        for i in 0..20_000u64 {
            let k = match i % 10 {
                0..=2 => 1,
                3..=4 => 2,
                5 => 3,
                _ => 1000 + i,
            };
            d.record(&k);
        }
        let top: Vec<u64> = d.top().into_iter().map(|(k, _)| k).collect();
        assert_eq!(top, vec![1, 2, 3]);
        assert!(d.is_hot(&1) && d.is_hot(&3));
        assert!(!d.is_hot(&1005));
        // The window slides: a new pattern displaces the old hot keys.
        for i in 0..30_000u64 {
            d.record(&(if i % 2 == 0 { 9 } else { 50_000 + i }));
        }
        assert!(d.is_hot(&9));
        assert!(!d.is_hot(&1), "old hot key forgotten");
    }

    #[test]
    fn replicas_serve_hot_keys_and_invalidate_together() {
        let c: HotKeyCache<u64, u64> = HotKeyCache::new(1000, 4).expect("ok");
        c.insert(1, 10);
        for _ in 0..100_000 {
            assert_eq!(c.get(&1), Some(10));
        }
        assert!(c.detector().is_hot(&1));
        assert!(
            c.entry_count() >= 4,
            "replicas created: {}",
            c.entry_count()
        );
        c.insert(1, 11);
        for _ in 0..100 {
            assert_eq!(c.get(&1), Some(11), "writes reach every replica");
        }
        c.invalidate(&1);
        assert_eq!(c.get(&1), None);
        assert!(HotKeyDetector::<u64>::new(0, 10, 1).is_err());
        assert!(HotKeyCache::<u64, u64>::new(10, 0).is_err());
    }
}
