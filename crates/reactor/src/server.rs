//! The main/sub reactor server: builder, acceptor, lifecycle and statistics.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kuai_core::{Metrics, NoopMetrics};
use tokio::sync::{mpsc, watch};

use crate::balance::{Balancer, RoundRobin};
use crate::frame::{DEFAULT_MAX_FRAME, FrameCodec, MAX_FRAME_LIMIT};
use crate::pipeline::{Pipeline, PipelineDriver};
use crate::worker::{Driver, FramedDriver, WorkerSource, spawn_worker};
use crate::{Framing, ReactorError, Service};

/// How connections reach the I/O threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AcceptMode {
    /// One acceptor thread (the main reactor) accepts every connection and
    /// hands it to one I/O thread (a sub-reactor) chosen by the
    /// [`Balancer`]; the connection stays on that thread for life.
    #[default]
    MainSub,
    /// Thread-per-core: every I/O thread binds its own listener on the same
    /// address with `SO_REUSEPORT` and the kernel spreads connections; there
    /// is no acceptor and no hand-off at all. The balancer is not used.
    ReusePort,
}

/// The limits and knobs every connection obeys (copied into each thread).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) max_connections: usize,
    pub(crate) max_frame: usize,
    pub(crate) read_buffer: usize,
    pub(crate) max_write_buffer: usize,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) read_timeout: Option<Duration>,
    pub(crate) write_timeout: Option<Duration>,
    pub(crate) drain_timeout: Duration,
    pub(crate) nodelay: bool,
    pub(crate) backlog: u32,
    pub(crate) record_latency: bool,
}

impl Limits {
    /// How often each thread's sweeper looks for expired connections: a
    /// quarter of the shortest timeout, between 1 ms and 1 s.
    pub(crate) fn sweep_period(&self) -> Duration {
        [self.idle_timeout, self.read_timeout, self.write_timeout]
            .into_iter()
            .flatten()
            .min()
            .map_or(Duration::from_secs(1), |d| d / 4)
            .clamp(Duration::from_millis(1), Duration::from_secs(1))
    }
}

/// Counters one I/O thread writes (and only it), padded against false sharing.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct ThreadCounters {
    pub(crate) connections: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) requests: AtomicU64,
    pub(crate) panics: AtomicU64,
    pub(crate) frame_errors: AtomicU64,
    pub(crate) timeouts: AtomicU64,
    pub(crate) aborted: AtomicU64,
}

/// Adds `n` to a counter that only the calling I/O thread writes: a relaxed
/// load and store, no locked read-modify-write on the hot path (readers on
/// other threads see a value that is at most one batch old).
#[inline]
pub(crate) fn bump(counter: &AtomicU64, n: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(n),
        Ordering::Relaxed,
    );
}

/// State shared by the acceptor and the I/O threads (atomics only).
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) limits: Limits,
    pub(crate) metrics: Arc<dyn Metrics>,
    /// Whether a metrics sink was given (else per-batch hooks are skipped).
    pub(crate) metrics_on: bool,
    pub(crate) loads: Box<[AtomicUsize]>,
    pub(crate) active: AtomicUsize,
    pub(crate) accepted: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) counters: Box<[ThreadCounters]>,
    /// What a refused connection is sent before it is dropped.
    pub(crate) refusal: Bytes,
    /// How connections reach the threads (reported by the stats).
    pub(crate) mode: AcceptMode,
}

