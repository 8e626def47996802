//! One I/O thread (sub-reactor): a current-thread tokio runtime, its
//! connections, their timeouts and the drain on shutdown.
//!
//! Everything here is owned by the thread: the connection registry and the
//! per-connection timestamps are `Rc`/`Cell`/`RefCell`, never locked. The
//! only cross-thread traffic after a connection is pinned is the relaxed
//! counter updates in [`Shared`].

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::task::{AbortHandle, LocalSet};

use crate::server::{Bind, Ready, Shared, ThreadCounters, bump};
use crate::service::call_guarded;
use crate::{Framing, Service};

/// How one I/O thread serves a connection: the framed request → response
/// loop ([`FramedDriver`]) or a pipelined handler
/// ([`PipelineDriver`](crate::pipeline::PipelineDriver)). Built on the
/// thread; monomorphized, so the hot loop has no dynamic dispatch.
pub(crate) trait Driver: 'static {
    /// The connection's task.
    fn drive(
        self: Rc<Self>,
        stream: TcpStream,
        conn: ConnParts,
    ) -> impl Future<Output = ()> + 'static;
}

/// Everything a connection task gets from its thread.
pub(crate) struct ConnParts {
    pub(crate) id: u64,
    pub(crate) peer: Option<SocketAddr>,
    pub(crate) ctx: Rc<ThreadCtx>,
    pub(crate) state: Rc<ConnState>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) guard: ConnGuard,
}

/// The request → response driver: a [`Service`] behind a [`Framing`].
pub(crate) struct FramedDriver<S, F> {
    pub(crate) svc: Rc<S>,
    pub(crate) framing: F,
}

impl<S: Service, F: Framing> Driver for FramedDriver<S, F> {
    fn drive(
        self: Rc<Self>,
        stream: TcpStream,
        conn: ConnParts,
    ) -> impl Future<Output = ()> + 'static {
        serve_conn(
            stream,
            Rc::clone(&self.svc),
            self.framing.clone(),
            conn.ctx,
            conn.state,
            conn.shared,
            conn.guard,
        )
    }
}

/// Where a worker's connections come from.
pub(crate) enum WorkerSource {
    /// Handed over by the acceptor (already admitted and counted).
    Handoff(mpsc::UnboundedReceiver<std::net::TcpStream>),
    /// Accepted on the worker's own `SO_REUSEPORT` listener bound here.
    ReusePort(Bind),
}

/// Per-connection timestamps, in sweeper ticks, read by the sweeper.
#[derive(Debug)]
pub(crate) struct ConnState {
    pub(crate) last_active: Cell<u64>,
    pub(crate) partial_since: Cell<Option<u64>>,
    pub(crate) writing_since: Cell<Option<u64>>,
    pub(crate) in_read: Cell<bool>,
}

#[derive(Debug)]
struct ConnEntry {
    state: Rc<ConnState>,
    abort: AbortHandle,
}

/// The thread's own state. Never leaves the thread.
#[derive(Debug)]
pub(crate) struct ThreadCtx {
    pub(crate) index: usize,
    pub(crate) tick: Cell<u64>,
    next_id: Cell<u64>,
    pub(crate) draining: Cell<bool>,
    conns: RefCell<HashMap<u64, ConnEntry>>,
}

/// Releases the connection's slot and registry entry however the
/// connection task ends (finished, errored or aborted).
pub(crate) struct ConnGuard {
    id: u64,
    ctx: Rc<ThreadCtx>,
    shared: Arc<Shared>,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        if let Ok(mut conns) = self.ctx.conns.try_borrow_mut() {
            conns.remove(&self.id);
        }
        self.shared.release(self.ctx.index);
    }
}

/// Timeouts converted to sweeper ticks.
#[derive(Debug, Clone, Copy)]
struct TickLimits {
    idle: Option<u64>,
    read: Option<u64>,
    write: Option<u64>,
}

