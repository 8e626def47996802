//! Shared test fixtures: a self-deleting temp dir, patterned files, socket pairs.
#![allow(dead_code)]

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "kuai-zc-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Deterministic content: byte i is a function of i.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u64).wrapping_mul(2654435761) as u8 ^ (i >> 12) as u8)
        .collect()
}

pub fn write_file(dir: &TempDir, name: &str, len: usize) -> (PathBuf, Vec<u8>) {
    let data = pattern(len);
    let p = dir.join(name);
    std::fs::write(&p, &data).expect("write file");
    (p, data)
}

/// A connected TCP pair over loopback: (server side, client side).
pub fn tcp_pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    let c = TcpStream::connect(addr).expect("connect");
    let (s, _) = l.accept().expect("accept");
    (s, c)
}

/// Reads everything from `r` on a thread.
pub fn drain<R: Read + Send + 'static>(mut r: R) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut v = Vec::new();
        r.read_to_end(&mut v).expect("read_to_end");
        v
    })
}
