//! Treiber's CAS-linked stack, the core of [`List`] and [`Stack`].
//!
//! # Why `push` does not pin the epoch
//!
//! A push allocates a node, loads the head pointer, writes it into the new
//! node's `next` and CASes the head from that pointer to the new node. It
//! never dereferences the head it loaded: the pointer is only *compared* (by
//! the CAS) and *stored* (into a node nobody else can see yet). If the node
//! it points to is popped, freed and its address reused while the push is
//! between its load and its CAS, the CAS either fails (head changed) or
//! succeeds because the head *is* that address right now — in which case
//! `next` is the current head and the list is correct. The ABA problem of
//! Treiber stacks lives only in `pop`, which reads `head.next` before its
//! CAS; `pop` pins the epoch, so the node it read cannot be freed, hence its
//! address cannot be reused, hence the head cannot change away and back to
//! it during the pop. Unpinned pushes only allocate *fresh* memory, which
//! cannot alias a node a pinned thread still holds. Skipping the pin removes
//! the thread-local epoch bookkeeping that otherwise dominates a push.

use core::marker::PhantomData;
use core::mem::ManuallyDrop;
use core::ptr;

use crossbeam_utils::CachePadded;

use crate::epoch::{self, Guard};
use crate::sync::{AtomicPtr, Ordering, UnsafeCell};

/// A node. Both fields live in (loom-trackable) cells so that loom checks
/// that their writes are published before other threads read them.
struct Node<T> {
    value: UnsafeCell<T>,
    /// Written only before the node is published, immutable afterwards.
    next: UnsafeCell<*mut Node<T>>,
}

impl<T> Node<T> {
    /// The successor.
    ///
    /// # Safety
    ///
    /// `node` is live and published (or still private to the caller).
    #[inline(always)]
    unsafe fn next(node: *const Self) -> *mut Self {
        // SAFETY: per the caller; `next` is immutable once published.
        unsafe { (*node).next.with(|p| *p) }
    }

    /// The value, borrowed for `'a`.
    ///
    /// # Safety
    ///
    /// `node` is live for `'a` and its value is not moved out or dropped
    /// meanwhile.
    #[inline(always)]
    unsafe fn value<'a>(node: *const Self) -> &'a T {
        // SAFETY: per the caller.
        unsafe { (*node).value.with(|v| &*v) }
    }
}

/// The shared core: a head pointer and the push/pop protocol.
struct Treiber<T> {
    head: CachePadded<AtomicPtr<Node<T>>>,
    _owns: PhantomData<Box<Node<T>>>,
}

impl<T> Treiber<T> {
    fn new() -> Self {
        Treiber {
            head: CachePadded::new(AtomicPtr::new(ptr::null_mut())),
            _owns: PhantomData,
        }
    }

    /// Pushes without pinning (see the module docs for why that is sound).
    #[inline]
    fn push(&self, value: T) {
        let node = Box::into_raw(Box::new(Node {
            value: UnsafeCell::new(value),
            next: UnsafeCell::new(ptr::null_mut()),
        }));
        let mut head = self.head.load(Ordering::Acquire);
        loop {
            // SAFETY: `node` is ours alone until the CAS below publishes it,
            // so writing its `next` field races with nobody. `head` is never
            // dereferenced here.
            unsafe { (*node).next.with_mut(|p| *p = head) };
            match self
                .head
                .compare_exchange_weak(head, node, Ordering::Release, Ordering::Acquire)
            {
                Ok(_) => return,
                Err(actual) => head = actual,
            }
        }
    }

