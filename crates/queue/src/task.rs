//! The task queue: background jobs with retries (exponential backoff with
//! jitter), a maximum number of attempts, a dead-letter queue, delayed
//! tasks and idempotency keys.
//!
//! Time comes from a [`Clock`], so tests drive retries and delays with a
//! [`ManualClock`](kuai_core::ManualClock) instead of sleeping.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use kuai_core::{Clock, SystemClock};

use crate::error::QueueError;

/// A task's identity.
pub type TaskId = u64;

/// Builds a [`TaskQueue`].
#[derive(Debug, Clone)]
pub struct TaskQueueBuilder {
    max_attempts: u32,
    base_backoff: Duration,
    max_backoff: Duration,
    jitter: f64,
    capacity: usize,
    dead_letter_capacity: usize,
    idempotency_ttl: Duration,
    seed: Option<u64>,
    clock: Arc<dyn Clock>,
}

impl TaskQueueBuilder {
    /// Attempts before a task goes to the dead-letter queue (default 5).
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }
    /// Backoff after the first failure; doubles each attempt (default 100 ms).
    pub fn base_backoff(mut self, d: Duration) -> Self {
        self.base_backoff = d;
        self
    }
    /// Cap on the backoff (default 60 s).
    pub fn max_backoff(mut self, d: Duration) -> Self {
        self.max_backoff = d;
        self
    }
    /// Fraction of the backoff drawn at random (0 = none, 1 = "full
    /// jitter"; default 0.5): the delay is uniform in `[b·(1−j), b]`.
    pub fn jitter(mut self, j: f64) -> Self {
        self.jitter = if j.is_finite() {
            j.clamp(0.0, 1.0)
        } else {
            0.5
        };
        self
    }
    /// Tasks held (pending, delayed or leased) before `push` fails with
    /// `Overloaded` (default 100 000).
    pub fn capacity(mut self, n: usize) -> Self {
        self.capacity = n;
        self
    }
    /// Dead letters kept; the oldest are dropped beyond it (default 10 000).
    pub fn dead_letter_capacity(mut self, n: usize) -> Self {
        self.dead_letter_capacity = n;
        self
    }
    /// How long an idempotency key is remembered after its task finished
    /// (default 24 h).
    pub fn idempotency_ttl(mut self, d: Duration) -> Self {
        self.idempotency_ttl = d;
        self
    }
    /// Seed for the jitter (default: random).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }
    /// The clock for delays and backoff.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }
    /// Builds the queue.
    pub fn build<T>(self) -> TaskQueue<T> {
        let rng = self
            .seed
            .map_or_else(fastrand::Rng::new, fastrand::Rng::with_seed);
        TaskQueue {
            state: Mutex::new(State {
                due: BinaryHeap::new(),
                tasks: HashMap::new(),
                dead: VecDeque::new(),
                keys: HashMap::new(),
                next_id: 1,
                seq: 0,
                rng,
            }),
            cfg: self,
        }
    }
}

/// Options for one task.
#[derive(Debug, Clone, Default)]
pub struct TaskOptions {
    /// Run no earlier than this long from now.
    pub delay: Option<Duration>,
    /// A second push with the same key (while remembered) is a no-op that
    /// returns the first task's id.
    pub idempotency_key: Option<String>,
    /// Overrides the queue's `max_attempts`.
    pub max_attempts: Option<u32>,
}

/// What `push_with` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// A new task.
    New(TaskId),
    /// The idempotency key was seen before: nothing was added.
    Duplicate(TaskId),
}

impl Enqueued {
    /// The task's id either way.
    pub fn id(self) -> TaskId {
        match self {
            Enqueued::New(id) | Enqueued::Duplicate(id) => id,
        }
    }
}

/// A task handed to a worker; give it back with
/// [`complete`](TaskQueue::complete) or [`fail`](TaskQueue::fail).
#[derive(Debug)]
pub struct Task<T> {
    /// The task's id.
    pub id: TaskId,
    /// 1 on the first try.
    pub attempt: u32,
    /// The job.
    pub payload: T,
}

