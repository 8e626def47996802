//! Client-side routing with a versioned routing table and MOVED/ASK redirects.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use kuai_core::{PartitionId, Partitioner};

use crate::error::{ShardError, ShardResult};
use crate::rebalance::Assignment;
use crate::slots::SlotMap;

/// A cluster's answer to a request sent to the wrong node (Redis Cluster's
/// `MOVED` / `ASK`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redirect {
    /// The partition is owned by `node` for good: update the routing table
    /// and retry there.
    Moved {
        /// The partition (slot) of the key.
        partition: PartitionId,
        /// The owner's address or id.
        node: String,
        /// The cluster's table epoch when it answered (0 if unknown, as in Redis).
        epoch: u64,
    },
    /// The partition is migrating and this key is already on `node`: retry
    /// there once, flagged as asking, without updating the table.
    Ask {
        /// The partition (slot) of the key.
        partition: PartitionId,
        /// The importing node.
        node: String,
    },
}

impl Redirect {
    /// Parses a Redis error line body like `MOVED 3999 127.0.0.1:6381` or
    /// `ASK 3999 127.0.0.1:6381` (with or without a leading `-`).
    ///
    /// ```
    /// use kuai_shard::Redirect;
    /// assert_eq!(
    ///     Redirect::parse_redis("MOVED 3999 127.0.0.1:6381"),
    ///     Some(Redirect::Moved { partition: 3999, node: "127.0.0.1:6381".into(), epoch: 0 })
    /// );
    /// assert_eq!(Redirect::parse_redis("ERR nope"), None);
    /// ```
    pub fn parse_redis(line: &str) -> Option<Redirect> {
        let mut it = line.trim_start_matches('-').split_ascii_whitespace();
        let kind = it.next()?;
        let partition: u32 = it.next()?.parse().ok()?;
        if partition >= u32::from(crate::slots::SLOT_COUNT) {
            return None;
        }
        let node = it.next()?.to_string();
        if it.next().is_some() {
            return None;
        }
        match kind {
            "MOVED" => Some(Redirect::Moved {
                partition,
                node,
                epoch: 0,
            }),
            "ASK" => Some(Redirect::Ask { partition, node }),
            _ => None,
        }
    }
}

/// A versioned map partition → node, plus the partitions being migrated.
///
/// The cluster side holds the authoritative table and checks every request
/// with [`admit`](Self::admit); routers hold copies that may be stale. Every
/// ownership change bumps the epoch, so a router can tell an old table from a
/// new one.
///
/// ```
/// use kuai_shard::{Redirect, RoutingTable, SlotMap};
/// let mut t = RoutingTable::from_slot_map(1, &SlotMap::balanced(["a", "b"])?);
/// assert!(t.admit("a", 0, true, false).is_ok());
/// assert!(matches!(t.admit("b", 0, true, false), Err(Redirect::Moved { .. })));
/// t.begin_migration(0, "b")?;
/// // Keys not yet copied are asked for on the importing node.
/// assert!(matches!(t.admit("a", 0, false, false), Err(Redirect::Ask { .. })));
/// assert!(t.admit("b", 0, false, true).is_ok());
/// t.complete_migration(0)?;
/// assert_eq!(t.epoch(), 2);
/// assert_eq!(t.owner(0), Some("b"));
/// # Ok::<(), kuai_shard::ShardError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingTable {
    epoch: u64,
    nodes: Vec<Arc<str>>,
    owners: Vec<u32>,
    migrating: HashMap<PartitionId, u32>,
}

impl RoutingTable {
    /// A table at `epoch` from an [`Assignment`].
    pub fn from_assignment(epoch: u64, a: &Assignment) -> Self {
        RoutingTable {
            epoch,
            nodes: a.nodes().iter().map(|n| Arc::from(n.id())).collect(),
            owners: a.owners().to_vec(),
            migrating: HashMap::new(),
        }
    }

