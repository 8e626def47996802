//! [`MappedFile`]: a read-only mapping of a file, handed out as
//! [`bytes::Bytes`] slices that keep the mapping alive.

use std::fs::File;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use memmap2::{Mmap, MmapOptions};
use rustix::fs::{FlockOperation, MemfdFlags, SealFlags};

use crate::error::{Result, ZeroCopyError};
use crate::regular_file::{check_regular, open_regular};

/// How a [`MappedFile`] protects itself from the file being truncated while
/// mapped.
///
/// Reading a page of a shared file mapping that lies past the file's current
/// end raises `SIGBUS`, which kills the process. Rust cannot turn that into
/// an error, so a mapping library must choose who is allowed to shrink a
/// mapped file. [`MappedFile`] offers two answers ([`TruncationGuard`]):
///
/// * [`TruncationGuard::Lock`] (the default, zero-copy): the mapping holds a
///   shared `flock` for as long as any `Bytes` slice of it lives. Cooperating
///   writers shrink files only through [`truncate_locked`] (or take an
///   exclusive `flock` themselves), which fails with
///   [`ZeroCopyError::Busy`] while the file is mapped. Appending (growing) is
///   always safe: a mapping only covers the length the file had when it was
///   mapped. A process that ignores the lock and truncates the file anyway
///   can still crash readers — that is the residual risk of every shared
///   file mapping, and why the second mode exists.
/// * [`TruncationGuard::Snapshot`] (immune, one in-kernel copy): the file's
///   contents are copied once into a sealed `memfd`
///   (`F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE`) and that is mapped. The
///   kernel refuses every attempt to change the snapshot, so nothing anyone
///   does to the original file can fault the mapping. Use it for files that
///   untrusted processes may modify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TruncationGuard {
    /// Hold a shared advisory lock (`flock(LOCK_SH)`) for the mapping's
    /// lifetime; cooperating truncators use [`truncate_locked`]. Zero-copy.
    #[default]
    Lock,
    /// Copy the file once into a sealed, immutable `memfd` and map that.
    /// Immune to any change of the original; costs one in-kernel copy and
    /// the memory of the snapshot.
    Snapshot,
}

/// An access-pattern hint for the kernel (`madvise`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advice {
    /// No special treatment (`MADV_NORMAL`).
    Normal,
    /// Pages will be read in order: read ahead aggressively (`MADV_SEQUENTIAL`).
    Sequential,
    /// Pages will be read in random order: do not read ahead (`MADV_RANDOM`).
    Random,
    /// Pages will be needed soon: start reading them in (`MADV_WILLNEED`).
    WillNeed,
}

impl Advice {
    fn to_memmap(self) -> memmap2::Advice {
        match self {
            Advice::Normal => memmap2::Advice::Normal,
            Advice::Sequential => memmap2::Advice::Sequential,
            Advice::Random => memmap2::Advice::Random,
            Advice::WillNeed => memmap2::Advice::WillNeed,
        }
    }
}

/// The mapping plus whatever keeps it valid (the locked file or the sealed
/// memfd). Dropped when the last [`Bytes`] slice goes away.
struct Mapping {
    map: Mmap,
    /// Holds the shared `flock` (Lock) or the sealed memfd (Snapshot).
    _keeper: File,
}

/// The owner handed to [`Bytes::from_owner`].
struct SharedMapping(Arc<Mapping>);

impl AsRef<[u8]> for SharedMapping {
    fn as_ref(&self) -> &[u8] {
        &self.0.map
    }
}

/// Options for opening a [`MappedFile`].
///
/// ```
/// use kuai_zerocopy::{Advice, MappedFile, TruncationGuard};
/// # let path = std::env::temp_dir().join(format!("kuai-zc-doc-opts-{}", std::process::id()));
/// # std::fs::write(&path, b"hello").unwrap();
/// let file = MappedFile::options()
///     .guard(TruncationGuard::Snapshot)
///     .advice(Advice::Sequential)
///     .populate(true)
///     .open(&path)?;
/// assert_eq!(&file.bytes()[..], b"hello");
/// # std::fs::remove_file(&path).unwrap();
/// # Ok::<(), kuai_zerocopy::ZeroCopyError>(())
/// ```
#[derive(Debug, Clone)]
pub struct MappedFileOptions {
    guard: TruncationGuard,
    advice: Option<Advice>,
    populate: bool,
    max_len: Option<u64>,
}

