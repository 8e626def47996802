//! Mapping keys to partitions.

use std::sync::Arc;

/// The index of a partition (a shard, a slot, a node), `0..partition_count()`.
pub type PartitionId = u32;

/// Maps a key to one of a fixed set of partitions.
///
/// `kuai-shard` implements it (modulo, jump, ring, rendezvous, Maglev, slots,
/// range, composite); the store routes sharded tables with it, the queue picks
/// a topic partition with it, the server maps keys to hash slots with it.
///
/// Implementations are deterministic: the same key and the same configuration
/// give the same partition in every process.
pub trait Partitioner<K: ?Sized>: Send + Sync {
    /// The partition that owns `key`; always `< partition_count()`.
    fn partition(&self, key: &K) -> PartitionId;

    /// How many partitions there are (at least one).
    fn partition_count(&self) -> u32;
}

macro_rules! forward_partitioner {
    ($($ptr:ty),*) => {$(
        impl<K: ?Sized, P: Partitioner<K> + ?Sized> Partitioner<K> for $ptr {
            #[inline]
            fn partition(&self, key: &K) -> PartitionId {
                (**self).partition(key)
            }
            #[inline]
            fn partition_count(&self) -> u32 {
                (**self).partition_count()
            }
        }
    )*};
}

forward_partitioner!(&P, Box<P>, Arc<P>);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    struct Modulo(u32);

    impl Partitioner<u64> for Modulo {
        fn partition(&self, key: &u64) -> PartitionId {
            // u64 % u32 always fits in u32.
            u32::try_from(key % u64::from(self.0)).unwrap_or(0)
        }
        fn partition_count(&self) -> u32 {
            self.0
        }
    }

    proptest! {
        #[test]
        fn partition_is_in_range_and_stable(n in 1u32..1000, key: u64) {
            let p: Box<dyn Partitioner<u64>> = Box::new(Modulo(n));
            let a = p.partition(&key);
            prop_assert!(a < p.partition_count());
            prop_assert_eq!(a, Arc::new(Modulo(n)).partition(&key));
        }
    }
}
