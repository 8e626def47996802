//! A thread pool with Java `ThreadPoolExecutor` semantics, and isolation
//! groups (bulkheads) built from several of them.
//!
//! `execute` follows Java's three steps: fewer than `core` threads → start a
//! core thread with the task; else queue it if the bounded queue has room;
//! else start a non-core thread if fewer than `max`; else apply the
//! [`RejectionPolicy`]. Non-core threads retire after `keep_alive` idle. A
//! panicking task is caught: the worker keeps running and its slot is kept.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::error::{PoolError, PoolResult};
use crate::sync::std_lock as lock;

/// A queued task, handed back by [`ThreadPool::shutdown_now`].
pub struct Job(Box<dyn FnOnce() + Send + 'static>);

impl Job {
    /// Runs the task on the calling thread.
    pub fn run(self) {
        (self.0)()
    }
}

impl fmt::Debug for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Job")
    }
}

/// The result of a task started with [`ThreadPool::submit`].
#[derive(Debug)]
pub struct TaskHandle<R> {
    rx: std::sync::mpsc::Receiver<PoolResult<R>>,
}

impl<R> TaskHandle<R> {
    /// Waits for the task: its value, [`PoolError::Panicked`], or
    /// [`PoolError::Closed`] if it will never run (handed back by
    /// `shutdown_now` and dropped, or discarded by the rejection policy).
    pub fn join(self) -> PoolResult<R> {
        self.rx.recv().unwrap_or(Err(PoolError::Closed))
    }

    /// Like [`join`](Self::join), giving up after `timeout` (`None`).
    pub fn join_timeout(&self, timeout: Duration) -> Option<PoolResult<R>> {
        match self.rx.recv_timeout(timeout) {
            Ok(r) => Some(r),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => None,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Some(Err(PoolError::Closed)),
        }
    }
}

/// What `execute` does when the queue is full and `max` threads are busy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RejectionPolicy {
    /// Return [`PoolError::Rejected`] (Java's `AbortPolicy`).
    #[default]
    Abort,
    /// Run the task on the submitting thread: natural back-pressure.
    CallerRuns,
    /// Drop the task silently (counted in `rejected`).
    Discard,
    /// Drop the oldest queued task and queue this one.
    DiscardOldest,
}

/// Configures a [`ThreadPool`].
#[derive(Debug, Clone)]
pub struct ThreadPoolBuilder {
    name: String,
    core: usize,
    max: usize,
    queue_capacity: usize,
    keep_alive: Duration,
    rejection: RejectionPolicy,
    stack_size: Option<usize>,
}

impl Default for ThreadPoolBuilder {
    fn default() -> Self {
        let n = std::thread::available_parallelism().map_or(2, |n| n.get());
        ThreadPoolBuilder {
            name: "kuai-pool".into(),
            core: n,
            max: n,
            queue_capacity: 1024,
            keep_alive: Duration::from_secs(60),
            rejection: RejectionPolicy::Abort,
            stack_size: None,
        }
    }
}

