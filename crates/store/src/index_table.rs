//! Heterogeneous index tables: orders stored by buyer (the system of
//! record) and mirrored, asynchronously, into a copy sharded by seller, so
//! "a buyer's orders" and "a seller's orders" are both one-shard queries.
//!
//! Every write to the system of record bumps the order's version and
//! enqueues a mirror event on a bounded `kuai-queue` buffer queue drained
//! by a background worker; the mirror applies an event only if it is newer than what it
//! holds, so replays and repairs are idempotent. A full queue does not fail
//! the write (the system of record is what matters) — the event is counted
//! as dropped and the mirror drifts; [`OrderTables::reconcile`] finds and
//! repairs drift (missing, stale and orphaned mirror rows), one seller
//! shard at a time.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use kuai_core::{Partitioner, PushError, TryQueue};

use crate::StoreError;
use crate::fanout::FanoutQueue;

/// An order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    /// The order id, unique across all buyers (e.g. a
    /// [`Snowflake`](crate::Snowflake) id).
    pub id: u64,
    /// The buyer: the system of record is sharded by it.
    pub buyer: u64,
    /// The seller: the mirror is sharded by it.
    pub seller: u64,
    /// Amount in minor units.
    pub amount: i64,
    /// Bumped by every write; set by [`OrderTables`].
    pub version: u64,
}

#[derive(Debug)]
enum Event {
    Upsert(Order),
    Remove { id: u64, seller: u64, version: u64 },
}

type Shard = Mutex<BTreeMap<(u64, u64), Order>>;

/// Tombstones kept for deleted orders (bounds the mirror's memory).
const MAX_TOMBSTONES: usize = 65_536;

struct Inner<P> {
    partitioner: P,
    by_buyer: Vec<Shard>,
    by_seller: Vec<Shard>,
    /// Versions of removed mirror rows, so a late upsert cannot resurrect them.
    tombstones: Mutex<HashMap<u64, u64>>,
    queue: FanoutQueue<Event>,
    dropped: AtomicU64,
    drop_next: AtomicU64,
    version: AtomicU64,
}

/// What a reconciliation pass found (and, unless dry-run, repaired).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Orders absent from the seller copy.
    pub missing: usize,
    /// Mirror rows older than the system of record.
    pub stale: usize,
    /// Mirror rows with no (or another seller's) order behind them.
    pub orphaned: usize,
    /// Whether the differences were repaired.
    pub repaired: bool,
}

impl ReconcileReport {
    /// Whether the copies agreed.
    pub fn is_clean(&self) -> bool {
        self.missing == 0 && self.stale == 0 && self.orphaned == 0
    }
}

/// Orders by buyer (system of record) plus a seller-sharded mirror.
///
/// ```
/// use kuai_store::{Order, OrderTables};
/// # struct Mod(u32);
/// # impl kuai_core::Partitioner<u64> for Mod {
/// #     fn partition(&self, k: &u64) -> u32 { (*k % u64::from(self.0)) as u32 }
/// #     fn partition_count(&self) -> u32 { self.0 }
/// # }
/// let tables = OrderTables::new(Mod(4), 1024).unwrap();
/// tables.put(Order { id: 1, buyer: 10, seller: 20, amount: 999, version: 0 }).unwrap();
/// tables.flush();
/// assert_eq!(tables.by_buyer(10).unwrap().len(), 1);
/// assert_eq!(tables.by_seller(20).unwrap()[0].amount, 999);
/// assert!(tables.reconcile(true).unwrap().is_clean());
/// ```
pub struct OrderTables<P> {
    inner: Arc<Inner<P>>,
    worker: Option<JoinHandle<()>>,
}

