//! `kuai-pool`: reuse what is expensive to create — buffers, objects,
//! threads and connections.
//!
//! PLACEHOLDER
#![forbid(unsafe_code)]

pub mod buffer;
pub mod conn;
mod error;
pub mod object;
mod sync;
pub mod thread;

pub use buffer::{BufferPool, BufferPoolBuilder, BufferStats, PooledBuf};
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
pub use thread::{
    IsolatedPools, IsolatedPoolsBuilder, Job, RejectionPolicy, ThreadPool, ThreadPoolBuilder,
    ThreadPoolMetrics,
};
