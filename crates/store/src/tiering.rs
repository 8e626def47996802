//! Hot/cold tiering: recent or frequently read data in a fast in-process
//! tier, the rest in a cheaper cold tier, with migration by age and access
//! frequency and reads that do not care where a key lives.
//!
//! Migration copies a key to the cold tier *first* and removes it from the
//! hot tier *second*, and only if it was not rewritten meanwhile. A
//! migration interrupted between the two steps (a failing cold tier, a
//! crash) therefore leaves the key in both tiers with the same value:
//! nothing is lost, reads return it once (the hot copy shadows the cold
//! one), and the next migration finishes the move — the cold write is an
//! idempotent upsert, so nothing is duplicated either.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kuai_core::{Clock, SystemClock};

use crate::StoreError;

/// The cold tier: a durable, slower key-value store. `put` must be an
/// idempotent upsert (writing the same key twice leaves one copy).
pub trait ColdTier<K, V>: Send + Sync {
    /// Reads a key.
    fn get(&self, key: &K) -> Result<Option<V>, StoreError>;
    /// Writes (upserts) a key.
    fn put(&self, key: &K, value: &V) -> Result<(), StoreError>;
    /// Deletes a key; a missing key is not an error.
    fn delete(&self, key: &K) -> Result<(), StoreError>;
    /// The keys held.
    fn keys(&self) -> Result<Vec<K>, StoreError>;
}

/// A cold tier in memory (tests, or a stand-in for a remote store).
#[derive(Debug)]
pub struct MemoryColdTier<K, V> {
    map: Mutex<HashMap<K, V>>,
}

impl<K, V> Default for MemoryColdTier<K, V> {
    fn default() -> Self {
        MemoryColdTier {
            map: Mutex::new(HashMap::new()),
        }
    }
}

fn poisoned() -> StoreError {
    StoreError::Closed("tier (a lock was poisoned)")
}

impl<K, V> ColdTier<K, V> for MemoryColdTier<K, V>
where
    K: Clone + Eq + Hash + Send + Sync,
    V: Clone + Send + Sync,
{
    fn get(&self, key: &K) -> Result<Option<V>, StoreError> {
        Ok(self.map.lock().map_err(|_| poisoned())?.get(key).cloned())
    }
    fn put(&self, key: &K, value: &V) -> Result<(), StoreError> {
        self.map
            .lock()
            .map_err(|_| poisoned())?
            .insert(key.clone(), value.clone());
        Ok(())
    }
    fn delete(&self, key: &K) -> Result<(), StoreError> {
        self.map.lock().map_err(|_| poisoned())?.remove(key);
        Ok(())
    }
    fn keys(&self) -> Result<Vec<K>, StoreError> {
        Ok(self
            .map
            .lock()
            .map_err(|_| poisoned())?
            .keys()
            .cloned()
            .collect())
    }
}

impl<K, V, C: ColdTier<K, V> + ?Sized> ColdTier<K, V> for Arc<C> {
    fn get(&self, key: &K) -> Result<Option<V>, StoreError> {
        (**self).get(key)
    }
    fn put(&self, key: &K, value: &V) -> Result<(), StoreError> {
        (**self).put(key, value)
    }
    fn delete(&self, key: &K) -> Result<(), StoreError> {
        (**self).delete(key)
    }
    fn keys(&self) -> Result<Vec<K>, StoreError> {
        (**self).keys()
    }
}

/// When a hot key moves to the cold tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigrationPolicy {
    /// A key written more recently than this stays hot.
    pub min_age: Duration,
    /// A key read at least this many times since the last migration pass
    /// stays hot (its count is then halved, so interest decays).
    pub hot_reads: u32,
    /// Whether a cold key that is read is promoted back to the hot tier.
    pub promote_on_read: bool,
}

impl Default for MigrationPolicy {
    fn default() -> Self {
        MigrationPolicy {
            min_age: Duration::from_secs(7 * 24 * 3600),
            hot_reads: 4,
            promote_on_read: false,
        }
    }
}

/// What one migration pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MigrationReport {
    /// Keys examined.
    pub examined: usize,
    /// Keys moved to the cold tier.
    pub moved: usize,
    /// Keys copied but left hot because they were rewritten meanwhile.
    pub skipped_rewritten: usize,
}

#[derive(Debug)]
struct HotEntry<V> {
    value: V,
    written: Instant,
    reads: u32,
    version: u64,
}

/// A test hook: stop a migration right after the n-th cold write (before
/// the hot copy is removed), as a crash would.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrashAfter(pub usize);

