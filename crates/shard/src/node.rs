//! Nodes (shards, servers) and their validation.

use std::collections::HashSet;

use crate::error::{ShardError, ShardResult};

/// A node that owns partitions: an id and a relative weight (capacity).
///
/// ```
/// use kuai_shard::Node;
/// let a = Node::new("db-1");
/// let b = Node::weighted("db-2", 3);
/// assert_eq!((a.weight(), b.weight()), (1, 3));
/// let c: Node = "db-3".into();
/// assert_eq!(c.id(), "db-3");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Node {
    id: String,
    weight: u32,
}

impl Node {
    /// A node of weight 1.
    pub fn new(id: impl Into<String>) -> Self {
        Node {
            id: id.into(),
            weight: 1,
        }
    }

    /// A node with a weight (relative share of keys). Zero is rejected when
    /// the node set is built.
    pub fn weighted(id: impl Into<String>, weight: u32) -> Self {
        Node {
            id: id.into(),
            weight,
        }
    }

    /// The node's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The node's weight.
    pub fn weight(&self) -> u32 {
        self.weight
    }
}

impl From<&str> for Node {
    fn from(id: &str) -> Self {
        Node::new(id)
    }
}

impl From<String> for Node {
    fn from(id: String) -> Self {
        Node::new(id)
    }
}

impl From<(&str, u32)> for Node {
    fn from((id, w): (&str, u32)) -> Self {
        Node::weighted(id, w)
    }
}

/// Collects and validates a node set: not empty, unique ids, non-zero weights,
/// and at most `u32::MAX` nodes.
pub(crate) fn validate_nodes<I, N>(nodes: I, what: &'static str) -> ShardResult<Vec<Node>>
where
    I: IntoIterator<Item = N>,
    N: Into<Node>,
{
    let nodes: Vec<Node> = nodes.into_iter().map(Into::into).collect();
    check_nodes(&nodes, what)?;
    Ok(nodes)
}

pub(crate) fn check_nodes(nodes: &[Node], what: &'static str) -> ShardResult<()> {
    if nodes.is_empty() {
        return Err(ShardError::EmptyNodeSet(what));
    }
    if u32::try_from(nodes.len()).is_err() {
        return Err(ShardError::InvalidConfig(format!(
            "{} nodes is too many",
            nodes.len()
        )));
    }
    let mut seen = HashSet::with_capacity(nodes.len());
    for n in nodes {
        if n.weight == 0 {
            return Err(ShardError::ZeroWeight(n.id.clone()));
        }
        if !seen.insert(n.id.as_str()) {
            return Err(ShardError::DuplicateNode(n.id.clone()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_node_sets_are_typed_errors() {
        assert_eq!(
            validate_nodes(Vec::<Node>::new(), "ring"),
            Err(ShardError::EmptyNodeSet("ring"))
        );
        assert_eq!(
            validate_nodes(["a", "b", "a"], "ring"),
            Err(ShardError::DuplicateNode("a".into()))
        );
        assert_eq!(
            validate_nodes([Node::weighted("a", 0)], "ring"),
            Err(ShardError::ZeroWeight("a".into()))
        );
        assert!(validate_nodes(["a", "b"], "ring").is_ok());
    }
}