impl ThreadPoolBuilder {
    /// Thread name prefix (threads are `name-N`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }
    /// Threads kept alive even when idle (default: available parallelism).
    pub fn core_threads(mut self, n: usize) -> Self {
        self.core = n;
        self
    }
    /// Upper bound on threads; threads beyond `core` are started only when
    /// the queue is full (default: available parallelism).
    pub fn max_threads(mut self, n: usize) -> Self {
        self.max = n;
        self
    }
    /// Bound of the task queue (default 1024). 0 means direct hand-off
    /// (Java's `SynchronousQueue`): a task is queued only for an idle thread.
    pub fn queue_capacity(mut self, n: usize) -> Self {
        self.queue_capacity = n;
        self
    }
    /// How long a non-core thread waits idle before it exits (default 60 s).
    pub fn keep_alive(mut self, d: Duration) -> Self {
        self.keep_alive = d;
        self
    }
    /// What happens when both the queue and the threads are full.
    pub fn rejection_policy(mut self, p: RejectionPolicy) -> Self {
        self.rejection = p;
        self
    }
    /// Stack size of the pool's threads.
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = Some(bytes);
        self
    }

    /// Checks the configuration and builds the pool (threads start lazily,
    /// as tasks arrive).
    pub fn build(self) -> PoolResult<ThreadPool> {
        let bad = |m: &str| {
            Err(PoolError::Config(format!(
                "thread pool {:?}: {m}",
                self.name
            )))
        };
        if self.max == 0 {
            return bad("max_threads must be > 0");
        }
        if self.max < self.core {
            return bad("max_threads < core_threads");
        }
        if self.keep_alive.is_zero() {
            return bad("keep_alive must be > 0");
        }
        if self.max > 4096 {
            return bad("max_threads above 4096");
        }
        Ok(ThreadPool {
            handle: Arc::new(Handle {
                inner: Arc::new(Inner {
                    state: Mutex::new(State {
                        queue: VecDeque::new(),
                        workers: 0,
                        idle: 0,
                        run: Run::Running,
                        largest: 0,
                        completed: 0,
                        rejected: 0,
                        next_id: 0,
                    }),
                    work: Condvar::new(),
                    done: Condvar::new(),
                    panicked: AtomicU64::new(0),
                    caller_runs: AtomicU64::new(0),
                    spawn_failures: AtomicUsize::new(0),
                    queued: AtomicUsize::new(0),
                    config: self,
                }),
            }),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Run {
    Running,
    /// No new tasks; queued ones still run.
    Shutdown,
    /// No new tasks; queued ones were handed back.
    Stop,
}

struct State {
    queue: VecDeque<Job>,
    workers: usize,
    idle: usize,
    run: Run,
    largest: usize,
    completed: u64,
    rejected: u64,
    next_id: u64,
}

struct Inner {
    state: Mutex<State>,
    work: Condvar,
    done: Condvar,
    panicked: AtomicU64,
    caller_runs: AtomicU64,
    spawn_failures: AtomicUsize,
    /// Mirror of `queue.len()` (written under the lock) so an idle worker
    /// can spin on it briefly before parking.
    queued: AtomicUsize,
    config: ThreadPoolBuilder,
}

/// How many times an idle worker polls for work before it parks: a
/// park/unpark round trip costs microseconds, more than a burst of tiny
/// tasks takes to arrive.
const SPIN_POLLS: u32 = 64;

/// The user-facing handle; when the last one drops, the pool shuts down
/// gracefully (queued tasks still run, threads then exit).
struct Handle {
    inner: Arc<Inner>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.inner.begin(Run::Shutdown);
    }
}

/// A snapshot of a [`ThreadPool`]'s state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ThreadPoolMetrics {
    /// Threads alive now.
    pub pool_size: usize,
    /// Threads running a task now.
    pub active: usize,
    /// Tasks waiting in the queue.
    pub queued: usize,
    /// The most threads that were ever alive at once.
    pub largest_pool_size: usize,
    /// Tasks that finished on a pool thread (panicked ones included).
    pub completed: u64,
    /// Tasks that panicked (caught; the worker survived).
    pub panicked: u64,
    /// Tasks refused by the rejection policy (including those run by the
    /// caller or discarded).
    pub rejected: u64,
    /// Of the rejected, how many ran on the caller's thread.
    pub caller_runs: u64,
}

/// A thread pool with core/max threads, a bounded queue, keep-alive and
/// rejection policies.
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::sync::Arc;
/// use kuai_pool::{RejectionPolicy, ThreadPool};
///
/// let pool = ThreadPool::builder()
///     .name("work")
///     .core_threads(2)
///     .max_threads(4)
///     .queue_capacity(100)
///     .rejection_policy(RejectionPolicy::CallerRuns)
///     .build()?;
/// let hits = Arc::new(AtomicUsize::new(0));
/// for _ in 0..1000 {
///     let hits = Arc::clone(&hits);
///     pool.execute(move || { hits.fetch_add(1, Ordering::Relaxed); })?;
/// }
/// pool.shutdown();
/// assert!(pool.await_termination(std::time::Duration::from_secs(10)));
/// assert_eq!(hits.load(Ordering::Relaxed), 1000);
/// # Ok::<(), kuai_pool::PoolError>(())
/// ```
#[derive(Clone)]
pub struct ThreadPool {
    handle: Arc<Handle>,
}

impl ThreadPool {
    /// A builder with Java-like defaults (core = max = available
    /// parallelism, queue 1024, keep-alive 60 s, `Abort`).
    pub fn builder() -> ThreadPoolBuilder {
        ThreadPoolBuilder::default()
    }

    /// Runs `task` on the pool, or applies the rejection policy. Returns
    /// [`PoolError::Closed`] after shutdown, [`PoolError::Rejected`] under
    /// `Abort` when full.
    pub fn execute<F>(&self, task: F) -> PoolResult<()>
    where
        F: FnOnce() + Send + 'static,
    {
        self.handle.inner.execute(Job(Box::new(task)))
    }

    /// Like [`execute`](Self::execute), but returns a handle to the task's
    /// result. A panic in the task is reported by the handle (and still
    /// counted in `metrics().panicked`).
    ///
    /// ```
    /// let pool = kuai_pool::ThreadPool::builder().core_threads(1).max_threads(1).build()?;
    /// let answer = pool.submit(|| 6 * 7)?;
    /// assert_eq!(answer.join()?, 42);
    /// # Ok::<(), kuai_pool::PoolError>(())
    /// ```
    pub fn submit<F, R>(&self, task: F) -> PoolResult<TaskHandle<R>>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.execute(move || match catch_unwind(AssertUnwindSafe(task)) {
            Ok(r) => {
                let _ = tx.send(Ok(r));
            }
            Err(payload) => {
                let _ = tx.send(Err(PoolError::Panicked));
                std::panic::resume_unwind(payload);
            }
        })?;
        Ok(TaskHandle { rx })
    }

    /// Stops accepting tasks; queued tasks still run. Does not wait.
    pub fn shutdown(&self) {
        self.handle.inner.begin(Run::Shutdown);
    }

    /// Stops accepting tasks and hands back those not yet started. Running
    /// tasks finish (threads are never killed). Does not wait.
    pub fn shutdown_now(&self) -> Vec<Job> {
        self.handle.inner.begin(Run::Stop)
    }

    /// Whether `shutdown` or `shutdown_now` was called.
    pub fn is_shutdown(&self) -> bool {
        lock(&self.handle.inner.state).run != Run::Running
    }

    /// Waits until, after a shutdown, every thread has exited. Returns
    /// `false` on timeout (or if the pool was not shut down).
    pub fn await_termination(&self, timeout: Duration) -> bool {
        let inner = &self.handle.inner;
        let deadline = Instant::now() + timeout;
        let mut st = lock(&inner.state);
        loop {
            if st.run != Run::Running && st.workers == 0 {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            st = match inner.done.wait_timeout(st, deadline - now) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }

    /// A snapshot of the pool's counters.
    pub fn metrics(&self) -> ThreadPoolMetrics {
        let inner = &self.handle.inner;
        let st = lock(&inner.state);
        ThreadPoolMetrics {
            pool_size: st.workers,
            active: st.workers - st.idle,
            queued: st.queue.len(),
            largest_pool_size: st.largest,
            completed: st.completed,
            panicked: inner.panicked.load(Ordering::Relaxed),
            rejected: st.rejected,
            caller_runs: inner.caller_runs.load(Ordering::Relaxed),
        }
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.handle.inner.config.name
    }
}

impl fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.handle.inner.config;
        f.debug_struct("ThreadPool")
            .field("name", &c.name)
            .field("core", &c.core)
            .field("max", &c.max)
            .field("queue_capacity", &c.queue_capacity)
            .field("metrics", &self.metrics())
            .finish()
    }
}

