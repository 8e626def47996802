//! Read-through of misses to a REAL PostgreSQL (127.0.0.1:5432, database
//! `test`, user `postgres`, trust auth; `KUAI_SERVER_PG_PORT` overrides the
//! port). Fails loudly, saying how to start it, when PostgreSQL is missing.
//!
//! Loads are held in flight deterministically with a view whose value
//! column calls a function that waits on an advisory lock the test holds;
//! the same function records every call, so "N concurrent misses → one
//! query" is counted by PostgreSQL itself.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::RawClient;
use kuai::core::ManualClock;
use kuai::store::PgNode;
use kuai_server::frame::Frame;
use kuai_server::read_through::ReadThroughConfig;
use kuai_server::{Config, Server, ServerHandle};

fn port() -> String {
    std::env::var("KUAI_SERVER_PG_PORT").unwrap_or_else(|_| "5432".into())
}

fn url() -> String {
    format!("postgres://postgres@127.0.0.1:{}/test", port())
}

/// A session on the test database, on its own small runtime.
struct Pg {
    rt: tokio::runtime::Runtime,
    node: PgNode,
}

impl Pg {
    fn connect() -> Pg {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let node = PgNode::new("test", &url()).expect("connection string");
        if let Err(e) = rt.block_on(node.client()) {
            panic!(
                "\n\nkuai-server's read-through tests need PostgreSQL at {} and could not connect: {e}\n\
                 Start it (e.g. `pg_ctlcluster 15 main start` or `service postgresql start`) with trust \
                 auth for user postgres and a database `test` (`createdb -U postgres test`), or point \
                 KUAI_SERVER_PG_PORT at another port.\n\n",
                url()
            );
        }
        Pg { rt, node }
    }

    fn exec(&self, sql: &str) {
        self.rt.block_on(async {
            let c = self.node.client().await.expect("client");
            if let Err(e) = c.batch_execute(sql).await {
                panic!("{sql}: {e}");
            }
        })
    }

    fn count(&self, sql: &str) -> i64 {
        self.rt.block_on(async {
            let c = self.node.client().await.expect("client");
            match c.query_one(sql, &[]).await {
                Ok(row) => row.get::<_, i64>(0),
                Err(e) => panic!("{sql}: {e}"),
            }
        })
    }

    /// `<name>` (key text, value text) holding `rows`, and `<name>_gated`, a
    /// view of it whose every read is recorded in `<name>_calls` and waits
    /// while advisory lock `lock` is held exclusively.
    fn table(&self, name: &str, rows: &[(&str, &str)], lock: i64) {
        let mut sql = format!(
            "DROP VIEW IF EXISTS {name}_gated; DROP TABLE IF EXISTS {name}, {name}_calls; \
             CREATE TABLE {name} (key text PRIMARY KEY, value text); \
             CREATE TABLE {name}_calls (key text); \
             CREATE OR REPLACE FUNCTION {name}_gate(k text, v text) RETURNS text LANGUAGE plpgsql AS $$ \
             BEGIN INSERT INTO {name}_calls VALUES (k); \
             PERFORM pg_advisory_lock_shared({lock}); PERFORM pg_advisory_unlock_shared({lock}); \
             RETURN v; END $$; \
             CREATE VIEW {name}_gated AS SELECT key, {name}_gate(key, value) AS value FROM {name};"
        );
        for (k, v) in rows {
            sql.push_str(&format!("INSERT INTO {name} VALUES ('{k}', '{v}');"));
        }
        self.exec(&sql);
    }

    fn calls(&self, name: &str, key: &str) -> i64 {
        self.count(&format!(
            "SELECT count(*) FROM {name}_calls WHERE key = '{key}'"
        ))
    }

    fn hold(&self, lock: i64) {
        self.exec(&format!("SELECT pg_advisory_lock({lock})"));
    }

    fn release(&self, lock: i64) {
        self.exec(&format!("SELECT pg_advisory_unlock({lock})"));
    }
}

fn config(table: &str) -> ReadThroughConfig {
    ReadThroughConfig {
        url: Some(url()),
        table: Some(table.into()),
        // Long enough never to fire while a test holds a load in flight.
        timeout: Duration::from_secs(60),
        ..ReadThroughConfig::default()
    }
}

fn start(rt: ReadThroughConfig) -> ServerHandle {
    Server::start(Config::builder().port(0).read_through(rt).build()).expect("server starts")
}

