//! Timelines (feeds): a follow graph, posting, and home-timeline reads by
//! push, pull or hybrid fan-out.
//!
//! * **Push** (fan-out-on-write): a post is copied into every follower's
//!   bounded inbox (the newest [`TimelineBuilder::inbox_capacity`] items,
//!   800 by default) by background workers; a read is one inbox slice.
//!   Reads are cheap; a post by an account with a million followers costs a
//!   million inserts.
//! * **Pull** (fan-out-on-read): a post is appended to its author's outbox
//!   only; a read k-way merges every followee's outbox. Writes are cheap;
//!   reads by users who follow thousands of accounts are expensive.
//! * **Hybrid**: push for ordinary accounts, pull for accounts with at
//!   least `threshold` followers; a read merges the inbox with the outboxes
//!   of the few followed "celebrities". Both sides stay cheap.
//!
//! Fan-out is asynchronous through a bounded `kuai-queue`
//! [`BufferQueue`](kuai_queue::BufferQueue): when it is full a post is
//! rejected with [`StoreError::Full`] (kind `Overloaded`) rather than
//! buffered without bound. Post ids are [`Snowflake`] ids, so "newer" is
//! "larger id" and pagination uses the last id seen as a [`Cursor`].
//!
//! An account that becomes a celebrity stays one (its older pushed posts
//! stay in inboxes and are de-duplicated at read time); demoting accounts
//! is left to an offline job.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;

use kuai_core::{Clock, PushError, SystemClock, TryQueue};

use crate::fanout::FanoutQueue;
use crate::merge::merge_newest;
use crate::{Snowflake, StoreError};

/// One item of a timeline: a post id (a snowflake, so newer is larger) and
/// its author.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimelineEntry {
    /// The post's id.
    pub id: u64,
    /// Who posted it.
    pub author: u64,
}

/// How posts reach followers' home timelines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FanoutStrategy {
    /// Fan-out-on-write into every follower's inbox.
    Push,
    /// Merge followees' outboxes at read time.
    Pull,
    /// Push for accounts below `threshold` followers, pull for the rest.
    Hybrid {
        /// Follower count from which an account is pulled.
        threshold: usize,
    },
}

/// A position in a home timeline: the id of the last entry returned.
/// Opaque to clients (`t` + 16 hex digits) and validated when parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor(u64);

impl Cursor {
    /// The cursor's text form.
    pub fn encode(&self) -> String {
        format!("t{:016x}", self.0)
    }

    /// Parses a cursor; anything malformed is [`StoreError::BadCursor`].
    pub fn decode(s: &str) -> Result<Cursor, StoreError> {
        let hex = s
            .strip_prefix('t')
            .ok_or(StoreError::BadCursor("missing prefix"))?;
        if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(StoreError::BadCursor("not 16 hex digits"));
        }
        u64::from_str_radix(hex, 16)
            .map(Cursor)
            .map_err(|_| StoreError::BadCursor("not 16 hex digits"))
    }
}

/// One page of a home timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// Entries, newest first.
    pub entries: Vec<TimelineEntry>,
    /// Where the next page starts, when this one was full.
    pub next: Option<Cursor>,
}

/// Counters and sizes of a [`Timeline`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimelineStats {
    /// Posts accepted.
    pub posts: u64,
    /// Inbox inserts done by fan-out (the write cost of push).
    pub inbox_inserts: u64,
    /// Entries currently held in inboxes.
    pub inbox_entries: u64,
    /// Entries currently held in outboxes.
    pub outbox_entries: u64,
    /// Accounts served by pull.
    pub pulled_accounts: u64,
    /// Users known.
    pub users: u64,
}

impl TimelineStats {
    /// Bytes held by timeline entries (inboxes plus outboxes).
    pub fn entry_bytes(&self) -> u64 {
        (self.inbox_entries + self.outbox_entries) * std::mem::size_of::<TimelineEntry>() as u64
    }
}

#[derive(Debug, Default)]
struct User {
    followers: Vec<u64>,
    followees: Vec<u64>,
    pulled_followees: Vec<u64>,
    /// Oldest first.
    outbox: VecDeque<TimelineEntry>,
    /// Oldest first.
    inbox: VecDeque<TimelineEntry>,
    pulled: bool,
}

type Shard = RwLock<HashMap<u64, User>>;

#[derive(Debug)]
struct Job {
    entry: TimelineEntry,
}

