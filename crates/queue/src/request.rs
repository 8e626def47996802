//! The request queue: flow control in front of a service.
//!
//! * a **concurrency limit** (at most `max_concurrency` requests served at once),
//! * a **token bucket** rate limit (reject with `Overloaded` beyond it),
//! * a bounded wait queue: **overload protection** rejects with `Overloaded`
//!   when it is full instead of letting latency grow without bound,
//! * **deadline dropping**: a request whose deadline passed while it waited
//!   — or that can no longer finish in time, judged by a moving average of
//!   recent service times — is dropped before it is served (its caller gets
//!   [`QueueError::Expired`]), so the service spends its capacity only on
//!   requests someone still waits for,
//! * optional **CoDel-style adaptive shedding**
//!   ([`RequestQueueBuilder::codel`]): when the queue has not been empty for
//!   a whole `interval` (a standing queue, not a burst), requests that waited
//!   longer than `target` are shed at dequeue with `Overloaded`, so under
//!   sustained overload queueing delay stays near `target` instead of near
//!   the deadline; after a burst the queue may hold requests up to
//!   `interval`. This is the request-queue adaptation of CoDel (Nichols &
//!   Jacobson) described in Maurer, *Fail at Scale* (ACM Queue, 2015),
//! * counters of every outcome ([`RequestStats`]).

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use kuai_core::{Clock, SystemClock};
use tokio::sync::oneshot;

use crate::error::QueueError;

/// Builds a [`RequestQueue`].
#[derive(Debug, Clone)]
pub struct RequestQueueBuilder {
    max_concurrency: usize,
    queue_capacity: usize,
    rate: Option<(f64, f64)>,
    drop_expired: bool,
    codel: Option<(Duration, Duration)>,
    clock: Arc<dyn Clock>,
}

impl RequestQueueBuilder {
    /// CoDel-style adaptive shedding (default off): once the queue has not
    /// been empty for `interval`, a request that waited longer than `target`
    /// is shed when it reaches the head of the queue ([`QueueError::Overloaded`],
    /// counted in [`RequestStats::shed_codel`]). Typical values: `target` a
    /// few times the service time (5 ms), `interval` 100 ms. A zero
    /// `interval` or a `target` above `interval` leaves it off.
    pub fn codel(mut self, target: Duration, interval: Duration) -> Self {
        self.codel = (!interval.is_zero() && target <= interval).then_some((target, interval));
        self
    }
    /// Requests served at once (default 64).
    pub fn max_concurrency(mut self, n: usize) -> Self {
        self.max_concurrency = n.max(1);
        self
    }
    /// Requests allowed to wait (default 1024); beyond it, `Overloaded`.
    pub fn queue_capacity(mut self, n: usize) -> Self {
        self.queue_capacity = n;
        self
    }
    /// Token bucket: `per_second` refill, `burst` bucket size (default: none).
    pub fn rate_limit(mut self, per_second: f64, burst: f64) -> Self {
        if per_second.is_finite() && per_second > 0.0 && burst.is_finite() && burst >= 1.0 {
            self.rate = Some((per_second, burst));
        }
        self
    }
    /// Drop requests whose deadline passed while queued (default true).
    pub fn drop_expired(mut self, on: bool) -> Self {
        self.drop_expired = on;
        self
    }
    /// Clock for the token bucket and deadline checks.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }
    /// Builds the queue.
    pub fn build(self) -> RequestQueue {
        let now = self.clock.now();
        RequestQueue {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    in_flight: 0,
                    queue: VecDeque::new(),
                    tokens: self.rate.map_or(0.0, |r| r.1),
                    refilled: now,
                    next_id: 0,
                    last_empty: now,
                    last_shed: None,
                }),
                stats: Counters::default(),
                service_ns: AtomicU64::new(0),
                cfg: self,
            }),
        }
    }
}

/// Counts of every outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestStats {
    /// Given a slot (immediately or after waiting).
    pub admitted: u64,
    /// Rejected because the wait queue was full.
    pub rejected_full: u64,
    /// Rejected by the token bucket.
    pub rejected_rate: u64,
    /// Dropped because their deadline passed while queued.
    pub dropped_expired: u64,
    /// Shed by CoDel: waited longer than `target` behind a standing queue.
    pub shed_codel: u64,
    /// Finished before their deadline.
    pub served: u64,
    /// Finished, but after their deadline (wasted work).
    pub served_late: u64,
}

