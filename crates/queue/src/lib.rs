//! `kuai-queue`: bounded queues with flow control, a crash-safe durable log,
//! and (being built) an in-process broker with transactional half messages.
//!
//! Work in progress; see the module docs.
#![forbid(unsafe_code)]

pub mod broker;
mod buffer;
mod error;
pub mod log;
#[cfg(feature = "nats")]
pub mod nats;
pub mod request;
pub mod task;
mod waiters;

pub use buffer::{BufferQueue, RecvFuture, SendFuture};
pub use error::{QueueError, QueueResult};
/// The shared error type every crate's error converts into.
pub use kuai_core::Error;
pub use request::{Permit, RequestQueue, RequestQueueBuilder, RequestStats};
