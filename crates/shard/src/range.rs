//! Range partitioning with sorted boundaries, and dynamic split/merge.

use std::ops::Range;

use kuai_core::{PartitionId, Partitioner};

use crate::error::{ShardError, ShardResult};

/// Range partitioning: partition `i` holds keys in `[split[i-1], split[i])`;
/// the first range is open below and the last open above. Keeps keys in
/// order, so a range scan touches only the partitions it overlaps — at the
/// price of hot spots when writes cluster (recent timestamps, short ids).
///
/// ```
/// use kuai_core::Partitioner;
/// use kuai_shard::RangePartitioner;
/// let p = RangePartitioner::from_split_points(vec![100u64, 1_000, 10_000])?;
/// assert_eq!(p.partition(&5), 0);
/// assert_eq!(p.partition(&100), 1);
/// assert_eq!(p.partition(&999_999), 3);
/// assert_eq!(p.partitions_for(&(50..150)), 0..2);
/// # Ok::<(), kuai_shard::ShardError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangePartitioner<K> {
    splits: Vec<K>,
}

impl<K: Ord> RangePartitioner<K> {
    /// Partitions separated by `splits`, which must be strictly increasing
    /// (`splits.len() + 1` partitions; empty means one partition).
    pub fn from_split_points(splits: Vec<K>) -> ShardResult<Self> {
        if u32::try_from(splits.len()).is_err() {
            return Err(ShardError::InvalidConfig("too many ranges".into()));
        }
        for (i, w) in splits.windows(2).enumerate() {
            if w[0] >= w[1] {
                return Err(ShardError::UnsortedRanges { index: i + 1 });
            }
        }
        Ok(RangePartitioner { splits })
    }

    /// Partitions from explicit half-open ranges, which must be non-empty,
    /// sorted, non-overlapping and contiguous. Keys below the first range go to
    /// partition 0 and keys at or above the last `end` to the last partition.
    pub fn from_ranges(ranges: Vec<Range<K>>) -> ShardResult<Self> {
        if ranges.is_empty() {
            return Err(ShardError::EmptyNodeSet("range partitioning needs a range"));
        }
        for (i, r) in ranges.iter().enumerate() {
            if r.start >= r.end {
                return Err(ShardError::EmptyRange { index: i });
            }
            if i > 0 {
                let prev = &ranges[i - 1];
                if r.start < prev.start {
                    return Err(ShardError::UnsortedRanges { index: i });
                }
                if r.start < prev.end {
                    return Err(ShardError::OverlappingRanges { index: i });
                }
                if r.start > prev.end {
                    return Err(ShardError::RangeGap { index: i });
                }
            }
        }
        let splits = ranges.into_iter().skip(1).map(|r| r.start).collect();
        Self::from_split_points(splits)
    }

    /// The split points.
    pub fn split_points(&self) -> &[K] {
        &self.splits
    }

    /// The partition holding `key` (binary search).
    #[inline]
    pub fn partition_of(&self, key: &K) -> PartitionId {
        self.splits.partition_point(|s| s <= key) as u32
    }

    /// The partitions a scan of `range` must visit (a contiguous run).
    pub fn partitions_for(&self, range: &Range<K>) -> Range<PartitionId> {
        if range.start >= range.end {
            let p = self.partition_of(&range.start);
            return p..p;
        }
        let first = self.partition_of(&range.start);
        // The last key < end lives in the partition where `end` would go,
        // unless `end` is exactly a split point.
        let last = self.splits.partition_point(|s| s < &range.end) as u32;
        first..last + 1
    }

    /// Bounds `(lower inclusive, upper exclusive)` of partition `i`; `None`
    /// means unbounded.
    pub fn bounds(&self, i: usize) -> ShardResult<(Option<&K>, Option<&K>)> {
        if i > self.splits.len() {
            return Err(ShardError::OutOfBounds {
                index: i,
                len: self.splits.len() + 1,
            });
        }
        let lo = if i == 0 { None } else { self.splits.get(i - 1) };
        Ok((lo, self.splits.get(i)))
    }

    /// Splits partition `i` at `at` (which must lie strictly inside it).
    /// Partitions after `i` shift up by one.
    pub fn split(&mut self, i: usize, at: K) -> ShardResult<()> {
        let (lo, hi) = self.bounds(i)?;
        let inside = lo.is_none_or(|lo| &at > lo) && hi.is_none_or(|hi| &at < hi);
        if !inside {
            return Err(ShardError::SplitOutOfRange { range: i });
        }
        self.splits.insert(i, at);
        Ok(())
    }

