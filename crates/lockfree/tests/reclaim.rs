//! Every node is reclaimed: a counting global allocator shows that the
//! nodes of all structures are freed (values of `u64` have no destructor, so
//! this checks the node memory itself, which drop counting cannot see).
#![cfg(not(kuai_loom))]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::thread;

use kuai_lockfree::{ArrayQueue, List, Queue, SkipList, Stack};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator unchanged, only counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const N: u64 = 20_000;

fn churn() {
    let queue = Queue::new();
    let stack = Stack::new();
    let list = List::new();
    let ring = ArrayQueue::new(128).unwrap();
    let map = SkipList::new();
    thread::scope(|s| {
        for t in 0..2u64 {
            let (queue, stack, list, ring, map) = (&queue, &stack, &list, &ring, &map);
            s.spawn(move || {
                for i in 0..N {
                    queue.push(i);
                    stack.push(i);
                    list.push_front(i);
                    let _ = ring.push(i);
                    map.insert((i * 2 + t) % 5_000, i);
                    if i % 2 == 0 {
                        queue.pop();
                        stack.pop();
                        list.pop_front();
                        ring.pop();
                        map.remove(&((i * 3 + t) % 5_000));
                    }
                }
            });
        }
    });
    // the structures are dropped here, half full
}

#[test]
fn every_node_is_freed() {
    // warm up the epoch machinery so its own lazily allocated state is in
    // the baseline
    churn();
    settle(isize::MAX);
    let baseline = LIVE.load(Ordering::Relaxed);
    churn();
    // 2 threads × N pushes into each of 4 node-based structures: 160,000
    // node allocations. What may remain are crossbeam-epoch's per-thread
    // bookkeeping and garbage bags, a few hundred at most.
    let live = settle(baseline + 500);
    assert!(
        live <= baseline + 500,
        "{} allocations leaked (baseline {baseline})",
        live - baseline
    );
}

/// Flushes the epoch collector until at most `target` allocations are
/// live (bounded by iterations, not time); returns the live count.
fn settle(target: isize) -> isize {
    for _ in 0..20_000 {
        if LIVE.load(Ordering::Relaxed) <= target {
            break;
        }
        kuai_lockfree::pin().flush();
        thread::yield_now();
    }
    LIVE.load(Ordering::Relaxed)
}
