//! The seed's cache-aside races, replayed step by step (a deterministic
//! interleaving: each test runs the steps of two actors in a fixed order).
//! The naive pattern ends with the cache disagreeing with the database;
//! kuai's (write the source, then invalidate; fill only through a lease)
//! converges: the next read sees the database's value.

use std::collections::HashMap;

use kuai_cache::{Cache, CacheError};

/// The system of record.
#[derive(Default)]
struct Db(HashMap<&'static str, u64>);

fn cache() -> Cache<&'static str, u64> {
    Cache::new(100).expect("valid capacity")
}

/// kuai's read: hit, or lease → read the source → fill (refused if stale).
fn kuai_read(db: &Db, c: &Cache<&'static str, u64>, key: &'static str) -> Option<u64> {
    if let Some(v) = c.get(key) {
        return Some(v);
    }
    let lease = c.lease(key);
    let v = db.0.get(key).copied()?;
    let _ = c.fill(lease, v, None);
    Some(v)
}

#[test]
fn race_1_two_writers_interleave_db_write_and_cache_set() {
    // t1: user1 writes db=1; t2: user2 writes db=2; t3: user2 sets cache=2; t4: user1 sets cache=1.
    let mut db = Db::default();
    let naive = cache();
    db.0.insert("k", 1);
    db.0.insert("k", 2);
    naive.insert("k", 2);
    naive.insert("k", 1);
    assert_eq!(naive.get("k"), Some(1));
    assert_ne!(
        naive.get("k"),
        db.0.get("k").copied(),
        "naive: cache holds the older value"
    );

    // kuai: writers invalidate instead of setting; whatever the order, the
    // cache never holds a value the database has moved past.
    let mut db = Db::default();
    let kuai = cache();
    db.0.insert("k", 1);
    db.0.insert("k", 2);
    kuai.invalidate("k");
    kuai.invalidate("k");
    assert_eq!(kuai_read(&db, &kuai, "k"), Some(2));
    assert_eq!(kuai.get("k"), Some(2), "kuai: converged");
}

#[test]
fn race_2_cache_write_fails_after_db_write() {
    let mut db = Db::default();
    db.0.insert("k", 1);
    // naive: the value is cached, the db is updated, the cache update fails.
    let naive = cache();
    naive.insert("k", 1);
    db.0.insert("k", 2);
    let cache_set_failed = true; // e.g. the L2 call timed out
    if !cache_set_failed {
        naive.insert("k", 2);
    }
    assert_eq!(
        naive.get("k"),
        Some(1),
        "naive: stale until its TTL, if any"
    );

    // kuai (in-process): invalidation cannot fail; and a value cached with a
    // TTL bounds staleness even where invalidation could be lost (the L2).
    let kuai = cache();
    assert_eq!(kuai_read(&db, &kuai, "k"), Some(2));
    db.0.insert("k", 3);
    kuai.invalidate("k");
    assert_eq!(kuai_read(&db, &kuai, "k"), Some(3));
}

#[test]
fn race_3_slow_reader_refills_a_value_a_writer_just_invalidated() {
    // reader misses and reads db=1; writer writes db=2 and deletes the cache
    // entry (the seed's remedy); the reader then sets cache=1.
    let mut db = Db::default();
    db.0.insert("k", 1);
    let naive = cache();
    assert_eq!(naive.get("k"), None);
    let read = db.0.get("k").copied();
    db.0.insert("k", 2);
    naive.remove("k");
    if let Some(v) = read {
        naive.insert("k", v);
    }
    assert_eq!(naive.get("k"), Some(1), "naive: the stale value is back");

    // kuai: the same interleaving, but the reader holds a lease.
    let mut db = Db::default();
    db.0.insert("k", 1);
    let kuai = cache();
    assert_eq!(kuai.get("k"), None);
    let lease = kuai.lease("k");
    let read = db.0.get("k").copied().expect("present");
    db.0.insert("k", 2);
    kuai.invalidate("k");
    assert!(matches!(
        kuai.fill(lease, read, None),
        Err(CacheError::StaleFill)
    ));
    assert_eq!(kuai.get("k"), None, "kuai: the stale fill was refused");
    assert_eq!(kuai_read(&db, &kuai, "k"), Some(2));
}

#[test]
fn a_newer_lease_supersedes_an_older_one_and_direct_writes_revoke() {
    let c = cache();
    let old = c.lease("k");
    let new = c.lease("k");
    assert!(matches!(c.fill(old, 1, None), Err(CacheError::StaleFill)));
    assert!(c.fill(new, 2, None).is_ok());
    let l = c.lease("k");
    c.insert("k", 3);
    assert!(matches!(c.fill(l, 1, None), Err(CacheError::StaleFill)));
    assert_eq!(c.get("k"), Some(3));
}

mod every_interleaving {
    use super::*;
    use proptest::prelude::*;

    /// An actor's program: readers (get, lease, read db, fill) and writers
    /// (write db, invalidate), advanced one step at a time by the schedule.
    #[derive(Debug, Clone)]
    enum Actor {
        Reader {
            step: u8,
            lease: Option<kuai_cache::Lease<&'static str>>,
            read: Option<u64>,
        },
        Writer {
            step: u8,
            value: u64,
        },
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn kuai_converges_under_any_schedule(
            writers in proptest::collection::vec(1..1000u64, 1..4),
            readers in 1..4usize,
            schedule in proptest::collection::vec(0..8usize, 0..64),
        ) {
            let mut db = Db::default();
            db.0.insert("k", 0);
            let c = cache();
            let mut actors: Vec<Actor> = writers
                .iter()
                .map(|&v| Actor::Writer { step: 0, value: v })
                .chain((0..readers).map(|_| Actor::Reader { step: 0, lease: None, read: None }))
                .collect();
            let n = actors.len();
            // Run the schedule, then finish everyone in order.
            let order = schedule.into_iter().map(|i| i % n).chain((0..n).flat_map(|i| [i; 4]));
            for i in order {
                match &mut actors[i] {
                    Actor::Writer { step, value } => {
                        match *step {
                            0 => { db.0.insert("k", *value); }
                            1 => c.invalidate("k"),
                            _ => {}
                        }
                        *step = step.saturating_add(1);
                    }
                    Actor::Reader { step, lease, read } => {
                        match *step {
                            0 => {
                                if c.get("k").is_some() {
                                    *step = 3; // hit: done
                                    continue;
                                }
                                *lease = Some(c.lease("k"));
                            }
                            1 => *read = db.0.get("k").copied(),
                            2 => {
                                if let (Some(l), Some(v)) = (lease.take(), *read) {
                                    let _ = c.fill(l, v, None);
                                }
                            }
                            _ => {}
                        }
                        *step = step.saturating_add(1);
                    }
                }
            }
            let truth = db.0.get("k").copied();
            if let Some(v) = c.get("k") {
                prop_assert_eq!(Some(v), truth, "cache disagrees with the db after all actors finished");
            }
        }
    }
}
