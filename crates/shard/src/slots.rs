//! Redis Cluster's 16384 hash slots: CRC16 (XMODEM), `{hash tags}`, and a
//! slot → node table.

use kuai_core::{PartitionId, Partitioner};

use crate::error::{ShardError, ShardResult};
use crate::node::{Node, validate_nodes};

/// The number of hash slots, as in Redis Cluster.
pub const SLOT_COUNT: u16 = 16_384;

const fn crc16_tables() -> [[u16; 256]; 8] {
    let mut t = [[0u16; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        t[0][i] = crc;
        i += 1;
    }
    // t[k][a] = CRC of byte `a` followed by k zero bytes (slicing-by-8).
    let mut k = 1;
    while k < 8 {
        let mut a = 0;
        while a < 256 {
            let prev = t[k - 1][a];
            t[k][a] = (prev << 8) ^ t[0][(prev >> 8) as usize];
            a += 1;
        }
        k += 1;
    }
    t
}

static CRC16_TABLES: [[u16; 256]; 8] = crc16_tables();

/// CRC16-CCITT in the XMODEM variant (poly 0x1021, init 0, no reflection, no
/// final xor) — exactly the function Redis Cluster hashes keys with.
/// Eight bytes per step (slicing-by-8).
///
/// ```
/// assert_eq!(kuai_shard::crc16(b"123456789"), 0x31C3);
/// ```
#[inline]
pub fn crc16(bytes: &[u8]) -> u16 {
    let t = &CRC16_TABLES;
    let mut crc = 0u16;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let hi = ((crc >> 8) as u8) ^ c[0];
        let lo = (crc as u8) ^ c[1];
        crc = t[7][usize::from(hi)]
            ^ t[6][usize::from(lo)]
            ^ t[5][usize::from(c[2])]
            ^ t[4][usize::from(c[3])]
            ^ t[3][usize::from(c[4])]
            ^ t[2][usize::from(c[5])]
            ^ t[1][usize::from(c[6])]
            ^ t[0][usize::from(c[7])];
    }
    for &b in chunks.remainder() {
        crc = (crc << 8) ^ t[0][usize::from(((crc >> 8) as u8) ^ b)];
    }
    crc
}

/// The part of `key` that is hashed: the content of the first `{...}` if it
/// is non-empty, else the whole key (Redis Cluster's hash-tag rule).
///
/// ```
/// use kuai_shard::hash_tag;
/// assert_eq!(hash_tag(b"{user1000}.following"), b"user1000");
/// assert_eq!(hash_tag(b"foo{}{bar}"), b"foo{}{bar}"); // empty first tag: whole key
/// assert_eq!(hash_tag(b"foo{{bar}}zap"), b"{bar");
/// ```
#[inline]
pub fn hash_tag(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|&b| b == b'{') {
        let rest = &key[open + 1..];
        if let Some(close) = rest.iter().position(|&b| b == b'}') {
            if close > 0 {
                return &rest[..close];
            }
        }
    }
    key
}

/// The hash slot of `key`: `crc16(hash_tag(key)) mod 16384`, identical to
/// `CLUSTER KEYSLOT`.
///
/// ```
/// assert_eq!(kuai_shard::key_slot(b"foo"), 12182);
/// assert_eq!(kuai_shard::key_slot(b"{user1000}.following"), kuai_shard::key_slot(b"{user1000}.followers"));
/// ```
#[inline]
pub fn key_slot(key: &[u8]) -> u16 {
    crc16(hash_tag(key)) & (SLOT_COUNT - 1)
}

/// Key → slot as a [`Partitioner`] with 16384 partitions.
///
/// ```
/// use kuai_core::Partitioner;
/// use kuai_shard::SlotPartitioner;
/// assert_eq!(SlotPartitioner.partition("foo"), 12182);
/// assert_eq!(Partitioner::<str>::partition_count(&SlotPartitioner), 16384);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SlotPartitioner;

