//! Hot/cold tiering: transparent reads, and migrations interrupted midway
//! (a failing cold tier, a crash between the copy and the removal) that
//! lose nothing and duplicate nothing.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use kuai_core::ManualClock;
use kuai_store::{
    ColdTier, CrashAfter, FileColdTier, MemoryColdTier, MigrationPolicy, StoreError, TieredStore,
};
use proptest::prelude::*;

/// A cold tier that fails every put after the first `ok` ones.
#[derive(Debug, Default)]
struct Flaky {
    inner: MemoryColdTier<u64, Vec<u8>>,
    ok: AtomicUsize,
    puts: AtomicUsize,
}

impl ColdTier<u64, Vec<u8>> for Flaky {
    fn get(&self, key: &u64) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(key)
    }
    fn put(&self, key: &u64, value: &Vec<u8>) -> Result<(), StoreError> {
        if self.puts.fetch_add(1, Ordering::SeqCst) >= self.ok.load(Ordering::SeqCst) {
            return Err(StoreError::Io(std::io::Error::other("cold tier down")));
        }
        self.inner.put(key, value)
    }
    fn delete(&self, key: &u64) -> Result<(), StoreError> {
        self.inner.delete(key)
    }
    fn keys(&self) -> Result<Vec<u64>, StoreError> {
        self.inner.keys()
    }
}

fn policy() -> MigrationPolicy {
    MigrationPolicy {
        min_age: Duration::from_secs(10),
        hot_reads: 1000,
        promote_on_read: false,
    }
}

fn check_once_each<C: ColdTier<u64, Vec<u8>>>(
    s: &TieredStore<u64, Vec<u8>, C>,
    want: &HashMap<u64, Vec<u8>>,
) {
    let keys = s.keys().unwrap_or_else(|e| panic!("{e}"));
    let distinct: HashSet<u64> = keys.iter().copied().collect();
    assert_eq!(keys.len(), distinct.len(), "a key listed twice");
    assert_eq!(
        distinct,
        want.keys().copied().collect::<HashSet<_>>(),
        "a key lost or invented"
    );
    for (k, v) in want {
        assert_eq!(s.get(k).ok().flatten().as_ref(), Some(v), "key {k}");
    }
}

#[test]
fn a_cold_tier_failing_midway_loses_and_duplicates_nothing() {
    let clock = ManualClock::new();
    let cold = Arc::new(Flaky::default());
    cold.ok.store(40, Ordering::SeqCst);
    let s = TieredStore::new(cold.clone(), policy(), Arc::new(clock.clone()));
    let mut want = HashMap::new();
    for k in 0..100u64 {
        let v = k.to_le_bytes().to_vec();
        s.put(k, v.clone()).unwrap_or_else(|e| panic!("{e}"));
        want.insert(k, v);
    }
    clock.advance(Duration::from_secs(11));
    assert!(s.migrate().is_err(), "the cold tier failed midway");
    assert_eq!(s.hot_len(), 60);
    check_once_each(&s, &want);
    cold.ok.store(usize::MAX, Ordering::SeqCst);
    let r = s.migrate().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.moved, 60);
    assert_eq!(s.hot_len(), 0);
    assert_eq!(cold.keys().map(|k| k.len()).ok(), Some(100));
    check_once_each(&s, &want);
}

#[test]
fn a_crash_between_copy_and_removal_is_finished_by_the_next_pass() {
    let clock = ManualClock::new();
    let s = TieredStore::new(
        MemoryColdTier::<u64, Vec<u8>>::default(),
        policy(),
        Arc::new(clock.clone()),
    );
    let mut want = HashMap::new();
    for k in 0..10u64 {
        s.put(k, vec![k as u8]).unwrap_or_else(|e| panic!("{e}"));
        want.insert(k, vec![k as u8]);
    }
    clock.advance(Duration::from_secs(11));
    assert!(s.migrate_crashing(CrashAfter(5)).is_err());
    // Four moved; the fifth is in both tiers; five never left.
    assert_eq!(s.hot_len(), 6);
    assert_eq!(s.cold().keys().map(|k| k.len()).ok(), Some(5));
    check_once_each(&s, &want);
    let r = s.migrate().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.moved, 6);
    assert_eq!(
        (s.hot_len(), s.cold().keys().map(|k| k.len()).ok()),
        (0, Some(10))
    );
    check_once_each(&s, &want);
}

