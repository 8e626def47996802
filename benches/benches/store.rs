//! The store section of `cargo xtask bench`.
//!
//! * Timelines on a synthetic power-law follow graph (embedded backend):
//!   write cost (inbox inserts per post), home-read latency p50/p99 and
//!   entry storage for push vs pull vs hybrid fan-out.
//! * Read/write splitting on a real PostgreSQL primary + hot standby (only
//!   with `KUAI_BENCH_SERVICES=1`): read throughput with one replica vs
//!   primary-only, and the fraction of read-your-writes reads that had to
//!   go to the primary.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kuai_benches::{Better, Row, Section};
use kuai_store::{FanoutStrategy, StoreError, Timeline};

/// splitmix64: a tiny deterministic generator (no `rand` dependency).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A follow graph: `celebs` accounts followed by everyone, plus power-law
/// out-degrees (Pareto, alpha 1.2, min 5) whose targets are Zipf(1)-ranked,
/// so in-degrees are power-law too.
struct Graph {
    users: u64,
    edges: Vec<(u64, u64)>,
    max_followers: usize,
    max_followees: usize,
}

fn graph(users: u64, celebs: u64, max_out: u64, rng: &mut Rng) -> Graph {
    let mut edges = Vec::new();
    let mut indeg = vec![0usize; users as usize];
    let mut max_followees = 0;
    let ln_n = ((users - celebs) as f64).ln();
    for u in 0..users {
        let mut mine = std::collections::BTreeSet::new();
        for c in 0..celebs {
            if c != u {
                mine.insert(c);
            }
        }
        let d = ((5.0 / rng.unit().max(1e-12).powf(1.0 / 1.2)) as u64).min(max_out);
        for _ in 0..d {
            // Zipf(1) rank over the ordinary accounts: rank = n^U.
            let rank = (rng.unit() * ln_n).exp() as u64;
            let target = celebs + rank.saturating_sub(1).min(users - celebs - 1);
            if target != u {
                mine.insert(target);
            }
        }
        max_followees = max_followees.max(mine.len());
        for t in mine {
            indeg[t as usize] += 1;
            edges.push((u, t));
        }
    }
    Graph {
        users,
        max_followers: indeg.iter().copied().max().unwrap_or(0),
        edges,
        max_followees,
    }
}

/// Post authors: half uniform over users, half proportional to follower
/// count (active accounts have audiences) — the celebrity-heavy workload.
fn authors(g: &Graph, posts: usize, rng: &mut Rng) -> Vec<u64> {
    (0..posts)
        .map(|i| {
            if i % 2 == 0 {
                rng.below(g.users)
            } else {
                g.edges[rng.below(g.edges.len() as u64) as usize].1
            }
        })
        .collect()
}

#[derive(Debug, Clone, Copy)]
struct Measured {
    inserts_per_post: f64,
    write_us_per_post: f64,
    p50_us: f64,
    p99_us: f64,
    entry_mb: f64,
}