macro_rules! slot_partitioner_for {
    ($($t:ty),* $(,)?) => {$(
        impl Partitioner<$t> for SlotPartitioner {
            #[inline]
            fn partition(&self, key: &$t) -> PartitionId {
                let bytes: &[u8] = key.as_ref();
                u32::from(key_slot(bytes))
            }
            fn partition_count(&self) -> u32 {
                u32::from(SLOT_COUNT)
            }
        }
    )*};
}

slot_partitioner_for!([u8], str, String, Vec<u8>);

/// Which node owns each of the 16384 slots, like a Redis Cluster's slot map.
///
/// As a [`Partitioner`] it maps a key straight to its owner's index in
/// [`nodes`](Self::nodes).
///
/// ```
/// use kuai_core::Partitioner;
/// use kuai_shard::SlotMap;
/// let map = SlotMap::balanced(["a", "b", "c"])?;
/// assert_eq!(map.owner_of_slot(0), Some(0));
/// assert_eq!(map.owner_of_slot(16383), Some(2));
/// let owner = map.partition("{user1}:cart");
/// assert_eq!(owner, map.partition("{user1}:orders"));
/// # Ok::<(), kuai_shard::ShardError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotMap {
    nodes: Vec<Node>,
    owners: Vec<u32>,
}

impl SlotMap {
    /// Splits the slots into contiguous, near-equal ranges, one per node, in
    /// order (what `redis-cli --cluster create` does). Weights are ignored here;
    /// use [`Assignment`](crate::Assignment) for weighted placement.
    pub fn balanced<I, N>(nodes: I) -> ShardResult<Self>
    where
        I: IntoIterator<Item = N>,
        N: Into<Node>,
    {
        let nodes = validate_nodes(nodes, "slot map needs at least one node")?;
        let n = nodes.len() as u64;
        if n > u64::from(SLOT_COUNT) {
            return Err(ShardError::InvalidSlots(format!(
                "{n} nodes but only {SLOT_COUNT} slots"
            )));
        }
        let owners = (0..u64::from(SLOT_COUNT))
            .map(|s| (s * n / u64::from(SLOT_COUNT)) as u32)
            .collect();
        Ok(SlotMap { nodes, owners })
    }

    /// A slot map from `(first_slot, last_slot_inclusive, node_index)` ranges,
    /// which must cover every slot exactly once.
    pub fn from_ranges<I, N>(nodes: I, ranges: &[(u16, u16, u32)]) -> ShardResult<Self>
    where
        I: IntoIterator<Item = N>,
        N: Into<Node>,
    {
        let nodes = validate_nodes(nodes, "slot map needs at least one node")?;
        let mut owners = vec![u32::MAX; usize::from(SLOT_COUNT)];
        for &(start, end, node) in ranges {
            if start > end || end >= SLOT_COUNT {
                return Err(ShardError::InvalidSlots(format!(
                    "bad slot range {start}-{end}"
                )));
            }
            if node as usize >= nodes.len() {
                return Err(ShardError::OutOfBounds {
                    index: node as usize,
                    len: nodes.len(),
                });
            }
            for s in start..=end {
                let o = &mut owners[usize::from(s)];
                if *o != u32::MAX {
                    return Err(ShardError::InvalidSlots(format!("slot {s} assigned twice")));
                }
                *o = node;
            }
        }
        if let Some(s) = owners.iter().position(|&o| o == u32::MAX) {
            return Err(ShardError::InvalidSlots(format!("slot {s} has no owner")));
        }
        Ok(SlotMap { nodes, owners })
    }

    /// The nodes (owner indices refer to this slice).
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The owner index of `slot`, or `None` past 16383.
    #[inline]
    pub fn owner_of_slot(&self, slot: u16) -> Option<u32> {
        self.owners.get(usize::from(slot)).copied()
    }

