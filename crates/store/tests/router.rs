//! The read/write splitting router over the embedded backend. Time is
//! driven by a `ManualClock` (replication) and tokio's paused clock (waits
//! and timeouts), so nothing here depends on real timing.

use std::sync::Arc;
use std::time::Duration;

use kuai_core::{ErrorKind, ManualClock};
use kuai_store::{
    Consistency, EmbeddedCluster, EmbeddedNode, OutReason, Router, RoutingPolicy, Session,
    StoreError, Target,
};
use proptest::prelude::*;

type Node = EmbeddedNode<u32, u64>;

fn cluster(delays: &[u64]) -> (ManualClock, Arc<Node>, Vec<Arc<Node>>) {
    let clock = ManualClock::new();
    let c = EmbeddedCluster::<u32, u64>::new(Arc::new(clock.clone()));
    let replicas = delays
        .iter()
        .enumerate()
        .map(|(i, d)| c.add_replica(&format!("r{i}"), Duration::from_millis(*d)))
        .collect();
    (clock, c.primary(), replicas)
}

async fn put(router: &Router<Node>, s: &mut Session, k: u32, v: u64) {
    let r = router.write(s, |p| async move { p.put(k, v).await }).await;
    assert!(r.is_ok(), "{r:?}");
}

async fn get(
    router: &Router<Node>,
    s: &mut Session,
    c: Consistency,
    k: u32,
) -> (Option<u64>, Target) {
    match router.read(s, c, |n| async move { n.get(&k).await }).await {
        Ok(r) => (r.value, r.target),
        Err(e) => panic!("read failed: {e}"),
    }
}

#[tokio::test(start_paused = true)]
async fn read_your_writes_goes_to_primary_until_the_replica_catches_up() {
    let (clock, primary, replicas) = cluster(&[100]);
    let router = Router::builder()
        .rw_wait(Duration::ZERO)
        .second_read(false)
        .build(primary, replicas);
    let mut s = Session::new();
    put(&router, &mut s, 1, 10).await;
    assert_eq!(s.last_write().0, 1);
    // A naive replica read is stale...
    let mut naive = Session::new();
    assert_eq!(
        get(&router, &mut naive, Consistency::Eventual, 1).await,
        (None, Target::Replica(0))
    );
    // ...read-your-writes is not.
    assert_eq!(
        get(&router, &mut s, Consistency::ReadYourWrites, 1).await,
        (Some(10), Target::Primary)
    );
    clock.advance(Duration::from_millis(100));
    assert_eq!(
        get(&router, &mut s, Consistency::ReadYourWrites, 1).await,
        (Some(10), Target::Replica(0))
    );
    let st = router.stats();
    assert_eq!(
        (st.writes, st.fallbacks, st.replica_reads, st.primary_reads),
        (1, 1, 2, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn a_waiting_read_is_served_by_the_replica_once_it_replays() {
    let (clock, primary, replicas) = cluster(&[10]);
    let router = Router::builder()
        .rw_wait(Duration::from_millis(50))
        .poll_interval(Duration::from_millis(1))
        .build(primary, replicas);
    let mut s = Session::new();
    put(&router, &mut s, 7, 70).await;
    let c2 = clock.clone();
    let mover = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(5)).await;
        c2.advance(Duration::from_millis(10));
    });
    assert_eq!(
        get(&router, &mut s, Consistency::ReadYourWrites, 7).await,
        (Some(70), Target::Replica(0))
    );
    assert!(mover.await.is_ok());
    assert!(router.stats().waits >= 1);
    assert_eq!(router.stats().fallbacks, 0);
}

#[tokio::test(start_paused = true)]
async fn the_wait_is_bounded_then_the_primary_serves() {
    let (_clock, primary, replicas) = cluster(&[1_000_000]);
    let router = Router::builder()
        .rw_wait(Duration::from_millis(30))
        .build(primary, replicas);
    let mut s = Session::new();
    put(&router, &mut s, 1, 1).await;
    let t0 = tokio::time::Instant::now();
    assert_eq!(
        get(&router, &mut s, Consistency::ReadYourWrites, 1).await,
        (Some(1), Target::Primary)
    );
    // tokio's paused clock: the wait is exactly the bound, in virtual time.
    assert_eq!(t0.elapsed(), Duration::from_millis(30));
    assert_eq!(router.stats().fallbacks, 1);
}

#[tokio::test(start_paused = true)]
async fn second_read_retries_a_replica_miss_on_the_primary() {
    let (_clock, primary, replicas) = cluster(&[1000]);
    let router = Router::builder().build(primary, replicas);
    let mut writer = Session::new();
    put(&router, &mut writer, 5, 50).await;
    let mut other = Session::new();
    let r = router
        .read(&mut other, Consistency::Eventual, |n| async move {
            n.get(&5).await
        })
        .await;
    let r = r.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (r.value, r.target, r.second_read),
        (Some(50), Target::Primary, true)
    );
    assert_eq!(router.stats().second_reads, 1);
}

