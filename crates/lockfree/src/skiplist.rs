//! An ordered lock-free map: a skip list whose every level is a
//! Harris–Michael list with marked `next` pointers.
//!
//! # Protocol
//!
//! * A node is *removed* when the low bit of its level-0 `next` pointer is
//!   set (the linearisation point of `remove`); the remover first marks the
//!   upper levels top-down, so a marked node's upper `next` pointers are
//!   frozen too.
//! * Any `find` that meets a node whose `next` at the current level is
//!   marked unlinks it there with a CAS on the predecessor (which fails if
//!   the predecessor is itself marked).
//! * An insert links level 0 first (its linearisation point), then the upper
//!   levels; before linking level `i` it CASes its own `next[i]` from an
//!   unmarked value, so once a remover has marked level `i` the inserter
//!   stops.
//! * Reclamation: `refs` counts the levels the node is linked on, plus one
//!   held by the inserter until it is done. Each successful unlink CAS and
//!   the inserter's release decrement it; whoever brings it to zero retires
//!   the node to the epoch collector. A node is thus retired only when it is
//!   linked nowhere and nobody will link it again.
//! * The thread that marks level 0 runs a cleanup `find` afterwards, and the
//!   inserter runs one if it sees the mark after its last link; all of these
//!   accesses are `SeqCst`, so one of the two always sees the other (store
//!   buffering is excluded) and no removed node stays linked.
//! * Memory safety of traversal: a node reached at level `i` under a guard
//!   was linked at level `i` at some moment after the pin began (a marked
//!   node's frozen `next` points at a node that was linked when the marked
//!   node was unlinked), so it is retired, and freed, only after the guard
//!   is dropped.

use core::borrow::Borrow;
use core::cmp::Ordering as CmpOrdering;
use core::marker::PhantomData;
use core::ops::{Bound, RangeBounds};
use core::ptr;
use core::{alloc::Layout, mem};
use std::alloc;

use crate::counter::ShardedCounter;
use crate::epoch::{self, Guard};
use crate::sync::{AtomicPtr, AtomicUsize, Ordering};

/// Levels of the tallest tower (towers grow with probability 1/4 per level,
/// so 16 levels index billions of keys well).
#[cfg(not(kuai_loom))]
const MAX_HEIGHT: usize = 16;
#[cfg(kuai_loom)]
const MAX_HEIGHT: usize = 3;

const SC: Ordering = Ordering::SeqCst;

type Link<K, V> = AtomicPtr<Node<K, V>>;

/// A node: a header followed, in the same allocation, by a tower of
/// exactly `height` links (so a typical node of 8-byte keys and values is
/// 40 bytes, not 40 + 8 × `MAX_HEIGHT`).
#[repr(C)]
struct Node<K, V> {
    /// Levels linked + 1 while the inserter runs; zero means retire.
    refs: AtomicUsize,
    height: usize,
    key: K,
    value: V,
    /// Marks where the tower starts; its real length is `height`.
    tower: [Link<K, V>; 0],
}

impl<K, V> Node<K, V> {
    fn layout(height: usize) -> Layout {
        let header = Layout::new::<Self>();
        let size = mem::offset_of!(Self, tower) + height * mem::size_of::<Link<K, V>>();
        Layout::from_size_align(size.max(header.size()), header.align())
            .expect("a tower of at most MAX_HEIGHT links always fits")
            .pad_to_align()
    }

    /// Allocates a node with `refs` references and a tower of null links.
    fn alloc(key: K, value: V, height: usize, refs: usize) -> *mut Self {
        let layout = Self::layout(height);
        // SAFETY: the layout has non-zero size (the header holds two usizes).
        let node = unsafe { alloc::alloc(layout) }.cast::<Self>();
        if node.is_null() {
            alloc::handle_alloc_error(layout);
        }
        // SAFETY: `node` is a fresh allocation sized and aligned for the
        // header plus `height` links; each field is written once, through
        // raw pointers, before anything reads it.
        unsafe {
            ptr::addr_of_mut!((*node).refs).write(AtomicUsize::new(refs));
            ptr::addr_of_mut!((*node).height).write(height);
            ptr::addr_of_mut!((*node).key).write(key);
            ptr::addr_of_mut!((*node).value).write(value);
            let tower = Self::tower(node).cast_mut();
            for level in 0..height {
                tower.add(level).write(AtomicPtr::new(ptr::null_mut()));
            }
        }
        node
    }