/// A task that exhausted its attempts.
#[derive(Debug, Clone)]
pub struct DeadLetter<T> {
    /// The task's id.
    pub id: TaskId,
    /// Attempts made.
    pub attempts: u32,
    /// The last failure's message.
    pub last_error: String,
    /// The job.
    pub payload: T,
}

/// What happened to a failed task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Scheduled again after this backoff.
    After(Duration),
    /// Moved to the dead-letter queue.
    DeadLettered,
}

struct Entry<T> {
    payload: Option<T>,
    attempts: u32,
    max_attempts: u32,
    key: Option<String>,
}

struct State<T> {
    due: BinaryHeap<Reverse<(Instant, u64, TaskId)>>,
    tasks: HashMap<TaskId, Entry<T>>,
    dead: VecDeque<DeadLetter<T>>,
    /// key → (task, forget after; `None` while the task is live).
    keys: HashMap<String, (TaskId, Option<Instant>)>,
    next_id: TaskId,
    seq: u64,
    rng: fastrand::Rng,
}

/// Background jobs with retries and a dead-letter queue (see the [module docs](self)).
///
/// ```
/// use kuai_queue::task::{TaskQueue, Retry};
/// let q = TaskQueue::builder().max_attempts(2).jitter(0.0).build();
/// q.push("send email").unwrap();
/// let t = q.poll().unwrap();
/// assert!(matches!(q.fail(t, "smtp down"), Retry::After(_)));
/// assert!(q.poll().is_none());                      // backing off
/// ```
pub struct TaskQueue<T> {
    state: Mutex<State<T>>,
    cfg: TaskQueueBuilder,
}

impl<T> fmt::Debug for TaskQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.lock();
        f.debug_struct("TaskQueue")
            .field("tasks", &st.tasks.len())
            .field("dead", &st.dead.len())
            .finish()
    }
}

impl TaskQueue<()> {
    /// A builder with the defaults.
    pub fn builder() -> TaskQueueBuilder {
        TaskQueueBuilder {
            max_attempts: 5,
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(60),
            jitter: 0.5,
            capacity: 100_000,
            dead_letter_capacity: 10_000,
            idempotency_ttl: Duration::from_secs(24 * 3600),
            seed: None,
            clock: Arc::new(SystemClock),
        }
    }
}

