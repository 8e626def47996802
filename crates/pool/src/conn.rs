//! An async connection pool generic over [`kuai_core::Manager`].
//!
//! One mutex guards the idle list, the slot count and the FIFO queue of
//! waiters. A released connection (or a freed slot) is handed straight to
//! the oldest waiter, so no newcomer can barge past a waiter and nobody
//! starves. The fast path — an idle connection that needs no health check —
//! takes the lock once, reads the coarse clock at most once and arms no
//! timer.
//!
//! Every slot is owned by exactly one thing at a time — an idle entry, a
//! checked-out [`PooledConn`], an acquire in the middle of connecting or
//! checking, or a hand-off in flight to a waiter — and each of those gives it
//! back when dropped (including when an `acquire` future is cancelled by a
//! timeout), so slots never leak.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use kuai_core::{Clock, Manager};
use tokio::sync::oneshot;

use crate::error::{PoolError, PoolResult};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use crate::sync::std_lock as lock;

/// When a connection is health-checked ([`Manager::check`]) on checkout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckOnCheckout {
    /// Never (rely on `is_broken`, background validation and callers
    /// reporting errors with [`PooledConn::mark_broken`]).
    Never,
    /// Before every checkout: a round trip each time.
    Always,
    /// Only if the connection was not used or checked within this window.
    /// A connection that a caller finds dead is marked broken and closed,
    /// so no caller sees the same dead connection twice.
    IfUnusedFor(Duration),
}

/// What `get` does when all `max_size` connections are in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exhaustion {
    /// Wait (FIFO) for a connection, up to the acquire timeout.
    Wait,
    /// Open a temporary connection beyond the limit — at most `max_extra` at
    /// once — that is closed, not pooled, when returned. Past `max_extra`,
    /// wait.
    Temporary {
        /// Bound on temporary connections open at once.
        max_extra: usize,
    },
}

/// Which idle connection is reused first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// The most recently returned (warm; lets extras go idle and expire).
    #[default]
    Lifo,
    /// The least recently returned (spreads use over all connections).
    Fifo,
}

/// Configures a [`ConnPool`].
pub struct ConnPoolBuilder<M> {
    manager: M,
    max_size: usize,
    min_idle: usize,
    acquire_timeout: Duration,
    exhaustion: Exhaustion,
    check: CheckOnCheckout,
    validation_interval: Option<Duration>,
    max_lifetime: Option<Duration>,
    idle_timeout: Option<Duration>,
    order: Order,
    clock: Option<Arc<dyn Clock>>,
}

impl<M> fmt::Debug for ConnPoolBuilder<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnPoolBuilder")
            .field("max_size", &self.max_size)
            .field("min_idle", &self.min_idle)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("exhaustion", &self.exhaustion)
            .field("check", &self.check)
            .field("validation_interval", &self.validation_interval)
            .field("max_lifetime", &self.max_lifetime)
            .field("idle_timeout", &self.idle_timeout)
            .field("order", &self.order)
            .finish()
    }
}

