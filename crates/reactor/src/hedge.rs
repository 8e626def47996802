//! Hedged requests ("The Tail at Scale"): if the first attempt is slower
//! than the recent p95, send a backup; the first success wins and the other
//! attempt is dropped (cancelled). A token budget caps the extra load, and
//! calls not marked idempotent are never duplicated.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::histogram::LatencyHistogram;
use crate::sync::{AtomicU64, Ordering};

/// Whether a call may be sent twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idempotency {
    /// Safe to duplicate (reads, idempotent writes): may be hedged.
    Idempotent,
    /// Never duplicated, whatever its latency.
    NonIdempotent,
}

/// A lock-free token bucket: every primary call earns `ratio` of a token,
/// every backup spends one, so backups stay ≤ `ratio` of calls (plus `burst`).
///
/// ```
/// use kuai_reactor::Budget;
/// let b = Budget::new(0.05, 1.0);
/// let mut spent = 0;
/// for _ in 0..1000 {
///     b.deposit();
///     if b.try_withdraw() { spent += 1; }
/// }
/// assert!(spent <= 51);
/// ```
#[derive(Debug)]
pub struct Budget {
    /// Milli-tokens available.
    tokens: AtomicU64,
    per_call: u64,
    max: u64,
}

const TOKEN: u64 = 1000;

impl Budget {
    /// A budget allowing `ratio` extra requests per call (0.05 = 5 %), saving
    /// up at most `burst` tokens. Starts empty.
    pub fn new(ratio: f64, burst: f64) -> Self {
        let per_call = (ratio.clamp(0.0, 1.0) * TOKEN as f64).round() as u64;
        let max = (burst.max(1.0) * TOKEN as f64).round() as u64;
        Budget {
            tokens: AtomicU64::new(0),
            per_call,
            max,
        }
    }

    /// Earns the share of one call.
    pub fn deposit(&self) {
        let (per, max) = (self.per_call, self.max);
        let _ = self
            .tokens
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                Some(t.saturating_add(per).min(max))
            });
    }

    /// Spends one token if there is one.
    pub fn try_withdraw(&self) -> bool {
        self.tokens
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                t.checked_sub(TOKEN)
            })
            .is_ok()
    }

    /// Whole tokens available now.
    pub fn available(&self) -> u64 {
        self.tokens.load(Ordering::Acquire) / TOKEN
    }
}

#[derive(Debug, Default)]
struct Counters {
    calls: std::sync::atomic::AtomicU64,
    hedged: std::sync::atomic::AtomicU64,
    hedge_wins: std::sync::atomic::AtomicU64,
    denied: std::sync::atomic::AtomicU64,
}

/// Counters of a [`Hedger`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[non_exhaustive]
pub struct HedgeStats {
    /// Calls made through the hedger.
    pub calls: u64,
    /// Backups sent.
    pub hedged: u64,
    /// Backups that answered first.
    pub hedge_wins: u64,
    /// Backups not sent because the budget was empty.
    pub budget_denied: u64,
}

impl HedgeStats {
    /// Backups per call: the extra load.
    pub fn extra_fraction(&self) -> f64 {
        if self.calls == 0 {
            0.0
        } else {
            self.hedged as f64 / self.calls as f64
        }
    }
}

/// Configures a [`Hedger`].
#[derive(Debug, Clone)]
pub struct HedgerBuilder {
    quantile: f64,
    budget_ratio: f64,
    burst: f64,
    min_delay: Duration,
    max_delay: Duration,
    min_samples: u64,
    window: u64,
}

impl HedgerBuilder {
    /// Which latency quantile triggers the backup. Default 0.95.
    pub fn quantile(mut self, q: f64) -> Self {
        self.quantile = q;
        self
    }

    /// Extra requests allowed per call. Default 0.05 (5 %).
    pub fn budget(mut self, ratio: f64) -> Self {
        self.budget_ratio = ratio;
        self
    }

    /// Backups that may be saved up. Default 10.
    pub fn burst(mut self, tokens: f64) -> Self {
        self.burst = tokens;
        self
    }

    /// Lower bound of the hedge delay. Default 1 ms.
    pub fn min_delay(mut self, d: Duration) -> Self {
        self.min_delay = d;
        self
    }

    /// Upper bound of the hedge delay, also used until `min_samples`
    /// latencies were seen. Default 1 s.
    pub fn max_delay(mut self, d: Duration) -> Self {
        self.max_delay = d;
        self
    }

