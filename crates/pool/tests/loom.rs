//! loom models of the buffer pool's thread caches, leases and cap.
//!
//! Run with `RUSTFLAGS="--cfg kuai_loom" LOOM_MAX_PREEMPTIONS=2 cargo test
//! -p kuai-pool --test loom --release`.
#![cfg(kuai_loom)]

use kuai_pool::BufferPool;

fn small_pool(cap: usize) -> BufferPool {
    match BufferPool::builder()
        .min_class(512)
        .max_class(1024)
        .max_pooled_bytes(cap)
        .thread_cache_bytes(1024)
        .thread_cache_buffers(1)
        .shards(1)
        .build()
    {
        Ok(p) => p,
        Err(e) => panic!("valid config: {e}"),
    }
}

/// Two threads get and return buffers; the cap on pooled memory holds at
/// every step, and when both threads are done every pooled byte is
/// accounted for.
#[test]
fn cap_holds_and_bytes_are_conserved() {
    loom::model(|| {
        let pool = small_pool(1024);
        let p2 = pool.clone();
        let t = loom::thread::spawn(move || {
            let a = p2.get(512);
            let b = p2.get(512);
            drop(a);
            assert!(p2.stats().bytes_reserved <= 1024);
            drop(b);
            p2.flush_thread_cache();
        });
        let c = pool.get(512);
        drop(c);
        assert!(pool.stats().bytes_reserved <= 1024);
        pool.flush_thread_cache();
        let _ = t.join();
        let s = pool.stats();
        assert!(s.bytes_reserved <= 1024);
        assert_eq!(s.bytes_pooled, s.bytes_reserved, "no lease left behind");
        assert_eq!(s.hits + s.misses, 3);
    });
}

/// A buffer returned on one thread can be taken on another.
#[test]
fn buffers_move_between_threads() {
    loom::model(|| {
        let pool = small_pool(4096);
        let b = pool.get_owned(1000);
        let p2 = pool.clone();
        let t = loom::thread::spawn(move || {
            drop(b);
            p2.flush_thread_cache();
        });
        let _ = t.join();
        let again = pool.get(1000);
        assert!(again.capacity() >= 1000);
        drop(again);
        pool.flush_thread_cache();
        assert_eq!(pool.stats().hits, 1);
    });
}
