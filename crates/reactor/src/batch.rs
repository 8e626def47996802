//! DataLoader-style batch merging.
//!
//! Single-key calls that arrive within a window (or until a batch is full)
//! become one call to a batch loader: one round-trip instead of N. Each
//! caller gets its own value; a failed batch fails each of its callers with
//! the same (shared) error.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::ReactorError;

type Reply<V> = oneshot::Sender<Result<V, ReactorError>>;

#[derive(Debug, Default)]
struct Counters {
    calls: AtomicU64,
    batches: AtomicU64,
    failed_batches: AtomicU64,
}

/// Counters of a [`Batcher`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BatcherStats {
    /// Single-key calls received.
    pub calls: u64,
    /// Batch loader calls made.
    pub batches: u64,
    /// Batch loader calls that failed.
    pub failed_batches: u64,
}

/// Configures a [`Batcher`].
#[derive(Debug, Clone)]
pub struct BatcherBuilder {
    max_batch: usize,
    window: Duration,
    max_in_flight: usize,
    queue: usize,
}

impl BatcherBuilder {
    /// The most keys in one batch (size bound). Default 64.
    pub fn max_batch(mut self, n: usize) -> Self {
        self.max_batch = n;
        self
    }

    /// How long the first key of a batch waits for company (time bound).
    /// Default 1 ms.
    pub fn window(mut self, d: Duration) -> Self {
        self.window = d;
        self
    }

    /// Batch loader calls allowed at once; while all are busy, waiting keys
    /// pile into the next batch. Default 8.
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n;
        self
    }

    /// Calls that may wait for a batch; beyond it callers wait to enqueue
    /// (backpressure, never unbounded memory). Default 4096.
    pub fn queue(mut self, n: usize) -> Self {
        self.queue = n;
        self
    }

    /// Starts the batcher's driver task on the current tokio runtime.
    ///
    /// `loader` gets the keys of one batch and must return one value per key,
    /// in the same order. Fails outside a tokio runtime.
    pub fn build<K, V, E, L, Fut>(self, loader: L) -> Result<Batcher<K, V>, ReactorError>
    where
        K: Send + 'static,
        V: Send + 'static,
        E: std::error::Error + Send + Sync + 'static,
        L: Fn(Vec<K>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<V>, E>> + Send + 'static,
    {
        if self.max_batch == 0 || self.max_in_flight == 0 || self.queue == 0 {
            return Err(ReactorError::InvalidConfig(
                "max_batch, max_in_flight and queue must be positive".into(),
            ));
        }
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| ReactorError::InvalidConfig("Batcher needs a tokio runtime".into()))?;
        let (tx, rx) = mpsc::channel(self.queue);
        let counters = Arc::new(Counters::default());
        handle.spawn(drive(self, rx, Arc::new(loader), Arc::clone(&counters)));
        Ok(Batcher { tx, counters })
    }
}

/// Merges single-key loads into batch loads.
///
/// ```
/// use std::time::Duration;
/// use kuai_reactor::Batcher;
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let batcher = Batcher::builder()
///     .max_batch(100)
///     .window(Duration::from_millis(2))
///     .build(|keys: Vec<u32>| async move {
///         Ok::<_, std::io::Error>(keys.iter().map(|k| k * 10).collect())
///     })
///     .unwrap();
/// let (a, b, c) = tokio::join!(batcher.load(1), batcher.load(2), batcher.load(3));
/// assert_eq!((a.unwrap(), b.unwrap(), c.unwrap()), (10, 20, 30));
/// assert_eq!(batcher.stats().batches, 1); // three calls, one round-trip
/// # });
/// ```
pub struct Batcher<K, V> {
    tx: mpsc::Sender<(K, Reply<V>)>,
    counters: Arc<Counters>,
}

impl<K, V> Clone for Batcher<K, V> {
    fn clone(&self) -> Self {
        Batcher {
            tx: self.tx.clone(),
            counters: Arc::clone(&self.counters),
        }
    }
}

impl<K, V> fmt::Debug for Batcher<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Batcher")
            .field("stats", &self.stats())
            .finish()
    }
}

impl Batcher<(), ()> {
    /// A builder: batches of up to 64 keys, 1 ms window, 8 in flight.
    pub fn builder() -> BatcherBuilder {
        BatcherBuilder {
            max_batch: 64,
            window: Duration::from_millis(1),
            max_in_flight: 8,
            queue: 4096,
        }
    }
}

impl<K, V> Batcher<K, V> {
    /// Loads one key through the next batch.
    pub async fn load(&self, key: K) -> Result<V, ReactorError> {
        self.counters.calls.fetch_add(1, Ordering::Relaxed);
        let (reply, rx) = oneshot::channel();
        self.tx
            .send((key, reply))
            .await
            .map_err(|_| ReactorError::Closed("batcher driver stopped"))?;
        rx.await
            .map_err(|_| ReactorError::Closed("batch dropped before answering"))?
    }