impl ConnState {
    fn expired(&self, now: u64, lim: &TickLimits) -> bool {
        let over =
            |since: u64, limit: Option<u64>| limit.is_some_and(|l| now.saturating_sub(since) > l);
        if let Some(t) = self.writing_since.get() {
            return over(t, lim.write);
        }
        if let Some(t) = self.partial_since.get() {
            return over(t, lim.read);
        }
        self.in_read.get() && over(self.last_active.get(), lim.idle)
    }
}

pub(crate) fn spawn_worker<MK, D>(
    index: usize,
    shared: Arc<Shared>,
    make: MK,
    source: WorkerSource,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<(JoinHandle<()>, Ready)>
where
    MK: FnOnce() -> D + Send + 'static,
    D: Driver,
{
    let (ready_tx, ready) = std::sync::mpsc::channel();
    let h = std::thread::Builder::new()
        .name(format!("kuai-io-{index}"))
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
            // Build the driver (and the user's service or pipeline) inside
            // the thread's runtime, so its constructor may create timers,
            // spawn tasks or start a Batcher.
            let driver = {
                let _in_runtime = rt.enter();
                Rc::new(make())
            };
            let ctx = Rc::new(ThreadCtx {
                index,
                tick: Cell::new(0),
                next_id: Cell::new(0),
                draining: Cell::new(false),
                conns: RefCell::new(HashMap::new()),
            });
            let local = LocalSet::new();
            local.block_on(
                &rt,
                worker_main(ctx, driver, shared, source, shutdown, ready_tx),
            );
        })?;
    Ok((h, ready))
}

async fn worker_main<D: Driver>(
    ctx: Rc<ThreadCtx>,
    driver: Rc<D>,
    shared: Arc<Shared>,
    source: WorkerSource,
    mut shutdown: watch::Receiver<bool>,
    ready: std::sync::mpsc::Sender<std::io::Result<Option<SocketAddr>>>,
) {
    let sweeper = tokio::task::spawn_local(sweeper(Rc::clone(&ctx), Arc::clone(&shared)));
    match source {
        WorkerSource::Handoff(mut rx) => {
            let _ = ready.send(Ok(None));
            loop {
                let next = tokio::select! {
                    biased;
                    _ = shutdown.changed() => break,
                    s = rx.recv() => s,
                };
                let Some(std_stream) = next else { break };
                match TcpStream::from_std(std_stream) {
                    Ok(stream) => start_conn(&ctx, &driver, &shared, stream),
                    Err(_) => shared.release(ctx.index),
                }
            }
            // Connections handed over but not yet picked up: give their slots back.
            rx.close();
            while let Ok(s) = rx.try_recv() {
                drop(s);
                shared.release(ctx.index);
            }
        }
        WorkerSource::ReusePort(bind) => {
            let listener = match bind.listen(true, shared.limits.backlog) {
                Ok(l) => l,
                Err(e) => {
                    let _ = ready.send(Err(e));
                    sweeper.abort();
                    return;
                }
            };
            let _ = ready.send(listener.local_addr().map(Some));
            loop {
                let accepted = tokio::select! {
                    biased;
                    _ = shutdown.changed() => break,
                    r = listener.accept() => r,
                };
                let Ok((stream, _)) = accepted else {
                    shared.metrics.counter("reactor.accept_errors", 1);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                };
                if !shared.try_admit() {
                    shared.refuse(&stream);
                    continue;
                }
                shared.loads[ctx.index].fetch_add(1, Ordering::AcqRel);
                let _ = stream.set_nodelay(shared.limits.nodelay);
                start_conn(&ctx, &driver, &shared, stream);
            }
        }
    }
    drain(&ctx, &shared).await;
    sweeper.abort();
}

