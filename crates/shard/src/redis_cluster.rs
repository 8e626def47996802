//! Routing over a real Redis Cluster (feature `redis`): the slot table from
//! `CLUSTER SLOTS` / `CLUSTER SHARDS`, kuai's own CRC16 slot routing, and
//! `MOVED` / `ASK` handling. The `redis` crate is only the wire client.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use redis::Value;

use crate::error::{ShardError, ShardResult};
use crate::router::{Redirect, Route, Router, RoutingTable};
use crate::slots::{SLOT_COUNT, SlotMap, SlotPartitioner};

fn backend(what: &str, e: impl std::fmt::Display) -> ShardError {
    ShardError::Backend(format!("{what}: {e}"))
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        other => text(other)?.parse().ok(),
    }
}

/// Key/value pairs of a RESP3 map or a flat RESP2 array.
fn pairs(v: &Value) -> Option<Vec<(String, &Value)>> {
    match v {
        Value::Map(m) => m.iter().map(|(k, v)| Some((text(k)?, v))).collect(),
        Value::Array(a) if a.len() % 2 == 0 => a
            .chunks_exact(2)
            .map(|c| Some((text(&c[0])?, &c[1])))
            .collect(),
        _ => None,
    }
}

fn slot_of(v: i64) -> ShardResult<u16> {
    u16::try_from(v)
        .ok()
        .filter(|&s| s < SLOT_COUNT)
        .ok_or_else(|| ShardError::InvalidSlots(format!("slot {v} out of range")))
}

/// Builds a table from `(first, last, "host:port")` ranges.
fn table_from_ranges(ranges: Vec<(u16, u16, String)>) -> ShardResult<RoutingTable> {
    let mut nodes: Vec<String> = Vec::new();
    let mut idx = Vec::with_capacity(ranges.len());
    for (a, b, node) in ranges {
        let i = match nodes.iter().position(|n| *n == node) {
            Some(i) => i,
            None => {
                nodes.push(node);
                nodes.len() - 1
            }
        };
        idx.push((a, b, i as u32));
    }
    let map = SlotMap::from_ranges(nodes.iter().map(String::as_str), &idx)?;
    Ok(RoutingTable::from_slot_map(0, &map))
}

/// Parses a `CLUSTER SLOTS` reply into a routing table (masters only).
pub fn parse_cluster_slots(reply: &Value) -> ShardResult<RoutingTable> {
    let bad = |why: &str| ShardError::InvalidSlots(format!("CLUSTER SLOTS reply: {why}"));
    let Value::Array(entries) = reply else {
        return Err(bad("not an array"));
    };
    let mut ranges = Vec::with_capacity(entries.len());
    for e in entries {
        let Value::Array(f) = e else {
            return Err(bad("entry is not an array"));
        };
        if f.len() < 3 {
            return Err(bad("short entry"));
        }
        let a = slot_of(int(&f[0]).ok_or_else(|| bad("start slot"))?)?;
        let b = slot_of(int(&f[1]).ok_or_else(|| bad("end slot"))?)?;
        let Value::Array(master) = &f[2] else {
            return Err(bad("master is not an array"));
        };
        if master.len() < 2 {
            return Err(bad("short master"));
        }
        let host = text(&master[0]).ok_or_else(|| bad("host"))?;
        let port = int(&master[1]).ok_or_else(|| bad("port"))?;
        ranges.push((a, b, format!("{host}:{port}")));
    }
    table_from_ranges(ranges)
}

/// Parses a `CLUSTER SHARDS` reply (Redis ≥ 7) into a routing table, using
/// each shard's online master.
pub fn parse_cluster_shards(reply: &Value) -> ShardResult<RoutingTable> {
    let bad = |why: &str| ShardError::InvalidSlots(format!("CLUSTER SHARDS reply: {why}"));
    let Value::Array(shards) = reply else {
        return Err(bad("not an array"));
    };
    let mut ranges = Vec::new();
    for shard in shards {
        let fields = pairs(shard).ok_or_else(|| bad("shard is not a map"))?;
        let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| *v);
        let Some(Value::Array(slots)) = get("slots") else {
            return Err(bad("slots"));
        };
        let Some(Value::Array(nodes)) = get("nodes") else {
            return Err(bad("nodes"));
        };
        let mut master = None;
        for n in nodes {
            let f = pairs(n).ok_or_else(|| bad("node is not a map"))?;
            let field = |k: &str| f.iter().find(|(n, _)| n == k).map(|(_, v)| *v);
            let role = field("role").and_then(text);
            let health = field("health").and_then(text);
            if role.as_deref() == Some("master") && health.as_deref() != Some("fail") {
                let host = field("ip").or_else(|| field("endpoint")).and_then(text);
                let port = field("port").and_then(int);
                if let (Some(h), Some(p)) = (host, port) {
                    master = Some(format!("{h}:{p}"));
                }
            }
        }
        if slots.len() % 2 != 0 {
            return Err(bad("odd slot list"));
        }
        if slots.is_empty() {
            continue;
        }
        let master = master.ok_or_else(|| bad("shard without a master"))?;
        for c in slots.chunks_exact(2) {
            let a = slot_of(int(&c[0]).ok_or_else(|| bad("start slot"))?)?;
            let b = slot_of(int(&c[1]).ok_or_else(|| bad("end slot"))?)?;
            ranges.push((a, b, master.clone()));
        }
    }
    table_from_ranges(ranges)
}

