//! The cache section of `cargo xtask bench`: hit ratio on real traces and
//! Zipf keys (kuai's default policy vs moka, quick_cache and LRU), throughput
//! on 1 and 2 threads (vs moka, quick_cache and a dashmap), the memory bound
//! under write-heavy load, a 1,000-request stampede, and the multi-level
//! rows: how evenly a 3-node L2 (spawned `redis-server`s) carries a very hot
//! key with and without hot-key copies, and (with `--services`) L1 + Redis.
//! `-- --only-multi-level` runs only the multi-level rows.
//!
//! Traces are read from `<workspace>/../shared/data/traces` (or
//! `$KUAI_TRACES`); a missing trace is recorded as an error row.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kuai_benches::{Better, Row, Section};
use kuai_cache::{Cache, Policy, trace};

const SECTION: &str = "cache";

fn traces_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("KUAI_TRACES") {
        return PathBuf::from(p);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/traces")
}

type Replay = fn(&[u64], u64) -> f64;

fn ratio_of(hits: u64, n: usize) -> f64 {
    100.0 * hits as f64 / n.max(1) as f64
}

fn kuai_with(keys: &[u64], cap: u64, policy: Policy) -> f64 {
    let Ok(c) = Cache::<u64, u64>::builder()
        .max_capacity(cap)
        .policy(policy)
        .build()
    else {
        return f64::NAN;
    };
    let mut hits = 0;
    for &k in keys {
        if c.get(&k).is_some() {
            hits += 1;
        } else {
            c.insert(k, k);
        }
    }
    ratio_of(hits, keys.len())
}

fn kuai_default(keys: &[u64], cap: u64) -> f64 {
    kuai_with(keys, cap, Policy::TinyLfu)
}

fn lru(keys: &[u64], cap: u64) -> f64 {
    kuai_with(keys, cap, Policy::Lru)
}

fn moka_ratio(keys: &[u64], cap: u64) -> f64 {
    let c = moka::sync::Cache::<u64, u64>::new(cap);
    let mut hits = 0;
    for &k in keys {
        if c.get(&k).is_some() {
            hits += 1;
        } else {
            c.insert(k, k);
        }
    }
    ratio_of(hits, keys.len())
}

fn quick_ratio(keys: &[u64], cap: u64) -> f64 {
    let c = quick_cache::sync::Cache::<u64, u64>::new(cap as usize);
    let mut hits = 0;
    for &k in keys {
        if c.get(&k).is_some() {
            hits += 1;
        } else {
            c.insert(k, k);
        }
    }
    ratio_of(hits, keys.len())
}

fn hit_ratio_rows(s: &mut Section, name: &str, keys: &[u64], pcts: &[f64]) {
    let footprint = trace::footprint(keys) as f64;
    for &pct in pcts {
        let cap = ((footprint * pct / 100.0).round() as u64).max(1);
        let kuai = kuai_default(keys, cap);
        let peers: [(&str, Replay); 3] = [
            ("moka", moka_ratio),
            ("quick_cache", quick_ratio),
            ("LRU", lru),
        ];
        let measured: Vec<(&str, f64)> = peers.iter().map(|(n, f)| (*n, f(keys, cap))).collect();
        let (best_name, best) = measured
            .iter()
            .copied()
            .fold(("none", f64::MIN), |a, b| if b.1 > a.1 { b } else { a });
        let exp = format!("hit ratio {name} @{pct}% of footprint");
        let row = Row::new(format!("{exp}, vs best peer"), "%", Better::Higher)
            .peer(format!("best of moka/quick_cache/LRU ({best_name})"), best)
            .kuai(kuai)
            .param("capacity", cap)
            .param("requests", keys.len() as u64)
            .note("target: kuai ≥ best peer − 0.5 points");
        s.record(row);
        for (peer, v) in measured {
            s.record(
                Row::new(format!("{exp}, vs {peer}"), "%", Better::Higher)
                    .peer(peer, v)
                    .kuai(kuai)
                    .param("capacity", cap),
            );
        }
    }
}

