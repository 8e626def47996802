//! Eviction policies: which entry leaves when a shard is over its bound.
//!
//! All policies keep their queues as intrusive lists over the shard's slab
//! indices, so hits, inserts and evictions are O(1).
//!
//! * [`Policy::TinyLfu`] (default): W-TinyLFU with an adaptive window. New
//!   entries enter a small LRU *window*; when it overflows, its oldest entry
//!   becomes a *candidate* for the main space (a segmented LRU: probation and
//!   protected) and is admitted only if the frequency sketch says it is more
//!   popular than the main space's victim. The window is sized by *ghosts*
//!   (ARC's adaptation applied to W-TinyLFU): small FIFO sets remember the
//!   hashes of keys recently rejected at the window's exit and of keys
//!   recently evicted from the main space. A new key found in the window
//!   ghost grows the window (a larger one would have kept it), one found in
//!   the main ghost shrinks it; the step is ARC's ratio of the ghosts' sizes.
//!   Recency-friendly traces grow the window toward LRU, frequency-friendly
//!   ones shrink it toward LFU, without a hill climber's sampling delay or
//!   its random walk on noisy hit rates.
//! * [`Policy::Lru`], [`Policy::Fifo`]: one queue, moved on hit (LRU) or not.
//! * [`Policy::Lfu`]: 32 frequency levels with LRU order inside a level;
//!   evicts from the lowest level. Counts are capped, never aged.

use crate::list::{Linked, ListHead, NIL};
use crate::sketch::FrequencySketch;

/// The eviction policy of a cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Policy {
    /// Adaptive W-TinyLFU (window LRU + segmented main space, count-min
    /// sketch, window size steered by ghosts of evicted keys). The default.
    #[default]
    TinyLfu,
    /// Least recently used.
    Lru,
    /// First in, first out: hits do not reorder.
    Fifo,
    /// Least frequently used (capped counts, LRU tie-break).
    Lfu,
}

pub(crate) const WINDOW: u8 = 0;
pub(crate) const PROBATION: u8 = 1;
pub(crate) const PROTECTED: u8 = 2;
const LFU_LEVELS: usize = 32;

/// Something that carries a [`PolicyLink`] (the shard's slab node).
pub(crate) trait PolicyNode: Linked {
    fn pl(&self) -> &PolicyLink;
    fn pl_mut(&mut self) -> &mut PolicyLink;
}

/// Per-entry policy links, plus the entry's hash and weight.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PolicyLink {
    prev: u32,
    next: u32,
    pub(crate) queue: u8,
    pub(crate) weight: u32,
    /// The queue's push counter when this entry was last pushed: how far
    /// from the tail it is, without walking the list.
    stamp: u32,
    /// Hits in the window not yet added to the sketch (flushed when the
    /// entry leaves the window): a window hit costs no sketch cache miss.
    pending: u8,
    pub(crate) hash: u64,
}

impl PolicyLink {
    pub(crate) fn new(hash: u64, weight: u32) -> Self {
        PolicyLink {
            prev: NIL,
            next: NIL,
            queue: 0,
            weight,
            stamp: 0,
            pending: 0,
            hash,
        }
    }
    pub(crate) fn next_index(&self) -> u32 {
        self.next
    }
    pub(crate) fn prev_index(&self) -> u32 {
        self.prev
    }
}

impl Linked for PolicyLink {
    #[inline(always)]
    fn prev(&self) -> u32 {
        self.prev
    }
    #[inline(always)]
    fn next(&self) -> u32 {
        self.next
    }
    #[inline(always)]
    fn set_prev(&mut self, p: u32) {
        self.prev = p;
    }
    #[inline(always)]
    fn set_next(&mut self, n: u32) {
        self.next = n;
    }
}

/// The window moves by this many times ARC's step (the ratio of the other
/// ghost's size to this one's) per ghost hit: ARC's unit gain adapts too
/// slowly for short traces (sprite, multi2), larger gains swing on loops
/// (measured with `replay --suite`, 10 hash seeds averaged: gain 4 keeps
/// 22/22 trace rows within 0.5 points of the best peer, worst multi2 @20 %
/// at −0.47; gain 5: 21/22, multi2 @20 % at −0.79; over 16 single seeds
/// the mean rows within 0.5 were 21.4 (gain 4), 20.9 (5), 21.2 (3),
/// 20.6 (2), 18.4 (8); gain 1 was 21/22 on one seed).
const ADAPT_GAIN: usize = 4;

