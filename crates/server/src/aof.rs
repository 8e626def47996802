//! The append-only file, on `kuai-queue`'s durable log: every mutation as a
//! RESP command, replayed at start.
//!
//! Commands append their canonical form to an in-memory buffer while their
//! shard is locked (so the buffer's order is the execution order); a
//! connection calls [`Aof::flush`] after a batch of commands and before
//! sending the replies, which appends the buffer as one record of the log:
//!
//! | `appendfsync` | log mode | acknowledged when |
//! |---|---|---|
//! | `always` | per-record `pwrite` + `fdatasync` | the batch is on disk — a `kill -9` or power cut loses nothing acknowledged |
//! | `everysec` | group commit (≤ 10 ms, background flusher) | the batch is queued; the flusher makes it durable within ~10 ms |
//! | `no` | per-record `pwrite`, no `fdatasync` | the batch is in the OS (survives a process crash) |
//!
//! The log (a directory of CRC-checked segments) truncates a torn tail when it
//! is opened, so replay sees only whole batches.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use kuai::queue::log::{Log, SyncPolicy};
use parking_lot::Mutex;

use crate::resp::{Limits, ProtocolError, RequestParser, encode_command};

/// Largest batch appended as one log record.
const MAX_RECORD: usize = 1 << 30;

/// When the log is `fsync`ed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FsyncPolicy {
    /// Every batch is durable before its replies are sent.
    Always,
    /// Group commit in the background (durable within ~10 ms).
    #[default]
    EverySec,
    /// Written to the OS, never explicitly synced.
    No,
}

impl FsyncPolicy {
    /// Parses `always`, `everysec` or `no`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "always" => FsyncPolicy::Always,
            "everysec" => FsyncPolicy::EverySec,
            "no" => FsyncPolicy::No,
            _ => return None,
        })
    }

    /// The policy's name.
    pub fn name(self) -> &'static str {
        match self {
            FsyncPolicy::Always => "always",
            FsyncPolicy::EverySec => "everysec",
            FsyncPolicy::No => "no",
        }
    }
}

/// An open append-only log.
#[derive(Debug)]
pub struct Aof {
    path: PathBuf,
    buf: Mutex<Vec<u8>>,
    log: Mutex<Option<Log>>,
    policy: FsyncPolicy,
    records: AtomicU64,
}

/// What replay found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayStats {
    /// Commands replayed.
    pub commands: u64,
    /// Bytes of a torn tail the log cut off when it was opened.
    pub truncated_bytes: u64,
}

/// Why opening or replaying the log failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The durable log failed (I/O, a damaged record).
    #[error("append-only log: {0}")]
    Log(#[from] kuai::queue::QueueError),
    /// A record holds something that is not a command.
    #[error("append-only log corrupt at record {record}: {error}")]
    Corrupt {
        /// The record.
        record: u64,
        /// What was wrong.
        error: ProtocolError,
    },
}

impl Aof {
    /// Opens (creating, recovering its tail) the log in directory `path`.
    pub fn open(path: &Path, policy: FsyncPolicy) -> Result<Self, ReplayError> {
        let b = Log::builder(path).max_record_bytes(MAX_RECORD);
        let b = match policy {
            FsyncPolicy::Always => b.sync_policy(SyncPolicy::PerRecord),
            FsyncPolicy::EverySec => b.group_commit(Duration::from_millis(10)),
            FsyncPolicy::No => b.sync_policy(SyncPolicy::PerRecord).fsync(false),
        };
        let log = b.open()?;
        Ok(Aof {
            path: path.to_owned(),
            buf: Mutex::new(Vec::with_capacity(64 * 1024)),
            log: Mutex::new(Some(log)),
            policy,
            records: AtomicU64::new(0),
        })
    }

    /// The log's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The fsync policy.
    pub fn policy(&self) -> FsyncPolicy {
        self.policy
    }

    /// Bytes in the log.
    pub fn size(&self) -> u64 {
        self.log.lock().as_ref().map_or(0, Log::size_bytes)
    }

    /// Records (batches) appended since start.
    pub fn fsyncs(&self) -> u64 {
        self.records.load(Ordering::Relaxed)
    }