/// (file, label, capacities as % of footprint, request limit quick, full)
type TraceSpec = (
    &'static str,
    &'static str,
    &'static [f64],
    Option<usize>,
    Option<usize>,
);

fn hit_ratios(s: &mut Section) {
    let dir = traces_dir();
    let quick = s.quick();
    const LIRS: [f64; 3] = [5.0, 20.0, 50.0];
    const ARC: [f64; 3] = [1.0, 5.0, 20.0];
    let (lirs, arc) = (&LIRS, &ARC);
    let files: [TraceSpec; 6] = [
        ("lirs/loop.trace.gz", "loop", lirs, Some(200_000), None),
        ("lirs/multi2.trace.gz", "multi2", lirs, None, None),
        ("lirs/sprite.trace.gz", "sprite", lirs, None, None),
        ("lirs/2_pools.trace.gz", "2_pools", lirs, None, None),
        ("arc/OLTP.lis.zst", "OLTP", arc, Some(200_000), None),
        ("arc/P3.lis.zst", "P3", arc, None, Some(1_000_000)),
    ];
    for (file, label, pcts, quick_limit, full_limit) in files {
        if quick && label == "P3" {
            continue;
        }
        let path = dir.join(file);
        let limit = if quick { quick_limit } else { full_limit };
        match trace::read_keys(&path, limit) {
            Ok(keys) => {
                let name = match limit {
                    Some(n) if keys.len() >= n => format!("{label} (first {n})"),
                    _ => label.to_string(),
                };
                hit_ratio_rows(s, &name, &keys, pcts);
            }
            Err(e) => s.record(
                Row::new(format!("hit ratio {label}"), "%", Better::Higher)
                    .error(format!("{e} (set KUAI_TRACES to the traces folder)")),
            ),
        }
    }
    let len = s.pick(100_000, 500_000);
    for zipf_s in [0.9, 1.2] {
        let keys = trace::zipf(100_000, zipf_s, len, 42);
        hit_ratio_rows(
            s,
            &format!("Zipf({zipf_s}) over 100k keys"),
            &keys,
            &[1.0, 10.0],
        );
    }
}

trait Bench: Send + Sync {
    fn get(&self, k: u64) -> bool;
    fn put(&self, k: u64, v: u64);
}

impl Bench for Cache<u64, u64> {
    #[inline]
    fn get(&self, k: u64) -> bool {
        Cache::get(self, &k).is_some()
    }
    #[inline]
    fn put(&self, k: u64, v: u64) {
        self.insert(k, v);
    }
}

impl Bench for moka::sync::Cache<u64, u64> {
    fn get(&self, k: u64) -> bool {
        moka::sync::Cache::get(self, &k).is_some()
    }
    fn put(&self, k: u64, v: u64) {
        self.insert(k, v);
    }
}

impl Bench for quick_cache::sync::Cache<u64, u64> {
    fn get(&self, k: u64) -> bool {
        quick_cache::sync::Cache::get(self, &k).is_some()
    }
    fn put(&self, k: u64, v: u64) {
        self.insert(k, v);
    }
}

impl Bench for dashmap::DashMap<u64, u64> {
    fn get(&self, k: u64) -> bool {
        dashmap::DashMap::get(self, &k).is_some()
    }
    fn put(&self, k: u64, v: u64) {
        self.insert(k, v);
    }
}

