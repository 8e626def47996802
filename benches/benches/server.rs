//! The server section of `cargo xtask bench`: kuai-server against
//! `redis-server` on this machine, both driven by `redis-benchmark`.
//!
//! - `redis-benchmark -t set,get,incr,mset -c 50 -d 64` at `-P 1` and
//!   `-P 16`: requests/s, p50 and p99 per command, kuai-server (in this
//!   process, one event-loop thread like Redis's one main thread) vs
//!   `redis-server --save "" --appendonly no` started on a spare port. The two
//!   servers are measured alternately, one command at a time (2 rounds,
//!   best kept); each redis-benchmark run is capped at 5 s.
//! - In full mode also `redis-server --io-threads 2` as a second peer.
//! - RSS per key after loading small keys (16-byte values), pipelined.
//!
//! Needs `redis-server` and `redis-benchmark` (Debian `redis-server` /
//! `redis-tools`); without them every row records an error.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kuai_benches::{Better, Row, Section};
use kuai_server::{Config, Server};

/// The longest one redis-benchmark run may take.
const RUN_LIMIT: Duration = Duration::from_secs(5);

const TESTS: [(&str, &str); 4] = [
    ("SET", "SET"),
    ("GET", "GET"),
    ("INCR", "INCR"),
    ("MSET", "MSET (10 keys)"),
];

/// The redis-server figures on this machine (quiet, median of 3).
fn quiet_peer(cmd: &str, pipeline: u32) -> f64 {
    match (cmd, pipeline) {
        (_, 1) => 100_000.0,
        ("SET", _) => 1_520_000.0,
        ("GET", _) => 1_770_000.0,
        ("INCR", _) => 1_640_000.0,
        _ => 510_000.0,
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Stat {
    rps: f64,
    p50: f64,
    p99: f64,
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

struct Redis {
    child: Child,
    port: u16,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_redis(extra: &[&str]) -> Result<Redis, String> {
    let port = free_port().map_err(|e| e.to_string())?;
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("redis-server not runnable ({e}); apt-get install redis-server"))?;
    let r = Redis { child, port };
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err("redis-server did not start".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(r)
}

/// Runs redis-benchmark and parses its CSV: test name → stats.
fn benchmark(
    port: u16,
    tests: &str,
    pipeline: u32,
    n: u64,
) -> Result<HashMap<String, Stat>, String> {
    let mut child = Command::new("redis-benchmark")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-t",
            tests,
            "-c",
            "50",
            "-d",
            "64",
        ])
        .args(["-n", &n.to_string(), "-P", &pipeline.to_string(), "--csv"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("redis-benchmark not runnable ({e}); apt-get install redis-tools"))?;
    // A watchdog keeps the section inside its time budget on a loaded box.
    let deadline = Instant::now() + RUN_LIMIT;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "redis-benchmark {tests} -P {pipeline} -n {n} took over {RUN_LIMIT:?}"
                ));
            }
        }
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("redis-benchmark: {e}"))?;
    if !out.status.success() {
        return Err(format!("redis-benchmark exited with {}", out.status));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut map = HashMap::new();
    let mut header: Vec<String> = Vec::new();
    for line in text.lines() {
        let cols: Vec<String> = line
            .split("\",\"")
            .map(|c| c.trim_matches('"').to_owned())
            .collect();
        if cols.first().is_some_and(|c| c == "test") {
            header = cols;
            continue;
        }
        let get = |name: &str| {
            header
                .iter()
                .position(|h| h == name)
                .and_then(|i| cols.get(i))
                .and_then(|v| v.parse::<f64>().ok())
        };
        if let (Some(name), Some(rps)) = (cols.first(), get("rps")) {
            map.insert(
                name.clone(),
                Stat {
                    rps,
                    p50: get("p50_latency_ms").unwrap_or(f64::NAN),
                    p99: get("p99_latency_ms").unwrap_or(f64::NAN),
                },
            );
        }
    }
    if map.is_empty() {
        return Err(format!("no CSV rows in redis-benchmark output: {text:?}"));
    }
    Ok(map)
}

fn merge_best(into: &mut HashMap<String, Stat>, new: HashMap<String, Stat>) {
    for (k, v) in new {
        let e = into.entry(k).or_default();
        if v.rps > e.rps {
            *e = v;
        }
    }
}