struct Inner {
    strategy: FanoutStrategy,
    inbox_cap: usize,
    outbox_cap: usize,
    shard_bits: u32,
    shards: Box<[Shard]>,
    ids: Snowflake,
    queue: FanoutQueue<Job>,
    posts: AtomicU64,
    inbox_inserts: AtomicU64,
}

/// Configures a [`Timeline`].
#[derive(Debug, Clone)]
pub struct TimelineBuilder {
    strategy: FanoutStrategy,
    inbox_capacity: usize,
    outbox_capacity: usize,
    queue_capacity: usize,
    workers: usize,
    shards: usize,
    node: u16,
    clock: Arc<dyn Clock>,
}

impl Default for TimelineBuilder {
    fn default() -> Self {
        TimelineBuilder {
            strategy: FanoutStrategy::Hybrid { threshold: 10_000 },
            inbox_capacity: 800,
            outbox_capacity: 800,
            queue_capacity: 65_536,
            workers: 1,
            shards: 64,
            node: 0,
            clock: Arc::new(SystemClock),
        }
    }
}

impl TimelineBuilder {
    /// The fan-out strategy (default hybrid with a 10 000-follower threshold).
    pub fn strategy(mut self, s: FanoutStrategy) -> Self {
        self.strategy = s;
        self
    }
    /// Entries kept per inbox (default 800).
    pub fn inbox_capacity(mut self, n: usize) -> Self {
        self.inbox_capacity = n.max(1);
        self
    }
    /// Entries kept per outbox (default 800).
    pub fn outbox_capacity(mut self, n: usize) -> Self {
        self.outbox_capacity = n.max(1);
        self
    }
    /// Fan-out jobs that may wait (default 65 536); beyond it posts are
    /// rejected as overloaded.
    pub fn queue_capacity(mut self, n: usize) -> Self {
        self.queue_capacity = n.max(1);
        self
    }
    /// Fan-out worker threads (default 1). Zero runs fan-out only inside
    /// [`Timeline::flush`], on the caller's thread (deterministic tests).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }
    /// Lock shards (rounded up to a power of two; default 64).
    pub fn shards(mut self, n: usize) -> Self {
        self.shards = n.clamp(1, 1 << 16);
        self
    }
    /// The snowflake node number for post ids (default 0).
    pub fn node(mut self, node: u16) -> Self {
        self.node = node;
        self
    }
    /// The clock for post ids.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Builds the timeline and starts its fan-out workers.
    pub fn build(self) -> Result<Timeline, StoreError> {
        if let FanoutStrategy::Hybrid { threshold: 0 } = self.strategy {
            return Err(StoreError::InvalidInput(
                "a hybrid threshold of 0 followers is pull; say Pull".into(),
            ));
        }
        let shard_bits = self.shards.next_power_of_two().trailing_zeros();
        let inner = Arc::new(Inner {
            strategy: self.strategy,
            inbox_cap: self.inbox_capacity,
            outbox_cap: self.outbox_capacity,
            shard_bits,
            shards: (0..1usize << shard_bits)
                .map(|_| RwLock::new(HashMap::new()))
                .collect(),
            ids: Snowflake::new(self.node, self.clock)?,
            queue: FanoutQueue::new(self.queue_capacity),
            posts: AtomicU64::new(0),
            inbox_inserts: AtomicU64::new(0),
        });
        let workers = (0..self.workers)
            .map(|i| {
                let inner = inner.clone();
                std::thread::Builder::new()
                    .name(format!("kuai-fanout-{i}"))
                    .spawn(move || inner.work())
                    .map_err(StoreError::Io)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Timeline { inner, workers })
    }
}

/// A social timeline service: follow graph, posts, home timelines.
///
/// ```
/// use kuai_store::{FanoutStrategy, Timeline};
/// let tl = Timeline::builder()
///     .strategy(FanoutStrategy::Hybrid { threshold: 2 })
///     .build()
///     .unwrap();
/// tl.follow(1, 100).unwrap(); // 1 follows 100
/// tl.follow(2, 100).unwrap(); // 100 now has 2 followers: a celebrity, pulled
/// tl.follow(1, 7).unwrap();   // 7 is ordinary, pushed
/// let a = tl.post(100).unwrap();
/// let b = tl.post(7).unwrap();
/// tl.flush(); // wait for asynchronous fan-out
/// let page = tl.home(1, None, 10).unwrap();
/// let ids: Vec<u64> = page.entries.iter().map(|e| e.id).collect();
/// assert_eq!(ids, vec![b, a]);
/// ```
pub struct Timeline {
    inner: Arc<Inner>,
    workers: Vec<JoinHandle<()>>,
}

impl fmt::Debug for Timeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timeline")
            .field("strategy", &self.inner.strategy)
            .field("workers", &self.workers.len())
            .finish_non_exhaustive()
    }
}

