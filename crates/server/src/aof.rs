//! The append-only file: every mutation as a RESP command, replayed at start.
//!
//! Commands append their canonical form to an in-memory buffer while their
//! shard is locked (so the buffer's order is the execution order); a
//! connection calls [`Aof::flush`] after a batch of commands and before
//! sending the replies, which writes the buffer to the file and, under
//! `appendfsync always`, `fdatasync`s it — so nothing acknowledged is lost.
//! Under `everysec` a background thread syncs once a second; under `no` the
//! OS decides. A torn tail (a crash mid-write) is cut off at replay.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::BytesMut;
use parking_lot::Mutex;

use crate::resp::{Limits, ProtocolError, RequestParser, encode_command};

/// When the log is `fsync`ed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FsyncPolicy {
    /// After every batch, before replying.
    Always,
    /// Once a second, in the background.
    #[default]
    EverySec,
    /// Never explicitly.
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

/// An open append-only file.
#[derive(Debug)]
pub struct Aof {
    path: PathBuf,
    buf: Mutex<Vec<u8>>,
    file: Mutex<File>,
    policy: FsyncPolicy,
    dirty: AtomicBool,
    size: AtomicU64,
    fsyncs: AtomicU64,
}

/// What replay found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayStats {
    /// Commands replayed.
    pub commands: u64,
    /// Bytes of a torn tail that were cut off.
    pub truncated_bytes: u64,
}

impl Aof {
    /// Opens (creating) the log at `path` for appending.
    pub fn open(path: &Path, policy: FsyncPolicy) -> io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(Aof {
            path: path.to_owned(),
            buf: Mutex::new(Vec::with_capacity(64 * 1024)),
            file: Mutex::new(file),
            policy,
            dirty: AtomicBool::new(false),
            size: AtomicU64::new(size),
            fsyncs: AtomicU64::new(0),
        })
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The fsync policy.
    pub fn policy(&self) -> FsyncPolicy {
        self.policy
    }

    /// Bytes in the file.
    pub fn size(&self) -> u64 {
        self.size.load(Ordering::Relaxed)
    }

    /// fsyncs done.
    pub fn fsyncs(&self) -> u64 {
        self.fsyncs.load(Ordering::Relaxed)
    }

    /// Buffers one command.
    pub fn append(&self, args: &[&[u8]]) {
        encode_command(args, &mut self.buf.lock());
    }

    /// Writes buffered commands to the file (and syncs under `always`).
    pub fn flush(&self) -> io::Result<()> {
        let mut file = self.file.lock();
        let data = {
            let mut b = self.buf.lock();
            if b.is_empty() {
                return Ok(());
            }
            std::mem::replace(&mut *b, Vec::with_capacity(64 * 1024))
        };
        file.write_all(&data)?;
        self.size.fetch_add(data.len() as u64, Ordering::Relaxed);
        if self.policy == FsyncPolicy::Always {
            file.sync_data()?;
            self.fsyncs.fetch_add(1, Ordering::Relaxed);
        } else {
            self.dirty.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// Flushes and fsyncs unconditionally (shutdown, the `everysec` timer).
    pub fn sync(&self) -> io::Result<()> {
        self.flush()?;
        if self.dirty.swap(false, Ordering::AcqRel) || self.policy == FsyncPolicy::Always {
            let file = self.file.lock();
            file.sync_data()?;
            self.fsyncs.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// Reads the log at `path` and calls `apply` for every complete command.
/// A torn final command is cut off the file; malformed content is an error.
pub fn replay(
    path: &Path,
    mut apply: impl FnMut(&[bytes::Bytes]),
) -> Result<ReplayStats, ReplayError> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(ReplayStats::default()),
        Err(e) => return Err(ReplayError::Io(e)),
    };
    let total = f.metadata().map_err(ReplayError::Io)?.len();
    let mut parser = RequestParser::new(Limits {
        max_multibulk_len: usize::MAX / 2,
        max_query_buffer: usize::MAX / 2,
        ..Limits::default()
    });
    let mut buf = BytesMut::with_capacity(1 << 20);
    let mut args = Vec::new();
    let mut stats = ReplayStats::default();
    let mut read_total: u64 = 0;
    let mut good_end: u64 = 0;
    let mut chunk = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut chunk).map_err(ReplayError::Io)?;
        read_total += n as u64;
        buf.extend_from_slice(&chunk[..n]);
        loop {
            match parser.next_command(&mut buf, &mut args) {
                Ok(true) => {
                    apply(&args);
                    stats.commands += 1;
                    good_end = read_total - buf.len() as u64;
                }
                Ok(false) => break,
                Err(e) => {
                    return Err(ReplayError::Corrupt {
                        offset: read_total - buf.len() as u64,
                        error: e,
                    });
                }
            }
        }
        if n == 0 {
            break;
        }
    }
    if good_end < total {
        stats.truncated_bytes = total - good_end;
        let f = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(ReplayError::Io)?;
        f.set_len(good_end).map_err(ReplayError::Io)?;
        f.sync_all().map_err(ReplayError::Io)?;
    }
    Ok(stats)
}

/// Why replay failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// Reading or truncating the file failed.
    #[error("append-only file I/O: {0}")]
    Io(#[from] io::Error),
    /// The file holds something that is not a command.
    #[error("append-only file corrupt at byte {offset}: {error}")]
    Corrupt {
        /// Where parsing failed.
        offset: u64,
        /// What was wrong.
        error: ProtocolError,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_flush_replay_and_torn_tail() {
        let dir = std::env::temp_dir().join(format!("kuai-aof-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.aof");
        let _ = std::fs::remove_file(&path);
        let aof = Aof::open(&path, FsyncPolicy::Always).unwrap();
        aof.append(&[b"SET", b"a", b"1"]);
        aof.append(&[b"SET", b"b", b"2"]);
        aof.flush().unwrap();
        assert_eq!(aof.fsyncs(), 1);
        drop(aof);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"*3\r\n$3\r\nSET\r\n$1\r\nc").unwrap();
        drop(f);
        let mut seen = Vec::new();
        let st = replay(&path, |a| seen.push(a[1].clone())).unwrap();
        assert_eq!(seen, vec![&b"a"[..], &b"b"[..]]);
        assert!(st.truncated_bytes > 0);
        let st = replay(&path, |_| {}).unwrap();
        assert_eq!(
            st,
            ReplayStats {
                commands: 2,
                truncated_bytes: 0
            }
        );
        std::fs::write(&path, b"garbage\r\n*x\r\n").unwrap();
        assert!(replay(&path, |_| {}).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