impl<M: Manager + 'static> ConnPoolBuilder<M> {
    /// Most pooled connections open at once (default 10).
    pub fn max_size(mut self, n: usize) -> Self {
        self.max_size = n;
        self
    }
    /// Connections kept open even when idle (default 0: lazy). With
    /// [`build_eager`](Self::build_eager) they are opened before the pool is
    /// returned; the background task keeps the count topped up.
    pub fn min_idle(mut self, n: usize) -> Self {
        self.min_idle = n;
        self
    }
    /// How long `get` may take in total: waiting, connecting and checking
    /// (default 30 s).
    pub fn acquire_timeout(mut self, d: Duration) -> Self {
        self.acquire_timeout = d;
        self
    }
    /// Wait, or open temporary connections, when exhausted (default wait).
    pub fn exhaustion(mut self, e: Exhaustion) -> Self {
        self.exhaustion = e;
        self
    }
    /// The checkout health check (default: if unused for 500 ms).
    pub fn check_on_checkout(mut self, c: CheckOnCheckout) -> Self {
        self.check = c;
        self
    }
    /// Checks idle connections in the background this often (default off).
    pub fn validation_interval(mut self, d: Duration) -> Self {
        self.validation_interval = Some(d);
        self
    }
    /// Closes connections older than this (default: never).
    pub fn max_lifetime(mut self, d: Duration) -> Self {
        self.max_lifetime = Some(d);
        self
    }
    /// Closes connections idle longer than this, down to `min_idle`
    /// (default: never).
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.idle_timeout = Some(d);
        self
    }
    /// LIFO (default) or FIFO reuse of idle connections.
    pub fn order(mut self, o: Order) -> Self {
        self.order = o;
        self
    }
    /// The clock for lifetimes, idle timeouts and the check window.
    /// Default: the coarse monotonic clock (`CLOCK_MONOTONIC_COARSE` on
    /// Linux: a few ms of resolution, a fraction of the cost of a precise
    /// read, which matters on the checkout fast path). The acquire timeout
    /// always uses tokio's timer.
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    fn validate(&self) -> PoolResult<()> {
        let bad = |m: &str| Err(PoolError::Config(format!("connection pool: {m}")));
        let zero = |d: Option<Duration>| d.is_some_and(|d| d.is_zero());
        if self.max_size == 0 {
            return bad("max_size must be > 0");
        }
        if self.min_idle > self.max_size {
            return bad("min_idle > max_size");
        }
        if self.acquire_timeout.is_zero() {
            return bad("acquire_timeout must be > 0");
        }
        if zero(self.validation_interval) || zero(self.max_lifetime) || zero(self.idle_timeout) {
            return bad("validation_interval, max_lifetime and idle_timeout must be > 0 when set");
        }
        if self.exhaustion == (Exhaustion::Temporary { max_extra: 0 }) {
            return bad("Exhaustion::Temporary needs max_extra > 0");
        }
        Ok(())
    }

    fn needs_maintenance(&self) -> bool {
        self.min_idle > 0
            || self.validation_interval.is_some()
            || self.max_lifetime.is_some()
            || self.idle_timeout.is_some()
    }

    /// Checks the configuration and builds a lazily filled pool. When
    /// `min_idle`, validation, lifetime or idle timeout are set, a background
    /// task is spawned, which needs a tokio runtime.
    pub fn build(self) -> PoolResult<ConnPool<M>> {
        self.validate()?;
        let maintain = self.needs_maintenance();
        let runtime = if maintain {
            Some(tokio::runtime::Handle::try_current().map_err(|_| {
                PoolError::Config(
                    "connection pool: min_idle / validation / lifetimes need a tokio runtime \
                     for their background task"
                        .into(),
                )
            })?)
        } else {
            None
        };
        let needs_clock = matches!(self.check, CheckOnCheckout::IfUnusedFor(_))
            || self.max_lifetime.is_some()
            || self.idle_timeout.is_some()
            || self.validation_interval.is_some();
        let tick = [
            self.validation_interval,
            self.idle_timeout.map(|d| d / 2),
            self.max_lifetime.map(|d| d / 4),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(Duration::from_secs(30))
        .clamp(Duration::from_millis(10), Duration::from_secs(30));
        let inner = Arc::new(Inner {
            manager: self.manager,
            cfg: Config {
                max_size: self.max_size,
                min_idle: self.min_idle,
                acquire_timeout: self.acquire_timeout,
                exhaustion: self.exhaustion,
                check: self.check,
                validation_interval: self.validation_interval,
                max_lifetime: self.max_lifetime,
                idle_timeout: self.idle_timeout,
                order: self.order,
                needs_clock,
            },
            clock: match self.clock {
                Some(clock) => Ticks::Clock {
                    base: clock.now(),
                    clock,
                },
                None => Ticks::Coarse,
            },
            state: Mutex::new(State {
                idle: VecDeque::with_capacity(self.max_size.min(4096)),
                size: 0,
                temporary: 0,
                waiters: VecDeque::new(),
                closed: false,
                stats: ConnStats::default(),
            }),
        });
        if let Some(rt) = runtime {
            let weak = Arc::downgrade(&inner);
            rt.spawn(maintenance(weak, tick));
        }
        Ok(ConnPool { inner })
    }

    /// Like [`build`](Self::build), then opens `min_idle` connections before
    /// returning (eager start); fails if any of them cannot be opened within
    /// the acquire timeout.
    pub async fn build_eager(self) -> PoolResult<ConnPool<M>> {
        let pool = self.build()?;
        pool.fill().await?;
        Ok(pool)
    }
}

