//! The in-process broker: topics with partitions, point-to-point (competing
//! consumers in one group) and pub/sub (every group gets every message),
//! consumer groups with committed offsets, ack/nack with redelivery after a
//! visibility timeout, ordering per partition key, and transactional half
//! messages with check-back (see [`TransactionChecker`]).
//!
//! # Durability
//! [`BrokerBuilder::open`] keeps a journal in one shared [`Log`] (RocketMQ's
//! design: one commit log for every topic, so throughput does not fall as
//! topics multiply): publishes, half messages, commits, rollbacks,
//! check-back counts and committed offsets. A publish returns only after its
//! journal record is fsynced (group commit). On restart the journal is
//! replayed: messages, pending half messages and committed offsets come
//! back; unacknowledged deliveries are redelivered (at-least-once).
//! [`BrokerBuilder::in_memory`] keeps everything in memory.
//!
//! # Ordering
//! Messages with a key go to partition `hash(key) % partitions`. Within a
//! group, a message is not delivered while an earlier message with the same
//! key in that partition is unacknowledged, so each key is processed in
//! order even with competing consumers.

mod journal;
mod txn;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kuai_core::{Clock, SystemClock};

use crate::error::QueueError;
use crate::log::Log;
use journal::{Entry, Msg};
pub use txn::{
    CheckReport, CheckerHandle, HalfMessage, TransactionChecker, TxId, TxState, TxnConfig,
};

/// A delivered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Its topic.
    pub topic: String,
    /// Its partition.
    pub partition: u32,
    /// Its offset within the partition.
    pub offset: u64,
    /// The ordering key, if any.
    pub key: Option<Bytes>,
    /// The body.
    pub payload: Bytes,
    /// 1 on first delivery to this group, more on redelivery.
    pub delivery: u32,
}

/// Builds a [`Broker`].
#[derive(Debug, Clone)]
pub struct BrokerBuilder {
    partitions: u32,
    visibility_timeout: Duration,
    max_in_flight: usize,
    max_message_bytes: usize,
    group_commit: Duration,
    txn: TxnConfig,
    clock: Arc<dyn Clock>,
}

impl BrokerBuilder {
    /// Partitions of topics created implicitly (default 4).
    pub fn partitions(mut self, n: u32) -> Self {
        self.partitions = n.max(1);
        self
    }
    /// How long a delivered message may stay unacknowledged before it is
    /// redelivered (default 30 s).
    pub fn visibility_timeout(mut self, d: Duration) -> Self {
        self.visibility_timeout = d;
        self
    }
    /// Unacknowledged messages per group and partition (default 1000).
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n.max(1);
        self
    }
    /// Largest payload accepted (default 1 MiB).
    pub fn max_message_bytes(mut self, n: usize) -> Self {
        self.max_message_bytes = n;
        self
    }
    /// Group-commit latency of the journal (default 1 ms).
    pub fn group_commit(mut self, d: Duration) -> Self {
        self.group_commit = d;
        self
    }
    /// Transaction check-back settings (RocketMQ's defaults).
    pub fn transactions(mut self, cfg: TxnConfig) -> Self {
        self.txn = cfg;
        self
    }
    /// The clock for visibility timeouts and check-backs.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }
    /// A broker that keeps everything in memory.
    pub fn in_memory(self) -> Broker {
        Broker::new(self, None)
    }
    /// A broker journaled to a log in `dir`, replayed if it exists.
    pub fn open(self, dir: impl AsRef<Path>) -> Result<Broker, QueueError> {
        let log = Log::builder(dir)
            .group_commit(self.group_commit)
            .max_record_bytes(self.max_message_bytes + 4096)
            .clock(Arc::clone(&self.clock))
            .open()?;
        let broker = Broker::new(self, Some(log));
        broker.replay()?;
        Ok(broker)
    }
}

