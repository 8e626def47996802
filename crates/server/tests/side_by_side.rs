//! The same command script against a real `redis-server` (started on a spare
//! port) and against kuai-server; replies must match byte for byte, except
//! where marked (unordered key lists, millisecond TTLs).
//!
//! Fails loudly when `redis-server` is not installed.

mod common;

use common::{RawClient, RedisServer, text};
use kuai_server::frame::Frame;
use kuai_server::{Config, Server};

#[derive(Clone, Copy, PartialEq)]
enum Cmp {
    Exact,
    /// Arrays compared as sorted multisets.
    Sorted,
    /// Integers within 50 of each other (PTTL) / same sign.
    Close,
    /// Only the reply's type must match.
    Shape,
}

fn sorted(f: &Frame) -> Frame {
    match f {
        Frame::Array(Some(v)) => {
            let mut v = v.clone();
            v.sort_by_key(text);
            Frame::Array(Some(v))
        }
        other => other.clone(),
    }
}

fn same(a: &Frame, b: &Frame, cmp: Cmp) -> bool {
    match cmp {
        Cmp::Exact => a == b,
        Cmp::Sorted => sorted(a) == sorted(b),
        Cmp::Close => match (a, b) {
            (Frame::Integer(x), Frame::Integer(y)) => {
                (x - y).abs() <= 50 && x.signum() == y.signum()
            }
            _ => a == b,
        },
        Cmp::Shape => std::mem::discriminant(a) == std::mem::discriminant(b),
    }
}

