//! The PostgreSQL [`Source`]: `kuai::store`'s `PgNode` (a few pipelined
//! connections, reconnecting when they break) and `PgLookup` (validated,
//! quoted identifiers; the key a bound parameter).

use std::future::Future;
use std::pin::Pin;

use kuai::store::{PgLookup, PgNode};

use super::{LoadResult, Source};
use crate::error::ServerError;

/// Loads `SELECT value FROM table WHERE key = $1` from PostgreSQL.
#[derive(Debug)]
pub struct PgSource {
    node: PgNode,
    lookup: PgLookup,
    table: String,
}

impl PgSource {
    /// A source over `url` (`postgres://…` or libpq `key=value`) reading
    /// `value_column` by `key_column` from `table` over `connections`
    /// connections. Nothing connects yet; bad names or a bad URL fail here.
    pub fn new(
        url: &str,
        table: &str,
        key_column: &str,
        value_column: &str,
        connections: usize,
    ) -> Result<Self, ServerError> {
        let lookup = PgLookup::new(table, key_column, value_column)
            .map_err(|e| ServerError::Config(format!("read-through: {e}")))?;
        let node = PgNode::with_connections("read-through", url, connections)
            .map_err(|e| ServerError::Config(format!("read-through: {e}")))?;
        Ok(PgSource {
            node,
            lookup,
            table: table.to_owned(),
        })
    }
}

impl Source for PgSource {
    fn load<'a>(&'a self, key: &'a [u8]) -> Pin<Box<dyn Future<Output = LoadResult> + Send + 'a>> {
        Box::pin(self.lookup.get(&self.node, key))
    }

    fn check(&self) -> Pin<Box<dyn Future<Output = Result<(), kuai::core::Error>> + Send + '_>> {
        Box::pin(self.lookup.check(&self.node))
    }

    fn describe(&self) -> String {
        format!("postgres table {}", self.table)
    }
}