/// The in-process broker (see the [module docs](self)). Clones share it.
///
/// ```
/// use kuai_queue::broker::Broker;
/// let broker = Broker::builder().partitions(2).in_memory();
/// broker.publish("orders", Some(b"user-1"), b"created")?;
/// let workers = broker.consumer("orders", "billing");   // point-to-point group
/// let audit = broker.consumer("orders", "audit");       // pub/sub: another group
/// let m = workers.try_poll(10)?.remove(0);
/// workers.ack(&m)?;
/// assert_eq!(audit.try_poll(10)?.len(), 1);            // audit sees it too
/// # Ok::<(), kuai_queue::QueueError>(())
/// ```
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: BrokerBuilder,
    journal: Option<Log>,
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    topics: HashMap<String, Vec<Partition>>,
    groups: HashMap<(String, String), Vec<GroupPartition>>,
    halves: BTreeMap<TxId, txn::Half>,
    resolved: HashMap<TxId, TxState>,
    next_txid: TxId,
    round_robin: u64,
    /// Journaled entries not yet applied, by journal offset: applied in
    /// journal order once durable, so memory matches what a replay builds.
    unapplied: BTreeMap<u64, Entry>,
    /// Where applied publishes/commits landed, for their publishers.
    placed: HashMap<u64, Option<(u32, u64)>>,
    skipped_on_replay: u64,
}

#[derive(Default)]
struct Partition {
    msgs: Vec<Arc<Stored>>,
}

#[derive(Debug)]
struct Stored {
    key: Option<Bytes>,
    payload: Bytes,
}

#[derive(Default, Clone)]
struct GroupPartition {
    committed: u64,
    next: u64,
    in_flight: BTreeMap<u64, InFlight>,
    acked: BTreeSet<u64>,
    deliveries: HashMap<u64, u32>,
}

#[derive(Clone)]
struct InFlight {
    deadline: Instant,
}

impl fmt::Debug for Broker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.inner.lock();
        f.debug_struct("Broker")
            .field("topics", &st.topics.len())
            .field("groups", &st.groups.len())
            .field("pending_transactions", &st.halves.len())
            .field("durable", &self.inner.journal.is_some())
            .finish()
    }
}

impl Broker {
    /// A builder with the defaults.
    pub fn builder() -> BrokerBuilder {
        BrokerBuilder {
            partitions: 4,
            visibility_timeout: Duration::from_secs(30),
            max_in_flight: 1000,
            max_message_bytes: 1 << 20,
            group_commit: Duration::from_millis(1),
            txn: TxnConfig::default(),
            clock: Arc::new(SystemClock),
        }
    }

    fn new(cfg: BrokerBuilder, journal: Option<Log>) -> Broker {
        Broker {
            inner: Arc::new(Inner {
                cfg,
                journal,
                state: Mutex::new(State {
                    next_txid: 1,
                    ..State::default()
                }),
                changed: Condvar::new(),
            }),
        }
    }

    /// Creates `topic` with `partitions` partitions (no-op if it exists with
    /// as many; `InvalidInput` if it exists with another count).
    pub fn create_topic(&self, topic: &str, partitions: u32) -> Result<(), QueueError> {
        let mut st = self.inner.lock();
        match st.topics.get(topic) {
            Some(p) if p.len() == partitions.max(1) as usize => Ok(()),
            Some(p) => Err(QueueError::InvalidInput(format!(
                "topic {topic} exists with {} partitions",
                p.len()
            ))),
            None => {
                st.topics.insert(
                    topic.to_string(),
                    (0..partitions.max(1))
                        .map(|_| Partition::default())
                        .collect(),
                );
                Ok(())
            }
        }
    }

    /// Publishes a message; returns `(partition, offset)` once it is stored
    /// (fsynced, for a journaled broker).
    pub fn publish(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        payload: &[u8],
    ) -> Result<(u32, u64), QueueError> {
        let msg = self.make_msg(topic, key, payload)?;
        let placed = self.inner.journal_apply(Entry::Publish(msg))?;
        self.inner.changed.notify_all();
        placed.ok_or_else(|| QueueError::InvalidInput("publish was not applied".into()))
    }

