//! Networking on kuai-reactor: [`kuai::reactor::ServerBuilder::serve_pipeline`]
//! with a RESP [`Handler`] per connection. Connections are pinned to one
//! I/O thread for life (main/sub hand-off from an acceptor thread, or a
//! `SO_REUSEPORT` listener per thread); after each read the handler parses
//! every complete command, executes them, flushes the log once, and the
//! reactor writes all their replies with one write.

use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use kuai::core::{Clock, SystemClock};
use kuai::pool::PooledBuf;
use kuai::reactor::{AcceptMode, Conn, ConnInfo, Handler, Step};

use crate::aof;
use crate::commands::{Db, DbSettings, Flow, Session};
use crate::config::Config;
use crate::error::ServerError;
use crate::keyspace::Keyspace;
use crate::reply::{Protocol, ReplyBuf};
use crate::resp::{Parsed, RequestParser};

/// Replies buffered beyond this are written before parsing further commands
/// of the same read, bounding memory under huge pipelines (the reactor's
/// high-water mark).
const OUT_HIGH_WATER: usize = 256 * 1024;

/// Bytes read per wake-up; the read buffer grows by this when less than a
/// quarter of it is free.
const READ_BUFFER: usize = 16 * 1024;

/// How long a shutdown waits for clients in the middle of a command.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// What a client refused at `maxclients` is told.
const REFUSAL: &[u8] = b"-ERR max number of clients reached\r\n";

/// A running server. Dropping it stops it (as [`shutdown`](Self::shutdown)
/// does, without reporting a failure to sync the log).
#[derive(Debug)]
pub struct ServerHandle {
    addr: SocketAddr,
    db: Arc<Db>,
    reactor: Option<kuai::reactor::Server>,
    stopped: Arc<AtomicBool>,
    housekeeping: Option<JoinHandle<()>>,
}

impl ServerHandle {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The database (for embedding and tests).
    pub fn db(&self) -> &Arc<Db> {
        &self.db
    }

    /// The reactor's counters: totals and per I/O thread.
    pub fn net_stats(&self) -> Option<kuai::reactor::StatsHandle> {
        self.db.stats.net.get().cloned()
    }

    /// Stops accepting, closes idle connections, lets busy ones finish the
    /// commands they read (their replies go out), then syncs and closes the
    /// append-only file.
    pub fn shutdown(mut self) -> Result<(), ServerError> {
        self.stop_threads();
        if let Some(aof) = &self.db.aof {
            aof.close()
                .map_err(|e| ServerError::Config(format!("closing the log: {e}")))?;
        }
        Ok(())
    }

    fn stop_threads(&mut self) {
        if let Some(r) = self.reactor.take() {
            r.shutdown();
        }
        self.stopped.store(true, Ordering::Release);
        if let Some(t) = self.housekeeping.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if self.reactor.is_some() {
            self.stop_threads();
            if let Some(aof) = &self.db.aof {
                let _ = aof.close();
            }
        }
    }
}

/// Starts servers. See [`Server::start`].
#[derive(Debug)]
pub struct Server;

impl Server {
    /// Replays the append-only file (if enabled), binds, and starts the
    /// event-loop threads and the housekeeping thread.
    ///
    /// ```
    /// use kuai_server::{Config, Server};
    /// let h = Server::start(Config::builder().port(0).build()).unwrap();
    /// let mut c = std::net::TcpStream::connect(h.local_addr()).unwrap();
    /// use std::io::{Read, Write};
    /// c.write_all(b"PING\r\n").unwrap();
    /// let mut buf = [0u8; 7];
    /// c.read_exact(&mut buf).unwrap();
    /// assert_eq!(&buf, b"+PONG\r\n");
    /// h.shutdown().unwrap();
    /// ```
    pub fn start(config: Config) -> Result<ServerHandle, ServerError> {
        Self::start_with_clock(config, Arc::new(SystemClock))
    }