impl Shared {
    /// Takes one connection slot, or `false` at `max_connections`.
    pub(crate) fn try_admit(&self) -> bool {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        let max = self.limits.max_connections;
        let ok = self
            .active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |a| {
                (a < max).then_some(a + 1)
            })
            .is_ok();
        if ok {
            self.metrics.counter("reactor.accepted", 1);
        } else {
            self.refused.fetch_add(1, Ordering::Relaxed);
            self.metrics.counter("reactor.refused", 1);
        }
        ok
    }

    /// Gives back a slot taken by [`try_admit`](Self::try_admit) for a
    /// connection pinned to thread `thread`.
    pub(crate) fn release(&self, thread: usize) {
        if let Some(l) = self.loads.get(thread) {
            l.fetch_sub(1, Ordering::AcqRel);
        }
        let now = self.active.fetch_sub(1, Ordering::AcqRel).saturating_sub(1);
        self.metrics.gauge(
            "reactor.connections",
            i64::try_from(now).unwrap_or(i64::MAX),
        );
    }

    /// Sends the refusal (an error frame in the server's framing, or the
    /// pipeline's own message) without blocking; the caller drops the socket.
    pub(crate) fn refuse(&self, stream: &tokio::net::TcpStream) {
        if !self.refusal.is_empty() {
            let _ = stream.try_write(&self.refusal);
        }
    }

    fn thread_stats(&self) -> Vec<ThreadStats> {
        self.counters
            .iter()
            .zip(self.loads.iter())
            .enumerate()
            .map(|(thread, (c, l))| ThreadStats {
                thread,
                active: l.load(Ordering::Relaxed),
                connections: c.connections.load(Ordering::Relaxed),
                requests: c.requests.load(Ordering::Relaxed),
                bytes_in: c.bytes_in.load(Ordering::Relaxed),
                bytes_out: c.bytes_out.load(Ordering::Relaxed),
            })
            .collect()
    }

    fn stats(&self) -> ServerStats {
        let sum = |f: fn(&ThreadCounters) -> &AtomicU64| -> u64 {
            self.counters
                .iter()
                .map(|c| f(c).load(Ordering::Relaxed))
                .sum()
        };
        ServerStats {
            accepted: self.accepted.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            active: self.active.load(Ordering::Acquire),
            requests: sum(|c| &c.requests),
            panics: sum(|c| &c.panics),
            frame_errors: sum(|c| &c.frame_errors),
            timed_out: sum(|c| &c.timeouts),
            aborted_on_shutdown: sum(|c| &c.aborted),
            bytes_in: sum(|c| &c.bytes_in),
            bytes_out: sum(|c| &c.bytes_out),
        }
    }
}

/// A snapshot of a server's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerStats {
    /// Connections accepted by the OS (including refused ones).
    pub accepted: u64,
    /// Connections refused because `max_connections` were live.
    pub refused: u64,
    /// Connections live now.
    pub active: usize,
    /// Requests answered (successfully, with an error, or after a panic).
    pub requests: u64,
    /// Requests whose handler panicked.
    pub panics: u64,
    /// Connections closed because of a malformed or oversized frame.
    pub frame_errors: u64,
    /// Connections cut by an idle, read or write timeout.
    pub timed_out: u64,
    /// Connections still busy when the drain timeout of a shutdown ran out.
    pub aborted_on_shutdown: u64,
    /// Bytes read from clients.
    pub bytes_in: u64,
    /// Bytes written to clients.
    pub bytes_out: u64,
}

/// One I/O thread's counters (see [`Server::thread_stats`]). Each is
/// written only by its thread (relaxed, on its own cache line), so reading
/// them costs the serving path nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ThreadStats {
    /// The thread's index (`kuai-io-<thread>`).
    pub thread: usize,
    /// Connections pinned to it now.
    pub active: usize,
    /// Connections it has served since the start.
    pub connections: u64,
    /// Requests it answered (for a pipeline: what handlers reported with
    /// [`Conn::served`](crate::Conn::served)).
    pub requests: u64,
    /// Bytes it read.
    pub bytes_in: u64,
    /// Bytes it wrote.
    pub bytes_out: u64,
}

/// A cheap, cloneable, `Send + Sync` view of a running server's counters,
/// for code that outlives or cannot hold the [`Server`] (an `INFO` command,
/// a metrics exporter). Reading after the server stopped gives the final
/// counters.
#[derive(Clone)]
pub struct StatsHandle {
    shared: Arc<Shared>,
}

impl fmt::Debug for StatsHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StatsHandle")
            .field("stats", &self.stats())
            .finish()
    }
}