enum Decision {
    Queued { wake: bool },
    Spawn(Job, u64),
    Reject(Job),
}

impl Inner {
    fn execute(self: &Arc<Self>, job: Job) -> PoolResult<()> {
        let cfg = &self.config;
        let mut st = lock(&self.state);
        if st.run != Run::Running {
            return Err(PoolError::Closed);
        }
        let decision = if st.workers < cfg.core {
            Self::reserve_worker(&mut st, job)
        } else if Self::has_room(&st, cfg.queue_capacity) {
            if st.workers == 0 {
                // core == 0 and no thread yet: start one with this task.
                Self::reserve_worker(&mut st, job)
            } else {
                st.queue.push_back(job);
                self.queued.store(st.queue.len(), Ordering::Relaxed);
                Decision::Queued { wake: st.idle > 0 }
            }
        } else if st.workers < cfg.max {
            Self::reserve_worker(&mut st, job)
        } else {
            st.rejected += 1;
            Decision::Reject(job)
        };
        match decision {
            Decision::Queued { wake } => {
                drop(st);
                if wake {
                    self.work.notify_one();
                }
                Ok(())
            }
            Decision::Spawn(job, id) => {
                drop(st);
                self.spawn_worker(job, id)
            }
            Decision::Reject(job) => match cfg.rejection {
                RejectionPolicy::Abort => {
                    Err(PoolError::Rejected("queue full and max threads busy"))
                }
                RejectionPolicy::Discard => Ok(()),
                RejectionPolicy::CallerRuns => {
                    drop(st);
                    self.caller_runs.fetch_add(1, Ordering::Relaxed);
                    job.run();
                    Ok(())
                }
                RejectionPolicy::DiscardOldest => {
                    let oldest = st.queue.pop_front();
                    if oldest.is_some() {
                        st.queue.push_back(job);
                    }
                    self.queued.store(st.queue.len(), Ordering::Relaxed);
                    drop(st);
                    drop(oldest);
                    Ok(())
                }
            },
        }
    }

