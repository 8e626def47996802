//! Blocking-style I/O helpers over raw fds that also work on non-blocking
//! fds: `EAGAIN` waits for readiness with `poll(2)` instead of spinning,
//! `EINTR` retries, and writes to sockets use `MSG_NOSIGNAL`.

use std::io::IoSlice;
use std::os::fd::BorrowedFd;

use rustix::event::{PollFd, PollFlags};
use rustix::io::Errno;
use rustix::net::SendFlags;

/// Waits until `fd` is ready for `flags` (readable or writable). Errors and
/// hang-ups count as ready: the next call reports them.
pub(crate) fn wait_ready(fd: BorrowedFd<'_>, flags: PollFlags) -> Result<(), Errno> {
    loop {
        let mut fds = [PollFd::new(&fd, flags)];
        match rustix::event::poll(&mut fds, None) {
            Ok(_) => return Ok(()),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Whether an error from a zero-copy call means "this kernel or this pair
/// of fd types cannot do that": the caller falls back to copying.
pub(crate) fn is_unsupported(e: Errno) -> bool {
    matches!(
        e,
        Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP | Errno::XDEV
    )
}

/// A destination fd: a socket (written with `send`/`sendmsg` +
/// `MSG_NOSIGNAL`) or anything else (`write`/`writev`).
#[derive(Clone, Copy)]
pub(crate) struct Sink<'a> {
    pub(crate) fd: BorrowedFd<'a>,
    socket: bool,
}

impl<'a> Sink<'a> {
    /// Inspects `fd` once (`fstat`) to learn whether it is a socket.
    pub(crate) fn new(fd: BorrowedFd<'a>) -> Result<Self, Errno> {
        let st = rustix::fs::fstat(fd)?;
        let socket =
            rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Socket;
        Ok(Sink { fd, socket })
    }

    /// Whether the fd is a socket.
    pub(crate) fn is_socket(&self) -> bool {
        self.socket
    }

    /// One write attempt, retried on `EINTR` and `EAGAIN` (after waiting).
    pub(crate) fn write(&self, buf: &[u8]) -> Result<usize, Errno> {
        loop {
            let r = if self.socket {
                rustix::net::send(self.fd, buf, SendFlags::NOSIGNAL)
            } else {
                rustix::io::write(self.fd, buf)
            };
            match r {
                Err(Errno::INTR) => continue,
                Err(Errno::AGAIN) => wait_ready(self.fd, PollFlags::OUT)?,
                other => return other,
            }
        }
    }

    /// One vectored write attempt, retried like [`Sink::write`].
    pub(crate) fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> Result<usize, Errno> {
        loop {
            let r = if self.socket {
                rustix::net::sendmsg(
                    self.fd,
                    bufs,
                    &mut rustix::net::SendAncillaryBuffer::default(),
                    SendFlags::NOSIGNAL,
                )
            } else {
                rustix::io::writev(self.fd, bufs)
            };
            match r {
                Err(Errno::INTR) => continue,
                Err(Errno::AGAIN) => wait_ready(self.fd, PollFlags::OUT)?,
                other => return other,
            }
        }
    }

    /// Writes all of `buf`, calling `on_progress` after each partial write
    /// so the caller's progress is exact when a later write fails.
    pub(crate) fn write_all(
        &self,
        mut buf: &[u8],
        mut on_progress: impl FnMut(usize),
    ) -> Result<(), Errno> {
        while !buf.is_empty() {
            let n = self.write(buf)?;
            if n == 0 {
                return Err(Errno::PIPE);
            }
            on_progress(n);
            buf = &buf[n..];
        }
        Ok(())
    }
}

/// One read attempt from `fd`, retried on `EINTR` and `EAGAIN`.
pub(crate) fn read_some(fd: BorrowedFd<'_>, buf: &mut [u8]) -> Result<usize, Errno> {
    loop {
        match rustix::io::read(fd, &mut *buf) {
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) => wait_ready(fd, PollFlags::IN)?,
            other => return other,
        }
    }
}
