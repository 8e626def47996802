//! The tokio variants of the transfers: the same system calls on
//! non-blocking sockets, waiting for readiness through tokio's reactor
//! (`async_io`) whenever the kernel says `EAGAIN` — no spinning, no blocked
//! worker threads.

use std::future::Future;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use bytes::Bytes;
use rustix::io::Errno;
use rustix::net::SendFlags;
use rustix::pipe::{PipeFlags, SpliceFlags};
use tokio::io::Interest;

use crate::error::{Result, ZeroCopyError};
use crate::fd_io::is_unsupported;
use crate::progress::Progress;
use crate::sigpipe::ignore_sigpipe;
use crate::transfer::{Method, Transfer};

mod sealed {
    pub trait Sealed {}
    impl Sealed for tokio::net::TcpStream {}
    impl Sealed for tokio::net::UnixStream {}
}

/// A tokio socket the async transfers can drive: [`tokio::net::TcpStream`]
/// or [`tokio::net::UnixStream`] (sealed).
pub trait AsyncStream: AsFd + sealed::Sealed + Sync {
    /// Runs `f` until it does not return `WouldBlock`, awaiting readiness
    /// for `interest` in between (tokio's `async_io`).
    fn ready_io<R: Send>(
        &self,
        interest: Interest,
        f: impl FnMut() -> io::Result<R> + Send,
    ) -> impl Future<Output = io::Result<R>> + Send;
}

impl AsyncStream for tokio::net::TcpStream {
    fn ready_io<R: Send>(
        &self,
        interest: Interest,
        f: impl FnMut() -> io::Result<R> + Send,
    ) -> impl Future<Output = io::Result<R>> + Send {
        self.async_io(interest, f)
    }
}

impl AsyncStream for tokio::net::UnixStream {
    fn ready_io<R: Send>(
        &self,
        interest: Interest,
        f: impl FnMut() -> io::Result<R> + Send,
    ) -> impl Future<Output = io::Result<R>> + Send {
        self.async_io(interest, f)
    }
}

fn errno_of(e: &io::Error) -> Option<Errno> {
    e.raw_os_error().map(Errno::from_raw_os_error)
}

/// Sends `buf` fully on a non-blocking socket, awaiting writability.
async fn send_all<S: AsyncStream>(sock: &S, mut buf: &[u8], p: &mut Progress) -> Result<()> {
    while !buf.is_empty() {
        let fd = sock.as_fd();
        let n = sock
            .ready_io(Interest::WRITABLE, || {
                rustix::net::send(fd, buf, SendFlags::NOSIGNAL).map_err(io::Error::from)
            })
            .await
            .map_err(|e| ZeroCopyError::transfer("send", *p, e))?;
        if n == 0 {
            return Err(ZeroCopyError::transfer("send", *p, Errno::PIPE.into()));
        }
        p.copied += n as u64;
        buf = &buf[n..];
    }
    Ok(())
}

/// Splices up to `want` bytes from `src` into the (empty) pipe `pw`,
/// awaiting readability: with the pipe empty, EAGAIN can only mean "`src`
/// has no data yet".
async fn splice_in_async<S: AsyncStream>(
    src: &S,
    pw: &std::os::fd::OwnedFd,
    want: usize,
) -> io::Result<usize> {
    let src_fd = src.as_fd();
    src.ready_io(Interest::READABLE, || {
        rustix::pipe::splice(
            src_fd,
            None,
            pw,
            None,
            want,
            SpliceFlags::MOVE | SpliceFlags::NONBLOCK,
        )
        .map_err(io::Error::from)
    })
    .await
}

/// Moves exactly `n` bytes from a non-blocking pipe to a tokio socket.
async fn drain_pipe_async<S: AsyncStream>(
    pipe: &std::os::fd::OwnedFd,
    n: usize,
    sock: &S,
    p: &mut Progress,
) -> Result<()> {
    let fd = sock.as_fd();
    let mut left = n;
    while left > 0 {
        let m = sock
            .ready_io(Interest::WRITABLE, || {
                rustix::pipe::splice(
                    pipe,
                    None,
                    fd,
                    None,
                    left,
                    SpliceFlags::MOVE | SpliceFlags::NONBLOCK,
                )
                .map_err(io::Error::from)
            })
            .await
            .map_err(|e| ZeroCopyError::transfer("splice", *p, e))?;
        if m == 0 {
            return Err(ZeroCopyError::transfer("splice", *p, Errno::PIPE.into()));
        }
        p.zero_copy += m as u64;
        left -= m;
    }
    Ok(())
}

