//! A read-only key → value lookup on any PostgreSQL table or view
//! (feature `postgres`): the read side of a read-through cache.
//!
//! [`PgLookup`] runs `SELECT "value" FROM "schema"."table" WHERE "key" = $1
//! LIMIT 1` on a [`PgNode`]. The three names are validated (plain
//! identifiers, `[A-Za-z_][A-Za-z0-9_$]*`, at most 63 bytes; the table may
//! be `schema.table`) **and** double-quoted, so they are taken as written
//! (case-sensitive) and can never splice SQL; the key is always a bound
//! parameter.
//!
//! Keys and values are bytes. On first use the statement is described once
//! to learn the column types: a `bytea` key is bound as bytes, a text-like
//! key (`text`, `varchar`, `char`, `name`) as UTF-8 text (a key that is not
//! UTF-8 cannot match and reads as absent), any other key type as text cast
//! to that type (a key that does not parse as one, such as `abc` for an
//! `int8` column, reads as absent). A `bytea` value is returned as is, a
//! text-like value as its UTF-8 bytes, anything else as its text form
//! (`value::text`); a `NULL` value reads as absent.

use std::sync::OnceLock;

use kuai_core::Result;
use tokio_postgres::types::Type;

use crate::postgres::pg_error;
use crate::{PgNode, StoreError};

/// Longest identifier PostgreSQL keeps (`NAMEDATALEN - 1`).
const MAX_IDENT: usize = 63;

/// How the key parameter is bound and the value column read, learnt on
/// first use.
#[derive(Debug, Clone)]
struct Plan {
    sql: String,
    key: KeyKind,
    value_is_bytea: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Bytes,
    Text,
}

/// A validated, quoted `SELECT value FROM table WHERE key = $1` over a
/// [`PgNode`]. Cheap to share; the column types are learnt once.
///
/// ```
/// use kuai_store::PgLookup;
/// let l = PgLookup::new("public.users", "email", "profile").unwrap();
/// assert_eq!(l.base_sql(), r#"SELECT "profile" FROM "public"."users" WHERE "email" = $1 LIMIT 1"#);
/// assert!(PgLookup::new("users; DROP TABLE users", "k", "v").is_err());
/// ```
#[derive(Debug)]
pub struct PgLookup {
    table: String,
    key_column: String,
    value_column: String,
    plan: OnceLock<Plan>,
}

/// Checks that `name` is a plain identifier PostgreSQL would keep whole.
pub fn check_identifier(what: &str, name: &str) -> std::result::Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_IDENT
        && name.bytes().enumerate().all(|(i, b)| {
            b == b'_' || b.is_ascii_alphabetic() || (i > 0 && (b.is_ascii_digit() || b == b'$'))
        });
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidInput(format!(
            "{what} {name:?} is not a plain identifier ([A-Za-z_][A-Za-z0-9_$]*, at most {MAX_IDENT} bytes)"
        )))
    }
}