    fn make_msg(&self, topic: &str, key: Option<&[u8]>, payload: &[u8]) -> Result<Msg, QueueError> {
        if payload.len() > self.inner.cfg.max_message_bytes {
            return Err(QueueError::Oversized {
                size: payload.len(),
                max: self.inner.cfg.max_message_bytes,
            });
        }
        if topic.is_empty() || topic.len() > 255 {
            return Err(QueueError::InvalidInput(
                "topic names are 1..=255 bytes".into(),
            ));
        }
        let mut st = self.inner.lock();
        let parts = self.inner.topic(&mut st, topic).len() as u64;
        let partition = match key {
            Some(k) => {
                let mut h = std::hash::DefaultHasher::new();
                k.hash(&mut h);
                (h.finish() % parts) as u32
            }
            None => {
                st.round_robin = st.round_robin.wrapping_add(1);
                (st.round_robin % parts) as u32
            }
        };
        Ok(Msg {
            topic: topic.to_string(),
            partition,
            key: key.map(Bytes::copy_from_slice),
            payload: Bytes::copy_from_slice(payload),
        })
    }

    /// A consumer in `group` of `topic`. Consumers of one group compete for
    /// messages (point-to-point); each group sees every message (pub/sub).
    /// A new group starts at the oldest message.
    pub fn consumer(&self, topic: &str, group: &str) -> Consumer {
        let mut st = self.inner.lock();
        let parts = self.inner.topic(&mut st, topic).len();
        st.groups
            .entry((group.to_string(), topic.to_string()))
            .or_insert_with(|| vec![GroupPartition::default(); parts]);
        Consumer {
            broker: self.clone(),
            topic: topic.to_string(),
            group: group.to_string(),
        }
    }

    /// Messages stored in `topic` (all partitions).
    pub fn topic_len(&self, topic: &str) -> u64 {
        let st = self.inner.lock();
        st.topics
            .get(topic)
            .map_or(0, |p| p.iter().map(|p| p.msgs.len() as u64).sum())
    }

    /// A group's committed offsets per partition (everything below is acked).
    pub fn committed_offsets(&self, topic: &str, group: &str) -> Vec<u64> {
        let st = self.inner.lock();
        st.groups
            .get(&(group.to_string(), topic.to_string()))
            .map_or_else(Vec::new, |g| g.iter().map(|p| p.committed).collect())
    }

    /// Damaged journal records skipped when the broker was opened (each
    /// also reported by the log as `Corrupt` with its offset).
    pub fn corrupt_entries_skipped(&self) -> u64 {
        self.inner.lock().skipped_on_replay
    }

