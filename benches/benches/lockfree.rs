//! The lockfree section of `cargo xtask bench`.
//!
//! 1. The seed's experiment: 1,000,000 `push_front` into
//!    `Mutex<LinkedList>` vs `kuai_lockfree::List`, on 1 and on 2 threads.
//! 2. Queue throughput, 1 and 2 producer/consumer pairs, capacity 1024:
//!    kuai `ArrayQueue` and `Queue` vs `Mutex<VecDeque>`, crossbeam
//!    `ArrayQueue` / `SegQueue`, `concurrent-queue`.
//! 3. Ordered map insert/get mixes on 2 threads: kuai `SkipList` vs
//!    `Mutex<BTreeMap>`, `RwLock<BTreeMap>`, crossbeam-skiplist `SkipMap`.
//!
//! Every implementation is measured in the same run, interleaved run by run,
//! and reported as a median.

use std::collections::{BTreeMap, LinkedList, VecDeque};
use std::hint::black_box;
use std::sync::{Barrier, Mutex, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use kuai::lockfree::{ArrayQueue, List, Queue, SkipList};
use kuai_benches::{Better, Row, Section, median_pair, ms};

fn main() {
    let mut s = Section::from_args("lockfree");
    push_front(&mut s);
    push_front_pin_ablation(&mut s);
    queues(&mut s);
    ordered(&mut s);
}

// ---------------------------------------------------------------------------
// 1. The seed's experiment
// ---------------------------------------------------------------------------

/// Runs `per_thread` pushes on each of `threads` threads and times them
/// from a common start to the last finish (dropping the structure is not
/// timed, as in the seed).
fn timed_pushes<S: Sync>(
    make: impl Fn() -> S,
    push: impl Fn(&S, u64) + Sync,
    threads: usize,
    per_thread: u64,
) -> Duration {
    let target = make();
    let barrier = Barrier::new(threads);
    let elapsed = thread::scope(|sc| {
        let handles: Vec<_> = (0..threads as u64)
            .map(|t| {
                let (target, barrier, push) = (&target, &barrier, &push);
                sc.spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    for i in 0..per_thread {
                        push(target, t * per_thread + i);
                    }
                    (start, Instant::now())
                })
            })
            .collect();
        let spans: Vec<(Instant, Instant)> = handles
            .into_iter()
            .map(|h| h.join().expect("pusher panicked"))
            .collect();
        let start = spans
            .iter()
            .map(|s| s.0)
            .min()
            .expect("at least one thread");
        let end = spans
            .iter()
            .map(|s| s.1)
            .max()
            .expect("at least one thread");
        end - start
    });
    drop(black_box(target));
    elapsed
}

fn push_front(s: &mut Section) {
    let n: u64 = s.pick(200_000, 1_000_000);
    let runs = s.pick(3, 7);
    for threads in [1usize, 2] {
        let per_thread = n / threads as u64;
        let (peer, kuai) = median_pair(
            runs,
            || {
                timed_pushes(
                    || Mutex::new(LinkedList::new()),
                    |l, v| l.lock().expect("poisoned").push_front(v),
                    threads,
                    per_thread,
                )
            },
            || timed_pushes(List::new, |l, v| l.push_front(v), threads, per_thread),
        );
        let mut row = Row::new(
            format!(
                "push_front {}, {threads} thread{}",
                if n == 1_000_000 {
                    "1M".to_string()
                } else {
                    n.to_string()
                },
                if threads == 1 { "" } else { "s" }
            ),
            "ms",
            Better::Lower,
        )
        .peer("Mutex<LinkedList>", ms(peer))
        .kuai(ms(kuai))
        .param("threads", threads)
        .param("n", n)
        .note("seed: mutex 548 ms vs lock-free 476 ms (1.13x); target >= 2x");
        if threads == 1 {
            row = row.seed(476.0);
        }
        s.record(row);
    }
}

/// The design the issue warns about: a Treiber push that pins the epoch on
/// every call (as a textbook crossbeam-epoch stack does). Only pushed to
/// and dropped, so it needs no pop.
struct PinnedTreiber {
    head: crossbeam_epoch::Atomic<PinnedNode>,
}

struct PinnedNode {
    _value: u64,
    next: crossbeam_epoch::Atomic<PinnedNode>,
}

impl PinnedTreiber {
    fn new() -> Self {
        PinnedTreiber {
            head: crossbeam_epoch::Atomic::null(),
        }
    }