/// `name` double-quoted, inner quotes doubled (the SQL standard's escape).
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl PgLookup {
    /// A lookup of `value_column` by `key_column` in `table` (`name` or
    /// `schema.name`). Fails with [`StoreError::InvalidInput`] on anything
    /// that is not a plain identifier.
    pub fn new(
        table: &str,
        key_column: &str,
        value_column: &str,
    ) -> std::result::Result<Self, StoreError> {
        let parts: Vec<&str> = table.split('.').collect();
        if parts.len() > 2 {
            return Err(StoreError::InvalidInput(format!(
                "table {table:?} has more than one dot (expected name or schema.name)"
            )));
        }
        for p in &parts {
            check_identifier("table", p)?;
        }
        check_identifier("key column", key_column)?;
        check_identifier("value column", value_column)?;
        Ok(PgLookup {
            table: parts.iter().map(|p| quote(p)).collect::<Vec<_>>().join("."),
            key_column: quote(key_column),
            value_column: quote(value_column),
            plan: OnceLock::new(),
        })
    }

    /// The statement before the column types are known.
    pub fn base_sql(&self) -> String {
        self.sql(&self.value_column, "$1")
    }

    fn sql(&self, value: &str, param: &str) -> String {
        format!(
            "SELECT {value} FROM {} WHERE {} = {param} LIMIT 1",
            self.table, self.key_column
        )
    }

    /// Describes the statement on `node` (no rows are read): fails if the
    /// table or a column does not exist, or the node is unreachable.
    pub async fn check(&self, node: &PgNode) -> Result<()> {
        self.plan(node).await.map(|_| ())
    }

    async fn plan(&self, node: &PgNode) -> Result<&Plan> {
        if let Some(p) = self.plan.get() {
            return Ok(p);
        }
        let c = node.client().await?;
        let st = c
            .prepare(&self.base_sql())
            .await
            .map_err(|e| pg_error("describing the read-through query", e))?;
        let text_like = |t: &Type| {
            matches!(
                *t,
                Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN
            )
        };
        let key_ty = st.params().first().cloned().unwrap_or(Type::TEXT);
        let (key, param) = if key_ty == Type::BYTEA {
            (KeyKind::Bytes, "$1".to_string())
        } else if text_like(&key_ty) {
            (KeyKind::Text, "$1".to_string())
        } else {
            (
                KeyKind::Text,
                format!(
                    "CAST($1::text AS {}.{})",
                    quote(key_ty.schema()),
                    quote(key_ty.name())
                ),
            )
        };
        let val_ty = st
            .columns()
            .first()
            .map(|c| c.type_().clone())
            .unwrap_or(Type::TEXT);
        let value_is_bytea = val_ty == Type::BYTEA;
        let value = if value_is_bytea || text_like(&val_ty) {
            self.value_column.clone()
        } else {
            format!("{}::text", self.value_column)
        };
        let plan = Plan {
            sql: self.sql(&value, &param),
            key,
            value_is_bytea,
        };
        Ok(self.plan.get_or_init(|| plan))
    }

    /// The value stored under `key`, or `None` when there is no such row (or
    /// its value is `NULL`, or `key` cannot be a value of the key column).
    /// One round trip once the types are known.
    pub async fn get(&self, node: &PgNode, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let plan = self.plan(node).await?;
        let c = node.client().await?;
        let row = match plan.key {
            KeyKind::Bytes => c.query_typed_opt(&plan.sql, &[(&key, Type::BYTEA)]).await,
            KeyKind::Text => {
                let Ok(k) = std::str::from_utf8(key) else {
                    return Ok(None);
                };
                c.query_typed_opt(&plan.sql, &[(&k, Type::TEXT)]).await
            }
        };
        let row = match row {
            Ok(r) => r,
            // Class 22, data exception: the key is not a value of the key
            // column's type (`abc` for an int8), so no row can match.
            Err(e) if e.code().is_some_and(|c| c.code().starts_with("22")) => return Ok(None),
            Err(e) => return Err(pg_error("reading a key", e)),
        };
        let Some(row) = row else { return Ok(None) };
        if plan.value_is_bytea {
            row.try_get::<_, Option<Vec<u8>>>(0)
                .map_err(|e| pg_error("reading a value", e))
        } else {
            row.try_get::<_, Option<String>>(0)
                .map(|v| v.map(String::into_bytes))
                .map_err(|e| pg_error("reading a value", e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_validated_and_quoted() {
        let l = PgLookup::new("Kv_1", "k$", "v").unwrap();
        assert_eq!(
            l.base_sql(),
            r#"SELECT "v" FROM "Kv_1" WHERE "k$" = $1 LIMIT 1"#
        );
        for bad in [
            "",
            "1kv",
            "kv;drop",
            "kv-1",
            "k v",
            "\"kv\"",
            "a.b.c",
            ".kv",
            "kv.",
            "$kv",
            &"a".repeat(64),
        ] {
            assert!(PgLookup::new(bad, "k", "v").is_err(), "table {bad:?}");
            assert!(PgLookup::new("t", bad, "v").is_err(), "key {bad:?}");
            assert!(PgLookup::new("t", "k", bad).is_err(), "value {bad:?}");
        }
        assert!(PgLookup::new(&"a".repeat(63), "k", "v").is_ok());
    }

    #[test]
    fn quoting_doubles_quotes() {
        assert_eq!(quote(r#"a"b"#), r#""a""b""#);
    }
}
