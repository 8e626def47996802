//! The read/write splitting router.
//!
//! Writes, locking reads and critical reads go to the primary. Other reads
//! go to a replica that is in rotation *and* fresh enough for the session:
//! under [`Consistency::ReadYourWrites`] a replica must have replayed past
//! the session's last write, under [`Consistency::Monotonic`] past the
//! newest position the session has seen. When no replica is fresh enough
//! the router waits up to [`RouterBuilder::rw_wait`] for one to catch up and
//! then falls back to the primary. A replica miss can be retried on the
//! primary ("second read"). Every call to a node runs under a timeout.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::node_error;
use crate::{LogPosition, Session, StoreError};

/// A database node the router can send work to: the primary or a replica.
///
/// Implemented by [`EmbeddedNode`](crate::EmbeddedNode) and, with the
/// `postgres` feature, by `PgNode`.
pub trait Node: Send + Sync + fmt::Debug + 'static {
    /// A short name for errors and reports.
    fn name(&self) -> &str;

    /// The log position this node has applied: the end of the log on the
    /// primary, the replayed position on a replica.
    fn position(&self) -> impl Future<Output = kuai_core::Result<LogPosition>> + Send;
}

/// How replicas are chosen for reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RoutingPolicy {
    /// Every read goes to the primary (replicas are standbys only).
    PrimaryOnly,
    /// Replicas in turn.
    #[default]
    RoundRobin,
    /// The replica that has replayed furthest (by the last known positions).
    LeastLag,
}

/// The consistency a read needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    /// Any replica in rotation; may be stale.
    Eventual,
    /// The session's own writes must be visible.
    ReadYourWrites,
    /// Never older than anything the session has read or written.
    Monotonic,
    /// Critical business: always the primary.
    Critical,
    /// A locking read (`SELECT … FOR UPDATE`): always the primary.
    Locking,
}

/// Which node served a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The primary.
    Primary,
    /// The replica at this index (in the order given to the builder).
    Replica(usize),
}

/// The answer to a routed read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed<T> {
    /// The value read (`None`: not found on the node that answered).
    pub value: Option<T>,
    /// Which node answered.
    pub target: Target,
    /// Whether this was a second read on the primary after a replica miss.
    pub second_read: bool,
}

/// Why a replica is out of rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutReason {
    /// Its lag exceeded the threshold.
    Lagging(u64),
    /// It failed or timed out.
    Unreachable(String),
}

/// A replica's state as seen by the router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaStatus {
    /// Index of the replica.
    pub index: usize,
    /// The node's name.
    pub name: String,
    /// Last known replayed position.
    pub position: LogPosition,
    /// Lag behind the primary at the last check.
    pub lag: u64,
    /// `None` when in rotation, otherwise why not.
    pub out: Option<OutReason>,
}

/// Counters of routing decisions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouterStats {
    /// Reads served by a replica.
    pub replica_reads: u64,
    /// Reads served by the primary (for any reason).
    pub primary_reads: u64,
    /// Reads that went to the primary because no replica was fresh enough
    /// within the wait bound.
    pub fallbacks: u64,
    /// Second reads on the primary after a replica miss.
    pub second_reads: u64,
    /// Times a read waited for a replica to catch up.
    pub waits: u64,
    /// Replica calls that failed or timed out.
    pub replica_errors: u64,
    /// Writes sent to the primary.
    pub writes: u64,
}

