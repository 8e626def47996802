//! The Michael–Scott unbounded MPMC queue.

use core::marker::PhantomData;
use core::mem::MaybeUninit;
use core::ptr;

use crossbeam_utils::CachePadded;

use crate::epoch;
use crate::sync::{AtomicPtr, Ordering, UnsafeCell};

struct Node<T> {
    /// Uninitialised in the sentinel; initialised in every node after it.
    value: UnsafeCell<MaybeUninit<T>>,
    next: AtomicPtr<Node<T>>,
}

impl<T> Node<T> {
    fn alloc(value: MaybeUninit<T>) -> *mut Self {
        Box::into_raw(Box::new(Node {
            value: UnsafeCell::new(value),
            next: AtomicPtr::new(ptr::null_mut()),
        }))
    }
}

/// An unbounded multi-producer multi-consumer FIFO queue (Michael & Scott,
/// 1996) with epoch-based reclamation.
///
/// The queue always holds a sentinel node; `head` points at it and the
/// oldest value lives in the node after it. A push links a node after the
/// last one with a CAS and then swings `tail` (any thread that sees a lagging
/// tail helps it along); a pop swings `head` to the next node, moves that
/// node's value out and retires the old sentinel.
///
/// ```
/// use kuai_lockfree::Queue;
///
/// let q = Queue::new();
/// std::thread::scope(|s| {
///     s.spawn(|| (0..100).for_each(|i| q.push(i)));
/// });
/// let drained: Vec<i32> = std::iter::from_fn(|| q.pop()).collect();
/// assert_eq!(drained, (0..100).collect::<Vec<_>>());
/// ```
pub struct Queue<T> {
    head: CachePadded<AtomicPtr<Node<T>>>,
    tail: CachePadded<AtomicPtr<Node<T>>>,
    _owns: PhantomData<Box<Node<T>>>,
}

// SAFETY: each value is written by its producer and moved out by the one
// consumer whose head CAS claimed it (or dropped by the owner): `T: Send`.
unsafe impl<T: Send> Send for Queue<T> {}
// SAFETY: as above; values are never shared by reference.
unsafe impl<T: Send> Sync for Queue<T> {}

impl<T> Queue<T> {
    /// An empty queue.
    pub fn new() -> Self {
        let sentinel = Node::alloc(MaybeUninit::uninit());
        Queue {
            head: CachePadded::new(AtomicPtr::new(sentinel)),
            tail: CachePadded::new(AtomicPtr::new(sentinel)),
            _owns: PhantomData,
        }
    }

    /// Appends `value` at the back.
    pub fn push(&self, value: T) {
        let node = Node::alloc(MaybeUninit::new(value));
        let _guard = epoch::pin();
        loop {
            let tail = self.tail.load(Ordering::Acquire);
            // SAFETY: `tail` was loaded under the guard and tail never points
            // at a retired node (a pop retires the old sentinel only after
            // making sure `tail` has moved past it), so it is not freed
            // before `_guard` drops.
            let next = unsafe { (*tail).next.load(Ordering::Acquire) };
            if !next.is_null() {
                // The tail lags: help it forward, then retry.
                let _ =
                    self.tail
                        .compare_exchange(tail, next, Ordering::Release, Ordering::Relaxed);
                continue;
            }
            // SAFETY: as above, `tail` is valid while pinned.
            let linked = unsafe {
                (*tail).next.compare_exchange(
                    ptr::null_mut(),
                    node,
                    Ordering::Release,
                    Ordering::Relaxed,
                )
            };
            if linked.is_ok() {
                let _ =
                    self.tail
                        .compare_exchange(tail, node, Ordering::Release, Ordering::Relaxed);
                return;
            }
        }
    }

    /// Removes the value at the front, or returns `None` when empty.
    pub fn pop(&self) -> Option<T> {
        let guard = epoch::pin();
        loop {
            let head = self.head.load(Ordering::Acquire);
            // SAFETY: loaded under `guard`; the sentinel is retired only by
            // the pop that moves `head` past it, after our pin began.
            let next = unsafe { (*head).next.load(Ordering::Acquire) };
            if next.is_null() {
                return None;
            }
            if self
                .head
                .compare_exchange(head, next, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                // Never leave `tail` pointing at the node we retire.
                let tail = self.tail.load(Ordering::Relaxed);
                if tail == head {
                    let _ = self.tail.compare_exchange(
                        tail,
                        next,
                        Ordering::Release,
                        Ordering::Relaxed,
                    );
                }
                // SAFETY: our CAS made `next` the sentinel, so we alone move
                // its value out (it was initialised by the push that linked
                // it, published by that Release CAS we acquired). The old
                // sentinel `head` is unlinked and retired exactly once; its
                // value is either uninitialised or was moved out earlier, and
                // `MaybeUninit` does not drop it.
                unsafe {
                    let value = (*next).value.with(|v| ptr::read(v).assume_init());
                    epoch::retire(&guard, head);
                    return Some(value);
                }
            }
        }
    }

    /// Whether the queue is empty right now.
    pub fn is_empty(&self) -> bool {
        let _guard = epoch::pin();
        let head = self.head.load(Ordering::Acquire);
        // SAFETY: loaded under `_guard` (see `pop`).
        unsafe { (*head).next.load(Ordering::Acquire).is_null() }
    }

    /// The number of queued values, by walking the nodes: O(n), a snapshot
    /// under concurrency.
    pub fn len(&self) -> usize {
        let _guard = epoch::pin();
        let mut n = 0;
        let mut node = self.head.load(Ordering::Acquire);
        loop {
            // SAFETY: every node reached from `head` under `_guard` was
            // linked after the pin began and is not freed before it ends.
            node = unsafe { (*node).next.load(Ordering::Acquire) };
            if node.is_null() {
                return n;
            }
            n += 1;
        }
    }
}

impl<T> Default for Queue<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Drop for Queue<T> {
    fn drop(&mut self) {
        let sentinel = self.head.load(Ordering::Relaxed);
        // SAFETY: `&mut self`: no other thread can reach any node. The
        // sentinel's value is uninitialised or moved out; every later node
        // holds an initialised value that was never popped.
        unsafe {
            let mut node = (*sentinel).next.load(Ordering::Relaxed);
            drop(Box::from_raw(sentinel));
            while !node.is_null() {
                let b = Box::from_raw(node);
                node = b.next.load(Ordering::Relaxed);
                b.value.with_mut(|v| (*v).assume_init_drop());
            }
        }
    }
}

impl<T> std::fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(kuai_loom)))]
mod tests {
    use super::*;

    #[test]
    fn fifo_and_len() {
        let q = Queue::new();
        assert!(q.is_empty());
        for i in 0..5 {
            q.push(i.to_string());
        }
        assert_eq!(q.len(), 5);
        assert!(!q.is_empty());
        assert_eq!(q.pop().as_deref(), Some("0"));
        assert_eq!(q.pop().as_deref(), Some("1"));
        assert!(format!("{q:?}").contains("3"));
        // the remaining three are dropped with the queue (checked by the
        // drop-counting integration tests)
    }
}