    /// Unlinks the head node, lets `take` read (or move out) its value, and
    /// retires it. `take` runs once, only on the thread whose CAS unlinked the
    /// node, with the node's live value cell.
    #[inline]
    fn pop_with<R>(&self, take: impl FnOnce(&UnsafeCell<T>) -> R) -> Option<R> {
        let guard = epoch::pin();
        let mut head = self.head.load(Ordering::Acquire);
        loop {
            if head.is_null() {
                return None;
            }
            // SAFETY: `head` was loaded while `guard` pins the epoch; a node
            // is retired only after it is unlinked, and a node we could load
            // was linked after our pin began, so it is not freed before
            // `guard` drops. `next` is immutable once published.
            let next = unsafe { Node::next(head) };
            match self
                .head
                .compare_exchange_weak(head, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    // SAFETY: our CAS unlinked `head`, so we are the only
                    // thread that will ever take its value or retire it;
                    // the memory is valid for the reason given above.
                    unsafe {
                        let out = take(&(*head).value);
                        epoch::retire(&guard, head);
                        return Some(out);
                    }
                }
                Err(actual) => head = actual,
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.head.load(Ordering::Acquire).is_null()
    }

    /// The first node, for iteration under `guard`.
    fn first(&self, _guard: &Guard) -> *mut Node<T> {
        self.head.load(Ordering::Acquire)
    }

    /// Detaches every node (exclusive access) and returns the chain.
    fn take_all(&mut self) -> *mut Node<T> {
        self.head.swap(ptr::null_mut(), Ordering::Acquire)
    }
}

/// Frees a detached chain, running `each` on every node's value first.
///
/// # Safety
///
/// `node` heads a chain that no other thread can reach or will free.
unsafe fn free_chain<T>(mut node: *mut Node<T>, mut each: impl FnMut(&mut T)) {
    while !node.is_null() {
        // SAFETY: the caller owns the chain exclusively; every node came
        // from `Box::into_raw` and is freed exactly once here.
        let b = unsafe { Box::from_raw(node) };
        // SAFETY: exclusive, as above.
        b.value.with_mut(|v| each(unsafe { &mut *v }));
        // SAFETY: exclusive, as above.
        node = b.next.with(|p| unsafe { *p });
    }
}

/// Counts the nodes reachable now (a snapshot under concurrency).
fn count<T>(core: &Treiber<T>) -> usize {
    let guard = epoch::pin();
    let mut n = 0;
    let mut node = core.first(&guard);
    while !node.is_null() {
        n += 1;
        // SAFETY: loaded under `guard` from a linked node (see `pop_with`).
        node = unsafe { Node::next(node) };
    }
    n
}

/// The seed's lock-free singly linked list: `push_front` with a CAS,
/// `pop_front`, and iteration that runs concurrently with both.
///
/// Values stay in place until the node is reclaimed, so readers holding a
/// [`Guard`] can borrow them while other threads pop; that is why
/// [`pop_front`](Self::pop_front) hands back a *clone* (wrap large values
/// in `Arc`). For a stack that moves values out, use [`Stack`].
///
/// `push_front` does not pin the epoch (see the `treiber` module source for
/// the argument); `pop_front`, [`iter`](Self::iter) and [`len`](Self::len)
/// do.
///
/// ```
/// use kuai_lockfree::{List, pin};
///
/// let list = List::new();
/// std::thread::scope(|s| {
///     s.spawn(|| (0..100).for_each(|i| list.push_front(i)));
///     s.spawn(|| (100..200).for_each(|i| list.push_front(i)));
/// });
/// assert_eq!(list.len(), 200);
///
/// let guard = pin();
/// let sum: u64 = list.iter(&guard).sum();
/// assert_eq!(sum, (0..200).sum());
/// assert!(list.pop_front().is_some());
/// ```
pub struct List<T> {
    core: Treiber<T>,
}

// SAFETY: values are moved in by one thread and dropped by whichever thread
// reclaims the node, so `T: Send` suffices to send the list.
unsafe impl<T: Send> Send for List<T> {}
// SAFETY: sharing the list shares `&T` between threads (iteration, cloning
// pops) and moves `T` across threads (reclamation), so `T: Send + Sync`.
unsafe impl<T: Send + Sync> Sync for List<T> {}

impl<T> List<T> {
    /// An empty list.
    pub fn new() -> Self {
        List {
            core: Treiber::new(),
        }
    }

