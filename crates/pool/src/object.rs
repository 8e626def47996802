//! `Pool<T>`: a pool of expensive-to-build objects with create/reset hooks,
//! an RAII guard, a bound on idle objects and optional prewarming.

use std::fmt;
use std::ops::{Deref, DerefMut};

use crate::error::{PoolError, PoolResult};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::sync::std_lock as lock;

type CreateFn<T> = Box<dyn Fn() -> T + Send + Sync>;
type ResetFn<T> = Box<dyn Fn(&mut T) + Send + Sync>;

/// Configures a [`Pool`].
pub struct PoolBuilder<T> {
    create: CreateFn<T>,
    reset: Option<ResetFn<T>>,
    max_idle: usize,
    prewarm: usize,
}

impl<T> fmt::Debug for PoolBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("max_idle", &self.max_idle)
            .field("prewarm", &self.prewarm)
            .field("reset", &self.reset.is_some())
            .finish()
    }
}

impl<T: Send> PoolBuilder<T> {
    /// Called on every object as it comes back, before it is pooled
    /// (clear a `Vec`, rewind a parser). Default: nothing.
    pub fn reset(mut self, reset: impl Fn(&mut T) + Send + Sync + 'static) -> Self {
        self.reset = Some(Box::new(reset));
        self
    }

    /// At most this many idle objects are kept; more are dropped on return
    /// (default 64; must be > 0).
    pub fn max_idle(mut self, n: usize) -> Self {
        self.max_idle = n;
        self
    }

    /// Builds this many objects up front (at most `max_idle`).
    pub fn prewarm(mut self, n: usize) -> Self {
        self.prewarm = n;
        self
    }

    /// Checks the configuration and builds the pool.
    pub fn build(self) -> PoolResult<Pool<T>> {
        if self.max_idle == 0 {
            return Err(PoolError::Config(
                "object pool: max_idle must be > 0".into(),
            ));
        }
        if self.prewarm > self.max_idle {
            return Err(PoolError::Config(format!(
                "object pool: prewarm ({}) > max_idle ({})",
                self.prewarm, self.max_idle
            )));
        }
        let pool = Pool {
            inner: Arc::new(Inner {
                create: self.create,
                reset: self.reset,
                idle: Mutex::new(Vec::with_capacity(self.max_idle.min(1024))),
                max_idle: self.max_idle,
                created: AtomicU64::new(0),
                reused: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
            }),
        };
        pool.prewarm(self.prewarm);
        Ok(pool)
    }
}

/// Counters of a [`Pool`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ObjectStats {
    /// Objects built by the create hook.
    pub created: u64,
    /// Checkouts served by an idle object.
    pub reused: u64,
    /// Objects dropped on return because `max_idle` were already idle (or
    /// discarded by the caller).
    pub dropped: u64,
    /// Objects idle in the pool now.
    pub idle: usize,
}

/// A pool of reusable `T`s.
///
/// ```
/// use kuai_pool::Pool;
/// let pool = Pool::builder(|| Vec::<u8>::with_capacity(1 << 16))
///     .reset(|v| v.clear())
///     .max_idle(8)
///     .build()?;
/// {
///     let mut v = pool.get();
///     v.extend_from_slice(b"scratch");
/// } // back in the pool, cleared
/// assert_eq!(pool.get().len(), 0);
/// assert_eq!(pool.stats().created, 1);
/// # Ok::<(), kuai_pool::PoolError>(())
/// ```
pub struct Pool<T> {
    inner: Arc<Inner<T>>,
}

struct Inner<T> {
    create: CreateFn<T>,
    reset: Option<ResetFn<T>>,
    idle: Mutex<Vec<T>>,
    max_idle: usize,
    created: AtomicU64,
    reused: AtomicU64,
    dropped: AtomicU64,
}