    fn replay(&self) -> Result<(), QueueError> {
        let Some(log) = &self.inner.journal else {
            return Ok(());
        };
        let mut st = self.inner.lock();
        let mut next = log.start_offset();
        let end = log.end_offset();
        while next < end {
            let batch = match log.read_from(next, 1 << 20) {
                Ok(b) => b,
                Err(QueueError::Corrupt { .. }) => {
                    // A damaged journal record: skip it, keep the rest.
                    st.skipped_on_replay += 1;
                    next += 1;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if batch.is_empty() {
                break;
            }
            for rec in batch {
                next = rec.offset + 1;
                match Entry::decode(rec.offset, &rec.payload) {
                    Ok(e) => {
                        self.inner.apply(&mut st, e);
                    }
                    Err(_) => st.skipped_on_replay += 1,
                }
            }
        }
        let now = self.inner.cfg.clock.now();
        for h in st.halves.values_mut() {
            // After a restart, check interrupted transactions soon.
            h.next_check = now;
        }
        Ok(())
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Journals `e` (waiting until it is durable) and applies it to the
    /// in-memory state in journal order; returns where a published or
    /// committed message landed.
    fn journal_apply(&self, e: Entry) -> Result<Option<(u32, u64)>, QueueError> {
        let Some(log) = &self.journal else {
            let mut st = self.lock();
            return Ok(self.apply(&mut st, e));
        };
        let ticket = {
            let mut st = self.lock();
            let t = log.append(&e.encode())?;
            st.unapplied.insert(t.offset(), e);
            t
        };
        let off = ticket.offset();
        if let Err(err) = ticket.wait() {
            self.lock().unapplied.remove(&off);
            return Err(err);
        }
        let durable = log.end_offset();
        let mut st = self.lock();
        while let Some(entry) = st.unapplied.first_entry() {
            if *entry.key() >= durable {
                break;
            }
            let (k, e) = entry.remove_entry();
            let placed = self.apply(&mut st, e);
            st.placed.insert(k, placed);
        }
        Ok(st.placed.remove(&off).flatten())
    }

    /// Appends without waiting (offset commits: losing the last few only
    /// causes redelivery).
    fn append_lazy(&self, e: &Entry) {
        if let Some(log) = &self.journal {
            let _ = log.append(&e.encode());
        }
    }

    fn topic<'a>(&self, st: &'a mut State, topic: &str) -> &'a mut Vec<Partition> {
        st.topics.entry(topic.to_string()).or_insert_with(|| {
            (0..self.cfg.partitions)
                .map(|_| Partition::default())
                .collect()
        })
    }

    fn insert(&self, st: &mut State, m: Msg) -> u64 {
        let parts = self.topic(st, &m.topic);
        let idx = (m.partition as usize).min(parts.len() - 1);
        let p = &mut parts[idx];
        p.msgs.push(Arc::new(Stored {
            key: m.key,
            payload: m.payload,
        }));
        p.msgs.len() as u64 - 1
    }

    fn apply(&self, st: &mut State, e: Entry) -> Option<(u32, u64)> {
        match e {
            Entry::Publish(m) => {
                let partition = m.partition;
                return Some((partition, self.insert(st, m)));
            }
            Entry::Half { txid, msg } => {
                st.next_txid = st.next_txid.max(txid + 1);
                let mut h = txn::Half::new(msg, self.cfg.clock.now());
                h.next_check += self.cfg.txn.first_check;
                st.halves.insert(txid, h);
            }
            Entry::Commit { txid } => {
                st.resolved.insert(txid, TxState::Commit);
                if let Some(h) = st.halves.remove(&txid) {
                    let partition = h.msg.partition;
                    return Some((partition, self.insert(st, h.msg)));
                }
            }
            Entry::Rollback { txid } => {
                st.halves.remove(&txid);
                st.resolved.insert(txid, TxState::Rollback);
            }
            Entry::Checked { txid, checks } => {
                if let Some(h) = st.halves.get_mut(&txid) {
                    h.checks = checks;
                    h.next_check = self.cfg.clock.now() + self.cfg.txn.check_interval;
                }
            }
            Entry::Offset {
                group,
                topic,
                partition,
                offset,
            } => {
                let parts = self.topic(st, &topic).len();
                let g = st
                    .groups
                    .entry((group, topic))
                    .or_insert_with(|| vec![GroupPartition::default(); parts]);
                if let Some(gp) = g.get_mut(partition as usize) {
                    gp.committed = gp.committed.max(offset);
                    gp.next = gp.next.max(offset);
                }
            }
        }
        None
    }
}

/// A member of a consumer group.
#[derive(Clone)]
pub struct Consumer {
    broker: Broker,
    topic: String,
    group: String,
}

impl fmt::Debug for Consumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("topic", &self.topic)
            .field("group", &self.group)
            .finish()
    }
}