impl Default for MappedFileOptions {
    fn default() -> Self {
        MappedFileOptions {
            guard: TruncationGuard::Lock,
            advice: None,
            populate: false,
            max_len: None,
        }
    }
}

impl MappedFileOptions {
    /// How to guard against truncation (default [`TruncationGuard::Lock`]).
    pub fn guard(mut self, guard: TruncationGuard) -> Self {
        self.guard = guard;
        self
    }

    /// An access-pattern hint applied right after mapping (default none).
    pub fn advice(mut self, advice: Advice) -> Self {
        self.advice = Some(advice);
        self
    }

    /// Pre-fault every page at map time (`MAP_POPULATE`; default off).
    pub fn populate(mut self, populate: bool) -> Self {
        self.populate = populate;
        self
    }

    /// Refuse files longer than `max_len` bytes with
    /// [`ZeroCopyError::InvalidInput`] (default: no limit besides the
    /// address space). Useful with [`TruncationGuard::Snapshot`], whose
    /// snapshot costs memory.
    pub fn max_len(mut self, max_len: u64) -> Self {
        self.max_len = Some(max_len);
        self
    }

    /// Opens and maps `path`.
    pub fn open(&self, path: impl AsRef<Path>) -> Result<MappedFile> {
        let path = path.as_ref();
        let file = open_regular(path)?;
        self.map_file(file, path)
    }

    /// Maps an already open file (`path` is used in error messages). The
    /// file must be open for reading.
    pub fn map_file(&self, file: File, path: impl AsRef<Path>) -> Result<MappedFile> {
        let path = path.as_ref();
        // Lock before reading the length, so a cooperating truncator cannot
        // slip in between.
        let (keeper, len) = match self.guard {
            TruncationGuard::Lock => {
                rustix::fs::flock(&file, FlockOperation::NonBlockingLockShared).map_err(|e| {
                    if e == rustix::io::Errno::WOULDBLOCK {
                        ZeroCopyError::Busy {
                            path: path.to_path_buf(),
                            why: "an exclusive lock is held (a truncation is under way)",
                        }
                    } else {
                        ZeroCopyError::open(path, "flock", e.into())
                    }
                })?;
                let len = check_regular(&file, path)?;
                self.check_len(len)?;
                (file, len)
            }
            TruncationGuard::Snapshot => {
                let len = check_regular(&file, path)?;
                self.check_len(len)?;
                snapshot(&file, len, path)?
            }
        };
        let len_usize = usize::try_from(len).map_err(|_| {
            ZeroCopyError::InvalidInput(format!("{len} bytes do not fit the address space"))
        })?;
        let mapping = if len_usize == 0 {
            // mmap(2) refuses zero-length mappings; an empty file needs none.
            None
        } else {
            let mut opts = MmapOptions::new();
            opts.len(len_usize);
            if self.populate {
                opts.populate();
            }
            // SAFETY: `Mmap::map` is unsafe because the mapped file could be
            // changed or truncated behind Rust's back while `&[u8]`
            // references into it exist. We map exactly `len` bytes, the
            // length observed *after* acquiring the guard. With
            // `TruncationGuard::Snapshot` the fd is a memfd sealed against
            // writing, shrinking and growing, so the kernel itself forbids
            // any change. With `TruncationGuard::Lock` we hold `LOCK_SH`
            // until the mapping is dropped (the locked `File` lives in the
            // same `Mapping`), which excludes every truncator that follows
            // the crate's protocol (`truncate_locked`, `MappedAppender`);
            // appenders only write past `len`, outside the mapping.
            let map =
                unsafe { opts.map(&keeper) }.map_err(|e| ZeroCopyError::open(path, "mmap", e))?;
            if let Some(advice) = self.advice {
                map.advise(advice.to_memmap())
                    .map_err(|e| ZeroCopyError::io("madvise", e))?;
            }
            Some(Arc::new(Mapping {
                map,
                _keeper: keeper,
            }))
        };
        let bytes = match &mapping {
            Some(m) => Bytes::from_owner(SharedMapping(Arc::clone(m))),
            None => Bytes::new(),
        };
        Ok(MappedFile {
            path: path.to_path_buf(),
            guard: self.guard,
            mapping,
            bytes,
        })
    }

