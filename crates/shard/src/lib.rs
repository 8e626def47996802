//! `kuai-shard`: partitioning, consistent hashing, rebalancing, routing and
//! scatter-gather — how a kuai service outgrows one machine.
//!
//! Every placement scheme implements [`kuai_core::Partitioner`], so the store,
//! the queue and the server can swap them freely. Around them sit the pieces a
//! sharded system needs: a planner that moves the fewest partitions when nodes
//! change, a router whose table is versioned so stale clients are redirected
//! (never served another shard's data), scatter-gather with correct deep
//! paging, secondary indexes, and task sharding.
//!
//! | need | use |
//! |---|---|
//! | fixed partition count, fastest | [`ModuloHash`] |
//! | buckets that grow/shrink at the end, no memory, ideal movement | [`JumpHash`] |
//! | arbitrary nodes joining/leaving, weights | [`HashRing`] (vnodes), [`Rendezvous`] (HRW, replica ranking) |
//! | one array read per lookup, near-perfect balance | [`Maglev`] |
//! | Redis Cluster compatibility, hash tags | [`SlotPartitioner`], [`SlotMap`], [`key_slot`] |
//! | ordered keys, range scans, split/merge | [`RangePartitioner`], [`DynamicRanges`] |
//! | `(user, time)` keys | [`Composite`] |
//! | moving partitions when nodes change | [`Assignment`], [`MovePlan`], [`Migration`] |
//! | client routing with `MOVED`/`ASK` | [`Router`], [`RoutingTable`], [`Redirect`] |
//! | querying every shard | [`ScatterGather`], [`Page`], [`Aggregate`] |
//! | secondary indexes | [`LocalIndex`] (read-your-writes, scatter), [`GlobalIndex`] (one partition, bounded lag) |
//! | splitting a job | [`WorkerPool::map_reduce`], [`WorkerPool::merge_sort`] |
//!
//! Constructors validate their input: an empty node set, duplicate node ids,
//! zero weights, unsorted/overlapping/gapped ranges or a split point outside
//! its range are [`ShardError`]s, never panics; a built partitioner never
//! fails a lookup. Keys are hashed with the fixed-seed [`KeyHasher`], so
//! placement is identical in every process and on every platform.
//!
//! # Example
//!
//! ```
//! use kuai_core::Partitioner;
//! use kuai_shard::{Assignment, JumpHash, Node, Page, Router, RoutingTable, SlotMap, SlotPartitioner};
//!
//! // Jump hash: grow from 10 to 11 buckets, ~1/11 of keys move.
//! let (a, b) = (JumpHash::new(10)?, JumpHash::new(11)?);
//! let moved = (0..1000u64).filter(|k| a.partition(k) != b.partition(k)).count();
//! assert!(moved < 150);
//!
//! // Redis-compatible slots: hash tags keep related keys together.
//! let slots = SlotMap::balanced(["n1", "n2", "n3"])?;
//! assert_eq!(slots.partition("{user7}:cart"), slots.partition("{user7}:orders"));
//!
//! // Adding a node to 16384 slots moves exactly its share, all to it.
//! let plan = Assignment::new(16_384, ["n1", "n2", "n3"])?.plan_add(Node::new("n4"))?;
//! assert_eq!(plan.moves().len(), 4096);
//!
//! // A router over the slot table.
//! let router = Router::new(SlotPartitioner, RoutingTable::from_slot_map(1, &slots));
//! assert_eq!(router.route("foo").partition, 12182);
//!
//! // Deep paging across shards: push LIMIT offset+limit down, merge.
//! let page = Page::new(2, 2);
//! assert_eq!(page.merge(vec![vec![1, 5, 9], vec![2, 3, 4]]), vec![3, 4]);
//! # Ok::<(), kuai_shard::ShardError>(())
//! ```
//!
//! # Feature flags
//!
//! - `redis` (off by default): `RedisCluster`, a Redis Cluster client
//!   whose slot routing is this crate's (slot table from `CLUSTER SLOTS` /
//!   `CLUSTER SHARDS`, `MOVED` patches the table, `ASK` is followed with
//!   `ASKING`); the `redis` crate is only the wire client. Its integration
//!   test starts its own three-node cluster with `redis-server`.
//!
//! The facade re-exports this crate as `kuai::shard`. [`Error`] is
//! `kuai_core::Error`, which [`ShardError`] converts into.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod composite;
mod error;
mod index;
mod jump;
mod key_hash;
mod maglev;
mod merge;
mod modulo;
mod node;
mod range;
mod rebalance;
#[cfg(feature = "redis")]
mod redis_cluster;
mod rendezvous;
mod ring;
mod router;
mod scatter;
mod slots;
mod task;

pub use composite::Composite;
pub use error::{ShardError, ShardResult};
pub use index::{Applier, GlobalIndex, GlobalIndexBuilder, IndexRead, LocalIndex, MAX_PENDING};
pub use jump::{JumpHash, jump_consistent_hash, jump_consistent_hash_reference};
pub use key_hash::{KeyHasher, hash_key, hash_key_seeded, mix64};
pub use kuai_core::Error;
pub use maglev::Maglev;
pub use merge::{Aggregate, Page, merge_sorted_by};
pub use modulo::ModuloHash;
pub use node::Node;
pub use range::{DynamicRanges, RangeChange, RangePartitioner};
pub use rebalance::{Assignment, MAX_PARTITIONS, Migration, Move, MovePlan, WriteTargets};
#[cfg(feature = "redis")]
pub use redis_cluster::{RedisCluster, connect_node, parse_cluster_shards, parse_cluster_slots};
pub use rendezvous::Rendezvous;
pub use ring::{DEFAULT_VNODES, HashRing};
pub use router::{Redirect, Route, Router, RouterStats, RoutingTable};
pub use scatter::{FailurePolicy, Gathered, ScatterGather, ShardFailure};
pub use slots::{SLOT_COUNT, SlotMap, SlotPartitioner, crc16, hash_tag, key_slot};
pub use task::WorkerPool;
