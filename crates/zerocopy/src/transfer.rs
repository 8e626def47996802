//! Moving bytes between fds without copying them through user space:
//! `sendfile` (file → socket), `splice` through a pipe (socket → socket or
//! socket → file relay), `tee` (one stream to two sinks), and `writev` of a
//! chain of [`Bytes`].
//!
//! Every zero-copy path **detects** support at run time: if the kernel
//! refuses the call for this pair of fds (`EINVAL`, `ENOSYS`, `EOPNOTSUPP`,
//! `EXDEV`), the transfer continues with a `read`/`write` loop from exactly
//! where it stopped, and [`Progress`]/[`Counters`] tell which path carried
//! the bytes. Non-blocking fds are supported: `EAGAIN` waits in `poll(2)`.
//! Writes to sockets use `MSG_NOSIGNAL` where the call allows it and
//! [`ignore_sigpipe`] everywhere else, so a vanished peer is
//! [`ZeroCopyError::PeerClosed`] with the partial progress, never a death
//! by `SIGPIPE`.
//!
//! With the `tokio` feature, [`Transfer`] also has `*_async` methods that
//! wait for readiness on tokio sockets instead of blocking.

use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use bytes::Bytes;
use rustix::event::PollFlags;
use rustix::io::Errno;
use rustix::pipe::{PipeFlags, SpliceFlags};

use crate::error::{Result, ZeroCopyError};
use crate::fd_io::{Sink, is_unsupported, read_some, wait_ready};
use crate::mapped_file::MappedFile;
use crate::progress::{Counters, Progress};
use crate::sigpipe::ignore_sigpipe;

/// The most `sendfile`/`splice` move in one call on Linux.
const MAX_CHUNK: usize = 0x7fff_f000;
/// The most iovecs one `writev` accepts (`IOV_MAX`).
const IOV_MAX: usize = 1024;

/// Which mechanism [`Transfer::file_to_socket`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Method {
    /// Let the crate choose. `sendfile` (falling back to copying when the
    /// kernel refuses it), except for large transfers to a peer on this
    /// machine (loopback TCP or a Unix socket; see
    /// [`Transfer::local_mmap_threshold`]), which use `mmap` + `write`:
    /// without a NIC the receiver's copy sets the pace, and measured on
    /// loopback a sender-side copy from a mapping pipelines better than
    /// `sendfile`'s 64 KiB internal batches, in both wall and CPU time. The
    /// mapping holds a shared `flock` during the transfer
    /// ([`TruncationGuard::Lock`](crate::TruncationGuard::Lock)); if the
    /// lock or the mapping cannot be had, `sendfile` is used.
    #[default]
    Auto,
    /// `sendfile(2)` (falls back to copying if refused).
    Sendfile,
    /// `splice(2)` through a pipe (falls back to copying if refused).
    Splice,
    /// `pread` + `write` through a user-space buffer of
    /// [`Transfer::copy_buffer`] bytes.
    Copy,
}

/// A configured transfer engine (cheap to clone; holds no fds).
///
/// ```
/// use std::io::Read;
/// use kuai_zerocopy::transfer::Transfer;
/// use kuai_zerocopy::Counters;
/// # let path = std::env::temp_dir().join(format!("kuai-zc-doc-tr-{}", std::process::id()));
/// # std::fs::write(&path, vec![7u8; 100_000])?;
/// let counters = Counters::new();
/// let transfer = Transfer::new().counters(counters.clone());
///
/// let (mut rx, tx) = std::os::unix::net::UnixStream::pair()?;
/// let file = kuai_zerocopy::open_regular(&path)?;
/// let reader = std::thread::spawn(move || {
///     let mut got = Vec::new();
///     rx.read_to_end(&mut got).map(|_| got.len())
/// });
/// let progress = transfer.file_to_socket(&file, 0, 100_000, &tx)?;
/// drop(tx);
/// assert_eq!(progress.total(), 100_000);
/// assert_eq!(reader.join().unwrap()?, 100_000);
/// assert_eq!(counters.snapshot(), progress);
/// # std::fs::remove_file(&path)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Transfer {
    method: Method,
    copy_buffer: usize,
    pipe_size: usize,
    local_mmap_threshold: u64,
    counters: Option<Counters>,
}

