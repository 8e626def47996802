//! Scatter-gather: one query to many shards, concurrently, with a deadline
//! and a partial-failure policy.

use std::fmt;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::error::{ShardError, ShardResult};
use crate::task::WorkerPool;

/// What to do when some shards fail or miss the deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailurePolicy {
    /// Any failed shard fails the whole query (the default: correct or nothing).
    #[default]
    Fail,
    /// Return what arrived, naming the failed shards, as long as at least
    /// `min_ok` shards answered.
    Partial {
        /// Fewest successful shards for an answer.
        min_ok: usize,
    },
}

/// Why a shard is missing from the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardFailure {
    /// The shard returned an error.
    Error(String),
    /// The shard did not answer before the deadline.
    TimedOut,
    /// The shard's task panicked.
    Panicked,
}

impl fmt::Display for ShardFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShardFailure::Error(e) => write!(f, "error: {e}"),
            ShardFailure::TimedOut => f.write_str("timed out"),
            ShardFailure::Panicked => f.write_str("panicked"),
        }
    }
}

/// The answers of a scatter-gather query.
#[derive(Debug, Clone, PartialEq)]
pub struct Gathered<T> {
    /// `(shard, answer)` for each shard that answered in time, by shard.
    pub results: Vec<(usize, T)>,
    /// `(shard, why)` for each shard that did not.
    pub failed: Vec<(usize, ShardFailure)>,
}

impl<T> Gathered<T> {
    /// Whether every shard answered.
    pub fn is_complete(&self) -> bool {
        self.failed.is_empty()
    }
}

/// Runs a query on many shards concurrently over a [`WorkerPool`].
///
/// Each shard's task gets the deadline so it can give up early; a task that
/// overruns keeps its worker busy until it returns, but its late answer is
/// dropped — size the pool to at least the shard fan-out.
///
/// ```
/// use std::time::Duration;
/// use kuai_shard::{FailurePolicy, ScatterGather, WorkerPool};
/// let sg = ScatterGather::new(WorkerPool::new(4)?, Duration::from_secs(5));
/// let got = sg.run(&[0, 1, 2, 3], |shard, _deadline| Ok::<_, String>(shard * 10))?;
/// assert_eq!(got.results, vec![(0, 0), (1, 10), (2, 20), (3, 30)]);
///
/// let partial = sg.policy(FailurePolicy::Partial { min_ok: 2 })
///     .run(&[0, 1, 2], |shard, _| if shard == 1 { Err("down".to_string()) } else { Ok(shard) })?;
/// assert_eq!(partial.failed.len(), 1);
/// assert_eq!(partial.failed[0].0, 1);
/// # Ok::<(), kuai_shard::ShardError>(())
/// ```
#[derive(Debug, Clone)]
pub struct ScatterGather {
    pool: Arc<WorkerPool>,
    timeout: Duration,
    policy: FailurePolicy,
}

impl ScatterGather {
    /// Queries time out after `timeout`; the policy is [`FailurePolicy::Fail`].
    pub fn new(pool: WorkerPool, timeout: Duration) -> Self {
        ScatterGather {
            pool: Arc::new(pool),
            timeout,
            policy: FailurePolicy::Fail,
        }
    }

    /// The same pool and timeout with another policy.
    #[must_use]
    pub fn policy(&self, policy: FailurePolicy) -> Self {
        ScatterGather {
            pool: Arc::clone(&self.pool),
            timeout: self.timeout,
            policy,
        }
    }

    /// The same pool and policy with another timeout.
    #[must_use]
    pub fn timeout(&self, timeout: Duration) -> Self {
        ScatterGather {
            pool: Arc::clone(&self.pool),
            timeout,
            policy: self.policy,
        }
    }

