//! A bounded job queue drained by worker threads, for asynchronous fan-out.
//!
//! Producers never block: a full queue rejects the job (the caller sheds or
//! retries). [`FanoutQueue::flush`] waits until every accepted job has run.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};

use kuai_core::{PushError, TryQueue};

#[derive(Debug)]
struct State<T> {
    jobs: VecDeque<T>,
    in_flight: usize,
    closed: bool,
}

/// A bounded MPMC queue with blocking pops for workers and a flush barrier.
#[derive(Debug)]
pub(crate) struct FanoutQueue<T> {
    cap: usize,
    state: Mutex<State<T>>,
    ready: Condvar,
    idle: Condvar,
}

impl<T> FanoutQueue<T> {
    pub(crate) fn new(cap: usize) -> Self {
        FanoutQueue {
            cap: cap.max(1),
            state: Mutex::new(State {
                jobs: VecDeque::new(),
                in_flight: 0,
                closed: false,
            }),
            ready: Condvar::new(),
            idle: Condvar::new(),
        }
    }

    /// Blocks until a job is available (counting it in flight) or the queue
    /// is closed and drained.
    pub(crate) fn pop_blocking(&self) -> Option<T> {
        let mut st = self.state.lock().ok()?;
        loop {
            if let Some(job) = st.jobs.pop_front() {
                st.in_flight += 1;
                return Some(job);
            }
            if st.closed {
                return None;
            }
            st = self.ready.wait(st).ok()?;
        }
    }

    /// Marks a popped job as done.
    pub(crate) fn done(&self) {
        if let Ok(mut st) = self.state.lock() {
            st.in_flight = st.in_flight.saturating_sub(1);
            if st.in_flight == 0 && st.jobs.is_empty() {
                self.idle.notify_all();
            }
        }
    }

    /// Waits until every accepted job has been processed.
    pub(crate) fn flush(&self) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        while !(st.jobs.is_empty() && st.in_flight == 0) {
            match self.idle.wait(st) {
                Ok(s) => st = s,
                Err(_) => return,
            }
        }
    }

    /// Refuses new jobs; workers drain what is queued and stop.
    pub(crate) fn close(&self) {
        if let Ok(mut st) = self.state.lock() {
            st.closed = true;
        }
        self.ready.notify_all();
    }
}

impl<T: Send> TryQueue<T> for FanoutQueue<T> {
    fn try_push(&self, value: T) -> Result<(), PushError<T>> {
        let Ok(mut st) = self.state.lock() else {
            return Err(PushError::Closed(value));
        };
        if st.closed {
            return Err(PushError::Closed(value));
        }
        if st.jobs.len() >= self.cap {
            return Err(PushError::Full(value));
        }
        st.jobs.push_back(value);
        drop(st);
        self.ready.notify_one();
        Ok(())
    }

    fn try_pop(&self) -> Option<T> {
        let mut st = self.state.lock().ok()?;
        let job = st.jobs.pop_front()?;
        st.in_flight += 1;
        Some(job)
    }

    fn capacity(&self) -> Option<usize> {
        Some(self.cap)
    }

    fn len(&self) -> usize {
        self.state.lock().map(|s| s.jobs.len()).unwrap_or(0)
    }
}
