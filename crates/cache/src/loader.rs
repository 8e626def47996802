//! Async loading: single-flight `get_with`, load timeouts, refresh-ahead,
//! negative caching, a bloom-filter guard and TTL jitter.
//!
//! Every load runs in its own tokio task, so the waiters of a key share one
//! load even if the caller that started it is cancelled; a load that panics
//! or outlives the load timeout is turned into an error for all of them and
//! the key is free to load again. Loads fill the cache through a [`Lease`]
//! (see [`Cache::lease`]), so a load that raced with a write or an
//! invalidation is handed to its waiters but never cached.

use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use kuai_core::{Clock, ErrorKind};
use tokio::sync::watch;

use crate::bloom::BloomFilter;
use crate::cache::{Cache, check_duration};
use crate::error::CacheError;
use crate::hashing::FastHashBuilder;
use crate::policy::Policy;

#[allow(unused_imports)]
use crate::cache::Lease;

/// What the cache holds per key: the value (or a cached "not found") and
/// when it was loaded.
#[derive(Debug, Clone)]
struct Slot<V> {
    value: Option<V>,
    loaded_at: u64,
}

#[derive(Debug, Clone)]
enum Failure {
    Timeout(Duration),
    Panicked(String),
    Failed(ErrorKind, String),
}

impl From<Failure> for CacheError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Timeout(d) => CacheError::LoadTimeout(d),
            Failure::Panicked(m) => CacheError::LoaderPanicked(m),
            Failure::Failed(kind, message) => CacheError::LoadFailed { kind, message },
        }
    }
}

type Outcome<V> = Option<Result<Option<V>, Failure>>;

struct Inner<K, V> {
    cache: Cache<K, Slot<V>>,
    flights: Mutex<hashbrown::HashMap<K, watch::Receiver<Outcome<V>>, FastHashBuilder>>,
    load_timeout: Duration,
    ttl: Option<Duration>,
    negative_ttl: Option<Duration>,
    refresh_after: Option<u64>,
    jitter: f64,
    bloom: Option<Arc<BloomFilter>>,
    rng: AtomicU64,
    refreshes: AtomicU64,
}

/// A cache that loads its misses: one load per key at a time.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use std::time::Duration;
/// use kuai_cache::LoadingCache;
/// let users: LoadingCache<u64, String> = LoadingCache::builder()
///     .max_capacity(10_000)
///     .time_to_live(Duration::from_secs(60))
///     .ttl_jitter(0.1)
///     .negative_ttl(Duration::from_secs(5))
///     .build()?;
/// let name = users.get_with(7, |id| async move { Ok(Some(format!("user-{id}"))) }).await?;
/// assert_eq!(name.as_deref(), Some("user-7"));
/// # Ok::<(), kuai_cache::CacheError>(())
/// # }).unwrap();
/// ```
pub struct LoadingCache<K, V> {
    inner: Arc<Inner<K, V>>,
}

impl<K, V> Clone for LoadingCache<K, V> {
    fn clone(&self) -> Self {
        LoadingCache {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K, V> fmt::Debug for LoadingCache<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadingCache")
            .field("cache", &self.inner.cache)
            .field("load_timeout", &self.inner.load_timeout)
            .field("ttl", &self.inner.ttl)
            .field("negative_ttl", &self.inner.negative_ttl)
            .finish_non_exhaustive()
    }
}

/// Configures a [`LoadingCache`].
pub struct LoadingCacheBuilder<K, V> {
    max_capacity: u64,
    policy: Policy,
    clock: Option<Arc<dyn Clock>>,
    load_timeout: Duration,
    ttl: Option<Duration>,
    negative_ttl: Option<Duration>,
    refresh_after: Option<Duration>,
    jitter: f64,
    bloom: Option<Arc<BloomFilter>>,
    _marker: std::marker::PhantomData<fn(K, V)>,
}

impl<K, V> fmt::Debug for LoadingCacheBuilder<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadingCacheBuilder")
            .field("max_capacity", &self.max_capacity)
            .field("load_timeout", &self.load_timeout)
            .field("ttl", &self.ttl)
            .field("negative_ttl", &self.negative_ttl)
            .field("refresh_after", &self.refresh_after)
            .field("jitter", &self.jitter)
            .finish_non_exhaustive()
    }
}

