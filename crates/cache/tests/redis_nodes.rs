//! A multi-node Redis L2: placement by rendezvous hashing, per-node fail-open
//! and breakers, hot-key copies on distinct nodes.
//!
//! Each test spawns its own `redis-server` processes on free loopback ports
//! (`--save '' --appendonly no`), killed when the test ends. These tests FAIL
//! when `redis-server` cannot be started: install it (`apt-get install
//! redis-server`, `brew install redis`) or point `KUAI_REDIS_SERVER` at the
//! binary.
#![cfg(feature = "redis")]

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kuai_cache::{L2NodeStats, TwoLevelCache, TwoLevelConfig};

/// A `redis-server` child process on a loopback port, killed on drop.
struct RedisNode {
    port: u16,
    child: Option<Child>,
}

fn redis_server_binary() -> String {
    if let Ok(p) = std::env::var("KUAI_REDIS_SERVER") {
        return p;
    }
    if std::path::Path::new("/usr/bin/redis-server").exists() {
        return "/usr/bin/redis-server".into();
    }
    "redis-server".into()
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral loopback port");
    l.local_addr().expect("local addr").port()
}

/// The `process_id` that the server on `port` reports in `INFO server`.
fn server_pid(port: u16) -> Option<u32> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    s.write_all(b"INFO server\r\n").ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some(i) = text.find("process_id:") {
            let rest = &text[i + "process_id:".len()..];
            if let Some(end) = rest.find("\r\n") {
                return rest[..end].trim().parse().ok();
            }
        }
    }
}

impl RedisNode {
    /// A server on a free port (another port if it loses a race for one).
    fn spawn() -> Self {
        for _ in 0..5 {
            let mut node = RedisNode {
                port: free_port(),
                child: None,
            };
            if node.start() {
                return node;
            }
        }
        panic!("redis-server could not bind a free loopback port in 5 tries");
    }

    /// Starts the server on `self.port`; `false` if it exited (port taken).
    fn start(&mut self) -> bool {
        let bin = redis_server_binary();
        let child = Command::new(&bin)
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start `{bin}` ({e}). The multi-node L2 tests need a \
                     redis-server binary: install it (`apt-get install redis-server`, \
                     `brew install redis`) or set KUAI_REDIS_SERVER=/path/to/redis-server"
                )
            });
        self.child = Some(child);
        self.wait_ready()
    }

    /// Waits until *our* server answers on the port (its `INFO` names our
    /// child's pid, not another test's server that won the port); `false`
    /// if the process exited first.
    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let Some(child) = self.child.as_mut() else {
                return false;
            };
            if let Ok(Some(_)) = child.try_wait() {
                self.child = None;
                return false;
            }
            if server_pid(self.port) == Some(child.id()) {
                return true;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} never answered",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port (empty: no persistence).
    fn restart(&mut self) {
        self.kill();
        assert!(
            self.start(),
            "redis-server could not restart on port {}",
            self.port
        );
    }
}

impl RedisNode {
    /// Sends `signal` (`STOP`, `CONT`) to the server process.
    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let ok = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -{signal} {pid} failed");
    }
}

impl Drop for RedisNode {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn_nodes(n: usize) -> Vec<RedisNode> {
    (0..n).map(|_| RedisNode::spawn()).collect()
}

fn cfg(nodes: &[RedisNode]) -> TwoLevelConfig {
    TwoLevelConfig {
        namespace: "nodes".into(),
        ..TwoLevelConfig::with_nodes(nodes.iter().map(RedisNode::url))
    }
}

fn stats_of<'a>(stats: &'a [L2NodeStats], url: &str) -> &'a L2NodeStats {
    stats
        .iter()
        .find(|s| s.url == url)
        .unwrap_or_else(|| panic!("no stats for {url}"))
}

/// Bounds an operation so a hang fails the test instead of stalling it.
async fn bounded<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .unwrap_or_else(|_| panic!("{what} hung"))
}

