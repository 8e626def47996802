//! Maglev consistent hashing (Eisenbud et al., NSDI 2016).

use std::hash::Hash;

use kuai_core::{PartitionId, Partitioner};

use crate::error::{ShardError, ShardResult};
use crate::key_hash::{hash_key, hash_key_seeded};
use crate::node::{Node, validate_nodes};

/// Maglev hashing: a lookup table of prime size `M` (≫ n) filled by each node
/// walking its own permutation of the table in turn. Lookups are one hash and
/// one array read; every node owns `M/n` entries ±1 (near-perfect balance);
/// adding or removing a node moves more than the ideal `1/n` — about 1.55×
/// with the default table at 100 nodes, falling to ~1.1× when the table has
/// ~10⁴ entries per node ([`with_table_size`](Self::with_table_size); see
/// `examples/maglev_disruption.rs`). Weights give a node `weight` turns per round.
///
/// ```
/// use kuai_core::Partitioner;
/// use kuai_shard::Maglev;
/// let m = Maglev::new(["a", "b", "c"])?;
/// assert_eq!(m.table_size(), 65_537);
/// assert!(m.partition(&"key") < 3);
/// # Ok::<(), kuai_shard::ShardError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Maglev {
    nodes: Vec<Node>,
    table: Vec<u32>,
}

/// The smallest prime `>= n`.
fn next_prime(mut n: u64) -> u64 {
    fn is_prime(n: u64) -> bool {
        if n < 2 {
            return false;
        }
        let mut d = 2;
        while d * d <= n {
            if n % d == 0 {
                return false;
            }
            d += 1;
        }
        true
    }
    while !is_prime(n) {
        n += 1;
    }
    n
}

impl Maglev {
    /// A Maglev table of the default size: the smallest prime ≥ max(65 537, 100·n).
    pub fn new<I, N>(nodes: I) -> ShardResult<Self>
    where
        I: IntoIterator<Item = N>,
        N: Into<Node>,
    {
        Self::with_table_size(nodes, 0)
    }

    /// A Maglev table with at least `min_size` entries (rounded up to a
    /// prime, and to at least the number of total weight units). `0` picks
    /// the default.
    pub fn with_table_size<I, N>(nodes: I, min_size: u64) -> ShardResult<Self>
    where
        I: IntoIterator<Item = N>,
        N: Into<Node>,
    {
        let nodes = validate_nodes(nodes, "maglev needs at least one node")?;
        let n = nodes.len() as u64;
        let want = if min_size == 0 {
            (100 * n).max(65_537)
        } else {
            min_size
        };
        let total_weight: u64 = nodes.iter().map(|n| u64::from(n.weight())).sum();
        let want = want.max(total_weight).max(2);
        // Checked before searching for a prime, so huge sizes fail fast.
        if want > (1 << 26) - 1000 {
            return Err(ShardError::InvalidConfig(format!(
                "maglev table of {want} entries is too large (max 2^26)"
            )));
        }
        let m = next_prime(want);
        if m > 1 << 26 {
            return Err(ShardError::InvalidConfig(format!(
                "maglev table of {m} entries is too large (max 2^26)"
            )));
        }
        let table = populate(&nodes, m);
        Ok(Maglev { nodes, table })
    }

    /// The nodes, in the order given.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Entries in the lookup table (a prime).
    pub fn table_size(&self) -> usize {
        self.table.len()
    }

    /// A new table with `node` added.
    pub fn with_node(&self, node: impl Into<Node>) -> ShardResult<Self> {
        let mut nodes = self.nodes.clone();
        nodes.push(node.into());
        Self::with_table_size(nodes, self.table.len() as u64)
    }

    /// A new table without node `id`.
    pub fn without_node(&self, id: &str) -> ShardResult<Self> {
        if !self.nodes.iter().any(|n| n.id() == id) {
            return Err(ShardError::UnknownNode(id.to_string()));
        }
        let nodes: Vec<Node> = self
            .nodes
            .iter()
            .filter(|n| n.id() != id)
            .cloned()
            .collect();
        Self::with_table_size(nodes, self.table.len() as u64)
    }

    /// The owner of an already hashed key.
    #[inline]
    pub fn partition_hash(&self, h: u64) -> PartitionId {
        // Lemire's multiply-shift maps h uniformly onto 0..M without a division.
        let idx = ((u128::from(h) * self.table.len() as u128) >> 64) as usize;
        self.table[idx]
    }
}

fn populate(nodes: &[Node], m: u64) -> Vec<u32> {
    let n = nodes.len();
    let mut pos = Vec::with_capacity(n);
    let mut skip = Vec::with_capacity(n);
    for node in nodes {
        pos.push(hash_key_seeded(node.id(), 0x6d61_676c) % m);
        skip.push(hash_key_seeded(node.id(), 0x6576_7631) % (m - 1) + 1);
    }
    let mut table = vec![u32::MAX; m as usize];
    let mut filled = 0u64;
    'fill: loop {
        for i in 0..n {
            for _ in 0..nodes[i].weight() {
                // Walk node i's permutation to its next free entry. Because m is
                // prime and skip < m, the walk visits every entry, so it ends.
                while table[pos[i] as usize] != u32::MAX {
                    pos[i] = (pos[i] + skip[i]) % m;
                }
                table[pos[i] as usize] = i as u32;
                pos[i] = (pos[i] + skip[i]) % m;
                filled += 1;
                if filled == m {
                    break 'fill;
                }
            }
        }
    }
    table
}

impl<K: Hash + ?Sized> Partitioner<K> for Maglev {
    #[inline]
    fn partition(&self, key: &K) -> PartitionId {
        self.partition_hash(hash_key(key))
    }

    fn partition_count(&self) -> u32 {
        self.nodes.len() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_balanced_within_one() {
        let m = Maglev::with_table_size((0..7).map(|i| format!("n{i}")), 1009).unwrap();
        let mut counts = [0usize; 7];
        for &o in &m.table {
            counts[o as usize] += 1;
        }
        let (min, max) = (counts.iter().min(), counts.iter().max());
        assert!(max.zip(min).is_some_and(|(a, b)| a - b <= 1), "{counts:?}");
    }

    #[test]
    fn weighted_entries() {
        let m = Maglev::with_table_size([Node::weighted("a", 1), Node::weighted("b", 3)], 1009)
            .unwrap();
        let b = m.table.iter().filter(|&&o| o == 1).count();
        assert!((750..=760).contains(&b), "{b}");
    }

    #[test]
    fn huge_tables_are_refused() {
        assert!(Maglev::with_table_size(["a"], u64::MAX).is_err());
        assert!(
            Maglev::new([Node::weighted("a", u32::MAX), Node::weighted("b", u32::MAX)]).is_err()
        );
    }

    #[test]
    fn primes() {
        assert_eq!(next_prime(65_537), 65_537);
        assert_eq!(next_prime(100_000), 100_003);
    }
}
