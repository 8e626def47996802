//! Fixed partitions over nodes, minimal move plans, and live migration.

use std::collections::HashMap;

use kuai_core::PartitionId;

use crate::error::{ShardError, ShardResult};
use crate::node::{Node, check_nodes};

/// The most partitions an [`Assignment`] accepts (16 M).
pub const MAX_PARTITIONS: u32 = 1 << 24;

/// Which node owns each of a fixed number of partitions ("fixed partitions"
/// rebalancing: create many more partitions than nodes — e.g. Redis's 16384
/// slots — and move whole partitions when nodes come and go).
///
/// Each node's share is proportional to its weight (largest-remainder
/// rounding). Plans move the fewest partitions that reach the new shares.
///
/// ```
/// use kuai_shard::{Assignment, Node};
/// let a = Assignment::new(1024, ["a", "b", "c"])?;
/// let plan = a.plan_add(Node::new("d"))?;
/// assert_eq!(plan.moves().len(), 256);          // exactly the new node's share
/// assert!(plan.moves().iter().all(|m| m.to == "d"));
/// let b = plan.target();
/// assert_eq!(b.counts(), vec![256, 256, 256, 256]);
/// # Ok::<(), kuai_shard::ShardError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    nodes: Vec<Node>,
    owners: Vec<u32>,
}

/// One partition changing owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    /// The partition that moves.
    pub partition: PartitionId,
    /// The current owner's id.
    pub from: String,
    /// The new owner's id.
    pub to: String,
}

/// The moves that take one [`Assignment`] to another, and the result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MovePlan {
    moves: Vec<Move>,
    target: Assignment,
}

impl MovePlan {
    /// The moves, in partition order.
    pub fn moves(&self) -> &[Move] {
        &self.moves
    }

    /// The assignment once every move is done.
    pub fn target(&self) -> &Assignment {
        &self.target
    }

    /// Whether nothing moves.
    pub fn is_empty(&self) -> bool {
        self.moves.is_empty()
    }
}

/// Per-node quotas of `partitions` by weight: each node gets the floor of its
/// exact share, and the leftover units go first to nodes that already hold
/// more than their floor (each such unit is one partition that need not
/// move), then to the most underloaded nodes. Every quota is within one of
/// the exact share, and the plan built on them moves the fewest partitions.
fn quotas(partitions: u32, nodes: &[Node], current: &[u64]) -> Vec<u64> {
    let total: u64 = nodes.iter().map(|n| u64::from(n.weight())).sum();
    let p = u64::from(partitions);
    let mut q: Vec<u64> = nodes
        .iter()
        .map(|n| p * u64::from(n.weight()) / total)
        .collect();
    let mut left = p - q.iter().sum::<u64>();
    let mut order: Vec<usize> = (0..nodes.len()).collect();
    order.sort_by_key(|&i| {
        let surplus = current[i] > q[i];
        let priority: i128 = if surplus {
            i128::from(current[i] - q[i])
        } else {
            // Exact share minus current holding, scaled by `total`.
            i128::from(p * u64::from(nodes[i].weight()))
                - i128::from(current[i]) * i128::from(total)
        };
        (std::cmp::Reverse(surplus), std::cmp::Reverse(priority), i)
    });
    for &i in &order {
        if left == 0 {
            break;
        }
        q[i] += 1;
        left -= 1;
    }
    q
}

impl Assignment {
    /// `partitions` partitions spread over `nodes` by weight, in contiguous
    /// blocks (node 0 first).
    pub fn new<I, N>(partitions: u32, nodes: I) -> ShardResult<Self>
    where
        I: IntoIterator<Item = N>,
        N: Into<Node>,
    {
        let nodes: Vec<Node> = nodes.into_iter().map(Into::into).collect();
        check_nodes(&nodes, "assignment needs at least one node")?;
        if partitions == 0 {
            return Err(ShardError::EmptyNodeSet(
                "assignment needs at least one partition",
            ));
        }
        let q = quotas(partitions, &nodes, &vec![0; nodes.len()]);
        let mut owners = Vec::with_capacity(partitions as usize);
        for (i, &count) in q.iter().enumerate() {
            owners.extend(std::iter::repeat_n(i as u32, count as usize));
        }
        Ok(Assignment { nodes, owners })
    }

