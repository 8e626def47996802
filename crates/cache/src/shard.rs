//! One shard: a hash table of slab indices, the slab of entries, the
//! policy's queues and the timer wheel, all behind one lock.

use std::borrow::Borrow;

use hashbrown::HashTable;

use crate::error::CacheError;
use crate::list::{Linked, NIL};
use crate::policy::{PROBATION, PROTECTED, Policy, PolicyLink, PolicyNode, PolicyState, WINDOW};
use crate::read_buffer::ReadBuffer;
use crate::stats::{RemovalCause, ShardStats};
use crate::timer_wheel::{TimerLink, TimerWheel};

mod ops;
pub(crate) use ops::{Action, Deadline, KeyArg};

/// Deadline meaning "never expires".
pub(crate) const NEVER: u64 = u64::MAX;

/// One slab slot: the policy links and (when occupied) the entry, in one
/// allocation so a lookup touches one cache line for both. Aligned to a
/// cache line: an unaligned 56-byte node (`u64` keys and values) straddles
/// two lines three times in four, and a lookup then misses twice.
#[repr(align(64))]
struct Node<K, V> {
    link: PolicyLink,
    entry: Option<Entry<K, V>>,
}

impl<K, V> Linked for Node<K, V> {
    #[inline(always)]
    fn prev(&self) -> u32 {
        self.link.prev()
    }
    #[inline(always)]
    fn next(&self) -> u32 {
        self.link.next()
    }
    #[inline(always)]
    fn set_prev(&mut self, p: u32) {
        self.link.set_prev(p);
    }
    #[inline(always)]
    fn set_next(&mut self, n: u32) {
        self.link.set_next(n);
    }
}

impl<K, V> PolicyNode for Node<K, V> {
    #[inline(always)]
    fn pl(&self) -> &PolicyLink {
        &self.link
    }
    #[inline(always)]
    fn pl_mut(&mut self) -> &mut PolicyLink {
        &mut self.link
    }
}

struct Entry<K, V> {
    key: K,
    value: V,
}

/// Where removed entries go: to the eviction listener (kept) or dropped.
pub(crate) struct Sink<K, V> {
    pub(crate) items: Vec<(K, V, RemovalCause)>,
    keep: bool,
}

impl<K, V> Sink<K, V> {
    pub(crate) fn new(keep: bool) -> Self {
        Sink {
            items: Vec::new(),
            keep,
        }
    }
    #[inline]
    fn push(&mut self, k: K, v: V, cause: RemovalCause) {
        if self.keep {
            self.items.push((k, v, cause));
        }
    }
}

/// Time context of one operation (`now` is `None` when no entry can expire).
#[derive(Clone, Copy)]
pub(crate) struct Now {
    pub(crate) now: Option<u64>,
    pub(crate) tti: Option<u64>,
}

pub(crate) struct Shard<K, V> {
    table: HashTable<u32>,
    nodes: Vec<Node<K, V>>,
    timers: Vec<TimerLink>,
    free: Vec<u32>,
    policy: PolicyState,
    wheel: Option<TimerWheel>,
    weight: u64,
    pub(crate) stats: ShardStats,
    expired: Vec<u32>,
    /// Refuse writes over the bound instead of evicting (`noeviction`).
    pub(crate) reject_when_full: bool,
}