type MeddledStore = TieredStore<u64, Vec<u8>, Arc<Meddler>>;

/// A cold tier that rewrites a key in the store while that key is being
/// migrated: the newer hot value must survive.
#[derive(Debug, Default)]
struct Meddler {
    inner: MemoryColdTier<u64, Vec<u8>>,
    store: OnceLock<Weak<MeddledStore>>,
    done: Mutex<bool>,
}

impl ColdTier<u64, Vec<u8>> for Meddler {
    fn get(&self, key: &u64) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(key)
    }
    fn put(&self, key: &u64, value: &Vec<u8>) -> Result<(), StoreError> {
        self.inner.put(key, value)?;
        let mut done = self.done.lock().unwrap_or_else(|p| p.into_inner());
        if !*done {
            *done = true;
            if let Some(s) = self.store.get().and_then(Weak::upgrade) {
                s.put(*key, b"rewritten".to_vec())?;
            }
        }
        Ok(())
    }
    fn delete(&self, key: &u64) -> Result<(), StoreError> {
        self.inner.delete(key)
    }
    fn keys(&self) -> Result<Vec<u64>, StoreError> {
        self.inner.keys()
    }
}

#[test]
fn a_key_rewritten_during_migration_keeps_its_new_value() {
    let clock = ManualClock::new();
    let cold = Arc::new(Meddler::default());
    let s = Arc::new(TieredStore::new(
        cold.clone(),
        policy(),
        Arc::new(clock.clone()),
    ));
    let _ = cold.store.set(Arc::downgrade(&s));
    s.put(1, b"original".to_vec())
        .unwrap_or_else(|e| panic!("{e}"));
    clock.advance(Duration::from_secs(11));
    let r = s.migrate().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((r.moved, r.skipped_rewritten), (0, 1));
    assert_eq!(s.get(&1).ok().flatten().as_deref(), Some(&b"rewritten"[..]));
}

fn tmp(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("kuai-store-{}-{name}", std::process::id()))
}

#[test]
fn the_file_tier_survives_reopen_and_a_torn_tail() {
    let path = tmp("cold.log");
    let _ = std::fs::remove_file(&path);
    {
        let f = FileColdTier::open(&path, false).unwrap_or_else(|e| panic!("{e}"));
        for k in 0..50u64 {
            f.put(&k, &vec![k as u8; k as usize])
                .unwrap_or_else(|e| panic!("{e}"));
        }
        f.delete(&7).unwrap_or_else(|e| panic!("{e}"));
        f.put(&8, &b"eight".to_vec())
            .unwrap_or_else(|e| panic!("{e}"));
    }
    // A crash mid-append: half a record at the end.
    let good_len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("{e}"));
        let _ = f.write_all(&[1, 9, 9, 9, 9, 9, 9, 9, 9, 255, 255, 0, 0, 1, 2]);
    }
    let f = FileColdTier::open(&path, true).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(f.log_len(), good_len, "the torn record was cut off");
    assert_eq!(f.get(&7).ok().flatten(), None);
    assert_eq!(f.get(&8).ok().flatten().as_deref(), Some(&b"eight"[..]));
    assert_eq!(f.get(&49).ok().flatten(), Some(vec![49u8; 49]));
    assert_eq!(f.keys().map(|k| k.len()).ok(), Some(49));
    // A tiered store over the file tier.
    let clock = ManualClock::new();
    let s = TieredStore::new(f, policy(), Arc::new(clock.clone()));
    s.put(1000, b"hot".to_vec())
        .unwrap_or_else(|e| panic!("{e}"));
    clock.advance(Duration::from_secs(11));
    assert_eq!(s.migrate().map(|r| r.moved).ok(), Some(1));
    assert_eq!(s.get(&1000).ok().flatten().as_deref(), Some(&b"hot"[..]));
    drop(s);
    let _ = std::fs::remove_file(&path);
}

