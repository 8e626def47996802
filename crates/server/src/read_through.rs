//! Read-through of keyspace misses to a PostgreSQL table
//! (`--read-through postgres://…`, through `kuai::store`'s `PgNode` and
//! `PgLookup`).
//!
//! A `GET`, `GETEX` or `MGET` whose key is not in the keyspace loads
//! `SELECT value FROM table WHERE key = $1` and stores the row in the
//! keyspace (with `read-through-ttl`) before the command runs, so the
//! command itself is unchanged and replies stay in pipeline order.
//!
//! * **Off the I/O thread.** Loads run on their own thread and runtime
//!   (`kuai-read-through`); the connection awaits the result
//!   ([`prefetch`], called by the connection loop before it executes a
//!   command), so other connections on the same event loop keep going.
//! * **Single-flight.** Concurrent misses of one key share one query
//!   (`read_through_coalesced` counts the riders).
//! * **Fail-open.** A load that errs or outlives `read-through-timeout`
//!   (100 ms by default) is answered as a miss (nil) and counted; nothing
//!   waits longer than the timeout.
//! * **Circuit breaker.** After 5 loads in a row fail or time out, misses
//!   are answered nil without a query for 1 s (`read_through_breaker_skips`),
//!   so a dead or black-holed server costs nothing per miss; then loads are
//!   tried again, and the first success closes the breaker.
//! * **Version-checked fills.** Every write command bumps a version for its
//!   keys (striped counters; `FLUSHALL` bumps them all) before it runs; a
//!   load's result is stored only if the key's version is unchanged and the
//!   key is still absent, checked under the key's shard lock. A `SET` or
//!   `DEL` while the load was in flight therefore wins.
//! * **Negative cache.** "Not in the table" is remembered for
//!   `read-through-negative-ttl` (1 s by default; a `kuai::cache::Cache`),
//!   tagged with the key's version so any later write of the key voids it.
//! * Fills are logged to the append-only file as `SET … PXAT`, like any
//!   write, so a later `APPEND` or `SETRANGE` replays onto the right value.
//!
//! `INFO readthrough` shows the counters.

pub mod postgres;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::BuildHasher;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use kuai::core::Clock;
use parking_lot::Mutex;
use tokio::sync::watch;

use kuai::cache::{Compute, Expiry};

use crate::commands::{Db, Session};
use crate::error::ServerError;
use crate::keyspace::Blob;

/// Striped write versions (a power of two). A collision only refuses a
/// fill or a negative entry that was in fact still good.
const VERSION_STRIPES: usize = 4096;
/// Loads in flight at once; misses beyond are answered nil (`shed`).
const MAX_INFLIGHT: usize = 4096;
/// Keys remembered as absent at once.
const NEGATIVE_CAPACITY: u64 = 100_000;
/// Connections to PostgreSQL (queries on one connection are pipelined).
const PG_CONNECTIONS: usize = 4;
/// Consecutive failed loads (errors or timeouts) that open the breaker.
const BREAKER_THRESHOLD: u64 = 5;
/// How long an open breaker answers misses nil without a query.
const BREAKER_COOLDOWN_MS: u64 = 1_000;
/// How long startup waits to describe the table.
const STARTUP_PROBE: Duration = Duration::from_secs(3);

/// The `read-through*` settings. Enabled when `url` is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadThroughConfig {
    /// `postgres://user@host:port/db` (or libpq `key=value` form).
    pub url: Option<String>,
    /// The table or view, `name` or `schema.name` (required).
    pub table: Option<String>,
    /// The key column (`key` by default).
    pub key_column: String,
    /// The value column (`value` by default).
    pub value_column: String,
    /// TTL of filled keys (zero: none).
    pub ttl: Duration,
    /// How long "not in the table" is remembered (zero: not at all).
    pub negative_ttl: Duration,
    /// Bound on one load (100 ms by default).
    pub timeout: Duration,
}