    fn has_room(st: &State, capacity: usize) -> bool {
        if capacity == 0 {
            st.idle > st.queue.len()
        } else {
            st.queue.len() < capacity
        }
    }

    fn reserve_worker(st: &mut State, job: Job) -> Decision {
        st.workers += 1;
        st.largest = st.largest.max(st.workers);
        st.next_id += 1;
        Decision::Spawn(job, st.next_id)
    }

    fn spawn_worker(self: &Arc<Self>, first: Job, id: u64) -> PoolResult<()> {
        let me = Arc::clone(self);
        let mut b = std::thread::Builder::new().name(format!("{}-{id}", self.config.name));
        if let Some(s) = self.config.stack_size {
            b = b.stack_size(s);
        }
        match b.spawn(move || me.work_loop(first)) {
            Ok(_) => Ok(()),
            Err(_) => {
                self.spawn_failures.fetch_add(1, Ordering::Relaxed);
                let mut st = lock(&self.state);
                st.workers -= 1;
                st.rejected += 1;
                let last = st.workers == 0;
                drop(st);
                if last {
                    self.done.notify_all();
                }
                Err(PoolError::Rejected("the OS refused to start a thread"))
            }
        }
    }

    fn work_loop(&self, first: Job) {
        let mut next = Some(first);
        while let Some(job) = next.take() {
            if catch_unwind(AssertUnwindSafe(|| job.run())).is_err() {
                self.panicked.fetch_add(1, Ordering::Relaxed);
            }
            next = self.next_job();
        }
    }

    /// Counts the finished task, then waits for the next one; `None` means
    /// this worker exits (and has been un-counted).
    fn next_job(&self) -> Option<Job> {
        let cfg = &self.config;
        let mut st = lock(&self.state);
        st.completed += 1;
        let mut spun = false;
        loop {
            if st.run == Run::Stop {
                break;
            }
            if let Some(job) = st.queue.pop_front() {
                self.queued.store(st.queue.len(), Ordering::Relaxed);
                return Some(job);
            }
            if st.run == Run::Shutdown {
                break;
            }
            if !spun {
                // Poll briefly before parking (once per idle spell).
                spun = true;
                drop(st);
                for i in 0..SPIN_POLLS {
                    if self.queued.load(Ordering::Relaxed) > 0 {
                        break;
                    }
                    if i < SPIN_POLLS / 4 {
                        std::hint::spin_loop();
                    } else {
                        std::thread::yield_now();
                    }
                }
                st = lock(&self.state);
                continue;
            }
            let may_retire = st.workers > cfg.core;
            st.idle += 1;
            if may_retire {
                let (g, res) = match self.work.wait_timeout(st, cfg.keep_alive) {
                    Ok(r) => r,
                    Err(p) => p.into_inner(),
                };
                st = g;
                st.idle -= 1;
                if res.timed_out() && st.queue.is_empty() && st.workers > cfg.core {
                    break;
                }
            } else {
                st = match self.work.wait(st) {
                    Ok(g) => g,
                    Err(p) => p.into_inner(),
                };
                st.idle -= 1;
            }
        }
        st.workers -= 1;
        let last = st.workers == 0;
        drop(st);
        if last {
            self.done.notify_all();
        }
        None
    }

