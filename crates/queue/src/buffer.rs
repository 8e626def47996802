//! The buffer queue: a bounded MPMC queue with blocking, async and `try_*`
//! sends and receives, timeouts, and close-then-drain semantics.
//!
//! The ring is `crossbeam-queue`'s `ArrayQueue` (Vyukov's bounded MPMC array,
//! the same algorithm as crossbeam-channel's bounded flavour). `kuai-lockfree`'s
//! ring was not merged when this was written; swapping it in is a one-line
//! change behind [`BufferQueue`]. Waiting is layered on top with a
//! [`WaitList`](crate::waiters) whose notify costs one `SeqCst` load when
//! nobody waits; waiters spin briefly (`Backoff`) before parking.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use kuai_core::{PushError, TryQueue};

use crate::error::QueueError;
use crate::sync::{Arc, AtomicUsize, Backoff, Ordering, Ring, load_sc, thread};
use crate::waiters::{Registration, WaitList};

const CLOSED: usize = 1;

/// A bounded multi-producer multi-consumer queue. Clones share the queue.
///
/// ```
/// use kuai_queue::BufferQueue;
/// let q = BufferQueue::new(2);
/// q.try_send(1).unwrap();
/// q.send(2).unwrap();
/// assert!(q.try_send(3).is_err()); // full
/// q.close();
/// assert_eq!(q.recv().unwrap(), 1);  // drained after close…
/// assert_eq!(q.try_recv().unwrap(), Some(2));
/// assert!(q.recv().is_err());        // …then Closed
/// ```
pub struct BufferQueue<T> {
    inner: Arc<Inner<T>>,
}

struct Inner<T> {
    ring: Ring<T>,
    /// Bit 0: closed.
    state: AtomicUsize,
    not_empty: WaitList,
    not_full: WaitList,
}