/// A Redis Cluster client whose routing is kuai's: CRC16 slots, a slot table
/// loaded from the cluster, `MOVED` patches the table, `ASK` is followed with
/// `ASKING`. One connection per node, opened on first use.
///
/// ```no_run
/// use kuai_shard::RedisCluster;
/// let cluster = RedisCluster::connect(&["127.0.0.1:7101"])?;
/// cluster.set(b"{user1}:name", b"ada")?;
/// assert_eq!(cluster.get(b"{user1}:name")?, Some(b"ada".to_vec()));
/// # Ok::<(), kuai_shard::ShardError>(())
/// ```
pub struct RedisCluster {
    router: Router<SlotPartitioner>,
    seeds: Vec<String>,
    conns: Mutex<HashMap<String, Arc<Mutex<redis::Connection>>>>,
    timeout: Duration,
    max_redirects: u32,
}

impl std::fmt::Debug for RedisCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCluster")
            .field("seeds", &self.seeds)
            .field("epoch", &self.router.epoch())
            .field("stats", &self.router.stats())
            .field("connections", &lock(&self.conns).len())
            .finish()
    }
}

/// Retries of a transient error (`TRYAGAIN`, `CLUSTERDOWN`, `LOADING`), 10 ms apart.
const TRANSIENT_RETRIES: u32 = 50;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Opens a connection to `host:port` with I/O timeouts.
pub fn connect_node(addr: &str, timeout: Duration) -> ShardResult<redis::Connection> {
    let client = redis::Client::open(format!("redis://{addr}/")).map_err(|e| backend(addr, e))?;
    let conn = client
        .get_connection_with_timeout(timeout)
        .map_err(|e| backend(&format!("connecting to {addr}"), e))?;
    conn.set_read_timeout(Some(timeout))
        .map_err(|e| backend(addr, e))?;
    conn.set_write_timeout(Some(timeout))
        .map_err(|e| backend(addr, e))?;
    Ok(conn)
}

impl RedisCluster {
    /// Connects to the first reachable seed and loads the slot table with `CLUSTER SLOTS`.
    pub fn connect(seeds: &[&str]) -> ShardResult<Self> {
        if seeds.is_empty() {
            return Err(ShardError::EmptyNodeSet("no seed nodes"));
        }
        let timeout = Duration::from_secs(5);
        let seeds: Vec<String> = seeds.iter().map(|s| s.to_string()).collect();
        let table = Self::load_from_seeds(&seeds, timeout, false)?;
        Ok(RedisCluster {
            router: Router::new(SlotPartitioner, table),
            seeds,
            conns: Mutex::new(HashMap::new()),
            timeout,
            max_redirects: 16,
        })
    }