#[derive(Debug, Default)]
struct Counters {
    admitted: AtomicU64,
    rejected_full: AtomicU64,
    rejected_rate: AtomicU64,
    dropped_expired: AtomicU64,
    shed_codel: AtomicU64,
    served: AtomicU64,
    served_late: AtomicU64,
}

#[derive(Debug)]
struct Inner {
    cfg: RequestQueueBuilder,
    state: Mutex<State>,
    stats: Counters,
    /// Moving average of service time in ns (0 until the first finish).
    service_ns: AtomicU64,
}

#[derive(Debug)]
struct State {
    in_flight: usize,
    queue: VecDeque<Waiter>,
    tokens: f64,
    refilled: Instant,
    next_id: u64,
    /// When the wait queue was last seen empty (CoDel).
    last_empty: Instant,
    /// When CoDel last shed a request: a queue emptied by shedding is not
    /// a drained queue, so it does not count as empty for an interval.
    last_shed: Option<Instant>,
}

impl State {
    /// The wait queue is empty at `now`: no standing queue, unless the
    /// emptiness is CoDel's own doing (it shed within the last interval).
    fn note_empty(&mut self, now: Instant, codel: Option<(Duration, Duration)>) {
        let shedding = match (codel, self.last_shed) {
            (Some((_, interval)), Some(t)) => now.saturating_duration_since(t) <= interval,
            _ => false,
        };
        if !shedding {
            self.last_empty = now;
        }
    }
}

#[derive(Debug)]
struct Waiter {
    id: u64,
    deadline: Option<Instant>,
    enqueued: Instant,
    /// `true`: the slot is yours; `false`: shed by CoDel; dropped: expired.
    grant: oneshot::Sender<bool>,
}

/// Flow control in front of a service (see the [module docs](self)).
///
/// ```
/// use std::time::{Duration, Instant};
/// use kuai_queue::RequestQueue;
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let rq = RequestQueue::builder().max_concurrency(2).queue_capacity(8).build();
/// let deadline = Instant::now() + Duration::from_secs(1);
/// let v = rq.call(Some(deadline), async { 40 + 2 }).await.unwrap();
/// assert_eq!(v, 42);
/// assert_eq!(rq.stats().served, 1);
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct RequestQueue {
    inner: Arc<Inner>,
}

/// A serving slot; dropping it frees the slot for the next waiter.
#[derive(Debug)]
pub struct Permit {
    inner: Arc<Inner>,
    deadline: Option<Instant>,
    started: Instant,
}

impl RequestQueue {
    /// A builder with the defaults.
    pub fn builder() -> RequestQueueBuilder {
        RequestQueueBuilder {
            max_concurrency: 64,
            queue_capacity: 1024,
            rate: None,
            drop_expired: true,
            codel: None,
            clock: Arc::new(SystemClock),
        }
    }

    /// Outcome counters so far.
    pub fn stats(&self) -> RequestStats {
        let c = &self.inner.stats;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RequestStats {
            admitted: l(&c.admitted),
            rejected_full: l(&c.rejected_full),
            rejected_rate: l(&c.rejected_rate),
            dropped_expired: l(&c.dropped_expired),
            shed_codel: l(&c.shed_codel),
            served: l(&c.served),
            served_late: l(&c.served_late),
        }
    }

    /// Requests being served now.
    pub fn in_flight(&self) -> usize {
        self.inner.lock().in_flight
    }

    /// Requests waiting now.
    pub fn queued(&self) -> usize {
        self.inner.lock().queue.len()
    }

    /// Takes a slot without waiting: `Overloaded` if none is free or the
    /// rate limit is exceeded.
    pub fn try_acquire(&self, deadline: Option<Instant>) -> Result<Permit, QueueError> {
        let mut st = self.inner.lock();
        self.inner.take_token(&mut st)?;
        if st.in_flight < self.inner.cfg.max_concurrency && st.queue.is_empty() {
            st.note_empty(self.inner.cfg.clock.now(), self.inner.cfg.codel);
            st.in_flight += 1;
            self.inner.stats.admitted.fetch_add(1, Ordering::Relaxed);
            return Ok(self.permit(deadline));
        }
        self.inner
            .stats
            .rejected_full
            .fetch_add(1, Ordering::Relaxed);
        Err(QueueError::Overloaded("no free slot"))
    }