fn script() -> Vec<(Cmp, Vec<&'static str>)> {
    use Cmp::*;
    let s = |c: Cmp, line: &'static str| {
        (
            c,
            line.split(' ')
                .map(|w| if w == "<empty>" { "" } else { w })
                .collect::<Vec<_>>(),
        )
    };
    vec![
        s(Exact, "FLUSHALL"),
        s(Exact, "PING"),
        s(Exact, "PING hello"),
        s(Exact, "PING a b"),
        s(Exact, "ECHO hi"),
        s(Exact, "ECHO"),
        s(Exact, "SELECT 0"),
        s(Exact, "SELECT x"),
        s(Exact, "NOSUCHCMD a b"),
        s(Exact, "GET missing"),
        s(Exact, "GET"),
        s(Exact, "GET a b"),
        s(Exact, "SET k v"),
        s(Exact, "GET k"),
        s(Exact, "SET k v2 NX"),
        s(Exact, "SET k v3 XX"),
        s(Exact, "SET nk v XX"),
        s(Exact, "SET k v4 GET"),
        s(Exact, "SET nk2 v GET"),
        s(Exact, "SET k v NX XX"),
        s(Exact, "SET k v EX 10 PX 100"),
        s(Exact, "SET k v EX"),
        s(Exact, "SET k v EX abc"),
        s(Exact, "SET k v EX 0"),
        s(Exact, "SET k v EX -5"),
        s(Exact, "SET k v PX 9223372036854775807"),
        s(Exact, "SET k v EX 9223372036854775"),
        s(Exact, "SET k v BOGUS"),
        s(Exact, "SET k v KEEPTTL EX 5"),
        s(Exact, "SET t v EX 100"),
        s(Exact, "TTL t"),
        s(Close, "PTTL t"),
        s(Exact, "SET t v2 KEEPTTL"),
        s(Exact, "TTL t"),
        s(Exact, "SET t v3"),
        s(Exact, "TTL t"),
        s(Exact, "TTL nosuch"),
        s(Exact, "PTTL nosuch"),
        s(Exact, "SET t v EXAT 1"),
        s(Exact, "EXISTS t"),
        s(Exact, "SET t v PXAT 99999999999999"),
        s(Exact, "PEXPIRETIME t"),
        s(Exact, "EXPIRETIME t"),
        s(Exact, "SETNX sn 1"),
        s(Exact, "SETNX sn 2"),
        s(Exact, "GET sn"),
        s(Exact, "SETEX se 100 v"),
        s(Exact, "TTL se"),
        s(Exact, "SETEX se 0 v"),
        s(Exact, "SETEX se x v"),
        s(Exact, "PSETEX pe 100000 v"),
        s(Exact, "TTL pe"),
        s(Exact, "PSETEX pe -1 v"),
        s(Exact, "GETSET sn 3"),
        s(Exact, "GETSET nosuch 1"),
        s(Exact, "GETDEL nosuch"),
        s(Exact, "GETDEL sn"),
        s(Exact, "EXISTS sn"),
        s(Exact, "SET g v"),
        s(Exact, "GETEX g"),
        s(Exact, "GETEX g EX 100"),
        s(Exact, "TTL g"),
        s(Exact, "GETEX g PERSIST"),
        s(Exact, "TTL g"),
        s(Exact, "GETEX g EX 10 PX 10"),
        s(Exact, "GETEX g NX"),
        s(Exact, "GETEX g EX 0"),
        s(Exact, "GETEX nosuch EX 10"),
        s(Exact, "GETEX g PXAT 1"),
        s(Exact, "EXISTS g"),
        s(Exact, "MSET a 1 b 2 c 3"),
        s(Exact, "MSET a 1 b"),
        s(Exact, "MGET a b nosuch c"),
        s(Exact, "MSETNX a 9 z 9"),
        s(Exact, "MSETNX y 9 z 9"),
        s(Exact, "MGET y z a"),
        s(Exact, "EXISTS a b a nosuch"),
        s(Exact, "DEL a b nosuch"),
        s(Exact, "UNLINK c y"),
        s(Exact, "DEL"),
        s(Exact, "SET e v"),
        s(Exact, "EXPIRE e 100"),
        s(Exact, "TTL e"),
        s(Exact, "EXPIRE e 50 NX"),
        s(Exact, "EXPIRE e 50 XX"),
        s(Exact, "TTL e"),
        s(Exact, "EXPIRE e 40 GT"),
        s(Exact, "EXPIRE e 60 GT"),
        s(Exact, "EXPIRE e 70 LT"),
        s(Exact, "EXPIRE e 30 LT"),
        s(Exact, "TTL e"),
        s(Exact, "EXPIRE e 30 NX XX"),
        s(Exact, "EXPIRE e 30 GT LT"),
        s(Exact, "EXPIRE e 30 FOO"),
        s(Exact, "EXPIRE e abc"),
        s(Exact, "EXPIRE e 9223372036854775807"),
        s(Exact, "EXPIRE nosuch 10"),
        s(Exact, "PEXPIRE e 200000"),
        s(Exact, "TTL e"),
        s(Exact, "PERSIST e"),
        s(Exact, "PERSIST e"),
        s(Exact, "PERSIST nosuch"),
        s(Exact, "TTL e"),
        s(Exact, "EXPIREAT e 99999999999"),
        s(Exact, "EXPIRETIME e"),
        s(Exact, "PEXPIREAT e 99999999999999"),
        s(Exact, "PEXPIRETIME e"),
        s(Exact, "EXPIRE e -1"),
        s(Exact, "EXISTS e"),
        s(Exact, "SET e v"),
        s(Exact, "EXPIREAT e 1"),
        s(Exact, "GET e"),
        s(Exact, "SET e v"),
        s(Exact, "TYPE e"),
        s(Exact, "TYPE nosuch"),
        s(Exact, "INCR n"),
        s(Exact, "INCR n"),
        s(Exact, "DECR n"),
        s(Exact, "INCRBY n 10"),
        s(Exact, "DECRBY n 3"),
        s(Exact, "INCRBY n abc"),
        s(Exact, "INCRBY n 1.5"),
        s(Exact, "INCR e"),
        s(Exact, "SET big 9223372036854775807"),
        s(Exact, "INCR big"),
        s(Exact, "SET small -9223372036854775808"),
        s(Exact, "DECR small"),
        s(Exact, "DECRBY n -9223372036854775808"),
        s(Exact, "SET sp 1"),
        s(Exact, "APPEND sp <empty>"),
        s(Exact, "SET lead 01"),
        s(Exact, "INCR lead"),
        s(Exact, "SET ttln 5 EX 100"),
        s(Exact, "INCR ttln"),
        s(Exact, "TTL ttln"),
        s(Exact, "INCRBYFLOAT f 10.5"),
        s(Exact, "INCRBYFLOAT f 0.25"),
        s(Exact, "INCRBYFLOAT f -5"),
        s(Exact, "INCRBYFLOAT f 5.0e3"),
        s(Exact, "INCRBYFLOAT f abc"),
        s(Exact, "INCRBYFLOAT e 1"),
        s(Exact, "INCRBYFLOAT f inf"),
        s(Exact, "GET f"),
        s(Exact, "SET f2 3"),
        s(Exact, "INCRBYFLOAT f2 1.5"),
        s(Exact, "APPEND ap Hello"),
        s(Exact, "APPEND ap _World"),
        s(Exact, "GET ap"),
        s(Exact, "STRLEN ap"),
        s(Exact, "STRLEN nosuch"),
        s(Exact, "GETRANGE ap 0 4"),
        s(Exact, "GETRANGE ap -3 -1"),
        s(Exact, "GETRANGE ap 0 -100"),
        s(Exact, "GETRANGE ap 5 3"),
        s(Exact, "GETRANGE ap -1 -5"),
        s(Exact, "GETRANGE ap 0 1000"),
        s(Exact, "GETRANGE nosuch 0 -1"),
        s(Exact, "GETRANGE ap a 1"),
        s(Exact, "SUBSTR ap 1 3"),
        s(Exact, "SETRANGE ap 6 Redis"),
        s(Exact, "GET ap"),
        s(Exact, "SETRANGE sr 5 x"),
        s(Exact, "GET sr"),
        s(Exact, "SETRANGE sr2 0 <empty>"),
        s(Exact, "EXISTS sr2"),
        s(Exact, "SETRANGE ap -1 x"),
        s(Exact, "SETRANGE ap 536870911 xx"),
        s(Exact, "SETRANGE ap 1 <empty>"),
        s(Exact, "RENAME ap ap2"),
        s(Exact, "GET ap2"),
        s(Exact, "RENAME nosuch x"),
        s(Exact, "RENAME ap2 ap2"),
        s(Exact, "SET rt v EX 100"),
        s(Exact, "RENAME rt rt2"),
        s(Exact, "TTL rt2"),
        s(Exact, "RENAMENX rt2 ap2"),
        s(Exact, "RENAMENX rt2 rt3"),
        s(Exact, "FLUSHDB"),
        s(Exact, "MSET user:1 a user:2 b item:1 c u[x] d"),
        s(Sorted, "KEYS *"),
        s(Sorted, "KEYS user:*"),
        s(Sorted, "KEYS *:?"),
        s(Sorted, "KEYS u[s]er:[1-2]"),
        s(Sorted, "KEYS u\\[x\\]"),
        s(Sorted, "KEYS nomatch*"),
        s(Exact, "DBSIZE"),
        s(Exact, "SCAN abc"),
        s(Exact, "SCAN 0 COUNT 0"),
        s(Exact, "SCAN 0 COUNT x"),
        s(Exact, "SCAN 0 FOO bar"),
        s(Exact, "CLUSTER KEYSLOT foo"),
        s(Exact, "FLUSHALL ASYNC"),
        s(Exact, "FLUSHALL BAD"),
        s(Exact, "DBSIZE"),
        s(Exact, "AUTH pass"),
        s(Exact, "AUTH default pass"),
        s(Exact, "HELLO 4"),
        s(Exact, "HELLO x"),
        s(Shape, "COMMAND COUNT"),
        s(Shape, "INFO"),
        s(Exact, "SET"),
        s(Exact, "set lower case"),
        s(Exact, "QUIT"),
    ]
}

