//! [`MappedAppender`]: an append-only writer over a pre-allocated, shared,
//! writable mapping, with explicit durability.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use memmap2::{MmapMut, MmapOptions};

use crate::error::{Result, ZeroCopyError};
use crate::mapped_file::lock_exclusive;
use crate::regular_file::check_regular;

/// Default initial capacity: 1 MiB.
const DEFAULT_INITIAL: u64 = 1 << 20;

/// Options for [`MappedAppender`] (builder).
///
/// ```
/// use kuai_zerocopy::MappedAppender;
/// # let path = std::env::temp_dir().join(format!("kuai-zc-doc-app-{}", std::process::id()));
/// let mut log = MappedAppender::options()
///     .initial_capacity(4096)
///     .max_capacity(1 << 30)
///     .truncate(true)
///     .open(&path)?;
/// let at = log.append(b"record-1")?;
/// assert_eq!(at, 0);
/// log.flush()?; // durable from here on
/// assert_eq!(log.durable_len(), 8);
/// let trimmed = log.finish()?;
/// assert!(trimmed);
/// assert_eq!(std::fs::read(&path)?, b"record-1");
/// # std::fs::remove_file(&path)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct AppenderOptions {
    initial_capacity: u64,
    max_capacity: u64,
    truncate: bool,
    resume_at: Option<u64>,
}

impl Default for AppenderOptions {
    fn default() -> Self {
        AppenderOptions {
            initial_capacity: DEFAULT_INITIAL,
            max_capacity: u64::MAX,
            truncate: false,
            resume_at: None,
        }
    }
}

impl AppenderOptions {
    /// Bytes pre-allocated when the file is created or opened (default
    /// 1 MiB, rounded up to a page).
    pub fn initial_capacity(mut self, bytes: u64) -> Self {
        self.initial_capacity = bytes;
        self
    }

    /// The largest the file may grow; an append past it fails with
    /// [`ZeroCopyError::InvalidInput`] (default: unbounded).
    pub fn max_capacity(mut self, bytes: u64) -> Self {
        self.max_capacity = bytes;
        self
    }

    /// Discard any existing contents (default `false`: append after them).
    pub fn truncate(mut self, truncate: bool) -> Self {
        self.truncate = truncate;
        self
    }

    /// Where appending resumes in an existing file (default: its length).
    /// Use after a crash, when the file still has its pre-allocated tail.
    pub fn resume_at(mut self, offset: u64) -> Self {
        self.resume_at = Some(offset);
        self
    }

    /// Opens (creating if needed) `path` for appending.
    pub fn open(&self, path: impl AsRef<Path>) -> Result<MappedAppender> {
        let path = path.as_ref();
        if self.initial_capacity == 0 || self.initial_capacity > self.max_capacity {
            return Err(ZeroCopyError::InvalidInput(format!(
                "initial_capacity {} must be in 1..=max_capacity {}",
                self.initial_capacity, self.max_capacity
            )));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| ZeroCopyError::open(path, "open", e))?;
        let existing = check_regular(&file, path)?;
        lock_writer(&file, path)?;
        let mut len = if self.truncate {
            if existing > 0 {
                // Shrinking would fault readers that map the file.
                lock_exclusive(&file, path)?;
                file.set_len(0)
                    .map_err(|e| ZeroCopyError::open(path, "ftruncate", e))?;
                rustix::fs::flock(&file, rustix::fs::FlockOperation::Unlock)
                    .map_err(|e| ZeroCopyError::io("flock", e.into()))?;
            }
            0
        } else {
            existing
        };
        if let Some(at) = self.resume_at {
            if at > len {
                return Err(ZeroCopyError::InvalidInput(format!(
                    "resume_at {at} is past the end of a {len}-byte file"
                )));
            }
            len = at;
        }
        let file_len = if self.truncate { 0 } else { existing };
        let want = round_up_page(len.max(self.initial_capacity)).min(self.max_capacity);
        let capacity = file_len.max(want);
        let mut app = MappedAppender {
            path: path.to_path_buf(),
            file,
            map: None,
            len,
            durable: len,
            capacity: 0,
            max_capacity: self.max_capacity.max(capacity),
            metadata_dirty: false,
        };
        app.remap(capacity)?;
        Ok(app)
    }
}