    /// Takes a slot, waiting in the bounded queue if needed. Fails with
    /// `Overloaded` (queue full or rate limit) or `Expired` (the deadline
    /// passed while waiting and deadline dropping is on). Needs a tokio
    /// runtime with timers when `deadline` is set.
    pub async fn acquire(&self, deadline: Option<Instant>) -> Result<Permit, QueueError> {
        let (rx, id) = {
            let mut st = self.inner.lock();
            self.inner.take_token(&mut st)?;
            let now = self.inner.cfg.clock.now();
            if st.queue.is_empty() {
                st.note_empty(now, self.inner.cfg.codel);
            }
            if st.in_flight < self.inner.cfg.max_concurrency && st.queue.is_empty() {
                st.in_flight += 1;
                self.inner.stats.admitted.fetch_add(1, Ordering::Relaxed);
                return Ok(self.permit(deadline));
            }
            if st.queue.len() >= self.inner.cfg.queue_capacity {
                self.inner
                    .stats
                    .rejected_full
                    .fetch_add(1, Ordering::Relaxed);
                return Err(QueueError::Overloaded("request queue full"));
            }
            let (tx, rx) = oneshot::channel();
            let id = st.next_id;
            st.next_id += 1;
            st.queue.push_back(Waiter {
                id,
                deadline,
                enqueued: now,
                grant: tx,
            });
            (rx, id)
        };
        let mut guard = Cancel {
            inner: &self.inner,
            id,
            rx,
            done: false,
        };
        let granted = match (deadline, self.inner.cfg.drop_expired) {
            (Some(dl), true) => {
                match tokio::time::timeout_at(tokio::time::Instant::from_std(dl), &mut guard.rx)
                    .await
                {
                    Ok(r) => r,
                    Err(_) => {
                        // Timed out: leave the queue, unless a decision raced in.
                        let mut st = self.inner.lock();
                        guard.done = true;
                        if let Some(i) = st.queue.iter().position(|w| w.id == id) {
                            st.queue.remove(i);
                            drop(st);
                            self.inner
                                .stats
                                .dropped_expired
                                .fetch_add(1, Ordering::Relaxed);
                            return Err(QueueError::Expired);
                        }
                        drop(st);
                        // Out of the queue, so the releaser decided under the
                        // lock we just held: granted, shed or dropped.
                        return match guard.rx.try_recv() {
                            Ok(true) => {
                                // Granted meanwhile: give the slot back, still expired.
                                drop(self.permit(deadline));
                                self.inner
                                    .stats
                                    .dropped_expired
                                    .fetch_add(1, Ordering::Relaxed);
                                Err(QueueError::Expired)
                            }
                            Ok(false) => Err(QueueError::Overloaded(CODEL_SHED)),
                            Err(_) => Err(QueueError::Expired),
                        };
                    }
                }
            }
            _ => (&mut guard.rx).await,
        };
        guard.done = true;
        match granted {
            Ok(true) => {
                self.inner.stats.admitted.fetch_add(1, Ordering::Relaxed);
                Ok(self.permit(deadline))
            }
            // Shed by CoDel at the head of a standing queue.
            Ok(false) => Err(QueueError::Overloaded(CODEL_SHED)),
            // The releaser dropped us because our deadline had passed.
            Err(_) => Err(QueueError::Expired),
        }
    }

    /// Acquires a slot, runs `work`, and counts the outcome.
    pub async fn call<F: Future>(
        &self,
        deadline: Option<Instant>,
        work: F,
    ) -> Result<F::Output, QueueError> {
        let permit = self.acquire(deadline).await?;
        let out = work.await;
        permit.finish();
        Ok(out)
    }

    fn permit(&self, deadline: Option<Instant>) -> Permit {
        Permit {
            inner: Arc::clone(&self.inner),
            deadline,
            started: self.inner.cfg.clock.now(),
        }
    }
}

/// Why a CoDel-shed request failed.
const CODEL_SHED: &str = "shed by CoDel: queued longer than target behind a standing queue";

/// Removes a cancelled waiter (its future dropped) from the queue.
struct Cancel<'a> {
    inner: &'a Arc<Inner>,
    id: u64,
    rx: oneshot::Receiver<bool>,
    done: bool,
}

impl Drop for Cancel<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut st = self.inner.lock();
        if let Some(i) = st.queue.iter().position(|w| w.id == self.id) {
            st.queue.remove(i);
        } else if matches!(self.rx.try_recv(), Ok(true)) {
            // Granted but never taken: hand the slot on. (Shed or expired
            // waiters were never given a slot.)
            drop(st);
            self.inner.release();
        }
    }
}