    /// Merges partition `i` with partition `i + 1`. Later partitions shift down.
    pub fn merge(&mut self, i: usize) -> ShardResult<()> {
        if i >= self.splits.len() {
            return Err(ShardError::OutOfBounds {
                index: i,
                len: self.splits.len(),
            });
        }
        self.splits.remove(i);
        Ok(())
    }
}

impl<K: Ord + Send + Sync> Partitioner<K> for RangePartitioner<K> {
    #[inline]
    fn partition(&self, key: &K) -> PartitionId {
        self.partition_of(key)
    }

    fn partition_count(&self) -> u32 {
        self.splits.len() as u32 + 1
    }
}

/// What [`DynamicRanges::rebalance`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeChange<K> {
    /// Partition `range` split at `at` into `range` and `range + 1`.
    Split {
        /// The partition that split (index before the change).
        range: usize,
        /// The split key.
        at: K,
    },
    /// Partitions `range` and `range + 1` merged into `range`.
    Merged {
        /// The lower partition (index before the change).
        range: usize,
    },
}

/// Range partitions that split when they grow past `split_above` and merge
/// with a neighbour when the pair shrinks below `merge_below` (like HBase
/// regions or TiKV/CockroachDB ranges). Sizes are whatever the caller counts —
/// bytes or rows. Start with several pre-split ranges to avoid a single hot
/// partition at launch.
///
/// ```
/// use kuai_shard::{DynamicRanges, RangeChange};
/// let mut r = DynamicRanges::new(Vec::<u64>::new(), 100, 20)?;
/// for k in 0..150u64 { r.record(&k, 1); }
/// // The store tells us the middle key of the oversized range and the left half's size.
/// let changes = r.rebalance(|_, _| Some((75, 75)));
/// assert_eq!(changes, vec![RangeChange::Split { range: 0, at: 75 }]);
/// assert_eq!(r.sizes(), &[75, 75]);
/// # Ok::<(), kuai_shard::ShardError>(())
/// ```
#[derive(Debug, Clone)]
pub struct DynamicRanges<K> {
    ranges: RangePartitioner<K>,
    sizes: Vec<u64>,
    split_above: u64,
    merge_below: u64,
}

impl<K: Ord + Clone> DynamicRanges<K> {
    /// Ranges separated by `splits` (strictly increasing), all of size 0.
    /// `merge_below` must be less than half of `split_above`, or splits and
    /// merges would undo each other.
    pub fn new(splits: Vec<K>, split_above: u64, merge_below: u64) -> ShardResult<Self> {
        if split_above == 0 || merge_below.saturating_mul(2) >= split_above {
            return Err(ShardError::InvalidConfig(format!(
                "need 2 * merge_below ({merge_below}) < split_above ({split_above})"
            )));
        }
        let ranges = RangePartitioner::from_split_points(splits)?;
        let sizes = vec![0; ranges.split_points().len() + 1];
        Ok(DynamicRanges {
            ranges,
            sizes,
            split_above,
            merge_below,
        })
    }

    /// The current partitioning.
    pub fn partitioner(&self) -> &RangePartitioner<K> {
        &self.ranges
    }

    /// The size of each partition.
    pub fn sizes(&self) -> &[u64] {
        &self.sizes
    }

    /// Adds `delta` (may be negative) to the size of the partition holding `key`.
    pub fn record(&mut self, key: &K, delta: i64) -> PartitionId {
        let p = self.ranges.partition_of(key);
        let s = &mut self.sizes[p as usize];
        *s = s.saturating_add_signed(delta);
        p
    }

    /// Splits partition `i` at `at`, giving `left_size` to the lower half.
    pub fn split(&mut self, i: usize, at: K, left_size: u64) -> ShardResult<()> {
        self.ranges.split(i, at)?;
        let total = self.sizes[i];
        let left = left_size.min(total);
        self.sizes[i] = left;
        self.sizes.insert(i + 1, total - left);
        Ok(())
    }

    /// Merges partitions `i` and `i + 1`.
    pub fn merge(&mut self, i: usize) -> ShardResult<()> {
        self.ranges.merge(i)?;
        let right = self.sizes.remove(i + 1);
        self.sizes[i] = self.sizes[i].saturating_add(right);
        Ok(())
    }

