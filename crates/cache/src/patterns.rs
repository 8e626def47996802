//! The seed's caching patterns over a [`KvStore`] source of record:
//! cache-aside, read-through, write-through and write-behind.
//!
//! * [`CacheAside`]: reads load misses (single-flight, through a lease);
//!   writes update the source, then invalidate — never "set after write",
//!   which is how two writers leave the older value cached.
//! * [`ReadThrough`]: the cache is the only entry point for reads.
//! * [`WriteThrough`]: writes go to the source, then to the cache; a failed
//!   source write invalidates the key and returns the error.
//! * [`WriteBehind`]: writes go to the cache and a bounded buffer; a
//!   background task flushes batches, coalescing repeated writes to a key,
//!   retrying failures with backoff, and [`shutdown`](WriteBehind::shutdown)
//!   flushes what is left.

use std::collections::VecDeque;
use std::fmt;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use kuai_core::{Decoder, Encoder, KvStore};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::error::CacheError;
use crate::hashing::FastHashBuilder;
use crate::journal::{FileJournal, Journal, JournalConfig, JournalRecovery};
use crate::loader::LoadingCache;

fn backend(e: kuai_core::Error) -> CacheError {
    CacheError::Backend(e)
}

/// Cache-aside and read-through share the read: hit, or one load per key.
async fn read<K, V, S>(
    cache: &LoadingCache<K, V>,
    source: &Arc<S>,
    key: K,
) -> Result<Option<V>, CacheError>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: KvStore<K, V> + 'static,
{
    let s = Arc::clone(source);
    cache
        .get_with(key, move |k| async move { s.get(&k).await })
        .await
}

macro_rules! pattern_struct {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        pub struct $name<K, V, S> {
            cache: LoadingCache<K, V>,
            source: Arc<S>,
        }

        impl<K, V, S> fmt::Debug for $name<K, V, S> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name)).field("cache", &self.cache).finish_non_exhaustive()
            }
        }

        impl<K, V, S> $name<K, V, S>
        where
            K: Hash + Eq + Clone + Send + Sync + 'static,
            V: Clone + Send + Sync + 'static,
            S: KvStore<K, V> + 'static,
        {
            /// Puts `cache` in front of `source`.
            pub fn new(cache: LoadingCache<K, V>, source: Arc<S>) -> Self {
                $name { cache, source }
            }

            /// Reads `key`: from the cache, or loaded once from the source.
            pub async fn get(&self, key: K) -> Result<Option<V>, CacheError> {
                read(&self.cache, &self.source, key).await
            }

            /// The cache.
            pub fn cache(&self) -> &LoadingCache<K, V> {
                &self.cache
            }
        }
    };
}

pattern_struct!(
    /// Cache-aside: the application reads through the cache and writes the
    /// source, then invalidates.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// # use std::sync::Arc;
    /// # use kuai_cache::{CacheAside, LoadingCache};
    /// # #[derive(Default)] struct Db(std::sync::Mutex<std::collections::HashMap<u64, u64>>);
    /// # impl kuai_core::KvStore<u64, u64> for Db {
    /// #   async fn get(&self, k: &u64) -> kuai_core::Result<Option<u64>> { Ok(self.0.lock().unwrap().get(k).copied()) }
    /// #   async fn put(&self, k: u64, v: u64) -> kuai_core::Result<()> { self.0.lock().unwrap().insert(k, v); Ok(()) }
    /// #   async fn delete(&self, k: &u64) -> kuai_core::Result<()> { self.0.lock().unwrap().remove(k); Ok(()) }
    /// # }
    /// let aside = CacheAside::new(LoadingCache::builder().build()?, Arc::new(Db::default()));
    /// aside.put(1, 10).await?;
    /// assert_eq!(aside.get(1).await?, Some(10));
    /// aside.put(1, 11).await?;
    /// assert_eq!(aside.get(1).await?, Some(11));
    /// # Ok::<(), kuai_cache::CacheError>(())
    /// # }).unwrap();
    /// ```
    CacheAside
);

