//! The crate's error type and its mapping onto [`kuai_core::ErrorKind`].

use std::io;

/// Everything that can go wrong in `kuai-queue`.
///
/// Converts into [`kuai_core::Error`], whose kind tells the caller what to do:
/// `Full`/`Overloaded` → retry later, `Corrupt` → never retry, `Io` →
/// `Backend` with the OS error kept as the source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// A bounded queue is at capacity.
    #[error("queue is full")]
    Full,
    /// The queue, log or broker was closed.
    #[error("closed")]
    Closed,
    /// Waiting took longer than the caller allowed.
    #[error("timed out")]
    Timeout,
    /// Shed by flow control (the reason names which bound).
    #[error("overloaded: {0}")]
    Overloaded(&'static str),
    /// A request's deadline passed while it waited in the queue; it was
    /// dropped without being served.
    #[error("deadline passed while queued; dropped before being served")]
    Expired,
    /// A message larger than the configured maximum.
    #[error("message of {size} bytes exceeds the limit of {max} bytes")]
    Oversized {
        /// Size of the rejected message.
        size: usize,
        /// The configured maximum.
        max: usize,
    },
    /// Damaged data: a CRC mismatch or an impossible header.
    #[error("corrupt record at offset {offset}: {reason}")]
    Corrupt {
        /// The log offset whose record is damaged.
        offset: u64,
        /// What was wrong.
        reason: String,
    },
    /// An offset outside the log's retained range.
    #[error("offset {offset} is outside the log's range [{start}, {end})")]
    OutOfRange {
        /// The offset asked for.
        offset: u64,
        /// The first retained offset.
        start: u64,
        /// One past the last durable offset.
        end: u64,
    },
    /// An earlier write or fsync failed; the log refuses further writes
    /// (fail-stop) until it is reopened, which re-validates the tail.
    #[error("log stopped after an earlier write failure: {0}")]
    Failed(String),
    /// An operating-system error.
    #[error("i/o error while {context}")]
    Io {
        /// What the log was doing.
        context: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A configuration or argument the API cannot accept.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// Something asked for does not exist (a transaction, a topic, a task).
    #[error("not found: {0}")]
    NotFound(String),
    /// A remote broker failed.
    #[error("broker error: {0}")]
    Backend(String),
}

impl QueueError {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        QueueError::Io {
            context: context.into(),
            source,
        }
    }
}

impl From<QueueError> for kuai_core::Error {
    fn from(err: QueueError) -> Self {
        use kuai_core::{Error, ErrorKind};
        let msg = err.to_string();
        match err {
            QueueError::Full | QueueError::Overloaded(_) => Error::overloaded(msg),
            QueueError::Closed => Error::closed(msg),
            QueueError::Timeout | QueueError::Expired => Error::timeout(msg),
            QueueError::Oversized { .. } | QueueError::InvalidInput(_) => Error::invalid_input(msg),
            QueueError::Corrupt { .. } => Error::corrupt(msg),
            QueueError::OutOfRange { .. } | QueueError::NotFound(_) => Error::not_found(msg),
            QueueError::Io { context, source } => {
                Error::with_source(ErrorKind::Backend, context, source)
            }
            QueueError::Failed(_) | QueueError::Backend(_) => Error::new(ErrorKind::Backend, msg),
        }
    }
}

/// A `Result` whose error is [`QueueError`].
pub type QueueResult<T> = std::result::Result<T, QueueError>;

#[cfg(test)]
mod tests {
    use super::*;
    use kuai_core::ErrorKind;

    #[test]
    fn kinds_map_to_what_a_caller_can_do() {
        let cases: Vec<(QueueError, ErrorKind)> = vec![
            (QueueError::Full, ErrorKind::Overloaded),
            (QueueError::Overloaded("rate"), ErrorKind::Overloaded),
            (QueueError::Closed, ErrorKind::Closed),
            (QueueError::Expired, ErrorKind::Timeout),
            (
                QueueError::Oversized { size: 2, max: 1 },
                ErrorKind::InvalidInput,
            ),
            (
                QueueError::Corrupt {
                    offset: 7,
                    reason: "crc".into(),
                },
                ErrorKind::Corrupt,
            ),
            (
                QueueError::OutOfRange {
                    offset: 9,
                    start: 0,
                    end: 3,
                },
                ErrorKind::NotFound,
            ),
            (
                QueueError::io("writing", io::Error::other("disk")),
                ErrorKind::Backend,
            ),
            (QueueError::Failed("x".into()), ErrorKind::Backend),
        ];
        for (e, kind) in cases {
            let text = e.to_string();
            let core: kuai_core::Error = e.into();
            assert_eq!(core.kind(), kind, "{text}");
        }
    }
}
