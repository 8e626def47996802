//! loom model of the snowflake generator's CAS loop: concurrent callers
//! never get the same id, and each caller's ids increase.
#![cfg(kuai_loom)]

use std::sync::Arc;

use kuai_core::ManualClock;
use kuai_store::Snowflake;

#[test]
fn concurrent_snowflake_ids_are_unique_and_increasing() {
    loom::model(|| {
        // A frozen clock: every id lands in the same millisecond, so only
        // the sequence CAS keeps them apart.
        let ids = Arc::new(
            Snowflake::new(5, Arc::new(ManualClock::new())).unwrap_or_else(|e| panic!("{e}")),
        );
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let ids = ids.clone();
                loom::thread::spawn(move || {
                    let a = ids.next_id().unwrap_or(0);
                    let b = ids.next_id().unwrap_or(0);
                    assert!(b > a);
                    [a, b]
                })
            })
            .collect();
        let mut all: Vec<u64> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap_or([0, 0]))
            .collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 4);
    });
}