    /// Buffers one command.
    pub fn append(&self, args: &[&[u8]]) {
        encode_command(args, &mut self.buf.lock());
    }

    /// Appends the buffered commands as one record; under `always` it is
    /// durable when this returns.
    pub fn flush(&self) -> Result<(), kuai::queue::QueueError> {
        // The log lock orders records as the buffer was filled.
        let log = self.log.lock();
        let data = {
            let mut b = self.buf.lock();
            if b.is_empty() {
                return Ok(());
            }
            std::mem::replace(&mut *b, Vec::with_capacity(64 * 1024))
        };
        let Some(log) = log.as_ref() else {
            return Err(kuai::queue::QueueError::Closed);
        };
        for chunk in data.chunks(MAX_RECORD) {
            let ticket = log.append(chunk)?;
            if self.policy == FsyncPolicy::Always {
                ticket.wait()?;
            }
            self.records.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Flushes and waits until everything appended is durable.
    pub fn sync(&self) -> Result<(), kuai::queue::QueueError> {
        self.flush()?;
        match self.log.lock().as_ref() {
            Some(log) => log.flush(),
            None => Ok(()),
        }
    }

    /// Syncs and closes the log (shutdown).
    pub fn close(&self) -> Result<(), kuai::queue::QueueError> {
        self.flush()?;
        match self.log.lock().take() {
            Some(log) => log.close(),
            None => Ok(()),
        }
    }
}

/// Opens the log in `path` and calls `apply` for every command in it.
pub fn replay(
    path: &Path,
    policy: FsyncPolicy,
    mut apply: impl FnMut(&[bytes::Bytes]),
) -> Result<(Aof, ReplayStats), ReplayError> {
    let aof = Aof::open(path, policy)?;
    let mut stats = ReplayStats::default();
    {
        let guard = aof.log.lock();
        let Some(log) = guard.as_ref() else {
            return Err(ReplayError::Log(kuai::queue::QueueError::Closed));
        };
        stats.truncated_bytes = log.recovery().truncated_bytes;
        let limits = Limits {
            max_multibulk_len: usize::MAX / 2,
            max_query_buffer: usize::MAX / 2,
            ..Limits::default()
        };
        let mut args = Vec::new();
        let mut offset = log.start_offset();
        let end = log.end_offset();
        while offset < end {
            let records = log.read_from(offset, 4 << 20)?;
            if records.is_empty() {
                break;
            }
            for r in records {
                offset = r.offset + 1;
                let mut parser = RequestParser::new(limits);
                let mut buf = BytesMut::from(&r.payload[..]);
                loop {
                    match parser.next_command(&mut buf, &mut args) {
                        Ok(true) => {
                            apply(&args);
                            stats.commands += 1;
                        }
                        Ok(false) if buf.is_empty() => break,
                        Ok(false) => {
                            return Err(ReplayError::Corrupt {
                                record: r.offset,
                                error: ProtocolError::QueryBufferLimit,
                            });
                        }
                        Err(error) => {
                            return Err(ReplayError::Corrupt {
                                record: r.offset,
                                error,
                            });
                        }
                    }
                }
            }
        }
    }
    Ok((aof, stats))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_flush_replay() {
        let dir = std::env::temp_dir().join(format!("kuai-aof-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        {
            let aof = Aof::open(&dir, FsyncPolicy::Always).unwrap();
            aof.append(&[b"SET", b"a", b"1"]);
            aof.append(&[b"SET", b"b", b"2"]);
            aof.flush().unwrap();
            aof.append(&[b"DEL", b"a"]);
            aof.close().unwrap();
            assert_eq!(aof.fsyncs(), 2);
        }
        let mut seen = Vec::new();
        let (aof, st) = replay(&dir, FsyncPolicy::EverySec, |a| {
            seen.push((a[0].clone(), a[1].clone()))
        })
        .unwrap();
        assert_eq!(st.commands, 3);
        assert_eq!(
            seen[2],
            (
                bytes::Bytes::from_static(b"DEL"),
                bytes::Bytes::from_static(b"a")
            )
        );
        aof.close().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