fn lock_err() -> StoreError {
    StoreError::Closed("timeline (a lock was poisoned)")
}

/// Inserts into an oldest-first deque, keeping order and the bound.
fn insert_bounded(q: &mut VecDeque<TimelineEntry>, e: TimelineEntry, cap: usize) -> bool {
    if q.len() >= cap && q.front().is_some_and(|f| f.id >= e.id) {
        return false; // older than everything kept
    }
    match q.back() {
        Some(b) if b.id >= e.id => {
            let at = q.partition_point(|x| x.id < e.id);
            if q.get(at).is_some_and(|x| x.id == e.id) {
                return false;
            }
            q.insert(at, e);
        }
        _ => q.push_back(e),
    }
    while q.len() > cap {
        q.pop_front();
    }
    true
}

/// The newest `limit` entries of `q` older than `before`, newest first.
fn newest_before(
    q: &VecDeque<TimelineEntry>,
    before: u64,
    limit: usize,
    out: &mut Vec<TimelineEntry>,
) {
    let hi = q.partition_point(|x| x.id < before);
    let lo = hi.saturating_sub(limit);
    out.extend(q.range(lo..hi).rev().copied());
}

impl Inner {
    fn shard_of(&self, user: u64) -> usize {
        if self.shard_bits == 0 {
            0
        } else {
            (user.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - self.shard_bits)) as usize
        }
    }

    fn shard(&self, user: u64) -> &Shard {
        &self.shards[self.shard_of(user)]
    }

    fn work(&self) {
        while let Some(job) = self.queue.pop_blocking() {
            self.fan_out(job.entry);
            self.queue.done();
        }
    }

    /// Groups users by shard so each shard lock is taken once.
    fn by_shard(&self, users: &[u64]) -> Vec<Vec<u64>> {
        let mut groups = vec![Vec::new(); self.shards.len()];
        for &u in users {
            groups[self.shard_of(u)].push(u);
        }
        groups
    }

    fn fan_out(&self, entry: TimelineEntry) {
        let followers = match self.shard(entry.author).read() {
            Ok(s) => s
                .get(&entry.author)
                .map(|u| u.followers.clone())
                .unwrap_or_default(),
            Err(_) => return,
        };
        let mut inserted = 0u64;
        for (i, group) in self.by_shard(&followers).into_iter().enumerate() {
            if group.is_empty() {
                continue;
            }
            let Ok(mut shard) = self.shards[i].write() else {
                continue;
            };
            for f in group {
                if let Some(u) = shard.get_mut(&f) {
                    if insert_bounded(&mut u.inbox, entry, self.inbox_cap) {
                        inserted += 1;
                    }
                }
            }
        }
        self.inbox_inserts.fetch_add(inserted, Ordering::Relaxed);
    }
}

impl Timeline {
    /// A builder with the defaults (hybrid, 800-item inboxes).
    pub fn builder() -> TimelineBuilder {
        TimelineBuilder::default()
    }

    /// The strategy in use.
    pub fn strategy(&self) -> FanoutStrategy {
        self.inner.strategy
    }