    /// Like [`start`](Self::start) with an explicit clock (tests drive TTLs).
    pub fn start_with_clock(
        config: Config,
        clock: Arc<dyn Clock>,
    ) -> Result<ServerHandle, ServerError> {
        let ip: std::net::IpAddr = config
            .bind
            .parse()
            .map_err(|_| ServerError::Config(format!("bad bind address {:?}", config.bind)))?;
        let ks = Keyspace::new(
            config.shards,
            config.maxmemory,
            config.maxmemory_policy,
            clock.clone(),
        )
        .map_err(ServerError::Config)?;
        let settings = DbSettings {
            limits: config.limits,
            requirepass: config.requirepass.as_ref().map(|p| p.as_bytes().to_vec()),
            maxclients: config.maxclients,
            port: config.port,
            bind: config.bind.clone(),
            appendonly: config.appendonly,
            appendfsync: config.appendfsync.name().into(),
            threads: config.threads,
        };
        let mut db = Db::new(ks, clock, settings);
        if config.appendonly {
            std::fs::create_dir_all(&config.dir)?;
            let path = config.aof_path();
            let mut sess = Session::new(0, true);
            let mut sink = ReplyBuf::new(Protocol::Resp2);
            let (aof, stats) = aof::replay(&path, config.appendfsync, |args| {
                let now = db.now_ms();
                let args: Vec<&[u8]> = args.iter().map(|a| &a[..]).collect();
                db.execute(&mut sess, &args, &mut sink, now);
                sink.clear();
            })?;
            if stats.truncated_bytes > 0 {
                eprintln!(
                    "kuai-server: cut a torn tail of {} bytes off the append-only log",
                    stats.truncated_bytes
                );
            }
            db.aof = Some(Arc::new(aof));
        }
        // Read-through of misses to PostgreSQL (read_through.rs), after the replay.
        if config.read_through.enabled() {
            let rt =
                crate::read_through::ReadThrough::start(&config.read_through, db.clock.clone())?;
            db.read_through = Some(Arc::new(rt));
        }
        // Bound here, not by the reactor: INFO and CONFIG GET need the real
        // port (port 0) before the database is shared.
        let reuse_port = config.accept_mode == AcceptMode::ReusePort;
        let listener = bind_listener(SocketAddr::new(ip, config.port), reuse_port)?;
        db.settings.port = listener.local_addr()?.port();
        let db = Arc::new(db);
        let next_id = Arc::new(AtomicU64::new(1));
        let idle = (config.timeout > 0).then(|| Duration::from_secs(config.timeout));
        let reactor = {
            let db = Arc::clone(&db);
            kuai::reactor::Server::builder()
                .threads(config.threads)
                .accept_mode(config.accept_mode)
                .max_connections(config.maxclients)
                .refusal(REFUSAL)
                .read_buffer(READ_BUFFER)
                .max_write_buffer(OUT_HIGH_WATER)
                // Like Redis: no read or write deadline, idle only by `timeout`.
                .idle_timeout(idle)
                .read_timeout(None)
                .write_timeout(None)
                // On shutdown, clients in the middle of a command get this
                // long to finish it before they are cut.
                .drain_timeout(DRAIN_TIMEOUT)
                .serve_pipeline_on(listener, move |_thread| {
                    let db = Arc::clone(&db);
                    let next_id = Arc::clone(&next_id);
                    move |_: &ConnInfo| RespConn::new(Arc::clone(&db), &next_id)
                })
                .map_err(|e| match e {
                    kuai::reactor::ReactorError::Io(e) => ServerError::from(e),
                    other => ServerError::Config(other.to_string()),
                })?
        };
        let addr = reactor.local_addr();
        let _ = db.stats.net.set(reactor.stats_handle());
        let stopped = Arc::new(AtomicBool::new(false));
        let housekeeping = {
            let db = db.clone();
            let stopped = stopped.clone();
            std::thread::Builder::new()
                .name("kuai-housekeeping".into())
                .spawn(move || housekeeping(&db, &stopped))?
        };
        Ok(ServerHandle {
            addr,
            db,
            reactor: Some(reactor),
            stopped,
            housekeeping: Some(housekeeping),
        })
    }
}

/// A listening socket like Redis's (`SO_REUSEADDR`, backlog 1024), with
/// `SO_REUSEPORT` when every reactor thread binds its own.
fn bind_listener(addr: SocketAddr, reuse_port: bool) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol as SockProto, Socket, Type};
    let sock = Socket::new(
        Domain::for_address(addr),
        Type::STREAM,
        Some(SockProto::TCP),
    )?;
    sock.set_reuse_address(true)?;
    if reuse_port {
        sock.set_reuse_port(true)?;
    }
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    sock.listen(1024)?;
    Ok(sock.into())
}

fn housekeeping(db: &Db, stopped: &AtomicBool) {
    while !stopped.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(100));
        db.ks.sweep_expired();
    }
}

/// One client connection: its session, parser, pooled read buffer and
/// reply buffer. Lives on its reactor thread; dropped when the connection
/// ends.
struct RespConn {
    db: Arc<Db>,
    sess: Session,
    parser: RequestParser,
    // Read buffers are pooled (kuai-pool): a new connection reuses one a
    // closed connection returned.
    input: PooledBuf<'static>,
    out: ReplyBuf,
    ranges: Vec<Range<usize>>,
}