impl<T> Clone for BufferQueue<T> {
    fn clone(&self) -> Self {
        BufferQueue {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T> fmt::Debug for BufferQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufferQueue")
            .field("len", &self.len())
            .field("capacity", &self.capacity())
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl<T> BufferQueue<T> {
    /// A queue holding at most `capacity` values (a capacity of 0 is raised to 1).
    pub fn new(capacity: usize) -> Self {
        BufferQueue {
            inner: Arc::new(Inner {
                ring: Ring::new(capacity.max(1)),
                state: AtomicUsize::new(0),
                not_empty: WaitList::default(),
                not_full: WaitList::default(),
            }),
        }
    }

    /// The bound.
    pub fn capacity(&self) -> usize {
        self.inner.ring.capacity()
    }

    /// Values queued now.
    pub fn len(&self) -> usize {
        self.inner.ring.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.inner.ring.is_empty()
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.inner.state.load(Ordering::Acquire) & CLOSED != 0
    }

    /// Closes the queue: sends fail with `Closed` from now on; receivers get
    /// what is still queued, then `Closed`. Wakes every waiter.
    pub fn close(&self) {
        self.inner.state.fetch_or(CLOSED, Ordering::SeqCst);
        self.inner.not_empty.notify_all();
        self.inner.not_full.notify_all();
    }

    /// Sends without waiting.
    ///
    /// A send that races with [`close`](Self::close) either succeeds (and
    /// the value is drained by receivers) or fails with `Closed`; in the
    /// rare race where receivers may already have seen the queue closed and
    /// empty, the sender takes one queued value back and returns it in
    /// `Closed`, so nothing is ever stranded (it may be another sender's
    /// value: with MPMC, values are interchangeable for delivery purposes).
    #[inline]
    pub fn try_send(&self, value: T) -> Result<(), PushError<T>> {
        let inner = &*self.inner;
        if inner.state.load(Ordering::Acquire) & CLOSED != 0 {
            return Err(PushError::Closed(value));
        }
        match inner.ring.push(value) {
            Ok(()) => {
                inner.not_empty.notify_one();
                // The push (a SeqCst CAS) is ordered before this load: if the
                // close is not visible here, every receiver's final check
                // after seeing the close will find our value.
                if load_sc(&inner.state) & CLOSED != 0 {
                    if let Some(v) = inner.ring.pop() {
                        return Err(PushError::Closed(v));
                    }
                }
                Ok(())
            }
            Err(v) => Err(PushError::Full(v)),
        }
    }

    /// Receives without waiting: `Ok(None)` when empty, `Err(Closed)` when
    /// closed and drained.
    #[inline]
    pub fn try_recv(&self) -> Result<Option<T>, QueueError> {
        match self.pop() {
            Some(v) => Ok(Some(v)),
            None if load_sc(&self.inner.state) & CLOSED != 0 => match self.pop() {
                Some(v) => Ok(Some(v)),
                None => Err(QueueError::Closed),
            },
            None => Ok(None),
        }
    }

    #[inline]
    fn pop(&self) -> Option<T> {
        let v = self.inner.ring.pop()?;
        self.inner.not_full.notify_one();
        Some(v)
    }

    /// Sends, blocking while the queue is full. Hands the value back in
    /// `PushError::Closed` if the queue is closed.
    pub fn send(&self, value: T) -> Result<(), PushError<T>> {
        self.send_deadline(value, None)
    }

    /// Sends, blocking at most `timeout`; `PushError::Full` on timeout.
    pub fn send_timeout(&self, value: T, timeout: Duration) -> Result<(), PushError<T>> {
        self.send_deadline(value, Some(Instant::now() + timeout))
    }

    fn send_deadline(&self, mut value: T, deadline: Option<Instant>) -> Result<(), PushError<T>> {
        let backoff = Backoff::new();
        loop {
            match self.try_send(value) {
                Ok(()) => return Ok(()),
                Err(PushError::Closed(v)) => return Err(PushError::Closed(v)),
                Err(PushError::Full(v)) => value = v,
            }
            if !backoff.is_completed() {
                backoff.snooze();
                continue;
            }
            let list = &self.inner.not_full;
            let reg = list.register_thread();
            if !self.inner.ring.is_full() || self.is_closed() {
                if list.unregister(&reg) {
                    list.notify_one();
                }
                continue;
            }
            if !park(list, &reg, deadline) {
                return Err(PushError::Full(value));
            }
        }
    }

    /// Receives, blocking while empty; `Err(Closed)` once closed and drained.
    pub fn recv(&self) -> Result<T, QueueError> {
        self.recv_deadline(None)
    }

    /// Receives, blocking at most `timeout` ([`QueueError::Timeout`]).
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, QueueError> {
        self.recv_deadline(Some(Instant::now() + timeout))
    }

    fn recv_deadline(&self, deadline: Option<Instant>) -> Result<T, QueueError> {
        let backoff = Backoff::new();
        loop {
            if let Some(v) = self.try_recv()? {
                return Ok(v);
            }
            if !backoff.is_completed() {
                backoff.snooze();
                continue;
            }
            let list = &self.inner.not_empty;
            let reg = list.register_thread();
            if !self.inner.ring.is_empty() || self.is_closed() {
                if list.unregister(&reg) {
                    list.notify_one();
                }
                continue;
            }
            if !park(list, &reg, deadline) {
                return Err(QueueError::Timeout);
            }
        }
    }

    /// Sends, waiting asynchronously while full.
    pub fn send_async(&self, value: T) -> SendFuture<'_, T> {
        SendFuture {
            queue: self,
            value: Some(value),
            reg: None,
        }
    }

    /// Receives, waiting asynchronously while empty.
    pub fn recv_async(&self) -> RecvFuture<'_, T> {
        RecvFuture {
            queue: self,
            reg: None,
        }
    }

    /// [`send_async`](Self::send_async) with a time limit (needs a tokio
    /// runtime with timers); `PushError::Full` on timeout.
    pub async fn send_timeout_async(
        &self,
        value: T,
        timeout: Duration,
    ) -> Result<(), PushError<T>> {
        let mut fut = self.send_async(value);
        match tokio::time::timeout(timeout, &mut fut).await {
            Ok(r) => r,
            Err(_) => match fut.take_value() {
                Some(v) => Err(PushError::Full(v)),
                None => Ok(()),
            },
        }
    }

    /// [`recv_async`](Self::recv_async) with a time limit (needs a tokio
    /// runtime with timers).
    pub async fn recv_timeout_async(&self, timeout: Duration) -> Result<T, QueueError> {
        tokio::time::timeout(timeout, self.recv_async())
            .await
            .unwrap_or(Err(QueueError::Timeout))
    }
}

/// Parks until notified or the deadline passes; false on timeout.
fn park(list: &WaitList, reg: &Registration, deadline: Option<Instant>) -> bool {
    loop {
        if reg.notified.load(Ordering::Acquire) {
            return true;
        }
        match deadline {
            None => thread::park(),
            Some(dl) => {
                let now = Instant::now();
                if now >= dl {
                    if list.unregister(reg) {
                        // Chosen just now: pass the wake-up on.
                        list.notify_one();
                    }
                    return false;
                }
                park_timeout(dl - now);
            }
        }
    }
}

#[cfg(not(kuai_loom))]
fn park_timeout(d: Duration) {
    thread::park_timeout(d);
}

/// loom has no timed park; timed waits are not modelled.
#[cfg(kuai_loom)]
fn park_timeout(_: Duration) {
    thread::yield_now();
}

/// The future of [`BufferQueue::send_async`].
#[must_use = "futures do nothing unless polled"]
pub struct SendFuture<'a, T> {
    queue: &'a BufferQueue<T>,
    value: Option<T>,
    reg: Option<Registration>,
}

