//! Secondary indexes over sharded data: local (document-partitioned) and
//! global (term-partitioned, asynchronous, with a lag bound).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kuai_core::{Clock, Partitioner, SystemClock};

use crate::error::{ShardError, ShardResult};
use crate::jump::JumpHash;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the maps consistent, so a poisoned lock
    // (a panic elsewhere) is safe to keep using.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Queued index updates beyond which a write applies the backlog itself
/// (memory stays bounded even under a write burst shorter than the lag bound).
pub const MAX_PENDING: usize = 1 << 16;

/// The answer of an index query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexRead {
    /// Matching document ids, ascending.
    pub ids: Vec<u64>,
    /// How many shards/partitions the query touched.
    pub shards_touched: usize,
    /// Age of the oldest index update not yet visible (zero when none).
    pub lag: Duration,
    /// Index updates not yet visible.
    pub pending: usize,
}

#[derive(Debug, Default)]
struct DocShard {
    docs: HashMap<u64, Vec<String>>,
    index: HashMap<String, BTreeSet<u64>>,
}

/// A **local** (document-partitioned) secondary index: each data shard
/// indexes only its own documents, in the same critical section as the
/// write. Writes touch one shard and are visible to the next query
/// (read-after-write), but every query scatters to all shards.
///
/// ```
/// use kuai_shard::LocalIndex;
/// let idx = LocalIndex::new(4)?;
/// idx.insert(7, ["pentakill", "libai"]);
/// let r = idx.query("libai");
/// assert_eq!(r.ids, vec![7]);          // visible at once
/// assert_eq!(r.shards_touched, 4);     // but asked every shard
/// # Ok::<(), kuai_shard::ShardError>(())
/// ```
#[derive(Debug)]
pub struct LocalIndex {
    place: JumpHash,
    shards: Vec<Mutex<DocShard>>,
}

impl LocalIndex {
    /// `shards` data shards (documents placed by jump hash of their id).
    pub fn new(shards: u32) -> ShardResult<Self> {
        let place = JumpHash::new(shards)?;
        Ok(LocalIndex {
            place,
            shards: (0..shards).map(|_| Mutex::default()).collect(),
        })
    }

    /// Inserts or replaces document `id` with `terms`.
    pub fn insert<I, S>(&self, id: u64, terms: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let terms: Vec<String> = terms.into_iter().map(Into::into).collect();
        let mut shard = lock(&self.shards[self.place.partition(&id) as usize]);
        if let Some(old) = shard.docs.remove(&id) {
            for t in old {
                if let Some(set) = shard.index.get_mut(&t) {
                    set.remove(&id);
                }
            }
        }
        for t in &terms {
            shard.index.entry(t.clone()).or_default().insert(id);
        }
        shard.docs.insert(id, terms);
    }

    /// Documents with `term`: asks every shard and unions the answers.
    pub fn query(&self, term: &str) -> IndexRead {
        let mut ids = BTreeSet::new();
        for s in &self.shards {
            if let Some(set) = lock(s).index.get(term) {
                ids.extend(set.iter().copied());
            }
        }
        IndexRead {
            ids: ids.into_iter().collect(),
            shards_touched: self.shards.len(),
            lag: Duration::ZERO,
            pending: 0,
        }
    }
}

#[derive(Debug)]
enum IndexOp {
    Add(String, u64),
    Remove(String, u64),
}

#[derive(Debug)]
struct Pending {
    at: Instant,
    op: IndexOp,
}

