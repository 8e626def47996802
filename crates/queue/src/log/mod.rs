//! A crash-safe, segmented, append-only log with group commit.
//!
//! # Layout
//! A directory of segments `<base offset>.log` (records, see the format in
//! `record.rs`: length, CRC-32, offset, timestamp, payload) and, for sealed
//! segments, `<base offset>.index` (a sparse offset → byte-position index, one
//! entry every [`LogBuilder::index_interval_bytes`]).
//!
//! # Durability
//! An append is **acknowledged only after its bytes are fsynced**
//! (`fdatasync`), unless the log was built with `fsync(false)`. With
//! [`SyncPolicy::Group`] a background flusher thread collects records from all
//! appenders and writes + fsyncs them as one batch, waiting at most
//! `max_latency` after the first record of a batch (or until `max_batch_bytes`
//! are pending): one fsync acknowledges thousands of records. With
//! [`SyncPolicy::PerRecord`] every append does its own `pwrite` + `fdatasync`.
//!
//! A failed write or fsync is never acknowledged: the log stops accepting
//! writes (fail-stop, like PostgreSQL after an fsync failure) and every
//! pending ticket gets the error. Reopening re-validates the tail.
//!
//! # Recovery
//! [`Log::open`] checks every record of the last segment (sequence and CRC)
//! and truncates it after the last valid one — a write torn by `kill -9` or a
//! power cut. Sealed segments load their index (rebuilt if missing or
//! inconsistent). Damaged records elsewhere are reported by reads as
//! [`QueueError::Corrupt`] with their offset; the rest stays readable.
//!
//! # Backends
//! [`SegmentBackend::Write`] appends with `pwrite` and makes bytes durable
//! with `fdatasync`; [`SegmentBackend::Mapped`] copies records into a
//! pre-allocated shared mapping (`kuai-zerocopy`'s `MappedAppender`) and
//! makes them durable with `msync(MS_SYNC)`. Same file format, same CRC,
//! group commit and recovery; a log written by one opens with the other.
//!
//! # Reads
//! Reads (`read`, `read_from`) see only durable records. With
//! [`ReadMode::Mmap`] (default) a record's payload is a `Bytes` pointing into
//! a read-only mapping of the segment: no copy at all, the mapping lives as
//! long as any payload does. [`ReadMode::Pread`] does one `pread` per batch
//! and slices payloads out of that buffer. See `Segment` for the rule that
//! keeps mapped reads safe from truncation.

mod record;
mod segment;

use std::fmt;
use std::fs;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, UNIX_EPOCH};

use kuai_core::{Clock, SystemClock};

pub use record::Record;
use segment::{Segment, WriteCfg};

use crate::error::{QueueError, QueueResult};

/// When appended records are made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    /// Every append does its own write and `fdatasync` before returning.
    PerRecord,
    /// Group commit: a flusher thread batches records from all appenders.
    Group {
        /// The longest a record waits before its batch is written and
        /// synced. The flusher lingers this long only under concurrent load
        /// (the previous batch held more than one record); a lone writer's
        /// record is synced at once.
        max_latency: Duration,
        /// A batch is flushed early once this many bytes are pending.
        max_batch_bytes: usize,
    },
}

/// How records get into a segment file (both CRC every record, both group
/// commit, both recover the same way).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SegmentBackend {
    /// `pwrite` + `fdatasync`.
    #[default]
    Write,
    /// `kuai-zerocopy`'s `MappedAppender`: `memcpy` into a pre-allocated
    /// (`fallocate`d, so a full disk is an error, not a `SIGBUS`) shared
    /// mapping + `msync(MS_SYNC)`. A sealed segment is trimmed to its
    /// records; a crash leaves a zero-filled tail that recovery trims.
    Mapped,
}

/// How reads get record bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadMode {
    /// Payloads are `Bytes` slices of a read-only mapping of the segment
    /// (zero-copy). A segment that grew past its mapping is remapped.
    #[default]
    Mmap,
    /// One `pread` per batch into a fresh buffer; payloads are slices of it.
    Pread,
}

/// Builds a [`Log`]; see the knobs' defaults on each method.
#[derive(Debug, Clone)]
pub struct LogBuilder {
    dir: PathBuf,
    segment_bytes: u64,
    max_record_bytes: usize,
    index_interval_bytes: u64,
    sync: SyncPolicy,
    fsync: bool,
    max_pending_bytes: usize,
    retention_bytes: Option<u64>,
    retention_age: Option<Duration>,
    clock: Arc<dyn Clock>,
    backend: SegmentBackend,
    read_mode: ReadMode,
}

