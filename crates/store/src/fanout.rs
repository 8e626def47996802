//! The bounded job queue behind asynchronous fan-out and index mirroring:
//! `kuai-queue`'s [`BufferQueue`] plus a count of accepted-but-unfinished
//! jobs, so callers can wait for the workers to catch up.
//!
//! Producers never block: a full queue rejects the job (the caller sheds or
//! retries). Closing lets workers drain what was accepted, then stop.

use std::sync::{Condvar, Mutex};

use kuai_core::{PushError, TryQueue};
use kuai_queue::BufferQueue;

/// A bounded MPMC job queue with blocking pops for workers and a flush
/// barrier.
#[derive(Debug)]
pub(crate) struct FanoutQueue<T> {
    queue: BufferQueue<T>,
    /// Jobs accepted and not yet marked done (queued or in flight).
    pending: Mutex<usize>,
    idle: Condvar,
}

impl<T: Send> FanoutQueue<T> {
    pub(crate) fn new(cap: usize) -> Self {
        FanoutQueue {
            queue: BufferQueue::new(cap.max(1)),
            pending: Mutex::new(0),
            idle: Condvar::new(),
        }
    }

    /// Blocks until a job is available, or `None` once the queue is closed
    /// and drained.
    pub(crate) fn pop_blocking(&self) -> Option<T> {
        self.queue.recv().ok()
    }

    /// Marks a popped job as done.
    pub(crate) fn done(&self) {
        if let Ok(mut p) = self.pending.lock() {
            *p = p.saturating_sub(1);
            if *p == 0 {
                self.idle.notify_all();
            }
        }
    }

    /// Waits until every accepted job has been marked done.
    pub(crate) fn flush(&self) {
        let Ok(mut p) = self.pending.lock() else {
            return;
        };
        while *p > 0 {
            match self.idle.wait(p) {
                Ok(g) => p = g,
                Err(_) => return,
            }
        }
    }

    /// Refuses new jobs; workers drain what is queued and stop.
    pub(crate) fn close(&self) {
        self.queue.close();
    }
}

impl<T: Send> TryQueue<T> for FanoutQueue<T> {
    fn try_push(&self, value: T) -> Result<(), PushError<T>> {
        // Count first, so a flush never sees zero while a job is in the queue.
        match self.pending.lock() {
            Ok(mut p) => *p += 1,
            Err(_) => return Err(PushError::Closed(value)),
        }
        let sent = self.queue.try_send(value);
        if sent.is_err() {
            self.done();
        }
        sent
    }

    fn try_pop(&self) -> Option<T> {
        self.queue.try_recv().ok().flatten()
    }

    fn capacity(&self) -> Option<usize> {
        Some(self.queue.capacity())
    }

    fn len(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flush_waits_for_done_and_close_drains() {
        let q = std::sync::Arc::new(FanoutQueue::new(2));
        assert!(q.try_push(1).is_ok());
        assert!(q.try_push(2).is_ok());
        assert!(matches!(q.try_push(3), Err(PushError::Full(3))));
        let worker = {
            let q = q.clone();
            std::thread::spawn(move || {
                let mut got = Vec::new();
                while let Some(v) = q.pop_blocking() {
                    got.push(v);
                    q.done();
                }
                got
            })
        };
        q.flush();
        assert_eq!(q.len(), 0);
        q.close();
        assert!(matches!(q.try_push(4), Err(PushError::Closed(4))));
        assert_eq!(worker.join().ok(), Some(vec![1, 2]));
    }
}