#[derive(Debug)]
struct Config {
    max_size: usize,
    min_idle: usize,
    acquire_timeout: Duration,
    exhaustion: Exhaustion,
    check: CheckOnCheckout,
    validation_interval: Option<Duration>,
    max_lifetime: Option<Duration>,
    idle_timeout: Option<Duration>,
    order: Order,
    needs_clock: bool,
}

/// Counters of a [`ConnPool`] (monotonic since the pool was built).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnStats {
    /// Successful checkouts.
    pub acquired: u64,
    /// Checkouts that had to wait for a connection.
    pub waited: u64,
    /// Checkouts that failed with a timeout.
    pub timeouts: u64,
    /// Connections opened (pooled and temporary).
    pub connects: u64,
    /// Connection attempts that failed.
    pub connect_errors: u64,
    /// Health checks run (on checkout and in the background).
    pub checks: u64,
    /// Health checks that failed (the connection was closed).
    pub check_failures: u64,
    /// Connections closed because they were broken or marked broken.
    pub closed_broken: u64,
    /// Connections closed for age or idleness.
    pub closed_expired: u64,
    /// Temporary connections opened beyond `max_size`.
    pub temporary_opened: u64,
}

/// What the pool looks like right now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnStatus {
    /// The configured `max_size`.
    pub max_size: usize,
    /// Pooled connections open or being opened.
    pub size: usize,
    /// Of those, idle in the pool.
    pub idle: usize,
    /// Of those, checked out (or being opened/checked).
    pub in_use: usize,
    /// Temporary connections open beyond `max_size`.
    pub temporary: usize,
    /// Callers waiting for a connection.
    pub waiting: usize,
    /// The counters.
    pub stats: ConnStats,
}

/// A point in pool time: nanoseconds on the pool's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Tick(u64);