impl Permit {
    /// Marks the request finished (counted as served or served late).
    pub fn finish(self) {
        let now = self.inner.cfg.clock.now();
        let took = now.saturating_duration_since(self.started).as_nanos() as u64;
        let _ = self
            .inner
            .service_ns
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |avg| {
                Some(if avg == 0 {
                    took.max(1)
                } else {
                    avg - avg / 8 + took / 8
                })
            });
        let late = self.deadline.is_some_and(|d| now > d);
        let c = if late {
            &self.inner.stats.served_late
        } else {
            &self.inner.stats.served
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether this request's deadline has already passed.
    pub fn is_expired(&self) -> bool {
        self.deadline
            .is_some_and(|d| self.inner.cfg.clock.now() > d)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.inner.release();
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn take_token(&self, st: &mut State) -> Result<(), QueueError> {
        let Some((rate, burst)) = self.cfg.rate else {
            return Ok(());
        };
        let now = self.cfg.clock.now();
        let dt = now.saturating_duration_since(st.refilled).as_secs_f64();
        st.tokens = (st.tokens + dt * rate).min(burst);
        st.refilled = now;
        if st.tokens >= 1.0 {
            st.tokens -= 1.0;
            Ok(())
        } else {
            self.stats.rejected_rate.fetch_add(1, Ordering::Relaxed);
            Err(QueueError::Overloaded("rate limit"))
        }
    }

    /// Frees a slot: hands it to the first live waiter, dropping expired
    /// ones first when deadline dropping is on.
    fn release(&self) {
        // A waiter is hopeless if it cannot finish before its deadline at
        // the recent average service time.
        let clock_now = self.cfg.clock.now();
        let now = clock_now + Duration::from_nanos(self.service_ns.load(Ordering::Relaxed));
        let mut st = self.lock();
        // CoDel: a queue that has not drained for a whole interval is a
        // standing queue; its requests may wait only `target`.
        let max_wait = self.cfg.codel.map(|(target, interval)| {
            if clock_now.saturating_duration_since(st.last_empty) > interval {
                target
            } else {
                interval
            }
        });
        while let Some(w) = st.queue.pop_front() {
            if self.cfg.drop_expired && w.deadline.is_some_and(|d| now > d) {
                self.stats.dropped_expired.fetch_add(1, Ordering::Relaxed);
                continue; // dropping `grant` tells the waiter it expired
            }
            if max_wait.is_some_and(|m| clock_now.saturating_duration_since(w.enqueued) > m) {
                // Shed (a waiter that is already gone counts too: the
                // decision was made).
                let _ = w.grant.send(false);
                self.stats.shed_codel.fetch_add(1, Ordering::Relaxed);
                st.last_shed = Some(clock_now);
                continue;
            }
            if w.grant.send(true).is_ok() {
                if st.queue.is_empty() {
                    st.note_empty(clock_now, self.cfg.codel);
                }
                return; // the slot passes to the waiter
            }
        }
        st.note_empty(clock_now, self.cfg.codel);
        st.in_flight = st.in_flight.saturating_sub(1);
    }
}

impl fmt::Display for RequestStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "admitted {} served {} late {} expired {} codel {} full {} rate {}",
            self.admitted,
            self.served,
            self.served_late,
            self.dropped_expired,
            self.shed_codel,
            self.rejected_full,
            self.rejected_rate
        )
    }
}

/// A deadline `d` from now on `clock`.
pub fn deadline_in(clock: &dyn Clock, d: Duration) -> Instant {
    clock.now() + d
}

