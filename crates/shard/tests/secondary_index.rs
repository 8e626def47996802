//! The read-after-write trade-off of local vs global secondary indexes.

use std::sync::Arc;
use std::time::Duration;

use kuai_core::ManualClock;
use kuai_shard::{GlobalIndex, LocalIndex};

#[test]
fn local_index_reads_its_writes_but_scatters() {
    let idx = LocalIndex::new(8).unwrap();
    for id in 0..100u64 {
        let tag = if id % 2 == 0 {
            "pentakill"
        } else {
            "triplekill"
        };
        idx.insert(id, [tag, "libai"]);
        // Read-after-write: the write is in the index the moment insert returns.
        let r = idx.query(tag);
        assert!(r.ids.contains(&id));
        assert_eq!(r.lag, Duration::ZERO);
        // The price: every query asks every shard.
        assert_eq!(r.shards_touched, 8);
    }
    assert_eq!(idx.query("libai").ids.len(), 100);
    // Re-tagging removes the old term.
    idx.insert(0, ["ake"]);
    assert!(!idx.query("pentakill").ids.contains(&0));
    assert_eq!(idx.query("ake").ids, vec![0]);
}

#[test]
fn global_index_is_one_partition_but_lags_within_its_bound() {
    let clock = ManualClock::new();
    let max_lag = Duration::from_millis(200);
    let idx = GlobalIndex::new(8, 8, max_lag, Arc::new(clock.clone())).unwrap();

    idx.insert(1, ["libai"]);
    // The document itself is readable at once from its data shard...
    assert_eq!(idx.get(1), Some(vec!["libai".to_string()]));
    // ...but the index does not have it yet: no read-after-write.
    let r = idx.query("libai");
    assert!(r.ids.is_empty());
    assert_eq!(r.pending, 1);
    assert_eq!(r.shards_touched, 1);

    // The lag is visible and grows with time.
    clock.advance(Duration::from_millis(150));
    let r = idx.query("libai");
    assert!(r.ids.is_empty());
    assert_eq!(r.lag, Duration::from_millis(150));

    // Once the oldest update reaches the bound, the next read applies the backlog.
    clock.advance(Duration::from_millis(50));
    let r = idx.query("libai");
    assert_eq!(r.ids, vec![1]);
    assert_eq!(r.pending, 0);
    assert_eq!(r.lag, Duration::ZERO);

    // An applier (here driven by hand) catches up before the bound.
    idx.insert(2, ["libai"]);
    idx.insert(1, ["ake"]);
    assert_eq!(idx.query("libai").ids, vec![1]);
    assert_eq!(idx.apply_pending(usize::MAX), 3);
    assert_eq!(idx.query("libai").ids, vec![2]);
    assert_eq!(idx.query("ake").ids, vec![1]);
}

#[test]
fn background_applier_catches_up() {
    let idx = Arc::new(GlobalIndex::with_system_clock(4, 4, Duration::from_secs(3600)).unwrap());
    let applier = idx.spawn_applier(Duration::from_millis(1)).unwrap();
    idx.insert(9, ["x"]);
    let mut seen = false;
    for _ in 0..10_000 {
        if idx.query("x").ids == vec![9] {
            seen = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    drop(applier);
    assert!(seen, "the applier never applied the update");
}