    /// Pushes `value` at the front: one allocation and one CAS, no epoch pin.
    #[inline]
    pub fn push_front(&self, value: T) {
        self.core.push(value);
    }

    /// Removes the front node and returns a clone of its value; the original
    /// is dropped when the node is reclaimed (after any reader that might be
    /// looking at it has unpinned).
    ///
    /// `T: Send + 'static` because the original is dropped later, by
    /// whichever thread runs the epoch collector.
    pub fn pop_front(&self) -> Option<T>
    where
        T: Clone + Send + 'static,
    {
        // SAFETY: the node's value is alive (values of a `List` are dropped
        // only when the node is reclaimed); other readers only share it.
        self.core
            .pop_with(|cell| cell.with(|v| unsafe { (*v).clone() }))
    }

    /// The front value, borrowed for as long as `guard` lives.
    pub fn front<'g>(&'g self, guard: &'g Guard) -> Option<&'g T> {
        let node = self.core.first(guard);
        // SAFETY: `node` was loaded under `guard`; it stays allocated (and
        // its value undropped) until `guard` is gone.
        unsafe { (!node.is_null()).then(|| Node::value(node)) }
    }

    /// Iterates front to back over the nodes linked when each step is taken.
    /// Concurrent pushes to the front are not seen; nodes popped meanwhile
    /// may still be yielded (they stay valid while `guard` lives).
    pub fn iter<'g>(&'g self, guard: &'g Guard) -> Iter<'g, T> {
        Iter {
            node: self.core.first(guard),
            _guard: PhantomData,
        }
    }

    /// The number of nodes, counted by walking the list: O(n) and only a
    /// snapshot when other threads push or pop meanwhile.
    pub fn len(&self) -> usize {
        count(&self.core)
    }

    /// Whether the list is empty right now.
    pub fn is_empty(&self) -> bool {
        self.core.is_empty()
    }

    /// Removes every value (exclusive access, so no reclamation delay).
    pub fn clear(&mut self) {
        let chain = self.core.take_all();
        // SAFETY: `&mut self` means no other thread can reach the chain.
        unsafe { free_chain(chain, |_| {}) }
    }
}

impl<T> Default for List<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Drop for List<T> {
    fn drop(&mut self) {
        self.clear();
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for List<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let guard = epoch::pin();
        f.debug_list().entries(self.iter(&guard)).finish()
    }
}

impl<T> FromIterator<T> for List<T> {
    /// Builds a list by pushing each item to the front (so it iterates in
    /// reverse order of `iter`).
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        let list = List::new();
        iter.into_iter().for_each(|v| list.push_front(v));
        list
    }
}

/// Iterator over a [`List`], borrowing values for the guard's lifetime.
pub struct Iter<'g, T> {
    node: *mut Node<T>,
    _guard: PhantomData<&'g T>,
}

impl<'g, T> Iterator for Iter<'g, T> {
    type Item = &'g T;

    fn next(&mut self) -> Option<&'g T> {
        // SAFETY: `node` was reached under the guard that `'g` borrows: it
        // was linked after the pin began (a popped node's `next` still points
        // at a node that was linked when it was popped), so it is not
        // reclaimed, and its value not dropped, before the guard goes.
        let node = self.node;
        if node.is_null() {
            return None;
        }
        // SAFETY: as above.
        unsafe {
            self.node = Node::next(node);
            Some(Node::value(node))
        }
    }
}

impl<T> std::fmt::Debug for Iter<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Iter").finish_non_exhaustive()
    }
}