/// Default of [`Transfer::local_mmap_threshold`].
const DEFAULT_LOCAL_MMAP_THRESHOLD: u64 = 2 << 20;

impl Default for Transfer {
    fn default() -> Self {
        Transfer {
            method: Method::Auto,
            copy_buffer: 64 * 1024,
            pipe_size: 1 << 20,
            local_mmap_threshold: DEFAULT_LOCAL_MMAP_THRESHOLD,
            counters: None,
        }
    }
}

/// Asks for a pipe buffer of `want` bytes and returns the capacity granted.
/// Best effort: unprivileged processes are capped at
/// /proc/sys/fs/pipe-max-size; the default 64 KiB stays on refusal.
pub(crate) fn resize_pipe(write: impl std::os::fd::AsFd, want: usize) -> usize {
    rustix::pipe::fcntl_setpipe_size(&write, want)
        .or_else(|_| rustix::pipe::fcntl_getpipe_size(&write))
        .unwrap_or(64 * 1024)
}

/// Pipe ends used by `splice`.
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    capacity: usize,
}

impl Pipe {
    fn new(want: usize) -> std::result::Result<Pipe, Errno> {
        let (read, write) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC)?;
        let capacity = resize_pipe(&write, want);
        Ok(Pipe {
            read,
            write,
            capacity,
        })
    }
}

impl Transfer {
    /// Defaults: [`Method::Auto`], 64 KiB copy buffer, 1 MiB pipes, no
    /// counters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Chooses the file → socket mechanism.
    pub fn method(mut self, method: Method) -> Self {
        self.method = method;
        self
    }

    /// Size of the user-space buffer of the copy paths (clamped to ≥ 512 B).
    pub fn copy_buffer(mut self, bytes: usize) -> Self {
        self.copy_buffer = bytes.max(512);
        self
    }

    /// Requested pipe capacity for `splice`/`tee` (best effort; the kernel
    /// may cap it).
    pub fn pipe_size(mut self, bytes: usize) -> Self {
        self.pipe_size = bytes.max(4096);
        self
    }

    /// With [`Method::Auto`], transfers of at least this many bytes to a
    /// peer on this machine use `mmap` + `write` instead of `sendfile`
    /// (default 2 MiB; `u64::MAX` disables it).
    pub fn local_mmap_threshold(mut self, bytes: u64) -> Self {
        self.local_mmap_threshold = bytes;
        self
    }

    /// Accumulate every call's [`Progress`] (including failed calls' partial
    /// progress) into `counters`.
    pub fn counters(mut self, counters: Counters) -> Self {
        self.counters = Some(counters);
        self
    }

    #[cfg(feature = "tokio")]
    pub(crate) fn get_method(&self) -> Method {
        self.method
    }

    #[cfg(feature = "tokio")]
    pub(crate) fn get_copy_buffer(&self) -> usize {
        self.copy_buffer
    }

    #[cfg(feature = "tokio")]
    pub(crate) fn get_local_mmap_threshold(&self) -> u64 {
        self.local_mmap_threshold
    }

    #[cfg(feature = "tokio")]
    pub(crate) fn get_pipe_size(&self) -> usize {
        self.pipe_size
    }

    /// Adds a finished call's progress (or its error's partial progress)
    /// to the counters.
    pub(crate) fn record(&self, r: Result<Progress>, fell_back: bool) -> Result<Progress> {
        if let Some(c) = &self.counters {
            match &r {
                Ok(p) => c.add(*p),
                Err(e) => c.add(e.progress()),
            }
            if fell_back {
                c.add_fallback();
            }
        }
        r
    }

