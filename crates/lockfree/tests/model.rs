//! Property tests: each structure agrees with a sequential std model on
//! random operation sequences.
#![cfg(not(kuai_loom))]

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;

use kuai_lockfree::{ArrayQueue, List, Queue, SkipList, Stack};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum SeqOp {
    Push(u16),
    Pop,
}

fn seq_ops() -> impl Strategy<Value = Vec<SeqOp>> {
    prop::collection::vec(
        prop_oneof![3 => any::<u16>().prop_map(SeqOp::Push), 2 => Just(SeqOp::Pop)],
        0..200,
    )
}

#[derive(Debug, Clone)]
enum MapOp {
    Insert(u8, u32),
    Remove(u8),
    Get(u8),
    Range(Bound<u8>, Bound<u8>),
}

fn bound() -> impl Strategy<Value = Bound<u8>> {
    prop_oneof![
        any::<u8>().prop_map(Bound::Included),
        any::<u8>().prop_map(Bound::Excluded),
        Just(Bound::Unbounded),
    ]
}

fn map_ops() -> impl Strategy<Value = Vec<MapOp>> {
    prop::collection::vec(
        prop_oneof![
            4 => (any::<u8>(), any::<u32>()).prop_map(|(k, v)| MapOp::Insert(k, v)),
            2 => any::<u8>().prop_map(MapOp::Remove),
            2 => any::<u8>().prop_map(MapOp::Get),
            1 => (bound(), bound()).prop_map(|(a, b)| MapOp::Range(a, b)),
        ],
        0..300,
    )
}

proptest! {
    #[test]
    fn queue_matches_vecdeque(ops in seq_ops()) {
        let q = Queue::new();
        let mut model = VecDeque::new();
        for op in ops {
            match op {
                SeqOp::Push(v) => { q.push(v); model.push_back(v); }
                SeqOp::Pop => prop_assert_eq!(q.pop(), model.pop_front()),
            }
            prop_assert_eq!(q.len(), model.len());
            prop_assert_eq!(q.is_empty(), model.is_empty());
        }
    }

    #[test]
    fn array_queue_matches_bounded_vecdeque(cap in 1usize..9, ops in seq_ops()) {
        let q = ArrayQueue::new(cap).unwrap();
        let mut model = VecDeque::new();
        for op in ops {
            match op {
                SeqOp::Push(v) => {
                    if model.len() < cap {
                        prop_assert_eq!(q.push(v), Ok(()));
                        model.push_back(v);
                    } else {
                        prop_assert_eq!(q.push(v), Err(v));
                    }
                }
                SeqOp::Pop => prop_assert_eq!(q.pop(), model.pop_front()),
            }
            prop_assert_eq!(q.len(), model.len());
            prop_assert_eq!(q.is_full(), model.len() == cap);
        }
    }

    #[test]
    fn stack_matches_vec(ops in seq_ops()) {
        let s = Stack::new();
        let mut model = Vec::new();
        for op in ops {
            match op {
                SeqOp::Push(v) => { s.push(v); model.push(v); }
                SeqOp::Pop => prop_assert_eq!(s.pop(), model.pop()),
            }
            prop_assert_eq!(s.len(), model.len());
        }
    }

    #[test]
    fn list_matches_vecdeque(ops in seq_ops()) {
        let l = List::new();
        let mut model = VecDeque::new();
        for op in ops {
            match op {
                SeqOp::Push(v) => { l.push_front(v); model.push_front(v); }
                SeqOp::Pop => prop_assert_eq!(l.pop_front(), model.pop_front()),
            }
        }
        let guard = kuai_lockfree::pin();
        let items: Vec<u16> = l.iter(&guard).copied().collect();
        prop_assert_eq!(items, model.iter().copied().collect::<Vec<_>>());
        prop_assert_eq!(l.len(), model.len());
        prop_assert_eq!(l.front(&guard), model.front());
    }

    #[test]
    fn skiplist_matches_btreemap(ops in map_ops()) {
        let m = SkipList::new();
        let mut model = BTreeMap::new();
        for op in ops {
            match op {
                MapOp::Insert(k, v) => {
                    let fresh = !model.contains_key(&k);
                    if fresh { model.insert(k, v); }
                    prop_assert_eq!(m.insert(k, v), fresh);
                }
                MapOp::Remove(k) => prop_assert_eq!(m.remove(&k), model.remove(&k).is_some()),
                MapOp::Get(k) => prop_assert_eq!(m.get_cloned(&k), model.get(&k).copied()),
                MapOp::Range(a, b) => {
                    // BTreeMap panics on inverted or empty-excluded ranges;
                    // the skip list just yields nothing. Compare by filter.
                    let guard = kuai_lockfree::pin();
                    let got: Vec<(u8, u32)> = m.range((a, b), &guard).map(|(k, v)| (*k, *v)).collect();
                    let want: Vec<(u8, u32)> = model
                        .iter()
                        .filter(|(k, _)| std::ops::RangeBounds::contains(&(a, b), *k))
                        .map(|(k, v)| (*k, *v))
                        .collect();
                    prop_assert_eq!(got, want);
                }
            }
            prop_assert_eq!(m.len(), model.len());
        }
        let guard = kuai_lockfree::pin();
        let all: Vec<(u8, u32)> = m.iter(&guard).map(|(k, v)| (*k, *v)).collect();
        prop_assert_eq!(all, model.into_iter().collect::<Vec<_>>());
    }
}