impl<T> fmt::Debug for SendFuture<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendFuture")
            .field("sent", &self.value.is_none())
            .finish()
    }
}

impl<T> SendFuture<'_, T> {
    fn take_value(&mut self) -> Option<T> {
        self.release();
        self.value.take()
    }

    fn release(&mut self) {
        if let Some(reg) = self.reg.take() {
            let list = &self.queue.inner.not_full;
            if list.unregister(&reg) {
                list.notify_one();
            }
        }
    }
}

impl<T> Unpin for SendFuture<'_, T> {}

impl<T> Future for SendFuture<'_, T> {
    type Output = Result<(), PushError<T>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let list = &this.queue.inner.not_full;
        loop {
            let Some(value) = this.value.take() else {
                return Poll::Ready(Ok(()));
            };
            match this.queue.try_send(value) {
                Ok(()) => {
                    if let Some(reg) = this.reg.take() {
                        list.unregister(&reg);
                    }
                    return Poll::Ready(Ok(()));
                }
                Err(PushError::Closed(v)) => {
                    this.release();
                    return Poll::Ready(Err(PushError::Closed(v)));
                }
                Err(PushError::Full(v)) => this.value = Some(v),
            }
            match &this.reg {
                Some(reg) if list.update_task(reg.id, cx.waker()) => return Poll::Pending,
                Some(_) => this.reg = None, // notified: try again
                None => this.reg = Some(list.register_task(cx.waker().clone())),
            }
        }
    }
}

impl<T> Drop for SendFuture<'_, T> {
    fn drop(&mut self) {
        self.release();
    }
}

/// The future of [`BufferQueue::recv_async`].
#[must_use = "futures do nothing unless polled"]
pub struct RecvFuture<'a, T> {
    queue: &'a BufferQueue<T>,
    reg: Option<Registration>,
}

impl<T> fmt::Debug for RecvFuture<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecvFuture")
            .field("registered", &self.reg.is_some())
            .finish()
    }
}

impl<T> Future for RecvFuture<'_, T> {
    type Output = Result<T, QueueError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let list = &this.queue.inner.not_empty;
        loop {
            match this.queue.try_recv() {
                Ok(Some(v)) => {
                    if let Some(reg) = this.reg.take() {
                        list.unregister(&reg);
                    }
                    return Poll::Ready(Ok(v));
                }
                Err(e) => {
                    if let Some(reg) = this.reg.take() {
                        if list.unregister(&reg) {
                            list.notify_one();
                        }
                    }
                    return Poll::Ready(Err(e));
                }
                Ok(None) => {}
            }
            match &this.reg {
                Some(reg) if list.update_task(reg.id, cx.waker()) => return Poll::Pending,
                Some(_) => this.reg = None,
                None => this.reg = Some(list.register_task(cx.waker().clone())),
            }
        }
    }
}

impl<T> Drop for RecvFuture<'_, T> {
    fn drop(&mut self) {
        if let Some(reg) = self.reg.take() {
            let list = &self.queue.inner.not_empty;
            if list.unregister(&reg) {
                list.notify_one();
            }
        }
    }
}