/// ARC's two ghost lists: bounded FIFO sets of the hashes of keys recently
/// rejected at the window's exit (`WINDOW_GHOST`) and recently evicted from
/// the main space (`MAIN_GHOST`). Each is a ring of hashes in eviction order;
/// one shared direct-mapped index (twice the rings' total size) maps a hash
/// to its ring and position, so a new key costs one lookup for both ghosts.
/// A key whose index slot is taken over by a later one is forgotten early,
/// which only makes its ghost a little shorter.
#[derive(Debug)]
pub(crate) struct Ghosts {
    /// Hashes in push order per ghost; 0 marks a slot already taken back.
    rings: [Vec<u64>; 2],
    next: [usize; 2],
    live: [usize; 2],
    /// Bit 31: the ghost; bits 0..31: ring position + 1; 0 = empty.
    index: Vec<u32>,
    mask: usize,
}

const WINDOW_GHOST: usize = 0;
const MAIN_GHOST: usize = 1;
const GHOST_BIT: u32 = 1 << 31;

impl Ghosts {
    fn new(window: usize, main: usize) -> Self {
        let window = window.min(GHOST_BIT as usize - 2);
        let main = main.min(GHOST_BIT as usize - 2);
        let slots = ((window + main) * 2).next_power_of_two().max(2);
        Ghosts {
            rings: [vec![0; window], vec![0; main]],
            next: [0; 2],
            live: [0; 2],
            index: if window + main == 0 {
                Vec::new()
            } else {
                vec![0; slots]
            },
            mask: slots - 1,
        }
    }

    fn len(&self, ghost: usize) -> usize {
        self.live[ghost]
    }

    #[inline(always)]
    fn tag(ghost: usize, pos: usize) -> u32 {
        (pos as u32 + 1) | if ghost == MAIN_GHOST { GHOST_BIT } else { 0 }
    }

    /// Remembers `hash` in `ghost`, forgetting its oldest one when full.
    #[inline]
    fn push(&mut self, ghost: usize, hash: u64) {
        let ring = &mut self.rings[ghost];
        if ring.is_empty() {
            return;
        }
        let hash = hash.max(1);
        let pos = self.next[ghost];
        let old = ring[pos];
        if old != 0 {
            self.live[ghost] -= 1;
            let slot = &mut self.index[old as usize & self.mask];
            if *slot == Self::tag(ghost, pos) {
                *slot = 0;
            }
        }
        ring[pos] = hash;
        self.next[ghost] = if pos + 1 == ring.len() { 0 } else { pos + 1 };
        // A key whose slot is taken over here stays in its ring, unreachable,
        // until the ring wraps: its ghost's size (ARC's step ratio) counts it.
        self.index[hash as usize & self.mask] = Self::tag(ghost, pos);
        self.live[ghost] += 1;
    }

    /// Which ghost remembered `hash`, if one did (and forgets it).
    #[inline]
    fn take(&mut self, hash: u64) -> Option<usize> {
        let hash = hash.max(1);
        let slot = self.index.get_mut(hash as usize & self.mask)?;
        if *slot == 0 {
            return None;
        }
        let g = usize::from(*slot & GHOST_BIT != 0);
        let p = (*slot & !GHOST_BIT) as usize - 1;
        if self.rings[g][p] != hash {
            return None;
        }
        *slot = 0;
        self.rings[g][p] = 0;
        self.live[g] -= 1;
        Some(g)
    }
}

/// The policy state of one shard.
#[derive(Debug)]
pub(crate) struct PolicyState {
    pub(crate) kind: Policy,
    /// The queues, inline (no pointer to chase on a hit): TinyLFU uses the
    /// first three, LRU and FIFO the first, LFU all of them.
    pub(crate) lists: [ListHead; LFU_LEVELS],
    pub(crate) sketch: Option<FrequencySketch>,
    pub(crate) max: u64,
    pub(crate) window_max: u64,
    pub(crate) protected_max: u64,
    /// Keys recently rejected at the window's exit or evicted from the
    /// main space.
    ghosts: Ghosts,
    rng: u64,
}

impl PolicyState {
    pub(crate) fn new(kind: Policy, max: u64, expected_entries: usize, seed: u64) -> Self {
        let sketch = (kind == Policy::TinyLfu).then(|| FrequencySketch::new(expected_entries));
        let window_max = (max / 100).max(1).min(max);
        // Ghosts remember 15 % (window) and 10 % (main) of the capacity in
        // evicted keys: a re-reference deeper than that says little about
        // a small change of the split, and deep ghosts make a loop's
        // window swing between the two ends (measured on the LIRS traces).
        let ghost = usize::try_from(max).unwrap_or(usize::MAX).min(1 << 24);
        let (wg, mg) = if kind == Policy::TinyLfu {
            ((ghost * 3 / 20).max(1), (ghost / 10).max(1))
        } else {
            (0, 0)
        };
        let mut p = PolicyState {
            kind,
            lists: [ListHead::EMPTY; LFU_LEVELS],
            sketch,
            max,
            window_max,
            protected_max: 0,
            ghosts: Ghosts::new(wg, mg),
            rng: seed | 1,
        };
        p.protected_max = p.main_max() * 4 / 5;
        p
    }