impl LogBuilder {
    /// How appends reach the file (default [`SegmentBackend::Write`]).
    pub fn backend(mut self, backend: SegmentBackend) -> Self {
        self.backend = backend;
        self
    }
    /// How reads get record bytes (default [`ReadMode::Mmap`]).
    pub fn read_mode(mut self, mode: ReadMode) -> Self {
        self.read_mode = mode;
        self
    }
    /// Segment size before rolling to a new file (default 64 MiB).
    pub fn segment_bytes(mut self, bytes: u64) -> Self {
        self.segment_bytes = bytes;
        self
    }
    /// Largest payload accepted (default 1 MiB); larger appends fail with
    /// [`QueueError::Oversized`].
    pub fn max_record_bytes(mut self, bytes: usize) -> Self {
        self.max_record_bytes = bytes;
        self
    }
    /// Bytes between sparse-index entries (default 4 KiB).
    pub fn index_interval_bytes(mut self, bytes: u64) -> Self {
        self.index_interval_bytes = bytes;
        self
    }
    /// Group commit with this maximum latency (default 1 ms, 4 MiB batches).
    pub fn group_commit(mut self, max_latency: Duration) -> Self {
        let max_batch_bytes = match self.sync {
            SyncPolicy::Group {
                max_batch_bytes, ..
            } => max_batch_bytes,
            SyncPolicy::PerRecord => 4 << 20,
        };
        self.sync = SyncPolicy::Group {
            max_latency,
            max_batch_bytes,
        };
        self
    }
    /// Sets the sync policy directly.
    pub fn sync_policy(mut self, sync: SyncPolicy) -> Self {
        self.sync = sync;
        self
    }
    /// `false` acknowledges after `write(2)` without `fdatasync`: survives a
    /// process crash, not a power cut (what NATS JetStream does by default).
    /// Default `true`.
    pub fn fsync(mut self, fsync: bool) -> Self {
        self.fsync = fsync;
        self
    }
    /// Back-pressure bound on bytes waiting for the flusher (default 64 MiB):
    /// appenders block beyond it.
    pub fn max_pending_bytes(mut self, bytes: usize) -> Self {
        self.max_pending_bytes = bytes;
        self
    }
    /// Deletes the oldest sealed segments while the log is larger than this.
    pub fn retention_bytes(mut self, bytes: u64) -> Self {
        self.retention_bytes = Some(bytes);
        self
    }
    /// Deletes sealed segments whose newest record is older than this.
    pub fn retention_age(mut self, age: Duration) -> Self {
        self.retention_age = Some(age);
        self
    }
    /// The clock for record timestamps and retention by age.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Opens (creating if needed) the log, recovering its tail.
    pub fn open(self) -> QueueResult<Log> {
        Log::open_with(self)
    }
}

/// What [`Log::open`] found and repaired.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Segments found.
    pub segments: usize,
    /// Valid records in the last segment.
    pub tail_records: u64,
    /// Bytes cut off the last segment (a torn or damaged tail).
    pub truncated_bytes: u64,
    /// Damaged records found in the middle of the last segment and kept
    /// in place (reads of these offsets return `Corrupt`), so acknowledged
    /// records behind them are not truncated away.
    pub corrupt_records: usize,
    /// Zero bytes trimmed after the last record: the pre-allocated tail a
    /// crash left behind a [`SegmentBackend::Mapped`] segment (not damage).
    pub trimmed_preallocation: u64,
}

/// A crash-safe append-only log (see the [module docs](self)).
///
/// ```
/// # fn main() -> Result<(), kuai_queue::QueueError> {
/// let dir = tempfile::tempdir().map_err(|e| kuai_queue::QueueError::InvalidInput(e.to_string()))?;
/// let log = kuai_queue::log::Log::builder(dir.path())
///     .group_commit(std::time::Duration::from_millis(1))
///     .open()?;
/// let ticket = log.append(b"hello")?;       // buffered
/// let offset = ticket.wait()?;              // fsynced: acknowledged
/// assert_eq!(log.read(offset)?.payload.as_ref(), b"hello");
/// # Ok(()) }
/// ```
pub struct Log {
    shared: Arc<Shared>,
    flusher: Option<JoinHandle<()>>,
}

