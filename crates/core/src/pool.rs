//! How a pool creates, checks and recycles what it pools.

use std::future::Future;

use crate::Result;

/// Creates, health-checks and recycles pooled resources (connections).
///
/// `kuai-pool`'s connection pool is generic over a `Manager`; the Redis and
/// PostgreSQL managers live behind that crate's `redis` / `postgres` features.
///
/// The pool calls [`connect`](Manager::connect) to fill a slot,
/// [`is_broken`](Manager::is_broken) (cheap, synchronous) whenever a
/// connection comes back, [`recycle`](Manager::recycle) to reset it before
/// reuse, and [`check`](Manager::check) (a round trip, e.g. `PING`) on
/// checkout or in the background, as its health-check policy says.
pub trait Manager: Send + Sync {
    /// What is pooled.
    type Resource: Send;

    /// Opens a new resource.
    fn connect(&self) -> impl Future<Output = Result<Self::Resource>> + Send;

    /// A real health check (a round trip). An error means: discard it.
    fn check(&self, resource: &mut Self::Resource) -> impl Future<Output = Result<()>> + Send;

    /// A cheap synchronous test, done whenever a resource is returned:
    /// `true` means it must be closed, not reused. Defaults to `false`.
    fn is_broken(&self, resource: &Self::Resource) -> bool {
        let _ = resource;
        false
    }

    /// Resets a resource before it is handed out again. An error means:
    /// discard it. Defaults to doing nothing.
    fn recycle(&self, resource: &mut Self::Resource) -> Result<()> {
        let _ = resource;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::task::{Context, Poll, Waker};

    /// Hands out numbered "connections"; even numbers fail the health check.
    #[derive(Default)]
    struct Numbered(AtomicU32);

    impl Manager for Numbered {
        type Resource = u32;
        async fn connect(&self) -> Result<u32> {
            Ok(self.0.fetch_add(1, Ordering::Relaxed))
        }
        async fn check(&self, r: &mut u32) -> Result<()> {
            if *r % 2 == 0 {
                Err(Error::closed("even connections are dead"))
            } else {
                Ok(())
            }
        }
        fn is_broken(&self, r: &u32) -> bool {
            *r > 100
        }
    }

    fn ready<F: Future>(fut: F) -> F::Output {
        let mut fut = std::pin::pin!(fut);
        match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(v) => v,
            Poll::Pending => unreachable!("never pends"),
        }
    }

    #[test]
    fn manager_lifecycle() {
        let m = Numbered::default();
        let mut a = ready(m.connect()).unwrap_or(u32::MAX);
        let mut b = ready(m.connect()).unwrap_or(u32::MAX);
        assert_eq!((a, b), (0, 1));
        assert!(ready(m.check(&mut a)).is_err());
        assert!(ready(m.check(&mut b)).is_ok());
        assert!(m.recycle(&mut b).is_ok());
        assert!(!m.is_broken(&b));
        assert!(m.is_broken(&101));
    }
}
