//! A bounded MPMC ring buffer with per-slot sequence numbers (Vyukov).

use core::mem::MaybeUninit;

use crossbeam_utils::CachePadded;
use kuai_core::{PushError, TryQueue};

use crate::error::LockfreeError;
use crate::sync::{self, AtomicUsize, Ordering, UnsafeCell, fence};

/// One cell of the ring: a stamp saying whose turn it is, and the value.
struct Slot<T> {
    /// `position + 1` once written at `position` (ready to pop);
    /// `position + one_lap` once popped at `position` (ready to push on the
    /// next lap).
    stamp: AtomicUsize,
    value: UnsafeCell<MaybeUninit<T>>,
}

/// A bounded multi-producer multi-consumer FIFO queue on a fixed ring of
/// slots (Dmitry Vyukov's design, with the lap encoding of crossbeam's
/// `ArrayQueue` so any capacity works without division).
///
/// Positions (`head`, `tail`) carry an index in the low bits and a lap
/// counter above them; each slot's stamp tells a producer or a consumer
/// whether the slot is its to take on this lap. A push or a pop is one CAS
/// on `head` or `tail` plus a plain store of the stamp; the queue never
/// allocates after construction and never blocks: [`push`](Self::push)
/// hands the value back when the queue is full.
///
/// ```
/// use kuai_lockfree::{ArrayQueue, LockfreeError};
/// use kuai_core::TryQueue;
///
/// assert_eq!(ArrayQueue::<u8>::new(0).unwrap_err(), LockfreeError::ZeroCapacity);
///
/// let q = ArrayQueue::new(2)?;
/// q.push("a").unwrap();
/// q.try_push("b").unwrap(); // the kuai_core::TryQueue view of the same queue
/// assert_eq!(q.push("c"), Err("c"));
/// assert_eq!(q.pop(), Some("a"));
/// assert_eq!(q.len(), 1);
/// # Ok::<(), LockfreeError>(())
/// ```
pub struct ArrayQueue<T> {
    head: CachePadded<AtomicUsize>,
    tail: CachePadded<AtomicUsize>,
    buffer: Box<[Slot<T>]>,
    cap: usize,
    one_lap: usize,
}

// SAFETY: values are moved in by a producer and out by the one consumer
// whose CAS claimed the slot (or dropped by the owner): `T: Send`.
unsafe impl<T: Send> Send for ArrayQueue<T> {}
// SAFETY: as above; no `&T` is ever shared between threads.
unsafe impl<T: Send> Sync for ArrayQueue<T> {}

impl<T> ArrayQueue<T> {
    /// A queue holding at most `capacity` values.
    ///
    /// # Errors
    ///
    /// [`LockfreeError::ZeroCapacity`] for 0, and
    /// [`LockfreeError::CapacityTooLarge`] when the ring cannot be
    /// represented or allocated (the allocation is attempted fallibly, so a
    /// huge capacity is an error rather than an abort).
    pub fn new(capacity: usize) -> Result<Self, LockfreeError> {
        if capacity == 0 {
            return Err(LockfreeError::ZeroCapacity);
        }
        let too_large = LockfreeError::CapacityTooLarge {
            requested: capacity,
        };
        // One lap must exceed every index, and the lap counter needs room
        // above it.
        let one_lap = capacity
            .checked_add(1)
            .and_then(usize::checked_next_power_of_two)
            .filter(|lap| *lap <= usize::MAX / 4)
            .ok_or(too_large.clone())?;
        let mut slots = Vec::new();
        slots.try_reserve_exact(capacity).map_err(|_| too_large)?;
        slots.extend((0..capacity).map(|i| Slot {
            stamp: AtomicUsize::new(i),
            value: UnsafeCell::new(MaybeUninit::uninit()),
        }));
        Ok(ArrayQueue {
            head: CachePadded::new(AtomicUsize::new(0)),
            tail: CachePadded::new(AtomicUsize::new(0)),
            buffer: slots.into_boxed_slice(),
            cap: capacity,
            one_lap,
        })
    }

    /// The position after `pos`: next index, or index 0 of the next lap.
    #[inline(always)]
    fn advance(&self, pos: usize, index: usize) -> usize {
        if index + 1 < self.cap {
            pos + 1
        } else {
            (pos & !(self.one_lap - 1)).wrapping_add(self.one_lap)
        }
    }

