//! The server's error type.

use crate::aof::ReplayError;

/// Why the server could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A bad setting.
    #[error("configuration: {0}")]
    Config(String),
    /// Binding or accepting failed.
    #[error("network: {0}")]
    Io(#[from] std::io::Error),
    /// The append-only file could not be replayed.
    #[error(transparent)]
    Replay(#[from] ReplayError),
}

impl From<ServerError> for kuai::core::Error {
    fn from(e: ServerError) -> Self {
        match e {
            ServerError::Config(m) => kuai::core::Error::invalid_input(m),
            ServerError::Io(io) => kuai::core::Error::backend("server I/O", io),
            ServerError::Replay(r @ ReplayError::Corrupt { .. }) => {
                kuai::core::Error::corrupt(r.to_string())
            }
            ServerError::Replay(ReplayError::Log(e)) => {
                kuai::core::Error::backend("append-only log", e)
            }
        }
    }
}