#[derive(Debug, Default)]
struct Counters {
    replica_reads: AtomicU64,
    primary_reads: AtomicU64,
    fallbacks: AtomicU64,
    second_reads: AtomicU64,
    waits: AtomicU64,
    replica_errors: AtomicU64,
    writes: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

#[derive(Debug)]
struct Slot<N> {
    node: Arc<N>,
    state: Mutex<SlotState>,
}

#[derive(Debug, Clone, Default)]
struct SlotState {
    position: LogPosition,
    lag: u64,
    out: Option<OutReason>,
}

/// Configures a [`Router`].
#[derive(Debug, Clone)]
pub struct RouterBuilder {
    policy: RoutingPolicy,
    max_lag: u64,
    readmit_lag: Option<u64>,
    rw_wait: Duration,
    poll_interval: Duration,
    op_timeout: Duration,
    position_timeout: Duration,
    second_read: bool,
}

impl Default for RouterBuilder {
    fn default() -> Self {
        RouterBuilder {
            policy: RoutingPolicy::RoundRobin,
            max_lag: 16 * 1024 * 1024,
            readmit_lag: None,
            rw_wait: Duration::from_millis(20),
            poll_interval: Duration::from_millis(2),
            op_timeout: Duration::from_secs(2),
            position_timeout: Duration::from_millis(500),
            second_read: true,
        }
    }
}

impl RouterBuilder {
    /// How replicas are chosen (default round-robin).
    pub fn policy(mut self, policy: RoutingPolicy) -> Self {
        self.policy = policy;
        self
    }
    /// A replica further behind the primary than this (in log units: WAL
    /// bytes for PostgreSQL, entries for the embedded backend) is taken out
    /// of rotation by [`Router::check_replicas`]. Default 16 MiB.
    pub fn max_lag(mut self, lag: u64) -> Self {
        self.max_lag = lag;
        self
    }
    /// A replica out of rotation is re-admitted once its lag is at most
    /// this (default `max_lag / 2`, a hysteresis band against flapping).
    pub fn readmit_lag(mut self, lag: u64) -> Self {
        self.readmit_lag = Some(lag);
        self
    }
    /// How long a read-your-writes or monotonic read waits for a replica to
    /// catch up before going to the primary (default 20 ms; zero: never wait).
    pub fn rw_wait(mut self, wait: Duration) -> Self {
        self.rw_wait = wait;
        self
    }
    /// How often a waiting read re-checks replica positions (default 2 ms).
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.poll_interval = every.max(Duration::from_micros(100));
        self
    }
    /// The bound on every read or write sent to a node (default 2 s).
    pub fn op_timeout(mut self, timeout: Duration) -> Self {
        self.op_timeout = timeout;
        self
    }
    /// The bound on every log-position query (default 500 ms).
    pub fn position_timeout(mut self, timeout: Duration) -> Self {
        self.position_timeout = timeout;
        self
    }
    /// Whether a replica miss (`None`) is retried on the primary (default on).
    pub fn second_read(mut self, on: bool) -> Self {
        self.second_read = on;
        self
    }

    /// Builds the router over `primary` and `replicas`.
    pub fn build<N: Node>(self, primary: Arc<N>, replicas: Vec<Arc<N>>) -> Router<N> {
        let readmit = self
            .readmit_lag
            .unwrap_or(self.max_lag / 2)
            .min(self.max_lag);
        Router {
            primary,
            replicas: replicas
                .into_iter()
                .map(|node| Slot {
                    node,
                    state: Mutex::new(SlotState::default()),
                })
                .collect(),
            cfg: RouterBuilder {
                readmit_lag: Some(readmit),
                ..self
            },
            rr: AtomicUsize::new(0),
            counters: Counters::default(),
        }
    }
}

/// Routes reads and writes over one primary and N replicas.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::sync::Arc;
/// use std::time::Duration;
/// use kuai_core::ManualClock;
/// use kuai_store::{Consistency, EmbeddedCluster, Router, Session, Target};
///
/// let clock = ManualClock::new();
/// let cluster = EmbeddedCluster::<u32, String>::new(Arc::new(clock.clone()));
/// let replica = cluster.add_replica("r1", Duration::from_millis(100));
/// let router = Router::builder().build(cluster.primary(), vec![replica]);
///
/// let mut session = Session::new();
/// router.write(&mut session, |p| async move { p.put(1, "v1".into()).await }).await.unwrap();
/// // The replica has not replayed the write yet: read-your-writes goes to the primary.
/// let r = router
///     .read(&mut session, Consistency::ReadYourWrites, |n| async move { n.get(&1).await })
///     .await
///     .unwrap();
/// assert_eq!((r.value.as_deref(), r.target), (Some("v1"), Target::Primary));
/// clock.advance(Duration::from_millis(100));
/// let r = router
///     .read(&mut session, Consistency::ReadYourWrites, |n| async move { n.get(&1).await })
///     .await
///     .unwrap();
/// assert_eq!((r.value.as_deref(), r.target), (Some("v1"), Target::Replica(0)));
/// # }
/// ```
#[derive(Debug)]
pub struct Router<N> {
    primary: Arc<N>,
    replicas: Vec<Slot<N>>,
    cfg: RouterBuilder,
    rr: AtomicUsize,
    counters: Counters,
}