/// Hot tier in process, cold tier behind [`ColdTier`].
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use kuai_core::ManualClock;
/// use kuai_store::{MemoryColdTier, MigrationPolicy, TieredStore};
///
/// let clock = ManualClock::new();
/// let store = TieredStore::new(
///     MemoryColdTier::<u32, String>::default(),
///     MigrationPolicy { min_age: Duration::from_secs(60), hot_reads: 2, promote_on_read: false },
///     Arc::new(clock.clone()),
/// );
/// store.put(1, "old".into()).unwrap();
/// clock.advance(Duration::from_secs(61));
/// store.put(2, "new".into()).unwrap();
/// assert_eq!(store.migrate().unwrap().moved, 1); // only the old key moves
/// assert_eq!(store.get(&1).unwrap().as_deref(), Some("old")); // served from cold
/// assert_eq!(store.hot_len(), 1);
/// ```
pub struct TieredStore<K, V, C> {
    hot: Mutex<HashMap<K, HotEntry<V>>>,
    cold: C,
    policy: MigrationPolicy,
    clock: Arc<dyn Clock>,
    next_version: Mutex<u64>,
}

impl<K, V, C> fmt::Debug for TieredStore<K, V, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TieredStore")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl<K, V> TieredStore<K, V, MemoryColdTier<K, V>>
where
    K: Clone + Eq + Hash + Send + Sync,
    V: Clone + Send + Sync,
{
    /// A store with an in-memory cold tier, the default policy and the
    /// system clock.
    pub fn in_memory() -> Self {
        TieredStore::new(
            MemoryColdTier::default(),
            MigrationPolicy::default(),
            Arc::new(SystemClock),
        )
    }
}

