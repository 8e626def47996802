//! `kuai-pool`: reuse what is expensive to create — buffers, objects,
//! threads and connections.
//!
//! PLACEHOLDER
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
    IsolatedPools, IsolatedPoolsBuilder, Job, RejectionPolicy, ThreadPool, ThreadPoolBuilder,
    ThreadPoolMetrics,
};
/// The `tokio-postgres` crate, as used by [`PostgresManager`].
#[cfg(feature = "postgres")]
pub use tokio_postgres;