    /// A table at `epoch` from a Redis-style [`SlotMap`].
    pub fn from_slot_map(epoch: u64, m: &SlotMap) -> Self {
        RoutingTable {
            epoch,
            nodes: m.nodes().iter().map(|n| Arc::from(n.id())).collect(),
            owners: m.owners().to_vec(),
            migrating: HashMap::new(),
        }
    }

    /// The same table at another epoch.
    #[must_use]
    pub fn with_epoch(mut self, epoch: u64) -> Self {
        self.epoch = epoch;
        self
    }

    /// The table's epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// How many partitions the table maps.
    pub fn partition_count(&self) -> u32 {
        self.owners.len() as u32
    }

    /// The owner of `partition`.
    pub fn owner(&self, partition: PartitionId) -> Option<&str> {
        let o = *self.owners.get(partition as usize)?;
        self.nodes.get(o as usize).map(|n| &**n)
    }

    fn owner_arc(&self, partition: PartitionId) -> Option<&Arc<str>> {
        let o = *self.owners.get(partition as usize)?;
        self.nodes.get(o as usize)
    }

    fn node_index(&mut self, node: &str) -> u32 {
        match self.nodes.iter().position(|n| &**n == node) {
            Some(i) => i as u32,
            None => {
                self.nodes.push(Arc::from(node));
                (self.nodes.len() - 1) as u32
            }
        }
    }

    fn check_partition(&self, partition: PartitionId) -> ShardResult<()> {
        if partition as usize >= self.owners.len() {
            return Err(ShardError::OutOfBounds {
                index: partition as usize,
                len: self.owners.len(),
            });
        }
        Ok(())
    }

    /// Sets the owner of `partition` (adding the node if new). Does not bump
    /// the epoch: routers use it to patch their copy after a `MOVED`.
    pub fn set_owner(&mut self, partition: PartitionId, node: &str) -> ShardResult<()> {
        self.check_partition(partition)?;
        let i = self.node_index(node);
        self.owners[partition as usize] = i;
        Ok(())
    }

    /// Marks `partition` as migrating to `to` (Redis's MIGRATING/IMPORTING).
    pub fn begin_migration(&mut self, partition: PartitionId, to: &str) -> ShardResult<()> {
        self.check_partition(partition)?;
        if self.owner(partition) == Some(to) {
            return Err(ShardError::InvalidConfig(format!(
                "partition {partition} is already owned by {to}"
            )));
        }
        let i = self.node_index(to);
        self.migrating.insert(partition, i);
        Ok(())
    }

    /// The node `partition` is migrating to, if any.
    pub fn migrating_to(&self, partition: PartitionId) -> Option<&str> {
        self.migrating
            .get(&partition)
            .and_then(|&i| self.nodes.get(i as usize))
            .map(|n| &**n)
    }

    /// Hands `partition` to its migration target and bumps the epoch.
    pub fn complete_migration(&mut self, partition: PartitionId) -> ShardResult<()> {
        let to = self.migrating.remove(&partition).ok_or_else(|| {
            ShardError::InvalidConfig(format!("partition {partition} is not migrating"))
        })?;
        self.owners[partition as usize] = to;
        self.epoch += 1;
        Ok(())
    }

    /// The cluster-side check before `node` serves a key of `partition`:
    /// the owner serves keys it has; a key missing from a migrating partition
    /// is redirected with `ASK` to the importing node, which serves it only to
    /// an asking request; everyone else answers `MOVED` to the owner. A stale
    /// router therefore always gets a redirect, never another shard's data.
    pub fn admit(
        &self,
        node: &str,
        partition: PartitionId,
        key_present: bool,
        asking: bool,
    ) -> Result<(), Redirect> {
        let moved = || Redirect::Moved {
            partition,
            node: self.owner(partition).unwrap_or("").to_string(),
            epoch: self.epoch,
        };
        let Some(owner) = self.owner(partition) else {
            return Err(moved());
        };
        let target = self.migrating_to(partition);
        if owner == node {
            return match target {
                Some(t) if !key_present => Err(Redirect::Ask {
                    partition,
                    node: t.to_string(),
                }),
                _ => Ok(()),
            };
        }
        if target == Some(node) && asking {
            return Ok(());
        }
        Err(moved())
    }
}