    fn push(&self, value: u64) {
        use std::sync::atomic::Ordering::{Relaxed, Release};
        let guard = crossbeam_epoch::pin();
        let mut node = crossbeam_epoch::Owned::new(PinnedNode {
            _value: value,
            next: crossbeam_epoch::Atomic::null(),
        });
        loop {
            let head = self.head.load(Relaxed, &guard);
            node.next.store(head, Relaxed);
            match self
                .head
                .compare_exchange(head, node, Release, Relaxed, &guard)
            {
                Ok(_) => return,
                Err(e) => node = e.new,
            }
        }
    }
}

impl Drop for PinnedTreiber {
    fn drop(&mut self) {
        use std::sync::atomic::Ordering::Relaxed;
        // SAFETY: `&mut self`: no other thread can reach the nodes, so an
        // unprotected guard is enough and each node is freed exactly once.
        unsafe {
            let guard = crossbeam_epoch::unprotected();
            let mut node = self.head.load(Relaxed, guard);
            while !node.is_null() {
                let owned = node.into_owned();
                node = owned.next.load(Relaxed, guard);
            }
        }
    }
}

/// The key insight as an ablation: the same Treiber push with and
/// without an epoch pin per call.
fn push_front_pin_ablation(s: &mut Section) {
    let n: u64 = s.pick(200_000, 1_000_000);
    let runs = s.pick(3, 7);
    for threads in [1usize, 2] {
        let per_thread = n / threads as u64;
        let (peer, kuai) = median_pair(
            runs,
            || timed_pushes(PinnedTreiber::new, |l, v| l.push(v), threads, per_thread),
            || timed_pushes(List::new, |l, v| l.push_front(v), threads, per_thread),
        );
        s.record(
            Row::new(
                format!(
                    "push_front {}, {threads} thread{}: no pin vs pin per push",
                    if n == 1_000_000 {
                        "1M".to_string()
                    } else {
                        n.to_string()
                    },
                    if threads == 1 { "" } else { "s" }
                ),
                "ms",
                Better::Lower,
            )
            .peer("Treiber push pinning crossbeam-epoch per call", ms(peer))
            .kuai(ms(kuai))
            .param("threads", threads)
            .param("n", n)
            .note("ablation: kuai List::push_front never pins (see docs/lockfree.md)"),
        );
    }
}

// ---------------------------------------------------------------------------
// 2. Queue throughput
// ---------------------------------------------------------------------------

const CAPACITY: usize = 1024;

/// A queue under test: a non-blocking push that may hand the value back,
/// and a non-blocking pop.
trait BenchQueue: Sync {
    fn try_push(&self, v: u64) -> Result<(), u64>;
    fn try_pop(&self) -> Option<u64>;
}

impl BenchQueue for ArrayQueue<u64> {
    fn try_push(&self, v: u64) -> Result<(), u64> {
        self.push(v)
    }
    fn try_pop(&self) -> Option<u64> {
        self.pop()
    }
}

impl BenchQueue for Queue<u64> {
    fn try_push(&self, v: u64) -> Result<(), u64> {
        self.push(v);
        Ok(())
    }
    fn try_pop(&self) -> Option<u64> {
        self.pop()
    }
}

impl BenchQueue for Mutex<VecDeque<u64>> {
    fn try_push(&self, v: u64) -> Result<(), u64> {
        let mut q = self.lock().map_err(|_| v)?;
        if q.len() >= CAPACITY {
            return Err(v);
        }
        q.push_back(v);
        Ok(())
    }
    fn try_pop(&self) -> Option<u64> {
        self.lock().ok()?.pop_front()
    }
}

impl BenchQueue for crossbeam_queue::ArrayQueue<u64> {
    fn try_push(&self, v: u64) -> Result<(), u64> {
        self.push(v)
    }
    fn try_pop(&self) -> Option<u64> {
        self.pop()
    }
}

impl BenchQueue for crossbeam_queue::SegQueue<u64> {
    fn try_push(&self, v: u64) -> Result<(), u64> {
        self.push(v);
        Ok(())
    }
    fn try_pop(&self) -> Option<u64> {
        self.pop()
    }
}

impl BenchQueue for concurrent_queue::ConcurrentQueue<u64> {
    fn try_push(&self, v: u64) -> Result<(), u64> {
        self.push(v).map_err(|e| e.into_inner())
    }
    fn try_pop(&self) -> Option<u64> {
        self.pop().ok()
    }
}

/// Waits politely: spin a little, then give the core away (on a small
/// machine the thread we wait for may need it).
fn backoff(spins: &mut u32) {
    *spins += 1;
    if *spins < 32 {
        std::hint::spin_loop();
    } else {
        thread::yield_now();
    }
}