    fn load_from_seeds(
        seeds: &[String],
        timeout: Duration,
        shards: bool,
    ) -> ShardResult<RoutingTable> {
        let mut last = ShardError::EmptyNodeSet("no seed nodes");
        for s in seeds {
            match connect_node(s, timeout).and_then(|mut c| Self::load_table(&mut c, shards)) {
                Ok(t) => return Ok(t),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Loads a routing table over `conn` with `CLUSTER SLOTS`, or with
    /// `CLUSTER SHARDS` when `shards` is true.
    pub fn load_table(conn: &mut redis::Connection, shards: bool) -> ShardResult<RoutingTable> {
        let name = if shards { "SHARDS" } else { "SLOTS" };
        let reply: Value = redis::cmd("CLUSTER")
            .arg(name)
            .query(conn)
            .map_err(|e| backend(&format!("CLUSTER {name}"), e))?;
        if shards {
            parse_cluster_shards(&reply)
        } else {
            parse_cluster_slots(&reply)
        }
    }

    /// Reloads the slot table from the seeds (`CLUSTER SLOTS`).
    pub fn refresh(&self) -> ShardResult<()> {
        let mut t = Self::load_from_seeds(&self.seeds, self.timeout, false)?;
        // Redis tables carry no epoch: count refreshes as versions.
        let next = self.router.epoch() + 1;
        t = retag(t, next);
        self.router.install(t)
    }

    /// The router (slot table, redirect counters).
    pub fn router(&self) -> &Router<SlotPartitioner> {
        &self.router
    }

    fn conn(&self, node: &str) -> ShardResult<Arc<Mutex<redis::Connection>>> {
        if let Some(c) = lock(&self.conns).get(node) {
            return Ok(Arc::clone(c));
        }
        let c = Arc::new(Mutex::new(connect_node(node, self.timeout)?));
        Ok(Arc::clone(
            lock(&self.conns).entry(node.to_string()).or_insert(c),
        ))
    }

    /// Runs a single-key command on the key's owner, following redirects.
    pub fn query<T: redis::FromRedisValue>(&self, key: &[u8], cmd: &redis::Cmd) -> ShardResult<T> {
        self.router
            .execute(key, self.max_redirects, |route: &Route| {
                let conn = self.conn(&route.node)?;
                let mut conn = lock(&conn);
                // Transient cluster states (a multi-key op during migration, a
                // cluster still converging) are retried on the same node, bounded.
                let mut attempt = 0u32;
                loop {
                    let result: redis::RedisResult<T> = if route.asking {
                        let mut p = redis::pipe();
                        p.cmd("ASKING").ignore().add_command(cmd.clone());
                        p.query::<(T,)>(&mut *conn).map(|(v,)| v)
                    } else {
                        cmd.query(&mut *conn)
                    };
                    let e = match result {
                        Ok(v) => return Ok(Ok(v)),
                        Err(e) => e,
                    };
                    let line = format!("{} {}", e.code().unwrap_or(""), e.detail().unwrap_or(""));
                    if let Some(r) = Redirect::parse_redis(&line) {
                        return Ok(Err(r));
                    }
                    let transient =
                        matches!(e.code(), Some("TRYAGAIN" | "CLUSTERDOWN" | "LOADING"));
                    if !transient || attempt >= TRANSIENT_RETRIES {
                        return Err(backend(&format!("{} on {}", cmd_name(cmd), route.node), e));
                    }
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
    }

    /// `GET key`.
    pub fn get(&self, key: &[u8]) -> ShardResult<Option<Vec<u8>>> {
        self.query(key, redis::cmd("GET").arg(key))
    }

    /// `SET key value`.
    pub fn set(&self, key: &[u8], value: &[u8]) -> ShardResult<()> {
        self.query::<()>(key, redis::cmd("SET").arg(key).arg(value))
    }

    /// The node (`host:port`) that the current table routes `key` to.
    pub fn owner_of(&self, key: &[u8]) -> String {
        self.router.route(key).node.to_string()
    }
}

fn cmd_name(cmd: &redis::Cmd) -> String {
    match cmd.args_iter().next() {
        Some(redis::Arg::Simple(b)) => String::from_utf8_lossy(b).into_owned(),
        _ => "command".into(),
    }
}

fn retag(t: RoutingTable, epoch: u64) -> RoutingTable {
    t.with_epoch(epoch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn parses_slots_reply() {
        let reply = Value::Array(vec![
            Value::Array(vec![
                Value::Int(0),
                Value::Int(8191),
                Value::Array(vec![b("127.0.0.1"), Value::Int(7101), b("id1")]),
            ]),
            Value::Array(vec![
                Value::Int(8192),
                Value::Int(16383),
                Value::Array(vec![b("127.0.0.1"), Value::Int(7102), b("id2")]),
            ]),
        ]);
        let t = parse_cluster_slots(&reply).unwrap();
        assert_eq!(t.owner(0), Some("127.0.0.1:7101"));
        assert_eq!(t.owner(16383), Some("127.0.0.1:7102"));
        // Missing slots are an error, not a silent hole.
        let short = Value::Array(vec![Value::Array(vec![
            Value::Int(0),
            Value::Int(10),
            Value::Array(vec![b("h"), Value::Int(1)]),
        ])]);
        assert!(parse_cluster_slots(&short).is_err());
        assert!(parse_cluster_slots(&Value::Nil).is_err());
    }

    #[test]
    fn parses_shards_reply() {
        let node = |port: i64, role: &str| {
            Value::Array(vec![
                b("id"),
                b("x"),
                b("port"),
                Value::Int(port),
                b("ip"),
                b("127.0.0.1"),
                b("role"),
                b(role),
                b("health"),
                b("online"),
            ])
        };
        let reply = Value::Array(vec![
            Value::Array(vec![
                b("slots"),
                Value::Array(vec![
                    Value::Int(0),
                    Value::Int(100),
                    Value::Int(200),
                    Value::Int(16383),
                ]),
                b("nodes"),
                Value::Array(vec![node(7101, "master"), node(7104, "replica")]),
            ]),
            Value::Array(vec![
                b("slots"),
                Value::Array(vec![Value::Int(101), Value::Int(199)]),
                b("nodes"),
                Value::Array(vec![node(7102, "master")]),
            ]),
        ]);
        let t = parse_cluster_shards(&reply).unwrap();
        assert_eq!(t.owner(50), Some("127.0.0.1:7101"));
        assert_eq!(t.owner(150), Some("127.0.0.1:7102"));
        assert_eq!(t.owner(300), Some("127.0.0.1:7101"));
    }
}