impl<K, V, C> TieredStore<K, V, C>
where
    K: Clone + Eq + Hash + Send + Sync,
    V: Clone + Send + Sync,
    C: ColdTier<K, V>,
{
    /// A store over `cold` with `policy`, timed by `clock`.
    pub fn new(cold: C, policy: MigrationPolicy, clock: Arc<dyn Clock>) -> Self {
        TieredStore {
            hot: Mutex::new(HashMap::new()),
            cold,
            policy,
            clock,
            next_version: Mutex::new(0),
        }
    }

    /// The cold tier.
    pub fn cold(&self) -> &C {
        &self.cold
    }

    fn version(&self) -> Result<u64, StoreError> {
        let mut v = self.next_version.lock().map_err(|_| poisoned())?;
        *v += 1;
        Ok(*v)
    }

    /// Writes a key into the hot tier (shadowing any cold copy).
    pub fn put(&self, key: K, value: V) -> Result<(), StoreError> {
        let version = self.version()?;
        let written = self.clock.now();
        self.hot.lock().map_err(|_| poisoned())?.insert(
            key,
            HotEntry {
                value,
                written,
                reads: 0,
                version,
            },
        );
        Ok(())
    }

    /// Reads a key from whichever tier holds it.
    pub fn get(&self, key: &K) -> Result<Option<V>, StoreError> {
        {
            let mut hot = self.hot.lock().map_err(|_| poisoned())?;
            if let Some(e) = hot.get_mut(key) {
                e.reads = e.reads.saturating_add(1);
                return Ok(Some(e.value.clone()));
            }
        }
        let found = self.cold.get(key)?;
        if let (Some(v), true) = (&found, self.policy.promote_on_read) {
            // Hot first, cold second: a failure in between leaves both
            // copies, equal, never none.
            let version = self.version()?;
            let now = self.clock.now();
            let mut hot = self.hot.lock().map_err(|_| poisoned())?;
            if !hot.contains_key(key) {
                hot.insert(
                    key.clone(),
                    HotEntry {
                        value: v.clone(),
                        written: now,
                        reads: 1,
                        version,
                    },
                );
                drop(hot);
                self.cold.delete(key)?;
            }
        }
        Ok(found)
    }

    /// Deletes a key from both tiers.
    pub fn delete(&self, key: &K) -> Result<(), StoreError> {
        self.hot.lock().map_err(|_| poisoned())?.remove(key);
        self.cold.delete(key)
    }

    /// Keys in the hot tier.
    pub fn hot_len(&self) -> usize {
        self.hot.lock().map(|h| h.len()).unwrap_or(0)
    }

    /// Every key, once, whichever tier(s) hold it.
    pub fn keys(&self) -> Result<Vec<K>, StoreError> {
        let mut all: Vec<K> = self
            .hot
            .lock()
            .map_err(|_| poisoned())?
            .keys()
            .cloned()
            .collect();
        let hot: std::collections::HashSet<K> = all.iter().cloned().collect();
        all.extend(self.cold.keys()?.into_iter().filter(|k| !hot.contains(k)));
        Ok(all)
    }

    /// Moves keys that are old enough and not read often enough to the cold
    /// tier. On a cold-tier error the pass stops and returns it; keys
    /// already moved stay moved, the rest stay hot.
    pub fn migrate(&self) -> Result<MigrationReport, StoreError> {
        self.migrate_inner(None)
    }

    /// [`migrate`](Self::migrate) that stops as a crash would after
    /// `crash.0` cold writes, before removing the last key from the hot
    /// tier (for testing recovery).
    pub fn migrate_crashing(&self, crash: CrashAfter) -> Result<MigrationReport, StoreError> {
        self.migrate_inner(Some(crash.0))
    }

    fn migrate_inner(&self, crash_after: Option<usize>) -> Result<MigrationReport, StoreError> {
        let now = self.clock.now();
        let mut report = MigrationReport::default();
        let candidates: Vec<(K, V, u64)> = {
            let mut hot = self.hot.lock().map_err(|_| poisoned())?;
            report.examined = hot.len();
            let mut out = Vec::new();
            for (k, e) in hot.iter_mut() {
                let old = now.saturating_duration_since(e.written) >= self.policy.min_age;
                let cold = e.reads < self.policy.hot_reads;
                if old && cold {
                    out.push((k.clone(), e.value.clone(), e.version));
                }
                e.reads /= 2;
            }
            out
        };
        for (n, (key, value, version)) in candidates.into_iter().enumerate() {
            self.cold.put(&key, &value)?;
            if crash_after == Some(n + 1) {
                return Err(StoreError::Closed("migration (simulated crash)"));
            }
            let mut hot = self.hot.lock().map_err(|_| poisoned())?;
            match hot.get(&key) {
                Some(e) if e.version == version => {
                    hot.remove(&key);
                    report.moved += 1;
                }
                _ => report.skipped_rewritten += 1,
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kuai_core::ManualClock;

    #[test]
    fn frequently_read_keys_stay_hot_until_interest_decays() {
        let clock = ManualClock::new();
        let s = TieredStore::new(
            MemoryColdTier::<u32, u32>::default(),
            MigrationPolicy {
                min_age: Duration::from_secs(1),
                hot_reads: 2,
                promote_on_read: true,
            },
            Arc::new(clock.clone()),
        );
        for k in 0..4 {
            s.put(k, k * 10).unwrap_or_else(|e| panic!("{e}"));
        }
        clock.advance(Duration::from_secs(2));
        for _ in 0..4 {
            let _ = s.get(&0);
        }
        assert_eq!(s.migrate().map(|r| r.moved).ok(), Some(3));
        assert_eq!(s.hot_len(), 1);
        // 4 reads halved to 2, then to 1: the second pass keeps it, the third moves it.
        assert_eq!(s.migrate().map(|r| r.moved).ok(), Some(0));
        assert_eq!(s.migrate().map(|r| r.moved).ok(), Some(1));
        // Promotion on read brings a cold key back.
        assert_eq!(s.get(&2).ok().flatten(), Some(20));
        assert_eq!(s.hot_len(), 1);
        assert_eq!(s.cold().get(&2).ok().flatten(), None);
    }
}

impl<K, V, C> kuai_core::KvStore<K, V> for TieredStore<K, V, C>
where
    K: Clone + Eq + Hash + Send + Sync,
    V: Clone + Send + Sync,
    C: ColdTier<K, V>,
{
    /// Reads through both tiers (a cache's loader can sit on a tiered store).
    async fn get(&self, key: &K) -> kuai_core::Result<Option<V>> {
        TieredStore::get(self, key).map_err(Into::into)
    }
    async fn put(&self, key: K, value: V) -> kuai_core::Result<()> {
        TieredStore::put(self, key, value).map_err(Into::into)
    }
    async fn delete(&self, key: &K) -> kuai_core::Result<()> {
        TieredStore::delete(self, key).map_err(Into::into)
    }
}

#[cfg(test)]
mod kv_tests {
    use super::*;
    use kuai_core::KvStore;

    #[tokio::test]
    async fn a_tiered_store_is_a_kv_store() {
        let s: TieredStore<u32, u32, _> = TieredStore::in_memory();
        assert!(KvStore::put(&s, 1, 10).await.is_ok());
        assert_eq!(KvStore::get(&s, &1).await.ok().flatten(), Some(10));
        assert!(KvStore::delete(&s, &1).await.is_ok());
        assert_eq!(KvStore::get(&s, &1).await.ok().flatten(), None);
    }
}
