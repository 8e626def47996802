//! `kuai-pool`: reuse what is expensive to create — buffers, objects,
//! threads and connections.
//!
//! PLACEHOLDER
#![forbid(unsafe_code)]

pub mod buffer;
mod error;
mod sync;

pub use buffer::{BufferPool, BufferPoolBuilder, BufferStats, PooledBuf};
pub use error::{PoolError, PoolResult};
/// The workspace-wide error every [`PoolError`] converts into.
pub use kuai_core::Error;
/// The `bytes` crate, whose `BytesMut` the buffer pool hands out.
pub use bytes;
