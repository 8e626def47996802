//! Merging per-shard partial results: k-way merge with LIMIT/OFFSET pushed
//! down, and aggregate merges.

use std::cmp::Ordering;

/// A page of a sorted, sharded query: `ORDER BY … LIMIT limit OFFSET offset`.
///
/// The global page can only be computed from the first `offset + limit` rows
/// of *each* shard, so that is what must be pushed down
/// ([`per_shard_limit`](Self::per_shard_limit), with offset 0). Pushing the
/// offset itself down to every shard is the classic sharding-middleware bug;
/// fetching everything and sorting is the classic memory blow-up on deep pages.
///
/// ```
/// use kuai_shard::Page;
/// let page = Page::new(1_000, 20);
/// assert_eq!(page.per_shard_limit(), 1_020);
/// let shards = vec![vec![1, 4, 7], vec![2, 5, 8], vec![3, 6, 9]];
/// assert_eq!(Page::new(2, 4).merge(shards), vec![3, 4, 5, 6]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// Rows to skip.
    pub offset: usize,
    /// Rows to return.
    pub limit: usize,
}

impl Page {
    /// `OFFSET offset LIMIT limit`.
    pub fn new(offset: usize, limit: usize) -> Self {
        Page { offset, limit }
    }

    /// The `LIMIT` to send to each shard (with `OFFSET 0`).
    pub fn per_shard_limit(&self) -> usize {
        self.offset.saturating_add(self.limit)
    }

    /// Merges ascending per-shard results into the global page.
    pub fn merge<T: Ord, I: IntoIterator<Item = T>>(&self, shards: Vec<I>) -> Vec<T> {
        merge_sorted_by(shards, *self, T::cmp)
    }
}

/// A binary min-heap of (head item, shard) with a caller-supplied order.
struct Heads<T, I, F> {
    heap: Vec<(T, usize, I)>,
    cmp: F,
}

impl<T, I: Iterator<Item = T>, F: FnMut(&T, &T) -> Ordering> Heads<T, I, F> {
    fn less(&mut self, a: usize, b: usize) -> bool {
        let (x, y) = (&self.heap[a], &self.heap[b]);
        // Ties go to the lower shard index: the merge is stable.
        match (self.cmp)(&x.0, &y.0) {
            Ordering::Less => true,
            Ordering::Greater => false,
            Ordering::Equal => x.1 < y.1,
        }
    }

    fn sift_down(&mut self, mut i: usize) {
        loop {
            let l = 2 * i + 1;
            if l >= self.heap.len() {
                return;
            }
            let r = l + 1;
            let m = if r < self.heap.len() && self.less(r, l) {
                r
            } else {
                l
            };
            if !self.less(m, i) {
                return;
            }
            self.heap.swap(i, m);
            i = m;
        }
    }

    fn pop(&mut self) -> Option<T> {
        let top = self.heap.first_mut()?;
        let item = match top.2.next() {
            // Replace the head in place and let it sink to its place.
            Some(next) => std::mem::replace(&mut top.0, next),
            None => self.heap.swap_remove(0).0,
        };
        if !self.heap.is_empty() {
            self.sift_down(0);
        }
        Some(item)
    }
}

/// k-way merges per-shard results, each sorted by `cmp`, and returns rows
/// `offset .. offset + limit` of the merged order.
///
/// Each shard is read lazily and at most `offset + limit` rows are taken from
/// it, so a shard that ignored the pushed-down limit cannot blow up memory or
/// time; the merge itself holds one row per shard plus the output page.
///
/// ```
/// use kuai_shard::{merge_sorted_by, Page};
/// // Descending order (ORDER BY score DESC).
/// let shards = vec![vec![9, 5, 1], vec![8, 7, 2]];
/// let top = merge_sorted_by(shards, Page::new(0, 3), |a: &i32, b: &i32| b.cmp(a));
/// assert_eq!(top, vec![9, 8, 7]);
/// ```
pub fn merge_sorted_by<T, I, F>(shards: Vec<I>, page: Page, cmp: F) -> Vec<T>
where
    I: IntoIterator<Item = T>,
    F: FnMut(&T, &T) -> Ordering,
{
    let bound = page.per_shard_limit();
    let mut heads = Heads {
        heap: Vec::with_capacity(shards.len()),
        cmp,
    };
    for (i, s) in shards.into_iter().enumerate() {
        let mut it = s.into_iter().take(bound);
        if let Some(first) = it.next() {
            heads.heap.push((first, i, it));
        }
    }
    for i in (0..heads.heap.len() / 2).rev() {
        heads.sift_down(i);
    }
    for _ in 0..page.offset {
        if heads.pop().is_none() {
            return Vec::new();
        }
    }
    let mut out = Vec::with_capacity(page.limit.min(1 << 16));
    while out.len() < page.limit {
        match heads.pop() {
            Some(x) => out.push(x),
            None => break,
        }
    }
    out
}

