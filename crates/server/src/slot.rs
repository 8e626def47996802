//! Redis Cluster's 16384 hash slots, from `kuai-shard` (`CLUSTER KEYSLOT`).

/// Number of hash slots.
pub const SLOTS: u16 = kuai::shard::SLOT_COUNT;

/// The slot of `key`, honouring `{tag}` like Redis Cluster (kuai-shard's
/// CRC16 implementation).
///
/// ```
/// use kuai_server::slot::key_slot;
/// assert_eq!(key_slot(b"foo"), 12182);
/// assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
/// ```
#[inline]
pub fn key_slot(key: &[u8]) -> u16 {
    kuai::shard::key_slot(key)
}
