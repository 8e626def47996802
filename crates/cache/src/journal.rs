//! The write-behind journal: every write a `WriteBehind` (feature `loader`)
//! acknowledges is on disk until it has reached the source.
//!
//! A journal is one append-only file of records, each
//! `len: u32 LE | crc32(payload): u32 LE | payload` with
//! `payload = key_len: u32 LE | key | value` (key and value as the
//! [`JournalConfig`]'s codec writes them). A write is appended and
//! `fdatasync`ed before `put` returns, so an acknowledged write survives a
//! crash of the process or the machine. After each flush the journal is
//! rewritten (temporary file, fsync, rename, fsync of the directory) to hold
//! only the writes still waiting, so it stays as small as the buffer.
//!
//! Recovery reads records up to the first one that is torn or corrupt (bad
//! length, CRC or codec): a crash mid-append leaves at most that one record,
//! which was never acknowledged. The tail is cut off, counted, and writing
//! resumes after the last good record. Replaying is at-least-once: a write
//! flushed just before a crash (the journal not yet rewritten) is written to
//! the source again, with the same value.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use kuai_core::{Decoder, Encoder};

use crate::error::CacheError;

/// Largest record accepted on recovery (a larger length is a torn tail).
pub const MAX_JOURNAL_RECORD: usize = 64 << 20;

/// Where and how a write-behind (`WriteBehind::with_journal`, feature
/// `loader`) journals its writes.
#[derive(Debug, Clone)]
pub struct JournalConfig<C> {
    /// The journal file (created if missing; its directory must exist).
    pub path: PathBuf,
    /// Encodes and decodes keys and values (any `kuai-codec` codec, or your
    /// own [`Encoder`]/[`Decoder`] pair for both types).
    pub codec: C,
}

/// What recovery found in an existing journal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JournalRecovery {
    /// Records replayed (before coalescing repeated keys).
    pub records: u64,
    /// Bytes cut off after the last good record (a torn or corrupt tail).
    pub discarded_bytes: u64,
}

impl JournalRecovery {
    /// What recovery would find in a journal holding `bytes`: whole records
    /// with a good checksum, and the bytes after the last of them (the codec
    /// is not consulted). For tools that inspect a journal; never panics.
    pub fn scan(bytes: &[u8]) -> Self {
        let (records, valid) = parse_records(bytes);
        JournalRecovery {
            records: records.len() as u64,
            discarded_bytes: (bytes.len() - valid) as u64,
        }
    }
}

fn io_err(path: &Path, what: &str, e: std::io::Error) -> CacheError {
    CacheError::Journal(format!("{what} {}: {e}", path.display()))
}

/// Splits `bytes` into record payloads; returns them and the length of the
/// valid prefix. Never panics, whatever the input.
pub(crate) fn parse_records(bytes: &[u8]) -> (Vec<&[u8]>, usize) {
    let mut out = Vec::new();
    let mut at = 0usize;
    while let Some(header) = bytes.get(at..at + 8) {
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if len > MAX_JOURNAL_RECORD {
            break;
        }
        let Some(payload) = bytes.get(at + 8..at + 8 + len) else {
            break;
        };
        if crc32fast::hash(payload) != crc {
            break;
        }
        out.push(payload);
        at += 8 + len;
    }
    (out, at)
}

/// Splits a payload into (key bytes, value bytes).
#[cfg_attr(not(feature = "loader"), allow(dead_code))]
pub(crate) fn split_payload(payload: &[u8]) -> Option<(&[u8], &[u8])> {
    let klen = u32::from_le_bytes(payload.get(..4)?.try_into().ok()?) as usize;
    let key = payload.get(4..4usize.checked_add(klen)?)?;
    Some((key, &payload[4 + klen..]))
}

/// An opened journal, the writes it held, and what recovery found.
pub(crate) type Opened<J, K, V> = (J, Vec<(K, V)>, JournalRecovery);

/// The journal of one write-behind, typed by its key and value.
#[cfg_attr(not(feature = "loader"), allow(dead_code))]
pub(crate) trait Journal<K, V>: Send {
    /// Appends one acknowledged write and syncs it to disk.
    fn append(&mut self, key: &K, value: &V) -> Result<(), CacheError>;
    /// Replaces the journal's content with `live` (the writes still waiting).
    fn rewrite(&mut self, live: &mut dyn Iterator<Item = (&K, &V)>) -> Result<(), CacheError>;
}

#[cfg_attr(not(feature = "loader"), allow(dead_code))]
pub(crate) struct FileJournal<C> {
    path: PathBuf,
    file: File,
    codec: C,
    record: Vec<u8>,
}