    /// The first link of `node`'s tower.
    ///
    /// # Safety
    ///
    /// `node` points to a live node allocated by [`Node::alloc`].
    #[inline(always)]
    unsafe fn tower(node: *const Self) -> *const Link<K, V> {
        // SAFETY: the tower starts at this offset inside the allocation;
        // the pointer keeps the provenance of the whole allocation.
        unsafe { node.byte_add(mem::offset_of!(Self, tower)).cast() }
    }

    /// The link of `node` at `level`.
    ///
    /// # Safety
    ///
    /// `node` is live and `level < height`.
    #[inline(always)]
    unsafe fn link<'a>(node: *const Self, level: usize) -> &'a Link<K, V> {
        // SAFETY: the caller keeps `level` inside the tower.
        unsafe { &*Self::tower(node).add(level) }
    }

    /// Drops the key, value and links and frees the allocation.
    ///
    /// # Safety
    ///
    /// `node` came from [`Node::alloc`], is reachable by no thread, and is
    /// freed exactly once.
    unsafe fn dealloc(node: *mut Self) {
        // SAFETY: the caller owns `node` exclusively; fields are dropped
        // once and the allocation is freed with the layout it was made with.
        unsafe {
            let height = (*node).height;
            let tower = Self::tower(node).cast_mut();
            for level in 0..height {
                ptr::drop_in_place(tower.add(level));
            }
            ptr::drop_in_place(ptr::addr_of_mut!((*node).key));
            ptr::drop_in_place(ptr::addr_of_mut!((*node).value));
            alloc::dealloc(node.cast(), Self::layout(height));
        }
    }
}

#[inline(always)]
fn is_marked<T>(p: *mut T) -> bool {
    (p as usize) & 1 == 1
}

#[inline(always)]
fn unmarked<T>(p: *mut T) -> *mut T {
    p.map_addr(|a| a & !1)
}

#[inline(always)]
fn marked<T>(p: *mut T) -> *mut T {
    p.map_addr(|a| a | 1)
}

fn new_head<K, V>() -> [Link<K, V>; MAX_HEIGHT] {
    core::array::from_fn(|_| AtomicPtr::new(ptr::null_mut()))
}

/// A random tower height: geometric with p = 1/4, capped at `MAX_HEIGHT`.
fn random_height() -> usize {
    let r = crate::sync::next_random();
    (1 + (r.trailing_zeros() as usize) / 2).min(MAX_HEIGHT)
}

/// Where a key sits on every level: the last node before it and the first
/// node at or after it.
struct Position<K, V> {
    /// Tower bases (the head's or a node's); `preds[l].add(l)` is the link.
    preds: [*const Link<K, V>; MAX_HEIGHT],
    succs: [*mut Node<K, V>; MAX_HEIGHT],
}

/// An ordered concurrent map: lock-free insert, remove, get and range scans.
///
/// Keys are unique; [`insert`](Self::insert) does not overwrite (it reports
/// whether the key was new). Readers borrow keys and values under a
/// [`Guard`] from [`pin`](crate::pin); removed entries are dropped once no
/// guard can see them. [`len`](Self::len) is a sharded counter, exact when
/// no writer is running.
///
/// ```
/// use kuai_lockfree::{SkipList, pin};
///
/// let map = SkipList::new();
/// std::thread::scope(|s| {
///     s.spawn(|| (0..50).for_each(|k| { map.insert(k, k * 10); }));
///     s.spawn(|| (50..100).for_each(|k| { map.insert(k, k * 10); }));
/// });
/// assert_eq!(map.len(), 100);
/// assert!(map.remove(&7));
/// assert!(!map.remove(&7));
///
/// let guard = pin();
/// assert_eq!(map.get(&8, &guard), Some(&80));
/// let window: Vec<(i32, i32)> = map.range(5..10, &guard).map(|(k, v)| (*k, *v)).collect();
/// assert_eq!(window, [(5, 50), (6, 60), (8, 80), (9, 90)]);
/// ```
pub struct SkipList<K, V> {
    head: [Link<K, V>; MAX_HEIGHT],
    /// Tallest tower ever inserted: searches start there.
    top: AtomicUsize,
    len: ShardedCounter,
    _owns: PhantomData<Box<Node<K, V>>>,
}