fn bulk(f: &Frame) -> Option<String> {
    match f {
        Frame::Bulk(v) => v.as_ref().map(|v| String::from_utf8_lossy(v).into_owned()),
        Frame::Null => None,
        other => panic!("not a bulk string: {other:?}"),
    }
}

fn get(c: &mut RawClient, key: &str) -> Option<String> {
    bulk(&c.cmd(&[b"GET", key.as_bytes()]))
}

fn info(addr: SocketAddr) -> String {
    let mut c = RawClient::connect(addr);
    match c.cmd(&[b"INFO", b"readthrough"]) {
        Frame::Bulk(Some(t)) | Frame::Verbatim(t) => String::from_utf8_lossy(&t).into_owned(),
        other => panic!("INFO: {other:?}"),
    }
}

fn stat(addr: SocketAddr, field: &str) -> u64 {
    let text = info(addr);
    let prefix = format!("read_through_{field}:");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix} in INFO:\n{text}"))
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{prefix}: {e}"))
}

/// Waits (bounded) until the counter reaches `want`: a rendezvous, not a
/// timing assertion.
fn wait_stat(addr: SocketAddr, field: &str, want: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while stat(addr, field) != want {
        assert!(
            Instant::now() < deadline,
            "read_through_{field} never reached {want}:\n{}",
            info(addr)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_miss_is_filled_with_the_ttl_and_then_served_from_memory() {
    let pg = Pg::connect();
    pg.table(
        "rt_fill",
        &[("a", "alpha"), ("b", "beta"), ("c", "gamma"), ("g", "gee")],
        7301,
    );
    let h = start(ReadThroughConfig {
        ttl: Duration::from_secs(60),
        ..config("public.rt_fill")
    });
    let addr = h.local_addr();
    let mut c = RawClient::connect(addr);

    assert_eq!(get(&mut c, "a").as_deref(), Some("alpha"));
    assert_eq!(stat(addr, "loads"), 1);
    assert_eq!(stat(addr, "hits"), 1);
    match c.cmd(&[b"PTTL", b"a"]) {
        Frame::Integer(ms) => assert!((1..=60_000).contains(&ms), "PTTL {ms}"),
        other => panic!("PTTL: {other:?}"),
    }
    // Now a keyspace hit: no second query.
    assert_eq!(get(&mut c, "a").as_deref(), Some("alpha"));
    assert_eq!(stat(addr, "loads"), 1);

    // MGET loads each missing key; an absent row is nil.
    match c.cmd(&[b"MGET", b"a", b"b", b"zzz"]) {
        Frame::Array(Some(v)) => {
            let v: Vec<_> = v.iter().map(bulk).collect();
            assert_eq!(v, [Some("alpha".into()), Some("beta".into()), None]);
        }
        other => panic!("MGET: {other:?}"),
    }
    assert_eq!(stat(addr, "loads"), 3);
    assert_eq!(stat(addr, "misses"), 1);

    // Pipelined: replies stay in order around a load.
    c.send_raw(b"SET x 1\r\nGET c\r\nDEL c\r\nGET x\r\n");
    let replies: Vec<Frame> = (0..4).map(|_| c.read_frame().expect("reply")).collect();
    assert_eq!(replies[0], Frame::Simple(b"OK".to_vec()));
    assert_eq!(bulk(&replies[1]).as_deref(), Some("gamma"));
    assert_eq!(replies[2], Frame::Integer(1));
    assert_eq!(bulk(&replies[3]).as_deref(), Some("1"));

    // GETEX loads too, then applies its own TTL.
    assert_eq!(
        bulk(&c.cmd(&[b"GETEX", b"g", b"EX", b"1000"])).as_deref(),
        Some("gee")
    );
    match c.cmd(&[b"TTL", b"g"]) {
        Frame::Integer(s) => assert!((900..=1000).contains(&s), "TTL {s}"),
        other => panic!("TTL: {other:?}"),
    }

    // A written key is the keyspace's, not the table's.
    c.cmd(&[b"SET", b"a", b"mine"]);
    assert_eq!(get(&mut c, "a").as_deref(), Some("mine"));
    h.shutdown().unwrap();
}

#[test]
fn absence_is_remembered_until_the_negative_ttl_or_a_write() {
    let pg = Pg::connect();
    pg.table("rt_neg", &[], 7302);
    let clock = ManualClock::new();
    let h = Server::start_with_clock(
        Config::builder()
            .port(0)
            .read_through(ReadThroughConfig {
                negative_ttl: Duration::from_secs(30),
                ..config("rt_neg")
            })
            .build(),
        Arc::new(clock.clone()),
    )
    .expect("server starts");
    let addr = h.local_addr();
    let mut c = RawClient::connect(addr);

    assert_eq!(get(&mut c, "k"), None);
    assert_eq!((stat(addr, "loads"), stat(addr, "misses")), (1, 1));
    pg.exec("INSERT INTO rt_neg VALUES ('k', 'late')");
    // Remembered as absent: no query.
    assert_eq!(get(&mut c, "k"), None);
    assert_eq!((stat(addr, "loads"), stat(addr, "negative_hits")), (1, 1));
    // Past the negative TTL: loaded again.
    clock.advance(Duration::from_secs(31));
    assert_eq!(get(&mut c, "k").as_deref(), Some("late"));
    assert_eq!(stat(addr, "loads"), 2);

    // A write of the key voids its negative entry.
    assert_eq!(get(&mut c, "j"), None);
    pg.exec("INSERT INTO rt_neg VALUES ('j', 'jay')");
    assert_eq!(get(&mut c, "j"), None, "negative hit");
    assert_eq!(c.cmd(&[b"DEL", b"j"]), Frame::Integer(0));
    assert_eq!(get(&mut c, "j").as_deref(), Some("jay"));
    h.shutdown().unwrap();
}

#[test]
fn a_write_during_the_load_wins() {
    let pg = Pg::connect();
    let lock = 7303;
    pg.table("rt_race", &[("k", "from-pg"), ("d", "from-pg")], lock);
    let h = start(config("rt_race_gated"));
    let addr = h.local_addr();
    let mut reader = RawClient::connect(addr);
    let mut writer = RawClient::connect(addr);

    // SET while the load is in flight: the SET's value stays.
    pg.hold(lock);
    reader.send(&[b"GET", b"k"]);
    wait_stat(addr, "inflight", 1);
    assert_eq!(
        writer.cmd(&[b"SET", b"k", b"mine"]),
        Frame::Simple(b"OK".to_vec())
    );
    pg.release(lock);
    assert_eq!(bulk(&reader.read_frame().unwrap()).as_deref(), Some("mine"));
    assert_eq!(stat(addr, "stale_fills"), 1);
    assert_eq!(get(&mut writer, "k").as_deref(), Some("mine"));

    // DEL while the load is in flight: the loaded (possibly stale) row is
    // not stored, so the reader sees a miss.
    pg.hold(lock);
    reader.send(&[b"GET", b"d"]);
    wait_stat(addr, "inflight", 1);
    assert_eq!(writer.cmd(&[b"DEL", b"d"]), Frame::Integer(0));
    pg.release(lock);
    assert_eq!(bulk(&reader.read_frame().unwrap()), None);
    assert_eq!(stat(addr, "stale_fills"), 2);
    // A later miss loads afresh.
    assert_eq!(get(&mut reader, "d").as_deref(), Some("from-pg"));
    h.shutdown().unwrap();
}

#[test]
fn concurrent_misses_share_one_query() {
    let pg = Pg::connect();
    let lock = 7304;
    pg.table("rt_flight", &[("hot", "v")], lock);
    let h = start(config("rt_flight_gated"));
    let addr = h.local_addr();
    const N: u64 = 8;

    pg.hold(lock);
    let mut clients: Vec<RawClient> = (0..N).map(|_| RawClient::connect(addr)).collect();
    for c in &mut clients {
        c.send(&[b"GET", b"hot"]);
    }
    wait_stat(addr, "coalesced", N - 1);
    pg.release(lock);
    for c in &mut clients {
        assert_eq!(bulk(&c.read_frame().unwrap()).as_deref(), Some("v"));
    }
    assert_eq!(pg.calls("rt_flight", "hot"), 1, "PostgreSQL saw one query");
    assert_eq!(stat(addr, "loads"), 1);
    h.shutdown().unwrap();
}

#[test]
fn a_slow_postgres_answers_nil_within_the_timeout_and_is_counted() {
    let pg = Pg::connect();
    let lock = 7305;
    pg.table("rt_slow", &[("k", "v")], lock);
    let h = start(ReadThroughConfig {
        timeout: Duration::from_millis(200),
        ..config("rt_slow_gated")
    });
    let addr = h.local_addr();
    let mut c = RawClient::connect(addr);
    pg.hold(lock);
    assert_eq!(get(&mut c, "k"), None, "fail-open: nil, not a hang");
    wait_stat(addr, "timeouts", 1);
    // The connection goes on serving.
    assert_eq!(c.cmd(&[b"PING"]), Frame::Simple(b"PONG".to_vec()));
    pg.release(lock);
    h.shutdown().unwrap();
}

#[test]
fn an_unreachable_postgres_answers_nil_and_is_counted() {
    // Port 1 refuses connections: the server still starts (with a warning).
    let h = start(ReadThroughConfig {
        url: Some("postgres://postgres@127.0.0.1:1/test?connect_timeout=1".into()),
        table: Some("kv".into()),
        timeout: Duration::from_secs(5),
        ..ReadThroughConfig::default()
    });
    let addr = h.local_addr();
    let mut c = RawClient::connect(addr);
    assert_eq!(get(&mut c, "k"), None);
    assert_eq!(stat(addr, "errors"), 1);
    assert!(
        info(addr).contains("read_through_last_error:"),
        "{}",
        info(addr)
    );
    // Still a cache: writes and reads of written keys work.
    c.cmd(&[b"SET", b"k", b"v"]);
    assert_eq!(get(&mut c, "k").as_deref(), Some("v"));
    h.shutdown().unwrap();
}

#[test]
fn bad_settings_are_rejected_at_startup() {
    let pg = Pg::connect();
    pg.exec("DROP TABLE IF EXISTS rt_bad; CREATE TABLE rt_bad (key text PRIMARY KEY, value text)");

    // Identifiers that could splice SQL never get that far.
    let mut c = Config::default();
    for (k, v) in [
        ("read-through-table", "rt_bad; DROP TABLE rt_bad"),
        ("read-through-table", "\"rt_bad\""),
        ("read-through-key-column", "key--"),
        ("read-through-value-column", "value)"),
        ("read-through-timeout", "100"),
    ] {
        assert!(c.apply(k, v).is_err(), "{k} {v}");
    }
    // Set behind the parser's back, they still fail at startup.
    for rt in [
        ReadThroughConfig {
            table: Some("rt_bad where 1=1".into()),
            ..config("x")
        },
        ReadThroughConfig {
            key_column: "key\" = key or \"".into(),
            ..config("rt_bad")
        },
        ReadThroughConfig {
            table: None,
            ..config("x")
        },
        // Valid names that do not exist: PostgreSQL says so at startup.
        config("rt_no_such_table"),
        ReadThroughConfig {
            value_column: "no_such_column".into(),
            ..config("rt_bad")
        },
    ] {
        let r = Server::start(Config::builder().port(0).read_through(rt.clone()).build());
        assert!(r.is_err(), "{rt:?} started");
    }

    // The binary refuses them too, before binding.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kuai-server"))
        .args([
            "--port",
            "0",
            "--read-through",
            &url(),
            "--read-through-table",
            "rt_bad;DROP TABLE rt_bad",
        ])
        .output()
        .expect("run kuai-server");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a plain identifier"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(pg.count("SELECT count(*) FROM rt_bad"), 0, "table intact");
}

#[test]
fn fills_stay_within_maxmemory_under_allkeys_lru() {
    let pg = Pg::connect();
    pg.table("rt_mem", &[], 7306);
    const ROWS: usize = 3000;
    pg.exec(&format!(
        "INSERT INTO rt_mem SELECT 'k' || i, repeat('x', 1000) FROM generate_series(1, {ROWS}) i"
    ));
    let h = Server::start(
        Config::builder()
            .port(0)
            .maxmemory(1 << 20, kuai_server::keyspace::EvictionPolicy::AllKeysLru)
            .read_through(config("rt_mem"))
            .build(),
    )
    .expect("server starts");
    let addr = h.local_addr();
    let mut c = RawClient::connect(addr);
    let keys: Vec<String> = (1..=ROWS).map(|i| format!("k{i}")).collect();
    for chunk in keys.chunks(100) {
        let mut args: Vec<&[u8]> = vec![b"MGET"];
        args.extend(chunk.iter().map(|k| k.as_bytes()));
        match c.cmd(&args) {
            Frame::Array(Some(v)) => {
                assert!(v.iter().all(|f| bulk(f).is_some_and(|v| v.len() == 1000)))
            }
            other => panic!("MGET: {other:?}"),
        }
    }
    assert_eq!(stat(addr, "hits"), ROWS as u64);
    let Frame::Integer(n) = c.cmd(&[b"DBSIZE"]) else {
        panic!("DBSIZE")
    };
    // ~3 MB of rows in a 1 MiB budget: the eviction index saw the fills.
    assert!((n as usize) < ROWS / 2, "{n} keys kept of {ROWS}");
    h.shutdown().unwrap();
}

fn stat_text(addr: SocketAddr, field: &str) -> String {
    let text = info(addr);
    let prefix = format!("read_through_{field}:");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix} in INFO:\n{text}"))
        .trim()
        .to_owned()
}

#[test]
fn a_dead_postgres_trips_the_breaker_and_is_retried_after_the_cooldown() {
    let clock = ManualClock::new();
    let h = Server::start_with_clock(
        Config::builder()
            .port(0)
            .read_through(ReadThroughConfig {
                url: Some("postgres://postgres@127.0.0.1:1/test?connect_timeout=1".into()),
                table: Some("kv".into()),
                timeout: Duration::from_secs(5),
                ..ReadThroughConfig::default()
            })
            .build(),
        Arc::new(clock.clone()),
    )
    .expect("server starts");
    let addr = h.local_addr();
    let mut c = RawClient::connect(addr);
    for i in 0..5 {
        assert_eq!(get(&mut c, &format!("k{i}")), None);
    }
    assert_eq!((stat(addr, "loads"), stat(addr, "errors")), (5, 5));
    assert_eq!(stat_text(addr, "breaker"), "open");
    // Open: answered nil without a query.
    assert_eq!(get(&mut c, "k5"), None);
    assert_eq!((stat(addr, "loads"), stat(addr, "breaker_skips")), (5, 1));
    // After the cooldown one load is tried again (and fails, re-opening).
    clock.advance(Duration::from_secs(2));
    assert_eq!(stat_text(addr, "breaker"), "half-open");
    assert_eq!(get(&mut c, "k6"), None);
    assert_eq!(stat(addr, "loads"), 6);
    assert_eq!(stat_text(addr, "breaker"), "open");
    h.shutdown().unwrap();
}

#[test]
fn a_success_closes_the_breaker() {
    let pg = Pg::connect();
    let lock = 7307;
    pg.table(
        "rt_breaker",
        &[
            ("k", "v"),
            ("slow0", "s"),
            ("slow1", "s"),
            ("slow2", "s"),
            ("slow3", "s"),
            ("slow4", "s"),
        ],
        lock,
    );
    let clock = ManualClock::new();
    let h = Server::start_with_clock(
        Config::builder()
            .port(0)
            .read_through(ReadThroughConfig {
                timeout: Duration::from_millis(300),
                ..config("rt_breaker_gated")
            })
            .build(),
        Arc::new(clock.clone()),
    )
    .expect("server starts");
    let addr = h.local_addr();
    let mut c = RawClient::connect(addr);
    // Five timeouts in a row (distinct keys, so none coalesce) trip it.
    pg.hold(lock);
    for i in 0..5 {
        assert_eq!(get(&mut c, &format!("slow{i}")), None);
        wait_stat(addr, "timeouts", i + 1);
    }
    assert_eq!(stat_text(addr, "breaker"), "open");
    assert_eq!(get(&mut c, "k"), None, "skipped while open");
    pg.release(lock);
    // Let the abandoned queries drain so the next load has a free connection.
    let deadline = Instant::now() + Duration::from_secs(30);
    while pg.count(
        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%rt_breaker_gated%' \
         AND state = 'active' AND pid <> pg_backend_pid()",
    ) > 0
    {
        assert!(Instant::now() < deadline, "queries never drained");
        std::thread::sleep(Duration::from_millis(5));
    }
    clock.advance(Duration::from_secs(2));
    assert_eq!(get(&mut c, "k").as_deref(), Some("v"));
    assert_eq!(stat_text(addr, "breaker"), "closed");
    h.shutdown().unwrap();
}