    /// Samples needed before the histogram sets the delay. Default 100.
    pub fn min_samples(mut self, n: u64) -> Self {
        self.min_samples = n;
        self
    }

    /// Samples per histogram window. Default 10 000.
    pub fn window(mut self, n: u64) -> Self {
        self.window = n;
        self
    }

    /// Builds the hedger.
    pub fn build(self) -> Hedger {
        Hedger {
            inner: Arc::new(Inner {
                hist: LatencyHistogram::new(self.window),
                budget: Budget::new(self.budget_ratio, self.burst),
                delay_ns: std::sync::atomic::AtomicU64::new(duration_ns(self.max_delay)),
                counters: Counters::default(),
                cfg: self,
            }),
        }
    }
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[derive(Debug)]
struct Inner {
    hist: LatencyHistogram,
    budget: Budget,
    delay_ns: std::sync::atomic::AtomicU64,
    counters: Counters,
    cfg: HedgerBuilder,
}

/// Sends a backup request when the first is slower than the live p95.
///
/// ```
/// use std::time::Duration;
/// use kuai_reactor::{Hedger, Idempotency};
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let hedger = Hedger::builder().min_delay(Duration::from_millis(1)).build();
/// let answer = hedger
///     .call(Idempotency::Idempotent, || async { Ok::<_, ()>("value") })
///     .await;
/// assert_eq!(answer, Ok("value"));
/// # });
/// ```
#[derive(Clone)]
pub struct Hedger {
    inner: Arc<Inner>,
}

impl fmt::Debug for Hedger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hedger")
            .field("delay", &self.delay())
            .field("stats", &self.stats())
            .finish()
    }
}

impl Hedger {
    /// A builder: p95, 5 % budget, delay within 1 ms ..= 1 s.
    pub fn builder() -> HedgerBuilder {
        HedgerBuilder {
            quantile: 0.95,
            budget_ratio: 0.05,
            burst: 10.0,
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_secs(1),
            min_samples: 100,
            window: 10_000,
        }
    }

    /// The current hedge delay.
    pub fn delay(&self) -> Duration {
        Duration::from_nanos(
            self.inner
                .delay_ns
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    /// Current counters.
    pub fn stats(&self) -> HedgeStats {
        use std::sync::atomic::Ordering::Relaxed;
        let c = &self.inner.counters;
        HedgeStats {
            calls: c.calls.load(Relaxed),
            hedged: c.hedged.load(Relaxed),
            hedge_wins: c.hedge_wins.load(Relaxed),
            budget_denied: c.denied.load(Relaxed),
        }
    }

    /// The latency histogram feeding the delay.
    pub fn histogram(&self) -> &LatencyHistogram {
        &self.inner.hist
    }

    fn record(&self, d: Duration) {
        let inner = &self.inner;
        inner.hist.record(d);
        let calls = inner
            .counters
            .calls
            .load(std::sync::atomic::Ordering::Relaxed);
        // Recomputing a quantile walks the histogram: do it every 64 calls.
        if calls % 64 == 0 && inner.hist.len() >= inner.cfg.min_samples {
            if let Some(q) = inner.hist.quantile(inner.cfg.quantile) {
                let d = q.clamp(
                    inner.cfg.min_delay,
                    inner.cfg.max_delay.max(inner.cfg.min_delay),
                );
                inner
                    .delay_ns
                    .store(duration_ns(d), std::sync::atomic::Ordering::Relaxed);
            }
        }
    }

    /// Runs `attempt()`; if it is idempotent and still running after the
    /// hedge delay, and the budget allows, runs `attempt()` again and takes
    /// the first success (an early failure waits for the other attempt). The
    /// losing attempt is dropped, which cancels it.
    pub async fn call<F, Fut, T, E>(&self, idempotency: Idempotency, mut attempt: F) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let inner = &self.inner;
        inner
            .counters
            .calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        inner.budget.deposit();
        let start = Instant::now();
        let mut primary = std::pin::pin!(attempt());
        if idempotency == Idempotency::NonIdempotent {
            let r = primary.await;
            self.record(start.elapsed());
            return r;
        }
        let sleep = tokio::time::sleep(self.delay());
        tokio::select! {
            biased;
            r = &mut primary => {
                self.record(start.elapsed());
                return r;
            }
            _ = sleep => {}
        }
        if !inner.budget.try_withdraw() {
            inner
                .counters
                .denied
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let r = primary.await;
            self.record(start.elapsed());
            return r;
        }
        inner
            .counters
            .hedged
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let backup_start = Instant::now();
        let mut backup = std::pin::pin!(attempt());
        let (first, primary_first) = tokio::select! {
            r = &mut primary => (r, true),
            r = &mut backup => (r, false),
        };
        let (result, primary_won) = match first {
            Ok(v) => (Ok(v), primary_first),
            // The first answer was a failure: the other attempt may still succeed.
            Err(_) if primary_first => (backup.await, false),
            Err(_) => (primary.await, true),
        };
        if primary_won {
            self.record(start.elapsed());
        } else {
            inner
                .counters
                .hedge_wins
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.record(backup_start.elapsed());
        }
        result
    }
}

#[cfg(all(test, not(kuai_loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

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
    fn budget_caps_extra_load() {
        let b = Budget::new(0.05, 2.0);
        assert!(!b.try_withdraw(), "starts empty");
        let mut spent = 0u64;
        for _ in 0..10_000 {
            b.deposit();
            spent += u64::from(b.try_withdraw());
        }
        assert_eq!(spent, 500);
        for _ in 0..1000 {
            b.deposit();
        }
        assert_eq!(b.available(), 2, "burst caps savings");
    }

