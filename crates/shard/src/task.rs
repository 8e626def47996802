//! Task sharding: a fixed worker pool, map/reduce over shards of a job, and a
//! parallel merge sort.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::error::{ShardError, ShardResult};
use crate::merge::{Page, merge_sorted_by};

type Job = Box<dyn FnOnce() + Send + 'static>;

/// A fixed pool of worker threads fed from one queue.
///
/// Dropping the pool lets queued jobs finish and joins the workers.
///
/// ```
/// use kuai_shard::WorkerPool;
/// let pool = WorkerPool::new(2)?;
/// let sum = pool.map_reduce((1..=100u64).collect(), 4, |chunk| chunk.iter().sum::<u64>(), |a, b| a + b)?;
/// assert_eq!(sum, Some(5050));
/// let sorted = pool.merge_sort(vec![5, 3, 9, 1, 7], 2)?;
/// assert_eq!(sorted, vec![1, 3, 5, 7, 9]);
/// # Ok::<(), kuai_shard::ShardError>(())
/// ```
#[derive(Debug)]
pub struct WorkerPool {
    tx: Option<mpsc::Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
}

impl WorkerPool {
    /// A pool of `threads` workers (at least 1).
    pub fn new(threads: usize) -> ShardResult<Self> {
        if threads == 0 {
            return Err(ShardError::InvalidConfig(
                "a pool needs at least one thread".into(),
            ));
        }
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let mut workers = Vec::with_capacity(threads);
        for i in 0..threads {
            let rx = Arc::clone(&rx);
            let handle = std::thread::Builder::new()
                .name(format!("kuai-shard-{i}"))
                .spawn(move || {
                    loop {
                        // Hold the lock only to take a job, not to run it.
                        let job = match rx.lock() {
                            Ok(guard) => guard.recv(),
                            Err(poisoned) => poisoned.into_inner().recv(),
                        };
                        match job {
                            Ok(job) => {
                                // A panicking job must not kill the worker.
                                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                            }
                            Err(_) => return,
                        }
                    }
                })
                .map_err(|e| ShardError::Backend(format!("spawning a worker: {e}")))?;
            workers.push(handle);
        }
        Ok(WorkerPool {
            tx: Some(tx),
            workers,
        })
    }

    /// Number of worker threads.
    pub fn threads(&self) -> usize {
        self.workers.len()
    }

    /// Queues a job.
    pub fn execute(&self, job: impl FnOnce() + Send + 'static) -> ShardResult<()> {
        self.tx
            .as_ref()
            .ok_or(ShardError::PoolClosed)?
            .send(Box::new(job))
            .map_err(|_| ShardError::PoolClosed)
    }

    /// Splits `items` into `shards` contiguous chunks, runs `map` on each in
    /// the pool, and folds the results with `reduce` in chunk order.
    /// `None` when `items` is empty. A panicking `map` is an error.
    pub fn map_reduce<T, R, M, F>(
        &self,
        items: Vec<T>,
        shards: usize,
        map: M,
        mut reduce: F,
    ) -> ShardResult<Option<R>>
    where
        T: Send + 'static,
        R: Send + 'static,
        M: Fn(Vec<T>) -> R + Send + Sync + 'static,
        F: FnMut(R, R) -> R,
    {
        let parts = self.map_shards(items, shards, map)?;
        Ok(parts.into_iter().reduce(&mut reduce))
    }

    fn map_shards<T, R, M>(&self, mut items: Vec<T>, shards: usize, map: M) -> ShardResult<Vec<R>>
    where
        T: Send + 'static,
        R: Send + 'static,
        M: Fn(Vec<T>) -> R + Send + Sync + 'static,
    {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let shards = shards.clamp(1, items.len());
        let size = items.len().div_ceil(shards);
        let map = Arc::new(map);
        let (tx, rx) = mpsc::channel();
        let mut chunks = Vec::with_capacity(shards);
        while !items.is_empty() {
            let rest = items.split_off(size.min(items.len()));
            chunks.push(std::mem::replace(&mut items, rest));
        }
        let n = chunks.len();
        for (i, chunk) in chunks.into_iter().enumerate() {
            let (tx, map) = (tx.clone(), Arc::clone(&map));
            self.execute(move || {
                let _ = tx.send((i, map(chunk)));
            })?;
        }
        drop(tx);
        let mut out: Vec<Option<R>> = (0..n).map(|_| None).collect();
        for (i, r) in rx.iter() {
            out[i] = Some(r);
        }
        // A missing result means its job panicked.
        out.into_iter()
            .enumerate()
            .map(|(i, r)| {
                r.ok_or_else(|| ShardError::ShardsFailed(vec![(i, "map task panicked".into())]))
            })
            .collect()
    }

    /// Sorts `items` by sorting `shards` chunks in parallel and k-way merging them.
    pub fn merge_sort<T: Ord + Send + 'static>(
        &self,
        items: Vec<T>,
        shards: usize,
    ) -> ShardResult<Vec<T>> {
        let len = items.len();
        let runs = self.map_shards(items, shards, |mut chunk: Vec<T>| {
            chunk.sort();
            chunk
        })?;
        Ok(merge_sorted_by(runs, Page::new(0, len), T::cmp))
    }
}

impl Drop for WorkerPool {
    fn drop(&mut self) {
        drop(self.tx.take());
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panicking_map_is_an_error_and_the_pool_survives() {
        let pool = WorkerPool::new(2).unwrap();
        let r = pool.map_reduce(
            vec![1, 2, 3, 4],
            4,
            |c: Vec<i32>| {
                assert!(c[0] != 3, "boom");
                c[0]
            },
            |a, b| a + b,
        );
        assert!(matches!(r, Err(ShardError::ShardsFailed(_))));
        assert_eq!(
            pool.map_reduce(vec![1, 2], 2, |c: Vec<i32>| c[0], |a, b| a + b)
                .unwrap(),
            Some(3)
        );
        assert!(WorkerPool::new(0).is_err());
        assert_eq!(
            pool.map_reduce(Vec::<u8>::new(), 3, |c| c.len(), |a, b| a + b)
                .unwrap(),
            None
        );
    }

    #[test]
    fn merge_sort_sorts() {
        let pool = WorkerPool::new(3).unwrap();
        let v: Vec<u32> = (0..10_000u32)
            .map(|i| i.wrapping_mul(2_654_435_761) % 977)
            .collect();
        let mut want = v.clone();
        want.sort();
        assert_eq!(pool.merge_sort(v, 7).unwrap(), want);
    }
}
