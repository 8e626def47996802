//! `kuai` (快, "fast"): the classic playbook of high-performance backend
//! design as composable crates. This facade re-exports them as modules, one
//! cargo feature each; it adds no logic of its own.
//!
//! | feature | module | crate |
//! |---|---|---|
//! | (always) | [`core`] | `kuai-core`: shared traits, errors, clock, metrics |
//! | `lockfree` | `lockfree` | `kuai-lockfree` |
//! | `reactor` | `reactor` | `kuai-reactor` |
//! | `zerocopy` | `zerocopy` | `kuai-zerocopy` |
//! | `codec` | `codec` | `kuai-codec` |
//! | `pool` | `pool` | `kuai-pool` |
//! | `cache` | `cache` | `kuai-cache` |
//! | `shard` | `shard` | `kuai-shard` |
//! | `queue` | `queue` | `kuai-queue` |
//! | `store` | `store` | `kuai-store` |
//! | `full` | all of the above | |
//! | `postgres` | `store`'s PostgreSQL backend | `kuai-store/postgres` (not in `full`: it compiles a client library) |
//! | `redis` | `cache`'s Redis L2 (`TwoLevelCache`) | `kuai-cache/redis` (not in `full`) |
//! | `nats` | `queue::nats` (JetStream adapter, outbox sink) | `kuai-queue/nats` (not in `full`) |
//! | `rabbitmq` | `queue::rabbitmq` (RabbitMQ adapter, outbox sink) | `kuai-queue/rabbitmq` (not in `full`) |
//!
//! ```
//! use kuai::core::{Error, ErrorKind};
//! assert_eq!(Error::overloaded("shed").kind(), ErrorKind::Overloaded);
//! ```
#![forbid(unsafe_code)]

#[doc(inline)]
pub use kuai_core as core;

#[cfg(feature = "cache")]
#[doc(inline)]
pub use kuai_cache as cache;
#[cfg(feature = "codec")]
#[doc(inline)]
pub use kuai_codec as codec;
#[cfg(feature = "lockfree")]
#[doc(inline)]
pub use kuai_lockfree as lockfree;
#[cfg(feature = "pool")]
#[doc(inline)]
pub use kuai_pool as pool;
#[cfg(feature = "queue")]
#[doc(inline)]
pub use kuai_queue as queue;
#[cfg(feature = "reactor")]
#[doc(inline)]
pub use kuai_reactor as reactor;
#[cfg(feature = "shard")]
#[doc(inline)]
pub use kuai_shard as shard;
#[cfg(feature = "store")]
#[doc(inline)]
pub use kuai_store as store;
#[cfg(feature = "zerocopy")]
#[doc(inline)]
pub use kuai_zerocopy as zerocopy;

/// The README's code snippets, compiled and run as doc tests so they stay true.
#[cfg(all(doctest, feature = "full"))]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
