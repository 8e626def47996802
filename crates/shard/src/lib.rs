//! `kuai-shard`: partitioning, consistent hashing, rebalancing, routing and
//! scatter-gather.
#![forbid(unsafe_code)]

mod composite;
mod error;
mod jump;
mod key_hash;
mod maglev;
mod modulo;
mod node;
mod range;
mod rebalance;
mod rendezvous;
mod router;
mod ring;
mod slots;

pub use composite::Composite;
pub use error::{ShardError, ShardResult};
pub use jump::{JumpHash, jump_consistent_hash};
pub use key_hash::{KeyHasher, hash_key, hash_key_seeded, mix64};
pub use kuai_core::Error;
pub use maglev::Maglev;
pub use modulo::ModuloHash;
pub use node::Node;
pub use rebalance::{Assignment, Migration, Move, MovePlan, WriteTargets};
pub use range::{DynamicRanges, RangeChange, RangePartitioner};
pub use rendezvous::Rendezvous;
pub use router::{Redirect, Route, Router, RouterStats, RoutingTable};
pub use ring::{DEFAULT_VNODES, HashRing};
pub use slots::{SLOT_COUNT, SlotMap, SlotPartitioner, crc16, hash_tag, key_slot};
