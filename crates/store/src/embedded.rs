//! The embedded backend: an in-memory primary and replicas with a
//! simulated, controllable replication delay.
//!
//! Every write on the primary is appended to a shared log stamped with the
//! [`Clock`]'s time. A replica with delay `d` has replayed exactly the
//! entries written at or before `now - d`, so with a
//! [`ManualClock`](kuai_core::ManualClock) replication is deterministic:
//! tests advance the clock instead of sleeping. Replay can also be paused
//! (like `pg_wal_replay_pause()`), and nodes can be made to fail or hang to
//! exercise the router's fault handling.
//!
//! The log is kept in memory for the life of the cluster: this backend is
//! for tests, examples and benchmarks, not for data that outlives a process.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use kuai_core::{Clock, Error, Result};

use crate::{LogPosition, Node};

struct Entry<K, V> {
    at: Instant,
    key: K,
    value: Option<V>,
}

struct Log<K, V> {
    clock: Arc<dyn Clock>,
    entries: RwLock<Vec<Entry<K, V>>>,
}

enum Role {
    Primary,
    Replica { delay: Mutex<Duration> },
}

struct Data<K, V> {
    map: HashMap<K, V>,
    applied: usize,
}

/// One node of an [`EmbeddedCluster`]: the primary or a replica.
pub struct EmbeddedNode<K, V> {
    name: String,
    role: Role,
    log: Arc<Log<K, V>>,
    data: Mutex<Data<K, V>>,
    paused: AtomicBool,
    down: AtomicBool,
    hanging: AtomicBool,
}

impl<K, V> fmt::Debug for EmbeddedNode<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedNode")
            .field("name", &self.name)
            .field("primary", &matches!(self.role, Role::Primary))
            .field("paused", &self.paused.load(Ordering::Relaxed))
            .field("down", &self.down.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

fn poisoned() -> Error {
    Error::closed("embedded node state poisoned")
}

impl<K, V> EmbeddedNode<K, V>
where
    K: Clone + Eq + Hash + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn new(name: &str, role: Role, log: Arc<Log<K, V>>) -> Self {
        EmbeddedNode {
            name: name.to_string(),
            role,
            log,
            data: Mutex::new(Data {
                map: HashMap::new(),
                applied: 0,
            }),
            paused: AtomicBool::new(false),
            down: AtomicBool::new(false),
            hanging: AtomicBool::new(false),
        }
    }

    /// Fails like an unreachable server, or never answers when hanging.
    async fn reachable(&self) -> Result<()> {
        if self.hanging.load(Ordering::Acquire) {
            std::future::pending::<()>().await;
        }
        if self.down.load(Ordering::Acquire) {
            return Err(Error::backend(
                format!("embedded node {} is down", self.name),
                std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
            ));
        }
        Ok(())
    }

    /// Replays every log entry this replica is due to have applied.
    fn catch_up(&self, data: &mut Data<K, V>) -> Result<()> {
        let Role::Replica { delay } = &self.role else {
            return Ok(());
        };
        if self.paused.load(Ordering::Acquire) {
            return Ok(());
        }
        let delay = *delay.lock().map_err(|_| poisoned())?;
        let now = self.log.clock.now();
        let entries = self.log.entries.read().map_err(|_| poisoned())?;
        while let Some(e) = entries.get(data.applied) {
            if e.at + delay > now {
                break;
            }
            match &e.value {
                Some(v) => data.map.insert(e.key.clone(), v.clone()),
                None => data.map.remove(&e.key),
            };
            data.applied += 1;
        }
        Ok(())
    }

    /// Reads a key (a replica first replays what is due).
    pub async fn get(&self, key: &K) -> Result<Option<V>> {
        self.reachable().await?;
        let mut data = self.data.lock().map_err(|_| poisoned())?;
        self.catch_up(&mut data)?;
        Ok(data.map.get(key).cloned())
    }

    /// Writes a key. Replicas are read-only: writing to one is
    /// `InvalidInput`, like PostgreSQL's "read-only transaction" error.
    pub async fn put(&self, key: K, value: V) -> Result<()> {
        self.write(key, Some(value)).await
    }

    /// Deletes a key (primary only).
    pub async fn delete(&self, key: &K) -> Result<()> {
        self.write(key.clone(), None).await
    }

    async fn write(&self, key: K, value: Option<V>) -> Result<()> {
        self.reachable().await?;
        if !matches!(self.role, Role::Primary) {
            return Err(Error::invalid_input(format!(
                "{} is a read-only replica",
                self.name
            )));
        }
        let mut data = self.data.lock().map_err(|_| poisoned())?;
        let mut entries = self.log.entries.write().map_err(|_| poisoned())?;
        match &value {
            Some(v) => data.map.insert(key.clone(), v.clone()),
            None => data.map.remove(&key),
        };
        entries.push(Entry {
            at: self.log.clock.now(),
            key,
            value,
        });
        data.applied = entries.len();
        Ok(())
    }

    /// Sets a replica's replication delay (no effect on the primary).
    pub fn set_delay(&self, delay: Duration) {
        if let Role::Replica { delay: d } = &self.role {
            if let Ok(mut d) = d.lock() {
                *d = delay;
            }
        }
    }

    /// Stops replay until [`resume_replay`](Self::resume_replay), like
    /// `pg_wal_replay_pause()`.
    pub fn pause_replay(&self) {
        if let Ok(mut data) = self.data.lock() {
            let _ = self.catch_up(&mut data);
        }
        self.paused.store(true, Ordering::Release);
    }

    /// Resumes replay.
    pub fn resume_replay(&self) {
        self.paused.store(false, Ordering::Release);
    }

    /// Makes every call fail like an unreachable server (or work again).
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::Release);
    }

    /// Makes every call hang forever (or answer again): only timeouts save
    /// a caller.
    pub fn set_hanging(&self, hanging: bool) {
        self.hanging.store(hanging, Ordering::Release);
    }
}

impl<K, V> Node for EmbeddedNode<K, V>
where
    K: Clone + Eq + Hash + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn name(&self) -> &str {
        &self.name
    }

    async fn position(&self) -> Result<LogPosition> {
        self.reachable().await?;
        let mut data = self.data.lock().map_err(|_| poisoned())?;
        self.catch_up(&mut data)?;
        Ok(LogPosition(data.applied as u64))
    }
}

/// An in-memory primary plus replicas sharing one replication log.
pub struct EmbeddedCluster<K, V> {
    log: Arc<Log<K, V>>,
    primary: Arc<EmbeddedNode<K, V>>,
}

impl<K, V> fmt::Debug for EmbeddedCluster<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedCluster")
            .field("primary", &self.primary)
            .finish_non_exhaustive()
    }
}

impl<K, V> EmbeddedCluster<K, V>
where
    K: Clone + Eq + Hash + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// A cluster with only a primary, timed by `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        let log = Arc::new(Log {
            clock,
            entries: RwLock::new(Vec::new()),
        });
        let primary = Arc::new(EmbeddedNode::new("primary", Role::Primary, log.clone()));
        EmbeddedCluster { log, primary }
    }

    /// The primary.
    pub fn primary(&self) -> Arc<EmbeddedNode<K, V>> {
        self.primary.clone()
    }

    /// Adds a replica that sees each write `delay` after it was made. It
    /// starts from the beginning of the log.
    pub fn add_replica(&self, name: &str, delay: Duration) -> Arc<EmbeddedNode<K, V>> {
        Arc::new(EmbeddedNode::new(
            name,
            Role::Replica {
                delay: Mutex::new(delay),
            },
            self.log.clone(),
        ))
    }
}
