//! Fan-out: N sub-requests at once under one deadline.
//!
//! Sequential calls cost the *sum* of their latencies; issued together they
//! cost the *maximum*. [`fan_out`] polls every leg on the caller's task (no
//! spawn, no `Send` bound), stops at the deadline or once the wanted number of
//! legs succeeded, and reports every leg's outcome — an error is never lost.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

/// When a [`fan_out`] is finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitFor {
    /// Every leg has an outcome, or the deadline passed (partial results:
    /// the unfinished legs are [`Leg::TimedOut`]).
    All,
    /// `k` legs succeeded (the rest are cancelled), or `k` can no longer be
    /// reached, or the deadline passed.
    Quorum(usize),
}

/// The outcome of one leg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leg<T, E> {
    /// The leg succeeded.
    Ok(T),
    /// The leg failed with its own error.
    Err(E),
    /// The deadline passed before the leg finished; it was dropped.
    TimedOut,
    /// The leg was dropped because the quorum was reached (or became unreachable).
    Cancelled,
}

impl<T, E> Leg<T, E> {
    /// The value, if the leg succeeded.
    pub fn ok(&self) -> Option<&T> {
        match self {
            Leg::Ok(v) => Some(v),
            _ => None,
        }
    }
}

/// Every leg's outcome, in the order the legs were given.
#[derive(Debug, Clone)]
pub struct FanOut<T, E> {
    /// One outcome per leg, in input order.
    pub legs: Vec<Leg<T, E>>,
    /// Wall time from start to return.
    pub elapsed: Duration,
    /// Whether the deadline cut the wait short.
    pub deadline_hit: bool,
}

impl<T, E> FanOut<T, E> {
    /// How many legs succeeded.
    pub fn succeeded(&self) -> usize {
        self.legs.iter().filter(|l| matches!(l, Leg::Ok(_))).count()
    }

    /// The successful values, in input order.
    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.legs.iter().filter_map(Leg::ok)
    }

    /// `(leg index, error)` for every failed leg.
    pub fn errors(&self) -> impl Iterator<Item = (usize, &E)> {
        self.legs.iter().enumerate().filter_map(|(i, l)| match l {
            Leg::Err(e) => Some((i, e)),
            _ => None,
        })
    }

    /// Whether every leg succeeded.
    pub fn all_ok(&self) -> bool {
        self.succeeded() == self.legs.len()
    }
}

/// Runs every leg concurrently on the current task and waits as `wait`
/// says, for at most `deadline`. Needs a tokio runtime with time enabled.
///
/// Every wake-up polls each unfinished leg, which suits the usual fan-out of
/// tens to a few hundred legs; legs are boxed once each.
///
/// ```
/// use std::time::Duration;
/// use kuai_reactor::{fan_out, Leg, WaitFor};
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
/// let legs = (1..=10u64).map(|i| async move {
///     tokio::time::sleep(Duration::from_millis(i * 10)).await;
///     if i == 3 { Err("leg 3 failed") } else { Ok(i) }
/// });
/// let out = fan_out(legs, Duration::from_millis(75), WaitFor::All).await;
/// assert_eq!(out.succeeded(), 6); // 1,2,4,5,6,7
/// assert_eq!(out.errors().next(), Some((2, &"leg 3 failed")));
/// assert!(matches!(out.legs[9], Leg::TimedOut));
/// assert!(out.deadline_hit);
/// # });
/// ```
pub async fn fan_out<I, F, T, E>(legs: I, deadline: Duration, wait: WaitFor) -> FanOut<T, E>
where
    I: IntoIterator<Item = F>,
    F: Future<Output = Result<T, E>>,
{
    let start = Instant::now();
    let mut pending: Vec<Option<Pin<Box<F>>>> =
        legs.into_iter().map(|f| Some(Box::pin(f))).collect();
    let n = pending.len();
    let mut outcomes: Vec<Option<Leg<T, E>>> = (0..n).map(|_| None).collect();
    let want = match wait {
        WaitFor::All => n,
        WaitFor::Quorum(k) => k.min(n),
    };
    let mut ok = 0usize;
    let mut done = 0usize;
    let mut timer = std::pin::pin!(tokio::time::sleep(deadline));
    let deadline_hit = std::future::poll_fn(|cx| {
        for (i, slot) in pending.iter_mut().enumerate() {
            let Some(fut) = slot else { continue };
            if let Poll::Ready(r) = fut.as_mut().poll(cx) {
                *slot = None;
                done += 1;
                outcomes[i] = Some(match r {
                    Ok(v) => {
                        ok += 1;
                        Leg::Ok(v)
                    }
                    Err(e) => Leg::Err(e),
                });
            }
        }
        let quorum = matches!(wait, WaitFor::Quorum(_));
        let reached = quorum && ok >= want;
        let unreachable = quorum && ok + (n - done) < want;
        if done == n || reached || unreachable {
            return Poll::Ready(false);
        }
        if timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(true);
        }
        Poll::Pending
    })
    .await;
    let leftover = if deadline_hit {
        Leg::TimedOut
    } else {
        Leg::Cancelled
    };
    drop(pending);
    let legs = outcomes
        .into_iter()
        .map(|o| o.unwrap_or_else(|| leftover.clone_marker()))
        .collect();
    FanOut {
        legs,
        elapsed: start.elapsed(),
        deadline_hit,
    }
}