impl Tick {
    #[inline]
    fn saturating_duration_since(self, earlier: Tick) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

/// Where pool time comes from.
enum Ticks {
    /// The coarse monotonic clock (the default).
    Coarse,
    /// A [`Clock`] given to the builder (tests drive a `ManualClock`).
    Clock {
        clock: Arc<dyn Clock>,
        base: Instant,
    },
}

impl Ticks {
    #[inline]
    fn now(&self) -> Tick {
        match self {
            Ticks::Coarse => Tick(coarse_nanos()),
            Ticks::Clock { clock, base } => {
                let d = clock.now().saturating_duration_since(*base);
                Tick(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            }
        }
    }
}

/// `CLOCK_MONOTONIC_COARSE`, read through the vDSO: no TSC read.
#[cfg(target_os = "linux")]
#[inline]
fn coarse_nanos() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    let secs = u64::try_from(t.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(t.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

/// Elsewhere: the precise monotonic clock.
#[cfg(not(target_os = "linux"))]
#[inline]
fn coarse_nanos() -> u64 {
    static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let base = *BASE.get_or_init(Instant::now);
    u64::try_from(base.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

struct Entry<R> {
    conn: R,
    created: Tick,
    /// When it was last checked out, checked, or (with an idle timeout)
    /// returned.
    last_used: Tick,
}

enum Handoff<R> {
    Conn(Entry<R>),
    /// A slot: the waiter may open a new connection.
    Slot,
}

struct State<R> {
    idle: VecDeque<Entry<R>>,
    size: usize,
    temporary: usize,
    waiters: VecDeque<oneshot::Sender<Handoff<R>>>,
    closed: bool,
    stats: ConnStats,
}

struct Inner<M: Manager> {
    manager: M,
    cfg: Config,
    clock: Ticks,
    state: Mutex<State<M::Resource>>,
}

/// An async pool of connections made by a [`Manager`].
///
/// ```
/// use std::time::Duration;
/// use kuai_core::{Manager, Result};
/// use kuai_pool::ConnPool;
///
/// struct Numbers;
/// impl Manager for Numbers {
///     type Resource = u32;
///     async fn connect(&self) -> Result<u32> { Ok(7) }
///     async fn check(&self, _: &mut u32) -> Result<()> { Ok(()) }
/// }
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let pool = ConnPool::builder(Numbers)
///     .max_size(4)
///     .acquire_timeout(Duration::from_secs(1))
///     .build()?;
/// {
///     let conn = pool.get().await?;
///     assert_eq!(*conn, 7);
/// } // returned to the pool
/// assert_eq!(pool.status().idle, 1);
/// # Ok::<(), kuai_pool::PoolError>(()) }).unwrap();
/// ```
pub struct ConnPool<M: Manager> {
    inner: Arc<Inner<M>>,
}

impl<M: Manager> Clone for ConnPool<M> {
    fn clone(&self) -> Self {
        ConnPool {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<M: Manager> fmt::Debug for ConnPool<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnPool")
            .field("config", &self.inner.cfg)
            .field("status", &self.status())
            .finish()
    }
}

/// What an acquire does next, decided under the lock.
enum Step<R> {
    Got(Entry<R>),
    Connect { temporary: bool },
    Wait(oneshot::Receiver<Handoff<R>>),
    Closed,
}

impl<M: Manager + 'static> ConnPool<M> {
    /// A builder for a pool of `manager`'s connections.
    pub fn builder(manager: M) -> ConnPoolBuilder<M> {
        ConnPoolBuilder {
            manager,
            max_size: 10,
            min_idle: 0,
            acquire_timeout: Duration::from_secs(30),
            exhaustion: Exhaustion::Wait,
            check: CheckOnCheckout::IfUnusedFor(Duration::from_millis(500)),
            validation_interval: None,
            max_lifetime: None,
            idle_timeout: None,
            order: Order::Lifo,
            clock: None,
        }
    }
}

impl<M: Manager> ConnPool<M> {
    /// Checks out a connection: an idle one (health-checked as configured),
    /// a new one if below `max_size`, a temporary one if so configured, or
    /// the next one returned. Fails with [`PoolError::Timeout`] after the
    /// acquire timeout, [`PoolError::Backend`] if connecting fails, or
    /// [`PoolError::Closed`].
    pub async fn get(&self) -> PoolResult<PooledConn<'_, M>> {
        let live = self.inner.acquire().await?;
        Ok(PooledConn {
            live: Some(live),
            broken: false,
            home: ConnHome::Borrowed(&self.inner),
        })
    }

    /// Like [`get`](Self::get), but the guard keeps the pool alive and can
    /// move into a spawned task.
    pub async fn get_owned(&self) -> PoolResult<PooledConn<'static, M>>
    where
        M: 'static,
    {
        let live = self.inner.acquire().await?;
        Ok(PooledConn {
            live: Some(live),
            broken: false,
            home: ConnHome::Owned(Arc::clone(&self.inner)),
        })
    }

    /// Opens connections until `min_idle` are idle (eager start). Returns
    /// how many were opened.
    pub async fn fill(&self) -> PoolResult<usize> {
        let mut opened = 0;
        while let Some(slot) = self.inner.reserve_for_fill() {
            let created = tokio::time::timeout(
                self.inner.cfg.acquire_timeout,
                self.inner.open(slot.temporary),
            )
            .await;
            slot.defuse();
            match created {
                Ok(Ok(entry)) => {
                    self.inner.put_idle(entry);
                    opened += 1;
                }
                Ok(Err(e)) => {
                    self.inner.release_slot(false);
                    return Err(e);
                }
                Err(_) => {
                    self.inner.release_slot(false);
                    return Err(PoolError::Timeout(self.inner.cfg.acquire_timeout));
                }
            }
        }
        Ok(opened)
    }

    /// Runs one round of maintenance now: closes expired idle connections,
    /// validates idle ones not used within the validation interval, and
    /// tops up to `min_idle`. The background task calls this periodically.
    pub async fn maintain(&self) {
        self.inner.maintain().await;
    }

    /// Closes the pool: idle connections are closed, waiters get
    /// [`PoolError::Closed`], checked-out connections are closed on return.
    pub fn close(&self) {
        let (idle, waiters) = {
            let mut st = lock(&self.inner.state);
            st.closed = true;
            let idle: Vec<_> = st.idle.drain(..).collect();
            st.size -= idle.len();
            (idle, std::mem::take(&mut st.waiters))
        };
        drop(waiters);
        drop(idle);
    }

    /// The pool's current size, idle count, waiters and counters.
    pub fn status(&self) -> ConnStatus {
        let st = lock(&self.inner.state);
        ConnStatus {
            max_size: self.inner.cfg.max_size,
            size: st.size,
            idle: st.idle.len(),
            in_use: st.size - st.idle.len(),
            temporary: st.temporary,
            waiting: st.waiters.iter().filter(|w| !w.is_closed()).count(),
            stats: st.stats,
        }
    }

    /// The manager.
    pub fn manager(&self) -> &M {
        &self.inner.manager
    }
}

/// Gives a counted slot back if an acquire is cancelled mid-way.
struct SlotGuard<'a, M: Manager> {
    inner: &'a Inner<M>,
    temporary: bool,
    armed: bool,
}

impl<M: Manager> SlotGuard<'_, M> {
    fn defuse(mut self) {
        self.armed = false;
    }
}

impl<M: Manager> Drop for SlotGuard<'_, M> {
    fn drop(&mut self) {
        if self.armed {
            self.inner.release_slot(self.temporary);
        }
    }
}

/// A waiter's receiver; if the wait is abandoned, whatever was already
/// handed to it goes back to the pool.
struct Waiting<'a, M: Manager> {
    inner: &'a Inner<M>,
    rx: oneshot::Receiver<Handoff<M::Resource>>,
}

impl<M: Manager> Drop for Waiting<'_, M> {
    fn drop(&mut self) {
        self.rx.close();
        if let Ok(h) = self.rx.try_recv() {
            match h {
                Handoff::Conn(entry) => self.inner.put_idle(entry),
                Handoff::Slot => self.inner.release_slot(false),
            }
        }
    }
}

