//! The pool section of `cargo xtask bench`: buffer, object, thread and
//! connection pools against their peers, and the allocator experiment.
//!
//! The allocator rows run this binary again as a child process with a
//! different global allocator (system, jemalloc, mimalloc), chosen once at
//! the first allocation from `KUAI_POOL_BENCH_ALLOC`, so every allocation in
//! a process goes to one allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::convert::Infallible;
use std::hint::black_box;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kuai::core::{Manager, Result as KResult};
use kuai::pool::bytes::BytesMut;
use kuai::pool::{
    BufferPool, CheckOnCheckout, ConnPool, IsolatedPools, LocalBufferPool, Pool, ThreadPool,
};
use kuai_benches::{Better, Row, Section, ns};

// ---------------------------------------------------------------- allocator

const ALLOC_ENV: &str = "KUAI_POOL_BENCH_ALLOC";
const UNSET: u8 = u8::MAX;
const SYSTEM: u8 = 0;
const JEMALLOC: u8 = 1;
const MIMALLOC: u8 = 2;

static MODE: AtomicU8 = AtomicU8::new(UNSET);

unsafe extern "C" {
    fn getenv(name: *const std::ffi::c_char) -> *const std::ffi::c_char;
}

/// Which allocator this process uses, latched at the first allocation
/// (before `main`), so it never changes while memory is live.
#[inline]
fn mode() -> u8 {
    let m = MODE.load(Ordering::Relaxed);
    if m != UNSET {
        return m;
    }
    // SAFETY: the name is a NUL-terminated literal; getenv does not allocate
    // and the returned pointer is only read before any setenv could run
    // (this is the process's first allocation, before main).
    let first = unsafe {
        let p = getenv(c"KUAI_POOL_BENCH_ALLOC".as_ptr());
        if p.is_null() { 0u8 } else { *p.cast::<u8>() }
    };
    let m = match first {
        b'j' => JEMALLOC,
        b'm' => MIMALLOC,
        _ => SYSTEM,
    };
    MODE.store(m, Ordering::Relaxed);
    m
}

/// Forwards to the allocator chosen by [`mode`].
struct Switch;

static JE: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
static MI: mimalloc::MiMalloc = mimalloc::MiMalloc;

// SAFETY: every method forwards to a real allocator; the choice is fixed for
// the life of the process (see `mode`), so memory is always freed or
// reallocated by the allocator that allocated it.
unsafe impl GlobalAlloc for Switch {
    #[inline]
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is forwarded unchanged.
        unsafe {
            match mode() {
                JEMALLOC => JE.alloc(l),
                MIMALLOC => MI.alloc(l),
                _ => System.alloc(l),
            }
        }
    }
    #[inline]
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: forwarded; `p` came from the same allocator (mode is fixed).
        unsafe {
            match mode() {
                JEMALLOC => JE.dealloc(p, l),
                MIMALLOC => MI.dealloc(p, l),
                _ => System.dealloc(p, l),
            }
        }
    }
    #[inline]
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is forwarded unchanged.
        unsafe {
            match mode() {
                JEMALLOC => JE.alloc_zeroed(l),
                MIMALLOC => MI.alloc_zeroed(l),
                _ => System.alloc_zeroed(l),
            }
        }
    }
    #[inline]
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        // SAFETY: forwarded; `p` came from the same allocator (mode is fixed).
        unsafe {
            match mode() {
                JEMALLOC => JE.realloc(p, l, n),
                MIMALLOC => MI.realloc(p, l, n),
                _ => System.realloc(p, l, n),
            }
        }
    }
}

#[global_allocator]
static GLOBAL: Switch = Switch;

// ------------------------------------------------------------------ helpers

/// Runs every closure `runs` times, round-robin (after one warm-up each),
/// and returns each one's median.
fn medians(runs: usize, fs: &mut [&mut dyn FnMut() -> Duration]) -> Vec<Duration> {
    for f in fs.iter_mut() {
        let _ = f();
    }
    let mut samples = vec![Vec::with_capacity(runs); fs.len()];
    for _ in 0..runs.max(1) {
        for (i, f) in fs.iter_mut().enumerate() {
            samples[i].push(f());
        }
    }
    samples
        .into_iter()
        .map(|mut s| {
            s.sort();
            s[s.len() / 2]
        })
        .collect()
}

fn per_op(d: Duration, ops: usize) -> f64 {
    ns(d) / ops as f64
}

// ------------------------------------------------------------- buffer pool

