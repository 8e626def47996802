//! A bounded executor for non-critical post-steps ("flow-async").
//!
//! The seed's example: after a live stream starts, writing the programme is
//! critical, but syncing it to recommendation and home-page services is not —
//! answer the user first, run those later. The danger is an unbounded
//! backlog when the post-steps are slower than requests arrive; so this
//! executor has a hard bound on queued + running jobs and *sheds* beyond it,
//! counting every drop.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::ReactorError;

#[derive(Debug, Default)]
struct Counters {
    in_flight: AtomicUsize,
    submitted: AtomicU64,
    completed: AtomicU64,
    shed: AtomicU64,
    panicked: AtomicU64,
}

/// Counters of an [`AfterResponse`] executor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AfterResponseStats {
    /// Jobs accepted.
    pub submitted: u64,
    /// Jobs that ran to the end (or panicked).
    pub completed: u64,
    /// Jobs refused because the executor was full.
    pub shed: u64,
    /// Jobs that panicked (also counted in `completed`).
    pub panicked: u64,
    /// Jobs queued or running now.
    pub in_flight: usize,
}

/// Configures an [`AfterResponse`] executor.
#[derive(Debug, Clone)]
pub struct AfterResponseBuilder {
    capacity: usize,
    workers: usize,
    metrics: Option<Arc<dyn kuai_core::Metrics>>,
}

impl AfterResponseBuilder {
    /// At most this many jobs queued or running; more are shed. Default 1024.
    pub fn capacity(mut self, n: usize) -> Self {
        self.capacity = n;
        self
    }

    /// Threads running the jobs (off the request path). Default 1.
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// Reports `reactor.after_response.shed` / `.panicked` counters.
    pub fn metrics(mut self, m: Arc<dyn kuai_core::Metrics>) -> Self {
        self.metrics = Some(m);
        self
    }

    /// Starts the worker threads.
    pub fn build(self) -> Result<AfterResponse, ReactorError> {
        if self.capacity == 0 || self.workers == 0 {
            return Err(ReactorError::InvalidConfig(
                "after-response capacity and workers must be positive".into(),
            ));
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(self.workers)
            .thread_name("kuai-after-response")
            .enable_all()
            .build()?;
        Ok(AfterResponse {
            rt: Some(rt),
            capacity: self.capacity,
            counters: Arc::new(Counters::default()),
            metrics: self.metrics,
        })
    }
}

/// Runs post-response jobs on its own threads, bounded, shedding when full.
///
/// ```
/// use kuai_reactor::AfterResponse;
/// let exec = AfterResponse::builder().capacity(2).build().unwrap();
/// let gate = std::sync::Arc::new(tokio::sync::Notify::new());
/// for _ in 0..3 {
///     let g = gate.clone();
///     let _ = exec.submit(async move { g.notified().await });
/// }
/// assert_eq!(exec.stats().shed, 1); // the third did not fit
/// gate.notify_waiters();
/// # exec.shutdown(std::time::Duration::from_secs(1));
/// ```
pub struct AfterResponse {
    rt: Option<tokio::runtime::Runtime>,
    capacity: usize,
    counters: Arc<Counters>,
    metrics: Option<Arc<dyn kuai_core::Metrics>>,
}

impl fmt::Debug for AfterResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AfterResponse")
            .field("capacity", &self.capacity)
            .field("stats", &self.stats())
            .finish()
    }
}

/// Frees the job's slot however the job ends (done, panicked, cancelled).
struct Slot {
    counters: Arc<Counters>,
    metrics: Option<Arc<dyn kuai_core::Metrics>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.counters.completed.fetch_add(1, Ordering::Relaxed);
        self.counters.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl AfterResponse {
    /// A builder (capacity 1024, one worker).
    pub fn builder() -> AfterResponseBuilder {
        AfterResponseBuilder {
            capacity: 1024,
            workers: 1,
            metrics: None,
        }
    }

    /// Queues `job`, or sheds it with [`ReactorError::Overloaded`] (counted)
    /// when `capacity` jobs are already queued or running. Never blocks.
    pub fn submit<F>(&self, job: F) -> Result<(), ReactorError>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let Some(rt) = &self.rt else {
            return Err(ReactorError::Closed("after-response executor shut down"));
        };
        let cap = self.capacity;
        let admitted = self
            .counters
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < cap).then_some(n + 1)
            })
            .is_ok();
        if !admitted {
            self.counters.shed.fetch_add(1, Ordering::Relaxed);
            if let Some(m) = &self.metrics {
                m.counter("reactor.after_response.shed", 1);
            }
            return Err(ReactorError::Overloaded("after-response executor full"));
        }
        self.counters.submitted.fetch_add(1, Ordering::Relaxed);
        let slot = Slot {
            counters: Arc::clone(&self.counters),
            metrics: self.metrics.clone(),
        };
        rt.spawn(async move {
            if crate::service::catch_unwind_future(job).await.is_err() {
                slot.counters.panicked.fetch_add(1, Ordering::Relaxed);
                if let Some(m) = &slot.metrics {
                    m.counter("reactor.after_response.panicked", 1);
                }
            }
            drop(slot);
        });
        Ok(())
    }

    /// Current counters.
    pub fn stats(&self) -> AfterResponseStats {
        let c = &self.counters;
        AfterResponseStats {
            submitted: c.submitted.load(Ordering::Relaxed),
            completed: c.completed.load(Ordering::Relaxed),
            shed: c.shed.load(Ordering::Relaxed),
            panicked: c.panicked.load(Ordering::Relaxed),
            in_flight: c.in_flight.load(Ordering::Acquire),
        }
    }

    /// Waits up to `grace` for queued jobs to finish, then stops the
    /// workers (unfinished jobs are dropped). Returns the final counters.
    /// Blocks: call it from a plain thread, not from async code (dropping
    /// the executor instead never blocks).
    pub fn shutdown(mut self, grace: Duration) -> AfterResponseStats {
        let deadline = Instant::now() + grace;
        while self.counters.in_flight.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_millis(100));
        }
        self.stats()
    }
}

impl Drop for AfterResponse {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sheds_beyond_capacity_and_recovers() {
        let exec = AfterResponse::builder().capacity(4).build();
        let Ok(exec) = exec else {
            panic!("build failed")
        };
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let mut ok = 0;
        for _ in 0..10 {
            let g = Arc::clone(&gate);
            if exec
                .submit(async move {
                    let _ = g.acquire().await;
                })
                .is_ok()
            {
                ok += 1;
            }
        }
        assert_eq!(ok, 4);
        assert_eq!(exec.stats().shed, 6);
        assert_eq!(exec.stats().in_flight, 4);
        gate.add_permits(100);
        let stats = exec.shutdown(Duration::from_secs(5));
        assert_eq!(stats.completed, 4);
        assert_eq!(stats.in_flight, 0);
    }

    #[test]
    fn a_panicking_job_frees_its_slot() {
        let Ok(exec) = AfterResponse::builder().capacity(1).build() else {
            panic!("build failed")
        };
        assert!(exec.submit(async { panic!("post-step bug") }).is_ok());
        let deadline = Instant::now() + Duration::from_secs(5);
        while exec.stats().in_flight > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(exec.stats().panicked, 1);
        assert!(exec.submit(async {}).is_ok(), "slot was freed");
        assert!(AfterResponse::builder().capacity(0).build().is_err());
    }
}