impl<K, V> LoadingCacheBuilder<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Bounds the cache to `n` entries (cached "not found" answers count).
    pub fn max_capacity(mut self, n: u64) -> Self {
        self.max_capacity = n;
        self
    }
    /// The eviction policy.
    pub fn policy(mut self, p: Policy) -> Self {
        self.policy = p;
        self
    }
    /// The clock (tests pass a `ManualClock`).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }
    /// How long a load may run before its waiters get
    /// [`CacheError::LoadTimeout`] and the load is aborted (default 3 s).
    pub fn load_timeout(mut self, d: Duration) -> Self {
        self.load_timeout = d;
        self
    }
    /// Time-to-live of loaded values.
    pub fn time_to_live(mut self, d: Duration) -> Self {
        self.ttl = Some(d);
        self
    }
    /// Cache "not found" answers for this long (default: not cached).
    pub fn negative_ttl(mut self, d: Duration) -> Self {
        self.negative_ttl = Some(d);
        self
    }
    /// Refresh-ahead / stale-while-revalidate: a value older than this is
    /// still served, while one background load refreshes it.
    pub fn refresh_after(mut self, d: Duration) -> Self {
        self.refresh_after = Some(d);
        self
    }
    /// Spread TTLs by ±`fraction` (e.g. 0.1 for ±10 %) so keys loaded
    /// together do not expire together (cache avalanche defence).
    pub fn ttl_jitter(mut self, fraction: f64) -> Self {
        self.jitter = fraction;
        self
    }
    /// Keys the filter has certainly never seen are answered "not found"
    /// without a load (cache penetration defence).
    pub fn bloom_filter(mut self, filter: Arc<BloomFilter>) -> Self {
        self.bloom = Some(filter);
        self
    }

    /// Builds it, or says what is wrong with the configuration.
    pub fn build(self) -> Result<LoadingCache<K, V>, CacheError> {
        for d in [
            Some(self.load_timeout),
            self.ttl,
            self.negative_ttl,
            self.refresh_after,
        ]
        .into_iter()
        .flatten()
        {
            check_duration(d)?;
        }
        if !(0.0..1.0).contains(&self.jitter) {
            return Err(CacheError::InvalidConfig("ttl_jitter must be in [0, 1)"));
        }
        let mut b = Cache::builder()
            .max_capacity(self.max_capacity)
            .policy(self.policy);
        if let Some(c) = self.clock {
            b = b.clock(c);
        }
        let cache = b.build()?;
        Ok(LoadingCache {
            inner: Arc::new(Inner {
                cache,
                flights: Mutex::new(hashbrown::HashMap::with_hasher(FastHashBuilder::new())),
                load_timeout: self.load_timeout,
                ttl: self.ttl,
                negative_ttl: self.negative_ttl,
                refresh_after: self
                    .refresh_after
                    .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
                jitter: self.jitter,
                bloom: self.bloom,
                rng: AtomicU64::new(0x9e37_79b9_7f4a_7c15),
                refreshes: AtomicU64::new(0),
            }),
        })
    }
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

