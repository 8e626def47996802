//! `kuai-reactor`: a main/sub reactor server for framed request → response
//! services, plus the async patterns that sit around a request: continuations,
//! an after-response executor, fan-out with one deadline, DataLoader-style
//! batch merging and hedged requests.
//!
//! # When to use it
//!
//! - [`Server`]: you serve a binary request/response protocol over TCP and want
//!   each connection pinned to one I/O thread for life ("serial lock-freedom":
//!   per-connection and per-thread state without locks), many frames handled per
//!   wake-up and their responses written with one syscall. One acceptor (main
//!   reactor) hands connections to N I/O threads (sub-reactors), each a tokio
//!   current-thread runtime; or [`AcceptMode::ReusePort`] gives every thread its
//!   own `SO_REUSEPORT` listener. Limits: max connections (refused with an
//!   error frame), bounded buffers and frames, idle/read/write timeouts
//!   (slow-loris), graceful drain on shutdown; a panicking handler kills only
//!   its request.
//! - [`ServerBuilder::serve_pipeline`]: the same server for a pipelined
//!   protocol (RESP, memcached, lines): a per-connection [`Handler`] sees the
//!   whole read buffer, handles every complete request in it and appends the
//!   replies to its output, which the reactor writes with one syscall;
//!   backpressure at a high-water mark, close-after-write ([`Step`]), an
//!   `async` hook to await between requests, per-thread
//!   [`ThreadStats`] (connections, requests, bytes in/out). See [`pipeline`].
//! - [`Continuation`]: `then` / `finally` / `on_timeout` on any future;
//!   [`AfterResponse`] runs non-critical post-steps off the request path and
//!   sheds (counted) when full.
//! - [`fan_out`]: N legs concurrently, one deadline, all / quorum / partial.
//! - [`Batcher`]: single-key calls within a window become one batch call.
//! - [`Hedger`]: a backup request after the live p95, first answer wins,
//!   budget-capped, never for non-idempotent calls.
//! - [`Framing`]: the wire format is pluggable. The default is the reactor's
//!   own length prefix ([`frame::FrameCodec`]); [`CodecFraming`] speaks
//!   `kuai-codec`'s length-delimited frames (varint or `u32` length, maximum
//!   frame size); a text protocol (say RESP) implements [`Framing`] itself.
//!   The server is monomorphized for its framing (no `dyn` per frame).
//! - [`HdrMetrics`]: a [`kuai_core::Metrics`] sink with hdrhistograms, to
//!   read the server's `reactor.request_ns` as quantiles.
//!
//! # Example
//!
//! ```
//! use kuai_reactor::{Client, Server, service_fn};
//!
//! // Each I/O thread builds its own service: per-thread state needs no lock.
//! let server = Server::builder()
//!     .threads(2)
//!     .max_connections(1000)
//!     .serve("127.0.0.1:0", |_thread| {
//!         service_fn(|req: bytes::Bytes| async move {
//!             let mut out = req.to_vec();
//!             out.reverse();
//!             Ok(out.into())
//!         })
//!     })
//!     .unwrap();
//!
//! let mut client = Client::connect(server.local_addr()).unwrap();
//! client.send_many([&b"abc"[..], &b"xy"[..]]).unwrap(); // pipelined
//! assert_eq!(&client.recv().unwrap()[..], b"cba");
//! assert_eq!(&client.recv().unwrap()[..], b"yx");
//! drop(client);
//! assert_eq!(server.shutdown().requests, 2);
//! ```
//!
//! # Wire format
//!
//! Chosen with [`ServerBuilder::framing`]. By default a 4-byte big-endian
//! length (top bit = error frame) then the payload, which [`Client`] speaks;
//! see [`frame`]. With [`CodecFraming`], frames are `kuai-codec`'s
//! [`FrameCodec`](kuai_codec::FrameCodec) and any `kuai-codec` user is a
//! client:
//!
//! ```
//! use kuai_reactor::{CodecFraming, Server, service_fn};
//!
//! let frames = kuai_codec::FrameCodec::u32_be().with_max_frame(4096);
//! let server = Server::builder()
//!     .threads(1)
//!     .framing(CodecFraming::new(frames))
//!     .serve("127.0.0.1:0", |_| service_fn(|req| async move { Ok(req) }))
//!     .unwrap();
//! let mut conn = std::net::TcpStream::connect(server.local_addr()).unwrap();
//! frames.write_frame(&mut conn, b"ping").unwrap();
//! let mut reply = Vec::new();
//! frames.read_frame(&mut conn, &mut reply).unwrap();
//! assert_eq!(reply, b"ping");
//! ```
//!
//! # Feature flags
//!
//! None. Everything runs on tokio (`rt`, `net`, `time`, `sync`).
#![forbid(unsafe_code)]

mod after_response;
mod balance;
mod batch;
mod client;
mod continuation;
mod error;
mod fan_out;
pub mod frame;
mod framing;
mod hedge;
mod histogram;
pub mod pipeline;
mod server;
mod service;
mod sync;
mod worker;

/// The `bytes` crate, whose `Bytes` carries requests and responses.
pub use bytes;

pub use after_response::{AfterResponse, AfterResponseBuilder, AfterResponseStats};
pub use balance::{Balancer, LeastLoaded, RoundRobin};
pub use batch::{Batcher, BatcherBuilder, BatcherStats};
pub use client::Client;
pub use continuation::{Continuation, Finally, OnTimeout, Then};
pub use error::ReactorError;
pub use fan_out::{FanOut, Leg, WaitFor, fan_out};
pub use framing::{CodecFraming, DEFAULT_ERROR_PREFIX, Framing};
pub use hedge::{Budget, HedgeStats, Hedger, HedgerBuilder, Idempotency};
pub use histogram::{HdrMetrics, LatencyHistogram};
pub use kuai_core::Error;
pub use pipeline::{Conn, ConnInfo, Handler, Pipeline, Step};
pub use server::{AcceptMode, Server, ServerBuilder, ServerStats, StatsHandle, ThreadStats};
pub use service::{Service, ServiceFn, service_fn};
