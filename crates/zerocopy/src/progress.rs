//! How many bytes went through the zero-copy path and how many were copied
//! through user space: per call ([`Progress`]) and accumulated ([`Counters`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes moved by one call, split by path.
///
/// * `zero_copy`: bytes that never entered user space (`sendfile`, `splice`,
///   `tee`).
/// * `copied`: bytes written from user memory (`read`+`write` fallbacks,
///   `writev` of [`bytes::Bytes`], `mmap`+`write`). These avoid user-space
///   concatenation but the kernel still copies them into the socket buffer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Progress {
    /// Bytes moved kernel-to-kernel.
    pub zero_copy: u64,
    /// Bytes moved from a user-space buffer.
    pub copied: u64,
}

impl Progress {
    /// All bytes moved.
    pub fn total(&self) -> u64 {
        self.zero_copy + self.copied
    }

    /// Whether every byte took the zero-copy path (vacuously true for zero bytes).
    pub fn all_zero_copy(&self) -> bool {
        self.copied == 0
    }
}

impl std::ops::AddAssign for Progress {
    fn add_assign(&mut self, rhs: Progress) {
        self.zero_copy += rhs.zero_copy;
        self.copied += rhs.copied;
    }
}

impl std::ops::Add for Progress {
    type Output = Progress;
    fn add(mut self, rhs: Progress) -> Progress {
        self += rhs;
        self
    }
}

/// Shared, thread-safe totals of [`Progress`] across many calls (cheap to
/// clone: clones share the same totals).
///
/// Hand one to [`Transfer::counters`](crate::transfer::Transfer::counters);
/// tests read it to assert which path was taken, services export it as a
/// metric.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    inner: Arc<CounterCells>,
}

#[derive(Debug, Default)]
struct CounterCells {
    zero_copy: AtomicU64,
    copied: AtomicU64,
    fallbacks: AtomicU64,
}

impl Counters {
    /// Fresh counters at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one call's progress.
    pub fn add(&self, p: Progress) {
        if p.zero_copy > 0 {
            self.inner
                .zero_copy
                .fetch_add(p.zero_copy, Ordering::Relaxed);
        }
        if p.copied > 0 {
            self.inner.copied.fetch_add(p.copied, Ordering::Relaxed);
        }
    }

    /// Notes that a zero-copy call was refused by the kernel and the copy
    /// loop took over.
    pub(crate) fn add_fallback(&self) {
        self.inner.fallbacks.fetch_add(1, Ordering::Relaxed);
    }

    /// Bytes moved kernel-to-kernel so far.
    pub fn zero_copy(&self) -> u64 {
        self.inner.zero_copy.load(Ordering::Relaxed)
    }

    /// Bytes moved from user-space buffers so far.
    pub fn copied(&self) -> u64 {
        self.inner.copied.load(Ordering::Relaxed)
    }

    /// How many transfers fell back from a zero-copy call to the copy loop.
    pub fn fallbacks(&self) -> u64 {
        self.inner.fallbacks.load(Ordering::Relaxed)
    }

    /// Both totals as one [`Progress`].
    pub fn snapshot(&self) -> Progress {
        Progress {
            zero_copy: self.zero_copy(),
            copied: self.copied(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_accumulate_across_clones() {
        let c = Counters::new();
        let c2 = c.clone();
        c.add(Progress {
            zero_copy: 3,
            copied: 0,
        });
        c2.add(Progress {
            zero_copy: 1,
            copied: 2,
        });
        assert_eq!(
            c.snapshot(),
            Progress {
                zero_copy: 4,
                copied: 2
            }
        );
        assert_eq!(c.snapshot().total(), 6);
        assert!(!c.snapshot().all_zero_copy());
    }
}
