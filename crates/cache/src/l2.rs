//! Two levels: an in-process L1 ([`Cache`]) in front of a Redis L2 made of
//! one or several Redis nodes, with per-level TTLs, invalidation broadcast
//! over Redis pub/sub, a timeout on every L2 call, fail-open behind a
//! circuit breaker per node, and copies of hot keys on distinct nodes.
//!
//! Keys are strings and values bytes (encode with `kuai-codec` or any
//! serializer). Every L2 call is bounded by the L2 timeout (default
//! 100 ms): when a Redis node is slow, down or answers garbage, reads of the
//! keys it holds fall back to L1 and the source, the failure is counted, and
//! after `breaker_threshold` consecutive failures that node's breaker opens
//! and the node is skipped for `breaker_cooldown`, after which one call
//! probes it again. The other nodes are not affected.
//!
//! Writes go to the source first (if any), then delete the L2 key and
//! publish the key on the invalidation channel; every instance (this one
//! included) drops it from its L1. Fills from the source take an L1 lease,
//! so a fill that raced with an invalidation is not cached in L1; in L2 every
//! write and invalidation bumps a per-key version, and a fill is a Lua script
//! that writes only if the version it read before going to the source is
//! still current (and the key absent), so a slow reader in any process cannot
//! re-insert a value that a writer has just replaced.
//!
//! See [`TwoLevelCache`] for placement, hot-key copies and their guarantee.

use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::future::join_all;
use kuai_core::Partitioner;
use kuai_shard::Rendezvous;
use redis::aio::MultiplexedConnection;

use crate::cache::{Cache, check_duration};
use crate::error::CacheError;
use crate::hot_keys::HotKeyDetector;

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

/// Most copies of one hot key.
const MAX_COPIES: usize = 16;

fn l2_error(what: &str, e: impl std::error::Error + Send + Sync + 'static) -> CacheError {
    CacheError::Backend(kuai_core::Error::backend(format!("redis {what}"), e))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Configures a [`TwoLevelCache`].
#[derive(Debug, Clone)]
pub struct TwoLevelConfig {
    /// Redis URL of a single-node L2 (default `redis://127.0.0.1:6379/`);
    /// ignored when [`nodes`](TwoLevelConfig::nodes) is not empty.
    pub url: String,
    /// The URLs of a multi-node L2 (each key lives on the node that
    /// rendezvous hashing over these URLs picks). Empty (the default): the
    /// single node [`url`](TwoLevelConfig::url). Every instance sharing a
    /// namespace should use the same list.
    pub nodes: Vec<String>,
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
    /// Consecutive failures of one node that open its breaker.
    pub breaker_threshold: u32,
    /// How long an open breaker skips its node.
    pub breaker_cooldown: Duration,
    /// Copies of a hot key's L2 value, on that many distinct nodes (default
    /// 3; capped at the node count; 1 turns copies off). At most 16.
    pub hot_copies: usize,
    /// Time-to-live of a hot key's extra copies (default 10 s): it bounds how
    /// long a copy that a write could not reach (its node was unreachable)
    /// can serve the old value.
    pub hot_copy_ttl: Duration,
    /// The hot-key detector's sliding window, in L2 reads (default 10,000).
    pub hot_window: u64,
    /// L2 reads of one key within the window that make it hot (default 100).
    pub hot_threshold: u64,
}

impl Default for TwoLevelConfig {
    fn default() -> Self {
        TwoLevelConfig {
            url: "redis://127.0.0.1:6379/".into(),
            nodes: Vec::new(),
            namespace: "kuai".into(),
            l1_capacity: 10_000,
            l1_ttl: Duration::from_secs(30),
            l2_ttl: Duration::from_secs(600),
            l2_timeout: Duration::from_millis(100),
            breaker_threshold: 5,
            breaker_cooldown: Duration::from_secs(1),
            hot_copies: 3,
            hot_copy_ttl: Duration::from_secs(10),
            hot_window: 10_000,
            hot_threshold: 100,
        }
    }
}

impl TwoLevelConfig {
    /// The default configuration over the L2 nodes `urls`.
    pub fn with_nodes<I, S>(urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        TwoLevelConfig {
            nodes: urls.into_iter().map(Into::into).collect(),
            ..TwoLevelConfig::default()
        }
    }

    fn node_urls(&self) -> Vec<String> {
        if self.nodes.is_empty() {
            vec![self.url.clone()]
        } else {
            self.nodes.clone()
        }
    }
}

/// Counters of a [`TwoLevelCache`] (all nodes together).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TwoLevelStats {
    /// Reads answered by L1.
    pub l1_hits: u64,
    /// Reads answered by L2 (a key's home node or one of its copies).
    pub l2_hits: u64,
    /// Reads that went to the source.
    pub source_loads: u64,
    /// L2 calls that failed or timed out.
    pub l2_errors: u64,
    /// L2 calls skipped because their node's breaker was open.
    pub l2_skipped: u64,
    /// Invalidations received over pub/sub (one per node that delivered it).
    pub invalidations_received: u64,
    /// L2 fills refused because the key's (or a hot copy's) version moved
    /// while the value was read: the value is served, not cached.
    pub stale_fills: u64,
    /// Reads of a hot key answered by one of its extra copies.
    pub copy_hits: u64,
    /// Extra copies of hot keys written (version-checked, from the home node).
    pub copy_fills: u64,
}

