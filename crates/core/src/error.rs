//! The error model shared by every kuai crate.

use std::fmt;

/// A specialised `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a caller can do about a failure.
///
/// Every kuai crate's error type converts into [`Error`], whose kind is one of
/// these. The kind is the contract; the message is for humans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A deadline passed before the operation finished. Retrying may help.
    Timeout,
    /// The operation was shed or rejected because a bound was reached.
    /// Retry later, with backoff.
    Overloaded,
    /// The resource was closed or shut down. Retrying the same handle will not help.
    Closed,
    /// Bad input or damaged data. Never retried: the same bytes fail again.
    Corrupt,
    /// The thing asked for does not exist.
    NotFound,
    /// A backing service (database, cache server, broker, the OS) failed; the
    /// source error is kept.
    Backend,
    /// The caller misused the API (an invalid configuration or argument).
    InvalidInput,
}

impl ErrorKind {
    /// A short, stable, lower-case name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Timeout => "timeout",
            ErrorKind::Overloaded => "overloaded",
            ErrorKind::Closed => "closed",
            ErrorKind::Corrupt => "corrupt",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Backend => "backend",
            ErrorKind::InvalidInput => "invalid_input",
        }
    }

    /// Whether retrying the same operation later can succeed.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::Timeout | ErrorKind::Overloaded | ErrorKind::Backend
        )
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The error every kuai crate's own error converts into.
///
/// ```
/// use kuai_core::{Error, ErrorKind};
/// let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
/// let err = Error::backend("connecting to redis", io);
/// assert_eq!(err.kind(), ErrorKind::Backend);
/// assert!(std::error::Error::source(&err).is_some());
/// ```
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<BoxError>,
}

impl Error {
    /// An error of `kind` with a message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// An error of `kind` with a message and the underlying cause.
    pub fn with_source(
        kind: ErrorKind,
        message: impl Into<String>,
        source: impl Into<BoxError>,
    ) -> Self {
        Error {
            kind,
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// [`ErrorKind::Timeout`].
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Timeout, message)
    }
    /// [`ErrorKind::Overloaded`].
    pub fn overloaded(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Overloaded, message)
    }
    /// [`ErrorKind::Closed`].
    pub fn closed(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Closed, message)
    }
    /// [`ErrorKind::Corrupt`].
    pub fn corrupt(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Corrupt, message)
    }
    /// [`ErrorKind::NotFound`].
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    /// [`ErrorKind::InvalidInput`].
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }
    /// [`ErrorKind::Backend`], keeping the service's error as the source.
    pub fn backend(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::with_source(ErrorKind::Backend, message, source)
    }

    /// What the caller can do about it.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The human-readable message (without the source chain).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether retrying later can succeed (see [`ErrorKind::is_retryable`]).
    pub fn is_retryable(&self) -> bool {
        self.kind.is_retryable()
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind).field("message", &self.message);
        if let Some(source) = &self.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<std::io::Error> for Error {
    /// I/O errors map by their kind: timeouts to `Timeout`, bad data to
    /// `Corrupt`, missing files to `NotFound`, everything else to `Backend`.
    fn from(err: std::io::Error) -> Self {
        use std::io::ErrorKind as Io;
        let kind = match err.kind() {
            Io::TimedOut | Io::WouldBlock => ErrorKind::Timeout,
            Io::InvalidData | Io::UnexpectedEof => ErrorKind::Corrupt,
            Io::NotFound => ErrorKind::NotFound,
            Io::InvalidInput => ErrorKind::InvalidInput,
            Io::BrokenPipe | Io::ConnectionReset | Io::ConnectionAborted => ErrorKind::Closed,
            _ => ErrorKind::Backend,
        };
        Error::with_source(kind, "i/o error", err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_includes_kind_message_and_source() {
        let err = Error::backend("query failed", std::io::Error::other("boom"));
        assert_eq!(err.to_string(), "backend: query failed: boom");
        assert_eq!(err.message(), "query failed");
    }

    #[test]
    fn io_errors_map_by_kind() {
        let cases = [
            (std::io::ErrorKind::TimedOut, ErrorKind::Timeout),
            (std::io::ErrorKind::UnexpectedEof, ErrorKind::Corrupt),
            (std::io::ErrorKind::NotFound, ErrorKind::NotFound),
            (std::io::ErrorKind::BrokenPipe, ErrorKind::Closed),
            (std::io::ErrorKind::PermissionDenied, ErrorKind::Backend),
        ];
        for (io, want) in cases {
            assert_eq!(Error::from(std::io::Error::from(io)).kind(), want, "{io:?}");
        }
    }

    #[test]
    fn only_transient_kinds_are_retryable() {
        assert!(ErrorKind::Timeout.is_retryable());
        assert!(ErrorKind::Overloaded.is_retryable());
        assert!(ErrorKind::Backend.is_retryable());
        assert!(!ErrorKind::Corrupt.is_retryable());
        assert!(!ErrorKind::Closed.is_retryable());
        assert!(!ErrorKind::NotFound.is_retryable());
        assert!(!ErrorKind::InvalidInput.is_retryable());
    }

    #[test]
    fn error_is_send_sync_static() {
        fn assert_bounds<T: Send + Sync + 'static>() {}
        assert_bounds::<Error>();
    }
}