    /// `follower` follows `followee`. Returns `false` when it already did.
    /// Under push, the followee's recent posts are copied into the
    /// follower's inbox.
    pub fn follow(&self, follower: u64, followee: u64) -> Result<bool, StoreError> {
        if follower == followee {
            return Err(StoreError::InvalidInput(
                "a user cannot follow itself".into(),
            ));
        }
        let inner = &*self.inner;
        {
            let mut shard = inner.shard(follower).write().map_err(|_| lock_err())?;
            let u = shard.entry(follower).or_default();
            if u.followees.contains(&followee) {
                return Ok(false);
            }
            u.followees.push(followee);
        }
        let (became_pulled, is_pulled, snapshot, backfill) = {
            let mut shard = inner.shard(followee).write().map_err(|_| lock_err())?;
            let u = shard.entry(followee).or_default();
            u.followers.push(follower);
            let mut became = false;
            if let FanoutStrategy::Hybrid { threshold } = inner.strategy {
                if !u.pulled && u.followers.len() >= threshold {
                    u.pulled = true;
                    became = true;
                }
            }
            let is_pulled = u.pulled || inner.strategy == FanoutStrategy::Pull;
            let snapshot = if became {
                u.followers.clone()
            } else {
                Vec::new()
            };
            let backfill: Vec<TimelineEntry> = if !is_pulled {
                u.outbox.iter().copied().collect()
            } else {
                Vec::new()
            };
            (became, is_pulled, snapshot, backfill)
        };
        if became_pulled {
            for (i, group) in inner.by_shard(&snapshot).into_iter().enumerate() {
                if group.is_empty() {
                    continue;
                }
                let mut shard = inner.shards[i].write().map_err(|_| lock_err())?;
                for f in group {
                    if let Some(u) = shard.get_mut(&f) {
                        if u.followees.contains(&followee)
                            && !u.pulled_followees.contains(&followee)
                        {
                            u.pulled_followees.push(followee);
                        }
                    }
                }
            }
        } else if is_pulled && inner.strategy != FanoutStrategy::Pull {
            let mut shard = inner.shard(follower).write().map_err(|_| lock_err())?;
            if let Some(u) = shard.get_mut(&follower) {
                if !u.pulled_followees.contains(&followee) {
                    u.pulled_followees.push(followee);
                }
            }
        } else if !backfill.is_empty() {
            let mut shard = inner.shard(follower).write().map_err(|_| lock_err())?;
            if let Some(u) = shard.get_mut(&follower) {
                for e in backfill {
                    insert_bounded(&mut u.inbox, e, inner.inbox_cap);
                }
            }
        }
        Ok(true)
    }

    /// `follower` stops following `followee`; their posts leave the
    /// follower's inbox. Returns `false` when it did not follow.
    pub fn unfollow(&self, follower: u64, followee: u64) -> Result<bool, StoreError> {
        let inner = &*self.inner;
        {
            let mut shard = inner.shard(follower).write().map_err(|_| lock_err())?;
            let Some(u) = shard.get_mut(&follower) else {
                return Ok(false);
            };
            let Some(at) = u.followees.iter().position(|&f| f == followee) else {
                return Ok(false);
            };
            u.followees.swap_remove(at);
            u.pulled_followees.retain(|&f| f != followee);
            u.inbox.retain(|e| e.author != followee);
        }
        let mut shard = inner.shard(followee).write().map_err(|_| lock_err())?;
        if let Some(u) = shard.get_mut(&followee) {
            if let Some(at) = u.followers.iter().position(|&f| f == follower) {
                u.followers.swap_remove(at);
            }
        }
        Ok(true)
    }

    /// Posts for `author`; returns the post's id. Fan-out to inboxes happens
    /// in the background (see [`flush`](Self::flush)). A full fan-out queue
    /// rejects the post with [`StoreError::Full`] and nothing is written.
    pub fn post(&self, author: u64) -> Result<u64, StoreError> {
        let inner = &*self.inner;
        let mut shard = inner.shard(author).write().map_err(|_| lock_err())?;
        let u = shard.entry(author).or_default();
        // The id is taken under the author's lock, so outboxes stay sorted.
        let id = inner.ids.next_id()?;
        let entry = TimelineEntry { id, author };
        let pushes = match inner.strategy {
            FanoutStrategy::Push => true,
            FanoutStrategy::Pull => false,
            FanoutStrategy::Hybrid { .. } => !u.pulled,
        };
        if pushes && !u.followers.is_empty() {
            match inner.queue.try_push(Job { entry }) {
                Ok(()) => {}
                Err(PushError::Full(_)) => return Err(StoreError::Full("fan-out queue")),
                Err(PushError::Closed(_)) => return Err(StoreError::Closed("fan-out queue")),
            }
        }
        insert_bounded(&mut u.outbox, entry, inner.outbox_cap);
        inner.posts.fetch_add(1, Ordering::Relaxed);
        Ok(id)
    }

    /// Waits until every accepted post has been fanned out.
    pub fn flush(&self) {
        if self.workers.is_empty() {
            while let Some(job) = self.inner.queue.try_pop() {
                self.inner.fan_out(job.entry);
                self.inner.queue.done();
            }
        }
        self.inner.queue.flush();
    }

    /// Fan-out jobs waiting.
    pub fn pending_fanout(&self) -> usize {
        self.inner.queue.len()
    }

