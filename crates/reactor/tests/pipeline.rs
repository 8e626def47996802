//! The pipelined handler API (`serve_pipeline`) end to end over loopback TCP,
//! with a small line protocol:
//!
//! - `ping` → `+pong`
//! - `big N` → `N` bytes of `x` (to fill the output)
//! - `sleep MS` → awaits a timer, then `+slept` (the async hook)
//! - `quit` → `+bye`, then the server closes
//! - `panic` → the handler panics
//! - anything else, or a line over 1 KiB → `-ERR …`, then the server closes

use std::cell::Cell;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use kuai_reactor::{AcceptMode, Conn, ConnInfo, Handler, Server, ServerBuilder, Step};

const MAX_LINE: usize = 1024;

struct Lines {
    input: BytesMut,
    output: BytesMut,
    /// The most output ever buffered before a write (shared per test).
    peak: Arc<AtomicUsize>,
    /// Connections this thread has made (per-thread state without a lock).
    made: Rc<Cell<usize>>,
}

impl Lines {
    fn reply(&mut self, bytes: &[u8]) {
        self.output.extend_from_slice(bytes);
        self.peak.fetch_max(self.output.len(), Ordering::Relaxed);
    }
}

impl Handler for Lines {
    type Output = BytesMut;

    fn input(&mut self) -> &mut BytesMut {
        &mut self.input
    }

    fn output(&mut self) -> &mut BytesMut {
        &mut self.output
    }

    async fn on_input(&mut self, conn: &mut Conn<'_>) -> Step {
        loop {
            let Some(end) = self.input.iter().position(|&b| b == b'\n') else {
                if self.input.len() > MAX_LINE {
                    self.reply(b"-ERR line too long\n");
                    return Step::Close;
                }
                return Step::Read;
            };
            let line = self.input.split_to(end + 1);
            let line = &line[..end];
            conn.served(1);
            let (cmd, arg) = match line.iter().position(|&b| b == b' ') {
                Some(p) => (
                    &line[..p],
                    std::str::from_utf8(&line[p + 1..]).unwrap_or(""),
                ),
                None => (line, ""),
            };
            match cmd {
                b"ping" => self.reply(b"+pong\n"),
                b"big" => {
                    let n: usize = arg.parse().unwrap_or(0);
                    let mut v = vec![b'x'; n];
                    v.push(b'\n');
                    self.reply(&v);
                }
                b"sleep" => {
                    let ms: u64 = arg.parse().unwrap_or(0);
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    self.reply(b"+slept\n");
                }
                b"made" => {
                    let s = format!(":{}\n", self.made.get());
                    self.reply(s.as_bytes());
                }
                b"quit" => {
                    self.reply(b"+bye\n");
                    return Step::Close;
                }
                b"panic" => panic!("handler bug"),
                _ => {
                    self.reply(b"-ERR unknown command\n");
                    return Step::Close;
                }
            }
            if self.output.len() >= conn.high_water() {
                return Step::Write;
            }
        }
    }
}

fn start(b: ServerBuilder, peak: Arc<AtomicUsize>) -> Server {
    let r = b.serve_pipeline("127.0.0.1:0", move |_thread| {
        let peak = Arc::clone(&peak);
        let made = Rc::new(Cell::new(0));
        move |_: &ConnInfo| {
            made.set(made.get() + 1);
            Lines {
                input: BytesMut::new(),
                output: BytesMut::new(),
                peak: Arc::clone(&peak),
                made: Rc::clone(&made),
            }
        }
    });
    match r {
        Ok(s) => s,
        Err(e) => panic!("server failed to start: {e}"),
    }
}

struct Client {
    r: BufReader<TcpStream>,
}

