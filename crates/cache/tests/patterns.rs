//! Cache-aside, read-through, write-through and write-behind over an
//! in-memory `KvStore` with fault injection.
#![cfg(feature = "loader")]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kuai_cache::{
    CacheAside, CacheError, LoadingCache, ReadThrough, WriteBehind, WriteBehindConfig, WriteThrough,
};
use kuai_core::{Error, KvStore, Result};

#[derive(Default)]
struct Store {
    map: Mutex<HashMap<u64, u64>>,
    gets: AtomicU64,
    puts: AtomicU64,
    failing: AtomicBool,
    log: Mutex<Vec<(u64, u64)>>,
}

impl KvStore<u64, u64> for Store {
    async fn get(&self, key: &u64) -> Result<Option<u64>> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        Ok(self
            .map
            .lock()
            .map_err(|_| Error::closed("poisoned"))?
            .get(key)
            .copied())
    }
    async fn put(&self, key: u64, value: u64) -> Result<()> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(Error::backend("db down", std::io::Error::other("refused")));
        }
        self.puts.fetch_add(1, Ordering::SeqCst);
        self.log
            .lock()
            .map_err(|_| Error::closed("poisoned"))?
            .push((key, value));
        self.map
            .lock()
            .map_err(|_| Error::closed("poisoned"))?
            .insert(key, value);
        Ok(())
    }
    async fn delete(&self, key: &u64) -> Result<()> {
        self.map
            .lock()
            .map_err(|_| Error::closed("poisoned"))?
            .remove(key);
        Ok(())
    }
}

fn cache() -> LoadingCache<u64, u64> {
    LoadingCache::builder()
        .max_capacity(1000)
        .build()
        .expect("valid")
}

#[tokio::test]
async fn read_through_and_cache_aside() {
    let store = Arc::new(Store::default());
    store.map.lock().expect("lock").insert(1, 10);
    let rt = ReadThrough::new(cache(), Arc::clone(&store));
    assert_eq!(rt.get(1).await.expect("ok"), Some(10));
    assert_eq!(rt.get(1).await.expect("ok"), Some(10));
    assert_eq!(store.gets.load(Ordering::SeqCst), 1, "second read is a hit");

    let aside = CacheAside::new(cache(), Arc::clone(&store));
    assert_eq!(aside.get(1).await.expect("ok"), Some(10));
    aside.put(1, 11).await.expect("ok");
    assert_eq!(
        aside.get(1).await.expect("ok"),
        Some(11),
        "invalidated on write"
    );
    aside.delete(&1).await.expect("ok");
    assert_eq!(aside.get(1).await.expect("ok"), None);
}

#[tokio::test]
async fn write_through_invalidates_on_source_failure() {
    let store = Arc::new(Store::default());
    let wt = WriteThrough::new(cache(), Arc::clone(&store));
    wt.put(1, 1).await.expect("ok");
    assert_eq!(wt.cache().get_if_present(&1), Some(Some(1)));
    store.failing.store(true, Ordering::SeqCst);
    assert!(matches!(wt.put(1, 2).await, Err(CacheError::Backend(_))));
    assert_eq!(
        wt.cache().get_if_present(&1),
        None,
        "no value the source lacks"
    );
    store.failing.store(false, Ordering::SeqCst);
    assert_eq!(wt.get(1).await.expect("ok"), Some(1));
}

#[tokio::test]
async fn write_behind_coalesces_batches_and_flushes_on_shutdown() {
    let store = Arc::new(Store::default());
    let cfg = WriteBehindConfig {
        capacity: 100,
        batch: 1000,
        interval: Duration::from_secs(3600),
        ..WriteBehindConfig::default()
    };
    let wb = WriteBehind::new(cache(), Arc::clone(&store), cfg).expect("ok");
    for round in 0..5u64 {
        for k in 0..50u64 {
            wb.put(k, round * 100 + k).expect("buffered");
        }
    }
    assert_eq!(
        wb.get(7).await.expect("ok"),
        Some(407),
        "reads see unflushed writes"
    );
    assert_eq!(wb.pending(), 50);
    assert_eq!(wb.coalesced(), 200);
    // bounded: 50 more distinct keys fit, the 101st does not
    for k in 50..100u64 {
        wb.put(k, k).expect("fits");
    }
    assert!(matches!(
        wb.put(1000, 1),
        Err(CacheError::WriteBehindFull(100))
    ));
    wb.shutdown().await.expect("all flushed");
    assert_eq!(store.puts.load(Ordering::SeqCst), 100, "one write per key");
    assert_eq!(store.map.lock().expect("lock").get(&7), Some(&407));
    assert!(matches!(wb.put(1, 1), Err(CacheError::Closed(_))));
}

#[tokio::test]
async fn write_behind_retries_surfaces_errors_and_never_writes_older_over_newer() {
    let store = Arc::new(Store::default());
    let cfg = WriteBehindConfig {
        capacity: 100,
        batch: 1,
        interval: Duration::from_millis(5),
        retries: 1,
        backoff: Duration::from_millis(1),
    };
    let wb = WriteBehind::new(cache(), Arc::clone(&store), cfg).expect("ok");
    store.failing.store(true, Ordering::SeqCst);
    wb.put(1, 1).expect("ok");
    while wb.failures() == 0 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(wb.last_error().is_some_and(|e| e.contains("db down")));
    assert_eq!(wb.pending(), 1, "kept for the next flush");
    wb.put(1, 2).expect("ok");
    store.failing.store(false, Ordering::SeqCst);
    wb.shutdown()
        .await
        .expect("flushed once the source is back");
    assert_eq!(store.map.lock().expect("lock").get(&1), Some(&2));
    let log = store.log.lock().expect("lock").clone();
    assert_eq!(
        log,
        vec![(1, 2)],
        "the superseded value 1 was never written"
    );
}

#[tokio::test]
async fn write_behind_shutdown_reports_unflushable_writes() {
    let store = Arc::new(Store::default());
    store.failing.store(true, Ordering::SeqCst);
    let cfg = WriteBehindConfig {
        retries: 0,
        ..WriteBehindConfig::default()
    };
    let wb = WriteBehind::new(cache(), Arc::clone(&store), cfg).expect("ok");
    wb.put(1, 1).expect("ok");
    let r = wb.shutdown().await;
    assert!(matches!(r, Err(CacheError::Backend(_))), "{r:?}");
    assert_eq!(wb.pending(), 1);
}
