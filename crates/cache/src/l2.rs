//! Two levels: an in-process L1 ([`Cache`]) in front of a Redis L2, with
//! per-level TTLs, invalidation broadcast over Redis pub/sub, a timeout on
//! every L2 call and fail-open behind a circuit breaker.
//!
//! Keys are strings and values bytes (encode with `kuai-codec` or any
//! serializer). Every L2 call is bounded by the L2 timeout (default
//! 100 ms): when Redis is slow, down or answers garbage, reads fall back to
//! L1 and the source, the failure is counted, and after `breaker_threshold`
//! consecutive failures the breaker opens and L2 is skipped for
//! `breaker_cooldown`, after which one call probes it again.
//!
//! Writes go to the source first (if any), then delete the L2 key and
//! publish the key on the invalidation channel; every instance (this one
//! included) drops it from its L1. Fills from the source take an L1 lease,
//! so a fill that raced with an invalidation is not cached in L1; in L2 every
//! write and invalidation bumps a per-key version, and a fill is a Lua script
//! that writes only if the version it read before going to the source is
//! still current (and the key absent), so a slow reader in any process cannot
//! re-insert a value that a writer has just replaced.

use std::fmt;
use std::future::Future;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use redis::aio::MultiplexedConnection;

use crate::cache::{Cache, check_duration};
use crate::error::CacheError;

/// Fill `KEYS[1]` with `ARGV[2]` (TTL `ARGV[3]` ms) only if the version
/// `KEYS[2]` still equals `ARGV[1]` (empty: no version) and the key is absent.
const FILL_IF_VERSION: &str = r"
local v = redis.call('GET', KEYS[2])
if (v == false and ARGV[1] == '') or v == ARGV[1] then
  return redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3], 'NX')
end
return false
";

/// Write `KEYS[1]` and bump its version `KEYS[2]` (kept as long as values).
const WRITE_AND_BUMP: &str = r"
redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
";

/// Delete `KEYS[1]` and bump its version `KEYS[2]`.
const DELETE_AND_BUMP: &str = r"
redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[1])
return 1
";

fn l2_error(what: &str, e: impl std::error::Error + Send + Sync + 'static) -> CacheError {
    CacheError::Backend(kuai_core::Error::backend(format!("redis {what}"), e))
}

/// Configures a [`TwoLevelCache`].
#[derive(Debug, Clone)]
pub struct TwoLevelConfig {
    /// Redis URL (default `redis://127.0.0.1:6379/`).
    pub url: String,
    /// Prefix of every L2 key and of the invalidation channel.
    pub namespace: String,
    /// L1 entries.
    pub l1_capacity: u64,
    /// L1 time-to-live (short: it bounds staleness if a broadcast is lost).
    pub l1_ttl: Duration,
    /// L2 time-to-live.
    pub l2_ttl: Duration,
    /// Timeout of every L2 call.
    pub l2_timeout: Duration,
    /// Consecutive L2 failures that open the breaker.
    pub breaker_threshold: u32,
    /// How long an open breaker skips L2.
    pub breaker_cooldown: Duration,
}

impl Default for TwoLevelConfig {
    fn default() -> Self {
        TwoLevelConfig {
            url: "redis://127.0.0.1:6379/".into(),
            namespace: "kuai".into(),
            l1_capacity: 10_000,
            l1_ttl: Duration::from_secs(30),
            l2_ttl: Duration::from_secs(600),
            l2_timeout: Duration::from_millis(100),
            breaker_threshold: 5,
            breaker_cooldown: Duration::from_secs(1),
        }
    }
}

/// Counters of a [`TwoLevelCache`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TwoLevelStats {
    /// Reads answered by L1.
    pub l1_hits: u64,
    /// Reads answered by L2.
    pub l2_hits: u64,
    /// Reads that went to the source.
    pub source_loads: u64,
    /// L2 calls that failed or timed out.
    pub l2_errors: u64,
    /// L2 calls skipped because the breaker was open.
    pub l2_skipped: u64,
    /// Invalidations received over pub/sub.
    pub invalidations_received: u64,
    /// L2 fills refused because the key's version moved (a stale read).
    pub stale_fills: u64,
}

#[derive(Default)]
struct Counters {
    l1_hits: AtomicU64,
    l2_hits: AtomicU64,
    source_loads: AtomicU64,
    l2_errors: AtomicU64,
    l2_skipped: AtomicU64,
    invalidations: AtomicU64,
    stale_fills: AtomicU64,
}

/// The circuit breaker: closed → open after `threshold` consecutive
/// failures → half-open (one probe) after the cool-down.
#[derive(Debug)]
struct Breaker {
    failures: AtomicU32,
    open_until: Mutex<Option<Instant>>,
    threshold: u32,
    cooldown: Duration,
}

