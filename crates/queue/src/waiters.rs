//! A list of parked threads and async tasks waiting for a queue to change.
//!
//! The fast path of a notification is one `SeqCst` atomic load
//! (no lock, no syscall) when nobody waits, which is what keeps the buffer
//! queue's uncontended send/recv as cheap as the ring underneath it.

use std::collections::VecDeque;
use std::sync::PoisonError;
use std::task::Waker;

use crate::sync::thread::{self, Thread};
use crate::sync::{Arc, AtomicBool, AtomicU64, AtomicUsize, Mutex, Ordering, load_sc, store_sc};

#[derive(Debug)]
enum Wake {
    Thread(Thread),
    Task(Waker),
}

#[derive(Debug)]
struct Entry {
    id: u64,
    notified: Arc<AtomicBool>,
    wake: Wake,
}

/// Waiters on one condition ("not empty" or "not full").
#[derive(Debug)]
pub(crate) struct WaitList {
    entries: Mutex<VecDeque<Entry>>,
    len: AtomicUsize,
    ids: AtomicU64,
}

/// A registration; `notified` flips to true when this waiter was chosen.
#[derive(Debug)]
pub(crate) struct Registration {
    pub(crate) id: u64,
    pub(crate) notified: Arc<AtomicBool>,
}

impl Default for WaitList {
    fn default() -> Self {
        WaitList {
            entries: Mutex::new(VecDeque::new()),
            len: AtomicUsize::new(0),
            ids: AtomicU64::new(0),
        }
    }
}

impl WaitList {
    /// Registers the current thread. The caller must re-check its condition
    /// after this returns and before parking.
    pub(crate) fn register_thread(&self) -> Registration {
        self.register(Wake::Thread(thread::current()))
    }

    /// Registers an async task's waker.
    pub(crate) fn register_task(&self, waker: Waker) -> Registration {
        self.register(Wake::Task(waker))
    }

    /// Replaces the waker of a still-registered task; false if it was
    /// already notified (and removed).
    pub(crate) fn update_task(&self, id: u64, waker: &Waker) -> bool {
        let mut q = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        match q.iter_mut().find(|e| e.id == id) {
            Some(e) => {
                if let Wake::Task(w) = &e.wake {
                    if w.will_wake(waker) {
                        return true;
                    }
                }
                e.wake = Wake::Task(waker.clone());
                true
            }
            None => false,
        }
    }

    fn register(&self, wake: Wake) -> Registration {
        let id = self.ids.fetch_add(1, Ordering::Relaxed);
        let notified = Arc::new(AtomicBool::new(false));
        let mut q = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        q.push_back(Entry {
            id,
            notified: Arc::clone(&notified),
            wake,
        });
        store_sc(&self.len, q.len());
        drop(q);
        // The SeqCst store above and the SeqCst load in `notify_one`, with
        // the ring's SeqCst head/tail operations, guarantee that either the
        // notifier sees us registered or our re-check sees its change.
        Registration { id, notified }
    }

    /// Removes a registration that is still waiting. Returns true if it had
    /// been notified meanwhile (the caller should pass the notification on
    /// if it does not consume the item).
    pub(crate) fn unregister(&self, reg: &Registration) -> bool {
        if !reg.notified.load(Ordering::Acquire) {
            let mut q = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(i) = q.iter().position(|e| e.id == reg.id) {
                q.remove(i);
                store_sc(&self.len, q.len());
                return false;
            }
        }
        reg.notified.load(Ordering::Acquire)
    }

    /// Wakes one waiter, if any.
    #[inline]
    pub(crate) fn notify_one(&self) {
        if load_sc(&self.len) == 0 {
            return;
        }
        let entry = {
            let mut q = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
            let e = q.pop_front();
            store_sc(&self.len, q.len());
            e
        };
        if let Some(e) = entry {
            e.notified.store(true, Ordering::Release);
            match e.wake {
                Wake::Thread(t) => t.unpark(),
                Wake::Task(w) => w.wake(),
            }
        }
    }

    /// Wakes everyone (on close).
    pub(crate) fn notify_all(&self) {
        let all: Vec<Entry> = {
            let mut q = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
            store_sc(&self.len, 0);
            q.drain(..).collect()
        };
        for e in all {
            e.notified.store(true, Ordering::Release);
            match e.wake {
                Wake::Thread(t) => t.unpark(),
                Wake::Task(w) => w.wake(),
            }
        }
    }
}