    /// Runs `query(shard, deadline)` on every shard in `shards` and gathers
    /// the answers, applying the failure policy.
    pub fn run<T, E, F>(&self, shards: &[usize], query: F) -> ShardResult<Gathered<T>>
    where
        T: Send + 'static,
        E: fmt::Display,
        F: Fn(usize, Instant) -> Result<T, E> + Send + Sync + 'static,
    {
        let deadline = Instant::now() + self.timeout;
        let query = Arc::new(query);
        let (tx, rx) = mpsc::channel::<(usize, Result<T, String>)>();
        for (slot, &shard) in shards.iter().enumerate() {
            let (tx, query) = (tx.clone(), Arc::clone(&query));
            self.pool.execute(move || {
                let r = query(shard, deadline).map_err(|e| e.to_string());
                let _ = tx.send((slot, r));
            })?;
        }
        drop(tx);
        let mut answers: Vec<Option<Result<T, ShardFailure>>> =
            (0..shards.len()).map(|_| None).collect();
        let mut pending = shards.len();
        while pending > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok((slot, r)) => {
                    answers[slot] = Some(r.map_err(ShardFailure::Error));
                    pending -= 1;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                // Every sender is gone: the rest panicked.
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    for a in answers.iter_mut().filter(|a| a.is_none()) {
                        *a = Some(Err(ShardFailure::Panicked));
                    }
                    break;
                }
            }
        }
        let mut out = Gathered {
            results: Vec::with_capacity(shards.len()),
            failed: Vec::new(),
        };
        for (slot, a) in answers.into_iter().enumerate() {
            let shard = shards[slot];
            match a {
                Some(Ok(v)) => out.results.push((shard, v)),
                Some(Err(f)) => out.failed.push((shard, f)),
                None => out.failed.push((shard, ShardFailure::TimedOut)),
            }
        }
        match self.policy {
            FailurePolicy::Fail if !out.failed.is_empty() => {
                if out.failed.iter().all(|f| f.1 == ShardFailure::TimedOut) {
                    Err(ShardError::Deadline(
                        out.failed.into_iter().map(|f| f.0).collect(),
                    ))
                } else {
                    Err(ShardError::ShardsFailed(
                        out.failed
                            .into_iter()
                            .map(|(s, f)| (s, f.to_string()))
                            .collect(),
                    ))
                }
            }
            FailurePolicy::Partial { min_ok } if out.results.len() < min_ok => {
                Err(ShardError::ShardsFailed(
                    out.failed
                        .into_iter()
                        .map(|(s, f)| (s, f.to_string()))
                        .collect(),
                ))
            }
            _ => Ok(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[test]
    fn slow_shard_times_out_and_is_named() {
        let release = Arc::new(AtomicBool::new(false));
        let sg = ScatterGather::new(WorkerPool::new(3).unwrap(), Duration::from_millis(500));
        let r2 = Arc::clone(&release);
        let query = move |shard: usize, _deadline: Instant| {
            if shard == 2 {
                // Blocks until the test releases it, long after the deadline.
                while !r2.load(Ordering::Acquire) {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            Ok::<_, String>(shard)
        };
        let err = sg.run(&[0, 1, 2], query.clone());
        assert_eq!(err, Err(ShardError::Deadline(vec![2])));
        let partial = sg
            .policy(FailurePolicy::Partial { min_ok: 1 })
            .run(&[0, 1, 2], query)
            .unwrap();
        assert_eq!(partial.results, vec![(0, 0), (1, 1)]);
        assert_eq!(partial.failed, vec![(2, ShardFailure::TimedOut)]);
        release.store(true, Ordering::Release);
    }

    #[test]
    fn min_ok_is_enforced() {
        let sg = ScatterGather::new(WorkerPool::new(2).unwrap(), Duration::from_secs(10))
            .policy(FailurePolicy::Partial { min_ok: 2 });
        let r = sg.run(&[0, 1], |s, _| if s == 0 { Ok(1) } else { Err("x") });
        assert!(matches!(r, Err(ShardError::ShardsFailed(ref f)) if f[0].0 == 1));
    }
}
