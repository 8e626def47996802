//! `kuai-store`: Read/write splitting, hot/cold tiering, timelines and index tables over PostgreSQL.
//!
//! This crate is being built; see the project's issue tracker for its scope.
//! Today it only re-exports the shared error type it will use.
//!
//! ```
//! let _kind = kuai_store::Error::closed("not built yet").kind();
//! ```
#![forbid(unsafe_code)]

pub use kuai_core::Error;