impl<K, V> Shard<K, V>
where
    K: Eq,
{
    pub(crate) fn new(kind: Policy, max: u64, expected_entries: usize, seed: u64) -> Self {
        let prealloc = expected_entries.min(4096);
        Shard {
            table: HashTable::with_capacity(prealloc),
            // One spare slot: an insert links the new node before it evicts,
            // so a full shard briefly holds `max + 1` (without the spare the
            // slab would double its capacity at that moment).
            nodes: Vec::with_capacity(prealloc + 1),
            timers: Vec::new(),
            free: Vec::new(),
            policy: PolicyState::new(kind, max, expected_entries, seed),
            wheel: None,
            weight: 0,
            stats: ShardStats::default(),
            expired: Vec::new(),
            reject_when_full: false,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    pub(crate) fn weight(&self) -> u64 {
        self.weight
    }

    pub(crate) fn max_weight(&self) -> u64 {
        self.policy.max
    }

    #[inline]
    fn find<Q>(&self, hash: u64, key: &Q) -> Option<u32>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let nodes = &self.nodes;
        self.table
            .find(
                hash,
                |&j| matches!(&nodes[j as usize].entry, Some(e) if e.key.borrow() == key),
            )
            .copied()
    }

    fn deadline(&self, i: u32) -> u64 {
        self.timers.get(i as usize).map_or(NEVER, |t| t.deadline)
    }

    fn wheel(&mut self, now: u64) -> &mut TimerWheel {
        if self.timers.len() < self.nodes.len() {
            self.timers.resize(self.nodes.len(), TimerLink::UNSCHEDULED);
        }
        self.wheel.get_or_insert_with(|| TimerWheel::new(now))
    }

    fn schedule(&mut self, i: u32, deadline: u64, now: u64) {
        if deadline == NEVER && self.deadline(i) == NEVER {
            return;
        }
        self.wheel(now);
        if let Some(w) = self.wheel.as_mut() {
            w.schedule(&mut self.timers, i, deadline);
        }
    }

    /// Looks `key` up, recording the access.
    #[inline]
    pub(crate) fn get<Q>(&mut self, hash: u64, key: &Q, t: Now, sink: &mut Sink<K, V>) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
        V: Clone,
    {
        self.get_with(hash, key, t, sink, V::clone)
    }

    /// The read path when nothing can expire, under the write lock.
    #[inline(always)]
    pub(crate) fn get_untimed<Q>(&mut self, hash: u64, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
        V: Clone,
    {
        let Some(i) = self.find(hash, key) else {
            self.stats.misses += 1;
            return None;
        };
        self.stats.hits += 1;
        self.policy.on_hit(&mut self.nodes, i);
        self.nodes[i as usize]
            .entry
            .as_ref()
            .map(|e| e.value.clone())
    }

    /// The read path under a shared lock (nothing can expire): the slab
    /// index and a clone of the value; the caller records the hit.
    #[inline]
    pub(crate) fn lookup<Q>(&self, hash: u64, key: &Q) -> Option<(u32, V)>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
        V: Clone,
    {
        let i = self.find(hash, key)?;
        self.nodes[i as usize]
            .entry
            .as_ref()
            .map(|e| (i, e.value.clone()))
    }

    /// Replays a hit noted by [`lookup`](Shard::lookup)'s caller in the read
    /// buffer, unless its slot has changed hands since.
    pub(crate) fn replay_read(&mut self, note: u64) {
        let (i, tag) = ReadBuffer::unnote(note);
        if let Some(n) = self.nodes.get(i as usize) {
            if n.entry.is_some() && n.link.hash & 0xffff_ffff_0000_0000 == tag {
                self.policy.on_hit(&mut self.nodes, i);
            }
        }
    }

    /// Looks `key` up without recording an access or counting a hit.
    pub(crate) fn peek<Q>(&self, hash: u64, key: &Q, now: Option<u64>) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
        V: Clone,
    {
        let i = self.find(hash, key)?;
        if now.is_some_and(|now| self.deadline(i) <= now) {
            return None;
        }
        self.nodes[i as usize]
            .entry
            .as_ref()
            .map(|e| e.value.clone())
    }

    /// Inserts or replaces. `write_deadline` is the TTL / per-entry deadline.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn insert(
        &mut self,
        hash: u64,
        key: K,
        value: V,
        weight: u32,
        write_deadline: u64,
        t: Now,
        sink: &mut Sink<K, V>,
    ) -> Result<(), CacheError> {
        let existing = self.find(hash, &key);
        if u64::from(weight) > self.policy.max {
            if let Some(i) = existing {
                self.remove_index(i, RemovalCause::Replaced, sink);
            }
            self.stats.rejected += 1;
            return Err(CacheError::TooHeavy {
                weight: u64::from(weight),
                limit: self.policy.max,
            });
        }
        let old_w = existing.map_or(0, |i| self.nodes[i as usize].link.weight);
        if self.reject_when_full && self.full_for(old_w, weight, t.now, sink) {
            self.stats.rejected += 1;
            return Err(CacheError::Full {
                limit: self.policy.max,
            });
        }
        // Reclaiming expired entries may have removed the key itself.
        let existing = existing.filter(|&i| self.nodes[i as usize].entry.is_some());
        let expire = match (t.now, t.tti) {
            (Some(now), Some(tti)) => write_deadline.min(now.saturating_add(tti)),
            _ => write_deadline,
        };
        let i = match existing {
            Some(i) => {
                let old_w = self.nodes[i as usize].link.weight;
                if let Some(e) = self.nodes[i as usize].entry.as_mut() {
                    let old = std::mem::replace(&mut e.value, value);
                    sink.push(key, old, RemovalCause::Replaced);
                }
                self.stats.removals[RemovalCause::Replaced.index()] += 1;
                self.weight = self.weight - u64::from(old_w) + u64::from(weight);
                self.policy.reweigh(&mut self.nodes, i, weight);
                self.policy.on_hit(&mut self.nodes, i);
                i
            }
            None => {
                if self.nodes.len() >= NIL as usize && self.free.is_empty() {
                    self.stats.rejected += 1;
                    return Err(CacheError::InvalidConfig(
                        "more than 2^32 entries in one shard",
                    ));
                }
                let entry = Entry { key, value };
                let link = PolicyLink::new(hash, weight);
                let i = match self.free.pop() {
                    Some(i) => {
                        self.nodes[i as usize] = Node {
                            link,
                            entry: Some(entry),
                        };
                        if let Some(t) = self.timers.get_mut(i as usize) {
                            *t = TimerLink::UNSCHEDULED;
                        }
                        i
                    }
                    None => {
                        self.nodes.push(Node {
                            link,
                            entry: Some(entry),
                        });
                        (self.nodes.len() - 1) as u32
                    }
                };
                let nodes = &self.nodes;
                self.table
                    .insert_unique(hash, i, |&j| nodes[j as usize].link.hash);
                self.weight += u64::from(weight);
                self.stats.inserts += 1;
                self.policy.on_insert(&mut self.nodes, i);
                i
            }
        };
        if let Some(now) = t.now {
            self.wheel(now);
            if let Some(tl) = self.timers.get_mut(i as usize) {
                tl.write_deadline = write_deadline;
            }
            self.schedule(i, expire, now);
            self.expire(now, sink);
        }
        self.evict_to_fit(sink);
        Ok(())
    }

    /// Removes `key` (cause: explicit).
    pub(crate) fn remove<Q>(
        &mut self,
        hash: u64,
        key: &Q,
        now: Option<u64>,
        sink: &mut Sink<K, V>,
    ) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
        V: Clone,
    {
        let i = self.find(hash, key)?;
        if now.is_some_and(|now| self.deadline(i) <= now) {
            self.remove_index(i, RemovalCause::Expired, sink);
            return None;
        }
        let (k, v) = self.remove_index(i, RemovalCause::Explicit, &mut Sink::new(false))?;
        if sink.keep {
            sink.push(k, v.clone(), RemovalCause::Explicit);
        }
        Some(v)
    }

    /// Removes every entry (cause: explicit).
    pub(crate) fn clear(&mut self, sink: &mut Sink<K, V>) {
        let n = self.nodes.len() as u32;
        for i in 0..n {
            if self.nodes[i as usize].entry.is_some() {
                if let Some((k, v)) =
                    self.remove_index(i, RemovalCause::Explicit, &mut Sink::new(false))
                {
                    sink.push(k, v, RemovalCause::Explicit);
                }
            }
        }
    }

    /// Drops entries whose deadline passed (by the timer wheel).
    pub(crate) fn expire(&mut self, now: u64, sink: &mut Sink<K, V>) {
        let Some(w) = self.wheel.as_mut() else {
            return;
        };
        let mut expired = std::mem::take(&mut self.expired);
        w.advance(&mut self.timers, now, &mut expired);
        for &i in &expired {
            if self.nodes[i as usize].entry.is_some() {
                if let Some((k, v)) =
                    self.remove_index(i, RemovalCause::Expired, &mut Sink::new(false))
                {
                    sink.push(k, v, RemovalCause::Expired);
                }
            }
        }
        expired.clear();
        self.expired = expired;
    }

    fn remove_index(
        &mut self,
        i: u32,
        cause: RemovalCause,
        sink: &mut Sink<K, V>,
    ) -> Option<(K, V)> {
        let link = self.nodes[i as usize].link;
        self.policy.unlink(&mut self.nodes, i);
        if let Some(w) = self.wheel.as_mut() {
            w.cancel(&mut self.timers, i);
            self.timers[i as usize].deadline = NEVER;
        }
        if let Ok(e) = self.table.find_entry(link.hash, |&j| j == i) {
            e.remove();
        }
        self.weight -= u64::from(link.weight);
        self.stats.removals[cause.index()] += 1;
        let entry = self.nodes[i as usize].entry.take()?;
        self.free.push(i);
        if sink.keep {
            sink.push(entry.key, entry.value, cause);
            None
        } else {
            Some((entry.key, entry.value))
        }
    }

    fn evict_to_fit(&mut self, sink: &mut Sink<K, V>) {
        if self.policy.kind == Policy::TinyLfu {
            self.evict_tinylfu(sink);
            return;
        }
        while self.weight > self.policy.max {
            let v = self.policy.simple_victim();
            if v == NIL {
                break;
            }
            self.remove_index(v, RemovalCause::Size, sink);
        }
    }

    fn evict_tinylfu(&mut self, sink: &mut Sink<K, V>) {
        let mut candidates = self.policy.drain_window(&mut self.nodes);
        if self.weight <= self.policy.max {
            return;
        }
        let mut cand = if candidates > 0 {
            self.policy.lists[PROBATION as usize].tail
        } else {
            NIL
        };
        let mut victim = self.policy.lists[PROBATION as usize].head;
        while self.weight > self.policy.max {
            if victim == NIL && cand == NIL {
                let v = [PROTECTED, WINDOW]
                    .iter()
                    .map(|&q| self.policy.lists[q as usize].head)
                    .find(|&h| h != NIL)
                    .unwrap_or(NIL);
                if v == NIL {
                    break;
                }
                self.policy.note_evicted(&self.nodes, v, false);
                self.remove_index(v, RemovalCause::Size, sink);
                continue;
            }
            let evict_victim = if victim == NIL {
                false
            } else if cand == NIL || cand == victim {
                true
            } else {
                let (ch, vh) = (
                    self.nodes[cand as usize].link.hash,
                    self.nodes[victim as usize].link.hash,
                );
                self.policy.admit(ch, vh)
            };
            if evict_victim {
                let v = victim;
                victim = self.nodes[v as usize].link.next_index();
                let cand_was_victim = cand == v;
                self.policy.note_evicted(&self.nodes, v, cand_was_victim);
                self.remove_index(v, RemovalCause::Size, sink);
                if cand_was_victim || cand == NIL {
                    cand = NIL;
                    candidates = 0;
                } else {
                    candidates = candidates.saturating_sub(1);
                    cand = if candidates > 0 {
                        self.nodes[cand as usize].link.prev_index()
                    } else {
                        NIL
                    };
                }
            } else {
                let c = cand;
                candidates = candidates.saturating_sub(1);
                let prev = self.nodes[c as usize].link.prev_index();
                self.policy.note_evicted(&self.nodes, c, true);
                self.remove_index(c, RemovalCause::Size, sink);
                cand = if candidates > 0 { prev } else { NIL };
                if cand == victim && victim != NIL {
                    // The candidate walk reached the victim walk.
                    cand = NIL;
                    candidates = 0;
                }
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn policy(&self) -> &PolicyState {
        &self.policy
    }

    /// Checks internal invariants (tests only).
    #[cfg(test)]
    pub(crate) fn check(&self) {
        let live = self.nodes.iter().filter(|n| n.entry.is_some()).count();
        assert_eq!(live, self.table.len());
        let w: u64 = self
            .nodes
            .iter()
            .filter(|n| n.entry.is_some())
            .map(|n| u64::from(n.link.weight))
            .sum();
        assert_eq!(w, self.weight);
        let lw: u64 = self.policy.lists.iter().map(|l| l.weight).sum();
        assert_eq!(lw, self.weight);
        let ln: u32 = self.policy.lists.iter().map(|l| l.len).sum();
        assert_eq!(ln as usize, live);
        assert!(self.weight <= self.policy.max);
    }
}
