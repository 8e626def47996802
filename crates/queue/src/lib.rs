//! `kuai-queue`: queues for backend services — bounded buffer queues, flow
//! control in front of a service, background task queues, an in-process
//! message broker with transactional half messages, and the crash-safe
//! durable log they persist to.
//!
//! | you need | use |
//! |---|---|
//! | hand work between threads/tasks with back-pressure (peak shaving) | [`BufferQueue`]: bounded MPMC, blocking + async + `try_*`, timeouts, close-then-drain |
//! | protect a service from overload | [`RequestQueue`]: concurrency limit, token bucket, `Overloaded` when full, deadline dropping, CoDel-style shedding |
//! | background jobs that may fail | [`task::TaskQueue`]: exponential backoff with jitter, max attempts, dead letters, delays, idempotency keys |
//! | decouple services (point-to-point, pub/sub) | [`broker::Broker`]: topics, partitions, consumer groups, ack/nack, visibility timeout, per-key order |
//! | a distributed transaction without 2PC | [`broker::Broker::prepare`] half messages + check-back (RocketMQ style), compensation messages |
//! | records that survive `kill -9` and power loss | [`log::Log`]: segmented, CRC'd, group-committed append-only log (pwrite or mmap appender), zero-copy reads |
//! | hand messages to a real broker exactly once per record | [`outbox::OutboxRelay`] over a [`outbox::BrokerSink`]: `nats::JetStreamSink` (feature `nats`), `rabbitmq::RabbitSink` (feature `rabbitmq`) |
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use kuai_queue::{BufferQueue, broker::{Broker, TxState}};
//!
//! // A bounded buffer between a producer thread and a consumer.
//! let q = BufferQueue::new(1024);
//! let producer = { let q = q.clone(); std::thread::spawn(move || {
//!     for i in 0..100u32 { q.send(i).unwrap(); }
//!     q.close();
//! })};
//! let mut sum = 0;
//! while let Ok(v) = q.recv() { sum += v; }        // drains, then Closed
//! producer.join().unwrap();
//! assert_eq!(sum, 4950);
//!
//! // A half message: invisible until the local transaction commits.
//! let broker = Broker::builder().in_memory();
//! let consumer = broker.consumer("orders", "stock-service");
//! let tx = broker.prepare("orders", Some(b"order-7"), b"reserve 2 apples")?;
//! assert!(consumer.try_poll(10)?.is_empty());
//! broker.commit(tx)?;                              // local transaction done
//! let msg = consumer.poll(10, Duration::from_secs(1))?.remove(0);
//! consumer.ack(&msg)?;
//! # Ok::<(), kuai_queue::QueueError>(())
//! ```
//!
//! # Durability
//! The [`log::Log`] acknowledges an append only after `fdatasync`; group
//! commit batches many appenders' records into one fsync (configurable
//! maximum latency), which is how it keeps fsync-before-ack at hundreds of
//! thousands of records per second. A test kills a writer process with
//! SIGKILL in a loop (and simulates power cuts that tear the unsynced tail)
//! and checks that every acknowledged record survives. This log uses plain
//! `pwrite` + `fdatasync`; an mmap-backed variant on `kuai-zerocopy` is
//! pending.
//!
//! # Feature flags
//! * `nats` — [NATS JetStream](https://docs.nats.io/nats-concepts/jetstream)
//!   adapter: publish with acks, durable consumers, and the outbox relay
//!   (`async-nats`; tests need `nats-server -js` on 127.0.0.1:4222).
//!
//! # Errors
//! Every fallible call returns [`QueueError`], which converts into
//! [`kuai_core::Error`]: `Overloaded` (full, rate-limited: retry later),
//! `Timeout`, `Closed`, `Corrupt` (CRC mismatch, with the offset),
//! `InvalidInput` (oversized message), `Backend` (I/O or broker failure —
//! never acknowledged).
#![forbid(unsafe_code)]

pub mod broker;
mod buffer;
mod error;
pub mod log;
#[cfg(feature = "nats")]
pub mod nats;
pub mod outbox;
#[cfg(feature = "rabbitmq")]
pub mod rabbitmq;
pub mod request;
mod sync;
pub mod task;
mod waiters;

pub use buffer::{BufferQueue, RecvFuture, SendFuture};
pub use error::{QueueError, QueueResult};
/// The shared error type every crate's error converts into.
pub use kuai_core::Error;
pub use request::{Permit, RequestQueue, RequestQueueBuilder, RequestStats};