/// Ops per second of `threads` threads, each running `ops` operations over
/// its own slice of `keys`; every `write_every`-th op is an insert.
fn run(cache: &dyn Bench, keys: &[u64], threads: usize, ops: usize, write_every: usize) -> f64 {
    let barrier = std::sync::Barrier::new(threads + 1);
    let hits = AtomicU64::new(0);
    let elapsed = std::thread::scope(|s| {
        for t in 0..threads {
            let barrier = &barrier;
            let hits = &hits;
            s.spawn(move || {
                let start = (t * keys.len() / threads.max(1)) % keys.len();
                let mut h = 0u64;
                barrier.wait();
                for i in 0..ops {
                    let k = keys[(start + i) % keys.len()];
                    if i % write_every == 0 {
                        cache.put(k, i as u64);
                    } else if cache.get(k) {
                        h += 1;
                    }
                }
                hits.fetch_add(h, Ordering::Relaxed);
                barrier.wait();
            });
        }
        barrier.wait();
        let t0 = Instant::now();
        barrier.wait();
        t0.elapsed()
    });
    (threads * ops) as f64 / elapsed.as_secs_f64() / 1e6
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn throughput(s: &mut Section) {
    const CAP: u64 = 100_000;
    let keys = trace::zipf(1_000_000, 0.99, 1 << 20, 7);
    let ops = s.pick(200_000, 1_000_000);
    let runs = 3;
    for (mix, write_every) in [("90/10", 10usize), ("50/50", 2)] {
        for threads in [1usize, 2] {
            let kuai: Box<dyn Bench> = match Cache::<u64, u64>::new(CAP) {
                Ok(c) => Box::new(c),
                Err(e) => {
                    s.record(Row::new("throughput", "Mops/s", Better::Higher).error(e));
                    return;
                }
            };
            let peers: Vec<(&str, Box<dyn Bench>, usize)> = vec![
                (
                    "quick_cache",
                    Box::new(quick_cache::sync::Cache::<u64, u64>::new(CAP as usize)),
                    ops,
                ),
                (
                    "moka",
                    Box::new(moka::sync::Cache::<u64, u64>::new(CAP)),
                    ops / 20,
                ),
                (
                    "dashmap (no eviction)",
                    Box::new(dashmap::DashMap::<u64, u64>::new()),
                    ops,
                ),
            ];
            // Warm every cache with the key stream once.
            for k in keys.iter().take(s.pick(30_000, 200_000)) {
                kuai.put(*k, 0);
                for (_, p, _) in &peers {
                    p.put(*k, 0);
                }
            }
            let mut kuai_runs = Vec::new();
            let mut peer_runs: Vec<Vec<f64>> = vec![Vec::new(); peers.len()];
            for _ in 0..runs {
                kuai_runs.push(run(kuai.as_ref(), &keys, threads, ops, write_every));
                for (i, (_, p, n)) in peers.iter().enumerate() {
                    peer_runs[i].push(run(p.as_ref(), &keys, threads, *n, write_every));
                }
            }
            let k = median(kuai_runs);
            for (i, (name, _, _)) in peers.iter().enumerate() {
                let p = median(std::mem::take(&mut peer_runs[i]));
                let note = match (*name, threads) {
                    ("quick_cache", 1) => Some("target ≥ 1.0×"),
                    ("quick_cache", _) => Some("target ≥ 1.5×"),
                    ("moka", _) => Some("target ≥ 10×"),
                    _ => None,
                };
                let mut row = Row::new(
                    format!("throughput Zipf(0.99) {mix} get/insert, {threads} thread(s)"),
                    "Mops/s",
                    Better::Higher,
                )
                .peer(*name, p)
                .kuai(k)
                .param("threads", threads as u64)
                .param("capacity", CAP)
                .param("ops_per_thread", ops as u64);
                if let Some(n) = note {
                    row = row.note(n);
                }
                s.record(row);
            }
        }
    }
}

fn memory_bound(s: &mut Section) {
    const CAP: u64 = 50_000;
    let n = s.pick(200_000u64, 1_000_000);
    let kuai = match Cache::<u64, Vec<u8>>::new(CAP) {
        Ok(c) => c,
        Err(e) => {
            s.record(Row::new("memory bound", "entries", Better::Lower).error(e));
            return;
        }
    };
    let moka = moka::sync::Cache::<u64, Vec<u8>>::new(CAP);
    let (mut kuai_peak, mut moka_peak) = (0u64, 0u64);
    for i in 0..n {
        kuai.insert(i, vec![0; 16]);
        moka.insert(i, vec![0; 16]);
        if i % 10_000 == 0 {
            kuai_peak = kuai_peak.max(kuai.entry_count());
            moka_peak = moka_peak.max(moka.entry_count());
        }
    }
    s.record(
        Row::new(
            "peak entries under write-only load (cap 50k)",
            "entries",
            Better::Lower,
        )
        .peer("moka", moka_peak as f64)
        .kuai(kuai_peak as f64)
        .param("capacity", CAP)
        .param("inserts", n)
        .note("kuai must stay ≤ capacity at every instant"),
    );
}

fn stampede(s: &mut Section) {
    let rt = match kuai_benches::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            s.record(Row::new("stampede", "loads", Better::Lower).error(e));
            return;
        }
    };
    let result: Result<(u64, u64), String> = rt.block_on(async {
        let cache = kuai_cache::LoadingCache::<u64, u64>::builder()
            .max_capacity(1000)
            .build()
            .map_err(|e| e.to_string())?;
        let kuai_loads = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..1000 {
            let cache = cache.clone();
            let loads = Arc::clone(&kuai_loads);
            tasks.push(tokio::spawn(async move {
                cache
                    .get_with(7, move |_k| async move {
                        loads.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        Ok(Some(49))
                    })
                    .await
            }));
        }
        for t in tasks {
            t.await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
        }
        // The naive pattern: check, miss, load, set — every concurrent miss loads.
        let naive = Arc::new(dashmap::DashMap::<u64, u64>::new());
        let naive_loads = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..1000 {
            let naive = Arc::clone(&naive);
            let loads = Arc::clone(&naive_loads);
            tasks.push(tokio::spawn(async move {
                if naive.get(&7).is_none() {
                    loads.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    naive.insert(7, 49);
                }
            }));
        }
        for t in tasks {
            t.await.map_err(|e| e.to_string())?;
        }
        Ok((
            kuai_loads.load(Ordering::Relaxed),
            naive_loads.load(Ordering::Relaxed),
        ))
    });
    match result {
        Ok((k, n)) => s.record(
            Row::new(
                "stampede: 1,000 concurrent misses on one key",
                "source loads",
                Better::Lower,
            )
            .peer("naive cache-aside", n as f64)
            .kuai(k as f64)
            .note("target: exactly 1 load"),
        ),
        Err(e) => s.record(Row::new("stampede", "source loads", Better::Lower).error(e)),
    }
}