/// A connection being handed to the caller.
struct Live<R> {
    conn: R,
    created: Tick,
    last_used: Tick,
    temporary: bool,
}

impl<M: Manager> Inner<M> {
    #[inline]
    fn now(&self) -> Option<Tick> {
        self.cfg.needs_clock.then(|| self.clock.now())
    }

    /// Pops an idle connection or decides what to do instead.
    #[inline]
    fn step(&self, st: &mut MutexGuard<'_, State<M::Resource>>) -> Step<M::Resource> {
        if st.closed {
            return Step::Closed;
        }
        let popped = match self.cfg.order {
            Order::Lifo => st.idle.pop_back(),
            Order::Fifo => st.idle.pop_front(),
        };
        if let Some(e) = popped {
            return Step::Got(e);
        }
        while st.waiters.front().is_some_and(|w| w.is_closed()) {
            st.waiters.pop_front();
        }
        if st.size < self.cfg.max_size && st.waiters.is_empty() {
            st.size += 1;
            return Step::Connect { temporary: false };
        }
        if let Exhaustion::Temporary { max_extra } = self.cfg.exhaustion {
            if st.temporary < max_extra {
                st.temporary += 1;
                return Step::Connect { temporary: true };
            }
        }
        let (tx, rx) = oneshot::channel();
        if st.waiters.len() >= 32 && st.waiters.len().is_power_of_two() {
            st.waiters.retain(|w| !w.is_closed());
        }
        st.waiters.push_back(tx);
        st.stats.waited += 1;
        Step::Wait(rx)
    }

    /// Whether an idle entry must be closed (`Err`) or checked first.
    #[inline]
    fn verdict(&self, e: &Entry<M::Resource>, now: Option<Tick>) -> Result<bool, ()> {
        let Some(now) = now else {
            return Ok(self.cfg.check == CheckOnCheckout::Always);
        };
        if self
            .cfg
            .max_lifetime
            .is_some_and(|l| now.saturating_duration_since(e.created) >= l)
            || self
                .cfg
                .idle_timeout
                .is_some_and(|t| now.saturating_duration_since(e.last_used) >= t)
        {
            return Err(());
        }
        Ok(match self.cfg.check {
            CheckOnCheckout::Never => false,
            CheckOnCheckout::Always => true,
            CheckOnCheckout::IfUnusedFor(w) => now.saturating_duration_since(e.last_used) >= w,
        })
    }