    /// Current counters.
    pub fn stats(&self) -> BatcherStats {
        BatcherStats {
            calls: self.counters.calls.load(Ordering::Relaxed),
            batches: self.counters.batches.load(Ordering::Relaxed),
            failed_batches: self.counters.failed_batches.load(Ordering::Relaxed),
        }
    }
}

#[derive(Debug)]
struct LengthMismatch {
    keys: usize,
    values: usize,
}

impl fmt::Display for LengthMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "loader returned {} values for {} keys",
            self.values, self.keys
        )
    }
}

impl std::error::Error for LengthMismatch {}

async fn drive<K, V, E, L, Fut>(
    cfg: BatcherBuilder,
    mut rx: mpsc::Receiver<(K, Reply<V>)>,
    loader: Arc<L>,
    counters: Arc<Counters>,
) where
    K: Send + 'static,
    V: Send + 'static,
    E: std::error::Error + Send + Sync + 'static,
    L: Fn(Vec<K>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Vec<V>, E>> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(cfg.max_in_flight));
    while let Some(first) = rx.recv().await {
        let mut batch = Vec::with_capacity(cfg.max_batch);
        batch.push(first);
        let window = tokio::time::sleep(cfg.window);
        let mut window = std::pin::pin!(window);
        while batch.len() < cfg.max_batch {
            tokio::select! {
                biased;
                item = rx.recv() => match item {
                    Some(item) => batch.push(item),
                    None => break,
                },
                _ = &mut window => break,
            }
        }
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            break;
        };
        // Keys that arrived while every loader slot was busy join this batch.
        while batch.len() < cfg.max_batch {
            match rx.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        let (keys, replies): (Vec<K>, Vec<Reply<V>>) = batch.into_iter().unzip();
        counters.batches.fetch_add(1, Ordering::Relaxed);
        let fut = loader(keys);
        let counters = Arc::clone(&counters);
        tokio::spawn(async move {
            let _permit = permit;
            let n = replies.len();
            let result = crate::service::catch_unwind_future(fut).await;
            let failure: Arc<dyn std::error::Error + Send + Sync> = match result {
                Ok(Ok(values)) if values.len() == n => {
                    for (r, v) in replies.into_iter().zip(values) {
                        let _ = r.send(Ok(v));
                    }
                    return;
                }
                Ok(Ok(values)) => Arc::new(LengthMismatch {
                    keys: n,
                    values: values.len(),
                }),
                Ok(Err(e)) => Arc::new(e),
                Err(()) => Arc::new(std::io::Error::other("batch loader panicked")),
            };
            counters.failed_batches.fetch_add(1, Ordering::Relaxed);
            for r in replies {
                let _ = r.send(Err(ReactorError::BatchFailed(Arc::clone(&failure))));
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        match tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
        {
            Ok(rt) => rt,
            Err(e) => panic!("runtime: {e}"),
        }
    }

    #[test]
    fn size_bound_splits_batches_and_each_caller_gets_its_own_value() {
        rt().block_on(async {
            let Ok(b) = Batcher::builder()
                .max_batch(4)
                .window(Duration::from_millis(50))
                .build(|keys: Vec<u64>| async move {
                    Ok::<_, std::io::Error>(keys.into_iter().map(|k| k * k).collect::<Vec<u64>>())
                })
            else {
                panic!("build")
            };
            let calls = (0..10u64).map(|k| {
                let b = b.clone();
                async move { b.load(k).await.ok() }
            });
            let out = crate::fan_out(
                calls.map(|f| async move { Ok::<_, ()>(f.await) }),
                Duration::from_secs(10),
                crate::WaitFor::All,
            )
            .await;
            let got: Vec<Option<u64>> = out.values().copied().collect();
            assert_eq!(got, (0..10u64).map(|k| Some(k * k)).collect::<Vec<_>>());
            let s = b.stats();
            assert_eq!((s.calls, s.batches), (10, 3));
        });
    }

    #[test]
    fn a_failed_batch_fails_every_caller() {
        rt().block_on(async {
            let Ok(b) = Batcher::builder().build(|_keys: Vec<u8>| async move {
                Err::<Vec<u8>, _>(std::io::Error::other("backend down"))
            }) else {
                panic!("build")
            };
            let (x, y) = tokio::join!(b.load(1), b.load(2));
            for r in [x, y] {
                match r {
                    Err(ReactorError::BatchFailed(e)) => {
                        assert!(e.to_string().contains("backend down"))
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
            assert_eq!(b.stats().failed_batches, 1);

            let Ok(short) = Batcher::builder()
                .build(|_keys: Vec<u8>| async move { Ok::<Vec<u8>, std::io::Error>(vec![]) })
            else {
                panic!("build")
            };
            assert!(matches!(
                short.load(1).await,
                Err(ReactorError::BatchFailed(_))
            ));
        });
        assert!(
            Batcher::builder()
                .build(|k: Vec<u8>| async move { Ok::<_, std::io::Error>(k) })
                .is_err(),
            "no runtime: error, not panic"
        );
    }
}