#[tokio::test(start_paused = true)]
async fn monotonic_reads_never_go_back_in_time() {
    // r0 is fresh, r1 is far behind.
    let (clock, primary, replicas) = cluster(&[0, 1000]);
    let router = Router::builder()
        .rw_wait(Duration::ZERO)
        .second_read(false)
        .policy(RoutingPolicy::LeastLag)
        .build(primary, replicas);
    let mut writer = Session::new();
    put(&router, &mut writer, 1, 1).await;
    clock.advance(Duration::from_millis(1));
    let mut reader = Session::new();
    assert!(router.check_replicas().await.is_ok());
    // Least-lag picks r0, which has the write.
    assert_eq!(
        get(&router, &mut reader, Consistency::Monotonic, 1).await,
        (Some(1), Target::Replica(0))
    );
    assert_eq!(reader.last_seen().0, 1);
    // r0 dies; r1 has not replayed position 1, so the primary serves.
    if let Some(r) = router.replicas().next() {
        r.set_down(true);
    }
    for _ in 0..3 {
        assert_eq!(
            get(&router, &mut reader, Consistency::Monotonic, 1).await,
            (Some(1), Target::Primary)
        );
    }
    // An eventual read, by contrast, may use the stale r1.
    assert_eq!(
        get(&router, &mut reader, Consistency::Eventual, 1).await,
        (None, Target::Replica(1))
    );
}

#[tokio::test(start_paused = true)]
async fn critical_locking_and_primary_only_reads_use_the_primary() {
    let (_clock, primary, replicas) = cluster(&[0]);
    let router = Router::builder().build(primary.clone(), replicas.clone());
    let mut s = Session::new();
    put(&router, &mut s, 1, 1).await;
    assert_eq!(
        get(&router, &mut s, Consistency::Critical, 1).await.1,
        Target::Primary
    );
    assert_eq!(
        get(&router, &mut s, Consistency::Locking, 1).await.1,
        Target::Primary
    );
    assert_eq!(
        get(&router, &mut s, Consistency::Eventual, 1).await.1,
        Target::Replica(0)
    );
    let only = Router::builder()
        .policy(RoutingPolicy::PrimaryOnly)
        .build(primary, replicas);
    assert_eq!(
        get(&only, &mut s, Consistency::Eventual, 1).await.1,
        Target::Primary
    );
}

#[tokio::test(start_paused = true)]
async fn round_robin_spreads_reads() {
    let (_clock, primary, replicas) = cluster(&[0, 0, 0]);
    let router = Router::builder().build(primary, replicas);
    let mut s = Session::new();
    put(&router, &mut s, 1, 1).await;
    let mut seen = [0; 3];
    for _ in 0..30 {
        if let (_, Target::Replica(i)) = get(&router, &mut s, Consistency::Eventual, 1).await {
            seen[i] += 1;
        }
    }
    assert_eq!(seen, [10, 10, 10]);
}

#[tokio::test(start_paused = true)]
async fn lag_monitor_removes_a_lagging_replica_and_readmits_it() {
    let (clock, primary, replicas) = cluster(&[0, 100]);
    let router = Router::builder()
        .max_lag(10)
        .readmit_lag(2)
        .build(primary, replicas.clone());
    let mut s = Session::new();
    for i in 0..20 {
        put(&router, &mut s, i, u64::from(i)).await;
    }
    let st = router.check_replicas().await.unwrap_or_default();
    assert_eq!(st[0].out, None);
    assert_eq!(st[1].out, Some(OutReason::Lagging(20)));
    // Out of rotation: eventual reads all go to r0.
    for _ in 0..4 {
        assert_eq!(
            get(&router, &mut s, Consistency::Eventual, 3).await.1,
            Target::Replica(0)
        );
    }
    // Still lagging: stays out.
    clock.advance(Duration::from_millis(50));
    let st = router.check_replicas().await.unwrap_or_default();
    assert!(st[1].out.is_some());
    clock.advance(Duration::from_millis(50));
    let st = router.check_replicas().await.unwrap_or_default();
    assert_eq!((st[1].out.clone(), st[1].lag), (None, 0));
}

