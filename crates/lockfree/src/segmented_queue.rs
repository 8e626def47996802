//! The unbounded MPMC queue: a Michael–Scott linked list of array segments
//! (Ramalhete & Correia's FAAArrayQueue), with epoch reclamation of segments.

use core::marker::PhantomData;
use core::mem::MaybeUninit;
use core::ptr;

use crossbeam_utils::CachePadded;

use crate::epoch;
use crate::sync::{AtomicPtr, AtomicUsize, Ordering, UnsafeCell};

/// Slots per segment: one allocation (and one epoch retirement) per this
/// many elements instead of one per element.
#[cfg(not(kuai_loom))]
const SEGMENT: usize = 128;
#[cfg(kuai_loom)]
const SEGMENT: usize = 2;

/// No value yet (a late producer may still write it, unless a consumer
/// marks the slot taken first).
const EMPTY: usize = 0;
/// A value is there, published by the producer's Release CAS.
const WRITTEN: usize = 1;
/// A consumer claimed the slot: it took the value, or poisoned an empty slot
/// so that the producer that owns it retries elsewhere.
const TAKEN: usize = 2;

struct Slot<T> {
    state: AtomicUsize,
    value: UnsafeCell<MaybeUninit<T>>,
}

struct Segment<T> {
    /// Next slot index for consumers (fetch-and-add; may overshoot).
    deq: CachePadded<AtomicUsize>,
    /// Next slot index for producers (fetch-and-add; may overshoot).
    enq: CachePadded<AtomicUsize>,
    next: AtomicPtr<Segment<T>>,
    slots: [Slot<T>; SEGMENT],
}

impl<T> Segment<T> {
    /// Allocates an empty segment directly on the heap (never building the
    /// slot array on the stack, whatever the size of `T`).
    fn alloc() -> *mut Self {
        let mut boxed = Box::<Self>::new_uninit();
        let seg = boxed.as_mut_ptr();
        // SAFETY: `seg` points to an allocation for one `Segment<T>`; every
        // field is written exactly once before the box is assumed init
        // (a `MaybeUninit` value needs no write).
        unsafe {
            ptr::addr_of_mut!((*seg).deq).write(CachePadded::new(AtomicUsize::new(0)));
            ptr::addr_of_mut!((*seg).enq).write(CachePadded::new(AtomicUsize::new(0)));
            ptr::addr_of_mut!((*seg).next).write(AtomicPtr::new(ptr::null_mut()));
            let slots = ptr::addr_of_mut!((*seg).slots).cast::<Slot<T>>();
            for i in 0..SEGMENT {
                slots.add(i).write(Slot {
                    state: AtomicUsize::new(EMPTY),
                    value: UnsafeCell::new(MaybeUninit::uninit()),
                });
            }
            Box::into_raw(boxed.assume_init())
        }
    }

    /// Whether any slot holds an unconsumed value; counts them if `count`.
    fn written(&self, count: bool) -> usize {
        let from = self.deq.load(Ordering::Acquire).min(SEGMENT);
        let to = self.enq.load(Ordering::Acquire).min(SEGMENT);
        let mut n = 0;
        for slot in &self.slots[from..to.max(from)] {
            if slot.state.load(Ordering::Acquire) == WRITTEN {
                n += 1;
                if !count {
                    break;
                }
            }
        }
        n
    }
}

/// An unbounded multi-producer multi-consumer FIFO queue.
///
/// The queue is a Michael–Scott linked list whose nodes are segments of
/// slots. Producers and consumers claim slots with a fetch-and-add on the
/// segment's indices instead of competing in a CAS loop, and a slot's state
/// (`EMPTY` → `WRITTEN` → `TAKEN`, or `EMPTY` → `TAKEN` when a consumer
/// overtakes a slow producer, which then retries) hands each value to
/// exactly one consumer. A full segment gets a successor linked with a CAS,
/// exactly like a Michael–Scott push; a drained segment is retired to the
/// epoch collector once `head` moves past it. Allocation and reclamation
/// thus happen once per segment, not once per element.
///
/// ```
/// use kuai_lockfree::Queue;
///
/// let q = Queue::new();
/// std::thread::scope(|s| {
///     s.spawn(|| (0..1000).for_each(|i| q.push(i)));
/// });
/// let drained: Vec<i32> = std::iter::from_fn(|| q.pop()).collect();
/// assert_eq!(drained, (0..1000).collect::<Vec<_>>());
/// ```
pub struct Queue<T> {
    head: CachePadded<AtomicPtr<Segment<T>>>,
    tail: CachePadded<AtomicPtr<Segment<T>>>,
    _owns: PhantomData<Box<Segment<T>>>,
}

