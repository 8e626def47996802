//! `kuai-shard`: partitioning, consistent hashing, rebalancing, routing and
//! scatter-gather.
#![forbid(unsafe_code)]

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
pub use index::{Applier, GlobalIndex, IndexRead, LocalIndex};
pub use jump::{JumpHash, jump_consistent_hash};
pub use key_hash::{KeyHasher, hash_key, hash_key_seeded, mix64};
pub use kuai_core::Error;
pub use maglev::Maglev;
pub use merge::{Aggregate, Page, merge_sorted_by};
pub use modulo::ModuloHash;
pub use node::Node;
pub use range::{DynamicRanges, RangeChange, RangePartitioner};
pub use rebalance::{Assignment, Migration, Move, MovePlan, WriteTargets};
#[cfg(feature = "redis")]
pub use redis_cluster::{RedisCluster, connect_node, parse_cluster_shards, parse_cluster_slots};
pub use rendezvous::Rendezvous;
pub use ring::{DEFAULT_VNODES, HashRing};
pub use router::{Redirect, Route, Router, RouterStats, RoutingTable};
pub use scatter::{FailurePolicy, Gathered, ScatterGather, ShardFailure};
pub use slots::{SLOT_COUNT, SlotMap, SlotPartitioner, crc16, hash_tag, key_slot};
pub use task::WorkerPool;