    async fn acquire(&self) -> PoolResult<Live<M::Resource>> {
        // Fast path: an idle connection that needs no check. No timer.
        let step = {
            let mut st = lock(&self.state);
            let step = self.step(&mut st);
            if let Step::Got(e) = &step {
                let now = self.now();
                if let Ok(false) = self.verdict(e, now) {
                    st.stats.acquired += 1;
                    drop(st);
                    let Step::Got(mut e) = step else {
                        unreachable!("matched above")
                    };
                    if let Some(now) = now {
                        e.last_used = now;
                    }
                    return Ok(Live {
                        conn: e.conn,
                        created: e.created,
                        last_used: e.last_used,
                        temporary: false,
                    });
                }
            }
            step
        };
        let limit = self.cfg.acquire_timeout;
        match tokio::time::timeout(limit, self.acquire_slow(step)).await {
            Ok(Ok(live)) => {
                lock(&self.state).stats.acquired += 1;
                Ok(live)
            }
            Ok(Err(e)) => Err(e),
            Err(_) => {
                lock(&self.state).stats.timeouts += 1;
                Err(PoolError::Timeout(limit))
            }
        }
    }

    async fn acquire_slow(&self, mut step: Step<M::Resource>) -> PoolResult<Live<M::Resource>> {
        loop {
            match step {
                Step::Closed => return Err(PoolError::Closed),
                Step::Connect { temporary } => {
                    let slot = SlotGuard {
                        inner: self,
                        temporary,
                        armed: true,
                    };
                    let entry = self.open(temporary).await?;
                    slot.defuse();
                    return Ok(Live {
                        conn: entry.conn,
                        created: entry.created,
                        last_used: entry.last_used,
                        temporary,
                    });
                }
                Step::Wait(rx) => {
                    let mut waiting = Waiting { inner: self, rx };
                    match (&mut waiting.rx).await {
                        Ok(Handoff::Conn(e)) => step = Step::Got(e),
                        Ok(Handoff::Slot) => step = Step::Connect { temporary: false },
                        Err(_) => step = Step::Closed,
                    }
                }
                Step::Got(mut e) => {
                    // This acquire owns e's slot from here on.
                    let slot = SlotGuard {
                        inner: self,
                        temporary: false,
                        armed: true,
                    };
                    let now = self.now();
                    let healthy = match self.verdict(&e, now) {
                        Err(()) => {
                            lock(&self.state).stats.closed_expired += 1;
                            false
                        }
                        Ok(false) => true,
                        Ok(true) => self.check(&mut e.conn).await,
                    };
                    if healthy {
                        slot.defuse();
                        if let Some(now) = now {
                            e.last_used = now;
                        }
                        return Ok(Live {
                            conn: e.conn,
                            created: e.created,
                            last_used: e.last_used,
                            temporary: false,
                        });
                    }
                    drop(e);
                    // Keep the slot: take another idle one or open a new one.
                    slot.defuse();
                    step = self.replace_dead();
                }
            }
        }
    }

    /// The caller holds the slot of a connection just closed.
    fn replace_dead(&self) -> Step<M::Resource> {
        let mut st = lock(&self.state);
        if st.closed {
            st.size -= 1;
            return Step::Closed;
        }
        let popped = match self.cfg.order {
            Order::Lifo => st.idle.pop_back(),
            Order::Fifo => st.idle.pop_front(),
        };
        match popped {
            Some(e) => {
                // Swap slots: ours is freed, e's is now ours. Idle entries
                // only exist when nobody waits, so no one is skipped.
                st.size -= 1;
                Step::Got(e)
            }
            None => Step::Connect { temporary: false },
        }
    }

    async fn check(&self, conn: &mut M::Resource) -> bool {
        let ok = self.manager.check(conn).await.is_ok();
        let mut st = lock(&self.state);
        st.stats.checks += 1;
        if !ok {
            st.stats.check_failures += 1;
        }
        ok
    }

    async fn open(&self, temporary: bool) -> PoolResult<Entry<M::Resource>> {
        let res = self.manager.connect().await;
        let mut st = lock(&self.state);
        match res {
            Ok(conn) => {
                st.stats.connects += 1;
                if temporary {
                    st.stats.temporary_opened += 1;
                }
                drop(st);
                let now = self.clock.now();
                Ok(Entry {
                    conn,
                    created: now,
                    last_used: now,
                })
            }
            Err(e) => {
                st.stats.connect_errors += 1;
                Err(PoolError::Backend(e))
            }
        }
    }

