//! The crate's error type and its mapping onto [`kuai_core::ErrorKind`].

use std::time::Duration;

use kuai_core::{Error, ErrorKind};

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in `kuai-store`.
///
/// Converts into [`kuai_core::Error`]; the kind tells a caller what to do:
/// the primary being down is [`ErrorKind::Backend`], a bad session token is
/// [`ErrorKind::Corrupt`], a full fan-out queue is [`ErrorKind::Overloaded`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The primary failed or did not answer in time. Reads and writes that
    /// need the primary cannot be served.
    #[error("primary {node} unavailable: {what}")]
    PrimaryUnavailable {
        /// The node's name.
        node: String,
        /// What was being done.
        what: String,
        /// The underlying failure (a timeout or the driver's error).
        #[source]
        source: Option<BoxError>,
    },
    /// A node refused an operation (a constraint violation, bad SQL, a
    /// write to a read-only replica…). The kind is the node's own.
    #[error("node {node}: {what}: {source}")]
    Rejected {
        /// The node's name.
        node: String,
        /// What was being done.
        what: String,
        /// The node's error, whose kind this error keeps.
        #[source]
        source: Error,
    },
    /// An operation took longer than its bound.
    #[error("{what} timed out after {after:?}")]
    Timeout {
        /// What was being done.
        what: String,
        /// The bound.
        after: Duration,
    },
    /// A session token failed validation (bad format, bad signature, or an
    /// impossible state). Never trusted: the caller should treat the
    /// session as unknown and read from the primary.
    #[error("invalid session token: {0}")]
    BadToken(&'static str),
    /// A cursor failed validation.
    #[error("invalid cursor: {0}")]
    BadCursor(&'static str),
    /// A bounded queue is full; retry later.
    #[error("{0} is full")]
    Full(&'static str),
    /// The component was shut down.
    #[error("{0} is closed")]
    Closed(&'static str),
    /// Stored data failed validation.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// A configuration or argument is invalid.
    #[error("invalid argument: {0}")]
    InvalidInput(String),
    /// A thing that was asked for does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The clock went backwards further than the id generator tolerates.
    #[error("clock moved backwards by {0:?}, beyond the tolerated drift")]
    ClockBackwards(Duration),
    /// An I/O error (file-backed tiers).
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl StoreError {
    /// The shared error kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            StoreError::PrimaryUnavailable { .. } => ErrorKind::Backend,
            StoreError::Rejected { source, .. } => source.kind(),
            StoreError::Timeout { .. } => ErrorKind::Timeout,
            StoreError::BadToken(_) | StoreError::BadCursor(_) | StoreError::Corrupt(_) => {
                ErrorKind::Corrupt
            }
            StoreError::Full(_) | StoreError::ClockBackwards(_) => ErrorKind::Overloaded,
            StoreError::Closed(_) => ErrorKind::Closed,
            StoreError::InvalidInput(_) => ErrorKind::InvalidInput,
            StoreError::NotFound(_) => ErrorKind::NotFound,
            StoreError::Io(e) => Error::from(std::io::Error::new(e.kind(), "")).kind(),
        }
    }
}

impl From<StoreError> for Error {
    fn from(err: StoreError) -> Self {
        let kind = err.kind();
        Error::with_source(kind, err.to_string(), err)
    }
}

/// A node's refusal, keeping its kind.
pub(crate) fn node_error(node: &str, what: &str, err: Error) -> StoreError {
    StoreError::Rejected {
        node: node.to_string(),
        what: what.to_string(),
        source: err,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_say_what_a_caller_can_do() {
        let primary = StoreError::PrimaryUnavailable {
            node: "pg".into(),
            what: "write".into(),
            source: None,
        };
        assert_eq!(Error::from(primary).kind(), ErrorKind::Backend);
        assert_eq!(
            Error::from(StoreError::BadToken("mac")).kind(),
            ErrorKind::Corrupt
        );
        assert_eq!(
            Error::from(StoreError::Full("fan-out queue")).kind(),
            ErrorKind::Overloaded
        );
        let t = StoreError::Timeout {
            what: "read".into(),
            after: Duration::from_millis(5),
        };
        assert_eq!(Error::from(t).kind(), ErrorKind::Timeout);
        let io = StoreError::from(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
        assert_eq!(io.kind(), ErrorKind::Corrupt);
    }
}
