//! The flexible transaction across two real PostgreSQL databases
//! (`kuai_orders`, `kuai_stock`; created if missing): half message + local
//! transaction, check-back of a crashed producer, a rolled-back half
//! message, a consumer transaction that fails after retries, and the
//! compensation message that reverses the order.
//!
//! Fails (never skips) when PostgreSQL is not running on 127.0.0.1:5432:
//! start it with `service postgresql start` and create the database with
//! `createdb -U postgres test` (or set `KUAI_PG`).

#[path = "../examples/support/pg_flow.rs"]
mod pg_flow;

#[test]
fn order_is_reversed_when_the_stock_transaction_fails_after_retries() {
    let mut lines = Vec::new();
    let out = match pg_flow::run(|l| lines.push(l.to_string())) {
        Ok(out) => out,
        Err(e) => panic!("{e}\n(needs PostgreSQL: {})", pg_flow::HOW_TO_START),
    };
    let id = |n: i64| out.first_id + n;
    let status = |n: i64| out.orders.get(&id(n)).map(String::as_str);
    // Order 1: placed and reserved.
    assert_eq!(status(1), Some("placed"), "{lines:#?}");
    // Order 2: the stock transaction failed 3 times; compensated.
    assert_eq!(status(2), Some("cancelled"), "{lines:#?}");
    assert_eq!(out.compensated, vec![id(2)]);
    // Order 3: the producer crashed before commit; check-back committed it.
    assert_eq!(status(3), Some("placed"));
    assert_eq!(out.checked_back, vec![id(3)]);
    // Order 4: its local transaction failed; the half message was rolled
    // back and never reached the stock service.
    assert_eq!(out.rolled_back, vec![id(4)]);
    assert_eq!(out.orders.len(), 3);
    // Stock: only the reservations of live orders, no partial writes of
    // the failed transaction (5 − 2 − 1).
    assert_eq!(out.reserved, vec![id(1), id(3)]);
    assert_eq!(out.stock_left, 2);
    let retries = lines
        .iter()
        .filter(|l| l.contains(&format!("order {} failed", id(2))))
        .count();
    assert_eq!(retries, 2, "two retries, then the dead letter: {lines:#?}");
}
