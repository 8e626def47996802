//! The loom shim: under `--cfg kuai_loom` the buffer queue's wait protocol
//! runs on loom's model-checked primitives (and a loom-visible ring),
//! otherwise on `std` and `crossbeam-queue` (after tokio's `src/loom`).

#[cfg(kuai_loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
#[cfg(kuai_loom)]
pub(crate) use loom::sync::{Arc, Mutex};
#[cfg(kuai_loom)]
pub(crate) use loom::thread;

#[cfg(not(kuai_loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
#[cfg(not(kuai_loom))]
pub(crate) use std::sync::{Arc, Mutex};
#[cfg(not(kuai_loom))]
pub(crate) use std::thread;

/// A `SeqCst` load that loom can check. loom models `SeqCst` as `AcqRel`,
/// which would make the store→load (Dekker) handshake between a waiter and
/// a notifier look broken; an RMW reads the latest value in the location's
/// modification order, which restores the guarantee in the model. Real
/// builds use the plain `SeqCst` load (cheap on the hot path).
#[inline]
pub(crate) fn load_sc(a: &AtomicUsize) -> usize {
    #[cfg(kuai_loom)]
    return a.fetch_add(0, Ordering::SeqCst);
    #[cfg(not(kuai_loom))]
    return a.load(Ordering::SeqCst);
}

/// A `SeqCst` store that loom can check (an RMW under loom; see [`load_sc`]).
#[inline]
pub(crate) fn store_sc(a: &AtomicUsize, v: usize) {
    #[cfg(kuai_loom)]
    a.swap(v, Ordering::SeqCst);
    #[cfg(not(kuai_loom))]
    a.store(v, Ordering::SeqCst);
}

/// The bounded ring under the buffer queue.
#[cfg(not(kuai_loom))]
pub(crate) type Ring<T> = crossbeam_queue::ArrayQueue<T>;

/// Under loom: a ring whose emptiness/fullness checks are `SeqCst` loads of
/// a counter updated with `SeqCst` on every push and pop — the same
/// guarantees `ArrayQueue`'s `SeqCst` head/tail operations give the wait
/// protocol.
#[cfg(kuai_loom)]
#[derive(Debug)]
pub(crate) struct Ring<T> {
    items: Mutex<std::collections::VecDeque<T>>,
    count: AtomicUsize,
    cap: usize,
}

#[cfg(kuai_loom)]
impl<T> Ring<T> {
    pub(crate) fn new(cap: usize) -> Self {
        Ring {
            items: Mutex::new(std::collections::VecDeque::new()),
            count: AtomicUsize::new(0),
            cap,
        }
    }
    pub(crate) fn push(&self, v: T) -> Result<(), T> {
        let mut q = self
            .items
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if q.len() >= self.cap {
            return Err(v);
        }
        q.push_back(v);
        self.count.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    pub(crate) fn pop(&self) -> Option<T> {
        let mut q = self
            .items
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let v = q.pop_front()?;
        self.count.fetch_sub(1, Ordering::SeqCst);
        Some(v)
    }
    pub(crate) fn is_empty(&self) -> bool {
        load_sc(&self.count) == 0
    }
    pub(crate) fn is_full(&self) -> bool {
        load_sc(&self.count) >= self.cap
    }
    pub(crate) fn len(&self) -> usize {
        load_sc(&self.count)
    }
    pub(crate) fn capacity(&self) -> usize {
        self.cap
    }
}

/// Spin-then-park backoff; under loom it never spins (spinning only
/// multiplies the model's states, parking is what is being checked).
#[derive(Debug)]
pub(crate) struct Backoff {
    #[cfg(not(kuai_loom))]
    inner: crossbeam_utils::Backoff,
}

impl Backoff {
    pub(crate) fn new() -> Self {
        Backoff {
            #[cfg(not(kuai_loom))]
            inner: crossbeam_utils::Backoff::new(),
        }
    }
    #[inline]
    pub(crate) fn is_completed(&self) -> bool {
        #[cfg(not(kuai_loom))]
        return self.inner.is_completed();
        #[cfg(kuai_loom)]
        return true;
    }
    #[inline]
    pub(crate) fn snooze(&self) {
        #[cfg(not(kuai_loom))]
        self.inner.snooze();
    }
}
