//! Networking: one event loop per thread, each with its own `SO_REUSEPORT`
//! listener on the same port (the kernel spreads connections), and a
//! connection loop that parses every complete command in a read, executes
//! them, flushes the log once, and writes all their replies with one write.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Buf;
use kuai::core::{Clock, SystemClock};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::aof;
use crate::commands::{Db, DbSettings, Flow, Session};
use crate::config::Config;
use crate::error::ServerError;
use crate::keyspace::Keyspace;
use crate::reply::{Protocol, ReplyBuf};
use crate::resp::{Parsed, RequestParser};

/// Replies buffered beyond this are written before parsing further commands
/// of the same read, bounding memory under huge pipelines.
const OUT_HIGH_WATER: usize = 256 * 1024;

/// A running server. Dropping it does not stop it; call [`shutdown`](Self::shutdown).
#[derive(Debug)]
pub struct ServerHandle {
    addr: SocketAddr,
    db: Arc<Db>,
    stop: watch::Sender<bool>,
    stopped: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
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

    /// Stops accepting, closes connections, and syncs the append-only file.
    pub fn shutdown(mut self) -> Result<(), ServerError> {
        self.stop_threads();
        if let Some(aof) = &self.db.aof {
            aof.close()
                .map_err(|e| ServerError::Config(format!("closing the log: {e}")))?;
        }
        Ok(())
    }

    fn stop_threads(&mut self) {
        let _ = self.stop.send(true);
        self.stopped.store(true, Ordering::Release);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Starts servers. See [`Server::start`].
#[derive(Debug)]
pub struct Server;

fn bind_reuseport(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol as SockProto, Socket, Type};
    let sock = Socket::new(
        Domain::for_address(addr),
        Type::STREAM,
        Some(SockProto::TCP),
    )?;
    sock.set_reuse_address(true)?;
    sock.set_reuse_port(true)?;
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    sock.listen(1024)?;
    Ok(sock.into())
}

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
        let first = bind_reuseport(SocketAddr::new(ip, config.port))?;
        let addr = first.local_addr()?;
        db.settings.port = addr.port();
        let db = Arc::new(db);
        let (stop, stop_rx) = watch::channel(false);
        let stopped = Arc::new(AtomicBool::new(false));
        let next_id = Arc::new(AtomicU64::new(1));
        let mut listeners = vec![first];
        for _ in 1..config.threads {
            listeners.push(bind_reuseport(addr)?);
        }
        let mut threads = Vec::new();
        for (i, l) in listeners.into_iter().enumerate() {
            let db = db.clone();
            let mut rx = stop_rx.clone();
            let next_id = next_id.clone();
            let t = std::thread::Builder::new()
                .name(format!("kuai-reactor-{i}"))
                .spawn(move || {
                    let rt = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt,
                        Err(e) => {
                            eprintln!("kuai-server: cannot start event loop: {e}");
                            return;
                        }
                    };
                    // A LocalSet: connections never leave their thread, so
                    // their state (pooled buffers included) need not be Send.
                    let local = tokio::task::LocalSet::new();
                    local.block_on(&rt, async move {
                        let Ok(listener) = TcpListener::from_std(l) else {
                            return;
                        };
                        loop {
                            tokio::select! {
                                _ = rx.changed() => break,
                                r = listener.accept() => {
                                    if let Ok((sock, _)) = r {
                                        let id = next_id.fetch_add(1, Ordering::Relaxed);
                                        tokio::task::spawn_local(serve(db.clone(), sock, id));
                                    }
                                }
                            }
                        }
                    });
                })?;
            threads.push(t);
        }
        {
            let db = db.clone();
            let stopped = stopped.clone();
            threads.push(
                std::thread::Builder::new()
                    .name("kuai-housekeeping".into())
                    .spawn(move || housekeeping(&db, &stopped))?,
            );
        }
        Ok(ServerHandle {
            addr,
            db,
            stop,
            stopped,
            threads,
        })
    }
}