fn run(
    strategy: FanoutStrategy,
    g: &Graph,
    posts: &[u64],
    readers: &[u64],
) -> Result<Measured, StoreError> {
    let tl = Timeline::builder()
        .strategy(strategy)
        .workers(1)
        .queue_capacity(1 << 20)
        .build()?;
    for &(a, b) in &g.edges {
        tl.follow(a, b)?;
    }
    let t0 = Instant::now();
    for &a in posts {
        loop {
            match tl.post(a) {
                Ok(_) => break,
                Err(StoreError::Full(_)) => tl.flush(),
                Err(e) => return Err(e),
            }
        }
    }
    tl.flush();
    let write = t0.elapsed();
    let st = tl.stats();
    // Warm up, then time each read.
    for &u in readers.iter().take(200) {
        let _ = tl.home(u, None, 50)?;
    }
    let mut lat: Vec<f64> = Vec::with_capacity(readers.len());
    for &u in readers {
        let t = Instant::now();
        let page = tl.home(u, None, 50)?;
        lat.push(t.elapsed().as_secs_f64() * 1e6);
        std::hint::black_box(page);
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    Ok(Measured {
        inserts_per_post: st.inbox_inserts as f64 / posts.len() as f64,
        write_us_per_post: write.as_secs_f64() * 1e6 / posts.len() as f64,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        entry_mb: st.entry_bytes() as f64 / 1e6,
    })
}

fn timelines(s: &mut Section) {
    let users: u64 = s.pick(50_000, 110_000);
    let n_posts: usize = s.pick(600, 2_000);
    let n_reads: usize = s.pick(3_000, 10_000);
    let max_out: u64 = s.pick(2_000, 3_000);
    let threshold = s.pick(5_000, 10_000);
    let mut rng = Rng(0x6b75_6169);
    let t = Instant::now();
    let g = graph(users, 5, max_out, &mut rng);
    let posts = authors(&g, n_posts, &mut rng);
    let readers: Vec<u64> = (0..n_reads).map(|_| rng.below(users)).collect();
    eprintln!(
        "store: graph {} users, {} follows, max followers {}, max followees {} ({:.1}s)",
        users,
        g.edges.len(),
        g.max_followers,
        g.max_followees,
        t.elapsed().as_secs_f64()
    );
    let hybrid = FanoutStrategy::Hybrid { threshold };
    let results: Vec<Result<Measured, StoreError>> =
        [FanoutStrategy::Push, FanoutStrategy::Pull, hybrid]
            .into_iter()
            .map(|st| {
                let t = Instant::now();
                let r = run(st, &g, &posts, &readers);
                eprintln!("store: {st:?}: {r:?} ({:.1}s)", t.elapsed().as_secs_f64());
                r
            })
            .collect();
    let params = |row: Row| {
        row.param("users", users)
            .param("follows", g.edges.len() as u64)
            .param("max_followers", g.max_followers as u64)
            .param("posts", n_posts as u64)
            .param("reads", n_reads as u64)
            .param("hybrid_threshold", threshold as u64)
            .param("page", 50)
            .param("authors", "half uniform, half proportional to followers")
    };
    match (&results[0], &results[1], &results[2]) {
        (Ok(push), Ok(pull), Ok(hyb)) => {
            s.record(params(
                Row::new(
                    "timeline write cost: inbox inserts per post (hybrid vs push)",
                    "inserts/post",
                    Better::Lower,
                )
                .peer("push (fan-out-on-write)", push.inserts_per_post)
                .kuai(hyb.inserts_per_post)
                .note("target: hybrid ≤ 1/10 of push (ratio ≥ 10); pull does 0 inserts"),
            ));
            s.record(params(
                Row::new(
                    "timeline post + fan-out time per post (hybrid vs push)",
                    "us",
                    Better::Lower,
                )
                .peer("push (fan-out-on-write)", push.write_us_per_post)
                .kuai(hyb.write_us_per_post)
                .param("pull_us", pull.write_us_per_post),
            ));
            s.record(params(
                Row::new(
                    "timeline home read p99 (hybrid vs pull)",
                    "us",
                    Better::Lower,
                )
                .peer("pull (fan-out-on-read)", pull.p99_us)
                .kuai(hyb.p99_us)
                .note("target: hybrid ≤ 1/5 of pull (ratio ≥ 5)"),
            ));
            s.record(params(
                Row::new(
                    "timeline home read p50 (hybrid vs pull)",
                    "us",
                    Better::Lower,
                )
                .peer("pull (fan-out-on-read)", pull.p50_us)
                .kuai(hyb.p50_us),
            ));
            s.record(params(
                Row::new(
                    "timeline home read p99 (hybrid vs push)",
                    "us",
                    Better::Lower,
                )
                .peer("push (fan-out-on-write)", push.p99_us)
                .kuai(hyb.p99_us)
                .note("push is the read-optimal extreme; hybrid pays a small merge"),
            ));
            s.record(params(
                Row::new(
                    "timeline entry storage (hybrid vs push)",
                    "MB",
                    Better::Lower,
                )
                .peer("push (fan-out-on-write)", push.entry_mb)
                .kuai(hyb.entry_mb)
                .param("pull_mb", pull.entry_mb),
            ));
        }
        (a, b, c) => {
            let why = [a, b, c]
                .iter()
                .filter_map(|r| r.as_ref().err().map(|e| e.to_string()))
                .collect::<Vec<_>>()
                .join("; ");
            s.record(params(
                Row::new("timeline push vs pull vs hybrid", "us", Better::Lower).error(why),
            ));
        }
    }
}

mod pg {
    use super::*;
    use kuai_store::pg_standby::{PrimaryAddr, TempStandby};
    use kuai_store::{Consistency, PgKvTable, PgNode, Router, RoutingPolicy, Session, Target};

    const CLIENTS: usize = 8;

    async fn read_throughput(
        router: Arc<Router<PgNode>>,
        table: PgKvTable,
        keys: u64,
        dur: Duration,
    ) -> Result<f64, String> {
        let until = Instant::now() + dur;
        let mut tasks = Vec::new();
        for c in 0..CLIENTS as u64 {
            let (router, table) = (router.clone(), table.clone());
            tasks.push(tokio::spawn(async move {
                let mut n = 0u64;
                let mut s = Session::new();
                let mut k = c;
                while Instant::now() < until {
                    k = (k * 31 + 7) % keys;
                    let key = format!("k{k}");
                    let t = table.clone();
                    router
                        .read(&mut s, Consistency::Eventual, |node| {
                            let (t, key) = (t.clone(), key.clone());
                            async move { t.get(&node, &key).await }
                        })
                        .await
                        .map_err(|e| e.to_string())?;
                    n += 1;
                }
                Ok::<u64, String>(n)
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await.map_err(|e| e.to_string())??;
        }
        Ok(total as f64 / dur.as_secs_f64())
    }

    /// Each client writes its own key then immediately reads it back under
    /// read-your-writes, `reads_per_write` times.
    async fn ryw_primary_fraction(
        router: Arc<Router<PgNode>>,
        table: PgKvTable,
        reads_per_write: u64,
        dur: Duration,
    ) -> Result<(f64, u64, f64), String> {
        let until = Instant::now() + dur;
        let mut tasks = Vec::new();
        for c in 0..CLIENTS as u64 {
            let (router, table) = (router.clone(), table.clone());
            tasks.push(tokio::spawn(async move {
                let mut s = Session::new();
                let (mut primary, mut total, mut stale) = (0u64, 0u64, 0u64);
                let mut i = 0u64;
                while Instant::now() < until {
                    i += 1;
                    let key = format!("ryw{c}");
                    let val = format!("{i}");
                    let (t, k, v) = (table.clone(), key.clone(), val.clone());
                    router
                        .write(&mut s, |p| async move { t.put(&p, &k, &v).await })
                        .await
                        .map_err(|e| e.to_string())?;
                    for _ in 0..reads_per_write {
                        let (t, k) = (table.clone(), key.clone());
                        let r = router
                            .read(&mut s, Consistency::ReadYourWrites, |node| {
                                let (t, k) = (t.clone(), k.clone());
                                async move { t.get(&node, &k).await }
                            })
                            .await
                            .map_err(|e| e.to_string())?;
                        total += 1;
                        primary += u64::from(r.target == Target::Primary);
                        stale += u64::from(r.value.as_deref() != Some(val.as_str()));
                    }
                }
                Ok::<(u64, u64, u64), String>((primary, total, stale))
            }));
        }
        let (mut p, mut t, mut st) = (0, 0, 0);
        for task in tasks {
            let (a, b, c) = task.await.map_err(|e| e.to_string())??;
            p += a;
            t += b;
            st += c;
        }
        // Each client writes once per `reads_per_write` reads.
        let writes_per_s = (t / reads_per_write.max(1)) as f64 / dur.as_secs_f64();
        Ok((p as f64 / t.max(1) as f64, st, writes_per_s))
    }

    pub(super) fn read_write_split(s: &mut Section) {
        let dur = Duration::from_millis(s.pick(450, 3_000));
        let addr = PrimaryAddr::default();
        let sb = match TempStandby::start(&addr) {
            Ok(sb) => sb,
            Err(e) => {
                s.record(
                    Row::new(
                        "PostgreSQL read throughput, 1 standby vs primary-only",
                        "reads/s",
                        Better::Higher,
                    )
                    .error(e),
                );
                return;
            }
        };
        let rt = match kuai_benches::runtime() {
            Ok(rt) => rt,
            Err(e) => {
                s.record(
                    Row::new(
                        "PostgreSQL read throughput, 1 standby vs primary-only",
                        "reads/s",
                        Better::Higher,
                    )
                    .error(e),
                );
                return;
            }
        };
        let result = rt.block_on(async {
            let primary = Arc::new(
                PgNode::with_connections("primary", &addr.conn_string(), 4)
                    .map_err(|e| e.to_string())?,
            );
            let standby = Arc::new(
                PgNode::with_connections("standby", &sb.conn_string("postgres"), 4)
                    .map_err(|e| e.to_string())?,
            );
            let table = PgKvTable::new(&format!("kuai_bench_rw_{}", std::process::id()))
                .map_err(|e| e.to_string())?;
            table.create(&primary).await.map_err(|e| e.to_string())?;
            let keys = 1000u64;
            let c = primary.client().await.map_err(|e| e.to_string())?;
            c.batch_execute(&format!(
                "INSERT INTO {} SELECT 'k' || g, 'value' FROM generate_series(0, {}) g",
                table.name(),
                keys - 1
            ))
            .await
            .map_err(|e| e.to_string())?;
            // Wait for the standby to have the rows.
            let deadline = Instant::now() + Duration::from_secs(30);
            while table
                .get(&standby, &format!("k{}", keys - 1))
                .await
                .ok()
                .flatten()
                .is_none()
            {
                if Instant::now() > deadline {
                    return Err("standby did not catch up".to_string());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let only = Arc::new(
                Router::builder()
                    .policy(RoutingPolicy::PrimaryOnly)
                    .build(primary.clone(), vec![standby.clone()]),
            );
            let split = Arc::new(Router::builder().build(primary.clone(), vec![standby.clone()]));
            // Alternate the two so background noise does not favour either.
            let (mut p, mut r) = (Vec::new(), Vec::new());
            for _ in 0..3 {
                p.push(read_throughput(only.clone(), table.clone(), keys, dur / 3).await?);
                r.push(read_throughput(split.clone(), table.clone(), keys, dur / 3).await?);
            }
            p.sort_by(f64::total_cmp);
            r.sort_by(f64::total_cmp);
            let (p, r) = (p[1], r[1]);
            // No waiting: how often has the standby not yet replayed a write
            // that the same client made just before?
            let eager = Arc::new(
                Router::builder()
                    .rw_wait(Duration::ZERO)
                    .build(primary.clone(), vec![standby.clone()]),
            );
            let (frac, stale, wps) = ryw_primary_fraction(eager, table.clone(), 4, dur).await?;
            let c = primary.client().await.map_err(|e| e.to_string())?;
            let _ = c
                .batch_execute(&format!("DROP TABLE {}", table.name()))
                .await;
            Ok::<_, String>((p, r, frac, stale, wps))
        });
        drop(rt);
        drop(sb);
        match result {
            Ok((p, r, frac, stale, wps)) => {
                s.record(
                    Row::new("PostgreSQL read throughput, reads on 1 hot standby vs primary-only", "reads/s", Better::Higher)
                        .peer("primary-only", p)
                        .kuai(r)
                        .param("clients", CLIENTS as u64)
                        .param("connections_per_node", 4)
                        .note("both servers share this machine's cores: the split moves load off the primary more than it adds capacity here"),
                );
                s.record(
                    Row::new("PostgreSQL reads routed to the primary under read-your-writes (write then 4 reads)", "% of reads", Better::Lower)
                        .peer("primary-only routing", 100.0)
                        .kuai(frac * 100.0)
                        .param("clients", CLIENTS as u64)
                        .param("stale_reads", stale)
                        .param("writes_per_s", wps.round())
                        .note("rw_wait 0: a read the standby cannot serve yet goes straight to the primary; stale reads must be 0"),
                );
            }
            Err(e) => s.record(
                Row::new(
                    "PostgreSQL read throughput, 1 standby vs primary-only",
                    "reads/s",
                    Better::Higher,
                )
                .error(e),
            ),
        }
    }
}

fn main() {
    let mut s = Section::from_args("store");
    timelines(&mut s);
    if std::env::var("KUAI_BENCH_SERVICES").is_ok_and(|v| v == "1") {
        pg::read_write_split(&mut s);
    }
}