/// Takes the single-writer lock: an exclusive open-file-description lock
/// (`F_OFD_SETLK`, whole file). It is independent of the `flock` that
/// readers hold, so readers never block the writer, but a second
/// `MappedAppender` on the same file — in this process or another — is
/// refused with [`ZeroCopyError::Busy`]. Released when the file is closed.
fn lock_writer(file: &File, path: &Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: `libc::flock` is a plain C struct for which all-zero bytes
    // are a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as _;
    fl.l_whence = libc::SEEK_SET as _;
    fl.l_start = 0;
    fl.l_len = 0; // to the end of the file, however far it grows
    // SAFETY: `file` is an open fd for the duration of the call, and
    // F_OFD_SETLK reads a valid, initialised `struct flock` through the
    // pointer, which outlives the call.
    let r = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &fl) };
    if r == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EACCES) => Err(ZeroCopyError::Busy {
            path: path.to_path_buf(),
            why: "another MappedAppender is writing it",
        }),
        _ => Err(ZeroCopyError::open(path, "fcntl(F_OFD_SETLK)", e)),
    }
}

fn round_up_page(n: u64) -> u64 {
    let page = rustix::param::page_size() as u64;
    n.div_ceil(page).saturating_mul(page)
}

/// An append-only, pre-allocated, memory-mapped file writer: the basis of a
/// durable log.
///
/// One writer per file: opening takes an exclusive open-file-description
/// lock (`F_OFD_SETLK`), so a second `MappedAppender` on the same file fails
/// with [`ZeroCopyError::Busy`]; readers ([`MappedFile`](crate::MappedFile))
/// are not affected.
///
/// # Durability semantics
///
/// * [`MappedAppender::append`] copies bytes into the mapping. They are
///   visible at once to every reader of the file (page cache), but **not
///   durable**: a power loss may drop them.
/// * [`MappedAppender::flush`] makes every byte appended so far durable:
///   `msync(MS_SYNC)` of the dirty range, plus `fsync` of the file when the
///   file grew since the last flush (growth changes metadata, which `msync`
///   does not persist). When it returns `Ok`, [`MappedAppender::durable_len`]
///   equals [`MappedAppender::len`].
/// * [`MappedAppender::flush_async`] schedules write-back (`MS_ASYNC`) and
///   returns at once; it promises nothing about durability.
/// * Growth: when an append does not fit, the file is extended (doubling,
///   capped by [`AppenderOptions::max_capacity`]) and remapped. Bytes
///   already appended stay where they are (offsets are stable).
/// * Close: [`MappedAppender::finish`] flushes and trims the pre-allocated
///   tail so the file's length equals the bytes appended. If a reader still
///   maps the file (it holds the shared lock of
///   [`TruncationGuard::Lock`](crate::TruncationGuard::Lock)) the trim is
///   skipped rather than crash that reader, and `finish` says so.
///
/// After a crash (no `finish`) the file keeps its zero-filled pre-allocated
/// tail; reopen with [`AppenderOptions::resume_at`] giving the logical end
/// (the log format above this — e.g. length-prefixed, checksummed records —
/// finds it by scanning).
pub struct MappedAppender {
    path: PathBuf,
    file: File,
    map: Option<MmapMut>,
    len: u64,
    durable: u64,
    capacity: u64,
    max_capacity: u64,
    metadata_dirty: bool,
}

