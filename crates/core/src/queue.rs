//! A bounded, non-blocking queue interface.

use std::fmt;
use std::sync::Arc;

/// Why a push failed; the value is handed back, never dropped.
#[derive(PartialEq, Eq, Clone, Copy)]
pub enum PushError<T> {
    /// The queue is at capacity. Shed, retry later, or apply back-pressure.
    Full(T),
    /// The queue was closed; no push will ever succeed again.
    Closed(T),
}

impl<T> PushError<T> {
    /// Takes the rejected value back.
    pub fn into_inner(self) -> T {
        match self {
            PushError::Full(v) | PushError::Closed(v) => v,
        }
    }

    /// Converts into the shared error kind (`Overloaded` or `Closed`),
    /// dropping the value.
    pub fn into_error(self) -> crate::Error {
        match self {
            PushError::Full(_) => crate::Error::overloaded("queue is full"),
            PushError::Closed(_) => crate::Error::closed("queue is closed"),
        }
    }
}

impl<T> fmt::Debug for PushError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PushError::Full(_) => "Full(..)",
            PushError::Closed(_) => "Closed(..)",
        })
    }
}

impl<T> fmt::Display for PushError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PushError::Full(_) => "queue is full",
            PushError::Closed(_) => "queue is closed",
        })
    }
}

impl<T> std::error::Error for PushError<T> {}

/// A bounded multi-producer multi-consumer queue that never blocks.
///
/// `kuai-lockfree`'s `ArrayQueue` and `kuai-queue`'s buffer queue implement
/// it; pools, the reactor and the queue crate's broker build on it. Blocking
/// and async waiting are layered on top by the queue crate.
pub trait TryQueue<T>: Send + Sync {
    /// Pushes `value`, or hands it back when full or closed.
    fn try_push(&self, value: T) -> Result<(), PushError<T>>;

    /// Pops the oldest value, or `None` when empty.
    fn try_pop(&self) -> Option<T>;

    /// The bound, or `None` for an unbounded queue.
    fn capacity(&self) -> Option<usize>;

    /// The number of queued values (a snapshot under concurrency).
    fn len(&self) -> usize;

    /// Whether `len() == 0`.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T, Q: TryQueue<T> + ?Sized> TryQueue<T> for Arc<Q> {
    fn try_push(&self, value: T) -> Result<(), PushError<T>> {
        (**self).try_push(value)
    }
    fn try_pop(&self) -> Option<T> {
        (**self).try_pop()
    }
    fn capacity(&self) -> Option<usize> {
        (**self).capacity()
    }
    fn len(&self) -> usize {
        (**self).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use std::collections::VecDeque;
    use std::sync::Mutex;

    struct Locked {
        cap: usize,
        q: Mutex<VecDeque<u32>>,
    }

    impl TryQueue<u32> for Locked {
        fn try_push(&self, value: u32) -> Result<(), PushError<u32>> {
            let Ok(mut q) = self.q.lock() else {
                return Err(PushError::Closed(value));
            };
            if q.len() >= self.cap {
                return Err(PushError::Full(value));
            }
            q.push_back(value);
            Ok(())
        }
        fn try_pop(&self) -> Option<u32> {
            self.q.lock().ok()?.pop_front()
        }
        fn capacity(&self) -> Option<usize> {
            Some(self.cap)
        }
        fn len(&self) -> usize {
            self.q.lock().map(|q| q.len()).unwrap_or(0)
        }
    }

    #[test]
    fn full_hands_the_value_back() {
        let q: Arc<dyn TryQueue<u32>> = Arc::new(Locked {
            cap: 1,
            q: Mutex::default(),
        });
        assert!(q.try_push(1).is_ok());
        let err = q.try_push(2).err();
        assert_eq!(err, Some(PushError::Full(2)));
        assert_eq!(
            err.map(|e| e.into_error().kind()),
            Some(ErrorKind::Overloaded)
        );
        assert_eq!(q.try_pop(), Some(1));
        assert!(q.is_empty());
        assert_eq!(PushError::Closed(7).into_inner(), 7);
    }
}
