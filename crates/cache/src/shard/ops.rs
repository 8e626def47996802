//! The keyspace operations of one shard (see `cache/keyspace.rs` for the
//! public API): read by reference, read and change an entry's deadline,
//! read-modify-write under the shard lock, and cursor scans over the slab.
//!
//! A child module of `shard` so it can use the shard's private helpers
//! without widening their visibility.

use std::borrow::Borrow;

use super::{NEVER, Now, Shard, Sink};
use crate::error::CacheError;
use crate::stats::RemovalCause;

/// A deadline change decided inside [`Shard::compute`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum Deadline {
    /// Leave an existing entry's deadline; a new entry gets the default.
    Keep,
    /// Set this write deadline (`NEVER`: none); `now` is the time it was
    /// computed at.
    Set { at: u64, now: u64 },
}

/// What [`Shard::compute`]'s closure decided.
pub(crate) enum Action<V> {
    Keep,
    Remove,
    Insert(V, Deadline),
    Expire(Deadline),
}

/// The key of a [`Shard::compute`]: owned, or borrowed with a way to make
/// the owned key if a new entry is inserted.
pub(crate) enum KeyArg<'a, K, Q: ?Sized, O> {
    Owned(K),
    Borrowed(&'a Q, O),
}

impl<K, Q, O> KeyArg<'_, K, Q, O>
where
    K: Borrow<Q>,
    Q: ?Sized,
    O: FnOnce(&Q) -> K,
{
    pub(crate) fn get(&self) -> &Q {
        match self {
            KeyArg::Owned(k) => k.borrow(),
            KeyArg::Borrowed(q, _) => q,
        }
    }

    fn into_owned(self) -> K {
        match self {
            KeyArg::Owned(k) => k,
            KeyArg::Borrowed(q, o) => o(q),
        }
    }
}

