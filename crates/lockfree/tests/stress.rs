//! Multi-threaded stress tests: N producers, M consumers, every element seen
//! exactly once, and every value dropped exactly once.
#![cfg(not(kuai_loom))]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

use kuai_lockfree::{ArrayQueue, List, Queue, ShardedCounter, SkipList, Stack};

const PRODUCERS: usize = 3;
const CONSUMERS: usize = 3;
const PER_PRODUCER: usize = 10_000;
const TOTAL: usize = PRODUCERS * PER_PRODUCER;

/// A value that counts its drops.
#[derive(Debug)]
struct Tracked {
    id: usize,
    drops: Arc<AtomicUsize>,
}

impl Clone for Tracked {
    fn clone(&self) -> Self {
        Tracked {
            id: self.id,
            drops: Arc::clone(&self.drops),
        }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::Relaxed);
    }
}

/// Runs the epoch collector until `drops` reaches `expected` (bounded by an
/// iteration count, not by time), then asserts it is exactly `expected`.
fn settle(drops: &AtomicUsize, expected: usize) {
    for _ in 0..100_000 {
        if drops.load(Ordering::Relaxed) >= expected {
            break;
        }
        kuai_lockfree::pin().flush();
        thread::yield_now();
    }
    assert_eq!(drops.load(Ordering::Relaxed), expected);
}

/// Drives `push`/`pop` from PRODUCERS and CONSUMERS threads and checks that
/// every id comes out exactly once.
fn exactly_once(push: impl Fn(Tracked) + Sync, pop: impl Fn() -> Option<Tracked> + Sync) {
    let drops = Arc::new(AtomicUsize::new(0));
    let seen: Vec<AtomicUsize> = (0..TOTAL).map(|_| AtomicUsize::new(0)).collect();
    let taken = AtomicUsize::new(0);
    thread::scope(|s| {
        for p in 0..PRODUCERS {
            let drops = &drops;
            let push = &push;
            s.spawn(move || {
                for i in 0..PER_PRODUCER {
                    push(Tracked {
                        id: p * PER_PRODUCER + i,
                        drops: Arc::clone(drops),
                    });
                }
            });
        }
        for _ in 0..CONSUMERS {
            s.spawn(|| {
                while taken.load(Ordering::Relaxed) < TOTAL {
                    match pop() {
                        Some(v) => {
                            seen[v.id].fetch_add(1, Ordering::Relaxed);
                            taken.fetch_add(1, Ordering::Relaxed);
                        }
                        None => thread::yield_now(),
                    }
                }
            });
        }
    });
    assert!(pop().is_none(), "nothing may be left over");
    for (id, n) in seen.iter().enumerate() {
        assert_eq!(
            n.load(Ordering::Relaxed),
            1,
            "id {id} seen wrong number of times"
        );
    }
    settle(&drops, TOTAL);
}

#[test]
fn queue_every_element_once() {
    let q = Queue::new();
    exactly_once(|v| q.push(v), || q.pop());
    assert!(q.is_empty());
}

#[test]
fn stack_every_element_once() {
    let s = Stack::new();
    exactly_once(|v| s.push(v), || s.pop());
    assert!(s.is_empty());
}

#[test]
fn array_queue_every_element_once() {
    let q = ArrayQueue::new(64).unwrap();
    exactly_once(
        |mut v| {
            while let Err(back) = q.push(v) {
                v = back;
                thread::yield_now();
            }
        },
        || q.pop(),
    );
    assert!(q.is_empty());
}

#[test]
fn array_queue_capacity_one() {
    let q = ArrayQueue::new(1).unwrap();
    exactly_once(
        |mut v| {
            while let Err(back) = q.push(v) {
                v = back;
                thread::yield_now();
            }
        },
        || q.pop(),
    );
}