impl StatsHandle {
    /// The server-wide counters.
    pub fn stats(&self) -> ServerStats {
        self.shared.stats()
    }

    /// Every I/O thread's counters, in thread order.
    pub fn thread_stats(&self) -> Vec<ThreadStats> {
        self.shared.thread_stats()
    }

    /// How connections reach the threads.
    pub fn accept_mode(&self) -> AcceptMode {
        self.shared.mode
    }

    /// The connection limit.
    pub fn max_connections(&self) -> usize {
        self.shared.limits.max_connections
    }
}

/// Configures and starts a [`Server`].
///
/// Defaults: one I/O thread per core, [`AcceptMode::MainSub`] with
/// [`RoundRobin`], 10 000 connections, the reactor's length-prefixed
/// [`FrameCodec`] framing with 1 MiB frames, 16 KiB read buffers,
/// 256 KiB write buffers, 60 s idle / 10 s read / 10 s write timeouts,
/// 5 s drain, `TCP_NODELAY` on, backlog 1024, no metrics.
///
/// The type parameter is the wire [`Framing`]; [`framing`](Self::framing)
/// swaps it (e.g. for [`CodecFraming`](crate::CodecFraming), `kuai-codec`'s
/// framing). The server is monomorphized for it: no dynamic dispatch per
/// frame.
pub struct ServerBuilder<F = FrameCodec> {
    threads: usize,
    mode: AcceptMode,
    balancer: Arc<dyn Balancer>,
    limits: Limits,
    metrics: Arc<dyn Metrics>,
    metrics_on: bool,
    framing: F,
    refusal: Option<Bytes>,
}

impl<F: fmt::Debug> fmt::Debug for ServerBuilder<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("threads", &self.threads)
            .field("mode", &self.mode)
            .field("balancer", &self.balancer)
            .field("limits", &self.limits)
            .field("framing", &self.framing)
            .finish_non_exhaustive()
    }
}

impl Default for ServerBuilder {
    fn default() -> Self {
        ServerBuilder {
            framing: FrameCodec::new(DEFAULT_MAX_FRAME),
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            mode: AcceptMode::MainSub,
            balancer: Arc::new(RoundRobin::new()),
            limits: Limits {
                max_connections: 10_000,
                max_frame: DEFAULT_MAX_FRAME,
                read_buffer: 16 * 1024,
                max_write_buffer: 256 * 1024,
                idle_timeout: Some(Duration::from_secs(60)),
                read_timeout: Some(Duration::from_secs(10)),
                write_timeout: Some(Duration::from_secs(10)),
                drain_timeout: Duration::from_secs(5),
                nodelay: true,
                backlog: 1024,
                record_latency: false,
            },
            metrics: Arc::new(NoopMetrics),
            metrics_on: false,
            refusal: None,
        }
    }
}

impl ServerBuilder {
    /// A builder with the defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// The largest request or response payload of the default framing; a
    /// bigger header closes the connection with an error frame. (Other
    /// framings carry their own limit.)
    pub fn max_frame(mut self, bytes: usize) -> Self {
        self.limits.max_frame = bytes;
        self.framing = FrameCodec::new(bytes);
        self
    }
}

impl<F: Framing> ServerBuilder<F> {
    /// Replaces the wire framing: how requests are cut from each
    /// connection's byte stream and how responses and error messages are
    /// written. Every connection gets its own clone of `framing`.
    ///
    /// Default: the reactor's length-prefixed [`FrameCodec`]; see
    /// [`CodecFraming`](crate::CodecFraming) for `kuai-codec`'s framing, or
    /// implement [`Framing`] for your own protocol.
    pub fn framing<G: Framing>(self, framing: G) -> ServerBuilder<G> {
        ServerBuilder {
            threads: self.threads,
            mode: self.mode,
            balancer: self.balancer,
            limits: self.limits,
            metrics: self.metrics,
            metrics_on: self.metrics_on,
            framing,
            refusal: self.refusal,
        }
    }