impl Client {
    fn connect(server: &Server) -> Client {
        let s = TcpStream::connect(server.local_addr()).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        Client {
            r: BufReader::new(s),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.r.get_mut().write_all(bytes).expect("write");
    }

    /// One reply line without its `\n`; `None` at EOF (or reset).
    fn line(&mut self) -> Option<String> {
        let mut s = String::new();
        match self.r.read_line(&mut s) {
            Ok(0) | Err(_) => None,
            Ok(_) => {
                assert!(s.ends_with('\n'), "torn reply {s:?}");
                s.pop();
                Some(s)
            }
        }
    }

    fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.r.read(&mut b), Ok(0) | Err(_))
    }
}

#[test]
fn pipelined_requests_in_one_write_in_both_accept_modes() {
    for mode in [AcceptMode::MainSub, AcceptMode::ReusePort] {
        let server = start(
            Server::builder().threads(2).accept_mode(mode),
            Arc::default(),
        );
        let mut clients: Vec<Client> = (0..4).map(|_| Client::connect(&server)).collect();
        for c in &mut clients {
            // 100 requests in one write, the last one split across two.
            let mut burst = "ping\n".repeat(99).into_bytes();
            burst.extend_from_slice(b"pi");
            c.send(&burst);
            std::thread::sleep(Duration::from_millis(5));
            c.send(b"ng\n");
            for _ in 0..100 {
                assert_eq!(c.line().as_deref(), Some("+pong"), "{mode:?}");
            }
        }
        let live = server.thread_stats();
        assert_eq!(live.len(), 2);
        assert_eq!(live.iter().map(|t| t.active).sum::<usize>(), 4);
        let handle = server.stats_handle();
        assert_eq!(handle.accept_mode(), mode);
        drop(clients);
        let stats = server.shutdown();
        assert_eq!(stats.requests, 400, "{mode:?}");
        assert_eq!(stats.bytes_out, 2400);
        // The handle still reads the final counters, per thread too.
        let per_thread = handle.thread_stats();
        assert_eq!(per_thread.iter().map(|t| t.requests).sum::<u64>(), 400);
        assert_eq!(per_thread.iter().map(|t| t.connections).sum::<u64>(), 4);
        assert_eq!(per_thread.iter().map(|t| t.active).sum::<usize>(), 0);
        assert_eq!(
            per_thread.iter().map(|t| t.bytes_in).sum::<u64>(),
            4 * 100 * 5
        );
        assert_eq!(
            per_thread.iter().map(|t| t.bytes_out).sum::<u64>(),
            4 * 100 * 6
        );
        assert_eq!(handle.stats(), stats);
    }
}

#[test]
fn a_full_output_is_written_before_more_input_is_parsed() {
    let peak = Arc::new(AtomicUsize::new(0));
    let server = start(
        Server::builder().threads(1).max_write_buffer(8 * 1024),
        Arc::clone(&peak),
    );
    let mut c = Client::connect(&server);
    // 200 replies of 1 KiB in one burst: 200 KiB of output from ~2 KiB in.
    c.send(&"big 1023\n".repeat(200).into_bytes());
    c.send(b"ping\n");
    for _ in 0..200 {
        assert_eq!(c.line().map(|l| l.len()), Some(1023));
    }
    assert_eq!(c.line().as_deref(), Some("+pong"));
    // The handler stopped at the high-water mark each time: the output
    // never held more than the mark plus one reply.
    let p = peak.load(Ordering::Relaxed);
    assert!(p < 8 * 1024 + 1024 + 64, "peak output {p}");
    assert!(p >= 8 * 1024, "peak output {p}");
    assert_eq!(server.shutdown().requests, 201);
}