#[test]
fn list_every_element_once_with_readers() {
    // pop_front clones; the original is dropped at reclamation, so each id
    // is dropped twice: once as the clone, once as the original.
    let list = List::new();
    let drops = Arc::new(AtomicUsize::new(0));
    let seen: Vec<AtomicUsize> = (0..TOTAL).map(|_| AtomicUsize::new(0)).collect();
    let taken = AtomicUsize::new(0);
    thread::scope(|s| {
        for p in 0..PRODUCERS {
            let (list, drops) = (&list, &drops);
            s.spawn(move || {
                for i in 0..PER_PRODUCER {
                    list.push_front(Tracked {
                        id: p * PER_PRODUCER + i,
                        drops: Arc::clone(drops),
                    });
                }
            });
        }
        // a reader iterating while others push and pop
        s.spawn(|| {
            while taken.load(Ordering::Relaxed) < TOTAL {
                let guard = kuai_lockfree::pin();
                for v in list.iter(&guard).take(100) {
                    assert!(v.id < TOTAL);
                }
            }
        });
        for _ in 0..CONSUMERS {
            s.spawn(|| {
                while taken.load(Ordering::Relaxed) < TOTAL {
                    match list.pop_front() {
                        Some(v) => {
                            seen[v.id].fetch_add(1, Ordering::Relaxed);
                            taken.fetch_add(1, Ordering::Relaxed);
                        }
                        None => thread::yield_now(),
                    }
                }
            });
        }
    });
    assert!(list.is_empty());
    assert!(seen.iter().all(|n| n.load(Ordering::Relaxed) == 1));
    settle(&drops, 2 * TOTAL);
}

#[test]
fn dropping_full_structures_drops_every_value() {
    let drops = Arc::new(AtomicUsize::new(0));
    let mk = |id| Tracked {
        id,
        drops: Arc::clone(&drops),
    };
    {
        let q = Queue::new();
        let s = Stack::new();
        let l = List::new();
        let a = ArrayQueue::new(10).unwrap();
        let m = SkipList::new();
        for i in 0..10 {
            q.push(mk(i));
            s.push(mk(i));
            l.push_front(mk(i));
            a.push(mk(i)).unwrap();
            m.insert(i, mk(i));
        }
        // pop a few so that the ring has wrapped and the queue has retired
        // sentinels
        for _ in 0..3 {
            drop(q.pop());
            drop(s.pop());
            drop(a.pop());
        }
        a.push(mk(99)).unwrap();
    }
    settle(&drops, 51);
}

#[test]
fn skiplist_concurrent_insert_remove() {
    let m = SkipList::new();
    let drops = Arc::new(AtomicUsize::new(0));
    let created = AtomicUsize::new(0);
    let inserted = ShardedCounter::new();
    let removed = ShardedCounter::new();
    const KEYS: usize = 2_000;
    thread::scope(|s| {
        for t in 0..4 {
            let (m, drops, created, inserted, removed) =
                (&m, &drops, &created, &inserted, &removed);
            s.spawn(move || {
                // every thread fights over the same keys
                for round in 0..3 {
                    for k in 0..KEYS {
                        let k = (k * 7 + t * 13 + round) % KEYS;
                        if (k + t + round) % 3 == 0 {
                            if m.remove(&k) {
                                removed.incr();
                            }
                        } else {
                            created.fetch_add(1, Ordering::Relaxed);
                            let v = Tracked {
                                id: k,
                                drops: Arc::clone(drops),
                            };
                            if m.insert(k, v) {
                                inserted.incr();
                            }
                        }
                    }
                }
            });
        }
    });
    let guard = kuai_lockfree::pin();
    let keys: Vec<usize> = m
        .iter(&guard)
        .map(|(k, v)| {
            assert_eq!(*k, v.id);
            *k
        })
        .collect();
    drop(guard);
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "sorted and unique");
    let live = (inserted.sum() - removed.sum()) as usize;
    assert_eq!(keys.len(), live);
    assert_eq!(m.len(), live);
    drop(m);
    settle(&drops, created.load(Ordering::Relaxed));
}
