//! The crate's error type and the partial progress every transfer error carries.

use std::io;
use std::path::PathBuf;

use crate::progress::Progress;

/// A specialised `Result` whose error is [`ZeroCopyError`].
pub type Result<T, E = ZeroCopyError> = std::result::Result<T, E>;

/// Everything that can go wrong in `kuai-zerocopy`.
///
/// Transfer errors carry the [`Progress`] made before the failure, so a
/// caller can resume or account for partially sent data
/// ([`ZeroCopyError::progress`]). Converts into [`kuai_core::Error`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ZeroCopyError {
    /// The path does not exist.
    #[error("{}: no such file", path.display())]
    NotFound {
        /// The path that was asked for.
        path: PathBuf,
    },
    /// The path is a directory, not a file.
    #[error("{}: is a directory", path.display())]
    IsDirectory {
        /// The path that was asked for.
        path: PathBuf,
    },
    /// The operating system refused access.
    #[error("{}: permission denied", path.display())]
    PermissionDenied {
        /// The path that was asked for.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The path names a FIFO, socket or device, which cannot be mapped or
    /// served by offset.
    #[error("{}: not a regular file ({kind})", path.display())]
    NotRegularFile {
        /// The path that was asked for.
        path: PathBuf,
        /// What it is instead (`"fifo"`, `"socket"`, `"character device"`, …).
        kind: &'static str,
    },
    /// Another handle holds a conflicting advisory lock (for example a
    /// [`MappedFile`](crate::MappedFile) still maps the file that is being
    /// truncated).
    #[error("{}: busy, {why}", path.display())]
    Busy {
        /// The path that was asked for.
        path: PathBuf,
        /// What holds it.
        why: &'static str,
    },
    /// The peer closed the connection (`EPIPE`, `ECONNRESET`) mid-transfer.
    #[error("peer closed the connection after {} bytes: {source}", progress.total())]
    PeerClosed {
        /// What was delivered before the peer went away.
        progress: Progress,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The source ended (end of file, or the file shrank) before `expected`
    /// bytes were transferred.
    #[error("source ended after {} of {expected} bytes", progress.total())]
    UnexpectedEof {
        /// What was delivered before the source ran dry.
        progress: Progress,
        /// How many bytes were asked for.
        expected: u64,
    },
    /// A system call failed.
    #[error("{op} failed after {} bytes: {source}", progress.total())]
    Io {
        /// The operation (`"sendfile"`, `"splice"`, `"mmap"`, …).
        op: &'static str,
        /// What was delivered before the failure.
        progress: Progress,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The caller passed an invalid argument (a range past the end, a zero
    /// capacity, …).
    #[error("invalid input: {0}")]
    InvalidInput(String),
}

impl ZeroCopyError {
    /// The progress made before the error (zero for errors that are not
    /// about a transfer).
    pub fn progress(&self) -> Progress {
        match self {
            ZeroCopyError::PeerClosed { progress, .. }
            | ZeroCopyError::UnexpectedEof { progress, .. }
            | ZeroCopyError::Io { progress, .. } => *progress,
            _ => Progress::default(),
        }
    }

    /// Classifies an I/O error from a transfer: a vanished peer becomes
    /// [`ZeroCopyError::PeerClosed`], anything else [`ZeroCopyError::Io`].
    pub(crate) fn transfer(op: &'static str, progress: Progress, source: io::Error) -> Self {
        match source.raw_os_error() {
            Some(libc::EPIPE) | Some(libc::ECONNRESET) | Some(libc::ENOTCONN) => {
                ZeroCopyError::PeerClosed { progress, source }
            }
            _ => ZeroCopyError::Io {
                op,
                progress,
                source,
            },
        }
    }

    /// An I/O error outside a transfer.
    pub(crate) fn io(op: &'static str, source: io::Error) -> Self {
        ZeroCopyError::Io {
            op,
            progress: Progress::default(),
            source,
        }
    }

    /// Classifies an error from opening or inspecting `path`.
    pub(crate) fn open(path: &std::path::Path, op: &'static str, source: io::Error) -> Self {
        let path = path.to_path_buf();
        match source.kind() {
            io::ErrorKind::NotFound => ZeroCopyError::NotFound { path },
            io::ErrorKind::PermissionDenied => ZeroCopyError::PermissionDenied { path, source },
            _ if source.raw_os_error() == Some(libc::EISDIR) => ZeroCopyError::IsDirectory { path },
            _ => ZeroCopyError::Io {
                op,
                progress: Progress::default(),
                source,
            },
        }
    }
}

impl From<ZeroCopyError> for kuai_core::Error {
    fn from(e: ZeroCopyError) -> Self {
        use kuai_core::ErrorKind;
        let kind = match &e {
            ZeroCopyError::NotFound { .. } => ErrorKind::NotFound,
            ZeroCopyError::IsDirectory { .. }
            | ZeroCopyError::NotRegularFile { .. }
            | ZeroCopyError::InvalidInput(_) => ErrorKind::InvalidInput,
            ZeroCopyError::Busy { .. } => ErrorKind::Overloaded,
            ZeroCopyError::PeerClosed { .. } | ZeroCopyError::UnexpectedEof { .. } => {
                ErrorKind::Closed
            }
            ZeroCopyError::PermissionDenied { .. } | ZeroCopyError::Io { .. } => ErrorKind::Backend,
        };
        let message = e.to_string();
        kuai_core::Error::with_source(kind, message, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kuai_core::ErrorKind;

    #[test]
    fn peer_errors_are_classified() {
        let p = Progress {
            zero_copy: 10,
            copied: 5,
        };
        let e = ZeroCopyError::transfer("sendfile", p, io::Error::from_raw_os_error(libc::EPIPE));
        assert!(matches!(e, ZeroCopyError::PeerClosed { .. }));
        assert_eq!(e.progress().total(), 15);
        let core: kuai_core::Error = e.into();
        assert_eq!(core.kind(), ErrorKind::Closed);

        let e = ZeroCopyError::transfer("splice", p, io::Error::from_raw_os_error(libc::EIO));
        assert!(matches!(e, ZeroCopyError::Io { op: "splice", .. }));
        assert_eq!(kuai_core::Error::from(e).kind(), ErrorKind::Backend);
    }

    #[test]
    fn open_errors_are_classified() {
        let p = std::path::Path::new("/x");
        let e = ZeroCopyError::open(p, "open", io::Error::from_raw_os_error(libc::ENOENT));
        assert_eq!(kuai_core::Error::from(e).kind(), ErrorKind::NotFound);
        let e = ZeroCopyError::open(p, "open", io::Error::from_raw_os_error(libc::EISDIR));
        assert!(matches!(e, ZeroCopyError::IsDirectory { .. }));
        let e = ZeroCopyError::open(p, "open", io::Error::from_raw_os_error(libc::EACCES));
        assert!(matches!(e, ZeroCopyError::PermissionDenied { .. }));
    }
}