/// Where a router sends a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The key's partition (slot).
    pub partition: PartitionId,
    /// The node to send it to.
    pub node: Arc<str>,
    /// Whether to flag the request as asking (after an `ASK`).
    pub asking: bool,
    /// The epoch of the table the route came from.
    pub epoch: u64,
}

/// Redirect counters of a [`Router`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouterStats {
    /// `MOVED` redirects followed (each patched the table).
    pub moved: u64,
    /// `ASK` redirects followed.
    pub asked: u64,
    /// Tables installed with [`Router::install`].
    pub refreshes: u64,
}

/// Client-side routing: key → partition with a [`Partitioner`], partition →
/// node with a [`RoutingTable`] copy, following `MOVED` (patch the table) and
/// `ASK` (one-shot) redirects up to a bound.
///
/// ```
/// use kuai_shard::{Redirect, Router, RoutingTable, SlotMap, SlotPartitioner};
/// let table = RoutingTable::from_slot_map(1, &SlotMap::balanced(["a", "b"])?);
/// let router = Router::new(SlotPartitioner, table);
/// let route = router.route("foo");
/// assert_eq!(route.partition, 12182);
/// assert_eq!(&*route.node, "b");
/// // The cluster moved the slot: the router learns it from the redirect.
/// let answer = router.execute("foo", 4, |r| {
///     if &*r.node == "b" {
///         Ok(Err(Redirect::Moved { partition: r.partition, node: "a".into(), epoch: 2 }))
///     } else {
///         Ok::<_, kuai_shard::ShardError>(Ok(r.node.to_string()))
///     }
/// })?;
/// assert_eq!(answer, "a");
/// assert_eq!(&*router.route("foo").node, "a");
/// # Ok::<(), kuai_shard::ShardError>(())
/// ```
#[derive(Debug)]
pub struct Router<P> {
    partitioner: P,
    table: RwLock<RoutingTable>,
    moved: AtomicU64,
    asked: AtomicU64,
    refreshes: AtomicU64,
}

