//! loom models of the push/pop races of every structure.
//!
//! Run with `RUSTFLAGS="--cfg kuai_loom" LOOM_MAX_PREEMPTIONS=2 cargo test
//! -p kuai-lockfree --test loom --release`. Under loom the crate's atomics
//! come from loom (see `src/sync.rs`) and node reclamation leaks instead of
//! going through crossbeam-epoch (see `src/epoch.rs`).
#![cfg(kuai_loom)]

use loom::sync::Arc;
use loom::thread;

use kuai_lockfree::{ArrayQueue, List, Queue, ShardedCounter, SkipList, Stack};

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(2);
    }
    builder.check(f);
}

#[test]
fn stack_concurrent_push_pop() {
    model(|| {
        let s = Arc::new(Stack::new());
        let pusher = {
            let s = Arc::clone(&s);
            thread::spawn(move || {
                s.push(1);
                s.push(2);
            })
        };
        let popper = {
            let s = Arc::clone(&s);
            thread::spawn(move || s.pop())
        };
        pusher.join().unwrap();
        let first = popper.join().unwrap();
        let mut seen: Vec<i32> = first.into_iter().collect();
        while let Some(v) = s.pop() {
            seen.push(v);
        }
        seen.sort();
        assert_eq!(seen, [1, 2]);
    });
}

#[test]
fn stack_two_poppers() {
    model(|| {
        let s = Arc::new(Stack::new());
        s.push(1);
        s.push(2);
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let s = Arc::clone(&s);
                thread::spawn(move || s.pop())
            })
            .collect();
        let mut got: Vec<i32> = handles
            .into_iter()
            .filter_map(|h| h.join().unwrap())
            .collect();
        got.sort();
        assert_eq!(got, [1, 2]);
        assert!(s.pop().is_none());
    });
}

#[test]
fn list_push_front_races_and_iteration() {
    model(|| {
        let l = Arc::new(List::new());
        let a = {
            let l = Arc::clone(&l);
            thread::spawn(move || l.push_front(1))
        };
        let b = {
            let l = Arc::clone(&l);
            thread::spawn(move || {
                l.push_front(2);
                l.pop_front()
            })
        };
        a.join().unwrap();
        let popped = b.join().unwrap();
        assert!(popped.is_some());
        let guard = kuai_lockfree::pin();
        let rest: Vec<i32> = l.iter(&guard).copied().collect();
        assert_eq!(rest.len(), 1);
        let mut all = vec![popped.unwrap(), rest[0]];
        all.sort();
        assert_eq!(all, [1, 2]);
    });
}

#[test]
fn queue_producer_consumer_fifo() {
    model(|| {
        let q = Arc::new(Queue::new());
        let producer = {
            let q = Arc::clone(&q);
            thread::spawn(move || {
                q.push(1);
                q.push(2);
            })
        };
        let consumer = {
            let q = Arc::clone(&q);
            thread::spawn(move || [q.pop(), q.pop()])
        };
        producer.join().unwrap();
        let got: Vec<i32> = consumer.join().unwrap().into_iter().flatten().collect();
        let mut all = got.clone();
        while let Some(v) = q.pop() {
            all.push(v);
        }
        // FIFO: whatever the consumer saw came out in order, and nothing
        // was lost or duplicated.
        assert_eq!(all, [1, 2]);
    });
}

#[test]
fn queue_two_producers() {
    model(|| {
        let q = Arc::new(Queue::new());
        let handles: Vec<_> = (1..=2)
            .map(|v| {
                let q = Arc::clone(&q);
                thread::spawn(move || q.push(v))
            })
            .collect();
        handles.into_iter().for_each(|h| h.join().unwrap());
        let mut all = vec![q.pop().unwrap(), q.pop().unwrap()];
        all.sort();
        assert_eq!(all, [1, 2]);
        assert!(q.pop().is_none());
    });
}

#[test]
fn queue_segment_crossing() {
    // Under loom a segment has 2 slots: the third push links a new one
    // while the consumer may be draining and retiring the first.
    model(|| {
        let q = Arc::new(Queue::new());
        let producer = {
            let q = Arc::clone(&q);
            thread::spawn(move || (1..=3).for_each(|v| q.push(v)))
        };
        let consumer = {
            let q = Arc::clone(&q);
            thread::spawn(move || [q.pop(), q.pop()])
        };
        producer.join().unwrap();
        let mut all: Vec<i32> = consumer.join().unwrap().into_iter().flatten().collect();
        while let Some(v) = q.pop() {
            all.push(v);
        }
        assert_eq!(all, [1, 2, 3]);
    });
}