impl Default for ReadThroughConfig {
    fn default() -> Self {
        ReadThroughConfig {
            url: None,
            table: None,
            key_column: "key".into(),
            value_column: "value".into(),
            ttl: Duration::ZERO,
            negative_ttl: Duration::from_secs(1),
            timeout: Duration::from_millis(100),
        }
    }
}

/// Parses `250ms`, `5s`, `2m`, `1h` (a unit is required) or `0`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim().to_ascii_lowercase();
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let (num, ms_per) = [("ms", 1u64), ("s", 1_000), ("m", 60_000), ("h", 3_600_000)]
        .iter()
        .find_map(|(suf, m)| s.strip_suffix(suf).map(|n| (n.trim().to_owned(), *m)))?;
    num.parse::<u64>()
        .ok()?
        .checked_mul(ms_per)
        .map(Duration::from_millis)
}

impl ReadThroughConfig {
    /// Whether read-through is on.
    pub fn enabled(&self) -> bool {
        self.url.is_some()
    }

    /// Applies one `read-through*` setting; `Ok(false)` if `key` is not one.
    pub fn apply(&mut self, key: &str, value: &str) -> Result<bool, ServerError> {
        let bad =
            |why: &str| ServerError::Config(format!("invalid value {value:?} for {key}: {why}"));
        let dur =
            || parse_duration(value).ok_or_else(|| bad("expected e.g. 250ms, 5s, 2m, 1h or 0"));
        let ident = |what: &str| {
            kuai::store::check_pg_identifier(what, value).map_err(|e| bad(&e.to_string()))
        };
        match key {
            "read-through" => self.url = (!value.is_empty()).then(|| value.to_owned()),
            "read-through-table" => {
                kuai::store::PgLookup::new(value, "k", "v").map_err(|e| bad(&e.to_string()))?;
                self.table = Some(value.to_owned());
            }
            "read-through-key-column" => {
                ident("key column")?;
                self.key_column = value.to_owned();
            }
            "read-through-value-column" => {
                ident("value column")?;
                self.value_column = value.to_owned();
            }
            "read-through-ttl" => self.ttl = dur()?,
            "read-through-negative-ttl" => self.negative_ttl = dur()?,
            "read-through-timeout" => {
                self.timeout = dur()?;
                if self.timeout.is_zero() {
                    return Err(bad("the timeout must be positive"));
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// The result of one load: the row's value, or `None` for no row.
pub type LoadResult = Result<Option<Vec<u8>>, kuai::core::Error>;

/// Where misses are loaded from (PostgreSQL in production; tests may plug
/// in another).
pub trait Source: Send + Sync + fmt::Debug + 'static {
    /// Loads `key`. Runs on the read-through runtime.
    fn load<'a>(&'a self, key: &'a [u8]) -> Pin<Box<dyn Future<Output = LoadResult> + Send + 'a>>;
    /// Checks the source is usable (runs once at startup).
    fn check(&self) -> Pin<Box<dyn Future<Output = Result<(), kuai::core::Error>> + Send + '_>>;
    /// One line for `INFO`.
    fn describe(&self) -> String;
}

/// Counters shown by `INFO readthrough`.
#[derive(Debug, Default)]
pub struct ReadThroughStats {
    /// Queries started.
    pub loads: AtomicU64,
    /// Loads that found a row.
    pub hits: AtomicU64,
    /// Loads that found no row.
    pub misses: AtomicU64,
    /// Loads that failed (PostgreSQL down, SQL error…): answered nil.
    pub errors: AtomicU64,
    /// Loads that outlived the timeout: answered nil.
    pub timeouts: AtomicU64,
    /// Misses that rode on a load already in flight.
    pub coalesced: AtomicU64,
    /// Misses answered from the negative cache, without a query.
    pub negative_hits: AtomicU64,
    /// Loaded rows not stored because the key was written meanwhile.
    pub stale_fills: AtomicU64,
    /// Misses answered nil without a load (too many in flight, or no
    /// memory for the row).
    pub shed: AtomicU64,
    /// Misses answered nil without a load because the breaker was open.
    pub breaker_skips: AtomicU64,
}

/// The read-through engine, held by [`Db`] when configured.
pub struct ReadThrough {
    source: Arc<dyn Source>,
    timeout: Duration,
    ttl_ms: u64,
    inflight: Mutex<HashMap<Bytes, watch::Receiver<bool>>>,
    versions: Box<[AtomicU64]>,
    epoch: AtomicU64,
    hasher: kuai::cache::FastHashBuilder,
    negative: Option<kuai::cache::Cache<Bytes, u64>>,
    last_error: Mutex<Option<String>>,
    // Circuit breaker: consecutive failed loads, and until when (Unix ms,
    // from the server's clock) misses skip the query.
    failures: AtomicU64,
    open_until_ms: AtomicU64,
    clock: Arc<dyn Clock>,
    /// Counters.
    pub stats: ReadThroughStats,
    rt: tokio::runtime::Handle,
    // Dropping it stops the loader thread.
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl fmt::Debug for ReadThrough {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadThrough")
            .field("source", &self.source)
            .field("timeout", &self.timeout)
            .field("ttl_ms", &self.ttl_ms)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// Frees a key's flight and wakes its waiters however the load ends
/// (finished, timed out, panicked, or dropped at shutdown).
struct Flight {
    db: Arc<Db>,
    key: Bytes,
    done: watch::Sender<bool>,
}

impl Drop for Flight {
    fn drop(&mut self) {
        if let Some(rt) = &self.db.read_through {
            rt.inflight.lock().remove(&self.key);
        }
        let _ = self.done.send(true);
    }
}

impl ReadThrough {
    /// Starts read-through from `config` (PostgreSQL): validates the
    /// identifiers and the URL, starts the loader thread, and describes the
    /// table. A table or column that does not exist is an error; an
    /// unreachable server is only a warning (misses are answered nil until
    /// it comes back).
    pub fn start(config: &ReadThroughConfig, clock: Arc<dyn Clock>) -> Result<Self, ServerError> {
        let url = config
            .url
            .as_deref()
            .ok_or_else(|| ServerError::Config("read-through needs a URL".into()))?;
        let table = config
            .table
            .as_deref()
            .ok_or_else(|| ServerError::Config("read-through needs read-through-table".into()))?;
        let source = postgres::PgSource::new(
            url,
            table,
            &config.key_column,
            &config.value_column,
            PG_CONNECTIONS,
        )?;
        Self::with_source(Arc::new(source), config, clock)
    }

    /// Like [`start`](Self::start) over any [`Source`].
    pub fn with_source(
        source: Arc<dyn Source>,
        config: &ReadThroughConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ServerError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let rt = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("kuai-read-through".into())
            .spawn(move || {
                runtime.block_on(async {
                    let _ = stopped.await;
                });
            })?;
        let negative = if config.negative_ttl.is_zero() {
            None
        } else {
            Some(
                kuai::cache::Cache::builder()
                    .max_capacity(NEGATIVE_CAPACITY)
                    .time_to_live(config.negative_ttl)
                    .clock(clock.clone())
                    .build()
                    .map_err(|e| ServerError::Config(format!("read-through-negative-ttl: {e}")))?,
            )
        };
        // Describe the table once: a typo in a name fails startup, an
        // unreachable server does not.
        let (tx, rx) = std::sync::mpsc::channel();
        let probe = source.clone();
        rt.spawn(async move {
            let _ = tx.send(probe.check().await);
        });
        match rx.recv_timeout(STARTUP_PROBE) {
            Ok(Ok(())) => {}
            Ok(Err(e)) if e.kind() == kuai::core::ErrorKind::InvalidInput => {
                return Err(ServerError::Config(format!(
                    "read-through {}: {e}",
                    source.describe()
                )));
            }
            Ok(Err(e)) => eprintln!(
                "kuai-server: read-through {} unavailable at startup ({e}); misses answer nil until it is back",
                source.describe()
            ),
            Err(_) => eprintln!(
                "kuai-server: read-through {} did not answer in {STARTUP_PROBE:?} at startup; misses answer nil until it does",
                source.describe()
            ),
        }
        Ok(ReadThrough {
            source,
            timeout: config.timeout,
            ttl_ms: u64::try_from(config.ttl.as_millis()).unwrap_or(u64::MAX),
            inflight: Mutex::new(HashMap::new()),
            versions: (0..VERSION_STRIPES).map(|_| AtomicU64::new(0)).collect(),
            epoch: AtomicU64::new(0),
            hasher: kuai::cache::FastHashBuilder::default(),
            negative,
            last_error: Mutex::new(None),
            failures: AtomicU64::new(0),
            open_until_ms: AtomicU64::new(0),
            clock,
            stats: ReadThroughStats::default(),
            rt,
            _stop: stop,
        })
    }

    /// The key's write version: changes whenever the key is written.
    fn version(&self, key: &[u8]) -> u64 {
        let i = self.hasher.hash_one(key) as usize & (VERSION_STRIPES - 1);
        self.epoch
            .load(Ordering::SeqCst)
            .wrapping_add(self.versions[i].load(Ordering::SeqCst))
    }

    /// Called by [`Db::execute`] before a write command runs: bumps the
    /// versions of its keys (`span` = `(first, end, step)` over `args`), or
    /// of every key when `span` is `None` (`FLUSHALL`).
    pub fn note_write(&self, args: &[&[u8]], span: Option<(usize, usize, usize)>) {
        match span {
            None => {
                self.epoch.fetch_add(1, Ordering::SeqCst);
            }
            Some((first, end, step)) => {
                for key in args[first.min(args.len())..end.min(args.len())]
                    .iter()
                    .step_by(step.max(1))
                {
                    let i = self.hasher.hash_one(key) as usize & (VERSION_STRIPES - 1);
                    self.versions[i].fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    }

    /// Loads in flight now.
    pub fn inflight(&self) -> usize {
        self.inflight.lock().len()
    }

    /// Starts (or joins) the load of `key`; `None` when it is shed.
    fn start_load(&self, db: &Arc<Db>, key: &[u8]) -> Option<watch::Receiver<bool>> {
        let mut inflight = self.inflight.lock();
        if let Some(rx) = inflight.get(key) {
            self.stats.coalesced.fetch_add(1, Ordering::Relaxed);
            return Some(rx.clone());
        }
        if inflight.len() >= MAX_INFLIGHT {
            self.stats.shed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let key = Bytes::copy_from_slice(key);
        let (done, rx) = watch::channel(false);
        inflight.insert(key.clone(), rx.clone());
        // Taken before the query is sent: a write after this point voids
        // the result.
        let version = self.version(&key);
        drop(inflight);
        self.stats.loads.fetch_add(1, Ordering::Relaxed);
        let flight = Flight {
            db: db.clone(),
            key,
            done,
        };
        let source = self.source.clone();
        let timeout = self.timeout;
        self.rt.spawn(async move {
            let result = tokio::time::timeout(timeout, source.load(&flight.key)).await;
            if let Some(rt) = &flight.db.read_through {
                rt.finish(&flight.db, &flight.key, version, result);
            }
            drop(flight);
        });
        Some(rx)
    }

    fn finish(
        &self,
        db: &Db,
        key: &[u8],
        version: u64,
        result: Result<LoadResult, tokio::time::error::Elapsed>,
    ) {
        let value = match result {
            Err(_) => {
                self.stats.timeouts.fetch_add(1, Ordering::Relaxed);
                self.failed(db);
                return;
            }
            Ok(Err(e)) => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                *self.last_error.lock() = Some(e.to_string().replace(['\r', '\n'], " "));
                self.failed(db);
                return;
            }
            Ok(Ok(loaded)) => loaded,
        };
        // PostgreSQL answered: close the breaker.
        self.failures.store(0, Ordering::Relaxed);
        self.open_until_ms.store(0, Ordering::Relaxed);
        let Some(value) = value else {
            self.stats.misses.fetch_add(1, Ordering::Relaxed);
            if let Some(neg) = &self.negative {
                // Tagged with the version: a write since voids it.
                neg.insert(Bytes::copy_from_slice(key), version);
            }
            return;
        };
        self.stats.hits.fetch_add(1, Ordering::Relaxed);
        if !has_room(db, value.len()) {
            self.stats.shed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        match fill_if_unwritten(db, key, &value, self.ttl_ms, || {
            self.version(key) == version
        }) {
            Fill::Stored => {}
            Fill::Stale => {
                self.stats.stale_fills.fetch_add(1, Ordering::Relaxed);
            }
            Fill::Refused => {
                self.stats.shed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Counts a failed load; the threshold-th in a row opens the breaker.
    fn failed(&self, db: &Db) {
        if self.failures.fetch_add(1, Ordering::Relaxed) + 1 >= BREAKER_THRESHOLD {
            self.open_until_ms
                .store(db.now_ms() + BREAKER_COOLDOWN_MS, Ordering::Relaxed);
        }
    }

    /// Whether misses skip the query now (breaker open).
    fn breaker_open(&self, now_ms: u64) -> bool {
        now_ms < self.open_until_ms.load(Ordering::Relaxed)
    }

    /// Whether `key` is remembered as absent (and unwritten since).
    fn negative_hit(&self, key: &[u8]) -> bool {
        let Some(neg) = &self.negative else {
            return false;
        };
        match neg.get(key) {
            Some(v) if v == self.version(key) => {
                self.stats.negative_hits.fetch_add(1, Ordering::Relaxed);
                true
            }
            _ => false,
        }
    }

    /// Appends the `# ReadThrough` section of `INFO`.
    pub fn info(&self, t: &mut String) {
        use std::fmt::Write as _;
        let s = &self.stats;
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let _ = write!(
            t,
            "# ReadThrough\r\nread_through_enabled:1\r\nread_through_source:{}\r\nread_through_timeout_ms:{}\r\nread_through_ttl_ms:{}\r\nread_through_loads:{}\r\nread_through_hits:{}\r\nread_through_misses:{}\r\nread_through_errors:{}\r\nread_through_timeouts:{}\r\nread_through_coalesced:{}\r\nread_through_negative_hits:{}\r\nread_through_stale_fills:{}\r\nread_through_shed:{}\r\nread_through_breaker:{}\r\nread_through_breaker_skips:{}\r\nread_through_inflight:{}\r\nread_through_last_error:{}\r\n\r\n",
            self.source.describe(),
            self.timeout.as_millis(),
            self.ttl_ms,
            n(&s.loads),
            n(&s.hits),
            n(&s.misses),
            n(&s.errors),
            n(&s.timeouts),
            n(&s.coalesced),
            n(&s.negative_hits),
            n(&s.stale_fills),
            n(&s.shed),
            match self.open_until_ms.load(Ordering::Relaxed) {
                0 => "closed",
                _ if self.breaker_open(unix_ms(&*self.clock)) => "open",
                _ => "half-open",
            },
            n(&s.breaker_skips),
            self.inflight(),
            self.last_error.lock().as_deref().unwrap_or(""),
        );
    }
}

/// The keys of `args` that read-through serves: `GET k`, `GETEX k …`,
/// `MGET k…`.
fn read_keys<'a>(args: &'a [&'a [u8]]) -> &'a [&'a [u8]] {
    let Some(cmd) = args.first() else { return &[] };
    if (cmd.eq_ignore_ascii_case(b"get") && args.len() == 2)
        || (cmd.eq_ignore_ascii_case(b"getex") && args.len() >= 2)
    {
        &args[1..2]
    } else if cmd.eq_ignore_ascii_case(b"mget") && args.len() >= 2 {
        &args[1..]
    } else {
        &[]
    }
}

/// The connection loop's hook, awaited before it executes `args`: loads the
/// keys a `GET`/`GETEX`/`MGET` misses (single-flight, bounded by the
/// timeout) into the keyspace. Returns whether it waited (the caller's
/// clock reading is then stale). Never fails: a failed or late load
/// leaves the key missing, so the command answers nil.
pub async fn prefetch(db: &Arc<Db>, sess: &Session, args: &[&[u8]]) -> bool {
    let Some(rt) = &db.read_through else {
        return false;
    };
    if !sess.authed {
        return false;
    }
    let keys = read_keys(args);
    if keys.is_empty() {
        return false;
    }
    let now = db.now_ms();
    let mut waits = Vec::new();
    for key in keys {
        if in_keyspace(db, key) || rt.negative_hit(key) {
            continue;
        }
        if rt.breaker_open(now) {
            rt.stats.breaker_skips.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        if let Some(rx) = rt.start_load(db, key) {
            waits.push(rx);
        }
    }
    if waits.is_empty() {
        return false;
    }
    let deadline = tokio::time::Instant::now() + rt.timeout;
    for mut rx in waits {
        // Err: timed out, or the loader is gone; either way, a miss.
        let _ = tokio::time::timeout_at(deadline, rx.wait_for(|done| *done)).await;
    }
    true
}

/// The clock's Unix time in milliseconds (as [`Db::now_ms`]).
fn unix_ms(clock: &dyn Clock) -> u64 {
    clock
        .system_time()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

// Keyspace adapter: the only code in this module that knows the keyspace's
// API (a kuai-cache `Cache`). Porting read-through to another keyspace
// means rewriting these three functions.

/// Whether `key` holds a live value.
fn in_keyspace(db: &Db, key: &[u8]) -> bool {
    db.ks.cache().peek_with(key, |_| ()).is_some()
}

/// Whether a loaded value of `len` bytes may be stored, as for any write:
/// within `proto-max-bulk-len`. `maxmemory` is the keyspace cache's own
/// bound: it evicts to make room, or under `noeviction` refuses the fill.
fn has_room(db: &Db, len: usize) -> bool {
    len <= db.settings.limits.max_bulk_len
}

/// Stores `value` under `key` (TTL `ttl_ms`, 0 = none) only if the key is
/// absent and `unwritten()` holds, both checked under the key's shard lock
/// (inside `compute_ref`): a writer bumps the key's version before it takes
/// that lock, so either `unwritten()` sees the bump, or the write lands
/// after the fill and wins. Logs the fill to the append-only file under the
/// same lock.
fn fill_if_unwritten(
    db: &Db,
    key: &[u8],
    value: &[u8],
    ttl_ms: u64,
    unwritten: impl FnOnce() -> bool,
) -> Fill {
    let now = db.now_ms();
    let expire_at = if ttl_ms == 0 {
        0
    } else {
        now.saturating_add(ttl_ms)
    };
    let expiry = if expire_at == 0 {
        Expiry::Never
    } else {
        db.ks.expiry_for(key, expire_at)
    };
    let blob = Blob::new(value);
    let stored = std::cell::Cell::new(false);
    let r = db.ks.cache().compute_ref(
        key,
        Blob::new,
        |cur| {
            if cur.is_some() || !unwritten() {
                return Compute::Keep;
            }
            stored.set(true);
            Compute::Insert(blob, expiry)
        },
        |_| {
            if !stored.get() {
                return;
            }
            if let Some(aof) = &db.aof {
                if expire_at == 0 {
                    aof.append(&[b"SET", key, value]);
                } else {
                    let t = itoa::Buffer::new().format(expire_at).to_owned();
                    aof.append(&[b"SET", key, value, b"PXAT", t.as_bytes()]);
                }
            }
        },
    );
    match (r, stored.get()) {
        // `noeviction` and full: the keyspace refused the value.
        (Err(_), _) => Fill::Refused,
        (Ok(_), true) => Fill::Stored,
        (Ok(_), false) => Fill::Stale,
    }
}

/// What [`fill_if_unwritten`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fill {
    Stored,
    /// The key was written (or filled) since the load began: not stored.
    Stale,
    /// The keyspace is full under `noeviction`: not stored.
    Refused,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_need_a_unit() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        for bad in ["", "5", "s", "-1s", "1.5s", "1d", "99999999999999999999h"] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn settings_are_validated() {
        let mut c = ReadThroughConfig::default();
        assert!(!c.enabled());
        assert!(c.apply("read-through", "postgres://u@h/db").unwrap());
        assert!(c.enabled());
        assert!(c.apply("read-through-table", "public.kv").unwrap());
        assert!(c.apply("read-through-timeout", "0").is_err());
        assert!(c.apply("read-through-table", "kv; DROP TABLE kv").is_err());
        assert!(c.apply("read-through-key-column", "k\"").is_err());
        assert!(c.apply("read-through-value-column", "a.b").is_err());
        assert!(c.apply("read-through-ttl", "10").is_err());
        assert!(c.apply("read-through-ttl", "10s").unwrap());
        assert_eq!(c.ttl, Duration::from_secs(10));
        assert!(!c.apply("port", "1").unwrap());
    }

    #[test]
    fn config_file_keys_match_the_flags() {
        let mut c = crate::Config::default();
        c.apply_text(
            "read-through postgres://postgres@127.0.0.1/test\n\
             read-through-table app.users\n\
             read-through-key-column email\n\
             read-through-value-column profile\n\
             read-through-ttl 5m\n\
             read-through-negative-ttl 0\n\
             read-through-timeout 250ms\n",
        )
        .unwrap();
        let rt = &c.read_through;
        assert!(rt.enabled());
        assert_eq!(rt.table.as_deref(), Some("app.users"));
        assert_eq!((&*rt.key_column, &*rt.value_column), ("email", "profile"));
        assert_eq!(rt.ttl, Duration::from_secs(300));
        assert_eq!(rt.negative_ttl, Duration::ZERO);
        assert_eq!(rt.timeout, Duration::from_millis(250));
        assert!(c.apply_text("read-through-table a.b.c\n").is_err());
        assert!(c.apply_text("read-through-nonsense 1\n").is_err());
    }

    /// A source that serves `rows` once `gate` has permits, counting calls.
    #[derive(Debug)]
    struct Gated {
        rows: HashMap<Vec<u8>, Vec<u8>>,
        gate: tokio::sync::Semaphore,
        calls: AtomicU64,
    }

    impl Source for Gated {
        fn load<'a>(
            &'a self,
            key: &'a [u8],
        ) -> Pin<Box<dyn Future<Output = LoadResult> + Send + 'a>> {
            Box::pin(async move {
                self.calls.fetch_add(1, Ordering::SeqCst);
                let _permit = self.gate.acquire().await;
                Ok(self.rows.get(key).cloned())
            })
        }
        fn check(
            &self,
        ) -> Pin<Box<dyn Future<Output = Result<(), kuai::core::Error>> + Send + '_>> {
            Box::pin(async { Ok(()) })
        }
        fn describe(&self) -> String {
            "gated test source".into()
        }
    }

    fn db_with(source: Arc<Gated>) -> Arc<Db> {
        let clock: Arc<dyn Clock> = Arc::new(kuai::core::SystemClock);
        let ks = crate::keyspace::Keyspace::new(
            4,
            0,
            crate::keyspace::EvictionPolicy::NoEviction,
            clock.clone(),
        )
        .unwrap();
        let mut db = Db::new(ks, clock.clone(), crate::commands::DbSettings::default());
        let config = ReadThroughConfig {
            url: Some("test".into()),
            timeout: Duration::from_secs(60),
            ..ReadThroughConfig::default()
        };
        db.read_through = Some(Arc::new(
            ReadThrough::with_source(source, &config, clock).unwrap(),
        ));
        Arc::new(db)
    }

    fn run<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    /// Yields until `cond` holds (a rendezvous with the loader thread).
    async fn until(cond: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !cond() {
            assert!(std::time::Instant::now() < deadline, "condition never held");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    #[test]
    fn riders_share_one_load_and_a_delete_during_it_wins() {
        let source = Arc::new(Gated {
            rows: [(b"k".to_vec(), b"old".to_vec())].into_iter().collect(),
            gate: tokio::sync::Semaphore::new(0),
            calls: AtomicU64::new(0),
        });
        let db = db_with(source.clone());
        let rt = db.read_through.clone().unwrap();
        let sess = Session::new(1, true);
        let get: &[&[u8]] = &[b"GET", b"k"];
        run(async {
            let control = async {
                until(|| rt.stats.coalesced.load(Ordering::SeqCst) == 2).await;
                let mut s = Session::new(2, true);
                let mut out = crate::reply::ReplyBuf::new(crate::reply::Protocol::Resp2);
                db.execute(&mut s, &[b"DEL", b"k"], &mut out, db.now_ms());
                source.gate.add_permits(100);
            };
            let (a, b, c, ()) = tokio::join!(
                prefetch(&db, &sess, get),
                prefetch(&db, &sess, get),
                prefetch(&db, &sess, get),
                control
            );
            assert!(a && b && c, "all three waited");
        });
        assert_eq!(source.calls.load(Ordering::SeqCst), 1, "one load");
        assert_eq!(rt.stats.stale_fills.load(Ordering::SeqCst), 1);
        assert!(!in_keyspace(&db, b"k"), "the DEL won");
        assert_eq!(rt.inflight(), 0);

        // Unwritten since: the next miss fills.
        run(prefetch(&db, &sess, get));
        assert!(in_keyspace(&db, b"k"));
        assert_eq!(source.calls.load(Ordering::SeqCst), 2);
        // A hit needs no load.
        assert!(!run(prefetch(&db, &sess, get)));
    }

    #[test]
    fn unauthenticated_and_other_commands_never_load() {
        let source = Arc::new(Gated {
            rows: HashMap::new(),
            gate: tokio::sync::Semaphore::new(100),
            calls: AtomicU64::new(0),
        });
        let db = db_with(source.clone());
        assert!(!run(prefetch(
            &db,
            &Session::new(1, false),
            &[b"GET", b"k"]
        )));
        assert!(!run(prefetch(
            &db,
            &Session::new(1, true),
            &[b"EXISTS", b"k"]
        )));
        assert_eq!(source.calls.load(Ordering::SeqCst), 0);
        // An absent row is remembered: one load for two misses.
        assert!(run(prefetch(&db, &Session::new(1, true), &[b"GET", b"k"])));
        assert!(!run(prefetch(&db, &Session::new(1, true), &[b"GET", b"k"])));
        assert_eq!(source.calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn read_keys_of_commands() {
        fn k(a: &[&[u8]]) -> Vec<Vec<u8>> {
            read_keys(a).iter().map(|k| k.to_vec()).collect()
        }
        assert_eq!(k(&[b"get", b"a"]), [b"a"]);
        assert!(k(&[b"GET", b"a", b"b"]).is_empty());
        assert_eq!(k(&[b"GetEx", b"a", b"EX", b"1"]), [b"a"]);
        assert_eq!(k(&[b"mget", b"a", b"b"]), [b"a", b"b"]);
        assert!(k(&[b"set", b"a", b"b"]).is_empty());
        assert!(k(&[]).is_empty());
    }
}
