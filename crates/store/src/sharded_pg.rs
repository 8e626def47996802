//! Sharded tables on PostgreSQL (feature `postgres`): one logical table
//! split horizontally across N schemas or databases (the seed's 分库分表),
//! routed by a [`kuai_shard`] partitioner, with cross-shard `count`,
//! ordering and deep pagination through `kuai-shard`'s scatter-gather.
//!
//! Rows have a fixed shape — `id` (a [`Snowflake`](crate::Snowflake)),
//! `owner` (the routing key: all of one owner's rows live on one shard),
//! `created_ms` and a text `body` — enough to show the routing and the
//! cross-shard queries without an ORM.
//!
//! Deep pages are computed the only correct way: every shard returns its
//! first `offset + limit` rows ([`Page::per_shard_limit`]) and they are
//! k-way merged; memory is bounded by `shards × (offset + limit)`, and
//! `offset + limit` is capped at [`MAX_PAGE_DEPTH`]. For walking a whole
//! table, [`PgShardedTable::page_after`] (keyset pagination) costs only
//! `limit` rows per shard whatever the depth.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use kuai_core::{Error, Partitioner};
use kuai_shard::{Page, ScatterGather, WorkerPool};
use tokio_postgres::types::Type;

use crate::{PgNode, StoreError, pg_error};

/// The deepest `offset + limit` an offset page may ask for.
pub const MAX_PAGE_DEPTH: usize = 100_000;

/// One row of a sharded table. Ordered by `id` first.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ShardedRow {
    /// Primary key, globally unique.
    pub id: i64,
    /// The routing key.
    pub owner: i64,
    /// Creation time, ms since the Unix epoch.
    pub created_ms: i64,
    /// Payload.
    pub body: String,
}

/// One shard: a node and the schema holding the table there.
#[derive(Debug, Clone)]
pub struct PgShard {
    /// The server.
    pub node: Arc<PgNode>,
    /// The schema (a plain lower-case identifier).
    pub schema: String,
}

fn ident_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() < 64
        && s.bytes()
            .enumerate()
            .all(|(i, b)| b == b'_' || b.is_ascii_lowercase() || (i > 0 && b.is_ascii_digit()))
}

/// A table split across shards.
pub struct PgShardedTable<P> {
    shards: Arc<Vec<PgShard>>,
    partitioner: P,
    table: String,
    scatter: ScatterGather,
    handle: tokio::runtime::Handle,
}

impl<P> fmt::Debug for PgShardedTable<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgShardedTable")
            .field("table", &self.table)
            .field("shards", &self.shards)
            .finish_non_exhaustive()
    }
}

fn row_of(r: &tokio_postgres::Row) -> kuai_core::Result<ShardedRow> {
    let get = |e| pg_error("decoding a row", e);
    Ok(ShardedRow {
        id: r.try_get(0).map_err(get)?,
        owner: r.try_get(1).map_err(get)?,
        created_ms: r.try_get(2).map_err(get)?,
        body: r.try_get(3).map_err(get)?,
    })
}

impl<P: Partitioner<u64>> PgShardedTable<P> {
    /// A table called `table` over `shards` (as many as `partitioner` has
    /// partitions). Cross-shard queries run on a pool of one thread per
    /// shard, each bounded by `timeout`; call from within a tokio runtime
    /// (its handle drives the shard queries).
    pub fn new(
        table: &str,
        shards: Vec<PgShard>,
        partitioner: P,
        timeout: Duration,
    ) -> Result<Self, StoreError> {
        if !ident_ok(table) || shards.iter().any(|s| !ident_ok(&s.schema)) {
            return Err(StoreError::InvalidInput(
                "table and schema names must be plain lower-case identifiers".into(),
            ));
        }
        if shards.len() != partitioner.partition_count() as usize {
            return Err(StoreError::InvalidInput(format!(
                "{} shards for a partitioner of {} partitions",
                shards.len(),
                partitioner.partition_count()
            )));
        }
        let handle = tokio::runtime::Handle::try_current().map_err(|_| {
            StoreError::InvalidInput("PgShardedTable::new must run inside a tokio runtime".into())
        })?;
        let pool = WorkerPool::new(shards.len())
            .map_err(|e| StoreError::InvalidInput(format!("worker pool: {e}")))?;
        Ok(PgShardedTable {
            shards: Arc::new(shards),
            partitioner,
            table: table.to_string(),
            scatter: ScatterGather::new(pool, timeout),
            handle,
        })
    }

    fn qualified(&self, shard: usize) -> String {
        format!("{}.{}", self.shards[shard].schema, self.table)
    }

    /// The shard that owns `owner`'s rows.
    pub fn shard_of(&self, owner: i64) -> usize {
        self.partitioner.partition(&(owner as u64)) as usize
    }