struct Shared {
    dir: PathBuf,
    cfg: Config,
    clock: Arc<dyn Clock>,
    segments: RwLock<Vec<Arc<Segment>>>,
    pending: Mutex<Pending>,
    /// Flusher waits here for records; appenders wait here for space.
    pending_cv: Condvar,
    space_cv: Condvar,
    writer: Mutex<Writer>,
    durable: Mutex<Durable>,
    durable_cv: Condvar,
    durable_watch: tokio::sync::watch::Sender<(u64, bool)>,
    durable_next: AtomicU64,
    start: AtomicU64,
    closed: AtomicBool,
    recovery: Recovery,
}

#[derive(Debug, Clone)]
struct Config {
    segment_bytes: u64,
    max_record_bytes: usize,
    index_interval_bytes: u64,
    sync: SyncPolicy,
    fsync: bool,
    max_pending_bytes: usize,
    retention_bytes: Option<u64>,
    retention_age: Option<Duration>,
    write: WriteCfg,
    read_mode: ReadMode,
}

struct Pending {
    buf: Vec<u8>,
    spare: Vec<u8>,
    first_offset: u64,
    next_offset: u64,
    first_at: Option<Instant>,
    failed: Option<String>,
    /// Records in the previous batch: 1 means low load, so the flusher
    /// does not linger.
    last_batch: u64,
}

struct Writer {
    since_index: u64,
}

struct Durable {
    next: u64,
    failed: Option<String>,
}

impl Log {
    /// A builder for a log in `dir`.
    pub fn builder(dir: impl AsRef<Path>) -> LogBuilder {
        LogBuilder {
            dir: dir.as_ref().to_path_buf(),
            segment_bytes: 64 << 20,
            max_record_bytes: 1 << 20,
            index_interval_bytes: 4096,
            sync: SyncPolicy::Group {
                max_latency: Duration::from_millis(1),
                max_batch_bytes: 4 << 20,
            },
            fsync: true,
            max_pending_bytes: 64 << 20,
            retention_bytes: None,
            retention_age: None,
            clock: Arc::new(SystemClock),
            backend: SegmentBackend::default(),
            read_mode: ReadMode::default(),
        }
    }

    /// Opens `dir` with the defaults (group commit, 1 ms, fsync).
    pub fn open(dir: impl AsRef<Path>) -> QueueResult<Log> {
        Self::builder(dir).open()
    }

    fn open_with(b: LogBuilder) -> QueueResult<Log> {
        let cfg = Config {
            segment_bytes: b.segment_bytes,
            max_record_bytes: b.max_record_bytes,
            index_interval_bytes: b.index_interval_bytes.max(1),
            sync: b.sync,
            fsync: b.fsync,
            max_pending_bytes: b.max_pending_bytes.max(1),
            retention_bytes: b.retention_bytes,
            retention_age: b.retention_age,
            write: WriteCfg {
                backend: b.backend,
                fsync: b.fsync,
                initial_capacity: b.segment_bytes.clamp(1, 1 << 20),
                max_capacity: b
                    .segment_bytes
                    .max((record::HEADER + b.max_record_bytes) as u64),
            },
            read_mode: b.read_mode,
        };
        if cfg.max_record_bytes == 0 || cfg.max_record_bytes > (u32::MAX as usize) / 2 {
            return Err(QueueError::InvalidInput(
                "max_record_bytes must be in 1..2 GiB".into(),
            ));
        }
        if cfg.segment_bytes > u64::from(u32::MAX) / 2 || cfg.segment_bytes < 64 {
            return Err(QueueError::InvalidInput(
                "segment_bytes must be in 64 B..2 GiB".into(),
            ));
        }
        let dir = b.dir;
        fs::create_dir_all(&dir)
            .map_err(|e| QueueError::io(format!("creating {}", dir.display()), e))?;
        let (segments, recovery) = recover(&dir, &cfg)?;
        let next = segments
            .last()
            .map_or(0, |s| s.next_offset.load(Ordering::Acquire));
        let start = segments.first().map_or(0, |s| s.base);
        let shared = Arc::new(Shared {
            dir,
            clock: b.clock,
            segments: RwLock::new(segments),
            pending: Mutex::new(Pending {
                buf: Vec::with_capacity(1 << 16),
                spare: Vec::with_capacity(1 << 16),
                first_offset: next,
                next_offset: next,
                first_at: None,
                failed: None,
                last_batch: 0,
            }),
            pending_cv: Condvar::new(),
            space_cv: Condvar::new(),
            writer: Mutex::new(Writer {
                since_index: u64::MAX,
            }),
            durable: Mutex::new(Durable { next, failed: None }),
            durable_cv: Condvar::new(),
            durable_watch: tokio::sync::watch::Sender::new((next, false)),
            durable_next: AtomicU64::new(next),
            start: AtomicU64::new(start),
            closed: AtomicBool::new(false),
            recovery,
            cfg,
        });
        let flusher = match shared.cfg.sync {
            SyncPolicy::PerRecord => None,
            SyncPolicy::Group { .. } => {
                let s = Arc::clone(&shared);
                Some(
                    std::thread::Builder::new()
                        .name("kuai-log-flush".into())
                        .spawn(move || flusher_loop(&s))
                        .map_err(|e| QueueError::io("spawning the flusher thread", e))?,
                )
            }
        };
        Ok(Log { shared, flusher })
    }

