//! Metrics hooks: crates report, the application decides where numbers go.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

/// Where a crate reports counters, gauges and latency samples.
///
/// Names are static, dotted and lower-case (`cache.hit`, `pool.acquire_ns`).
/// Implementations must be cheap and must never block for long: they sit on
/// hot paths. The default everywhere is [`NoopMetrics`].
pub trait Metrics: Send + Sync + fmt::Debug {
    /// Adds `by` to a monotonically increasing counter.
    fn counter(&self, name: &'static str, by: u64);

    /// Sets a gauge to `value`.
    fn gauge(&self, name: &'static str, value: i64);

    /// Records one sample (for example a latency in nanoseconds).
    fn histogram(&self, name: &'static str, value: u64);
}

/// Discards everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopMetrics;

impl Metrics for NoopMetrics {
    #[inline]
    fn counter(&self, _: &'static str, _: u64) {}
    #[inline]
    fn gauge(&self, _: &'static str, _: i64) {}
    #[inline]
    fn histogram(&self, _: &'static str, _: u64) {}
}

/// Keeps counters, last gauge values and sample counts/sums in memory, for
/// tests and small tools.
///
/// ```
/// use kuai_core::{CountingMetrics, Metrics};
/// let m = CountingMetrics::default();
/// m.counter("cache.hit", 2);
/// m.counter("cache.hit", 1);
/// m.histogram("load_ns", 10);
/// m.histogram("load_ns", 30);
/// assert_eq!(m.counter_value("cache.hit"), 3);
/// assert_eq!(m.histogram_summary("load_ns"), Some((2, 40)));
/// ```
#[derive(Debug, Default, Clone)]
pub struct CountingMetrics {
    inner: Arc<Mutex<Counts>>,
}

#[derive(Debug, Default)]
struct Counts {
    counters: BTreeMap<&'static str, u64>,
    gauges: BTreeMap<&'static str, i64>,
    histograms: BTreeMap<&'static str, (u64, u64)>,
}

impl CountingMetrics {
    fn with<R>(&self, f: impl FnOnce(&mut Counts) -> R) -> R {
        // A poisoned lock only means another thread panicked mid-update of a
        // counter; the counts are still usable.
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    /// The counter's total (0 if never incremented).
    pub fn counter_value(&self, name: &str) -> u64 {
        self.with(|c| c.counters.get(name).copied().unwrap_or(0))
    }

    /// The gauge's last value.
    pub fn gauge_value(&self, name: &str) -> Option<i64> {
        self.with(|c| c.gauges.get(name).copied())
    }

    /// `(count, sum)` of the histogram's samples.
    pub fn histogram_summary(&self, name: &str) -> Option<(u64, u64)> {
        self.with(|c| c.histograms.get(name).copied())
    }
}

impl Metrics for CountingMetrics {
    fn counter(&self, name: &'static str, by: u64) {
        self.with(|c| {
            let v = c.counters.entry(name).or_insert(0);
            *v = v.saturating_add(by);
        });
    }
    fn gauge(&self, name: &'static str, value: i64) {
        self.with(|c| {
            c.gauges.insert(name, value);
        });
    }
    fn histogram(&self, name: &'static str, value: u64) {
        self.with(|c| {
            let (n, sum) = c.histograms.entry(name).or_insert((0, 0));
            *n += 1;
            *sum = sum.saturating_add(value);
        });
    }
}

macro_rules! forward_metrics {
    ($($ptr:ty),*) => {$(
        impl<M: Metrics + ?Sized> Metrics for $ptr {
            fn counter(&self, name: &'static str, by: u64) { (**self).counter(name, by) }
            fn gauge(&self, name: &'static str, value: i64) { (**self).gauge(name, value) }
            fn histogram(&self, name: &'static str, value: u64) { (**self).histogram(name, value) }
        }
    )*};
}

forward_metrics!(&M, Box<M>, Arc<M>);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counting_metrics_shared_across_clones_and_threads() {
        let m = CountingMetrics::default();
        let shared: Arc<dyn Metrics> = Arc::new(m.clone());
        std::thread::scope(|s| {
            for _ in 0..4 {
                let shared = Arc::clone(&shared);
                s.spawn(move || {
                    for _ in 0..1000 {
                        shared.counter("ops", 1);
                    }
                });
            }
        });
        assert_eq!(m.counter_value("ops"), 4000);
        m.gauge("conns", -3);
        assert_eq!(m.gauge_value("conns"), Some(-3));
        assert_eq!(m.counter_value("missing"), 0);
        NoopMetrics.counter("ignored", 1);
    }
}
