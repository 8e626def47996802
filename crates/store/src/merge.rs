//! K-way merge of newest-first runs, with de-duplication by id.

use std::collections::BinaryHeap;

use crate::TimelineEntry;

/// Merges `runs` (each sorted newest-first, i.e. by descending id) into at
/// most `limit` entries, newest first, dropping repeated ids (a post can be
/// both in an inbox and in a pulled outbox).
pub(crate) fn merge_newest(runs: &[&[TimelineEntry]], limit: usize) -> Vec<TimelineEntry> {
    let mut out = Vec::with_capacity(limit.min(runs.iter().map(|r| r.len()).sum()));
    if limit == 0 {
        return out;
    }
    // A one-run merge is a copy.
    let live: Vec<&[TimelineEntry]> = runs.iter().copied().filter(|r| !r.is_empty()).collect();
    if live.len() == 1 {
        for e in live[0] {
            if out.len() == limit {
                break;
            }
            if out.last().is_none_or(|l: &TimelineEntry| l.id != e.id) {
                out.push(*e);
            }
        }
        return out;
    }
    let mut heap: BinaryHeap<(u64, usize, usize)> = live
        .iter()
        .enumerate()
        .map(|(r, run)| (run[0].id, r, 0))
        .collect();
    while let Some((id, r, i)) = heap.pop() {
        if out.last().is_none_or(|l: &TimelineEntry| l.id != id) {
            out.push(live[r][i]);
            if out.len() == limit {
                break;
            }
        }
        if let Some(next) = live[r].get(i + 1) {
            heap.push((next.id, r, i + 1));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn e(id: u64) -> TimelineEntry {
        TimelineEntry { id, author: id % 7 }
    }

    proptest! {
        #[test]
        fn merge_equals_sort_dedup_truncate(
            runs in prop::collection::vec(prop::collection::btree_set(0u64..500, 0..40), 0..8),
            limit in 0usize..100,
        ) {
            let runs: Vec<Vec<TimelineEntry>> = runs
                .into_iter()
                .map(|s| s.into_iter().rev().map(e).collect())
                .collect();
            let refs: Vec<&[TimelineEntry]> = runs.iter().map(|r| r.as_slice()).collect();
            let got: Vec<u64> = merge_newest(&refs, limit).into_iter().map(|x| x.id).collect();
            let mut want: Vec<u64> = runs.iter().flatten().map(|x| x.id).collect();
            want.sort_unstable_by(|a, b| b.cmp(a));
            want.dedup();
            want.truncate(limit);
            prop_assert_eq!(got, want);
        }
    }
}