    /// Frees a slot: to the oldest live waiter if any (it will connect).
    fn release_slot(&self, temporary: bool) {
        let mut st = lock(&self.state);
        if temporary {
            st.temporary -= 1;
            return;
        }
        if !st.closed {
            let mut h = Handoff::Slot;
            while let Some(tx) = st.waiters.pop_front() {
                match tx.send(h) {
                    Ok(()) => return,
                    Err(back) => h = back,
                }
            }
        }
        st.size -= 1;
    }

    /// Puts a healthy pooled connection back: to the oldest live waiter,
    /// else onto the idle list.
    fn put_idle(&self, entry: Entry<M::Resource>) {
        let mut st = lock(&self.state);
        if st.closed {
            st.size -= 1;
            drop(st);
            drop(entry);
            return;
        }
        let mut h = Handoff::Conn(entry);
        while let Some(tx) = st.waiters.pop_front() {
            match tx.send(h) {
                Ok(()) => return,
                Err(back) => h = back,
            }
        }
        if let Handoff::Conn(entry) = h {
            st.idle.push_back(entry);
        }
    }

    fn give_back(&self, live: Live<M::Resource>, broken: bool) {
        let Live {
            mut conn,
            created,
            last_used,
            temporary,
        } = live;
        if temporary {
            drop(conn);
            self.release_slot(true);
            return;
        }
        if broken || self.manager.is_broken(&conn) || self.manager.recycle(&mut conn).is_err() {
            drop(conn);
            lock(&self.state).stats.closed_broken += 1;
            self.release_slot(false);
            return;
        }
        let now = if self.cfg.idle_timeout.is_some() || self.cfg.max_lifetime.is_some() {
            Some(self.clock.now())
        } else {
            None
        };
        if let (Some(now), Some(l)) = (now, self.cfg.max_lifetime) {
            if now.saturating_duration_since(created) >= l {
                drop(conn);
                lock(&self.state).stats.closed_expired += 1;
                self.release_slot(false);
                return;
            }
        }
        // `last_used`: the return time when idle timeouts need it, else the
        // checkout time (saves a clock read per cycle).
        let last_used = match now {
            Some(now) if self.cfg.idle_timeout.is_some() => now,
            _ => last_used,
        };
        self.put_idle(Entry {
            conn,
            created,
            last_used,
        });
    }

    fn reserve_for_fill(&self) -> Option<SlotGuard<'_, M>> {
        let mut st = lock(&self.state);
        if st.closed || st.idle.len() >= self.cfg.min_idle || st.size >= self.cfg.max_size {
            return None;
        }
        st.size += 1;
        Some(SlotGuard {
            inner: self,
            temporary: false,
            armed: true,
        })
    }

    async fn maintain(&self) {
        // 1. Expired idle connections.
        let now = self.clock.now();
        let (expired, stale) = {
            let mut st = lock(&self.state);
            let mut expired = Vec::new();
            let mut stale = Vec::new();
            let mut keep = VecDeque::with_capacity(st.idle.len());
            let min_idle = self.cfg.min_idle;
            let total_idle = st.idle.len();
            for e in st.idle.drain(..) {
                let too_old = self
                    .cfg
                    .max_lifetime
                    .is_some_and(|l| now.saturating_duration_since(e.created) >= l);
                let too_idle = self
                    .cfg
                    .idle_timeout
                    .is_some_and(|t| now.saturating_duration_since(e.last_used) >= t);
                let remaining = total_idle - expired.len();
                if too_old || (too_idle && remaining > min_idle) {
                    expired.push(e);
                } else if self
                    .cfg
                    .validation_interval
                    .is_some_and(|v| now.saturating_duration_since(e.last_used) >= v)
                {
                    stale.push(e);
                } else {
                    keep.push_back(e);
                }
            }
            st.idle = keep;
            st.size -= expired.len();
            st.stats.closed_expired += expired.len() as u64;
            (expired, stale)
        };
        drop(expired);
        // 2. Validate stale idle connections outside the lock; they hold
        // their slots meanwhile.
        for mut e in stale {
            if self.check(&mut e.conn).await {
                e.last_used = self.clock.now();
                self.put_idle(e);
            } else {
                drop(e);
                lock(&self.state).stats.closed_broken += 1;
                self.release_slot(false);
            }
        }
        // 3. Top up to min_idle (errors are retried next round).
        while let Some(slot) = self.reserve_for_fill() {
            let opened = tokio::time::timeout(self.cfg.acquire_timeout, self.open(false)).await;
            slot.defuse();
            match opened {
                Ok(Ok(entry)) => self.put_idle(entry),
                _ => {
                    self.release_slot(false);
                    break;
                }
            }
        }
    }
}