impl<P> fmt::Debug for OrderTables<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OrderTables")
            .field("shards", &self.inner.by_buyer.len())
            .field("dropped", &self.inner.dropped.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

fn poisoned() -> StoreError {
    StoreError::Closed("order tables (a lock was poisoned)")
}

impl<P: Partitioner<u64>> Inner<P> {
    fn seller_shard(&self, seller: u64) -> &Shard {
        &self.by_seller[self.partitioner.partition(&seller) as usize % self.by_seller.len()]
    }
    fn buyer_shard(&self, buyer: u64) -> &Shard {
        &self.by_buyer[self.partitioner.partition(&buyer) as usize % self.by_buyer.len()]
    }

    fn apply(&self, ev: Event) -> Result<(), StoreError> {
        match ev {
            Event::Upsert(o) => {
                let tomb = self
                    .tombstones
                    .lock()
                    .map_err(|_| poisoned())?
                    .get(&o.id)
                    .copied();
                if tomb.is_some_and(|v| v >= o.version) {
                    return Ok(());
                }
                let mut shard = self.seller_shard(o.seller).lock().map_err(|_| poisoned())?;
                match shard.get(&(o.seller, o.id)) {
                    Some(cur) if cur.version >= o.version => {}
                    _ => {
                        shard.insert((o.seller, o.id), o);
                    }
                }
            }
            Event::Remove {
                id,
                seller,
                version,
            } => {
                let mut tombs = self.tombstones.lock().map_err(|_| poisoned())?;
                tombs.insert(id, version);
                if tombs.len() > MAX_TOMBSTONES {
                    // Only a write racing a delete needs a tombstone; ones
                    // older than the last MAX_TOMBSTONES writes are dropped
                    // (a resurrection after that is an orphan that
                    // reconciliation removes).
                    let keep_after = version.saturating_sub(MAX_TOMBSTONES as u64);
                    tombs.retain(|_, v| *v > keep_after);
                }
                drop(tombs);
                let mut shard = self.seller_shard(seller).lock().map_err(|_| poisoned())?;
                if shard
                    .get(&(seller, id))
                    .is_some_and(|cur| cur.version <= version)
                {
                    shard.remove(&(seller, id));
                }
            }
        }
        Ok(())
    }

    fn work(&self) {
        while let Some(ev) = self.queue.pop_blocking() {
            let _ = self.apply(ev);
            self.queue.done();
        }
    }

    fn emit(&self, ev: Event) {
        if self
            .drop_next
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
        {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        match self.queue.try_push(ev) {
            Ok(()) => {}
            Err(PushError::Full(_)) | Err(PushError::Closed(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl<P: Partitioner<u64> + 'static> OrderTables<P> {
    /// Tables with `partitioner`'s partition count of shards on each side
    /// and a mirror queue of `queue_capacity` events.
    pub fn new(partitioner: P, queue_capacity: usize) -> Result<Self, StoreError> {
        let n = partitioner.partition_count().max(1) as usize;
        let inner = Arc::new(Inner {
            partitioner,
            by_buyer: (0..n).map(|_| Mutex::new(BTreeMap::new())).collect(),
            by_seller: (0..n).map(|_| Mutex::new(BTreeMap::new())).collect(),
            tombstones: Mutex::new(HashMap::new()),
            queue: FanoutQueue::new(queue_capacity),
            dropped: AtomicU64::new(0),
            drop_next: AtomicU64::new(0),
            version: AtomicU64::new(0),
        });
        let w = inner.clone();
        let worker = std::thread::Builder::new()
            .name("kuai-order-mirror".into())
            .spawn(move || w.work())
            .map_err(StoreError::Io)?;
        Ok(OrderTables {
            inner,
            worker: Some(worker),
        })
    }
}

impl<P: Partitioner<u64>> OrderTables<P> {
    /// Writes an order to the system of record (its version is assigned)
    /// and enqueues its mirror update. Returns the version written.
    pub fn put(&self, mut order: Order) -> Result<u64, StoreError> {
        let inner = &*self.inner;
        order.version = inner.version.fetch_add(1, Ordering::Relaxed) + 1;
        let version = order.version;
        let old_seller = {
            let mut shard = inner
                .buyer_shard(order.buyer)
                .lock()
                .map_err(|_| poisoned())?;
            let old = shard.insert((order.buyer, order.id), order.clone());
            old.map(|o| o.seller).filter(|&s| s != order.seller)
        };
        if let Some(seller) = old_seller {
            inner.emit(Event::Remove {
                id: order.id,
                seller,
                version,
            });
        }
        inner.emit(Event::Upsert(order));
        Ok(version)
    }

    /// Deletes an order (by buyer and id) from the system of record and
    /// enqueues its removal from the mirror.
    pub fn delete(&self, buyer: u64, id: u64) -> Result<bool, StoreError> {
        let inner = &*self.inner;
        let removed = inner
            .buyer_shard(buyer)
            .lock()
            .map_err(|_| poisoned())?
            .remove(&(buyer, id));
        if let Some(o) = &removed {
            let version = inner.version.fetch_add(1, Ordering::Relaxed) + 1;
            inner.emit(Event::Remove {
                id,
                seller: o.seller,
                version,
            });
        }
        Ok(removed.is_some())
    }

    /// A buyer's orders (one shard of the system of record), by id.
    pub fn by_buyer(&self, buyer: u64) -> Result<Vec<Order>, StoreError> {
        let shard = self
            .inner
            .buyer_shard(buyer)
            .lock()
            .map_err(|_| poisoned())?;
        Ok(shard
            .range((buyer, 0)..=(buyer, u64::MAX))
            .map(|(_, o)| o.clone())
            .collect())
    }

    /// A seller's orders (one shard of the mirror), by id. Eventually
    /// consistent with the system of record.
    pub fn by_seller(&self, seller: u64) -> Result<Vec<Order>, StoreError> {
        let shard = self
            .inner
            .seller_shard(seller)
            .lock()
            .map_err(|_| poisoned())?;
        Ok(shard
            .range((seller, 0)..=(seller, u64::MAX))
            .map(|(_, o)| o.clone())
            .collect())
    }

    /// A seller's orders without the mirror: every buyer shard is scanned
    /// (what the index table exists to avoid).
    pub fn by_seller_scatter(&self, seller: u64) -> Result<Vec<Order>, StoreError> {
        let mut out = Vec::new();
        for shard in &self.inner.by_buyer {
            let shard = shard.lock().map_err(|_| poisoned())?;
            out.extend(shard.values().filter(|o| o.seller == seller).cloned());
        }
        out.sort_by_key(|o| o.id);
        Ok(out)
    }

    /// Waits until every queued mirror event has been applied.
    pub fn flush(&self) {
        self.inner.queue.flush();
    }

    /// Mirror events lost so far (queue full, or injected).
    pub fn dropped_events(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Fault injection: silently drops the next `n` mirror events, as a
    /// lost message would.
    pub fn drop_next_events(&self, n: u64) {
        self.inner.drop_next.store(n, Ordering::Release);
    }

    /// Compares the mirror with the system of record, one seller shard at a
    /// time, and (unless `dry_run`) repairs every difference. Safe to run
    /// while writes continue: repairs carry the system of record's
    /// versions, so an older in-flight event cannot undo them.
    pub fn reconcile(&self, dry_run: bool) -> Result<ReconcileReport, StoreError> {
        let inner = &*self.inner;
        let mut report = ReconcileReport {
            repaired: !dry_run,
            ..ReconcileReport::default()
        };
        let shards = inner.by_seller.len();
        // Rows written after this point are newer than the snapshot below
        // and are left alone (their own events keep the mirror right).
        let snapshot = inner.version.load(Ordering::Acquire);
        for s in 0..shards {
            // What this seller shard should hold, from every buyer shard.
            let mut expected: BTreeMap<(u64, u64), Order> = BTreeMap::new();
            for b in &inner.by_buyer {
                let b = b.lock().map_err(|_| poisoned())?;
                for o in b.values() {
                    if inner.partitioner.partition(&o.seller) as usize % shards == s {
                        expected.insert((o.seller, o.id), o.clone());
                    }
                }
            }
            let mut mirror = inner.by_seller[s].lock().map_err(|_| poisoned())?;
            let orphans: Vec<(u64, u64)> = mirror
                .iter()
                .filter(|(k, o)| !expected.contains_key(k) && o.version <= snapshot)
                .map(|(k, _)| *k)
                .collect();
            report.orphaned += orphans.len();
            for (key, order) in expected {
                let fix = match mirror.get(&key) {
                    None => {
                        report.missing += 1;
                        true
                    }
                    Some(cur) if cur.version > order.version => false,
                    Some(cur) if *cur != order => {
                        report.stale += 1;
                        true
                    }
                    Some(_) => false,
                };
                if fix && !dry_run {
                    mirror.insert(key, order);
                }
            }
            if !dry_run {
                for k in orphans {
                    mirror.remove(&k);
                }
            }
        }
        Ok(report)
    }
}

impl<P> Drop for OrderTables<P> {
    fn drop(&mut self) {
        self.inner.queue.close();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}