fn start_conn<D: Driver>(
    ctx: &Rc<ThreadCtx>,
    driver: &Rc<D>,
    shared: &Arc<Shared>,
    stream: TcpStream,
) {
    let id = ctx.next_id.get();
    ctx.next_id.set(id.wrapping_add(1));
    let state = Rc::new(ConnState {
        last_active: Cell::new(ctx.tick.get()),
        partial_since: Cell::new(None),
        writing_since: Cell::new(None),
        in_read: Cell::new(true),
    });
    let guard = ConnGuard {
        id,
        ctx: Rc::clone(ctx),
        shared: Arc::clone(shared),
    };
    shared.counters[ctx.index]
        .connections
        .fetch_add(1, Ordering::Relaxed);
    shared.metrics.gauge(
        "reactor.connections",
        i64::try_from(shared.active.load(Ordering::Relaxed)).unwrap_or(i64::MAX),
    );
    let parts = ConnParts {
        id,
        peer: stream.peer_addr().ok(),
        ctx: Rc::clone(ctx),
        state: Rc::clone(&state),
        shared: Arc::clone(shared),
        guard,
    };
    let task = Rc::clone(driver).drive(stream, parts);
    let handle = tokio::task::spawn_local(task);
    ctx.conns.borrow_mut().insert(
        id,
        ConnEntry {
            state,
            abort: handle.abort_handle(),
        },
    );
}

/// Advances the thread's coarse clock and cuts connections whose idle, read
/// or write deadline passed. The hot path only copies a tick into a `Cell`.
async fn sweeper(ctx: Rc<ThreadCtx>, shared: Arc<Shared>) {
    let lim = shared.limits;
    let period = lim.sweep_period();
    let ticks = |d: Option<Duration>| {
        d.map(|d| {
            let t = d.as_nanos().div_ceil(period.as_nanos().max(1));
            u64::try_from(t).unwrap_or(u64::MAX)
        })
    };
    let tick_limits = TickLimits {
        idle: ticks(lim.idle_timeout),
        read: ticks(lim.read_timeout),
        write: ticks(lim.write_timeout),
    };
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut cut = Vec::new();
    loop {
        interval.tick().await;
        let now = ctx.tick.get() + 1;
        ctx.tick.set(now);
        cut.extend(
            ctx.conns
                .borrow()
                .values()
                .filter(|e| e.state.expired(now, &tick_limits))
                .map(|e| e.abort.clone()),
        );
        if !cut.is_empty() {
            let n = cut.len() as u64;
            shared.counters[ctx.index]
                .timeouts
                .fetch_add(n, Ordering::Relaxed);
            shared.metrics.counter("reactor.timeouts", n);
            for h in cut.drain(..) {
                h.abort();
            }
        }
    }
}