#[test]
fn close_after_write_and_protocol_errors_close_only_that_connection() {
    let server = start(Server::builder().threads(1), Arc::default());
    let mut good = Client::connect(&server);
    assert!({
        good.send(b"ping\n");
        good.line().as_deref() == Some("+pong")
    });
    let mut q = Client::connect(&server);
    // Everything before QUIT is answered, nothing after it.
    q.send(b"ping\nquit\nping\n");
    assert_eq!(q.line().as_deref(), Some("+pong"));
    assert_eq!(q.line().as_deref(), Some("+bye"));
    assert!(q.closed());
    let mut bad = Client::connect(&server);
    bad.send(b"ping\nfrobnicate\n");
    assert_eq!(bad.line().as_deref(), Some("+pong"));
    assert_eq!(bad.line().as_deref(), Some("-ERR unknown command"));
    assert!(bad.closed());
    let mut long = Client::connect(&server);
    long.send(&vec![b'a'; 4 * MAX_LINE]);
    assert_eq!(long.line().as_deref(), Some("-ERR line too long"));
    assert!(long.closed());
    let mut boom = Client::connect(&server);
    boom.send(b"panic\n");
    assert!(boom.closed());
    good.send(b"ping\n");
    assert_eq!(good.line().as_deref(), Some("+pong"));
    // Per-thread state: five connections made on the one thread.
    good.send(b"made\n");
    assert_eq!(good.line().as_deref(), Some(":5"));
    let stats = server.shutdown();
    assert_eq!(stats.panics, 1);
}

#[test]
fn a_handler_awaits_between_requests_without_blocking_its_thread() {
    let server = start(Server::builder().threads(1), Arc::default());
    let mut slow = Client::connect(&server);
    let mut fast = Client::connect(&server);
    // The slow connection's second request waits 300 ms; the replies stay
    // in order on it, and the other connection on the same thread is served
    // meanwhile.
    slow.send(b"ping\nsleep 300\nping\n");
    assert_eq!(slow.line().as_deref(), Some("+pong"));
    let t = Instant::now();
    fast.send(b"ping\n");
    assert_eq!(fast.line().as_deref(), Some("+pong"));
    let fast_took = t.elapsed();
    assert_eq!(slow.line().as_deref(), Some("+slept"));
    assert_eq!(slow.line().as_deref(), Some("+pong"));
    assert!(
        fast_took < t.elapsed(),
        "the fast reply came after the slow one"
    );
    assert_eq!(server.shutdown().requests, 4);
}