/// Counters of one L2 node of a [`TwoLevelCache`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct L2NodeStats {
    /// The node's URL.
    pub url: String,
    /// Calls sent to the node (reads, writes, version reads, publishes).
    pub requests: u64,
    /// Reads the node answered with a value.
    pub hits: u64,
    /// Calls that failed or timed out.
    pub errors: u64,
    /// Calls skipped because the node's breaker was open.
    pub skipped: u64,
    /// Whether the node's breaker is open now.
    pub breaker_open: bool,
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
    copy_hits: AtomicU64,
    copy_fills: AtomicU64,
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

/// One Redis node of the L2: its connection, breaker and counters.
struct L2Node {
    url: String,
    client: redis::Client,
    conn: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    breaker: Breaker,
    requests: AtomicU64,
    hits: AtomicU64,
    errors: AtomicU64,
    skipped: AtomicU64,
}

struct Inner {
    l1: Cache<String, Arc<[u8]>>,
    nodes: Vec<L2Node>,
    /// Rendezvous over the node URLs: a key's home and its copies' nodes.
    ring: Rendezvous,
    /// Copies of a hot key (1..=node count).
    copies: usize,
    cfg: TwoLevelConfig,
    counters: Counters,
    channel: String,
    /// Tags this instance's broadcasts so it skips its own.
    id: u64,
    subscribers: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Per-key load locks: concurrent misses of one key in this process
    /// make one source load (the others wait, then read L1).
    loading: Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Counts the reads that reach L2 (L1 misses).
    detector: HotKeyDetector<String>,
    /// Keys marked hot with [`TwoLevelCache::mark_hot`].
    marked_hot: Mutex<HashSet<String>>,
    /// Round-robin over a hot key's copies.
    next_copy: AtomicU64,
}