impl Breaker {
    fn allow(&self) -> bool {
        let mut open = self
            .open_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match *open {
            None => true,
            Some(t) if Instant::now() >= t => {
                // Half-open: let this call probe, keep others out meanwhile.
                *open = Some(Instant::now() + self.cooldown);
                true
            }
            Some(_) => false,
        }
    }
    fn success(&self) {
        self.failures.store(0, Ordering::Relaxed);
        *self
            .open_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
    }
    fn failure(&self) {
        let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= self.threshold {
            *self
                .open_until
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now() + self.cooldown);
        }
    }
    fn is_open(&self) -> bool {
        self.open_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }
}

struct Inner {
    l1: Cache<String, Arc<[u8]>>,
    client: redis::Client,
    conn: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    cfg: TwoLevelConfig,
    breaker: Breaker,
    counters: Counters,
    channel: String,
    /// Tags this instance's broadcasts so it skips its own.
    id: u64,
    subscriber: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Per-key load locks: concurrent misses of one key in this process
    /// make one source load (the others wait, then read L1).
    loading: Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// L1 in-process + L2 Redis, fail-open.
#[derive(Clone)]
pub struct TwoLevelCache {
    inner: Arc<Inner>,
}

impl fmt::Debug for TwoLevelCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwoLevelCache")
            .field("cfg", &self.inner.cfg)
            .field("breaker_open", &self.inner.breaker.is_open())
            .finish_non_exhaustive()
    }
}

impl TwoLevelCache {
    /// Creates the cache and starts the invalidation subscriber (on the
    /// current tokio runtime). Fails on a bad configuration; an unreachable
    /// Redis is *not* an error here (the cache runs on L1 + source and keeps
    /// retrying), see [`l2_available`](TwoLevelCache::l2_available).
    pub async fn new(cfg: TwoLevelConfig) -> Result<Self, CacheError> {
        for d in [cfg.l1_ttl, cfg.l2_ttl, cfg.l2_timeout, cfg.breaker_cooldown] {
            check_duration(d)?;
        }
        if cfg.breaker_threshold == 0 {
            return Err(CacheError::InvalidConfig("breaker_threshold must be ≥ 1"));
        }
        let client = redis::Client::open(cfg.url.as_str()).map_err(|e| l2_error("url", e))?;
        let l1 = Cache::builder()
            .max_capacity(cfg.l1_capacity)
            .time_to_live(cfg.l1_ttl)
            .build()?;
        let channel = format!("{}:invalidate", cfg.namespace);
        let inner = Arc::new(Inner {
            l1,
            client,
            conn: tokio::sync::Mutex::new(None),
            breaker: Breaker {
                failures: AtomicU32::new(0),
                open_until: Mutex::new(None),
                threshold: cfg.breaker_threshold,
                cooldown: cfg.breaker_cooldown,
            },
            cfg,
            counters: Counters::default(),
            channel,
            id: crate::hashing::FastHashBuilder::new().hash_one(0u64),
            subscriber: Mutex::new(None),
            loading: Mutex::new(std::collections::HashMap::new()),
        });
        let this = TwoLevelCache { inner };
        let task = tokio::spawn(Self::subscribe_loop(Arc::downgrade(&this.inner)));
        *this
            .inner
            .subscriber
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(task);
        Ok(this)
    }

    fn l2_key(&self, key: &str) -> String {
        format!("{}:{key}", self.inner.cfg.namespace)
    }