impl<K, V, S> CacheAside<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: KvStore<K, V> + 'static,
{
    /// Writes the source, then invalidates the key (a load in flight for it
    /// will not fill the cache with what it read before the write).
    pub async fn put(&self, key: K, value: V) -> Result<(), CacheError> {
        let r = self.source.put(key.clone(), value).await.map_err(backend);
        // Invalidate even if the write failed: it may have been applied.
        self.cache.invalidate(&key);
        r
    }

    /// Deletes from the source, then invalidates.
    pub async fn delete(&self, key: &K) -> Result<(), CacheError> {
        let r = self.source.delete(key).await.map_err(backend);
        self.cache.invalidate(key);
        r
    }
}

pattern_struct!(
    /// Read-through: reads only through the cache, which loads misses.
    ReadThrough
);

pattern_struct!(
    /// Write-through: writes go to the source, then the cache.
    WriteThrough
);

impl<K, V, S> WriteThrough<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: KvStore<K, V> + 'static,
{
    /// Writes the source, then caches the value; if the source write fails
    /// the key is invalidated and the error returned.
    pub async fn put(&self, key: K, value: V) -> Result<(), CacheError> {
        match self.source.put(key.clone(), value.clone()).await {
            Ok(()) => {
                self.cache.insert(key, value);
                Ok(())
            }
            Err(e) => {
                self.cache.invalidate(&key);
                Err(backend(e))
            }
        }
    }
}

/// Tuning of a [`WriteBehind`].
#[derive(Debug, Clone)]
pub struct WriteBehindConfig {
    /// Most distinct keys waiting to be flushed; beyond it writes get
    /// [`CacheError::WriteBehindFull`] (back-pressure instead of unbounded memory).
    pub capacity: usize,
    /// Keys flushed per batch.
    pub batch: usize,
    /// Flush at least this often.
    pub interval: Duration,
    /// Retries of a failed source write within one flush.
    pub retries: u32,
    /// First retry delay (doubles each retry).
    pub backoff: Duration,
}

impl Default for WriteBehindConfig {
    fn default() -> Self {
        WriteBehindConfig {
            capacity: 10_000,
            batch: 256,
            interval: Duration::from_millis(100),
            retries: 3,
            backoff: Duration::from_millis(10),
        }
    }
}

struct Buffer<K, V> {
    pending: hashbrown::HashMap<K, V, FastHashBuilder>,
    order: VecDeque<K>,
    /// Appended under this lock, so the journal's order is the writes'.
    journal: Option<Box<dyn Journal<K, V>>>,
}

struct WbInner<K, V, S> {
    cache: LoadingCache<K, V>,
    source: Arc<S>,
    buf: Mutex<Buffer<K, V>>,
    notify: Notify,
    closed: AtomicBool,
    cfg: WriteBehindConfig,
    flushed: AtomicU64,
    coalesced: AtomicU64,
    failures: AtomicU64,
    last_error: Mutex<Option<String>>,
}