fn housekeeping(db: &Db, stopped: &AtomicBool) {
    while !stopped.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(100));
        db.ks.sweep_expired();
    }
}

async fn write_out(sock: &mut TcpStream, out: &mut ReplyBuf) -> std::io::Result<()> {
    if out.is_contiguous() {
        sock.write_all(out.contiguous()).await?;
        out.clear();
    } else {
        for chunk in out.take_chain() {
            sock.write_all(&chunk).await?;
        }
    }
    Ok(())
}

struct ClientGuard<'a>(&'a Db);

impl Drop for ClientGuard<'_> {
    fn drop(&mut self) {
        self.0
            .stats
            .connected_clients
            .fetch_sub(1, Ordering::Relaxed);
    }
}

async fn serve(db: Arc<Db>, mut sock: TcpStream, id: u64) {
    let _ = sock.set_nodelay(true);
    db.stats
        .connections_received
        .fetch_add(1, Ordering::Relaxed);
    let open = db.stats.connected_clients.fetch_add(1, Ordering::Relaxed) + 1;
    let _guard = ClientGuard(&db);
    if open as usize > db.settings.maxclients {
        db.stats
            .rejected_connections
            .fetch_add(1, Ordering::Relaxed);
        let _ = sock
            .write_all(b"-ERR max number of clients reached\r\n")
            .await;
        return;
    }
    let mut sess = Session::new(id, db.settings.requirepass.is_none());
    let mut parser = RequestParser::new(db.settings.limits);
    // Read buffers are pooled (kuai-pool): a new connection reuses one a
    // closed connection returned.
    let mut rbuf = db.buffers.get_owned(16 * 1024);
    let mut out = ReplyBuf::new(Protocol::Resp2);
    let mut ranges = Vec::with_capacity(8);
    loop {
        if rbuf.capacity() - rbuf.len() < 4096 {
            let want = parser.wanted(rbuf.len()).min(1 << 20);
            rbuf.reserve(want.max(16 * 1024));
        }
        match sock.read_buf(&mut *rbuf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let now = db.now_ms();
        let mut close = false;
        let mut n = 0u64;
        {
            // Arguments are slices of the read buffer: no copy, no
            // reference counting, one small vector per read.
            let buf: &[u8] = &rbuf[..];
            let mut args: Vec<&[u8]> = Vec::with_capacity(8);
            loop {
                let flow = match parser.next_in(buf, &mut ranges) {
                    Ok(Some(Parsed::Ranges)) => {
                        args.clear();
                        args.extend(ranges.iter().map(|r| &buf[r.clone()]));
                        db.execute(&mut sess, &args, &mut out, now)
                    }
                    Ok(Some(Parsed::Inline(a))) => {
                        let inline: Vec<&[u8]> = a.iter().map(|a| &a[..]).collect();
                        db.execute(&mut sess, &inline, &mut out, now)
                    }
                    Ok(None) => break,
                    Err(e) => {
                        db.stats.protocol_errors.fetch_add(1, Ordering::Relaxed);
                        out.error(&format!("ERR Protocol error: {e}"));
                        close = true;
                        break;
                    }
                };
                n += 1;
                if flow == Flow::Close {
                    close = true;
                    break;
                }
                if out.len() >= OUT_HIGH_WATER {
                    if flush_log(&db, &mut sess).is_err() {
                        return;
                    }
                    if write_out(&mut sock, &mut out).await.is_err() {
                        return;
                    }
                }
            }
        }
        let cut = parser.finish_batch();
        rbuf.advance(cut);
        db.stats.commands.fetch_add(n, Ordering::Relaxed);
        if flush_log(&db, &mut sess).is_err() {
            return;
        }
        if !out.is_empty() && write_out(&mut sock, &mut out).await.is_err() {
            return;
        }
        if close {
            let _ = sock.shutdown().await;
            return;
        }
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
