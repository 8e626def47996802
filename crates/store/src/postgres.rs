//! The PostgreSQL backend (feature `postgres`): a [`Node`] over a primary
//! or a hot standby, with log positions from `pg_current_wal_lsn()` and
//! `pg_last_wal_replay_lsn()`.
//!
//! Each [`PgNode`] keeps one pipelined connection and reconnects when it
//! breaks; every connect is bounded by a timeout. SQL errors (the server
//! answered) map to `InvalidInput` (or `Overloaded` for serialization
//! failures and deadlocks, which are worth retrying); anything else
//! (refused, reset, closed) is `Backend`, which the [`Router`](crate::Router)
//! reports as the primary being unavailable.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use kuai_core::{Error, ErrorKind, Result};
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Config, NoTls};

use crate::{LogPosition, Node, StoreError};

/// Converts a driver error into the shared error model.
pub fn pg_error(what: &str, err: tokio_postgres::Error) -> Error {
    let kind = match err.code().map(|c| c.code()) {
        // serialization_failure, deadlock_detected: retry.
        Some("40001") | Some("40P01") => ErrorKind::Overloaded,
        // admin_shutdown, crash_shutdown, cannot_connect_now: the server is going away.
        Some("57P01") | Some("57P02") | Some("57P03") => ErrorKind::Backend,
        Some(_) => ErrorKind::InvalidInput,
        None => ErrorKind::Backend,
    };
    Error::with_source(kind, what.to_string(), err)
}

/// A PostgreSQL server (primary or hot standby) the router can use.
pub struct PgNode {
    name: String,
    config: Config,
    clients: Vec<tokio::sync::Mutex<Option<Arc<Client>>>>,
    next: AtomicUsize,
}

impl fmt::Debug for PgNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgNode")
            .field("name", &self.name)
            .field("hosts", &self.config.get_hosts())
            .field("ports", &self.config.get_ports())
            .finish_non_exhaustive()
    }
}

impl PgNode {
    /// A node for the connection string `conn` (libpq key=value or URL
    /// form). Nothing connects until the first use. A connect timeout of
    /// 2 s applies unless `conn` sets one.
    pub fn new(name: &str, conn: &str) -> std::result::Result<Self, StoreError> {
        Self::with_connections(name, conn, 1)
    }

    /// Like [`new`](Self::new) with `n` (1..=64) connections used in turn,
    /// so that up to `n` queries run in parallel server processes.
    pub fn with_connections(
        name: &str,
        conn: &str,
        n: usize,
    ) -> std::result::Result<Self, StoreError> {
        if !(1..=64).contains(&n) {
            return Err(StoreError::InvalidInput(format!(
                "{n} connections is outside 1..=64"
            )));
        }
        let mut config: Config = conn
            .parse()
            .map_err(|e| StoreError::InvalidInput(format!("bad connection string: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(2));
        }
        Ok(PgNode {
            name: name.to_string(),
            config,
            clients: (0..n).map(|_| tokio::sync::Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
        })
    }

    /// One of the node's connections (in turn), (re)connecting when there
    /// is none or it broke.
    pub async fn client(&self) -> Result<Arc<Client>> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.clients.len();
        let mut slot = self.clients[i].lock().await;
        if let Some(c) = slot.as_ref() {
            if !c.is_closed() {
                return Ok(c.clone());
            }
        }
        let (client, connection) = self
            .config
            .connect(NoTls)
            .await
            .map_err(|e| pg_error(&format!("connecting to {}", self.name), e))?;
        tokio::spawn(async move {
            // The error surfaces to callers as a closed client.
            let _ = connection.await;
        });
        let client = Arc::new(client);
        *slot = Some(client.clone());
        Ok(client)
    }

    /// Whether the server is a hot standby (`pg_is_in_recovery()`).
    pub async fn is_standby(&self) -> Result<bool> {
        let c = self.client().await?;
        let row = c
            .query_one("SELECT pg_is_in_recovery()", &[])
            .await
            .map_err(|e| pg_error("pg_is_in_recovery", e))?;
        row.try_get(0).map_err(|e| pg_error("pg_is_in_recovery", e))
    }
}

impl Node for PgNode {
    fn name(&self) -> &str {
        &self.name
    }

    async fn position(&self) -> Result<LogPosition> {
        let c = self.client().await?;
        let row = c
            .query_one(
                "SELECT (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() \
                 ELSE pg_current_wal_lsn() END)::text",
                &[],
            )
            .await
            .map_err(|e| pg_error("reading the WAL position", e))?;
        let text: Option<String> = row
            .try_get(0)
            .map_err(|e| pg_error("reading the WAL position", e))?;
        let text =
            text.ok_or_else(|| Error::corrupt("the standby reports no replayed WAL position"))?;
        text.parse::<LogPosition>().map_err(Error::from)
    }
}

/// A two-column `key text primary key, value text` table: the simplest
/// thing to route reads and writes for.
#[derive(Debug, Clone)]
pub struct PgKvTable {
    name: String,
}

impl PgKvTable {
    /// A table called `name`, which must be a plain lower-case identifier
    /// (`[a-z_][a-z0-9_]{0,62}`): it is spliced into SQL.
    pub fn new(name: &str) -> std::result::Result<Self, StoreError> {
        let ok = !name.is_empty()
            && name.len() < 64
            && name
                .bytes()
                .enumerate()
                .all(|(i, b)| b == b'_' || b.is_ascii_lowercase() || (i > 0 && b.is_ascii_digit()));
        if !ok {
            return Err(StoreError::InvalidInput(format!(
                "not a plain identifier: {name:?}"
            )));
        }
        Ok(PgKvTable {
            name: name.to_string(),
        })
    }

    /// The table's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Creates the table on the primary if it does not exist.
    pub async fn create(&self, primary: &PgNode) -> Result<()> {
        let c = primary.client().await?;
        c.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {} (key text PRIMARY KEY, value text NOT NULL)",
            self.name
        ))
        .await
        .map_err(|e| pg_error("creating the table", e))
    }

    /// Reads `key` on `node` (one round trip: no separate prepare).
    pub async fn get(&self, node: &PgNode, key: &str) -> Result<Option<String>> {
        let c = node.client().await?;
        let row = c
            .query_typed_opt(
                &format!("SELECT value FROM {} WHERE key = $1", self.name),
                &[(&key, Type::TEXT)],
            )
            .await
            .map_err(|e| pg_error("reading a key", e))?;
        row.map(|r| r.try_get(0).map_err(|e| pg_error("reading a key", e)))
            .transpose()
    }

    /// Upserts `key` on `node` (the primary).
    pub async fn put(&self, node: &PgNode, key: &str, value: &str) -> Result<()> {
        let c = node.client().await?;
        c.execute_typed(
            &format!(
                "INSERT INTO {} (key, value) VALUES ($1, $2) \
                 ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                self.name
            ),
            &[(&key, Type::TEXT), (&value, Type::TEXT)],
        )
        .await
        .map_err(|e| pg_error("writing a key", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_plain_identifiers() {
        assert!(PgKvTable::new("kv_1").is_ok());
        for bad in ["", "1kv", "kv;drop", "Kv", "kv-1", &"a".repeat(64)] {
            assert!(PgKvTable::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bad_connection_strings_are_invalid_input() {
        let e = PgNode::new("x", "host=127.0.0.1 port=notaport");
        assert!(matches!(e, Err(StoreError::InvalidInput(_))));
    }
}