/// Write-behind: writes land in the cache and a bounded buffer that a
/// background task flushes to the source.
///
/// Guarantees: repeated writes to a key before a flush are coalesced (only
/// the last value is written); a value is never overwritten in the source by
/// an older one; failed writes are retried, counted, exposed through
/// [`last_error`](WriteBehind::last_error) and kept in the buffer;
/// [`shutdown`](WriteBehind::shutdown) flushes everything and reports what
/// could not be written.
pub struct WriteBehind<K, V, S> {
    inner: Arc<WbInner<K, V, S>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl<K, V, S> fmt::Debug for WriteBehind<K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteBehind")
            .field("cfg", &self.inner.cfg)
            .field("flushed", &self.inner.flushed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl<K, V, S> WriteBehind<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: KvStore<K, V> + 'static,
{
    /// Starts the flusher on the current tokio runtime. Writes waiting in
    /// the buffer live in memory only: a crash loses them (a graceful
    /// [`shutdown`](WriteBehind::shutdown) does not); use
    /// [`with_journal`](WriteBehind::with_journal) to keep them on disk.
    pub fn new(
        cache: LoadingCache<K, V>,
        source: Arc<S>,
        cfg: WriteBehindConfig,
    ) -> Result<Self, CacheError> {
        Self::start(cache, source, cfg, None, Vec::new())
    }

    /// Like [`new`](WriteBehind::new), but every acknowledged write is
    /// journaled to disk (appended and synced before [`put`](WriteBehind::put)
    /// returns) until it reaches the source, so a crash loses nothing that
    /// was acknowledged. Writes found in an existing journal are put back in
    /// the cache and the buffer and flushed again (at least once); a torn
    /// tail (a write cut short by the crash, never acknowledged) is dropped
    /// and counted in the returned [`JournalRecovery`]. See the `journal`
    /// module docs for the format.
    pub fn with_journal<C>(
        cache: LoadingCache<K, V>,
        source: Arc<S>,
        cfg: WriteBehindConfig,
        journal: JournalConfig<C>,
    ) -> Result<(Self, JournalRecovery), CacheError>
    where
        C: Encoder<K> + Encoder<V> + Decoder<K> + Decoder<V> + Send + 'static,
    {
        let (journal, writes, recovery) = FileJournal::open::<K, V>(journal)?;
        let wb = Self::start(cache, source, cfg, Some(Box::new(journal)), writes)?;
        Ok((wb, recovery))
    }

    fn start(
        cache: LoadingCache<K, V>,
        source: Arc<S>,
        cfg: WriteBehindConfig,
        journal: Option<Box<dyn Journal<K, V>>>,
        recovered: Vec<(K, V)>,
    ) -> Result<Self, CacheError> {
        if cfg.capacity == 0 || cfg.batch == 0 || cfg.interval.is_zero() {
            return Err(CacheError::InvalidConfig(
                "write-behind needs capacity, batch and interval > 0",
            ));
        }
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| CacheError::Closed("write-behind must start inside a tokio runtime"))?;
        let mut buf = Buffer {
            pending: hashbrown::HashMap::with_hasher(FastHashBuilder::new()),
            order: VecDeque::new(),
            journal,
        };
        let recovering = !recovered.is_empty();
        for (k, v) in recovered {
            cache.insert(k.clone(), v.clone());
            if buf.pending.insert(k.clone(), v).is_none() {
                buf.order.push_back(k);
            }
        }
        let inner = Arc::new(WbInner {
            cache,
            source,
            buf: Mutex::new(buf),
            notify: Notify::new(),
            closed: AtomicBool::new(false),
            cfg,
            flushed: AtomicU64::new(0),
            coalesced: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            last_error: Mutex::new(None),
        });
        if recovering {
            inner.notify.notify_one();
        }
        let task = handle.spawn(Self::run(Arc::clone(&inner)));
        Ok(WriteBehind {
            inner,
            task: Mutex::new(Some(task)),
        })
    }

    /// Reads `key`: the cache (which holds unflushed writes), else the source.
    pub async fn get(&self, key: K) -> Result<Option<V>, CacheError> {
        read(&self.inner.cache, &self.inner.source, key).await
    }

    /// Writes `key`: cached now, flushed to the source later.
    pub fn put(&self, key: K, value: V) -> Result<(), CacheError> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(CacheError::Closed("write-behind is shut down"));
        }
        let len = {
            let mut buf = self
                .inner
                .buf
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let known = buf.pending.contains_key(&key);
            if !known && buf.pending.len() >= self.inner.cfg.capacity {
                return Err(CacheError::WriteBehindFull(buf.pending.len()));
            }
            // On disk before it is acknowledged (and before it is buffered:
            // a write the journal refused is not taken at all).
            if let Some(j) = buf.journal.as_mut() {
                j.append(&key, &value)?;
            }
            if let Some(v) = buf.pending.get_mut(&key) {
                *v = value.clone();
                self.inner.coalesced.fetch_add(1, Ordering::Relaxed);
            } else {
                buf.pending.insert(key.clone(), value.clone());
                buf.order.push_back(key.clone());
            }
            buf.pending.len()
        };
        self.inner.cache.insert(key, value);
        if len >= self.inner.cfg.batch {
            self.inner.notify.notify_one();
        }
        Ok(())
    }

    /// Writes waiting to be flushed.
    pub fn pending(&self) -> usize {
        self.inner
            .buf
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pending
            .len()
    }

    /// Writes flushed to the source so far.
    pub fn flushed(&self) -> u64 {
        self.inner.flushed.load(Ordering::Relaxed)
    }

    /// Writes absorbed by a later write to the same key before a flush.
    pub fn coalesced(&self) -> u64 {
        self.inner.coalesced.load(Ordering::Relaxed)
    }

    /// Source writes that failed after all retries (they stay buffered).
    pub fn failures(&self) -> u64 {
        self.inner.failures.load(Ordering::Relaxed)
    }

    /// The last source error, if any.
    pub fn last_error(&self) -> Option<String> {
        self.inner
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Stops accepting writes, flushes everything, and stops the flusher.
    /// Fails if some writes could not be flushed (they are reported, and
    /// still readable from the cache).
    pub async fn shutdown(&self) -> Result<(), CacheError> {
        self.inner.closed.store(true, Ordering::Release);
        self.inner.notify.notify_one();
        let task = self
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(t) = task {
            let _ = t.await;
        }
        let left = self.pending();
        if left == 0 {
            Ok(())
        } else {
            Err(CacheError::Backend(kuai_core::Error::new(
                kuai_core::ErrorKind::Backend,
                format!(
                    "{left} writes not flushed at shutdown; last error: {}",
                    self.last_error().unwrap_or_default()
                ),
            )))
        }
    }

    async fn run(inner: Arc<WbInner<K, V, S>>) {
        loop {
            if !inner.closed.load(Ordering::Acquire) {
                tokio::select! {
                    _ = tokio::time::sleep(inner.cfg.interval) => {}
                    _ = inner.notify.notified() => {}
                }
            }
            let progressed = Self::flush_once(&inner).await;
            if inner.closed.load(Ordering::Acquire) {
                let empty = inner
                    .buf
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .pending
                    .is_empty();
                if empty || !progressed {
                    return;
                }
            }
        }
    }

    /// Flushes one batch; returns whether any write succeeded.
    async fn flush_once(inner: &WbInner<K, V, S>) -> bool {
        let batch: Vec<(K, V)> = {
            let mut buf = inner.buf.lock().unwrap_or_else(PoisonError::into_inner);
            let mut out = Vec::new();
            while out.len() < inner.cfg.batch {
                let Some(k) = buf.order.pop_front() else {
                    break;
                };
                if let Some(v) = buf.pending.remove(&k) {
                    out.push((k, v));
                }
            }
            out
        };
        let mut progressed = batch.is_empty();
        let flushed_some = !batch.is_empty();
        for (k, v) in batch {
            let mut attempt = 0;
            loop {
                match inner.source.put(k.clone(), v.clone()).await {
                    Ok(()) => {
                        inner.flushed.fetch_add(1, Ordering::Relaxed);
                        progressed = true;
                        break;
                    }
                    Err(e) if attempt < inner.cfg.retries => {
                        attempt += 1;
                        *inner
                            .last_error
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner) = Some(e.to_string());
                        let d = inner.cfg.backoff.saturating_mul(1 << attempt.min(16));
                        tokio::time::sleep(d).await;
                    }
                    Err(e) => {
                        inner.failures.fetch_add(1, Ordering::Relaxed);
                        *inner
                            .last_error
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner) = Some(e.to_string());
                        // Keep it unless a newer write superseded it.
                        let mut buf = inner.buf.lock().unwrap_or_else(PoisonError::into_inner);
                        if !buf.pending.contains_key(&k) {
                            buf.pending.insert(k.clone(), v);
                            buf.order.push_front(k);
                        }
                        break;
                    }
                }
            }
        }
        if flushed_some {
            // The journal keeps only what still waits. Should the rewrite
            // fail, the old journal (a superset) stays: replay is then
            // at-least-once for the writes flushed since.
            let mut buf = inner.buf.lock().unwrap_or_else(PoisonError::into_inner);
            let Buffer {
                pending, journal, ..
            } = &mut *buf;
            if let Some(j) = journal.as_mut() {
                if let Err(e) = j.rewrite(&mut pending.iter()) {
                    *inner
                        .last_error
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) = Some(e.to_string());
                }
            }
        }
        progressed
    }
}

impl<K, V, S> Drop for WriteBehind<K, V, S> {
    fn drop(&mut self) {
        // Without an explicit shutdown the flusher keeps running until the
        // runtime stops; tell it to drain and exit.
        self.inner.closed.store(true, Ordering::Release);
        self.inner.notify.notify_one();
    }
}