async fn bounded<T>(
    after: Duration,
    what: &str,
    fut: impl Future<Output = kuai_core::Result<T>>,
) -> Result<kuai_core::Result<T>, StoreError> {
    tokio::time::timeout(after, fut)
        .await
        .map_err(|_| StoreError::Timeout {
            what: what.to_string(),
            after,
        })
}

/// Whether an error means the node is unwell (rather than the request bad).
fn is_node_failure(e: &kuai_core::Error) -> bool {
    matches!(
        e.kind(),
        kuai_core::ErrorKind::Backend
            | kuai_core::ErrorKind::Timeout
            | kuai_core::ErrorKind::Closed
    )
}

impl Router<()> {
    /// A builder with defaults that suit most deployments.
    pub fn builder() -> RouterBuilder {
        RouterBuilder::default()
    }
}

impl<N: Node> Router<N> {
    /// The primary.
    pub fn primary(&self) -> &Arc<N> {
        &self.primary
    }

    /// The replicas, in the order given to the builder.
    pub fn replicas(&self) -> impl Iterator<Item = &Arc<N>> {
        self.replicas.iter().map(|s| &s.node)
    }

    /// Counters of routing decisions so far.
    pub fn stats(&self) -> RouterStats {
        let c = &self.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RouterStats {
            replica_reads: l(&c.replica_reads),
            primary_reads: l(&c.primary_reads),
            fallbacks: l(&c.fallbacks),
            second_reads: l(&c.second_reads),
            waits: l(&c.waits),
            replica_errors: l(&c.replica_errors),
            writes: l(&c.writes),
        }
    }

    /// The replicas' states as of the last check or read.
    pub fn replica_status(&self) -> Vec<ReplicaStatus> {
        self.replicas
            .iter()
            .enumerate()
            .map(|(index, slot)| {
                let st = self.state(slot);
                ReplicaStatus {
                    index,
                    name: slot.node.name().to_string(),
                    position: st.position,
                    lag: st.lag,
                    out: st.out,
                }
            })
            .collect()
    }

    fn state(&self, slot: &Slot<N>) -> SlotState {
        slot.state.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn update(&self, slot: &Slot<N>, f: impl FnOnce(&mut SlotState)) {
        if let Ok(mut s) = slot.state.lock() {
            f(&mut s);
        }
    }

    fn primary_down(
        &self,
        what: &str,
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    ) -> StoreError {
        StoreError::PrimaryUnavailable {
            node: self.primary.name().to_string(),
            what: what.to_string(),
            source,
        }
    }

    async fn primary_position(&self, what: &str) -> Result<LogPosition, StoreError> {
        match bounded(self.cfg.position_timeout, what, self.primary.position()).await {
            Ok(Ok(p)) => Ok(p),
            Ok(Err(e)) => Err(self.primary_down(what, Some(Box::new(e)))),
            Err(t) => Err(self.primary_down(what, Some(Box::new(t)))),
        }
    }

    /// Runs a write on the primary and records its log position in
    /// `session`. If the write succeeded but its position could not be read,
    /// the error says so: the write is committed, but the session cannot
    /// prove it.
    pub async fn write<T, F, Fut>(&self, session: &mut Session, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(Arc<N>) -> Fut,
        Fut: Future<Output = kuai_core::Result<T>>,
    {
        bump(&self.counters.writes);
        let value = match bounded(self.cfg.op_timeout, "write", f(self.primary.clone())).await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) if is_node_failure(&e) => {
                return Err(self.primary_down("write", Some(Box::new(e))));
            }
            Ok(Err(e)) => return Err(node_error(self.primary.name(), "write", e)),
            Err(t) => return Err(self.primary_down("write", Some(Box::new(t)))),
        };
        let at = self
            .primary_position("log position after a committed write")
            .await?;
        session.record_write(at);
        Ok(value)
    }