// SAFETY: each value is written by its producer and moved out by the one
// consumer that claimed its slot (or dropped by the owner): `T: Send`.
unsafe impl<T: Send> Send for Queue<T> {}
// SAFETY: as above; values are never shared by reference.
unsafe impl<T: Send> Sync for Queue<T> {}

impl<T> Queue<T> {
    /// An empty queue (one segment allocated).
    pub fn new() -> Self {
        let first = Segment::alloc();
        Queue {
            head: CachePadded::new(AtomicPtr::new(first)),
            tail: CachePadded::new(AtomicPtr::new(first)),
            _owns: PhantomData,
        }
    }

    /// Appends `value` at the back.
    pub fn push(&self, value: T) {
        let _guard = epoch::pin();
        let mut value = value;
        loop {
            let tail = self.tail.load(Ordering::Acquire);
            // SAFETY: loaded under `_guard`; `tail` never points at a
            // retired segment (a pop moves `tail` past a segment before
            // retiring it), so it is live until `_guard` drops.
            let seg = unsafe { &*tail };
            let idx = seg.enq.fetch_add(1, Ordering::SeqCst);
            if idx < SEGMENT {
                let slot = &seg.slots[idx];
                // SAFETY: the fetch-and-add gave us slot `idx` alone among
                // producers; consumers read the value only after seeing
                // WRITTEN, which we have not published yet.
                slot.value
                    .with_mut(|v| unsafe { v.write(MaybeUninit::new(value)) });
                match slot.state.compare_exchange(
                    EMPTY,
                    WRITTEN,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => return,
                    Err(_) => {
                        // A consumer poisoned the slot: take the value back
                        // (it never read it) and try the next slot.
                        // SAFETY: we wrote it just above; nobody else reads
                        // a TAKEN slot's value.
                        value = slot.value.with(|v| unsafe { v.read().assume_init() });
                        continue;
                    }
                }
            }
            // The segment is full: link a new one, or help the tail along.
            if tail != self.tail.load(Ordering::Acquire) {
                continue;
            }
            let next = seg.next.load(Ordering::Acquire);
            if !next.is_null() {
                let _ = self
                    .tail
                    .compare_exchange(tail, next, Ordering::AcqRel, Ordering::Acquire);
                continue;
            }
            let fresh = Segment::alloc();
            // SAFETY: `fresh` is private until the CAS below publishes it.
            unsafe {
                let first = &(*fresh).slots[0];
                first.value.with_mut(|v| v.write(MaybeUninit::new(value)));
                first.state.store(WRITTEN, Ordering::Relaxed);
                (*fresh).enq.store(1, Ordering::Relaxed);
            }
            match seg.next.compare_exchange(
                ptr::null_mut(),
                fresh,
                Ordering::SeqCst,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    let _ = self.tail.compare_exchange(
                        tail,
                        fresh,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    );
                    return;
                }
                Err(_) => {
                    // Someone else linked a segment first: take the value
                    // back and free ours (never published).
                    // SAFETY: `fresh` is still private; its only value is
                    // moved out before the box is dropped, and
                    // `MaybeUninit` slots drop nothing.
                    unsafe {
                        value = (*fresh).slots[0].value.with(|v| v.read().assume_init());
                        drop(Box::from_raw(fresh));
                    }
                }
            }
        }
    }

    /// Removes the value at the front, or returns `None` when empty.
    pub fn pop(&self) -> Option<T> {
        let guard = epoch::pin();
        loop {
            let head = self.head.load(Ordering::Acquire);
            // SAFETY: loaded under `guard`; a segment is retired only by
            // the pop that moves `head` past it, after our pin began.
            let seg = unsafe { &*head };
            // SeqCst pairs with the producers' SeqCst fetch-and-add: a push
            // that completed before this pop began is never missed.
            if seg.deq.load(Ordering::SeqCst) >= seg.enq.load(Ordering::SeqCst)
                && seg.next.load(Ordering::SeqCst).is_null()
            {
                return None;
            }
            let idx = seg.deq.fetch_add(1, Ordering::SeqCst);
            if idx < SEGMENT {
                let slot = &seg.slots[idx];
                if slot.state.swap(TAKEN, Ordering::AcqRel) == WRITTEN {
                    // SAFETY: the Acquire swap saw the producer's Release
                    // CAS to WRITTEN, and the fetch-and-add made us the
                    // only consumer of slot `idx`: the value is ours.
                    return Some(slot.value.with(|v| unsafe { v.read().assume_init() }));
                }
                // Slot was still empty: we poisoned it; its producer
                // retries. Try the next slot.
                continue;
            }
            // Every slot of this segment has been claimed: move on.
            let next = seg.next.load(Ordering::Acquire);
            if next.is_null() {
                return None;
            }
            if self
                .head
                .compare_exchange(head, next, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                // Never leave `tail` pointing at the segment we retire.
                let _ = self
                    .tail
                    .compare_exchange(head, next, Ordering::AcqRel, Ordering::Acquire);
                // SAFETY: `head` is unlinked (head moved past it and tail
                // too), so no thread pinning from now on can reach it; only
                // our CAS retires it. All its slots were claimed, so every
                // value in it was or will be moved out by its claimer, who
                // is pinned; the `MaybeUninit` slots drop nothing.
                unsafe { epoch::retire(&guard, head) };
            }
        }
    }

    /// Whether the queue holds no value right now.
    pub fn is_empty(&self) -> bool {
        self.scan(false) == 0
    }

    /// The number of queued values, by scanning the segments: O(n), a
    /// snapshot under concurrency.
    pub fn len(&self) -> usize {
        self.scan(true)
    }

    fn scan(&self, count: bool) -> usize {
        let _guard = epoch::pin();
        let mut n = 0;
        let mut seg = self.head.load(Ordering::Acquire);
        // SAFETY: segments reached from `head` under `_guard` are live.
        while let Some(s) = unsafe { seg.as_ref() } {
            n += s.written(count);
            if n > 0 && !count {
                break;
            }
            seg = s.next.load(Ordering::Acquire);
        }
        n
    }
}

