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