    /// Number of I/O threads (sub-reactors). Default: available cores.
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = n;
        self
    }

    /// Main/sub hand-off or per-thread `SO_REUSEPORT` listeners.
    pub fn accept_mode(mut self, mode: AcceptMode) -> Self {
        self.mode = mode;
        self
    }

    /// The policy choosing a connection's thread (main/sub mode only).
    pub fn balancer(mut self, balancer: impl Balancer) -> Self {
        self.balancer = Arc::new(balancer);
        self
    }

    /// Live connections beyond this are refused with an error frame (see
    /// [`refusal`](Self::refusal)) and closed.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.limits.max_connections = n;
        self
    }

    /// The bytes written (without blocking) to a connection refused at
    /// [`max_connections`](Self::max_connections) before it is closed: a
    /// pipeline server formats its protocol's error here (say
    /// `-ERR max number of clients reached\r\n`). Default: the framing's
    /// error frame `overloaded: max connections reached` for
    /// [`serve`](Self::serve), nothing for
    /// [`serve_pipeline`](Self::serve_pipeline).
    pub fn refusal(mut self, bytes: impl Into<Bytes>) -> Self {
        self.refusal = Some(bytes.into());
        self
    }

    /// Bytes read per wake-up (one `read` may carry many frames).
    pub fn read_buffer(mut self, bytes: usize) -> Self {
        self.limits.read_buffer = bytes;
        self
    }

    /// Responses are coalesced into one write until this many bytes are
    /// pending; then they are flushed before more requests are handled.
    pub fn max_write_buffer(mut self, bytes: usize) -> Self {
        self.limits.max_write_buffer = bytes;
        self
    }

    /// Close connections that send nothing for this long (`None`: never).
    pub fn idle_timeout(mut self, d: Option<Duration>) -> Self {
        self.limits.idle_timeout = d;
        self
    }

    /// Close connections that take longer than this to send one whole frame
    /// once it started (slow-loris defence; `None`: never).
    pub fn read_timeout(mut self, d: Option<Duration>) -> Self {
        self.limits.read_timeout = d;
        self
    }

    /// Close connections that do not take their responses for this long.
    pub fn write_timeout(mut self, d: Option<Duration>) -> Self {
        self.limits.write_timeout = d;
        self
    }

    /// How long a shutdown waits for in-flight requests before aborting.
    pub fn drain_timeout(mut self, d: Duration) -> Self {
        self.limits.drain_timeout = d;
        self
    }

    /// Set `TCP_NODELAY` on accepted sockets (default on).
    pub fn nodelay(mut self, on: bool) -> Self {
        self.limits.nodelay = on;
        self
    }

    /// The listen backlog.
    pub fn backlog(mut self, n: u32) -> Self {
        self.limits.backlog = n;
        self
    }

    /// Where counters (`reactor.accepted`, `reactor.refused`,
    /// `reactor.requests`, `reactor.panics`, `reactor.frame_errors`,
    /// `reactor.timeouts`), the `reactor.connections` gauge and, when
    /// enabled, the `reactor.request_ns` histogram go. Turns latency
    /// recording on.
    pub fn metrics(mut self, metrics: Arc<dyn Metrics>) -> Self {
        self.metrics = metrics;
        self.metrics_on = true;
        self.limits.record_latency = true;
        self
    }

    /// Whether to time every request into `reactor.request_ns` (two clock
    /// reads per request).
    pub fn record_latency(mut self, on: bool) -> Self {
        self.limits.record_latency = on;
        self
    }

    fn validate(&self) -> Result<(), ReactorError> {
        let l = &self.limits;
        let bad = |what: &str| Err(ReactorError::InvalidConfig(what.to_string()));
        if self.threads == 0 || self.threads > 1024 {
            return bad("threads must be in 1..=1024");
        }
        if l.max_frame == 0 || l.max_frame > MAX_FRAME_LIMIT {
            return bad("max_frame must be in 1..=2^31-1");
        }
        if l.read_buffer < 64 {
            return bad("read_buffer must be at least 64 bytes");
        }
        if l.max_write_buffer == 0 {
            return bad("max_write_buffer must be positive");
        }
        if [l.idle_timeout, l.read_timeout, l.write_timeout]
            .into_iter()
            .flatten()
            .any(|d| d.is_zero())
        {
            return bad("timeouts must be positive (use None to disable)");
        }
        Ok(())
    }

    /// Binds `addr` and starts the threads. `factory(i)` builds the service
    /// of I/O thread `i` on that thread, inside its runtime (so it may start
    /// timers, tasks or a [`Batcher`](crate::Batcher)); per-thread state
    /// needs no lock.
    ///
    /// Returns once every thread is listening or ready.
    pub fn serve<M, S>(self, addr: impl ToSocketAddrs, factory: M) -> Result<Server, ReactorError>
    where
        M: Fn(usize) -> S + Send + Sync + 'static,
        S: Service,
    {
        let refusal = self.refusal.clone().unwrap_or_else(|| {
            let mut buf = BytesMut::new();
            self.framing
                .clone()
                .encode_error("overloaded: max connections reached", &mut buf);
            buf.freeze()
        });
        let factory = Arc::new(factory);
        let framing = self.framing.clone();
        let addr = resolve(addr)?;
        self.launch(Bind::Addr(addr), refusal, move |i| {
            let factory = Arc::clone(&factory);
            let framing = framing.clone();
            move || FramedDriver {
                svc: std::rc::Rc::new(factory(i)),
                framing,
            }
        })
    }

    /// Binds `addr` and serves a pipelined protocol: `factory(i)` builds
    /// I/O thread `i`'s [`Pipeline`] on that thread (inside its runtime),
    /// which makes one [`Handler`](crate::Handler) per connection. The
    /// handler sees the connection's whole read buffer, handles every
    /// complete request in it, appends the replies to its output, and the
    /// reactor writes them with one (vectored) write; see
    /// [`pipeline`](crate::pipeline) for the contract (backpressure, close
    /// after write, awaiting between requests, drain).
    ///
    /// The framing, frame-size limit and panic-per-request containment of
    /// [`serve`](Self::serve) do not apply: the handler owns its protocol
    /// (a panicking handler closes only its connection). Everything else
    /// does: accept modes, balancer, `max_connections` (refused with
    /// [`refusal`](Self::refusal)), idle/read/write timeouts, drain on
    /// shutdown, statistics.
    ///
    /// ```
    /// use std::io::{BufRead, BufReader, Write};
    /// use kuai_reactor::{Conn, Handler, Server, Step};
    /// use kuai_reactor::bytes::{Buf, BytesMut};
    ///
    /// /// Upper-cases every line; `quit` closes after the reply.
    /// struct Upper { input: BytesMut, output: BytesMut }
    /// impl Handler for Upper {
    ///     type Output = BytesMut;
    ///     fn input(&mut self) -> &mut BytesMut { &mut self.input }
    ///     fn output(&mut self) -> &mut BytesMut { &mut self.output }
    ///     async fn on_input(&mut self, conn: &mut Conn<'_>) -> Step {
    ///         while let Some(n) = self.input.iter().position(|&b| b == b'\n') {
    ///             let line = self.input.split_to(n + 1);
    ///             conn.served(1);
    ///             if &line[..] == b"quit\n" {
    ///                 self.output.extend_from_slice(b"bye\n");
    ///                 return Step::Close;
    ///             }
    ///             self.output.extend_from_slice(&line.to_ascii_uppercase());
    ///             if self.output.len() >= conn.high_water() {
    ///                 return Step::Write;
    ///             }
    ///         }
    ///         Step::Read
    ///     }
    /// }
    ///
    /// let server = Server::builder()
    ///     .threads(1)
    ///     .serve_pipeline("127.0.0.1:0", |_thread| {
    ///         |_conn: &kuai_reactor::ConnInfo| Upper {
    ///             input: BytesMut::new(),
    ///             output: BytesMut::new(),
    ///         }
    ///     })
    ///     .unwrap();
    /// let mut sock = std::net::TcpStream::connect(server.local_addr()).unwrap();
    /// sock.write_all(b"abc\nxy\nquit\n").unwrap();
    /// let mut lines = BufReader::new(sock).lines().map(|l| l.unwrap());
    /// assert_eq!(lines.next().as_deref(), Some("ABC"));
    /// assert_eq!(lines.next().as_deref(), Some("XY"));
    /// assert_eq!(lines.next().as_deref(), Some("bye"));
    /// assert_eq!(lines.next(), None);
    /// assert_eq!(server.shutdown().requests, 3);
    /// ```
    pub fn serve_pipeline<M, P>(
        self,
        addr: impl ToSocketAddrs,
        factory: M,
    ) -> Result<Server, ReactorError>
    where
        M: Fn(usize) -> P + Send + Sync + 'static,
        P: Pipeline,
    {
        let addr = resolve(addr)?;
        self.launch_pipeline(Bind::Addr(addr), factory)
    }

    /// Like [`serve_pipeline`](Self::serve_pipeline) on a listener the
    /// caller bound (and set listening) already: its port is known before
    /// the server starts (say, for port 0), or it came from a supervisor.
    /// In [`AcceptMode::ReusePort`] it must have `SO_REUSEPORT` set: the
    /// first I/O thread takes it over and the others bind its address.
    ///
    /// ```
    /// use kuai_reactor::{ConnInfo, Server};
    /// # use kuai_reactor::{Conn, Handler, Step};
    /// # use kuai_reactor::bytes::BytesMut;
    /// # struct Nop(BytesMut, BytesMut);
    /// # impl Handler for Nop {
    /// #     type Output = BytesMut;
    /// #     fn input(&mut self) -> &mut BytesMut { &mut self.0 }
    /// #     fn output(&mut self) -> &mut BytesMut { &mut self.1 }
    /// #     async fn on_input(&mut self, _: &mut Conn<'_>) -> Step { Step::Read }
    /// # }
    /// let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    /// let addr = listener.local_addr().unwrap();
    /// let server = Server::builder()
    ///     .threads(1)
    ///     .serve_pipeline_on(listener, |_| {
    ///         |_: &ConnInfo| Nop(BytesMut::new(), BytesMut::new())
    ///     })
    ///     .unwrap();
    /// assert_eq!(server.local_addr(), addr);
    /// ```
    pub fn serve_pipeline_on<M, P>(
        self,
        listener: std::net::TcpListener,
        factory: M,
    ) -> Result<Server, ReactorError>
    where
        M: Fn(usize) -> P + Send + Sync + 'static,
        P: Pipeline,
    {
        self.launch_pipeline(Bind::Listener(listener), factory)
    }

    fn launch_pipeline<M, P>(self, bind: Bind, factory: M) -> Result<Server, ReactorError>
    where
        M: Fn(usize) -> P + Send + Sync + 'static,
        P: Pipeline,
    {
        let refusal = self.refusal.clone().unwrap_or_default();
        let factory = Arc::new(factory);
        self.launch(bind, refusal, move |i| {
            let factory = Arc::clone(&factory);
            move || PipelineDriver::new(factory(i), i)
        })
    }

    /// Starts the acceptor (main/sub mode) and the I/O threads; `make(i)`
    /// gives the closure that builds thread `i`'s connection driver on it.
    fn launch<MK, D>(
        self,
        bind: Bind,
        refusal: Bytes,
        make: impl Fn(usize) -> MK,
    ) -> Result<Server, ReactorError>
    where
        MK: FnOnce() -> D + Send + 'static,
        D: Driver,
    {
        self.validate()?;
        let n = self.threads;
        let shared = Arc::new(Shared {
            limits: self.limits,
            metrics: self.metrics,
            metrics_on: self.metrics_on,
            loads: (0..n).map(|_| AtomicUsize::new(0)).collect(),
            active: AtomicUsize::new(0),
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            counters: (0..n).map(|_| ThreadCounters::default()).collect(),
            refusal,
            mode: self.mode,
        });
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let mut threads = Vec::with_capacity(n + 1);
        let started = |h: std::io::Result<(JoinHandle<()>, std::sync::mpsc::Receiver<_>)>,
                       threads: &mut Vec<JoinHandle<()>>|
         -> Result<Option<SocketAddr>, ReactorError> {
            let (h, ready) = h?;
            threads.push(h);
            match ready.recv() {
                Ok(Ok(a)) => Ok(a),
                Ok(Err(e)) => Err(ReactorError::Io(e)),
                Err(_) => Err(ReactorError::Closed("a reactor thread died while starting")),
            }
        };
        let mut bind = Some(bind);
        let result = (|| match self.mode {
            AcceptMode::MainSub => {
                let mut senders = Vec::with_capacity(n);
                for i in 0..n {
                    let (tx, rx) = mpsc::unbounded_channel();
                    senders.push(tx);
                    let h = spawn_worker(
                        i,
                        Arc::clone(&shared),
                        make(i),
                        WorkerSource::Handoff(rx),
                        shutdown_rx.clone(),
                    );
                    started(h, &mut threads)?;
                }
                let h = spawn_acceptor(
                    bind.take()
                        .ok_or(ReactorError::Closed("listener used twice"))?,
                    Arc::clone(&shared),
                    senders,
                    Arc::clone(&self.balancer),
                    shutdown_rx.clone(),
                );
                started(h, &mut threads)?
                    .ok_or(ReactorError::Closed("acceptor reported no address"))
            }
            AcceptMode::ReusePort => {
                let mut bound = None;
                for i in 0..n {
                    // The first thread binds (or takes over the given
                    // listener); the others bind the address it got.
                    let source = match (bind.take(), bound) {
                        (Some(b), _) => b,
                        (None, Some(a)) => Bind::Addr(a),
                        (None, None) => {
                            return Err(ReactorError::Closed("no address to bind"));
                        }
                    };
                    let h = spawn_worker(
                        i,
                        Arc::clone(&shared),
                        make(i),
                        WorkerSource::ReusePort(source),
                        shutdown_rx.clone(),
                    );
                    if let Some(a) = started(h, &mut threads)? {
                        bound = Some(a);
                    }
                }
                bound.ok_or(ReactorError::Closed("no I/O thread reported an address"))
            }
        })();
        match result {
            Ok(local_addr) => Ok(Server {
                local_addr,
                shared,
                shutdown: shutdown_tx,
                threads,
            }),
            Err(e) => {
                let _ = shutdown_tx.send(true);
                for t in threads {
                    let _ = t.join();
                }
                Err(e)
            }
        }
    }
}