// SAFETY: keys and values are moved in by inserters and dropped by whichever
// thread reclaims the node: `Send` suffices to send the map.
unsafe impl<K: Send, V: Send> Send for SkipList<K, V> {}
// SAFETY: readers on many threads borrow `&K`/`&V` (so `Sync`), and nodes
// are dropped on arbitrary threads (so `Send`).
unsafe impl<K: Send + Sync, V: Send + Sync> Sync for SkipList<K, V> {}

impl<K, V> SkipList<K, V> {
    /// An empty map.
    pub fn new() -> Self {
        SkipList {
            head: new_head(),
            top: AtomicUsize::new(1),
            len: ShardedCounter::with_shards(8),
            _owns: PhantomData,
        }
    }

    /// The number of entries (a snapshot while writers run).
    pub fn len(&self) -> usize {
        self.len.sum().max(0) as usize
    }

    /// Whether the map has no entries right now.
    pub fn is_empty(&self) -> bool {
        let _guard = epoch::pin();
        skip_marked(unmarked(self.head[0].load(SC))).is_null()
    }

    /// Drops a reference to `node`; the last one retires it.
    ///
    /// # Safety
    ///
    /// The caller owns one of the node's references (an unlink it just did,
    /// or the inserter's own) and holds `guard`.
    unsafe fn release(&self, node: *mut Node<K, V>, guard: &Guard) {
        // SAFETY: the caller's reference keeps the node allocated.
        if unsafe { (*node).refs.fetch_sub(1, Ordering::AcqRel) } == 1 {
            // SAFETY: zero references: linked on no level and its inserter
            // is done, so no thread that pins from now on can reach it, and
            // only this thread saw the count reach zero.
            unsafe { epoch::retire_with(guard, node, Node::dealloc) };
        }
    }
}