/// Count / sum / min / max of `i64` values, mergeable across shards.
///
/// `avg` is computed from the merged sum and count — averaging per-shard
/// averages is wrong whenever shards hold different numbers of rows.
///
/// ```
/// use kuai_shard::Aggregate;
/// let a = Aggregate::of([1, 2, 3]);
/// let b = Aggregate::of([10]);
/// let all = a.merge(b);
/// assert_eq!((all.count, all.sum, all.min, all.max), (4, 16, Some(1), Some(10)));
/// assert_eq!(all.avg(), Some(4.0)); // not (2 + 10) / 2
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Aggregate {
    /// Number of values.
    pub count: u64,
    /// Exact sum (i128 cannot overflow for fewer than 2^64 i64 values).
    pub sum: i128,
    /// Smallest value.
    pub min: Option<i64>,
    /// Largest value.
    pub max: Option<i64>,
}

impl Aggregate {
    /// The aggregate of `values`.
    pub fn of(values: impl IntoIterator<Item = i64>) -> Self {
        let mut a = Aggregate::default();
        for v in values {
            a.add(v);
        }
        a
    }

    /// Adds one value.
    pub fn add(&mut self, v: i64) {
        self.count += 1;
        self.sum += i128::from(v);
        self.min = Some(self.min.map_or(v, |m| m.min(v)));
        self.max = Some(self.max.map_or(v, |m| m.max(v)));
    }

    /// Combines two partial aggregates (associative and commutative).
    #[must_use]
    pub fn merge(self, other: Aggregate) -> Aggregate {
        Aggregate {
            count: self.count + other.count,
            sum: self.sum + other.sum,
            min: match (self.min, other.min) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
            max: match (self.max, other.max) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            },
        }
    }

    /// The mean, or `None` with no values.
    pub fn avg(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum as f64 / self.count as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn merge_equals_sort_then_slice(
            mut shards in proptest::collection::vec(proptest::collection::vec(0u16..500, 0..60), 0..9),
            offset in 0usize..200,
            limit in 0usize..80,
        ) {
            for s in &mut shards { s.sort_unstable(); }
            let mut all: Vec<u16> = shards.iter().flatten().copied().collect();
            all.sort_unstable();
            let want: Vec<u16> = all.into_iter().skip(offset).take(limit).collect();
            prop_assert_eq!(Page::new(offset, limit).merge(shards), want);
        }

        #[test]
        fn aggregate_merge_is_exact(values in proptest::collection::vec(any::<i64>(), 0..100), cut in 0usize..100) {
            let cut = cut.min(values.len());
            let whole = Aggregate::of(values.iter().copied());
            let parts = Aggregate::of(values[..cut].iter().copied()).merge(Aggregate::of(values[cut..].iter().copied()));
            prop_assert_eq!(whole, parts);
        }
    }

    #[test]
    fn shards_that_ignore_the_limit_are_cut_off() {
        // An endless shard must not hang the merge.
        let endless = (0u64..).map(|x| x * 2);
        let other = (0u64..).map(|x| x * 2 + 1);
        let shards: Vec<Box<dyn Iterator<Item = u64>>> = vec![Box::new(endless), Box::new(other)];
        assert_eq!(Page::new(1_000, 3).merge(shards), vec![1_000, 1_001, 1_002]);
    }
}
