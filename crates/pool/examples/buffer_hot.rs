//! Tight get/put loops on the buffer pool next to the floors it competes
//! with (fresh `BytesMut`, a bare thread-local `Vec`, a local `Vec`), for
//! profiling the hot path:
//! `perf record target/release/examples/buffer_hot [N] [local]`.

use std::hint::black_box;
use std::time::Instant;

use std::cell::RefCell;

thread_local! {
    static RAW: RefCell<Vec<kuai_pool::bytes::BytesMut>> = const { RefCell::new(Vec::new()) };
}

fn main() {
    let pool = kuai_pool::BufferPool::new();
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000_000);
    if std::env::args().nth(2).as_deref() == Some("local") {
        let local = pool.local();
        for _ in 0..n {
            let mut b = local.get(4096);
            b.extend_from_slice(&[7u8; 64]);
            black_box(&b);
        }
        return;
    }
    let t = Instant::now();
    for _ in 0..n {
        let mut b = pool.get(4096);
        b.extend_from_slice(&[7u8; 64]);
        black_box(&b);
    }
    println!(
        "pool:  {:.2} ns per get+put",
        t.elapsed().as_nanos() as f64 / n as f64
    );
    let local = pool.local();
    let t = Instant::now();
    for _ in 0..n {
        let mut b = local.get(4096);
        b.extend_from_slice(&[7u8; 64]);
        black_box(&b);
    }
    println!(
        "local handle: {:.2} ns per get+put",
        t.elapsed().as_nanos() as f64 / n as f64
    );
    let t = Instant::now();
    for _ in 0..n {
        let mut b = kuai_pool::bytes::BytesMut::with_capacity(4096);
        b.extend_from_slice(&[7u8; 64]);
        black_box(&b);
    }
    println!(
        "fresh: {:.2} ns per alloc+free",
        t.elapsed().as_nanos() as f64 / n as f64
    );
    let t = Instant::now();
    for _ in 0..n {
        let mut b = RAW
            .with(|r| r.borrow_mut().pop())
            .unwrap_or_else(|| kuai_pool::bytes::BytesMut::with_capacity(4096));
        b.extend_from_slice(&[7u8; 64]);
        black_box(&b);
        b.clear();
        RAW.with(|r| r.borrow_mut().push(b));
    }
    println!(
        "raw thread-local Vec: {:.2} ns",
        t.elapsed().as_nanos() as f64 / n as f64
    );
    let mut local: Vec<kuai_pool::bytes::BytesMut> = Vec::new();
    let t = Instant::now();
    for _ in 0..n {
        let mut b = local
            .pop()
            .unwrap_or_else(|| kuai_pool::bytes::BytesMut::with_capacity(4096));
        b.extend_from_slice(&[7u8; 64]);
        black_box(&b);
        b.clear();
        local.push(b);
    }
    println!(
        "local Vec<BytesMut>: {:.2} ns",
        t.elapsed().as_nanos() as f64 / n as f64
    );
    let mut local: Vec<Vec<u8>> = Vec::new();
    let t = Instant::now();
    for _ in 0..n {
        let mut b = local.pop().unwrap_or_else(|| Vec::with_capacity(4096));
        b.extend_from_slice(&[7u8; 64]);
        black_box(&b);
        b.clear();
        local.push(b);
    }
    println!(
        "local Vec<Vec<u8>>: {:.2} ns",
        t.elapsed().as_nanos() as f64 / n as f64
    );
    let t = Instant::now();
    for _ in 0..n {
        let mut b = Vec::<u8>::with_capacity(4096);
        b.extend_from_slice(&[7u8; 64]);
        black_box(&b);
    }
    println!(
        "fresh Vec<u8>: {:.2} ns",
        t.elapsed().as_nanos() as f64 / n as f64
    );
}