impl<T: Send> kuai_core::TryQueue<T> for Queue<T> {
    /// Never fails: the queue is unbounded.
    fn try_push(&self, value: T) -> Result<(), kuai_core::PushError<T>> {
        self.push(value);
        Ok(())
    }

    fn try_pop(&self) -> Option<T> {
        self.pop()
    }

    /// `None`: unbounded.
    fn capacity(&self) -> Option<usize> {
        None
    }

    fn len(&self) -> usize {
        Queue::len(self)
    }

    fn is_empty(&self) -> bool {
        Queue::is_empty(self)
    }
}

impl<T> Default for Queue<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Drop for Queue<T> {
    fn drop(&mut self) {
        let mut seg = self.head.load(Ordering::Relaxed);
        while !seg.is_null() {
            // SAFETY: `&mut self`: no other thread can reach any segment.
            // WRITTEN slots hold values never popped; each is dropped once.
            unsafe {
                let b = Box::from_raw(seg);
                for slot in &b.slots {
                    if slot.state.load(Ordering::Relaxed) == WRITTEN {
                        slot.value.with_mut(|v| (*v).assume_init_drop());
                    }
                }
                seg = b.next.load(Ordering::Relaxed);
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
    fn fifo_across_segments() {
        let q = Queue::new();
        assert!(q.is_empty());
        let n = SEGMENT * 3 + 5;
        for i in 0..n {
            q.push(i.to_string());
        }
        assert_eq!(q.len(), n);
        assert!(!q.is_empty());
        for i in 0..SEGMENT + 2 {
            assert_eq!(q.pop(), Some(i.to_string()));
        }
        assert_eq!(q.len(), n - SEGMENT - 2);
        assert!(format!("{q:?}").contains("len"));
        // the rest is dropped with the queue (drop counts are checked by
        // the integration tests)
    }

    #[test]
    fn pop_on_empty_does_not_lose_later_pushes() {
        let q = Queue::new();
        for round in 0..3 * SEGMENT {
            assert_eq!(q.pop(), None);
            q.push(round);
            assert_eq!(q.pop(), Some(round));
        }
        assert!(q.is_empty());
        let tq: &dyn kuai_core::TryQueue<usize> = &q;
        tq.try_push(1).unwrap();
        assert_eq!((tq.capacity(), tq.len(), tq.is_empty()), (None, 1, false));
        assert_eq!(tq.try_pop(), Some(1));
    }
}