    fn check_len(&self, len: u64) -> Result<()> {
        match self.max_len {
            Some(max) if len > max => Err(ZeroCopyError::InvalidInput(format!(
                "file of {len} bytes exceeds max_len {max}"
            ))),
            _ => Ok(()),
        }
    }
}

/// Copies `len` bytes of `file` into a sealed memfd. Returns the memfd and
/// the number of bytes actually copied (less than `len` if the file shrank
/// meanwhile; never more, even if it grew).
fn snapshot(file: &File, len: u64, path: &Path) -> Result<(File, u64)> {
    let memfd = rustix::fs::memfd_create(
        "kuai-zerocopy-snapshot",
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )
    .map_err(|e| ZeroCopyError::io("memfd_create", e.into()))?;
    let memfd = File::from(memfd);
    memfd
        .set_len(len)
        .map_err(|e| ZeroCopyError::io("ftruncate", e))?;
    let mut copied = 0u64;
    let mut use_copy_file_range = true;
    let mut buf = Vec::new();
    while copied < len {
        let want = usize::try_from(len - copied)
            .unwrap_or(usize::MAX)
            .min(1 << 30);
        let n = if use_copy_file_range {
            let mut off_in = copied;
            let mut off_out = copied;
            match rustix::fs::copy_file_range(
                file,
                Some(&mut off_in),
                &memfd,
                Some(&mut off_out),
                want,
            ) {
                Ok(n) => n,
                Err(e)
                    if copied == 0
                        && matches!(
                            e,
                            rustix::io::Errno::XDEV
                                | rustix::io::Errno::INVAL
                                | rustix::io::Errno::NOSYS
                                | rustix::io::Errno::OPNOTSUPP
                        ) =>
                {
                    // Detected: this kernel/filesystem pair cannot
                    // copy_file_range; fall back to pread/pwrite.
                    use_copy_file_range = false;
                    continue;
                }
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(ZeroCopyError::open(path, "copy_file_range", e.into())),
            }
        } else {
            buf.resize(want.min(1 << 20), 0);
            let n = match rustix::io::pread(file, &mut buf[..], copied) {
                Ok(n) => n,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(ZeroCopyError::open(path, "pread", e.into())),
            };
            let mut done = 0;
            while done < n {
                done += rustix::io::pwrite(&memfd, &buf[done..n], copied + done as u64)
                    .map_err(|e| ZeroCopyError::io("pwrite", e.into()))?;
            }
            n
        };
        if n == 0 {
            break; // the file shrank while we copied: snapshot what was there
        }
        copied += n as u64;
    }
    if copied < len {
        memfd
            .set_len(copied)
            .map_err(|e| ZeroCopyError::io("ftruncate", e))?;
    }
    rustix::fs::fcntl_add_seals(
        &memfd,
        SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE | SealFlags::SEAL,
    )
    .map_err(|e| ZeroCopyError::io("fcntl(F_ADD_SEALS)", e.into()))?;
    Ok((memfd, copied))
}

/// A read-only memory mapping of a file, exposed as [`Bytes`].
///
/// Slicing ([`MappedFile::slice`], [`Bytes::slice`]) is a reference-count
/// bump, never a copy, and every slice keeps the mapping (and its
/// [`TruncationGuard`]) alive after the `MappedFile` itself is dropped. An
/// empty file maps to an empty `Bytes` without calling `mmap`.
///
/// ```
/// use kuai_zerocopy::MappedFile;
/// # let path = std::env::temp_dir().join(format!("kuai-zc-doc-mf-{}", std::process::id()));
/// std::fs::write(&path, b"header|body")?;
/// let file = MappedFile::open(&path)?;
/// let body = file.slice(7..)?; // no copy
/// drop(file);
/// assert_eq!(&body[..], b"body"); // the slice keeps the mapping alive
/// # std::fs::remove_file(&path)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct MappedFile {
    path: PathBuf,
    guard: TruncationGuard,
    mapping: Option<Arc<Mapping>>,
    bytes: Bytes,
}

impl std::fmt::Debug for MappedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MappedFile")
            .field("path", &self.path)
            .field("len", &self.len())
            .field("guard", &self.guard)
            .finish()
    }
}

impl MappedFile {
    /// Maps `path` with the default options ([`TruncationGuard::Lock`], no
    /// advice).
    pub fn open(path: impl AsRef<Path>) -> Result<MappedFile> {
        MappedFileOptions::default().open(path)
    }

    /// Options for [`MappedFileOptions::open`].
    pub fn options() -> MappedFileOptions {
        MappedFileOptions::default()
    }