impl RespConn {
    fn new(db: Arc<Db>, next_id: &AtomicU64) -> Self {
        db.stats
            .connections_received
            .fetch_add(1, Ordering::Relaxed);
        db.stats.connected_clients.fetch_add(1, Ordering::Relaxed);
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        RespConn {
            sess: Session::new(id, db.settings.requirepass.is_none()),
            parser: RequestParser::new(db.settings.limits),
            input: db.buffers.get_owned(READ_BUFFER),
            out: ReplyBuf::new(Protocol::Resp2),
            ranges: Vec::with_capacity(8),
            db,
        }
    }

    /// Parses and executes every complete command of the input, stopping
    /// early at the output high-water mark, QUIT or a protocol error.
    /// With read-through on, a GET/GETEX/MGET that misses awaits its load
    /// (read_through.rs) before it runs, so replies stay in order; without
    /// it nothing here awaits and the future completes in one poll.
    #[inline]
    async fn run_batch(&mut self, high_water: usize) -> (Step, u64) {
        let db_arc = &self.db;
        let db = &**db_arc;
        let mut now = db.now_ms();
        let mut step = Step::Read;
        let mut n = 0u64;
        // Arguments are slices of the read buffer: no copy, no reference
        // counting, one small vector per read.
        let buf: &[u8] = &self.input[..];
        let mut args: Vec<&[u8]> = Vec::with_capacity(8);
        loop {
            let flow = match self.parser.next_in(buf, &mut self.ranges) {
                Ok(Some(Parsed::Ranges)) => {
                    args.clear();
                    args.extend(self.ranges.iter().map(|r| &buf[r.clone()]));
                    if db.read_through.is_some()
                        && crate::read_through::prefetch(db_arc, &self.sess, &args).await
                    {
                        now = db.now_ms();
                    }
                    db.execute(&mut self.sess, &args, &mut self.out, now)
                }
                Ok(Some(Parsed::Inline(a))) => {
                    let inline: Vec<&[u8]> = a.iter().map(|a| &a[..]).collect();
                    if db.read_through.is_some()
                        && crate::read_through::prefetch(db_arc, &self.sess, &inline).await
                    {
                        now = db.now_ms();
                    }
                    db.execute(&mut self.sess, &inline, &mut self.out, now)
                }
                Ok(None) => break,
                Err(e) => {
                    db.stats.protocol_errors.fetch_add(1, Ordering::Relaxed);
                    self.out.error(&format!("ERR Protocol error: {e}"));
                    step = Step::Close;
                    break;
                }
            };
            n += 1;
            if flow == Flow::Close {
                step = Step::Close;
                break;
            }
            if self.out.len() >= high_water {
                step = Step::Write;
                break;
            }
        }
        (step, n)
    }
}

impl Drop for RespConn {
    fn drop(&mut self) {
        self.db
            .stats
            .connected_clients
            .fetch_sub(1, Ordering::Relaxed);
    }
}

impl Handler for RespConn {
    type Output = ReplyBuf;

    fn input(&mut self) -> &mut BytesMut {
        &mut self.input
    }

    fn output(&mut self) -> &mut ReplyBuf {
        &mut self.out
    }

    async fn on_input(&mut self, conn: &mut Conn<'_>) -> Step {
        let (step, n) = self.run_batch(conn.high_water()).await;
        let cut = self.parser.finish_batch();
        self.input.advance(cut);
        conn.served(n);
        self.db.stats.commands.fetch_add(n, Ordering::Relaxed);
        if flush_log(&self.db, &mut self.sess).is_err() {
            // Nothing of this batch may be acknowledged: drop its replies.
            self.out.clear();
            return Step::Close;
        }
        // A bulk string longer than a read: make room for all of it (up to
        // 1 MiB at a time) so it arrives in few reads.
        let input = &mut *self.input;
        let want = self.parser.wanted(input.len()).min(1 << 20);
        if want > input.capacity() - input.len() {
            input.reserve(want);
        }
        step
    }
}

/// Writes (and under `always`, syncs) the log before any reply of the batch
/// is sent, so an acknowledged write survives a crash.
fn flush_log(db: &Db, sess: &mut Session) -> Result<(), kuai::queue::QueueError> {
    if sess.wrote {
        sess.wrote = false;
        if let Some(aof) = &db.aof {
            if let Err(e) = aof.flush() {
                eprintln!("kuai-server: append-only file write failed: {e}");
                return Err(e);
            }
        }
    }
    Ok(())
}