#[derive(Debug, Clone)]
enum Op {
    Put(u64, u8),
    Delete(u64),
    Read(u64),
    Advance(u64),
    Migrate,
    Crash(usize),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u64..16, any::<u8>()).prop_map(|(k, v)| Op::Put(k, v)),
        1 => (0u64..16).prop_map(Op::Delete),
        2 => (0u64..16).prop_map(Op::Read),
        2 => (0u64..8).prop_map(Op::Advance),
        1 => Just(Op::Migrate),
        1 => (1usize..5).prop_map(Op::Crash),
        1 => Just(Op::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    /// Any interleaving of writes, reads, migrations, crashed migrations
    /// and reopening the cold file behaves like one map.
    #[test]
    fn tiering_behaves_like_a_map(ops in prop::collection::vec(op(), 1..80), promote in any::<bool>()) {
        static CASE: AtomicUsize = AtomicUsize::new(0);
        let path = tmp(&format!("prop-{}.log", CASE.fetch_add(1, Ordering::Relaxed)));
        let _ = std::fs::remove_file(&path);
        let clock = ManualClock::new();
        let pol = MigrationPolicy { min_age: Duration::from_secs(3), hot_reads: 2, promote_on_read: promote };
        let open = || FileColdTier::open(&path, false).unwrap_or_else(|e| panic!("{e}"));
        let mut s = TieredStore::new(open(), pol, Arc::new(clock.clone()));
        let mut model: HashMap<u64, Vec<u8>> = HashMap::new();
        for op in ops {
            match op {
                Op::Put(k, v) => { s.put(k, vec![v]).unwrap_or_else(|e| panic!("{e}")); model.insert(k, vec![v]); }
                Op::Delete(k) => { s.delete(&k).unwrap_or_else(|e| panic!("{e}")); model.remove(&k); }
                Op::Read(k) => prop_assert_eq!(s.get(&k).unwrap_or_else(|e| panic!("{e}")), model.get(&k).cloned()),
                Op::Advance(secs) => clock.advance(Duration::from_secs(secs)),
                Op::Migrate => { s.migrate().unwrap_or_else(|e| panic!("{e}")); }
                Op::Crash(n) => { let _ = s.migrate_crashing(CrashAfter(n)); }
                Op::Reopen => {
                    // The hot tier is process memory: a clean shutdown writes it
                    // cold first; then the file is reopened.
                    let mut live = Vec::new();
                    for k in s.keys().unwrap_or_default() {
                        if let Some(v) = s.get(&k).unwrap_or_else(|e| panic!("{e}")) {
                            live.push((k, v));
                        }
                    }
                    drop(s);
                    let flush = open();
                    for (k, v) in live {
                        flush.put(&k, &v).unwrap_or_else(|e| panic!("{e}"));
                    }
                    drop(flush);
                    s = TieredStore::new(open(), pol, Arc::new(clock.clone()));
                }
            }
        }
        let keys = s.keys().unwrap_or_default();
        prop_assert_eq!(keys.len(), keys.iter().collect::<HashSet<_>>().len());
        prop_assert_eq!(keys.iter().copied().collect::<HashSet<_>>(), model.keys().copied().collect::<HashSet<_>>());
        for (k, v) in &model {
            prop_assert_eq!(s.get(k).ok().flatten(), Some(v.clone()));
        }
        drop(s);
        let _ = std::fs::remove_file(&path);
    }
}