    /// Runs one L2 call with the timeout and the breaker.
    async fn l2<T, F, Fut>(&self, what: &str, f: F) -> Result<T, CacheError>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        if !self.inner.breaker.allow() {
            self.inner
                .counters
                .l2_skipped
                .fetch_add(1, Ordering::Relaxed);
            return Err(CacheError::Closed("redis circuit breaker is open"));
        }
        let timeout = self.inner.cfg.l2_timeout;
        let result = tokio::time::timeout(timeout, async {
            let conn = {
                let mut slot = self.inner.conn.lock().await;
                match slot.as_ref() {
                    Some(c) => c.clone(),
                    None => {
                        let c = self
                            .inner
                            .client
                            .get_multiplexed_async_connection()
                            .await
                            .map_err(|e| l2_error("connect", e))?;
                        *slot = Some(c.clone());
                        c
                    }
                }
            };
            f(conn).await.map_err(|e| l2_error(what, e))
        })
        .await;
        let result = match result {
            Ok(r) => r,
            Err(_) => Err(CacheError::LoadTimeout(timeout)),
        };
        match &result {
            Ok(_) => self.inner.breaker.success(),
            Err(_) => {
                self.inner
                    .counters
                    .l2_errors
                    .fetch_add(1, Ordering::Relaxed);
                self.inner.breaker.failure();
                // Drop a possibly broken connection; the next call reconnects.
                *self.inner.conn.lock().await = None;
            }
        }
        result
    }

    /// Reads `key` from L1, then L2; `Ok(None)` on a miss. L2 failures are
    /// counted and read as misses (fail-open).
    pub async fn get(&self, key: &str) -> Option<Arc<[u8]>> {
        if let Some(v) = self.inner.l1.get(key) {
            self.inner.counters.l1_hits.fetch_add(1, Ordering::Relaxed);
            return Some(v);
        }
        let k = self.l2_key(key);
        let got: Result<Option<Vec<u8>>, _> = self
            .l2("GET", |mut c| async move {
                redis::cmd("GET").arg(&k).query_async(&mut c).await
            })
            .await;
        match got {
            Ok(Some(v)) => {
                self.inner.counters.l2_hits.fetch_add(1, Ordering::Relaxed);
                let v: Arc<[u8]> = v.into();
                self.inner.l1.insert(key.to_string(), Arc::clone(&v));
                Some(v)
            }
            _ => None,
        }
    }

    fn version_key(&self, key: &str) -> String {
        format!("{}:ver:{key}", self.inner.cfg.namespace)
    }

    /// Reads `key`, loading it from `source` on a miss of both levels and
    /// filling both: L1 through a lease, L2 through a version check (the key's
    /// version is read before the source, and the fill is refused if a write
    /// or an invalidation bumped it meanwhile — a lease kept in Redis, so it
    /// holds across processes).
    pub async fn get_with<F, Fut>(
        &self,
        key: &str,
        source: F,
    ) -> Result<Option<Arc<[u8]>>, CacheError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = kuai_core::Result<Option<Vec<u8>>>>,
    {
        if let Some(v) = self.get(key).await {
            return Ok(Some(v));
        }
        // Single-flight within this process: the first miss loads, the
        // others wait for it and then find the value in L1.
        let gate = {
            let mut loading = self
                .inner
                .loading
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            Arc::clone(loading.entry(key.to_string()).or_default())
        };
        let result = {
            let _turn = gate.lock().await;
            match self.inner.l1.get(key) {
                Some(v) => {
                    self.inner.counters.l1_hits.fetch_add(1, Ordering::Relaxed);
                    Ok(Some(v))
                }
                None => self.load_and_fill(key, source).await,
            }
        };
        {
            let mut loading = self
                .inner
                .loading
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            // Drop the gate once nobody else holds or waits on it.
            if loading.get(key).is_some_and(|g| Arc::strong_count(g) <= 2) {
                loading.remove(key);
            }
        }
        drop(gate);
        result
    }

    async fn load_and_fill<F, Fut>(
        &self,
        key: &str,
        source: F,
    ) -> Result<Option<Arc<[u8]>>, CacheError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = kuai_core::Result<Option<Vec<u8>>>>,
    {
        let lease = self.inner.l1.lease(key.to_string());
        let vk = self.version_key(key);
        let vk2 = vk.clone();
        let version: Option<String> = self
            .l2("GET version", |mut c| async move {
                redis::cmd("GET").arg(&vk2).query_async(&mut c).await
            })
            .await
            .ok()
            .flatten();
        self.inner
            .counters
            .source_loads
            .fetch_add(1, Ordering::Relaxed);
        let Some(v) = source().await.map_err(CacheError::Backend)? else {
            return Ok(None);
        };
        let v: Arc<[u8]> = v.into();
        let k = self.l2_key(key);
        let ttl = u64::try_from(self.inner.cfg.l2_ttl.as_millis()).unwrap_or(u64::MAX);
        let val = Arc::clone(&v);
        let filled: Result<Option<String>, _> = self
            .l2("versioned fill", |mut c| async move {
                redis::cmd("EVAL")
                    .arg(FILL_IF_VERSION)
                    .arg(2)
                    .arg(&k)
                    .arg(&vk)
                    .arg(version.unwrap_or_default())
                    .arg(&*val)
                    .arg(ttl)
                    .query_async(&mut c)
                    .await
            })
            .await;
        if let Ok(None) = filled {
            // Stale: the key moved in L2 while we read the source. Serve the
            // answer, cache it nowhere.
            self.inner
                .counters
                .stale_fills
                .fetch_add(1, Ordering::Relaxed);
        } else {
            // Filled in L2, or L2 unavailable (fail-open: L1 only).
            let _ = self.inner.l1.fill(lease, Arc::clone(&v), None);
        }
        Ok(Some(v))
    }

    /// Writes `value` to L2 (with the L2 TTL) and L1, and tells the other
    /// instances to drop their L1 copies. Fails (after updating L1) if L2
    /// could not be written.
    pub async fn set(&self, key: &str, value: Vec<u8>) -> Result<(), CacheError> {
        let v: Arc<[u8]> = value.into();
        let k = self.l2_key(key);
        let ttl = u64::try_from(self.inner.cfg.l2_ttl.as_millis()).unwrap_or(u64::MAX);
        let val = Arc::clone(&v);
        let vk = self.version_key(key);
        let r: Result<(), _> = self
            .l2("SET", |mut c| async move {
                redis::cmd("EVAL")
                    .arg(WRITE_AND_BUMP)
                    .arg(2)
                    .arg(&k)
                    .arg(&vk)
                    .arg(&*val)
                    .arg(ttl)
                    .query_async(&mut c)
                    .await
            })
            .await;
        self.broadcast(key).await;
        self.inner.l1.insert(key.to_string(), v);
        r
    }

    /// Deletes `key` from both levels and broadcasts the invalidation (the
    /// write side of cache-aside: call after writing the source).
    pub async fn invalidate(&self, key: &str) -> Result<(), CacheError> {
        self.inner.l1.invalidate(key);
        let k = self.l2_key(key);
        let vk = self.version_key(key);
        let ttl = u64::try_from(self.inner.cfg.l2_ttl.as_millis()).unwrap_or(u64::MAX);
        let r: Result<(), _> = self
            .l2("DEL", |mut c| async move {
                redis::cmd("EVAL")
                    .arg(DELETE_AND_BUMP)
                    .arg(2)
                    .arg(&k)
                    .arg(&vk)
                    .arg(ttl)
                    .query_async(&mut c)
                    .await
            })
            .await;
        self.broadcast(key).await;
        r
    }

    async fn broadcast(&self, key: &str) {
        let channel = self.inner.channel.clone();
        let key = format!("{:016x}|{key}", self.inner.id);
        let _: Result<(), _> = self
            .l2("PUBLISH", |mut c| async move {
                redis::cmd("PUBLISH")
                    .arg(&channel)
                    .arg(&key)
                    .query_async(&mut c)
                    .await
            })
            .await;
    }

    async fn subscribe_loop(inner: std::sync::Weak<Inner>) {
        loop {
            let Some(this) = inner.upgrade() else { return };
            let client = this.client.clone();
            let channel = this.channel.clone();
            let timeout = this.cfg.l2_timeout;
            drop(this);
            let connected = tokio::time::timeout(timeout * 10, async {
                let mut ps = client.get_async_pubsub().await?;
                ps.subscribe(&channel).await?;
                Ok::<_, redis::RedisError>(ps)
            })
            .await;
            if let Ok(Ok(ps)) = connected {
                let mut stream = ps.into_on_message();
                while let Some(msg) = stream.next().await {
                    let Some(this) = inner.upgrade() else { return };
                    if let Ok(payload) = msg.get_payload::<String>() {
                        match payload.split_once('|') {
                            Some((id, _)) if id == format!("{:016x}", this.id) => {}
                            Some((_, key)) => this.inner_invalidate_l1(key),
                            None => this.inner_invalidate_l1(&payload),
                        }
                    }
                }
            }
            // Disconnected or unreachable: retry after a pause.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Whether the breaker lets calls through to L2 now.
    pub fn l2_available(&self) -> bool {
        !self.inner.breaker.is_open()
    }

    /// The counters.
    pub fn stats(&self) -> TwoLevelStats {
        let c = &self.inner.counters;
        TwoLevelStats {
            l1_hits: c.l1_hits.load(Ordering::Relaxed),
            l2_hits: c.l2_hits.load(Ordering::Relaxed),
            source_loads: c.source_loads.load(Ordering::Relaxed),
            l2_errors: c.l2_errors.load(Ordering::Relaxed),
            l2_skipped: c.l2_skipped.load(Ordering::Relaxed),
            invalidations_received: c.invalidations.load(Ordering::Relaxed),
            stale_fills: c.stale_fills.load(Ordering::Relaxed),
        }
    }

    /// The L1 cache.
    pub fn l1(&self) -> &Cache<String, Arc<[u8]>> {
        &self.inner.l1
    }
}

impl Inner {
    fn inner_invalidate_l1(&self, key: &str) {
        self.counters.invalidations.fetch_add(1, Ordering::Relaxed);
        self.l1.invalidate(key);
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(t) = self
            .subscriber
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            t.abort();
        }
    }
}
