//! `kuai-pool`: reuse what is expensive to create — buffers, objects,
//! threads and connections (the seed article's pooling chapter).
//!
//! | pool | type | use it when |
//! |---|---|---|
//! | buffers | [`BufferPool`], [`LocalBufferPool`] | many `BytesMut` of 512 B … 1 MiB are live at once (servers, codecs); a per-thread cache sits in front of sharded shared lists, with a hard cap on pooled bytes |
//! | objects | [`Pool<T>`](Pool) | building a `T` is costly (big tables, parsers, regex sets); create/reset hooks, RAII guard, `max_idle`, prewarm |
//! | threads | [`ThreadPool`], [`IsolatedPools`] | blocking or CPU work with Java `ThreadPoolExecutor` semantics: core/max threads, bounded queue, keep-alive, rejection policies, named bulkheads, `shutdown_now` |
//! | connections | [`ConnPool`] | async (tokio) connections made by a [`kuai_core::Manager`]: min idle or lazy, acquire timeout, wait or temporary connections when exhausted, health checks with a skip window, background validation, lifetimes, LIFO/FIFO |
//!
//! Misconfiguration (zero sizes, `max < min`, zero timeouts) is a
//! [`PoolError::Config`] when the pool is built, never a panic later. Every
//! error converts into [`kuai_core::Error`] with a kind that says what the
//! caller can do (`Timeout`, `Overloaded`, `Closed`, `Backend`, …).
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use kuai_pool::{BufferPool, Pool, ThreadPool};
//!
//! // Buffers: returned to the pool when dropped.
//! let buffers = BufferPool::new();
//! let mut buf = buffers.get(4096);
//! buf.extend_from_slice(b"GET / HTTP/1.1\r\n");
//! drop(buf);
//! assert_eq!(buffers.stats().bytes_pooled, 4096);
//!
//! // Objects: built once, reset and reused.
//! let scratch = Pool::builder(|| Vec::<u64>::with_capacity(1 << 16)).reset(Vec::clear).build()?;
//! scratch.get().push(1);
//! assert!(scratch.get().is_empty());
//!
//! // Threads: core 2, up to 4, queue of 64, callers run the overflow.
//! let workers = ThreadPool::builder()
//!     .core_threads(2)
//!     .max_threads(4)
//!     .queue_capacity(64)
//!     .rejection_policy(kuai_pool::RejectionPolicy::CallerRuns)
//!     .build()?;
//! workers.execute(|| println!("on a pool thread"))?;
//! workers.shutdown();
//! assert!(workers.await_termination(Duration::from_secs(5)));
//!
//! // Connections: see `ConnPool` for an example with a manager.
//! # Ok::<(), kuai_pool::PoolError>(())
//! ```
//!
//! # Feature flags
//!
//! - `redis`: [`RedisManager`] (the `redis` crate, multiplexed async
//!   connections; health check `PING`).
//! - `postgres`: [`PostgresManager`] (`tokio-postgres`, no TLS; health check
//!   an empty query; `Client::is_closed` as the broken test).
//!
//! Neither is on by default: the in-process pools need no client library.
#![forbid(unsafe_code)]

pub mod buffer;
pub mod conn;
mod error;
pub mod object;
#[cfg(feature = "postgres")]
mod postgres_manager;
#[cfg(feature = "redis")]
mod redis_manager;
mod sync;
pub mod thread;

pub use buffer::{BufferPool, BufferPoolBuilder, BufferStats, LocalBufferPool, PooledBuf};
/// The `bytes` crate, whose `BytesMut` the buffer pool hands out.
pub use bytes;
pub use conn::{
    CheckOnCheckout, ConnPool, ConnPoolBuilder, ConnStats, ConnStatus, Exhaustion, FnManager,
    Order, PooledConn,
};
pub use error::{PoolError, PoolResult};
/// The workspace-wide error every [`PoolError`] converts into.
pub use kuai_core::Error;
pub use object::{ObjectStats, Pool, PoolBuilder, Pooled};
#[cfg(feature = "postgres")]
pub use postgres_manager::PostgresManager;
/// The `redis` crate, as used by [`RedisManager`].
#[cfg(feature = "redis")]
pub use redis;
#[cfg(feature = "redis")]
pub use redis_manager::{RedisConn, RedisManager};
pub use thread::{
    IsolatedPools, IsolatedPoolsBuilder, Job, RejectionPolicy, TaskHandle, ThreadPool,
    ThreadPoolBuilder, ThreadPoolMetrics,
};
/// The `tokio-postgres` crate, as used by [`PostgresManager`].
#[cfg(feature = "postgres")]
pub use tokio_postgres;