    /// What opening found and repaired.
    pub fn recovery(&self) -> Recovery {
        self.shared.recovery
    }

    /// The directory holding the segments.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The first retained offset.
    pub fn start_offset(&self) -> u64 {
        self.shared.start.load(Ordering::Acquire)
    }

    /// One past the last durable (acknowledged, readable) offset.
    pub fn end_offset(&self) -> u64 {
        self.shared.durable_next.load(Ordering::Acquire)
    }

    /// The largest payload accepted.
    pub fn max_record_bytes(&self) -> usize {
        self.shared.cfg.max_record_bytes
    }

    /// Appends one record and returns a ticket for its acknowledgement.
    ///
    /// With group commit this only buffers (blocking if `max_pending_bytes`
    /// are waiting); wait on the ticket for durability. Keeping many tickets
    /// in flight is how one producer reaches group-commit throughput.
    pub fn append(&self, payload: &[u8]) -> QueueResult<AppendTicket> {
        let sh = &self.shared;
        if payload.len() > sh.cfg.max_record_bytes {
            return Err(QueueError::Oversized {
                size: payload.len(),
                max: sh.cfg.max_record_bytes,
            });
        }
        if sh.closed.load(Ordering::Acquire) {
            return Err(QueueError::Closed);
        }
        let ts = timestamp_ms(&*sh.clock);
        let mut p = lock(&sh.pending);
        match sh.cfg.sync {
            SyncPolicy::PerRecord => {
                if let Some(f) = &p.failed {
                    return Err(QueueError::Failed(f.clone()));
                }
                let offset = p.next_offset;
                let mut batch = std::mem::take(&mut p.buf);
                batch.clear();
                record::encode(&mut batch, offset, ts, payload);
                let res = sh.write_batch(&batch, offset, offset + 1);
                p.buf = batch;
                match res {
                    Ok(()) => {
                        p.next_offset = offset + 1;
                        sh.mark_durable(offset + 1);
                        Ok(AppendTicket {
                            offset,
                            shared: Arc::clone(sh),
                        })
                    }
                    Err(e) => {
                        let msg = e.to_string();
                        p.failed = Some(msg.clone());
                        sh.mark_failed(msg);
                        Err(e)
                    }
                }
            }
            SyncPolicy::Group {
                max_batch_bytes, ..
            } => {
                loop {
                    if let Some(f) = &p.failed {
                        return Err(QueueError::Failed(f.clone()));
                    }
                    if p.buf.is_empty() || p.buf.len() < sh.cfg.max_pending_bytes {
                        break;
                    }
                    if sh.closed.load(Ordering::Acquire) {
                        return Err(QueueError::Closed);
                    }
                    p = sh.space_cv.wait(p).unwrap_or_else(PoisonError::into_inner);
                }
                let offset = p.next_offset;
                let was_empty = p.buf.is_empty();
                if was_empty {
                    p.first_offset = offset;
                    p.first_at = Some(Instant::now());
                }
                record::encode(&mut p.buf, offset, ts, payload);
                p.next_offset = offset + 1;
                let full = p.buf.len() >= max_batch_bytes;
                drop(p);
                if was_empty || full {
                    sh.pending_cv.notify_one();
                }
                Ok(AppendTicket {
                    offset,
                    shared: Arc::clone(sh),
                })
            }
        }
    }

    /// Appends and waits until the record is durable; returns its offset.
    pub fn append_sync(&self, payload: &[u8]) -> QueueResult<u64> {
        self.append(payload)?.wait()
    }

    /// Appends and waits asynchronously until the record is durable.
    pub async fn append_async(&self, payload: &[u8]) -> QueueResult<u64> {
        self.append(payload)?.durable().await
    }

    /// Blocks until `offset` is durable (readable) or `timeout` passes;
    /// returns whether it is. Consumers tailing the log use it as a long poll.
    pub fn wait_readable(&self, offset: u64, timeout: Duration) -> bool {
        self.shared
            .wait_durable(offset, Some(Instant::now() + timeout))
            .is_ok()
    }

