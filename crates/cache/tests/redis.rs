//! L1 + Redis L2 against the real server at 127.0.0.1:6379.
//!
//! These tests FAIL when Redis is not running. Start it with
//! `redis-server --daemonize yes` (or `apt-get install redis-server`).
#![cfg(feature = "redis")]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kuai_cache::{TwoLevelCache, TwoLevelConfig};

fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("kuai-test-{name}-{}-{nanos}", std::process::id())
}

async fn require_redis() {
    let client = redis::Client::open("redis://127.0.0.1:6379/").expect("valid url");
    let conn = tokio::time::timeout(
        Duration::from_secs(2),
        client.get_multiplexed_async_connection(),
    )
    .await;
    match conn {
        Ok(Ok(_)) => {}
        other => panic!(
            "Redis is not reachable at 127.0.0.1:6379 ({other:?}). \
             Start it with `redis-server --daemonize yes` before running the `redis` feature's tests."
        ),
    }
}

fn cfg(ns: &str) -> TwoLevelConfig {
    TwoLevelConfig {
        namespace: ns.to_string(),
        ..TwoLevelConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_levels_share_values_and_broadcast_invalidations() {
    require_redis().await;
    let ns = unique("bcast");
    let a = TwoLevelCache::new(cfg(&ns)).await.expect("config");
    let b = TwoLevelCache::new(cfg(&ns)).await.expect("config");
    // Give both subscribers time to subscribe.
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.set("user:1", b"alice".to_vec()).await.expect("redis up");
    // Let A's broadcast reach B first: an invalidation that lands while B
    // reads L2 revokes B's L1 lease (B serves the value, caches it nowhere).
    let deadline = Instant::now() + Duration::from_secs(5);
    while b.stats().invalidations_received == 0 {
        assert!(Instant::now() < deadline, "B never got A's broadcast");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        b.get("user:1").await.as_deref(),
        Some(&b"alice"[..]),
        "B reads A's write from L2"
    );
    assert_eq!(b.stats().l2_hits, 1);
    assert_eq!(b.get("user:1").await.as_deref(), Some(&b"alice"[..]));
    assert_eq!(b.stats().l1_hits, 1, "now in B's L1");
    a.set("user:1", b"alicia".to_vec()).await.expect("redis up");
    let deadline = Instant::now() + Duration::from_secs(5);
    while b.l1().peek("user:1").is_some() {
        assert!(
            Instant::now() < deadline,
            "B's L1 copy was never invalidated"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(b.get("user:1").await.as_deref(), Some(&b"alicia"[..]));
    assert!(b.stats().invalidations_received >= 1);
    a.invalidate("user:1").await.expect("redis up");
    assert_eq!(a.get("user:1").await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_with_loads_once_and_fills_both_levels() {
    require_redis().await;
    let ns = unique("load");
    let c = TwoLevelCache::new(cfg(&ns)).await.expect("config");
    let loads = Arc::new(AtomicU64::new(0));
    for _ in 0..3 {
        let l = Arc::clone(&loads);
        let v = c
            .get_with("k", || async move {
                l.fetch_add(1, Ordering::SeqCst);
                Ok(Some(b"v".to_vec()))
            })
            .await
            .expect("ok");
        assert_eq!(v.as_deref(), Some(&b"v"[..]));
    }
    assert_eq!(loads.load(Ordering::SeqCst), 1);
    let other = TwoLevelCache::new(cfg(&ns)).await.expect("config");
    assert_eq!(
        other.get("k").await.as_deref(),
        Some(&b"v"[..]),
        "filled in L2 too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_in_redis_is_a_counted_error_not_a_panic() {
    require_redis().await;
    let ns = unique("garbage");
    let client = redis::Client::open("redis://127.0.0.1:6379/").expect("url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis up");
    // A list where a string is expected: GET answers WRONGTYPE.
    let _: () = redis::cmd("RPUSH")
        .arg(format!("{ns}:bad"))
        .arg("x")
        .query_async(&mut conn)
        .await
        .expect("rpush");
    let c = TwoLevelCache::new(cfg(&ns)).await.expect("config");
    assert_eq!(c.get("bad").await, None);
    assert_eq!(c.stats().l2_errors, 1);
    let _: () = redis::cmd("DEL")
        .arg(format!("{ns}:bad"))
        .query_async(&mut conn)
        .await
        .expect("del");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fails_open_and_opens_the_breaker_when_redis_is_unreachable() {
    // Nothing listens on port 1: every L2 call fails fast or times out.
    let c = TwoLevelCache::new(TwoLevelConfig {
        url: "redis://127.0.0.1:1/".into(),
        l2_timeout: Duration::from_millis(100),
        breaker_threshold: 3,
        breaker_cooldown: Duration::from_secs(60),
        ..cfg(&unique("down"))
    })
    .await
    .expect("config is valid even if redis is down");
    for i in 0..20 {
        let v = c
            .get_with("k", || async move { Ok(Some(vec![i])) })
            .await
            .expect("served from the source");
        assert!(v.is_some());
        c.l1().invalidate("k");
    }
    let s = c.stats();
    assert_eq!(s.source_loads, 20);
    assert!(s.l2_errors >= 3 && s.l2_errors <= 6, "{s:?}");
    assert!(s.l2_skipped > 0, "breaker skipped calls: {s:?}");
    assert!(!c.l2_available());
    assert!(
        c.set("k", vec![1]).await.is_err(),
        "a write reports the L2 failure"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_in_another_process_cannot_refill_a_stale_value() {
    require_redis().await;
    let ns = unique("lease");
    let reader = TwoLevelCache::new(cfg(&ns)).await.expect("config");
    let writer = TwoLevelCache::new(cfg(&ns)).await.expect("config");
    // The reader misses, reads the old value from the source... and while it
    // is reading, the writer updates the source and invalidates the key.
    let w = writer.clone();
    let v = reader
        .get_with("k", || async move {
            w.invalidate("k").await.map_err(kuai_core::Error::from)?;
            Ok(Some(b"old".to_vec()))
        })
        .await
        .expect("served");
    assert_eq!(
        v.as_deref(),
        Some(&b"old"[..]),
        "the reader still gets its answer"
    );
    assert_eq!(
        reader.stats().stale_fills,
        1,
        "but L2 refused the stale fill"
    );
    let fresh = TwoLevelCache::new(cfg(&ns)).await.expect("config");
    assert_eq!(fresh.get("k").await, None, "no stale value in L2");
    assert_eq!(reader.l1().peek("k"), None, "nor in the reader's L1");
    // A fill with no concurrent write succeeds.
    let v = fresh
        .get_with("k", || async { Ok(Some(b"new".to_vec())) })
        .await
        .expect("ok");
    assert_eq!(v.as_deref(), Some(&b"new"[..]));
    assert_eq!(writer.get("k").await.as_deref(), Some(&b"new"[..]));
}

/// A "server" that answers every request with half a reply and hangs up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_disconnecting_mid_reply_is_a_counted_error() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = sock.read(&mut buf).await;
                let _ = sock.write_all(b"$10\r\nabc").await;
                // dropped: connection closed mid-bulk-string
            });
        }
    });
    let c = TwoLevelCache::new(TwoLevelConfig {
        url: format!("redis://127.0.0.1:{port}/"),
        ..cfg(&unique("midreply"))
    })
    .await
    .expect("config");
    assert_eq!(c.get("k").await, None);
    let v = c
        .get_with("k", || async { Ok(Some(b"from source".to_vec())) })
        .await
        .expect("fail-open: served from the source");
    assert_eq!(v.as_deref(), Some(&b"from source"[..]));
    assert!(c.stats().l2_errors >= 2, "{:?}", c.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_of_one_key_load_once() {
    require_redis().await;
    let c = TwoLevelCache::new(cfg(&unique("flight")))
        .await
        .expect("config");
    let loads = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let c = c.clone();
        let l = Arc::clone(&loads);
        tasks.push(tokio::spawn(async move {
            c.get_with("hot", || async move {
                l.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok(Some(b"v".to_vec()))
            })
            .await
        }));
    }
    for t in tasks {
        let v = t.await.expect("join").expect("served");
        assert_eq!(v.as_deref(), Some(&b"v"[..]));
    }
    assert_eq!(loads.load(Ordering::SeqCst), 1);
}

/// A TCP proxy to the real Redis whose server-to-client direction can be
/// held: a reply is read from Redis but not passed on until released.
struct HoldingProxy {
    port: u16,
    hold: Arc<std::sync::atomic::AtomicBool>,
    /// Notified when a request containing `GET` passes while replies are held.
    get_seen: Arc<tokio::sync::Notify>,
}

async fn holding_proxy() -> HoldingProxy {
    use std::sync::atomic::AtomicBool;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let hold = Arc::new(AtomicBool::new(false));
    let get_seen = Arc::new(tokio::sync::Notify::new());
    let (h, g) = (Arc::clone(&hold), Arc::clone(&get_seen));
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect("127.0.0.1:6379").await else {
                continue;
            };
            let (mut cr, mut cw) = client.into_split();
            let (mut sr, mut sw) = server.into_split();
            let (h_up, g_up, h_down) = (Arc::clone(&h), Arc::clone(&g), Arc::clone(&h));
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n @ 1..) = cr.read(&mut buf).await {
                    if sw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    let get = buf[..n].windows(5).any(|w| w == b"\r\nGET");
                    if get && h_up.load(Ordering::SeqCst) {
                        g_up.notify_one();
                    }
                }
            });
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n @ 1..) = sr.read(&mut buf).await {
                    while h_down.load(Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    if cw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    HoldingProxy {
        port,
        hold,
        get_seen,
    }
}

/// The seed's third cache-aside race, on the L1: a read that got the old
/// value from L2 just before a write's invalidation reached this process
/// must not put that value back into L1 (it would live there for `l1_ttl`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_l2_read_racing_an_invalidation_does_not_refill_l1() {
    require_redis().await;
    let proxy = holding_proxy().await;
    let ns = unique("l1race");
    let writer = TwoLevelCache::new(cfg(&ns)).await.expect("config");
    let reader = Arc::new(
        TwoLevelCache::new(TwoLevelConfig {
            url: format!("redis://127.0.0.1:{}/", proxy.port),
            // The held reply must not time out: the race needs it answered.
            l2_timeout: Duration::from_secs(10),
            ..cfg(&ns)
        })
        .await
        .expect("config"),
    );
    writer.set("k", b"old".to_vec()).await.expect("set");
    // Open the reader's command connection before replies are held.
    assert_eq!(reader.get("warm-up").await, None);
    // Replies to the reader are held from here: its GET reaches Redis and
    // reads "old", but the answer waits in the proxy.
    proxy.hold.store(true, Ordering::SeqCst);
    let seen = proxy.get_seen.notified();
    let r = Arc::clone(&reader);
    let read = tokio::spawn(async move { r.get("k").await });
    tokio::time::timeout(Duration::from_secs(10), seen)
        .await
        .expect("the reader's GET reached the proxy");
    // The write's invalidation reaches the reader's L1 (as the broadcast
    // would) while the old value is still in flight.
    reader.l1().invalidate("k");
    proxy.hold.store(false, Ordering::SeqCst);
    let got = tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("the read finishes")
        .expect("no panic");
    assert_eq!(
        got.as_deref(),
        Some(&b"old"[..]),
        "it read before the write"
    );
    assert_eq!(
        reader.l1().get("k"),
        None,
        "the raced read must not refill L1 with the old value"
    );
}