/// L1 in-process + L2 over one or several Redis nodes, fail-open.
///
/// **Placement.** Each key has a *home* node, chosen by rendezvous
/// (highest-random-weight) hashing of the key over the node URLs
/// ([`kuai_shard::Rendezvous`]): adding or removing one of `n` nodes moves
/// only about `1/n` of the keys (those the new node wins, or those the
/// removed node held). Every node has its own connection, circuit breaker
/// and counters ([`node_stats`](TwoLevelCache::node_stats)): while one node
/// is down or slow only the keys it holds fail open (served from L1 or the
/// source, counted in `l2_errors` / `l2_skipped`); the breaker probes it
/// again after the cool-down.
///
/// **Hot keys.** Reads that reach L2 are counted by a [`HotKeyDetector`]
/// (top 16 over a sliding window of `hot_window` L2 reads; hot at
/// `hot_threshold`); keys can also be marked hot explicitly
/// ([`mark_hot`](TwoLevelCache::mark_hot)). A hot key's value is kept as
/// `R = min(hot_copies, nodes)` copies on the `R` best nodes of the key's
/// rendezvous ranking — `R` distinct nodes: copy 0 is the ordinary key on
/// its home node, copy `i ≥ 1` is the Redis key `<namespace>#c<i>:<key>`
/// (a prefix no ordinary key can have) on the `i`-th node, with its own
/// version key. Reads of a hot key go round-robin over the copies, so the
/// key's load spreads over `R` nodes. A copy is filled from the home node
/// on its first read (and right after a write of a key that is hot here):
/// read the copy's version, read the home node, then write the copy only
/// if its version has not moved (the same Lua check as a fill from the
/// source). A copy whose node is unavailable is skipped and the read goes
/// to the home node.
///
/// **Consistency guarantee.** [`set`](TwoLevelCache::set) and
/// [`invalidate`](TwoLevelCache::invalidate) first write (or delete) the
/// key on its home node, bumping its version, and only then delete every
/// extra copy, bumping each copy's version — for every key, hot or not,
/// since another instance may have made copies. Hence: once a write has
/// returned, and provided every copy's node answered it, no L2 read that
/// begins afterwards, in any instance, returns a value older than that
/// write — whichever copy it picks (a copy fill that read the home node
/// before the write finds its copy's version bumped and is refused; one that
/// landed before the delete was deleted). If a copy's node could not be
/// reached, that copy may serve the old value for at most `hot_copy_ttl`
/// after the write (copies are written with that TTL; the failure is
/// counted, and the write still succeeds if the home node took it). As with
/// one node, L1 entries are dropped by the broadcast, and an L1 entry never
/// holds an old value longer than `l1_ttl` (after a lost broadcast). A read
/// that raced with a write cannot put what it read back into L1: it takes
/// an L1 lease before reading L2 and fills L1 through it, and the write's
/// invalidation (local, or the broadcast's) revokes the lease.
///
/// **Invalidation broadcast.** Every write publishes the key on
/// `<namespace>:invalidate` on *every* node, and every instance subscribes
/// on every node (one subscriber task per node, each reconnecting on its
/// own). An instance drops its L1 copy when any node delivers, so the
/// broadcast survives any node being down as long as writer and reader
/// share one live node; a message delivered by several nodes only drops
/// the L1 entry again.
///
/// ```no_run
/// use kuai_cache::{TwoLevelCache, TwoLevelConfig};
/// # async fn run() -> Result<(), kuai_cache::CacheError> {
/// let cache = TwoLevelCache::new(TwoLevelConfig {
///     namespace: "app".into(),
///     hot_copies: 3,
///     ..TwoLevelConfig::with_nodes([
///         "redis://10.0.0.1:6379/",
///         "redis://10.0.0.2:6379/",
///         "redis://10.0.0.3:6379/",
///     ])
/// })
/// .await?;
/// cache.set("user:1", b"alice".to_vec()).await?;
/// cache.mark_hot("user:1"); // or let the detector find it
/// let v = cache
///     .get_with("user:2", || async { Ok(Some(b"bob".to_vec())) })
///     .await?;
/// assert_eq!(v.as_deref(), Some(&b"bob"[..]));
/// for n in cache.node_stats() {
///     println!("{}: {} requests, breaker open: {}", n.url, n.requests, n.breaker_open);
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct TwoLevelCache {
    inner: Arc<Inner>,
}

impl fmt::Debug for TwoLevelCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let open: Vec<&str> = self
            .inner
            .nodes
            .iter()
            .filter(|n| n.breaker.is_open())
            .map(|n| n.url.as_str())
            .collect();
        f.debug_struct("TwoLevelCache")
            .field("cfg", &self.inner.cfg)
            .field("copies", &self.inner.copies)
            .field("breakers_open", &open)
            .finish_non_exhaustive()
    }
}

/// What reading one extra copy of a hot key gave.
enum CopyRead {
    /// The copy (or the home node, when the copy was absent) had the value.
    Value(Arc<[u8]>),
    /// The copy and the home node both answered: no value.
    Absent,
    /// The copy's node was unavailable (the home node may answer).
    CopyUnavailable,
    /// The copy was absent and the home node unavailable.
    HomeUnavailable,
}

