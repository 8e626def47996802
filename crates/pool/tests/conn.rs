//! Behaviour of the async connection pool with an in-process manager.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kuai_core::{Error, ErrorKind, Manager, ManualClock, Result};
use kuai_pool::{CheckOnCheckout, ConnPool, ConnPoolBuilder, Exhaustion, Order, PoolError};

/// Hands out numbered connections; connections can be killed "server-side".
#[derive(Default)]
struct Numbers {
    next: AtomicU32,
    dead: Mutex<HashSet<u32>>,
    fail_connect: AtomicBool,
    hang_connect: AtomicBool,
    checks: AtomicU32,
}

impl Numbers {
    fn kill(&self, id: u32) {
        self.dead
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id);
    }
    fn is_dead(&self, id: u32) -> bool {
        self.dead
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&id)
    }
}

/// The pool owns a handle; the test keeps another to steer the manager.
#[derive(Clone)]
struct Shared(Arc<Numbers>);

impl std::ops::Deref for Shared {
    type Target = Numbers;
    fn deref(&self) -> &Numbers {
        &self.0
    }
}

impl Manager for Shared {
    type Resource = u32;
    async fn connect(&self) -> Result<u32> {
        if self.hang_connect.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        if self.fail_connect.load(Ordering::SeqCst) {
            return Err(Error::backend("connect", "refused"));
        }
        Ok(self.next.fetch_add(1, Ordering::SeqCst))
    }
    async fn check(&self, r: &mut u32) -> Result<()> {
        self.checks.fetch_add(1, Ordering::SeqCst);
        if self.is_dead(*r) {
            Err(Error::closed("dead"))
        } else {
            Ok(())
        }
    }
}

fn builder(m: &Arc<Numbers>) -> ConnPoolBuilder<Shared> {
    ConnPool::builder(Shared(Arc::clone(m)))
        .max_size(2)
        .acquire_timeout(Duration::from_millis(200))
        .check_on_checkout(CheckOnCheckout::Never)
}

fn build(b: ConnPoolBuilder<Shared>) -> ConnPool<Shared> {
    match b.build() {
        Ok(p) => p,
        Err(e) => panic!("valid config rejected: {e}"),
    }
}

#[tokio::test]
async fn reuses_connections_lifo_and_fifo() {
    let m = Arc::new(Numbers::default());
    let pool = build(builder(&m));
    let (a, b) = (pool.get().await, pool.get().await);
    let (Ok(a), Ok(b)) = (a, b) else {
        panic!("get failed")
    };
    assert_eq!((*a, *b), (0, 1));
    drop(a);
    drop(b);
    assert_eq!(
        pool.get().await.map(|c| *c).ok(),
        Some(1),
        "LIFO: last returned"
    );

    let pool = build(builder(&m).order(Order::Fifo));
    let (a, b) = (pool.get().await, pool.get().await);
    let (Ok(a), Ok(b)) = (a, b) else {
        panic!("get failed")
    };
    let first = *a;
    drop(a);
    drop(b);
    assert_eq!(
        pool.get().await.map(|c| *c).ok(),
        Some(first),
        "FIFO: first returned"
    );
    assert_eq!(m.next.load(Ordering::SeqCst), 4);
}

#[tokio::test(start_paused = true)]
async fn exhausted_pool_waits_then_times_out_without_leaking() {
    let m = Arc::new(Numbers::default());
    let pool = build(builder(&m));
    let a = pool.get().await;
    let b = pool.get().await;
    assert!(a.is_ok() && b.is_ok());
    let err = pool.get().await.err();
    assert!(matches!(err, Some(PoolError::Timeout(_))), "{err:?}");
    assert_eq!(
        kuai_core::Error::from(err.unwrap_or(PoolError::Closed)).kind(),
        ErrorKind::Timeout
    );
    let s = pool.status();
    assert_eq!(
        (s.size, s.in_use, s.waiting, s.stats.timeouts),
        (2, 2, 0, 1)
    );

    // A waiter gets the connection handed over on release.
    let p2 = pool.clone();
    let waiter = tokio::spawn(async move { p2.get().await.map(|c| *c) });
    tokio::task::yield_now().await;
    assert_eq!(pool.status().waiting, 1);
    drop(a);
    assert_eq!(waiter.await.ok().and_then(|r| r.ok()), Some(0));
    drop(b);
    let s = pool.status();
    assert_eq!((s.size, s.idle, s.waiting), (2, 2, 0));
}

