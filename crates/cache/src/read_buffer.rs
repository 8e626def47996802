//! A shard's lossy read buffer (Caffeine's design): readers look entries up
//! under the shard's *read* lock and leave a note of the hit here instead of
//! updating the policy themselves; whoever holds the write lock next (a
//! writer, or a reader that finds the buffer half full and wins a
//! `try_write`) replays the notes into the policy.
//!
//! The buffer is a bounded ring of `u64` notes (a slab index and 32 bits of
//! the key's hash, to recognise a slot reused since). Recording costs one
//! compare-and-swap; when the ring is full or the CAS loses a race, the note
//! is dropped — the policy then misses one access, which only nudges its
//! estimate. The *count* of hits is still exact: every recorded or dropped
//! note is counted when drained.

use std::sync::atomic::Ordering;

use crate::sync::AtomicU64;

/// Notes held per shard.
pub(crate) const SLOTS: usize = 64;
/// A reader that leaves the ring at least this full tries to drain it.
const DRAIN_AT: u64 = SLOTS as u64 / 2;

/// One shard's read buffer, on its own cache lines.
#[repr(align(64))]
pub(crate) struct ReadBuffer {
    tail: AtomicU64,
    /// Moved only by the drainer, which holds the shard's write lock.
    head: AtomicU64,
    /// Hits whose note was dropped (still counted as hits).
    dropped: AtomicU64,
    /// Lookups that missed on the read path.
    pub(crate) misses: AtomicU64,
    slots: [AtomicU64; SLOTS],
}

impl ReadBuffer {
    pub(crate) fn new() -> Self {
        ReadBuffer {
            tail: AtomicU64::new(0),
            head: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            slots: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// The note for slab index `i` of an entry whose hash is `hash`.
    #[inline(always)]
    pub(crate) fn note(i: u32, hash: u64) -> u64 {
        (hash & 0xffff_ffff_0000_0000) | (u64::from(i) + 1)
    }

    /// Splits a note into (slab index, hash tag to compare with
    /// `hash & 0xffff_ffff_0000_0000`).
    #[inline(always)]
    pub(crate) fn unnote(note: u64) -> (u32, u64) {
        (
            ((note & 0xffff_ffff) as u32).wrapping_sub(1),
            note & 0xffff_ffff_0000_0000,
        )
    }

    /// Records a hit; says whether the caller should try to drain.
    #[inline]
    pub(crate) fn record(&self, note: u64) -> bool {
        let t = self.tail.load(Ordering::Relaxed);
        let pending = t.wrapping_sub(self.head.load(Ordering::Relaxed));
        if pending >= SLOTS as u64
            || self
                .tail
                .compare_exchange(t, t.wrapping_add(1), Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return pending >= DRAIN_AT;
        }
        // A note stored after a drain passed its slot is overwritten by the
        // slot's next writer or replayed late: harmless for a policy hint.
        self.slots[t as usize % SLOTS].store(note, Ordering::Release);
        pending + 1 >= DRAIN_AT
    }

    /// Whether no note waits to be drained (dropped notes may still wait to
    /// be counted: [`drain`](ReadBuffer::drain) counts them whenever called).
    #[inline(always)]
    pub(crate) fn is_empty(&self) -> bool {
        self.tail.load(Ordering::Relaxed) == self.head.load(Ordering::Relaxed)
    }

    /// Replays the notes into `apply`; returns the hits they stand for
    /// (dropped ones included). The caller holds the shard's write lock.
    pub(crate) fn drain(&self, mut apply: impl FnMut(u64)) -> u64 {
        let h = self.head.load(Ordering::Relaxed);
        let t = self.tail.load(Ordering::Acquire);
        let mut i = h;
        while i != t {
            let note = self.slots[i as usize % SLOTS].swap(0, Ordering::Acquire);
            if note != 0 {
                apply(note);
            }
            i = i.wrapping_add(1);
        }
        self.head.store(t, Ordering::Release);
        let dropped = if self.dropped.load(Ordering::Relaxed) == 0 {
            0
        } else {
            self.dropped.swap(0, Ordering::Relaxed)
        };
        t.wrapping_sub(h) + dropped
    }
}

#[cfg(all(test, not(kuai_loom)))]
mod tests {
    use super::*;

    #[test]
    fn records_drains_and_counts_dropped_notes() {
        let b = ReadBuffer::new();
        assert!(b.is_empty());
        let n = ReadBuffer::note(7, 0xabcd_ef01_2345_6789);
        assert_eq!(ReadBuffer::unnote(n), (7, 0xabcd_ef01_0000_0000));
        let mut asked = false;
        for _ in 0..SLOTS + 10 {
            asked |= b.record(n);
        }
        assert!(asked, "a half-full buffer asks to be drained");
        let mut seen = 0;
        assert!(!b.is_empty());
        assert_eq!(b.drain(|v| seen += u64::from(v == n)), SLOTS as u64 + 10);
        assert_eq!(seen, SLOTS as u64);
        assert!(b.is_empty());
        assert!(!b.record(n));
        assert_eq!(b.drain(|_| {}), 1);
        assert_eq!(b.drain(|_| {}), 0);
    }
}