    /// An assignment from an explicit owner per partition (indices into `nodes`).
    pub fn from_owners<I, N>(nodes: I, owners: Vec<u32>) -> ShardResult<Self>
    where
        I: IntoIterator<Item = N>,
        N: Into<Node>,
    {
        let nodes: Vec<Node> = nodes.into_iter().map(Into::into).collect();
        check_nodes(&nodes, "assignment needs at least one node")?;
        if owners.len() > MAX_PARTITIONS as usize {
            return Err(ShardError::InvalidConfig("too many partitions".into()));
        }
        if owners.is_empty() {
            return Err(ShardError::EmptyNodeSet(
                "assignment needs at least one partition",
            ));
        }
        if let Some(&bad) = owners.iter().find(|&&o| o as usize >= nodes.len()) {
            return Err(ShardError::OutOfBounds {
                index: bad as usize,
                len: nodes.len(),
            });
        }
        Ok(Assignment { nodes, owners })
    }

    /// The nodes.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Owner index per partition.
    pub fn owners(&self) -> &[u32] {
        &self.owners
    }

    /// How many partitions there are.
    pub fn partition_count(&self) -> u32 {
        self.owners.len() as u32
    }

    /// The owner of `partition`.
    #[inline]
    pub fn owner(&self, partition: PartitionId) -> Option<&Node> {
        self.owners
            .get(partition as usize)
            .map(|&o| &self.nodes[o as usize])
    }

    /// Partitions held by each node, in node order.
    pub fn counts(&self) -> Vec<u64> {
        let mut c = vec![0u64; self.nodes.len()];
        for &o in &self.owners {
            c[o as usize] += 1;
        }
        c
    }

    /// The minimal plan to move to the node set `new_nodes` (same partitions).
    /// Nodes that stay keep their index order; new nodes are appended.
    pub fn plan_to<I, N>(&self, new_nodes: I) -> ShardResult<MovePlan>
    where
        I: IntoIterator<Item = N>,
        N: Into<Node>,
    {
        let wanted: Vec<Node> = new_nodes.into_iter().map(Into::into).collect();
        check_nodes(&wanted, "cannot plan to an empty node set")?;
        // Keep the surviving nodes' relative order, then the new ones.
        let mut nodes: Vec<Node> = Vec::with_capacity(wanted.len());
        for old in &self.nodes {
            if let Some(n) = wanted.iter().find(|n| n.id() == old.id()) {
                nodes.push(n.clone());
            }
        }
        for n in &wanted {
            if !self.nodes.iter().any(|o| o.id() == n.id()) {
                nodes.push(n.clone());
            }
        }
        let index: HashMap<&str, u32> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.id(), i as u32))
            .collect();
        // Old index -> new index (None when the node leaves).
        let remap: Vec<Option<u32>> = self
            .nodes
            .iter()
            .map(|n| index.get(n.id()).copied())
            .collect();
        let mut current = vec![0u64; nodes.len()];
        for &o in &self.owners {
            if let Some(n) = remap[o as usize] {
                current[n as usize] += 1;
            }
        }
        let quota = quotas(self.partition_count(), &nodes, &current);
        let mut kept = vec![0u64; nodes.len()];
        let mut owners = vec![u32::MAX; self.owners.len()];
        let mut surplus = Vec::new();
        for (p, &o) in self.owners.iter().enumerate() {
            match remap[o as usize] {
                Some(n) if kept[n as usize] < quota[n as usize] => {
                    kept[n as usize] += 1;
                    owners[p] = n;
                }
                _ => surplus.push(p),
            }
        }
        let mut moves = Vec::with_capacity(surplus.len());
        let mut receivers = (0..nodes.len()).flat_map(|n| {
            let need = quota[n] - kept[n];
            std::iter::repeat_n(n as u32, need as usize)
        });
        for p in surplus {
            // Sum of quotas == partitions, so there is exactly one receiver
            // slot per surplus partition.
            let Some(to) = receivers.next() else {
                return Err(ShardError::InvalidConfig("quota bookkeeping failed".into()));
            };
            owners[p] = to;
            moves.push(Move {
                partition: p as u32,
                from: self.nodes[self.owners[p] as usize].id().to_string(),
                to: nodes[to as usize].id().to_string(),
            });
        }
        Ok(MovePlan {
            moves,
            target: Assignment { nodes, owners },
        })
    }

    /// The minimal plan to add `node`.
    pub fn plan_add(&self, node: impl Into<Node>) -> ShardResult<MovePlan> {
        let node = node.into();
        if self.nodes.iter().any(|n| n.id() == node.id()) {
            return Err(ShardError::DuplicateNode(node.id().to_string()));
        }
        let mut nodes = self.nodes.clone();
        nodes.push(node);
        self.plan_to(nodes)
    }

    /// The minimal plan to remove node `id`.
    pub fn plan_remove(&self, id: &str) -> ShardResult<MovePlan> {
        if !self.nodes.iter().any(|n| n.id() == id) {
            return Err(ShardError::UnknownNode(id.to_string()));
        }
        self.plan_to(self.nodes.iter().filter(|n| n.id() != id).cloned())
    }

    /// The minimal plan to change node `id`'s weight.
    pub fn plan_reweight(&self, id: &str, weight: u32) -> ShardResult<MovePlan> {
        if !self.nodes.iter().any(|n| n.id() == id) {
            return Err(ShardError::UnknownNode(id.to_string()));
        }
        self.plan_to(self.nodes.iter().map(|n| {
            if n.id() == id {
                Node::weighted(id, weight)
            } else {
                n.clone()
            }
        }))
    }
}