const PAYLOAD: [u8; 64] = [7u8; 64];

/// `ops` get+use+put cycles, `live` buffers held at once (1 = ping-pong).
fn buffer_pooled(local: &LocalBufferPool, size: usize, ops: usize, live: usize) -> Duration {
    let t = Instant::now();
    if live == 1 {
        for _ in 0..ops {
            let mut b = local.get(size);
            b.extend_from_slice(&PAYLOAD);
            black_box(&b);
        }
    } else {
        let mut held = Vec::with_capacity(live);
        for _ in 0..ops / live {
            for _ in 0..live {
                let mut b = local.get(size);
                b.extend_from_slice(&PAYLOAD);
                held.push(b);
            }
            black_box(&held);
            held.clear();
        }
    }
    t.elapsed()
}

/// The same through the implicit thread-local cache (`BufferPool::get`).
fn buffer_tls(pool: &BufferPool, size: usize, ops: usize) -> Duration {
    let t = Instant::now();
    for _ in 0..ops {
        let mut b = pool.get(size);
        b.extend_from_slice(&PAYLOAD);
        black_box(&b);
    }
    t.elapsed()
}

fn buffer_fresh(size: usize, ops: usize, live: usize) -> Duration {
    let t = Instant::now();
    if live == 1 {
        for _ in 0..ops {
            let mut b = BytesMut::with_capacity(size);
            b.extend_from_slice(&PAYLOAD);
            black_box(&b);
        }
    } else {
        let mut held = Vec::with_capacity(live);
        for _ in 0..ops / live {
            for _ in 0..live {
                let mut b = BytesMut::with_capacity(size);
                b.extend_from_slice(&PAYLOAD);
                held.push(b);
            }
            black_box(&held);
            held.clear();
        }
    }
    t.elapsed()
}

/// Runs `f` on `threads` threads at once; returns the slowest thread's time.
fn on_threads(threads: usize, f: impl Fn() -> Duration + Sync) -> Duration {
    if threads == 1 {
        return f();
    }
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads).map(|_| s.spawn(&f)).collect();
        hs.into_iter()
            .map(|h| h.join().unwrap_or(Duration::MAX))
            .max()
            .unwrap_or(Duration::MAX)
    })
}

fn ops_for(size: usize, quick: bool) -> usize {
    let base = match size {
        s if s >= 1 << 20 => 8_000,
        s if s >= 64 << 10 => 64_000,
        _ => 256_000,
    };
    if quick { base / 4 } else { base }
}

/// Buffers held at once in the "live" rows: a server with many requests in
/// flight (the allocator figures use 1000 live 4 KiB blocks).
const LIVE: usize = 32;

/// A pool sized for the benchmark's working set (2 threads × 32 × 1 MiB).
fn bench_buffer_pool() -> BufferPool {
    BufferPool::builder()
        .max_pooled_bytes(256 << 20)
        .thread_cache_bytes(64 << 20)
        .thread_cache_buffers(64)
        .build()
        .unwrap_or_default()
}

fn bench_buffers(s: &mut Section) {
    let pool = bench_buffer_pool();
    let runs = s.pick(3, 5);
    for size in [4 << 10, 64 << 10, 1 << 20] {
        for threads in [1usize, 2] {
            for live in [1, LIVE] {
                let ops = ops_for(size, s.quick());
                let m = medians(
                    runs,
                    &mut [
                        &mut || on_threads(threads, || buffer_fresh(size, ops, live)),
                        &mut || {
                            on_threads(threads, || buffer_pooled(&pool.local(), size, ops, live))
                        },
                    ],
                );
                let what = if live == 1 {
                    "1 live (ping-pong)".to_string()
                } else {
                    format!("{live} live")
                };
                s.record(
                    Row::new(
                        format!("buffer get+put {} KiB, {what}, {threads} thread(s)", size >> 10),
                        "ns",
                        Better::Lower,
                    )
                    .peer("BytesMut::with_capacity (glibc malloc)", per_op(m[0], ops))
                    .kuai(per_op(m[1], ops))
                    .param("size", size as u64)
                    .param("threads", threads as u64)
                    .param("live", live as u64)
                    .param("ops_per_thread", ops as u64)
                    .note("kuai: a LocalBufferPool (per-thread cache) per thread; target ≥ 2× at ≥ 4 KiB"),
                );
            }
        }
    }
    // The implicit thread-local path, for transparency.
    let size = 4 << 10;
    let ops = ops_for(size, s.quick());
    let m = medians(
        runs,
        &mut [&mut || buffer_fresh(size, ops, 1), &mut || {
            buffer_tls(&pool, size, ops)
        }],
    );
    s.record(
        Row::new(
            "buffer get+put 4 KiB via BufferPool::get (thread_local), 1 live, 1 thread",
            "ns",
            Better::Lower,
        )
        .peer("BytesMut::with_capacity (glibc malloc)", per_op(m[0], ops))
        .kuai(per_op(m[1], ops))
        .param("size", size as u64)
        .note("the implicit path finds its cache through a thread_local on every get and drop"),
    );
}

