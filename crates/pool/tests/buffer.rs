//! Property tests of the buffer pool's accounting.

use kuai_pool::BufferPool;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Get(usize),
    Drop(usize),
    Split(usize),
    Flush,
    OtherThread(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0usize..70_000).prop_map(Op::Get),
        3 => (0usize..16).prop_map(Op::Drop),
        1 => (0usize..16).prop_map(Op::Split),
        1 => Just(Op::Flush),
        1 => (0usize..70_000).prop_map(Op::OtherThread),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever is got, split, returned, flushed or churned on another
    /// thread, the pool never holds more than its cap, never reserves less
    /// than it holds, and every buffer handed out is empty and big enough.
    #[test]
    fn cap_and_accounting_hold(
        ops in proptest::collection::vec(op(), 1..80),
        cap_kib in 1usize..512,
        local_kib in 0usize..256,
        use_local in any::<bool>(),
    ) {
        let cap = cap_kib * 1024;
        let pool = BufferPool::builder()
            .max_class(64 * 1024)
            .max_pooled_bytes(cap)
            .thread_cache_bytes(local_kib * 1024)
            .build();
        let Ok(pool) = pool else { return Err(TestCaseError::fail("valid config")) };
        let local = pool.local();
        let mut held = Vec::new();
        for op in ops {
            match op {
                Op::Get(size) => {
                    let b = if use_local { local.get(size) } else { pool.get(size) };
                    prop_assert!(b.is_empty());
                    prop_assert!(b.capacity() >= size);
                    held.push(b);
                }
                Op::Drop(i) if !held.is_empty() => {
                    let i = i % held.len();
                    drop(held.swap_remove(i));
                }
                Op::Split(i) if !held.is_empty() => {
                    let i = i % held.len();
                    let b = &mut held[i];
                    b.extend_from_slice(&[1u8; 100]);
                    let head = b.split_to(50);
                    drop(head);
                }
                Op::Flush => pool.flush_thread_cache(),
                Op::OtherThread(size) => {
                    let p = pool.clone();
                    let _ = std::thread::spawn(move || drop(p.get(size))).join();
                }
                _ => {}
            }
            let s = pool.stats();
            prop_assert!(s.bytes_reserved <= cap, "reserved {} > cap {}", s.bytes_reserved, cap);
            prop_assert!(s.bytes_pooled <= s.bytes_reserved);
        }
        drop(held);
        drop(local);
        pool.flush_thread_cache();
        let s = pool.stats();
        prop_assert!(s.bytes_pooled <= cap);
        prop_assert_eq!(s.bytes_pooled, s.bytes_reserved, "no lease left behind");
    }
}