/// Where a write to a partition must go during a migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteTargets<'a> {
    /// The node that serves reads now (the old owner while moving).
    pub owner: &'a str,
    /// The second copy of a double-write (the new owner while moving).
    pub also: Option<&'a str>,
}

/// A [`MovePlan`] being carried out.
///
/// **Reads** of a moving partition go to the old owner until that partition
/// is cut over. **Writes** are *double-written*: to the old owner (so reads
/// stay current) and to the new owner (so the copy converges while the bulk
/// copy runs). The bulk copier must not overwrite a newer double-written
/// value — copy with insert-if-absent or compare versions, and keep
/// tombstones for deletes until cut-over. At [`cut_over`](Self::cut_over) the
/// new owner already holds every write, so reads switch without a pause and
/// the old copy can be dropped. Double-writing costs 2× write traffic on the
/// moving partitions only; the alternative (writes to the new owner only)
/// would make reads from the old owner stale.
///
/// ```
/// use kuai_shard::{Assignment, Migration, Node};
/// let a = Assignment::new(8, ["a", "b"])?;
/// let plan = a.plan_add(Node::new("c"))?;
/// let mut m = Migration::start(&a, plan);
/// let p = m.pending().next().map(|mv| mv.partition).unwrap_or(0);
/// let w = m.write_targets(p)?;
/// assert_eq!(w.also, Some("c"));
/// assert_ne!(m.read_owner(p)?, "c");
/// m.cut_over(p)?;
/// assert_eq!(m.read_owner(p)?, "c");
/// # Ok::<(), kuai_shard::ShardError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Migration {
    from: Assignment,
    plan: MovePlan,
    moving: HashMap<PartitionId, usize>,
    done: Vec<bool>,
}

impl Migration {
    /// Starts carrying out `plan` from `current`.
    pub fn start(current: &Assignment, plan: MovePlan) -> Self {
        let moving = plan
            .moves
            .iter()
            .enumerate()
            .map(|(i, m)| (m.partition, i))
            .collect();
        let done = vec![false; plan.moves.len()];
        Migration {
            from: current.clone(),
            plan,
            moving,
            done,
        }
    }

    fn check(&self, p: PartitionId) -> ShardResult<()> {
        if p >= self.from.partition_count() {
            return Err(ShardError::OutOfBounds {
                index: p as usize,
                len: self.from.partition_count() as usize,
            });
        }
        Ok(())
    }

    /// Where to read partition `p`: the old owner until cut-over.
    pub fn read_owner(&self, p: PartitionId) -> ShardResult<&str> {
        self.check(p)?;
        match self.moving.get(&p) {
            Some(&i) if self.done[i] => Ok(&self.plan.moves[i].to),
            Some(&i) => Ok(&self.plan.moves[i].from),
            None => Ok(self.plan.target.owner(p).map_or("", |n| n.id())),
        }
    }