/// The first address `addr` resolves to.
fn resolve(addr: impl ToSocketAddrs) -> Result<SocketAddr, ReactorError> {
    addr.to_socket_addrs()?
        .next()
        .ok_or(ReactorError::InvalidConfig(
            "address resolves to nothing".into(),
        ))
}

/// Binds a listener with the configured backlog (and `SO_REUSEPORT` when asked).
pub(crate) fn bind_listener(
    addr: SocketAddr,
    reuse_port: bool,
    backlog: u32,
) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    if reuse_port {
        socket.set_reuseport(true)?;
    }
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// Where a listener comes from: an address to bind, or a socket the caller
/// bound already ([`ServerBuilder::serve_pipeline_on`]).
#[derive(Debug)]
pub(crate) enum Bind {
    Addr(SocketAddr),
    Listener(std::net::TcpListener),
}

impl Bind {
    /// The listening socket, registered with the current runtime.
    pub(crate) fn listen(
        self,
        reuse_port: bool,
        backlog: u32,
    ) -> std::io::Result<tokio::net::TcpListener> {
        match self {
            Bind::Addr(a) => bind_listener(a, reuse_port, backlog),
            Bind::Listener(l) => {
                l.set_nonblocking(true)?;
                tokio::net::TcpListener::from_std(l)
            }
        }
    }
}