    /// Sends `len` bytes of `file` starting at `offset` to `sock` (any fd:
    /// a TCP or Unix socket, a pipe, even a file), leaving `file`'s own
    /// position untouched.
    ///
    /// Fails with [`ZeroCopyError::UnexpectedEof`] if the file ends first,
    /// [`ZeroCopyError::PeerClosed`] if the peer goes away; both carry the
    /// bytes delivered so far.
    pub fn file_to_socket(
        &self,
        file: impl AsFd,
        offset: u64,
        len: u64,
        sock: impl AsFd,
    ) -> Result<Progress> {
        ignore_sigpipe();
        let (file, sock) = (file.as_fd(), sock.as_fd());
        let mut p = Progress::default();
        let mut fell_back = false;
        let r = (|| {
            let sink = Sink::new(sock).map_err(|e| ZeroCopyError::io("fstat", e.into()))?;
            let done = match self.method {
                Method::Auto
                    if len >= self.local_mmap_threshold
                        && sink.is_socket()
                        && local_peer(sock)
                        && mmap_range(file, offset, len, sink, &mut p)? =>
                {
                    true
                }
                Method::Auto | Method::Sendfile => sendfile_range(file, offset, len, sink, &mut p)?,
                Method::Splice => {
                    self.splice_range(file, offset, len, sink, &mut p, &mut fell_back)?
                }
                Method::Copy => false,
            };
            if !done {
                fell_back |= self.method != Method::Copy;
                self.copy_range(file, offset, len, sink, &mut p)?;
            }
            Ok(p)
        })();
        self.record(r, fell_back)
    }

    /// The user-space copy loop: `pread` into a buffer, `write` it out.
    fn copy_range(
        &self,
        file: BorrowedFd<'_>,
        offset: u64,
        len: u64,
        sink: Sink<'_>,
        p: &mut Progress,
    ) -> Result<()> {
        let mut buf = vec![0u8; self.copy_buffer];
        while p.total() < len {
            let want = usize::try_from(len - p.total())
                .unwrap_or(usize::MAX)
                .min(buf.len());
            let n = match rustix::io::pread(file, &mut buf[..want], offset + p.total()) {
                Ok(n) => n,
                Err(Errno::INTR) => continue,
                Err(Errno::AGAIN) => {
                    wait_ready(file, PollFlags::IN)
                        .map_err(|e| ZeroCopyError::transfer("poll", *p, e.into()))?;
                    continue;
                }
                Err(e) => return Err(ZeroCopyError::transfer("pread", *p, e.into())),
            };
            if n == 0 {
                return Err(ZeroCopyError::UnexpectedEof {
                    progress: *p,
                    expected: len,
                });
            }
            sink.write_all(&buf[..n], |k| p.copied += k as u64)
                .map_err(|e| ZeroCopyError::transfer("write", *p, e.into()))?;
        }
        Ok(())
    }