/// A `redis-server` child on a free loopback port (no persistence), killed
/// on drop.
struct RedisChild {
    child: std::process::Child,
    port: u16,
}

impl Drop for RedisChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_redis() -> Result<RedisChild, String> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let child = std::process::Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("redis-server not runnable ({e}); apt-get install redis-server"))?;
    let r = RedisChild { child, port };
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err("redis-server did not start".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(r)
}

/// Share (%) of L2 requests per node while `cache` serves `keys`, every read
/// reaching L2 (its L1 entry dropped first, as for a fleet of instances
/// whose L1s miss). One warm-up pass fills L2 (and the hot-key copies).
async fn l2_shares(cache: &kuai_cache::TwoLevelCache, keys: &[String]) -> Result<Vec<f64>, String> {
    async fn pass(cache: &kuai_cache::TwoLevelCache, keys: &[String]) -> Result<(), String> {
        for k in keys {
            cache.l1().invalidate(k);
            cache
                .get_with(k, || async { Ok(Some(vec![7u8; 16])) })
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
    pass(cache, keys).await?;
    let before = cache.node_stats();
    pass(cache, keys).await?;
    let after = cache.node_stats();
    if after.iter().any(|n| n.errors > 0) {
        return Err("an L2 node failed during the run".into());
    }
    let reqs: Vec<u64> = after
        .iter()
        .zip(&before)
        .map(|(a, b)| a.requests - b.requests)
        .collect();
    let total = reqs.iter().sum::<u64>().max(1) as f64;
    Ok(reqs.iter().map(|&r| 100.0 * r as f64 / total).collect())
}

/// Multi-node L2: 3 spawned Redis nodes, Zipf(0.99) keys with one key at
/// 30 % of requests; the busiest node's share of L2 requests with hot-key
/// copies (3, on distinct nodes) vs without (the hot key's home node takes
/// all of its load).
fn multi_node_hot_key(s: &mut Section) {
    let name = "multi-node L2 (3 Redis nodes), Zipf(0.99) + one key at 30 %: busiest node's share of L2 requests";
    let nodes: Result<Vec<RedisChild>, String> = (0..3).map(|_| spawn_redis()).collect();
    let nodes = match nodes {
        Ok(n) => n,
        Err(e) => {
            s.record(Row::new(name, "%", Better::Lower).error(e));
            return;
        }
    };
    let rt = match kuai_benches::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            s.record(Row::new(name, "%", Better::Lower).error(e));
            return;
        }
    };
    let n = s.pick(4_000usize, 10_000);
    let zipf = trace::zipf(10_000, 0.99, n, 23);
    let keys: Vec<String> = zipf
        .iter()
        .enumerate()
        .map(|(i, k)| {
            // One request in ~3.3 is the very hot key (a fixed pattern).
            if (i * 3) % 10 < 3 {
                "the-hot-key".to_string()
            } else {
                format!("k{k}")
            }
        })
        .collect();
    let urls: Vec<String> = nodes
        .iter()
        .map(|r| format!("redis://127.0.0.1:{}/", r.port))
        .collect();
    let out: Result<(Vec<f64>, Vec<f64>), String> = rt.block_on(async {
        let cache = |copies: usize, ns: &str| {
            kuai_cache::TwoLevelCache::new(kuai_cache::TwoLevelConfig {
                namespace: ns.to_string(),
                hot_copies: copies,
                l1_capacity: 1_000,
                ..kuai_cache::TwoLevelConfig::with_nodes(urls.clone())
            })
        };
        let without = cache(1, "single").await.map_err(|e| e.to_string())?;
        let with = cache(3, "copies").await.map_err(|e| e.to_string())?;
        Ok((
            l2_shares(&without, &keys).await?,
            l2_shares(&with, &keys).await?,
        ))
    });
    drop(nodes);
    let fmt = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.1}"))
            .collect::<Vec<_>>()
            .join("/")
    };
    let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    match out {
        Ok((without, with)) => s.record(
            Row::new(name, "%", Better::Lower)
                .peer("same L2, no hot-key copies", max(&without))
                .kuai(max(&with))
                .param("requests", n as u64)
                .param("hot_copies", 3u64)
                .param("shares_without", fmt(&without))
                .param("shares_with", fmt(&with))
                .note("ideal 33.3 %; every read reaches L2 (L1 entry dropped first)"),
        ),
        Err(e) => s.record(Row::new(name, "%", Better::Lower).error(e)),
    }
}