impl<T, E> Leg<T, E> {
    /// Copies a `TimedOut`/`Cancelled` marker (never called on values).
    fn clone_marker(&self) -> Self {
        match self {
            Leg::TimedOut => Leg::TimedOut,
            _ => Leg::Cancelled,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    async fn leg(ms: u64, fail: bool) -> Result<u64, String> {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        if fail {
            Err(format!("leg {ms} failed"))
        } else {
            Ok(ms)
        }
    }

    #[test]
    fn total_is_max_not_sum() {
        let rt = rt();
        let out = rt.block_on(async {
            let t = tokio::time::Instant::now();
            let out = fan_out(
                (1..=10).map(|i| leg(i * 10, false)),
                Duration::from_secs(1),
                WaitFor::All,
            )
            .await;
            (out, t.elapsed())
        });
        assert!(out.0.all_ok());
        assert_eq!(out.1, Duration::from_millis(100));
        assert!(!out.0.deadline_hit);
        assert_eq!(
            out.0.values().copied().collect::<Vec<_>>(),
            (1..=10).map(|i| i * 10).collect::<Vec<_>>()
        );
    }

    #[test]
    fn quorum_returns_early_and_cancels_the_rest() {
        let rt = rt();
        let out = rt.block_on(fan_out(
            [
                leg(30, false),
                leg(10, true),
                leg(20, false),
                leg(500, false),
                leg(40, false),
            ],
            Duration::from_secs(1),
            WaitFor::Quorum(3),
        ));
        assert_eq!(out.succeeded(), 3);
        assert!(matches!(out.legs[1], Leg::Err(_)));
        assert!(matches!(out.legs[3], Leg::Cancelled));
        assert!(!out.deadline_hit);
    }

    #[test]
    fn unreachable_quorum_stops_early_with_errors_kept() {
        let rt = rt();
        let out = rt.block_on(fan_out(
            [leg(10, true), leg(20, true), leg(900, false)],
            Duration::from_secs(1),
            WaitFor::Quorum(2),
        ));
        assert_eq!(out.errors().count(), 2);
        assert!(matches!(out.legs[2], Leg::Cancelled));
        let empty = rt.block_on(fan_out(
            Vec::<std::future::Ready<Result<u8, ()>>>::new(),
            Duration::from_secs(1),
            WaitFor::All,
        ));
        assert!(empty.legs.is_empty() && empty.all_ok());
    }
}
