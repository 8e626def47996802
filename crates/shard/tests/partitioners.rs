//! Property tests: every partitioner stays in range and is deterministic;
//! the consistent ones move keys only to a new node or off a removed one;
//! plans are minimal.

use kuai_core::Partitioner;
use kuai_shard::{
    Assignment, Composite, HashRing, JumpHash, Maglev, ModuloHash, Node, RangePartitioner,
    Rendezvous, ShardError, SlotMap, SlotPartitioner,
};
use proptest::prelude::*;

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("n{i}")).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn in_range_and_deterministic(n in 1usize..40, keys in proptest::collection::vec(any::<u64>(), 1..50)) {
        let ns = names(n);
        let ids = || ns.iter().map(String::as_str);
        let all: Vec<Box<dyn Partitioner<u64>>> = vec![
            Box::new(ModuloHash::new(n as u32).unwrap()),
            Box::new(JumpHash::new(n as u32).unwrap()),
            Box::new(HashRing::new(ids(), 8).unwrap()),
            Box::new(Rendezvous::new(ids()).unwrap()),
            Box::new(Maglev::with_table_size(ids(), 211).unwrap()),
        ];
        for p in &all {
            prop_assert_eq!(p.partition_count(), n as u32);
            for k in &keys {
                let a = p.partition(k);
                prop_assert!(a < n as u32);
                prop_assert_eq!(a, p.partition(k));
            }
        }
    }

    #[test]
    fn adding_a_node_only_moves_keys_to_it(n in 1usize..20, keys in proptest::collection::vec(any::<u64>(), 1..200)) {
        let ns = names(n);
        let ids = || ns.iter().map(String::as_str);
        let ring = HashRing::new(ids(), 16).unwrap();
        let ring2 = ring.with_node("new").unwrap();
        let hrw = Rendezvous::new(ids()).unwrap();
        let hrw2 = hrw.with_node("new").unwrap();
        let jump = JumpHash::new(n as u32).unwrap();
        let jump2 = JumpHash::new(n as u32 + 1).unwrap();
        for k in &keys {
            let (a, b) = (ring.partition(k), ring2.partition(k));
            prop_assert!(a == b || b == n as u32);
            let (a, b) = (hrw.partition(k), hrw2.partition(k));
            prop_assert!(a == b || b == n as u32);
            let (a, b) = (jump.partition(k), jump2.partition(k));
            prop_assert!(a == b || b == n as u32);
        }
    }

    #[test]
    fn plans_are_minimal_and_balanced(
        weights in proptest::collection::vec(1u32..5, 1..12),
        extra in 1u32..5,
        partitions in 1u32..2000,
    ) {
        let nodes: Vec<Node> = weights.iter().enumerate().map(|(i, &w)| Node::weighted(format!("n{i}"), w)).collect();
        let a = Assignment::new(partitions, nodes.clone()).unwrap();
        let before = a.counts();
        let plan = a.plan_add(Node::weighted("new", extra)).unwrap();
        let target = plan.target();
        let after = target.counts();
        // Donors only lose, receivers only gain, and nothing moves that need
        // not: the moves are exactly the holdings that had to change.
        let mut lost = vec![0u64; after.len()];
        let mut gained = vec![0u64; after.len()];
        for m in plan.moves() {
            let from = target.nodes().iter().position(|n| n.id() == m.from).unwrap();
            let to = target.nodes().iter().position(|n| n.id() == m.to).unwrap();
            lost[from] += 1;
            gained[to] += 1;
            prop_assert!(from != to);
        }
        for i in 0..after.len() {
            let was = before.get(i).copied().unwrap_or(0);
            prop_assert!(lost[i] == 0 || gained[i] == 0);
            prop_assert_eq!(was + gained[i] - lost[i], after[i]);
        }
        // Shares are within one partition of the weighted ideal.
        let total: u32 = weights.iter().sum::<u32>() + extra;
        for (node, &c) in target.nodes().iter().zip(&after) {
            let ideal = f64::from(partitions) * f64::from(node.weight()) / f64::from(total);
            prop_assert!((c as f64 - ideal).abs() < 1.0 + 1e-9, "{} has {} want {}", node.id(), c, ideal);
        }
        // The new node gets at least its rounded-down share.
        let floor_new = u64::from(partitions) * u64::from(extra) / u64::from(total);
        prop_assert!(after[after.len() - 1] >= floor_new);
        // Removing it again moves exactly its partitions off it.
        let back = target.plan_remove("new").unwrap();
        prop_assert_eq!(back.moves().len() as u64, after[after.len() - 1]);
    }

    #[test]
    fn range_partition_respects_bounds(mut splits in proptest::collection::btree_set(any::<i32>(), 0..20), key: i32) {
        let splits: Vec<i32> = std::mem::take(&mut splits).into_iter().collect();
        let p = RangePartitioner::from_split_points(splits).unwrap();
        let i = p.partition_of(&key) as usize;
        let (lo, hi) = p.bounds(i).unwrap();
        prop_assert!(lo.is_none_or(|lo| *lo <= key));
        prop_assert!(hi.is_none_or(|hi| key < *hi));
    }

    #[test]
    fn slot_of_tagged_keys_ignores_the_rest(tag in "[a-z0-9]{1,12}", a in "[a-z:]{0,10}", b in "[a-z:]{0,10}") {
        let k1 = format!("{a}{{{tag}}}{b}");
        let k2 = format!("{{{tag}}}");
        prop_assert_eq!(SlotPartitioner.partition(k1.as_str()), SlotPartitioner.partition(tag.as_str()));
        prop_assert_eq!(SlotPartitioner.partition(k2.as_str()), SlotPartitioner.partition(tag.as_str()));
    }
}

#[test]
fn composite_keeps_a_users_time_range_together() {
    let months =
        RangePartitioner::from_split_points(vec![202_402u32, 202_403, 202_404, 202_405]).unwrap();
    let p = Composite::new(JumpHash::new(16).unwrap(), months);
    assert_eq!(Partitioner::<(u64, u32)>::partition_count(&p), 80);
    for user in 0..200u64 {
        let parts = p.partitions_for_range(&user, &(202_402..202_404));
        assert_eq!(parts.len(), 2);
        for month in [202_402u32, 202_403] {
            assert!(parts.contains(&p.partition(&(user, month))));
        }
        assert!(!parts.contains(&p.partition(&(user, 202_404))));
    }
}

#[test]
fn construction_rejects_bad_input() {
    assert_eq!(
        JumpHash::new(0)
            .err()
            .map(|e| matches!(e, ShardError::EmptyNodeSet(_))),
        Some(true)
    );
    assert!(matches!(
        HashRing::new(["a", "a"], 4),
        Err(ShardError::DuplicateNode(_))
    ));
    assert!(matches!(
        Rendezvous::new([Node::weighted("a", 0)]),
        Err(ShardError::ZeroWeight(_))
    ));
    assert!(matches!(
        Maglev::new(Vec::<Node>::new()),
        Err(ShardError::EmptyNodeSet(_))
    ));
    assert!(matches!(
        SlotMap::balanced(["x", "x"]),
        Err(ShardError::DuplicateNode(_))
    ));
    assert!(matches!(
        ModuloHash::new(0),
        Err(ShardError::EmptyNodeSet(_))
    ));
    let core: kuai_core::Error = ShardError::DuplicateNode("a".into()).into();
    assert_eq!(core.kind(), kuai_core::ErrorKind::InvalidInput);
}