    /// Reads the record at `offset`.
    pub fn read(&self, offset: u64) -> QueueResult<Record> {
        let mut v = self.read_from(offset, 1)?;
        v.pop().ok_or(QueueError::Corrupt {
            offset,
            reason: "record not found where the index points".into(),
        })
    }

    /// Reads durable records from `offset` on, about `max_bytes` of them (at
    /// least one), within one segment. Returns an empty vector at the end of
    /// the log; [`QueueError::Corrupt`] if the record at `offset` is damaged
    /// (read `offset + 1` to skip it).
    pub fn read_from(&self, offset: u64, max_bytes: usize) -> QueueResult<Vec<Record>> {
        let end = self.end_offset();
        let start = self.start_offset();
        if offset == end {
            return Ok(Vec::new());
        }
        if offset < start || offset > end {
            return Err(QueueError::OutOfRange { offset, start, end });
        }
        let seg = {
            let segs = self
                .shared
                .segments
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            let i = segs.partition_point(|s| s.base <= offset);
            match i.checked_sub(1).and_then(|i| segs.get(i)) {
                Some(s) => Arc::clone(s),
                None => return Err(QueueError::OutOfRange { offset, start, end }),
            }
        };
        if offset >= seg.next_offset.load(Ordering::Acquire) {
            return Err(QueueError::Corrupt {
                offset,
                reason: "offset missing from its segment".into(),
            });
        }
        seg.read_from(
            offset,
            max_bytes,
            self.shared.cfg.max_record_bytes,
            self.shared.cfg.read_mode,
        )
    }

    /// Deletes sealed segments beyond the retention limits; returns how many.
    /// Also runs after every segment roll.
    pub fn enforce_retention(&self) -> QueueResult<usize> {
        self.shared.enforce_retention()
    }

    /// Number of segment files.
    pub fn segment_count(&self) -> usize {
        self.shared
            .segments
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Total bytes of durable records on disk.
    pub fn size_bytes(&self) -> u64 {
        self.shared
            .segments
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|s| s.size())
            .sum()
    }

    /// Waits until everything appended so far is durable.
    pub fn flush(&self) -> QueueResult<()> {
        let next = lock(&self.shared.pending).next_offset;
        if next == 0 {
            return Ok(());
        }
        self.shared.wait_durable(next - 1, None)
    }

    /// Flushes, stops the flusher and refuses further appends.
    pub fn close(mut self) -> QueueResult<()> {
        let r = self.flush();
        self.shutdown();
        r
    }

    fn shutdown(&mut self) {
        {
            // Set the flag under the lock the flusher checks it under, or the
            // flusher could check, miss the notify, and sleep forever.
            let _p = lock(&self.shared.pending);
            self.shared.closed.store(true, Ordering::Release);
        }
        self.shared.pending_cv.notify_all();
        self.shared.space_cv.notify_all();
        if let Some(h) = self.flusher.take() {
            let _ = h.join();
        }
        // Trim a mapped active segment's pre-allocation (nothing to do for
        // the write backend). Under the writer lock, so no write races it.
        let _w = lock(&self.shared.writer);
        let _ = self.shared.active().seal(self.shared.cfg.fsync);
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl fmt::Debug for Log {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Log")
            .field("dir", &self.shared.dir)
            .field("start", &self.start_offset())
            .field("end", &self.end_offset())
            .field("sync", &self.shared.cfg.sync)
            .field("fsync", &self.shared.cfg.fsync)
            .field("backend", &self.shared.cfg.write.backend)
            .field("read_mode", &self.shared.cfg.read_mode)
            .finish()
    }
}

/// A claim on one appended record: wait on it for the acknowledgement.
#[must_use = "an append is acknowledged only once its ticket resolves"]
pub struct AppendTicket {
    offset: u64,
    shared: Arc<Shared>,
}

impl fmt::Debug for AppendTicket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppendTicket")
            .field("offset", &self.offset)
            .finish()
    }
}

impl AppendTicket {
    /// The offset the record will have (not yet acknowledged).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Whether the record is already durable.
    pub fn is_durable(&self) -> bool {
        self.shared.durable_next.load(Ordering::Acquire) > self.offset
    }

    /// Blocks until the record is durable, returning its offset; an error
    /// means it was **not** acknowledged.
    pub fn wait(self) -> QueueResult<u64> {
        self.shared.wait_durable(self.offset, None)?;
        Ok(self.offset)
    }