impl<T> Clone for Pool<T> {
    fn clone(&self) -> Self {
        Pool {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T: Send> Pool<T> {
    /// A builder whose objects are made by `create`.
    pub fn builder(create: impl Fn() -> T + Send + Sync + 'static) -> PoolBuilder<T> {
        PoolBuilder {
            create: Box::new(create),
            reset: None,
            max_idle: 64,
            prewarm: 0,
        }
    }

    /// A pool with default settings (`max_idle` 64, no reset hook).
    pub fn new(create: impl Fn() -> T + Send + Sync + 'static) -> Self {
        Pool {
            inner: Arc::new(Inner {
                create: Box::new(create),
                reset: None,
                idle: Mutex::new(Vec::new()),
                max_idle: 64,
                created: AtomicU64::new(0),
                reused: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
            }),
        }
    }

    /// An idle object, or a new one; it comes back when the guard drops.
    #[inline]
    pub fn get(&self) -> Pooled<'_, T> {
        Pooled {
            value: Some(self.inner.take()),
            home: ObjHome::Borrowed(&self.inner),
        }
    }

    /// Like [`get`](Self::get), but the guard keeps the pool alive and can
    /// move into a `'static` task or thread.
    pub fn get_owned(&self) -> Pooled<'static, T>
    where
        T: 'static,
    {
        Pooled {
            value: Some(self.inner.take()),
            home: ObjHome::Owned(Arc::clone(&self.inner)),
        }
    }

    /// Builds objects until `n` are idle (bounded by `max_idle`); returns
    /// how many were built.
    pub fn prewarm(&self, n: usize) -> usize {
        let target = n.min(self.inner.max_idle);
        let mut built = 0;
        while lock(&self.inner.idle).len() < target {
            let value = (self.inner.create)();
            self.inner.created.fetch_add(1, Ordering::Relaxed);
            let mut idle = lock(&self.inner.idle);
            if idle.len() >= target {
                break;
            }
            idle.push(value);
            built += 1;
        }
        built
    }

    /// The pool's counters.
    pub fn stats(&self) -> ObjectStats {
        ObjectStats {
            created: self.inner.created.load(Ordering::Relaxed),
            reused: self.inner.reused.load(Ordering::Relaxed),
            dropped: self.inner.dropped.load(Ordering::Relaxed),
            idle: lock(&self.inner.idle).len(),
        }
    }
}

impl<T> Inner<T> {
    #[inline]
    fn take(&self) -> T {
        let popped = lock(&self.idle).pop();
        match popped {
            Some(v) => {
                self.reused.fetch_add(1, Ordering::Relaxed);
                v
            }
            None => {
                self.created.fetch_add(1, Ordering::Relaxed);
                (self.create)()
            }
        }
    }

    #[inline]
    fn give_back(&self, mut value: T) {
        if let Some(reset) = &self.reset {
            reset(&mut value);
        }
        let mut idle = lock(&self.idle);
        if idle.len() < self.max_idle {
            idle.push(value);
        } else {
            drop(idle);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            drop(value);
        }
    }
}

impl<T: Send> fmt::Debug for Pool<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("max_idle", &self.inner.max_idle)
            .field("stats", &self.stats())
            .finish()
    }
}

enum ObjHome<'a, T> {
    Borrowed(&'a Inner<T>),
    Owned(Arc<Inner<T>>),
}

/// A checked-out object; derefs to `T` and returns to its [`Pool`] on drop.
pub struct Pooled<'a, T> {
    value: Option<T>,
    home: ObjHome<'a, T>,
}

impl<T> Pooled<'_, T> {
    /// Takes the object out of the pool for good.
    pub fn detach(mut self) -> T {
        match self.value.take() {
            Some(v) => v,
            None => unreachable!("a guard holds its value until dropped"),
        }
    }

    /// Drops the object instead of returning it (it is in a bad state).
    pub fn discard(mut self) {
        if self.value.take().is_some() {
            let inner = match &self.home {
                ObjHome::Borrowed(i) => *i,
                ObjHome::Owned(i) => &**i,
            };
            inner.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl<T> Deref for Pooled<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        match &self.value {
            Some(v) => v,
            None => unreachable!("a guard holds its value until dropped"),
        }
    }
}

impl<T> DerefMut for Pooled<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        match &mut self.value {
            Some(v) => v,
            None => unreachable!("a guard holds its value until dropped"),
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for Pooled<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Pooled").field(&self.value).finish()
    }
}

impl<T> Drop for Pooled<'_, T> {
    #[inline]
    fn drop(&mut self) {
        if let Some(v) = self.value.take() {
            match &self.home {
                ObjHome::Borrowed(inner) => inner.give_back(v),
                ObjHome::Owned(inner) => inner.give_back(v),
            }
        }
    }
}

#[cfg(all(test, not(kuai_loom)))]
mod tests {
    use super::*;

    #[test]
    fn reset_runs_and_max_idle_bounds_the_pool() {
        let pool = Pool::builder(|| vec![0u8; 4])
            .reset(|v| v.clear())
            .max_idle(2)
            .build();
        let Ok(pool) = pool else { panic!("valid") };
        let guards: Vec<_> = (0..3).map(|_| pool.get()).collect();
        drop(guards);
        let s = pool.stats();
        assert_eq!((s.created, s.idle, s.dropped), (3, 2, 1));
        assert!(pool.get().is_empty(), "reset cleared it");
        assert_eq!(pool.stats().reused, 1);
    }

    #[test]
    fn prewarm_and_detach_and_discard() {
        let pool = Pool::builder(String::new).max_idle(4).prewarm(3).build();
        let Ok(pool) = pool else { panic!("valid") };
        assert_eq!(pool.stats().idle, 3);
        let s = pool.get().detach();
        assert!(s.is_empty());
        pool.get().discard();
        assert_eq!(pool.stats().idle, 1);
        assert_eq!(pool.prewarm(10), 3);
    }

    #[test]
    fn owned_guards_cross_threads() {
        let pool = Pool::new(|| 5u64);
        let g = pool.get_owned();
        let v = std::thread::spawn(move || *g).join().unwrap_or(0);
        assert_eq!(v, 5);
        assert_eq!(pool.stats().idle, 1);
    }

    #[test]
    fn zero_max_idle_is_a_config_error() {
        assert!(matches!(
            Pool::builder(|| 1).max_idle(0).build(),
            Err(PoolError::Config(_))
        ));
        assert!(matches!(
            Pool::builder(|| 1).max_idle(1).prewarm(2).build(),
            Err(PoolError::Config(_))
        ));
    }
}
