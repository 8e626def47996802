//! Every command through the `redis` crate: happy paths, errors, edge cases.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::RawClient;
use kuai::core::ManualClock;
use kuai_server::frame::Frame;
use kuai_server::keyspace::EvictionPolicy;
use kuai_server::resp::Limits;
use kuai_server::{Config, Server, ServerHandle};
use redis::{Connection, RedisResult, Value};

fn start(config: Config) -> (ServerHandle, Connection) {
    let h = Server::start(config).expect("start");
    let c = redis::Client::open(format!("redis://{}/", h.local_addr()))
        .unwrap()
        .get_connection()
        .expect("connect");
    (h, c)
}

fn q<T: redis::FromRedisValue>(c: &mut Connection, args: &[&str]) -> RedisResult<T> {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(c)
}

fn err(c: &mut Connection, args: &[&str]) -> String {
    match q::<Value>(c, args) {
        Ok(v) => panic!("{args:?} succeeded with {v:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn string_commands_happy_paths() {
    let (h, mut c) = start(Config::builder().port(0).build());
    let c = &mut c;
    assert_eq!(q::<String>(c, &["PING"]).unwrap(), "PONG");
    assert_eq!(q::<String>(c, &["ECHO", "hi"]).unwrap(), "hi");
    assert_eq!(q::<String>(c, &["SET", "k", "v"]).unwrap(), "OK");
    assert_eq!(q::<String>(c, &["GET", "k"]).unwrap(), "v");
    assert_eq!(q::<Option<String>>(c, &["GET", "nope"]).unwrap(), None);
    assert_eq!(
        q::<Option<String>>(c, &["SET", "k", "w", "GET"])
            .unwrap()
            .as_deref(),
        Some("v")
    );
    assert_eq!(
        q::<Option<String>>(c, &["SET", "k", "x", "NX"]).unwrap(),
        None
    );
    assert_eq!(q::<i64>(c, &["SETNX", "n1", "1"]).unwrap(), 1);
    assert_eq!(q::<String>(c, &["SETEX", "se", "100", "v"]).unwrap(), "OK");
    assert_eq!(
        q::<String>(c, &["PSETEX", "pse", "100000", "v"]).unwrap(),
        "OK"
    );
    assert_eq!(q::<i64>(c, &["TTL", "se"]).unwrap(), 100);
    assert!(q::<i64>(c, &["PTTL", "pse"]).unwrap() > 99_000);
    assert_eq!(q::<String>(c, &["GETSET", "k", "y"]).unwrap(), "w");
    assert_eq!(q::<String>(c, &["GETDEL", "k"]).unwrap(), "y");
    assert_eq!(q::<i64>(c, &["EXISTS", "k"]).unwrap(), 0);
    assert_eq!(q::<String>(c, &["SET", "g", "v"]).unwrap(), "OK");
    assert_eq!(q::<String>(c, &["GETEX", "g", "EX", "50"]).unwrap(), "v");
    assert_eq!(q::<i64>(c, &["TTL", "g"]).unwrap(), 50);
    assert_eq!(q::<String>(c, &["MSET", "a", "1", "b", "2"]).unwrap(), "OK");
    assert_eq!(
        q::<Vec<Option<String>>>(c, &["MGET", "a", "zz", "b"]).unwrap(),
        vec![Some("1".into()), None, Some("2".into())]
    );
    assert_eq!(q::<i64>(c, &["MSETNX", "a", "3", "c", "3"]).unwrap(), 0);
    assert_eq!(q::<i64>(c, &["MSETNX", "c", "3", "d", "4"]).unwrap(), 1);
    assert_eq!(q::<i64>(c, &["DEL", "c", "d", "zz"]).unwrap(), 2);
    assert_eq!(q::<i64>(c, &["UNLINK", "b"]).unwrap(), 1);
    assert_eq!(q::<i64>(c, &["EXPIRE", "a", "100"]).unwrap(), 1);
    assert_eq!(q::<i64>(c, &["PEXPIRE", "a", "200000"]).unwrap(), 1);
    assert_eq!(q::<i64>(c, &["EXPIREAT", "a", "99999999999"]).unwrap(), 1);
    assert_eq!(q::<i64>(c, &["PERSIST", "a"]).unwrap(), 1);
    assert_eq!(q::<i64>(c, &["TTL", "a"]).unwrap(), -1);
    assert_eq!(q::<String>(c, &["TYPE", "a"]).unwrap(), "string");
    assert_eq!(q::<String>(c, &["TYPE", "zz"]).unwrap(), "none");
    assert_eq!(q::<i64>(c, &["INCR", "ctr"]).unwrap(), 1);
    assert_eq!(q::<i64>(c, &["INCRBY", "ctr", "10"]).unwrap(), 11);
    assert_eq!(q::<i64>(c, &["DECRBY", "ctr", "5"]).unwrap(), 6);
    assert_eq!(q::<i64>(c, &["DECR", "ctr"]).unwrap(), 5);
    assert_eq!(
        q::<String>(c, &["INCRBYFLOAT", "fl", "2.5"]).unwrap(),
        "2.5"
    );
    assert_eq!(q::<i64>(c, &["APPEND", "s", "Hello"]).unwrap(), 5);
    assert_eq!(q::<i64>(c, &["APPEND", "s", " World"]).unwrap(), 11);
    assert_eq!(q::<i64>(c, &["STRLEN", "s"]).unwrap(), 11);
    assert_eq!(
        q::<String>(c, &["GETRANGE", "s", "0", "4"]).unwrap(),
        "Hello"
    );
    assert_eq!(q::<i64>(c, &["SETRANGE", "s", "6", "Redis"]).unwrap(), 11);
    assert_eq!(q::<String>(c, &["GET", "s"]).unwrap(), "Hello Redis");
    assert_eq!(q::<String>(c, &["RENAME", "s", "s2"]).unwrap(), "OK");
    assert_eq!(q::<String>(c, &["GET", "s2"]).unwrap(), "Hello Redis");
    let mut keys: Vec<String> = q(c, &["KEYS", "*"]).unwrap();
    keys.sort();
    assert_eq!(keys, ["a", "ctr", "fl", "g", "n1", "pse", "s2", "se"]);
    assert_eq!(q::<i64>(c, &["DBSIZE"]).unwrap(), 8);
    assert_eq!(q::<i64>(c, &["CLUSTER", "KEYSLOT", "foo"]).unwrap(), 12182);
    assert_eq!(q::<String>(c, &["SELECT", "0"]).unwrap(), "OK");
    let info: String = q(c, &["INFO"]).unwrap();
    assert!(info.contains("# Keyspace") && info.contains("db0:keys=8"));
    let all: String = q(c, &["INFO", "all"]).unwrap();
    assert!(all.contains("buffer_pool_misses:") && all.contains("keyspace_shards:64"));
    assert!(q::<i64>(c, &["COMMAND", "COUNT"]).unwrap() > 40);
    assert!(matches!(
        q::<Value>(c, &["COMMAND", "DOCS", "get"]).unwrap(),
        Value::Array(_) | Value::Map(_)
    ));
    assert_eq!(q::<String>(c, &["FLUSHDB"]).unwrap(), "OK");
    assert_eq!(q::<i64>(c, &["DBSIZE"]).unwrap(), 0);
    assert_eq!(q::<String>(c, &["SET", "x", "1"]).unwrap(), "OK");
    assert_eq!(q::<String>(c, &["FLUSHALL"]).unwrap(), "OK");
    assert_eq!(q::<i64>(c, &["EXISTS", "x"]).unwrap(), 0);
    h.shutdown().unwrap();
}

#[test]
fn error_replies() {
    let (h, mut c) = start(Config::builder().port(0).build());
    let c = &mut c;
    assert!(err(c, &["GET"]).contains("wrong number of arguments for 'get' command"));
    assert!(err(c, &["SET", "k", "v", "NX", "XX"]).contains("syntax error"));
    assert!(err(c, &["SET", "k", "v", "EX", "0"]).contains("invalid expire time in 'set' command"));
    assert!(err(c, &["INCRBY", "k", "x"]).contains("value is not an integer or out of range"));
    q::<()>(c, &["SET", "s", "abc"]).unwrap();
    assert!(err(c, &["INCR", "s"]).contains("value is not an integer or out of range"));
    assert!(err(c, &["INCRBYFLOAT", "s", "1"]).contains("value is not a valid float"));
    q::<()>(c, &["SET", "m", "9223372036854775807"]).unwrap();
    assert!(err(c, &["INCR", "m"]).contains("increment or decrement would overflow"));
    assert!(err(c, &["RENAME", "nope", "x"]).contains("no such key"));
    assert!(err(c, &["SETRANGE", "s", "-1", "x"]).contains("offset is out of range"));
    assert!(err(c, &["SELECT", "1"]).contains("DB index is out of range"));
    assert!(err(c, &["NOSUCH"]).contains("unknown command 'NOSUCH'"));
    assert!(err(c, &["SCAN", "x"]).contains("invalid cursor"));
    assert!(err(c, &["MSET", "a"]).contains("wrong number of arguments for 'mset' command"));
    h.shutdown().unwrap();
}

#[test]
fn ttls_follow_the_clock() {
    let clock = ManualClock::new();
    let h = Server::start_with_clock(Config::builder().port(0).build(), Arc::new(clock.clone()))
        .unwrap();
    let mut c = redis::Client::open(format!("redis://{}/", h.local_addr()))
        .unwrap()
        .get_connection()
        .unwrap();
    let c = &mut c;
    q::<()>(c, &["SET", "a", "1", "EX", "10"]).unwrap();
    q::<()>(c, &["SET", "b", "1", "PX", "1500"]).unwrap();
    q::<()>(c, &["SET", "c", "1"]).unwrap();
    assert_eq!(q::<i64>(c, &["TTL", "a"]).unwrap(), 10);
    clock.advance(Duration::from_millis(1500));
    assert_eq!(q::<Option<String>>(c, &["GET", "b"]).unwrap(), None);
    assert_eq!(q::<i64>(c, &["PTTL", "a"]).unwrap(), 8500);
    clock.advance(Duration::from_secs(9));
    assert_eq!(q::<i64>(c, &["EXISTS", "a", "b", "c"]).unwrap(), 1);
    assert_eq!(q::<i64>(c, &["TTL", "a"]).unwrap(), -2);
    h.shutdown().unwrap();
}

#[test]
fn scan_iterates_everything_once_with_match() {
    let (h, mut c) = start(Config::builder().port(0).build());
    let c = &mut c;
    for i in 0..300 {
        q::<()>(c, &["SET", &format!("key:{i}"), "v"]).unwrap();
        q::<()>(c, &["SET", &format!("other:{i}"), "v"]).unwrap();
    }
    let mut cursor = "0".to_string();
    let mut seen = std::collections::HashSet::new();
    loop {
        let (next, keys): (String, Vec<String>) =
            q(c, &["SCAN", &cursor, "MATCH", "key:*", "COUNT", "20"]).unwrap();
        for k in keys {
            assert!(k.starts_with("key:"));
            seen.insert(k);
        }
        if next == "0" {
            break;
        }
        cursor = next;
    }
    assert_eq!(seen.len(), 300);
    let (_, keys): (String, Vec<String>) = q(c, &["SCAN", "0", "TYPE", "hash"]).unwrap();
    assert!(keys.is_empty());
    h.shutdown().unwrap();
}

#[test]
fn resp3_via_hello() {
    let h = Server::start(Config::builder().port(0).build()).unwrap();
    let mut c = RawClient::connect(h.local_addr());
    match c.cmd(&[b"HELLO", b"3"]) {
        Frame::Map(pairs) => {
            assert!(pairs.contains(&(Frame::Bulk(Some(b"proto".to_vec())), Frame::Integer(3))));
        }
        other => panic!("HELLO 3 gave {other:?}"),
    }
    assert_eq!(c.cmd(&[b"GET", b"nope"]), Frame::Null);
    assert!(matches!(c.cmd(&[b"INFO", b"server"]), Frame::Verbatim(_)));
    assert!(matches!(
        c.cmd(&[b"CONFIG", b"GET", b"save"]),
        Frame::Map(_)
    ));
    assert!(matches!(c.cmd(&[b"HELLO", b"2"]), Frame::Array(_)));
    assert_eq!(c.cmd(&[b"GET", b"nope"]), Frame::Bulk(None));
    h.shutdown().unwrap();
}

#[test]
fn auth_gates_every_command() {
    let h = Server::start(Config::builder().port(0).requirepass("s3cret").build()).unwrap();
    let mut c = RawClient::connect(h.local_addr());
    let noauth = Frame::Error(b"NOAUTH Authentication required.".to_vec());
    assert_eq!(c.cmd(&[b"GET", b"k"]), noauth);
    assert_eq!(c.cmd(&[b"PING"]), noauth);
    assert_eq!(c.cmd(&[b"NOSUCH"]), noauth);
    assert!(matches!(c.cmd(&[b"HELLO", b"3"]), Frame::Error(e) if e.starts_with(b"NOAUTH")));
    assert!(matches!(c.cmd(&[b"AUTH", b"wrong"]), Frame::Error(e) if e.starts_with(b"WRONGPASS")));
    assert!(
        matches!(c.cmd(&[b"AUTH", b"bob", b"s3cret"]), Frame::Error(e) if e.starts_with(b"WRONGPASS"))
    );
    assert_eq!(c.cmd(&[b"AUTH", b"s3cret"]), Frame::Simple(b"OK".to_vec()));
    assert_eq!(c.cmd(&[b"PING"]), Frame::Simple(b"PONG".to_vec()));
    let mut c2 = RawClient::connect(h.local_addr());
    assert!(matches!(
        c2.cmd(&[b"HELLO", b"3", b"AUTH", b"default", b"s3cret"]),
        Frame::Map(_)
    ));
    assert_eq!(c2.cmd(&[b"GET", b"k"]), Frame::Null);
    let mut c3 = RawClient::connect(h.local_addr());
    assert_eq!(c3.cmd(&[b"QUIT"]), Frame::Simple(b"OK".to_vec()));
    let mut rc = redis::Client::open(format!("redis://:s3cret@{}/", h.local_addr()))
        .unwrap()
        .get_connection()
        .unwrap();
    assert_eq!(q::<String>(&mut rc, &["PING"]).unwrap(), "PONG");
    h.shutdown().unwrap();
}

#[test]
fn maxclients_refuses_extra_connections() {
    let h = Server::start(Config::builder().port(0).maxclients(2).build()).unwrap();
    let mut a = RawClient::connect(h.local_addr());
    let mut b = RawClient::connect(h.local_addr());
    assert_eq!(a.cmd(&[b"PING"]), Frame::Simple(b"PONG".to_vec()));
    assert_eq!(b.cmd(&[b"PING"]), Frame::Simple(b"PONG".to_vec()));
    let mut c = RawClient::connect(h.local_addr());
    assert_eq!(
        c.read_frame(),
        Some(Frame::Error(b"ERR max number of clients reached".to_vec()))
    );
    assert!(c.is_closed());
    drop(a);
    // A slot frees once the server notices the close.
    let mut ok = false;
    for _ in 0..100 {
        let mut d = RawClient::connect(h.local_addr());
        d.send(&[b"PING"]);
        if d.read_frame() == Some(Frame::Simple(b"PONG".to_vec())) {
            ok = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(ok);
    h.shutdown().unwrap();
}

#[test]
fn malformed_input_closes_only_that_connection() {
    let limits = Limits {
        max_bulk_len: 1024,
        ..Limits::default()
    };
    let h = Server::start(Config::builder().port(0).limits(limits).build()).unwrap();
    let mut good = RawClient::connect(h.local_addr());
    assert_eq!(
        good.cmd(&[b"SET", b"k", b"v"]),
        Frame::Simple(b"OK".to_vec())
    );
    let bad_inputs: &[&[u8]] = &[
        b"*1\r\n$2000\r\n",
        b"*-\r\n",
        b"*2\r\n$3\r\nGET\r\n:1\r\n",
        b"*\xff\xfe\r\n",
        b"*1\r\n$abc\r\n",
    ];
    for input in bad_inputs {
        let mut bad = RawClient::connect(h.local_addr());
        bad.send_raw(input);
        match bad.read_frame() {
            Some(Frame::Error(e)) => assert!(e.starts_with(b"ERR Protocol error"), "{e:?}"),
            other => panic!("{input:?} gave {other:?}"),
        }
        assert!(bad.is_closed());
    }
    // An unterminated inline line longer than the limit is refused too.
    let mut bad = RawClient::connect(h.local_addr());
    bad.send_raw(&vec![b'a'; 70 * 1024]);
    assert!(matches!(bad.read_frame(), Some(Frame::Error(_))));
    assert_eq!(good.cmd(&[b"GET", b"k"]), Frame::Bulk(Some(b"v".to_vec())));
    h.shutdown().unwrap();
}

#[test]
fn large_values_round_trip() {
    let (h, mut c) = start(Config::builder().port(0).build());
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let _: () = redis::cmd("SET")
        .arg("big")
        .arg(&big[..])
        .query(&mut c)
        .unwrap();
    let back: Vec<u8> = redis::cmd("GET").arg("big").query(&mut c).unwrap();
    assert_eq!(back, big);
    let mut p = redis::pipe();
    for i in 0..1000 {
        p.cmd("SET").arg(format!("p{i}")).arg(i);
    }
    for i in 0..1000 {
        p.cmd("GET").arg(format!("p{i}"));
    }
    let out: Vec<Value> = p.query(&mut c).unwrap();
    assert_eq!(out.len(), 2000);
    assert_eq!(out[1999], Value::BulkString(b"999".to_vec()));
    h.shutdown().unwrap();
}

#[test]
fn maxmemory_evicts_or_refuses() {
    let (h, mut c) = start(
        Config::builder()
            .port(0)
            .maxmemory(200_000, EvictionPolicy::AllKeysLru)
            .build(),
    );
    let v = "x".repeat(1000);
    for i in 0..1000 {
        q::<()>(&mut c, &["SET", &format!("k{i}"), &v]).unwrap();
    }
    let n: i64 = q(&mut c, &["DBSIZE"]).unwrap();
    assert!(n < 1000 && n > 50, "dbsize {n}");
    assert!(h.db().ks.used_memory() <= 200_000);
    let info: String = q(&mut c, &["INFO", "all"]).unwrap();
    assert!(info.contains("keyspace:kuai-cache"), "{info}");
    assert!(!info.contains("evicted_keys:0\r"), "{info}");
    h.shutdown().unwrap();

    // A key that is read between the writes survives LRU and LFU eviction.
    for policy in [EvictionPolicy::AllKeysLru, EvictionPolicy::AllKeysLfu] {
        let (h, mut c) = start(Config::builder().port(0).maxmemory(100_000, policy).build());
        q::<()>(&mut c, &["SET", "hot", &v]).unwrap();
        for i in 0..500 {
            let _: Option<String> = q(&mut c, &["GET", "hot"]).unwrap();
            q::<()>(&mut c, &["SET", &format!("k{i}"), &v]).unwrap();
        }
        assert_eq!(
            q::<i64>(&mut c, &["EXISTS", "hot", "k0"]).unwrap(),
            1,
            "{policy:?}"
        );
        h.shutdown().unwrap();
    }

    let (h, mut c) = start(
        Config::builder()
            .port(0)
            .maxmemory(50_000, EvictionPolicy::NoEviction)
            .build(),
    );
    let mut refused = None;
    for i in 0..1000 {
        if let Err(e) = q::<()>(&mut c, &["SET", &format!("k{i}"), &v]) {
            refused = Some(e.to_string());
            break;
        }
    }
    assert!(refused.expect("a write is refused").contains("OOM"));
    assert_eq!(q::<i64>(&mut c, &["DEL", "k0"]).unwrap(), 1);
    h.shutdown().unwrap();
}

#[test]
fn several_event_loops_share_one_keyspace() {
    let h = Server::start(Config::builder().port(0).threads(2).build()).unwrap();
    let addr = h.local_addr();
    let workers: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                let mut c = redis::Client::open(format!("redis://{addr}/"))
                    .unwrap()
                    .get_connection()
                    .unwrap();
                let mut p = redis::pipe();
                for _ in 0..250 {
                    p.cmd("INCR").arg("shared").ignore();
                    p.cmd("MSET").arg("x").arg("1").arg("y").arg("1").ignore();
                }
                let _: () = p.query(&mut c).unwrap();
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let mut c = redis::Client::open(format!("redis://{addr}/"))
        .unwrap()
        .get_connection()
        .unwrap();
    assert_eq!(q::<i64>(&mut c, &["GET", "shared"]).unwrap(), 1000);
    let info: String = q(&mut c, &["INFO", "stats"]).unwrap();
    assert!(info.contains("total_connections_received:5"), "{info}");
    h.shutdown().unwrap();
}

#[test]
fn scan_returns_every_key_while_the_keyspace_grows() {
    let (h, mut c) = start(Config::builder().port(0).build());
    for i in 0..300 {
        q::<()>(&mut c, &["SET", &format!("s{i}"), "v"]).unwrap();
    }
    let mut seen = std::collections::HashSet::new();
    let mut cursor = "0".to_string();
    let mut grown = 0;
    loop {
        let (next, keys): (String, Vec<String>) =
            q(&mut c, &["SCAN", &cursor, "COUNT", "7"]).unwrap();
        seen.extend(keys);
        for _ in 0..5 {
            q::<()>(&mut c, &["SET", &format!("grow{grown}"), "v"]).unwrap();
            grown += 1;
        }
        if next == "0" {
            break;
        }
        cursor = next;
    }
    assert!(grown > 200, "{grown}");
    for i in 0..300 {
        assert!(seen.contains(&format!("s{i}")), "s{i} missed");
    }
    h.shutdown().unwrap();
}

#[test]
fn noeviction_refuses_growth_but_serves_reads_and_shrinking_writes() {
    let (h, mut c) = start(
        Config::builder()
            .port(0)
            .maxmemory(50_000, EvictionPolicy::NoEviction)
            .build(),
    );
    let v = "x".repeat(1000);
    let mut stored = 0;
    while q::<()>(&mut c, &["SET", &format!("k{stored}"), &v]).is_ok() {
        stored += 1;
    }
    assert!(stored > 10);
    let e = err(&mut c, &["SET", "another", &v]);
    assert!(e.contains("OOM"), "{e}");
    let grow = "y".repeat(2000);
    assert!(err(&mut c, &["APPEND", "k0", &grow]).contains("OOM"));
    assert_eq!(q::<String>(&mut c, &["GET", "k0"]).unwrap(), v);
    q::<()>(&mut c, &["SET", "k0", "small"]).unwrap();
    assert_eq!(
        q::<i64>(&mut c, &["INCR", "n"]).unwrap(),
        1,
        "room freed by shrinking k0"
    );
    assert!(h.db().ks.used_memory() <= 50_000);
    let info: String = q(&mut c, &["INFO", "stats"]).unwrap();
    assert!(info.contains("evicted_keys:0\r"), "{info}");
    h.shutdown().unwrap();
}
