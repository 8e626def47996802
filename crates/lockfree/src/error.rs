//! The crate's error type.

/// What can go wrong when building a structure of this crate.
///
/// Operations on built structures do not fail: a full [`ArrayQueue`]
/// hands the value back instead.
///
/// [`ArrayQueue`]: crate::ArrayQueue
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LockfreeError {
    /// A bounded structure was asked for capacity 0.
    #[error("capacity must be at least 1")]
    ZeroCapacity,
    /// The requested capacity cannot be represented or allocated.
    #[error("capacity {requested} is too large")]
    CapacityTooLarge {
        /// The capacity that was asked for.
        requested: usize,
    },
}

impl From<LockfreeError> for kuai_core::Error {
    fn from(e: LockfreeError) -> Self {
        kuai_core::Error::invalid_input(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_to_invalid_input() {
        let e: kuai_core::Error = LockfreeError::ZeroCapacity.into();
        assert_eq!(e.kind(), kuai_core::ErrorKind::InvalidInput);
        assert!(e.message().contains("at least 1"));
    }
}