impl<T> TaskQueue<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a task to run now.
    pub fn push(&self, payload: T) -> Result<TaskId, QueueError> {
        self.push_with(payload, TaskOptions::default())
            .map(Enqueued::id)
    }

    /// Adds a task with options (delay, idempotency key, attempts).
    pub fn push_with(&self, payload: T, opts: TaskOptions) -> Result<Enqueued, QueueError> {
        let now = self.cfg.clock.now();
        let mut st = self.lock();
        if let Some(key) = &opts.idempotency_key {
            if let Some(&(id, forget)) = st.keys.get(key) {
                if forget.is_none_or(|t| now < t) {
                    return Ok(Enqueued::Duplicate(id));
                }
            }
        }
        if st.tasks.len() >= self.cfg.capacity {
            return Err(QueueError::Overloaded("task queue full"));
        }
        let id = st.next_id;
        st.next_id += 1;
        if let Some(key) = &opts.idempotency_key {
            st.keys.insert(key.clone(), (id, None));
        }
        st.tasks.insert(
            id,
            Entry {
                payload: Some(payload),
                attempts: 0,
                max_attempts: opts.max_attempts.unwrap_or(self.cfg.max_attempts).max(1),
                key: opts.idempotency_key,
            },
        );
        let at = now + opts.delay.unwrap_or_default();
        Self::schedule(&mut st, at, id);
        Ok(Enqueued::New(id))
    }

    fn schedule(st: &mut State<T>, at: Instant, id: TaskId) {
        st.seq += 1;
        let seq = st.seq;
        st.due.push(Reverse((at, seq, id)));
    }

    /// Takes the next task that is due, if any.
    pub fn poll(&self) -> Option<Task<T>> {
        let now = self.cfg.clock.now();
        let mut st = self.lock();
        while let Some(&Reverse((at, _, id))) = st.due.peek() {
            if at > now {
                return None;
            }
            st.due.pop();
            if let Some(e) = st.tasks.get_mut(&id) {
                if let Some(payload) = e.payload.take() {
                    e.attempts += 1;
                    return Some(Task {
                        id,
                        attempt: e.attempts,
                        payload,
                    });
                }
            }
        }
        None
    }

    /// When the next task becomes due (`None` if nothing is scheduled).
    pub fn next_due(&self) -> Option<Instant> {
        self.lock().due.peek().map(|r| r.0.0)
    }

    /// Marks a task done.
    pub fn complete(&self, task: Task<T>) {
        let now = self.cfg.clock.now();
        let mut st = self.lock();
        if let Some(e) = st.tasks.remove(&task.id) {
            self.forget_key_later(&mut st, e.key, task.id, now);
        }
    }

    fn forget_key_later(&self, st: &mut State<T>, key: Option<String>, id: TaskId, now: Instant) {
        if let Some(k) = key {
            st.keys
                .insert(k, (id, Some(now + self.cfg.idempotency_ttl)));
        }
        // Keep the key table bounded: drop expired keys now and then.
        if st.keys.len() > self.cfg.capacity.saturating_mul(2) {
            st.keys.retain(|_, (_, f)| f.is_none_or(|t| now < t));
        }
    }

    /// Reports a failed attempt: schedules a retry with backoff, or moves
    /// the task to the dead-letter queue after its last attempt.
    pub fn fail(&self, task: Task<T>, error: impl fmt::Display) -> Retry {
        let now = self.cfg.clock.now();
        let mut st = self.lock();
        let Some(e) = st.tasks.get_mut(&task.id) else {
            return Retry::DeadLettered;
        };
        if e.attempts >= e.max_attempts {
            let attempts = e.attempts;
            let key = e.key.take();
            st.tasks.remove(&task.id);
            self.forget_key_later(&mut st, key, task.id, now);
            if st.dead.len() >= self.cfg.dead_letter_capacity {
                st.dead.pop_front();
            }
            st.dead.push_back(DeadLetter {
                id: task.id,
                attempts,
                last_error: error.to_string(),
                payload: task.payload,
            });
            return Retry::DeadLettered;
        }
        e.payload = Some(task.payload);
        let attempts = e.attempts;
        let backoff = self.backoff(&mut st.rng, attempts);
        Self::schedule(&mut st, now + backoff, task.id);
        Retry::After(backoff)
    }

    /// The backoff after `attempts` failures: `base · 2^(attempts−1)`,
    /// capped, minus up to `jitter` of it at random.
    fn backoff(&self, rng: &mut fastrand::Rng, attempts: u32) -> Duration {
        let exp = attempts.saturating_sub(1).min(40);
        let raw = self
            .cfg
            .base_backoff
            .saturating_mul(1u32 << exp.min(31))
            .min(self.cfg.max_backoff);
        let cut = raw.mul_f64(self.cfg.jitter * rng.f64());
        raw.saturating_sub(cut)
    }

    /// Runs one due task with `work`: completes it on `Ok`, fails it on
    /// `Err`. Returns `None` if nothing was due.
    pub fn run_once<E: fmt::Display>(
        &self,
        work: impl FnOnce(&T) -> Result<(), E>,
    ) -> Option<Result<(), Retry>> {
        let task = self.poll()?;
        Some(match work(&task.payload) {
            Ok(()) => {
                self.complete(task);
                Ok(())
            }
            Err(e) => Err(self.fail(task, e)),
        })
    }

    /// Takes the dead letters out.
    pub fn take_dead_letters(&self) -> Vec<DeadLetter<T>> {
        self.lock().dead.drain(..).collect()
    }

    /// Dead letters waiting.
    pub fn dead_letter_count(&self) -> usize {
        self.lock().dead.len()
    }

    /// Tasks pending, delayed or leased.
    pub fn len(&self) -> usize {
        self.lock().tasks.len()
    }

    /// Whether there is no task at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kuai_core::ManualClock;

    fn queue(clock: &ManualClock) -> TaskQueue<&'static str> {
        TaskQueue::builder()
            .max_attempts(3)
            .base_backoff(Duration::from_secs(1))
            .jitter(0.0)
            .clock(Arc::new(clock.clone()))
            .build()
    }

    #[test]
    fn retries_back_off_exponentially_then_dead_letter() {
        let clock = ManualClock::new();
        let q = queue(&clock);
        q.push("job").expect("push");
        let t = q.poll().expect("due");
        assert_eq!(t.attempt, 1);
        assert_eq!(q.fail(t, "e1"), Retry::After(Duration::from_secs(1)));
        assert!(q.poll().is_none());
        clock.advance(Duration::from_secs(1));
        let t = q.poll().expect("retry 1");
        assert_eq!(t.attempt, 2);
        assert_eq!(q.fail(t, "e2"), Retry::After(Duration::from_secs(2)));
        clock.advance(Duration::from_millis(1999));
        assert!(q.poll().is_none());
        clock.advance(Duration::from_millis(1));
        let t = q.poll().expect("retry 2");
        assert_eq!(q.fail(t, "e3"), Retry::DeadLettered);
        assert!(q.is_empty());
        let dead = q.take_dead_letters();
        assert_eq!(dead.len(), 1);
        assert_eq!(
            (
                dead[0].attempts,
                dead[0].last_error.as_str(),
                dead[0].payload
            ),
            (3, "e3", "job")
        );
    }

    #[test]
    fn jitter_stays_within_bounds() {
        let clock = ManualClock::new();
        let q: TaskQueue<u32> = TaskQueue::builder()
            .max_attempts(100)
            .base_backoff(Duration::from_millis(100))
            .max_backoff(Duration::from_secs(10))
            .jitter(0.5)
            .seed(7)
            .clock(Arc::new(clock.clone()))
            .build();
        q.push(1).expect("push");
        let mut distinct = std::collections::HashSet::new();
        for attempt in 1..20u32 {
            let t = q.poll().expect("due");
            let Retry::After(d) = q.fail(t, "x") else {
                panic!("dead too early")
            };
            let raw = Duration::from_millis(100)
                .saturating_mul(1 << (attempt - 1).min(31))
                .min(Duration::from_secs(10));
            assert!(
                d <= raw && d >= raw / 2,
                "attempt {attempt}: {d:?} vs {raw:?}"
            );
            distinct.insert(d);
            clock.advance(d);
        }
        assert!(distinct.len() > 5);
    }

    #[test]
    fn delayed_tasks_wait_and_idempotency_keys_dedupe() {
        let clock = ManualClock::new();
        let q = queue(&clock);
        let opts = TaskOptions {
            delay: Some(Duration::from_secs(10)),
            idempotency_key: Some("order-42".into()),
            ..TaskOptions::default()
        };
        let first = q.push_with("charge", opts.clone()).expect("push");
        assert!(matches!(first, Enqueued::New(_)));
        assert_eq!(
            q.push_with("charge", opts.clone()).expect("dup"),
            Enqueued::Duplicate(first.id())
        );
        assert!(q.poll().is_none());
        assert_eq!(q.next_due(), Some(clock.now() + Duration::from_secs(10)));
        clock.advance(Duration::from_secs(10));
        assert_eq!(q.run_once(|_| Ok::<_, String>(())), Some(Ok(())));
        // Still remembered after completion: a retried producer is a no-op.
        assert_eq!(
            q.push_with("charge", opts.clone()).expect("dup"),
            Enqueued::Duplicate(first.id())
        );
        assert!(q.is_empty());
        clock.advance(Duration::from_secs(25 * 3600));
        assert!(matches!(
            q.push_with("charge", opts).expect("new"),
            Enqueued::New(_)
        ));
    }

    #[test]
    fn capacity_is_enforced() {
        let q: TaskQueue<u8> = TaskQueue::builder().capacity(1).build();
        q.push(1).expect("room");
        assert!(matches!(q.push(2), Err(QueueError::Overloaded(_))));
    }
}