#[tokio::test(start_paused = true)]
async fn waiters_are_served_in_order() {
    let m = Arc::new(Numbers::default());
    let pool = build(
        builder(&m)
            .max_size(1)
            .acquire_timeout(Duration::from_secs(10)),
    );
    let held = pool.get().await;
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..5 {
        let (p, o) = (pool.clone(), Arc::clone(&order));
        tasks.push(tokio::spawn(async move {
            if let Ok(c) = p.get().await {
                o.lock().unwrap_or_else(|p| p.into_inner()).push(i);
                tokio::time::sleep(Duration::from_millis(1)).await;
                drop(c);
            }
        }));
        tokio::task::yield_now().await;
    }
    drop(held);
    for t in tasks {
        let _ = t.await;
    }
    assert_eq!(
        *order.lock().unwrap_or_else(|p| p.into_inner()),
        vec![0, 1, 2, 3, 4]
    );
}

#[tokio::test]
async fn temporary_connections_beyond_the_limit_are_closed_on_return() {
    let m = Arc::new(Numbers::default());
    let pool = build(
        builder(&m)
            .max_size(1)
            .exhaustion(Exhaustion::Temporary { max_extra: 1 }),
    );
    let a = pool.get().await;
    let t = pool.get().await;
    let (Ok(a), Ok(t)) = (a, t) else {
        panic!("get failed")
    };
    assert!(!a.is_temporary());
    assert!(t.is_temporary());
    assert_eq!(pool.status().temporary, 1);
    assert!(
        matches!(pool.get().await, Err(PoolError::Timeout(_))),
        "past max_extra: wait"
    );
    drop(t);
    let s = pool.status();
    assert_eq!(
        (s.temporary, s.size, s.idle),
        (0, 1, 0),
        "temporary one was closed"
    );
    assert_eq!(s.stats.temporary_opened, 1);
    drop(a);
    assert_eq!(pool.status().idle, 1);
}

#[tokio::test]
async fn broken_connections_are_closed_not_reused() {
    let m = Arc::new(Numbers::default());
    let pool = build(builder(&m));
    let Ok(mut c) = pool.get().await else {
        panic!("get failed")
    };
    assert_eq!(*c, 0);
    c.mark_broken();
    drop(c);
    let s = pool.status();
    assert_eq!((s.size, s.idle, s.stats.closed_broken), (0, 0, 1));
    assert_eq!(pool.get().await.map(|c| *c).ok(), Some(1));
}

#[tokio::test]
async fn checkout_check_replaces_dead_connections_invisibly() {
    let m = Arc::new(Numbers::default());
    let pool = build(builder(&m).check_on_checkout(CheckOnCheckout::Always));
    let a = pool.get().await.map(|c| *c);
    assert_eq!(a.ok(), Some(0));
    m.kill(0);
    let got = pool.get().await.map(|c| *c).ok();
    assert_eq!(got, Some(1), "dead 0 was checked, closed and replaced");
    let s = pool.status();
    assert_eq!((s.size, s.stats.check_failures), (1, 1));
}

#[tokio::test]
async fn recently_used_connections_skip_the_check() {
    let m = Arc::new(Numbers::default());
    let clock = ManualClock::new();
    let pool = build(
        builder(&m)
            .check_on_checkout(CheckOnCheckout::IfUnusedFor(Duration::from_secs(1)))
            .clock(clock.clone()),
    );
    for _ in 0..3 {
        assert!(pool.get().await.is_ok());
    }
    assert_eq!(m.checks.load(Ordering::SeqCst), 0, "used within the window");
    clock.advance(Duration::from_secs(2));
    assert!(pool.get().await.is_ok());
    assert_eq!(m.checks.load(Ordering::SeqCst), 1, "stale: checked once");
    assert!(pool.get().await.is_ok());
    assert_eq!(m.checks.load(Ordering::SeqCst), 1);

    // A dead connection inside the window is seen once, then never again.
    let Ok(mut c) = pool.get().await else {
        panic!("get failed")
    };
    let id = *c;
    m.kill(id);
    // The caller's command fails: it reports the connection broken.
    c.mark_broken();
    drop(c);
    for _ in 0..3 {
        let Ok(c) = pool.get().await else {
            panic!("get failed")
        };
        assert!(!m.is_dead(*c), "a dead connection was handed out twice");
    }
}

