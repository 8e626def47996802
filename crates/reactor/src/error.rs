//! The crate's error type and its mapping onto [`kuai_core::ErrorKind`].

use std::sync::Arc;

use kuai_core::ErrorKind;

/// Everything that can go wrong in `kuai-reactor`.
///
/// Converts into [`kuai_core::Error`]; the kind says what a caller can do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReactorError {
    /// The operating system refused an I/O operation.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A frame declared a length above the configured maximum.
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    FrameTooLarge {
        /// The declared length.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
    /// A request arrived with the error flag set (only servers send error frames).
    #[error("a client sent an error frame")]
    UnexpectedErrorFrame,
    /// The peer answered with an error frame carrying this message.
    #[error("remote error: {0}")]
    Remote(String),
    /// The connection or component was closed.
    #[error("closed: {0}")]
    Closed(&'static str),
    /// A bound was reached and the work was refused (shed).
    #[error("overloaded: {0}")]
    Overloaded(&'static str),
    /// A deadline passed.
    #[error("timed out: {0}")]
    Timeout(&'static str),
    /// A handler panicked; the request was dropped, the server lives on.
    #[error("handler panicked")]
    Panicked,
    /// A batch load failed; every caller in the batch sees the same cause.
    #[error("batch failed: {0}")]
    BatchFailed(Arc<dyn std::error::Error + Send + Sync + 'static>),
    /// A configuration value was out of range.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
}

impl ReactorError {
    /// The [`ErrorKind`] this error maps to.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ReactorError::Io(e) => match e.kind() {
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => ErrorKind::Timeout,
                std::io::ErrorKind::UnexpectedEof
                | std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::BrokenPipe
                | std::io::ErrorKind::ConnectionAborted => ErrorKind::Closed,
                _ => ErrorKind::Backend,
            },
            ReactorError::FrameTooLarge { .. } | ReactorError::UnexpectedErrorFrame => {
                ErrorKind::Corrupt
            }
            ReactorError::Remote(_) | ReactorError::Panicked | ReactorError::BatchFailed(_) => {
                ErrorKind::Backend
            }
            ReactorError::Closed(_) => ErrorKind::Closed,
            ReactorError::Overloaded(_) => ErrorKind::Overloaded,
            ReactorError::Timeout(_) => ErrorKind::Timeout,
            ReactorError::InvalidConfig(_) => ErrorKind::InvalidInput,
        }
    }
}

impl From<ReactorError> for kuai_core::Error {
    fn from(err: ReactorError) -> Self {
        let kind = err.kind();
        let message = err.to_string();
        kuai_core::Error::with_source(kind, message, err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_what_callers_can_do() {
        let e: kuai_core::Error = ReactorError::FrameTooLarge { len: 9, max: 4 }.into();
        assert_eq!(e.kind(), ErrorKind::Corrupt);
        assert!(e.to_string().contains("exceeds"));
        let e: kuai_core::Error = ReactorError::Overloaded("full").into();
        assert_eq!(e.kind(), ErrorKind::Overloaded);
        let eof = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "eof");
        assert_eq!(ReactorError::from(eof).kind(), ErrorKind::Closed);
        assert_eq!(ReactorError::Timeout("x").kind(), ErrorKind::Timeout);
        assert_eq!(ReactorError::Panicked.kind(), ErrorKind::Backend);
        assert_eq!(
            ReactorError::InvalidConfig("threads".into()).kind(),
            ErrorKind::InvalidInput
        );
    }
}