impl TwoLevelCache {
    /// Creates the cache and starts the invalidation subscribers (one per
    /// node, on the current tokio runtime). Fails on a bad configuration
    /// (including a duplicate node URL); an unreachable Redis is *not* an
    /// error here (the cache runs on L1 + source and keeps retrying), see
    /// [`l2_available`](TwoLevelCache::l2_available).
    pub async fn new(cfg: TwoLevelConfig) -> Result<Self, CacheError> {
        for d in [
            cfg.l1_ttl,
            cfg.l2_ttl,
            cfg.l2_timeout,
            cfg.breaker_cooldown,
            cfg.hot_copy_ttl,
        ] {
            check_duration(d)?;
        }
        if cfg.breaker_threshold == 0 {
            return Err(CacheError::InvalidConfig("breaker_threshold must be ≥ 1"));
        }
        if cfg.hot_copies == 0 || cfg.hot_copies > MAX_COPIES {
            return Err(CacheError::InvalidConfig("hot_copies must be in 1..=16"));
        }
        let urls = cfg.node_urls();
        let ring = Rendezvous::new(urls.iter().map(String::as_str)).map_err(|_| {
            CacheError::InvalidConfig("L2 nodes: need at least one node and no duplicate URL")
        })?;
        let mut nodes = Vec::with_capacity(urls.len());
        for url in urls {
            let client = redis::Client::open(url.as_str()).map_err(|e| l2_error("url", e))?;
            nodes.push(L2Node {
                url,
                client,
                conn: tokio::sync::Mutex::new(None),
                breaker: Breaker {
                    failures: AtomicU32::new(0),
                    open_until: Mutex::new(None),
                    threshold: cfg.breaker_threshold,
                    cooldown: cfg.breaker_cooldown,
                },
                requests: AtomicU64::new(0),
                hits: AtomicU64::new(0),
                errors: AtomicU64::new(0),
                skipped: AtomicU64::new(0),
            });
        }
        let detector = HotKeyDetector::new(16, cfg.hot_window, cfg.hot_threshold)?;
        let l1 = Cache::builder()
            .max_capacity(cfg.l1_capacity)
            .time_to_live(cfg.l1_ttl)
            .build()?;
        let channel = format!("{}:invalidate", cfg.namespace);
        let inner = Arc::new(Inner {
            l1,
            copies: cfg.hot_copies.min(nodes.len()),
            nodes,
            ring,
            cfg,
            counters: Counters::default(),
            channel,
            id: crate::hashing::FastHashBuilder::new().hash_one(0u64),
            subscribers: Mutex::new(Vec::new()),
            loading: Mutex::new(std::collections::HashMap::new()),
            detector,
            marked_hot: Mutex::new(HashSet::new()),
            next_copy: AtomicU64::new(0),
        });
        let this = TwoLevelCache { inner };
        let tasks = (0..this.inner.nodes.len())
            .map(|n| tokio::spawn(Self::subscribe_loop(Arc::downgrade(&this.inner), n)))
            .collect();
        *this
            .inner
            .subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = tasks;
        Ok(this)
    }

    /// The Redis key of copy `copy` of `key` (0: the ordinary key).
    fn l2_key(&self, key: &str, copy: usize) -> String {
        let ns = &self.inner.cfg.namespace;
        if copy == 0 {
            format!("{ns}:{key}")
        } else {
            format!("{ns}#c{copy}:{key}")
        }
    }

    /// The version key of copy `copy` of `key`. Data keys start with
    /// `<ns>:` or `<ns>#c`, version keys with `<ns>#v`, so no user key's
    /// data can land on another key's version.
    fn version_key(&self, key: &str, copy: usize) -> String {
        let ns = &self.inner.cfg.namespace;
        format!("{ns}#v{copy}:{key}")
    }

    /// The index of `key`'s home node.
    fn home(&self, key: &str) -> usize {
        self.inner.ring.partition(key) as usize
    }

    /// The nodes of `key`'s copies, best first: `[home, …]`, `copies` long.
    fn placement(&self, key: &str) -> Vec<usize> {
        let home = self.home(key);
        if self.inner.copies <= 1 {
            return vec![home];
        }
        let mut ranked: Vec<usize> = self
            .inner
            .ring
            .ranked(key)
            .into_iter()
            .map(|n| n as usize)
            .filter(|&n| n != home)
            .collect();
        ranked.insert(0, home);
        ranked.truncate(self.inner.copies);
        ranked
    }