    /// Where to write partition `p`: both owners while it moves.
    pub fn write_targets(&self, p: PartitionId) -> ShardResult<WriteTargets<'_>> {
        self.check(p)?;
        Ok(match self.moving.get(&p) {
            Some(&i) if !self.done[i] => WriteTargets {
                owner: &self.plan.moves[i].from,
                also: Some(&self.plan.moves[i].to),
            },
            _ => WriteTargets {
                owner: self.plan.target.owner(p).map_or("", |n| n.id()),
                also: None,
            },
        })
    }

    /// Moves not yet cut over.
    pub fn pending(&self) -> impl Iterator<Item = &Move> {
        self.plan
            .moves
            .iter()
            .zip(&self.done)
            .filter(|(_, d)| !**d)
            .map(|(m, _)| m)
    }

    /// Switches reads and writes of `p` to its new owner (call once the copy is complete).
    pub fn cut_over(&mut self, p: PartitionId) -> ShardResult<()> {
        self.check(p)?;
        match self.moving.get(&p) {
            Some(&i) => {
                self.done[i] = true;
                Ok(())
            }
            None => Err(ShardError::InvalidConfig(format!(
                "partition {p} is not moving"
            ))),
        }
    }

    /// The new assignment, once every move is cut over.
    pub fn finish(self) -> ShardResult<Assignment> {
        let remaining = self.done.iter().filter(|d| !**d).count();
        if remaining > 0 {
            return Err(ShardError::MigrationIncomplete { remaining });
        }
        Ok(self.plan.target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remove_moves_only_the_removed_nodes_partitions() {
        let a = Assignment::new(100, ["a", "b", "c", "d"]).unwrap();
        let plan = a.plan_remove("b").unwrap();
        assert_eq!(plan.moves().len(), 25);
        assert!(plan.moves().iter().all(|m| m.from == "b"));
        let counts = plan.target().counts();
        assert_eq!(counts.iter().sum::<u64>(), 100);
        assert!(counts.iter().all(|&c| (33..=34).contains(&c)), "{counts:?}");
    }

    #[test]
    fn reweight_moves_the_difference() {
        let a = Assignment::new(120, ["a", "b", "c"]).unwrap();
        let plan = a.plan_reweight("c", 2).unwrap();
        // c goes from 40 to 60: 20 partitions move to it, 10 from each other node.
        assert_eq!(plan.moves().len(), 20);
        assert!(plan.moves().iter().all(|m| m.to == "c"));
        assert_eq!(plan.target().counts(), vec![30, 30, 60]);
    }

    #[test]
    fn bad_inputs() {
        assert!(Assignment::new(0, ["a"]).is_err());
        assert!(Assignment::new(10, Vec::<Node>::new()).is_err());
        let a = Assignment::new(10, ["a"]).unwrap();
        assert!(matches!(a.plan_add("a"), Err(ShardError::DuplicateNode(_))));
        assert!(matches!(
            a.plan_remove("z"),
            Err(ShardError::UnknownNode(_))
        ));
        assert!(matches!(
            a.plan_reweight("a", 0),
            Err(ShardError::ZeroWeight(_))
        ));
        assert!(a.plan_remove("a").is_err());
        assert!(Assignment::from_owners(["a"], vec![0, 1]).is_err());
    }

    #[test]
    fn migration_must_finish() {
        let a = Assignment::new(8, ["a"]).unwrap();
        let plan = a.plan_add("b").unwrap();
        let mut m = Migration::start(&a, plan);
        let moving: Vec<u32> = m.pending().map(|mv| mv.partition).collect();
        assert_eq!(moving.len(), 4);
        assert!(matches!(
            m.clone().finish(),
            Err(ShardError::MigrationIncomplete { remaining: 4 })
        ));
        for p in moving {
            m.cut_over(p).unwrap();
        }
        assert!(m.cut_over(99).is_err());
        assert_eq!(m.finish().unwrap().counts(), vec![4, 4]);
    }
}
