//! One segment: a `<base offset>.log` file of records plus its sparse index
//! (`<base offset>.index`, written when the segment is sealed).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError, RwLock};

use bytes::Bytes;
use kuai_zerocopy::{MappedAppender, MappedFile, ZeroCopyError};

use super::record::{self, HEADER, Header, Record};
use super::{ReadMode, SegmentBackend};
use crate::error::{QueueError, QueueResult};

/// One sparse-index entry: (offset − base, byte position).
pub(crate) type IndexEntry = (u32, u32);

pub(crate) fn log_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.log"))
}

pub(crate) fn index_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.index"))
}

/// How the writer puts bytes into a segment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WriteCfg {
    pub(crate) backend: SegmentBackend,
    pub(crate) fsync: bool,
    /// Bytes pre-allocated when a mapped segment is opened for appending.
    pub(crate) initial_capacity: u64,
    /// The largest a mapped segment may grow (one oversized record alone).
    pub(crate) max_capacity: u64,
}

/// A segment file. Readers see bytes below `size` only: the writer raises
/// `size` after the bytes are durable, so nothing unacknowledged is ever read.
///
/// # Mapped reads and truncation (the rule that keeps them SIGBUS-free)
/// With [`ReadMode::Mmap`] records are slices of a read-only shared mapping
/// of the file (`kuai-zerocopy`'s `MappedFile`, kept alive by the `Bytes`).
/// A read touches bytes below `size` only, and the log never shrinks a file
/// below `size` while it is open: recovery truncates the torn tail before
/// any reader exists, sealing a mapped segment trims only its zero-filled
/// pre-allocation (above `size`), and retention unlinks files (a mapping
/// keeps its inode alive). A mapping that is too short for a grown segment
/// is replaced (remap); if mapping fails the read falls back to `pread`.
/// Only another process truncating a segment file behind the log's back can
/// fault a mapping; use [`ReadMode::Pread`] if that can happen.
#[derive(Debug)]
pub(crate) struct Segment {
    pub(crate) base: u64,
    pub(crate) path: PathBuf,
    pub(crate) file: File,
    /// Durable, readable length in bytes.
    pub(crate) size: AtomicU64,
    /// One past the last durable offset in this segment.
    pub(crate) next_offset: AtomicU64,
    /// Newest record timestamp (for retention by age).
    pub(crate) max_timestamp: AtomicU64,
    pub(crate) index: Mutex<Vec<IndexEntry>>,
    /// The active segment's mmap appender ([`SegmentBackend::Mapped`]),
    /// opened on the first write and dropped when the segment is sealed.
    appender: Mutex<Option<MappedAppender>>,
    /// The current read-only mapping of the whole file ([`ReadMode::Mmap`]).
    view: RwLock<Option<Bytes>>,
}

/// Bytes read at once from an index entry to walk to a record with
/// [`ReadMode::Pread`] (index entries are about 4 KiB apart by default).
const WALK_WINDOW: usize = 8 << 10;

/// Bytes of the file starting at byte `at`: the whole mapping (`at == 0`)
/// or one `pread` buffer.
#[derive(Debug)]
pub(crate) struct Window {
    at: u64,
    bytes: Bytes,
}

impl Window {
    /// `len` bytes at file position `pos`, if the window holds them all.
    fn get(&self, pos: u64, len: usize) -> Option<Bytes> {
        let (from, to) = self.range(pos, len)?;
        Some(self.bytes.slice(from..to))
    }

    /// Like [`get`](Self::get), borrowed (no reference-count traffic).
    fn borrow(&self, pos: u64, len: usize) -> Option<&[u8]> {
        let (from, to) = self.range(pos, len)?;
        self.bytes.get(from..to)
    }

    fn range(&self, pos: u64, len: usize) -> Option<(usize, usize)> {
        let from = usize::try_from(pos.checked_sub(self.at)?).ok()?;
        let to = from.checked_add(len)?;
        (to <= self.bytes.len()).then_some((from, to))
    }
}