    /// The URL of `key`'s home node (where its ordinary L2 entry lives).
    pub fn home_node(&self, key: &str) -> &str {
        &self.inner.nodes[self.home(key)].url
    }

    /// The URLs of the nodes that hold `key`'s copies when it is hot, home
    /// node first (`min(hot_copies, nodes)` distinct nodes).
    pub fn copy_nodes(&self, key: &str) -> Vec<&str> {
        self.placement(key)
            .into_iter()
            .map(|n| self.inner.nodes[n].url.as_str())
            .collect()
    }

    /// The L2 node URLs, in configuration order.
    pub fn nodes(&self) -> Vec<&str> {
        self.inner.nodes.iter().map(|n| n.url.as_str()).collect()
    }

    /// Runs one call on node `node` with the timeout and the node's breaker.
    /// Writes `value` at `key` on `node` (TTL `ttl`) only if the key is
    /// absent and its version key `vkey` still holds `version` (read before
    /// the value was fetched): `Ok(None)` when refused as stale.
    #[allow(clippy::too_many_arguments)]
    async fn fill_if_version(
        &self,
        node: usize,
        what: &str,
        key: String,
        vkey: String,
        version: Option<String>,
        value: Arc<[u8]>,
        ttl: Duration,
    ) -> Result<Option<String>, CacheError> {
        let ttl = millis(ttl);
        self.l2(node, what, |mut c| async move {
            redis::cmd("EVAL")
                .arg(FILL_IF_VERSION)
                .arg(2)
                .arg(&key)
                .arg(&vkey)
                .arg(version.unwrap_or_default())
                .arg(&*value)
                .arg(ttl)
                .query_async(&mut c)
                .await
        })
        .await
    }

