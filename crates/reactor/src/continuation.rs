//! Continuation-passing combinators: `then`, `finally`, `on_timeout`.
//!
//! The seed's `req.Read().Then(handle).Then(write).Finally(cleanup)`, as
//! zero-allocation future adapters.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;

/// `then`, `finally` and `on_timeout` for every future.
///
/// ```
/// use std::time::Duration;
/// use kuai_reactor::Continuation;
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let cleaned = std::cell::Cell::new(false);
/// let out = async { 20 }
///     .then(|x| async move { x + 1 })
///     .then(|x| async move { x * 2 })
///     .finally(|| cleaned.set(true))
///     .await;
/// assert_eq!(out, 42);
/// assert!(cleaned.get());
///
/// let slow = std::future::pending::<&str>().on_timeout(Duration::from_millis(5), || "fallback");
/// assert_eq!(slow.await, "fallback");
/// # });
/// ```
pub trait Continuation: Future + Sized {
    /// When this future completes, feed its output to `f` and continue with
    /// the future `f` returns.
    fn then<F, B>(self, f: F) -> Then<Self, F, B>
    where
        F: FnOnce(Self::Output) -> B,
        B: Future,
    {
        Then {
            state: ThenState::First {
                fut: self,
                f: Some(f),
            },
        }
    }

    /// Run `f` once when this future completes *or is dropped before
    /// completing* (cancelled, timed out): cleanup that always happens.
    fn finally<F: FnOnce()>(self, f: F) -> Finally<Self, F> {
        Finally {
            fut: self,
            guard: FinallyGuard { f: Some(f) },
        }
    }

    /// If this future has not completed within `after` (counted from its
    /// first poll), drop it and return `f()` instead. Must be polled inside a
    /// tokio runtime with time enabled.
    fn on_timeout<F>(self, after: Duration, f: F) -> OnTimeout<Self, F>
    where
        F: FnOnce() -> Self::Output,
    {
        OnTimeout {
            fut: self,
            after,
            sleep: None,
            f: Some(f),
        }
    }
}

impl<T: Future> Continuation for T {}

pin_project! {
    #[project = ThenProj]
    enum ThenState<A, F, B> {
        First { #[pin] fut: A, f: Option<F> },
        Second { #[pin] fut: B },
        Done,
    }
}

pin_project! {
    /// The future returned by [`Continuation::then`].
    #[must_use = "futures do nothing unless polled"]
    pub struct Then<A, F, B> {
        #[pin]
        state: ThenState<A, F, B>,
    }
}

impl<A, F, B> std::fmt::Debug for Then<A, F, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let stage = match self.state {
            ThenState::First { .. } => "first",
            ThenState::Second { .. } => "second",
            ThenState::Done => "done",
        };
        f.debug_struct("Then").field("stage", &stage).finish()
    }
}

impl<A, F, B> Future for Then<A, F, B>
where
    A: Future,
    F: FnOnce(A::Output) -> B,
    B: Future,
{
    type Output = B::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<B::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                ThenProj::First { fut, f } => {
                    let out = ready!(fut.poll(cx));
                    let Some(f) = f.take() else {
                        panic!("Then polled after its continuation was taken");
                    };
                    let next = f(out);
                    state.set(ThenState::Second { fut: next });
                }
                ThenProj::Second { fut } => {
                    let out = ready!(fut.poll(cx));
                    state.set(ThenState::Done);
                    return Poll::Ready(out);
                }
                ThenProj::Done => panic!("Then polled after completion"),
            }
        }
    }
}

struct FinallyGuard<F: FnOnce()> {
    f: Option<F>,
}

impl<F: FnOnce()> Drop for FinallyGuard<F> {
    fn drop(&mut self) {
        if let Some(f) = self.f.take() {
            f();
        }
    }
}

pin_project! {
    /// The future returned by [`Continuation::finally`].
    #[must_use = "futures do nothing unless polled"]
    pub struct Finally<Fut, F: FnOnce()> {
        #[pin]
        fut: Fut,
        guard: FinallyGuard<F>,
    }
}

impl<Fut, F: FnOnce()> std::fmt::Debug for Finally<Fut, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Finally")
            .field("pending_cleanup", &self.guard.f.is_some())
            .finish()
    }
}

impl<Fut: Future, F: FnOnce()> Future for Finally<Fut, F> {
    type Output = Fut::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Fut::Output> {
        let this = self.project();
        let out = ready!(this.fut.poll(cx));
        if let Some(f) = this.guard.f.take() {
            f();
        }
        Poll::Ready(out)
    }
}

pin_project! {
    /// The future returned by [`Continuation::on_timeout`].
    #[must_use = "futures do nothing unless polled"]
    pub struct OnTimeout<Fut, F> {
        #[pin]
        fut: Fut,
        after: Duration,
        #[pin]
        sleep: Option<tokio::time::Sleep>,
        f: Option<F>,
    }
}

impl<Fut, F> std::fmt::Debug for OnTimeout<Fut, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnTimeout")
            .field("after", &self.after)
            .finish()
    }
}

impl<Fut, F> Future for OnTimeout<Fut, F>
where
    Fut: Future,
    F: FnOnce() -> Fut::Output,
{
    type Output = Fut::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Fut::Output> {
        let mut this = self.project();
        if let Poll::Ready(out) = this.fut.poll(cx) {
            return Poll::Ready(out);
        }
        // The timer starts at the first poll, inside the runtime.
        if this.sleep.is_none() {
            this.sleep.set(Some(tokio::time::sleep(*this.after)));
        }
        if let Some(sleep) = this.sleep.as_pin_mut() {
            ready!(sleep.poll(cx));
        }
        match this.f.take() {
            Some(f) => Poll::Ready(f()),
            None => panic!("OnTimeout polled after completion"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    fn rt() -> tokio::runtime::Runtime {
        match tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
        {
            Ok(rt) => rt,
            Err(e) => panic!("runtime: {e}"),
        }
    }

    #[test]
    fn finally_runs_on_completion_and_on_cancel() {
        let rt = rt();
        let runs = Rc::new(Cell::new(0));
        let r = Rc::clone(&runs);
        let out = rt.block_on(async { 1 }.finally(move || r.set(r.get() + 1)));
        assert_eq!((out, runs.get()), (1, 1));

        let r = Rc::clone(&runs);
        let cancelled = std::future::pending::<()>().finally(move || r.set(r.get() + 1));
        rt.block_on(async {
            cancelled.on_timeout(Duration::from_secs(1), || ()).await;
        });
        assert_eq!(runs.get(), 2, "cleanup ran exactly once on cancellation");
    }

    #[test]
    fn then_chains_and_error_flows_through() {
        let rt = rt();
        let out: Result<u32, String> = rt.block_on(
            async { Err::<u32, String>("read failed".into()) }
                .then(|r| async move { r.map(|x| x + 1) })
                .then(|r| async move { r.map_err(|e| format!("handled: {e}")) }),
        );
        assert_eq!(out, Err("handled: read failed".into()));
    }

    #[test]
    fn on_timeout_passes_fast_results_through() {
        let rt = rt();
        let fast = async { "fast" }.on_timeout(Duration::from_millis(1), || "slow");
        assert_eq!(rt.block_on(fast), "fast");
        let slow = async {
            tokio::time::sleep(Duration::from_secs(5))
                .then(|()| async { "done" })
                .on_timeout(Duration::from_secs(1), || "timed out")
                .await
        };
        assert_eq!(rt.block_on(slow), "timed out");
    }
}