impl std::fmt::Debug for MappedAppender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MappedAppender")
            .field("path", &self.path)
            .field("len", &self.len)
            .field("durable", &self.durable)
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl MappedAppender {
    /// Opens `path` with default options (1 MiB pre-allocated, appending
    /// after existing contents).
    pub fn open(path: impl AsRef<Path>) -> Result<MappedAppender> {
        AppenderOptions::default().open(path)
    }

    /// Options for [`AppenderOptions::open`].
    pub fn options() -> AppenderOptions {
        AppenderOptions::default()
    }

    /// Bytes appended (the logical length; offsets of future appends start here).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing has been appended.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes known durable (flushed with [`MappedAppender::flush`]).
    pub fn durable_len(&self) -> u64 {
        self.durable
    }

    /// Bytes pre-allocated in the file (the mapping's length).
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The appended bytes, borrowed from the mapping.
    pub fn as_slice(&self) -> &[u8] {
        match &self.map {
            // `len <= capacity == map.len()` always holds.
            Some(m) => &m[..self.len as usize],
            None => &[],
        }
    }

    /// Appends `data` and returns the offset it was written at. Grows (and
    /// remaps) the file when needed. Not durable until
    /// [`MappedAppender::flush`].
    pub fn append(&mut self, data: &[u8]) -> Result<u64> {
        self.append_vectored(&[data])
    }

    /// Appends several slices back to back (e.g. a header and a body) and
    /// returns the offset of the first.
    pub fn append_vectored(&mut self, parts: &[&[u8]]) -> Result<u64> {
        let total: u64 = parts.iter().map(|p| p.len() as u64).sum();
        let at = self.len;
        let end = at.checked_add(total).ok_or_else(|| {
            ZeroCopyError::InvalidInput("append overflows the file size".to_string())
        })?;
        if end > self.capacity {
            self.grow(end)?;
        }
        let Some(map) = self.map.as_mut() else {
            // Only reachable for total == 0 on a zero-capacity file.
            return Ok(at);
        };
        let mut pos = at as usize;
        for part in parts {
            map[pos..pos + part.len()].copy_from_slice(part);
            pos += part.len();
        }
        self.len = end;
        Ok(at)
    }

    /// Makes everything appended so far durable: `msync(MS_SYNC)` over the
    /// not-yet-durable range, and `fsync` if the file grew since the last
    /// flush.
    pub fn flush(&mut self) -> Result<()> {
        if self.durable < self.len {
            if let Some(map) = &self.map {
                let page = rustix::param::page_size() as u64;
                let start = self.durable - self.durable % page;
                map.flush_range(start as usize, (self.len - start) as usize)
                    .map_err(|e| ZeroCopyError::io("msync", e))?;
            }
        }
        if self.metadata_dirty {
            self.file
                .sync_all()
                .map_err(|e| ZeroCopyError::io("fsync", e))?;
            self.metadata_dirty = false;
        }
        self.durable = self.len;
        Ok(())
    }

    /// Starts write-back of the appended bytes (`msync(MS_ASYNC)`) without
    /// waiting; does not change [`MappedAppender::durable_len`].
    pub fn flush_async(&self) -> Result<()> {
        if let Some(map) = &self.map {
            if self.len > 0 {
                map.flush_async_range(0, self.len as usize)
                    .map_err(|e| ZeroCopyError::io("msync", e))?;
            }
        }
        Ok(())
    }

    /// Flushes, unmaps and trims the file to [`MappedAppender::len`].
    /// Returns whether the trim happened: it is skipped (leaving the
    /// zero-filled tail) if a reader still maps the file.
    pub fn finish(mut self) -> Result<bool> {
        self.flush()?;
        self.map = None;
        match lock_exclusive(&self.file, &self.path) {
            Ok(()) => {
                self.file
                    .set_len(self.len)
                    .map_err(|e| ZeroCopyError::io("ftruncate", e))?;
                self.file
                    .sync_all()
                    .map_err(|e| ZeroCopyError::io("fsync", e))?;
                Ok(true)
            }
            Err(ZeroCopyError::Busy { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn grow(&mut self, needed: u64) -> Result<()> {
        if needed > self.max_capacity {
            return Err(ZeroCopyError::InvalidInput(format!(
                "append needs {needed} bytes, max_capacity is {}",
                self.max_capacity
            )));
        }
        let doubled = self.capacity.saturating_mul(2).max(needed);
        let new_cap = round_up_page(doubled).min(self.max_capacity);
        self.remap(new_cap)
    }

    fn remap(&mut self, new_cap: u64) -> Result<()> {
        let len = usize::try_from(new_cap).map_err(|_| {
            ZeroCopyError::InvalidInput(format!("{new_cap} bytes do not fit the address space"))
        })?;
        // Unmap first, so that no mapping outlives a length change.
        self.map = None;
        let file_len = self
            .file
            .metadata()
            .map_err(|e| ZeroCopyError::io("fstat", e))?
            .len();
        if file_len < new_cap {
            // Reserve real blocks, so a full disk fails here with an error
            // rather than later with SIGBUS on a store into a hole.
            match rustix::fs::fallocate(
                &self.file,
                rustix::fs::FallocateFlags::empty(),
                file_len,
                new_cap - file_len,
            ) {
                Ok(()) => {}
                Err(rustix::io::Errno::OPNOTSUPP) | Err(rustix::io::Errno::NOSYS) => self
                    .file
                    .set_len(new_cap)
                    .map_err(|e| ZeroCopyError::io("ftruncate", e))?,
                Err(e) => return Err(ZeroCopyError::io("fallocate", e.into())),
            }
            self.metadata_dirty = true;
        }
        if len > 0 {
            // SAFETY: `map_mut` is unsafe because another party could
            // truncate or modify the file behind our `&mut [u8]`. The file
            // is at least `len` bytes long (extended just above), this
            // appender is its only writer by contract, and it never shrinks
            // the file while mapped (`finish` unmaps before trimming, and
            // trims only under an exclusive lock). Readers only read.
            let map = unsafe { MmapOptions::new().len(len).map_mut(&self.file) }
                .map_err(|e| ZeroCopyError::io("mmap", e))?;
            self.map = Some(map);
        }
        self.capacity = new_cap;
        Ok(())
    }
}