/// A **global** (term-partitioned) secondary index: the index for one term
/// lives in one index partition, so a query touches exactly one partition.
/// A write stores the document on its data shard at once and *queues* the
/// index updates, which land on other partitions asynchronously
/// ([`apply_pending`](Self::apply_pending) or a [`spawn_applier`](Self::spawn_applier) thread).
///
/// The lag is visible in every [`IndexRead`] and bounded: a query or write
/// that finds an update older than `max_lag` applies the backlog first, so no
/// read ever misses a write older than `max_lag`; the queue never holds more
/// than [`MAX_PENDING`] updates.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use kuai_core::ManualClock;
/// use kuai_shard::GlobalIndex;
/// let clock = ManualClock::new();
/// let idx = GlobalIndex::new(4, 4, Duration::from_millis(100), Arc::new(clock.clone()))?;
/// idx.insert(7, ["libai"]);
/// let r = idx.query("libai");
/// assert!(r.ids.is_empty());           // not yet: the index update is queued
/// assert_eq!(r.shards_touched, 1);     // but only one partition is asked
/// clock.advance(Duration::from_millis(100));
/// assert_eq!(idx.query("libai").ids, vec![7]); // the lag bound forces it in
/// # Ok::<(), kuai_shard::ShardError>(())
/// ```
#[derive(Debug)]
pub struct GlobalIndex {
    docs_place: JumpHash,
    docs: Vec<Mutex<HashMap<u64, Vec<String>>>>,
    index_place: JumpHash,
    index: Vec<Mutex<HashMap<String, BTreeSet<u64>>>>,
    queue: Mutex<VecDeque<Pending>>,
    max_lag: Duration,
    clock: Arc<dyn Clock>,
}

impl GlobalIndex {
    /// `data_shards` document shards, `index_partitions` term partitions,
    /// staleness bounded by `max_lag` as measured by `clock`.
    pub fn new(
        data_shards: u32,
        index_partitions: u32,
        max_lag: Duration,
        clock: Arc<dyn Clock>,
    ) -> ShardResult<Self> {
        Ok(GlobalIndex {
            docs_place: JumpHash::new(data_shards)?,
            docs: (0..data_shards).map(|_| Mutex::default()).collect(),
            index_place: JumpHash::new(index_partitions)?,
            index: (0..index_partitions).map(|_| Mutex::default()).collect(),
            queue: Mutex::new(VecDeque::new()),
            max_lag,
            clock,
        })
    }

    /// A builder: 8 data shards, 8 index partitions, 100 ms lag bound, system clock.
    pub fn builder() -> GlobalIndexBuilder {
        GlobalIndexBuilder {
            data_shards: 8,
            index_partitions: 8,
            max_lag: Duration::from_millis(100),
            clock: Arc::new(SystemClock),
        }
    }

    /// A global index on the system clock.
    pub fn with_system_clock(
        data_shards: u32,
        index_partitions: u32,
        max_lag: Duration,
    ) -> ShardResult<Self> {
        Self::new(
            data_shards,
            index_partitions,
            max_lag,
            Arc::new(SystemClock),
        )
    }

    /// Inserts or replaces document `id`; the index catches up asynchronously.
    pub fn insert<I, S>(&self, id: u64, terms: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let terms: Vec<String> = terms.into_iter().map(Into::into).collect();
        let now = self.clock.now();
        // Hold the queue lock across the document write so index ops are
        // queued in the same order as the writes they describe.
        let mut q = lock(&self.queue);
        let old =
            lock(&self.docs[self.docs_place.partition(&id) as usize]).insert(id, terms.clone());
        for t in old.into_iter().flatten() {
            q.push_back(Pending {
                at: now,
                op: IndexOp::Remove(t, id),
            });
        }
        for t in terms {
            q.push_back(Pending {
                at: now,
                op: IndexOp::Add(t, id),
            });
        }
        drop(q);
        self.enforce_bound();
    }

    /// The document `id` from its data shard (always current).
    pub fn get(&self, id: u64) -> Option<Vec<String>> {
        lock(&self.docs[self.docs_place.partition(&id) as usize])
            .get(&id)
            .cloned()
    }

    fn oldest_age(&self, q: &VecDeque<Pending>) -> Duration {
        q.front().map_or(Duration::ZERO, |p| {
            self.clock.now().saturating_duration_since(p.at)
        })
    }