#[cfg(test)]
mod tests {
    use super::*;
    use kuai_core::ManualClock;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("rt")
    }

    #[test]
    fn rejects_with_overloaded_when_queue_full() {
        rt().block_on(async {
            let rq = RequestQueue::builder()
                .max_concurrency(1)
                .queue_capacity(1)
                .build();
            let p = rq.try_acquire(None).expect("free");
            let rq2 = rq.clone();
            let waiting = tokio::spawn(async move { rq2.acquire(None).await.map(Permit::finish) });
            tokio::task::yield_now().await;
            assert_eq!(rq.queued(), 1);
            let err = rq.acquire(None).await.expect_err("full");
            let core: kuai_core::Error = err.into();
            assert_eq!(core.kind(), kuai_core::ErrorKind::Overloaded);
            drop(p);
            waiting.await.expect("join").expect("granted");
            let s = rq.stats();
            assert_eq!((s.admitted, s.rejected_full, s.served), (2, 1, 1));
            assert_eq!(rq.in_flight(), 0);
        });
    }

    #[test]
    fn expired_requests_are_dropped_before_being_served() {
        let clock = ManualClock::new();
        rt().block_on(async {
            let rq = RequestQueue::builder()
                .max_concurrency(1)
                .clock(Arc::new(clock.clone()))
                .build();
            let p = rq.try_acquire(None).expect("free");
            // Queued with a deadline far in real time, but the manual clock
            // will pass it before the slot frees up.
            let dl = clock.now() + Duration::from_secs(3600);
            let rq2 = rq.clone();
            let waiting = tokio::spawn(async move { rq2.call(Some(dl), async { "served" }).await });
            tokio::task::yield_now().await;
            clock.advance(Duration::from_secs(7200));
            drop(p);
            let r = waiting.await.expect("join");
            assert!(matches!(r, Err(QueueError::Expired)), "{r:?}");
            assert_eq!(rq.stats().dropped_expired, 1);
            assert_eq!(rq.stats().served, 0);
            assert_eq!(rq.in_flight(), 0);
        });
    }

    #[test]
    fn without_dropping_expired_requests_are_served_late() {
        let clock = ManualClock::new();
        rt().block_on(async {
            let rq = RequestQueue::builder()
                .max_concurrency(1)
                .drop_expired(false)
                .clock(Arc::new(clock.clone()))
                .build();
            let p = rq.try_acquire(None).expect("free");
            let dl = clock.now() + Duration::from_secs(1);
            let rq2 = rq.clone();
            let waiting = tokio::spawn(async move { rq2.call(Some(dl), async { 1 }).await });
            tokio::task::yield_now().await;
            clock.advance(Duration::from_secs(5));
            drop(p);
            assert_eq!(waiting.await.expect("join").expect("served"), 1);
            assert_eq!(rq.stats().served_late, 1);
        });
    }

    #[test]
    fn requests_that_cannot_finish_in_time_are_dropped() {
        let clock = ManualClock::new();
        rt().block_on(async {
            let rq = RequestQueue::builder()
                .max_concurrency(1)
                .clock(Arc::new(clock.clone()))
                .build();
            // One request teaches the queue that service takes 10 s.
            let p = rq.try_acquire(None).expect("free");
            clock.advance(Duration::from_secs(10));
            p.finish();
            let p = rq.try_acquire(None).expect("free");
            let rq2 = rq.clone();
            let dl = clock.now() + Duration::from_secs(5);
            let waiting = tokio::spawn(async move { rq2.call(Some(dl), async {}).await });
            tokio::task::yield_now().await;
            drop(p); // 5 s left < 10 s of service: dropped, not served
            assert!(matches!(
                waiting.await.expect("join"),
                Err(QueueError::Expired)
            ));
            assert_eq!(rq.stats().dropped_expired, 1);
        });
    }

    #[test]
    fn codel_sheds_only_behind_a_standing_queue() {
        let clock = ManualClock::new();
        rt().block_on(async {
            let rq = RequestQueue::builder()
                .max_concurrency(1)
                .codel(Duration::from_millis(5), Duration::from_millis(100))
                .clock(Arc::new(clock.clone()))
                .build();
            let spawn = |rq: &RequestQueue| {
                let rq = rq.clone();
                tokio::spawn(async move { rq.acquire(None).await })
            };
            // A burst: the queue was empty a moment ago, so a request may
            // wait up to `interval` (50 ms > target is fine).
            let p = rq.try_acquire(None).expect("free");
            let a = spawn(&rq);
            tokio::task::yield_now().await;
            clock.advance(Duration::from_millis(50));
            drop(p);
            let pa = a.await.expect("join").expect("a burst is absorbed");
            // A standing queue: b and c wait 150 ms without the queue ever
            // draining; d joins 2 ms before the slot frees.
            let (b, c) = (spawn(&rq), spawn(&rq));
            tokio::task::yield_now().await;
            clock.advance(Duration::from_millis(148));
            let d = spawn(&rq);
            tokio::task::yield_now().await;
            clock.advance(Duration::from_millis(2));
            drop(pa);
            for h in [b, c] {
                let r = h.await.expect("join");
                assert!(matches!(r, Err(QueueError::Overloaded(_))), "{r:?}");
            }
            let pd = d
                .await
                .expect("join")
                .expect("waited 2 ms < target: served");
            // The queue is empty now, but by shedding: still a standing
            // queue, so e may wait only `target` too.
            let e = spawn(&rq);
            tokio::task::yield_now().await;
            clock.advance(Duration::from_millis(50));
            pd.finish();
            let r = e.await.expect("join");
            assert!(matches!(r, Err(QueueError::Overloaded(_))), "{r:?}");
            // A quiet interval later the queue drains for real: bursts are
            // absorbed again.
            clock.advance(Duration::from_millis(200));
            let p = rq.try_acquire(None).expect("free");
            let f = spawn(&rq);
            tokio::task::yield_now().await;
            clock.advance(Duration::from_millis(50));
            drop(p);
            f.await.expect("join").expect("burst absorbed").finish();
            let s = rq.stats();
            assert_eq!((s.shed_codel, s.admitted, s.served), (3, 5, 2), "{s}");
            assert_eq!(rq.in_flight(), 0);
            assert_eq!(rq.queued(), 0);
        });
    }

    #[test]
    fn without_codel_a_standing_queue_is_served_in_order() {
        let clock = ManualClock::new();
        rt().block_on(async {
            let rq = RequestQueue::builder()
                .max_concurrency(1)
                .clock(Arc::new(clock.clone()))
                .build();
            let p = rq.try_acquire(None).expect("free");
            let rq2 = rq.clone();
            let b = tokio::spawn(async move { rq2.acquire(None).await.map(Permit::finish) });
            tokio::task::yield_now().await;
            clock.advance(Duration::from_millis(500));
            drop(p);
            b.await
                .expect("join")
                .expect("served however long it waited");
            assert_eq!(rq.stats().shed_codel, 0);
        });
    }

    #[test]
    fn a_shed_waiter_dropped_later_does_not_free_a_slot() {
        let clock = ManualClock::new();
        rt().block_on(async {
            let rq = RequestQueue::builder()
                .max_concurrency(2)
                .codel(Duration::from_millis(5), Duration::from_millis(100))
                .clock(Arc::new(clock.clone()))
                .build();
            let p1 = rq.try_acquire(None).expect("free");
            let _p2 = rq.try_acquire(None).expect("free");
            let mut fut = Box::pin(rq.acquire(None));
            // Poll once: it queues.
            assert!(
                tokio::time::timeout(Duration::ZERO, &mut fut)
                    .await
                    .is_err()
            );
            assert_eq!(rq.queued(), 1);
            clock.advance(Duration::from_millis(300));
            drop(p1); // sheds the waiter
            assert_eq!(rq.stats().shed_codel, 1);
            assert_eq!(rq.in_flight(), 1);
            drop(fut); // never polled again: its guard must not free a slot
            assert_eq!(rq.in_flight(), 1);
        });
    }

    #[test]
    fn codel_settings_out_of_range_leave_it_off() {
        let b = RequestQueue::builder().codel(Duration::from_millis(5), Duration::ZERO);
        assert!(b.codel.is_none());
        let b = b.codel(Duration::from_secs(1), Duration::from_millis(100));
        assert!(b.codel.is_none());
    }

    #[test]
    fn token_bucket_limits_rate() {
        let clock = ManualClock::new();
        let rq = RequestQueue::builder()
            .max_concurrency(100)
            .rate_limit(10.0, 2.0)
            .clock(Arc::new(clock.clone()))
            .build();
        assert!(rq.try_acquire(None).is_ok());
        assert!(rq.try_acquire(None).is_ok());
        assert!(matches!(
            rq.try_acquire(None),
            Err(QueueError::Overloaded("rate limit"))
        ));
        clock.advance(Duration::from_millis(100));
        assert!(rq.try_acquire(None).is_ok());
        assert_eq!(rq.stats().rejected_rate, 1);
    }

    #[test]
    fn cancelled_waiter_leaves_queue_and_slot_is_reused() {
        rt().block_on(async {
            let rq = RequestQueue::builder().max_concurrency(1).build();
            let p = rq.try_acquire(None).expect("free");
            {
                let fut = rq.acquire(None);
                let r = tokio::time::timeout(Duration::from_millis(5), fut).await;
                assert!(r.is_err());
            }
            assert_eq!(rq.queued(), 0);
            drop(p);
            assert_eq!(rq.in_flight(), 0);
            assert!(rq.try_acquire(None).is_ok());
        });
    }
}