#[tokio::test]
async fn failing_connect_is_a_backend_error_and_frees_the_slot() {
    let m = Arc::new(Numbers::default());
    m.fail_connect.store(true, Ordering::SeqCst);
    let pool = build(builder(&m).max_size(1));
    for _ in 0..3 {
        let err = pool.get().await.err();
        assert!(matches!(err, Some(PoolError::Backend(_))), "{err:?}");
        assert_eq!(pool.status().size, 0, "slot given back");
    }
    m.fail_connect.store(false, Ordering::SeqCst);
    assert!(pool.get().await.is_ok());
    assert_eq!(pool.status().stats.connect_errors, 3);
}

#[tokio::test(start_paused = true)]
async fn hanging_connect_times_out_and_nobody_starves() {
    let m = Arc::new(Numbers::default());
    m.hang_connect.store(true, Ordering::SeqCst);
    let pool = build(
        builder(&m)
            .max_size(1)
            .acquire_timeout(Duration::from_millis(100)),
    );
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let p = pool.clone();
        tasks.push(tokio::spawn(async move { p.get().await.map(|c| *c) }));
    }
    for t in tasks {
        let r = t.await.ok();
        assert!(matches!(r, Some(Err(PoolError::Timeout(_)))), "{r:?}");
    }
    let s = pool.status();
    assert_eq!((s.size, s.waiting), (0, 0), "no slot leaked");
    m.hang_connect.store(false, Ordering::SeqCst);
    assert!(pool.get().await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn cancelled_waiters_do_not_leak_handoffs() {
    let m = Arc::new(Numbers::default());
    let pool = build(
        builder(&m)
            .max_size(1)
            .acquire_timeout(Duration::from_secs(60)),
    );
    let held = pool.get().await;
    let p2 = pool.clone();
    let waiter = tokio::spawn(async move { p2.get().await.map(|c| *c) });
    tokio::task::yield_now().await;
    waiter.abort();
    let _ = waiter.await;
    drop(held);
    let s = pool.status();
    assert_eq!((s.size, s.idle), (1, 1));
    assert!(pool.get().await.is_ok());
}

#[tokio::test]
async fn lifetime_idle_timeout_and_background_validation() {
    let m = Arc::new(Numbers::default());
    let clock = ManualClock::new();
    let pool = build(
        builder(&m)
            .max_size(4)
            .min_idle(1)
            .max_lifetime(Duration::from_secs(100))
            .idle_timeout(Duration::from_secs(10))
            .validation_interval(Duration::from_secs(5))
            .clock(clock.clone()),
    );
    assert_eq!(pool.fill().await.ok(), Some(1));
    let (a, b) = (pool.get().await, pool.get().await);
    drop((a, b));
    assert_eq!(pool.status().idle, 2);

    // Idle past the timeout: closed down to min_idle.
    clock.advance(Duration::from_secs(11));
    pool.maintain().await;
    assert_eq!(pool.status().idle, 1);

    // Background validation finds a dead idle connection and replaces it.
    let Ok(c) = pool.get().await else {
        panic!("get failed")
    };
    let id = *c;
    drop(c);
    m.kill(id);
    clock.advance(Duration::from_secs(6));
    pool.maintain().await;
    let s = pool.status();
    assert_eq!((s.idle, s.stats.check_failures), (1, 1));
    let Ok(c) = pool.get().await else {
        panic!("get failed")
    };
    assert_ne!(*c, id);
    drop(c);

    // Past max lifetime: closed at checkout, replaced.
    clock.advance(Duration::from_secs(200));
    let Ok(c) = pool.get().await else {
        panic!("get failed")
    };
    assert!(pool.status().stats.closed_expired >= 2);
    drop(c);
}

#[tokio::test]
async fn eager_start_opens_min_idle() {
    let m = Arc::new(Numbers::default());
    let pool = builder(&m).max_size(4).min_idle(3).build_eager().await;
    let Ok(pool) = pool else {
        panic!("eager build failed")
    };
    assert_eq!(pool.status().idle, 3);

    m.fail_connect.store(true, Ordering::SeqCst);
    let err = builder(&m).min_idle(1).build_eager().await.err();
    assert!(matches!(err, Some(PoolError::Backend(_))));
}

#[tokio::test]
async fn close_rejects_new_and_closes_returned() {
    let m = Arc::new(Numbers::default());
    let pool = build(builder(&m));
    let c = pool.get().await;
    assert!(pool.get().await.is_ok());
    pool.close();
    assert!(matches!(pool.get().await, Err(PoolError::Closed)));
    drop(c);
    assert_eq!(pool.status().size, 0);
}

#[test]
fn misconfiguration_is_a_build_error() {
    let m = Arc::new(Numbers::default());
    let cases = [
        builder(&m).max_size(0),
        builder(&m).max_size(1).min_idle(2),
        builder(&m).acquire_timeout(Duration::ZERO),
        builder(&m).max_lifetime(Duration::ZERO),
        builder(&m).idle_timeout(Duration::ZERO),
        builder(&m).validation_interval(Duration::ZERO),
        builder(&m).exhaustion(Exhaustion::Temporary { max_extra: 0 }),
        // Background maintenance without a runtime.
        builder(&m).min_idle(1),
    ];
    for b in cases {
        assert!(matches!(b.build(), Err(PoolError::Config(_))));
    }
}

mod props {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Get,
        Drop(usize),
        Break(usize),
        Kill(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => Just(Op::Get),
            2 => (0..8usize).prop_map(Op::Drop),
            1 => (0..8usize).prop_map(Op::Break),
            1 => (0..8usize).prop_map(Op::Kill),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn slots_are_conserved(ops in proptest::collection::vec(op(), 1..60), max in 1usize..5) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build();
            let Ok(rt) = rt else { return Err(TestCaseError::fail("runtime")) };
            rt.block_on(async {
                let m = Arc::new(Numbers::default());
                let pool = build(
                    builder(&m)
                        .max_size(max)
                        .check_on_checkout(CheckOnCheckout::Always)
                        .acquire_timeout(Duration::from_millis(5)),
                );
                let mut held = Vec::new();
                for op in ops {
                    match op {
                        Op::Get => match pool.get().await {
                            Ok(c) => {
                                prop_assert!(!m.is_dead(*c), "handed out a dead connection");
                                held.push(c);
                            }
                            Err(e) => prop_assert!(matches!(e, PoolError::Timeout(_))),
                        },
                        Op::Drop(i) if !held.is_empty() => {
                            let i = i % held.len();
                            drop(held.swap_remove(i));
                        }
                        Op::Break(i) if !held.is_empty() => {
                            let i = i % held.len();
                            let mut c = held.swap_remove(i);
                            c.mark_broken();
                        }
                        // Only connections that exist can die.
                        Op::Kill(i) if (i as u32) < m.next.load(Ordering::SeqCst) => m.kill(i as u32),
                        _ => {}
                    }
                    let s = pool.status();
                    prop_assert!(s.size <= max);
                    prop_assert_eq!(s.in_use, held.len());
                    prop_assert_eq!(s.size, s.idle + held.len());
                }
                drop(held);
                let s = pool.status();
                prop_assert_eq!(s.idle, s.size);
                Ok(())
            })?;
        }
    }
}

