//! `PgLookup` against a REAL PostgreSQL (127.0.0.1:5432, database `test`,
//! trust auth; `KUAI_STORE_PG_PORT` overrides the port). Fails loudly, saying
//! how to start it, when PostgreSQL is missing.
#![cfg(feature = "postgres")]

use kuai_store::{PgLookup, PgNode};

fn conn() -> String {
    let port = std::env::var("KUAI_STORE_PG_PORT").unwrap_or_else(|_| "5432".into());
    format!("host=127.0.0.1 port={port} user=postgres dbname=test connect_timeout=2")
}

async fn node() -> PgNode {
    let node = PgNode::new("pg", &conn()).unwrap_or_else(|e| panic!("{e}"));
    if let Err(e) = node.client().await {
        panic!(
            "\n\nPgLookup's tests need PostgreSQL at {} and could not connect: {e}\n\
             Start it (e.g. `pg_ctlcluster 15 main start` or `service postgresql start`) with \
             trust auth for user postgres and a database `test` (`createdb -U postgres test`).\n\n",
            conn()
        );
    }
    node
}

async fn sql(node: &PgNode, q: &str) {
    let c = node.client().await.unwrap_or_else(|e| panic!("{e}"));
    if let Err(e) = c.batch_execute(q).await {
        panic!("{q}: {e}");
    }
}

#[tokio::test]
async fn reads_text_bytea_and_typed_columns() {
    let node = node().await;
    sql(
        &node,
        "DROP TABLE IF EXISTS pgl_text, pgl_bytes, pgl_int; \
         CREATE TABLE pgl_text (k text PRIMARY KEY, v text); \
         INSERT INTO pgl_text VALUES ('a', 'alpha'), ('n', NULL); \
         CREATE TABLE pgl_bytes (k bytea PRIMARY KEY, v bytea NOT NULL); \
         INSERT INTO pgl_bytes VALUES ('\\x00ff'::bytea, '\\x0102'::bytea); \
         CREATE TABLE \"PglInt\" (id int8 PRIMARY KEY, n int4 NOT NULL); \
         INSERT INTO \"PglInt\" VALUES (42, 7);",
    )
    .await;

    let text = PgLookup::new("public.pgl_text", "k", "v").unwrap();
    text.check(&node).await.unwrap();
    assert_eq!(
        text.get(&node, b"a").await.unwrap(),
        Some(b"alpha".to_vec())
    );
    assert_eq!(text.get(&node, b"zz").await.unwrap(), None);
    assert_eq!(
        text.get(&node, b"n").await.unwrap(),
        None,
        "NULL reads as absent"
    );
    assert_eq!(text.get(&node, b"\xff").await.unwrap(), None, "not UTF-8");
    // The key is a bound parameter: SQL in it is just a key.
    assert_eq!(text.get(&node, b"a' OR '1'='1").await.unwrap(), None);

    let bytes = PgLookup::new("pgl_bytes", "k", "v").unwrap();
    assert_eq!(
        bytes.get(&node, b"\x00\xff").await.unwrap(),
        Some(vec![1, 2])
    );

    // Quoted identifiers are case-sensitive; non-text types go through text.
    let int = PgLookup::new("PglInt", "id", "n").unwrap();
    assert_eq!(int.get(&node, b"42").await.unwrap(), Some(b"7".to_vec()));
    assert_eq!(int.get(&node, b"43").await.unwrap(), None);
    assert_eq!(int.get(&node, b"abc").await.unwrap(), None, "not an int8");

    let missing = PgLookup::new("pgl_no_such_table", "k", "v").unwrap();
    assert!(missing.check(&node).await.is_err());
    let bad_col = PgLookup::new("pgl_text", "k", "no_such_column").unwrap();
    assert!(bad_col.check(&node).await.is_err());

    sql(&node, "DROP TABLE pgl_text, pgl_bytes, \"PglInt\"").await;
}
