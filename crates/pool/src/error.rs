//! The crate's error type and its mapping onto `kuai_core::Error`.

use std::time::Duration;

/// Everything that can go wrong in this crate's pools.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// A pool was configured inconsistently (caught when it is built).
    #[error("invalid pool configuration: {0}")]
    Config(String),
    /// No connection became available within the acquire timeout.
    #[error("timed out after {0:?} waiting for a pooled resource")]
    Timeout(Duration),
    /// The thread pool's queue and threads are full and the rejection policy
    /// is `Abort`.
    #[error("task rejected: {0}")]
    Rejected(&'static str),
    /// The pool has been shut down or closed.
    #[error("pool is closed")]
    Closed,
    /// No isolation group of that name exists.
    #[error("no isolation group named {0:?}")]
    UnknownGroup(String),
    /// A task submitted with `ThreadPool::submit` panicked.
    #[error("task panicked")]
    Panicked,
    /// The manager failed to open or check a resource.
    #[error("backend failed: {0}")]
    Backend(#[source] kuai_core::Error),
}

impl From<PoolError> for kuai_core::Error {
    fn from(err: PoolError) -> Self {
        use kuai_core::{Error, ErrorKind};
        let message = err.to_string();
        match err {
            PoolError::Config(_) => Error::new(ErrorKind::InvalidInput, message),
            PoolError::Timeout(_) => Error::new(ErrorKind::Timeout, message),
            PoolError::Rejected(_) => Error::new(ErrorKind::Overloaded, message),
            PoolError::Closed => Error::new(ErrorKind::Closed, message),
            PoolError::UnknownGroup(_) => Error::new(ErrorKind::NotFound, message),
            PoolError::Panicked => Error::new(ErrorKind::Backend, message),
            PoolError::Backend(source) => {
                // Keep the manager's own kind (a connect that timed out is a
                // Timeout), and its message as the source.
                let kind = source.kind();
                Error::with_source(kind, "pooled resource failed", source)
            }
        }
    }
}

/// A `Result` whose error is [`PoolError`].
pub type PoolResult<T> = std::result::Result<T, PoolError>;

#[cfg(test)]
mod tests {
    use super::*;
    use kuai_core::ErrorKind;

    #[test]
    fn kinds_map_to_what_a_caller_can_do() {
        let cases = [
            (PoolError::Config("x".into()), ErrorKind::InvalidInput),
            (
                PoolError::Timeout(Duration::from_millis(5)),
                ErrorKind::Timeout,
            ),
            (PoolError::Rejected("full"), ErrorKind::Overloaded),
            (PoolError::Closed, ErrorKind::Closed),
            (PoolError::UnknownGroup("g".into()), ErrorKind::NotFound),
            (PoolError::Panicked, ErrorKind::Backend),
            (
                PoolError::Backend(kuai_core::Error::backend("redis", "refused")),
                ErrorKind::Backend,
            ),
        ];
        for (err, kind) in cases {
            assert_eq!(kuai_core::Error::from(err).kind(), kind);
        }
    }
}