impl<K: Ord, V> SkipList<K, V> {
    /// Finds `key` on every level below `top`, unlinking marked nodes met on
    /// the way. Returns whether an unmarked node with `key` is at level 0.
    fn find<Q>(&self, key: &Q, top: usize, guard: &Guard) -> (bool, Position<K, V>)
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        let mut pos = Position {
            preds: [ptr::null(); MAX_HEIGHT],
            succs: [ptr::null_mut(); MAX_HEIGHT],
        };
        'retry: loop {
            let mut pred: *const Link<K, V> = self.head.as_ptr();
            for level in (0..top).rev() {
                // SAFETY: `pred` is the tower of the head or of a node
                // reached under `guard` at a level >= `level`, so the link
                // exists and the node is live (module docs).
                let mut curr = unsafe { &*pred.add(level) }.load(SC);
                if is_marked(curr) {
                    // `pred` is being removed: start again.
                    continue 'retry;
                }
                while !curr.is_null() {
                    // SAFETY: `curr` was loaded under `guard` from a link at
                    // this level, so it is live and taller than `level`.
                    let succ = unsafe { Node::link(curr, level) }.load(SC);
                    if is_marked(succ) {
                        // SAFETY: as for `pred` above.
                        let pred_link = unsafe { &*pred.add(level) };
                        if pred_link
                            .compare_exchange(curr, unmarked(succ), SC, SC)
                            .is_err()
                        {
                            continue 'retry;
                        }
                        // SAFETY: our CAS removed one of the node's links,
                        // so we own that reference; we hold `guard`.
                        unsafe { self.release(curr, guard) };
                        curr = unmarked(succ);
                        continue;
                    }
                    // SAFETY: live, as above.
                    if unsafe { (*curr).key.borrow() } < key {
                        // SAFETY: live, as above.
                        pred = unsafe { Node::tower(curr) };
                        curr = succ;
                    } else {
                        break;
                    }
                }
                pos.preds[level] = pred;
                pos.succs[level] = curr;
            }
            // SAFETY: `succs[0]` was loaded under `guard`.
            let found = unsafe { pos.succs[0].as_ref() }.is_some_and(|n| n.key.borrow() == key);
            return (found, pos);
        }
    }

    /// The first unmarked node at level 0 whose key is not before `bound`
    /// (read-only descent, no helping).
    fn seek<'g, Q>(&'g self, bound: Bound<&Q>, _guard: &'g Guard) -> *mut Node<K, V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        let before = |k: &K| match bound {
            Bound::Included(b) => k.borrow() < b,
            Bound::Excluded(b) => k.borrow() <= b,
            Bound::Unbounded => false,
        };
        let mut pred: *const Link<K, V> = self.head.as_ptr();
        let mut curr = ptr::null_mut();
        for level in (0..self.top.load(Ordering::Relaxed)).rev() {
            // SAFETY: head or a node reached under `_guard` at a level >=
            // `level` (module docs).
            curr = unmarked(unsafe { &*pred.add(level) }.load(SC));
            // SAFETY: `curr` is live (reached under `_guard`).
            while !curr.is_null() && before(unsafe { &(*curr).key }) {
                // SAFETY: live and taller than `level`.
                pred = unsafe { Node::tower(curr) };
                // SAFETY: as above.
                curr = unmarked(unsafe { Node::link(curr, level) }.load(SC));
            }
        }
        skip_marked(curr)
    }

    /// The value for `key`, borrowed for the guard's lifetime.
    pub fn get<'g, Q>(&'g self, key: &Q, guard: &'g Guard) -> Option<&'g V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        let mut node = self.seek(Bound::Included(key), guard);
        // SAFETY: reached under `guard`; values live until reclamation.
        while let Some(n) = unsafe { node.as_ref() } {
            match n.key.borrow().cmp(key) {
                CmpOrdering::Equal => return Some(&n.value),
                CmpOrdering::Greater => return None,
                CmpOrdering::Less => {
                    // SAFETY: `node` is live (reached under `guard`).
                    let next = unsafe { Node::link(node, 0) }.load(SC);
                    node = skip_marked(unmarked(next));
                }
            }
        }
        None
    }

    /// A clone of the value for `key` (pins internally).
    pub fn get_cloned<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
        V: Clone,
    {
        let guard = epoch::pin();
        self.get(key, &guard).cloned()
    }

    /// Whether `key` is present.
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        let guard = epoch::pin();
        self.get(key, &guard).is_some()
    }

    /// The entries whose keys fall in `range`, in ascending order, borrowed
    /// for the guard's lifetime. Entries inserted or removed during the
    /// scan may or may not be seen; every entry present for the whole scan
    /// is seen exactly once.
    pub fn range<'g, Q, R>(&'g self, range: R, guard: &'g Guard) -> Range<'g, K, V, Q, R>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
        R: RangeBounds<Q>,
    {
        let node = self.seek(range.start_bound(), guard);
        Range {
            node,
            range,
            _marker: PhantomData,
        }
    }

    /// All entries in ascending key order, borrowed for the guard's lifetime.
    pub fn iter<'g>(&'g self, guard: &'g Guard) -> Range<'g, K, V, K, core::ops::RangeFull> {
        self.range(.., guard)
    }
}

