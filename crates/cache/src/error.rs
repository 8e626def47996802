//! The cache's error type.

use std::time::Duration;

/// Everything that can go wrong in `kuai-cache`.
///
/// Converts into [`kuai_core::Error`]; the kind says what a caller can do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// The builder was given a configuration that cannot work (zero capacity,
    /// zero shards, …).
    #[error("invalid cache configuration: {0}")]
    InvalidConfig(&'static str),
    /// A time-to-live / time-to-idle that is zero or absurdly long.
    #[error("invalid duration {0:?}: must be > 0 and at most {max:?}", max = crate::MAX_TTL)]
    InvalidDuration(Duration),
    /// The weigher returned 0 for an entry (a zero weight would let the cache
    /// grow without bound).
    #[error("the weigher returned 0; weights must be at least 1")]
    ZeroWeight,
    /// An entry weighs more than one shard may hold.
    #[error("entry weight {weight} exceeds the per-shard bound {limit}")]
    TooHeavy {
        /// The entry's weight.
        weight: u64,
        /// What one shard may hold.
        limit: u64,
    },
    /// A load did not finish within the load timeout.
    #[error("load timed out after {0:?}")]
    LoadTimeout(Duration),
    /// The loader panicked; waiters of the same key get this too.
    #[error("the loader panicked: {0}")]
    LoaderPanicked(String),
    /// The loader (or the source behind it) failed; every caller waiting on
    /// the same load gets the source error's kind and message.
    #[error("load failed ({kind}): {message}")]
    LoadFailed {
        /// The kind of the source's error.
        kind: kuai_core::ErrorKind,
        /// Its message.
        message: String,
    },
    /// A fill was refused because the key changed since its lease was taken.
    #[error("stale fill refused: the key was written or invalidated after the read began")]
    StaleFill,
    /// A backing service failed.
    #[error("backend error: {0}")]
    Backend(#[source] kuai_core::Error),
    /// The component was shut down.
    #[error("closed: {0}")]
    Closed(&'static str),
    /// A trace file could not be read or parsed.
    #[error("bad trace: {0}")]
    BadTrace(String),
    /// A compressed trace decompressed to more than the cap (a corrupt file
    /// or a decompression bomb); nothing past the cap was read.
    #[error("trace decompresses to more than {limit} bytes")]
    TraceTooLarge {
        /// The cap, in decompressed bytes.
        limit: u64,
    },
    /// The write-behind buffer is full.
    #[error("write-behind buffer full ({0} pending writes)")]
    WriteBehindFull(usize),
    /// The write-behind journal could not be read or written (the write
    /// was not acknowledged).
    #[error("write-behind journal: {0}")]
    Journal(String),
    /// A cache built with
    /// [`reject_when_full`](crate::CacheBuilder::reject_when_full) refused a
    /// write that would exceed its bound (it evicts nothing).
    #[error("cache full: the write would exceed the bound of {limit}")]
    Full {
        /// The bound that would be exceeded (of the key's shard).
        limit: u64,
    },
}

impl From<CacheError> for kuai_core::Error {
    fn from(err: CacheError) -> Self {
        use kuai_core::Error as E;
        match err {
            CacheError::InvalidConfig(_)
            | CacheError::InvalidDuration(_)
            | CacheError::ZeroWeight
            | CacheError::TooHeavy { .. } => E::invalid_input(err.to_string()),
            CacheError::LoadTimeout(_) => E::timeout(err.to_string()),
            CacheError::StaleFill | CacheError::WriteBehindFull(_) | CacheError::Full { .. } => {
                E::overloaded(err.to_string())
            }
            CacheError::Closed(_) => E::closed(err.to_string()),
            CacheError::Journal(_) => E::backend("write-behind journal", err),
            CacheError::BadTrace(_) | CacheError::TraceTooLarge { .. } => {
                E::corrupt(err.to_string())
            }
            CacheError::Backend(inner) => inner,
            CacheError::LoadFailed { kind, message } => E::new(kind, message),
            CacheError::LoaderPanicked(_) => E::backend("cache load failed", err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kuai_core::ErrorKind;

    #[test]
    fn kinds_map_to_what_a_caller_can_do() {
        let e: kuai_core::Error = CacheError::ZeroWeight.into();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        let e: kuai_core::Error = CacheError::LoadTimeout(Duration::from_millis(5)).into();
        assert_eq!(e.kind(), ErrorKind::Timeout);
        let e: kuai_core::Error = CacheError::LoaderPanicked("boom".into()).into();
        assert_eq!(e.kind(), ErrorKind::Backend);
        let e: kuai_core::Error = CacheError::Backend(kuai_core::Error::not_found("x")).into();
        assert_eq!(e.kind(), ErrorKind::NotFound);
    }
}