    fn begin(&self, to: Run) -> Vec<Job> {
        let mut st = lock(&self.state);
        let drained = if to == Run::Stop {
            st.run = Run::Stop;
            self.queued.store(0, Ordering::Relaxed);
            st.queue.drain(..).collect()
        } else {
            if st.run == Run::Running {
                st.run = Run::Shutdown;
            }
            Vec::new()
        };
        let none_left = st.workers == 0;
        drop(st);
        self.work.notify_all();
        if none_left {
            self.done.notify_all();
        }
        drained
    }
}

/// Named isolation groups (bulkheads): each group has its own threads and
/// queue, so a slow or stuck kind of work cannot starve another.
///
/// ```
/// use kuai_pool::{IsolatedPools, ThreadPool};
/// let pools = IsolatedPools::builder()
///     .group("fast", ThreadPool::builder().core_threads(1).max_threads(1))
///     .group("slow", ThreadPool::builder().core_threads(1).max_threads(2))
///     .build()?;
/// pools.execute("slow", || std::thread::sleep(std::time::Duration::from_millis(5)))?;
/// pools.execute("fast", || {})?;
/// assert!(pools.execute("nope", || {}).is_err());
/// pools.shutdown();
/// # Ok::<(), kuai_pool::PoolError>(())
/// ```
#[derive(Debug, Clone)]
pub struct IsolatedPools {
    groups: Arc<HashMap<String, ThreadPool>>,
}

/// Configures [`IsolatedPools`].
#[derive(Debug, Default)]
pub struct IsolatedPoolsBuilder {
    groups: Vec<(String, ThreadPoolBuilder)>,
}

impl IsolatedPoolsBuilder {
    /// Adds a group; its threads are named after it.
    pub fn group(mut self, name: impl Into<String>, pool: ThreadPoolBuilder) -> Self {
        let name = name.into();
        let pool = pool.name(name.clone());
        self.groups.push((name, pool));
        self
    }

    /// Builds every group; fails on a bad group config, a duplicate name, or
    /// no groups.
    pub fn build(self) -> PoolResult<IsolatedPools> {
        if self.groups.is_empty() {
            return Err(PoolError::Config("isolated pools: no groups".into()));
        }
        let mut groups = HashMap::new();
        for (name, b) in self.groups {
            let pool = b.build()?;
            if groups.insert(name.clone(), pool).is_some() {
                return Err(PoolError::Config(format!(
                    "isolated pools: group {name:?} defined twice"
                )));
            }
        }
        Ok(IsolatedPools {
            groups: Arc::new(groups),
        })
    }
}

impl IsolatedPools {
    /// A builder.
    pub fn builder() -> IsolatedPoolsBuilder {
        IsolatedPoolsBuilder::default()
    }

    /// Runs `task` in `group`'s pool.
    pub fn execute<F>(&self, group: &str, task: F) -> PoolResult<()>
    where
        F: FnOnce() + Send + 'static,
    {
        self.groups
            .get(group)
            .ok_or_else(|| PoolError::UnknownGroup(group.to_string()))?
            .execute(task)
    }

    /// The pool of one group.
    pub fn group(&self, name: &str) -> Option<&ThreadPool> {
        self.groups.get(name)
    }