/// Graceful shutdown of one thread: idle connections close now, busy ones
/// finish their in-flight requests, whatever is left at the drain deadline
/// is aborted.
async fn drain(ctx: &Rc<ThreadCtx>, shared: &Arc<Shared>) {
    ctx.draining.set(true);
    let idle: Vec<AbortHandle> = ctx
        .conns
        .borrow()
        .values()
        .filter(|e| e.state.in_read.get() && e.state.partial_since.get().is_none())
        .map(|e| e.abort.clone())
        .collect();
    for h in idle {
        h.abort();
    }
    let deadline = Instant::now() + shared.limits.drain_timeout;
    while !ctx.conns.borrow().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let rest: Vec<AbortHandle> = ctx
        .conns
        .borrow()
        .values()
        .map(|e| e.abort.clone())
        .collect();
    if !rest.is_empty() {
        shared.counters[ctx.index]
            .aborted
            .fetch_add(rest.len() as u64, Ordering::Relaxed);
        for h in rest {
            h.abort();
        }
        for _ in 0..1000 {
            if ctx.conns.borrow().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// The hot path. One wake-up: one `read` of up to `read_buffer` bytes, every
/// complete frame in it handled inline (no spawn, no cross-thread hop), all
/// responses coalesced into one `write`. Monomorphized for the framing: its
/// `decode`/`encode` calls are static (and usually inlined).
async fn serve_conn<S: Service, F: Framing>(
    mut stream: TcpStream,
    svc: Rc<S>,
    mut framing: F,
    ctx: Rc<ThreadCtx>,
    state: Rc<ConnState>,
    shared: Arc<Shared>,
    _guard: ConnGuard,
) {
    let lim = shared.limits;
    let counters = &shared.counters[ctx.index];
    let mut rbuf = BytesMut::with_capacity(lim.read_buffer);
    let mut wbuf = BytesMut::with_capacity(lim.read_buffer.min(lim.max_write_buffer));
    loop {
        if ctx.draining.get() && rbuf.is_empty() {
            break;
        }
        if rbuf.capacity() - rbuf.len() < lim.read_buffer / 4 {
            rbuf.reserve(lim.read_buffer);
        }
        state.in_read.set(true);
        let read = stream.read_buf(&mut rbuf).await;
        state.in_read.set(false);
        match read {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                bump(&counters.bytes_in, n as u64);
            }
        }
        state.last_active.set(ctx.tick.get());
        let mut served = 0u64;
        let mut fatal = false;
        loop {
            let req = match framing.decode(&mut rbuf) {
                Ok(Some(req)) => req,
                Ok(None) => break,
                Err(e) => {
                    counters.frame_errors.fetch_add(1, Ordering::Relaxed);
                    shared.metrics.counter("reactor.frame_errors", 1);
                    framing.encode_error(&e.to_string(), &mut wbuf);
                    fatal = true;
                    break;
                }
            };
            let started = lim.record_latency.then(Instant::now);
            let outcome = call_guarded(&*svc, req).await;
            served += 1;
            match outcome {
                Ok(Ok(body)) => {
                    if let Err(e) = framing.encode(&body, &mut wbuf) {
                        framing.encode_error(&e.to_string(), &mut wbuf);
                    }
                }
                Ok(Err(e)) => framing.encode_error(&e.to_string(), &mut wbuf),
                Err(()) => {
                    counters.panics.fetch_add(1, Ordering::Relaxed);
                    shared.metrics.counter("reactor.panics", 1);
                    framing.encode_error("handler panicked", &mut wbuf);
                }
            }
            if let Some(t) = started {
                let ns = u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX);
                shared.metrics.histogram("reactor.request_ns", ns);
            }
            if wbuf.len() >= lim.max_write_buffer
                && flush(&mut stream, &mut wbuf, &state, &ctx, counters)
                    .await
                    .is_err()
            {
                fatal = true;
                break;
            }
        }
        if served > 0 {
            bump(&counters.requests, served);
            if shared.metrics_on {
                shared.metrics.counter("reactor.requests", served);
            }
        }
        if !wbuf.is_empty()
            && flush(&mut stream, &mut wbuf, &state, &ctx, counters)
                .await
                .is_err()
        {
            break;
        }
        if fatal {
            break;
        }
        // Slow-loris clock: runs from the last byte that completed a frame.
        if rbuf.is_empty() {
            state.partial_since.set(None);
        } else {
            // (Room for the rest of a declared frame was reserved by the
            // framing's `decode`, bounded by its maximum frame size.)
            if served > 0 || state.partial_since.get().is_none() {
                state.partial_since.set(Some(ctx.tick.get()));
            }
        }
    }
    let _ = stream.shutdown().await;
}

async fn flush(
    stream: &mut TcpStream,
    wbuf: &mut BytesMut,
    state: &ConnState,
    ctx: &ThreadCtx,
    counters: &ThreadCounters,
) -> std::io::Result<()> {
    state.writing_since.set(Some(ctx.tick.get()));
    let r = stream.write_all(wbuf).await;
    if r.is_ok() {
        bump(&counters.bytes_out, wbuf.len() as u64);
    }
    wbuf.clear();
    state.writing_since.set(None);
    r
}