impl<P> Router<P> {
    /// A router over `partitioner` starting from `table`.
    pub fn new(partitioner: P, table: RoutingTable) -> Self {
        Router {
            partitioner,
            table: RwLock::new(table),
            moved: AtomicU64::new(0),
            asked: AtomicU64::new(0),
            refreshes: AtomicU64::new(0),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, RoutingTable> {
        // A panic while holding the lock cannot leave the table half-written
        // (every write is a single assignment), so poisoning is ignored.
        self.table.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, RoutingTable> {
        self.table.write().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of the current table.
    pub fn table(&self) -> RoutingTable {
        self.read().clone()
    }

    /// The epoch of the current table.
    pub fn epoch(&self) -> u64 {
        self.read().epoch
    }

    /// Redirect counters.
    pub fn stats(&self) -> RouterStats {
        RouterStats {
            moved: self.moved.load(Ordering::Relaxed),
            asked: self.asked.load(Ordering::Relaxed),
            refreshes: self.refreshes.load(Ordering::Relaxed),
        }
    }

    /// Replaces the table with a fresh one (e.g. from `CLUSTER SLOTS`).
    /// A table with an older epoch is refused; an equal epoch is accepted
    /// (sources like Redis do not version their answers).
    pub fn install(&self, table: RoutingTable) -> ShardResult<()> {
        let mut cur = self.write();
        if table.epoch < cur.epoch {
            return Err(ShardError::StaleTable {
                offered: table.epoch,
                current: cur.epoch,
            });
        }
        *cur = table;
        self.refreshes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// The route of partition `partition` in the current table.
    pub fn route_partition(&self, partition: PartitionId) -> Route {
        let t = self.read();
        Route {
            partition,
            node: t
                .owner_arc(partition)
                .cloned()
                .unwrap_or_else(|| Arc::from("")),
            asking: false,
            epoch: t.epoch,
        }
    }

    /// The route of `key`.
    pub fn route<K: ?Sized>(&self, key: &K) -> Route
    where
        P: Partitioner<K>,
    {
        self.route_partition(self.partitioner.partition(key))
    }

    /// Learns from a redirect and returns where to retry. `MOVED` patches the
    /// table (and raises its epoch to the cluster's, if the cluster sent one);
    /// `ASK` does not touch it.
    pub fn follow(&self, redirect: &Redirect) -> Route {
        match redirect {
            Redirect::Moved {
                partition,
                node,
                epoch,
            } => {
                self.moved.fetch_add(1, Ordering::Relaxed);
                let mut t = self.write();
                let _ = t.set_owner(*partition, node);
                t.epoch = t.epoch.max(*epoch);
                Route {
                    partition: *partition,
                    node: Arc::from(node.as_str()),
                    asking: false,
                    epoch: t.epoch,
                }
            }
            Redirect::Ask { partition, node } => {
                self.asked.fetch_add(1, Ordering::Relaxed);
                Route {
                    partition: *partition,
                    node: Arc::from(node.as_str()),
                    asking: true,
                    epoch: self.epoch(),
                }
            }
        }
    }

    /// Runs `attempt` on the key's route, following up to `max_redirects`
    /// redirects. `attempt` returns `Ok(Ok(value))` when served,
    /// `Ok(Err(redirect))` when redirected, `Err(e)` on failure.
    pub fn execute<K, T, E, F>(&self, key: &K, max_redirects: u32, mut attempt: F) -> Result<T, E>
    where
        K: ?Sized,
        P: Partitioner<K>,
        E: From<ShardError>,
        F: FnMut(&Route) -> Result<Result<T, Redirect>, E>,
    {
        let mut route = self.route(key);
        for _ in 0..=max_redirects {
            match attempt(&route)? {
                Ok(v) => return Ok(v),
                Err(r) => route = self.follow(&r),
            }
        }
        Err(ShardError::TooManyRedirects(max_redirects).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_rejects_garbage() {
        assert_eq!(Redirect::parse_redis("MOVED x 1:2"), None);
        assert_eq!(Redirect::parse_redis("MOVED 99999 1:2"), None);
        assert_eq!(Redirect::parse_redis("MOVED 1"), None);
        assert_eq!(Redirect::parse_redis("MOVED 1 a b"), None);
        assert!(matches!(
            Redirect::parse_redis("-ASK 7 h:1"),
            Some(Redirect::Ask { partition: 7, .. })
        ));
    }

    #[test]
    fn install_refuses_older_tables() {
        let m = SlotMap::balanced(["a"]).unwrap();
        let r = Router::new(crate::SlotPartitioner, RoutingTable::from_slot_map(5, &m));
        assert!(matches!(
            r.install(RoutingTable::from_slot_map(4, &m)),
            Err(ShardError::StaleTable {
                offered: 4,
                current: 5
            })
        ));
        assert!(r.install(RoutingTable::from_slot_map(6, &m)).is_ok());
        assert_eq!(r.epoch(), 6);
    }

    #[test]
    fn redirect_loops_are_bounded() {
        let m = SlotMap::balanced(["a", "b"]).unwrap();
        let r = Router::new(crate::SlotPartitioner, RoutingTable::from_slot_map(1, &m));
        let res: Result<(), ShardError> = r.execute("k", 3, |route| {
            Ok(Err(Redirect::Ask {
                partition: route.partition,
                node: "a".into(),
            }))
        });
        assert_eq!(res, Err(ShardError::TooManyRedirects(3)));
        assert_eq!(r.stats().asked, 4);
    }
}