#[test]
fn max_connections_are_refused_with_the_protocols_message() {
    let server = start(
        Server::builder()
            .threads(1)
            .max_connections(1)
            .refusal(&b"-ERR max number of clients reached\n"[..]),
        Arc::default(),
    );
    let mut a = Client::connect(&server);
    a.send(b"ping\n");
    assert_eq!(a.line().as_deref(), Some("+pong"));
    let mut b = Client::connect(&server);
    assert_eq!(
        b.line().as_deref(),
        Some("-ERR max number of clients reached")
    );
    assert!(b.closed());
    assert_eq!(server.stats().refused, 1);
    drop(a);
    let mut ok = false;
    for _ in 0..100 {
        let mut c = Client::connect(&server);
        c.send(b"ping\n");
        if c.line().as_deref() == Some("+pong") {
            ok = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(ok, "the slot was never freed");
    drop(server);
}

#[test]
fn idle_connections_are_cut() {
    let server = start(
        Server::builder()
            .threads(1)
            .idle_timeout(Some(Duration::from_millis(100))),
        Arc::default(),
    );
    let mut c = Client::connect(&server);
    c.send(b"ping\n");
    assert_eq!(c.line().as_deref(), Some("+pong"));
    assert!(c.closed());
    assert_eq!(server.shutdown().timed_out, 1);
}

#[test]
fn shutdown_drains_in_flight_requests_then_closes() {
    let server = start(Server::builder().threads(1), Arc::default());
    let mut idle = Client::connect(&server);
    idle.send(b"ping\n");
    assert_eq!(idle.line().as_deref(), Some("+pong"));
    let mut busy = Client::connect(&server);
    busy.send(b"sleep 200\n");
    std::thread::sleep(Duration::from_millis(50));
    let stats = server.shutdown();
    // The awaited request finished and its reply went out before the close.
    assert_eq!(busy.line().as_deref(), Some("+slept"));
    assert!(busy.closed());
    assert!(idle.closed());
    assert_eq!(stats.aborted_on_shutdown, 0);
    assert_eq!(stats.active, 0);
}

#[test]
fn a_chained_output_is_written_in_order() {
    /// Output as a chain of `Bytes` (zero-copy values): a `Buf` of chunks.
    #[derive(Default)]
    struct Chain(std::collections::VecDeque<bytes::Bytes>);
    impl Buf for Chain {
        fn remaining(&self) -> usize {
            self.0.iter().map(|b| b.len()).sum()
        }
        fn chunk(&self) -> &[u8] {
            self.0.front().map_or(&[], |b| &b[..])
        }
        fn chunks_vectored<'a>(&'a self, dst: &mut [std::io::IoSlice<'a>]) -> usize {
            let mut n = 0;
            for (slot, b) in dst.iter_mut().zip(self.0.iter()) {
                *slot = std::io::IoSlice::new(b);
                n += 1;
            }
            n
        }
        fn advance(&mut self, mut cnt: usize) {
            while cnt > 0 {
                let Some(front) = self.0.front_mut() else {
                    panic!("advance past the end");
                };
                if cnt >= front.len() {
                    cnt -= front.len();
                    self.0.pop_front();
                } else {
                    front.advance(cnt);
                    cnt = 0;
                }
            }
        }
    }
    struct Echo {
        input: BytesMut,
        output: Chain,
    }
    impl Handler for Echo {
        type Output = Chain;
        fn input(&mut self) -> &mut BytesMut {
            &mut self.input
        }
        fn output(&mut self) -> &mut Chain {
            &mut self.output
        }
        async fn on_input(&mut self, conn: &mut Conn<'_>) -> Step {
            while let Some(end) = self.input.iter().position(|&b| b == b'\n') {
                // Each line goes out as its own chunk (no copy).
                self.output
                    .0
                    .push_back(self.input.split_to(end + 1).freeze());
                conn.served(1);
            }
            Step::Read
        }
    }
    let server = Server::builder()
        .threads(1)
        .serve_pipeline("127.0.0.1:0", |_| {
            |_: &ConnInfo| Echo {
                input: BytesMut::new(),
                output: Chain::default(),
            }
        })
        .expect("start");
    let mut c = Client::connect(&server);
    let lines: Vec<String> = (0..300).map(|i| format!("line {i}")).collect();
    c.send(format!("{}\n", lines.join("\n")).as_bytes());
    for l in &lines {
        assert_eq!(c.line().as_deref(), Some(&l[..]));
    }
    assert_eq!(server.shutdown().requests, 300);
}

#[test]
fn serves_on_a_listener_bound_by_the_caller_in_both_accept_modes() {
    for mode in [AcceptMode::MainSub, AcceptMode::ReusePort] {
        // SO_REUSEPORT on the caller's socket lets the other threads join it.
        let listener = {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let _in = rt.enter();
            let sock = tokio::net::TcpSocket::new_v4().expect("socket");
            sock.set_reuseport(mode == AcceptMode::ReusePort)
                .expect("reuseport");
            sock.bind("127.0.0.1:0".parse().expect("addr"))
                .expect("bind");
            sock.listen(64)
                .expect("listen")
                .into_std()
                .expect("into_std")
        };
        let addr = listener.local_addr().expect("addr");
        let peak = Arc::new(AtomicUsize::new(0));
        let server = Server::builder()
            .threads(2)
            .accept_mode(mode)
            .serve_pipeline_on(listener, move |_| {
                let peak = Arc::clone(&peak);
                let made = Rc::new(Cell::new(0));
                move |_: &ConnInfo| Lines {
                    input: BytesMut::new(),
                    output: BytesMut::new(),
                    peak: Arc::clone(&peak),
                    made: Rc::clone(&made),
                }
            })
            .expect("start");
        assert_eq!(server.local_addr(), addr, "{mode:?}");
        for _ in 0..4 {
            let mut c = Client::connect(&server);
            c.send(b"ping\n");
            assert_eq!(c.line().as_deref(), Some("+pong"), "{mode:?}");
        }
        assert_eq!(server.shutdown().requests, 4);
    }
}
