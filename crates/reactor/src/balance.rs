//! Choosing the I/O thread a new connection is pinned to.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Picks an I/O thread for a new connection.
///
/// Called by the acceptor only, once per connection, with the number of
/// live connections on each thread. The returned index is taken modulo the
/// thread count, so a policy cannot pick a thread that does not exist.
pub trait Balancer: Send + Sync + fmt::Debug + 'static {
    /// The thread to pin the next connection to.
    fn pick(&self, loads: &[usize]) -> usize;
}

/// Cycles through the threads in order (the default).
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl RoundRobin {
    /// A round-robin starting at thread 0.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Balancer for RoundRobin {
    fn pick(&self, loads: &[usize]) -> usize {
        let n = loads.len().max(1);
        self.next.fetch_add(1, Ordering::Relaxed) % n
    }
}

/// Picks the thread with the fewest live connections (ties rotate, so equal
/// loads still spread).
#[derive(Debug, Default)]
pub struct LeastLoaded {
    rotate: AtomicUsize,
}

impl LeastLoaded {
    /// A least-loaded balancer.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Balancer for LeastLoaded {
    fn pick(&self, loads: &[usize]) -> usize {
        let n = loads.len();
        if n == 0 {
            return 0;
        }
        let start = self.rotate.fetch_add(1, Ordering::Relaxed) % n;
        let mut best = start;
        for i in 1..n {
            let j = (start + i) % n;
            if loads[j] < loads[best] {
                best = j;
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_robin_cycles() {
        let rr = RoundRobin::new();
        let picks: Vec<usize> = (0..6).map(|_| rr.pick(&[0, 0, 0])).collect();
        assert_eq!(picks, vec![0, 1, 2, 0, 1, 2]);
        assert_eq!(rr.pick(&[]), 0);
    }

    proptest! {
        #[test]
        fn least_loaded_picks_a_minimum(loads in proptest::collection::vec(0usize..10, 1..8)) {
            let ll = LeastLoaded::new();
            let min = loads.iter().copied().min().unwrap_or(0);
            for _ in 0..loads.len() {
                let i = ll.pick(&loads);
                prop_assert_eq!(loads[i], min);
            }
        }

        #[test]
        fn least_loaded_balances_when_filling(n in 1usize..6, conns in 0usize..60) {
            let ll = LeastLoaded::new();
            let mut loads = vec![0usize; n];
            for _ in 0..conns {
                let i = ll.pick(&loads);
                loads[i] += 1;
            }
            let max = loads.iter().copied().max().unwrap_or(0);
            let min = loads.iter().copied().min().unwrap_or(0);
            prop_assert!(max - min <= 1);
        }
    }
}