/// Many tasks on two threads get, hold, break and abandon connections
/// (including cancelling acquires mid-wait); afterwards every slot is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_churn_leaks_no_slot() {
    let m = Arc::new(Numbers::default());
    let pool = build(
        builder(&m)
            .max_size(4)
            .acquire_timeout(Duration::from_millis(50))
            .check_on_checkout(CheckOnCheckout::Always)
            .exhaustion(Exhaustion::Temporary { max_extra: 1 }),
    );
    let mut tasks = Vec::new();
    for t in 0..32u64 {
        let pool = pool.clone();
        let m = Arc::clone(&m);
        tasks.push(tokio::spawn(async move {
            let mut x = t.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            for _ in 0..100 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                match x % 5 {
                    // Give up on the acquire almost at once: a cancelled wait.
                    0 => {
                        let _ = tokio::time::timeout(Duration::from_micros(10), pool.get()).await;
                    }
                    1 => {
                        if let Ok(mut c) = pool.get().await {
                            c.mark_broken();
                        }
                    }
                    2 => {
                        if let Ok(c) = pool.get().await {
                            m.kill(*c);
                        }
                    }
                    _ => {
                        if let Ok(c) = pool.get().await {
                            assert!(!m.is_dead(*c), "dead connection handed out");
                            tokio::task::yield_now().await;
                            drop(c);
                        }
                    }
                }
            }
        }));
    }
    for t in tasks {
        assert!(t.await.is_ok(), "a task panicked");
    }
    let s = pool.status();
    assert_eq!(s.in_use, 0, "{s:?}");
    assert_eq!((s.waiting, s.temporary), (0, 0), "{s:?}");
    assert!(s.size <= 4);
    assert_eq!(s.size, s.idle);
    // And the pool still works.
    assert!(pool.get().await.is_ok());
}