async fn maintenance<M: Manager>(pool: Weak<Inner<M>>, tick: Duration) {
    loop {
        tokio::time::sleep(tick).await;
        let Some(inner) = pool.upgrade() else {
            return;
        };
        if lock(&inner.state).closed {
            return;
        }
        inner.maintain().await;
    }
}

enum ConnHome<'a, M: Manager> {
    Borrowed(&'a Inner<M>),
    Owned(Arc<Inner<M>>),
}

/// A checked-out connection; derefs to the manager's resource and goes back
/// to the pool on drop (or is closed, if broken or temporary).
pub struct PooledConn<'a, M: Manager> {
    live: Option<Live<M::Resource>>,
    broken: bool,
    home: ConnHome<'a, M>,
}

impl<M: Manager> PooledConn<'_, M> {
    /// Marks the connection as failed: it is closed on return, never reused.
    /// Call this when using it returned a connection-level error.
    pub fn mark_broken(&mut self) {
        self.broken = true;
    }

    /// Whether this is a temporary connection beyond `max_size` (closed on
    /// return).
    pub fn is_temporary(&self) -> bool {
        self.live.as_ref().is_some_and(|l| l.temporary)
    }

    /// Takes the connection out of the pool for good; its slot is freed.
    pub fn detach(mut self) -> M::Resource {
        let Some(live) = self.live.take() else {
            unreachable!("a guard holds its connection until dropped")
        };
        self.inner().release_slot(live.temporary);
        live.conn
    }

    fn inner(&self) -> &Inner<M> {
        match &self.home {
            ConnHome::Borrowed(i) => i,
            ConnHome::Owned(i) => i,
        }
    }
}

impl<M: Manager> Deref for PooledConn<'_, M> {
    type Target = M::Resource;
    #[inline]
    fn deref(&self) -> &M::Resource {
        match &self.live {
            Some(l) => &l.conn,
            None => unreachable!("a guard holds its connection until dropped"),
        }
    }
}

impl<M: Manager> DerefMut for PooledConn<'_, M> {
    #[inline]
    fn deref_mut(&mut self) -> &mut M::Resource {
        match &mut self.live {
            Some(l) => &mut l.conn,
            None => unreachable!("a guard holds its connection until dropped"),
        }
    }
}

impl<M: Manager> fmt::Debug for PooledConn<'_, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledConn")
            .field("temporary", &self.is_temporary())
            .field("broken", &self.broken)
            .finish()
    }
}

impl<M: Manager> Drop for PooledConn<'_, M> {
    #[inline]
    fn drop(&mut self) {
        if let Some(live) = self.live.take() {
            let broken = self.broken;
            self.inner().give_back(live, broken);
        }
    }
}

/// A [`Manager`] built from closures, for tests, examples and benchmarks.
pub struct FnManager<C, K> {
    connect: C,
    check: K,
}

impl<C, K> fmt::Debug for FnManager<C, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FnManager")
    }
}

impl<C, K> FnManager<C, K> {
    /// A manager whose `connect` and `check` are these closures.
    pub fn new(connect: C, check: K) -> Self {
        FnManager { connect, check }
    }
}

impl<R, C, CF, K, KF> Manager for FnManager<C, K>
where
    R: Send,
    C: Fn() -> CF + Send + Sync,
    CF: Future<Output = kuai_core::Result<R>> + Send,
    K: Fn(&mut R) -> KF + Send + Sync,
    KF: Future<Output = kuai_core::Result<()>> + Send,
{
    type Resource = R;
    fn connect(&self) -> impl Future<Output = kuai_core::Result<R>> + Send {
        (self.connect)()
    }
    fn check(&self, resource: &mut R) -> impl Future<Output = kuai_core::Result<()>> + Send {
        (self.check)(resource)
    }
}