#[cfg_attr(not(feature = "loader"), allow(dead_code))]
impl<C> FileJournal<C> {
    /// Opens (or creates) the journal at `cfg.path`, returning the writes it
    /// holds, in order, and what recovery found.
    pub(crate) fn open<K, V>(cfg: JournalConfig<C>) -> Result<Opened<Self, K, V>, CacheError>
    where
        C: Decoder<K> + Decoder<V>,
    {
        let path = cfg.path;
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|e| io_err(&path, "open", e))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| io_err(&path, "read", e))?;
        let (payloads, mut valid) = parse_records(&bytes);
        let mut writes = Vec::with_capacity(payloads.len());
        for (i, p) in payloads.iter().enumerate() {
            let decoded = split_payload(p).and_then(|(k, v)| {
                let k: K = cfg.codec.decode(k).ok()?;
                let v: V = cfg.codec.decode(v).ok()?;
                Some((k, v))
            });
            match decoded {
                Some(w) => writes.push(w),
                None => {
                    // A record the codec cannot read ends the journal too.
                    valid = payloads[..i].iter().map(|p| 8 + p.len()).sum();
                    break;
                }
            }
        }
        let recovery = JournalRecovery {
            records: writes.len() as u64,
            discarded_bytes: (bytes.len() - valid) as u64,
        };
        if valid < bytes.len() {
            file.set_len(valid as u64)
                .and_then(|()| file.sync_all())
                .map_err(|e| io_err(&path, "truncate the torn tail of", e))?;
        }
        Ok((
            FileJournal {
                path,
                file,
                codec: cfg.codec,
                record: Vec::new(),
            },
            writes,
            recovery,
        ))
    }

    fn encode_record<K, V>(&mut self, key: &K, value: &V) -> Result<(), CacheError>
    where
        C: Encoder<K> + Encoder<V>,
    {
        let k = self.codec.encode_to_vec(key).map_err(CacheError::Backend)?;
        let v = self
            .codec
            .encode_to_vec(value)
            .map_err(CacheError::Backend)?;
        let payload_len = 4 + k.len() + v.len();
        if payload_len > MAX_JOURNAL_RECORD || u32::try_from(k.len()).is_err() {
            return Err(CacheError::Journal(format!(
                "a write of {payload_len} bytes exceeds the journal's record limit of {MAX_JOURNAL_RECORD}"
            )));
        }
        let r = &mut self.record;
        r.clear();
        r.extend_from_slice(&(payload_len as u32).to_le_bytes());
        r.extend_from_slice(&[0; 4]);
        r.extend_from_slice(&(k.len() as u32).to_le_bytes());
        r.extend_from_slice(&k);
        r.extend_from_slice(&v);
        let crc = crc32fast::hash(&r[8..]);
        r[4..8].copy_from_slice(&crc.to_le_bytes());
        Ok(())
    }
}

impl<K, V, C> Journal<K, V> for FileJournal<C>
where
    C: Encoder<K> + Encoder<V> + Send,
{
    fn append(&mut self, key: &K, value: &V) -> Result<(), CacheError> {
        self.encode_record(key, value)?;
        self.file
            .write_all(&self.record)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| io_err(&self.path, "append to", e))
    }

    fn rewrite(&mut self, live: &mut dyn Iterator<Item = (&K, &V)>) -> Result<(), CacheError> {
        let tmp = self.path.with_extension("rewrite");
        let mut out = File::create(&tmp).map_err(|e| io_err(&tmp, "create", e))?;
        let mut buf = Vec::new();
        for (k, v) in live {
            self.encode_record(k, v)?;
            buf.extend_from_slice(&self.record);
        }
        out.write_all(&buf)
            .and_then(|()| out.sync_all())
            .map_err(|e| io_err(&tmp, "write", e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| io_err(&self.path, "replace", e))?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| io_err(dir, "sync the directory of", e))?;
        }
        self.file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(|e| io_err(&self.path, "reopen", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Hostile bytes: never a panic, and the valid prefix is a whole
        /// number of records that parse again to the same thing.
        #[test]
        fn parsing_any_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let (records, valid) = parse_records(&bytes);
            prop_assert!(valid <= bytes.len());
            let (again, valid2) = parse_records(&bytes[..valid]);
            prop_assert_eq!(again.len(), records.len());
            prop_assert_eq!(valid2, valid);
            for r in records {
                let _ = split_payload(r);
            }
        }

        /// Good records followed by any garbage: all good records survive.
        #[test]
        fn a_torn_tail_keeps_every_complete_record(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..8),
            tail in proptest::collection::vec(any::<u8>(), 0..20),
        ) {
            let mut bytes = Vec::new();
            for p in &payloads {
                bytes.extend_from_slice(&(p.len() as u32).to_le_bytes());
                bytes.extend_from_slice(&crc32fast::hash(p).to_le_bytes());
                bytes.extend_from_slice(p);
            }
            let good = bytes.len();
            bytes.extend_from_slice(&tail);
            let (records, valid) = parse_records(&bytes);
            prop_assert!(records.len() >= payloads.len());
            prop_assert!(valid >= good);
            for (r, p) in records.iter().zip(&payloads) {
                prop_assert_eq!(*r, p.as_slice());
            }
        }
    }
}
