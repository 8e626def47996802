//! The flexible (eventually consistent) transaction on two real PostgreSQL
//! databases, shared by `examples/compensation_pg.rs` and
//! `tests/compensation_pg.rs`.
//!
//! * `kuai_orders` (the order service): `orders(id, item, qty, status)`.
//! * `kuai_stock` (the stock service): `stock(item, qty CHECK (qty >= 0))`
//!   and `reservations(order_id PRIMARY KEY, item, qty)`.
//!
//! Both databases and tables are created if missing. Every run uses its own
//! item name and order ids, so runs never interfere.
//!
//! 1. Order service: `prepare` a half message ("reserve stock for order N"),
//!    run its local transaction (insert the order) in `kuai_orders`, then
//!    `commit` the half message. Order 3's producer "crashes" before
//!    committing: the broker's check-back asks `kuai_orders` (idempotent: a
//!    read) and commits it. Order 4's local transaction fails (a duplicate
//!    id): its half message is rolled back and never delivered.
//! 2. Stock service: consumes reservations; its local transaction inserts
//!    the reservation (primary key = idempotency) and decrements the stock in
//!    `kuai_stock`. For order 2 the `CHECK (qty >= 0)` constraint fails the
//!    transaction; it is retried with backoff (task queue) and, after the
//!    last attempt, a **compensation message** goes to `order-compensation`.
//! 3. Order service: consumes compensations and cancels the order in
//!    `kuai_orders` (idempotent: only a `placed` order changes).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kuai_queue::broker::{Broker, HalfMessage, TxState, TxnConfig};
use kuai_queue::task::{Retry, TaskQueue};
use tokio::runtime::Runtime;
use tokio_postgres::{Client, NoTls};

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// Where PostgreSQL is expected (override the whole base string with `KUAI_PG`).
pub const DEFAULT_PG: &str = "host=127.0.0.1 port=5432 user=postgres";

/// How to start the service, for error messages.
pub const HOW_TO_START: &str = "PostgreSQL must be running on 127.0.0.1:5432 with trust auth for user \
     `postgres` and a database `test` (`service postgresql start`, then \
     `createdb -U postgres test`), or set KUAI_PG to a libpq base string \
     without dbname";

/// What the run left in the two databases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Order id → status in `kuai_orders` (this run's orders only).
    pub orders: BTreeMap<i64, String>,
    /// This run's item stock left in `kuai_stock`.
    pub stock_left: i32,
    /// Order ids with a reservation in `kuai_stock`.
    pub reserved: Vec<i64>,
    /// Order ids the check-back committed.
    pub checked_back: Vec<i64>,
    /// Order ids compensated (cancelled).
    pub compensated: Vec<i64>,
    /// Order ids whose half message was rolled back (local tx failed).
    pub rolled_back: Vec<i64>,
    /// The first order id of this run (ids are `first + 1 ..= first + 4`).
    pub first_id: i64,
}

/// A database error with its SQLSTATE and message (`Display` of
/// `tokio_postgres::Error` says only "db error").
fn pg(e: tokio_postgres::Error) -> Error {
    match e.as_db_error() {
        Some(d) => format!("{} ({})", d.message(), d.code().code()).into(),
        None => e.into(),
    }
}

fn base() -> String {
    std::env::var("KUAI_PG").unwrap_or_else(|_| DEFAULT_PG.to_string())
}

async fn connect(db: &str) -> Result<Client, Error> {
    let (client, conn) = tokio_postgres::connect(&format!("{} dbname={db}", base()), NoTls)
        .await
        .map_err(|e| format!("connecting to database {db}: {e}. {HOW_TO_START}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// Creates `kuai_orders` and `kuai_stock` and their tables if missing.
async fn setup() -> Result<(Client, Client), Error> {
    let admin = connect("test").await?;
    for db in ["kuai_orders", "kuai_stock"] {
        let exists = admin
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&db])
            .await?
            .is_some();
        if !exists {
            if let Err(e) = admin.batch_execute(&format!("CREATE DATABASE {db}")).await {
                // Another run created it meanwhile: fine.
                let dup = e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE);
                let race = e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION);
                if !(dup || race) {
                    return Err(format!("CREATE DATABASE {db}: {e}").into());
                }
            }
        }
    }
    let orders = connect("kuai_orders").await?;
    orders
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS orders (
                 id bigint PRIMARY KEY,
                 item text NOT NULL,
                 qty integer NOT NULL,
                 status text NOT NULL)",
        )
        .await?;
    let stock = connect("kuai_stock").await?;
    stock
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS stock (
                 item text PRIMARY KEY,
                 qty integer NOT NULL CHECK (qty >= 0));
             CREATE TABLE IF NOT EXISTS reservations (
                 order_id bigint PRIMARY KEY,
                 item text NOT NULL,
                 qty integer NOT NULL)",
        )
        .await?;
    Ok((orders, stock))
}