    /// A page of `user`'s home timeline: up to `limit` (1..=1000) entries
    /// older than `cursor` (or the newest), newest first.
    pub fn home(
        &self,
        user: u64,
        cursor: Option<Cursor>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        if limit == 0 || limit > 1000 {
            return Err(StoreError::InvalidInput(format!(
                "page size {limit} is outside 1..=1000"
            )));
        }
        let inner = &*self.inner;
        let before = cursor.map_or(u64::MAX, |c| c.0);
        let mut inbox = Vec::new();
        let sources = {
            let shard = inner.shard(user).read().map_err(|_| lock_err())?;
            let Some(u) = shard.get(&user) else {
                return Ok(Page {
                    entries: Vec::new(),
                    next: None,
                });
            };
            newest_before(&u.inbox, before, limit, &mut inbox);
            match inner.strategy {
                FanoutStrategy::Push => Vec::new(),
                FanoutStrategy::Pull => u.followees.clone(),
                FanoutStrategy::Hybrid { .. } => u.pulled_followees.clone(),
            }
        };
        // Once the inbox alone fills a page, an outbox entry older than the
        // page's oldest can never make it in: skip it at copy time.
        let floor = if inbox.len() == limit {
            inbox.last().map_or(0, |e| e.id)
        } else {
            0
        };
        // All runs live in one buffer; `bounds` delimits them.
        let mut flat = inbox;
        let mut bounds = vec![0, flat.len()];
        let mut sources = sources;
        sources.sort_unstable_by_key(|&f| inner.shard_of(f));
        let mut i = 0;
        while i < sources.len() {
            let s = inner.shard_of(sources[i]);
            let shard = inner.shards[s].read().map_err(|_| lock_err())?;
            while i < sources.len() && inner.shard_of(sources[i]) == s {
                if let Some(u) = shard.get(&sources[i]) {
                    let start = flat.len();
                    newest_before(&u.outbox, before, limit, &mut flat);
                    let keep = flat[start..].partition_point(|e| e.id > floor);
                    flat.truncate(start + keep);
                    if flat.len() > start {
                        bounds.push(flat.len());
                    }
                }
                i += 1;
            }
        }
        let refs: Vec<&[TimelineEntry]> = bounds.windows(2).map(|w| &flat[w[0]..w[1]]).collect();
        let entries = merge_newest(&refs, limit);
        let next = (entries.len() == limit)
            .then(|| entries.last().map(|e| Cursor(e.id)))
            .flatten();
        Ok(Page { entries, next })
    }

    /// How many followers `user` has.
    pub fn follower_count(&self, user: u64) -> usize {
        self.inner
            .shard(user)
            .read()
            .map(|s| s.get(&user).map_or(0, |u| u.followers.len()))
            .unwrap_or(0)
    }

    /// Counters and sizes (walks every shard: not for hot paths).
    pub fn stats(&self) -> TimelineStats {
        let mut st = TimelineStats {
            posts: self.inner.posts.load(Ordering::Relaxed),
            inbox_inserts: self.inner.inbox_inserts.load(Ordering::Relaxed),
            ..TimelineStats::default()
        };
        for shard in self.inner.shards.iter() {
            let Ok(shard) = shard.read() else { continue };
            for u in shard.values() {
                st.users += 1;
                st.inbox_entries += u.inbox.len() as u64;
                st.outbox_entries += u.outbox.len() as u64;
                st.pulled_accounts +=
                    u64::from(u.pulled || self.inner.strategy == FanoutStrategy::Pull);
            }
        }
        st
    }
}

impl Drop for Timeline {
    fn drop(&mut self) {
        self.inner.queue.close();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_sorted_insert() {
        let mut q = VecDeque::new();
        for id in [5, 1, 3, 9, 7, 3] {
            insert_bounded(&mut q, TimelineEntry { id, author: 0 }, 4);
        }
        let ids: Vec<u64> = q.iter().map(|e| e.id).collect();
        assert_eq!(ids, vec![3, 5, 7, 9]);
        assert!(!insert_bounded(
            &mut q,
            TimelineEntry { id: 2, author: 0 },
            4
        ));
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = Cursor(0xdead_beef);
        assert_eq!(Cursor::decode(&c.encode()).ok(), Some(c));
        for bad in [
            "",
            "t",
            "x00000000deadbeef",
            "t00000000deadbeeg",
            "t00000000deadbeef0",
        ] {
            assert!(Cursor::decode(bad).is_err(), "{bad:?}");
        }
    }
}