    /// Creates the schemas and tables that do not exist yet.
    pub async fn create(&self) -> kuai_core::Result<()> {
        for (i, s) in self.shards.iter().enumerate() {
            let c = s.node.client().await?;
            c.batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS {schema};
                 CREATE TABLE IF NOT EXISTS {t} (id bigint PRIMARY KEY, owner bigint NOT NULL,
                     created_ms bigint NOT NULL, body text NOT NULL);
                 CREATE INDEX IF NOT EXISTS {table}_owner ON {t} (owner, id);",
                schema = s.schema,
                t = self.qualified(i),
                table = self.table,
            ))
            .await
            .map_err(|e| pg_error("creating a shard table", e))?;
        }
        Ok(())
    }

    /// Drops the table on every shard (the schemas stay).
    pub async fn drop_tables(&self) -> kuai_core::Result<()> {
        for (i, s) in self.shards.iter().enumerate() {
            let c = s.node.client().await?;
            c.batch_execute(&format!("DROP TABLE IF EXISTS {}", self.qualified(i)))
                .await
                .map_err(|e| pg_error("dropping a shard table", e))?;
        }
        Ok(())
    }

    /// Inserts a row on its owner's shard.
    pub async fn insert(&self, row: &ShardedRow) -> kuai_core::Result<()> {
        let i = self.shard_of(row.owner);
        let c = self.shards[i].node.client().await?;
        c.execute_typed(
            &format!(
                "INSERT INTO {} (id, owner, created_ms, body) VALUES ($1, $2, $3, $4)",
                self.qualified(i)
            ),
            &[
                (&row.id, Type::INT8),
                (&row.owner, Type::INT8),
                (&row.created_ms, Type::INT8),
                (&row.body, Type::TEXT),
            ],
        )
        .await
        .map_err(|e| pg_error("inserting a row", e))?;
        Ok(())
    }

    /// An owner's rows by id (one shard).
    pub async fn by_owner(&self, owner: i64, limit: i64) -> kuai_core::Result<Vec<ShardedRow>> {
        let i = self.shard_of(owner);
        let c = self.shards[i].node.client().await?;
        let rows = c
            .query_typed(
                &format!(
                    "SELECT id, owner, created_ms, body FROM {} WHERE owner = $1 ORDER BY id LIMIT $2",
                    self.qualified(i)
                ),
                &[(&owner, Type::INT8), (&limit, Type::INT8)],
            )
            .await
            .map_err(|e| pg_error("reading an owner's rows", e))?;
        rows.iter().map(row_of).collect()
    }

    /// Runs `sql` (with `{t}` replaced by each shard's table) on every
    /// shard through the scatter-gather, returning rows per shard in shard
    /// order. Any shard failing fails the query.
    async fn scatter(
        &self,
        sql: &str,
        params: Vec<i64>,
    ) -> kuai_core::Result<Vec<Vec<tokio_postgres::Row>>> {
        let shards = self.shards.clone();
        let handle = self.handle.clone();
        let sql: Vec<String> = (0..shards.len())
            .map(|i| sql.replace("{t}", &self.qualified(i)))
            .collect();
        let sg = self.scatter.clone();
        let ids: Vec<usize> = (0..shards.len()).collect();
        let gathered = tokio::task::spawn_blocking(move || {
            sg.run(&ids, move |shard, _deadline| {
                let node = shards[shard].node.clone();
                let (sql, params) = (sql[shard].clone(), params.clone());
                handle.block_on(async move {
                    let c = node.client().await?;
                    let p: Vec<(&(dyn tokio_postgres::types::ToSql + Sync), Type)> = params
                        .iter()
                        .map(|v| (v as &(dyn tokio_postgres::types::ToSql + Sync), Type::INT8))
                        .collect();
                    c.query_typed(&sql, &p)
                        .await
                        .map_err(|e| pg_error("a shard query", e))
                })
            })
        })
        .await
        .map_err(|e| Error::backend("the scatter-gather task failed", e))?
        .map_err(|e| Error::backend("scatter-gather", e))?;
        Ok(gathered.results.into_iter().map(|(_, rows)| rows).collect())
    }

    /// Rows on all shards (`count(*)` summed across shards).
    pub async fn count(&self) -> kuai_core::Result<i64> {
        let per = self.scatter("SELECT count(*) FROM {t}", Vec::new()).await?;
        let mut total = 0i64;
        for rows in per {
            for r in rows {
                total += r.try_get::<_, i64>(0).map_err(|e| pg_error("count", e))?;
            }
        }
        Ok(total)
    }

    /// `ORDER BY id LIMIT limit OFFSET offset` across all shards.
    pub async fn page(&self, offset: usize, limit: usize) -> kuai_core::Result<Vec<ShardedRow>> {
        let page = Page::new(offset, limit);
        if page.per_shard_limit() > MAX_PAGE_DEPTH {
            return Err(Error::invalid_input(format!(
                "offset + limit over {MAX_PAGE_DEPTH}: use page_after (keyset pagination)"
            )));
        }
        let per = self
            .scatter(
                "SELECT id, owner, created_ms, body FROM {t} ORDER BY id LIMIT $1",
                vec![page.per_shard_limit() as i64],
            )
            .await?;
        let runs = per
            .iter()
            .map(|rows| {
                rows.iter()
                    .map(row_of)
                    .collect::<kuai_core::Result<Vec<_>>>()
            })
            .collect::<kuai_core::Result<Vec<_>>>()?;
        Ok(page.merge(runs))
    }

    /// The `limit` rows with the smallest ids above `after` across all
    /// shards (keyset pagination: constant cost at any depth).
    pub async fn page_after(&self, after: i64, limit: usize) -> kuai_core::Result<Vec<ShardedRow>> {
        let limit = limit.min(MAX_PAGE_DEPTH);
        let per = self
            .scatter(
                "SELECT id, owner, created_ms, body FROM {t} WHERE id > $1 ORDER BY id LIMIT $2",
                vec![after, limit as i64],
            )
            .await?;
        let runs = per
            .iter()
            .map(|rows| {
                rows.iter()
                    .map(row_of)
                    .collect::<kuai_core::Result<Vec<_>>>()
            })
            .collect::<kuai_core::Result<Vec<_>>>()?;
        Ok(Page::new(0, limit).merge(runs))
    }
}