    async fn l2<T, F, Fut>(&self, node: usize, what: &str, f: F) -> Result<T, CacheError>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let n = &self.inner.nodes[node];
        if !n.breaker.allow() {
            n.skipped.fetch_add(1, Ordering::Relaxed);
            self.inner
                .counters
                .l2_skipped
                .fetch_add(1, Ordering::Relaxed);
            return Err(CacheError::Closed("redis circuit breaker is open"));
        }
        n.requests.fetch_add(1, Ordering::Relaxed);
        let timeout = self.inner.cfg.l2_timeout;
        let result = tokio::time::timeout(timeout, async {
            let conn = {
                let mut slot = n.conn.lock().await;
                match slot.as_ref() {
                    Some(c) => c.clone(),
                    None => {
                        let c = n
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
            Ok(_) => n.breaker.success(),
            Err(_) => {
                n.errors.fetch_add(1, Ordering::Relaxed);
                self.inner
                    .counters
                    .l2_errors
                    .fetch_add(1, Ordering::Relaxed);
                n.breaker.failure();
                // Drop a possibly broken connection; the next call reconnects.
                *n.conn.lock().await = None;
            }
        }
        result
    }

    /// `GET` of one Redis key on one node; a value counts as a node hit.
    async fn get_on(&self, node: usize, rkey: String) -> Result<Option<Vec<u8>>, CacheError> {
        let got: Result<Option<Vec<u8>>, _> = self
            .l2(node, "GET", |mut c| async move {
                redis::cmd("GET").arg(&rkey).query_async(&mut c).await
            })
            .await;
        if let Ok(Some(_)) = &got {
            self.inner.nodes[node].hits.fetch_add(1, Ordering::Relaxed);
        }
        got
    }

    /// Marks `key` hot: its L2 value is kept as copies on distinct nodes
    /// (see [`TwoLevelCache`]) whether or not the detector finds it hot.
    pub fn mark_hot(&self, key: &str) {
        self.inner
            .marked_hot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.to_string());
    }

    /// Undoes [`mark_hot`](TwoLevelCache::mark_hot) (the detector may still
    /// find the key hot; existing copies expire or are deleted by writes).
    pub fn unmark_hot(&self, key: &str) {
        self.inner
            .marked_hot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }

    /// Whether `key` is hot here now (marked, or found by the detector).
    pub fn is_hot(&self, key: &str) -> bool {
        self.inner
            .marked_hot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(key)
            || self.inner.detector.is_hot(&key.to_string())
    }

    /// The hot-key detector (it counts the reads that reach L2).
    pub fn detector(&self) -> &HotKeyDetector<String> {
        &self.inner.detector
    }

    /// Reads `key` from L1, then L2; `None` on a miss. L2 failures are
    /// counted and read as misses (fail-open). A hot key is read from one of
    /// its copies, round-robin.
    pub async fn get(&self, key: &str) -> Option<Arc<[u8]>> {
        if let Some(v) = self.inner.l1.get(key) {
            self.inner.counters.l1_hits.fetch_add(1, Ordering::Relaxed);
            return Some(v);
        }
        // A write or invalidation that lands while L2 answers revokes the
        // lease, so what this read saw is not put back into L1. The lease is
        // shared: concurrent readers (and a loader) do not cancel each
        // other's fills; the first one lands.
        let lease = self.inner.l1.lease_shared(key.to_string());
        let v = self.l2_get(key).await?;
        self.inner.counters.l2_hits.fetch_add(1, Ordering::Relaxed);
        let _ = self.inner.l1.fill(lease, Arc::clone(&v), None);
        Some(v)
    }

    /// The L2 part of a read: record it, then read a copy or the home node.
    async fn l2_get(&self, key: &str) -> Option<Arc<[u8]>> {
        let owned = key.to_string();
        let detected = self.inner.detector.record(&owned);
        if self.inner.copies > 1 && (detected || self.is_hot(key)) {
            let place = self.placement(key);
            let pick = self.inner.next_copy.fetch_add(1, Ordering::Relaxed) % place.len() as u64;
            let copy = pick as usize;
            if copy > 0 {
                match self.read_copy(key, copy, &place).await {
                    CopyRead::Value(v) => return Some(v),
                    CopyRead::Absent | CopyRead::HomeUnavailable => return None,
                    // The copy's node is down: the home node may answer.
                    CopyRead::CopyUnavailable => {}
                }
            }
        }
        let rkey = self.l2_key(key, 0);
        match self.get_on(self.home(key), rkey).await {
            Ok(Some(v)) => Some(v.into()),
            _ => None,
        }
    }

    /// Reads extra copy `copy` of `key` on `place[copy]`; on a miss reads the
    /// home node and fills the copy if its version has not moved meanwhile.
    async fn read_copy(&self, key: &str, copy: usize, place: &[usize]) -> CopyRead {
        let node = place[copy];
        let (ck, cv) = (self.l2_key(key, copy), self.version_key(key, copy));
        let (ck2, cv2) = (ck.clone(), cv.clone());
        let got: Result<(Option<Vec<u8>>, Option<String>), _> = self
            .l2(node, "MGET copy", |mut c| async move {
                redis::cmd("MGET")
                    .arg(&ck2)
                    .arg(&cv2)
                    .query_async(&mut c)
                    .await
            })
            .await;
        let version = match got {
            Ok((Some(v), _)) => {
                self.inner.nodes[node].hits.fetch_add(1, Ordering::Relaxed);
                self.inner
                    .counters
                    .copy_hits
                    .fetch_add(1, Ordering::Relaxed);
                return CopyRead::Value(v.into());
            }
            Ok((None, version)) => version,
            Err(_) => return CopyRead::CopyUnavailable,
        };
        // The version was read before the home node: a write between the two
        // bumps it, and the fill below is refused.
        let home = match self.get_on(place[0], self.l2_key(key, 0)).await {
            Ok(Some(v)) => Arc::<[u8]>::from(v),
            Ok(None) => return CopyRead::Absent,
            Err(_) => return CopyRead::HomeUnavailable,
        };
        self.fill_copy(node, ck, cv, version, Arc::clone(&home))
            .await;
        CopyRead::Value(home)
    }

    /// Version-checked write of one extra copy (TTL `hot_copy_ttl`).
    async fn fill_copy(
        &self,
        node: usize,
        ck: String,
        cv: String,
        version: Option<String>,
        value: Arc<[u8]>,
    ) {
        let ttl = self.inner.cfg.hot_copy_ttl;
        let filled = self
            .fill_if_version(node, "copy fill", ck, cv, version, value, ttl)
            .await;
        match filled {
            Ok(Some(_)) => {
                self.inner
                    .counters
                    .copy_fills
                    .fetch_add(1, Ordering::Relaxed);
            }
            Ok(None) => {
                // Either the copy exists already, or a write moved its version.
                self.inner
                    .counters
                    .stale_fills
                    .fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {}
        }
    }

    /// Reads `key`, loading it from `source` on a miss of both levels and
    /// filling both: L1 through a lease, L2 (the key's home node) through a
    /// version check (the key's version is read before the source, and the
    /// fill is refused if a write or an invalidation bumped it meanwhile — a
    /// lease kept in Redis, so it holds across processes).
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
            // The load before this turn may have filled L1, or only L2 (its
            // L1 fill refused after a racing invalidation): look at both
            // before going to the source.
            match self.get(key).await {
                Some(v) => Ok(Some(v)),
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
        let home = self.home(key);
        let vk = self.version_key(key, 0);
        let vk2 = vk.clone();
        let version: Option<String> = self
            .l2(home, "GET version", |mut c| async move {
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
        let k = self.l2_key(key, 0);
        let ttl = self.inner.cfg.l2_ttl;
        let filled = self
            .fill_if_version(home, "versioned fill", k, vk, version, Arc::clone(&v), ttl)
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

    /// Deletes every extra copy of `key` (bumping each copy's version),
    /// after its home node was written. Failures are counted (the copy then
    /// expires within `hot_copy_ttl`).
    async fn delete_copies(&self, key: &str, place: &[usize]) {
        let ttl = millis(self.inner.cfg.l2_ttl);
        // The copies are independent of one another: delete them at once.
        join_all(place.iter().enumerate().skip(1).map(|(copy, &node)| {
            let (ck, cv) = (self.l2_key(key, copy), self.version_key(key, copy));
            self.l2(node, "DEL copy", move |mut c| async move {
                redis::cmd("EVAL")
                    .arg(DELETE_AND_BUMP)
                    .arg(2)
                    .arg(&ck)
                    .arg(&cv)
                    .arg(ttl)
                    .query_async::<()>(&mut c)
                    .await
            })
        }))
        .await;
    }

    /// Writes `value` to L2 (the key's home node, with the L2 TTL) and L1,
    /// deletes the key's extra copies (and, if the key is hot here, refills
    /// them from the home node), and tells the other instances to drop their
    /// L1 copies. Fails (after updating L1) if the home node could not be
    /// written.
    pub async fn set(&self, key: &str, value: Vec<u8>) -> Result<(), CacheError> {
        let v: Arc<[u8]> = value.into();
        let place = self.placement(key);
        let k = self.l2_key(key, 0);
        let ttl = millis(self.inner.cfg.l2_ttl);
        let val = Arc::clone(&v);
        let vk = self.version_key(key, 0);
        let r: Result<(), _> = self
            .l2(place[0], "SET", |mut c| async move {
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
        // Copies only after the home node: a copy fill that read the home
        // node before this write is then refused by the bumped version.
        self.delete_copies(key, &place).await;
        if r.is_ok() && place.len() > 1 && self.is_hot(key) {
            // A fresh read of the home node per copy: filling our own value
            // could overwrite a newer concurrent write's.
            join_all((1..place.len()).map(|copy| self.read_copy(key, copy, &place))).await;
        }
        self.broadcast(key).await;
        self.inner.l1.insert(key.to_string(), v);
        r
    }

    /// Deletes `key` from both levels (its home node and every extra copy)
    /// and broadcasts the invalidation (the write side of cache-aside: call
    /// after writing the source). Fails if the home node could not be
    /// reached.
    pub async fn invalidate(&self, key: &str) -> Result<(), CacheError> {
        self.inner.l1.invalidate(key);
        let place = self.placement(key);
        let k = self.l2_key(key, 0);
        let vk = self.version_key(key, 0);
        let ttl = millis(self.inner.cfg.l2_ttl);
        let r: Result<(), _> = self
            .l2(place[0], "DEL", |mut c| async move {
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
        self.delete_copies(key, &place).await;
        self.broadcast(key).await;
        r
    }

    /// Publishes `key` on the invalidation channel of every node.
    async fn broadcast(&self, key: &str) {
        let payload = format!("{:016x}|{key}", self.inner.id);
        join_all((0..self.inner.nodes.len()).map(|node| {
            let channel = self.inner.channel.clone();
            let payload = payload.clone();
            self.l2(node, "PUBLISH", |mut c| async move {
                redis::cmd("PUBLISH")
                    .arg(&channel)
                    .arg(&payload)
                    .query_async::<()>(&mut c)
                    .await
            })
        }))
        .await;
    }

    async fn subscribe_loop(inner: std::sync::Weak<Inner>, node: usize) {
        loop {
            let Some(this) = inner.upgrade() else { return };
            let client = this.nodes[node].client.clone();
            let channel = this.channel.clone();
            let timeout = this.cfg.l2_timeout;
            let own = format!("{:016x}", this.id);
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
                            Some((id, _)) if id == own => {}
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

    /// Whether every node's breaker lets calls through now (with one node:
    /// whether L2 is available).
    pub fn l2_available(&self) -> bool {
        self.inner.nodes.iter().all(|n| !n.breaker.is_open())
    }

    /// The counters, all nodes together.
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
            copy_hits: c.copy_hits.load(Ordering::Relaxed),
            copy_fills: c.copy_fills.load(Ordering::Relaxed),
        }
    }

    /// The counters of each node, in configuration order.
    pub fn node_stats(&self) -> Vec<L2NodeStats> {
        self.inner
            .nodes
            .iter()
            .map(|n| L2NodeStats {
                url: n.url.clone(),
                requests: n.requests.load(Ordering::Relaxed),
                hits: n.hits.load(Ordering::Relaxed),
                errors: n.errors.load(Ordering::Relaxed),
                skipped: n.skipped.load(Ordering::Relaxed),
                breaker_open: n.breaker.is_open(),
            })
            .collect()
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
        for t in self
            .subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            t.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bad_node_lists_and_copy_counts_are_config_errors() {
        let dup = TwoLevelCache::new(TwoLevelConfig::with_nodes([
            "redis://127.0.0.1:1/",
            "redis://127.0.0.1:1/",
        ]))
        .await;
        assert!(matches!(dup, Err(CacheError::InvalidConfig(_))));
        for hot_copies in [0, MAX_COPIES + 1] {
            let c = TwoLevelCache::new(TwoLevelConfig {
                hot_copies,
                ..TwoLevelConfig::default()
            })
            .await;
            assert!(matches!(c, Err(CacheError::InvalidConfig(_))));
        }
    }

    #[tokio::test]
    async fn no_user_key_lands_on_a_version_key() {
        let c = TwoLevelCache::new(TwoLevelConfig {
            namespace: "ns".into(),
            ..TwoLevelConfig::default()
        })
        .await
        .expect("config");
        for key in ["x", "ver:x", "#v0:x", "v0:x", ""] {
            for copy in 0..3 {
                let v = c.version_key(key, copy);
                assert!(v.starts_with("ns#v"), "{v}");
                for other in ["x", "ver:x", "#v0:x", "v0:x", ""] {
                    for oc in 0..3 {
                        assert_ne!(c.l2_key(other, oc), v, "{other} copy {oc} vs {key}");
                    }
                }
            }
        }
    }

    #[tokio::test]
    async fn copies_are_capped_at_the_node_count_and_distinct() {
        let one = TwoLevelCache::new(TwoLevelConfig::default())
            .await
            .expect("config");
        assert_eq!(one.copy_nodes("k").len(), 1, "one node: no copies");
        let urls: Vec<String> = (1..=5).map(|p| format!("redis://127.0.0.1:{p}/")).collect();
        let five = TwoLevelCache::new(TwoLevelConfig::with_nodes(urls))
            .await
            .expect("config");
        for i in 0..200 {
            let key = format!("k{i}");
            let nodes = five.copy_nodes(&key);
            assert_eq!(nodes.len(), 3);
            assert_eq!(nodes[0], five.home_node(&key), "copy 0 is the home node");
            let distinct: HashSet<&str> = nodes.iter().copied().collect();
            assert_eq!(distinct.len(), 3, "copies on distinct nodes: {nodes:?}");
        }
    }
}