    /// The owning node of `key`.
    #[inline]
    pub fn node_for_key(&self, key: &[u8]) -> &Node {
        &self.nodes[self.owners[usize::from(key_slot(key))] as usize]
    }

    /// Every slot's owner index, indexed by slot.
    pub fn owners(&self) -> &[u32] {
        &self.owners
    }

    /// The contiguous `(first, last, owner)` runs of the map.
    pub fn ranges(&self) -> Vec<(u16, u16, u32)> {
        let mut out: Vec<(u16, u16, u32)> = Vec::new();
        for (s, &o) in self.owners.iter().enumerate() {
            let s = s as u16;
            match out.last_mut() {
                Some(last) if last.2 == o && last.1 + 1 == s => last.1 = s,
                _ => out.push((s, s, o)),
            }
        }
        out
    }
}

macro_rules! slot_map_partitioner_for {
    ($($t:ty),* $(,)?) => {$(
        impl Partitioner<$t> for SlotMap {
            #[inline]
            fn partition(&self, key: &$t) -> PartitionId {
                let bytes: &[u8] = key.as_ref();
                self.owners[usize::from(key_slot(bytes))]
            }
            fn partition_count(&self) -> u32 {
                self.nodes.len() as u32
            }
        }
    )*};
}

slot_map_partitioner_for!([u8], str, String, Vec<u8>);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_documented_values() {
        // From the Redis Cluster specification and `CLUSTER KEYSLOT` examples.
        assert_eq!(crc16(b"123456789"), 0x31c3);
        assert_eq!(key_slot(b"somekey"), 11058);
        assert_eq!(key_slot(b"foo{hash_tag}"), key_slot(b"hash_tag"));
        assert_eq!(key_slot(b"{}"), crc16(b"{}") & 16383);
        assert_eq!(key_slot(b""), 0);
        assert_eq!(hash_tag(b"{user1000}.following"), b"user1000");
        assert_eq!(hash_tag(b"foo{bar}{zap}"), b"bar");
        assert_eq!(hash_tag(b"{"), b"{");
        assert_eq!(hash_tag(b"}{"), b"}{");
        assert_eq!(hash_tag(b"x{}y{z}"), b"x{}y{z}");
    }

    #[test]
    fn sliced_crc_matches_bitwise() {
        fn bitwise(bytes: &[u8]) -> u16 {
            let mut crc = 0u16;
            for &b in bytes {
                crc ^= u16::from(b) << 8;
                for _ in 0..8 {
                    crc = if crc & 0x8000 != 0 {
                        (crc << 1) ^ 0x1021
                    } else {
                        crc << 1
                    };
                }
            }
            crc
        }
        let data: Vec<u8> = (0..300u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for len in 0..data.len() {
            assert_eq!(crc16(&data[..len]), bitwise(&data[..len]), "len {len}");
        }
    }

    #[test]
    fn from_ranges_rejects_gaps_and_overlaps() {
        assert!(SlotMap::from_ranges(["a", "b"], &[(0, 8191, 0), (8192, 16383, 1)]).is_ok());
        assert!(matches!(
            SlotMap::from_ranges(["a", "b"], &[(0, 8191, 0), (8191, 16383, 1)]),
            Err(ShardError::InvalidSlots(_))
        ));
        assert!(matches!(
            SlotMap::from_ranges(["a", "b"], &[(0, 8000, 0), (8192, 16383, 1)]),
            Err(ShardError::InvalidSlots(_))
        ));
        assert!(matches!(
            SlotMap::from_ranges(["a"], &[(0, 16383, 3)]),
            Err(ShardError::OutOfBounds { .. })
        ));
    }

    #[test]
    fn balanced_ranges_round_trip() {
        let m = SlotMap::balanced(["a", "b", "c"]).unwrap();
        let r = m.ranges();
        assert_eq!(r.len(), 3);
        let again = SlotMap::from_ranges(["a", "b", "c"], &r).unwrap();
        assert_eq!(m, again);
    }
}
