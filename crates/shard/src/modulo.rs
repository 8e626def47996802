//! Modulo hashing: `hash(key) % n`.

use std::hash::Hash;

use kuai_core::{PartitionId, Partitioner};

use crate::error::{ShardError, ShardResult};
use crate::key_hash::hash_key;

/// `hash(key) % n`: perfectly even and the fastest lookup, but changing `n`
/// moves almost every key (`1 - 1/(n+1)` of them when adding one node). Use
/// it when the partition count never changes (e.g. lock striping, a fixed
/// number of table shards); use [`JumpHash`](crate::JumpHash) when it can grow.
///
/// ```
/// use kuai_core::Partitioner;
/// use kuai_shard::ModuloHash;
/// let p = ModuloHash::new(8)?;
/// assert!(p.partition(&"user:42") < 8);
/// # Ok::<(), kuai_shard::ShardError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModuloHash {
    n: u32,
}

impl ModuloHash {
    /// `n` partitions; `n == 0` is an error.
    pub fn new(n: u32) -> ShardResult<Self> {
        if n == 0 {
            return Err(ShardError::EmptyNodeSet(
                "modulo hash needs at least one partition",
            ));
        }
        Ok(ModuloHash { n })
    }

    /// The partition for an already hashed key.
    #[inline]
    pub fn partition_hash(&self, hash: u64) -> PartitionId {
        // The remainder is < n, which is a u32.
        (hash % u64::from(self.n)) as u32
    }
}

impl<K: Hash + ?Sized> Partitioner<K> for ModuloHash {
    #[inline]
    fn partition(&self, key: &K) -> PartitionId {
        self.partition_hash(hash_key(key))
    }

    fn partition_count(&self) -> u32 {
        self.n
    }
}
