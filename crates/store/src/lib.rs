//! `kuai-store`: the storage chapter of kuai — read/write splitting with
//! read-your-writes, fan-out timelines, snowflake ids, hot/cold tiering and
//! heterogeneous index tables, embedded or over PostgreSQL.
//!
//! # When to use it
//!
//! * [`Router`]: you have a primary and asynchronous replicas and want reads
//!   on the replicas **without** users seeing their own writes disappear.
//!   A [`Session`] (carried between requests as a [`TokenSigner`]-signed
//!   token) remembers the log position of the user's last write; a replica
//!   serves a read only once it has replayed past it. Policies: primary-only,
//!   round-robin, least-lag; consistency per read: eventual,
//!   read-your-writes, monotonic, critical (primary), locking (primary);
//!   second read on the primary after a replica miss; lag monitoring that
//!   takes replicas out of rotation and re-admits them; a timeout on every
//!   call.
//! * [`EmbeddedCluster`]: an in-memory primary and replicas whose replication
//!   delay follows a [`kuai_core::Clock`] — deterministic tests of the above.
//! * `PgNode` (feature `postgres`): the same router over a real PostgreSQL
//!   primary and hot standbys, positions from `pg_current_wal_lsn()` /
//!   `pg_last_wal_replay_lsn()`; `pg_standby::TempStandby` makes a throwaway
//!   standby for tests and benchmarks.
//! * [`Timeline`]: feeds by push (bounded inboxes), pull (k-way merge of
//!   outboxes) or hybrid (push for ordinary accounts, pull for celebrities),
//!   asynchronous fan-out through a bounded queue, cursor pagination.
//! * [`TieredStore`]: hot/cold tiering by age and read frequency, reads
//!   transparent across tiers, crash-safe migration; [`FileColdTier`] is a
//!   checksummed append-only cold tier.
//! * [`OrderTables`]: a heterogeneous index table — orders by buyer mirrored
//!   asynchronously to a seller-sharded copy, with reconciliation.
//! * `PgLookup` (feature `postgres`): a read-only key → value lookup on any
//!   table or view with validated, quoted identifiers and a bound key — the
//!   read side of a read-through cache (kuai-server's `--read-through`).
//! * `PgShardedTable` (feature `postgres`): one table across N schemas,
//!   routed by a `kuai-shard` partitioner, cross-shard count and deep pages
//!   through its scatter-gather.
//! * [`Modules`]: vertical split by module — one router (one database) per
//!   business module.
//! * [`Snowflake`]: time + node + sequence ids, monotonic per node even when
//!   the clock goes backwards.
//!
//! The guide, including static/dynamic separation, is `docs/store.md`.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use std::sync::Arc;
//! use std::time::Duration;
//! use kuai_core::ManualClock;
//! use kuai_store::{Consistency, EmbeddedCluster, Router, Session, Target, TokenSigner};
//!
//! let clock = ManualClock::new();
//! let cluster = EmbeddedCluster::<&str, u64>::new(Arc::new(clock.clone()));
//! let replica = cluster.add_replica("replica-1", Duration::from_millis(50));
//! let router = Router::builder().rw_wait(Duration::ZERO).build(cluster.primary(), vec![replica]);
//! let signer = TokenSigner::new(b"server secret, 16+ bytes").unwrap();
//!
//! // Request 1 writes and hands the client a signed token.
//! let mut session = Session::new();
//! router.write(&mut session, |p| async move { p.put("likes", 1).await }).await.unwrap();
//! let token = signer.encode(&session);
//!
//! // Request 2 (immediately after) reads its own write: the replica is 50 ms
//! // behind, so the router sends the read to the primary.
//! let mut session = signer.decode(&token).unwrap();
//! let read = router
//!     .read(&mut session, Consistency::ReadYourWrites, |n| async move { n.get(&"likes").await })
//!     .await
//!     .unwrap();
//! assert_eq!((read.value, read.target), (Some(1), Target::Primary));
//! # }
//! ```
//!
//! # Feature flags
//!
//! * `postgres` — the PostgreSQL backend (tokio-postgres): `PgNode`,
//!   `PgKvTable`, `PgLookup`, `PgShardedTable`, `pg_standby`. Its tests need a server at
//!   127.0.0.1:5432 (database `test`, trust auth) that accepts replication
//!   connections from 127.0.0.1 (for the hot standby they create).
#![forbid(unsafe_code)]

mod cold_file;
mod embedded;
mod error;
mod fanout;
mod index_table;
mod merge;
#[cfg(feature = "postgres")]
mod pg_lookup;
#[cfg(feature = "postgres")]
pub mod pg_standby;
#[cfg(feature = "postgres")]
mod postgres;
mod router;
mod session;
#[cfg(feature = "postgres")]
mod sharded_pg;
mod snowflake;
mod sync;
mod tiering;
mod timeline;
mod vertical;

pub use cold_file::{FileColdTier, MAX_VALUE as MAX_COLD_VALUE};
pub use embedded::{EmbeddedCluster, EmbeddedNode};
pub use error::StoreError;
pub use index_table::{Order, OrderTables, ReconcileReport};
pub use kuai_core::Error;
#[cfg(feature = "postgres")]
pub use pg_lookup::{PgLookup, check_identifier as check_pg_identifier};
#[cfg(feature = "postgres")]
pub use postgres::{PgKvTable, PgNode, pg_error};
pub use router::{
    Consistency, MonitorHandle, Node, OutReason, ReplicaStatus, Routed, Router, RouterBuilder,
    RouterStats, RoutingPolicy, Target,
};
pub use session::{LogPosition, Session, TokenSigner};
#[cfg(feature = "postgres")]
pub use sharded_pg::{MAX_PAGE_DEPTH, PgShard, PgShardedTable, ShardedRow};
pub use snowflake::{IdParts, MAX_NODE, Snowflake};
pub use tiering::{
    ColdTier, CrashAfter, MemoryColdTier, MigrationPolicy, MigrationReport, TieredStore,
};
pub use timeline::{
    Cursor, FanoutStrategy, Page, Timeline, TimelineBuilder, TimelineEntry, TimelineStats,
};
pub use vertical::{Modules, ModulesBuilder};
