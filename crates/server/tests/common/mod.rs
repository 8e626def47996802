//! Helpers shared by the integration tests: a raw RESP client and a
//! `redis-server` launcher.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kuai_server::frame::{Frame, decode, encode};
use kuai_server::resp::{Limits, encode_command};

/// A minimal blocking RESP client that returns raw frames.
pub struct RawClient {
    sock: TcpStream,
    buf: Vec<u8>,
}

impl RawClient {
    pub fn connect(addr: SocketAddr) -> Self {
        let sock = TcpStream::connect(addr).expect("connect");
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        RawClient {
            sock,
            buf: Vec::new(),
        }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.sock.write_all(bytes).expect("write");
    }

    pub fn send(&mut self, args: &[&[u8]]) {
        let mut out = Vec::new();
        encode_command(args, &mut out);
        self.send_raw(&out);
    }

    /// Reads one frame; `None` on EOF.
    pub fn read_frame(&mut self) -> Option<Frame> {
        loop {
            if let Some((f, n)) = decode(&self.buf, &Limits::default()).expect("valid reply") {
                self.buf.drain(..n);
                return Some(f);
            }
            let mut chunk = [0u8; 65536];
            let n = self.sock.read(&mut chunk).ok()?;
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    pub fn cmd(&mut self, args: &[&[u8]]) -> Frame {
        self.send(args);
        self.read_frame().expect("reply")
    }

    /// Whether the server closed the connection.
    pub fn is_closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.sock.read(&mut b), Ok(0) | Err(_))
    }
}

pub fn text(f: &Frame) -> String {
    let mut v = Vec::new();
    encode(f, &mut v);
    String::from_utf8_lossy(&v).into_owned()
}

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A `redis-server` child on a spare port, killed on drop.
pub struct RedisServer {
    child: Child,
    pub addr: SocketAddr,
}

impl RedisServer {
    pub fn start() -> Self {
        let bin = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let port = free_port();
        let child = Command::new(&bin)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "this test compares kuai-server with a real redis-server, which could not be started ({bin}: {e}); \
                     install it with `apt-get install redis-server` or point REDIS_SERVER at the binary"
                )
            });
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on {addr}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        RedisServer { child, addr }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
