//! A live latency histogram (hdrhistogram) with a sliding pair of windows.

use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;

struct Windows {
    current: Histogram<u64>,
    previous: Histogram<u64>,
}

/// Latencies in nanoseconds (1 µs .. 1 h, 2 significant digits), kept in two
/// windows of `window` samples so quantiles follow the recent past: once the
/// current window is full it becomes the previous one and a fresh one starts.
///
/// ```
/// use std::time::Duration;
/// use kuai_reactor::LatencyHistogram;
/// let h = LatencyHistogram::new(1000);
/// for ms in 1..=100 {
///     h.record(Duration::from_millis(ms));
/// }
/// let p95 = h.quantile(0.95).unwrap();
/// assert!(p95 >= Duration::from_millis(94) && p95 <= Duration::from_millis(96));
/// ```
pub struct LatencyHistogram {
    window: u64,
    inner: Mutex<Windows>,
}

impl fmt::Debug for LatencyHistogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LatencyHistogram")
            .field("window", &self.window)
            .field("samples", &self.len())
            .finish()
    }
}

const LOW_NS: u64 = 1_000;
const HIGH_NS: u64 = 3_600_000_000_000;

fn fresh() -> Histogram<u64> {
    // Bounds are constants that hdrhistogram accepts; fall back to an
    // auto-resizing histogram rather than panic if that ever changed.
    Histogram::new_with_bounds(LOW_NS, HIGH_NS, 2)
        .or_else(|_| Histogram::new(2))
        .unwrap_or_else(|_| {
            let mut h = Histogram::new(1).unwrap_or_else(|_| unreachable!("1 sigfig is valid"));
            h.auto(true);
            h
        })
}

impl LatencyHistogram {
    /// A histogram whose windows hold `window` samples each (at least 16).
    pub fn new(window: u64) -> Self {
        LatencyHistogram {
            window: window.max(16),
            inner: Mutex::new(Windows {
                current: fresh(),
                previous: fresh(),
            }),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Windows) -> R) -> R {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }

    /// Records one latency (clamped to the histogram's range).
    pub fn record(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos())
            .unwrap_or(u64::MAX)
            .clamp(LOW_NS, HIGH_NS);
        let window = self.window;
        self.with(|w| {
            let _ = w.current.record(ns);
            if w.current.len() >= window {
                std::mem::swap(&mut w.current, &mut w.previous);
                w.current.reset();
            }
        });
    }

    /// The latency at quantile `q` (0..=1) over the current and previous
    /// windows, or `None` with no samples.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        self.with(|w| {
            let mut merged = w.previous.clone();
            if merged.add(&w.current).is_err() || merged.is_empty() {
                return None;
            }
            Some(Duration::from_nanos(
                merged.value_at_quantile(q.clamp(0.0, 1.0)),
            ))
        })
    }

    /// Samples in the two windows.
    pub fn len(&self) -> u64 {
        self.with(|w| w.current.len() + w.previous.len())
    }

    /// Whether no sample is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_slide() {
        let h = LatencyHistogram::new(16);
        assert!(h.is_empty() && h.quantile(0.5).is_none());
        for _ in 0..16 {
            h.record(Duration::from_millis(100));
        }
        for _ in 0..16 {
            h.record(Duration::from_millis(1));
        }
        // The slow window has been pushed out entirely.
        let p99 = h.quantile(0.99).unwrap_or_default();
        assert!(p99 < Duration::from_millis(2), "{p99:?}");
        h.record(Duration::MAX);
        assert!(h.quantile(1.0).unwrap_or_default() >= Duration::from_secs(3000));
    }
}

/// A [`kuai_core::Metrics`] sink that keeps counters, gauges and full
/// hdrhistograms in memory, so a server's `reactor.request_ns` (or any other
/// histogram) can be read as quantiles.
///
/// ```
/// use kuai_core::Metrics;
/// use kuai_reactor::HdrMetrics;
/// let m = HdrMetrics::default();
/// for ns in 1..=1000 {
///     m.histogram("reactor.request_ns", ns * 1000);
/// }
/// m.counter("reactor.requests", 1000);
/// assert_eq!(m.counter_value("reactor.requests"), 1000);
/// let p99 = m.quantile("reactor.request_ns", 0.99).unwrap();
/// assert!((985_000..=995_000).contains(&p99));
/// ```
#[derive(Default)]
pub struct HdrMetrics {
    inner: Mutex<HdrInner>,
}

#[derive(Default)]
struct HdrInner {
    counters: std::collections::BTreeMap<&'static str, u64>,
    gauges: std::collections::BTreeMap<&'static str, i64>,
    histograms: std::collections::BTreeMap<&'static str, Histogram<u64>>,
}

impl fmt::Debug for HdrMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f.debug_struct("HdrMetrics")
            .field("counters", &g.counters)
            .field("gauges", &g.gauges)
            .field("histograms", &g.histograms.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl HdrMetrics {
    fn with<R>(&self, f: impl FnOnce(&mut HdrInner) -> R) -> R {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }

    /// The counter's total (0 if never incremented).
    pub fn counter_value(&self, name: &str) -> u64 {
        self.with(|m| m.counters.get(name).copied().unwrap_or(0))
    }

    /// The gauge's last value.
    pub fn gauge_value(&self, name: &str) -> Option<i64> {
        self.with(|m| m.gauges.get(name).copied())
    }

    /// The value at quantile `q` of a histogram, or `None` without samples.
    pub fn quantile(&self, name: &str, q: f64) -> Option<u64> {
        self.with(|m| {
            let h = m.histograms.get(name)?;
            (!h.is_empty()).then(|| h.value_at_quantile(q.clamp(0.0, 1.0)))
        })
    }

    /// Samples recorded into a histogram.
    pub fn samples(&self, name: &str) -> u64 {
        self.with(|m| m.histograms.get(name).map_or(0, Histogram::len))
    }
}

impl kuai_core::Metrics for HdrMetrics {
    fn counter(&self, name: &'static str, by: u64) {
        self.with(|m| {
            let c = m.counters.entry(name).or_insert(0);
            *c = c.saturating_add(by);
        });
    }

    fn gauge(&self, name: &'static str, value: i64) {
        self.with(|m| {
            m.gauges.insert(name, value);
        });
    }

    fn histogram(&self, name: &'static str, value: u64) {
        self.with(|m| {
            let h = m.histograms.entry(name).or_insert_with(|| {
                let mut h = Histogram::new(3)
                    .or_else(|_| Histogram::new(2))
                    .unwrap_or_else(|_| unreachable!("2 significant figures is valid"));
                h.auto(true);
                h
            });
            let _ = h.record(value);
        });
    }
}
