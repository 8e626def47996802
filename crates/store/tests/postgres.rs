//! Read/write splitting over a REAL PostgreSQL primary (127.0.0.1:5432, or
//! `KUAI_STORE_PG_PORT`) and a hot standby this test creates with
//! `pg_basebackup -R` on a spare port. Fails loudly, saying what to fix,
//! when PostgreSQL is missing or not set up for replication.
#![cfg(feature = "postgres")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use kuai_core::ErrorKind;
use kuai_store::pg_standby::{PrimaryAddr, TempStandby};
use kuai_store::{
    Consistency, Node, OutReason, PgKvTable, PgNode, Router, RoutingPolicy, Session, StoreError,
    Target,
};

fn standby() -> (PrimaryAddr, TempStandby) {
    let addr = PrimaryAddr::default();
    match TempStandby::start(&addr) {
        Ok(s) => (addr, s),
        Err(e) => panic!(
            "\n\nkuai-store's PostgreSQL tests need a primary with a hot standby and could not get one:\n  {e}\n\n"
        ),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("tokio runtime: {e}"),
    }
}

async fn sql(node: &PgNode, q: &str) {
    let c = node.client().await.unwrap_or_else(|e| panic!("{e}"));
    if let Err(e) = c.batch_execute(q).await {
        panic!("{q}: {e}");
    }
}