fn rss_kb(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Loads `n` keys `key:<i>` with 16-byte values, pipelined 1000 at a time.
fn load_keys(addr: SocketAddr, n: u64) -> std::io::Result<()> {
    let mut s = TcpStream::connect(addr)?;
    let mut buf = Vec::new();
    let mut reply = vec![0u8; 5 * 1000];
    let mut i = 0;
    while i < n {
        buf.clear();
        let batch = (n - i).min(1000);
        for j in i..i + batch {
            let key = format!("key:{j:012}");
            let _ = write!(
                buf,
                "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n$16\r\n{:016}\r\n",
                key.len(),
                j
            );
        }
        s.write_all(&buf)?;
        s.read_exact(&mut reply[..5 * batch as usize])?;
        i += batch;
    }
    Ok(())
}

fn main() {
    let mut s = Section::from_args("server");
    let quick = s.quick();
    let n1: u64 = s.pick(10_000, 40_000);
    let n16: u64 = s.pick(50_000, 300_000);
    let rounds = 2;
    let peer_name = "redis-server 7 (1 thread)";

    let kuai = Server::start(Config::builder().port(0).threads(1).build());
    let redis = start_redis(&[]);
    let (kuai, redis) = match (kuai, redis) {
        (Ok(k), Ok(r)) => (k, r),
        (k, r) => {
            let why = match (&k, &r) {
                (Err(e), _) => format!("kuai-server: {e}"),
                (_, Err(e)) => e.clone(),
                _ => unreachable!(),
            };
            for (cmd, _) in TESTS {
                for p in [1, 16] {
                    s.record(
                        Row::new(
                            format!("{cmd} -P {p}, 50 clients, 64 B"),
                            "req/s",
                            Better::Higher,
                        )
                        .error(&why),
                    );
                }
            }
            return;
        }
    };
    let kport = kuai.local_addr().port();
    for p in [1u32, 16] {
        let n = if p == 1 { n1 } else { n16 };
        let mut kb = HashMap::new();
        let mut rb = HashMap::new();
        let mut err = None;
        // One command at a time, the two servers back to back, so a burst
        // of background load hits both sides of a pair.
        for (_, test) in TESTS {
            let t = test.split(' ').next().unwrap_or(test).to_ascii_lowercase();
            for _ in 0..rounds {
                match benchmark(kport, &t, p, n) {
                    Ok(m) => merge_best(&mut kb, m),
                    Err(e) => err = Some(e),
                }
                match benchmark(redis.port, &t, p, n) {
                    Ok(m) => merge_best(&mut rb, m),
                    Err(e) => err = Some(e),
                }
            }
        }
        for (cmd, test) in TESTS {
            let exp = format!("{cmd} -P {p}, 50 clients, 64 B");
            let (Some(k), Some(r)) = (kb.get(test), rb.get(test)) else {
                s.record(
                    Row::new(&exp, "req/s", Better::Higher)
                        .error(err.clone().unwrap_or_else(|| format!("no {test} row"))),
                );
                continue;
            };
            let target = if p == 1 {
                "target ≥ 1.0×"
            } else {
                "target ≥ 1.0×, aim 1.3×"
            };
            s.record(
                Row::new(&exp, "req/s", Better::Higher)
                    .peer(peer_name, r.rps)
                    .kuai(k.rps)
                    .param("pipeline", p)
                    .param("clients", 50)
                    .param("n", n)
                    .note(format!(
                        "{target}; redis-server on a quiet machine: {:.0} req/s",
                        quiet_peer(cmd, p)
                    )),
            );
            for (label, kv, rv) in [("p50", k.p50, r.p50), ("p99", k.p99, r.p99)] {
                if kv.is_finite() && rv.is_finite() {
                    s.record(
                        Row::new(format!("{cmd} -P {p} latency {label}"), "ms", Better::Lower)
                            .peer(peer_name, rv)
                            .kuai(kv)
                            .param("pipeline", p),
                    );
                }
            }
        }
    }
    drop(redis);

    if !quick {
        // Redis with I/O threads: the second peer row.
        match start_redis(&["--io-threads", "2", "--io-threads-do-reads", "yes"]) {
            Ok(r2) => {
                for p in [1u32, 16] {
                    let n = if p == 1 { n1 / 5 } else { n16 / 5 };
                    let all = "set,get,incr,mset";
                    match (benchmark(kport, all, p, n), benchmark(r2.port, all, p, n)) {
                        (Ok(k), Ok(r)) => {
                            for (cmd, test) in TESTS {
                                if let (Some(k), Some(r)) = (k.get(test), r.get(test)) {
                                    s.record(
                                        Row::new(
                                            format!("{cmd} -P {p} vs io-threads 2"),
                                            "req/s",
                                            Better::Higher,
                                        )
                                        .peer("redis-server 7 (io-threads 2)", r.rps)
                                        .kuai(k.rps)
                                        .param("pipeline", p),
                                    );
                                }
                            }
                        }
                        (Err(e), _) | (_, Err(e)) => s.record(
                            Row::new(format!("-P {p} vs io-threads 2"), "req/s", Better::Higher)
                                .error(e),
                        ),
                    }
                }
            }
            Err(e) => s.record(Row::new("vs io-threads 2", "req/s", Better::Higher).error(e)),
        }
    }
    let _ = kuai.shutdown();

    // Memory: bytes of RSS per small key.
    let keys: u64 = s.pick(100_000, 1_000_000);
    let exp = format!("RSS per key, {keys} keys, 16 B values");
    let me = std::process::id();
    let measured = (|| -> Result<(f64, f64), String> {
        let r = start_redis(&[])?;
        let before = rss_kb(r.child.id()).ok_or("no RSS for redis-server")?;
        load_keys(SocketAddr::from(([127, 0, 0, 1], r.port)), keys).map_err(|e| e.to_string())?;
        let after = rss_kb(r.child.id()).ok_or("no RSS for redis-server")?;
        let redis_per_key = (after.saturating_sub(before) * 1024) as f64 / keys as f64;
        drop(r);
        let before = rss_kb(me).ok_or("no RSS")?;
        let k = Server::start(Config::builder().port(0).threads(1).build())
            .map_err(|e| e.to_string())?;
        load_keys(k.local_addr(), keys).map_err(|e| e.to_string())?;
        let after = rss_kb(me).ok_or("no RSS")?;
        let kuai_per_key = (after.saturating_sub(before) * 1024) as f64 / keys as f64;
        let _ = k.shutdown();
        Ok((redis_per_key, kuai_per_key))
    })();
    match measured {
        Ok((r, k)) => s.record(
            Row::new(exp, "B/key", Better::Lower)
                .peer(peer_name, r)
                .kuai(k)
                .param("keys", keys)
                .note("target: within 1.5× of redis-server (ratio ≥ 0.67)"),
        ),
        Err(e) => s.record(Row::new(exp, "B/key", Better::Lower).error(e)),
    }
}
