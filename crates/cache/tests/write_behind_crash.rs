//! Write-behind with a journal loses nothing it acknowledged when its
//! process is killed mid-write: a child process (this test binary, run
//! again as `child_writer`) writes as fast as its journal syncs, printing
//! each acknowledged write; the parent kills it with SIGKILL, recovers the
//! journal into a new write-behind and checks the source after a flush.
#![cfg(feature = "loader")]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use kuai_cache::{JournalConfig, LoadingCache, WriteBehind, WriteBehindConfig};
use kuai_core::{Decoder, Encoder, Error, KvStore, Result};

/// Keys cycle over this many, so later writes supersede earlier ones.
const KEYS: u64 = 50;
/// The child is killed after this many acknowledged writes.
const KILL_AFTER: usize = 300;
const CHILD_ENV: &str = "KUAI_WB_CRASH_CHILD_JOURNAL";

/// Little-endian u64 keys and values.
#[derive(Clone, Copy)]
struct U64s;

impl Encoder<u64> for U64s {
    fn encode(&self, item: &u64, dst: &mut BytesMut) -> Result<()> {
        dst.put_u64_le(*item);
        Ok(())
    }
}

impl Decoder<u64> for U64s {
    fn decode(&self, src: &[u8]) -> Result<u64> {
        let b: [u8; 8] = src.try_into().map_err(|_| Error::corrupt("not 8 bytes"))?;
        Ok(u64::from_le_bytes(b))
    }
}

/// A source whose writes never finish (the child's: nothing leaves the
/// journal before the kill).
struct Stuck;

impl KvStore<u64, u64> for Stuck {
    async fn get(&self, _: &u64) -> Result<Option<u64>> {
        Ok(None)
    }
    async fn put(&self, _: u64, _: u64) -> Result<()> {
        std::future::pending().await
    }
    async fn delete(&self, _: &u64) -> Result<()> {
        Ok(())
    }
}

#[derive(Default)]
struct Mem(Mutex<HashMap<u64, u64>>);

impl KvStore<u64, u64> for Mem {
    async fn get(&self, key: &u64) -> Result<Option<u64>> {
        Ok(self
            .0
            .lock()
            .map_err(|_| Error::closed("poisoned"))?
            .get(key)
            .copied())
    }
    async fn put(&self, key: u64, value: u64) -> Result<()> {
        self.0
            .lock()
            .map_err(|_| Error::closed("poisoned"))?
            .insert(key, value);
        Ok(())
    }
    async fn delete(&self, key: &u64) -> Result<()> {
        self.0
            .lock()
            .map_err(|_| Error::closed("poisoned"))?
            .remove(key);
        Ok(())
    }
}

fn cache() -> LoadingCache<u64, u64> {
    LoadingCache::builder()
        .max_capacity(10_000)
        .build()
        .expect("valid config")
}

fn config() -> WriteBehindConfig {
    WriteBehindConfig {
        capacity: 10_000,
        batch: 16,
        interval: Duration::from_millis(5),
        ..WriteBehindConfig::default()
    }
}

/// The child's body; a no-op unless the parent set the journal path.
#[tokio::test]
async fn child_writer() {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let (wb, _) = WriteBehind::with_journal(
        cache(),
        Arc::new(Stuck),
        config(),
        JournalConfig {
            path: path.into(),
            codec: U64s,
        },
    )
    .expect("journal opens");
    let mut out = std::io::stdout().lock();
    for i in 0u64.. {
        wb.put(i % KEYS, i).expect("acknowledged");
        // Printed only once `put` returned: every line is an acknowledged write.
        writeln!(out, "ack {i}")
            .and_then(|()| out.flush())
            .expect("stdout");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_write_behind_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("wb.journal");
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(exe)
        .args(["child_writer", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the child writer");
    let stdout = child.stdout.take().expect("piped");
    let mut lines = BufReader::new(stdout).lines();
    let mut acked: Vec<u64> = Vec::new();
    while acked.len() < KILL_AFTER {
        let line = lines
            .next()
            .expect("the child died before it was killed")
            .expect("read");
        if let Some(i) = line.strip_prefix("ack ") {
            acked.push(i.parse().expect("a number"));
        }
    }
    // Mid-write: the child is appending and syncing as fast as it can.
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    // Acknowledgements printed before the kill are still in the pipe.
    for line in lines.map_while(std::result::Result::ok) {
        if let Some(i) = line.strip_prefix("ack ") {
            acked.push(i.parse().expect("a number"));
        }
    }

    let source = Arc::new(Mem::default());
    let (wb, recovery) = WriteBehind::with_journal(
        cache(),
        Arc::clone(&source),
        config(),
        JournalConfig {
            path: path.clone(),
            codec: U64s,
        },
    )
    .expect("the journal recovers");
    assert!(
        recovery.records >= acked.len() as u64,
        "every acknowledged write is in the journal: {recovery:?}, {} acked",
        acked.len()
    );
    wb.shutdown().await.expect("everything flushes");
    let map = source.0.lock().expect("lock").clone();
    for k in 0..KEYS {
        let last_acked = acked.iter().copied().filter(|i| i % KEYS == k).max();
        let Some(last_acked) = last_acked else {
            continue;
        };
        let got = map.get(&k).copied();
        // The source holds the last acknowledged value, or a later write
        // that reached the journal just before the kill (never an older one).
        assert!(
            got.is_some_and(|v| v >= last_acked && v % KEYS == k),
            "key {k}: source has {got:?}, last acknowledged write was {last_acked}"
        );
    }
    // Flushed and rewritten: a restart finds nothing left to replay.
    drop(wb);
    let (_wb, again) = WriteBehind::with_journal(
        cache(),
        Arc::new(Mem::default()),
        config(),
        JournalConfig { path, codec: U64s },
    )
    .expect("reopens");
    assert_eq!(again.records, 0, "{again:?}");
}

/// A journal with a torn or corrupt tail: the good records are recovered,
/// the tail is cut and counted, and new writes append after the cut.
#[tokio::test]
async fn a_torn_journal_tail_is_cut_and_counted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("wb.journal");
    let journal = || JournalConfig {
        path: path.clone(),
        codec: U64s,
    };
    let never_flush = WriteBehindConfig {
        interval: Duration::from_secs(3600),
        batch: 10_000,
        ..config()
    };
    {
        let (wb, _) =
            WriteBehind::with_journal(cache(), Arc::new(Stuck), never_flush.clone(), journal())
                .expect("opens");
        for i in 0..10u64 {
            wb.put(i, i * 10).expect("ok");
        }
    }
    // A half-written record: a length and a CRC, and too few bytes.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .expect("open");
    f.write_all(&[20, 0, 0, 0, 1, 2, 3, 4, 9, 9])
        .expect("write");
    drop(f);
    let (wb, recovery) =
        WriteBehind::with_journal(cache(), Arc::new(Stuck), never_flush.clone(), journal())
            .expect("recovers");
    assert_eq!(recovery.records, 10);
    assert_eq!(recovery.discarded_bytes, 10);
    assert_eq!(
        wb.get(3).await.expect("ok"),
        Some(30),
        "replayed into the cache"
    );
    wb.put(3, 31).expect("appends after the cut");
    drop(wb);
    let (_wb, recovery) =
        WriteBehind::with_journal(cache(), Arc::new(Stuck), never_flush, journal())
            .expect("recovers");
    assert_eq!(recovery.records, 11);
    assert_eq!(recovery.discarded_bytes, 0);
}