async fn wait_until<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = Instant::now() + Duration::from_secs(30);
    while !f().await {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn read_your_writes_on_a_real_primary_and_hot_standby() {
    let (addr, sb) = standby();
    let rt = runtime();
    let sb_conn = sb.conn_string("postgres");
    rt.block_on(async move {
        let primary = Arc::new(PgNode::new("primary", &addr.conn_string()).unwrap_or_else(|e| panic!("{e}")));
        let replica = Arc::new(PgNode::new("standby", &sb_conn).unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(primary.is_standby().await.ok(), Some(false));
        assert_eq!(replica.is_standby().await.ok(), Some(true));

        let table = PgKvTable::new(&format!("kuai_store_rw_{}", std::process::id())).unwrap_or_else(|e| panic!("{e}"));
        table.create(&primary).await.unwrap_or_else(|e| panic!("{e}"));
        wait_until("the table on the standby", || async {
            table.get(&replica, "none").await.is_ok()
        })
        .await;

        let router = Router::builder()
            .rw_wait(Duration::from_millis(200))
            .max_lag(64 * 1024)
            .readmit_lag(1024)
            .second_read(false)
            .build(primary.clone(), vec![replica.clone()]);
        let t = table.clone();

        // 1. Replay paused: a naive replica read is stale, read-your-writes is not.
        sql(&replica, "SELECT pg_wal_replay_pause()").await;
        wait_until("replay to pause", || async {
            let c = replica.client().await.unwrap_or_else(|e| panic!("{e}"));
            let r = c.query_one("SELECT pg_get_wal_replay_pause_state()", &[]).await;
            r.ok().and_then(|r| r.try_get::<_, String>(0).ok()).as_deref() == Some("paused")
        })
        .await;
        let mut s = Session::new();
        let tw = t.clone();
        router
            .write(&mut s, |p| async move { tw.put(&p, "k", "v1").await })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(s.last_write().0 > 0);
        let naive = t.get(&replica, "k").await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(naive, None, "a naive replica read sees the old state while replay is paused");
        let tr = t.clone();
        let r = router
            .read(&mut s, Consistency::ReadYourWrites, |n| {
                let tr = tr.clone();
                async move { tr.get(&n, "k").await }
            })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((r.value.as_deref(), r.target), (Some("v1"), Target::Primary));
        assert!(router.stats().fallbacks >= 1);

        // 2. The lag monitor takes the paused standby out once it is far behind.
        for i in 0..300 {
            let pad = "x".repeat(400);
            t.put(&primary, &format!("pad{i}"), &pad).await.unwrap_or_else(|e| panic!("{e}"));
        }
        let st = router.check_replicas().await.unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(st[0].out, Some(OutReason::Lagging(_))), "{st:?}");
        let r = router
            .read(&mut Session::new(), Consistency::Eventual, |n| {
                let tr = tr.clone();
                async move { tr.get(&n, "k").await }
            })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.target, Target::Primary, "an out-of-rotation standby serves nothing");

        // 3. Replay resumed: it catches up and is re-admitted.
        sql(&replica, "SELECT pg_wal_replay_resume()").await;
        wait_until("the standby to be re-admitted", || async {
            router.check_replicas().await.map(|s| s[0].out.is_none()).unwrap_or(false)
        })
        .await;

        // 4. Write-then-read storms: read-your-writes never sees an old value,
        //    and some of those reads are served by the standby.
        let mut stale_naive = 0;
        let mut replica_served = 0;
        for i in 0..60 {
            let v = format!("v{i}");
            let (tw, vw) = (t.clone(), v.clone());
            router
                .write(&mut s, |p| async move { tw.put(&p, "k", &vw).await })
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            if t.get(&replica, "k").await.ok().flatten().as_deref() != Some(v.as_str()) {
                stale_naive += 1;
            }
            let r = router
                .read(&mut s, Consistency::ReadYourWrites, |n| {
                    let tr = tr.clone();
                    async move { tr.get(&n, "k").await }
                })
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(r.value.as_deref(), Some(v.as_str()), "stale read under read-your-writes");
            if r.target != Target::Primary {
                replica_served += 1;
            }
        }
        assert!(replica_served > 0, "the standby never served a read-your-writes read");
        eprintln!("naive replica reads that were stale: {stale_naive}/60; RYW reads served by the standby: {replica_served}/60");

        // 5. Monotonic reads and least-lag routing work on the real pair too.
        let mono = Router::builder()
            .policy(RoutingPolicy::LeastLag)
            .build(primary.clone(), vec![replica.clone()]);
        let mut m = Session::new();
        for _ in 0..5 {
            let r = mono
                .read(&mut m, Consistency::Monotonic, |n| {
                    let tr = tr.clone();
                    async move { tr.get(&n, "k").await }
                })
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(r.value.as_deref(), Some("v59"));
        }
        assert!(m.last_seen() >= s.last_write());

        // 6. Writes sent to the standby are refused by PostgreSQL itself.
        let e = t.put(&replica, "k", "nope").await;
        assert_eq!(e.err().map(|e| e.kind()), Some(ErrorKind::InvalidInput));

        sql(&primary, &format!("DROP TABLE {}", t.name())).await;
        assert!(replica.position().await.is_ok());
    });
    drop(sb);
}

#[test]
fn an_unreachable_primary_is_a_backend_error_within_the_timeout() {
    let rt = runtime();
    rt.block_on(async {
        // Nothing listens on port 1.
        let primary = Arc::new(
            PgNode::new(
                "primary",
                "host=127.0.0.1 port=1 user=postgres dbname=test connect_timeout=1",
            )
            .unwrap_or_else(|e| panic!("{e}")),
        );
        let router = Router::builder()
            .op_timeout(Duration::from_secs(2))
            .build(primary, Vec::new());
        let table = PgKvTable::new("kuai_store_unreachable").unwrap_or_else(|e| panic!("{e}"));
        // A liveness guard, not a speed check: the router must answer at all.
        let e = match tokio::time::timeout(
            Duration::from_secs(60),
            router.write(&mut Session::new(), |p| async move {
                table.put(&p, "k", "v").await
            }),
        )
        .await
        {
            Ok(e) => e,
            Err(_) => panic!("the router hung on an unreachable primary"),
        };
        assert!(
            matches!(e, Err(StoreError::PrimaryUnavailable { .. })),
            "{e:?}"
        );
        assert_eq!(e.err().map(|e| e.kind()), Some(ErrorKind::Backend));
    });
}
