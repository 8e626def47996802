//! `kuai-zerocopy`: mmap, sendfile/splice/tee and `Bytes` plumbing that never
//! copies needlessly.
//!
//! A server that reads a file into a buffer and writes the buffer to a
//! socket moves every byte through the CPU twice (kernel → user → kernel).
//! This crate gives the ways around that, each as a small safe API:
//!
//! * [`MappedFile`]: a read-only `mmap` handed out as [`bytes::Bytes`]
//!   slices that keep the mapping alive (slicing is a refcount bump), with
//!   `madvise` hints, empty-file handling and a documented
//!   [`TruncationGuard`] against the `SIGBUS` of a file shrinking under its
//!   mapping.
//! * [`MappedAppender`]: an append-only, pre-allocated, mapped writer with
//!   explicit `flush` (`msync`) semantics and growth by remapping — the base
//!   of a durable log.
//! * [`transfer`]: `sendfile` (file → socket), `splice` through a pipe
//!   (proxy relay), `tee` (one stream to two sinks) and vectored writes of
//!   `Bytes` chains; every zero-copy path detects kernel support at run time
//!   and falls back to `read`/`write`, and reports in [`Progress`] /
//!   [`Counters`] how many bytes went each way.
//!
//! Use it for serving files or large blobs, proxying, and logs. For small
//! messages a plain `write` is as fast.
//!
//! Failures are typed ([`ZeroCopyError`]): missing file, directory,
//! permission denied, FIFO/device, a peer closing mid-transfer (`EPIPE`,
//! `ECONNRESET`, with the partial progress), never a panic and never a death
//! by `SIGPIPE` ([`ignore_sigpipe`]).
//!
//! ```
//! use std::io::Read;
//! use bytes::Bytes;
//! use kuai_zerocopy::{transfer::Transfer, Counters, MappedFile};
//!
//! # let path = std::env::temp_dir().join(format!("kuai-zc-doc-lib-{}", std::process::id()));
//! std::fs::write(&path, b"hello, zero copy")?;
//!
//! // A file served with sendfile: the counters prove no byte was copied.
//! let counters = Counters::new();
//! let transfer = Transfer::new().counters(counters.clone());
//! let (mut rx, tx) = std::os::unix::net::UnixStream::pair()?;
//! let file = kuai_zerocopy::open_regular(&path)?;
//! transfer.file_to_socket(&file, 0, 16, &tx)?;
//! assert_eq!(counters.zero_copy(), 16);
//!
//! // A header plus a mapped body, written with one vectored call.
//! let body = MappedFile::open(&path)?.slice(7..)?;
//! transfer.write_all_bytes(&tx, &[Bytes::from_static(b"> "), body])?;
//! drop(tx);
//! let mut got = String::new();
//! rx.read_to_string(&mut got)?;
//! assert_eq!(got, "hello, zero copy> zero copy");
//! # std::fs::remove_file(&path)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Feature flags
//!
//! * `tokio`: `*_async` methods on [`transfer::Transfer`] for tokio
//!   sockets (`file_to_socket_async`, `relay_async`, `tee_async`,
//!   `write_all_bytes_async`) that wait for readiness instead of blocking or
//!   spinning.
//!
//! Linux only (it is built on Linux system calls).
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod error;
mod fd_io;
mod mapped_appender;
mod mapped_file;
mod progress;
mod regular_file;
mod sigpipe;
pub mod transfer;
#[cfg(feature = "tokio")]
mod transfer_async;

pub use error::{Result, ZeroCopyError};
pub use kuai_core::Error;
pub use mapped_appender::{AppenderOptions, MappedAppender};
pub use mapped_file::{Advice, MappedFile, MappedFileOptions, TruncationGuard, truncate_locked};
pub use progress::{Counters, Progress};
pub use regular_file::open_regular;
pub use sigpipe::ignore_sigpipe;
#[cfg(feature = "tokio")]
pub use transfer_async::AsyncStream;
