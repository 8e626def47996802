//! A connection-pool [`Manager`] for Redis (feature `redis`).

use std::fmt;
use std::ops::{Deref, DerefMut};

use kuai_core::{Error, Manager, Result};
use redis::aio::MultiplexedConnection;
use redis::{FromRedisValue, RedisError};

/// Opens Redis connections for a [`ConnPool`](crate::ConnPool).
///
/// Each pooled resource is one TCP connection ([`RedisConn`]). The health
/// check is a `PING`; a connection whose command failed at the connection
/// level (I/O error, dropped, unrecoverable) is reported broken and closed on
/// return.
#[derive(Clone)]
pub struct RedisManager {
    client: redis::Client,
}

impl fmt::Debug for RedisManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisManager")
            .field("addr", &self.client.get_connection_info().addr())
            .finish()
    }
}

impl RedisManager {
    /// A manager for `url` (e.g. `redis://127.0.0.1:6379`).
    pub fn new(url: &str) -> Result<Self> {
        let client = redis::Client::open(url)
            .map_err(|e| Error::invalid_input(format!("bad redis url {url:?}: {e}")))?;
        Ok(RedisManager { client })
    }
}

/// A pooled Redis connection that remembers connection-level failures.
pub struct RedisConn {
    conn: MultiplexedConnection,
    broken: bool,
}

impl RedisConn {
    /// Runs `cmd`; a connection-level error marks this connection broken,
    /// so the pool closes it instead of handing it out again.
    pub async fn query<T: FromRedisValue>(
        &mut self,
        cmd: &redis::Cmd,
    ) -> std::result::Result<T, RedisError> {
        let res = cmd.query_async(&mut self.conn).await;
        if let Err(e) = &res {
            if is_connection_error(e) {
                self.broken = true;
            }
        }
        res
    }

    /// Whether a connection-level error was seen on this connection.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Marks the connection broken (after an error seen through the raw
    /// connection).
    pub fn mark_broken(&mut self) {
        self.broken = true;
    }
}

impl Deref for RedisConn {
    type Target = MultiplexedConnection;
    fn deref(&self) -> &MultiplexedConnection {
        &self.conn
    }
}

impl DerefMut for RedisConn {
    fn deref_mut(&mut self) -> &mut MultiplexedConnection {
        &mut self.conn
    }
}

impl fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConn")
            .field("broken", &self.broken)
            .finish()
    }
}

fn is_connection_error(e: &RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error() || e.is_timeout()
}

fn backend(what: &str, e: RedisError) -> Error {
    if e.is_timeout() {
        Error::timeout(format!("redis {what}: {e}"))
    } else {
        Error::backend(format!("redis {what}"), e)
    }
}

impl Manager for RedisManager {
    type Resource = RedisConn;

    async fn connect(&self) -> Result<RedisConn> {
        let conn = self
            .client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| backend("connect", e))?;
        Ok(RedisConn {
            conn,
            broken: false,
        })
    }

    async fn check(&self, conn: &mut RedisConn) -> Result<()> {
        let pong: String = conn
            .query(&redis::cmd("PING"))
            .await
            .map_err(|e| backend("PING", e))?;
        if pong == "PONG" {
            Ok(())
        } else {
            conn.broken = true;
            Err(Error::corrupt(format!("redis PING answered {pong:?}")))
        }
    }

    fn is_broken(&self, conn: &RedisConn) -> bool {
        conn.broken
    }
}
