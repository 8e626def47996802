//! Arbitrary sequences of cache operations (with a weigher that may return
//! 0 and per-entry TTLs that may be absurd) keep the bound and never panic.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cap, ops)) = data.split_first() else {
        return;
    };
    let cap = u64::from(cap % 32) + 1;
    let Ok(cache) = kuai_cache::Cache::<u8, u8>::builder()
        .max_weight(cap, |_k, v| u32::from(*v % 4))
        .shards(1)
        .build()
    else {
        return;
    };
    for pair in ops.chunks(2) {
        let (op, arg) = (pair[0], pair.get(1).copied().unwrap_or(0));
        match op % 5 {
            0 => {
                let _ = cache.try_insert(arg, op);
            }
            1 => {
                let _ = cache.get(&arg);
            }
            2 => {
                let _ = cache.remove(&arg);
            }
            3 => {
                let ttl = Duration::from_nanos(u64::from(op) << (arg % 64));
                let _ = cache.insert_with_ttl(arg, op, ttl);
            }
            _ => cache.run_pending_tasks(),
        }
        assert!(cache.weighted_size() <= cap);
    }
});