/// `"<order> <item> <qty>"`.
fn parse(body: &[u8]) -> Option<(i64, String, i32)> {
    let text = std::str::from_utf8(body).ok()?;
    let mut it = text.split(' ');
    let order = it.next()?.parse().ok()?;
    let item = it.next()?.to_string();
    let qty = it.next()?.parse().ok()?;
    Some((order, item, qty))
}

/// Runs the whole flow once; `log` receives one line per step.
pub fn run(mut log: impl FnMut(&str)) -> Result<Outcome, Error> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (orders_db, stock_db) = rt.block_on(setup())?;
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos();
    // Unique per run (and per process): ids and the item name.
    let first_id = (((nanos / 1000) as i64 % 1_000_000_000_000) * 10
        + i64::from(std::process::id() % 10))
        * 10;
    let item = format!("apple-{first_id}");
    rt.block_on(stock_db.execute("INSERT INTO stock (item, qty) VALUES ($1, 5)", &[&item]))?;

    let dir = tempfile::tempdir()?;
    let broker = Broker::builder()
        .transactions(TxnConfig {
            first_check: Duration::ZERO, // check at once, for the demo
            ..TxnConfig::default()
        })
        .open(dir.path())?;

    // --- 1. order service: half message + local transaction + commit ----------
    let mut rolled_back = Vec::new();
    let place = |rt: &Runtime,
                 order: i64,
                 qty: i32,
                 crash_before_commit: bool,
                 rolled_back: &mut Vec<i64>,
                 log: &mut dyn FnMut(&str)|
     -> Result<(), Error> {
        let body = format!("{order} {item} {qty}");
        let tx = broker.prepare(
            "stock-reservations",
            Some(&order.to_le_bytes()),
            body.as_bytes(),
        )?;
        let local = rt.block_on(async {
            // Order 4 reuses order 1's id: the insert fails, the local
            // transaction rolls back.
            let id = if order == first_id + 4 {
                first_id + 1
            } else {
                order
            };
            let mut c = connect("kuai_orders").await?;
            let t = c.transaction().await.map_err(pg)?;
            t.execute(
                "INSERT INTO orders (id, item, qty, status) VALUES ($1, $2, $3, 'placed')",
                &[&id, &item, &qty],
            )
            .await
            .map_err(pg)?;
            t.commit().await.map_err(pg)?;
            Ok::<(), Error>(())
        });
        match local {
            Ok(()) if crash_before_commit => {
                log(&format!(
                    "orders: order {order} placed; producer crashed before commit"
                ));
            }
            Ok(()) => {
                broker.commit(tx)?;
                log(&format!(
                    "orders: order {order} placed, half message committed"
                ));
            }
            Err(e) => {
                broker.rollback(tx)?;
                rolled_back.push(order);
                log(&format!(
                    "orders: order {order} local tx failed ({e}); half message rolled back"
                ));
            }
        }
        Ok(())
    };
    place(&rt, first_id + 1, 2, false, &mut rolled_back, &mut log)?;
    place(&rt, first_id + 2, 10, false, &mut rolled_back, &mut log)?; // more than the stock
    place(&rt, first_id + 3, 1, true, &mut rolled_back, &mut log)?; // producer dies
    place(&rt, first_id + 4, 1, false, &mut rolled_back, &mut log)?; // local tx fails

    // Check-back: the order database is the source of truth (a read: idempotent).
    let checked = std::sync::Mutex::new(Vec::new());
    let checker = |h: &HalfMessage| {
        let Some((order, _, _)) = parse(&h.payload) else {
            return TxState::Rollback;
        };
        match rt.block_on(orders_db.query_opt("SELECT 1 FROM orders WHERE id = $1", &[&order])) {
            Ok(Some(_)) => {
                checked
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(order);
                TxState::Commit
            }
            Ok(None) => TxState::Rollback,
            // The database is unreachable: ask again later.
            Err(_) => TxState::Unknown,
        }
    };
    let report = broker.run_checks(&checker)?;
    let checked_back = checked
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    log(&format!(
        "check-back: committed {:?} (orders {checked_back:?}), rolled back {:?}",
        report.committed, report.rolled_back
    ));
    // --- 2. stock service: consume, local transaction with retries ----------
    let reservations = broker.consumer("stock-reservations", "stock-service");
    let retries: TaskQueue<(i64, String, i32)> = TaskQueue::builder()
        .max_attempts(3)
        .base_backoff(Duration::ZERO)
        .build();
    for m in reservations.poll(100, Duration::from_millis(200))? {
        match parse(&m.payload) {
            Some(r) => {
                retries.push(r)?;
            }
            None => log("stock: malformed reservation skipped"),
        }
        reservations.ack(&m)?;
    }
    while let Some(task) = retries.poll() {
        let (order, item, qty) = task.payload.clone();
        let local = rt.block_on(async {
            let mut c = connect("kuai_stock").await?;
            let t = c.transaction().await.map_err(pg)?;
            let fresh = t
                .execute(
                    "INSERT INTO reservations (order_id, item, qty) VALUES ($1, $2, $3)
                     ON CONFLICT (order_id) DO NOTHING",
                    &[&order, &item, &qty],
                )
                .await
                .map_err(pg)?;
            if fresh == 1 {
                // Fails on CHECK (qty >= 0) when the stock is short.
                t.execute(
                    "UPDATE stock SET qty = qty - $2 WHERE item = $1",
                    &[&item, &qty],
                )
                .await
                .map_err(pg)?;
            }
            t.commit().await.map_err(pg)?;
            Ok::<(), Error>(())
        });
        match local {
            Ok(()) => {
                log(&format!("stock: reserved {qty} for order {order}"));
                retries.complete(task);
            }
            Err(e) => match retries.fail(task, &e) {
                Retry::After(_) => log(&format!("stock: order {order} failed ({e}), retrying")),
                Retry::DeadLettered => log(&format!("stock: order {order} gave up after retries")),
            },
        }
    }
    // Exhausted retries: compensate the first transaction.
    for dead in retries.take_dead_letters() {
        let (order, _, _) = dead.payload;
        broker.publish(
            "order-compensation",
            None,
            format!("cancel {order}").as_bytes(),
        )?;
        log(&format!("stock: compensation sent for order {order}"));
    }

    // --- 3. order service: apply compensations ------------------------------
    let mut compensated = Vec::new();
    let comp = broker.consumer("order-compensation", "order-service");
    for m in comp.poll(100, Duration::from_millis(200))? {
        let order = std::str::from_utf8(&m.payload)
            .ok()
            .and_then(|t| t.strip_prefix("cancel "))
            .and_then(|s| s.parse::<i64>().ok());
        if let Some(order) = order {
            let n = rt.block_on(orders_db.execute(
                "UPDATE orders SET status = 'cancelled' WHERE id = $1 AND status = 'placed'",
                &[&order],
            ))?;
            log(&format!(
                "orders: order {order} cancelled by compensation ({n} row)"
            ));
            compensated.push(order);
        }
        comp.ack(&m)?;
    }

    // --- what the databases hold now -------------------------------------------
    let rows = rt.block_on(orders_db.query(
        "SELECT id, status FROM orders WHERE item = $1 ORDER BY id",
        &[&item],
    ))?;
    let orders = rows
        .iter()
        .map(|r| (r.get::<_, i64>(0), r.get::<_, String>(1)))
        .collect();
    let stock_left: i32 = rt
        .block_on(stock_db.query_one("SELECT qty FROM stock WHERE item = $1", &[&item]))?
        .get(0);
    let reserved = rt
        .block_on(stock_db.query(
            "SELECT order_id FROM reservations WHERE item = $1 ORDER BY order_id",
            &[&item],
        ))?
        .iter()
        .map(|r| r.get::<_, i64>(0))
        .collect();
    Ok(Outcome {
        orders,
        stock_left,
        reserved,
        checked_back,
        compensated,
        rolled_back,
        first_id,
    })
}
