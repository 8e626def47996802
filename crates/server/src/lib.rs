//! `kuai-server`: a Redis-protocol (RESP2/RESP3) key-value server, the
//! full-stack showcase of kuai, driven by tools nobody here wrote
//! (`redis-cli`, `redis-benchmark`, the `redis` crate) and measured side by
//! side with `redis-server`.
//!
//! # What is inside
//! - [`resp`]: an incremental, zero-copy request parser (multibulk and
//!   inline commands, pipelining; arguments are slices of the read buffer)
//!   bounded by [`resp::Limits`]
//!   (`proto-max-bulk-len`, multibulk count, inline length, query buffer).
//! - [`reply`]: the RESP2/RESP3 reply encoder; large values are chained as
//!   `Bytes` instead of copied.
//! - [`keyspace`]: the keyspace *is* a weight-bounded `kuai::cache::Cache`
//!   (keys and values of up to 22 bytes stored inline): `maxmemory` is its
//!   weight bound, `allkeys-lru` / `allkeys-lfu` / `allkeys-random` its LRU /
//!   LFU / FIFO policy, `noeviction` its reject-when-full mode; millisecond
//!   TTLs (from a [`kuai::core::Clock`]) are the cache's per-entry deadlines,
//!   and read-modify-write commands are single `Cache::compute` calls.
//! - [`commands`]: the string commands with Redis 7.0's semantics and error
//!   replies, `AUTH`/`HELLO`, `INFO`, `SCAN`, `CLUSTER KEYSLOT` (slots from
//!   `kuai::shard`).
//! - [`aof`]: the append-only file on `kuai::queue`'s durable log, replayed
//!   at start (`appendfsync always|everysec|no`).
//! - Read buffers come from `kuai::pool`'s `BufferPool`.
//! - [`server`]: connections on `kuai::reactor`'s `serve_pipeline` (I/O
//!   threads fed by a main/sub acceptor or `SO_REUSEPORT` listeners), every
//!   command of a read executed and all replies written at once; [`Config`]
//!   by builder, flags or file.
//! - [`frame`]: a full RESP3 value decoder for clients and tests.
//! - [`read_through`]: optional read-through of misses to a PostgreSQL
//!   table (`--read-through postgres://…`, through `kuai::store`).
//!
//! # When to use it
//! As a small, fast, Redis-compatible cache or KV store for the string
//! commands, embedded in a process ([`Server::start`]) or as the
//! `kuai-server` binary. It is not a Redis replacement for data structures,
//! scripting, replication or cluster mode.
//!
//! # Example
//! ```
//! use std::io::{Read, Write};
//! use kuai_server::{Config, Server};
//!
//! let server = Server::start(Config::builder().port(0).build())?;
//! let mut conn = std::net::TcpStream::connect(server.local_addr())?;
//! conn.write_all(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\nGET k\r\n")?;
//! let mut reply = [0u8; 12];
//! conn.read_exact(&mut reply)?;
//! assert_eq!(&reply, b"+OK\r\n$1\r\nv\r\n");
//! server.shutdown()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Feature flags
//! None: the crate always builds on the `kuai` facade with every feature
//! (`full`, plus `postgres` for the read-through).
#![forbid(unsafe_code)]

pub mod aof;
pub mod commands;
pub mod config;
mod error;
pub mod frame;
pub mod glob;
pub mod keyspace;
pub mod read_through;
pub mod reply;
pub mod resp;
pub mod server;
pub mod slot;

pub use config::{Config, ConfigBuilder};
pub use error::ServerError;
pub use server::{Server, ServerHandle};

/// The workspace-wide error type (every crate re-exports one named `Error`).
pub use kuai::core::Error;