// ------------------------------------------------------------- object pool

/// Something that is costly to build: a 64 KiB zeroed table and an index.
struct Parser {
    table: Vec<u64>,
    index: HashMap<u64, u32>,
}

impl Parser {
    fn new() -> Self {
        let mut index = HashMap::with_capacity(256);
        for i in 0..64u64 {
            index.insert(i * 7, i as u32);
        }
        Parser {
            table: vec![0u64; 8192],
            index,
        }
    }
    fn work(&mut self, i: u64) -> u64 {
        self.table[(i % 8192) as usize] += 1;
        self.index.insert(1000 + i % 4, 1);
        self.table[(i % 8192) as usize] + self.index.len() as u64
    }
    fn reset(&mut self) {
        self.index.retain(|k, _| *k < 1000);
    }
}

fn bench_objects(s: &mut Section) {
    let runs = s.pick(3, 5);
    let ops = s.pick(20_000, 100_000);
    let pool = match Pool::builder(Parser::new)
        .reset(Parser::reset)
        .max_idle(8)
        .prewarm(1)
        .build()
    {
        Ok(p) => p,
        Err(e) => {
            s.record(Row::new("object pool: build a 64 KiB parser", "ns", Better::Lower).error(e));
            return;
        }
    };
    let m = medians(
        runs,
        &mut [
            &mut || {
                let t = Instant::now();
                for i in 0..ops as u64 {
                    let mut p = Parser::new();
                    black_box(p.work(i));
                }
                t.elapsed()
            },
            &mut || {
                let t = Instant::now();
                for i in 0..ops as u64 {
                    let mut p = pool.get();
                    black_box(p.work(i));
                }
                t.elapsed()
            },
        ],
    );
    s.record(
        Row::new(
            "object get+use+return: 64 KiB table + map",
            "ns",
            Better::Lower,
        )
        .peer("fresh construction", per_op(m[0], ops))
        .kuai(per_op(m[1], ops))
        .param("ops", ops as u64),
    );
}

// ------------------------------------------------------------- thread pool

static DONE: AtomicUsize = AtomicUsize::new(0);

fn wait_done(n: usize) {
    while DONE.load(Ordering::Acquire) < n {
        std::thread::yield_now();
    }
}

fn tiny(i: usize) {
    black_box(i);
    DONE.fetch_add(1, Ordering::Release);
}