impl<T: Send> TryQueue<T> for BufferQueue<T> {
    fn try_push(&self, value: T) -> Result<(), PushError<T>> {
        self.try_send(value)
    }
    fn try_pop(&self) -> Option<T> {
        self.try_recv().ok().flatten()
    }
    fn capacity(&self) -> Option<usize> {
        Some(BufferQueue::capacity(self))
    }
    fn len(&self) -> usize {
        BufferQueue::len(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn blocking_mpmc_delivers_everything_once() {
        let q = BufferQueue::new(8);
        let n = 2000u64;
        let mut got: Vec<u64> = std::thread::scope(|s| {
            let consumers: Vec<_> = (0..3)
                .map(|_| {
                    let q = q.clone();
                    s.spawn(move || {
                        let mut v = Vec::new();
                        while let Ok(x) = q.recv() {
                            v.push(x);
                        }
                        v
                    })
                })
                .collect();
            let producers: Vec<_> = (0..3u64)
                .map(|p| {
                    let q = q.clone();
                    s.spawn(move || {
                        for i in 0..n {
                            q.send(p * n + i).expect("send");
                        }
                    })
                })
                .collect();
            for p in producers {
                p.join().expect("producer");
            }
            q.close();
            consumers
                .into_iter()
                .flat_map(|h| h.join().expect("consumer"))
                .collect()
        });
        got.sort_unstable();
        assert_eq!(got, (0..3 * n).collect::<Vec<_>>());
    }

    #[test]
    fn timeouts_and_try_variants() {
        let q = BufferQueue::new(1);
        assert_eq!(q.try_recv().expect("open"), None);
        assert!(matches!(
            q.recv_timeout(Duration::from_millis(5)),
            Err(QueueError::Timeout)
        ));
        q.try_send(1).expect("room");
        assert_eq!(q.try_send(2), Err(PushError::Full(2)));
        assert_eq!(
            q.send_timeout(3, Duration::from_millis(5)),
            Err(PushError::Full(3))
        );
        q.close();
        assert_eq!(q.try_send(4), Err(PushError::Closed(4)));
        assert_eq!(q.recv().expect("drain"), 1);
        assert!(matches!(q.recv(), Err(QueueError::Closed)));
        assert!(matches!(q.try_recv(), Err(QueueError::Closed)));
    }

    #[test]
    fn close_wakes_blocked_receivers_and_senders() {
        let q: BufferQueue<u32> = BufferQueue::new(1);
        std::thread::scope(|s| {
            let r = s.spawn(|| q.recv());
            std::thread::sleep(Duration::from_millis(20));
            q.close();
            assert!(matches!(r.join().expect("join"), Err(QueueError::Closed)));
        });
        let q: BufferQueue<u32> = BufferQueue::new(1);
        q.try_send(0).expect("room");
        std::thread::scope(|s| {
            let w = s.spawn(|| q.send(1));
            std::thread::sleep(Duration::from_millis(20));
            q.close();
            assert_eq!(w.join().expect("join"), Err(PushError::Closed(1)));
        });
    }

    #[test]
    fn async_send_recv_with_timeouts() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_time()
            .build()
            .expect("rt");
        rt.block_on(async {
            let q = BufferQueue::new(4);
            let q2 = q.clone();
            let producer = tokio::spawn(async move {
                for i in 0..1000u32 {
                    q2.send_async(i).await.expect("send");
                }
                q2.close();
            });
            let mut sum = 0u64;
            let mut n = 0;
            loop {
                match q.recv_async().await {
                    Ok(v) => {
                        sum += u64::from(v);
                        n += 1;
                    }
                    Err(QueueError::Closed) => break,
                    Err(e) => panic!("{e}"),
                }
            }
            producer.await.expect("join");
            assert_eq!(n, 1000);
            assert_eq!(sum, 999 * 1000 / 2);
            let q: BufferQueue<u8> = BufferQueue::new(1);
            assert!(matches!(
                q.recv_timeout_async(Duration::from_millis(5)).await,
                Err(QueueError::Timeout)
            ));
            q.try_send(1).expect("room");
            assert_eq!(
                q.send_timeout_async(2, Duration::from_millis(5)).await,
                Err(PushError::Full(2))
            );
        });
    }

    #[test]
    fn implements_try_queue() {
        fn use_dyn(q: &dyn TryQueue<u8>) -> Option<u8> {
            q.try_push(5).ok()?;
            q.try_pop()
        }
        let q = BufferQueue::new(3);
        assert_eq!(use_dyn(&q), Some(5));
        assert_eq!(TryQueue::capacity(&q), Some(3));
        assert_eq!(BufferQueue::<u8>::new(0).capacity(), 1);
    }

    proptest! {
        #[test]
        fn fifo_never_loses_or_duplicates(ops in proptest::collection::vec(any::<Option<u16>>(), 0..200), cap in 1usize..16) {
            let q = BufferQueue::new(cap);
            let mut model = std::collections::VecDeque::new();
            for op in ops {
                match op {
                    Some(v) => {
                        let r = q.try_send(v);
                        if model.len() < cap { prop_assert!(r.is_ok()); model.push_back(v); }
                        else { prop_assert_eq!(r, Err(PushError::Full(v))); }
                    }
                    None => prop_assert_eq!(q.try_recv().ok().flatten(), model.pop_front()),
                }
                prop_assert_eq!(q.len(), model.len());
            }
        }
    }
}
