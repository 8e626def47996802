//! `kuai-lockfree`: CAS-based lock-free structures with epoch reclamation.
//!
//! The first technique of the seed article: take the lock off the hot path.
//! Every structure here coordinates threads with atomic compare-and-swap
//! instead of a mutex, and reclaims unlinked nodes with
//! [crossbeam-epoch](https://docs.rs/crossbeam-epoch), so no node leaks and
//! no thread reads freed memory.
//!
//! | type | what | use it for |
//! |---|---|---|
//! | [`List`] | the seed's singly linked list: `push_front`, `pop_front`, iteration under a [`Guard`] | a shared list many threads prepend to while others read |
//! | [`Stack`] | Treiber stack | free lists, LIFO work piles |
//! | [`Queue`] | unbounded MPMC queue: a Michael–Scott list of array segments claimed by fetch-and-add; implements [`kuai_core::TryQueue`] | unbounded hand-off between threads |
//! | [`ArrayQueue`] | bounded MPMC ring (Vyukov sequence numbers), implements [`kuai_core::TryQueue`] | bounded buffers with back-pressure |
//! | [`SkipList`] | ordered map (Harris–Michael marked pointers on every level) | ordered indexes: get, insert, remove, range scans |
//! | [`ShardedCounter`] | cache-padded per-thread shards | statistics with no contended cache line |
//!
//! **When to use it:** when a lock is contended on the hot path, or a thread
//! must never wait for a descheduled lock holder. An uncontended mutex is
//! cheap; the wins here come from hot paths designed to do as little as
//! possible — e.g. [`List::push_front`] and [`Stack::push`] do not even pin
//! the epoch (see the `treiber` module for why that is sound).
//!
//! ```
//! use std::sync::Arc;
//! use kuai_lockfree::{ArrayQueue, Queue, SkipList};
//!
//! let q = Arc::new(Queue::new());
//! let producer = {
//!     let q = Arc::clone(&q);
//!     std::thread::spawn(move || (0..1000).for_each(|i| q.push(i)))
//! };
//! producer.join().unwrap();
//! assert_eq!(q.pop(), Some(0));
//!
//! let ring = ArrayQueue::new(2)?;
//! ring.push(1).unwrap();
//! ring.push(2).unwrap();
//! assert_eq!(ring.push(3), Err(3)); // full: the value comes back
//!
//! let index = SkipList::new();
//! index.insert(3, "c");
//! index.insert(1, "a");
//! let guard = kuai_lockfree::pin();
//! let keys: Vec<i32> = index.range(.., &guard).map(|(k, _)| *k).collect();
//! assert_eq!(keys, [1, 3]);
//! # Ok::<(), kuai_lockfree::LockfreeError>(())
//! ```
//!
//! # Feature flags
//!
//! None. Under `RUSTFLAGS="--cfg kuai_loom"` the atomics come from
//! [loom](https://docs.rs/loom) (see `tests/loom.rs`) and reclamation is
//! replaced by a leaking stand-in, because loom cannot see
//! crossbeam-epoch's own atomics.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod array_queue;
mod counter;
mod epoch;
mod error;
mod segmented_queue;
mod skiplist;
mod sync;
mod treiber;

pub use array_queue::ArrayQueue;
pub use counter::ShardedCounter;
pub use epoch::{Guard, pin};
pub use error::LockfreeError;
pub use segmented_queue::Queue;
pub use skiplist::{Range, SkipList};
pub use treiber::{Iter, List, Stack};

/// The shared error type (every [`LockfreeError`] converts into it).
pub use kuai_core::Error;