#[test]
fn replies_match_redis_server() {
    let redis = RedisServer::start();
    let kuai = Server::start(Config::builder().port(0).build()).expect("start kuai");
    let mut r = RawClient::connect(redis.addr);
    let mut k = RawClient::connect(kuai.local_addr());
    let mut mismatches = Vec::new();
    for (cmp, line) in script() {
        let args: Vec<&[u8]> = line.iter().map(|s| s.as_bytes()).collect();
        let rf = r.cmd(&args);
        let kf = k.cmd(&args);
        let expect_skip = line[0] == "CLUSTER"; // redis-server is not in cluster mode
        if expect_skip {
            assert_eq!(kf, Frame::Integer(12182));
            continue;
        }
        if !same(&rf, &kf, cmp) {
            mismatches.push(format!(
                "{}\n   redis: {:?}\n   kuai:  {:?}",
                line.join(" "),
                text(&rf),
                text(&kf)
            ));
        }
    }
    assert!(r.is_closed() && k.is_closed(), "QUIT closes both");
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    kuai.shutdown().unwrap();
}

#[test]
fn inline_and_pipelined_match_redis_server() {
    let redis = RedisServer::start();
    let kuai = Server::start(Config::builder().port(0).build()).expect("start kuai");
    let input: &[u8] = b"SET a \"x y\"\r\nGET a\r\n*2\r\n$3\r\nGET\r\n$1\r\na\r\n  \r\nset b 'it\\'s'\r\nGET b\r\nECHO \"\\x41\\n\"\r\nINCR a\r\n";
    let mut outs = Vec::new();
    for addr in [redis.addr, kuai.local_addr()] {
        let mut c = RawClient::connect(addr);
        c.send_raw(input);
        let mut got = Vec::new();
        for _ in 0..7 {
            got.push(text(&c.read_frame().expect("reply")));
        }
        outs.push(got);
    }
    assert_eq!(outs[0], outs[1]);
    kuai.shutdown().unwrap();
}

#[test]
fn protocol_errors_match_redis_server() {
    let redis = RedisServer::start();
    let kuai = Server::start(Config::builder().port(0).build()).expect("start kuai");
    let cases: &[&[u8]] = &[
        b"*abc\r\n",
        b"*1\r\n$-5\r\n",
        b"*1\r\n+x\r\n",
        b"*1\r\n$99999999999\r\n",
        b"*2\r\n$3\r\nGET\r\n$x\r\n",
        b"SET a \"b\r\n",
        b"*99999999999\r\n",
    ];
    for case in cases {
        let mut replies = Vec::new();
        for addr in [redis.addr, kuai.local_addr()] {
            let mut c = RawClient::connect(addr);
            c.send_raw(case);
            let f = c.read_frame().expect("error reply");
            assert!(
                c.is_closed(),
                "connection closed after {:?}",
                String::from_utf8_lossy(case)
            );
            replies.push(text(&f));
        }
        assert_eq!(
            replies[0],
            replies[1],
            "input {:?}",
            String::from_utf8_lossy(case)
        );
    }
    kuai.shutdown().unwrap();
}