impl Transfer {
    /// The async twin of [`Transfer::file_to_socket`]: sends `len` bytes of
    /// `file` from `offset` to a tokio socket, with the same choice of
    /// mechanism ([`Transfer::method`]) and the same detected fallback to
    /// copying. Reading the file (`sendfile`'s or `splice`'s input side, or
    /// page faults of the mapping) is assumed to hit the page cache and is
    /// not awaited.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tokio::io::AsyncReadExt;
    /// use kuai_zerocopy::transfer::Transfer;
    /// # let path = std::env::temp_dir().join(format!("kuai-zc-doc-async-{}", std::process::id()));
    /// std::fs::write(&path, vec![1u8; 300_000])?;
    /// let file = kuai_zerocopy::open_regular(&path)?;
    /// let (tx, mut rx) = tokio::net::UnixStream::pair()?;
    /// let reader = tokio::spawn(async move {
    ///     let mut v = Vec::new();
    ///     rx.read_to_end(&mut v).await.map(|_| v.len())
    /// });
    /// let p = Transfer::new().method(kuai_zerocopy::transfer::Method::Sendfile)
    ///     .file_to_socket_async(&file, 0, 300_000, &tx).await?;
    /// drop(tx);
    /// assert_eq!(p.zero_copy, 300_000);
    /// assert_eq!(reader.await??, 300_000);
    /// # std::fs::remove_file(&path)?;
    /// # Ok(()) }
    /// ```
    pub async fn file_to_socket_async<S: AsyncStream>(
        &self,
        file: &std::fs::File,
        offset: u64,
        len: u64,
        sock: &S,
    ) -> Result<Progress> {
        ignore_sigpipe();
        let mut p = Progress::default();
        let mut fell_back = false;
        let r = self
            .file_to_socket_async_inner(file, offset, len, sock, &mut p, &mut fell_back)
            .await
            .map(|()| p);
        self.record(r, fell_back)
    }

    async fn file_to_socket_async_inner<S: AsyncStream>(
        &self,
        file: &std::fs::File,
        offset: u64,
        len: u64,
        sock: &S,
        p: &mut Progress,
        fell_back: &mut bool,
    ) -> Result<()> {
        let sock_fd = sock.as_fd();
        let file_fd = file.as_fd();
        let mut zero_copy = !matches!(self.get_method(), Method::Copy);
        if self.get_method() == Method::Auto
            && len >= self.get_local_mmap_threshold()
            && crate::transfer::local_peer(sock_fd)
        {
            // As in the blocking path: mmap + write for large local peers.
            if let Some(bytes) = crate::transfer::map_range(file_fd, offset, len) {
                return send_all(sock, &bytes, p).await;
            }
        }
        if matches!(self.get_method(), Method::Splice) {
            // Splice on the async path: file → pipe (blocking page-cache
            // read) → socket (awaited).
            match self
                .splice_file_async(file_fd, offset, len, sock, p)
                .await?
            {
                true => return Ok(()),
                false => {
                    *fell_back = true;
                    zero_copy = false;
                }
            }
        }
        while zero_copy && p.total() < len {
            let want = usize::try_from(len - p.total())
                .unwrap_or(usize::MAX)
                .min(0x7fff_f000);
            let mut off = offset + p.total();
            let r = sock
                .ready_io(Interest::WRITABLE, || {
                    rustix::fs::sendfile(sock_fd, file_fd, Some(&mut off), want)
                        .map_err(io::Error::from)
                })
                .await;
            match r {
                Ok(0) => {
                    return Err(ZeroCopyError::UnexpectedEof {
                        progress: *p,
                        expected: len,
                    });
                }
                Ok(n) => p.zero_copy += n as u64,
                Err(e) if errno_of(&e).is_some_and(is_unsupported) => {
                    *fell_back = true;
                    zero_copy = false;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ZeroCopyError::transfer("sendfile", *p, e)),
            }
        }
        // Copy path (chosen, or fallen back to).
        let mut buf = vec![0u8; self.get_copy_buffer()];
        while p.total() < len {
            let want = usize::try_from(len - p.total())
                .unwrap_or(usize::MAX)
                .min(buf.len());
            let n = match rustix::io::pread(file_fd, &mut buf[..want], offset + p.total()) {
                Ok(n) => n,
                Err(Errno::INTR) => continue,
                Err(e) => return Err(ZeroCopyError::transfer("pread", *p, e.into())),
            };
            if n == 0 {
                return Err(ZeroCopyError::UnexpectedEof {
                    progress: *p,
                    expected: len,
                });
            }
            send_all(sock, &buf[..n], p).await?;
        }
        Ok(())
    }