#[test]
fn queue_consumers_overtake_producer() {
    // Two consumers racing one producer: a consumer may poison the slot the
    // producer claimed, which must then retry without losing its value.
    model(|| {
        let q = Arc::new(Queue::new());
        let consumers: Vec<_> = (0..2)
            .map(|_| {
                let q = Arc::clone(&q);
                thread::spawn(move || q.pop())
            })
            .collect();
        q.push(7);
        let mut got: Vec<i32> = consumers
            .into_iter()
            .filter_map(|h| h.join().unwrap())
            .collect();
        while let Some(v) = q.pop() {
            got.push(v);
        }
        assert_eq!(got, [7]);
    });
}

#[test]
fn array_queue_full_and_wrap() {
    model(|| {
        let q = Arc::new(ArrayQueue::new(1).unwrap());
        let producer = {
            let q = Arc::clone(&q);
            thread::spawn(move || {
                let mut pushed = 0;
                for v in 1..=2 {
                    if q.push(v).is_ok() {
                        pushed += 1;
                    }
                }
                pushed
            })
        };
        let consumer = {
            let q = Arc::clone(&q);
            thread::spawn(move || q.pop())
        };
        let pushed = producer.join().unwrap();
        let mut all: Vec<i32> = consumer.join().unwrap().into_iter().collect();
        while let Some(v) = q.pop() {
            all.push(v);
        }
        assert_eq!(all.len(), pushed);
        assert!(all.windows(2).all(|w| w[0] < w[1]), "FIFO");
        assert!((1..=2).contains(&pushed));
    });
}

#[test]
fn array_queue_two_producers_two_consumers() {
    model(|| {
        let q = Arc::new(ArrayQueue::new(2).unwrap());
        let producers: Vec<_> = (1..=2)
            .map(|v| {
                let q = Arc::clone(&q);
                thread::spawn(move || q.push(v).unwrap())
            })
            .collect();
        let consumer = {
            let q = Arc::clone(&q);
            thread::spawn(move || q.pop())
        };
        producers.into_iter().for_each(|h| h.join().unwrap());
        let mut all: Vec<i32> = consumer.join().unwrap().into_iter().collect();
        while let Some(v) = q.pop() {
            all.push(v);
        }
        all.sort();
        assert_eq!(all, [1, 2]);
    });
}

#[test]
fn skiplist_same_key_insert_race() {
    model(|| {
        let m = Arc::new(SkipList::new());
        let handles: Vec<_> = (0..2)
            .map(|v| {
                let m = Arc::clone(&m);
                thread::spawn(move || m.insert(7, v))
            })
            .collect();
        let wins = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|won| *won)
            .count();
        assert_eq!(wins, 1);
        assert_eq!(m.len(), 1);
        assert!(m.contains_key(&7));
    });
}

#[test]
fn skiplist_insert_remove_race() {
    model(|| {
        let m = Arc::new(SkipList::new());
        m.insert(1, ());
        let inserter = {
            let m = Arc::clone(&m);
            thread::spawn(move || m.insert(2, ()))
        };
        let remover = {
            let m = Arc::clone(&m);
            thread::spawn(move || (m.remove(&1), m.remove(&2)))
        };
        assert!(inserter.join().unwrap());
        let (removed1, removed2) = remover.join().unwrap();
        assert!(removed1);
        let guard = kuai_lockfree::pin();
        let keys: Vec<i32> = m.iter(&guard).map(|(k, _)| *k).collect();
        if removed2 {
            assert!(keys.is_empty());
        } else {
            assert_eq!(keys, [2]);
        }
        assert_eq!(m.len(), keys.len());
    });
}

#[test]
fn skiplist_same_key_remove_race() {
    model(|| {
        let m = Arc::new(SkipList::new());
        m.insert(1, ());
        m.insert(2, ());
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let m = Arc::clone(&m);
                thread::spawn(move || m.remove(&1))
            })
            .collect();
        let wins = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|won| *won)
            .count();
        assert_eq!(wins, 1);
        assert!(!m.contains_key(&1));
        assert!(m.contains_key(&2));
        assert_eq!(m.len(), 1);
    });
}

#[test]
fn skiplist_reader_during_insert() {
    model(|| {
        let m = Arc::new(SkipList::new());
        m.insert(1, 10);
        let writer = {
            let m = Arc::clone(&m);
            thread::spawn(move || m.insert(2, 20))
        };
        {
            let guard = kuai_lockfree::pin();
            let seen: Vec<(i32, i32)> = m.iter(&guard).map(|(k, v)| (*k, *v)).collect();
            assert!(seen == [(1, 10)] || seen == [(1, 10), (2, 20)]);
        }
        assert!(writer.join().unwrap());
        assert_eq!(m.get_cloned(&2), Some(20));
    });
}

#[test]
fn sharded_counter_sums() {
    model(|| {
        let c = Arc::new(ShardedCounter::with_shards(2));
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let c = Arc::clone(&c);
                thread::spawn(move || c.incr())
            })
            .collect();
        handles.into_iter().for_each(|h| h.join().unwrap());
        assert_eq!(c.sum(), 2);
    });
}