/// How a starting thread reports its bound address (or failure).
pub(crate) type Ready = std::sync::mpsc::Receiver<std::io::Result<Option<SocketAddr>>>;

fn spawn_acceptor(
    bind: Bind,
    shared: Arc<Shared>,
    senders: Vec<mpsc::UnboundedSender<std::net::TcpStream>>,
    balancer: Arc<dyn Balancer>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<(JoinHandle<()>, Ready)> {
    let (ready_tx, ready) = std::sync::mpsc::channel();
    let h = std::thread::Builder::new()
        .name("kuai-acceptor".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            rt.block_on(async move {
                let listener = match bind.listen(false, shared.limits.backlog) {
                    Ok(l) => l,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(listener.local_addr().map(Some));
                let mut loads = vec![0usize; senders.len()];
                loop {
                    let accepted = tokio::select! {
                        biased;
                        _ = shutdown.changed() => break,
                        r = listener.accept() => r,
                    };
                    let stream = match accepted {
                        Ok((s, _)) => s,
                        Err(_) => {
                            // Out of descriptors or similar: back off instead of spinning.
                            shared.metrics.counter("reactor.accept_errors", 1);
                            tokio::time::sleep(Duration::from_millis(5)).await;
                            continue;
                        }
                    };
                    if !shared.try_admit() {
                        shared.refuse(&stream);
                        continue;
                    }
                    let _ = stream.set_nodelay(shared.limits.nodelay);
                    for (slot, l) in loads.iter_mut().zip(shared.loads.iter()) {
                        *slot = l.load(Ordering::Relaxed);
                    }
                    let i = balancer.pick(&loads) % senders.len().max(1);
                    shared.loads[i].fetch_add(1, Ordering::AcqRel);
                    let handed = stream
                        .into_std()
                        .ok()
                        .is_some_and(|s| senders[i].send(s).is_ok());
                    if !handed {
                        shared.release(i);
                    }
                }
            });
        })?;
    Ok((h, ready))
}

/// A running server. Dropping it shuts it down gracefully (and waits).
///
/// ```
/// use kuai_reactor::{Client, Server, service_fn};
///
/// let server = Server::builder()
///     .threads(2)
///     .serve("127.0.0.1:0", |_thread| service_fn(|req| async move { Ok(req) }))
///     .unwrap();
/// let mut client = Client::connect(server.local_addr()).unwrap();
/// assert_eq!(&client.call(b"hello").unwrap()[..], b"hello");
/// let stats = server.shutdown();
/// assert_eq!(stats.requests, 1);
/// ```
pub struct Server {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    threads: Vec<JoinHandle<()>>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// A [`ServerBuilder`] with the defaults.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::new()
    }

    /// The bound address (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Current counters.
    pub fn stats(&self) -> ServerStats {
        self.shared.stats()
    }

    /// Every I/O thread's counters (connections, requests, bytes in and
    /// out), in thread order.
    pub fn thread_stats(&self) -> Vec<ThreadStats> {
        self.shared.thread_stats()
    }

    /// A cloneable, `Send + Sync` handle on the counters (for an `INFO`
    /// command or an exporter that cannot hold the server).
    pub fn stats_handle(&self) -> StatsHandle {
        StatsHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Live connections per I/O thread.
    pub fn thread_loads(&self) -> Vec<usize> {
        self.shared
            .loads
            .iter()
            .map(|l| l.load(Ordering::Relaxed))
            .collect()
    }

    /// Stops accepting, lets in-flight requests finish and their responses
    /// go out (up to the drain timeout), closes every connection, joins the
    /// threads and returns the final counters.
    pub fn shutdown(mut self) -> ServerStats {
        self.stop();
        self.shared.stats()
    }

    fn stop(&mut self) {
        let _ = self.shutdown.send(true);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}
