//! A connection-pool [`Manager`] for PostgreSQL (feature `postgres`).

use std::fmt;

use kuai_core::{Error, Manager, Result};
use tokio_postgres::{Client, Config, NoTls};

/// Opens PostgreSQL connections (`tokio-postgres`, no TLS) for a
/// [`ConnPool`](crate::ConnPool).
///
/// Each connection's I/O task is spawned on the current tokio runtime. The
/// health check is an empty simple query; a client whose connection task
/// has ended (`Client::is_closed`) is reported broken.
#[derive(Clone)]
pub struct PostgresManager {
    config: Config,
}

impl fmt::Debug for PostgresManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresManager")
            .field("hosts", &self.config.get_hosts())
            .field("dbname", &self.config.get_dbname())
            .field("user", &self.config.get_user())
            .finish()
    }
}

impl PostgresManager {
    /// A manager for a connection string, e.g.
    /// `host=127.0.0.1 port=5432 dbname=test user=postgres`.
    pub fn new(params: &str) -> Result<Self> {
        let config: Config = params
            .parse()
            .map_err(|e| Error::invalid_input(format!("bad postgres config: {e}")))?;
        Ok(PostgresManager { config })
    }

    /// A manager for an already built `tokio_postgres::Config`.
    pub fn from_config(config: Config) -> Self {
        PostgresManager { config }
    }
}

impl Manager for PostgresManager {
    type Resource = Client;

    async fn connect(&self) -> Result<Client> {
        let (client, connection) = self
            .config
            .connect(NoTls)
            .await
            .map_err(|e| Error::backend("postgres connect", e))?;
        // The connection task ends when the server closes the socket; the
        // client then reports `is_closed()`.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    async fn check(&self, client: &mut Client) -> Result<()> {
        client
            .simple_query("")
            .await
            .map(|_| ())
            .map_err(|e| Error::backend("postgres health check", e))
    }

    fn is_broken(&self, client: &Client) -> bool {
        client.is_closed()
    }
}
