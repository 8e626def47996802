//! The append-only file through the real binary: `kill -9` loses nothing
//! acknowledged under `appendfsync always`, SIGTERM syncs the log, and
//! replay restores values, TTLs, counters, renames and deletes.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use redis::Connection;

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kuai-server-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn spawn(dir: &Path, port: u16, fsync: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_kuai-server"))
        .args([
            "--port",
            &port.to_string(),
            "--appendonly",
            "yes",
            "--appendfsync",
            fsync,
        ])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn kuai-server")
}

fn connect(port: u16) -> Connection {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(c) = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
            .unwrap()
            .get_connection()
        {
            return c;
        }
        assert!(
            Instant::now() < deadline,
            "kuai-server did not come up on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn kill_9_loses_nothing_acknowledged_with_appendfsync_always() {
    let dir = tmpdir("kill9");
    let port = common::free_port();
    let mut child = spawn(&dir, port, "always");
    let mut c = connect(port);
    let mut p = redis::pipe();
    for i in 0..200 {
        p.cmd("SET")
            .arg(format!("k{i}"))
            .arg(format!("v{i}"))
            .ignore();
    }
    let _: () = p.query(&mut c).unwrap();
    for _ in 0..7 {
        let _: i64 = redis::cmd("INCR").arg("ctr").query(&mut c).unwrap();
    }
    let _: () = redis::cmd("SET")
        .arg("ttl")
        .arg("x")
        .arg("EX")
        .arg(1000)
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg("gone")
        .arg("x")
        .arg("PX")
        .arg(1)
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("RENAME")
        .arg("k0")
        .arg("renamed")
        .query(&mut c)
        .unwrap();
    let _: i64 = redis::cmd("DEL").arg("k1").query(&mut c).unwrap();
    let _: i64 = redis::cmd("APPEND")
        .arg("k2")
        .arg("+")
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("MSET")
        .arg("m1")
        .arg("a")
        .arg("m2")
        .arg("b")
        .query(&mut c)
        .unwrap();
    let last: i64 = redis::cmd("INCRBY")
        .arg("ctr")
        .arg(100)
        .query(&mut c)
        .unwrap();
    assert_eq!(last, 107);
    child.kill().unwrap(); // SIGKILL: no chance to flush anything
    child.wait().unwrap();
    drop(c);

    let mut child = spawn(&dir, port, "always");
    let mut c = connect(port);
    let get = |c: &mut Connection, k: &str| -> Option<String> {
        redis::cmd("GET").arg(k).query(c).unwrap()
    };
    assert_eq!(get(&mut c, "ctr").as_deref(), Some("107"));
    assert_eq!(get(&mut c, "k199").as_deref(), Some("v199"));
    assert_eq!(get(&mut c, "renamed").as_deref(), Some("v0"));
    assert_eq!(get(&mut c, "k0"), None);
    assert_eq!(get(&mut c, "k1"), None);
    assert_eq!(get(&mut c, "k2").as_deref(), Some("v2+"));
    assert_eq!(get(&mut c, "m2").as_deref(), Some("b"));
    assert_eq!(get(&mut c, "gone"), None);
    let ttl: i64 = redis::cmd("TTL").arg("ttl").query(&mut c).unwrap();
    assert!(ttl > 990 && ttl <= 1000, "ttl {ttl}");
    let n: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(n, 199 + 1 + 1 + 2);
    child.kill().unwrap();
    child.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sigterm_syncs_the_log_and_exits_cleanly() {
    let dir = tmpdir("sigterm");
    let port = common::free_port();
    let mut child = spawn(&dir, port, "no");
    let mut c = connect(port);
    let _: () = redis::cmd("SET").arg("a").arg("1").query(&mut c).unwrap();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill(1)");
    assert!(status.success());
    let code = child.wait().unwrap();
    assert!(code.success(), "graceful exit, got {code:?}");
    let mut bytes = Vec::new();
    for f in std::fs::read_dir(dir.join("appendonlydir")).unwrap() {
        bytes.extend(std::fs::read(f.unwrap().path()).unwrap());
    }
    assert!(
        bytes.windows(3).any(|w| w == b"SET"),
        "the log holds the write"
    );

    let mut child = spawn(&dir, port, "everysec");
    let mut c = connect(port);
    let v: String = redis::cmd("GET").arg("a").query(&mut c).unwrap();
    assert_eq!(v, "1");
    child.kill().unwrap();
    child.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
