//! A file-backed cold tier: an append-only log of `u64 → bytes` records
//! with an in-memory index.
//!
//! Record: `op:u8 key:u64le len:u32le value[len] fnv1a32:u32le` (the
//! checksum covers op, key, len and value). Opening scans the log; the
//! first record that is incomplete or fails its checksum ends the log and
//! the file is truncated there (a crash mid-append loses only that
//! record). Values are limited to 16 MiB so a damaged length can never
//! make a read allocate without bound. The log is not compacted: it suits
//! cold data, written rarely. One `FileColdTier` owns its file: two
//! handles on the same file (or two processes) would interleave appends.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Mutex;

use crate::{ColdTier, StoreError};

const OP_PUT: u8 = 1;
const OP_DEL: u8 = 2;
const HEADER: usize = 1 + 8 + 4;
/// The largest value a record may hold.
pub const MAX_VALUE: usize = 16 << 20;

fn fnv1a(parts: &[&[u8]]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for p in parts {
        for &b in *p {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
    }
    h
}

#[derive(Debug)]
struct State {
    file: File,
    end: u64,
    /// key → (offset of the value, length)
    index: HashMap<u64, (u64, u32)>,
}

/// A cold tier in one append-only file.
#[derive(Debug)]
pub struct FileColdTier {
    state: Mutex<State>,
    sync: bool,
}

fn poisoned() -> StoreError {
    StoreError::Closed("file cold tier (a lock was poisoned)")
}

impl FileColdTier {
    /// Opens (or creates) the log at `path`, recovering its index. With
    /// `sync`, every write is flushed to disk before it returns.
    pub fn open(path: impl AsRef<Path>, sync: bool) -> Result<Self, StoreError> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let mut index = HashMap::new();
        let mut at = 0usize;
        while bytes.len() - at >= HEADER {
            let op = bytes[at];
            let key = u64::from_le_bytes(bytes[at + 1..at + 9].try_into().unwrap_or([0; 8]));
            let len = u32::from_le_bytes(bytes[at + 9..at + 13].try_into().unwrap_or([0; 4]));
            let total = HEADER + len as usize + 4;
            if (op != OP_PUT && op != OP_DEL)
                || len as usize > MAX_VALUE
                || bytes.len() - at < total
            {
                break;
            }
            let body = &bytes[at..at + HEADER + len as usize];
            let sum = u32::from_le_bytes(
                bytes[at + HEADER + len as usize..at + total]
                    .try_into()
                    .unwrap_or([0; 4]),
            );
            if fnv1a(&[body]) != sum {
                break;
            }
            if op == OP_PUT {
                index.insert(key, ((at + HEADER) as u64, len));
            } else {
                index.remove(&key);
            }
            at += total;
        }
        let end = at as u64;
        if end != bytes.len() as u64 {
            file.set_len(end)?;
        }
        file.seek(SeekFrom::Start(end))?;
        Ok(FileColdTier {
            state: Mutex::new(State { file, end, index }),
            sync,
        })
    }

    fn append(&self, op: u8, key: u64, value: &[u8]) -> Result<(), StoreError> {
        if value.len() > MAX_VALUE {
            return Err(StoreError::InvalidInput(format!(
                "a cold value of {} bytes exceeds {MAX_VALUE}",
                value.len()
            )));
        }
        let len = value.len() as u32;
        let mut rec = Vec::with_capacity(HEADER + value.len() + 4);
        rec.push(op);
        rec.extend_from_slice(&key.to_le_bytes());
        rec.extend_from_slice(&len.to_le_bytes());
        rec.extend_from_slice(value);
        let sum = fnv1a(&[&rec]);
        rec.extend_from_slice(&sum.to_le_bytes());
        let mut st = self.state.lock().map_err(|_| poisoned())?;
        let start = st.end;
        if let Err(e) = st.file.write_all(&rec).and_then(|()| {
            if self.sync {
                st.file.sync_data()
            } else {
                Ok(())
            }
        }) {
            // Drop whatever part of the record made it, so the log stays clean.
            let _ = st.file.set_len(start);
            let _ = st.file.seek(SeekFrom::Start(start));
            return Err(e.into());
        }
        st.end += rec.len() as u64;
        if op == OP_PUT {
            st.index.insert(key, (start + HEADER as u64, len));
        } else {
            st.index.remove(&key);
        }
        Ok(())
    }

    /// Bytes in the log.
    pub fn log_len(&self) -> u64 {
        self.state.lock().map(|s| s.end).unwrap_or(0)
    }
}

impl ColdTier<u64, Vec<u8>> for FileColdTier {
    fn get(&self, key: &u64) -> Result<Option<Vec<u8>>, StoreError> {
        let st = self.state.lock().map_err(|_| poisoned())?;
        let Some(&(off, len)) = st.index.get(key) else {
            return Ok(None);
        };
        let mut buf = vec![0u8; len as usize];
        st.file.read_exact_at(&mut buf, off)?;
        Ok(Some(buf))
    }

    fn put(&self, key: &u64, value: &Vec<u8>) -> Result<(), StoreError> {
        self.append(OP_PUT, *key, value)
    }

    fn delete(&self, key: &u64) -> Result<(), StoreError> {
        let present = self
            .state
            .lock()
            .map_err(|_| poisoned())?
            .index
            .contains_key(key);
        if present {
            self.append(OP_DEL, *key, &[])?;
        }
        Ok(())
    }

    fn keys(&self) -> Result<Vec<u64>, StoreError> {
        Ok(self
            .state
            .lock()
            .map_err(|_| poisoned())?
            .index
            .keys()
            .copied()
            .collect())
    }
}
