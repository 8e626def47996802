//! Snowflake ids: 41 bits of milliseconds since an epoch, 10 bits of node,
//! 12 bits of sequence. Ids from one generator strictly increase, even when
//! the wall clock steps backwards.
//!
//! When the clock goes backwards (NTP step, VM migration) the generator
//! keeps issuing ids from its last timestamp, borrowing the next
//! millisecond when the sequence runs out, so ids stay unique and
//! increasing. It refuses (with [`StoreError::ClockBackwards`], kind
//! `Overloaded`) only when that would run ahead of the wall clock by more
//! than the tolerated drift.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use kuai_core::Clock;

use crate::StoreError;
use crate::sync::{AtomicU64, Ordering};

const SEQ_BITS: u32 = 12;
const NODE_BITS: u32 = 10;
const TIME_BITS: u32 = 41;
const MAX_SEQ: u64 = (1 << SEQ_BITS) - 1;
/// The largest node number (1023).
pub const MAX_NODE: u16 = (1 << NODE_BITS) - 1;

/// The parts of a snowflake id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdParts {
    /// Milliseconds since the generator's epoch.
    pub millis: u64,
    /// The node that issued it.
    pub node: u16,
    /// The sequence within the millisecond.
    pub sequence: u16,
}

impl IdParts {
    /// Splits an id.
    pub fn of(id: u64) -> IdParts {
        IdParts {
            millis: id >> (NODE_BITS + SEQ_BITS),
            node: ((id >> SEQ_BITS) & u64::from(MAX_NODE)) as u16,
            sequence: (id & MAX_SEQ) as u16,
        }
    }
}

/// Issues snowflake ids for one node; lock-free and shareable.
///
/// ```
/// use std::sync::Arc;
/// use kuai_core::SystemClock;
/// use kuai_store::{IdParts, Snowflake};
/// let ids = Snowflake::new(7, Arc::new(SystemClock)).unwrap();
/// let (a, b) = (ids.next_id().unwrap(), ids.next_id().unwrap());
/// assert!(b > a);
/// assert_eq!(IdParts::of(a).node, 7);
/// ```
#[derive(Debug)]
pub struct Snowflake {
    node: u64,
    epoch: SystemTime,
    clock: Arc<dyn Clock>,
    max_drift_ms: u64,
    /// `last_millis << 12 | sequence` of the last id issued.
    state: AtomicU64,
}

impl Snowflake {
    /// 2024-01-01T00:00:00Z, the default epoch (41 bits of ms last ~69 years).
    pub const DEFAULT_EPOCH_SECS: u64 = 1_704_067_200;

    /// A generator for `node` (0..=1023) with the default epoch and a
    /// tolerated backwards drift of 5 s.
    pub fn new(node: u16, clock: Arc<dyn Clock>) -> Result<Self, StoreError> {
        Self::with_epoch(
            node,
            clock,
            SystemTime::UNIX_EPOCH + Duration::from_secs(Self::DEFAULT_EPOCH_SECS),
            Duration::from_secs(5),
        )
    }

    /// A generator with an explicit epoch and tolerated backwards drift.
    pub fn with_epoch(
        node: u16,
        clock: Arc<dyn Clock>,
        epoch: SystemTime,
        max_drift: Duration,
    ) -> Result<Self, StoreError> {
        if node > MAX_NODE {
            return Err(StoreError::InvalidInput(format!(
                "snowflake node {node} is above {MAX_NODE}"
            )));
        }
        Ok(Snowflake {
            node: u64::from(node),
            epoch,
            clock,
            max_drift_ms: u64::try_from(max_drift.as_millis()).unwrap_or(u64::MAX),
            state: AtomicU64::new(0),
        })
    }

    fn now_ms(&self) -> Result<u64, StoreError> {
        let since = self
            .clock
            .system_time()
            .duration_since(self.epoch)
            .map_err(|_| {
                StoreError::InvalidInput("the clock is before the snowflake epoch".into())
            })?;
        let ms = u64::try_from(since.as_millis()).unwrap_or(u64::MAX);
        if ms >= 1 << TIME_BITS {
            return Err(StoreError::InvalidInput(
                "the snowflake epoch is more than 69 years ago".into(),
            ));
        }
        Ok(ms)
    }