impl<K: Ord + Send + 'static, V: Send + 'static> SkipList<K, V> {
    /// Inserts `key → value` if `key` is absent; returns whether it was
    /// inserted (an existing entry is left alone and `value` dropped).
    pub fn insert(&self, key: K, value: V) -> bool {
        let guard = epoch::pin();
        let height = random_height();
        // Only write the shared hint when it grows: an RMW on every insert
        // would bounce its cache line (next to the head) between cores.
        let mut top = self.top.load(Ordering::Relaxed);
        if height > top {
            top = self.top.fetch_max(height, Ordering::Relaxed).max(height);
        }
        // Search before allocating: inserting a present key costs no
        // allocation.
        let (found, mut pos) = self.find(&key, top, &guard);
        if found {
            return false;
        }
        // References: the inserter's own and the level-0 link to come.
        let node = Node::alloc(key, value, height, 2);
        // SAFETY: `node` is ours until the level-0 CAS publishes it, and is
        // kept allocated afterwards by the inserter's reference.
        let key = unsafe { &(*node).key };
        // SAFETY: `level < height` for every use below.
        let link = |level| unsafe { Node::link(node, level) };
        loop {
            link(0).store(pos.succs[0], Ordering::Relaxed);
            // SAFETY: `preds[0]` is the head's or a live node's tower.
            let linked = unsafe { &*pos.preds[0] }.compare_exchange(pos.succs[0], node, SC, SC);
            if linked.is_ok() {
                break;
            }
            let (found, fresh) = self.find(key, top, &guard);
            if found {
                // SAFETY: never published: we are its only owner.
                unsafe { Node::dealloc(node) };
                return false;
            }
            pos = fresh;
        }
        self.len.incr();

        'levels: for level in 1..height {
            loop {
                let next = link(level).load(SC);
                if is_marked(next) {
                    break 'levels;
                }
                if next != pos.succs[level]
                    && link(level)
                        .compare_exchange(next, pos.succs[level], SC, SC)
                        .is_err()
                {
                    continue;
                }
                // SAFETY: the inserter's reference keeps `node` live.
                let refs = unsafe { &(*node).refs };
                refs.fetch_add(1, Ordering::AcqRel);
                // SAFETY: `preds[level]` is the head's or a live node's
                // tower, at least `level + 1` links tall.
                let pred_link = unsafe { &*pos.preds[level].add(level) };
                if pred_link
                    .compare_exchange(pos.succs[level], node, SC, SC)
                    .is_ok()
                {
                    break;
                }
                // Not linked: give back the level's reference (the
                // inserter's own keeps the count above zero).
                refs.fetch_sub(1, Ordering::AcqRel);
                let (found, fresh) = self.find(key, top, &guard);
                if !found || fresh.succs[0] != node {
                    break 'levels;
                }
                pos = fresh;
            }
        }

        if is_marked(link(0).load(SC)) {
            // Removed while we were linking: make sure no level keeps it.
            self.find(key, top, &guard);
        }
        // SAFETY: this is the inserter's reference; we hold `guard`.
        unsafe { self.release(node, &guard) };
        true
    }

    /// Removes `key`; returns whether this call removed it. The entry is
    /// dropped once no guard can see it.
    pub fn remove<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        let guard = epoch::pin();
        let top = self.top.load(Ordering::Relaxed);
        let (found, pos) = self.find(key, top, &guard);
        if !found {
            return false;
        }
        let node = pos.succs[0];
        // SAFETY: found under `guard`, so live.
        let height = unsafe { (*node).height };
        // SAFETY: `level < height`.
        let link = |level| unsafe { Node::link(node, level) };
        for level in (1..height).rev() {
            let mut next = link(level).load(SC);
            while !is_marked(next) {
                match link(level).compare_exchange(next, marked(next), SC, SC) {
                    Ok(_) => break,
                    Err(actual) => next = actual,
                }
            }
        }
        let mut next = link(0).load(SC);
        loop {
            if is_marked(next) {
                // Another thread removed it first.
                return false;
            }
            match link(0).compare_exchange(next, marked(next), SC, SC) {
                Ok(_) => break,
                Err(actual) => next = actual,
            }
        }
        self.len.decr();
        // Unlink it from every level it is on.
        self.find(key, top.max(height), &guard);
        true
    }
}

/// Skips nodes whose level-0 link is marked (logically removed).
fn skip_marked<K, V>(mut node: *mut Node<K, V>) -> *mut Node<K, V> {
    while !node.is_null() {
        // SAFETY: callers only pass nodes reached under a live guard.
        let next = unsafe { Node::link(node, 0) }.load(SC);
        if !is_marked(next) {
            return node;
        }
        node = unmarked(next);
    }
    node
}

