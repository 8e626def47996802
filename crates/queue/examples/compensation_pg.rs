//! The flexible transaction end to end on PostgreSQL: an order in database
//! `kuai_orders`, a stock reservation in database `kuai_stock` (both created
//! if missing), half messages with check-back, a consumer whose local
//! transaction fails after retries, and the compensation that cancels the
//! order. See `support/pg_flow.rs` for the steps.
//!
//! Needs PostgreSQL on 127.0.0.1:5432 (trust auth, user `postgres`, database
//! `test`; override with `KUAI_PG`):
//! `cargo run -p kuai-queue --example compensation_pg`

#[path = "support/pg_flow.rs"]
mod pg_flow;

fn main() -> Result<(), pg_flow::Error> {
    let out = pg_flow::run(|line| println!("{line}"))?;
    println!("kuai_orders: {:?}", out.orders);
    println!(
        "kuai_stock:  {} left, reservations for {:?}",
        out.stock_left, out.reserved
    );
    let id = |n: i64| out.first_id + n;
    let placed = |n: i64| out.orders.get(&id(n)).map(String::as_str) == Some("placed");
    let ok = placed(1)
        && placed(3)
        && out.orders.get(&id(2)).map(String::as_str) == Some("cancelled")
        && out.orders.len() == 3
        && out.stock_left == 2
        && out.reserved == vec![id(1), id(3)];
    if !ok {
        return Err(format!("unexpected end state: {out:?}").into());
    }
    println!("consistent: order 2 reversed by compensation, stock 5 - 2 - 1 = 2");
    Ok(())
}