fn bench_threads(s: &mut Section) {
    let runs = s.pick(2, 2);
    let n = s.pick(200_000, 1_000_000);
    let threads = 2;
    let ours = ThreadPool::builder()
        .name("bench")
        .core_threads(threads)
        .max_threads(threads)
        .queue_capacity(n)
        .build();
    let Ok(ours) = ours else {
        s.record(Row::new("thread pool", "ms", Better::Lower).error("build failed"));
        return;
    };
    let rayon_pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build();
    let Ok(rayon_pool) = rayon_pool else {
        s.record(Row::new("thread pool", "ms", Better::Lower).error("rayon build failed"));
        return;
    };
    let tp = threadpool::ThreadPool::new(threads);
    let mut failed = None;
    let m = medians(
        runs,
        &mut [
            &mut || {
                DONE.store(0, Ordering::Release);
                let t = Instant::now();
                for i in 0..n {
                    rayon_pool.spawn(move || tiny(i));
                }
                wait_done(n);
                t.elapsed()
            },
            &mut || {
                DONE.store(0, Ordering::Release);
                let t = Instant::now();
                for i in 0..n {
                    tp.execute(move || tiny(i));
                }
                wait_done(n);
                t.elapsed()
            },
            &mut || {
                DONE.store(0, Ordering::Release);
                let t = Instant::now();
                for i in 0..n {
                    if let Err(e) = ours.execute(move || tiny(i)) {
                        failed = Some(e.to_string());
                        DONE.fetch_add(1, Ordering::Release);
                    }
                }
                wait_done(n);
                t.elapsed()
            },
        ],
    );
    let label = format!("{}k tiny tasks, 2 threads", n / 1000);
    for (peer, d) in [("rayon::spawn", m[0]), ("threadpool crate", m[1])] {
        let row = Row::new(label.clone(), "ms", Better::Lower)
            .peer(peer, kuai_benches::ms(d))
            .kuai(kuai_benches::ms(m[2]))
            .param("tasks", n as u64)
            .param("threads", threads as u64);
        s.record(match &failed {
            Some(e) => row.error(e),
            None => row,
        });
    }

    // Thread per task, at a smaller count.
    let n = s.pick(2_000, 10_000);
    let m = medians(
        runs,
        &mut [
            &mut || {
                DONE.store(0, Ordering::Release);
                let t = Instant::now();
                let hs: Vec<_> = (0..n)
                    .map(|i| std::thread::spawn(move || tiny(i)))
                    .collect();
                for h in hs {
                    let _ = h.join();
                }
                t.elapsed()
            },
            &mut || {
                DONE.store(0, Ordering::Release);
                let t = Instant::now();
                for i in 0..n {
                    let _ = ours.execute(move || tiny(i));
                }
                wait_done(n);
                t.elapsed()
            },
        ],
    );
    s.record(
        Row::new(
            format!("{}k tiny tasks, 2 threads", n / 1000),
            "ms",
            Better::Lower,
        )
        .peer("std::thread::spawn per task", kuai_benches::ms(m[0]))
        .kuai(kuai_benches::ms(m[1]))
        .param("tasks", n as u64),
    );
    ours.shutdown();
    bench_isolation(s);
}