impl<K, V> LoadingCache<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// A builder (defaults: 10,000 entries, 3 s load timeout, no TTL).
    pub fn builder() -> LoadingCacheBuilder<K, V> {
        LoadingCacheBuilder {
            max_capacity: 10_000,
            policy: Policy::default(),
            clock: None,
            load_timeout: Duration::from_secs(3),
            ttl: None,
            negative_ttl: None,
            refresh_after: None,
            jitter: 0.0,
            bloom: None,
            _marker: std::marker::PhantomData,
        }
    }

    /// The value cached for `key`, without loading (`Some(None)`: a cached
    /// "not found").
    pub fn get_if_present(&self, key: &K) -> Option<Option<V>> {
        self.inner.cache.get(key).map(|s| s.value)
    }

    /// Writes `value` for `key` (revoking in-flight loads' right to fill).
    pub fn insert(&self, key: K, value: V) {
        let slot = Slot {
            value: Some(value),
            loaded_at: self.inner.cache.now_nanos(),
        };
        match self.jittered(self.inner.ttl) {
            Some(ttl) => {
                let _ = self.inner.cache.insert_with_ttl(key, slot, ttl);
            }
            None => self.inner.cache.insert(key, slot),
        }
    }

    /// Drops `key`; a load in flight for it will not fill the cache.
    pub fn invalidate(&self, key: &K) {
        self.inner.cache.invalidate(key);
    }

    /// The underlying cache's statistics (loads and load time included).
    pub fn stats(&self) -> crate::CacheStats {
        self.inner.cache.stats()
    }

    /// Background refreshes started so far.
    pub fn refreshes(&self) -> u64 {
        self.inner.refreshes.load(Ordering::Relaxed)
    }

    fn jittered(&self, ttl: Option<Duration>) -> Option<Duration> {
        let ttl = ttl?;
        if self.inner.jitter == 0.0 {
            return Some(ttl);
        }
        let mut x = self
            .inner
            .rng
            .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
        x = (x ^ (x >> 31)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x ^= x >> 29;
        let u = (x >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0;
        let t = ttl.mul_f64((1.0 + self.inner.jitter * u).max(0.0));
        Some(t.max(Duration::from_millis(1)))
    }

    /// The value for `key`, loading it with `load` on a miss. Concurrent
    /// callers for the same key share one load and its result or error.
    ///
    /// `load` returns `Ok(None)` for "not found" (cached for the negative
    /// TTL, if set). Errors: [`CacheError::LoadTimeout`],
    /// [`CacheError::LoaderPanicked`], [`CacheError::LoadFailed`] (with the
    /// source error's kind), [`CacheError::Closed`] outside a tokio runtime.
    pub async fn get_with<F, Fut>(&self, key: K, load: F) -> Result<Option<V>, CacheError>
    where
        F: FnOnce(K) -> Fut + Send + 'static,
        Fut: Future<Output = kuai_core::Result<Option<V>>> + Send + 'static,
    {
        if let Some(slot) = self.inner.cache.get(&key) {
            if let Some(after) = self.inner.refresh_after {
                let age = self.inner.cache.now_nanos().saturating_sub(slot.loaded_at);
                if age >= after {
                    if let Ok(started) = self.start_flight(key, load) {
                        if started.1 {
                            self.inner.refreshes.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
            return Ok(slot.value);
        }
        if let Some(b) = &self.inner.bloom {
            if !b.might_contain(&key) {
                return Ok(None);
            }
        }
        let (mut rx, _) = self.start_flight(key, load)?;
        loop {
            if let Some(out) = rx.borrow_and_update().clone() {
                return out.map_err(CacheError::from);
            }
            if rx.changed().await.is_err() {
                return Err(CacheError::Closed("the load task was dropped"));
            }
        }
    }

    /// Joins the key's flight or starts one; `.1` says whether it started.
    fn start_flight<F, Fut>(
        &self,
        key: K,
        load: F,
    ) -> Result<(watch::Receiver<Outcome<V>>, bool), CacheError>
    where
        F: FnOnce(K) -> Fut + Send + 'static,
        Fut: Future<Output = kuai_core::Result<Option<V>>> + Send + 'static,
    {
        let mut flights = self
            .inner
            .flights
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(rx) = flights.get(&key) {
            return Ok((rx.clone(), false));
        }
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| CacheError::Closed("get_with must run inside a tokio runtime"))?;
        let (tx, rx) = watch::channel(None);
        flights.insert(key.clone(), rx.clone());
        drop(flights);
        let lease = self.inner.cache.lease(key.clone());
        let this = self.clone();
        let timeout = self.inner.load_timeout;
        handle.spawn(async move {
            let start = Instant::now();
            let task = tokio::spawn(load(key.clone()));
            let abort = task.abort_handle();
            let out = match tokio::time::timeout(timeout, task).await {
                Err(_) => {
                    abort.abort();
                    Err(Failure::Timeout(timeout))
                }
                Ok(Err(join)) if join.is_panic() => {
                    Err(Failure::Panicked(panic_message(join.into_panic())))
                }
                Ok(Err(_)) => Err(Failure::Failed(
                    ErrorKind::Closed,
                    "load task cancelled".into(),
                )),
                Ok(Ok(Err(e))) => Err(Failure::Failed(e.kind(), e.to_string())),
                Ok(Ok(Ok(v))) => Ok(v),
            };
            this.inner.cache.record_load(start.elapsed(), out.is_ok());
            if let Ok(v) = &out {
                let ttl = match v {
                    Some(_) => this.jittered(this.inner.ttl).map(Some),
                    None => this.inner.negative_ttl.map(|t| this.jittered(Some(t))),
                };
                let slot = Slot {
                    value: v.clone(),
                    loaded_at: this.inner.cache.now_nanos(),
                };
                // Cache values always; "not found" only with a negative TTL.
                match (v, ttl) {
                    (Some(_), ttl) => {
                        let _ = this.inner.cache.fill(lease, slot, ttl.flatten());
                    }
                    (None, Some(ttl)) => {
                        let _ = this.inner.cache.fill(lease, slot, ttl);
                    }
                    (None, None) => {}
                }
            }
            this.inner
                .flights
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&key);
            let _ = tx.send(Some(out));
        });
        Ok((rx, true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kuai_core::ManualClock;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime")
    }

    #[test]
    fn stampede_of_1000_misses_loads_once() {
        rt().block_on(async {
            let c: LoadingCache<u64, u64> = LoadingCache::builder().build().expect("ok");
            let loads = Arc::new(AtomicU64::new(0));
            let gate = Arc::new(tokio::sync::Notify::new());
            let mut tasks = Vec::new();
            for _ in 0..1000 {
                let c = c.clone();
                let loads = Arc::clone(&loads);
                let gate = Arc::clone(&gate);
                tasks.push(tokio::spawn(async move {
                    c.get_with(1, move |_| async move {
                        loads.fetch_add(1, Ordering::SeqCst);
                        gate.notified().await;
                        Ok(Some(42))
                    })
                    .await
                }));
            }
            // Let the tasks pile up on the flight, then release the load.
            // (Late arrivals find the filled cache: still one load.)
            tokio::time::sleep(Duration::from_millis(20)).await;
            gate.notify_one();
            for t in tasks {
                assert_eq!(t.await.expect("join").expect("load"), Some(42));
            }
            assert_eq!(loads.load(Ordering::SeqCst), 1);
            assert_eq!(c.stats().loads, 1);
        });
    }

    #[test]
    fn errors_are_shared_and_do_not_poison_the_key() {
        rt().block_on(async {
            // A generous timeout: printing a panic's backtrace can be slow.
            let c: LoadingCache<u64, u64> = LoadingCache::builder()
                .load_timeout(Duration::from_secs(30))
                .build()
                .expect("ok");
            let short: LoadingCache<u64, u64> = LoadingCache::builder()
                .load_timeout(Duration::from_millis(50))
                .build()
                .expect("ok");
            let e = c
                .get_with(1, |_| async { Err(kuai_core::Error::not_found("nope")) })
                .await;
            assert!(matches!(
                e,
                Err(CacheError::LoadFailed {
                    kind: ErrorKind::NotFound,
                    ..
                })
            ));
            let e = c
                .get_with(1, |_| async {
                    if true {
                        panic!("loader bug");
                    }
                    Ok(Some(1))
                })
                .await;
            assert!(
                matches!(e, Err(CacheError::LoaderPanicked(ref m)) if m.contains("loader bug")),
                "{e:?}"
            );
            let e = short
                .get_with(1, |_| async {
                    std::future::pending::<()>().await;
                    Ok(Some(1))
                })
                .await;
            assert!(matches!(e, Err(CacheError::LoadTimeout(_))), "{e:?}");
            // The key is free again.
            let v = c.get_with(1, |_| async { Ok(Some(5)) }).await.expect("ok");
            assert_eq!(v, Some(5));
            let v = short
                .get_with(1, |_| async { Ok(Some(6)) })
                .await
                .expect("ok");
            assert_eq!(v, Some(6));
            assert_eq!(c.stats().load_failures, 2);
            assert_eq!(short.stats().load_failures, 1);
        });
    }

    #[test]
    fn negative_caching_bloom_and_refresh_ahead() {
        rt().block_on(async {
            let clock = ManualClock::new();
            let bloom = Arc::new(BloomFilter::new(100, 0.01).expect("ok"));
            bloom.insert(&1u64);
            bloom.insert(&2u64);
            let c: LoadingCache<u64, u64> = LoadingCache::builder()
                .clock(Arc::new(clock.clone()))
                .negative_ttl(Duration::from_secs(5))
                .refresh_after(Duration::from_secs(10))
                .bloom_filter(bloom)
                .build()
                .expect("ok");
            let loads = Arc::new(AtomicU64::new(0));
            let l = Arc::clone(&loads);
            let counting = move |v: Option<u64>| {
                let l = Arc::clone(&l);
                move |_k: u64| async move {
                    l.fetch_add(1, Ordering::SeqCst);
                    Ok(v)
                }
            };
            // bloom: key 99 never existed -> no load
            assert_eq!(c.get_with(99, counting(Some(1))).await.expect("ok"), None);
            assert_eq!(loads.load(Ordering::SeqCst), 0);
            // negative caching of key 2
            assert_eq!(c.get_with(2, counting(None)).await.expect("ok"), None);
            assert_eq!(c.get_with(2, counting(Some(9))).await.expect("ok"), None);
            assert_eq!(loads.load(Ordering::SeqCst), 1);
            clock.advance(Duration::from_secs(6));
            assert_eq!(c.get_with(2, counting(Some(9))).await.expect("ok"), Some(9));
            assert_eq!(loads.load(Ordering::SeqCst), 2);
            // refresh-ahead: stale value served while one refresh runs
            assert_eq!(
                c.get_with(1, counting(Some(10))).await.expect("ok"),
                Some(10)
            );
            clock.advance(Duration::from_secs(11));
            assert_eq!(
                c.get_with(1, counting(Some(11))).await.expect("ok"),
                Some(10),
                "stale served"
            );
            for _ in 0..100 {
                if c.get_if_present(&1) == Some(Some(11)) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            assert_eq!(
                c.get_if_present(&1),
                Some(Some(11)),
                "refreshed in the background"
            );
            assert_eq!(c.refreshes(), 1);
        });
    }

    #[test]
    fn invalidation_during_a_load_refuses_the_stale_fill() {
        rt().block_on(async {
            let c: LoadingCache<u64, u64> = LoadingCache::builder().build().expect("ok");
            let gate = Arc::new(tokio::sync::Notify::new());
            let started = Arc::new(tokio::sync::Notify::new());
            let (g, s) = (Arc::clone(&gate), Arc::clone(&started));
            let c2 = c.clone();
            let reader = tokio::spawn(async move {
                c2.get_with(1, move |_| async move {
                    s.notify_one(); // the load has begun
                    g.notified().await;
                    Ok(Some(100)) // the old value, read before the write
                })
                .await
            });
            started.notified().await;
            c.invalidate(&1); // a writer updated the source and invalidated
            gate.notify_one();
            assert_eq!(reader.await.expect("join").expect("ok"), Some(100));
            assert_eq!(c.get_if_present(&1), None, "stale value was not cached");
        });
    }

    #[test]
    fn jitter_spreads_ttls_and_bad_config_is_rejected() {
        let c: LoadingCache<u64, u64> = LoadingCache::builder()
            .time_to_live(Duration::from_secs(100))
            .ttl_jitter(0.1)
            .build()
            .expect("ok");
        let ttls: Vec<Duration> = (0..100).filter_map(|_| c.jittered(c.inner.ttl)).collect();
        assert!(
            ttls.iter()
                .all(|t| *t >= Duration::from_secs(90) && *t <= Duration::from_secs(110))
        );
        assert!(ttls.iter().any(|t| *t != ttls[0]));
        assert!(
            LoadingCache::<u64, u64>::builder()
                .ttl_jitter(1.5)
                .build()
                .is_err()
        );
        assert!(
            LoadingCache::<u64, u64>::builder()
                .max_capacity(0)
                .build()
                .is_err()
        );
        assert!(
            LoadingCache::<u64, u64>::builder()
                .load_timeout(Duration::ZERO)
                .build()
                .is_err()
        );
    }

    #[test]
    fn outside_a_runtime_is_a_typed_error() {
        let c: LoadingCache<u64, u64> = LoadingCache::builder().build().expect("ok");
        let fut = c.get_with(1, |_| async { Ok(Some(1)) });
        let r = futures_lite_block_on(fut);
        assert!(matches!(r, Err(CacheError::Closed(_))));
    }

    fn futures_lite_block_on<F: Future>(fut: F) -> F::Output {
        let mut fut = std::pin::pin!(fut);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        loop {
            if let std::task::Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
                return v;
            }
        }
    }
}
