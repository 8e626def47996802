//! Rendezvous (highest random weight) hashing.

use std::hash::Hash;

use kuai_core::{PartitionId, Partitioner};

use crate::error::{ShardError, ShardResult};
use crate::key_hash::{hash_key, hash_key_seeded, mix64};
use crate::node::{Node, validate_nodes};

/// Rendezvous / HRW hashing (Thaler & Ravishankar): every node scores the key
/// and the highest score wins. No table, perfect minimal movement (only the
/// removed node's keys move, only keys the new node wins move to it), and a
/// natural ranked fallback list ([`ranked`](Self::ranked)) for replicas.
/// Lookup is O(n), so it suits tens to a few hundreds of nodes. Weighted
/// nodes use the logarithmic method (`-w / ln(u)`), which keeps movement
/// minimal under reweighting.
///
/// ```
/// use kuai_core::Partitioner;
/// use kuai_shard::Rendezvous;
/// let hrw = Rendezvous::new(["a", "b", "c"])?;
/// let first = hrw.partition("k");
/// assert_eq!(hrw.ranked("k")[0], first);
/// # Ok::<(), kuai_shard::ShardError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Rendezvous {
    nodes: Vec<Node>,
    seeds: Vec<u64>,
    weights: Option<Vec<f64>>,
}

impl Rendezvous {
    /// A rendezvous set over `nodes` (empty, duplicate or zero-weight sets are errors).
    pub fn new<I, N>(nodes: I) -> ShardResult<Self>
    where
        I: IntoIterator<Item = N>,
        N: Into<Node>,
    {
        let nodes = validate_nodes(nodes, "rendezvous needs at least one node")?;
        let seeds = nodes
            .iter()
            .map(|n| hash_key_seeded(n.id(), 0x0068_7277))
            .collect();
        let uniform = nodes.iter().all(|n| n.weight() == nodes[0].weight());
        let weights = (!uniform).then(|| nodes.iter().map(|n| f64::from(n.weight())).collect());
        Ok(Rendezvous {
            nodes,
            seeds,
            weights,
        })
    }

    /// The nodes, in the order given.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// A new set with `node` added.
    pub fn with_node(&self, node: impl Into<Node>) -> ShardResult<Self> {
        let mut nodes = self.nodes.clone();
        nodes.push(node.into());
        Rendezvous::new(nodes)
    }

    /// A new set without node `id`.
    pub fn without_node(&self, id: &str) -> ShardResult<Self> {
        if !self.nodes.iter().any(|n| n.id() == id) {
            return Err(ShardError::UnknownNode(id.to_string()));
        }
        Rendezvous::new(self.nodes.iter().filter(|n| n.id() != id).cloned())
    }

    #[inline]
    fn score(&self, i: usize, h: u64) -> f64 {
        let x = mix64(h ^ self.seeds[i]);
        match &self.weights {
            None => x as f64,
            Some(w) => {
                // u in (0, 1): 53 random bits, never 0 or 1.
                let u = ((x >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
                -w[i] / u.ln()
            }
        }
    }

    /// The winner for an already hashed key.
    #[inline]
    pub fn partition_hash(&self, h: u64) -> PartitionId {
        if self.weights.is_none() {
            let mut best = 0usize;
            let mut best_score = 0u64;
            for (i, &s) in self.seeds.iter().enumerate() {
                let x = mix64(h ^ s);
                if x > best_score || i == 0 {
                    best = i;
                    best_score = x;
                }
            }
            return best as u32;
        }
        let mut best = 0usize;
        let mut best_score = f64::MIN;
        for i in 0..self.nodes.len() {
            let s = self.score(i, h);
            if s > best_score {
                best = i;
                best_score = s;
            }
        }
        best as u32
    }

    /// All nodes ranked best-first for `key` (replica placement, failover order).
    pub fn ranked<K: Hash + ?Sized>(&self, key: &K) -> Vec<PartitionId> {
        let h = hash_key(key);
        let mut all: Vec<(f64, u32)> = (0..self.nodes.len())
            .map(|i| (self.score(i, h), i as u32))
            .collect();
        all.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        all.into_iter().map(|(_, i)| i).collect()
    }
}

impl<K: Hash + ?Sized> Partitioner<K> for Rendezvous {
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
    fn removal_moves_only_the_removed_nodes_keys() {
        let a = Rendezvous::new(["a", "b", "c", "d"]).unwrap();
        let b = a.without_node("c").unwrap();
        for k in 0..5000u64 {
            let before = a.nodes()[a.partition(&k) as usize].id();
            let after = b.nodes()[b.partition(&k) as usize].id();
            if before != "c" {
                assert_eq!(before, after);
            }
        }
    }

    #[test]
    fn weighted_shares() {
        let r = Rendezvous::new([Node::weighted("a", 1), Node::weighted("b", 3)]).unwrap();
        let b = (0..40_000u64).filter(|k| r.partition(k) == 1).count();
        assert!((28_000..32_000).contains(&b), "{b}");
        assert_eq!(r.ranked(&5u64)[0], r.partition(&5u64));
    }
}
