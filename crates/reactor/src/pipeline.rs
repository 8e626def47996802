//! Pipelined connection handlers: the reactor reads, the handler parses every
//! complete request in the read buffer and appends the replies to its
//! output, the reactor writes them with one (vectored) write.
//!
//! [`ServerBuilder::serve`](crate::ServerBuilder::serve) cuts frames with a
//! [`Framing`](crate::Framing) and calls a [`Service`](crate::Service) per
//! frame, one `Bytes` in and one out. A text protocol with pipelining (RESP,
//! memcached, line protocols) wants the opposite shape: the parser keeps
//! state across reads, arguments are slices of the read buffer (no copy, no
//! `Bytes` per request), replies are formatted straight into an output
//! buffer, and some requests change the connection (close after `QUIT`,
//! switch protocol). [`ServerBuilder::serve_pipeline`](crate::ServerBuilder::serve_pipeline) serves such a
//! protocol on the same threads, accept modes, limits, timeouts, drain and
//! statistics as `serve`:
//!
//! - a [`Pipeline`] per I/O thread (built on the thread, so it may hold
//!   `Rc`/`RefCell` state) makes one [`Handler`] per connection;
//! - the handler owns its read buffer ([`Handler::input`], e.g. from a buffer
//!   pool) and its output ([`Handler::output`], any [`bytes::Buf`]: a
//!   `BytesMut`, or a chain of `Bytes` for zero-copy values);
//! - after every read the reactor calls [`Handler::on_input`], an `async`
//!   method polled inline on the connection's task (no spawn): a handler
//!   that never awaits costs one poll; one that must wait between requests
//!   (a cache miss loaded from a database) simply `.await`s, and the
//!   connection resumes where it stopped, other connections of the thread
//!   running meanwhile;
//! - the returned [`Step`] says what next: [`Step::Read`] (everything
//!   complete was handled), [`Step::Write`] (the output reached
//!   [`Conn::high_water`]: write it, then call again *without* reading —
//!   the backpressure that bounds memory under a huge pipeline), or
//!   [`Step::Close`] (write the output, then close: `QUIT`, protocol errors).
//!
//! The reactor writes whatever is in the output after every `on_input`, in
//! one `write` when it is contiguous or one `writev` of its chunks.

use std::future::Future;
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;
use std::sync::atomic::Ordering;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::server::{Shared, ThreadCounters, bump};
use crate::worker::{ConnParts, ConnState, Driver, ThreadCtx};

/// What the reactor does after [`Handler::on_input`] returns. Whatever the
/// step, the output is written first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Every complete request was handled; read more bytes.
    Read,
    /// The output reached the high-water mark before the input was used up:
    /// write it, then call [`Handler::on_input`] again without reading. (If
    /// the output is empty this is a [`Read`](Self::Read).)
    Write,
    /// Write the output, then close the connection.
    Close,
}

/// Who a new connection is (given to [`Pipeline::connect`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnInfo {
    /// The I/O thread the connection is pinned to.
    pub thread: usize,
    /// The connection's id, unique on its thread.
    pub id: u64,
    /// The client's address, if the OS still knew it.
    pub peer: Option<SocketAddr>,
}

/// The reactor's side of one [`Handler::on_input`] call.
#[derive(Debug)]
pub struct Conn<'a> {
    info: &'a ConnInfo,
    high_water: usize,
    draining: bool,
    served: &'a mut u64,
}

impl Conn<'_> {
    /// Who the connection is.
    pub fn info(&self) -> &ConnInfo {
        self.info
    }

    /// Output bytes beyond which the handler should stop handling requests
    /// and return [`Step::Write`]
    /// ([`max_write_buffer`](crate::ServerBuilder::max_write_buffer)).
    pub fn high_water(&self) -> usize {
        self.high_water
    }

    /// Whether the server is shutting down: the connection is closed once
    /// its input is used up (a handler may also stop early with
    /// [`Step::Close`]).
    pub fn is_draining(&self) -> bool {
        self.draining
    }

    /// Counts `n` requests handled (the `requests` of
    /// [`ServerStats`](crate::ServerStats) and
    /// [`ThreadStats`](crate::ThreadStats)).
    pub fn served(&mut self, n: u64) {
        *self.served += n;
    }
}

/// One connection's protocol state, made by a [`Pipeline`].
///
/// It lives on its I/O thread (need not be `Send`) and is dropped when the
/// connection ends, however it ends.
pub trait Handler: 'static {
    /// The replies waiting to be written (a `BytesMut`, a chain of `Bytes`…).
    /// The reactor writes and [`advance`](Buf::advance)s it to empty.
    type Output: Buf;

    /// The buffer the reactor reads into (appending). The handler removes
    /// what it consumed ([`Buf::advance`], `split_to`); what it leaves is
    /// there on the next call, followed by the new bytes. The reactor grows
    /// it by [`read_buffer`](crate::ServerBuilder::read_buffer) when less
    /// than a quarter of that is free; a handler expecting a large request
    /// may `reserve` more, and must bound it (the reactor does not).
    fn input(&mut self) -> &mut BytesMut;

    /// The output the replies are appended to.
    fn output(&mut self) -> &mut Self::Output;

    /// Handles the complete requests at the front of [`input`](Self::input),
    /// appending their replies to [`output`](Self::output); see [`Step`].
    ///
    /// The future is polled inline on the connection's task; it may await
    /// (other connections of the thread run meanwhile). A panic here closes
    /// the connection and is counted in `panics`.
    fn on_input(&mut self, conn: &mut Conn<'_>) -> impl Future<Output = Step>;
}