/// p99 latency (µs) from submit to start of fast tasks while a flood of
/// slow tasks is queued.
fn isolation_p99(
    submit_slow: &dyn Fn(Box<dyn FnOnce() + Send>) -> bool,
    submit_fast: &dyn Fn(Box<dyn FnOnce() + Send>) -> bool,
    slow: usize,
    fast: usize,
) -> Result<f64, String> {
    for _ in 0..slow {
        if !submit_slow(Box::new(|| std::thread::sleep(Duration::from_millis(1)))) {
            return Err("slow task rejected".into());
        }
    }
    let lat = Arc::new(Mutex::new(Vec::with_capacity(fast)));
    let done = Arc::new(AtomicUsize::new(0));
    for _ in 0..fast {
        let (lat, done) = (Arc::clone(&lat), Arc::clone(&done));
        let at = Instant::now();
        let ok = submit_fast(Box::new(move || {
            let us = at.elapsed().as_secs_f64() * 1e6;
            lat.lock().unwrap_or_else(|p| p.into_inner()).push(us);
            done.fetch_add(1, Ordering::Release);
        }));
        if !ok {
            return Err("fast task rejected".into());
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while done.load(Ordering::Acquire) < fast {
        if Instant::now() > deadline {
            return Err("fast tasks did not finish in 30 s".into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut v = lat.lock().unwrap_or_else(|p| p.into_inner()).clone();
    v.sort_by(f64::total_cmp);
    Ok(v[(v.len() * 99 / 100).min(v.len() - 1)])
}

fn bench_isolation(s: &mut Section) {
    let (slow, fast) = s.pick((60, 40), (150, 100));
    let row = Row::new(
        "fast-task p99 latency, slow group saturated",
        "us",
        Better::Lower,
    )
    .param("slow_tasks_1ms", slow as u64)
    .param("fast_tasks", fast as u64);
    let shared = ThreadPool::builder()
        .name("shared")
        .core_threads(2)
        .max_threads(2)
        .queue_capacity(10_000)
        .build();
    let groups = IsolatedPools::builder()
        .group(
            "slow",
            ThreadPool::builder()
                .core_threads(1)
                .max_threads(1)
                .queue_capacity(10_000),
        )
        .group(
            "fast",
            ThreadPool::builder()
                .core_threads(1)
                .max_threads(1)
                .queue_capacity(10_000),
        )
        .build();
    let (Ok(shared), Ok(groups)) = (shared, groups) else {
        s.record(row.error("pool build failed"));
        return;
    };
    let sh = |t: Box<dyn FnOnce() + Send>| shared.execute(t).is_ok();
    let peer = isolation_p99(&sh, &sh, slow, fast);
    let _ = shared.shutdown_now();
    let kuai = isolation_p99(
        &|t| groups.execute("slow", t).is_ok(),
        &|t| groups.execute("fast", t).is_ok(),
        slow,
        fast,
    );
    let _ = groups.shutdown_now();
    s.record(match (peer, kuai) {
        (Ok(p), Ok(k)) => row
            .peer("one shared pool (2 threads)", p)
            .kuai(k)
            .note("isolated: slow group 1 thread + fast group 1 thread"),
        (Err(e), _) | (_, Err(e)) => row.error(e),
    });
}

// --------------------------------------------------------- connection pool

struct Noop;

impl Manager for Noop {
    type Resource = u64;
    async fn connect(&self) -> KResult<u64> {
        Ok(0)
    }
    async fn check(&self, _: &mut u64) -> KResult<()> {
        Ok(())
    }
}

struct DpNoop;

impl deadpool::managed::Manager for DpNoop {
    type Type = u64;
    type Error = Infallible;
    async fn create(&self) -> Result<u64, Infallible> {
        Ok(0)
    }
    async fn recycle(
        &self,
        _: &mut u64,
        _: &deadpool::managed::Metrics,
    ) -> deadpool::managed::RecycleResult<Infallible> {
        Ok(())
    }
}

struct B8Noop;

impl bb8::ManageConnection for B8Noop {
    type Connection = u64;
    type Error = Infallible;
    async fn connect(&self) -> Result<u64, Infallible> {
        Ok(0)
    }
    async fn is_valid(&self, _: &mut u64) -> Result<(), Infallible> {
        Ok(())
    }
    fn has_broken(&self, _: &mut u64) -> bool {
        false
    }
}

/// The naive peer: a mutex-guarded Vec and a semaphore.
struct Naive {
    conns: Mutex<Vec<u64>>,
    permits: tokio::sync::Semaphore,
}

impl Naive {
    fn new(n: usize) -> Self {
        Naive {
            conns: Mutex::new(vec![0; n]),
            permits: tokio::sync::Semaphore::new(n),
        }
    }
    async fn with<R>(&self, f: impl FnOnce(&u64) -> R) -> Option<R> {
        let permit = self.permits.acquire().await.ok()?;
        let c = self.conns.lock().unwrap_or_else(|p| p.into_inner()).pop()?;
        let r = f(&c);
        self.conns.lock().unwrap_or_else(|p| p.into_inner()).push(c);
        drop(permit);
        Some(r)
    }
}

/// What one contender does per operation.
#[derive(Clone)]
enum Contender {
    Kuai(ConnPool<Noop>),
    Deadpool(deadpool::managed::Pool<DpNoop>),
    Bb8(bb8::Pool<B8Noop>),
    Naive(Arc<Naive>),
}

impl Contender {
    async fn run(&self, ops: usize) -> bool {
        for _ in 0..ops {
            let ok = match self {
                Contender::Kuai(p) => p.get().await.map(|c| black_box(*c)).is_ok(),
                Contender::Deadpool(p) => p.get().await.map(|c| black_box(*c)).is_ok(),
                Contender::Bb8(p) => p.get().await.map(|c| black_box(*c)).is_ok(),
                Contender::Naive(p) => p.with(|c| black_box(*c)).await.is_some(),
            };
            if !ok {
                return false;
            }
        }
        true
    }
}

fn run_tasks(rt: &tokio::runtime::Runtime, c: &Contender, tasks: usize, ops: usize) -> Duration {
    rt.block_on(async {
        let t = Instant::now();
        if tasks == 1 {
            if !c.run(ops).await {
                return Duration::MAX;
            }
        } else {
            let hs: Vec<_> = (0..tasks)
                .map(|_| {
                    let c = c.clone();
                    tokio::spawn(async move { c.run(ops).await })
                })
                .collect();
            for h in hs {
                if !matches!(h.await, Ok(true)) {
                    return Duration::MAX;
                }
            }
        }
        t.elapsed()
    })
}

fn bench_conn_noop(s: &mut Section) {
    let runs = s.pick(3, 5);
    for (tasks, conns, seeds) in [
        (1usize, 16usize, [197.0, 180.0, 113.0]),
        (64, 16, [378.0, 299.0, 528.0]),
    ] {
        let ops = if tasks == 1 {
            s.pick(100_000, 400_000)
        } else {
            s.pick(2_000, 8_000)
        };
        let total = tasks * ops;
        let label = format!("conn acquire+release, no-op manager, {tasks} task(s), {conns} conns");
        let rt = if tasks == 1 {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
        } else {
            kuai_benches::runtime()
        };
        let Ok(rt) = rt else {
            s.record(Row::new(label, "ns", Better::Lower).error("tokio runtime"));
            continue;
        };
        let built: Result<[Contender; 4], String> = rt.block_on(async {
            let kuai = ConnPool::builder(Noop)
                .max_size(conns)
                .acquire_timeout(Duration::from_secs(10))
                .build()
                .map_err(|e| e.to_string())?;
            let dp = deadpool::managed::Pool::builder(DpNoop)
                .max_size(conns)
                .build()
                .map_err(|e| e.to_string())?;
            let b8 = bb8::Pool::builder()
                .max_size(conns as u32)
                .build(B8Noop)
                .await
                .map_err(|e| e.to_string())?;
            Ok([
                Contender::Kuai(kuai),
                Contender::Deadpool(dp),
                Contender::Bb8(b8),
                Contender::Naive(Arc::new(Naive::new(conns))),
            ])
        });
        let Ok([k, dp, b8, nv]) = built else {
            s.record(Row::new(label, "ns", Better::Lower).error("pool build failed"));
            continue;
        };
        let m = medians(
            runs,
            &mut [
                &mut || run_tasks(&rt, &k, tasks, ops),
                &mut || run_tasks(&rt, &dp, tasks, ops),
                &mut || run_tasks(&rt, &b8, tasks, ops),
                &mut || run_tasks(&rt, &nv, tasks, ops),
            ],
        );
        let kuai = per_op(m[0], total);
        for (i, peer) in ["deadpool", "bb8", "naive Mutex+Semaphore"]
            .into_iter()
            .enumerate()
        {
            let row = Row::new(label.clone(), "ns", Better::Lower)
                .seed(seeds[i])
                .param("tasks", tasks as u64)
                .param("conns", conns as u64)
                .param("ops", total as u64)
                .note("seed column: the peer's figure measured on this machine for the issue");
            let row = if m[0] == Duration::MAX || m[i + 1] == Duration::MAX {
                row.error("an acquire failed")
            } else {
                let row = row.peer(peer, per_op(m[i + 1], total)).kuai(kuai);
                if i < 2 {
                    row.note("target ≥ 1.0× the best of deadpool and bb8")
                } else {
                    row
                }
            };
            s.record(row);
        }
    }
}

// ------------------------------------------------------- real Redis (PING)

const REDIS_URL: &str = "redis://127.0.0.1:6379";

#[derive(Clone)]
enum RedisContender {
    Kuai(ConnPool<kuai::pool::RedisManager>),
    Deadpool(deadpool_redis::Pool),
    Bb8(bb8::Pool<bb8_redis::RedisConnectionManager>),
}

impl RedisContender {
    async fn run(&self, ops: usize) -> Result<(), String> {
        let ping = redis::cmd("PING");
        for _ in 0..ops {
            let r: Result<String, String> = match self {
                RedisContender::Kuai(p) => match p.get().await {
                    Ok(mut c) => c.query(&ping).await.map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                },
                RedisContender::Deadpool(p) => match p.get().await {
                    Ok(mut c) => ping.query_async(&mut *c).await.map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                },
                RedisContender::Bb8(p) => match p.get().await {
                    Ok(mut c) => ping.query_async(&mut *c).await.map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                },
            };
            r?;
        }
        Ok(())
    }
}

fn redis_tasks(
    rt: &tokio::runtime::Runtime,
    c: &RedisContender,
    tasks: usize,
    ops: usize,
) -> Result<Duration, String> {
    rt.block_on(async {
        let t = Instant::now();
        let hs: Vec<_> = (0..tasks)
            .map(|_| {
                let c = c.clone();
                tokio::spawn(async move { c.run(ops).await })
            })
            .collect();
        for h in hs {
            h.await.map_err(|e| e.to_string())??;
        }
        Ok(t.elapsed())
    })
}

fn bench_redis(s: &mut Section) {
    let (tasks, conns) = (64usize, 16usize);
    let ops = s.pick(100, 200);
    let total = tasks * ops;
    let runs = s.pick(3, 3);
    let label = format!("Redis PING through the pool, {tasks} tasks, {conns} conns");
    let rt = kuai_benches::runtime();
    let Ok(rt) = rt else {
        s.record(Row::new(label, "us", Better::Lower).error("tokio runtime"));
        return;
    };
    let built: Result<[RedisContender; 4], String> = rt.block_on(async {
        let kpool = |check| -> Result<RedisContender, String> {
            let m = kuai::pool::RedisManager::new(REDIS_URL).map_err(|e| e.to_string())?;
            ConnPool::builder(m)
                .max_size(conns)
                .acquire_timeout(Duration::from_secs(10))
                .check_on_checkout(check)
                .build()
                .map(RedisContender::Kuai)
                .map_err(|e| e.to_string())
        };
        let checked = kpool(CheckOnCheckout::IfUnusedFor(Duration::from_millis(500)))?;
        let unchecked = kpool(CheckOnCheckout::Never)?;
        let mut cfg = deadpool_redis::Config::from_url(REDIS_URL);
        cfg.pool = Some(deadpool_redis::PoolConfig::new(conns));
        let dp = cfg
            .create_pool(Some(deadpool_redis::Runtime::Tokio1))
            .map_err(|e| e.to_string())?;
        let mgr = bb8_redis::RedisConnectionManager::new(REDIS_URL).map_err(|e| e.to_string())?;
        let b8 = bb8::Pool::builder()
            .max_size(conns as u32)
            .build(mgr)
            .await
            .map_err(|e| e.to_string())?;
        Ok([
            checked,
            unchecked,
            RedisContender::Deadpool(dp),
            RedisContender::Bb8(b8),
        ])
    });
    let contenders = match built {
        Ok(c) => c,
        Err(e) => {
            s.record(
                Row::new(label, "us", Better::Lower).error(format!("Redis at {REDIS_URL}: {e}")),
            );
            return;
        }
    };
    let [c0, c1, c2, c3] = &contenders;
    let mut err = None;
    let times = medians(
        runs,
        &mut [
            &mut || redis_tasks(&rt, c0, tasks, ops).unwrap_or(Duration::MAX),
            &mut || redis_tasks(&rt, c1, tasks, ops).unwrap_or(Duration::MAX),
            &mut || redis_tasks(&rt, c2, tasks, ops).unwrap_or(Duration::MAX),
            &mut || redis_tasks(&rt, c3, tasks, ops).unwrap_or(Duration::MAX),
        ],
    );
    if times.contains(&Duration::MAX) {
        err = Some(format!(
            "a PING failed (is redis-server running on {REDIS_URL}?)"
        ));
    }
    let us = |d: Duration| per_op(d, total) / 1000.0;
    let rows = [
        (
            "kuai, no checkout check",
            times[1],
            None,
            "target: checking costs ≤ 10 % over no checking",
        ),
        (
            "deadpool-redis (PING on recycle)",
            times[2],
            Some(13.4),
            "seed column: figure from the issue",
        ),
        (
            "bb8-redis (PING on checkout)",
            times[3],
            Some(12.4),
            "seed column: figure from the issue",
        ),
    ];
    for (peer, d, seed, note) in rows {
        let mut row = Row::new(label.clone(), "us", Better::Lower)
            .param("tasks", tasks as u64)
            .param("conns", conns as u64)
            .param("ops", total as u64)
            .note(format!("kuai checks connections unused for 500 ms; {note}"));
        if let Some(seed) = seed {
            row = row.seed(seed);
        }
        s.record(match &err {
            Some(e) => row.error(e),
            None => row.peer(peer, us(d)).kuai(us(times[0])),
        });
    }
}

// --------------------------------------------------- allocator experiment

/// Work done in a child process under one allocator; prints `RESULT k v`.
fn alloc_child(quick: bool) {
    let n = if quick { 300_000 } else { 1_000_000 };
    let small = {
        let t = Instant::now();
        for i in 0..n {
            let b = Box::new([i as u8; 64]);
            black_box(&b);
        }
        t.elapsed()
    };
    println!("RESULT small64 {}", per_op(small, n));
    let (batches, live) = if quick { (100, 1000) } else { (300, 1000) };
    let batch = {
        let mut v: Vec<Vec<u8>> = Vec::with_capacity(live);
        let t = Instant::now();
        for _ in 0..batches {
            for _ in 0..live {
                let mut b = Vec::with_capacity(4096);
                b.push(1u8);
                v.push(b);
            }
            v.clear();
        }
        t.elapsed()
    };
    println!("RESULT batch4k {}", per_op(batch, batches * live));
    let pool = bench_buffer_pool();
    let local = pool.local();
    for size in [4 << 10, 64 << 10, 1 << 20] {
        let ops = ops_for(size, true);
        for live in [1, LIVE] {
            let m = medians(
                3,
                &mut [&mut || buffer_fresh(size, ops, live), &mut || {
                    buffer_pooled(&local, size, ops, live)
                }],
            );
            println!("RESULT fresh{size}x{live} {}", per_op(m[0], ops));
            println!("RESULT pooled{size}x{live} {}", per_op(m[1], ops));
        }
    }
}

fn run_child(alloc: &str, quick: bool) -> Result<HashMap<String, f64>, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--alloc-child").env(ALLOC_ENV, alloc);
    if quick {
        cmd.arg("--quick");
    }
    let out = cmd.output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "{alloc} child failed: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .filter_map(|l| {
            let mut it = l.strip_prefix("RESULT ")?.split(' ');
            Some((it.next()?.to_string(), it.next()?.parse().ok()?))
        })
        .collect())
}

fn bench_allocators(s: &mut Section) {
    let quick = s.quick();
    let sys = run_child("system", quick);
    let je = run_child("jemalloc", quick);
    let mi = run_child("mimalloc", quick);
    let get = |r: &Result<HashMap<String, f64>, String>, k: &str| -> Result<f64, String> {
        match r {
            Ok(m) => m
                .get(k)
                .copied()
                .ok_or_else(|| format!("no {k} in child output")),
            Err(e) => Err(e.clone()),
        }
    };
    for (key, label, seeds) in [
        ("small64", "alloc+free 64 B, 1 thread", [5.8, 2.7, 3.4]),
        (
            "batch4k",
            "alloc 1000 × 4 KiB live, then free",
            [1418.0, 123.0, 40.0],
        ),
    ] {
        for (name, r, seed) in [("jemalloc", &je, seeds[1]), ("mimalloc", &mi, seeds[2])] {
            let row = Row::new(format!("allocator: {label} ({name})"), "ns", Better::Lower)
                .seed(seed)
                .note(format!("kuai column: {name} as global allocator; seed column: the issue's {name} figure"));
            s.record(match (get(&sys, key), get(r, key)) {
                (Ok(p), Ok(k)) => row.peer("system (glibc malloc)", p).kuai(k),
                (Err(e), _) | (_, Err(e)) => row.error(e),
            });
        }
    }
    for size in [4usize << 10, 64 << 10, 1 << 20] {
        for live in [1, LIVE] {
            let what = if live == 1 {
                "1 live".to_string()
            } else {
                format!("{live} live")
            };
            let row = Row::new(
                format!(
                    "buffer get+put {} KiB, {what}, vs mimalloc fresh, 1 thread",
                    size >> 10
                ),
                "ns",
                Better::Lower,
            )
            .param("size", size as u64)
            .param("live", live as u64)
            .note("both sides under mimalloc; target ≥ 1.0×");
            let (pk, fk) = (
                format!("pooled{size}x{live}"),
                format!("fresh{size}x{live}"),
            );
            s.record(match (get(&mi, &fk), get(&mi, &pk)) {
                (Ok(p), Ok(k)) => row.peer("BytesMut::with_capacity (mimalloc)", p).kuai(k),
                (Err(e), _) | (_, Err(e)) => row.error(e),
            });
        }
    }
}

// --------------------------------------------------------------------- main

fn main() {
    if std::env::args().any(|a| a == "--alloc-child") {
        let quick = std::env::args().any(|a| a == "--quick");
        alloc_child(quick);
        return;
    }
    let mut s = Section::from_args("pool");
    let services = std::env::args().any(|a| a == "--services")
        || std::env::var("KUAI_BENCH_SERVICES").is_ok_and(|v| v == "1");
    // Let the CPU leave its idle clock before the first measurement.
    let warm = Instant::now();
    while warm.elapsed() < Duration::from_millis(200) {
        black_box(buffer_fresh(4096, 1000, 1));
    }
    // KUAI_POOL_ONLY=buffers,conn,… runs a subset (for development).
    let only = std::env::var("KUAI_POOL_ONLY").ok();
    let on = |g: &str| only.as_deref().is_none_or(|o| o.split(',').any(|x| x == g));
    if on("buffers") {
        bench_buffers(&mut s);
    }
    if on("alloc") {
        bench_allocators(&mut s);
    }
    if on("objects") {
        bench_objects(&mut s);
    }
    if on("conn") {
        bench_conn_noop(&mut s);
    }
    if services && on("redis") {
        bench_redis(&mut s);
    }
    if on("threads") {
        bench_threads(&mut s);
    }
}