    /// Like [`wait`](Self::wait) with a time limit ([`QueueError::Timeout`]).
    pub fn wait_timeout(&self, timeout: Duration) -> QueueResult<u64> {
        self.shared
            .wait_durable(self.offset, Some(Instant::now() + timeout))?;
        Ok(self.offset)
    }

    /// Resolves when the record is durable (async).
    pub fn durable(self) -> impl Future<Output = QueueResult<u64>> + Send + 'static {
        let mut rx = self.shared.durable_watch.subscribe();
        let offset = self.offset;
        let shared = self.shared;
        async move {
            let res = rx
                .wait_for(|&(next, failed)| next > offset || failed)
                .await
                .map(|v| *v);
            match res {
                Ok((next, _)) if next > offset => Ok(offset),
                Ok(_) => Err(QueueError::Failed(
                    lock(&shared.durable).failed.clone().unwrap_or_default(),
                )),
                Err(_) => Err(QueueError::Closed),
            }
        }
    }
}

impl Shared {
    fn wait_durable(&self, offset: u64, deadline: Option<Instant>) -> QueueResult<()> {
        if self.durable_next.load(Ordering::Acquire) > offset {
            return Ok(());
        }
        let mut d = lock(&self.durable);
        loop {
            if d.next > offset {
                return Ok(());
            }
            if let Some(f) = &d.failed {
                return Err(QueueError::Failed(f.clone()));
            }
            if self.closed.load(Ordering::Acquire) && self.cfg.sync != SyncPolicy::PerRecord {
                // The flusher drains before exiting; if it is gone and we
                // are still not durable, nothing will make us durable.
                let pending_empty = lock(&self.pending).buf.is_empty();
                if pending_empty && d.next <= offset {
                    return Err(QueueError::Closed);
                }
            }
            d = match deadline {
                None => {
                    self.durable_cv
                        .wait_timeout(d, Duration::from_millis(100))
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
                Some(dl) => {
                    let now = Instant::now();
                    if now >= dl {
                        return Err(QueueError::Timeout);
                    }
                    self.durable_cv
                        .wait_timeout(d, dl - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
    }

    fn mark_durable(&self, next: u64) {
        let mut d = lock(&self.durable);
        d.next = next;
        self.durable_next.store(next, Ordering::Release);
        drop(d);
        self.durable_cv.notify_all();
        self.durable_watch.send_replace((next, false));
    }

    fn mark_failed(&self, msg: String) {
        let mut d = lock(&self.durable);
        d.failed = Some(msg);
        drop(d);
        self.durable_cv.notify_all();
        let next = self.durable_next.load(Ordering::Acquire);
        self.durable_watch.send_replace((next, true));
    }

    fn active(&self) -> Arc<Segment> {
        let segs = self.segments.read().unwrap_or_else(PoisonError::into_inner);
        // recover() always leaves at least one segment.
        Arc::clone(&segs[segs.len() - 1])
    }

    /// Writes a batch of encoded records `[first, next)`, rolling the segment
    /// first if it is full, then fsyncs (if configured) and publishes the new
    /// durable size to readers.
    fn write_batch(&self, batch: &[u8], first: u64, next: u64) -> QueueResult<()> {
        let mut w = lock(&self.writer);
        let mut at = 0usize;
        let mut off = first;
        let rec_len = |at: usize| {
            record::Header::parse(&batch[at..]).map_or(batch.len() - at, |h| 8 + h.len as usize)
        };
        while at < batch.len() {
            let mut seg = self.active();
            let size = seg.size();
            if size > 0 && size + rec_len(at) as u64 > self.cfg.segment_bytes {
                seg = self.roll(&seg, off)?;
                w.since_index = u64::MAX;
            }
            // As many whole records as fit in the segment (at least one).
            let room = self.cfg.segment_bytes.saturating_sub(seg.size());
            let mut end = at;
            let mut n = 0u64;
            while end < batch.len() {
                let total = rec_len(end);
                if n > 0 && (end + total - at) as u64 > room {
                    break;
                }
                end += total;
                n += 1;
            }
            self.write_chunk(&mut w, &seg, &batch[at..end])?;
            off += n;
            seg.next_offset.store(off, Ordering::Release);
            at = end;
        }
        debug_assert_eq!(off, next);
        Ok(())
    }

    fn write_chunk(&self, w: &mut Writer, seg: &Segment, chunk: &[u8]) -> QueueResult<()> {
        let pos = seg.size();
        seg.write_at(chunk, pos, &self.cfg.write)?;
        // Index entries and the last timestamp, from the chunk's headers.
        let mut at = 0usize;
        let mut max_ts = 0;
        {
            let mut index = seg.index.lock().unwrap_or_else(PoisonError::into_inner);
            while at + record::HEADER <= chunk.len() {
                let Some(h) = record::Header::parse(&chunk[at..]) else {
                    break;
                };
                let total = 8 + h.len as usize;
                if w.since_index >= self.cfg.index_interval_bytes {
                    index.push(((h.offset - seg.base) as u32, (pos + at as u64) as u32));
                    w.since_index = 0;
                }
                w.since_index += total as u64;
                max_ts = h.timestamp_ms;
                at += total;
            }
        }
        seg.max_timestamp.fetch_max(max_ts, Ordering::AcqRel);
        seg.size.store(pos + chunk.len() as u64, Ordering::Release);
        Ok(())
    }

    /// Seals `old` (index file) and starts a segment at `base`, fsyncing the
    /// directory so the new file survives a crash.
    fn roll(&self, old: &Arc<Segment>, base: u64) -> QueueResult<Arc<Segment>> {
        old.seal(self.cfg.fsync)?;
        old.write_index(&self.dir)?;
        let seg = Arc::new(Segment::create(&self.dir, base)?);
        sync_dir(&self.dir)?;
        self.segments
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::clone(&seg));
        self.enforce_retention()?;
        Ok(seg)
    }

    fn enforce_retention(&self) -> QueueResult<usize> {
        if self.cfg.retention_bytes.is_none() && self.cfg.retention_age.is_none() {
            return Ok(0);
        }
        let now_ms = timestamp_ms(&*self.clock);
        let mut removed = Vec::new();
        {
            let mut segs = self
                .segments
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            let mut total: u64 = segs.iter().map(|s| s.size()).sum();
            while segs.len() > 1 {
                let oldest = &segs[0];
                let too_big = self.cfg.retention_bytes.is_some_and(|max| total > max);
                let too_old = self.cfg.retention_age.is_some_and(|age| {
                    now_ms.saturating_sub(oldest.max_timestamp.load(Ordering::Acquire))
                        > age.as_millis() as u64
                });
                if !(too_big || too_old) {
                    break;
                }
                total -= oldest.size();
                removed.push(segs.remove(0));
            }
            if let Some(first) = segs.first() {
                self.start.store(first.base, Ordering::Release);
            }
        }
        for seg in &removed {
            fs::remove_file(&seg.path)
                .map_err(|e| QueueError::io(format!("deleting {}", seg.path.display()), e))?;
            let _ = fs::remove_file(segment::index_path(&self.dir, seg.base));
        }
        Ok(removed.len())
    }
}

fn flusher_loop(sh: &Shared) {
    let SyncPolicy::Group {
        max_latency,
        max_batch_bytes,
    } = sh.cfg.sync
    else {
        return;
    };
    loop {
        let (batch, first, next) = {
            let mut p = lock(&sh.pending);
            loop {
                if p.failed.is_some() {
                    return;
                }
                if p.buf.is_empty() {
                    if sh.closed.load(Ordering::Acquire) {
                        return;
                    }
                    p = sh
                        .pending_cv
                        .wait(p)
                        .unwrap_or_else(PoisonError::into_inner);
                    continue;
                }
                // Adaptive linger: under concurrent load wait up to
                // `max_latency` for more records; a lone writer is synced
                // at once (like PostgreSQL's commit_delay/commit_siblings).
                let linger = if p.last_batch > 1 {
                    max_latency
                } else {
                    Duration::ZERO
                };
                let due = p.first_at.map_or(Instant::now(), |t| t + linger);
                let now = Instant::now();
                if now >= due || p.buf.len() >= max_batch_bytes || sh.closed.load(Ordering::Acquire)
                {
                    break;
                }
                p = sh
                    .pending_cv
                    .wait_timeout(p, due - now)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            let spare = std::mem::take(&mut p.spare);
            let batch = std::mem::replace(&mut p.buf, spare);
            p.first_at = None;
            let first = p.first_offset;
            p.first_offset = p.next_offset;
            p.last_batch = p.next_offset - first;
            (batch, first, p.next_offset)
        };
        sh.space_cv.notify_all();
        let res = sh.write_batch(&batch, first, next);
        let mut batch = batch;
        batch.clear();
        match res {
            Ok(()) => {
                lock(&sh.pending).spare = batch;
                sh.mark_durable(next);
            }
            Err(e) => {
                let msg = e.to_string();
                lock(&sh.pending).failed = Some(msg.clone());
                sh.mark_failed(msg);
                sh.space_cv.notify_all();
                return;
            }
        }
    }
}

/// Opens the segments in `dir`, validating and truncating the last one.
fn recover(dir: &Path, cfg: &Config) -> QueueResult<(Vec<Arc<Segment>>, Recovery)> {
    let mut bases: Vec<u64> = fs::read_dir(dir)
        .map_err(|e| QueueError::io(format!("listing {}", dir.display()), e))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_suffix(".log")?.parse::<u64>().ok()
        })
        .collect();
    bases.sort_unstable();
    let mut rec = Recovery {
        segments: bases.len(),
        ..Recovery::default()
    };
    let mut segs = Vec::with_capacity(bases.len().max(1));
    let n = bases.len();
    for (i, &base) in bases.iter().enumerate() {
        let seg = Segment::open(segment::log_path(dir, base), base)?;
        let len = seg.file_len()?;
        let last = i + 1 == n;
        if last {
            let scan = seg.scan(len, true, cfg.max_record_bytes, cfg.index_interval_bytes)?;
            if scan.valid_len < len {
                let zeros = seg.zeros(scan.valid_len, len)?;
                seg.file
                    .set_len(scan.valid_len)
                    .map_err(|e| QueueError::io(format!("truncating {}", seg.path.display()), e))?;
                seg.file
                    .sync_all()
                    .map_err(|e| QueueError::io(format!("fsync {}", seg.path.display()), e))?;
                if zeros {
                    rec.trimmed_preallocation = len - scan.valid_len;
                } else {
                    rec.truncated_bytes = len - scan.valid_len;
                }
            }
            rec.tail_records = scan.records;
            rec.corrupt_records = scan.corrupt.len();
            seg.size.store(scan.valid_len, Ordering::Release);
            seg.next_offset.store(scan.next_offset, Ordering::Release);
            seg.max_timestamp
                .store(scan.max_timestamp, Ordering::Release);
            *seg.index.lock().unwrap_or_else(PoisonError::into_inner) = scan.index;
        } else {
            let next_base = bases[i + 1];
            let len = trim_preallocation(&seg, len, cfg)?;
            seg.size.store(len, Ordering::Release);
            seg.next_offset.store(next_base, Ordering::Release);
            match Segment::load_index(dir, base, len) {
                Some(index) => {
                    *seg.index.lock().unwrap_or_else(PoisonError::into_inner) = index;
                    // Newest timestamp: the last record's header.
                    if next_base > base {
                        if let Ok(r) =
                            seg.read_from(next_base - 1, 1, cfg.max_record_bytes, ReadMode::Pread)
                        {
                            if let Some(r) = r.first() {
                                seg.max_timestamp.store(r.timestamp_ms, Ordering::Release);
                            }
                        }
                    }
                }
                None => {
                    let scan =
                        seg.scan(len, false, cfg.max_record_bytes, cfg.index_interval_bytes)?;
                    seg.max_timestamp
                        .store(scan.max_timestamp, Ordering::Release);
                    *seg.index.lock().unwrap_or_else(PoisonError::into_inner) = scan.index;
                    seg.write_index(dir)?;
                }
            }
        }
        segs.push(Arc::new(seg));
    }
    if segs.is_empty() {
        segs.push(Arc::new(Segment::create(dir, 0)?));
        sync_dir(dir)?;
    }
    Ok((segs, rec))
}

/// A sealed segment whose file ends in zeros may carry the pre-allocated
/// tail of a mapped segment whose trim a crash interrupted: cut the zeros
/// after its last record (only zeros, never a byte of a record).
fn trim_preallocation(seg: &Segment, len: u64, cfg: &Config) -> QueueResult<u64> {
    if len < record::HEADER as u64 || !seg.zeros(len - record::HEADER as u64, len)? {
        return Ok(len);
    }
    let scan = seg.scan(len, false, cfg.max_record_bytes, cfg.index_interval_bytes)?;
    if scan.valid_len == len || !seg.zeros(scan.valid_len, len)? {
        return Ok(len);
    }
    seg.file
        .set_len(scan.valid_len)
        .map_err(|e| QueueError::io(format!("trimming {}", seg.path.display()), e))?;
    seg.file
        .sync_all()
        .map_err(|e| QueueError::io(format!("fsync {}", seg.path.display()), e))?;
    Ok(scan.valid_len)
}

fn sync_dir(dir: &Path) -> QueueResult<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| QueueError::io(format!("fsync directory {}", dir.display()), e))
}

fn timestamp_ms(clock: &dyn Clock) -> u64 {
    clock
        .system_time()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests;