impl<K, V> Default for SkipList<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K, V> Drop for SkipList<K, V> {
    fn drop(&mut self) {
        // Exclusive access and every operation finished: all nodes still
        // holding references are linked at level 0 (removed ones were
        // unlinked everywhere and retired), so freeing level 0 frees each
        // remaining node exactly once.
        let mut node = unmarked(self.head[0].load(Ordering::Relaxed));
        while !node.is_null() {
            // SAFETY: `&mut self`; nodes on level 0 are live, not retired,
            // and each is visited once.
            unsafe {
                let next = unmarked(Node::link(node, 0).load(Ordering::Relaxed));
                Node::dealloc(node);
                node = next;
            }
        }
    }
}

impl<K: Ord + std::fmt::Debug, V: std::fmt::Debug> std::fmt::Debug for SkipList<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let guard = epoch::pin();
        f.debug_map().entries(self.iter(&guard)).finish()
    }
}

/// Borrows entries for `'g`; mentions the bound type `Q` without owning one.
type RangeMarker<'g, K, V, Q> = PhantomData<(&'g (K, V), fn(&Q))>;

/// Iterator over a key range of a [`SkipList`], from
/// [`SkipList::range`] or [`SkipList::iter`].
pub struct Range<'g, K, V, Q: ?Sized, R> {
    node: *mut Node<K, V>,
    range: R,
    _marker: RangeMarker<'g, K, V, Q>,
}

impl<'g, K, V, Q, R> Iterator for Range<'g, K, V, Q, R>
where
    K: Borrow<Q>,
    Q: Ord + ?Sized,
    R: RangeBounds<Q>,
{
    type Item = (&'g K, &'g V);

    fn next(&mut self) -> Option<Self::Item> {
        let node = self.node;
        // SAFETY: nodes reached under the guard borrowed for `'g`.
        let n = unsafe { node.as_ref()? };
        let within = match self.range.end_bound() {
            Bound::Included(e) => n.key.borrow() <= e,
            Bound::Excluded(e) => n.key.borrow() < e,
            Bound::Unbounded => true,
        };
        if !within {
            self.node = ptr::null_mut();
            return None;
        }
        // SAFETY: `node` is live (above).
        self.node = skip_marked(unmarked(unsafe { Node::link(node, 0) }.load(SC)));
        Some((&n.key, &n.value))
    }
}

impl<K, V, Q: ?Sized, R> std::fmt::Debug for Range<'_, K, V, Q, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Range").finish_non_exhaustive()
    }
}

#[cfg(all(test, not(kuai_loom)))]
mod tests {
    use super::*;

    #[test]
    fn ordered_ops() {
        let m = SkipList::new();
        assert!(m.is_empty());
        for k in [5, 1, 9, 3, 7] {
            assert!(m.insert(k, k.to_string()));
        }
        assert!(!m.insert(5, "dup".into()));
        assert_eq!(m.len(), 5);
        let g = epoch::pin();
        assert_eq!(m.get(&5, &g).map(String::as_str), Some("5"));
        assert_eq!(m.get(&4, &g), None);
        assert_eq!(m.get_cloned(&9).as_deref(), Some("9"));
        let keys: Vec<i32> = m.iter(&g).map(|(k, _)| *k).collect();
        assert_eq!(keys, [1, 3, 5, 7, 9]);
        let keys: Vec<i32> = m.range(3..=7, &g).map(|(k, _)| *k).collect();
        assert_eq!(keys, [3, 5, 7]);
        let keys: Vec<i32> = m
            .range((Bound::Excluded(3), Bound::Unbounded), &g)
            .map(|(k, _)| *k)
            .collect();
        assert_eq!(keys, [5, 7, 9]);
        assert!(m.remove(&5));
        assert!(!m.remove(&5));
        assert!(!m.contains_key(&5));
        assert_eq!(m.len(), 4);
        assert_eq!(format!("{m:?}"), r#"{1: "1", 3: "3", 7: "7", 9: "9"}"#);
    }

    #[test]
    fn borrowed_lookup() {
        let m = SkipList::new();
        m.insert("b".to_string(), 2);
        m.insert("a".to_string(), 1);
        assert!(m.contains_key("a"));
        assert!(m.remove("b"));
        assert!(!m.is_empty());
    }
}