    fn enforce_bound(&self) {
        let over = {
            let q = lock(&self.queue);
            q.len() > MAX_PENDING || (!q.is_empty() && self.oldest_age(&q) >= self.max_lag)
        };
        if over {
            self.apply_pending(usize::MAX);
        }
    }

    /// Applies up to `max` queued index updates, oldest first; returns how many.
    pub fn apply_pending(&self, max: usize) -> usize {
        let mut q = lock(&self.queue);
        let mut n = 0;
        while n < max {
            let Some(p) = q.pop_front() else { break };
            let (term, id, add) = match p.op {
                IndexOp::Add(t, id) => (t, id, true),
                IndexOp::Remove(t, id) => (t, id, false),
            };
            let mut part = lock(&self.index[self.index_place.partition(term.as_str()) as usize]);
            if add {
                part.entry(term).or_default().insert(id);
            } else if let Some(set) = part.get_mut(&term) {
                set.remove(&id);
            }
            n += 1;
        }
        n
    }

    /// Documents with `term`, from the one partition that holds it. May miss
    /// writes younger than `max_lag` (see [`IndexRead::lag`]).
    pub fn query(&self, term: &str) -> IndexRead {
        self.enforce_bound();
        let (lag, pending) = {
            let q = lock(&self.queue);
            (self.oldest_age(&q), q.len())
        };
        let part = lock(&self.index[self.index_place.partition(term) as usize]);
        IndexRead {
            ids: part
                .get(term)
                .map(|s| s.iter().copied().collect())
                .unwrap_or_default(),
            shards_touched: 1,
            lag,
            pending,
        }
    }

    /// A thread that applies queued updates every `every` until the returned
    /// handle is dropped.
    pub fn spawn_applier(self: &Arc<Self>, every: Duration) -> ShardResult<Applier> {
        let stop = Arc::new(AtomicBool::new(false));
        let (idx, flag) = (Arc::clone(self), Arc::clone(&stop));
        let handle = std::thread::Builder::new()
            .name("kuai-shard-index".into())
            .spawn(move || {
                while !flag.load(Ordering::Acquire) {
                    idx.apply_pending(usize::MAX);
                    std::thread::park_timeout(every);
                }
            })
            .map_err(|e| ShardError::Backend(format!("spawning the index applier: {e}")))?;
        Ok(Applier {
            stop,
            handle: Some(handle),
        })
    }
}

/// Configures a [`GlobalIndex`].
///
/// ```
/// use std::time::Duration;
/// use kuai_shard::GlobalIndex;
/// let idx = GlobalIndex::builder()
///     .data_shards(16)
///     .index_partitions(4)
///     .max_lag(Duration::from_millis(50))
///     .build()?;
/// idx.insert(1, ["a"]);
/// # Ok::<(), kuai_shard::ShardError>(())
/// ```
#[derive(Debug, Clone)]
pub struct GlobalIndexBuilder {
    data_shards: u32,
    index_partitions: u32,
    max_lag: Duration,
    clock: Arc<dyn Clock>,
}

impl GlobalIndexBuilder {
    /// Number of document shards.
    #[must_use]
    pub fn data_shards(mut self, n: u32) -> Self {
        self.data_shards = n;
        self
    }

    /// Number of term partitions of the index.
    #[must_use]
    pub fn index_partitions(mut self, n: u32) -> Self {
        self.index_partitions = n;
        self
    }

    /// The staleness bound.
    #[must_use]
    pub fn max_lag(mut self, lag: Duration) -> Self {
        self.max_lag = lag;
        self
    }

    /// The clock the lag is measured with (a `ManualClock` in tests).
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Builds the index (zero shards or partitions are errors).
    pub fn build(self) -> ShardResult<GlobalIndex> {
        GlobalIndex::new(
            self.data_shards,
            self.index_partitions,
            self.max_lag,
            self.clock,
        )
    }
}

/// Stops the index applier thread when dropped.
#[derive(Debug)]
pub struct Applier {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Drop for Applier {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(h) = self.handle.take() {
            h.thread().unpark();
            let _ = h.join();
        }
    }
}