impl Consumer {
    /// Takes up to `max` deliverable messages without waiting. Each must be
    /// [`ack`](Self::ack)ed (or [`nack`](Self::nack)ed) within the
    /// visibility timeout, or it is delivered again.
    pub fn try_poll(&self, max: usize) -> Result<Vec<Message>, QueueError> {
        let inner = &self.broker.inner;
        let now = inner.cfg.clock.now();
        let vis = inner.cfg.visibility_timeout;
        let mut st = inner.lock();
        let st = &mut *st;
        let parts = match st.topics.get(&self.topic) {
            Some(p) => p,
            None => return Ok(Vec::new()),
        };
        let Some(group) = st.groups.get_mut(&(self.group.clone(), self.topic.clone())) else {
            return Err(QueueError::NotFound(format!("group {}", self.group)));
        };
        let mut out = Vec::new();
        let n = parts.len();
        let start = (st.round_robin as usize) % n.max(1);
        st.round_robin = st.round_robin.wrapping_add(1);
        for i in 0..n {
            if out.len() >= max {
                break;
            }
            let pi = (start + i) % n;
            let part = &parts[pi];
            let gp = &mut group[pi];
            // Expired deliveries become deliverable again.
            gp.in_flight.retain(|_, f| f.deadline > now);
            let mut blocked: HashSet<&Bytes> = HashSet::new();
            for &off in gp.in_flight.keys() {
                if let Some(k) = &part.msgs[off as usize].key {
                    blocked.insert(k);
                }
            }
            let limit =
                (part.msgs.len() as u64).min(gp.committed + inner.cfg.max_in_flight as u64 * 4);
            let mut off = gp.committed;
            while off < limit && out.len() < max && gp.in_flight.len() < inner.cfg.max_in_flight {
                let o = off;
                off += 1;
                if gp.acked.contains(&o) || gp.in_flight.contains_key(&o) {
                    continue;
                }
                let m = &part.msgs[o as usize];
                if let Some(k) = &m.key {
                    if !blocked.insert(k) {
                        continue; // an earlier message with this key is pending
                    }
                }
                gp.in_flight.insert(
                    o,
                    InFlight {
                        deadline: now + vis,
                    },
                );
                let d = gp.deliveries.entry(o).or_insert(0);
                *d += 1;
                gp.next = gp.next.max(o + 1);
                out.push(Message {
                    topic: self.topic.clone(),
                    partition: pi as u32,
                    offset: o,
                    key: m.key.clone(),
                    payload: m.payload.clone(),
                    delivery: *d,
                });
            }
        }
        Ok(out)
    }

    /// Like [`try_poll`](Self::try_poll), waiting up to `timeout` for at
    /// least one message.
    pub fn poll(&self, max: usize, timeout: Duration) -> Result<Vec<Message>, QueueError> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.try_poll(max)?;
            let now = Instant::now();
            if !got.is_empty() || now >= deadline {
                return Ok(got);
            }
            let inner = &self.broker.inner;
            let st = inner.lock();
            // Wake on publish/nack, or recheck visibility timeouts now and then.
            let wait = (deadline - now).min(Duration::from_millis(50));
            drop(inner.changed.wait_timeout(st, wait));
        }
    }

    fn with_partition<R>(
        &self,
        m: &Message,
        f: impl FnOnce(&mut GroupPartition) -> R,
    ) -> Result<R, QueueError> {
        if m.topic != self.topic {
            return Err(QueueError::InvalidInput("message of another topic".into()));
        }
        let mut st = self.broker.inner.lock();
        let g = st
            .groups
            .get_mut(&(self.group.clone(), self.topic.clone()))
            .ok_or_else(|| QueueError::NotFound(format!("group {}", self.group)))?;
        let gp = g
            .get_mut(m.partition as usize)
            .ok_or_else(|| QueueError::InvalidInput("no such partition".into()))?;
        Ok(f(gp))
    }

    /// Acknowledges a message: it will not be delivered to this group again.
    /// Advances (and journals) the committed offset past every acked prefix.
    pub fn ack(&self, m: &Message) -> Result<(), QueueError> {
        let moved = self.with_partition(m, |gp| {
            gp.in_flight.remove(&m.offset);
            if m.offset < gp.committed {
                return None;
            }
            gp.acked.insert(m.offset);
            let before = gp.committed;
            while gp.acked.remove(&gp.committed) {
                gp.deliveries.remove(&gp.committed);
                gp.committed += 1;
            }
            (gp.committed != before).then_some(gp.committed)
        })?;
        if let Some(offset) = moved {
            self.broker.inner.append_lazy(&Entry::Offset {
                group: self.group.clone(),
                topic: self.topic.clone(),
                partition: m.partition,
                offset,
            });
        }
        self.broker.inner.changed.notify_all();
        Ok(())
    }

    /// Gives a message back for redelivery now (to any consumer of the group).
    pub fn nack(&self, m: &Message) -> Result<(), QueueError> {
        self.with_partition(m, |gp| {
            gp.in_flight.remove(&m.offset);
        })?;
        self.broker.inner.changed.notify_all();
        Ok(())
    }
}

#[cfg(test)]
mod tests;
