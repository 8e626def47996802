//! The Redis manager against the real server at 127.0.0.1:6379.
//!
//! These tests fail (never skip) when Redis is not running. Start it with
//! `redis-server --daemonize yes` (Debian: `apt-get install redis-server`).
#![cfg(feature = "redis")]

use std::time::Duration;

use kuai_pool::redis::{self, aio::MultiplexedConnection};
use kuai_pool::{CheckOnCheckout, ConnPool, RedisManager};

const URL: &str = "redis://127.0.0.1:6379";

async fn admin() -> MultiplexedConnection {
    let client = match redis::Client::open(URL) {
        Ok(c) => c,
        Err(e) => panic!("bad redis url: {e}"),
    };
    match client.get_multiplexed_async_connection().await {
        Ok(c) => c,
        Err(e) => panic!(
            "Redis is not reachable at {URL} ({e}). These tests need a real server: \
             start it with `redis-server --daemonize yes` (apt-get install redis-server)."
        ),
    }
}

fn pool(check: CheckOnCheckout) -> ConnPool<RedisManager> {
    let manager = match RedisManager::new(URL) {
        Ok(m) => m,
        Err(e) => panic!("{e}"),
    };
    match ConnPool::builder(manager)
        .max_size(4)
        .acquire_timeout(Duration::from_secs(5))
        .check_on_checkout(check)
        .build()
    {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    }
}

/// Opens all four connections and returns their server-side client ids.
async fn open_all(pool: &ConnPool<RedisManager>) -> Vec<i64> {
    let mut conns = Vec::new();
    for _ in 0..4 {
        match pool.get().await {
            Ok(c) => conns.push(c),
            Err(e) => panic!("Redis pool get failed (is redis-server running on {URL}?): {e}"),
        }
    }
    let mut ids = Vec::new();
    for c in &mut conns {
        match c.query::<i64>(redis::cmd("CLIENT").arg("ID")).await {
            Ok(id) => ids.push(id),
            Err(e) => panic!("CLIENT ID failed: {e}"),
        }
    }
    ids
}

async fn kill(ids: &[i64]) {
    let mut admin = admin().await;
    for id in ids {
        let killed: redis::RedisResult<i64> = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("ID")
            .arg(*id)
            .query_async(&mut admin)
            .await;
        assert_eq!(killed.ok(), Some(1), "CLIENT KILL ID {id}");
    }
    // Let the server close the sockets.
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// Runs `rounds` rounds of 4 concurrent PINGs; returns how many failed.
async fn ping_rounds(pool: &ConnPool<RedisManager>, rounds: usize) -> usize {
    let mut failures = 0;
    for _ in 0..rounds {
        let mut conns = Vec::new();
        for _ in 0..4 {
            match pool.get().await {
                Ok(c) => conns.push(c),
                Err(e) => panic!("get failed: {e}"),
            }
        }
        for c in &mut conns {
            if c.query::<String>(&redis::cmd("PING")).await.is_err() {
                failures += 1;
            }
        }
    }
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_works_through_the_pool() {
    let pool = pool(CheckOnCheckout::Always);
    let mut c = match pool.get().await {
        Ok(c) => c,
        Err(e) => panic!("Redis not reachable at {URL} — start redis-server: {e}"),
    };
    let pong: Option<String> = c.query(&redis::cmd("PING")).await.ok();
    assert_eq!(pong.as_deref(), Some("PONG"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_connections_are_never_handed_out_with_checks() {
    let pool = pool(CheckOnCheckout::Always);
    let ids = open_all(&pool).await;
    kill(&ids).await;
    assert_eq!(
        ping_rounds(&pool, 3).await,
        0,
        "the checkout PING caught every dead connection"
    );
    let s = pool.status();
    assert_eq!(s.stats.check_failures, 4);
    assert_eq!(s.size, 4, "the pool healed back to full size");
    let fresh = open_all(&pool).await;
    assert!(fresh.iter().all(|id| !ids.contains(id)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_skip_window_each_dead_connection_is_seen_at_most_once() {
    // Recently used connections are not re-pinged: a caller may see a dead
    // one, which is then closed — never handed out again.
    let pool = pool(CheckOnCheckout::IfUnusedFor(Duration::from_secs(60)));
    let ids = open_all(&pool).await;
    kill(&ids).await;
    let first = ping_rounds(&pool, 1).await;
    assert!(first <= 4);
    assert_eq!(
        ping_rounds(&pool, 5).await,
        0,
        "a dead connection was handed out twice"
    );
    let s = pool.status();
    assert_eq!(s.stats.closed_broken as usize, first);
    assert_eq!(s.size, 4);
}