/// Moves `n` items through `q` with `pairs` producers and `pairs`
/// consumers; returns M items/s.
fn throughput<Q: BenchQueue>(q: &Q, pairs: usize, n: u64) -> f64 {
    let per = n / pairs as u64;
    let barrier = Barrier::new(2 * pairs + 1);
    let elapsed = thread::scope(|sc| {
        for p in 0..pairs as u64 {
            let barrier = &barrier;
            sc.spawn(move || {
                barrier.wait();
                for i in 0..per {
                    let mut v = p * per + i;
                    let mut spins = 0;
                    while let Err(back) = q.try_push(v) {
                        v = back;
                        backoff(&mut spins);
                    }
                }
            });
            sc.spawn(move || {
                barrier.wait();
                let mut sum = 0u64;
                for _ in 0..per {
                    let mut spins = 0;
                    loop {
                        if let Some(v) = q.try_pop() {
                            sum = sum.wrapping_add(v);
                            break;
                        }
                        backoff(&mut spins);
                    }
                }
                black_box(sum);
            });
        }
        barrier.wait();
        Instant::now()
    });
    // `scope` joined every thread: the span ends now.
    let secs = elapsed.elapsed().as_secs_f64();
    (per * pairs as u64) as f64 / secs / 1e6
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn queues(s: &mut Section) {
    let n: u64 = s.pick(200_000, 1_000_000);
    let runs = s.pick(3, 5);
    type Make = fn() -> Box<dyn Fn(usize, u64) -> f64>;
    let candidates: [(&str, Make); 6] = [
        ("kuai ArrayQueue", || {
            Box::new(|pairs, n| {
                let q = ArrayQueue::new(CAPACITY).expect("capacity > 0");
                throughput(&q, pairs, n)
            })
        }),
        ("kuai Queue", || {
            Box::new(|pairs, n| throughput(&Queue::new(), pairs, n))
        }),
        ("Mutex<VecDeque>", || {
            Box::new(|pairs, n| {
                throughput(&Mutex::new(VecDeque::with_capacity(CAPACITY)), pairs, n)
            })
        }),
        ("crossbeam ArrayQueue", || {
            Box::new(|pairs, n| throughput(&crossbeam_queue::ArrayQueue::new(CAPACITY), pairs, n))
        }),
        ("crossbeam SegQueue", || {
            Box::new(|pairs, n| throughput(&crossbeam_queue::SegQueue::new(), pairs, n))
        }),
        ("concurrent-queue bounded", || {
            Box::new(|pairs, n| {
                throughput(
                    &concurrent_queue::ConcurrentQueue::bounded(CAPACITY),
                    pairs,
                    n,
                )
            })
        }),
    ];
    for pairs in [1usize, 2] {
        let runners: Vec<_> = candidates
            .iter()
            .map(|(name, make)| (*name, make()))
            .collect();
        let mut samples: Vec<Vec<f64>> = vec![Vec::new(); runners.len()];
        // warm up, then interleave the implementations run by run
        for (_, run) in &runners {
            run(pairs, n / 10);
        }
        for _ in 0..runs {
            for (i, (_, run)) in runners.iter().enumerate() {
                samples[i].push(run(pairs, n));
            }
        }
        let medians: Vec<(&str, f64)> = runners
            .iter()
            .zip(samples)
            .map(|((name, _), v)| (*name, median(v)))
            .collect();
        let get = |name: &str| {
            medians
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| *v)
                .expect("measured above")
        };
        let peers = [
            "Mutex<VecDeque>",
            "crossbeam ArrayQueue",
            "concurrent-queue bounded",
            "crossbeam SegQueue",
        ];
        for kuai_name in ["kuai ArrayQueue", "kuai Queue"] {
            for peer in peers {
                s.record(
                    Row::new(
                        format!("{kuai_name}, {pairs} producer/consumer pair(s), cap {CAPACITY}"),
                        "M items/s",
                        Better::Higher,
                    )
                    .peer(peer, get(peer))
                    .kuai(get(kuai_name))
                    .param("pairs", pairs)
                    .param("n", n)
                    .param("capacity", CAPACITY),
                );
            }
        }
        let best_bounded = get("crossbeam ArrayQueue").max(get("concurrent-queue bounded"));
        s.record(
            Row::new(
                format!("kuai ArrayQueue vs best bounded peer, {pairs} pair(s)"),
                "M items/s",
                Better::Higher,
            )
            .peer(
                "best of crossbeam ArrayQueue / concurrent-queue",
                best_bounded,
            )
            .kuai(get("kuai ArrayQueue"))
            .param("pairs", pairs)
            .param("n", n)
            .param("capacity", CAPACITY)
            .note("target >= 1.0x"),
        );
    }
}

