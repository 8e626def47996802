//! kuai's slot router against a real Redis Cluster (feature `redis`).
//!
//! Starts three `redis-server` masters in cluster mode on spare loopback
//! ports (from 7101 up), creates the cluster with `redis-cli --cluster
//! create`, and checks slot hashing, slot-table loading, routing, and
//! redirect handling during a live `redis-cli --cluster reshard`. The nodes
//! are stopped by a drop guard, also when an assertion fails.
#![cfg(feature = "redis")]

use std::collections::HashSet;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kuai_shard::{RedisCluster, RoutingTable, connect_node, key_slot};

const INSTALL_HINT: &str = "this test starts its own Redis Cluster nodes and needs `redis-server` and \
     `redis-cli` (Redis ≥ 7) on PATH: install them with `apt-get install redis-server` (Debian/Ubuntu), \
     `dnf install redis` (Fedora) or `brew install redis` (macOS); no running server is needed";

/// Stops the nodes and removes their directories when dropped.
struct ClusterGuard {
    nodes: Vec<Child>,
    dirs: Vec<PathBuf>,
    ports: Vec<u16>,
}

impl Drop for ClusterGuard {
    fn drop(&mut self) {
        for c in &mut self.nodes {
            let _ = c.kill();
            let _ = c.wait();
        }
        for d in &self.dirs {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

impl ClusterGuard {
    fn addrs(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect()
    }
}

fn port_free(p: u16) -> bool {
    TcpListener::bind(("127.0.0.1", p)).is_ok()
}

/// Three ports from 7101 up whose cluster-bus ports (+10000) are free too.
fn spare_ports() -> Vec<u16> {
    let mut out = Vec::new();
    let mut p = 7101u16;
    while out.len() < 3 && p < 7900 {
        if port_free(p) && port_free(p + 10_000) {
            out.push(p);
        }
        p += 1;
    }
    assert_eq!(
        out.len(),
        3,
        "no spare loopback ports between 7101 and 7900"
    );
    out
}

fn require_tools() {
    for tool in ["redis-server", "redis-cli"] {
        let ok = Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "`{tool}` not found: {INSTALL_HINT}");
    }
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        if start.elapsed() >= timeout {
            panic!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn start_cluster() -> ClusterGuard {
    require_tools();
    let ports = spare_ports();
    let mut guard = ClusterGuard {
        nodes: Vec::new(),
        dirs: Vec::new(),
        ports: ports.clone(),
    };
    for &p in &ports {
        let dir = std::env::temp_dir().join(format!("kuai-shard-redis-{}-{p}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        guard.dirs.push(dir.clone());
        let child = Command::new("redis-server")
            .args(["--port", &p.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
            ])
            .args([
                "--cluster-node-timeout",
                "5000",
                "--appendonly",
                "no",
                "--save",
                "",
            ])
            .args(["--daemonize", "no", "--protected-mode", "no"])
            .arg("--dir")
            .arg(&dir)
            .arg("--logfile")
            .arg(dir.join("redis.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting redis-server on port {p}: {e}; {INSTALL_HINT}"));
        guard.nodes.push(child);
    }
    for addr in guard.addrs() {
        wait_until(
            &format!("redis-server at {addr}"),
            Duration::from_secs(15),
            || {
                connect_node(&addr, Duration::from_secs(1))
                    .and_then(|mut c| {
                        redis::cmd("PING")
                            .query::<String>(&mut c)
                            .map_err(|e| kuai_shard::ShardError::Backend(e.to_string()))
                    })
                    .is_ok()
            },
        );
    }
    let out = Command::new("redis-cli")
        .arg("--cluster")
        .arg("create")
        .args(guard.addrs())
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .unwrap_or_else(|e| panic!("running redis-cli --cluster create: {e}"));
    assert!(
        out.status.success(),
        "redis-cli --cluster create failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let first = guard.addrs()[0].clone();
    wait_until(
        "the cluster to agree on its slots",
        Duration::from_secs(30),
        || {
            Command::new("redis-cli")
                .args(["--cluster", "check", &first])
                .output()
                .is_ok_and(|o| {
                    let s = String::from_utf8_lossy(&o.stdout);
                    o.status.success()
                        && s.contains("All nodes agree")
                        && s.contains("All 16384 slots covered")
                })
        },
    );
    for addr in guard.addrs() {
        wait_until(
            &format!("cluster_state:ok on {addr}"),
            Duration::from_secs(30),
            || {
                connect_node(&addr, Duration::from_secs(1))
                    .ok()
                    .and_then(|mut c| {
                        redis::cmd("CLUSTER")
                            .arg("INFO")
                            .query::<String>(&mut c)
                            .ok()
                    })
                    .is_some_and(|info| info.contains("cluster_state:ok"))
            },
        );
    }
    guard
}

fn slot_owners(t: &RoutingTable) -> Vec<String> {
    (0..16_384u32)
        .map(|s| t.owner(s).unwrap_or("").to_string())
        .collect()
}

fn check_keyslot(addr: &str) {
    let mut conn = connect_node(addr, Duration::from_secs(5)).unwrap();
    let mut keys: Vec<Vec<u8>> = Vec::new();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for i in 0..3000u32 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let len = (x % 24) as usize;
        // Random bytes, with braces mixed in often so hash-tag edge cases occur.
        let mut k: Vec<u8> = (0..len)
            .map(|j| match (x >> (j % 60)) % 7 {
                0 => b'{',
                1 => b'}',
                _ => (x >> (j % 56)) as u8,
            })
            .collect();
        if i % 3 == 0 {
            k = format!("{{user{}}}:cart:{i}", x % 1000).into_bytes();
        }
        keys.push(k);
    }
    keys.push(b"{}".to_vec());
    keys.push(b"{}{x}".to_vec());
    keys.push(b"{{x}}".to_vec());
    keys.push(b"".to_vec());
    let mut pipe = redis::pipe();
    for k in &keys {
        pipe.cmd("CLUSTER").arg("KEYSLOT").arg(k.as_slice());
    }
    let slots: Vec<u16> = pipe.query(&mut conn).unwrap();
    for (k, s) in keys.iter().zip(slots) {
        assert_eq!(key_slot(k), s, "CLUSTER KEYSLOT disagrees for key {k:?}");
    }
}

fn check_tables(addrs: &[String]) -> Vec<String> {
    let mut first: Option<Vec<String>> = None;
    for a in addrs {
        let mut c = connect_node(a, Duration::from_secs(5)).unwrap();
        let by_slots = slot_owners(&RedisCluster::load_table(&mut c, false).unwrap());
        let by_shards = slot_owners(&RedisCluster::load_table(&mut c, true).unwrap());
        assert_eq!(
            by_slots, by_shards,
            "CLUSTER SLOTS and CLUSTER SHARDS disagree on {a}"
        );
        if let Some(f) = &first {
            assert_eq!(f, &by_slots, "nodes disagree on the slot table");
        }
        first = Some(by_slots);
    }
    let owners = first.unwrap_or_default();
    let distinct: HashSet<&String> = owners.iter().collect();
    assert_eq!(distinct.len(), 3, "three masters should own slots");
    owners
}

fn check_routing(cluster: &RedisCluster, addrs: &[String]) {
    for i in 0..2000u32 {
        let key = format!("route:{i}");
        cluster
            .set(key.as_bytes(), i.to_string().as_bytes())
            .unwrap();
    }
    assert_eq!(
        cluster.router().stats().moved,
        0,
        "a fresh table routes without redirects"
    );
    // Each key is on the node kuai routed it to, and only there.
    let mut conns: Vec<(String, redis::Connection)> = addrs
        .iter()
        .map(|a| (a.clone(), connect_node(a, Duration::from_secs(5)).unwrap()))
        .collect();
    for i in (0..2000u32).step_by(7) {
        let key = format!("route:{i}");
        let owner = cluster.owner_of(key.as_bytes());
        for (addr, conn) in &mut conns {
            let r: redis::RedisResult<Option<String>> = redis::cmd("GET").arg(&key).query(conn);
            if *addr == owner {
                assert_eq!(
                    r.unwrap(),
                    Some(i.to_string()),
                    "{key} missing on its owner {owner}"
                );
            } else {
                let e = r.expect_err("a non-owner must redirect");
                assert_eq!(e.code(), Some("MOVED"), "{key} on {addr}: {e}");
            }
        }
    }
}

fn node_id(addr: &str) -> String {
    let mut c = connect_node(addr, Duration::from_secs(5)).unwrap();
    redis::cmd("CLUSTER").arg("MYID").query(&mut c).unwrap()
}

/// Keys written during the reshard aim at the slots being moved (the reshard
/// takes the source's lowest slots), so writes meet MIGRATING/IMPORTING slots.
fn wanted(i: u64) -> bool {
    i < 3000 || key_slot(format!("live:{i}").as_bytes()) < 1700
}

fn check_live_reshard(addrs: &[String], owners_before: &[String]) {
    let cluster = Arc::new(RedisCluster::connect(&[addrs[0].as_str()]).unwrap());
    // Data to migrate.
    for i in 0..3000u64 {
        cluster
            .set(format!("live:{i}").as_bytes(), format!("v{i}").as_bytes())
            .unwrap();
    }
    let written = Arc::new(AtomicU64::new(3000));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (cluster, written, stop) = (
            Arc::clone(&cluster),
            Arc::clone(&written),
            Arc::clone(&stop),
        );
        std::thread::spawn(move || -> Result<(), String> {
            let mut i = written.load(Ordering::Acquire);
            let mut reads = 0u64;
            while !stop.load(Ordering::Acquire) && i < 2_000_000 {
                if !wanted(i) {
                    i += 1;
                    continue;
                }
                let key = format!("live:{i}");
                cluster
                    .set(key.as_bytes(), format!("v{i}").as_bytes())
                    .map_err(|e| format!("SET {key}: {e}"))?;
                i += 1;
                written.store(i, Ordering::Release);
                // Read back an older key: must be there, with its own value.
                let mut j = (i * 7919) % i;
                while !wanted(j) {
                    j -= 1;
                }
                let got = cluster
                    .get(format!("live:{j}").as_bytes())
                    .map_err(|e| format!("GET live:{j}: {e}"))?;
                if got != Some(format!("v{j}").into_bytes()) {
                    return Err(format!("live:{j} read {got:?} during the reshard"));
                }
                reads += 1;
            }
            let _ = reads;
            Ok(())
        })
    };
    let (from, to) = (node_id(&addrs[0]), node_id(&addrs[1]));
    let out = Command::new("redis-cli")
        .args(["--cluster", "reshard", &addrs[0]])
        .args(["--cluster-from", &from, "--cluster-to", &to])
        .args([
            "--cluster-slots",
            "1500",
            "--cluster-yes",
            "--cluster-pipeline",
            "5",
        ])
        .output();
    let before_stop = written.load(Ordering::Acquire);
    stop.store(true, Ordering::Release);
    let writer_result = writer
        .join()
        .unwrap_or_else(|_| Err("writer panicked".into()));
    let out = out.unwrap_or_else(|e| panic!("running redis-cli --cluster reshard: {e}"));
    assert!(
        out.status.success(),
        "reshard failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    writer_result.unwrap_or_else(|e| panic!("{e}"));
    let total = written.load(Ordering::Acquire);
    assert!(
        total > 3000,
        "the writer should have written during the reshard ({before_stop})"
    );
    let stats = cluster.router().stats();
    assert!(
        stats.moved + stats.asked > 0,
        "a stale table must have been redirected: {stats:?}"
    );

    // Zero lost or misrouted writes: every key has its value, and the cluster
    // holds exactly the keys written (route:* from the earlier step included).
    let fresh = RedisCluster::connect(&[addrs[2].as_str()]).unwrap();
    let mut expected = 0u64;
    for i in (0..total).filter(|&i| wanted(i)) {
        expected += 1;
        let got = fresh.get(format!("live:{i}").as_bytes()).unwrap();
        assert_eq!(got, Some(format!("v{i}").into_bytes()), "live:{i} lost");
    }
    assert_eq!(
        fresh.router().stats().moved,
        0,
        "keys sit where the fresh table says"
    );
    let mut keys = 0u64;
    for a in addrs {
        let mut c = connect_node(a, Duration::from_secs(5)).unwrap();
        keys += redis::cmd("DBSIZE").query::<u64>(&mut c).unwrap();
    }
    assert_eq!(keys, expected + 2000, "DBSIZE over the masters");
    // And the tables agree again, with the moved slots on the new owner.
    let owners = check_tables(addrs);
    let count = |o: &[String], a: &String| o.iter().filter(|x| *x == a).count();
    assert_eq!(
        count(&owners, &addrs[1]),
        count(owners_before, &addrs[1]) + 1500
    );
    assert_eq!(
        count(&owners, &addrs[0]) + 1500,
        count(owners_before, &addrs[0])
    );
    eprintln!("reshard: {expected} keys written, router stats {stats:?}");
}

#[test]
fn redis_cluster_routing_end_to_end() {
    let guard = start_cluster();
    let addrs = guard.addrs();
    check_keyslot(&addrs[0]);
    let owners_before = check_tables(&addrs);
    let cluster = RedisCluster::connect(&[addrs[1].as_str()]).unwrap();
    check_routing(&cluster, &addrs);
    check_live_reshard(&addrs, &owners_before);
    drop(guard);
}