    async fn read_primary<T, F, Fut>(
        &self,
        session: &mut Session,
        consistency: Consistency,
        f: &F,
        second_read: bool,
    ) -> Result<Routed<T>, StoreError>
    where
        F: Fn(Arc<N>) -> Fut,
        Fut: Future<Output = kuai_core::Result<Option<T>>>,
    {
        bump(&self.counters.primary_reads);
        let value = match bounded(self.cfg.op_timeout, "read", f(self.primary.clone())).await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) if is_node_failure(&e) => {
                return Err(self.primary_down("read", Some(Box::new(e))));
            }
            Ok(Err(e)) => return Err(node_error(self.primary.name(), "read", e)),
            Err(t) => return Err(self.primary_down("read", Some(Box::new(t)))),
        };
        if consistency == Consistency::Monotonic {
            let at = self.primary_position("log position after a read").await?;
            session.record_read(at);
        }
        Ok(Routed {
            value,
            target: Target::Primary,
            second_read,
        })
    }

    /// Replica indexes in rotation, in the order the policy wants them tried.
    fn candidates(&self) -> Vec<usize> {
        let n = self.replicas.len();
        if n == 0 {
            return Vec::new();
        }
        let start = self.rr.fetch_add(1, Ordering::Relaxed) % n;
        let mut out: Vec<(usize, LogPosition)> = (0..n)
            .map(|i| (start + i) % n)
            .filter_map(|i| {
                let st = self.state(&self.replicas[i]);
                st.out.is_none().then_some((i, st.position))
            })
            .collect();
        if self.cfg.policy == RoutingPolicy::LeastLag {
            // Stable sort keeps the round-robin order among equals.
            out.sort_by_key(|c| std::cmp::Reverse(c.1));
        }
        out.into_iter().map(|(i, _)| i).collect()
    }

    fn take_out(&self, i: usize, why: String) {
        bump(&self.counters.replica_errors);
        self.update(&self.replicas[i], |s| {
            s.out = Some(OutReason::Unreachable(why))
        });
    }

    /// Asks replica `i` for its position (bounded); `None` when it failed
    /// (it is then out of rotation).
    async fn fresh_position(&self, i: usize) -> Option<LogPosition> {
        let slot = &self.replicas[i];
        match bounded(
            self.cfg.position_timeout,
            "replica position",
            slot.node.position(),
        )
        .await
        {
            Ok(Ok(p)) => {
                self.update(slot, |s| s.position = s.position.max(p));
                Some(p)
            }
            Ok(Err(e)) => {
                self.take_out(i, e.to_string());
                None
            }
            Err(t) => {
                self.take_out(i, t.to_string());
                None
            }
        }
    }

    /// Routes a read. `f` runs on the chosen node and may run twice (a
    /// replica miss retried on the primary, or a failed replica replaced).
    pub async fn read<T, F, Fut>(
        &self,
        session: &mut Session,
        consistency: Consistency,
        f: F,
    ) -> Result<Routed<T>, StoreError>
    where
        F: Fn(Arc<N>) -> Fut,
        Fut: Future<Output = kuai_core::Result<Option<T>>>,
    {
        let required = match consistency {
            Consistency::Critical | Consistency::Locking => {
                return self.read_primary(session, consistency, &f, false).await;
            }
            Consistency::Eventual => LogPosition::ZERO,
            Consistency::ReadYourWrites => session.last_write(),
            Consistency::Monotonic => session.last_seen(),
        };
        if self.cfg.policy == RoutingPolicy::PrimaryOnly || self.replicas.is_empty() {
            return self.read_primary(session, consistency, &f, false).await;
        }
        let deadline = tokio::time::Instant::now() + self.cfg.rw_wait;
        loop {
            let candidates = self.candidates();
            if candidates.is_empty() {
                break;
            }
            for i in candidates {
                let slot = &self.replicas[i];
                let mut pos = self.state(slot).position;
                if pos < required {
                    match self.fresh_position(i).await {
                        Some(p) if p >= required => pos = p,
                        _ => continue,
                    }
                }
                match bounded(self.cfg.op_timeout, "replica read", f(slot.node.clone())).await {
                    Ok(Ok(Some(v))) => {
                        bump(&self.counters.replica_reads);
                        if consistency == Consistency::Monotonic {
                            if let Some(after) = self.fresh_position(i).await {
                                pos = pos.max(after);
                            }
                        }
                        session.record_read(pos);
                        return Ok(Routed {
                            value: Some(v),
                            target: Target::Replica(i),
                            second_read: false,
                        });
                    }
                    Ok(Ok(None)) => {
                        if self.cfg.second_read {
                            bump(&self.counters.second_reads);
                            return self.read_primary(session, consistency, &f, true).await;
                        }
                        bump(&self.counters.replica_reads);
                        session.record_read(pos);
                        return Ok(Routed {
                            value: None,
                            target: Target::Replica(i),
                            second_read: false,
                        });
                    }
                    // The replica is unwell: out of rotation, try elsewhere.
                    Ok(Err(e)) if is_node_failure(&e) => self.take_out(i, e.to_string()),
                    // The query itself is refused: the primary would refuse it too.
                    Ok(Err(e)) => return Err(node_error(slot.node.name(), "read", e)),
                    Err(t) => self.take_out(i, t.to_string()),
                }
            }
            let now = tokio::time::Instant::now();
            if required == LogPosition::ZERO || now >= deadline {
                break;
            }
            bump(&self.counters.waits);
            tokio::time::sleep(self.cfg.poll_interval.min(deadline - now)).await;
        }
        bump(&self.counters.fallbacks);
        self.read_primary(session, consistency, &f, false).await
    }

    /// Checks every replica's lag against the primary: a replica beyond
    /// `max_lag` or failing is taken out of rotation; one out of rotation
    /// whose lag is back within `readmit_lag` is re-admitted. Fails only when
    /// the primary cannot be reached (the replicas are then left as they are).
    pub async fn check_replicas(&self) -> Result<Vec<ReplicaStatus>, StoreError> {
        let head = self
            .primary_position("primary position for lag check")
            .await?;
        let max_lag = self.cfg.max_lag;
        let readmit = self.cfg.readmit_lag.unwrap_or(max_lag / 2);
        for (i, slot) in self.replicas.iter().enumerate() {
            match bounded(
                self.cfg.position_timeout,
                "replica position",
                slot.node.position(),
            )
            .await
            {
                Ok(Ok(p)) => {
                    let lag = p.lag_behind(head);
                    self.update(slot, |s| {
                        s.position = p;
                        s.lag = lag;
                        s.out = match s.out.take() {
                            None if lag > max_lag => Some(OutReason::Lagging(lag)),
                            None => None,
                            Some(_) if lag <= readmit => None,
                            Some(OutReason::Lagging(_)) => Some(OutReason::Lagging(lag)),
                            Some(other) => Some(other),
                        };
                    });
                }
                Ok(Err(e)) => self.take_out(i, e.to_string()),
                Err(t) => self.take_out(i, t.to_string()),
            }
        }
        Ok(self.replica_status())
    }

    /// Runs [`check_replicas`](Router::check_replicas) every `every` on the
    /// current tokio runtime until the returned handle is dropped.
    pub fn spawn_monitor(self: &Arc<Self>, every: Duration) -> MonitorHandle {
        let router = Arc::downgrade(self);
        let every = every.max(Duration::from_millis(1));
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(router) = router.upgrade() else {
                    break;
                };
                // A primary outage is reported to readers and writers by
                // their own calls; the monitor just tries again next tick.
                let _ = router.check_replicas().await;
            }
        });
        MonitorHandle { task }
    }
}

/// Stops the lag monitor when dropped.
#[derive(Debug)]
pub struct MonitorHandle {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MonitorHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}
