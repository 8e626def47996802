//! Composite partitioning: hash one part of the key, range the other.

use std::ops::Range;

use kuai_core::{PartitionId, Partitioner};

use crate::range::RangePartitioner;

/// Composite partitioning over `(A, B)` keys: `outer` places the first part
/// (usually hashed: a user id, an anchor id), `inner` places the second
/// (usually ranged: a timestamp). Partition = `outer * inner_count + inner`.
///
/// This is the "(user_id, pub_time)" layout of timelines and feeds: one
/// user's posts in a time window live in one hash group and a contiguous run
/// of time ranges, so the query touches a handful of partitions instead of
/// scattering to all of them.
///
/// ```
/// use kuai_core::Partitioner;
/// use kuai_shard::{Composite, JumpHash, RangePartitioner};
/// let by_month = RangePartitioner::from_split_points(vec![202402u32, 202403, 202404])?;
/// let p = Composite::new(JumpHash::new(8)?, by_month);
/// assert_eq!(Partitioner::<(u64, u32)>::partition_count(&p), 32);
/// let part = p.partition(&(42u64, 202403));
/// let scan = p.partitions_for_range(&42u64, &(202402..202404));
/// assert_eq!(scan.len(), 2);
/// assert!(scan.contains(&part));
/// # Ok::<(), kuai_shard::ShardError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Composite<O, I> {
    outer: O,
    inner: I,
}

impl<O, I> Composite<O, I> {
    /// Combines an outer and an inner partitioner.
    pub fn new(outer: O, inner: I) -> Self {
        Composite { outer, inner }
    }

    /// Like [`new`](Self::new), but fails if `outer × inner` partitions do
    /// not fit in a `u32`.
    pub fn checked<A, B>(outer: O, inner: I) -> crate::error::ShardResult<Self>
    where
        A: ?Sized,
        B: ?Sized,
        O: Partitioner<A>,
        I: Partitioner<B>,
    {
        if outer
            .partition_count()
            .checked_mul(inner.partition_count())
            .is_none()
        {
            return Err(crate::error::ShardError::InvalidConfig(
                "composite partition count overflows u32".into(),
            ));
        }
        Ok(Composite { outer, inner })
    }

    /// The outer (first key part) partitioner.
    pub fn outer(&self) -> &O {
        &self.outer
    }

    /// The inner (second key part) partitioner.
    pub fn inner(&self) -> &I {
        &self.inner
    }

    /// The partitions holding keys `(a, b)` for every `b` in `range`.
    pub fn partitions_for_range<A, B>(&self, a: &A, range: &Range<B>) -> Vec<PartitionId>
    where
        A: ?Sized,
        B: Ord + Send + Sync,
        O: Partitioner<A>,
        I: std::borrow::Borrow<RangePartitioner<B>>,
    {
        let inner: &RangePartitioner<B> = self.inner.borrow();
        let count = inner.partition_count();
        let base = self.outer.partition(a) * count;
        inner.partitions_for(range).map(|p| base + p).collect()
    }
}

impl<A, B, O, I> Partitioner<(A, B)> for Composite<O, I>
where
    O: Partitioner<A>,
    I: Partitioner<B>,
{
    #[inline]
    fn partition(&self, key: &(A, B)) -> PartitionId {
        // Wrapping: never panics; the product of the counts must fit in u32
        // (checked by `Composite::checked`).
        self.outer
            .partition(&key.0)
            .wrapping_mul(self.inner.partition_count())
            .wrapping_add(self.inner.partition(&key.1))
    }

    fn partition_count(&self) -> u32 {
        self.outer
            .partition_count()
            .saturating_mul(self.inner.partition_count())
    }
}
