//! Heterogeneous index tables: the seller-sharded mirror follows the
//! buyer-sharded system of record asynchronously; reconciliation finds and
//! repairs drift.

use kuai_shard::JumpHash;
use kuai_store::{Order, OrderTables};
use proptest::prelude::*;

fn order(id: u64, buyer: u64, seller: u64, amount: i64) -> Order {
    Order {
        id,
        buyer,
        seller,
        amount,
        version: 0,
    }
}

fn tables() -> OrderTables<JumpHash> {
    OrderTables::new(JumpHash::new(4).unwrap_or_else(|e| panic!("{e}")), 10_000)
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn both_sides_answer_from_one_shard_after_the_mirror_catches_up() {
    let t = tables();
    for id in 0..200u64 {
        t.put(order(id, id % 10, 100 + id % 7, id as i64))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    t.flush();
    for seller in 100..107 {
        let mirror = t.by_seller(seller).unwrap_or_default();
        assert_eq!(mirror, t.by_seller_scatter(seller).unwrap_or_default());
        assert!(!mirror.is_empty());
    }
    assert_eq!(t.by_buyer(3).map(|v| v.len()).ok(), Some(20));
    assert!(t.reconcile(true).map(|r| r.is_clean()).unwrap_or(false));
}

#[test]
fn lost_events_are_found_and_repaired() {
    let t = tables();
    for id in 0..50u64 {
        t.put(order(id, id % 5, 7, 1))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    t.flush();
    // Lose: one new order, one update, one seller change and one delete.
    t.drop_next_events(5);
    t.put(order(50, 1, 7, 1)).unwrap_or_else(|e| panic!("{e}")); // missing
    t.put(order(3, 3, 7, 999)).unwrap_or_else(|e| panic!("{e}")); // stale
    t.put(order(4, 4, 8, 1)).unwrap_or_else(|e| panic!("{e}")); // remove from 7 + upsert into 8
    assert_eq!(t.delete(0, 5).ok(), Some(true)); // orphan
    t.flush();
    assert_eq!(t.dropped_events(), 5);
    let found = t.reconcile(true).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (found.missing, found.stale, found.orphaned, found.repaired),
        (2, 1, 2, false)
    );
    let fixed = t.reconcile(false).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(fixed.missing + fixed.stale + fixed.orphaned, 5);
    assert!(t.reconcile(true).map(|r| r.is_clean()).unwrap_or(false));
    for seller in [7, 8] {
        assert_eq!(
            t.by_seller(seller).unwrap_or_default(),
            t.by_seller_scatter(seller).unwrap_or_default()
        );
    }
}

#[test]
fn a_full_queue_drops_events_without_failing_writes() {
    let t = OrderTables::new(JumpHash::new(2).unwrap_or_else(|e| panic!("{e}")), 1)
        .unwrap_or_else(|e| panic!("{e}"));
    for id in 0..2_000u64 {
        assert!(t.put(order(id, id, id % 3, 0)).is_ok());
    }
    t.flush();
    // Whatever was dropped, one repair pass makes the copies agree.
    let _ = t.reconcile(false);
    assert!(t.reconcile(true).map(|r| r.is_clean()).unwrap_or(false));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    /// Any writes, deletes and lost events: after reconciliation the mirror
    /// equals the system of record regrouped by seller.
    #[test]
    fn reconcile_converges(
        ops in prop::collection::vec((0u64..20, 0u64..4, 0u64..4, any::<bool>(), 0u64..3), 1..80),
    ) {
        let t = tables();
        for (id, buyer, seller, del, lose) in ops {
            // Order ids are globally unique (snowflakes): an id names one buyer.
            let id = id * 4 + buyer;
            t.drop_next_events(u64::from(lose == 0));
            if del {
                let _ = t.delete(buyer, id);
            } else {
                let _ = t.put(order(id, buyer, seller, id as i64));
            }
        }
        t.flush();
        let _ = t.reconcile(false);
        prop_assert!(t.reconcile(true).map(|r| r.is_clean()).unwrap_or(false));
        for seller in 0..4 {
            prop_assert_eq!(t.by_seller(seller).unwrap_or_default(), t.by_seller_scatter(seller).unwrap_or_default());
        }
    }
}
