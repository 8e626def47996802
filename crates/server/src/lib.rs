//! `kuai-server`: a Redis-protocol (RESP2/RESP3) key-value server built only
//! on the `kuai` facade. It is the full-stack showcase; it is being built and
//! today only proves that the facade with every feature compiles.
//!
//! ```
//! assert!(kuai_server::facade_features_compile());
//! ```
#![forbid(unsafe_code)]

/// Whether the facade with `full` compiled into this crate (it did, if this
/// runs).
pub fn facade_features_compile() -> bool {
    let _ = kuai::core::ErrorKind::Timeout;
    true
}