    async fn splice_file_async<S: AsyncStream>(
        &self,
        file: BorrowedFd<'_>,
        offset: u64,
        len: u64,
        sock: &S,
        p: &mut Progress,
    ) -> Result<bool> {
        let (pr, pw) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC)
            .map_err(|e| ZeroCopyError::transfer("pipe", *p, e.into()))?;
        let cap = crate::transfer::resize_pipe(&pw, self.get_pipe_size());
        let sock_fd = sock.as_fd();
        while p.total() < len {
            let want = usize::try_from(len - p.total())
                .unwrap_or(usize::MAX)
                .min(cap);
            let mut off = offset + p.total();
            let n = match rustix::pipe::splice(
                file,
                Some(&mut off),
                &pw,
                None,
                want,
                SpliceFlags::MOVE,
            ) {
                Ok(0) => {
                    return Err(ZeroCopyError::UnexpectedEof {
                        progress: *p,
                        expected: len,
                    });
                }
                Ok(n) => n,
                Err(Errno::INTR) => continue,
                Err(e) if is_unsupported(e) && p.total() == 0 => return Ok(false),
                Err(e) => return Err(ZeroCopyError::transfer("splice", *p, e.into())),
            };
            let mut left = n;
            while left > 0 {
                let m = sock
                    .ready_io(Interest::WRITABLE, || {
                        rustix::pipe::splice(
                            &pr,
                            None,
                            sock_fd,
                            None,
                            left,
                            SpliceFlags::MOVE | SpliceFlags::NONBLOCK | SpliceFlags::MORE,
                        )
                        .map_err(io::Error::from)
                    })
                    .await
                    .map_err(|e| ZeroCopyError::transfer("splice", *p, e))?;
                if m == 0 {
                    return Err(ZeroCopyError::transfer("splice", *p, Errno::PIPE.into()));
                }
                p.zero_copy += m as u64;
                left -= m;
            }
        }
        Ok(true)
    }

    /// The async twin of [`Transfer::relay`] between two tokio sockets:
    /// `splice` through a non-blocking pipe, awaiting readability of `src`
    /// and writability of `dst`. Falls back to a copy loop when the kernel
    /// refuses to splice.
    pub async fn relay_async<A: AsyncStream, B: AsyncStream>(
        &self,
        src: &A,
        dst: &B,
        limit: Option<u64>,
    ) -> Result<Progress> {
        ignore_sigpipe();
        let mut p = Progress::default();
        let mut fell_back = false;
        let r = self
            .relay_async_inner(src, dst, limit.unwrap_or(u64::MAX), &mut p, &mut fell_back)
            .await
            .map(|()| p);
        self.record(r, fell_back)
    }

    async fn relay_async_inner<A: AsyncStream, B: AsyncStream>(
        &self,
        src: &A,
        dst: &B,
        limit: u64,
        p: &mut Progress,
        fell_back: &mut bool,
    ) -> Result<()> {
        let (pr, pw) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)
            .map_err(|e| ZeroCopyError::transfer("pipe", *p, e.into()))?;
        let cap = crate::transfer::resize_pipe(&pw, self.get_pipe_size());
        while p.total() < limit {
            let want = usize::try_from(limit - p.total())
                .unwrap_or(usize::MAX)
                .min(cap);
            let r = splice_in_async(src, &pw, want).await;
            let n = match r {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if p.total() == 0 && errno_of(&e).is_some_and(is_unsupported) => {
                    *fell_back = true;
                    return self.copy_stream_async(src, dst, None::<&B>, limit, p).await;
                }
                Err(e) => return Err(ZeroCopyError::transfer("splice", *p, e)),
            };
            drain_pipe_async(&pr, n, dst, p).await?;
        }
        Ok(())
    }

    /// The async twin of [`Transfer::tee`]: duplicates the stream from
    /// `src` into tokio sockets `a` and `b` (until end of stream or `limit`
    /// bytes) with `splice` + `tee` through non-blocking pipes, awaiting
    /// readiness on every socket. Falls back to read + two writes when the
    /// kernel refuses to splice from `src`. The progress counts source
    /// bytes, each delivered to both sinks.
    pub async fn tee_async<S: AsyncStream, A: AsyncStream, B: AsyncStream>(
        &self,
        src: &S,
        a: &A,
        b: &B,
        limit: Option<u64>,
    ) -> Result<Progress> {
        ignore_sigpipe();
        let mut p = Progress::default();
        let mut fell_back = false;
        let r = self
            .tee_async_inner(src, a, b, limit.unwrap_or(u64::MAX), &mut p, &mut fell_back)
            .await
            .map(|()| p);
        self.record(r, fell_back)
    }

    async fn tee_async_inner<S: AsyncStream, A: AsyncStream, B: AsyncStream>(
        &self,
        src: &S,
        a: &A,
        b: &B,
        limit: u64,
        p: &mut Progress,
        fell_back: &mut bool,
    ) -> Result<()> {
        let flags = PipeFlags::CLOEXEC | PipeFlags::NONBLOCK;
        let (r1, w1) = rustix::pipe::pipe_with(flags)
            .map_err(|e| ZeroCopyError::transfer("pipe", *p, e.into()))?;
        let (r2, w2) = rustix::pipe::pipe_with(flags)
            .map_err(|e| ZeroCopyError::transfer("pipe", *p, e.into()))?;
        let cap1 = crate::transfer::resize_pipe(&w1, self.get_pipe_size());
        let cap2 = crate::transfer::resize_pipe(&w2, cap1);
        let cap = cap1.min(cap2);
        while p.total() < limit {
            let want = usize::try_from(limit - p.total())
                .unwrap_or(usize::MAX)
                .min(cap);
            let r = splice_in_async(src, &w1, want).await;
            let n = match r {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if p.total() == 0 && errno_of(&e).is_some_and(is_unsupported) => {
                    *fell_back = true;
                    return self.copy_stream_async(src, a, Some(b), limit, p).await;
                }
                Err(e) => return Err(ZeroCopyError::transfer("splice", *p, e)),
            };
            let mut left = n;
            while left > 0 {
                // `r2` is empty here and as large as `r1`'s contents, so a
                // non-blocking tee between the pipes cannot meet a full pipe.
                let t = match rustix::pipe::tee(&r1, &w2, left, SpliceFlags::NONBLOCK) {
                    Ok(0) => {
                        return Err(ZeroCopyError::transfer(
                            "tee",
                            *p,
                            io::Error::other("tee made no progress"),
                        ));
                    }
                    Ok(t) => t,
                    Err(Errno::INTR) => continue,
                    Err(e) => return Err(ZeroCopyError::transfer("tee", *p, e.into())),
                };
                let mut pb = *p;
                drain_pipe_async(&r1, t, a, p).await?;
                drain_pipe_async(&r2, t, b, &mut pb).await?;
                left -= t;
            }
        }
        Ok(())
    }

    /// Read + write fallback: copies `src` to `a` and, when given, also to `b`.
    async fn copy_stream_async<S: AsyncStream, A: AsyncStream, B: AsyncStream>(
        &self,
        src: &S,
        a: &A,
        b: Option<&B>,
        limit: u64,
        p: &mut Progress,
    ) -> Result<()> {
        let mut buf = vec![0u8; self.get_copy_buffer()];
        let src_fd = src.as_fd();
        while p.total() < limit {
            let want = usize::try_from(limit - p.total())
                .unwrap_or(usize::MAX)
                .min(buf.len());
            let chunk = &mut buf[..want];
            let n = src
                .ready_io(Interest::READABLE, || {
                    rustix::io::read(src_fd, &mut *chunk).map_err(io::Error::from)
                })
                .await
                .map_err(|e| ZeroCopyError::transfer("read", *p, e))?;
            if n == 0 {
                return Ok(());
            }
            let mut pb = *p;
            send_all(a, &buf[..n], p).await?;
            if let Some(b) = b {
                send_all(b, &buf[..n], &mut pb).await?;
            }
        }
        Ok(())
    }

    /// The async twin of [`Transfer::write_all_bytes`]: vectored
    /// `sendmsg(MSG_NOSIGNAL)` of a chain of [`Bytes`] on a tokio socket.
    pub async fn write_all_bytes_async<S: AsyncStream>(
        &self,
        sock: &S,
        chain: &[Bytes],
    ) -> Result<Progress> {
        ignore_sigpipe();
        let mut p = Progress::default();
        let r = async {
            let fd = sock.as_fd();
            let mut index = 0usize;
            let mut offset = 0usize;
            loop {
                while index < chain.len() && offset >= chain[index].len() {
                    index += 1;
                    offset = 0;
                }
                if index >= chain.len() {
                    return Ok(());
                }
                let n = {
                    let iov: Vec<std::io::IoSlice<'_>> = chain[index..]
                        .iter()
                        .take(1024)
                        .enumerate()
                        .map(|(i, b)| {
                            std::io::IoSlice::new(if i == 0 { &b[offset..] } else { &b[..] })
                        })
                        .collect();
                    sock.ready_io(Interest::WRITABLE, || {
                        rustix::net::sendmsg(
                            fd,
                            &iov,
                            &mut rustix::net::SendAncillaryBuffer::default(),
                            SendFlags::NOSIGNAL,
                        )
                        .map_err(io::Error::from)
                    })
                    .await
                    .map_err(|e| ZeroCopyError::transfer("sendmsg", p, e))?
                };
                if n == 0 {
                    return Err(ZeroCopyError::transfer("sendmsg", p, Errno::PIPE.into()));
                }
                p.copied += n as u64;
                let mut n = n;
                while n > 0 && index < chain.len() {
                    let here = chain[index].len() - offset;
                    if n < here {
                        offset += n;
                        n = 0;
                    } else {
                        n -= here;
                        index += 1;
                        offset = 0;
                    }
                }
            }
        }
        .await
        .map(|()| p);
        self.record(r, false)
    }
}