    /// file → pipe → socket. Returns `false` if splice is unsupported before
    /// any byte moved (the caller then copies from where it stopped).
    fn splice_range(
        &self,
        file: BorrowedFd<'_>,
        offset: u64,
        len: u64,
        sink: Sink<'_>,
        p: &mut Progress,
        fell_back: &mut bool,
    ) -> Result<bool> {
        let pipe =
            Pipe::new(self.pipe_size).map_err(|e| ZeroCopyError::transfer("pipe", *p, e.into()))?;
        let mut off = offset + p.total();
        while p.total() < len {
            let want = usize::try_from(len - p.total())
                .unwrap_or(usize::MAX)
                .min(pipe.capacity);
            let n = match rustix::pipe::splice(
                file,
                Some(&mut off),
                &pipe.write,
                None,
                want,
                SpliceFlags::MOVE | SpliceFlags::MORE,
            ) {
                Ok(n) => n,
                Err(Errno::INTR) => continue,
                Err(e) if is_unsupported(e) => return Ok(false),
                Err(e) => return Err(ZeroCopyError::transfer("splice", *p, e.into())),
            };
            if n == 0 {
                return Err(ZeroCopyError::UnexpectedEof {
                    progress: *p,
                    expected: len,
                });
            }
            drain_pipe(&pipe, n, sink, p, self.copy_buffer, fell_back)?;
            if *fell_back {
                // The sink refuses splice: copy the rest without the pipe.
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Relays everything `src` produces (until end of stream, or `limit`
    /// bytes) into `dst` with `splice` through a pipe: a proxy's inner loop
    /// that never copies the payload into user space.
    ///
    /// `src` may be a socket, a pipe or a file (read from its current
    /// position); `dst` a socket, a pipe or a file. If the kernel cannot
    /// splice from `src` or into `dst`, the relay detects it and copies
    /// through a buffer instead.
    pub fn relay(&self, src: impl AsFd, dst: impl AsFd, limit: Option<u64>) -> Result<Progress> {
        ignore_sigpipe();
        let (src, dst) = (src.as_fd(), dst.as_fd());
        let mut p = Progress::default();
        let mut fell_back = false;
        let r = (|| {
            let sink = Sink::new(dst).map_err(|e| ZeroCopyError::io("fstat", e.into()))?;
            let limit = limit.unwrap_or(u64::MAX);
            let pipe = Pipe::new(self.pipe_size)
                .map_err(|e| ZeroCopyError::transfer("pipe", p, e.into()))?;
            while p.total() < limit {
                let want = usize::try_from(limit - p.total())
                    .unwrap_or(usize::MAX)
                    .min(pipe.capacity);
                match splice_in(src, &pipe, want) {
                    Ok(0) => return Ok(p),
                    Ok(n) => drain_pipe(&pipe, n, sink, &mut p, self.copy_buffer, &mut fell_back)?,
                    Err(e) if is_unsupported(e) => {
                        fell_back = true;
                        copy_stream(src, &[sink], limit, &mut p, self.copy_buffer)?;
                        return Ok(p);
                    }
                    Err(e) => return Err(ZeroCopyError::transfer("splice", p, e.into())),
                }
            }
            Ok(p)
        })();
        self.record(r, fell_back)
    }

    /// Duplicates the stream from `src` into both `a` and `b` (until end of
    /// stream, or `limit` bytes): `splice` into a pipe, `tee` it into a
    /// second pipe without consuming, then `splice` each pipe to its sink.
    ///
    /// The returned progress counts source bytes, each delivered to both
    /// sinks. Falls back to read + two writes when unsupported.
    pub fn tee(
        &self,
        src: impl AsFd,
        a: impl AsFd,
        b: impl AsFd,
        limit: Option<u64>,
    ) -> Result<Progress> {
        ignore_sigpipe();
        let (src, a, b) = (src.as_fd(), a.as_fd(), b.as_fd());
        let mut p = Progress::default();
        let mut fell_back = false;
        let r = (|| {
            let sink_a = Sink::new(a).map_err(|e| ZeroCopyError::io("fstat", e.into()))?;
            let sink_b = Sink::new(b).map_err(|e| ZeroCopyError::io("fstat", e.into()))?;
            let limit = limit.unwrap_or(u64::MAX);
            let first = Pipe::new(self.pipe_size)
                .map_err(|e| ZeroCopyError::transfer("pipe", p, e.into()))?;
            let second = Pipe::new(first.capacity)
                .map_err(|e| ZeroCopyError::transfer("pipe", p, e.into()))?;
            let cap = first.capacity.min(second.capacity);
            while p.total() < limit {
                let want = usize::try_from(limit - p.total())
                    .unwrap_or(usize::MAX)
                    .min(cap);
                let n = match splice_in(src, &first, want) {
                    Ok(0) => return Ok(p),
                    Ok(n) => n,
                    Err(e) if is_unsupported(e) && p.total() == 0 => {
                        fell_back = true;
                        copy_stream(src, &[sink_a, sink_b], limit, &mut p, self.copy_buffer)?;
                        return Ok(p);
                    }
                    Err(e) => return Err(ZeroCopyError::transfer("splice", p, e.into())),
                };
                // Duplicate the n bytes now in `first`, in as many tee rounds
                // as the kernel needs; each round's bytes are then drained
                // from both pipes, so neither pipe can fill up.
                let mut left = n;
                while left > 0 {
                    let t = loop {
                        match rustix::pipe::tee(
                            &first.read,
                            &second.write,
                            left,
                            SpliceFlags::empty(),
                        ) {
                            Ok(t) => break t,
                            Err(Errno::INTR) => continue,
                            Err(e) => {
                                return Err(ZeroCopyError::transfer("tee", p, e.into()));
                            }
                        }
                    };
                    if t == 0 {
                        return Err(ZeroCopyError::transfer(
                            "tee",
                            p,
                            std::io::Error::other("tee made no progress"),
                        ));
                    }
                    // Sink b's progress is tracked separately; `p` counts
                    // what reached sink a, then both are equal.
                    let mut pb = p;
                    drain_pipe(&first, t, sink_a, &mut p, self.copy_buffer, &mut fell_back)?;
                    drain_pipe(
                        &second,
                        t,
                        sink_b,
                        &mut pb,
                        self.copy_buffer,
                        &mut fell_back,
                    )?;
                    left -= t;
                }
            }
            Ok(p)
        })();
        self.record(r, fell_back)
    }

    /// Writes a chain of [`Bytes`] (say a header and a mapped file body)
    /// with vectored writes — `sendmsg(MSG_NOSIGNAL)` on sockets, `writev`
    /// elsewhere — without concatenating them. Partial writes resume
    /// mid-buffer. Counted as `copied` (the kernel copies from user memory).
    pub fn write_all_bytes(&self, sink: impl AsFd, chain: &[Bytes]) -> Result<Progress> {
        ignore_sigpipe();
        let mut p = Progress::default();
        let r = (|| {
            let sink = Sink::new(sink.as_fd()).map_err(|e| ZeroCopyError::io("fstat", e.into()))?;
            let mut cursor = ChainCursor::new(chain);
            let mut iov: Vec<IoSlice<'_>> = Vec::with_capacity(chain.len().min(IOV_MAX));
            while !cursor.is_done() {
                cursor.fill(&mut iov);
                let n = sink
                    .write_vectored(&iov)
                    .map_err(|e| ZeroCopyError::transfer("writev", p, e.into()))?;
                if n == 0 {
                    return Err(ZeroCopyError::transfer("writev", p, Errno::PIPE.into()));
                }
                p.copied += n as u64;
                cursor.advance(n);
            }
            Ok(p)
        })();
        self.record(r, false)
    }

    /// `mmap` + `write`: sends a mapped file's bytes with
    /// [`Transfer::write_all_bytes`].
    pub fn mapped_to_socket(&self, file: &MappedFile, sink: impl AsFd) -> Result<Progress> {
        self.write_all_bytes(sink, &[file.bytes()])
    }
}

/// A position in a chain of `Bytes`.
struct ChainCursor<'a> {
    chain: &'a [Bytes],
    index: usize,
    offset: usize,
}

impl<'a> ChainCursor<'a> {
    fn new(chain: &'a [Bytes]) -> Self {
        let mut c = ChainCursor {
            chain,
            index: 0,
            offset: 0,
        };
        c.skip_empty();
        c
    }

    fn skip_empty(&mut self) {
        while self.index < self.chain.len() && self.offset >= self.chain[self.index].len() {
            self.index += 1;
            self.offset = 0;
        }
    }

    fn is_done(&self) -> bool {
        self.index >= self.chain.len()
    }

    fn fill<'s>(&self, iov: &mut Vec<IoSlice<'s>>)
    where
        'a: 's,
    {
        iov.clear();
        let mut offset = self.offset;
        for b in &self.chain[self.index..] {
            if iov.len() == IOV_MAX {
                break;
            }
            if b.len() > offset {
                iov.push(IoSlice::new(&b[offset..]));
            }
            offset = 0;
        }
    }

    fn advance(&mut self, mut n: usize) {
        while n > 0 && !self.is_done() {
            let here = self.chain[self.index].len() - self.offset;
            if n < here {
                self.offset += n;
                return;
            }
            n -= here;
            self.index += 1;
            self.offset = 0;
        }
        self.skip_empty();
    }
}

/// Whether the peer of socket `fd` is on this machine: a Unix socket, or
/// TCP/UDP to a loopback address.
pub(crate) fn local_peer(fd: BorrowedFd<'_>) -> bool {
    match rustix::net::getpeername(fd) {
        Ok(Some(addr)) => {
            if addr.address_family() == rustix::net::AddressFamily::UNIX {
                return true;
            }
            match std::net::SocketAddr::try_from(addr) {
                Ok(std::net::SocketAddr::V4(a)) => a.ip().is_loopback(),
                Ok(std::net::SocketAddr::V6(a)) => {
                    a.ip().is_loopback()
                        || a.ip().to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
                }
                Err(_) => false,
            }
        }
        _ => false,
    }
}

/// Maps `[offset, offset + len)` of `file` under a shared `flock`, or
/// `None` when the file cannot be mapped or locked or is shorter than the
/// range (callers then use `sendfile`, which reports that precisely).
pub(crate) fn map_range(file: BorrowedFd<'_>, offset: u64, len: u64) -> Option<Bytes> {
    // A fresh open file description (not a dup), so that our shared flock
    // is independent of any lock the caller holds on `file`.
    let proc_path = format!("/proc/self/fd/{}", file.as_raw_fd());
    let reopened = std::fs::File::open(&proc_path).ok()?;
    let map = MappedFile::options()
        .advice(crate::mapped_file::Advice::Sequential)
        .map_file(reopened, &proc_path)
        .ok()?;
    let start = usize::try_from(offset).ok()?;
    let end = usize::try_from(offset.checked_add(len)?).ok()?;
    map.slice(start..end).ok()
}

/// `mmap` + `write` of `[offset, offset + len)`. Returns `Ok(false)`, having
/// sent nothing, when [`map_range`] declines.
fn mmap_range(
    file: BorrowedFd<'_>,
    offset: u64,
    len: u64,
    sink: Sink<'_>,
    p: &mut Progress,
) -> Result<bool> {
    let Some(bytes) = map_range(file, offset, len) else {
        return Ok(false);
    };
    sink.write_all(&bytes, |k| p.copied += k as u64)
        .map_err(|e| ZeroCopyError::transfer("write", *p, e.into()))?;
    Ok(true)
}

/// `sendfile` loop. Returns `Ok(false)` if the kernel refused sendfile for
/// these fds (the caller copies the rest).
fn sendfile_range(
    file: BorrowedFd<'_>,
    offset: u64,
    len: u64,
    sink: Sink<'_>,
    p: &mut Progress,
) -> Result<bool> {
    let mut off = offset + p.total();
    while p.total() < len {
        let want = usize::try_from(len - p.total())
            .unwrap_or(usize::MAX)
            .min(MAX_CHUNK);
        match rustix::fs::sendfile(sink.fd, file, Some(&mut off), want) {
            Ok(0) => {
                return Err(ZeroCopyError::UnexpectedEof {
                    progress: *p,
                    expected: len,
                });
            }
            Ok(n) => p.zero_copy += n as u64,
            Err(Errno::INTR) => {}
            Err(Errno::AGAIN) => wait_ready(sink.fd, PollFlags::OUT)
                .map_err(|e| ZeroCopyError::transfer("poll", *p, e.into()))?,
            Err(e) if is_unsupported(e) => return Ok(false),
            Err(e) => return Err(ZeroCopyError::transfer("sendfile", *p, e.into())),
        }
    }
    Ok(true)
}

/// One `splice` from `src` into the (empty) pipe, waiting if `src` is a
/// non-blocking fd with nothing to read.
fn splice_in(src: BorrowedFd<'_>, pipe: &Pipe, want: usize) -> std::result::Result<usize, Errno> {
    loop {
        match rustix::pipe::splice(
            src,
            None,
            &pipe.write,
            None,
            want,
            SpliceFlags::MOVE | SpliceFlags::MORE,
        ) {
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) => wait_ready(src, PollFlags::IN)?,
            other => return other,
        }
    }
}

/// Moves exactly `n` bytes from `pipe` to `sink`: `splice` while the sink
/// accepts it, else (detected by `EINVAL` & co.) `read` them out of the pipe
/// and `write` them.
fn drain_pipe(
    pipe: &Pipe,
    n: usize,
    sink: Sink<'_>,
    p: &mut Progress,
    copy_buffer: usize,
    fell_back: &mut bool,
) -> Result<()> {
    let mut left = n;
    while left > 0 {
        match rustix::pipe::splice(
            &pipe.read,
            None,
            sink.fd,
            None,
            left,
            SpliceFlags::MOVE | SpliceFlags::MORE,
        ) {
            Ok(0) => {
                return Err(ZeroCopyError::transfer("splice", *p, Errno::PIPE.into()));
            }
            Ok(m) => {
                p.zero_copy += m as u64;
                left -= m;
            }
            Err(Errno::INTR) => {}
            Err(Errno::AGAIN) => wait_ready(sink.fd, PollFlags::OUT)
                .map_err(|e| ZeroCopyError::transfer("poll", *p, e.into()))?,
            Err(e) if is_unsupported(e) => {
                *fell_back = true;
                let mut buf = vec![0u8; copy_buffer.min(left)];
                while left > 0 {
                    let want = left.min(buf.len());
                    let got = read_some(pipe.read.as_fd(), &mut buf[..want])
                        .map_err(|e| ZeroCopyError::transfer("read", *p, e.into()))?;
                    sink.write_all(&buf[..got], |k| p.copied += k as u64)
                        .map_err(|e| ZeroCopyError::transfer("write", *p, e.into()))?;
                    left -= got;
                }
            }
            Err(e) => return Err(ZeroCopyError::transfer("splice", *p, e.into())),
        }
    }
    Ok(())
}

/// The copy loop: read from `src` until end of stream or `limit`, writing
/// every chunk to each sink.
fn copy_stream(
    src: BorrowedFd<'_>,
    sinks: &[Sink<'_>],
    limit: u64,
    p: &mut Progress,
    copy_buffer: usize,
) -> Result<()> {
    let mut buf = vec![0u8; copy_buffer];
    while p.total() < limit {
        let want = usize::try_from(limit - p.total())
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let n = read_some(src, &mut buf[..want])
            .map_err(|e| ZeroCopyError::transfer("read", *p, e.into()))?;
        if n == 0 {
            return Ok(());
        }
        let (first, rest) = match sinks.split_first() {
            Some(x) => x,
            None => return Ok(()),
        };
        let before = *p;
        first
            .write_all(&buf[..n], |k| p.copied += k as u64)
            .map_err(|e| ZeroCopyError::transfer("write", *p, e.into()))?;
        for s in rest {
            let mut q = before;
            s.write_all(&buf[..n], |k| q.copied += k as u64)
                .map_err(|e| ZeroCopyError::transfer("write", q, e.into()))?;
        }
    }
    Ok(())
}

/// Sends all of `file` (from offset 0, its current length) to `sock` with
/// the default [`Transfer`] (`sendfile`, detected fallback to copying).
pub fn file_to_socket(file: &std::fs::File, sock: impl AsFd) -> Result<Progress> {
    let len = file
        .metadata()
        .map_err(|e| ZeroCopyError::io("fstat", e))?
        .len();
    Transfer::new().file_to_socket(file, 0, len, sock)
}

/// Opens `path` (checking it is a regular file: typed errors for missing
/// files, directories, FIFOs, devices, permission) and sends all of it to
/// `sock` with the default [`Transfer`].
pub fn send_path(path: impl AsRef<std::path::Path>, sock: impl AsFd) -> Result<Progress> {
    let file = crate::regular_file::open_regular(path)?;
    file_to_socket(&file, sock)
}

/// [`Transfer::relay`] with the defaults.
pub fn relay(src: impl AsFd, dst: impl AsFd) -> Result<Progress> {
    Transfer::new().relay(src, dst, None)
}

/// [`Transfer::tee`] with the defaults.
pub fn tee(src: impl AsFd, a: impl AsFd, b: impl AsFd) -> Result<Progress> {
    Transfer::new().tee(src, a, b, None)
}

/// [`Transfer::write_all_bytes`] with the defaults.
pub fn write_all_bytes(sink: impl AsFd, chain: &[Bytes]) -> Result<Progress> {
    Transfer::new().write_all_bytes(sink, chain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_cursor_walks_partial_writes() {
        let chain = [
            Bytes::from_static(b"ab"),
            Bytes::new(),
            Bytes::from_static(b"cde"),
        ];
        let mut c = ChainCursor::new(&chain);
        let mut iov = Vec::new();
        c.fill(&mut iov);
        assert_eq!(iov.len(), 2);
        c.advance(1);
        c.fill(&mut iov);
        assert_eq!(&iov[0][..], b"b");
        c.advance(2);
        c.fill(&mut iov);
        assert_eq!(&iov[0][..], b"de");
        c.advance(2);
        assert!(c.is_done());
    }
}