impl<K, V> Shard<K, V>
where
    K: Eq,
{
    /// The slab index of the live entry for `key`; an expired one is removed
    /// on the way (cause: expired).
    fn live<Q>(
        &mut self,
        hash: u64,
        key: &Q,
        now: Option<u64>,
        sink: &mut Sink<K, V>,
    ) -> Option<u32>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let i = self.find(hash, key)?;
        if now.is_some_and(|now| self.deadline(i) <= now) {
            self.remove_index(i, RemovalCause::Expired, sink);
            return None;
        }
        Some(i)
    }

    /// Like `get`, but hands the value to `f` by reference instead of
    /// cloning it.
    pub(crate) fn get_with<Q, R>(
        &mut self,
        hash: u64,
        key: &Q,
        t: Now,
        sink: &mut Sink<K, V>,
        f: impl FnOnce(&V) -> R,
    ) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let Some(i) = self.live(hash, key, t.now, sink) else {
            self.stats.misses += 1;
            self.policy.on_miss();
            return None;
        };
        if let (Some(now), Some(tti)) = (t.now, t.tti) {
            let wd = self
                .timers
                .get(i as usize)
                .map_or(NEVER, |t| t.write_deadline);
            self.schedule(i, wd.min(now.saturating_add(tti)), now);
        }
        self.stats.hits += 1;
        self.policy.on_hit(&mut self.nodes, i);
        self.nodes[i as usize].entry.as_ref().map(|e| f(&e.value))
    }

    /// Hands the live value to `f` without recording an access.
    pub(crate) fn peek_with<Q, R>(
        &self,
        hash: u64,
        key: &Q,
        now: Option<u64>,
        f: impl FnOnce(&V, u64) -> R,
    ) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let i = self.find(hash, key)?;
        let d = self.deadline(i);
        if now.is_some_and(|now| d <= now) {
            return None;
        }
        self.nodes[i as usize]
            .entry
            .as_ref()
            .map(|e| f(&e.value, d))
    }

    /// Sets the write deadline of entry `i` (and its effective deadline,
    /// capped by time-to-idle).
    fn set_write_deadline(&mut self, i: u32, at: u64, now: u64, tti: Option<u64>) {
        if at == NEVER && self.wheel.is_none() {
            return; // nothing was ever scheduled in this shard
        }
        self.wheel(now);
        if let Some(tl) = self.timers.get_mut(i as usize) {
            tl.write_deadline = at;
        }
        let expire = match tti {
            Some(tti) => at.min(now.saturating_add(tti)),
            None => at,
        };
        self.schedule(i, expire, now);
    }

    /// Changes the deadline of the live entry for `key`; false if absent.
    pub(crate) fn set_deadline<Q>(
        &mut self,
        hash: u64,
        key: &Q,
        at: u64,
        t: Now,
        sink: &mut Sink<K, V>,
    ) -> bool
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let Some(i) = self.live(hash, key, t.now, sink) else {
            return false;
        };
        if let Some(now) = t.now {
            self.set_write_deadline(i, at, now, t.tti);
        }
        true
    }

    /// Whether adding `added` weight (after taking `freed` away) must be
    /// refused because the shard rejects instead of evicting. Reclaims
    /// expired entries first.
    pub(crate) fn full_for(
        &mut self,
        freed: u32,
        added: u32,
        now: Option<u64>,
        sink: &mut Sink<K, V>,
    ) -> bool {
        if !self.reject_when_full {
            return false;
        }
        let fits = |s: &Self| s.weight - u64::from(freed) + u64::from(added) <= s.policy.max;
        if fits(self) {
            return false;
        }
        if let Some(now) = now {
            self.expire(now, sink);
        }
        !fits(self)
    }

    /// Read-modify-write of `key` under the shard lock. `decide` sees the
    /// live value and its deadline and returns what to do; `weigh` weighs a
    /// new value; `owned` makes the owned key, only when a new entry is
    /// inserted. Returns the value that left (replaced or removed).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn compute<Q, O>(
        &mut self,
        hash: u64,
        key: KeyArg<'_, K, Q, O>,
        t: Now,
        default_deadline: u64,
        weigh: &dyn Fn(&K, &V) -> Result<u32, CacheError>,
        decide: impl FnOnce(Option<(&V, u64)>) -> Action<V>,
        sink: &mut Sink<K, V>,
    ) -> Result<Option<V>, CacheError>
    where
        K: Borrow<Q> + Clone,
        Q: Eq + ?Sized,
        O: FnOnce(&Q) -> K,
        V: Clone,
    {
        let found = self.live(hash, key.get(), t.now, sink);
        let action = {
            let cur = found.and_then(|i| {
                let d = self.deadline(i);
                self.nodes[i as usize].entry.as_ref().map(|e| (&e.value, d))
            });
            decide(cur)
        };
        match (action, found) {
            (Action::Keep, _) | (Action::Remove | Action::Expire(_), None) => Ok(None),
            (Action::Remove, Some(i)) => {
                let Some((k, v)) =
                    self.remove_index(i, RemovalCause::Explicit, &mut Sink::new(false))
                else {
                    return Ok(None);
                };
                if sink.keep {
                    sink.push(k, v.clone(), RemovalCause::Explicit);
                }
                Ok(Some(v))
            }
            (Action::Expire(d), Some(i)) => {
                if let Deadline::Set { at, now } = d {
                    self.set_write_deadline(i, at, now, t.tti);
                }
                Ok(None)
            }
            (Action::Insert(value, d), found) => {
                // An existing entry is weighed with its stored (equal) key; a
                // new one needs the owned key anyway.
                let mut owned = Some(key);
                let (weight, new_key) =
                    match found.and_then(|i| self.nodes[i as usize].entry.as_ref()) {
                        Some(e) => (weigh(&e.key, &value)?, None),
                        None => {
                            let k = owned.take().map(KeyArg::into_owned);
                            match &k {
                                Some(k2) => (weigh(k2, &value)?, k),
                                None => return Ok(None),
                            }
                        }
                    };
                if u64::from(weight) > self.policy.max {
                    self.stats.rejected += 1;
                    return Err(CacheError::TooHeavy {
                        weight: u64::from(weight),
                        limit: self.policy.max,
                    });
                }
                let old_w = found.map_or(0, |i| self.nodes[i as usize].link.weight);
                if self.full_for(old_w, weight, t.now, sink) {
                    self.stats.rejected += 1;
                    return Err(CacheError::Full {
                        limit: self.policy.max,
                    });
                }
                // Expiry may have reclaimed the entry while making room.
                let found = found.filter(|&i| self.nodes[i as usize].entry.is_some());
                let Some(i) = found else {
                    // New, or reclaimed by expiry while making room.
                    let Some(key) = new_key.or_else(|| owned.take().map(KeyArg::into_owned)) else {
                        return Ok(None);
                    };
                    let (at, t) = match d {
                        Deadline::Keep => (default_deadline, t),
                        Deadline::Set { at, now } => (
                            at,
                            Now {
                                now: Some(now),
                                tti: t.tti,
                            },
                        ),
                    };
                    self.insert(hash, key, value, weight, at, t, sink)?;
                    return Ok(None);
                };
                let old = match self.nodes[i as usize].entry.as_mut() {
                    Some(e) => std::mem::replace(&mut e.value, value),
                    None => return Ok(None),
                };
                if sink.keep {
                    if let Some(e) = self.nodes[i as usize].entry.as_ref() {
                        sink.push(e.key.clone(), old.clone(), RemovalCause::Replaced);
                    }
                }
                self.stats.removals[RemovalCause::Replaced.index()] += 1;
                self.weight = self.weight - u64::from(old_w) + u64::from(weight);
                self.policy.reweigh(&mut self.nodes, i, weight);
                self.policy.on_hit(&mut self.nodes, i);
                if let Deadline::Set { at, now } = d {
                    self.set_write_deadline(i, at, now, t.tti);
                }
                if let Some(now) = t.now {
                    self.expire(now, sink);
                }
                self.evict_to_fit(sink);
                Ok(Some(old))
            }
        }
    }

    /// Visits up to `count` live entries from slab index `from`, visiting
    /// at most `16 × count` slots. Returns the next index, or `None` at the
    /// end of the shard.
    ///
    /// Slab indices do not move while an entry lives (the hash table holds
    /// indices, not entries), so an entry present for a whole scan is seen
    /// exactly once however the table grows or shrinks.
    pub(crate) fn scan_from(
        &self,
        from: u32,
        count: usize,
        now: Option<u64>,
        f: &mut dyn FnMut(&K, &V, u64),
    ) -> Option<u32> {
        let end = self.nodes.len();
        let mut i = from as usize;
        let mut seen = 0usize;
        let budget = count.saturating_mul(16).max(1);
        let mut visited = 0usize;
        while i < end {
            if seen >= count || visited >= budget {
                return Some(i as u32);
            }
            if let Some(e) = &self.nodes[i].entry {
                let d = self.deadline(i as u32);
                if now.is_none_or(|now| d > now) {
                    f(&e.key, &e.value, d);
                    seen += 1;
                }
            }
            visited += 1;
            i += 1;
        }
        None
    }
}
