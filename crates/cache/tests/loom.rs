#![cfg(kuai_loom)]
//! loom models of the cache's concurrency: leases against writes, and two
//! writers on one shard. Run with
//! `RUSTFLAGS="--cfg kuai_loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p kuai-cache --test loom --release`.

use std::sync::Arc;

use kuai_cache::Cache;

fn cache() -> Arc<Cache<u64, u64>> {
    Arc::new(
        Cache::builder()
            .max_capacity(4)
            .shards(1)
            .build()
            .expect("valid config"),
    )
}

/// A reader leased key 1 and read the old value (1) from the source; a
/// writer concurrently writes the new value (2). Whatever the interleaving,
/// the cache ends with the new value: the stale fill is refused or
/// overwritten, never the last word.
#[test]
fn a_stale_fill_never_outlives_a_concurrent_write() {
    loom::model(|| {
        let c = cache();
        let lease = c.lease(1);
        let w = {
            let c = Arc::clone(&c);
            loom::thread::spawn(move || c.insert(1, 2))
        };
        let _ = c.fill(lease, 1, None);
        w.join().expect("writer");
        assert_eq!(c.peek(&1), Some(2));
    });
}

/// Same with an invalidation: afterwards the key is absent.
#[test]
fn a_stale_fill_never_outlives_a_concurrent_invalidation() {
    loom::model(|| {
        let c = cache();
        let lease = c.lease(1);
        let w = {
            let c = Arc::clone(&c);
            loom::thread::spawn(move || c.invalidate(&1))
        };
        let filled = c.fill(lease, 1, None).is_ok();
        w.join().expect("invalidator");
        // If the fill won the race it was invalidated right after.
        let _ = filled;
        assert_eq!(c.peek(&1), None);
    });
}

/// Two threads inserting into one bounded shard keep it bounded.
#[test]
fn concurrent_inserts_stay_bounded() {
    loom::model(|| {
        let c = Arc::new(
            Cache::<u64, u64>::builder()
                .max_capacity(2)
                .shards(1)
                .build()
                .expect("valid config"),
        );
        let t = {
            let c = Arc::clone(&c);
            loom::thread::spawn(move || {
                c.insert(1, 1);
                c.insert(2, 2);
            })
        };
        c.insert(3, 3);
        let _ = c.get(&1);
        t.join().expect("inserter");
        assert!(c.entry_count() <= 2);
    });
}

/// Readers on the shared-lock path leave notes in the read buffer while a
/// writer holds or takes the shard: every hit and miss is counted exactly
/// once, the value read is one that was written, and the bound holds.
#[test]
fn reads_under_the_shared_lock_count_every_hit() {
    loom::model(|| {
        let c = Arc::new(
            Cache::<u64, u64>::builder()
                .max_capacity(2)
                .shards(1)
                .build()
                .expect("valid config"),
        );
        c.insert(1, 10);
        let r = {
            let c = Arc::clone(&c);
            loom::thread::spawn(move || {
                let a = c.get(&1);
                let b = c.get(&1);
                (a, b)
            })
        };
        c.insert(2, 20);
        let mine = c.get(&1);
        let (a, b) = r.join().expect("reader");
        for v in [a, b, mine] {
            assert!(v.is_none() || v == Some(10));
        }
        let s = c.stats();
        assert_eq!(s.hits + s.misses, 3);
        let hits = [a, b, mine].iter().filter(|v| v.is_some()).count() as u64;
        assert_eq!(s.hits, hits);
        assert!(c.entry_count() <= 2);
    });
}