    /// Splits every partition above `split_above` (asking `midpoint(i, bounds)`
    /// for a split key and the lower half's size — `None` skips it, e.g. when
    /// all its data is one key), then merges adjacent pairs whose total is
    /// below `merge_below`. Returns what changed, in order.
    pub fn rebalance<F>(&mut self, mut midpoint: F) -> Vec<RangeChange<K>>
    where
        F: FnMut(usize, (Option<&K>, Option<&K>)) -> Option<(K, u64)>,
    {
        let mut changes = Vec::new();
        let mut i = 0;
        while i < self.sizes.len() {
            if self.sizes[i] > self.split_above {
                let Ok(bounds) = self.ranges.bounds(i) else {
                    break;
                };
                if let Some((at, left)) = midpoint(i, bounds) {
                    if self.split(i, at.clone(), left).is_ok() {
                        changes.push(RangeChange::Split { range: i, at });
                        // Re-check the lower half: it may still be too big.
                        continue;
                    }
                }
            }
            i += 1;
        }
        let mut i = 0;
        while i + 1 < self.sizes.len() {
            if self.sizes[i].saturating_add(self.sizes[i + 1]) < self.merge_below
                && self.merge(i).is_ok()
            {
                changes.push(RangeChange::Merged { range: i });
                continue;
            }
            i += 1;
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_ranges_are_typed_errors() {
        assert_eq!(
            RangePartitioner::from_split_points(vec![1, 3, 2]),
            Err(ShardError::UnsortedRanges { index: 2 })
        );
        assert_eq!(
            RangePartitioner::from_split_points(vec![1, 1]),
            Err(ShardError::UnsortedRanges { index: 1 })
        );
        assert_eq!(
            RangePartitioner::from_ranges(vec![0..10, 5..20]),
            Err(ShardError::OverlappingRanges { index: 1 })
        );
        assert_eq!(
            RangePartitioner::from_ranges(vec![10..20, 0..10]),
            Err(ShardError::UnsortedRanges { index: 1 })
        );
        assert_eq!(
            RangePartitioner::from_ranges(vec![0..10, 11..20]),
            Err(ShardError::RangeGap { index: 1 })
        );
        #[allow(clippy::reversed_empty_ranges, clippy::single_range_in_vec_init)]
        let empty = vec![5..5];
        assert_eq!(
            RangePartitioner::from_ranges(empty),
            Err(ShardError::EmptyRange { index: 0 })
        );
        assert!(RangePartitioner::<u8>::from_ranges(vec![]).is_err());
    }

    #[test]
    fn split_point_must_be_inside() {
        let mut p = RangePartitioner::from_ranges(vec![0..10, 10..20]).unwrap();
        assert_eq!(p.split(1, 5), Err(ShardError::SplitOutOfRange { range: 1 }));
        assert_eq!(
            p.split(1, 10),
            Err(ShardError::SplitOutOfRange { range: 1 })
        );
        assert_eq!(
            p.split(0, 10),
            Err(ShardError::SplitOutOfRange { range: 0 })
        );
        assert!(p.split(7, 1).is_err());
        p.split(1, 15).unwrap();
        assert_eq!(p.split_points(), &[10, 15]);
        assert_eq!(p.partition_of(&14), 1);
        assert_eq!(p.partition_of(&15), 2);
        p.merge(0).unwrap();
        assert_eq!(p.split_points(), &[15]);
        assert!(p.merge(1).is_err());
    }

    #[test]
    fn partitions_for_scans() {
        let p = RangePartitioner::from_split_points(vec![10, 20, 30]).unwrap();
        assert_eq!(p.partitions_for(&(0..10)), 0..1);
        assert_eq!(p.partitions_for(&(0..11)), 0..2);
        assert_eq!(p.partitions_for(&(15..35)), 1..4);
        assert_eq!(p.partitions_for(&(12..12)), 1..1);
    }

    #[test]
    fn dynamic_split_then_merge() {
        let mut r = DynamicRanges::new(vec![], 100, 30).unwrap();
        for k in 0..400u64 {
            r.record(&k, 1);
        }
        // Split at the midpoint of the keys each range holds.
        let changes = r.rebalance(|_, (lo, hi)| {
            let lo = lo.copied().unwrap_or(0);
            let hi = hi.copied().unwrap_or(400);
            let mid = (lo + hi) / 2;
            Some((mid, mid - lo))
        });
        assert_eq!(r.sizes(), &[100, 100, 100, 100]);
        assert_eq!(changes.len(), 3);
        for k in 0..390u64 {
            r.record(&k, -1);
        }
        let changes = r.rebalance(|_, _| None);
        assert_eq!(r.sizes(), &[10]);
        assert_eq!(changes.len(), 3);
        assert!(DynamicRanges::<u8>::new(vec![], 10, 5).is_err());
    }
}
