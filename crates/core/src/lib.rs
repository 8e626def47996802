//! `kuai-core`: the small, stable vocabulary that every kuai crate shares.
//!
//! Like `tower-service`, this crate is mostly traits and changes rarely. It has
//! no async runtime dependency (no tokio): async traits return plain
//! [`Future`]s.
//!
//! | item | what it is for | implemented by | consumed by |
//! |---|---|---|---|
//! | [`Error`], [`ErrorKind`] | what a caller can do about a failure | every crate's error converts into it | everyone |
//! | [`Clock`], [`SystemClock`], [`ManualClock`] | time that tests can control | here | cache (TTL), pool (timeouts), queue (deadlines) |
//! | [`Encoder`], [`Decoder`], [`ViewDecoder`] | turn values into bytes and back | `kuai-codec` | queue, server, store |
//! | [`KvStore`] | a key-value source / sink | `kuai-store`, cache L2 | `kuai-cache` loaders and write-through |
//! | [`Partitioner`] | key to partition | `kuai-shard` | store, queue, server |
//! | [`Manager`] | create / check / recycle pooled resources | `kuai-pool` managers | `kuai-pool` connection pool |
//! | [`TryQueue`] | a bounded, non-blocking queue | `kuai-lockfree`, `kuai-queue` | pool, reactor, queue |
//! | [`Metrics`] | counters and histograms hooks | `NoopMetrics`, `CountingMetrics` | every crate that counts |
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use kuai_core::{Clock, ManualClock, Error, ErrorKind};
//!
//! let clock = ManualClock::new();
//! let start = clock.now();
//! clock.advance(Duration::from_secs(5));
//! assert_eq!(clock.now() - start, Duration::from_secs(5));
//!
//! let err = Error::timeout("waiting for a connection");
//! assert_eq!(err.kind(), ErrorKind::Timeout);
//! assert!(err.is_retryable());
//! ```
#![forbid(unsafe_code)]

mod clock;
mod codec;
mod error;
mod kv;
mod metrics;
mod partition;
mod pool;
mod queue;

pub use clock::{Clock, ManualClock, SystemClock};
pub use codec::{Decoder, Encoder, ViewDecoder};
pub use error::{Error, ErrorKind, Result};
pub use kv::KvStore;
pub use metrics::{CountingMetrics, Metrics, NoopMetrics};
pub use partition::{PartitionId, Partitioner};
pub use pool::Manager;
pub use queue::{PushError, TryQueue};