    /// The next id: strictly greater than every id this generator issued.
    pub fn next_id(&self) -> Result<u64, StoreError> {
        let now = self.now_ms()?;
        let mut cur = self.state.load(Ordering::Acquire);
        loop {
            let (last, seq) = (cur >> SEQ_BITS, cur & MAX_SEQ);
            let (ms, next_seq) = if now > last {
                (now, 0)
            } else if seq < MAX_SEQ {
                (last, seq + 1)
            } else {
                (last + 1, 0)
            };
            if ms > now && ms - now > self.max_drift_ms {
                return Err(StoreError::ClockBackwards(Duration::from_millis(ms - now)));
            }
            if ms >= 1 << TIME_BITS {
                return Err(StoreError::InvalidInput(
                    "snowflake time bits exhausted".into(),
                ));
            }
            let new = (ms << SEQ_BITS) | next_seq;
            match self
                .state
                .compare_exchange_weak(cur, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    return Ok((ms << (NODE_BITS + SEQ_BITS)) | (self.node << SEQ_BITS) | next_seq);
                }
                Err(actual) => cur = actual,
            }
        }
    }
}

#[cfg(all(test, not(kuai_loom)))]
mod tests {
    use super::*;
    use kuai_core::ManualClock;

    #[derive(Debug)]
    struct Back {
        inner: ManualClock,
        back: std::sync::Mutex<Duration>,
    }
    impl Clock for Back {
        fn now(&self) -> std::time::Instant {
            self.inner.now()
        }
        fn system_time(&self) -> SystemTime {
            self.inner.system_time() - *self.back.lock().unwrap_or_else(|p| p.into_inner())
        }
    }

    #[test]
    fn monotonic_through_a_backwards_step_and_sequence_overflow() {
        let clock = Arc::new(Back {
            inner: ManualClock::new(),
            back: std::sync::Mutex::new(Duration::ZERO),
        });
        let ids = Snowflake::new(3, clock.clone()).unwrap_or_else(|e| panic!("{e}"));
        let mut last = 0;
        for _ in 0..10_000 {
            let id = ids.next_id().unwrap_or_else(|e| panic!("{e}"));
            assert!(id > last);
            last = id;
        }
        // Step back 1 s: still increasing, on the old timeline.
        *clock.back.lock().unwrap_or_else(|p| p.into_inner()) = Duration::from_secs(1);
        for _ in 0..5_000 {
            let id = ids.next_id().unwrap_or_else(|e| panic!("{e}"));
            assert!(id > last);
            assert_eq!(IdParts::of(id).node, 3);
            last = id;
        }
        // Step back beyond the tolerated drift: refused, not duplicated.
        *clock.back.lock().unwrap_or_else(|p| p.into_inner()) = Duration::from_secs(60);
        assert!(matches!(ids.next_id(), Err(StoreError::ClockBackwards(_))));
        // The clock recovers: ids continue above the last one.
        *clock.back.lock().unwrap_or_else(|p| p.into_inner()) = Duration::ZERO;
        clock.inner.advance(Duration::from_secs(2));
        assert!(ids.next_id().unwrap_or_else(|e| panic!("{e}")) > last);
    }

    #[test]
    fn concurrent_ids_are_unique() {
        let ids = Arc::new(
            Snowflake::new(1, Arc::new(kuai_core::SystemClock)).unwrap_or_else(|e| panic!("{e}")),
        );
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let ids = ids.clone();
                std::thread::spawn(move || {
                    let mut v = Vec::with_capacity(20_000);
                    for _ in 0..20_000 {
                        v.push(ids.next_id().unwrap_or(0));
                    }
                    assert!(v.windows(2).all(|w| w[1] > w[0]), "per-thread order");
                    v
                })
            })
            .collect();
        let mut all: Vec<u64> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect();
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n);
        assert!(!all.contains(&0));
    }

    #[test]
    fn bad_nodes_and_pre_epoch_clocks_are_rejected() {
        assert!(Snowflake::new(1024, Arc::new(kuai_core::SystemClock)).is_err());
        let ids = Snowflake::with_epoch(
            0,
            Arc::new(kuai_core::SystemClock),
            SystemTime::now() + Duration::from_secs(3600),
            Duration::ZERO,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(ids.next_id(), Err(StoreError::InvalidInput(_))));
    }
}