    /// Pushes `value` at the back, or returns it when the queue is full.
    #[inline]
    pub fn push(&self, value: T) -> Result<(), T> {
        let mut tail = self.tail.load(Ordering::Relaxed);
        loop {
            let index = tail & (self.one_lap - 1);
            // SAFETY: every position's index is < cap by construction
            // (`advance` wraps to index 0 at `cap`).
            let slot = unsafe { self.buffer.get_unchecked(index) };
            let stamp = slot.stamp.load(Ordering::Acquire);
            if stamp == tail {
                let new_tail = self.advance(tail, index);
                match self.tail.compare_exchange_weak(
                    tail,
                    new_tail,
                    Ordering::SeqCst,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        // SAFETY: the stamp said the slot is free on this lap
                        // and our CAS claimed this position, so no other
                        // thread touches the value until we publish the
                        // stamp below (Release pairs with the consumer's
                        // Acquire load of the stamp).
                        slot.value
                            .with_mut(|v| unsafe { v.write(MaybeUninit::new(value)) });
                        slot.stamp.store(tail + 1, Ordering::Release);
                        return Ok(());
                    }
                    Err(current) => tail = current,
                }
            } else if stamp.wrapping_add(self.one_lap) == tail + 1 {
                // The slot still holds last lap's value: full, unless a
                // consumer has moved head meanwhile.
                fence(Ordering::SeqCst);
                let head = self.head.load(Ordering::Relaxed);
                if head.wrapping_add(self.one_lap) == tail {
                    return Err(value);
                }
                sync::spin_hint();
                tail = self.tail.load(Ordering::Relaxed);
            } else {
                // Another producer claimed this position and is writing.
                sync::spin_hint();
                tail = self.tail.load(Ordering::Relaxed);
            }
        }
    }

    /// Pops the value at the front, or returns `None` when empty.
    #[inline]
    pub fn pop(&self) -> Option<T> {
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            let index = head & (self.one_lap - 1);
            // SAFETY: indices are < cap (see `push`).
            let slot = unsafe { self.buffer.get_unchecked(index) };
            let stamp = slot.stamp.load(Ordering::Acquire);
            if stamp == head + 1 {
                let new_head = self.advance(head, index);
                match self.head.compare_exchange_weak(
                    head,
                    new_head,
                    Ordering::SeqCst,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        // SAFETY: the stamp (acquired) says a producer wrote
                        // this slot at this position, and our CAS claimed it:
                        // we alone move the value out before handing the slot
                        // to the next lap's producer with the Release store.
                        let value = slot.value.with(|v| unsafe { v.read().assume_init() });
                        slot.stamp
                            .store(head.wrapping_add(self.one_lap), Ordering::Release);
                        return Some(value);
                    }
                    Err(current) => head = current,
                }
            } else if stamp == head {
                // Nothing written here on this lap: empty, unless a producer
                // has moved tail meanwhile.
                fence(Ordering::SeqCst);
                let tail = self.tail.load(Ordering::Relaxed);
                if tail == head {
                    return None;
                }
                sync::spin_hint();
                head = self.head.load(Ordering::Relaxed);
            } else {
                // Another consumer claimed this position and is reading.
                sync::spin_hint();
                head = self.head.load(Ordering::Relaxed);
            }
        }
    }

    /// The most values the queue holds.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// The number of values queued (a consistent snapshot of head and
    /// tail, possibly stale by the time it returns).
    pub fn len(&self) -> usize {
        loop {
            let tail = self.tail.load(Ordering::SeqCst);
            let head = self.head.load(Ordering::SeqCst);
            if self.tail.load(Ordering::SeqCst) == tail {
                let hix = head & (self.one_lap - 1);
                let tix = tail & (self.one_lap - 1);
                return if hix < tix {
                    tix - hix
                } else if hix > tix {
                    self.cap - hix + tix
                } else if tail == head {
                    0
                } else {
                    self.cap
                };
            }
            sync::spin_hint();
        }
    }

    /// Whether the queue is empty right now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the queue is full right now.
    pub fn is_full(&self) -> bool {
        self.len() == self.cap
    }
}

impl<T> Drop for ArrayQueue<T> {
    fn drop(&mut self) {
        let len = self.len();
        let hix = self.head.load(Ordering::Relaxed) & (self.one_lap - 1);
        for i in 0..len {
            let index = if hix + i < self.cap {
                hix + i
            } else {
                hix + i - self.cap
            };
            // SAFETY: `&mut self`; the `len` slots from head onwards hold
            // values that were pushed and never popped, each dropped once.
            self.buffer[index]
                .value
                .with_mut(|v| unsafe { (*v).assume_init_drop() });
        }
    }
}

impl<T: Send> TryQueue<T> for ArrayQueue<T> {
    fn try_push(&self, value: T) -> Result<(), PushError<T>> {
        self.push(value).map_err(PushError::Full)
    }

    fn try_pop(&self) -> Option<T> {
        self.pop()
    }

    fn capacity(&self) -> Option<usize> {
        Some(self.cap)
    }

    fn len(&self) -> usize {
        ArrayQueue::len(self)
    }
}

impl<T> std::fmt::Debug for ArrayQueue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArrayQueue")
            .field("len", &self.len())
            .field("capacity", &self.cap)
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(kuai_loom)))]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_capacity() {
        assert_eq!(
            ArrayQueue::<u8>::new(0).unwrap_err(),
            LockfreeError::ZeroCapacity
        );
        assert!(matches!(
            ArrayQueue::<u64>::new(usize::MAX),
            Err(LockfreeError::CapacityTooLarge { .. })
        ));
        assert!(matches!(
            ArrayQueue::<u64>::new(usize::MAX / 64),
            Err(LockfreeError::CapacityTooLarge { .. })
        ));
    }

    #[test]
    fn wraps_many_laps() {
        for cap in [1, 2, 3, 5, 8] {
            let q = ArrayQueue::new(cap).unwrap();
            let mut next_out = 0;
            for i in 0..100 {
                if q.push(i).is_err() {
                    assert_eq!(q.len(), cap);
                    assert!(q.is_full());
                    assert_eq!(q.pop(), Some(next_out));
                    next_out += 1;
                    q.push(i).unwrap();
                }
            }
            while let Some(v) = q.pop() {
                assert_eq!(v, next_out);
                next_out += 1;
            }
            assert_eq!(next_out, 100);
            assert!(q.is_empty());
        }
    }

    #[test]
    fn try_queue_view() {
        let q = ArrayQueue::new(1).unwrap();
        let tq: &dyn TryQueue<String> = &q;
        tq.try_push("x".into()).unwrap();
        assert_eq!(
            tq.try_push("y".into()).unwrap_err(),
            PushError::Full("y".to_string())
        );
        assert_eq!(tq.capacity(), Some(1));
        assert_eq!(tq.len(), 1);
        assert_eq!(tq.try_pop().as_deref(), Some("x"));
        assert!(tq.is_empty());
        assert!(format!("{q:?}").contains("capacity"));
    }
}
