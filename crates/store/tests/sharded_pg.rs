//! A table split across four PostgreSQL schemas (`test_0`…`test_3`, created
//! here) routed by `kuai-shard`'s jump hash, with cross-shard count, order
//! and deep pagination through its scatter-gather. Needs PostgreSQL at
//! 127.0.0.1:5432 (or `KUAI_STORE_PG_PORT`), database `test`, trust auth.
#![cfg(feature = "postgres")]

use std::sync::Arc;
use std::time::Duration;

use kuai_core::{ManualClock, Partitioner};
use kuai_shard::JumpHash;
use kuai_store::pg_standby::PrimaryAddr;
use kuai_store::{PgNode, PgShard, PgShardedTable, ShardedRow, Snowflake};

#[test]
fn cross_shard_count_order_and_deep_pages() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    rt.block_on(async {
        let addr = PrimaryAddr::default();
        let node = Arc::new(
            PgNode::with_connections("pg", &addr.conn_string(), 4).unwrap_or_else(|e| panic!("{e}")),
        );
        if let Err(e) = node.client().await {
            panic!(
                "\n\nkuai-store's sharded-table test needs PostgreSQL at {}:{} (database {}, user {}, trust auth): {e}\n\
                 Start it, e.g. `pg_ctlcluster 15 main start`.\n",
                addr.host, addr.port, addr.dbname, addr.user
            );
        }
        let shards: Vec<PgShard> = (0..4)
            .map(|i| PgShard { node: node.clone(), schema: format!("test_{i}") })
            .collect();
        let jump = JumpHash::new(4).unwrap_or_else(|e| panic!("{e}"));
        let name = format!("kuai_orders_{}", std::process::id());
        let table = PgShardedTable::new(&name, shards, jump, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("{e}"));
        table.create().await.unwrap_or_else(|e| panic!("{e}"));

        let ids = Snowflake::new(3, Arc::new(ManualClock::new())).unwrap_or_else(|e| panic!("{e}"));
        let mut all = Vec::new();
        for n in 0..400i64 {
            let row = ShardedRow {
                id: ids.next_id().unwrap_or_else(|e| panic!("{e}")) as i64,
                owner: (n * 7919) % 53,
                created_ms: 1_700_000_000_000 + n,
                body: format!("order {n}"),
            };
            table.insert(&row).await.unwrap_or_else(|e| panic!("{e}"));
            all.push(row);
        }
        all.sort();

        assert_eq!(table.count().await.ok(), Some(400));
        // Rows really are spread: every schema holds some.
        let c = node.client().await.unwrap_or_else(|e| panic!("{e}"));
        for i in 0..4 {
            let r = c
                .query_one(&format!("SELECT count(*) FROM test_{i}.{name}"), &[])
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let n: i64 = r.get(0);
            assert!(n > 0, "shard {i} is empty");
        }
        // One owner: one shard, all of its rows.
        let owner_rows = table.by_owner(5, 1000).await.unwrap_or_else(|e| panic!("{e}"));
        let want: Vec<&ShardedRow> = all.iter().filter(|r| r.owner == 5).collect();
        assert_eq!(owner_rows.iter().collect::<Vec<_>>(), want);
        assert_eq!(table.shard_of(5), JumpHash::new(4).map(|j| j.partition(&5u64) as usize).unwrap_or(9));
        // Offset pages, shallow and deep.
        for (offset, limit) in [(0, 10), (137, 25), (390, 50)] {
            let page = table.page(offset, limit).await.unwrap_or_else(|e| panic!("{e}"));
            let end = (offset + limit).min(all.len());
            assert_eq!(page, all[offset..end].to_vec(), "offset {offset} limit {limit}");
        }
        assert!(table.page(kuai_store::MAX_PAGE_DEPTH, 1).await.is_err(), "too deep: refused");
        // Keyset pages walk everything exactly once.
        let mut walked = Vec::new();
        let mut after = i64::MIN;
        loop {
            let page = table.page_after(after, 64).await.unwrap_or_else(|e| panic!("{e}"));
            let Some(last) = page.last() else { break };
            after = last.id;
            walked.extend(page);
        }
        assert_eq!(walked, all);
        table.drop_tables().await.unwrap_or_else(|e| panic!("{e}"));
    });
}
