//! A flexible (eventually consistent) transaction across two services, end
//! to end: an order and a stock reservation, each in its own "database".
//!
//! 1. The order service sends a **half message** ("reserve stock for order
//!    N"), runs its local transaction (insert the order), then commits the
//!    half message. One order's producer "crashes" before committing: the
//!    broker's **check-back** asks the order database and commits it.
//! 2. The stock service consumes reservations. Its local transaction can
//!    fail (not enough stock); it retries with backoff (task queue) and, when
//!    retries are exhausted, sends a **compensation message** back to the
//!    order service's topic.
//! 3. The order service consumes compensations and cancels those orders.
//!
//! The two databases are in-memory maps here so the example runs anywhere;
//! in production each would be its own PostgreSQL database (kuai-store).
//! Run: `cargo run -p kuai-queue --example compensation`

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kuai_queue::QueueError;
use kuai_queue::broker::{Broker, HalfMessage, TxState, TxnConfig};
use kuai_queue::task::{Retry, TaskQueue};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OrderStatus {
    Placed,
    Cancelled,
}

fn main() -> Result<(), QueueError> {
    let dir = tempfile::tempdir().map_err(|e| QueueError::InvalidInput(e.to_string()))?;
    let broker = Broker::builder()
        .transactions(TxnConfig {
            first_check: Duration::ZERO, // check at once, for the demo
            ..TxnConfig::default()
        })
        .open(dir.path())?;

    // The two services' databases.
    let orders: Arc<Mutex<HashMap<u32, OrderStatus>>> = Arc::default();
    let stock: Arc<Mutex<HashMap<&'static str, u32>>> =
        Arc::new(Mutex::new(HashMap::from([("apple", 5)])));
    let lock = |m: &Arc<Mutex<HashMap<u32, OrderStatus>>>| {
        m.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    };

    // --- order service: half message + local transaction + commit ---------
    let place = |order: u32, qty: u32, crash_before_commit: bool| -> Result<(), QueueError> {
        let body = format!("{order} apple {qty}");
        let tx = broker.prepare(
            "stock-reservations",
            Some(&order.to_le_bytes()),
            body.as_bytes(),
        )?;
        orders
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(order, OrderStatus::Placed); // local transaction
        if !crash_before_commit {
            broker.commit(tx)?;
        }
        Ok(())
    };
    place(1, 2, false)?;
    place(2, 10, false)?; // more than the stock: will be compensated
    place(3, 1, true)?; // producer dies before committing

    // Check-back: the order database is the source of truth (idempotent).
    let orders_for_check = Arc::clone(&orders);
    let checker = move |h: &HalfMessage| {
        let text = String::from_utf8_lossy(&h.payload).to_string();
        let order: u32 = text
            .split(' ')
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let db = orders_for_check
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if db.contains_key(&order) {
            TxState::Commit
        } else {
            TxState::Rollback
        }
    };
    let report = broker.run_checks(&checker)?;
    println!("check-back committed {:?}", report.committed);

    // --- stock service: consume, local transaction with retries ------------
    let reservations = broker.consumer("stock-reservations", "stock-service");
    let retries: TaskQueue<(u32, u32)> = TaskQueue::builder()
        .max_attempts(3)
        .base_backoff(Duration::ZERO)
        .build();
    for m in reservations.poll(100, Duration::from_millis(100))? {
        let text = String::from_utf8_lossy(&m.payload).to_string();
        let parts: Vec<&str> = text.split(' ').collect();
        let (Some(order), Some(qty)) = (
            parts.first().and_then(|s| s.parse().ok()),
            parts.get(2).and_then(|s| s.parse().ok()),
        ) else {
            reservations.ack(&m)?; // malformed: nothing to do
            continue;
        };
        retries.push((order, qty))?;
        reservations.ack(&m)?;
    }
    while let Some(task) = retries.poll() {
        let (order, qty) = task.payload;
        let mut db = stock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let left = db.get("apple").copied().unwrap_or(0);
        if left >= qty {
            db.insert("apple", left - qty);
            println!("stock: reserved {qty} apples for order {order}");
            drop(db);
            retries.complete(task);
        } else {
            drop(db);
            match retries.fail(task, "not enough stock") {
                Retry::After(_) => println!("stock: order {order} failed, retrying"),
                Retry::DeadLettered => println!("stock: order {order} gave up"),
            }
        }
    }
    // Exhausted retries: compensate the first transaction.
    for dead in retries.take_dead_letters() {
        let (order, _) = dead.payload;
        broker.publish(
            "order-compensation",
            None,
            format!("cancel {order}").as_bytes(),
        )?;
    }

    // --- order service: apply compensations --------------------------------
    let comp = broker.consumer("order-compensation", "order-service");
    for m in comp.poll(100, Duration::from_millis(100))? {
        let text = String::from_utf8_lossy(&m.payload).to_string();
        if let Some(order) = text
            .strip_prefix("cancel ")
            .and_then(|s| s.parse::<u32>().ok())
        {
            orders
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(order, OrderStatus::Cancelled);
            println!("orders: order {order} cancelled by compensation");
        }
        comp.ack(&m)?;
    }

    let final_orders = lock(&orders);
    println!("orders: {final_orders:?}");
    println!(
        "stock:  {:?}",
        stock.lock().map(|s| s.clone()).unwrap_or_default()
    );
    let expect = HashMap::from([
        (1, OrderStatus::Placed),
        (2, OrderStatus::Cancelled),
        (3, OrderStatus::Placed),
    ]);
    if final_orders != expect {
        return Err(QueueError::InvalidInput(format!(
            "unexpected end state {final_orders:?}"
        )));
    }
    Ok(())
}