/// Multi-level rows: need Redis at 127.0.0.1:6379 (`--services`).
fn multi_level(s: &mut Section) {
    // Spawns its own Redis nodes: runs with or without --services.
    multi_node_hot_key(s);
    let services = std::env::args().any(|a| a == "--services")
        || std::env::var("KUAI_BENCH_SERVICES").is_ok_and(|v| v == "1");
    if !services {
        s.record(
            Row::new("multi-level L1 + Redis", "%", Better::Higher)
                .error("needs Redis: run with --services (redis-server on 127.0.0.1:6379)"),
        );
        return;
    }
    let rt = match kuai_benches::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            s.record(Row::new("multi-level", "%", Better::Higher).error(e));
            return;
        }
    };
    let n = s.pick(20_000usize, 100_000);
    let keys = trace::zipf(10_000, 0.99, n, 11);
    let out: Result<Vec<Row>, String> = rt.block_on(async {
        let ns = format!("kuai-bench-{}", std::process::id());
        let two = kuai_cache::TwoLevelCache::new(kuai_cache::TwoLevelConfig {
            namespace: ns.clone(),
            l1_capacity: 1_000,
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
        let client = redis::Client::open("redis://127.0.0.1:6379/").map_err(|e| e.to_string())?;
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| format!("redis not reachable: {e}"))?;
        // L1 + Redis
        let t0 = Instant::now();
        for &k in &keys {
            let key = k.to_string();
            two.get_with(&key, || async move { Ok(Some(k.to_le_bytes().to_vec())) })
                .await
                .map_err(|e| e.to_string())?;
        }
        let two_us = t0.elapsed().as_secs_f64() * 1e6 / n as f64;
        let st = two.stats();
        let l1_ratio = 100.0 * st.l1_hits as f64 / n as f64;
        // Redis only (cache-aside against Redis, same source).
        let t0 = Instant::now();
        for &k in &keys {
            let key = format!("{ns}:ro:{k}");
            let got: Option<Vec<u8>> = redis::cmd("GET")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .map_err(|e| e.to_string())?;
            if got.is_none() {
                let _: () = redis::cmd("SET")
                    .arg(&key)
                    .arg(k.to_le_bytes().to_vec())
                    .arg("PX")
                    .arg(600_000)
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
        let redis_us = t0.elapsed().as_secs_f64() * 1e6 / n as f64;
        // moka as the L1 at the same capacity, for the hit-ratio row.
        let moka_ratio = moka_ratio(&keys, 1_000);
        // Fail-open: Redis "stopped" (nothing listens on port 1).
        let down = kuai_cache::TwoLevelCache::new(kuai_cache::TwoLevelConfig {
            url: "redis://127.0.0.1:1/".into(),
            namespace: ns.clone(),
            l1_capacity: 1_000,
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
        let m = n.min(5_000);
        let t0 = Instant::now();
        for &k in keys.iter().take(m) {
            let key = k.to_string();
            down.get_with(&key, || async move { Ok(Some(k.to_le_bytes().to_vec())) })
                .await
                .map_err(|e| e.to_string())?;
        }
        let down_us = t0.elapsed().as_secs_f64() * 1e6 / m as f64;
        let dead = redis::Client::open("redis://127.0.0.1:1/").map_err(|e| e.to_string())?;
        let t0 = Instant::now();
        let mut failures = 0u64;
        for _ in 0..m.min(500) {
            let r = tokio::time::timeout(
                Duration::from_millis(100),
                dead.get_multiplexed_async_connection(),
            )
            .await;
            if !matches!(r, Ok(Ok(_))) {
                failures += 1;
            }
        }
        let dead_us = t0.elapsed().as_secs_f64() * 1e6 / m.min(500) as f64;
        Ok(vec![
            Row::new(
                "multi-level Zipf(0.99): L1 hit ratio (L1 = 10% of keys)",
                "%",
                Better::Higher,
            )
            .seed(94.0)
            .peer("moka as L1, same capacity", moka_ratio)
            .kuai(l1_ratio)
            .param("requests", n as u64)
            .note("seed: 94 % L1 hit ratio in its live-streaming service"),
            Row::new(
                "multi-level Zipf(0.99): mean get latency",
                "us",
                Better::Lower,
            )
            .peer("Redis only", redis_us)
            .kuai(two_us)
            .param("requests", n as u64),
            Row::new(
                "fail-open: mean get latency with Redis down",
                "us",
                Better::Lower,
            )
            .peer("Redis-only client, 100 ms timeout", dead_us)
            .kuai(down_us)
            .param("requests", m as u64)
            .param("peer_failures", failures),
        ])
    });
    match out {
        Ok(rows) => rows.into_iter().for_each(|r| s.record(r)),
        Err(e) => s.record(Row::new("multi-level L1 + Redis", "%", Better::Higher).error(e)),
    }
}

fn main() {
    let mut s = Section::from_args(SECTION);
    // `cargo bench -p kuai-benches --bench cache -- --only-multi-level`
    if std::env::args().any(|a| a == "--only-multi-level") {
        multi_level(&mut s);
        return;
    }
    let t0 = Instant::now();
    hit_ratios(&mut s);
    let t1 = Instant::now();
    throughput(&mut s);
    let t2 = Instant::now();
    memory_bound(&mut s);
    stampede(&mut s);
    multi_level(&mut s);
    eprintln!(
        "cache section: hit ratios {:.1}s, throughput {:.1}s, total {:.1}s",
        (t1 - t0).as_secs_f64(),
        (t2 - t1).as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
}