/// The per-thread factory of [`Handler`]s given to
/// [`ServerBuilder::serve_pipeline`](crate::ServerBuilder::serve_pipeline).
///
/// Implemented by every `Fn(&ConnInfo) -> impl Handler`.
pub trait Pipeline: 'static {
    /// The connection handler it makes.
    type Handler: Handler;

    /// A handler for a newly accepted connection.
    fn connect(&self, conn: &ConnInfo) -> Self::Handler;
}

impl<F, H> Pipeline for F
where
    F: Fn(&ConnInfo) -> H + 'static,
    H: Handler,
{
    type Handler = H;

    fn connect(&self, conn: &ConnInfo) -> H {
        self(conn)
    }
}

/// Drives pipelined connections on one I/O thread.
pub(crate) struct PipelineDriver<P> {
    pipeline: P,
    thread: usize,
}

impl<P> PipelineDriver<P> {
    pub(crate) fn new(pipeline: P, thread: usize) -> Self {
        PipelineDriver { pipeline, thread }
    }
}

impl<P: Pipeline> Driver for PipelineDriver<P> {
    async fn drive(self: Rc<Self>, stream: TcpStream, conn: ConnParts) {
        let info = ConnInfo {
            thread: self.thread,
            id: conn.id,
            peer: conn.peer,
        };
        match catch_unwind(AssertUnwindSafe(|| self.pipeline.connect(&info))) {
            Ok(handler) => {
                drop(self);
                serve_pipelined(stream, handler, info, conn).await;
            }
            Err(_) => {
                conn.shared.counters[conn.ctx.index]
                    .panics
                    .fetch_add(1, Ordering::Relaxed);
                conn.shared.metrics.counter("reactor.panics", 1);
            }
        }
    }
}

/// The pipelined hot path: read, let the handler consume all it can, write
/// its output at once; repeat.
async fn serve_pipelined<H: Handler>(
    mut stream: TcpStream,
    mut handler: H,
    info: ConnInfo,
    conn: ConnParts,
) {
    let ConnParts {
        ctx,
        state,
        shared,
        guard: _guard,
        ..
    } = conn;
    let lim = shared.limits;
    let counters = &shared.counters[ctx.index];
    let _panic_guard = PanicGuard {
        counters,
        shared: &shared,
    };
    let mut reread = true;
    loop {
        if reread {
            let input = handler.input();
            if ctx.draining.get() && input.is_empty() {
                break;
            }
            if input.capacity() - input.len() < lim.read_buffer / 4 {
                input.reserve(lim.read_buffer);
            }
            state.in_read.set(true);
            let read = stream.read_buf(input).await;
            state.in_read.set(false);
            match read {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    bump(&counters.bytes_in, n as u64);
                }
            }
            state.last_active.set(ctx.tick.get());
        }
        let mut served = 0u64;
        let step = {
            let mut cx = Conn {
                info: &info,
                high_water: lim.max_write_buffer,
                draining: ctx.draining.get(),
                served: &mut served,
            };
            // No catch_unwind per call: a panic unwinds out of this task
            // (tokio catches it at the task boundary) and `panic_guard`
            // counts it; the handler, the socket and the slot are dropped.
            handler.on_input(&mut cx).await
        };
        if served > 0 {
            bump(&counters.requests, served);
            if shared.metrics_on {
                shared.metrics.counter("reactor.requests", served);
            }
        }
        let out = handler.output();
        let wrote = out.has_remaining();
        if wrote
            && write_out(&mut stream, out, &state, &ctx, counters)
                .await
                .is_err()
        {
            break;
        }
        match step {
            Step::Close => break,
            Step::Write if wrote => reread = false,
            Step::Write | Step::Read => {
                reread = true;
                // Slow-loris clock: runs from the last byte that completed a
                // request.
                if handler.input().is_empty() {
                    state.partial_since.set(None);
                } else if served > 0 || state.partial_since.get().is_none() {
                    state.partial_since.set(Some(ctx.tick.get()));
                }
            }
        }
    }
    let _ = stream.shutdown().await;
}

/// Counts a panic that unwinds out of a connection's handler (the task
/// ends; tokio contains the panic at the task boundary).
struct PanicGuard<'a> {
    counters: &'a ThreadCounters,
    shared: &'a Shared,
}

impl Drop for PanicGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.counters.panics.fetch_add(1, Ordering::Relaxed);
            self.shared.metrics.counter("reactor.panics", 1);
        }
    }
}

/// Writes all of `out`: one `write` if it is one chunk, else vectored writes.
async fn write_out<B: Buf>(
    stream: &mut TcpStream,
    out: &mut B,
    state: &ConnState,
    ctx: &ThreadCtx,
    counters: &ThreadCounters,
) -> std::io::Result<()> {
    state.writing_since.set(Some(ctx.tick.get()));
    let n = out.remaining();
    let chunk = out.chunk();
    let r = if chunk.len() == n {
        let r = stream.write_all(chunk).await;
        if r.is_ok() {
            out.advance(n);
        }
        r
    } else {
        stream.write_all_buf(out).await
    };
    if r.is_ok() {
        bump(&counters.bytes_out, n as u64);
    }
    state.writing_since.set(None);
    r
}