    fn main_max(&self) -> u64 {
        self.max - self.window_max
    }

    #[inline]
    fn next_random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }

    #[inline(always)]
    fn push<N: PolicyNode>(&mut self, links: &mut [N], q: usize, i: u32, w: u64) {
        let l = &mut self.lists[q];
        l.push_back(links, i, w);
        links[i as usize].pl_mut().stamp = l.ticks;
        l.ticks = l.ticks.wrapping_add(1);
    }

    /// Moves `i` to the tail of queue `q`, unless it is already in the
    /// younger half of the queue: hot entries then cost no list surgery on
    /// a hit (no writes to their neighbours' cache lines), and the order of
    /// the older half, where victims come from, stays exact.
    /// Adds the hits counted in entry `i` to the sketch.
    #[inline]
    fn flush_pending<N: PolicyNode>(&mut self, links: &mut [N], i: u32) {
        let link = links[i as usize].pl_mut();
        let (pending, hash) = (std::mem::take(&mut link.pending), link.hash);
        if pending > 0 {
            if let Some(s) = self.sketch.as_mut() {
                s.increment_by(hash, pending);
            }
        }
    }

    #[inline(always)]
    fn touch<N: PolicyNode>(&mut self, links: &mut [N], q: usize, i: u32) {
        let l = &mut self.lists[q];
        let age = l.ticks.wrapping_sub(links[i as usize].pl().stamp);
        if age < l.len / 2 {
            return;
        }
        self.move_back(links, q, i);
    }

    #[inline(never)]
    fn move_back<N: PolicyNode>(&mut self, links: &mut [N], q: usize, i: u32) {
        let l = &mut self.lists[q];
        l.move_to_back(links, i);
        links[i as usize].pl_mut().stamp = l.ticks;
        l.ticks = l.ticks.wrapping_add(1);
    }

    /// A new entry `i` arrived.
    #[inline]
    pub(crate) fn on_insert<N: PolicyNode>(&mut self, links: &mut [N], i: u32) {
        let w = u64::from(links[i as usize].pl().weight);
        match self.kind {
            Policy::TinyLfu => {
                let hash = links[i as usize].pl().hash;
                if let Some(s) = self.sketch.as_mut() {
                    s.increment(hash);
                }
                self.adapt(links, hash);
                links[i as usize].pl_mut().queue = WINDOW;
                self.push(links, WINDOW as usize, i, w);
            }
            Policy::Lru | Policy::Fifo | Policy::Lfu => {
                links[i as usize].pl_mut().queue = 0;
                self.push(links, 0, i, w);
            }
        }
    }

    /// Entry `i` was read (or overwritten).
    #[inline(always)]
    pub(crate) fn on_hit<N: PolicyNode>(&mut self, links: &mut [N], i: u32) {
        if self.kind != Policy::TinyLfu {
            return self.on_hit_simple(links, i);
        }
        // Hits are counted in the node and reach the sketch in one batch
        // when the entry changes queue (each sketch update is a cache miss);
        // probation entries, the admission victims, are always flushed, so
        // the victim's estimate is exact.
        // A saturated count is not written again: a hot entry's node stays
        // clean, so its cache line is not bounced between cores that read it.
        let link = links[i as usize].pl_mut();
        if link.pending < 15 {
            link.pending += 1;
        }
        let q = link.queue;
        if q == PROBATION {
            self.promote(links, i);
        } else {
            self.touch(links, q as usize, i);
        }
    }

    /// A probation entry was hit: it moves to the protected queue.
    #[inline(never)]
    fn promote<N: PolicyNode>(&mut self, links: &mut [N], i: u32) {
        self.flush_pending(links, i);
        let w = u64::from(links[i as usize].pl().weight);
        self.lists[PROBATION as usize].unlink(links, i, w);
        links[i as usize].pl_mut().queue = PROTECTED;
        self.push(links, PROTECTED as usize, i, w);
        self.demote_protected(links);
    }

    #[inline(never)]
    fn on_hit_simple<N: PolicyNode>(&mut self, links: &mut [N], i: u32) {
        match self.kind {
            // Exact LRU (it is also the benchmarks' reference policy).
            Policy::Lru => self.lists[0].move_to_back(links, i),
            Policy::Lfu => {
                let q = links[i as usize].pl().queue;
                if (q as usize) + 1 < LFU_LEVELS {
                    let w = u64::from(links[i as usize].pl().weight);
                    self.lists[q as usize].unlink(links, i, w);
                    links[i as usize].pl_mut().queue = q + 1;
                    self.push(links, q as usize + 1, i, w);
                } else {
                    self.touch(links, q as usize, i);
                }
            }
            Policy::TinyLfu | Policy::Fifo => {}
        }
    }

    /// A lookup missed.
    #[inline(always)]
    pub(crate) fn on_miss(&mut self) {}

    /// A new key arrived: if it was evicted recently, the split between
    /// window and main space was wrong for it. Rejected at the window's exit:
    /// a larger window would have kept it (grow); evicted from the main
    /// space: a larger main space would have (shrink). ARC's adaptation,
    /// applied to W-TinyLFU's window.
    fn adapt<N: PolicyNode>(&mut self, links: &mut [N], hash: u64) {
        let (w, m) = (self.ghosts.len(WINDOW_GHOST), self.ghosts.len(MAIN_GHOST));
        let hit = self.ghosts.take(hash);
        let target = if hit == Some(WINDOW_GHOST) {
            let step = (ADAPT_GAIN * m / w.max(1)).max(1) as u64;
            self.window_max.saturating_add(step).min(self.max)
        } else if hit == Some(MAIN_GHOST) {
            let step = (ADAPT_GAIN * w / m.max(1)).max(1) as u64;
            self.window_max.saturating_sub(step).max(1)
        } else {
            return;
        };
        self.window_max = target.min(self.max);
        self.protected_max = self.main_max() * 4 / 5;
        self.demote_protected(links);
    }

    /// Entry `i` is evicted for size; `rejected` when it lost the admission
    /// contest at the window's exit (else it left the main space).
    #[inline]
    pub(crate) fn note_evicted<N: PolicyNode>(&mut self, links: &[N], i: u32, rejected: bool) {
        if self.kind != Policy::TinyLfu {
            return;
        }
        let hash = links[i as usize].pl().hash;
        if rejected {
            self.ghosts.push(WINDOW_GHOST, hash);
        } else {
            self.ghosts.push(MAIN_GHOST, hash);
        }
    }

    /// Entry `i`'s weight changes from its current one to `weight`.
    pub(crate) fn reweigh<N: PolicyNode>(&mut self, links: &mut [N], i: u32, weight: u32) {
        let link = links[i as usize].pl_mut();
        let list = &mut self.lists[link.queue as usize];
        list.weight = list.weight - u64::from(link.weight) + u64::from(weight);
        link.weight = weight;
    }

    /// Entry `i` leaves its queue.
    #[inline]
    pub(crate) fn unlink<N: PolicyNode>(&mut self, links: &mut [N], i: u32) {
        let (q, w) = (links[i as usize].pl().queue, links[i as usize].pl().weight);
        self.lists[q as usize].unlink(links, i, u64::from(w));
    }

    fn demote_protected<N: PolicyNode>(&mut self, links: &mut [N]) {
        while self.lists[PROTECTED as usize].weight > self.protected_max {
            let h = self.lists[PROTECTED as usize].head;
            if h == NIL {
                break;
            }
            let w = u64::from(links[h as usize].pl().weight);
            self.lists[PROTECTED as usize].unlink(links, h, w);
            self.flush_pending(links, h);
            links[h as usize].pl_mut().queue = PROBATION;
            self.push(links, PROBATION as usize, h, w);
        }
    }

    /// Moves window overflow to the probation tail; returns how many moved
    /// (they are the admission candidates, at the probation tail).
    pub(crate) fn drain_window<N: PolicyNode>(&mut self, links: &mut [N]) -> u32 {
        let mut moved = 0;
        while self.lists[WINDOW as usize].weight > self.window_max {
            let h = self.lists[WINDOW as usize].head;
            if h == NIL {
                break;
            }
            let w = u64::from(links[h as usize].pl().weight);
            self.lists[WINDOW as usize].unlink(links, h, w);
            self.flush_pending(links, h);
            links[h as usize].pl_mut().queue = PROBATION;
            self.push(links, PROBATION as usize, h, w);
            moved += 1;
        }
        moved
    }

    /// TinyLFU admission: should `candidate` replace `victim`?
    pub(crate) fn admit(&mut self, candidate_hash: u64, victim_hash: u64) -> bool {
        let Some(s) = self.sketch.as_ref() else {
            return true;
        };
        let c = s.frequency(candidate_hash);
        let v = s.frequency(victim_hash);
        if c > v {
            true
        } else if c >= 6 {
            // Hash-flooding defence: a warm candidate sometimes wins a tie,
            // so an attacker cannot pin a victim by inflating its count.
            self.next_random() & 127 == 0
        } else {
            false
        }
    }

    /// For the simple policies: the next entry to evict.
    pub(crate) fn simple_victim(&self) -> u32 {
        self.lists
            .iter()
            .find(|l| !l.is_empty())
            .map_or(NIL, |l| l.head)
    }

    /// The current window bound (for tests and stats).
    #[cfg(test)]
    pub(crate) fn window_max(&self) -> u64 {
        self.window_max
    }
}