/// Counts, on `url`, the Redis keys that hold exactly `value`.
async fn keys_holding(url: &str, value: &[u8]) -> usize {
    let client = redis::Client::open(url).expect("url");
    let mut c = client
        .get_multiplexed_async_connection()
        .await
        .expect("node up");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut c)
        .await
        .expect("KEYS");
    let mut n = 0;
    for k in keys {
        let v: Option<Vec<u8>> = redis::cmd("GET")
            .arg(&k)
            .query_async(&mut c)
            .await
            .expect("GET");
        if v.as_deref() == Some(value) {
            n += 1;
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_spread_over_every_node_and_are_served_from_their_home() {
    let nodes = spawn_nodes(3);
    let c = TwoLevelCache::new(TwoLevelConfig {
        hot_copies: 1,
        ..cfg(&nodes)
    })
    .await
    .expect("config");
    let keys: Vec<String> = (0..300).map(|i| format!("k{i}")).collect();
    for k in &keys {
        c.set(k, k.as_bytes().to_vec()).await.expect("nodes up");
    }
    // Every node is the home of some keys, and holds exactly those.
    for n in &nodes {
        let homed = keys.iter().filter(|k| c.home_node(k) == n.url()).count();
        assert!(
            homed > 50,
            "{} is home of only {homed} of 300 keys",
            n.url()
        );
        let client = redis::Client::open(n.url()).expect("url");
        let mut conn = client.get_multiplexed_async_connection().await.expect("up");
        for k in &keys {
            let v: Option<Vec<u8>> = redis::cmd("GET")
                .arg(format!("nodes:{k}"))
                .query_async(&mut conn)
                .await
                .expect("GET");
            assert_eq!(
                v.is_some(),
                c.home_node(k) == n.url(),
                "{k} is on {} iff that is its home",
                n.url()
            );
        }
    }
    // A second instance reads every key from L2.
    let other = TwoLevelCache::new(TwoLevelConfig {
        hot_copies: 1,
        ..cfg(&nodes)
    })
    .await
    .expect("config");
    for k in &keys {
        assert_eq!(other.get(k).await.as_deref(), Some(k.as_bytes()));
    }
    assert_eq!(other.stats().l2_hits, 300);
    let stats = other.node_stats();
    for n in &nodes {
        let homed = keys.iter().filter(|k| c.home_node(k) == n.url()).count() as u64;
        assert_eq!(stats_of(&stats, &n.url()).hits, homed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_key_has_copies_on_distinct_nodes_and_reads_hit_them_all() {
    let nodes = spawn_nodes(4);
    let c = TwoLevelCache::new(TwoLevelConfig {
        hot_copies: 3,
        // Hot after 20 L2 reads in a window of 200.
        hot_window: 200,
        hot_threshold: 20,
        ..cfg(&nodes)
    })
    .await
    .expect("config");
    let value = b"the-hot-value".to_vec();
    c.set("hot", value.clone()).await.expect("nodes up");
    let copy_nodes: Vec<String> = c.copy_nodes("hot").iter().map(|s| s.to_string()).collect();
    assert_eq!(copy_nodes.len(), 3);
    assert_eq!(copy_nodes.iter().collect::<HashSet<_>>().len(), 3);
    assert!(!c.is_hot("hot"));
    // Every read reaches L2 (as if from many instances whose L1 missed).
    for _ in 0..30 {
        c.l1().invalidate("hot");
        assert_eq!(c.get("hot").await.as_deref(), Some(&value[..]));
    }
    assert!(c.is_hot("hot"), "the detector found the hot key");
    let before = c.node_stats();
    for _ in 0..90 {
        c.l1().invalidate("hot");
        assert_eq!(c.get("hot").await.as_deref(), Some(&value[..]));
    }
    let after = c.node_stats();
    for url in &copy_nodes {
        let hits = stats_of(&after, url).hits - stats_of(&before, url).hits;
        assert!(hits >= 20, "copy node {url} served {hits} of 90 reads");
    }
    let s = c.stats();
    assert!(s.copy_fills >= 2 && s.copy_hits > 0, "{s:?}");
    // The copies really are three distinct Redis keys on three nodes.
    for n in &nodes {
        let held = keys_holding(&n.url(), &value).await;
        let expect = usize::from(copy_nodes.contains(&n.url()));
        assert_eq!(held, expect, "{} holds {held} copies", n.url());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_write_no_copy_returns_the_old_value() {
    let nodes = spawn_nodes(3);
    let writer = TwoLevelCache::new(cfg(&nodes)).await.expect("config");
    let reader = TwoLevelCache::new(cfg(&nodes)).await.expect("config");
    // Only the reader thinks the key is hot: the writer does not know about
    // the copies and must still reach them.
    reader.mark_hot("k");
    for round in 0..20u32 {
        let v = format!("v{round}").into_bytes();
        writer.set("k", v.clone()).await.expect("nodes up");
        // Six reads: every copy twice (round-robin), each after an L1 miss.
        for _ in 0..6 {
            reader.l1().invalidate("k");
            assert_eq!(
                reader.get("k").await.as_deref(),
                Some(&v[..]),
                "round {round}: a copy served an old value"
            );
        }
    }
    let s = reader.stats();
    assert!(s.copy_hits > 0 && s.copy_fills > 0, "{s:?}");
    // Invalidation deletes every copy too.
    writer.invalidate("k").await.expect("nodes up");
    for _ in 0..6 {
        reader.l1().invalidate("k");
        assert_eq!(reader.get("k").await, None, "a copy survived invalidate");
    }
    for n in &nodes {
        assert_eq!(keys_holding(&n.url(), b"v19").await, 0);
    }
    // The writer marking it hot refills the copies right after its write.
    writer.mark_hot("k");
    writer.set("k", b"w".to_vec()).await.expect("nodes up");
    let held: usize = {
        let mut n_held = 0;
        for n in &nodes {
            n_held += keys_holding(&n.url(), b"w").await;
        }
        n_held
    };
    assert_eq!(held, 3, "home + 2 copies written by the hot write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_fails_open_only_for_its_keys_and_recovers_after_restart() {
    let mut nodes = spawn_nodes(3);
    let config = TwoLevelConfig {
        breaker_threshold: 2,
        breaker_cooldown: Duration::from_millis(200),
        ..cfg(&nodes)
    };
    let a = TwoLevelCache::new(config.clone()).await.expect("config");
    let b = TwoLevelCache::new(config).await.expect("config");
    let keys: Vec<String> = (0..60).map(|i| format!("key{i}")).collect();
    for k in &keys {
        bounded("set", a.set(k, b"old".to_vec()))
            .await
            .expect("nodes up");
    }
    let dead_url = nodes[0].url();
    let (dead, live): (Vec<&String>, Vec<&String>) =
        keys.iter().partition(|k| a.home_node(k) == dead_url);
    assert!(!dead.is_empty() && !live.is_empty());
    nodes[0].kill();

    // Keys of the live nodes still come from L2; keys of the dead node fail
    // open to the source. Nothing hangs.
    a.l1().invalidate_all();
    let before = a.stats();
    for k in &live {
        let v = bounded("get", a.get_with(k, || async { Ok(Some(b"src".to_vec())) }))
            .await
            .expect("served");
        assert_eq!(v.as_deref(), Some(&b"old"[..]), "{k} is still in L2");
    }
    for k in &dead {
        let v = bounded("get", a.get_with(k, || async { Ok(Some(b"src".to_vec())) }))
            .await
            .expect("fail-open: served from the source");
        assert_eq!(v.as_deref(), Some(&b"src"[..]));
    }
    let after = a.stats();
    assert_eq!(after.l2_hits - before.l2_hits, live.len() as u64);
    assert_eq!(after.source_loads - before.source_loads, dead.len() as u64);
    let stats = a.node_stats();
    let down = stats_of(&stats, &dead_url);
    assert!(down.breaker_open, "{down:?}");
    assert!(down.errors >= 2 && down.skipped > 0, "{down:?}");
    for n in &nodes[1..] {
        let s = stats_of(&stats, &n.url());
        assert_eq!(s.errors, 0, "{s:?}");
        assert!(!s.breaker_open);
    }
    assert!(!a.l2_available());

    // A hot key of a live node whose copies include the dead node: the reads
    // that pick the dead copy go to the home node instead.
    let hot = live[1].as_str();
    assert!(a.copy_nodes(hot).contains(&dead_url.as_str()));
    a.mark_hot(hot);
    let before = a.stats();
    for _ in 0..6 {
        a.l1().invalidate(hot);
        assert_eq!(
            bounded("get", a.get(hot)).await.as_deref(),
            Some(&b"old"[..])
        );
    }
    let after = a.stats();
    assert_eq!(after.l2_hits - before.l2_hits, 6, "{after:?}");
    assert!(
        after.copy_hits > before.copy_hits,
        "the live copy served too"
    );

    // Invalidations still reach the other instance through the live nodes.
    let k = live[0].as_str();
    assert_eq!(bounded("get", b.get(k)).await.as_deref(), Some(&b"old"[..]));
    assert!(b.l1().peek(k).is_some());
    bounded("set", a.set(k, b"new".to_vec()))
        .await
        .expect("the home node is up");
    let deadline = Instant::now() + Duration::from_secs(10);
    while b.l1().peek(k).is_some() {
        assert!(
            Instant::now() < deadline,
            "B's L1 copy was never invalidated"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(bounded("get", b.get(k)).await.as_deref(), Some(&b"new"[..]));
    // A write of a dead node's key reports the failure.
    assert!(bounded("set", a.set(dead[0], b"x".to_vec())).await.is_err());

    // Restart on the same port: after the cool-down the breaker's probe
    // succeeds and the node serves its keys again.
    nodes[0].restart();
    let k = dead[0].as_str();
    let deadline = Instant::now() + Duration::from_secs(10);
    while bounded("set", a.set(k, b"back".to_vec())).await.is_err() {
        assert!(Instant::now() < deadline, "the breaker never closed again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.l1().invalidate(k);
    let hits = a.stats().l2_hits;
    assert_eq!(
        bounded("get", a.get(k)).await.as_deref(),
        Some(&b"back"[..])
    );
    assert_eq!(a.stats().l2_hits, hits + 1, "served by the restarted node");
    assert!(!stats_of(&a.node_stats(), &dead_url).breaker_open);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_or_removing_a_node_moves_about_one_in_n_keys() {
    let nodes = spawn_nodes(4);
    let three = TwoLevelConfig {
        hot_copies: 1,
        ..cfg(&nodes[..3])
    };
    let c3 = TwoLevelCache::new(three).await.expect("config");
    let keys: Vec<String> = (0..600).map(|i| format!("m{i}")).collect();
    for k in &keys {
        c3.set(k, k.as_bytes().to_vec()).await.expect("nodes up");
    }

    // Add a fourth node: only the keys it wins move, about 1/4.
    let c4 = TwoLevelCache::new(TwoLevelConfig {
        hot_copies: 1,
        ..cfg(&nodes)
    })
    .await
    .expect("config");
    let new_url = nodes[3].url();
    let mut moved = 0;
    for k in &keys {
        let (before, after) = (c3.home_node(k), c4.home_node(k));
        if before != after {
            assert_eq!(after, new_url, "{k} moved between two old nodes");
            moved += 1;
        }
        // Real reads agree: unmoved keys hit L2, moved keys miss.
        let got = c4.get(k).await;
        assert_eq!(got.is_some(), before == after, "{k}");
    }
    assert!((100..=200).contains(&moved), "{moved} of 600 moved (≈150)");

    // Remove a node: only its keys move, about 1/3.
    let two = TwoLevelCache::new(TwoLevelConfig {
        hot_copies: 1,
        ..cfg(&nodes[1..3])
    })
    .await
    .expect("config");
    let gone = nodes[0].url();
    let mut moved = 0;
    for k in &keys {
        let (before, after) = (c3.home_node(k), two.home_node(k));
        if before == gone {
            moved += 1;
        } else {
            assert_eq!(before, after, "{k} moved off a node that stayed");
        }
        assert_eq!(two.get(k).await.is_some(), before != gone, "{k}");
    }
    assert!((140..=260).contains(&moved), "{moved} of 600 moved (≈200)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_node_times_out_and_only_its_keys_fail_open() {
    let nodes = spawn_nodes(3);
    let c = TwoLevelCache::new(TwoLevelConfig {
        hot_copies: 1,
        l2_timeout: Duration::from_millis(100),
        breaker_threshold: 2,
        breaker_cooldown: Duration::from_secs(60),
        ..cfg(&nodes)
    })
    .await
    .expect("config");
    let keys: Vec<String> = (0..30).map(|i| format!("s{i}")).collect();
    for k in &keys {
        c.set(k, b"v".to_vec()).await.expect("nodes up");
    }
    // The process is alive and its socket open, but it answers nothing.
    nodes[1].signal("STOP");
    let slow = nodes[1].url();
    c.l1().invalidate_all();
    for k in &keys {
        let v = bounded("get", c.get_with(k, || async { Ok(Some(b"src".to_vec())) }))
            .await
            .expect("served");
        let expect: &[u8] = if c.home_node(k) == slow { b"src" } else { b"v" };
        assert_eq!(v.as_deref(), Some(expect), "{k}");
    }
    let stats = c.node_stats();
    nodes[1].signal("CONT");
    let s = stats_of(&stats, &slow);
    assert!(
        s.errors >= 2 && s.breaker_open,
        "timed out, then skipped: {s:?}"
    );
    for n in [&nodes[0], &nodes[2]] {
        let s = stats_of(&stats, &n.url());
        assert_eq!((s.errors, s.breaker_open), (0, false), "{s:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_readers_of_hot_copies_never_go_back_past_a_finished_write() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    let nodes = spawn_nodes(3);
    let writer = TwoLevelCache::new(cfg(&nodes)).await.expect("config");
    writer.set("k", b"0".to_vec()).await.expect("nodes up");
    // The last write that has returned.
    let committed = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for _ in 0..3 {
        let r = TwoLevelCache::new(cfg(&nodes)).await.expect("config");
        r.mark_hot("k");
        let committed = Arc::clone(&committed);
        readers.push(tokio::spawn(async move {
            let mut reads = 0u64;
            loop {
                let floor = committed.load(Ordering::SeqCst);
                r.l1().invalidate("k");
                let v = bounded("get", r.get("k")).await.expect("always present");
                let v: u64 = std::str::from_utf8(&v)
                    .expect("utf8")
                    .parse()
                    .expect("number");
                assert!(v >= floor, "read {v} after write {floor} had returned");
                reads += 1;
                if floor == 150 {
                    return (reads, r.stats());
                }
            }
        }));
    }
    for v in 1..=150u64 {
        bounded("set", writer.set("k", v.to_string().into_bytes()))
            .await
            .expect("nodes up");
        committed.store(v, Ordering::SeqCst);
    }
    for t in readers {
        let (reads, s) = t.await.expect("reader");
        assert!(reads > 0);
        assert!(s.copy_hits + s.copy_fills > 0, "copies were used: {s:?}");
    }
}