/// A Treiber stack: lock-free LIFO that moves values in and out.
///
/// `push` is a single CAS with no epoch pin; `pop` pins the epoch so that
/// the node it reads cannot be freed under it (which also rules out ABA).
///
/// ```
/// use kuai_lockfree::Stack;
///
/// let stack = Stack::new();
/// stack.push(String::from("a"));
/// stack.push(String::from("b"));
/// assert_eq!(stack.pop().as_deref(), Some("b"));
/// assert_eq!(stack.pop().as_deref(), Some("a"));
/// assert_eq!(stack.pop(), None);
/// ```
pub struct Stack<T> {
    core: Treiber<ManuallyDrop<T>>,
}

// SAFETY: a value is only ever accessed by the thread that pushes it and the
// one thread whose CAS pops it (or the dropping owner): `T: Send` suffices.
unsafe impl<T: Send> Send for Stack<T> {}
// SAFETY: as above; no `&T` is ever shared between threads.
unsafe impl<T: Send> Sync for Stack<T> {}

impl<T> Stack<T> {
    /// An empty stack.
    pub fn new() -> Self {
        Stack {
            core: Treiber::new(),
        }
    }

    /// Pushes `value` on top: one allocation and one CAS, no epoch pin.
    #[inline]
    pub fn push(&self, value: T) {
        self.core.push(ManuallyDrop::new(value));
    }

    /// Pops the top value.
    #[inline]
    pub fn pop(&self) -> Option<T> {
        self.core.pop_with(|cell| {
            cell.with_mut(|v| {
                // SAFETY: only the thread whose CAS unlinked the node runs
                // this, once; the node is then freed without dropping the
                // value (`ManuallyDrop`), so the value is moved out once.
                unsafe { ManuallyDrop::take(&mut *v) }
            })
        })
    }

    /// Whether the stack is empty right now.
    pub fn is_empty(&self) -> bool {
        self.core.is_empty()
    }

    /// The number of values, by walking the nodes: O(n), a snapshot under
    /// concurrency.
    pub fn len(&self) -> usize {
        count(&self.core)
    }
}

impl<T> Default for Stack<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Drop for Stack<T> {
    fn drop(&mut self) {
        let chain = self.core.take_all();
        // SAFETY: `&mut self`: no other thread can reach the chain. Values
        // still linked were never popped, so each is dropped exactly once.
        unsafe { free_chain(chain, |v| ManuallyDrop::drop(v)) }
    }
}

impl<T> std::fmt::Debug for Stack<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stack")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(kuai_loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize as StdAtomicUsize;

    #[derive(Clone)]
    struct Counted(Arc<StdAtomicUsize>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    #[test]
    fn list_lifo_and_iter() {
        let list: List<i32> = (1..=3).collect();
        let g = epoch::pin();
        assert_eq!(list.iter(&g).copied().collect::<Vec<_>>(), vec![3, 2, 1]);
        assert_eq!(list.front(&g), Some(&3));
        assert_eq!(list.len(), 3);
        assert_eq!(format!("{list:?}"), "[3, 2, 1]");
        assert_eq!(list.pop_front(), Some(3));
        assert_eq!(list.pop_front(), Some(2));
        assert_eq!(list.pop_front(), Some(1));
        assert_eq!(list.pop_front(), None);
        assert!(list.is_empty());
    }

    #[test]
    fn stack_drops_unpopped_values_once() {
        let drops = Arc::new(StdAtomicUsize::new(0));
        {
            let s = Stack::new();
            for _ in 0..10 {
                s.push(Counted(drops.clone()));
            }
            drop(s.pop());
            assert_eq!(drops.load(std::sync::atomic::Ordering::Relaxed), 1);
            assert_eq!(s.len(), 9);
            assert!(format!("{s:?}").contains("9"));
        }
        assert_eq!(drops.load(std::sync::atomic::Ordering::Relaxed), 10);
    }

    #[test]
    fn list_clear() {
        let mut list: List<String> = ["a", "b"].iter().map(|s| s.to_string()).collect();
        list.clear();
        assert!(list.is_empty());
        list.push_front("c".into());
        assert_eq!(list.len(), 1);
    }
}