    /// The mapped length in bytes (the file's length when it was mapped).
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the file was empty.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The path the file was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The truncation guard in force.
    pub fn guard(&self) -> TruncationGuard {
        self.guard
    }

    /// The whole file as `Bytes` (no copy).
    pub fn bytes(&self) -> Bytes {
        self.bytes.clone()
    }

    /// The whole file as a slice borrowed from this handle.
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes
    }

    /// A sub-range as `Bytes` (no copy). Out-of-range bounds are an
    /// [`ZeroCopyError::InvalidInput`], never a panic.
    pub fn slice(&self, range: impl RangeBounds<usize>) -> Result<Bytes> {
        let (start, end) = self.bounds(range)?;
        Ok(self.bytes.slice(start..end))
    }

    /// Applies an access-pattern hint to the whole mapping.
    pub fn advise(&self, advice: Advice) -> Result<()> {
        match &self.mapping {
            Some(m) => m
                .map
                .advise(advice.to_memmap())
                .map_err(|e| ZeroCopyError::io("madvise", e)),
            None => Ok(()),
        }
    }

    /// Applies an access-pattern hint to a sub-range (rounded out to pages).
    pub fn advise_range(&self, advice: Advice, range: impl RangeBounds<usize>) -> Result<()> {
        let (start, end) = self.bounds(range)?;
        let Some(m) = &self.mapping else {
            return Ok(());
        };
        if start == end {
            return Ok(());
        }
        let page = rustix::param::page_size();
        let aligned = start - start % page;
        m.map
            .advise_range(advice.to_memmap(), aligned, end - aligned)
            .map_err(|e| ZeroCopyError::io("madvise", e))
    }

    fn bounds(&self, range: impl RangeBounds<usize>) -> Result<(usize, usize)> {
        let len = self.len();
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&e) => e.saturating_add(1),
            Bound::Excluded(&e) => e,
            Bound::Unbounded => len,
        };
        if start > end || end > len {
            return Err(ZeroCopyError::InvalidInput(format!(
                "range {start}..{end} out of bounds for a file of {len} bytes"
            )));
        }
        Ok((start, end))
    }
}

/// Truncates (or extends) the file at `path` to `len` bytes, but only if no
/// [`MappedFile`] with [`TruncationGuard::Lock`] maps it: takes a
/// non-blocking exclusive `flock` first and fails with
/// [`ZeroCopyError::Busy`] if any mapping holds its shared lock.
///
/// This is the cooperative protocol that makes truncation safe for mapped
/// readers: shrink files only through this function (or under an exclusive
/// `flock` of your own).
pub fn truncate_locked(path: impl AsRef<Path>, len: u64) -> Result<()> {
    let path = path.as_ref();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| ZeroCopyError::open(path, "open", e))?;
    check_regular(&file, path)?;
    lock_exclusive(&file, path)?;
    file.set_len(len)
        .map_err(|e| ZeroCopyError::open(path, "ftruncate", e))
    // the lock is released when `file` is closed
}

/// Takes a non-blocking exclusive `flock`, mapping contention to `Busy`.
pub(crate) fn lock_exclusive(file: &File, path: &Path) -> Result<()> {
    rustix::fs::flock(file, FlockOperation::NonBlockingLockExclusive).map_err(|e| {
        if e == rustix::io::Errno::WOULDBLOCK {
            ZeroCopyError::Busy {
                path: path.to_path_buf(),
                why: "mapped by a reader holding a shared lock",
            }
        } else {
            ZeroCopyError::open(path, "flock", io::Error::from(e))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_checked() {
        let path = std::env::temp_dir().join(format!("kuai-zc-unit-bounds-{}", std::process::id()));
        std::fs::write(&path, b"0123456789").unwrap();
        let f = MappedFile::open(&path).unwrap();
        assert_eq!(&f.slice(2..4).unwrap()[..], b"23");
        assert_eq!(&f.slice(..=1).unwrap()[..], b"01");
        assert!(f.slice(5..11).is_err());
        #[allow(clippy::reversed_empty_ranges)]
        let reversed = f.slice(6..5);
        assert!(reversed.is_err());
        assert!(f.slice(..usize::MAX).is_err());
        assert!(f.advise_range(Advice::Random, 3..9).is_ok());
        std::fs::remove_file(&path).unwrap();
    }
}