#[tokio::test(start_paused = true)]
async fn readmission_waits_for_lag_to_fall_below_the_readmit_threshold() {
    let (clock, primary, replicas) = cluster(&[10]);
    let router = Router::builder()
        .max_lag(4)
        .readmit_lag(1)
        .build(primary, replicas);
    let mut s = Session::new();
    for i in 0..6 {
        put(&router, &mut s, i, 0).await;
        clock.advance(Duration::from_millis(1));
    }
    // Entries were written at t=0..5 ms; at t=6 none is replayed (lag 6).
    let st = router.check_replicas().await.unwrap_or_default();
    assert_eq!(st[0].out, Some(OutReason::Lagging(6)));
    clock.advance(Duration::from_millis(6)); // t=12: entries 0..=2 replayed, lag 3
    let st = router.check_replicas().await.unwrap_or_default();
    assert_eq!(
        (st[0].lag, st[0].out.is_some()),
        (3, true),
        "within max_lag but not readmit_lag"
    );
    clock.advance(Duration::from_millis(2)); // t=14: lag 1
    let st = router.check_replicas().await.unwrap_or_default();
    assert_eq!((st[0].lag, st[0].out.clone()), (1, None));
}

#[tokio::test(start_paused = true)]
async fn a_down_or_hanging_replica_is_taken_out_without_failing_reads() {
    let (_clock, primary, replicas) = cluster(&[0, 0]);
    let router = Router::builder()
        .op_timeout(Duration::from_millis(100))
        .position_timeout(Duration::from_millis(50))
        .build(primary, replicas.clone());
    let mut s = Session::new();
    put(&router, &mut s, 1, 1).await;
    replicas[0].set_down(true);
    replicas[1].set_hanging(true);
    for _ in 0..4 {
        let (v, t) = get(&router, &mut s, Consistency::Eventual, 1).await;
        assert_eq!(v, Some(1));
        assert_eq!(t, Target::Primary);
    }
    let st = router.replica_status();
    assert!(matches!(st[0].out, Some(OutReason::Unreachable(_))));
    assert!(matches!(st[1].out, Some(OutReason::Unreachable(_))));
    assert_eq!(router.stats().replica_errors, 2);
    // Both recover; the monitor re-admits them.
    replicas[0].set_down(false);
    replicas[1].set_hanging(false);
    let st = router.check_replicas().await.unwrap_or_default();
    assert!(st.iter().all(|r| r.out.is_none()), "{st:?}");
    assert!(matches!(
        get(&router, &mut s, Consistency::Eventual, 1).await.1,
        Target::Replica(_)
    ));
}

#[tokio::test(start_paused = true)]
async fn a_down_or_hanging_primary_is_a_backend_error_not_a_hang() {
    let (_clock, primary, replicas) = cluster(&[0]);
    let router = Router::builder()
        .op_timeout(Duration::from_millis(200))
        .position_timeout(Duration::from_millis(100))
        .build(primary.clone(), replicas);
    let mut s = Session::new();
    put(&router, &mut s, 1, 1).await;
    primary.set_down(true);
    let e = router
        .write(&mut s, |p| async move { p.put(1, 1).await })
        .await;
    let e = e.err().map(kuai_core::Error::from);
    assert_eq!(
        e.as_ref().map(|e| e.kind()),
        Some(ErrorKind::Backend),
        "{e:?}"
    );
    primary.set_down(false);
    primary.set_hanging(true);
    let t0 = tokio::time::Instant::now();
    let e = router
        .write(&mut s, |p| async move { p.put(1, 1).await })
        .await;
    assert!(
        matches!(e, Err(StoreError::PrimaryUnavailable { .. })),
        "{e:?}"
    );
    // Virtual time: the write gave up exactly at the op timeout.
    assert_eq!(t0.elapsed(), Duration::from_millis(200));
    let e = router
        .read(
            &mut s,
            Consistency::Critical,
            |n| async move { n.get(&1).await },
        )
        .await;
    assert_eq!(e.err().map(|e| e.kind()), Some(ErrorKind::Backend));
    assert!(router.check_replicas().await.is_err());
    // Replica-served reads still work while the primary hangs.
    assert_eq!(
        get(&router, &mut Session::new(), Consistency::Eventual, 1).await,
        (Some(1), Target::Replica(0))
    );
}

#[tokio::test(start_paused = true)]
async fn writes_to_a_replica_are_refused() {
    let (_clock, _primary, replicas) = cluster(&[0]);
    let e = replicas[0].put(1, 1).await;
    assert_eq!(e.err().map(|e| e.kind()), Some(ErrorKind::InvalidInput));
}