    /// Every group's metrics, sorted by name.
    pub fn metrics(&self) -> Vec<(String, ThreadPoolMetrics)> {
        let mut v: Vec<_> = self
            .groups
            .iter()
            .map(|(n, p)| (n.clone(), p.metrics()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Shuts every group down gracefully.
    pub fn shutdown(&self) {
        self.groups.values().for_each(ThreadPool::shutdown);
    }

    /// Shuts every group down now, returning the unstarted tasks per group.
    pub fn shutdown_now(&self) -> Vec<(String, Vec<Job>)> {
        self.groups
            .iter()
            .map(|(n, p)| (n.clone(), p.shutdown_now()))
            .collect()
    }

    /// Waits for every group to terminate after a shutdown.
    pub fn await_termination(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        self.groups
            .values()
            .all(|p| p.await_termination(deadline.saturating_duration_since(Instant::now())))
    }
}

#[cfg(all(test, not(kuai_loom)))]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn pool(core: usize, max: usize, queue: usize, policy: RejectionPolicy) -> ThreadPool {
        match ThreadPool::builder()
            .core_threads(core)
            .max_threads(max)
            .queue_capacity(queue)
            .keep_alive(Duration::from_millis(20))
            .rejection_policy(policy)
            .build()
        {
            Ok(p) => p,
            Err(e) => panic!("valid config rejected: {e}"),
        }
    }

    /// A latch that holds workers until released.
    fn gate() -> (
        Arc<(Mutex<bool>, Condvar)>,
        impl Fn() + Clone + Send + 'static,
    ) {
        let g = Arc::new((Mutex::new(false), Condvar::new()));
        let g2 = Arc::clone(&g);
        let wait = move || {
            let (m, c) = &*g2;
            let mut open = lock(m);
            while !*open {
                open = c.wait(open).unwrap_or_else(|p| p.into_inner());
            }
        };
        (g, wait)
    }

    fn open(g: &Arc<(Mutex<bool>, Condvar)>) {
        *lock(&g.0) = true;
        g.1.notify_all();
    }

    #[test]
    fn java_order_core_then_queue_then_max_then_reject() {
        let p = pool(1, 2, 1, RejectionPolicy::Abort);
        let (g, wait) = gate();
        assert!(p.execute(wait.clone()).is_ok()); // core thread
        assert!(p.execute(wait.clone()).is_ok()); // queued
        assert!(p.execute(wait.clone()).is_ok()); // non-core thread
        assert!(matches!(
            p.execute(wait.clone()),
            Err(PoolError::Rejected(_))
        ));
        let m = p.metrics();
        assert_eq!((m.pool_size, m.queued, m.rejected), (2, 1, 1));
        open(&g);
        p.shutdown();
        assert!(p.await_termination(Duration::from_secs(10)));
        assert_eq!(p.metrics().completed, 3);
        assert!(matches!(p.execute(|| {}), Err(PoolError::Closed)));
    }

    #[test]
    fn non_core_threads_retire_after_keep_alive() {
        let p = pool(1, 3, 1, RejectionPolicy::Abort);
        let (g, wait) = gate();
        for _ in 0..4 {
            assert!(p.execute(wait.clone()).is_ok());
        }
        assert_eq!(p.metrics().pool_size, 3);
        open(&g);
        // Wait (by polling behaviour, not timing) for the extra threads to retire.
        let mut spins = 0;
        while p.metrics().pool_size > 1 && spins < 10_000 {
            std::thread::sleep(Duration::from_millis(2));
            spins += 1;
        }
        assert_eq!(p.metrics().pool_size, 1, "core thread stays, others retire");
        assert_eq!(p.metrics().largest_pool_size, 3);
    }

    #[test]
    fn caller_runs_discard_and_discard_oldest() {
        // CallerRuns runs on this thread.
        let p = pool(1, 1, 1, RejectionPolicy::CallerRuns);
        let (g, wait) = gate();
        assert!(p.execute(wait.clone()).is_ok());
        assert!(p.execute(|| {}).is_ok());
        let (tx, rx) = mpsc::channel();
        let me = std::thread::current().id();
        assert!(
            p.execute(move || tx.send(std::thread::current().id() == me).unwrap_or(()))
                .is_ok()
        );
        assert_eq!(rx.recv().ok(), Some(true));
        assert_eq!(p.metrics().caller_runs, 1);
        open(&g);

        // DiscardOldest drops the queued task, keeps the new one.
        let p = pool(1, 1, 1, RejectionPolicy::DiscardOldest);
        let (g, wait) = gate();
        let (tx, rx) = mpsc::channel();
        assert!(p.execute(wait.clone()).is_ok());
        let t1 = tx.clone();
        assert!(p.execute(move || t1.send("old").unwrap_or(())).is_ok());
        assert!(p.execute(move || tx.send("new").unwrap_or(())).is_ok());
        open(&g);
        assert_eq!(rx.recv().ok(), Some("new"));
        assert!(rx.recv().is_err(), "old was discarded, all senders gone");

        // Discard drops silently.
        let p = pool(1, 1, 1, RejectionPolicy::Discard);
        let (g, wait) = gate();
        assert!(p.execute(wait.clone()).is_ok());
        assert!(p.execute(|| {}).is_ok());
        assert!(p.execute(|| {}).is_ok());
        assert_eq!(p.metrics().rejected, 1);
        open(&g);
    }

    #[test]
    fn panicking_task_keeps_worker_and_slot() {
        let p = pool(1, 1, 10, RejectionPolicy::Abort);
        assert!(p.execute(|| panic!("boom (expected by the test)")).is_ok());
        let (tx, rx) = mpsc::channel();
        assert!(p.execute(move || tx.send(7).unwrap_or(())).is_ok());
        assert_eq!(rx.recv().ok(), Some(7));
        let m = p.metrics();
        assert_eq!((m.panicked, m.pool_size), (1, 1));
        assert_eq!(m.largest_pool_size, 1, "no replacement thread was needed");
    }

    #[test]
    fn submit_returns_values_panics_and_dropped_tasks() {
        let p = pool(1, 1, 10, RejectionPolicy::Discard);
        let ok = p.submit(|| 6 * 7).map(TaskHandle::join);
        assert_eq!(ok.ok().and_then(|r| r.ok()), Some(42));
        let boom = p.submit(|| -> u8 { panic!("boom (expected by the test)") });
        assert!(matches!(
            boom.map(TaskHandle::join),
            Ok(Err(PoolError::Panicked))
        ));
        let (g, wait) = gate();
        assert!(p.execute(wait).is_ok());
        let queued = p.submit(|| 1);
        // The worker may still be unwinding the panic, so the gate may be
        // queued too; either way `queued` never started.
        let left = p.shutdown_now();
        assert!(!left.is_empty());
        drop(left);
        assert!(matches!(
            queued.map(TaskHandle::join),
            Ok(Err(PoolError::Closed))
        ));
        open(&g);
        assert!(p.await_termination(Duration::from_secs(10)));
        assert_eq!(p.metrics().panicked, 1);
    }

    #[test]
    fn shutdown_now_returns_queued_tasks() {
        let p = pool(1, 1, 10, RejectionPolicy::Abort);
        let (g, wait) = gate();
        assert!(p.execute(wait).is_ok());
        for _ in 0..5 {
            assert!(p.execute(|| {}).is_ok());
        }
        let left = p.shutdown_now();
        assert_eq!(left.len(), 5);
        open(&g);
        assert!(p.await_termination(Duration::from_secs(10)));
        assert_eq!(p.metrics().completed, 1);
        left.into_iter().for_each(Job::run);
    }

    #[test]
    fn direct_handoff_queue() {
        let p = pool(0, 2, 0, RejectionPolicy::Abort);
        let (g, wait) = gate();
        assert!(p.execute(wait.clone()).is_ok());
        assert!(p.execute(wait.clone()).is_ok());
        assert!(
            p.execute(wait.clone()).is_err(),
            "no idle thread to hand to"
        );
        open(&g);
    }

    #[test]
    fn bad_configs() {
        for b in [
            ThreadPool::builder().core_threads(3).max_threads(2),
            ThreadPool::builder().core_threads(0).max_threads(0),
            ThreadPool::builder().keep_alive(Duration::ZERO),
        ] {
            assert!(matches!(b.build(), Err(PoolError::Config(_))));
        }
    }

    #[test]
    fn isolated_groups() {
        let pools = IsolatedPools::builder()
            .group(
                "slow",
                ThreadPool::builder()
                    .core_threads(1)
                    .max_threads(1)
                    .queue_capacity(1),
            )
            .group("fast", ThreadPool::builder().core_threads(1).max_threads(1))
            .build();
        let Ok(pools) = pools else { panic!("valid") };
        let (g, wait) = gate();
        assert!(pools.execute("slow", wait.clone()).is_ok());
        assert!(pools.execute("slow", wait.clone()).is_ok());
        assert!(
            pools.execute("slow", wait.clone()).is_err(),
            "slow group is saturated"
        );
        let (tx, rx) = mpsc::channel();
        assert!(
            pools
                .execute("fast", move || tx.send(1).unwrap_or(()))
                .is_ok()
        );
        assert_eq!(rx.recv().ok(), Some(1), "fast group still runs");
        assert!(matches!(
            pools.execute("other", || {}),
            Err(PoolError::UnknownGroup(_))
        ));
        open(&g);
        pools.shutdown();
        assert!(pools.await_termination(Duration::from_secs(10)));
        assert!(
            IsolatedPools::builder()
                .group("a", ThreadPool::builder())
                .group("a", ThreadPool::builder())
                .build()
                .is_err()
        );
    }
}
