//! The crate's error type.

use kuai_core::ErrorKind;

/// Everything that can go wrong in `kuai-shard`.
///
/// Construction errors (bad node sets, bad ranges) are detected up front, so a
/// partitioner that was built never fails a lookup.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShardError {
    /// A partitioner or assignment was given no nodes / partitions.
    #[error("empty node set: {0}")]
    EmptyNodeSet(&'static str),
    /// Two nodes share an id.
    #[error("duplicate node id {0:?}")]
    DuplicateNode(String),
    /// A node has weight zero.
    #[error("node {0:?} has weight zero")]
    ZeroWeight(String),
    /// A node id that is not part of the set.
    #[error("unknown node {0:?}")]
    UnknownNode(String),
    /// Range boundaries are not strictly increasing.
    #[error("ranges are not sorted: boundary {index} is not greater than the one before it")]
    UnsortedRanges {
        /// Index of the offending boundary or range.
        index: usize,
    },
    /// Two ranges overlap.
    #[error("range {index} overlaps the range before it")]
    OverlappingRanges {
        /// Index of the offending range.
        index: usize,
    },
    /// Ranges leave a gap (some keys would have no partition).
    #[error("gap between range {index} and the range before it")]
    RangeGap {
        /// Index of the range after the gap.
        index: usize,
    },
    /// An empty range (`start >= end`).
    #[error("range {index} is empty")]
    EmptyRange {
        /// Index of the empty range.
        index: usize,
    },
    /// A split point that is not strictly inside the range being split.
    #[error("split point is outside range {range}")]
    SplitOutOfRange {
        /// The range that was asked to split.
        range: usize,
    },
    /// A partition/range index past the end.
    #[error("index {index} out of bounds (len {len})")]
    OutOfBounds {
        /// The index asked for.
        index: usize,
        /// How many there are.
        len: usize,
    },
    /// A slot table that leaves slots unowned or owns one twice.
    #[error("slot table invalid: {0}")]
    InvalidSlots(String),
    /// A configuration value that makes no sense.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// A routing table older than the one already held.
    #[error("routing table epoch {offered} is older than the current epoch {current}")]
    StaleTable {
        /// The epoch offered.
        offered: u64,
        /// The epoch held.
        current: u64,
    },
    /// A migration is not finished (some partitions not cut over).
    #[error("migration incomplete: {remaining} partitions not cut over")]
    MigrationIncomplete {
        /// Partitions still moving.
        remaining: usize,
    },
    /// Too many redirects for one request.
    #[error("too many redirects ({0})")]
    TooManyRedirects(u32),
    /// A scatter-gather query missed its deadline on the named shards.
    #[error("deadline passed; shards {0:?} did not answer")]
    Deadline(Vec<usize>),
    /// Some shards failed and the policy is to fail the whole query.
    #[error("shards failed: {0:?}")]
    ShardsFailed(Vec<(usize, String)>),
    /// The worker pool has shut down.
    #[error("worker pool closed")]
    PoolClosed,
    /// A backing service failed.
    #[error("backend: {0}")]
    Backend(String),
}

impl ShardError {
    /// The `kuai_core` kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ShardError::Deadline(_) => ErrorKind::Timeout,
            ShardError::PoolClosed => ErrorKind::Closed,
            ShardError::ShardsFailed(_) | ShardError::Backend(_) => ErrorKind::Backend,
            ShardError::TooManyRedirects(_) | ShardError::StaleTable { .. } => {
                ErrorKind::Overloaded
            }
            ShardError::MigrationIncomplete { .. } => ErrorKind::InvalidInput,
            _ => ErrorKind::InvalidInput,
        }
    }
}

impl From<ShardError> for kuai_core::Error {
    fn from(e: ShardError) -> Self {
        kuai_core::Error::new(e.kind(), e.to_string())
    }
}

/// `Result` with [`ShardError`].
pub type ShardResult<T> = std::result::Result<T, ShardError>;