/// What a scan of a segment found.
#[derive(Debug)]
pub(crate) struct Scan {
    /// Bytes of valid records from the start.
    pub(crate) valid_len: u64,
    pub(crate) next_offset: u64,
    pub(crate) max_timestamp: u64,
    pub(crate) index: Vec<IndexEntry>,
    pub(crate) records: u64,
    /// Offsets of damaged records kept in place (mid-segment damage).
    pub(crate) corrupt: Vec<u64>,
}

impl Segment {
    pub(crate) fn create(dir: &Path, base: u64) -> QueueResult<Segment> {
        let path = log_path(dir, base);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| QueueError::io(format!("creating {}", path.display()), e))?;
        Ok(Segment {
            base,
            path,
            file,
            size: AtomicU64::new(0),
            next_offset: AtomicU64::new(base),
            max_timestamp: AtomicU64::new(0),
            index: Mutex::new(Vec::new()),
            appender: Mutex::new(None),
            view: RwLock::new(None),
        })
    }

    pub(crate) fn open(path: PathBuf, base: u64) -> QueueResult<Segment> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| QueueError::io(format!("opening {}", path.display()), e))?;
        Ok(Segment {
            base,
            path,
            file,
            size: AtomicU64::new(0),
            next_offset: AtomicU64::new(base),
            max_timestamp: AtomicU64::new(0),
            index: Mutex::new(Vec::new()),
            appender: Mutex::new(None),
            view: RwLock::new(None),
        })
    }

    pub(crate) fn file_len(&self) -> QueueResult<u64> {
        self.file
            .metadata()
            .map(|m| m.len())
            .map_err(|e| QueueError::io(format!("stat {}", self.path.display()), e))
    }

    pub(crate) fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }

    pub(crate) fn index_snapshot(&self) -> Vec<IndexEntry> {
        self.index
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Scans records from the start, checking sequence and (if `verify`) CRC,
    /// stopping at the first invalid or incomplete record.
    pub(crate) fn scan(
        &self,
        len: u64,
        verify: bool,
        max_payload: usize,
        index_interval: u64,
    ) -> QueueResult<Scan> {
        const CHUNK: usize = 1 << 20;
        let mut scan = Scan {
            valid_len: 0,
            next_offset: self.base,
            max_timestamp: 0,
            index: Vec::new(),
            records: 0,
            corrupt: Vec::new(),
        };
        let mut buf: Vec<u8> = Vec::new();
        let mut buf_pos = 0u64; // file position of buf[0]
        let mut since_index = u64::MAX;
        let mut pos = 0u64;
        loop {
            if pos + HEADER as u64 > len {
                break;
            }
            // Make sure buf holds the header at `pos`.
            let need_header = (pos + HEADER as u64).saturating_sub(buf_pos) as usize;
            if pos < buf_pos || need_header > buf.len() {
                buf_pos = pos;
                let want = CHUNK.min((len - pos) as usize);
                buf = read_exact_at(&self.file, pos, want, &self.path)?;
            }
            let at = (pos - buf_pos) as usize;
            let Some(h) = Header::parse(&buf[at..]) else {
                break;
            };
            let Some(total) = h.total_len(max_payload) else {
                break;
            };
            if pos + total as u64 > len || h.offset != scan.next_offset {
                break;
            }
            if verify {
                if at + total > buf.len() {
                    buf_pos = pos;
                    let want = CHUNK.max(total).min((len - pos) as usize);
                    buf = read_exact_at(&self.file, pos, want, &self.path)?;
                }
                let at = (pos - buf_pos) as usize;
                if !record::crc_ok(&buf[at..at + total], &h) {
                    // A torn tail ends the segment; damage in the middle is
                    // followed by an intact record for the next offset. Keep
                    // (and report) the latter instead of truncating
                    // acknowledged records behind it.
                    if !self.intact_record_at(pos + total as u64, len, h.offset + 1, max_payload)? {
                        break;
                    }
                    scan.corrupt.push(h.offset);
                }
            }
            if since_index >= index_interval {
                scan.index.push(((h.offset - self.base) as u32, pos as u32));
                since_index = 0;
            }
            since_index += total as u64;
            pos += total as u64;
            scan.valid_len = pos;
            scan.next_offset = h.offset + 1;
            scan.max_timestamp = scan.max_timestamp.max(h.timestamp_ms);
            scan.records += 1;
        }
        Ok(scan)
    }

    /// Whether a CRC-valid record for `offset` starts at byte `pos`.
    fn intact_record_at(
        &self,
        pos: u64,
        len: u64,
        offset: u64,
        max_payload: usize,
    ) -> QueueResult<bool> {
        if pos + HEADER as u64 > len {
            return Ok(false);
        }
        let hb = read_exact_at(&self.file, pos, HEADER, &self.path)?;
        let Some(h) = Header::parse(&hb) else {
            return Ok(false);
        };
        let Some(total) = h.total_len(max_payload) else {
            return Ok(false);
        };
        if h.offset != offset || pos + total as u64 > len {
            return Ok(false);
        }
        let rec = read_exact_at(&self.file, pos, total, &self.path)?;
        Ok(record::crc_ok(&rec, &h))
    }

    /// A mapping of the file covering at least `need` bytes: the cached one,
    /// or a fresh one if the segment grew past it. `None` if mapping fails
    /// (the caller falls back to `pread`).
    fn view(&self, need: u64) -> Option<Bytes> {
        let covers = |b: &Option<Bytes>| b.as_ref().filter(|b| b.len() as u64 >= need).cloned();
        if let Some(b) = covers(&self.view.read().unwrap_or_else(PoisonError::into_inner)) {
            return Some(b);
        }
        let mut cached = self.view.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(b) = covers(&cached) {
            return Some(b);
        }
        let file = self.file.try_clone().ok()?;
        let mapped = MappedFile::options().map_file(file, &self.path).ok()?;
        let bytes = mapped.bytes();
        if (bytes.len() as u64) < need {
            return None;
        }
        *cached = Some(bytes.clone());
        Some(bytes)
    }

    /// The header at byte `pos`: from the window if it holds it, else by
    /// `pread`.
    fn header_at(&self, win: &Window, pos: u64) -> QueueResult<Option<Header>> {
        Ok(match win.borrow(pos, HEADER) {
            Some(b) => Header::parse(b),
            None => Header::parse(&read_exact_at(&self.file, pos, HEADER, &self.path)?),
        })
    }

    /// `len` bytes at `pos` (below `size`): a slice of the window if it
    /// holds them, else one `pread`.
    fn bytes_at(&self, win: &Window, pos: u64, len: usize) -> QueueResult<Bytes> {
        match win.get(pos, len) {
            Some(b) => Ok(b),
            None => Ok(Bytes::from(read_exact_at(
                &self.file, pos, len, &self.path,
            )?)),
        }
    }

    /// Finds the byte position of `offset` (which must be inside this
    /// segment's durable range) by the sparse index and a header walk.
    /// With [`ReadMode::Pread`] one `pread` of [`WALK_WINDOW`] bytes from the
    /// index entry serves the walk (and usually the record); returns the
    /// window used, for the caller to slice the record from.
    fn locate(
        &self,
        view: Option<Bytes>,
        offset: u64,
        size: u64,
        max_payload: usize,
    ) -> QueueResult<(u64, Header, Window)> {
        let rel = (offset - self.base) as u32;
        let index = self.index.lock().unwrap_or_else(PoisonError::into_inner);
        let start = match index.binary_search_by_key(&rel, |e| e.0) {
            Ok(i) => index[i].1,
            Err(0) => 0,
            Err(i) => index[i - 1].1,
        };
        drop(index);
        let mut pos = u64::from(start);
        let win = match view {
            Some(map) => Window { at: 0, bytes: map },
            None => {
                let len = (size - pos.min(size)).min(WALK_WINDOW as u64) as usize;
                Window {
                    at: pos,
                    bytes: Bytes::from(read_exact_at(&self.file, pos, len, &self.path)?),
                }
            }
        };
        let corrupt = |reason: String| QueueError::Corrupt { offset, reason };
        loop {
            if pos + HEADER as u64 > size {
                return Err(corrupt(format!("record missing before byte {size}")));
            }
            let h = self
                .header_at(&win, pos)?
                .ok_or_else(|| corrupt("short header".into()))?;
            let total = h.total_len(max_payload).ok_or_else(|| {
                corrupt(format!("impossible record length {} at byte {pos}", h.len))
            })?;
            if h.offset == offset {
                return Ok((pos, h, win));
            }
            if h.offset > offset || pos + total as u64 > size {
                return Err(corrupt(format!(
                    "header at byte {pos} names offset {}",
                    h.offset
                )));
            }
            pos += total as u64;
        }
    }

    /// Reads records from `offset` on, up to about `max_bytes` (at least one
    /// record), stopping at the segment's durable end or at a damaged record
    /// (an error only if it is the first one). With [`ReadMode::Mmap`] the
    /// payloads point into the mapping (no copy at all); with
    /// [`ReadMode::Pread`] they are slices of one `pread` buffer.
    pub(crate) fn read_from(
        &self,
        offset: u64,
        max_bytes: usize,
        max_payload: usize,
        mode: ReadMode,
    ) -> QueueResult<Vec<Record>> {
        let size = self.size();
        let view = match mode {
            ReadMode::Mmap => self.view(size),
            ReadMode::Pread => None,
        };
        let (pos, first, win) = self.locate(view, offset, size, max_payload)?;
        let first_total = first.total_len(max_payload).unwrap_or(HEADER) as u64;
        let want = (max_bytes as u64).max(first_total).min(size - pos) as usize;
        // Mmap: `pos + want <= size <= view.len()`, a slice of the mapping.
        let chunk = self.bytes_at(&win, pos, want)?;
        let mut out = Vec::new();
        let mut at = 0usize;
        let mut expect = offset;
        while at + HEADER <= chunk.len() {
            let Some(h) = Header::parse(&chunk[at..]) else {
                break;
            };
            let bad = |reason: &str| QueueError::Corrupt {
                offset: expect,
                reason: reason.to_string(),
            };
            let Some(total) = h.total_len(max_payload) else {
                if out.is_empty() {
                    return Err(bad("impossible record length"));
                }
                break;
            };
            if at + total > chunk.len() {
                break;
            }
            if h.offset != expect || !record::crc_ok(&chunk[at..at + total], &h) {
                if out.is_empty() {
                    return Err(bad(if h.offset != expect {
                        "offset out of sequence"
                    } else {
                        "crc mismatch"
                    }));
                }
                break;
            }
            out.push(Record {
                offset: h.offset,
                timestamp_ms: h.timestamp_ms,
                payload: chunk.slice(at + HEADER..at + total),
            });
            expect += 1;
            at += total;
        }
        Ok(out)
    }

    /// Writes `chunk` (whole records) at byte `pos` (the current `size`) and,
    /// if configured, makes it durable. Does not publish `size`.
    pub(crate) fn write_at(&self, chunk: &[u8], pos: u64, cfg: &WriteCfg) -> QueueResult<()> {
        match cfg.backend {
            SegmentBackend::Write => {
                self.file
                    .write_all_at(chunk, pos)
                    .map_err(|e| QueueError::io(format!("writing {}", self.path.display()), e))?;
                if cfg.fsync {
                    self.file
                        .sync_data()
                        .map_err(|e| QueueError::io(format!("fsync {}", self.path.display()), e))?;
                }
                Ok(())
            }
            SegmentBackend::Mapped => {
                let mut slot = self.appender.lock().unwrap_or_else(PoisonError::into_inner);
                let app = match &mut *slot {
                    Some(app) => app,
                    None => slot.insert(
                        MappedAppender::options()
                            .initial_capacity(cfg.initial_capacity.max(pos + chunk.len() as u64))
                            .max_capacity(cfg.max_capacity.max(pos + chunk.len() as u64))
                            .resume_at(pos)
                            .open(&self.path)
                            .map_err(|e| zc_err(&self.path, "opening the mmap appender of", e))?,
                    ),
                };
                if app.len() != pos {
                    return Err(QueueError::Failed(format!(
                        "{}: mmap appender at byte {}, log at {pos}",
                        self.path.display(),
                        app.len()
                    )));
                }
                app.append(chunk)
                    .map_err(|e| zc_err(&self.path, "appending to", e))?;
                if cfg.fsync {
                    app.flush().map_err(|e| zc_err(&self.path, "msync", e))?;
                }
                Ok(())
            }
        }
    }

    /// Stops appending to this segment: drops a mapped segment's appender
    /// and trims its zero-filled pre-allocation down to `size` (readers only
    /// ever touch bytes below `size`, so their mappings stay valid).
    pub(crate) fn seal(&self, fsync: bool) -> QueueResult<()> {
        let app = self
            .appender
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(mut app) = app else {
            return Ok(());
        };
        if fsync {
            app.flush().map_err(|e| zc_err(&self.path, "msync", e))?;
        }
        drop(app);
        let size = self.size();
        if self.file_len()? > size {
            self.file
                .set_len(size)
                .map_err(|e| QueueError::io(format!("trimming {}", self.path.display()), e))?;
            if fsync {
                self.file
                    .sync_all()
                    .map_err(|e| QueueError::io(format!("fsync {}", self.path.display()), e))?;
            }
        }
        Ok(())
    }

    /// Whether every byte of `[from, to)` is zero (a mapped segment's
    /// pre-allocated tail left by a crash).
    pub(crate) fn zeros(&self, from: u64, to: u64) -> QueueResult<bool> {
        let mut pos = from;
        while pos < to {
            let n = ((to - pos) as usize).min(1 << 20);
            if read_exact_at(&self.file, pos, n, &self.path)?
                .iter()
                .any(|&b| b != 0)
            {
                return Ok(false);
            }
            pos += n as u64;
        }
        Ok(true)
    }

    /// Writes this segment's sparse index to its `.index` file and fsyncs it.
    pub(crate) fn write_index(&self, dir: &Path) -> QueueResult<()> {
        let entries = self.index_snapshot();
        let mut bytes = Vec::with_capacity(entries.len() * 8);
        for (rel, pos) in entries {
            bytes.extend_from_slice(&rel.to_le_bytes());
            bytes.extend_from_slice(&pos.to_le_bytes());
        }
        let path = index_path(dir, self.base);
        let write = || -> std::io::Result<()> {
            let f = File::create(&path)?;
            f.write_all_at(&bytes, 0)?;
            f.sync_data()
        };
        write().map_err(|e| QueueError::io(format!("writing {}", path.display()), e))
    }

    /// Loads a `.index` file if it is consistent with a segment of `len`
    /// bytes; `None` means rebuild it by scanning.
    pub(crate) fn load_index(dir: &Path, base: u64, len: u64) -> Option<Vec<IndexEntry>> {
        let bytes = std::fs::read(index_path(dir, base)).ok()?;
        if bytes.len() % 8 != 0 {
            return None;
        }
        let mut out = Vec::with_capacity(bytes.len() / 8);
        for c in bytes.chunks_exact(8) {
            let rel = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            let pos = u32::from_le_bytes([c[4], c[5], c[6], c[7]]);
            if let Some(&(r, p)) = out.last() {
                if rel <= r || pos <= p {
                    return None;
                }
            }
            if u64::from(pos) >= len {
                return None;
            }
            out.push((rel, pos));
        }
        Some(out)
    }
}

pub(crate) fn read_exact_at(
    file: &File,
    pos: u64,
    len: usize,
    path: &Path,
) -> QueueResult<Vec<u8>> {
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, pos)
        .map_err(|e| QueueError::io(format!("reading {} at byte {pos}", path.display()), e))?;
    Ok(buf)
}

fn zc_err(path: &Path, what: &str, e: ZeroCopyError) -> QueueError {
    QueueError::io(
        format!("{what} {}", path.display()),
        std::io::Error::other(e),
    )
}