// ---------------------------------------------------------------------------
// 3. Ordered map
// ---------------------------------------------------------------------------

/// An ordered map under test.
trait BenchMap: Sync {
    fn insert(&self, k: u64, v: u64);
    fn get(&self, k: u64) -> bool;
}

impl BenchMap for SkipList<u64, u64> {
    fn insert(&self, k: u64, v: u64) {
        SkipList::insert(self, k, v);
    }
    fn get(&self, k: u64) -> bool {
        let guard = kuai::lockfree::pin();
        SkipList::get(self, &k, &guard).is_some()
    }
}

impl BenchMap for Mutex<BTreeMap<u64, u64>> {
    fn insert(&self, k: u64, v: u64) {
        if let Ok(mut m) = self.lock() {
            m.entry(k).or_insert(v);
        }
    }
    fn get(&self, k: u64) -> bool {
        self.lock().is_ok_and(|m| m.contains_key(&k))
    }
}

impl BenchMap for RwLock<BTreeMap<u64, u64>> {
    fn insert(&self, k: u64, v: u64) {
        if let Ok(mut m) = self.write() {
            m.entry(k).or_insert(v);
        }
    }
    fn get(&self, k: u64) -> bool {
        self.read().is_ok_and(|m| m.contains_key(&k))
    }
}

impl BenchMap for crossbeam_skiplist::SkipMap<u64, u64> {
    fn insert(&self, k: u64, v: u64) {
        self.get_or_insert(k, v);
    }
    fn get(&self, k: u64) -> bool {
        self.contains_key(&k)
    }
}

/// `threads` threads each run `ops` operations on keys in `0..keys`, a
/// `read_pct` share of them gets and the rest inserts; returns M ops/s.
fn mix<M: BenchMap>(map: &M, threads: usize, ops: u64, keys: u64, read_pct: u64) -> f64 {
    for k in (0..keys).step_by(2) {
        map.insert(k, k);
    }
    let barrier = Barrier::new(threads + 1);
    let start = thread::scope(|sc| {
        for t in 0..threads as u64 {
            let barrier = &barrier;
            sc.spawn(move || {
                let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ (t + 1);
                let mut hits = 0u64;
                barrier.wait();
                for _ in 0..ops {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let k = x % keys;
                    if x >> 57 < read_pct * 128 / 100 {
                        hits += map.get(k) as u64;
                    } else {
                        map.insert(k, x);
                    }
                }
                black_box(hits);
            });
        }
        barrier.wait();
        Instant::now()
    });
    let secs = start.elapsed().as_secs_f64();
    (ops * threads as u64) as f64 / secs / 1e6
}

fn ordered(s: &mut Section) {
    let ops: u64 = s.pick(50_000, 250_000);
    let runs = s.pick(3, 5);
    let threads = 2;
    // An index that fits in cache (10k keys) with a read-heavy and a
    // write-heavy mix, and a larger one (100k keys) read-heavy.
    for (keys, read_pct) in [(10_000u64, 90u64), (10_000, 50), (100_000, 90)] {
        let mut samples: [Vec<f64>; 4] = Default::default();
        for _ in 0..runs {
            samples[0].push(mix(&SkipList::new(), threads, ops, keys, read_pct));
            samples[1].push(mix(
                &Mutex::new(BTreeMap::new()),
                threads,
                ops,
                keys,
                read_pct,
            ));
            samples[2].push(mix(
                &RwLock::new(BTreeMap::new()),
                threads,
                ops,
                keys,
                read_pct,
            ));
            samples[3].push(mix(
                &crossbeam_skiplist::SkipMap::new(),
                threads,
                ops,
                keys,
                read_pct,
            ));
        }
        let [kuai, mutex, rwlock, cb] = samples.map(median);
        for (peer, value, note) in [
            (
                "Mutex<BTreeMap>",
                mutex,
                Some("target >= 2x under contention"),
            ),
            ("RwLock<BTreeMap>", rwlock, None),
            ("crossbeam-skiplist SkipMap", cb, None),
        ] {
            let mut row = Row::new(
                format!(
                    "ordered map {keys} keys, {read_pct}% get / {}% insert, {threads} threads",
                    100 - read_pct
                ),
                "M ops/s",
                Better::Higher,
            )
            .peer(peer, value)
            .kuai(kuai)
            .param("threads", threads)
            .param("keys", keys)
            .param("ops_per_thread", ops);
            if let Some(note) = note {
                row = row.note(note);
            }
            s.record(row);
        }
    }
}