    #[test]
    fn slow_primary_is_hedged_and_loser_cancelled() {
        rt().block_on(async {
            let h = Hedger::builder()
                .budget(1.0)
                .min_samples(1_000_000)
                .max_delay(Duration::from_millis(10))
                .build();
            let attempts = AtomicUsize::new(0);
            let live = Arc::new(AtomicUsize::new(0));
            struct Live(Arc<AtomicUsize>);
            impl Drop for Live {
                fn drop(&mut self) {
                    self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                }
            }
            let t = tokio::time::Instant::now();
            let r = h
                .call(Idempotency::Idempotent, || {
                    let n = attempts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let live = Arc::clone(&live);
                    live.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    async move {
                        let _g = Live(live);
                        let ms = if n == 0 { 500 } else { 5 };
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                        Ok::<_, ()>(n)
                    }
                })
                .await;
            assert_eq!(r, Ok(1), "the backup answered first");
            assert_eq!(t.elapsed(), Duration::from_millis(15));
            assert_eq!(
                live.load(std::sync::atomic::Ordering::SeqCst),
                0,
                "primary was cancelled"
            );
            let s = h.stats();
            assert_eq!((s.calls, s.hedged, s.hedge_wins), (1, 1, 1));
        });
    }

    #[test]
    fn non_idempotent_calls_are_never_hedged() {
        rt().block_on(async {
            let h = Hedger::builder()
                .budget(1.0)
                .max_delay(Duration::from_millis(1))
                .build();
            let attempts = AtomicUsize::new(0);
            let r = h
                .call(Idempotency::NonIdempotent, || {
                    attempts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    async {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        Ok::<_, ()>(())
                    }
                })
                .await;
            assert_eq!(r, Ok(()));
            assert_eq!(attempts.load(std::sync::atomic::Ordering::SeqCst), 1);
            assert_eq!(h.stats().hedged, 0);
        });
    }

    #[test]
    fn empty_budget_denies_backups_and_failed_first_waits_for_other() {
        rt().block_on(async {
            let h = Hedger::builder()
                .budget(0.0)
                .max_delay(Duration::from_millis(1))
                .build();
            let r = h
                .call(Idempotency::Idempotent, || async {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Ok::<_, ()>(7)
                })
                .await;
            assert_eq!(r, Ok(7));
            assert_eq!(h.stats().budget_denied, 1);

            let h = Hedger::builder()
                .budget(1.0)
                .max_delay(Duration::from_millis(1))
                .build();
            let n = AtomicUsize::new(0);
            let r = h
                .call(Idempotency::Idempotent, || {
                    let i = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    async move {
                        if i == 0 {
                            tokio::time::sleep(Duration::from_millis(3)).await;
                            Err("primary failed")
                        } else {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            Ok(i)
                        }
                    }
                })
                .await;
            assert_eq!(r, Ok(1));
        });
    }

    #[test]
    fn delay_follows_the_live_quantile() {
        let h = Hedger::builder().min_samples(10).build();
        for i in 0..640u64 {
            h.inner
                .counters
                .calls
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            h.record(Duration::from_millis(1 + i % 20));
        }
        let d = h.delay();
        assert!(
            d >= Duration::from_millis(18) && d <= Duration::from_millis(21),
            "{d:?}"
        );
    }
}