#[derive(Debug, Clone)]
enum Op {
    Write(u32, u64),
    Advance(u64),
    Read(u32, bool),
    Down(usize, bool),
    Check,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u32..4, any::<u64>()).prop_map(|(k, v)| Op::Write(k, v)),
        (0u64..30).prop_map(Op::Advance),
        (0u32..4, any::<bool>()).prop_map(|(k, m)| Op::Read(k, m)),
        (0usize..4, any::<bool>()).prop_map(|(i, d)| Op::Down(i, d)),
        Just(Op::Check),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Under read-your-writes (and monotonic reads) a session always sees
    /// its own latest write, whatever the replicas' delays, failures and
    /// lag-monitor decisions.
    #[test]
    fn read_your_writes_never_returns_a_stale_value(
        delays in prop::collection::vec(0u64..40, 1..4),
        ops in prop::collection::vec(op(), 1..60),
        least_lag in any::<bool>(),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build();
        let rt = match rt { Ok(rt) => rt, Err(e) => panic!("{e}") };
        rt.block_on(async {
            let (clock, primary, replicas) = cluster(&delays);
            let policy = if least_lag { RoutingPolicy::LeastLag } else { RoutingPolicy::RoundRobin };
            let router = Router::builder().policy(policy).rw_wait(Duration::ZERO).second_read(false).max_lag(3).build(primary, replicas.clone());
            let mut s = Session::new();
            let mut model = std::collections::HashMap::new();
            for op in ops {
                match op {
                    Op::Write(k, v) => { put(&router, &mut s, k, v).await; model.insert(k, v); }
                    Op::Advance(ms) => clock.advance(Duration::from_millis(ms)),
                    Op::Down(i, d) => { if let Some(r) = replicas.get(i) { r.set_down(d); } }
                    Op::Check => { let _ = router.check_replicas().await; }
                    Op::Read(k, mono) => {
                        let c = if mono { Consistency::Monotonic } else { Consistency::ReadYourWrites };
                        let (v, _) = get(&router, &mut s, c, k).await;
                        assert_eq!(v, model.get(&k).copied());
                    }
                }
            }
        });
    }
}

#[tokio::test(start_paused = true)]
async fn the_background_monitor_takes_out_and_readmits() {
    let (clock, primary, replicas) = cluster(&[50]);
    let router = Arc::new(
        Router::builder()
            .max_lag(3)
            .readmit_lag(0)
            .build(primary, replicas),
    );
    let monitor = router.spawn_monitor(Duration::from_millis(10));
    let mut s = Session::new();
    for i in 0..5 {
        put(&router, &mut s, i, 0).await;
    }
    tokio::time::sleep(Duration::from_millis(25)).await;
    assert_eq!(router.replica_status()[0].out, Some(OutReason::Lagging(5)));
    clock.advance(Duration::from_millis(50));
    tokio::time::sleep(Duration::from_millis(25)).await;
    assert_eq!(router.replica_status()[0].out, None);
    drop(monitor);
}

#[tokio::test(start_paused = true)]
async fn a_refused_request_keeps_its_kind_and_the_replica_stays_in() {
    let (_clock, primary, replicas) = cluster(&[0]);
    let router = Router::builder().build(primary, replicas.clone());
    let mut s = Session::new();
    // Writing through a replica handle is refused as InvalidInput, not Backend.
    let r0 = replicas[0].clone();
    let e = router
        .write(&mut s, move |_p| async move { r0.put(1, 1).await })
        .await;
    assert_eq!(e.err().map(|e| e.kind()), Some(ErrorKind::InvalidInput));
    let e = router
        .read(&mut s, Consistency::Eventual, |_n| async move {
            Err::<Option<u64>, _>(kuai_core::Error::invalid_input("bad query"))
        })
        .await;
    assert_eq!(e.err().map(|e| e.kind()), Some(ErrorKind::InvalidInput));
    assert_eq!(router.replica_status()[0].out, None);
}

#[tokio::test(start_paused = true)]
async fn vertical_split_keeps_modules_in_separate_databases() {
    let (_c1, users_primary, users_replicas) = cluster(&[0]);
    let (_c2, orders_primary, _) = cluster(&[]);
    let modules = kuai_store::Modules::builder()
        .module(
            "users",
            Router::builder().build(users_primary.clone(), users_replicas),
        )
        .module(
            "orders",
            Router::builder().build(orders_primary.clone(), vec![]),
        )
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    // Log positions belong to one database: one session per module.
    let (mut su, mut so) = (Session::new(), Session::new());
    let users = modules.get("users").unwrap_or_else(|e| panic!("{e}"));
    let orders = modules.get("orders").unwrap_or_else(|e| panic!("{e}"));
    put(users, &mut su, 1, 100).await;
    put(orders, &mut so, 1, 200).await;
    assert_eq!(users_primary.get(&1).await.ok().flatten(), Some(100));
    assert_eq!(orders_primary.get(&1).await.ok().flatten(), Some(200));
    assert!(matches!(
        modules.get("billing"),
        Err(StoreError::NotFound(_))
    ));
    let dup = kuai_store::Modules::builder()
        .module("a", Router::builder().build(orders_primary.clone(), vec![]))
        .module("a", Router::builder().build(orders_primary, vec![]))
        .build();
    assert!(dup.is_err());
}
