//! A hierarchical timer wheel (after Caffeine's) for expiring entries in
//! O(1) amortised time.
//!
//! Four levels of 64 buckets span about 1.07 s, 1.1 min, 1.2 h and 3.2 days
//! per bucket; deadlines further out sit in an overflow bucket that is
//! re-examined whenever the top level turns. Scheduling and cancelling are
//! O(1) list operations; advancing visits only buckets whose tick passed and
//! either expires an entry or re-files it lower (each entry cascades at most
//! once per level). Deadlines are nanoseconds since the cache's epoch;
//! expiry is lazy-exact on reads (a read checks the deadline itself), so the
//! wheel's ~1 s granularity only delays reclaiming memory.

use crate::list::{Linked, ListHead, NIL};

const SHIFTS: [u32; 4] = [30, 36, 42, 48];
const BUCKETS: usize = 64;
const OVERFLOW: usize = SHIFTS.len() * BUCKETS;

/// Per-entry timer links.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TimerLink {
    prev: u32,
    next: u32,
    bucket: u32,
    /// When the entry expires (`u64::MAX`: never).
    pub(crate) deadline: u64,
    /// The deadline fixed at write time (TTL or per-entry expiry), which
    /// time-to-idle may not extend. Kept here, not in the slab node, so
    /// caches without expiry do not pay for it.
    pub(crate) write_deadline: u64,
}

impl TimerLink {
    pub(crate) const UNSCHEDULED: TimerLink = TimerLink {
        prev: NIL,
        next: NIL,
        bucket: NIL,
        deadline: u64::MAX,
        write_deadline: u64::MAX,
    };
}

impl Linked for TimerLink {
    #[inline]
    fn prev(&self) -> u32 {
        self.prev
    }
    #[inline]
    fn next(&self) -> u32 {
        self.next
    }
    #[inline]
    fn set_prev(&mut self, p: u32) {
        self.prev = p;
    }
    #[inline]
    fn set_next(&mut self, n: u32) {
        self.next = n;
    }
}

/// The wheel of one shard.
#[derive(Debug)]
pub(crate) struct TimerWheel {
    buckets: Vec<ListHead>,
    last: u64,
}

impl TimerWheel {
    pub(crate) fn new(now: u64) -> Self {
        TimerWheel {
            buckets: vec![ListHead::EMPTY; OVERFLOW + 1],
            last: now,
        }
    }

    fn bucket_for(&self, deadline: u64) -> usize {
        let delta = deadline.saturating_sub(self.last);
        for (level, shift) in SHIFTS.iter().enumerate() {
            if delta < (1u64 << (shift + 6)) {
                return level * BUCKETS + ((deadline >> shift) as usize & (BUCKETS - 1));
            }
        }
        OVERFLOW
    }

    /// Sets entry `i`'s deadline (`u64::MAX` cancels).
    pub(crate) fn schedule(&mut self, links: &mut [TimerLink], i: u32, deadline: u64) {
        self.cancel(links, i);
        links[i as usize].deadline = deadline;
        if deadline == u64::MAX {
            return;
        }
        let b = self.bucket_for(deadline);
        self.buckets[b].push_back(links, i, 0);
        links[i as usize].bucket = b as u32;
    }

    /// Removes entry `i` from the wheel (if scheduled).
    pub(crate) fn cancel(&mut self, links: &mut [TimerLink], i: u32) {
        let b = links[i as usize].bucket;
        if b != NIL {
            self.buckets[b as usize].unlink(links, i, 0);
            links[i as usize].bucket = NIL;
        }
    }

    /// Moves time to `now`, pushing the indices of entries whose deadline
    /// passed to `expired` (they are removed from the wheel).
    pub(crate) fn advance(&mut self, links: &mut [TimerLink], now: u64, expired: &mut Vec<u32>) {
        let prev = self.last;
        if now <= prev {
            return;
        }
        self.last = now;
        for (level, &shift) in SHIFTS.iter().enumerate() {
            let (p, c) = (prev >> shift, now >> shift);
            if p == c {
                break;
            }
            let n = (c - p + 1).min(BUCKETS as u64);
            for t in 0..n {
                let b = level * BUCKETS + ((p + t) as usize & (BUCKETS - 1));
                self.drain_bucket(links, b, now, expired);
            }
            if level == SHIFTS.len() - 1 {
                self.drain_bucket(links, OVERFLOW, now, expired);
            }
        }
    }

    fn drain_bucket(
        &mut self,
        links: &mut [TimerLink],
        b: usize,
        now: u64,
        expired: &mut Vec<u32>,
    ) {
        let mut i = self.buckets[b].head;
        // Detach the whole bucket first: re-filed entries may land in it again.
        self.buckets[b] = ListHead::EMPTY;
        while i != NIL {
            let next = links[i as usize].next;
            let link = &mut links[i as usize];
            link.prev = NIL;
            link.next = NIL;
            link.bucket = NIL;
            if link.deadline <= now {
                expired.push(i);
            } else {
                let d = link.deadline;
                self.schedule(links, i, d);
            }
            i = next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn expires_each_entry_once_at_or_after_its_deadline() {
        let deadlines = [
            SEC / 2,
            3 * SEC,
            90 * SEC,
            2 * 3600 * SEC,
            10 * 86_400 * SEC,
            400 * 86_400 * SEC,
        ];
        let mut links = vec![TimerLink::UNSCHEDULED; deadlines.len()];
        let mut w = TimerWheel::new(0);
        for (i, &d) in deadlines.iter().enumerate() {
            w.schedule(&mut links, i as u32, d);
        }
        let mut out = Vec::new();
        let mut now = 0;
        let mut seen = vec![None; deadlines.len()];
        // Advance in irregular steps up to 2 years.
        let mut step = SEC / 3;
        while now < 800 * 86_400 * SEC {
            now += step;
            step = (step * 3 / 2).min(86_400 * SEC);
            w.advance(&mut links, now, &mut out);
            for &i in &out {
                assert!(seen[i as usize].is_none(), "expired twice");
                assert!(deadlines[i as usize] <= now);
                seen[i as usize] = Some(now);
            }
            out.clear();
        }
        assert!(seen.iter().all(Option::is_some), "{seen:?}");
    }

    #[test]
    fn cancel_and_reschedule() {
        let mut links = vec![TimerLink::UNSCHEDULED; 2];
        let mut w = TimerWheel::new(0);
        w.schedule(&mut links, 0, 5 * SEC);
        w.schedule(&mut links, 1, 5 * SEC);
        w.cancel(&mut links, 0);
        w.schedule(&mut links, 1, 100 * SEC);
        let mut out = Vec::new();
        w.advance(&mut links, 10 * SEC, &mut out);
        assert!(out.is_empty());
        w.advance(&mut links, 101 * SEC, &mut out);
        assert_eq!(out, vec![1]);
    }
}
