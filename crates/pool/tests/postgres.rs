//! The PostgreSQL manager against the real server at 127.0.0.1:5432,
//! database `test` (user `postgres`, or `root`; trust auth; override with
//! `KUAI_PG`).
//!
//! These tests fail (never skip) when PostgreSQL is not running. Start it
//! with `service postgresql start` and create the database with
//! `createdb -U postgres test`.
#![cfg(feature = "postgres")]

use std::time::Duration;

use kuai_pool::tokio_postgres::{self, NoTls};
use kuai_pool::{CheckOnCheckout, ConnPool, PostgresManager};

/// A connection string that works on this machine, tagged with `app` so the
/// test can find (and kill) exactly its own backends.
async fn params(app: &str) -> String {
    let candidates = match std::env::var("KUAI_PG") {
        Ok(p) => vec![p],
        Err(_) => vec![
            "host=127.0.0.1 port=5432 dbname=test user=postgres".to_string(),
            "host=127.0.0.1 port=5432 dbname=test user=root".to_string(),
        ],
    };
    let mut errors = Vec::new();
    for p in candidates {
        match tokio_postgres::connect(&p, NoTls).await {
            Ok(_) => return format!("{p} application_name={app}"),
            Err(e) => errors.push(format!("{p}: {e}")),
        }
    }
    panic!(
        "PostgreSQL is not reachable ({errors:?}). These tests need a real server on \
         127.0.0.1:5432 with database `test` and trust auth: `service postgresql start` \
         then `createdb -U postgres test` (or set KUAI_PG)."
    );
}

async fn pool(app: &str, check: CheckOnCheckout) -> ConnPool<PostgresManager> {
    let manager = match PostgresManager::new(&params(app).await) {
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

async fn open_all(pool: &ConnPool<PostgresManager>) -> Vec<i32> {
    let mut conns = Vec::new();
    for _ in 0..4 {
        match pool.get().await {
            Ok(c) => conns.push(c),
            Err(e) => panic!("PostgreSQL pool get failed: {e}"),
        }
    }
    let mut pids = Vec::new();
    for c in &conns {
        match c.query_one("SELECT pg_backend_pid()", &[]).await {
            Ok(row) => pids.push(row.get::<_, i32>(0)),
            Err(e) => panic!("pg_backend_pid failed: {e}"),
        }
    }
    pids
}

async fn terminate(app: &str) -> i64 {
    let (client, conn) =
        match tokio_postgres::connect(&params("kuai-pool-admin").await, NoTls).await {
            Ok(c) => c,
            Err(e) => panic!("admin connection: {e}"),
        };
    tokio::spawn(conn);
    let row = client
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
            &[&app],
        )
        .await;
    let n = match row {
        Ok(r) => r.get::<_, i64>(0),
        Err(e) => panic!("pg_terminate_backend: {e}"),
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    n
}

/// Rounds of 4 concurrent `SELECT 1`s; returns how many failed.
async fn query_rounds(pool: &ConnPool<PostgresManager>, rounds: usize) -> usize {
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
            if c.simple_query("SELECT 1").await.is_err() {
                failures += 1;
                // is_closed() turns true on its own; marking is belt and braces.
                c.mark_broken();
            }
        }
    }
    failures
}

fn app(tag: &str) -> String {
    format!("kuai-pool-test-{tag}-{}", std::process::id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_backends_are_never_handed_out_with_checks() {
    let app = app("always");
    let pool = pool(&app, CheckOnCheckout::Always).await;
    let pids = open_all(&pool).await;
    assert_eq!(terminate(&app).await, 4);
    assert_eq!(
        query_rounds(&pool, 3).await,
        0,
        "the checkout check caught every dead backend"
    );
    let fresh = open_all(&pool).await;
    assert!(
        fresh.iter().all(|p| !pids.contains(p)),
        "all four were replaced"
    );
    assert_eq!(pool.status().size, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_skip_window_each_dead_backend_is_seen_at_most_once() {
    let app = app("window");
    let pool = pool(&app, CheckOnCheckout::IfUnusedFor(Duration::from_secs(60))).await;
    open_all(&pool).await;
    assert_eq!(terminate(&app).await, 4);
    let first = query_rounds(&pool, 1).await;
    assert!(first <= 4);
    assert_eq!(
        query_rounds(&pool, 5).await,
        0,
        "a dead backend was handed out twice"
    );
    assert_eq!(pool.status().size, 4);
}
