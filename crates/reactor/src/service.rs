//! The request → response handler a server runs, and panic containment.

use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::pin;
use std::task::Poll;

use bytes::Bytes;

/// A framed request → response handler.
///
/// Each I/O thread builds its own instance from the factory given to
/// [`ServerBuilder::serve`](crate::ServerBuilder::serve), so a service may
/// hold per-thread state in `Cell`/`RefCell` without locks: it is never
/// shared across threads and its futures need not be `Send`.
///
/// Returning `Err` sends an error frame (the connection stays open). A panic
/// inside `call` or its future kills only that request: the client gets an
/// error frame and the thread keeps serving.
pub trait Service: 'static {
    /// Handles one request frame.
    fn call(&self, request: Bytes) -> impl Future<Output = Result<Bytes, kuai_core::Error>>;
}

/// A [`Service`] made from a closure returning a future; see [`service_fn`].
#[derive(Clone, Copy)]
pub struct ServiceFn<F> {
    f: F,
}

impl<F> fmt::Debug for ServiceFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceFn").finish_non_exhaustive()
    }
}

/// Wraps `f: Fn(Bytes) -> impl Future<Output = Result<Bytes, Error>>` as a [`Service`].
///
/// ```
/// use kuai_reactor::{service_fn, Service};
/// let echo = service_fn(|req| async move { Ok(req) });
/// # let _ = &echo;
/// ```
pub fn service_fn<F, Fut>(f: F) -> ServiceFn<F>
where
    F: Fn(Bytes) -> Fut + 'static,
    Fut: Future<Output = Result<Bytes, kuai_core::Error>>,
{
    ServiceFn { f }
}

impl<F, Fut> Service for ServiceFn<F>
where
    F: Fn(Bytes) -> Fut + 'static,
    Fut: Future<Output = Result<Bytes, kuai_core::Error>>,
{
    #[inline]
    fn call(&self, request: Bytes) -> impl Future<Output = Result<Bytes, kuai_core::Error>> {
        (self.f)(request)
    }
}

impl<S: Service + ?Sized> Service for std::rc::Rc<S> {
    fn call(&self, request: Bytes) -> impl Future<Output = Result<Bytes, kuai_core::Error>> {
        (**self).call(request)
    }
}

impl<S: Service + ?Sized> Service for std::sync::Arc<S> {
    fn call(&self, request: Bytes) -> impl Future<Output = Result<Bytes, kuai_core::Error>> {
        (**self).call(request)
    }
}

/// The outcome of one guarded call: the handler's result, or `Err(())` if it
/// panicked.
pub(crate) type Guarded = Result<Result<Bytes, kuai_core::Error>, ()>;

/// Calls `svc` and polls its future inline (no task spawn, no allocation),
/// turning a panic anywhere in the handler into `Err(())`.
#[inline]
pub(crate) async fn call_guarded<S: Service>(svc: &S, request: Bytes) -> Guarded {
    let Ok(fut) = catch_unwind(AssertUnwindSafe(|| svc.call(request))) else {
        return Err(());
    };
    catch_unwind_future(fut).await
}

/// Polls `fut` to completion, turning a panic inside it into `Err(())`.
pub(crate) async fn catch_unwind_future<F: Future>(fut: F) -> Result<F::Output, ()> {
    let mut fut = pin!(fut);
    std::future::poll_fn(
        move |cx| match catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
            Ok(Poll::Ready(out)) => Poll::Ready(Ok(out)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(_) => Poll::Ready(Err(())),
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: Future>(f: F) -> F::Output {
        let rt = tokio::runtime::Builder::new_current_thread().build();
        match rt {
            Ok(rt) => rt.block_on(f),
            Err(e) => panic!("runtime: {e}"),
        }
    }

    #[test]
    fn panics_in_call_or_future_are_contained() {
        let svc = service_fn(|req: Bytes| async move {
            if req.as_ref() == b"boom" {
                panic!("handler bug");
            }
            Ok(req)
        });
        assert!(
            matches!(block_on(call_guarded(&svc, Bytes::from_static(b"ok"))), Ok(Ok(b)) if b == "ok")
        );
        assert!(block_on(call_guarded(&svc, Bytes::from_static(b"boom"))).is_err());

        struct PanicsEagerly;
        impl Service for PanicsEagerly {
            #[allow(unreachable_code)]
            fn call(&self, _: Bytes) -> impl Future<Output = Result<Bytes, kuai_core::Error>> {
                panic!("before the future exists");
                std::future::ready(Ok(Bytes::new()))
            }
        }
        assert!(block_on(call_guarded(&PanicsEagerly, Bytes::new())).is_err());
        let rc = std::rc::Rc::new(svc);
        assert!(block_on(call_guarded(&rc, Bytes::from_static(b"x"))).is_ok());
    }
}
